"""overload: far above capacity the server sheds load cleanly instead of queueing forever.

Needs a queue policy on the model (``dynamic_batching.default_queue_policy`` with
``max_queue_size`` and/or ``default_timeout_microseconds`` with ``timeout_action: REJECT``);
without one a burst would only pile up, so the check fails saying so and sends nothing.

With one, a burst of single-sample requests is sent all at once (async gRPC), growing x4 up to
three times until the server rejects some. Then:

* rejections: at least one; every error is a queue rejection (not a timeout on the client side
  or a dropped connection); their latency within the bound below.
* accepted latency: p99 of the accepted requests within the bound.
* recovery: after the burst the server and model are ready and a correct request is answered.
* metrics: ``/metrics`` counted the rejections (``nv_inference_request_failure`` with
  ``reason="REJECTED"`` on this Triton, the unlabelled total on older ones) and exposes
  ``nv_inference_pending_request_count`` (its peak during the burst is reported).

  Measured on Triton 2.51: only *queue-timeout* rejections reach that counter (and the
  statistics API); requests refused because the queue is full ("Exceeds maximum queue size",
  gRPC UNAVAILABLE) are never enqueued and are counted nowhere. A policy with only
  ``max_queue_size`` therefore sheds load invisibly to monitoring, and this check fails for it
  saying so; add ``default_timeout_microseconds`` with ``REJECT`` to make overload visible. A
  policy with both limits whose queue fills before any request reaches the timeout fails the
  same way, and its hint is to drop the size limit, not to add the timeout it already has.

Bound: a request can wait for the batches queued ahead of it (``ceil(max_queue_size /
max_batch)`` plus the one executing) and for the queue timeout (enforced lazily, when the
batcher reaches the request: at the next batch, or on the idle batcher's recheck about every
500 ms), then its own execution; the mean execution time is measured
during the burst (statistics API). A timeout-only policy has no size term: its lazily enforced
rejections can take longer than the bound under a large burst, which this check reports. Client-side overhead on a
loaded host is allowed for with ``SLACK_FACTOR`` x bound + ``SLACK_MS``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from tritonkit.errors import ServerError
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.hints import metrics_hint, overload_requests_hint, queue_policy_hint
from tritonkit.validate.metrics import PENDING, fetch_metrics, rejected_count, total
from tritonkit.validate.requests import Outcome, burst, infer, percentiles_ms, seeded_batch
from tritonkit.validate.result import CheckResult, fail, ok, verdict
from tritonkit.validate.stats import difference, model_counters

SLACK_FACTOR = 2.0
SLACK_MS = 100.0
# An idle dynamic batcher re-examines its queue about every 500 ms, so a request whose queue
# timeout expired while nothing else arrived is rejected up to that much late (measured on
# Triton 2.51: 100 ms timeout, rejection after ~503 ms).
BATCHER_IDLE_RECHECK_MS = 500.0
ESCALATIONS = 3
MAX_BURST_BYTES = 256 * 1024 * 1024
QUEUE_FULL_MARKER = "exceeds maximum queue size"
TIMEOUT_MARKERS = ("timeout expired", "timed out")


@dataclass(frozen=True)
class QueueLimits:
    max_queue_size: int
    timeout_us: int
    rejects_on_timeout: bool

    def describe(self) -> str:
        parts = []
        if self.max_queue_size:
            parts.append(f"max_queue_size {self.max_queue_size}")
        if self.timeout_us:
            parts.append(f"timeout {self.timeout_us / 1000:g} ms -> {'REJECT' if self.rejects_on_timeout else 'DELAY'}")
        return ", ".join(parts)


def queue_limits(config: dict) -> QueueLimits | None:
    """The model's default queue policy, if it bounds the queue (size, or timeout with REJECT)."""
    policy = config.get("dynamic_batching", {}).get("default_queue_policy")
    if not policy:
        return None
    size = int(policy.get("max_queue_size", 0) or 0)
    timeout = int(policy.get("default_timeout_microseconds", 0) or 0)
    rejects = policy.get("timeout_action", "REJECT") == "REJECT"
    if size <= 0 and not (timeout > 0 and rejects):
        return None
    return QueueLimits(size, timeout, rejects)


def instance_count(config: dict) -> int:
    return max(1, sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1)


def first_burst_size(limits: QueueLimits, config: dict, requested: int) -> int:
    if requested > 0:
        return requested
    capacity = limits.max_queue_size + max(1, int(config.get("max_batch_size", 1))) * instance_count(config)
    return max(64, 4 * capacity)


def bound_ms(limits: QueueLimits, max_batch: int, exec_ms: float) -> float:
    """Longest time an accepted or rejected request should take, before slack.

    Triton enforces the queue timeout lazily (a timed-out request is rejected when the batcher
    next looks at its queue: at the next batch, or on its idle recheck), so both terms bound a
    request's wait and the larger one applies.
    """
    waits = []
    if limits.max_queue_size:
        waits.append((math.ceil(limits.max_queue_size / max(1, max_batch)) + 1) * exec_ms)
    if limits.timeout_us and limits.rejects_on_timeout:
        waits.append(limits.timeout_us / 1000.0 + max(exec_ms, BATCHER_IDLE_RECHECK_MS))
    return max(waits) + exec_ms


def allowed_ms(bound: float) -> float:
    return SLACK_FACTOR * bound + SLACK_MS


def is_queue_full(outcome: Outcome) -> bool:
    return QUEUE_FULL_MARKER in (outcome.error or "").lower()


def is_queue_timeout(outcome: Outcome) -> bool:
    """A server-side queue-timeout rejection (not the client's own deadline)."""
    text = (outcome.error or "").lower()
    return outcome.status != "StatusCode.DEADLINE_EXCEEDED" and any(m in text for m in TIMEOUT_MARKERS)


def is_rejection(outcome: Outcome) -> bool:
    return not outcome.ok and (is_queue_full(outcome) or is_queue_timeout(outcome))


@dataclass
class PendingSampler:
    """Polls ``/metrics`` in a thread and keeps the peak pending-request count of one model."""

    url: str
    model: str
    interval_s: float = 0.01
    peak: float | None = None
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "PendingSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = total(fetch_metrics(self.url, timeout_s=2.0), PENDING, model=self.model)
            except ServerError as exc:
                self.error = str(exc)
                return
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)
            self._stop.wait(self.interval_s)


@dataclass
class BurstRecord:
    """What one overload run saw, client side and server side."""

    size: int
    outcomes: list[Outcome]
    exec_ms: float | None
    rejected_metric_delta: float | None
    rejected_metric_name: str
    pending_peak: float | None
    metrics_error: str | None

    @property
    def accepted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def rejected(self) -> list[Outcome]:
        return [o for o in self.outcomes if is_rejection(o)]

    @property
    def timed_out(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and is_queue_timeout(o)]

    @property
    def queue_full(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and is_queue_full(o)]

    @property
    def other_errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and not is_rejection(o)]


def _scrape_rejected(ctx: Context, model: str) -> tuple[float | None, str, str | None]:
    try:
        value, series = rejected_count(fetch_metrics(ctx.endpoints.metrics_url), model)
        return value, series, None
    except ServerError as exc:
        return None, "", str(exc)


def drive(ctx: Context, target: ModelTarget, size: int) -> BurstRecord:
    """One burst of ``size`` single-sample requests with metrics taken around it."""
    card = target.card
    before_rej, _, err_before = _scrape_rejected(ctx, target.name)
    before_counts = model_counters(ctx.grpc(), target.name)
    x = seeded_batch(card, 1, ctx.options.seed)
    with PendingSampler(ctx.endpoints.metrics_url, target.name) as sampler:
        outcomes = burst(ctx.grpc(), target.name, card, [x] * size, ctx.options.request_timeout_s)
        time.sleep(0.05)
    after_rej, series, err_after = _scrape_rejected(ctx, target.name)
    counted = difference(before_counts, model_counters(ctx.grpc(), target.name))
    delta = after_rej - (before_rej or 0.0) if after_rej is not None else None
    return BurstRecord(size=size, outcomes=outcomes, exec_ms=counted.mean_execution_ms if counted else None,
                       rejected_metric_delta=delta, rejected_metric_name=series, pending_peak=sampler.peak,
                       metrics_error=err_before or err_after or sampler.error)


def _burst_cap(target: ModelTarget) -> int:
    per_request = max(1, math.prod(target.card.input_shape(1))) * 4  # variable H, W at the opt size
    return max(64, MAX_BURST_BYTES // per_request)


def overload_until_rejected(ctx: Context, target: ModelTarget, limits: QueueLimits) -> BurstRecord:
    size = min(first_burst_size(limits, target.config, ctx.options.overload_requests), _burst_cap(target))
    record = drive(ctx, target, size)
    for _ in range(ESCALATIONS - 1):
        if record.rejected or ctx.options.overload_requests or size >= _burst_cap(target):
            break
        size = min(size * 4, _burst_cap(target))
        record = drive(ctx, target, size)
    return record


def rejections_result(target: ModelTarget, record: BurstRecord, limit_ms: float) -> CheckResult:
    name = "overload.rejections"
    rej = percentiles_ms([o.latency_s for o in record.rejected])
    problems = []
    if not record.rejected:
        problems.append(f"no request rejected at {record.size} concurrent requests: capacity not exceeded "
                        f"(raise --overload-requests)")
    if record.other_errors:
        first = record.other_errors[0]
        problems.append(f"{len(record.other_errors)} requests failed other than by queue rejection "
                        f"({first.status}: {first.error})")
    if rej and rej["p99_ms"] > limit_ms:
        problems.append(f"rejections slow: p99 {rej['p99_ms']:.0f} ms > {limit_ms:.0f} ms")
    return verdict(name, problems, f"{len(record.rejected)} of {record.size} rejected cleanly, p99 "
                                   f"{rej.get('p99_ms', 0):.1f} ms", target.name,
                   hint=overload_requests_hint(record.size) if not record.rejected else None,
                   burst=record.size, rejected=len(record.rejected), queue_full=len(record.queue_full),
                   queue_timeout=len(record.timed_out), other_errors=len(record.other_errors),
                   latency=rej, allowed_ms=limit_ms)


def accepted_result(target: ModelTarget, record: BurstRecord, limit_ms: float, bound: float) -> CheckResult:
    name = "overload.accepted_latency"
    acc = percentiles_ms([o.latency_s for o in record.accepted])
    problems = []
    if not acc:
        problems.append("no request was accepted during the burst")
    elif acc["p99_ms"] > limit_ms:
        problems.append(f"accepted p99 {acc['p99_ms']:.0f} ms > allowed {limit_ms:.0f} ms "
                        f"(queue bound {bound:.0f} ms)")
    return verdict(name, problems, f"{len(record.accepted)} accepted, p99 {acc.get('p99_ms', 0):.1f} ms <= "
                                   f"{limit_ms:.0f} ms", target.name,
                   accepted=len(record.accepted), latency=acc, bound_ms=bound, allowed_ms=limit_ms,
                   exec_ms=record.exec_ms)


def recovery_result(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "overload.recovery"
    try:
        served = ctx.served(target.name)
        ready = served.server_ready() and served.model_ready()
        infer(ctx.grpc(), target.name, target.card, seeded_batch(target.card, 1, 0), ctx.options.request_timeout_s)
    except Exception as exc:
        return fail(name, f"after the burst a correct request failed: {exc}", target.name)
    return verdict(name, [] if ready else ["server or model not ready after the burst"],
                   "server and model ready after the burst; a correct request was answered", target.name)


def metrics_result(target: ModelTarget, record: BurstRecord, limits: QueueLimits) -> CheckResult:
    """The rejections must be visible in /metrics: queue-timeout ones counted, pending exposed."""
    name = "overload.metrics"
    if record.metrics_error:
        return fail(name, f"cannot confirm rejections in /metrics: {record.metrics_error}", target.name)
    timed_out, queue_full = len(record.timed_out), len(record.queue_full)
    delta = record.rejected_metric_delta
    problems = []
    if delta is None:
        problems.append("no nv_inference_request_failure series for this model in /metrics")
    elif delta < timed_out:
        problems.append(f"/metrics counted {delta:g} rejections, the client saw {timed_out} queue-timeout rejections")
    elif delta == 0 and queue_full:
        why = (f"the {limits.timeout_us / 1000:g} ms queue timeout never fired" if limits.timeout_us
               else "the queue policy has no timeout")
        problems.append(f"{queue_full} queue-full rejections do not show in /metrics (this server counts only "
                        f"queue-timeout rejections) and {why}: overload is invisible to monitoring")
    if record.pending_peak is None:
        problems.append(f"{PENDING} not exposed for this model")
    note = f"; {queue_full} queue-full rejections are not counted by this server" if queue_full else ""
    return verdict(name, problems, f"{record.rejected_metric_name} rose by {delta or 0:g} for {timed_out} "
                                   f"queue-timeout rejections{note}; peak {PENDING} {record.pending_peak or 0:g}",
                   target.name, hint=metrics_hint(limits.max_queue_size, limits.timeout_us) if queue_full else None,
                   rejected_metric=record.rejected_metric_name, rejected_delta=delta,
                   client_queue_timeouts=timed_out, client_queue_full=queue_full, pending_peak=record.pending_peak)


def check_overload(ctx: Context, target: ModelTarget) -> list[CheckResult]:
    if target.card is None:
        return [fail("overload.queue_policy", target.card_source, target.name)]
    if target.config_error:
        return [fail("overload.queue_policy", target.config_error, target.name)]
    limits = queue_limits(target.config)
    if limits is None:
        return [fail("overload.queue_policy",
                     "no queue policy: the model queues without bound under overload "
                     "(dynamic_batching.default_queue_policy: max_queue_size and/or default_timeout_microseconds "
                     "with timeout_action REJECT)", target.name, hint=queue_policy_hint())]
    policy = ok("overload.queue_policy", limits.describe(), target.name,
                max_queue_size=limits.max_queue_size, timeout_us=limits.timeout_us)
    try:
        record = overload_until_rejected(ctx, target, limits)
    except Exception as exc:
        return [policy, fail("overload.rejections", f"burst could not be sent: {exc}", target.name)]
    max_batch = max(1, int(target.config.get("max_batch_size", 1)))
    exec_ms = record.exec_ms if record.exec_ms is not None else 0.0
    bound = bound_ms(limits, max_batch, exec_ms)
    limit = allowed_ms(bound)
    return [policy, rejections_result(target, record, limit), accepted_result(target, record, limit, bound),
            recovery_result(ctx, target), metrics_result(target, record, limits)]


@check_group("overload", 70)
def run(ctx: Context) -> list[CheckResult]:
    results = []
    for t in ctx.targets:
        results += check_overload(ctx, t)
    return results
