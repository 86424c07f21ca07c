"""``make bench``: serving ratios measured side by side in one run, with the raw figures behind them.

    .venv/bin/python -m benchmarks.bench --out reports/bench      # writes bench.json + BENCHMARKS.md

Each ratio is a :class:`~benchmarks.ratios.RatioSpec` (name, goal, measure) in :data:`RATIOS`: its
two figures are measured as interleaved pairs (A B A B, at least three), the ratio is the median
of the pairs' ratios, shown with min, max and the machine's load before and after, and judged
met / unmet / inconclusive (see :mod:`benchmarks.ratios`). The run is a
:class:`tritonkit.steps.Pipeline`: models, repository, servers, one step per ratio, the report;
a ratio whose step fails is reported "not measured" with its error and the others still run.

Models: ``resnet50`` and the demo's ``demo_shapes`` architecture, both with random weights
(speed does not depend on the weights' values), exported once into the cache folder; for the
ultralytics peer ratios, ``yolo11n`` built from ultralytics' YAML with seeded random weights and
exported by ultralytics (``benchmarks/ultralytics_peer.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy
from threadpoolctl import threadpool_limits

import tritonkit.demo  # noqa: F401 - registers the demo's architectures with the exporter
from benchmarks import preprocess_speed as pps
from benchmarks.model_analyzer import Search, locate_model_analyzer, run_profile
from benchmarks.measure import (PyTritonPeer, Window, api_predict, hand_written_predict, in_process, profile_client,
                                random_weights_onnx, sequential_client, served_point, split_text, stages_text)
from benchmarks.ratios import Measured, RatioResult, RatioSpec, interleave, load_average
from benchmarks.ultralytics_peer import UltralyticsPeer, export_random
from tritonkit._lazy import lazy_import
from tritonkit.cards import get_card
from tritonkit.errors import TritonkitError
from tritonkit.io import atomic_write_json, atomic_write_text
from tritonkit.model_repository.config import RepoOptions, config_to_text, parse_config
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.ladder import measure_run_stream, ort_session, synthetic_items
from tritonkit.perf.results import row_to_dict
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
from tritonkit.perf.tune import TuneGrid, TuneOptions, run_tune
from tritonkit.report import markdown_table
from tritonkit.serve.local import LocalServer, ServerOptions
from tritonkit.steps import Pipeline, Step, StepLog, StepRecord

ort = lazy_import("onnxruntime")
torch = lazy_import("torch")
cv2 = lazy_import("cv2")

BIG, SMALL = "resnet50", "demo_shapes"
SMALL_NO_DB = "demo_shapes_nodb"
SMALL_SHARED = "demo_shapes_shared"   # onnxruntime threads do not spin: the client shares the CPUs
CONCURRENCY = 8                        # bs-1 requests in flight for the small model
RESNET_REQUESTS = 6                    # requests per perf_analyzer window for ResNet-50 bs 8
TUNE_PICK, MA_PICK = "demo_shapes_tune", "demo_shapes_ma"
# both searches under the same bounds: batching delay / max batch size up to 8, 1-2 instances, the
# load of the comparison (bs-1 requests at CONCURRENCY); no latency bound, so both pick by throughput
TUNE_GRID = TuneGrid(delays_us=(0, 100, 500, 2000), preferred=((),), instances=(1, 2))
MA_SEARCH = Search(mode="quick", max_concurrency=CONCURRENCY, max_instances=2, max_batch=8)
NO_LATENCY_BOUND_MS = 60_000.0
YOLO = "yolo11n"                       # the ultralytics peer ratios' card (640 x 640, anchor-free head)
YOLO_IMAGES = 32                       # of the synthetic JPEGs, each side's pass over them


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    out: Path = Path("reports/bench")
    benchmarks_md: Path | None = Path("BENCHMARKS.md")
    cache_dir: Path = Path(".cache/bench")
    pairs: int = 3
    images: int = 96
    photos: int = 48
    window: Window = Window()
    only: tuple[str, ...] = ()          # ratio names to measure (empty: all)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.only) - {s.name for s in RATIOS})
        if unknown:
            raise TritonkitError(f"only names unknown ratios: {', '.join(unknown)}")
        if self.pairs < 3:
            raise TritonkitError("pairs must be >= 3 (a median of interleaved repeats)")
        if self.images < 16 or self.photos < 1:
            raise TritonkitError("images must be >= 16 and photos >= 1")


@dataclass
class BenchRun:
    """One bench run: options, the steps' products, and the results so far."""

    opts: BenchOptions
    log: StepLog
    tmp: Path
    onnx: dict[str, Path] = field(default_factory=dict)
    sessions: dict[str, object] = field(default_factory=dict)
    server: LocalServer | None = None
    peer: PyTritonPeer | None = None
    yolo_server: LocalServer | None = None
    yolo_peer: UltralyticsPeer | None = None
    images: list = field(default_factory=list)
    results: dict[str, RatioResult] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def out(self) -> Path:
        return Path(self.opts.out)

    @property
    def url(self) -> str:
        return self.server.grpc_url

    def session(self, model: str):
        if model not in self.sessions:
            self.sessions[model] = ort_session(self.onnx[model])
        return self.sessions[model]

    def served(self, model: str, concurrency: int, label: str, batch: int = 1, url: str | None = None,
               request_count: int | None = None):
        """One perf_analyzer point; its row is kept in raw under ``label``."""
        row, counts = served_point(model, url or self.url, batch, concurrency, self.out / "perf" / label,
                                   self.opts.window, request_count)
        self.raw.setdefault("served", {}).setdefault(label, []).append(
            {**row_to_dict(row), "avg_batch": counts.avg_batch if counts else None})
        return row, counts

    def in_process(self, model: str, batch: int) -> float:
        return in_process(self.onnx[model], get_card(model), batch, self.session(model), self.opts.window)


# -- the ratios ---------------------------------------------------------------------------------------

def serving_efficiency(run: BenchRun) -> Measured:
    """ResNet-50, batch 8: Triton-served img/s over in-process onnxruntime img/s."""
    rows = []

    def served() -> float:
        rows.append(run.served(BIG, 2, "resnet50_bs8_c2", 8, request_count=RESNET_REQUESTS)[0])
        return rows[-1].img_per_s

    pairs = interleave(served, lambda: run.in_process(BIG, 8), run.opts.pairs)
    return Measured(pairs, "Triton gRPC img/s, bs 8, concurrency 2 (perf_analyzer)",
                    "in-process onnxruntime img/s, bs 8",
                    note=f"perf_analyzer windows of {RESNET_REQUESTS} requests (count_windows: a time window of "
                         f"a few seconds holds too few of them on a loaded machine); in-process windows of "
                         f"{run.opts.window.in_process_s:g} s",
                    where_time_goes=f"per request (last pair): {split_text(rows[-1])}")


def serving_efficiency_small(run: BenchRun) -> Measured:
    """The small classifier: bs-1 requests at concurrency 8 (dynamic batching) over in-process bs 1."""
    rows = []

    def served() -> float:
        rows.append(run.served(SMALL, CONCURRENCY, "small_c8")[0])
        return rows[-1].img_per_s

    pairs = interleave(served, lambda: run.in_process(SMALL, 1), run.opts.pairs)
    return Measured(pairs, f"Triton gRPC img/s, bs-1 requests, concurrency {CONCURRENCY}, dynamic batching",
                    "in-process onnxruntime img/s, bs 1",
                    where_time_goes=f"per request (last pair): {split_text(rows[-1])}")


def batching_efficiency(run: BenchRun) -> Measured:
    """Served img/s at concurrency 8 with dynamic batching over in-process onnxruntime at its best batch size."""
    sizes = {bs: run.in_process(SMALL, bs) for bs in (1, 2, 4, 8)}
    best = max(sizes, key=sizes.get)
    counts = []

    def served() -> float:
        row, c = run.served(SMALL, CONCURRENCY, "small_c8")
        counts.append(c.avg_batch if c else None)
        return row.img_per_s

    pairs = interleave(served, lambda: run.in_process(SMALL, best), run.opts.pairs)
    run.raw["in_process_by_batch_size"] = sizes
    batches = ", ".join(f"{c:.2f}" for c in counts if c is not None) or "unknown"
    return Measured(pairs, f"Triton gRPC img/s, bs-1 requests, concurrency {CONCURRENCY}, dynamic batching",
                    f"in-process onnxruntime img/s at its best batch size ({best})",
                    note="in-process img/s by batch size (one window each, to pick the best): "
                         + ", ".join(f"bs {bs}: {v:,.0f}" for bs, v in sizes.items()),
                    where_time_goes=f"images per model execution on the server: {batches}")


def dynamic_batching_gain(run: BenchRun) -> Measured:
    """img/s at concurrency 8, bs-1 requests, dynamic batching on over off (a GPU goal)."""
    rows = {}

    def side(model: str, label: str) -> float:
        rows[label] = run.served(model, CONCURRENCY, label)[0]
        return rows[label].img_per_s

    pairs = interleave(partial(side, SMALL, "small_c8"), partial(side, SMALL_NO_DB, "small_nodb_c8"), run.opts.pairs)
    return Measured(pairs, f"img/s at concurrency {CONCURRENCY}, dynamic batching on (max queue delay 100 µs)",
                    f"img/s at concurrency {CONCURRENCY}, off",
                    where_time_goes=f"on: {split_text(rows['small_c8'])}; off: {split_text(rows['small_nodb_c8'])}")


def cpu_target_vs_pytriton(run: BenchRun) -> Measured:
    """The cpu target against NVIDIA PyTriton serving the same ONNX, same perf_analyzer settings."""
    if run.peer is None:
        raise TritonkitError("PyTriton peer not running")
    rows = {}

    def side(url: str, label: str) -> float:
        rows[label] = run.served(SMALL, CONCURRENCY, label, url=url)[0]
        return rows[label].img_per_s

    pairs = interleave(partial(side, run.url, "small_c8"), partial(side, run.peer.grpc_url, "pytriton_c8"),
                       run.opts.pairs)
    return Measured(pairs, f"cpu target img/s (python backend, onnxruntime), bs-1 requests, concurrency {CONCURRENCY}",
                    f"PyTriton img/s (@batch function, onnxruntime, dynamic batching max 8, 100 µs), same settings",
                    note="same ONNX, both servers running; see benchmarks/pytriton_peer.py for the libpython fix",
                    where_time_goes=f"cpu target: {split_text(rows['small_c8'])}; "
                                    f"PyTriton: {split_text(rows['pytriton_c8'])}")


def _tune_pick(run: BenchRun):
    """tritonkit perf tune on the small model (own server): the best variant by throughput."""
    measure = PerfSpec(model=SMALL, concurrency=ConcurrencyRange(CONCURRENCY, CONCURRENCY),
                       measurement_interval_ms=run.opts.window.served_ms, stability_pct=run.opts.window.stability_pct,
                       max_trials=run.opts.window.max_trials)
    result = run_tune(TuneOptions(card=get_card(SMALL), onnx=run.onnx[SMALL], p99_bound_ms=NO_LATENCY_BOUND_MS,
                                  grid=TUNE_GRID, measure=measure), run.out / "tune")
    if result.best is None:
        raise TritonkitError(f"perf tune measured no variant; see {run.out / 'tune' / 'tune.md'}")
    return result.best.variant


def _model_analyzer_pick(run: BenchRun) -> tuple[Path, dict]:
    """Model Analyzer's quick search on the same model in a tritonkit repository: its pick's folder and row."""
    binary = locate_model_analyzer()
    if binary is None:
        raise TritonkitError("Model Analyzer is not installed (scripts/setup.sh puts it in .venv/model-analyzer)")
    repo = run.tmp / "ma_repo"
    write_model(get_card(SMALL), run.onnx[SMALL], repo, RepoOptions(target="cpu"))
    profile = run_profile(binary, repo, SMALL, run.out / "model_analyzer", MA_SEARCH)
    run.raw["model_analyzer"] = {"rows": profile.rows, "load_failures": profile.load_failures,
                                 "returncode": profile.returncode}
    return profile.pick_folder(), profile.pick


def _serve_picks(run: BenchRun, variant, ma_folder: Path) -> LocalServer:
    """One server with both picks: tune's config written by tritonkit, Model Analyzer's folder as it wrote it."""
    repo = run.tmp / "picks"
    write_model(get_card(SMALL), run.onnx[SMALL], repo, variant.repo_options(RepoOptions(target="cpu", name=TUNE_PICK)))
    shutil.copytree(ma_folder, repo / MA_PICK)
    cfg = parse_config((repo / MA_PICK / "config.pbtxt").read_text(), str(ma_folder / "config.pbtxt"))
    cfg.name = MA_PICK
    (repo / MA_PICK / "config.pbtxt").write_text(config_to_text(cfg))
    server = LocalServer(ServerOptions(model_repository=repo), log_path=run.out / "tritonserver-picks.log")
    server.start(timeout_s=300)
    return server


def tune_vs_model_analyzer(run: BenchRun) -> Measured:
    """img/s of tritonkit perf tune's pick over Model Analyzer's pick, same model, same load, one server."""
    variant = _tune_pick(run)
    ma_folder, ma_row = _model_analyzer_pick(run)
    server = _serve_picks(run, variant, ma_folder)
    rows = {}

    def side(model: str) -> float:
        rows[model] = run.served(model, CONCURRENCY, model, url=server.grpc_url)[0]
        return rows[model].img_per_s

    try:
        pairs = interleave(partial(side, TUNE_PICK), partial(side, MA_PICK), run.opts.pairs)
    finally:
        server.stop()
    return Measured(pairs, f"perf tune's pick ({variant.label}) img/s, bs-1 requests, concurrency {CONCURRENCY}",
                    f"Model Analyzer's pick ({ma_row['Model Config Path']}: max batch {ma_row['Max Batch Size']}, "
                    f"instances {ma_row['Instance Group']}) img/s, same load",
                    note=f"triton-model-analyzer profile, {MA_SEARCH.mode} search (concurrency <= "
                         f"{MA_SEARCH.max_concurrency}, instances <= {MA_SEARCH.max_instances}, max batch <= "
                         f"{MA_SEARCH.max_batch}), local launch of the bundled server, CPU only, its pick the highest "
                         f"throughput it measured; perf tune over delays {list(TUNE_GRID.delays_us)} µs x instances "
                         f"{list(TUNE_GRID.instances)}, best throughput; both picks served side by side by one server",
                    where_time_goes=f"tune: {split_text(rows[TUNE_PICK])}; Model Analyzer: {split_text(rows[MA_PICK])}")


def vs_sequential_client(run: BenchRun) -> Measured:
    """Run-stream img/s over a plain sequential client, same images and model (the small classifier)."""
    card, streams, seqs = get_card(SMALL), [], []

    def stream() -> float:
        streams.append(measure_run_stream(card, run.images, url=run.url, served_name=SMALL_SHARED, batch_size=8,
                                          in_flight=2))
        return streams[-1].p_infer_whole

    def sequential() -> float:
        seqs.append(sequential_client(run.images, card, run.url, SMALL_SHARED))
        return seqs[-1]["img_per_s"]

    pairs = interleave(stream, sequential, run.opts.pairs)
    prof = profile_client(run.images[:48], card)
    run.raw["vs_sequential_client"] = {"run_stream": [s.to_dict() for s in streams], "sequential": seqs,
                                       "client_profile": prof}
    return Measured(pairs, "run stream img/s (bs 8, 2 in flight, 2 decode workers)",
                    "sequential client img/s (decode, preprocess, sync infer bs 1, postprocess)",
                    note=f"{len(run.images)} synthetic 500x375 JPEGs; model copy with onnxruntime allow_spinning 0",
                    where_time_goes=(
                        f"sequential ms per image: {stages_text(seqs[-1]['stages_ms_per_image'])}; run stream (ms "
                        f"per image inside the worker threads, summed): {stages_text(streams[-1].stages_ms_per_image)}"
                        "; client decode+preprocess profile (cProfile, share of the time spent inside): "
                        + ", ".join(f"{x['function']} {x['cumulative_share']:.0%}" for x in prof)
                        + f". Client and server share this host's {os.cpu_count()} CPUs"))


def predict_overhead(run: BenchRun) -> Measured:
    """``tritonkit.connect(...).predict`` img/s over a hand-written tritonclient call with the same
    decode, preprocessing and top-k, batch 1, one thread (the overhead of the public API)."""
    card = get_card(SMALL)
    datas = [item.read_bytes() for item in run.images]
    pairs = interleave(partial(api_predict, datas, run.url, SMALL_SHARED),
                       partial(hand_written_predict, datas, card, run.url, SMALL_SHARED), run.opts.pairs)
    return Measured(pairs, "tritonkit.connect(...).predict(jpeg bytes) img/s (batch 1, one thread)",
                    "hand-written tritonclient img/s (decode, the card's preprocessing, sync gRPC infer bs 1, "
                    "softmax top-k with label names; one thread)",
                    note=f"{len(datas)} synthetic 500x375 JPEGs, the small classifier (copy with onnxruntime "
                         f"allow_spinning 0): the smallest model shows the API's own cost the most")


def run_stream_efficiency(run: BenchRun) -> Measured:
    """p_infer_whole over p_infer_core of the run stream, ResNet-50 bs 8 (both from each repeat)."""
    card, streams = get_card(BIG), []
    for _ in range(run.opts.pairs):
        streams.append(measure_run_stream(card, run.images[:48], url=run.url, served_name=BIG, batch_size=8,
                                          in_flight=2))
    run.raw["run_stream_resnet50"] = [s.to_dict() for s in streams]
    return Measured([(s.p_infer_whole, s.p_infer_core) for s in streams],
                    "p_infer_whole (images / stream wall time), ResNet-50 bs 8",
                    "p_infer_core (images / time a request was in flight)",
                    note="both figures come from the same stream; each repeat is one pair",
                    where_time_goes="stream CPU ms per image (last repeat): "
                                    + stages_text(streams[-1].stages_ms_per_image))


def client_preprocess_vs_torchvision(run: BenchRun) -> Measured:
    """tritonkit decode + preprocess img/s per core over torchvision's PIL-path reference, same JPEGs."""
    card = get_card(BIG)
    pp = card.preprocess
    photos = pps.photos(run.opts.photos)
    reference = pps.torchvision_reference(pp)
    ours, theirs = pps.eval_path(card), lambda d: reference(pps.pil_loader(d))
    # one thread each, timed by that thread's CPU time: img/s per core, whatever else runs here
    one = partial(pps.one_pass, inputs=photos, clock=time.thread_time)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1):
            pps.one_pass(ours, photos[:8]), pps.one_pass(theirs, photos[:8])  # warm-up
            pairs = interleave(partial(one, ours), partial(one, theirs), max(run.opts.pairs, 5))
    finally:
        torch.set_num_threads(threads)
    diff = max(float(numpy.abs(ours(d) - reference(pps.pil_loader(d)).numpy()).max()) for d in photos)
    run.raw["client_preprocess_max_abs_diff"] = diff
    run.raw["client_preprocess_decoder"] = pps.decoder_name()
    return Measured(pairs, "tritonkit decode + preprocess img/s per core (what eval runs per image: the run-stream "
                           "engine's load_item with the classification adapter; one thread, its CPU time)",
                    "torchvision reference img/s per core (pil_loader, Resize, CenterCrop, ToTensor, Normalize; "
                    "one thread, its CPU time)",
                    note=f"exactness: max abs diff vs torchvision's output {diff:.1e} (after normalisation); "
                         f"JPEG decoder: {pps.decoder_name()}; "
                         f"{len(photos)} photo-like JPEGs q90, 500x375 to 640x480, resnet50's card "
                         f"({pp.resize_to}->{pp.size} {pp.interpolation})")


def _vs_ultralytics(batch: int, run: BenchRun) -> Measured:
    """tritonkit's run stream through Triton over ultralytics' predict in its own process, same ONNX
    (yolo11n, 640), same JPEG files, same NMS settings (conf 0.25, IoU 0.7), batch ``batch`` both sides."""
    card, images, streams, theirs = get_card(YOLO), run.images[:YOLO_IMAGES], [], []

    def ours() -> float:
        streams.append(measure_run_stream(card, images, url=run.yolo_server.grpc_url, served_name=YOLO,
                                          batch_size=batch, in_flight=2))
        return streams[-1].p_infer_whole

    def ultralytics() -> float:
        theirs.append(run.yolo_peer.measure(batch))
        return theirs[-1]["img_per_s"]

    pairs = interleave(ours, ultralytics, run.opts.pairs)
    run.raw[f"vs_ultralytics_bs{batch}"] = {"run_stream": [s.to_dict() for s in streams], "ultralytics": theirs}
    return Measured(pairs, f"tritonkit run stream img/s through Triton (cpu target), bs {batch}, 2 in flight, "
                           f"2 decode workers, client NMS (speed profile: conf 0.25, IoU 0.7)",
                    f"ultralytics YOLO(onnx).predict img/s in its own process, {batch} files per call, "
                    f"conf 0.25, IoU 0.7",
                    note=f"{len(images)} synthetic 500x375 JPEG files, each side one pass per pair; the same ONNX "
                         f"(yolo11n from ultralytics' YAML, seeded random weights, dynamic export); ultralytics "
                         f"predicts with rect=False, so both letterbox every image to 640 x 640; client, server and "
                         f"the ultralytics process share this host's {os.cpu_count()} CPUs",
                    where_time_goes="run stream ms per image inside the worker threads (last pair): "
                                    + stages_text(streams[-1].stages_ms_per_image))


GPU_ONLY = ("a GPU goal (Triton's tutorial on an A100); on this CPU the small model itself gains little from "
            "batching, so it is reported, not judged")

RATIOS: tuple[RatioSpec, ...] = (
    RatioSpec("serving_efficiency", 0.97, serving_efficiency),
    RatioSpec("serving_efficiency_small", 0.80, serving_efficiency_small),
    RatioSpec("batching_efficiency", 0.90, batching_efficiency),
    RatioSpec("cpu_target_vs_pytriton", 1.0, cpu_target_vs_pytriton),
    RatioSpec("vs_sequential_client", 2.0, vs_sequential_client),
    RatioSpec("run_stream_efficiency", 0.90, run_stream_efficiency),
    RatioSpec("predict_overhead", 0.95, predict_overhead),
    RatioSpec("client_preprocess_vs_torchvision", 1.5, client_preprocess_vs_torchvision),
    RatioSpec("tune_vs_model_analyzer", 1.0, tune_vs_model_analyzer),
    RatioSpec("dynamic_batching_gain", 2.0, dynamic_batching_gain, judged=False, why_not_judged=GPU_ONLY),
    RatioSpec("vs_ultralytics_predict_bs1", 1.0, partial(_vs_ultralytics, 1)),
    RatioSpec("vs_ultralytics_predict_bs8", 1.0, partial(_vs_ultralytics, 8)),
)
PEER_RATIO = "cpu_target_vs_pytriton"
YOLO_RATIOS = ("vs_ultralytics_predict_bs1", "vs_ultralytics_predict_bs8")
NEEDS = {PEER_RATIO: ("start_server", "start_pytriton"), "client_preprocess_vs_torchvision": (),
         "tune_vs_model_analyzer": ("prepare_models",), **{name: ("start_yolo",) for name in YOLO_RATIOS}}


# -- the steps ---------------------------------------------------------------------------------------

def prepare_models(run: BenchRun) -> str:
    cache = Path(run.opts.cache_dir)
    for name in (BIG, SMALL):
        run.onnx[name] = random_weights_onnx(get_card(name), cache)
    run.images = synthetic_items(run.opts.images)
    return ", ".join(f"{k}: {v}" for k, v in run.onnx.items())


def start_server(run: BenchRun) -> str:
    repo = run.tmp / "repo"
    big, small = get_card(BIG), get_card(SMALL)
    write_model(big, run.onnx[BIG], repo, RepoOptions(target="cpu"))
    write_model(small, run.onnx[SMALL], repo, RepoOptions(target="cpu"))
    write_model(small, run.onnx[SMALL], repo, RepoOptions(target="cpu", name=SMALL_NO_DB, dynamic_batching=False))
    write_model(small, run.onnx[SMALL], repo, RepoOptions(target="cpu", name=SMALL_SHARED, ort_spinning=False))
    run.server = LocalServer(ServerOptions(model_repository=repo), log_path=run.out / "tritonserver.log")
    run.server.start(timeout_s=300)
    return f"bundled tritonserver at {run.url}"


def start_pytriton(run: BenchRun) -> str:
    run.peer = PyTritonPeer(run.onnx[SMALL], get_card(SMALL), SMALL, run.out / "pytriton.log")
    return run.peer.start()


def stop_pytriton(run: BenchRun) -> None:
    run.peer.stop()
    run.peer = None


def stop_server(run: BenchRun) -> None:
    run.server.stop()


def start_yolo(run: BenchRun) -> str:
    """yolo11n exported by ultralytics (cached), served alone by its own bundled server (so the other
    ratios' models do not share it), and the ultralytics peer predicting on the same JPEG files."""
    onnx = export_random("yolo11n.yaml", get_card(YOLO).preprocess.size, Path(run.opts.cache_dir) / "yolo11n_random.onnx")
    run.onnx[YOLO] = onnx
    files = run.tmp / "yolo_images"
    files.mkdir()
    for item in run.images[:YOLO_IMAGES]:
        (files / f"{item.key}.jpg").write_bytes(item.data)
    repo = run.tmp / "yolo_repo"
    write_model(get_card(YOLO), onnx, repo, RepoOptions(target="cpu"))
    run.yolo_server = LocalServer(ServerOptions(model_repository=repo), log_path=run.out / "tritonserver-yolo.log")
    run.yolo_server.start(timeout_s=300)
    run.yolo_peer = UltralyticsPeer(onnx, files, get_card(YOLO).preprocess.size, run.out / "ultralytics.log")
    return f"{YOLO} served at {run.yolo_server.grpc_url}; " + run.yolo_peer.start()


def stop_yolo(run: BenchRun) -> None:
    if run.yolo_peer is not None:
        run.yolo_peer.stop()
    if run.yolo_server is not None:
        run.yolo_server.stop()


def measure_ratio(spec: RatioSpec, run: BenchRun) -> str:
    """One ratio's step: its pairs measured and judged, the files rewritten. A failure is kept as
    the ratio's error (reported "not measured") and fails the step."""
    before = load_average()
    try:
        measured = spec.measure(run)
    except Exception as exc:
        run.results[spec.name] = RatioResult.of(spec, error=str(exc).strip().splitlines()[0] if str(exc).strip()
                                                else type(exc).__name__, load_before=before,
                                                load_after=load_average())
        write_files(run)
        raise
    result = RatioResult.of(spec, measured, load_before=before, load_after=load_average())
    run.results[spec.name] = result
    run.raw.setdefault("ratios", {})[spec.name] = measured.raw
    write_files(run)
    return f"{result.median:.3f} (min {result.min:.3f}, max {result.max:.3f}): {result.verdict}"


def write_report(run: BenchRun) -> str:
    """bench.json and BENCHMARKS.md, with every ratio: those whose step never ran are "not measured"."""
    for spec in selected(run.opts):
        if spec.name not in run.results:
            why = next((r.detail for r in run.log.records if r.id == spec.name), "") or "not run"
            run.results[spec.name] = RatioResult.of(spec, error=why)
    run.machine["load_avg_end"] = os.getloadavg()
    return str(write_files(run))


def selected(opts: BenchOptions) -> tuple[RatioSpec, ...]:
    return tuple(s for s in RATIOS if not opts.only or s.name in opts.only)


def pipeline(opts: BenchOptions) -> Pipeline:
    """The steps in order. The PyTriton peer runs only around its own ratio, so it is not there,
    idle or not, while the others are measured."""
    ratio = {s.name: Step(s.name, partial(measure_ratio, s), needs=NEEDS.get(s.name, ("start_server",)))
             for s in selected(opts)}
    peer = []
    yolo = [ratio.pop(name) for name in YOLO_RATIOS if name in ratio]
    if yolo:
        peer = [Step("start_yolo", start_yolo, needs=("prepare_models",)), *yolo,
                Step("stop_yolo", stop_yolo, needs=("start_yolo",), cleanup=True)]
    if PEER_RATIO in ratio:
        peer += [Step("start_pytriton", start_pytriton, needs=("prepare_models",)), ratio.pop(PEER_RATIO),
                 Step("stop_pytriton", stop_pytriton, needs=("start_pytriton",), cleanup=True)]
    return Pipeline([
        Step("prepare_models", prepare_models),
        Step("start_server", start_server, needs=("prepare_models",)),
        *ratio.values(),
        *peer,
        Step("stop_server", stop_server, needs=("start_server",), cleanup=True),
        Step("write_report", write_report, cleanup=True),
    ])


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "numpy": numpy.__version__,
            "onnxruntime": ort.__version__, "load_avg_start": os.getloadavg()}


def run_bench(opts: BenchOptions, on_step=None) -> BenchRun:
    """Every step of :func:`pipeline`; bench.json and BENCHMARKS.md are rewritten after each ratio."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    log = StepLog(out / "steps.json", on_event=on_step)
    with tempfile.TemporaryDirectory(prefix="tritonkit-bench-") as tmp:
        run = BenchRun(opts, log, Path(tmp), machine=machine())
        pipeline(opts).run(run, log)
    write_files(run)  # once more, with the report step's own outcome
    return run


# -- the report ---------------------------------------------------------------------------------------

def _f(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _load(before, after) -> str:
    return "—" if before is None else f"{before:.2f} → {_f(after, 2)}"


def summary_table(results: list[RatioResult]) -> str:
    rows = [[r.name, _f(r.median), _f(r.min), _f(r.max), f"≥ {r.goal:g}", _f(r.spread), _f(r.margin), r.verdict,
             len(r.pairs), _f(r.numerator, 2), _f(r.denominator, 2), _load(r.load_before, r.load_after)]
            for r in results]
    return markdown_table(["ratio", "median", "min", "max", "goal", "spread", "margin", "verdict", "pairs",
                           "numerator (median)", "denominator (median)", "load 1-min before → after"], rows)


def ratio_section(r: RatioResult) -> list[str]:
    if not r.pairs:
        return [f"### {r.name}: not measured", "", f"- error: {r.error or 'no pair measured'}", ""]
    lines = [f"### {r.name} = {r.median:.3f} (min {r.min:.3f}, max {r.max:.3f}; goal ≥ {r.goal:g}: {r.verdict})", "",
             f"- numerator (A): {r.numerator_is}", f"- denominator (B): {r.denominator_is}",
             "- pairs in the order measured (A / B = ratio): "
             + "; ".join(f"{a:,.2f} / {b:,.2f} = {a / b:.3f}" for a, b in r.pairs if b),
             f"- machine load (1-min) before → after: {_load(r.load_before, r.load_after)}"]
    if r.why_not_judged:
        lines.append(f"- not judged: {r.why_not_judged}")
    lines += [f"- {r.note}"] if r.note else []
    lines += [f"- where the time goes: {r.where_time_goes}"] if r.where_time_goes else []
    return lines + [""]


def benchmarks_markdown(results: list[RatioResult], machine_info: dict, steps: list[StepRecord]) -> str:
    m = machine_info
    load = ", ".join(f"{v:.2f}" for v in m.get("load_avg_start", ())) or "?"
    end = ", ".join(f"{v:.2f}" for v in m.get("load_avg_end", ())) or "?"
    lines = [
        "# Benchmarks", "",
        "Generated by `make bench` (`python -m benchmarks.bench`); do not edit by hand. Each ratio's two figures "
        "(A, B) were measured in one run as interleaved pairs (A B A B ...) on the machine below; the ratio is the "
        "median of the pairs' A/B, with min and max. A ratio whose spread (max - min) exceeds its margin to the goal "
        "is **inconclusive**: this machine's noise cannot tell met from unmet. bench.json holds the raw numbers.", "",
        f"Machine: {m.get('processor')}, {m.get('cpus')} CPUs, {m.get('platform')}; onnxruntime "
        f"{m.get('onnxruntime')}; load average (1, 5, 15 min) at start {load}, at the end {end}. Server: the "
        "bundled tritonserver (CPU), python backend running onnxruntime (the cpu target). Served figures are "
        "perf_analyzer's (C++ client, gRPC). Models: `resnet50` and `demo_shapes` architectures with random "
        "weights (speed does not depend on weight values).", "",
        summary_table(results).rstrip(), "", "## Each ratio", ""]
    for r in results:
        lines += ratio_section(r)
    lines += ["## Steps", "", markdown_table(["step", "status", "seconds", "detail"],
                                             [[s.name, s.status, f"{s.seconds:.1f}", s.detail] for s in steps])]
    return "\n".join(lines).rstrip() + "\n"


def write_files(run: BenchRun) -> Path:
    results = [run.results[s.name] for s in selected(run.opts) if s.name in run.results]
    data = {"machine": run.machine, "models": {k: str(v) for k, v in run.onnx.items()},
            "ratios": {r.name: r.to_dict() for r in results}, "raw": run.raw, "steps": run.log.to_dict()["steps"],
            "duration_s": round(time.time() - run.started, 1)}
    path = atomic_write_json(run.out / "bench.json", data)
    text = benchmarks_markdown(results, run.machine, run.log.records)
    atomic_write_text(run.out / "BENCHMARKS.md", text)
    if run.opts.benchmarks_md is not None:
        atomic_write_text(run.opts.benchmarks_md, text)
    return path


# -- command line -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=BenchOptions.out)
    p.add_argument("--benchmarks-md", type=Path, default=BenchOptions.benchmarks_md)
    p.add_argument("--cache-dir", type=Path, default=BenchOptions.cache_dir)
    p.add_argument("--pairs", type=int, default=BenchOptions.pairs, help="interleaved pairs per ratio (>= 3)")
    p.add_argument("--images", type=int, default=BenchOptions.images, help="synthetic JPEGs for the client ratios")
    p.add_argument("--window-ms", type=int, default=Window.served_ms, help="perf_analyzer window")
    p.add_argument("--in-process-s", type=float, default=Window.in_process_s, help="in-process window")
    p.add_argument("--only", default="", help="comma-separated ratio names to measure (default: all)")
    args = p.parse_args(argv)
    try:
        opts = BenchOptions(out=args.out, benchmarks_md=args.benchmarks_md, cache_dir=args.cache_dir,
                            pairs=args.pairs, images=args.images,
                            only=tuple(n.strip() for n in args.only.split(",") if n.strip()),
                            window=Window(served_ms=args.window_ms, in_process_s=args.in_process_s))
        run = run_bench(opts, on_step=lambda r: print(f"[bench] {r.line()}", flush=True))
    except TritonkitError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    for r in run.results.values():
        print(f"{r.name:34s} {_f(r.median):>8s}  [{_f(r.min)}, {_f(r.max)}]  goal >= {r.goal:g}  {r.verdict}")
    print(f"wrote {opts.out / 'bench.json'} and {opts.benchmarks_md or opts.out / 'BENCHMARKS.md'}")
    return 0 if run.log.passed else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
