"""Run the battery: resolve the server and the models, run each requested check group, report.

:func:`validate` is the library entry point (``make demo`` validates its own deployment with
it); ``tritonkit validate`` is a thin CLI over it. Nothing here raises for a failing check:
a check that cannot run (server down, tool missing, no card) is a failed result with the
reason, and an unexpected error inside a check becomes a failed result naming it.

The groups are the ones the check modules register (:mod:`tritonkit.validate.groups`); they
run in their declared order.

Several endpoints (``--url`` a comma list or a DNS name with several addresses): the groups
that say whether a replica serves the right model correctly (those registered
``per_endpoint``: readiness, contract, correctness) run against every endpoint, each result's detail starting
with its endpoint; the rest (bad requests, security, load, overload, soak) probe the server's
configuration and capacity, which every replica of one deployment shares, and run once, against
the first endpoint that passed readiness (named in the report) — validate one endpoint by its
address to stress that one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

from tritonkit.validate import (  # noqa: F401 - importing a check module registers its group
    badrequests, contract, correctness, load, overload, readiness, security, soak)
from tritonkit.validate.context import Context, endpoint_addresses, resolve_target
from tritonkit.validate.groups import get_group
from tritonkit.validate.options import ValidateOptions
from tritonkit.validate.report import ValidationReport
from tritonkit.validate.result import CheckResult, fail


def run_group(group: str, ctx: Context) -> list[CheckResult]:
    try:
        return get_group(group).run(ctx)
    except Exception as exc:  # a bug or an unforeseen server answer must not lose the other results
        return [fail(group, f"check crashed: {type(exc).__name__}: {exc}")]


def not_run(group: str, ctx: Context, why: str) -> list[CheckResult]:
    models = [t.name for t in ctx.targets] or list(ctx.options.models)
    return [fail(group, f"not run: {why}", m) for m in models]


def _server_info(ctx: Context, version: str) -> dict:
    ep = ctx.endpoints
    process = f"server pid {ep.pid} ({ep.pid_note})" if ep.pid else f"no server process here: {ep.pid_note}"
    return {"grpc": str(ep.grpc), "http": str(ep.http), "metrics": ep.metrics_url, "local": ep.local,
            "pid": ep.pid, "process": process, "repository": str(ep.repo) if ep.repo else None,
            "version": version}


def validate(options: ValidateOptions) -> ValidationReport:
    """Run the requested checks against the server at ``options.url`` (or its several
    endpoints, see the module docstring); write the report to ``options.out`` when set.
    Returns the report (``report.passed`` is the verdict)."""
    addresses = endpoint_addresses(options)
    if len(addresses) > 1:
        report = validate_endpoints(options, addresses)
    else:
        report = run_checks(options, options.groups())
    if options.out is not None:
        report.write(options.out)
    return report


def _at(address: str, report: ValidationReport) -> list[CheckResult]:
    return [replace(c, detail=f"{address}: {c.detail}", figures={**c.figures, "endpoint": address})
            for c in report.checks]


def validate_endpoints(options: ValidateOptions, addresses: list[str]) -> ValidationReport:
    """Per-endpoint groups at every endpoint, the others once at the first ready endpoint."""
    options.check_several_endpoints()
    groups = options.groups()
    per = tuple(g for g in groups if get_group(g).per_endpoint)
    shared = tuple(g for g in groups if not get_group(g).per_endpoint)
    reports = {a: run_checks(replace(options, url=a), per) for a in addresses}
    ready = [a for a, r in reports.items() if r.server.get("version") != "?"
             and not any(c.group == "readiness" and not c.passed for c in r.checks)]
    checks = [c for a, r in reports.items() for c in _at(a, r)]
    stress_at = ready[0] if ready else None
    if shared and stress_at is not None:
        checks += _at(stress_at, run_checks(replace(options, url=stress_at), shared))
    elif shared:
        checks += [fail(g, f"not run: no endpoint of {', '.join(addresses)} is ready", m)
                   for g in shared for m in options.models]
    first = reports[ready[0] if ready else addresses[0]]
    server = {**first.server, "grpc": options.url, "endpoints": addresses, "ready_endpoints": ready,
              "shared_checks_at": stress_at}
    return ValidationReport(checks=tuple(checks), server=server, models=first.models,
                            not_requested=first.not_requested, started=first.started,
                            seconds=sum(r.seconds for r in reports.values()))


def run_checks(options: ValidateOptions, groups: tuple[str, ...]) -> ValidationReport:
    """The check ``groups`` against the one server at ``options.url`` (the report is not written)."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    ctx = Context.create(options)
    results: list[CheckResult] = []
    version = "?"
    try:
        live = readiness.check_live(ctx)
        if live.passed:
            ctx.targets = tuple(resolve_target(ctx.served(m), options, ctx.endpoints.repo) for m in options.models)
            try:
                version = ctx.grpc().get_server_metadata(as_json=True).get("version", "?")
            except Exception:
                version = "?"
        for group in groups:
            if live.passed:
                results += run_group(group, ctx)
            elif group == "readiness":
                results.append(live)
            else:
                results += not_run(group, ctx, f"no server answers at {ctx.endpoints.grpc}")
    finally:
        ctx.close()
    models = tuple({"name": t.name, "card_source": t.card_source, "reference_source": t.reference_source,
                    "precision": f"{t.precision} ({t.precision_source})"} for t in ctx.targets)
    return ValidationReport(checks=tuple(results), server=_server_info(ctx, version), models=models,
                            not_requested=options.not_requested(), started=started, seconds=time.monotonic() - t0)
