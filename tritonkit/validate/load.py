"""load: perf_analyzer at the target concurrency for a set time — zero errors, p99 within the SLO.

A load check measures load, not stability: perf_analyzer runs a fixed number of requests
(``--request-count``: one measurement, no stability criterion, so a busy machine can slow it
but never make it fail as "unstable"; stability belongs to ``perf sweep``). The count is sized
from the rate of a short first run (and again, while a run lasts under half the set time), so
the judged run lasts about ``--load-seconds``. Errors are
counted twice: perf_analyzer fails on any request error, and the server's own failure count
(statistics API) must not rise during the run. When p99 misses the SLO on a model with a queue
policy, sequential requests are probed for the bundled server's queue-policy stalls
(:mod:`tritonkit.perf.stalls`) and the check reports them: a stall that alone exceeds the SLO
makes it unreachable on that server, whatever the load. A missing perf_analyzer fails the check
with the install hint.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tritonkit.errors import TritonkitError
from tritonkit.perf.binary import PerfAnalyzer, locate_perf_analyzer
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec, card_input_shapes
from tritonkit.perf.sweep import PointResult, run_point
from tritonkit.perf.stalls import StallSummary, probe
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.hints import slo_hint
from tritonkit.validate.overload import queue_limits
from tritonkit.validate.result import CheckResult, fail, verdict
from tritonkit.validate.stats import difference, model_counters

CALIBRATION_REQUESTS = 20      # per concurrent stream, to estimate the request rate
SIZING_RUNS = 3                # a run shorter than half the set time is sized again from its rate
MIN_REQUESTS = 50
MAX_REQUESTS = 200_000
STALL_PROBE_REQUESTS = 200


def perf_spec(ctx: Context, target: ModelTarget, requests: int) -> PerfSpec:
    """A fixed-count perf_analyzer run at the check's concurrency (no stability criterion)."""
    c = ctx.options.concurrency
    return PerfSpec(model=target.name, url=str(ctx.endpoints.grpc), protocol="grpc", batch_size=1,
                    concurrency=ConcurrencyRange(c, c), request_count=requests,
                    timeout_s=ctx.options.load_seconds * 4 + 120,
                    input_shapes=card_input_shapes(target.card) if target.card is not None else ())


def planned_requests(calibration: PointResult, load_seconds: float) -> int:
    """Requests for about ``load_seconds`` at the calibrated rate (bounded both ways)."""
    rate = calibration.rows[-1].req_per_s if calibration.rows else 0.0
    return int(min(MAX_REQUESTS, max(MIN_REQUESTS, rate * load_seconds)))


def _failed(name: str, spec: PerfSpec, point: PointResult, target: ModelTarget, **figures) -> CheckResult:
    return fail(name, f"perf_analyzer at concurrency {spec.concurrency.start}: {point.error}"
                      + (f" | {point.stderr_tail.splitlines()[-1]}" if point.stderr_tail else ""),
                target.name, **figures)


def stall_text(stalls: StallSummary, slo_ms: float) -> str:
    """What the stall probe says about the SLO, with its figures."""
    if not stalls.stalls:
        return (f"no queue-policy stall in {stalls.requests} sequential requests (p50 {stalls.p50_ms:.1f} ms, "
                f"max {stalls.max_ms:.1f} ms): the p99 is the load's")
    reach = "unreachable on this server with a queue policy" if (stalls.stall_ms_median or 0) > slo_ms \
        else "within reach"
    return (f"the bundled server's queue-policy stalls: {stalls.stalls} of {stalls.requests} sequential "
            f"requests waited {stalls.stall_ms_median:.0f} ms (median stall; p50 {stalls.p50_ms:.1f} ms): "
            f"SLO {slo_ms:g} ms {reach} (README, Queue policies)")


def _measure(ctx: Context, target: ModelTarget, work_dir: Path,
             analyzer: PerfAnalyzer) -> tuple[PerfSpec, PointResult, int | None]:
    """Runs of a fixed request count, each sized from the rate of the one before, until one
    lasts at least half of ``load_seconds`` (at most SIZING_RUNS): that one is judged, with
    the server's failure count over it."""
    spec = perf_spec(ctx, target, CALIBRATION_REQUESTS * ctx.options.concurrency)
    for attempt in range(SIZING_RUNS):
        before = model_counters(ctx.grpc(), target.name)
        point = run_point(spec, work_dir, analyzer)
        counted = difference(before, model_counters(ctx.grpc(), target.name))
        server_errors = counted.failures if counted is not None else None
        long_enough = point.seconds >= ctx.options.load_seconds / 2 or spec.request_count >= MAX_REQUESTS
        if not point.ok or long_enough or attempt == SIZING_RUNS - 1:
            break
        spec = perf_spec(ctx, target, planned_requests(point, ctx.options.load_seconds))
    return spec, point, server_errors


def check_load(ctx: Context, target: ModelTarget, work_dir: Path) -> CheckResult:
    name = "load.slo"
    try:
        analyzer = locate_perf_analyzer()
    except TritonkitError as exc:
        return fail(name, str(exc), target.name)
    spec, point, server_errors = _measure(ctx, target, work_dir, analyzer)
    if not point.ok:
        return _failed(name, spec, point, target, server_errors=server_errors)
    row = point.rows[-1]
    p99, slo = row.p99_us / 1000.0, ctx.options.slo_p99_ms
    figures = dict(concurrency=row.concurrency, requests=spec.request_count, seconds=point.seconds,
                   p50_ms=row.p50_us / 1000.0, p99_ms=p99, slo_p99_ms=slo, requests_per_s=row.req_per_s,
                   server_errors=server_errors)
    problems = []
    stalled = False
    if server_errors:
        problems.append(f"the server counted {server_errors} failed requests during the run")
    if server_errors is None:
        problems.append("server failure count unavailable (statistics API)")
    if p99 > slo:
        miss = f"p99 {p99:.1f} ms > SLO {slo:g} ms at concurrency {row.concurrency}"
        if target.card is not None and queue_limits(target.config) is not None:
            stalls = probe(str(ctx.endpoints.grpc), target.name, target.card, requests=STALL_PROBE_REQUESTS,
                           timeout_s=ctx.options.request_timeout_s)
            figures["stalls"] = stalls.to_dict()
            miss += f"; {stall_text(stalls, slo)}"
            stalled = bool(stalls.stalls) and (stalls.stall_ms_median or 0) > slo
        problems.append(miss)
    return verdict(name, problems, f"{row.concurrency} concurrent, {spec.request_count} requests in "
                                   f"{point.seconds:.0f} s: p99 {p99:.1f} ms <= {slo:g} ms, "
                                   f"{row.req_per_s:.0f} req/s, zero errors", target.name,
                   hint=slo_hint(stalled) if p99 > slo else None, **figures)


@check_group("load", 60)
def run(ctx: Context) -> list[CheckResult]:
    base = ctx.options.out / "load" if ctx.options.out else None
    results = []
    with tempfile.TemporaryDirectory(prefix="tritonkit-load-") as tmp:
        for t in ctx.targets:
            work = (base or Path(tmp)) / t.name
            work.mkdir(parents=True, exist_ok=True)
            results.append(check_load(ctx, t, work))
    return results
