"""The overhead ladder: one model, one batch size, each way of running it, side by side in one run.

Rungs, from the baseline down to the full client pipeline:

1. ``trtexec`` — the TensorRT engine alone (GPU hosts): ``trtexec --loadEngine=PLAN
   --shapes=...`` on the plan given with ``--plan``, its "Throughput: N qps" (batches per
   second) times the batch. Not measured without a plan and trtexec (a CPU host); the row
   stays in the table with the reason, so the GPU table has the same shape. When measured it
   is the baseline (the engine's compute limit), and every other rung is a ratio to it.
2. ``onnxruntime in-process`` — the same ONNX, same onnxruntime settings as the served model
   (CPU provider, inter-op 1, the configured intra-op threads), called back to back in this
   process. Without a trtexec figure it is the baseline and every other rung is a ratio to
   it. It is not a compute limit: the server runs the same graph with its own threads and
   batches, and on a busy machine either can catch a quieter moment.

A rung measured above its baseline by more than :data:`NOISE_TOLERANCE` is flagged noisy in the
table and in ``ladder.json`` (``noisy``): measure again on a quiet machine before reading ratios.
3. ``Triton gRPC``, ``Triton HTTP``, ``Triton gRPC + system shm`` — the served model under
   the same in-flight concurrency, measured with perf_analyzer.
4. ``run stream`` — the whole client pipeline (decode + preprocess + infer + postprocess,
   :func:`tritonkit.client.pipeline.run_stream`) at the same batch size and in-flight count.

Why perf_analyzer for the served rungs: it is a C++ load generator, so the time it spends
per request is small and nearly the same for every protocol — the ratio then measures the
serving path, not a Python client's GIL and numpy serialisation; it handles gRPC, HTTP and
system shared memory with one flag each, and stabilises every rung the same way (windows
until throughput and latency agree within the stability percentage). The in-process rung
uses the same windowing rule (:func:`measure_onnxruntime`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.build_engines.trtexec import shape_arg
from tritonkit.cards import ModelCard
from tritonkit.client.items import IMAGE_SUFFIXES, FileItem
from tritonkit.client.infer import ClientOptions, TritonInfer
from tritonkit.client.pipeline import EngineOptions, run_stream
from tritonkit.client.timing import flagperf_metrics
from tritonkit.errors import TritonkitError
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.results import TextTable, write_markdown
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec, card_input_shapes
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.report import write_json
from tritonkit.serve.local import LocalServer, ServerOptions
from tritonkit.tasks.base import task_for_card
from tritonkit.triton import input_shape

ort = lazy_import("onnxruntime")

TRTEXEC_NOT_HERE = ("not measured: trtexec runs a TensorRT engine on an NVIDIA GPU; this host has "
                    "{why}. On a GPU host build the plan with `tritonkit build` and pass it with --plan.")


@dataclass(frozen=True)
class InProcessResult:
    """onnxruntime called back to back in this process."""

    img_per_s: float
    ms_per_batch: float
    windows_img_per_s: tuple[float, ...]
    stable: bool
    batches: int


def ort_session(onnx_path: str | os.PathLike, intra_op_threads: int = 0):
    """An onnxruntime CPU session set up like the served cpu-target model (inter-op 1)."""

    options = ort.SessionOptions()
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise TritonkitError(f"{onnx_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


def windows_stable(values: Sequence[float], stability_pct: float, last: int = 3) -> bool:
    """perf_analyzer's rule: the last ``last`` windows' max/min within ``stability_pct``."""
    if len(values) < last:
        return False
    tail = values[-last:]
    return min(tail) > 0 and max(tail) / min(tail) - 1.0 <= stability_pct / 100.0


def measure_onnxruntime(onnx_path: str | os.PathLike, card: ModelCard, batch_size: int, *,
                        window_s: float = 2.0, stability_pct: float = 10.0, max_windows: int = 8,
                        intra_op_threads: int = 0, session=None,
                        shape_hw: tuple[int, int] | None = None) -> InProcessResult:
    """img/s of ``session.run`` on random input of ``batch_size``, back to back, in windows of
    ``window_s`` until three windows agree within ``stability_pct`` (the mean of those three).
    Variable H and W are ``shape_hw``, else the card's ``dynamic_shape.opt``."""
    session = session or ort_session(onnx_path, intra_op_threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(input_shape(card, batch_size, shape_hw)).astype(card.input.numpy_dtype)
    names = [o.name for o in card.outputs]
    feed = {card.input.name: x}
    for _ in range(2):
        session.run(names, feed)
    windows: list[float] = []
    batches = 0
    while len(windows) < max_windows:
        n = 0
        t0 = time.perf_counter()
        while True:
            session.run(names, feed)
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= window_s:
                break
        batches += n
        windows.append(n * batch_size / elapsed)
        if windows_stable(windows, stability_pct):
            break
    stable = windows_stable(windows, stability_pct)
    used = windows[-3:]
    img_s = float(np.mean(used))
    return InProcessResult(img_s, batch_size / img_s * 1e3, tuple(round(w, 3) for w in windows), stable, batches)


# --------------------------------------------------------------------------------------------
# Images for the run-stream rung


@dataclass(frozen=True)
class BytesItem:
    """An encoded image held in memory (the run-stream Item protocol: key, read_bytes, label)."""

    key: str
    data: bytes
    label: int = 0

    def read_bytes(self) -> bytes:
        return self.data


def synthetic_items(n: int, *, size: tuple[int, int] = (500, 375), seed: int = 0,
                    quality: int = 90) -> list[BytesItem]:
    """``n`` JPEGs of ImageNet-like size (smooth colour fields + noise, so they compress like
    photos, not like flat colour). Labels are 0: the rungs time the pipeline, not accuracy."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    items = []
    for i in range(n):
        a, b, c = rng.uniform(0.005, 0.05, 3)
        base = np.stack([np.sin(xx * a + i), np.cos(yy * b + 2 * i), np.sin((xx + yy) * c)], axis=-1)
        img = ((base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        items.append(BytesItem(f"synthetic_{i:05d}.jpg", buf.getvalue()))
    return items


def folder_items(folder: str | os.PathLike, limit: int) -> list:
    """Up to ``limit`` image files under ``folder`` (sorted, label 0)."""

    root = Path(folder)
    if not root.is_dir():
        raise TritonkitError(f"{root}: image folder not found")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise TritonkitError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [FileItem(p.relative_to(root).as_posix(), p, 0) for p in paths]


# --------------------------------------------------------------------------------------------
# The ladder


@dataclass(frozen=True)
class LadderOptions:
    """One ladder run. ``grpc_url`` None -> the bundled server is started for the run (its HTTP
    address too); ``served_name`` None -> the card's name; ``http_url`` None -> no HTTP rung."""

    card: ModelCard
    onnx: Path
    grpc_url: str | None = None
    http_url: str | None = None
    served_name: str | None = None
    batch_size: int = 8
    concurrency: int = 2
    measurement_interval_ms: int = 3000
    stability_pct: float = 10.0
    max_trials: int = 8
    intra_op_threads: int = 0
    stream_images: int = 128
    stream_workers: int = 2
    images: tuple = ()               # run-stream items; () -> synthetic_items(stream_images)
    plan: Path | None = None         # TensorRT plan of the same model: the trtexec rung (GPU hosts)
    trtexec: str | None = None       # the trtexec binary (default: on PATH)
    shape_hw: tuple[int, int] | None = None  # variable H, W of the input; None -> the card's dynamic_shape.opt

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1:
            raise TritonkitError("batch size and concurrency must be >= 1")
        if self.batch_size > self.card.max_batch_size:
            raise TritonkitError(f"batch size {self.batch_size} is above card {self.card.name!r}'s max "
                                 f"{self.card.max_batch_size}")
        input_shape(self.card, 1, self.shape_hw)  # a bad shape_hw, or variable dims with no size, fails here

    @property
    def model(self) -> str:
        return self.served_name or self.card.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input shape every rung uses, batch included."""
        return input_shape(self.card, self.batch_size, self.shape_hw)


@dataclass(frozen=True)
class Rung:
    """One way of running the model: ``img_per_s`` None when not measured (``note`` says why)."""

    name: str
    how: str
    img_per_s: float | None = None
    p99_ms: float | None = None
    note: str = ""

    def ratio(self, limit: float | None) -> float | None:
        if self.img_per_s is None or not limit:
            return None
        return self.img_per_s / limit


@dataclass
class LadderResult:
    options: LadderOptions
    rungs: list[Rung] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def limit_rung(self) -> "Rung | None":
        """The baseline: the trtexec rung when it was measured (GPU host, the engine's compute
        limit), else in-process onnxruntime at the same batch size."""
        for name in (RUNG_TRTEXEC, RUNG_ORT):
            r = self.rung(name)
            if r is not None and r.img_per_s:
                return r
        return None

    @property
    def limit(self) -> float | None:
        """img/s of :attr:`limit_rung`."""
        r = self.limit_rung
        return r.img_per_s if r is not None else None

    def rung(self, name: str) -> Rung | None:
        return next((r for r in self.rungs if r.name == name), None)

    @property
    def baseline_text(self) -> str:
        """What the ratios are to, named for what it is."""
        r = self.limit_rung
        if r is None:
            return "no baseline measured"
        if r.name == RUNG_TRTEXEC:
            return f"{r.name}, the engine alone (its compute limit)"
        return f"{r.name} at the same batch size ({self.options.batch_size}), the same ONNX without serving"

    def noisy(self) -> list[str]:
        """Rungs measured above the baseline by more than NOISE_TOLERANCE (not a real gain: noise)."""
        base = self.limit_rung
        return [r.name for r in self.rungs if r is not base and (r.ratio(self.limit) or 0.0) > NOISE_TOLERANCE]

    def table(self) -> TextTable:
        o = self.options
        rows = []
        noisy = self.noisy()
        for r in self.rungs:
            ratio = r.ratio(self.limit)
            note = r.note
            if r.name in noisy:
                note = (f"{note}; " if note else "") + f"noisy: {ratio - 1:.0%} above the baseline"
            rows.append((r.name, f"{r.img_per_s:,.1f}" if r.img_per_s is not None else "not measured",
                         f"{ratio:.3f}" if ratio is not None else "—",
                         f"{r.p99_ms:,.2f}" if r.p99_ms is not None else "—", r.how, note))
        warning = (f" {len(noisy)} rung(s) measured above the baseline: a served rung cannot beat the same "
                   "graph run in process at the same batch size, so these ratios are noise (load from other "
                   "processes changed between rungs); measure again on a quiet machine.") if noisy else ""
        shape = "x".join(map(str, o.input_shape[1:]))
        return TextTable(
            f"overhead ladder: {o.model}, batch {o.batch_size}, input {shape}, {o.concurrency} in flight",
            ("rung", "img/s", "÷ baseline", "p99 ms/req", "measured with", "note"), tuple(rows),
            note=f"Measured one after another in one run on this machine; ratios are to {self.baseline_text}."
                 + warning)

    def to_json(self) -> dict:
        o = self.options
        return {"model": o.model, "card": o.card.name, "onnx": str(o.onnx), "batch_size": o.batch_size,
                "concurrency": o.concurrency, "input_shape": list(o.input_shape), "limit_img_per_s": self.limit,
                "limit_rung": self.limit_rung.name if self.limit_rung else None,
                "baseline": self.baseline_text, "noisy": self.noisy(),
                "rungs": [{"name": r.name, "how": r.how, "img_per_s": r.img_per_s, "p99_ms": r.p99_ms,
                           "ratio": r.ratio(self.limit), "note": r.note} for r in self.rungs]}


NOISE_TOLERANCE = 1.05  # a rung above 105% of its baseline is flagged noisy
RUNG_TRTEXEC = "trtexec (TensorRT engine)"
RUNG_ORT = "onnxruntime in-process"
RUNG_GRPC = "Triton gRPC"
RUNG_HTTP = "Triton HTTP"
RUNG_SHM = "Triton gRPC + system shm"
RUNG_STREAM = "run stream (decode+preprocess+infer+postprocess)"


_TRT_THROUGHPUT = re.compile(r"Throughput:\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*qps")
# "[I] Latency: min = ..." but not "H2D Latency:", "D2H Latency:" or "End-to-End Host Latency:"
_TRT_LATENCY = re.compile(r"(?:^|\]\s)Latency:([^\n]*)", re.M)
_TRT_GPU = re.compile(r"GPU Compute Time:([^\n]*)")
_TRT_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+)%\))\s*=\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*ms")


@dataclass(frozen=True)
class TrtexecPerf:
    """trtexec's performance summary: batches per second and latency per batch (ms)."""

    qps: float
    latency_ms: dict
    gpu_compute_ms: dict

    def img_per_s(self, batch_size: int) -> float:
        return self.qps * batch_size


def _trt_stats(text: str) -> dict:
    return {(f"p{m.group(2)}" if m.group(2) else m.group(1)): float(m.group(3)) for m in _TRT_STAT.finditer(text)}


def parse_trtexec_perf(text: str) -> TrtexecPerf:
    """The "=== Performance summary ===" of trtexec's output (TensorRT 8.x and 10.x spellings)."""
    summary = text.split("=== Performance summary ===", 1)[-1]
    found = _TRT_THROUGHPUT.search(summary)
    if not found:
        raise TritonkitError("trtexec printed no 'Throughput: N qps' line (no performance summary)")
    qps = float(found.group(1))
    if not (math.isfinite(qps) and qps > 0):
        raise TritonkitError(f"trtexec reported a throughput of {qps} qps")
    latency = _TRT_LATENCY.search(summary)
    gpu = _TRT_GPU.search(summary)
    return TrtexecPerf(qps, _trt_stats(latency.group(1)) if latency else {}, _trt_stats(gpu.group(1)) if gpu else {})


def trtexec_bench_argv(trtexec: str | os.PathLike, plan: str | os.PathLike, input_name: str,
                       shape: Sequence[int], *, warmup_ms: int = 500, duration_s: int = 3) -> list[str]:
    """trtexec timing an existing plan at one input shape (batch included)."""

    return [str(trtexec), f"--loadEngine={plan}", f"--shapes={shape_arg(input_name, tuple(shape))}",
            f"--warmUp={warmup_ms}", f"--duration={duration_s}"]


def trtexec_rung(plan: str | os.PathLike | None = None, card: ModelCard | None = None, batch_size: int = 1, *,
                 trtexec: str | None = None, duration_s: int = 3, timeout_s: float = 900.0,
                 log_path: Path | None = None, shape_hw: tuple[int, int] | None = None) -> Rung:
    """The TensorRT rung: measured with trtexec when a plan and trtexec are there (a GPU host),
    else reported as not measured with the reason."""
    binary = trtexec or shutil.which("trtexec")
    if plan is None or binary is None or card is None:
        if binary is None:
            why = "no trtexec on PATH"
        else:
            why = "no TensorRT plan given (--plan)" if plan is None else "no model card for the plan"
        if shutil.which("nvidia-smi") is None:
            why += " and no NVIDIA GPU"
        return Rung(RUNG_TRTEXEC, "trtexec", note=TRTEXEC_NOT_HERE.format(why=why))
    plan = Path(plan)
    how = "trtexec --loadEngine"
    if not plan.is_file():
        return Rung(RUNG_TRTEXEC, how, note=f"failed: {plan}: TensorRT plan not found")
    argv = trtexec_bench_argv(binary, plan, card.input.name, input_shape(card, batch_size, shape_hw),
                              duration_s=duration_s)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except OSError as exc:
        return Rung(RUNG_TRTEXEC, how, note=f"failed: cannot run {binary}: {exc.strerror or exc}")
    except subprocess.TimeoutExpired:
        return Rung(RUNG_TRTEXEC, how, note=f"failed: trtexec did not finish in {timeout_s:g} s")
    output = (proc.stdout or "") + (proc.stderr or "")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ {' '.join(argv)}\n{output}")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith("&&&&")]
        return Rung(RUNG_TRTEXEC, how, note=f"failed: trtexec exit code {proc.returncode}: "
                                            f"{lines[-1] if lines else '(no output)'}")
    try:
        perf = parse_trtexec_perf(output)
    except TritonkitError as exc:
        return Rung(RUNG_TRTEXEC, how, note=f"failed: {exc}")
    note = f"{perf.qps:,.1f} batches/s"
    if "mean" in perf.latency_ms:
        note += f", {perf.latency_ms['mean']:.3f} ms per batch (mean)"
    if "mean" in perf.gpu_compute_ms:
        note += f", GPU compute {perf.gpu_compute_ms['mean']:.3f} ms"
    return Rung(RUNG_TRTEXEC, how, perf.img_per_s(batch_size), perf.latency_ms.get("p99"), note=note)


def _served_rung(name: str, o: LadderOptions, url: str, protocol: str, shm: str, out: Path) -> Rung:
    spec = PerfSpec(model=o.model, url=url, protocol=protocol, batch_size=o.batch_size,
                    concurrency=ConcurrencyRange(o.concurrency, o.concurrency), measurement_mode="time_windows",
                    measurement_interval_ms=o.measurement_interval_ms, stability_pct=o.stability_pct,
                    max_trials=o.max_trials, shared_memory=shm,
                    input_shapes=card_input_shapes(o.card, o.shape_hw))
    how = f"perf_analyzer -i {protocol}" + (f" --shared-memory {shm}" if shm != "none" else "")
    result = run_sweep(spec, out, SweepOptions(plot=False))
    if not result.rows:
        failure = result.points[0].error if result.points else "no point ran"
        return Rung(name, how, note=f"failed: {failure}")
    row = result.rows[0]
    return Rung(name, how, row.img_per_s, row.p99_us / 1000.0,
                note=f"server queue {row.split.server_queue_us / 1000:.2f} ms, compute "
                     f"{row.split.server_compute_us / 1000:.2f} ms per request")


@dataclass(frozen=True, kw_only=True)
class StreamMeasurement:
    """One timed run stream: FlagPerf metrics (``p_infer_whole``, ``p_infer_core`` in img/s,
    ``latency`` in ms per request, ``e2e_time`` s), images, wall time and CPU ms per image per stage."""

    e2e_time: float
    p_infer_whole: float | None
    p_infer_core: float | None
    latency: dict
    images: int
    wall_s: float
    stages_ms_per_image: dict

    def to_dict(self) -> dict:
        return asdict(self)


def measure_run_stream(card: ModelCard, items: Sequence, *, url: str, served_name: str, batch_size: int,
                       in_flight: int, workers: int = 2, protocol: str = "grpc") -> StreamMeasurement:
    """The eval's run stream against the served model, with the card's task adapter for images
    without ground truth (the task registry's ``timing_adapter``)."""
    adapter = task_for_card(card).timing_adapter(card)
    client = TritonInfer(card, ClientOptions(url=url, protocol=protocol, model_name=served_name,
                                             in_flight=in_flight), max_batch=batch_size)
    with client:
        engine = EngineOptions(batch_size=batch_size, workers=workers, in_flight=in_flight, progress=False)
        # warm-up pass over a few batches, so connection set-up is not timed
        run_stream(list(items[:batch_size * in_flight]), adapter, client, engine)
        t0 = time.perf_counter()
        stream = run_stream(list(items), adapter, client, engine)
        wall = time.perf_counter() - t0
    if stream.errors:
        raise TritonkitError(f"run stream: {len(stream.errors)} images failed, first: {stream.errors[0]}")
    return StreamMeasurement(**flagperf_metrics(stream.timing, wall), images=stream.evaluated, wall_s=stream.wall_s,
                             stages_ms_per_image={k: v.get("ms_per_image")
                                                  for k, v in stream.timing.per_stage().items()})


def run_ladder(options: LadderOptions, out_dir: str | os.PathLike,
               on_rung: Callable[[Rung], None] | None = None) -> LadderResult:
    """Measure every rung one after another; the report is rewritten after each rung, and a
    rung that fails is kept as "not measured" with its one-line reason. Without ``grpc_url`` the
    bundled server serves the card's ONNX for the run (:func:`bundled_server`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if options.grpc_url is None:
            server = stack.enter_context(bundled_server(options, out))
            options = replace(options, grpc_url=server.grpc_url, http_url=server.http_url,
                              served_name=options.card.name)
        result = LadderResult(options, out_dir=out)
        for rung in _rungs(options, out):
            result.rungs.append(rung)
            write_ladder(result)
            if on_rung is not None:
                on_rung(rung)
    return result


@contextlib.contextmanager
def bundled_server(options: LadderOptions, out: Path) -> Iterator[LocalServer]:
    """The bundled tritonserver serving ``options.onnx`` as the card's model (cpu target,
    ``intra_op_threads``) from a temporary repository; its log is ``<out>/tritonserver.log``."""
    with tempfile.TemporaryDirectory(prefix="tritonkit-ladder-") as tmp:
        repo = Path(tmp) / "repo"
        write_model(options.card, options.onnx, repo, RepoOptions(target="cpu",
                                                                  intra_op_threads=options.intra_op_threads))
        with LocalServer(ServerOptions(model_repository=repo), log_path=out / "tritonserver.log") as server:
            yield server


def _rungs(o: LadderOptions, out: Path) -> Iterator[Rung]:
    """Every rung in order, measured as the iteration reaches it; a failing one is "failed: why"."""
    yield trtexec_rung(o.plan, o.card, o.batch_size, trtexec=o.trtexec,
                       duration_s=max(1, math.ceil(3 * o.measurement_interval_ms / 1000)),
                       log_path=out / "trtexec.log", shape_hw=o.shape_hw)
    yield _attempt(RUNG_ORT, "onnxruntime", lambda: _ort_rung(o))
    yield _attempt(RUNG_GRPC, "perf_analyzer -i grpc",
                   lambda: _served_rung(RUNG_GRPC, o, o.grpc_url, "grpc", "none", out / "grpc"))
    if o.http_url:
        yield _attempt(RUNG_HTTP, "perf_analyzer -i http",
                       lambda: _served_rung(RUNG_HTTP, o, o.http_url, "http", "none", out / "http"))
    else:
        yield Rung(RUNG_HTTP, "perf_analyzer -i http", note="not measured: no HTTP address given (--http-url)")
    yield _attempt(RUNG_SHM, "perf_analyzer -i grpc --shared-memory system",
                   lambda: _served_rung(RUNG_SHM, o, o.grpc_url, "grpc", "system", out / "grpc_shm"))
    yield _attempt(RUNG_STREAM, "run_stream", lambda: _stream_rung(o))


def _attempt(name: str, how: str, measure: Callable[[], Rung]) -> Rung:
    try:
        return measure()
    except TritonkitError as exc:
        return Rung(name, how, note=f"failed: {exc}")


def _ort_rung(o: LadderOptions) -> Rung:
    r = measure_onnxruntime(o.onnx, o.card, o.batch_size, window_s=o.measurement_interval_ms / 1000.0,
                            stability_pct=o.stability_pct, max_windows=o.max_trials,
                            intra_op_threads=o.intra_op_threads, shape_hw=o.shape_hw)
    return Rung(RUNG_ORT, "onnxruntime InferenceSession.run, back to back", r.img_per_s,
                note=f"{r.ms_per_batch:.2f} ms per batch" + ("" if r.stable else " (windows did not stabilise)"))


def _stream_rung(o: LadderOptions) -> Rung:
    items = list(o.images) or synthetic_items(o.stream_images)
    m = measure_run_stream(o.card, items, url=o.grpc_url, served_name=o.model, batch_size=o.batch_size,
                           in_flight=o.concurrency, workers=o.stream_workers)
    return Rung(RUNG_STREAM, f"tritonkit run_stream over gRPC, {o.stream_workers} decode workers",
                m.p_infer_whole, m.latency["p99"], note=f"{m.images} images; p_infer_core {m.p_infer_core:.1f} img/s")


def write_ladder(result: LadderResult) -> None:
    if result.out_dir is None:
        return
    write_json(result.out_dir / "ladder.json", result.to_json())
    write_markdown(result.out_dir / "ladder.md", [result.table()], title="overhead ladder")
