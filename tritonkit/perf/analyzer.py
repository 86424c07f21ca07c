"""Drive NVIDIA's ``perf_analyzer`` binary: typed specs, one process per point, faults kept.

A :class:`PerfSpec` is everything one measurement needs (model, server, protocol, batch size,
concurrency range, how to stabilise, shared memory, input data, timeout); :meth:`PerfSpec.argv`
turns it into the exact command line. Every flag here is checked against this binary's usage
text (``perf_analyzer`` from ``tritonclient[all]==2.50.0``).

:func:`run_sweep` measures a grid of (batch size, concurrency) points, one ``perf_analyzer``
process per point, each writing its own ``-f`` CSV into the output folder as it finishes:

    <out>/points/bs<B>_c<C>.csv     perf_analyzer's CSV for that point
    <out>/points/bs<B>_c<C>.log     its stdout + stderr
    <out>/sweep.csv, sweep.md       every finished point, rewritten after each point
    <out>/points.json               status of every point (ok / failed with stderr tail / skipped)

A failed point (non-zero exit, timeout, an unstable measurement) is recorded with the tail of
its stderr and the sweep goes on; when the model is missing or the server stops answering, the
remaining points are marked ``skipped`` and the sweep stops cleanly. Nothing written is lost.

Running one process per point costs one metadata round trip per point (milliseconds) and buys
isolation: a server that dies at concurrency 4 does not take the CSV of concurrency 1-3 with
it (perf_analyzer writes ``-f`` only at the very end of a run).

Throughput: perf_analyzer's "Inferences/Second" already counts every sample of a batch (it is
requests/s x batch size; measured: bs 8 at 869 requests/s is reported as 6920 infer/s), so it
*is* images per second for an image model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from tritonkit import report
from tritonkit.cards import ModelCard
from tritonkit.client.endpoints import resolve_endpoints
from tritonkit.errors import CardError, ServerError, ToolMissingError, TritonkitError
from tritonkit.perf import results as results_mod
from tritonkit.perf.plot import plot_latency_throughput
from tritonkit.perf.results import ResultsError, parse_csv
from tritonkit.served_model import ServedModel
from tritonkit.triton import DEFAULT_PORTS, input_shape

PROTOCOLS = ("grpc", "http")
MEASUREMENT_MODES = ("time_windows", "count_windows")
SHARED_MEMORY = ("none", "system", "cuda")
INSTALL_HINT = ("install it with: pip install 'tritonclient[all]==2.50.0' (ships perf_analyzer) and "
                "apt-get install libb64-0d; it also needs libcudart.so.12 on LD_LIBRARY_PATH "
                "(pip package nvidia-cuda-runtime-cu12, set automatically when installed)")
STDERR_TAIL_LINES = 8

# Failure kinds. Fatal ones stop the sweep: every later point would fail the same way.
KIND_MODEL_MISSING = "model_missing"
KIND_SERVER_UNREACHABLE = "server_unreachable"
KIND_UNSTABLE = "unstable"
KIND_WINDOW = "window_too_short"
KIND_QUEUE_TIMEOUT = "queue_timeout"
KIND_TIMEOUT = "timeout"
KIND_EXIT = "exit"
KIND_NO_OUTPUT = "no_output"
FATAL_KINDS = (KIND_MODEL_MISSING, KIND_SERVER_UNREACHABLE)
RETRIED_KINDS = (KIND_UNSTABLE, KIND_WINDOW)  # measured again with windows twice as long


class PerfError(TritonkitError):
    """A perf spec or sweep that cannot run as asked."""


@dataclass(frozen=True)
class ConcurrencyRange:
    """perf_analyzer's ``--concurrency-range start:end:step`` (end inclusive)."""

    start: int
    end: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.start < 1 or self.end < self.start or self.step < 1:
            raise PerfError(f"concurrency range {self.start}:{self.end}:{self.step} needs 1 <= start <= end, step >= 1")

    @classmethod
    def parse(cls, text: str) -> "ConcurrencyRange":
        """``"4"``, ``"1:4"`` or ``"1:8:2"``."""
        parts = str(text).strip().split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise PerfError(f"concurrency {text!r}: expected START[:END[:STEP]] with integers") from None
        if not 1 <= len(values) <= 3:
            raise PerfError(f"concurrency {text!r}: expected START[:END[:STEP]]")
        start = values[0]
        end = values[1] if len(values) > 1 else start
        step = values[2] if len(values) > 2 else 1
        return cls(start, end, step)

    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.end + 1, self.step))

    def __str__(self) -> str:
        return f"{self.start}:{self.end}:{self.step}"


@dataclass(frozen=True)
class InputShape:
    """perf_analyzer's ``--shape NAME:D1,D2,...`` for an input with variable dims (batch excluded)."""

    name: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                                 for d in self.dims):
            raise PerfError(f"input shape {self.name!r}: dims must be positive integers (got {list(self.dims)})")

    def __str__(self) -> str:
        return f"{self.name}:{','.join(map(str, self.dims))}"


def card_input_shapes(card: ModelCard, shape_hw: tuple[int, int] | None = None) -> tuple[InputShape, ...]:
    """The ``--shape`` a card's model needs: none for fixed dims; for variable H and W (``-1``)
    the card's ``dynamic_shape.opt`` or ``shape_hw`` (height, width)."""
    if -1 not in card.input.dims:
        return ()
    return (InputShape(card.input.name, input_shape(card, 1, shape_hw)[1:]),)


def served_input_shapes(url: str, protocol: str, model: str, shape_hw: tuple[int, int] | None = None,
                        timeout_s: float = 10.0) -> tuple[InputShape, ...]:
    """The ``--shape`` a served model needs, from its config: none when every input dim is fixed;
    else variable H and W at ``shape_hw``, or at the ``dynamic_shape.opt`` of the card embedded
    in the model's config (an ensemble: in its first step's model's config)."""
    with ServedModel.connect(protocol, url, model, timeout_s=timeout_s) as served:
        served.check_ready(server_ready=False)
        variable = [i for i in served.config().get("input", []) if -1 in [int(d) for d in i.get("dims", [])]]
        if not variable:
            return ()
        step = served.first_step()
        card = _embedded_card(served) or (_embedded_card(served.model(step)) if step else None)
    hw = shape_hw or (card.dynamic_shape.opt if card is not None and card.dynamic_shape is not None else None)
    if hw is None:
        raise PerfError(f"model {model!r} has variable input dims and no card with a dynamic_shape in its "
                        f"config: give shape_hw (height, width)")
    shapes = []
    for spec in variable:
        spatial = iter(hw)
        shapes.append(InputShape(spec["name"], tuple(next(spatial, 1) if int(d) == -1 else int(d)
                                                     for d in spec["dims"])))
    return tuple(shapes)


def _embedded_card(served: ServedModel) -> ModelCard | None:
    """The card in the served config; None without one or when it does not parse."""
    try:
        return served.card()
    except CardError:
        return None


@dataclass(frozen=True)
class PerfSpec:
    """One perf_analyzer run. Field names follow the flags they become (see :meth:`argv`)."""

    model: str
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    batch_size: int = 1
    concurrency: ConcurrencyRange = ConcurrencyRange(1, 1)
    measurement_mode: str = "time_windows"
    measurement_interval_ms: int = 5000
    measurement_request_count: int = 50
    stability_pct: float = 10.0
    percentile: int | None = None
    shared_memory: str = "none"
    output_shared_memory_bytes: int | None = None
    max_trials: int = 10
    input_data: str = "random"
    async_mode: bool = False
    model_version: str | None = None
    verbose_csv: bool = True
    timeout_s: float = 300.0
    input_shapes: tuple[InputShape, ...] = ()   # --shape for inputs with variable dims
    request_count: int | None = None  # one measurement of exactly this many requests, no stability criterion

    def __post_init__(self) -> None:
        if not self.model:
            raise PerfError("model name must not be empty")
        if self.protocol not in PROTOCOLS:
            raise PerfError(f"protocol {self.protocol!r} not one of {', '.join(PROTOCOLS)}")
        if self.measurement_mode not in MEASUREMENT_MODES:
            raise PerfError(f"measurement mode {self.measurement_mode!r} not one of {', '.join(MEASUREMENT_MODES)}")
        if self.shared_memory not in SHARED_MEMORY:
            raise PerfError(f"shared memory {self.shared_memory!r} not one of {', '.join(SHARED_MEMORY)}")
        if self.batch_size < 1:
            raise PerfError(f"batch size must be >= 1 (got {self.batch_size})")
        if self.measurement_interval_ms < 1 or self.measurement_request_count < 1:
            raise PerfError("measurement interval and request count must be >= 1")
        if not 0 < self.stability_pct <= 100:
            raise PerfError(f"stability percentage must lie in (0, 100] (got {self.stability_pct})")
        if self.percentile is not None and not 1 <= self.percentile <= 99:
            raise PerfError(f"percentile must lie in 1..99 (got {self.percentile})")
        if self.max_trials < 1:
            raise PerfError(f"max trials must be >= 1 (got {self.max_trials})")
        if self.output_shared_memory_bytes is not None and self.output_shared_memory_bytes < 1:
            raise PerfError("output shared memory size must be positive")
        if self.timeout_s <= 0:
            raise PerfError("timeout must be positive")
        if self.request_count is not None and self.request_count < 1:
            raise PerfError(f"request count must be >= 1 (got {self.request_count})")

    def at(self, batch_size: int, concurrency: int) -> "PerfSpec":
        """This spec for a single point."""
        return replace(self, batch_size=batch_size, concurrency=ConcurrencyRange(concurrency, concurrency))

    def _measurement_flags(self) -> list[str]:
        if self.request_count is not None:  # a fixed load: perf_analyzer measures once, never "unstable"
            return ["--request-count", str(self.request_count)]
        flags = ["--measurement-mode", self.measurement_mode]
        if self.measurement_mode == "time_windows":
            flags += ["--measurement-interval", str(self.measurement_interval_ms)]
        else:
            flags += ["--measurement-request-count", str(self.measurement_request_count)]
        return flags + ["-s", f"{self.stability_pct:g}", "--max-trials", str(self.max_trials)]

    def argv(self, binary: str | os.PathLike, csv_path: str | os.PathLike) -> list[str]:
        """The exact perf_analyzer command line that writes its report to ``csv_path``."""
        argv = [str(binary), "-m", self.model]
        if self.model_version is not None:
            argv += ["-x", str(self.model_version)]
        argv += ["-u", self.url, "-i", self.protocol, "-b", str(self.batch_size),
                 "--concurrency-range", str(self.concurrency)]
        argv += self._measurement_flags()
        if self.percentile is not None:
            argv += ["--percentile", str(self.percentile)]
        argv += ["--input-data", self.input_data, "--shared-memory", self.shared_memory]
        if self.output_shared_memory_bytes is not None:
            argv += ["--output-shared-memory-size", str(self.output_shared_memory_bytes)]
        for shape in self.input_shapes:
            argv += ["--shape", str(shape)]
        if self.async_mode:
            argv.append("--async")
        argv += ["-f", str(csv_path)]
        if self.verbose_csv:
            argv.append("--verbose-csv")
        return argv


# --------------------------------------------------------------------------------------------
# Locating and running the binary


def cuda_runtime_lib_dir() -> Path | None:
    """The ``lib`` folder of the pip package nvidia-cuda-runtime-cu12 (libcudart.so.12), if installed."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        lib = Path(location) / "lib"
        if lib.is_dir():
            return lib
    return None


def analyzer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for perf_analyzer: LD_LIBRARY_PATH led by the pip CUDA runtime's lib folder."""
    env = dict(os.environ if base is None else base)
    lib = cuda_runtime_lib_dir()
    if lib is not None:
        current = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = str(lib) + (os.pathsep + current if current else "")
    return env


def find_perf_analyzer(explicit: str | os.PathLike | None = None) -> Path:
    """The perf_analyzer binary: ``explicit``, else beside this interpreter, else on PATH.

    Raises :class:`ToolMissingError` naming how to install it when none is found.
    """
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolMissingError(f"perf_analyzer {path} not found or not executable; {INSTALL_HINT}")
        return path
    beside = Path(sys.executable).parent / "perf_analyzer"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    raise ToolMissingError(f"perf_analyzer not found (looked beside {sys.executable} and on PATH); {INSTALL_HINT}")


def check_perf_analyzer(binary: Path, env: dict[str, str]) -> None:
    """Run ``perf_analyzer --version`` once: a missing shared library becomes a one-line fix."""
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, env=env)
    except OSError as exc:
        raise ToolMissingError(f"cannot run {binary}: {exc.strerror or exc}; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise ToolMissingError(f"{binary} --version did not answer in 30 s") from None
    if proc.returncode == 0:
        return
    text = (proc.stderr or "") + (proc.stdout or "")
    if "libb64" in text:
        raise ToolMissingError(f"perf_analyzer needs libb64: apt-get install libb64-0d ({_last_line(text)})")
    if "libcudart" in text:
        raise ToolMissingError("perf_analyzer needs libcudart.so.12: pip install nvidia-cuda-runtime-cu12 "
                               f"(its lib folder is put on LD_LIBRARY_PATH automatically) ({_last_line(text)})")
    raise ToolMissingError(f"{binary} --version failed with exit code {proc.returncode}: {_last_line(text)}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def check_model_ready(url: str, protocol: str, model: str, timeout_s: float = 10.0) -> None:
    """Raise a one-line :class:`ServerError` unless the server at ``url`` is live and ``model`` ready."""
    with ServedModel.connect(protocol, url, model, timeout_s=timeout_s) as served:
        served.check_ready(server_ready=False)


def server_alive(url: str, protocol: str, model: str, timeout_s: float = 3.0) -> bool:
    """True when a Triton server answers ``live`` at ``url``."""
    try:
        with ServedModel.connect(protocol, url, model, timeout_s=timeout_s) as served:
            return served.alive()
    except ServerError:
        return False


# --------------------------------------------------------------------------------------------
# Points and sweeps


@dataclass
class PointResult:
    """One (batch size, concurrency) point: ``ok``, ``failed`` (with kind + stderr tail) or ``skipped``."""

    batch_size: int
    concurrency: int
    status: str
    csv_path: Path | None = None
    log_path: Path | None = None
    rows: list = field(default_factory=list)   # list[tritonkit.perf.results.PerfRow]
    error_kind: str | None = None
    error: str | None = None
    stderr_tail: str = ""
    argv: list[str] = field(default_factory=list)
    seconds: float = 0.0
    attempts: int = 1
    retried_for: list[str] = field(default_factory=list)  # the failure kind behind each retry

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def retries(self) -> int:
        return self.attempts - 1

    def to_json(self) -> dict:
        return {"batch_size": self.batch_size, "concurrency": self.concurrency, "status": self.status,
                "csv": str(self.csv_path) if self.csv_path else None,
                "log": str(self.log_path) if self.log_path else None, "error_kind": self.error_kind,
                "error": self.error, "stderr_tail": self.stderr_tail, "argv": self.argv,
                "seconds": round(self.seconds, 3), "attempts": self.attempts, "retries": self.retries,
                "retried_for": list(self.retried_for)}


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep stands after a point: points done / total, time spent, an estimate of the
    time left (the mean time per point so far, times the points left), retries so far."""

    done: int
    total: int
    elapsed_s: float
    retries: int
    point: PointResult

    @property
    def left(self) -> int:
        return self.total - self.done

    @property
    def eta_s(self) -> float:
        return self.elapsed_s / self.done * self.left if self.done else 0.0

    def to_dict(self) -> dict:
        return {"done": self.done, "total": self.total, "left": self.left, "elapsed_s": round(self.elapsed_s, 1),
                "eta_s": round(self.eta_s, 1), "retries": self.retries}


def minimum_point_seconds(spec: PerfSpec) -> float:
    """The least time one point takes: three stable windows (time windows), before any retry."""
    return 3 * spec.measurement_interval_ms / 1000.0 if spec.measurement_mode == "time_windows" else 0.0


@dataclass
class SweepResult:
    """Every point of a sweep, the files written, and the rows of the points that finished."""

    spec: PerfSpec
    batch_sizes: tuple[int, ...]
    out_dir: Path
    points: list[PointResult]
    merged_csv: Path
    markdown: Path
    status_json: Path
    plot: Path | None = None
    stopped_reason: str | None = None

    @property
    def rows(self) -> list:
        return [row for p in self.points if p.ok for row in p.rows]

    @property
    def failed(self) -> list[PointResult]:
        return [p for p in self.points if p.status == "failed"]

    @property
    def skipped(self) -> list[PointResult]:
        return [p for p in self.points if p.status == "skipped"]


def classify_failure(returncode: int | None, stderr: str) -> str:
    """A failure kind from perf_analyzer's exit code and stderr (``None`` exit = timed out)."""
    if returncode is None:
        return KIND_TIMEOUT
    low = stderr.lower()
    if "unknown model" in low or ("is not found" in low and "model" in low):
        return KIND_MODEL_MISSING
    if any(s in low for s in ("failed to connect", "couldn't connect", "connection refused",
                              "failed to get model metadata: http client failed", "unavailable")):
        return KIND_SERVER_UNREACHABLE
    if "stable measurement" in low:
        return KIND_UNSTABLE
    if "no valid requests recorded" in low:
        return KIND_WINDOW
    if "request timeout expired" in low:
        return KIND_QUEUE_TIMEOUT
    return KIND_EXIT


_HINTS = {
    KIND_UNSTABLE: "not stable within --max-trials windows; raise the request count / interval or --stability",
    KIND_WINDOW: "a window ended before any request finished; use a longer --measurement-interval",
    KIND_MODEL_MISSING: "the server does not serve this model",
    KIND_SERVER_UNREACHABLE: "the server does not answer",
    KIND_QUEUE_TIMEOUT: ("the server rejected requests that waited longer than the model's queue policy "
                         "timeout (dynamic_batching.default_queue_policy); measure a model without one"),
}


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run_point(spec: PerfSpec, points_dir: Path, binary: Path, env: dict[str, str],
              append_log: bool = False) -> PointResult:
    """Run perf_analyzer for one point (``spec`` has a single concurrency level); never raises
    for a failing measurement: the failure is returned with its stderr tail."""
    level = spec.concurrency.start
    stem = f"bs{spec.batch_size}_c{level}"
    csv_path = points_dir / f"{stem}.csv"
    log_path = points_dir / f"{stem}.log"
    csv_path.unlink(missing_ok=True)
    argv = spec.argv(binary, csv_path)
    point = PointResult(spec.batch_size, level, "failed", log_path=log_path, argv=argv)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=spec.timeout_s, env=env)
        returncode, stdout, stderr = proc.returncode, proc.stdout or "", proc.stderr or ""
    except subprocess.TimeoutExpired as exc:
        returncode = None
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\n(killed after the {spec.timeout_s:g} s timeout)"
    point.seconds = time.perf_counter() - t0
    with open(log_path, "a" if append_log else "w") as log:
        log.write(f"$ {' '.join(argv)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    if returncode != 0:
        point.error_kind = classify_failure(returncode, stderr)
        point.stderr_tail = tail(stderr) or tail(stdout)
        hint = _HINTS.get(point.error_kind, "")
        what = "timed out" if returncode is None else f"exit code {returncode}"
        point.error = f"{what}: {_last_line(stderr or stdout)}" + (f" ({hint})" if hint else "")
        return point
    try:
        point.rows = parse_csv(csv_path, model=spec.model, batch_size=spec.batch_size, protocol=spec.protocol,
                               shared_memory=spec.shared_memory)
    except ResultsError as exc:
        point.error_kind = KIND_NO_OUTPUT
        point.error = str(exc)
        point.stderr_tail = tail(stderr)
        return point
    point.status = "ok"
    point.csv_path = csv_path
    return point


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


def measure_point(spec: PerfSpec, points_dir: Path, binary: Path, env: dict[str, str],
                  unstable_retries: int = 1) -> PointResult:
    """:func:`run_point`, measured again with windows twice as long (perf_analyzer's own advice)
    while it fails as unstable or with a window too short, up to ``unstable_retries`` times."""
    point = run_point(spec, points_dir, binary, env)
    for _ in range(unstable_retries):
        if point.error_kind not in RETRIED_KINDS:
            break
        spec = replace(spec, measurement_interval_ms=spec.measurement_interval_ms * 2,
                       measurement_request_count=spec.measurement_request_count * 2)
        retry = run_point(spec, points_dir, binary, env, append_log=True)
        retry.attempts = point.attempts + 1
        retry.retried_for = [*point.retried_for, point.error_kind]
        retry.seconds += point.seconds
        point = retry
    return point


def run_sweep(spec: PerfSpec, out_dir: str | os.PathLike, *, batch_sizes: Sequence[int] | None = None,
              binary: str | os.PathLike | None = None, check_ready: bool = True,
              stop_on_error: bool = False, unstable_retries: int = 1,
              liveness: Callable[[], bool] | None = None,
              on_point: Callable[[PointResult], None] | None = None, plot: bool = True,
              on_progress: Callable[[SweepProgress], None] | None = None) -> SweepResult:
    """Measure every (batch size, concurrency level) of ``spec`` with perf_analyzer.

    ``batch_sizes`` defaults to ``(spec.batch_size,)``; the levels come from ``spec.concurrency``.
    Fails before the first point, with one line, when perf_analyzer is missing or the model is
    not ready (``check_ready``). During the sweep a failing point is recorded and the sweep goes
    on (``stop_on_error`` stops at the first failure). A point that does not stabilise, or
    whose window saw no request finish, is measured again with windows twice as long, up to
    ``unstable_retries`` times. When the model is missing or the server stops answering
    (``liveness``, by default a tritonclient live check, is asked after a failure) the rest are
    marked skipped. Files are rewritten after every point, and also when the sweep is
    interrupted. ``on_progress`` receives a :class:`SweepProgress` after every point (points
    done and left, an estimate of the time left, retries so far).
    """
    sizes = tuple(batch_sizes) if batch_sizes else (spec.batch_size,)
    if any(b < 1 for b in sizes):
        raise PerfError(f"batch sizes must be >= 1 (got {sizes})")
    binary_path = find_perf_analyzer(binary)
    env = analyzer_env()
    check_perf_analyzer(binary_path, env)
    if check_ready:
        check_model_ready(spec.url, spec.protocol, spec.model)
    if liveness is None:
        liveness = lambda: server_alive(spec.url, spec.protocol, spec.model)  # noqa: E731

    out = Path(out_dir)
    points_dir = out / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    result = SweepResult(spec, sizes, out, [], out / "sweep.csv", out / "sweep.md", out / "points.json")
    plan = [(b, c) for b in sizes for c in spec.concurrency.levels()]
    t_start = time.perf_counter()
    try:
        for i, (b, c) in enumerate(plan):
            point = measure_point(spec.at(b, c), points_dir, binary_path, env, unstable_retries)
            if point.status == "failed" and point.error_kind not in FATAL_KINDS and not liveness():
                point.error_kind = KIND_SERVER_UNREACHABLE
                point.error = f"server at {spec.url} stopped answering ({point.error})"
            result.points.append(point)
            if on_point is not None:
                on_point(point)
            if on_progress is not None:
                on_progress(SweepProgress(i + 1, len(plan), time.perf_counter() - t_start,
                                          sum(p.retries for p in result.points), point))
            stop = None
            if point.status == "failed" and point.error_kind in FATAL_KINDS:
                stop = f"{point.error_kind} at bs {b}, concurrency {c}: {point.error}"
            elif point.status == "failed" and stop_on_error:
                stop = f"stopped at the first failure (bs {b}, concurrency {c}): {point.error}"
            if stop:
                result.stopped_reason = stop
                result.points.extend(PointResult(bb, cc, "skipped", error=f"not run: {stop}")
                                     for bb, cc in plan[i + 1:])
            write_sweep_files(result)
            if stop:
                break
    finally:
        write_sweep_files(result)
        if plot and result.rows:
            shown = spec.percentile if spec.percentile in (50, 90, 95, 99) else 99
            result.plot = plot_latency_throughput(result.rows, out / "latency_throughput.png", percentile=shown,
                                                  title=f"{spec.model} ({spec.protocol})")
    return result


# --------------------------------------------------------------------------------------------
# Several endpoints: perf_analyzer measures one server (-u takes one address)


@dataclass
class EndpointSweeps:
    """One sweep per endpoint, one after another: ``results`` by endpoint, ``unreachable``
    (endpoint -> why no point ran there), and the side-by-side summary written to ``out``."""

    results: dict[str, SweepResult]
    unreachable: dict[str, str]
    markdown: Path | None = None
    summary_json: Path | None = None


def endpoint_folder(address: str) -> str:
    """``10.0.0.5:8001`` -> ``10.0.0.5_8001`` (an output folder name)."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in address).strip("_")


def endpoint_addresses(spec: PerfSpec) -> list[str]:
    """The endpoints ``spec.url`` names (a comma list, or a DNS name with several addresses)."""
    return resolve_endpoints(spec.url, DEFAULT_PORTS[spec.protocol])


def run_endpoint_sweeps(spec: PerfSpec, out_dir: str | os.PathLike, *,
                        on_endpoint: Callable[[str, Path], None] | None = None, **sweep_kwargs) -> EndpointSweeps:
    """:func:`run_sweep` for every endpoint of ``spec.url``, sequentially, each into
    ``<out>/<host_port>/`` (its own sweep.csv: one replica's capacity, what ``deploy capacity``
    takes). Sequential, not at once: perf_analyzer's latencies describe one server under the
    load it alone generates; concurrent sweeps would measure the client host as much as the
    fleet. An endpoint that is not ready is reported and the others are still measured.
    Writes ``<out>/endpoints.md`` and ``<out>/endpoints.json`` comparing the endpoints."""
    out = Path(out_dir)
    sweeps = EndpointSweeps({}, {})
    for address in endpoint_addresses(spec):
        folder = out / endpoint_folder(address)
        if on_endpoint is not None:
            on_endpoint(address, folder)
        try:
            sweeps.results[address] = run_sweep(replace(spec, url=address), folder, **sweep_kwargs)
        except ServerError as exc:
            sweeps.unreachable[address] = str(exc)
    out.mkdir(parents=True, exist_ok=True)
    rows = endpoint_rows(sweeps)
    sweeps.summary_json = report.write_json(out / "endpoints.json", {"spec": _spec_json(spec),
                                                                      "endpoints": [r.to_dict() for r in rows]})
    sweeps.markdown = report.write_text(out / "endpoints.md", (
        f"# perf sweep per endpoint: {spec.model}\n\nperf_analyzer measures one server at a time: each endpoint "
        f"was swept on its own, one after another, into a folder named after it (its sweep.csv is one replica's "
        f"capacity). {_settings_line(spec, sweep_kwargs.get('batch_sizes') or (spec.batch_size,))}\n\n"
        + report.markdown_table(
            ["endpoint", "batch size", "best img/s", "at concurrency", "p99 there (ms)", "failed points", "note"],
            [r.cells() for r in rows])))
    return sweeps


@dataclass(frozen=True)
class EndpointRow:
    """One endpoint at one batch size: the best throughput, its concurrency and p99, failures
    (``batch_size`` None: the endpoint was not measured; ``note`` says why)."""

    endpoint: str
    batch_size: int | None = None
    best_img_per_s: float | None = None
    concurrency: int | None = None
    p99_ms: float | None = None
    failed_points: int | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def cells(self) -> list:
        return list(self.to_dict().values())


def endpoint_rows(sweeps: EndpointSweeps) -> list[EndpointRow]:
    """Per endpoint and batch size: the best throughput, its concurrency and p99, failures."""
    rows: list[EndpointRow] = []
    for address, result in sweeps.results.items():
        for b in result.batch_sizes:
            mine = [r for r in result.rows if r.batch_size == b]
            best = max(mine, key=lambda r: r.img_per_s) if mine else None
            rows.append(EndpointRow(address, b, round(best.img_per_s, 1) if best else None,
                                    best.concurrency if best else None,
                                    round(best.p99_us / 1000, 2) if best else None, len(result.failed),
                                    result.stopped_reason))
    rows += [EndpointRow(address, note=why) for address, why in sweeps.unreachable.items()]
    return rows


def write_sweep_files(result: SweepResult) -> None:
    """(Re)write sweep.csv, sweep.md and points.json from the points so far, atomically."""
    rows = result.rows
    results_mod.write_rows_csv(rows, result.merged_csv)
    tables = results_mod.sweep_tables(rows)
    extra = results_mod.failures_markdown([p.to_json() for p in result.points if not p.ok]) \
        + _retries_markdown(result.points)
    results_mod.write_markdown(result.markdown, tables, title=f"perf sweep: {result.spec.model}",
                               preamble=_settings_line(result.spec, result.batch_sizes), epilogue=extra)
    status = {"spec": _spec_json(result.spec), "batch_sizes": list(result.batch_sizes),
              "stopped_reason": result.stopped_reason, "points": [p.to_json() for p in result.points]}
    report.write_json(result.status_json, status)


def _retries_markdown(points: Sequence[PointResult]) -> str:
    retried = [p for p in points if p.retries]
    if not retried:
        return ""
    lines = [f"- bs {p.batch_size}, concurrency {p.concurrency}: measured {p.attempts} times "
             f"({', '.join(p.retried_for)}; windows doubled each time), {p.seconds:.1f} s in all" for p in retried]
    return "\n### points measured again\n\n" + "\n".join(lines) + "\n"


def _spec_json(spec: PerfSpec) -> dict:
    d = asdict(spec)
    d["concurrency"] = str(spec.concurrency)
    d["input_shapes"] = [str(shape) for shape in spec.input_shapes]
    return d


def _settings_line(spec: PerfSpec, sizes: Sequence[int]) -> str:
    how = (f"time windows of {spec.measurement_interval_ms} ms" if spec.measurement_mode == "time_windows"
           else f"count windows of >= {spec.measurement_request_count} requests")
    stab = f"p{spec.percentile}" if spec.percentile else "average latency"
    return (f"perf_analyzer, {spec.protocol} at {spec.url}, batch sizes {', '.join(map(str, sizes))}, "
            f"concurrency {spec.concurrency}, {how}, stable within {spec.stability_pct:g}% on {stab}, "
            f"shared memory {spec.shared_memory}, input data {spec.input_data}{_shapes_note(spec)}.")


def _shapes_note(spec: PerfSpec) -> str:
    return f", input shape {' '.join(map(str, spec.input_shapes))}" if spec.input_shapes else ""
