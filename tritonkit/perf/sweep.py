"""A perf_analyzer sweep: one process per (batch size, concurrency) point, faults kept.

:func:`run_sweep` measures a grid of (batch size, concurrency) points, one ``perf_analyzer``
process per point, each writing its own ``-f`` CSV into the output folder as it finishes:

    <out>/points/bs<B>_c<C>.csv     perf_analyzer's CSV for that point
    <out>/points/bs<B>_c<C>.log     its stdout + stderr
    <out>/sweep.csv, sweep.md       every finished point, rewritten after each point
    <out>/points.json               status of every point (ok / failed with stderr tail / skipped)

A failed point (non-zero exit, timeout, an unstable measurement) is recorded with the tail of
its stderr and the sweep goes on; when the model is missing or the server stops answering, the
remaining points are marked ``skipped`` and the sweep stops cleanly. Nothing written is lost
(:mod:`tritonkit.perf.report` writes the files).

Running one process per point costs one metadata round trip per point (milliseconds) and buys
isolation: a server that dies at concurrency 4 does not take the CSV of concurrency 1-3 with
it (perf_analyzer writes ``-f`` only at the very end of a run).

Throughput: perf_analyzer's "Inferences/Second" already counts every sample of a batch (it is
requests/s x batch size; measured: bs 8 at 869 requests/s is reported as 6920 infer/s), so it
*is* images per second for an image model.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tritonkit.errors import ServerError
from tritonkit.perf.binary import PerfAnalyzer, last_line, locate_perf_analyzer
from tritonkit.perf.input_data import RealData
from tritonkit.perf.report import write_sweep_files, write_sweep_plot
from tritonkit.perf.results import ResultsError, parse_csv
from tritonkit.perf.spec import PerfError, PerfSpec
from tritonkit.served_model import ServedModel

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
    real_data: RealData | None = None

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


def run_point(spec: PerfSpec, points_dir: Path, analyzer: PerfAnalyzer, append_log: bool = False) -> PointResult:
    """Run perf_analyzer for one point (``spec`` has a single concurrency level); never raises
    for a failing measurement: the failure is returned with its stderr tail."""
    level = spec.concurrency.start
    stem = f"bs{spec.batch_size}_c{level}"
    csv_path = points_dir / f"{stem}.csv"
    log_path = points_dir / f"{stem}.log"
    csv_path.unlink(missing_ok=True)
    argv = spec.argv(analyzer.binary, csv_path)
    point = PointResult(spec.batch_size, level, "failed", log_path=log_path, argv=argv)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=spec.timeout_s, env=analyzer.env)
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
        point.error = f"{what}: {last_line(stderr or stdout)}" + (f" ({hint})" if hint else "")
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


def measure_point(spec: PerfSpec, points_dir: Path, analyzer: PerfAnalyzer, unstable_retries: int = 1) -> PointResult:
    """:func:`run_point`, measured again with windows twice as long (perf_analyzer's own advice)
    while it fails as unstable or with a window too short, up to ``unstable_retries`` times."""
    point = run_point(spec, points_dir, analyzer)
    for _ in range(unstable_retries):
        if point.error_kind not in RETRIED_KINDS:
            break
        spec = replace(spec, measurement_interval_ms=spec.measurement_interval_ms * 2,
                       measurement_request_count=spec.measurement_request_count * 2)
        retry = run_point(spec, points_dir, analyzer, append_log=True)
        retry.attempts = point.attempts + 1
        retry.retried_for = [*point.retried_for, point.error_kind]
        retry.seconds += point.seconds
        point = retry
    return point


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs; the points come from the :class:`PerfSpec` (its concurrency levels) and
    ``batch_sizes`` (() -> the spec's batch size).

    ``binary``: perf_analyzer (default: found, :func:`locate_perf_analyzer`). ``check_ready``:
    fail before the first point, in one line, unless the model is ready. ``stop_on_error``: stop
    at the first failed point (else only a fatal one stops the sweep). ``unstable_retries``:
    how often a point that does not stabilise, or whose window saw no request finish, is
    measured again with windows twice as long. ``plot``: write latency_throughput.png.
    ``liveness``: asked after a failed point whether the server still answers (default: a
    tritonclient live check). ``on_progress``: called with a :class:`SweepProgress` after
    every point (points done and left, an estimate of the time left, retries so far).
    """

    batch_sizes: tuple[int, ...] = ()
    binary: str | os.PathLike | None = None
    check_ready: bool = True
    stop_on_error: bool = False
    unstable_retries: int = 1
    plot: bool = True
    liveness: Callable[[], bool] | None = None
    on_progress: Callable[[SweepProgress], None] | None = None
    real_data: RealData | None = None    # the load is real images (tritonkit.perf.input_data): which, sent how

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if any(b < 1 for b in self.batch_sizes):
            raise PerfError(f"batch sizes must be >= 1 (got {self.batch_sizes})")
        if self.unstable_retries < 0:
            raise PerfError(f"unstable retries must be >= 0 (got {self.unstable_retries})")


def run_sweep(spec: PerfSpec, out_dir: str | os.PathLike, options: SweepOptions = SweepOptions()) -> SweepResult:
    """Measure every (batch size, concurrency level) of ``spec`` with perf_analyzer (see
    :class:`SweepOptions`). Fails before the first point, with one line, when perf_analyzer is
    missing or the model is not ready. Files are rewritten after every point, and also when the
    sweep is interrupted."""
    analyzer = locate_perf_analyzer(options.binary)
    if options.check_ready:
        with ServedModel.connect(spec.protocol, spec.url, spec.model) as served:
            served.check_ready(server_ready=False)
    if options.liveness is None:
        options = replace(options, liveness=lambda: server_alive(spec))
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    result = SweepResult(spec, options.batch_sizes or (spec.batch_size,), out, [], out / "sweep.csv",
                         out / "sweep.md", out / "points.json", real_data=options.real_data)
    try:
        _measure_points(result, options, analyzer)
    finally:
        write_sweep_files(result)
        if options.plot and result.rows:
            result.plot = write_sweep_plot(result)
    return result


def _measure_points(result: SweepResult, options: SweepOptions, analyzer: PerfAnalyzer) -> None:
    """Every point of the plan in turn, into ``result``; the files rewritten after each."""
    spec = result.spec
    plan = [(b, c) for b in result.batch_sizes for c in spec.concurrency.levels()]
    t_start = time.perf_counter()
    for i, (b, c) in enumerate(plan):
        point = measure_point(spec.at(b, c), result.out_dir / "points", analyzer, options.unstable_retries)
        if point.status == "failed" and point.error_kind not in FATAL_KINDS and not options.liveness():
            point.error_kind = KIND_SERVER_UNREACHABLE
            point.error = f"server at {spec.url} stopped answering ({point.error})"
        result.points.append(point)
        if options.on_progress is not None:
            options.on_progress(SweepProgress(i + 1, len(plan), time.perf_counter() - t_start,
                                              sum(p.retries for p in result.points), point))
        stop = stop_reason(point, options.stop_on_error)
        if stop:
            result.stopped_reason = stop
            result.points.extend(PointResult(bb, cc, "skipped", error=f"not run: {stop}") for bb, cc in plan[i + 1:])
        write_sweep_files(result)
        if stop:
            return


def stop_reason(point: PointResult, stop_on_error: bool) -> str | None:
    """Why the sweep stops after ``point`` (a fatal failure, or any with ``stop_on_error``); None: it goes on."""
    if point.status != "failed":
        return None
    where = f"bs {point.batch_size}, concurrency {point.concurrency}"
    if point.error_kind in FATAL_KINDS:
        return f"{point.error_kind} at {where}: {point.error}"
    if stop_on_error:
        return f"stopped at the first failure ({where}): {point.error}"
    return None


def server_alive(spec: PerfSpec, timeout_s: float = 3.0) -> bool:
    """True when a Triton server answers ``live`` at ``spec.url``."""
    try:
        with ServedModel.connect(spec.protocol, spec.url, spec.model, timeout_s=timeout_s) as served:
            return served.alive()
    except ServerError:
        return False
