"""``make bench``: serving ratios measured side by side in one run, with the raw figures behind them.

    python -m tritonkit.perf.bench --out reports/bench          # writes bench.json + BENCHMARKS.md

Ratios (each numerator and denominator measured in this one run, on this machine):

* ``serving_efficiency`` — Triton-served img/s at the best concurrency ÷ in-process
  onnxruntime img/s; same ONNX, batch 8, a ResNet-50 (torchvision architecture exported with
  random weights: speed does not depend on the weights' values).
* ``serving_efficiency_small`` — the same for the demo's small classifier at batch 1.
* ``run_stream_efficiency`` — ``p_infer_whole ÷ p_infer_core`` of the run stream (images
  over wall time ÷ images over the time a request was in flight), ResNet-50, batch 8.
* ``vs_sequential_client`` — run-stream img/s ÷ a plain sequential client (decode one image,
  preprocess, synchronous infer, postprocess, next — the shape of Triton's image_client.py),
  same images and model (the small classifier).
* ``dynamic_batching_gain`` — img/s at concurrency 8, batch-1 requests, with dynamic batching
  ÷ without (small classifier).

The in-process onnxruntime figure is measured before *and* after the served sweep and the
mean is used (both are reported), so drift on a shared machine shows instead of hiding in a
ratio. The load average at start and end is recorded too. Where a goal is not met the report
says where the time goes, from perf_analyzer's server-side split and the run stream's stages.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from tritonkit.errors import TritonkitError

GOALS = {
    "serving_efficiency": 0.97,
    "serving_efficiency_small": 0.80,
    "run_stream_efficiency": 0.90,
    "vs_sequential_client": 2.0,
    "dynamic_batching_gain": 2.0,
}
BIG_MODEL = "resnet50"
SMALL_MODEL = "demo_shapes"
SMALL_NO_DB = "demo_shapes_nodb"
SMALL_SHARED = "demo_shapes_shared"   # onnxruntime threads do not spin: the client shares the CPUs


@dataclass(frozen=True)
class BenchOptions:
    out: Path = Path("reports/bench")
    benchmarks_md: Path = Path("BENCHMARKS.md")
    cache_dir: Path = Path(".cache/bench")
    big_onnx: Path | None = None        # None -> torchvision resnet50, random weights, exported once (cached)
    small_onnx: Path | None = None      # None -> the demo's trained classifier if present, else a stand-in
    window_ms: int = 3000
    stability_pct: float = 20.0       # perf_analyzer's rule, also used for the in-process windows
    max_trials: int = 6
    images: int = 96
    small_concurrency: str = "4:8:4"  # bs-1 requests in flight for the small model (best of these)
    big_concurrency: str = "1:2"
    db_concurrency: int = 8


@dataclass
class Ratio:
    """One benchmark ratio and the two figures it divides."""

    name: str
    goal: float
    numerator: float | None = None
    denominator: float | None = None
    numerator_is: str = ""
    denominator_is: str = ""
    note: str = ""
    where_time_goes: str = ""

    @property
    def value(self) -> float | None:
        if self.numerator is None or not self.denominator:
            return None
        return self.numerator / self.denominator

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value >= self.goal

    def to_dict(self) -> dict:
        return {**asdict(self), "value": self.value, "met": self.met}


@dataclass
class BenchReport:
    options: BenchOptions
    ratios: dict[str, Ratio] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"machine": self.machine, "models": self.models,
                "ratios": {k: r.to_dict() for k, r in self.ratios.items()}, "raw": self.raw,
                "duration_s": round(time.time() - self.started, 1)}


# --------------------------------------------------------------------------------------------
# Models


def export_resnet50_random(path: Path) -> Path:
    """torchvision ResNet-50 with random weights -> ONNX (input ``input`` [N,3,224,224], output
    ``logits`` [N,1000], dynamic batch). Cached: exported once per cache folder."""
    if path.is_file():
        return path
    try:
        import torch
        import torchvision
    except ImportError:
        raise TritonkitError("the bench exports ResNet-50 with torch/torchvision: pip install torch torchvision, "
                             "or pass --big-onnx") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    tmp = path.with_name(path.stem + ".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(tmp), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          opset_version=17, dynamo=False)
    tmp.replace(path)
    return path


def export_small_standin(path: Path) -> Path:
    """A small CNN for the ``demo_shapes`` card (3x64x64 -> 8), random weights: three 3x3 conv
    blocks (16/32/64 channels) + global pooling + linear. Used only when the demo's trained
    classifier is not there; its speed, not its accuracy, is what the bench needs."""
    if path.is_file():
        return path
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 8)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, torch.randn(1, 3, 64, 64), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)
    tmp.replace(path)
    return path


def _demo_onnx() -> Path | None:
    """The demo's trained small classifier (trained and cached on first use); None where it
    cannot be had here (torch missing, or training failed), and the stand-in is used instead."""
    try:
        from tritonkit.demo import trained_onnx

        path = trained_onnx()
    except (ImportError, TritonkitError) as exc:
        print(f"bench: the demo's classifier is not available ({exc}); using a stand-in", file=sys.stderr)
        return None
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------------
# Measurements


def sequential_client(items, card, url: str, model: str) -> dict:
    """The plain client: for each image decode, preprocess, one synchronous gRPC infer (batch 1),
    softmax top-5, then the next image. Returns img/s and per-stage ms per image."""
    import numpy as np

    from tritonkit.client.classify import classify_record
    from tritonkit.client.decode import decode_image
    from tritonkit.client.preprocess import preprocess
    from tritonkit.triton import grpcclient, make_client

    client = make_client("grpc", url)
    stages = {"decode": 0.0, "preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
    out_name = card.outputs[0].name

    def one(item) -> None:
        t0 = time.perf_counter()
        rgb = decode_image(item.read_bytes()).image
        t1 = time.perf_counter()
        x, _ = preprocess(rgb, card.preprocess)
        x = np.ascontiguousarray(x[None].astype(card.input.numpy_dtype, copy=False))
        t2 = time.perf_counter()
        inp = grpcclient.InferInput(card.input.name, list(x.shape), card.input.dtype)
        inp.set_data_from_numpy(x)
        logits = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput(out_name)]).as_numpy(out_name)
        t3 = time.perf_counter()
        classify_record(logits[0], item.label)
        t4 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("preprocess", t1, t2), ("infer", t2, t3), ("postprocess", t3, t4)):
            stages[k] += b - a

    try:
        for item in items[:4]:  # warm-up, not timed
            one(item)
        stages = dict.fromkeys(stages, 0.0)
        t0 = time.perf_counter()
        for item in items:
            one(item)
        wall = time.perf_counter() - t0
    finally:
        client.close()
    n = len(items)
    return {"img_per_s": n / wall, "images": n, "wall_s": wall,
            "stages_ms_per_image": {k: v / n * 1e3 for k, v in stages.items()}}


def _served_best(opts: BenchOptions, model: str, url: str, batch: int, concurrency: str, out: Path,
                 window_ms: int | None = None):
    from tritonkit.perf.analyzer import ConcurrencyRange, PerfSpec, run_sweep

    spec = PerfSpec(model=model, url=url, batch_size=batch, concurrency=ConcurrencyRange.parse(concurrency),
                    measurement_interval_ms=window_ms or opts.window_ms, stability_pct=opts.stability_pct,
                    max_trials=opts.max_trials)
    sweep = run_sweep(spec, out, plot=True)
    if not sweep.rows:
        raise TritonkitError(f"perf_analyzer measured nothing for {model}: "
                             f"{sweep.points[0].error if sweep.points else 'no point'}")
    return max(sweep.rows, key=lambda r: r.img_per_s), sweep


def _server_counts(sweep, concurrency: int):
    """perf_analyzer's server counts (inferences vs executions) for one point of a sweep."""
    from tritonkit.perf.results import parse_server_counts

    point = next((p for p in sweep.points if p.ok and p.concurrency == concurrency), None)
    if point is None or point.log_path is None or not point.log_path.is_file():
        return None
    return parse_server_counts(point.log_path.read_text(errors="replace"))


def profile_client(items, card, top: int = 6) -> list[dict]:
    """cProfile of decode + preprocess, one image after another: the functions with the most
    cumulative time, as shares of the total (where a client's CPU time goes)."""
    import cProfile
    import pstats

    from tritonkit.client.decode import decode_image
    from tritonkit.client.preprocess import preprocess

    profiler = cProfile.Profile()
    profiler.enable()
    for item in items:
        preprocess(decode_image(item.read_bytes()).image, card.preprocess)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(v[2] for v in stats.values()) or 1.0  # own times add up to the profiled time
    rows = sorted(((v[3], f"{Path(k[0]).name}:{k[2]}", v[2]) for k, v in stats.items()), reverse=True)[:top]
    return [{"function": name, "cumulative_share": cum / total, "own_share": own / total} for cum, name, own in rows]


def _split_text(row) -> str:
    s = row.split
    parts = [("client send", s.client_send_us), ("network + server send/recv", s.network_us),
             ("server queue", s.server_queue_us), ("compute input", s.compute_input_us),
             ("compute infer", s.compute_infer_us), ("compute output", s.compute_output_us),
             ("client recv", s.client_recv_us)]
    total = sum(v for _, v in parts) or 1.0
    return ", ".join(f"{name} {v / 1000:.2f} ms ({v / total:.0%})" for name, v in parts)


def _row_dict(row) -> dict:
    from tritonkit.perf.results import row_to_dict

    return row_to_dict(row)


def _machine() -> dict:
    import numpy
    import onnxruntime

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_avg_start": os.getloadavg(), "numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__,
            "processor": platform.processor() or platform.machine()}


def run_bench(opts: BenchOptions = BenchOptions(), log: Callable[[str], None] = print) -> BenchReport:
    """Run every measurement; bench.json and BENCHMARKS.md are rewritten after each ratio."""
    from tritonkit.cards import get_card
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model
    from tritonkit.perf.analyzer import ConcurrencyRange
    from tritonkit.perf.ladder import measure_onnxruntime, measure_run_stream, ort_session, synthetic_items
    from tritonkit.serve.local import LocalServer, ServerOptions

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    report = BenchReport(opts, machine=_machine())
    big_card, small_card = get_card(BIG_MODEL), get_card(SMALL_MODEL)

    log("preparing models ...")
    big_onnx = opts.big_onnx or export_resnet50_random(Path(opts.cache_dir) / "resnet50_random.onnx")
    demo = None if opts.small_onnx else _demo_onnx()
    small_onnx = opts.small_onnx or demo or export_small_standin(Path(opts.cache_dir) / "small_standin.onnx")
    report.models = {
        BIG_MODEL: {"onnx": str(big_onnx), "weights": "given" if opts.big_onnx else
                    "random (torchvision resnet50 architecture; speed does not depend on weight values)"},
        SMALL_MODEL: {"onnx": str(small_onnx), "weights": "given" if opts.small_onnx else
                      ("the demo's trained classifier" if demo else
                       "stand-in: 3-conv CNN with random weights (the demo's trained classifier could not be had)")},
    }

    def save() -> None:
        report.machine["load_avg_now"] = os.getloadavg()
        write_bench(report, out / "bench.json", Path(opts.benchmarks_md))

    window_s = opts.window_ms / 1000.0

    with tempfile.TemporaryDirectory(prefix="tritonkit-bench-") as tmp:
        repo = Path(tmp) / "repo"
        write_model(big_card, big_onnx, repo, RepoOptions(target="cpu"))
        write_model(small_card, small_onnx, repo, RepoOptions(target="cpu"))
        write_model(small_card, small_onnx, repo, RepoOptions(target="cpu", name=SMALL_NO_DB, dynamic_batching=False))
        write_model(small_card, small_onnx, repo, RepoOptions(target="cpu", name=SMALL_SHARED, ort_spinning=False))
        log("starting the bundled tritonserver ...")
        with LocalServer(ServerOptions(model_repository=repo), log_path=out / "tritonserver.log") as server:
            url = server.grpc_url
            images = synthetic_items(opts.images)

            # 1. serving_efficiency: ResNet-50, batch 8
            log("serving_efficiency: in-process onnxruntime, Triton sweep, in-process again (ResNet-50, bs 8)")
            measure_big = partial(measure_onnxruntime, big_onnx, big_card, 8, window_s=window_s,
                                  stability_pct=opts.stability_pct, max_windows=opts.max_trials,
                                  session=ort_session(big_onnx))
            before = measure_big()
            # each window must hold several requests: at least 5 batch times per request in flight
            levels = max(ConcurrencyRange.parse(opts.big_concurrency).levels())
            big_window = max(opts.window_ms, int(before.ms_per_batch * 5 * levels))
            best, _ = _served_best(opts, BIG_MODEL, url, 8, opts.big_concurrency, out / "resnet50_bs8", big_window)
            after = measure_big()
            del measure_big  # frees the in-process session
            limit = (before.img_per_s + after.img_per_s) / 2
            r = Ratio("serving_efficiency", GOALS["serving_efficiency"], best.img_per_s, limit,
                      f"Triton gRPC img/s, bs 8, best concurrency ({best.concurrency}), perf_analyzer",
                      "in-process onnxruntime img/s, bs 8 (mean of before/after)",
                      note=f"in-process before {before.img_per_s:.2f}, after {after.img_per_s:.2f} img/s; "
                           f"perf_analyzer windows of {big_window} ms")
            r.where_time_goes = (f"per request at concurrency {best.concurrency}: {_split_text(best)}; "
                                 f"in-process {limit and 8 / limit * 1e3:.1f} ms per batch")
            report.ratios[r.name] = r
            report.raw["resnet50"] = {"in_process_before": asdict(before), "in_process_after": asdict(after),
                                      "served_best": _row_dict(best)}
            save()

            # 2. serving_efficiency_small: the small classifier, batch 1
            log("serving_efficiency_small: in-process, Triton sweep, in-process again (small, bs 1)")
            measure_small = partial(measure_onnxruntime, small_onnx, small_card, 1, window_s=window_s,
                                    stability_pct=opts.stability_pct, max_windows=opts.max_trials,
                                    session=ort_session(small_onnx))
            before_s = measure_small()
            best_s, small_sweep = _served_best(opts, SMALL_MODEL, url, 1, opts.small_concurrency, out / "small_bs1")
            after_s = measure_small()
            limit_s = (before_s.img_per_s + after_s.img_per_s) / 2
            r = Ratio("serving_efficiency_small", GOALS["serving_efficiency_small"], best_s.img_per_s, limit_s,
                      f"Triton gRPC img/s, bs 1 requests, best concurrency ({best_s.concurrency}), dynamic batching",
                      "in-process onnxruntime img/s, bs 1 (mean of before/after)",
                      note=f"in-process before {before_s.img_per_s:.1f}, after {after_s.img_per_s:.1f} img/s")
            r.where_time_goes = (f"per request at concurrency {best_s.concurrency}: {_split_text(best_s)}; "
                                 f"in-process {1 / limit_s * 1e3:.3f} ms per image")
            report.ratios[r.name] = r
            report.raw["small"] = {"in_process_before": asdict(before_s), "in_process_after": asdict(after_s),
                                   "served_best": _row_dict(best_s)}
            save()

            # 3. dynamic_batching_gain: the small classifier, bs-1 requests, concurrency 8
            log("dynamic_batching_gain: concurrency 8 with and without dynamic batching (small)")
            conc = opts.db_concurrency
            with_db = next((r for r in small_sweep.rows if r.concurrency == conc), None)
            if with_db is None:  # not among the small sweep's levels: measure it
                with_db, _ = _served_best(opts, SMALL_MODEL, url, 1, str(conc), out / "db_on")
            without_db, _ = _served_best(opts, SMALL_NO_DB, url, 1, str(conc), out / "db_off")
            counts_on = _server_counts(small_sweep, conc)
            # what batching can give at most here: onnxruntime's own img/s at bs 8 vs bs 1
            bs8 = measure_onnxruntime(small_onnx, small_card, 8, window_s=window_s, stability_pct=opts.stability_pct,
                                      max_windows=opts.max_trials, session=ort_session(small_onnx))
            headroom = bs8.img_per_s / limit_s
            r = Ratio("dynamic_batching_gain", GOALS["dynamic_batching_gain"], with_db.img_per_s, without_db.img_per_s,
                      f"img/s at concurrency {conc}, dynamic batching on (max queue delay 100 µs)",
                      f"img/s at concurrency {conc}, off",
                      note=(f"the server ran {counts_on.avg_batch:.2f} images per model execution with batching on; "
                            if counts_on else "") + f"in-process onnxruntime gains {headroom:.2f}x from bs 1 to bs 8 "
                           f"({limit_s:,.0f} -> {bs8.img_per_s:,.0f} img/s)")
            r.where_time_goes = f"on: {_split_text(with_db)}; off: {_split_text(without_db)}"
            report.ratios[r.name] = r
            report.raw["dynamic_batching"] = {"on": _row_dict(with_db), "off": _row_dict(without_db),
                                              "avg_batch_on": counts_on.avg_batch if counts_on else None,
                                              "in_process_bs8": asdict(bs8), "compute_headroom_bs8_vs_bs1": headroom}
            save()

            # 4. vs_sequential_client: run stream vs the image_client.py shape, small classifier
            log("vs_sequential_client: run stream vs a sequential client (small, same images)")
            # both clients decode on the server's CPUs, so both use the copy whose threads do not spin
            stream_s = measure_run_stream(small_card, images, url=url, served_name=SMALL_SHARED, batch_size=8,
                                          in_flight=2)
            seq_s = sequential_client(images, small_card, url, SMALL_SHARED)
            r = Ratio("vs_sequential_client", GOALS["vs_sequential_client"], stream_s.p_infer_whole,
                      seq_s["img_per_s"], "run stream img/s (bs 8, 2 in flight, 2 decode workers)",
                      "sequential client img/s (decode, preprocess, sync infer bs 1, postprocess)",
                      note=f"{len(images)} synthetic 500x375 JPEGs; model copy with onnxruntime allow_spinning 0")
            prof = profile_client(images[:48], small_card)
            cpus = os.cpu_count() or 1
            r.where_time_goes = (
                f"sequential ms per image: {_stages_text(seq_s['stages_ms_per_image'])}; run stream (ms per image "
                f"inside the worker threads, summed): {_stages_text(stream_s.stages_ms_per_image)}; client "
                f"decode+preprocess profile (cProfile, share of the time spent inside): "
                + ", ".join(f"{x['function']} {x['cumulative_share']:.0%}" for x in prof)
                + f". Client and server share this host's {cpus} CPUs, and the sequential client already keeps "
                f"about one busy, so a CPU-bound stream can gain at most about {cpus}x here")
            report.ratios[r.name] = r
            report.raw["vs_sequential_client"] = {"run_stream": stream_s.to_dict(), "sequential": seq_s,
                                                  "client_profile": prof}
            save()

            # 5. run_stream_efficiency: p_infer_whole / p_infer_core, ResNet-50 bs 8 (and the small one)
            log("run_stream_efficiency: run stream, ResNet-50 bs 8")
            stream_b = measure_run_stream(big_card, images[:48], url=url, served_name=BIG_MODEL, batch_size=8,
                                          in_flight=2)
            r = Ratio("run_stream_efficiency", GOALS["run_stream_efficiency"], stream_b.p_infer_whole,
                      stream_b.p_infer_core, "p_infer_whole (images / stream wall time), ResNet-50 bs 8",
                      "p_infer_core (images / time a request was in flight)",
                      note=(f"small classifier, same settings: {stream_s.p_infer_whole / stream_s.p_infer_core:.3f}"
                            if stream_s.p_infer_core else ""))
            r.where_time_goes = (f"ResNet-50 stream CPU ms per image: {_stages_text(stream_b.stages_ms_per_image)}; "
                                 f"small: {_stages_text(stream_s.stages_ms_per_image)}")
            report.ratios[r.name] = r
            report.raw["run_stream_resnet50"] = stream_b.to_dict()
            save()
    save()
    return report


def _stages_text(stages: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in stages.items() if v is not None)


# --------------------------------------------------------------------------------------------
# Reports


def benchmarks_markdown(report: BenchReport) -> str:
    from tritonkit.perf.results import TextTable

    rows = []
    for name, r in report.ratios.items():
        rows.append((name, f"{r.value:.3f}" if r.value is not None else "—", f"≥ {r.goal:g}",
                     {True: "met", False: "not met", None: "—"}[r.met],
                     f"{r.numerator:,.2f}" if r.numerator is not None else "—",
                     f"{r.denominator:,.2f}" if r.denominator is not None else "—"))
    summary = TextTable("ratios", ("ratio", "value", "goal", "result", "numerator", "denominator"), tuple(rows))
    m = report.machine
    lines = [
        "# Benchmarks", "",
        "Generated by `make bench` (`python -m tritonkit.perf.bench`); do not edit by hand. Every ratio's two "
        "figures were measured side by side in one run on the machine below; bench.json holds the raw numbers.", "",
        f"Machine: {m.get('processor')}, {m.get('cpus')} CPUs, {m.get('platform')}; onnxruntime "
        f"{m.get('onnxruntime')}; load average at start {_load(m.get('load_avg_start'))}, at the end "
        f"{_load(m.get('load_avg_now'))}. Server: the bundled tritonserver (CPU), python backend running "
        "onnxruntime (the cpu target). Served figures are perf_analyzer's (C++ client, gRPC).", "",
        summary.markdown(), "## Models", "",
    ]
    for name, info in report.models.items():
        lines.append(f"- `{name}`: {info['weights']}")
    lines += ["", "## Each ratio", ""]
    for name, r in report.ratios.items():
        lines += [f"### {name} = {r.value:.3f} (goal ≥ {r.goal:g}: {'met' if r.met else 'not met'})"
                  if r.value is not None else f"### {name}: not measured", "",
                  f"- numerator: {r.numerator_is} = {r.numerator:,.2f}" if r.numerator is not None else "",
                  f"- denominator: {r.denominator_is} = {r.denominator:,.2f}" if r.denominator is not None else ""]
        if r.note:
            lines.append(f"- {r.note}")
        if r.where_time_goes:
            lines.append(f"- where the time goes: {r.where_time_goes}")
        lines.append("")
    return "\n".join(ln for ln in lines if ln is not None).rstrip() + "\n"


def _load(value) -> str:
    return ", ".join(f"{v:.2f}" for v in value) if value else "?"


def write_bench(report: BenchReport, json_path: Path, md_path: Path | None) -> None:
    from tritonkit.report import write_json, write_text

    write_json(json_path, report.to_dict())
    text = benchmarks_markdown(report)
    write_text(json_path.with_name("BENCHMARKS.md"), text)
    if md_path is not None:
        write_text(md_path, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tritonkit.perf.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=BenchOptions.out)
    p.add_argument("--benchmarks-md", type=Path, default=BenchOptions.benchmarks_md)
    p.add_argument("--cache-dir", type=Path, default=BenchOptions.cache_dir)
    p.add_argument("--big-onnx", type=Path, help="ResNet-50-class ONNX (default: export random-weight resnet50)")
    p.add_argument("--small-onnx", type=Path, help="the small classifier's ONNX (demo_shapes card)")
    p.add_argument("--window-ms", type=int, default=BenchOptions.window_ms)
    p.add_argument("--stability", type=float, default=BenchOptions.stability_pct)
    p.add_argument("--images", type=int, default=BenchOptions.images)
    args = p.parse_args(argv)
    opts = BenchOptions(out=args.out, benchmarks_md=args.benchmarks_md, cache_dir=args.cache_dir,
                        big_onnx=args.big_onnx, small_onnx=args.small_onnx, window_ms=args.window_ms,
                        stability_pct=args.stability, images=args.images)
    try:
        report = run_bench(opts, log=lambda m: print(m, flush=True))
    except TritonkitError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    for name, r in report.ratios.items():
        value = f"{r.value:.3f}" if r.value is not None else "—"
        print(f"{name:26s} {value:>8s}  goal >= {r.goal:g}  {'met' if r.met else 'NOT met'}")
    print(f"wrote {opts.out / 'bench.json'} and {opts.benchmarks_md}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
