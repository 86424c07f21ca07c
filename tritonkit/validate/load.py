"""load: perf_analyzer at the target concurrency for a set time — zero errors, p99 within the SLO.

perf_analyzer (through :mod:`tritonkit.perf.analyzer`) runs ``--concurrency`` in time windows
of a third of ``--load-seconds`` each with a wide stability band (100% on average latency and
throughput; p99 itself is too noisy to stabilise on): three windows when they agree, up to
``MAX_WINDOWS`` (twice the period) when they do not. The aim is a fixed period of load, not a
converged benchmark; the p99 reported is perf_analyzer's over the final windows. Errors are
counted twice: perf_analyzer fails on any request error, and the server's own failure count
(statistics API) must not rise during the run. A missing perf_analyzer fails the check with the install hint.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tritonkit.errors import TritonkitError
from tritonkit.perf.analyzer import (
    ConcurrencyRange, PerfSpec, analyzer_env, card_input_shapes, check_perf_analyzer, find_perf_analyzer, run_point)
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.result import CheckResult, fail, verdict
from tritonkit.validate.stats import difference, model_counters

WINDOWS = 3
MAX_WINDOWS = 6


def perf_spec(ctx: Context, target: ModelTarget) -> PerfSpec:
    window_ms = max(500, int(ctx.options.load_seconds * 1000 / WINDOWS))
    c = ctx.options.concurrency
    return PerfSpec(model=target.name, url=str(ctx.endpoints.grpc), protocol="grpc", batch_size=1,
                    concurrency=ConcurrencyRange(c, c), measurement_mode="time_windows",
                    measurement_interval_ms=window_ms, stability_pct=100.0, max_trials=MAX_WINDOWS,
                    timeout_s=ctx.options.load_seconds * 3 + 120,
                    input_shapes=card_input_shapes(target.card) if target.card is not None else ())


def check_load(ctx: Context, target: ModelTarget, work_dir: Path) -> CheckResult:
    name = "load.slo"
    try:
        binary = find_perf_analyzer()
        env = analyzer_env()
        check_perf_analyzer(binary, env)
    except TritonkitError as exc:
        return fail(name, str(exc), target.name)
    spec = perf_spec(ctx, target)
    before = model_counters(ctx.grpc(), target.name)
    point = run_point(spec, work_dir, binary, env)
    counted = difference(before, model_counters(ctx.grpc(), target.name))
    server_errors = counted.failures if counted is not None else None
    if not point.ok:
        return fail(name, f"perf_analyzer at concurrency {spec.concurrency.start}: {point.error}"
                          + (f" | {point.stderr_tail.splitlines()[-1]}" if point.stderr_tail else ""),
                    target.name, server_errors=server_errors)
    row = point.rows[-1]
    p99 = row.p99_us / 1000.0
    slo = ctx.options.slo_p99_ms
    problems = []
    if server_errors:
        problems.append(f"the server counted {server_errors} failed requests during the run")
    if server_errors is None:
        problems.append("server failure count unavailable (statistics API)")
    if p99 > slo:
        problems.append(f"p99 {p99:.1f} ms > SLO {slo:g} ms at concurrency {row.concurrency}")
    return verdict(name, problems, f"{row.concurrency} concurrent for {point.seconds:.0f} s: p99 {p99:.1f} ms <= "
                                   f"{slo:g} ms, {row.req_per_s:.0f} req/s, zero errors", target.name,
                   concurrency=row.concurrency, seconds=point.seconds, p50_ms=row.p50_us / 1000.0,
                   p99_ms=p99, slo_p99_ms=slo, requests_per_s=row.req_per_s, server_errors=server_errors)


def run(ctx: Context) -> list[CheckResult]:
    base = ctx.options.out / "load" if ctx.options.out else None
    results = []
    with tempfile.TemporaryDirectory(prefix="tritonkit-load-") as tmp:
        for t in ctx.targets:
            work = (base or Path(tmp)) / t.name
            work.mkdir(parents=True, exist_ok=True)
            results.append(check_load(ctx, t, work))
    return results
