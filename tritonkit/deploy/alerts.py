"""Prometheus recording and alerting rules for a deployment, and where their thresholds come from.

Recording rules (:func:`tritonkit.deploy.queries.recording_rules`) keep per-model series of the
deployment's servers (``namespace`` and ``job`` of its metrics Service; the ServiceMonitor's job
is the Service's name, and ``deploy observability``'s scrape config uses the same), grouped by
namespace, job, model and version. The alerts read them:

=========================== ============================================================== ==========
alert                       fires when                                                     for
=========================== ============================================================== ==========
TritonkitQueueTimeHigh      mean queue time per request above the queue bound              10 min
TritonkitFailureRatioHigh   failed / all requests above the failure bound                  5 min
TritonkitP99AboveSLO        the worst server's p99 request time above the p99 SLO          10 min
TritonkitModelNotReady      a model of the repository has no series on a scraped server    5 min
TritonkitMetricsDown        a server's metrics endpoint does not answer the scrape         5 min
TritonkitReplicasAtMax      (Kubernetes) the autoscaler at its maximum replicas            N min
TritonkitPodsNotReady       (Kubernetes) a pod of the Deployment not ready                 startup
=========================== ============================================================== ==========

Thresholds (:func:`derive_thresholds`): the p99 SLO is ``--slo-p99-ms`` (the same bound ``perf
tune --p99-ms`` and ``deploy capacity`` take); Triton's p99 is the server's request time (queue
and compute, no network), so it can exceed the client's SLO only when the client's p99 does. The
queue bound is, in this order: given (``--queue-slo-ms``); the sweep's mean queue time per
request at its capacity point (the highest rate within the SLO, :func:`capacity_point`: beyond
it a replica is past what it can serve within the SLO), never below :data:`MIN_QUEUE_US`; the
autoscaler's queue target (sustained above it, the autoscaler is not keeping up); else
:data:`DEFAULT_QUEUE_US`. Kubernetes alerts read kube-state-metrics' series; the pods-not-ready
alert waits the startup probe's budget.

Every alert carries a ``runbook`` annotation naming the tritonkit command that diagnoses it,
and a synthetic scenario that makes it fire and one that keeps it silent
(:class:`Scenario`, run by promtool through :mod:`tritonkit.deploy.alert_tests`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from tritonkit.deploy.manifests import labels as object_labels
from tritonkit.deploy.queries import (
    FAILURE, FAILURE_RATIO_RECORD, P99_RECORD, QUEUE_RECORD, QUEUE_US, REQUEST_SUMMARY, SUCCESS, Scope,
    recording_rules)
from tritonkit.deploy.spec import DeployError, DeploySpec, check_int, check_name
from tritonkit.host import parse_address
from tritonkit.names import check_model_name

MIN_QUEUE_US = 100.0          # Triton's default dynamic-batching delay: a queue bound below it is noise
DEFAULT_QUEUE_US = 10_000.0   # the autoscaler's default target (deploy k8s --queue-target-ms 10)
DEFAULT_FAILURE_RATIO = 0.01
DEFAULT_AT_MAX_MINUTES = 15
RECORDING_GROUP, ALERT_GROUP = "tritonkit.recording", "tritonkit.alerts"
GRPC_PORT = 8001


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """What the alerts compare with, and a line per value saying where it came from."""

    queue_us: float
    p99_ms: float | None = None           # None: no p99 alert (no SLO given)
    failure_ratio: float = DEFAULT_FAILURE_RATIO
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.queue_us) and self.queue_us > 0):
            raise DeployError(f"the queue bound must be a number of µs > 0 (got {self.queue_us})")
        if self.p99_ms is not None and not (math.isfinite(self.p99_ms) and self.p99_ms > 0):
            raise DeployError(f"slo_p99_ms must be a finite number > 0 (got {self.p99_ms})", fields=("slo_p99_ms",))
        if not 0.0 < self.failure_ratio < 1.0:   # False for NaN too
            raise DeployError(f"max_failure_ratio must be in (0, 1) (got {self.failure_ratio})",
                              fields=("max_failure_ratio",))

    def to_dict(self) -> dict:
        return {"queue_us": self.queue_us, "p99_ms": self.p99_ms, "failure_ratio": self.failure_ratio,
                "sources": list(self.sources)}


def derive_thresholds(*, slo_p99_ms: float | None = None, queue_slo_ms: float | None = None,
                      sweep_queue_us: float | None = None, sweep_point: str = "",
                      queue_target_us: int | None = None,
                      failure_ratio: float = DEFAULT_FAILURE_RATIO) -> Thresholds:
    """The alert thresholds (see the module docstring for the order of the queue bound's sources).

    ``sweep_queue_us``: the mean queue time per request the sweep measured at its capacity point,
    described by ``sweep_point`` (:func:`tritonkit.deploy.capacity.point_text`)."""
    if queue_slo_ms is not None and not (math.isfinite(queue_slo_ms) and queue_slo_ms > 0):
        raise DeployError(f"queue_slo_ms must be a finite number of milliseconds > 0 (got {queue_slo_ms})",
                          fields=("queue_slo_ms",))
    sources = []
    if slo_p99_ms is not None:
        sources.append(f"p99 SLO {slo_p99_ms:g} ms (--slo-p99-ms), compared with the server's p99 request time")
    else:
        sources.append("no p99 SLO given (--slo-p99-ms): no p99 alert")
    if queue_slo_ms is not None:
        queue_us = queue_slo_ms * 1000.0
        sources.append(f"queue bound {queue_us:g} µs per request (--queue-slo-ms)")
    elif sweep_queue_us is not None:
        queue_us = max(sweep_queue_us, MIN_QUEUE_US)
        sources.append(f"queue bound {queue_us:g} µs per request: the sweep's mean queue time at its capacity point "
                       f"({sweep_point}; measured {sweep_queue_us:g} µs, taken at least {MIN_QUEUE_US:g} µs)")
    elif queue_target_us is not None:
        queue_us = float(queue_target_us)
        sources.append(f"queue bound {queue_us:g} µs per request: the autoscaler's target (--queue-target-ms); "
                       "sustained above it, the autoscaler is not keeping up")
    else:
        queue_us = DEFAULT_QUEUE_US
        sources.append(f"queue bound {queue_us:g} µs per request: the default "
                       "(no sweep, --queue-slo-ms or autoscaler)")
    sources.append(f"failure bound {failure_ratio:g} of requests (--max-failure-ratio)")
    return Thresholds(queue_us=queue_us, p99_ms=slo_p99_ms, failure_ratio=failure_ratio, sources=tuple(sources))


@dataclass(frozen=True, kw_only=True)
class RuleSpec:
    """The deployment the rules watch: its names, models, thresholds, and how to reach it."""

    name: str
    namespace: str
    models: tuple[str, ...]
    instances: tuple[tuple[str, int], ...]   # (model, instances) of the models that have instances
    thresholds: Thresholds
    url: str = f"127.0.0.1:{GRPC_PORT}"      # gRPC address the runbooks' commands use (not Kubernetes)
    kubernetes: bool = False
    max_replicas: int = 1                     # Kubernetes: the autoscaler's maximum
    at_max_minutes: int = DEFAULT_AT_MAX_MINUTES
    not_ready_minutes: int = 5                # Kubernetes: the startup probe's budget, in minutes

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        check_name(self.namespace, "namespace")
        if not self.models:
            raise DeployError("the repository has no model to watch")
        for model in (*self.models, *(m for m, _ in self.instances)):
            check_model_name(model, "model")      # letters, digits, _ . -: safe in PromQL strings and templates
        object.__setattr__(self, "url", str(parse_address(self.url, GRPC_PORT)))
        check_int(self.max_replicas, "max_replicas", 1)
        check_int(self.at_max_minutes, "at_max_minutes", 1, 1440)
        check_int(self.not_ready_minutes, "not_ready_minutes", 1, 1440)

    @property
    def job(self) -> str:
        """The ``job`` label of the servers' series: the metrics Service's name."""
        return f"{self.name}-metrics"

    @property
    def selector(self) -> tuple[str, ...]:
        return (f'namespace="{self.namespace}"', f'job="{self.job}"')

    def scope(self) -> Scope:
        return Scope(server=self.selector, window="5m", by=("namespace", "job", "model", "version"))

    def recorded(self, record: str) -> str:
        return f"{record}{{{','.join(self.selector)}}}"


# ------------------------------------------------------------------------------------- alerts

MODEL_LABELS = ("namespace", "job", "model", "version")
SERVER_LABELS = ("namespace", "job", "instance", "pod")


@dataclass(frozen=True)
class Scenario:
    """Synthetic series (``selector``, promtool values) for one case, and the labels of the alert it fires."""

    series: tuple[tuple[str, str], ...]
    fired: Mapping[str, str] | None = None    # None: the alert stays silent
    value: float | None = None                # the value of the series the alert compares, where exact


@dataclass(frozen=True)
class AlertRule:
    """One alert. ``summary``, ``description`` and ``runbook`` are format strings over ``labels``."""

    alert: str
    expr: str
    for_minutes: int
    severity: str
    labels: tuple[str, ...]                 # the labels of the series it fires on
    summary: str
    description: str
    runbook: str
    firing: Scenario = field(compare=False, default=Scenario(()))
    silent: Scenario = field(compare=False, default=Scenario(()))

    def annotations(self, values: Mapping[str, str]) -> dict[str, str]:
        return {key: getattr(self, key).format_map(values) for key in ("summary", "description", "runbook")}

    def rule(self) -> dict:
        """The rules-file entry; annotations read the alert's labels with Prometheus' templates."""
        refs = {label: f"{{{{ $labels.{label} }}}}" for label in self.labels}
        return {"alert": self.alert, "expr": self.expr, "for": f"{self.for_minutes}m",
                "labels": {"severity": self.severity}, "annotations": self.annotations(refs)}


def _series(metric: str, labels: Mapping[str, str]) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def plain_number(x: float) -> str:
    """A number as promtool's series notation reads it (plain decimal, no exponent)."""
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


def _counter(per_minute: float, minutes: int) -> str:
    return f"0+{plain_number(per_minute)}x{minutes}"


class _Builder:
    """Builds the alerts of one :class:`RuleSpec` (runbooks, synthetic labels, scenarios)."""

    RATE = 600.0   # synthetic requests per minute (10 per second)

    def __init__(self, rules: RuleSpec):
        self.r = rules
        self.pod = f"{rules.name}-6d9f8b7c5d-x2x4q"
        self.server = {"namespace": rules.namespace, "job": rules.job, "instance": "10.0.0.7:8002", "pod": self.pod}
        self.minutes = 60

    def model_labels(self, model: str) -> dict[str, str]:
        return {**self.server, "model": model, "version": "1"}

    def fired_model(self, model: str) -> dict[str, str]:
        labels = self.model_labels(model)
        return {k: labels[k] for k in MODEL_LABELS}

    def runbook(self, command: str, *, pod: bool = False) -> str:
        """``command`` (a tritonkit command line with ``URL`` where the server's gRPC address goes)."""
        r = self.r
        if not r.kubernetes:
            return command.replace("URL", r.url)
        target = "pod/{pod}" if pod else f"svc/{r.name}"
        return (f"kubectl -n {r.namespace} port-forward {target} {GRPC_PORT}:{GRPC_PORT} & "
                + command.replace("URL", f"127.0.0.1:{GRPC_PORT}"))

    def slo_flag(self) -> str:
        p99 = self.r.thresholds.p99_ms
        return f"--slo-p99-ms {p99:g}" if p99 is not None else "--slo-p99-ms <ms>"

    def request_series(self, model: str, per_minute: float) -> tuple[str, str]:
        return _series(SUCCESS, self.model_labels(model)), _counter(per_minute, self.minutes)

    # -- the alerts

    def queue(self) -> AlertRule:
        r, q = self.r, self.r.thresholds.queue_us
        m = r.models[0]

        def case(per_request: float, fired: bool) -> Scenario:
            per_minute = float(plain_number(self.RATE * per_request))
            series = (self.request_series(m, self.RATE), (_series(QUEUE_US, self.model_labels(m)),
                                                          _counter(per_minute, self.minutes)))
            return Scenario(series, self.fired_model(m) if fired else None, per_minute / self.RATE)
        return AlertRule(
            "TritonkitQueueTimeHigh", f"{r.recorded(QUEUE_RECORD)} > {plain_number(q)}", 10,
            "warning", MODEL_LABELS, "{model} requests wait in Triton's queue above the bound",
            f"Mean queue time per request of {{model}} v{{version}} above {plain_number(q)} µs for 10 minutes in "
            f"{{namespace}}: the instances are saturated (more load than the replicas were planned for).",
            self.runbook(f"tritonkit perf sweep --model {{model}} --url URL --out reports/perf-now; then "
                         f"tritonkit deploy capacity --sweep reports/perf-now {self.slo_flag()} --target-rps "
                         "<the dashboard's request rate>"),
            case(2 * q, True), case(q / 2, False))

    def failures(self) -> AlertRule:
        r, bound = self.r, self.r.thresholds.failure_ratio
        m = r.models[0]

        def case(ratio: float, fired: bool) -> Scenario:
            failed = {**self.model_labels(m), "reason": "BACKEND"}
            per_minute = float(plain_number(self.RATE * ratio / (1 - ratio)))
            series = (self.request_series(m, self.RATE), (_series(FAILURE, failed), _counter(per_minute, self.minutes)))
            return Scenario(series, self.fired_model(m) if fired else None, per_minute / (self.RATE + per_minute))
        return AlertRule(
            "TritonkitFailureRatioHigh", f"{r.recorded(FAILURE_RATIO_RECORD)} > {plain_number(bound)}", 5,
            "critical", MODEL_LABELS, "{model} fails more requests than the bound",
            f"More than {plain_number(bound)} of the requests to {{model}} v{{version}} failed for 5 minutes in "
            "{namespace} "
            "(the dashboard's Failures by reason panel says why: REJECTED is a full queue or a queue timeout).",
            self.runbook("tritonkit validate --url URL --models {model} --checks readiness,contract,correctness,"
                         "bad_requests --out reports/validation"),
            case((1 + bound) / 2, True), case(bound / 2, False))

    def p99(self) -> AlertRule | None:
        r, slo = self.r, self.r.thresholds.p99_ms
        if slo is None:
            return None
        m = r.models[0]

        def case(us: float) -> tuple:
            summary = {**self.model_labels(m), "quantile": "0.99"}
            return ((_series(REQUEST_SUMMARY, summary), f"{plain_number(us)}x{self.minutes}"),)
        return AlertRule(
            "TritonkitP99AboveSLO", f"{r.recorded(P99_RECORD)} > {plain_number(slo * 1000)}", 10,
            "warning", MODEL_LABELS, "{model}'s p99 request time is above the SLO",
            f"The worst server's p99 request time of {{model}} v{{version}} (queue + compute, without the network) "
            f"above the {slo:g} ms SLO for 10 minutes in {{namespace}}: the clients' p99 is above it too.",
            self.runbook(f"tritonkit validate --url URL --models {{model}} --checks load {self.slo_flag()} "
                         "--out reports/validation"),
            Scenario(case(2000 * slo), self.fired_model(m)), Scenario(case(500 * slo)))

    def model_not_ready(self) -> AlertRule:
        r = self.r
        up = _series("up", {"namespace": r.namespace, "job": r.job}) + " == 1"
        each = " or ".join(f'label_replace({up}, "model", "{m}", "", "")' for m in r.models)
        expr = f"({each}) unless on (instance, model) {_series(SUCCESS, {'namespace': r.namespace, 'job': r.job})}"
        scraped = (_series("up", self.server), f"1x{self.minutes}")
        missing = r.models[0]
        loaded = [self.request_series(m, self.RATE) for m in r.models[1:]]
        return AlertRule(
            "TritonkitModelNotReady", expr, 5, "critical", (*SERVER_LABELS, "model"),
            "{model} is not loaded on {pod}",
            "Model {model} of the repository publishes no metrics on {pod} ({instance}) in {namespace} for 5 minutes "
            "while the server answers: it is not loaded (a failed load, or unloaded).",
            self.runbook("tritonkit validate --url URL --models {model} --checks readiness,contract "
                         "--out reports/validation", pod=r.kubernetes),
            Scenario((scraped, *loaded), {**self.server, "model": missing}),
            Scenario((scraped, *loaded, self.request_series(missing, self.RATE))))

    def metrics_down(self) -> AlertRule:
        r = self.r
        models = ",".join(r.models)
        return AlertRule(
            "TritonkitMetricsDown", f"{_series('up', {'namespace': r.namespace, 'job': r.job})} == 0", 5, "critical",
            SERVER_LABELS, "Triton's metrics on {pod} do not answer",
            "Prometheus cannot scrape {instance} ({pod}) in {namespace} for 5 minutes: the server is down or its "
            "metrics port is unreachable; every other alert of this server is blind meanwhile.",
            self.runbook(f"tritonkit validate --url URL --models {models} --checks readiness "
                         "--metrics-url http://{instance}/metrics --out reports/validation", pod=r.kubernetes),
            Scenario(((_series("up", self.server), f"0x{self.minutes}"),), dict(self.server)),
            Scenario(((_series("up", self.server), f"1x{self.minutes}"),)))

    def replicas_at_max(self) -> AlertRule:
        r = self.r
        hpa = {"namespace": r.namespace, "horizontalpodautoscaler": r.name}
        ksm = {**hpa, "job": "kube-state-metrics", "instance": "10.0.0.9:8080"}

        def metric(name: str) -> str:
            return f"max by (namespace, horizontalpodautoscaler) ({_series(name, hpa)})"
        current = "kube_horizontalpodautoscaler_status_current_replicas"
        top = "kube_horizontalpodautoscaler_spec_max_replicas"

        def case(replicas: int) -> tuple:
            return ((_series(current, ksm), f"{replicas}x{self.minutes}"),
                    (_series(top, ksm), f"{r.max_replicas}x{self.minutes}"))
        return AlertRule(
            "TritonkitReplicasAtMax", f"{metric(current)} >= {metric(top)}", r.at_max_minutes, "warning",
            ("namespace", "horizontalpodautoscaler"), "The autoscaler of {horizontalpodautoscaler} is at its maximum",
            f"HorizontalPodAutoscaler {{horizontalpodautoscaler}} in {{namespace}} has run at its maximum replicas "
            f"({r.max_replicas} when written) for {r.at_max_minutes} minutes: the load needs more replicas than "
            "it may add.",
            f"tritonkit deploy capacity --sweep reports/perf {self.slo_flag()} --target-rps <the dashboard's request "
            f"rate>; then tritonkit deploy k8s ... --max-replicas <more>",
            Scenario(case(r.max_replicas), dict(hpa)), Scenario(case(r.max_replicas - 1)))

    def pods_not_ready(self) -> AlertRule:
        r = self.r
        pods = f"{r.name}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}"     # <deployment>-<template hash>-<suffix>
        ready = "kube_pod_status_ready"
        selector = f'{ready}{{namespace="{r.namespace}",pod=~"{pods}",condition=~"false|unknown"}}'

        def state(pod: str, is_ready: bool) -> tuple:
            base = {"namespace": r.namespace, "pod": pod, "job": "kube-state-metrics", "instance": "10.0.0.9:8080"}
            return ((_series(ready, {**base, "condition": "true"}), f"{int(is_ready)}x{self.minutes}"),
                    (_series(ready, {**base, "condition": "false"}), f"{int(not is_ready)}x{self.minutes}"))
        other = f"other-{self.pod.split('-', 1)[1]}"
        return AlertRule(
            "TritonkitPodsNotReady", f"sum by (namespace, pod) ({selector}) > 0", r.not_ready_minutes, "warning",
            ("namespace", "pod"), "Pod {pod} is not ready",
            f"Pod {{pod}} in {{namespace}} has not been ready for {r.not_ready_minutes} minutes (the startup probe's "
            "budget): with --strict-readiness a model that did not load keeps the whole server not ready.",
            f"kubectl -n {r.namespace} logs {{pod}} (Triton names the model that failed); "
            + self.runbook("tritonkit validate --url URL --models " + ",".join(r.models)
                           + " --checks readiness --out reports/validation", pod=True),
            Scenario((*state(self.pod, False), *state(other, True)), {"namespace": r.namespace, "pod": self.pod}),
            Scenario((*state(self.pod, True), *state(other, False))))


def alert_rules(rules: RuleSpec) -> list[AlertRule]:
    """The alerts for ``rules`` (Kubernetes ones only when ``rules.kubernetes``)."""
    b = _Builder(rules)
    alerts = [b.queue(), b.failures(), b.p99(), b.model_not_ready(), b.metrics_down()]
    if rules.kubernetes:
        alerts += [b.replicas_at_max(), b.pods_not_ready()]
    return [a for a in alerts if a is not None]


def rule_groups(rules: RuleSpec) -> list[dict]:
    """The two rule groups (recording, alerting) as a Prometheus rules file and a PrometheusRule hold them."""
    scope = rules.scope()
    records = [{"record": r.record, "expr": r.query(scope)} for r in recording_rules(dict(rules.instances))]
    return [{"name": RECORDING_GROUP, "rules": records},
            {"name": ALERT_GROUP, "rules": [a.rule() for a in alert_rules(rules)]}]


def prometheus_rule(spec: DeploySpec, rules: RuleSpec) -> dict:
    """The same groups as a Prometheus Operator ``PrometheusRule`` in the deployment's namespace."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": object_labels(spec)},
            "spec": {"groups": rule_groups(rules)}}


def rules_for(models: Sequence[str], instances: Mapping[str, int], thresholds: Thresholds, **kw) -> RuleSpec:
    """A :class:`RuleSpec` from plain sequences and mappings (sorted, so the output is stable)."""
    return RuleSpec(models=tuple(models), instances=tuple(sorted(instances.items())), thresholds=thresholds, **kw)
