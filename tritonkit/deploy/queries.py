"""Triton's metrics as PromQL, defined once.

The dashboard's panels (:mod:`tritonkit.deploy.dashboard`), the recording and alerting rules
(:mod:`tritonkit.deploy.alerts`), the prometheus-adapter rule behind the autoscaler
(:func:`tritonkit.deploy.manifests.adapter_rule`) and the tests that run all of them against a
real Prometheus scraping a real Triton build their expressions from the functions here. Each
function takes a :class:`Scope` (which series, which rate window, which labels to keep) and
returns the expression, so the same query reads ``namespace=~"$namespace"`` over
``$__rate_interval`` in Grafana and ``namespace="serving"`` over ``5m`` in a rule.

What the metrics are (see :mod:`tritonkit.serve.metrics` for the flags that publish them):
Triton's latency counters are cumulative µs over requests, so a mean per request is
``rate(duration) / rate(success)``. A request's compute time is the time of the execution it was
batched into, so the time an instance is busy per second is the mean compute time per request
times the executions per second, and the executed batch size is ``rate(inference_count) /
rate(exec_count)``. Percentiles come from Triton's summaries (per server, over its sliding
window): across replicas the worst server's is shown, never an average of quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from tritonkit.serve.metrics import SUMMARY_QUANTILES
from tritonkit.validate.metrics import PENDING
from tritonkit.validate.metrics import REQUEST_FAILURE as FAILURE   # label reason: OTHER, BACKEND, CANCELED, REJECTED
from tritonkit.validate.metrics import REQUEST_SUCCESS as SUCCESS

INFERENCES = "nv_inference_count"
EXECUTIONS = "nv_inference_exec_count"
REQUEST_US = "nv_inference_request_duration_us"
QUEUE_US = "nv_inference_queue_duration_us"
COMPUTE_US = {"input": "nv_inference_compute_input_duration_us", "infer": "nv_inference_compute_infer_duration_us",
              "output": "nv_inference_compute_output_duration_us"}
REQUEST_SUMMARY = "nv_inference_request_summary_us"
QUEUE_SUMMARY = "nv_inference_queue_summary_us"
CPU_UTIL, CPU_MEM_USED, CPU_MEM_TOTAL = "nv_cpu_utilization", "nv_cpu_memory_used_bytes", "nv_cpu_memory_total_bytes"
GPU_UTIL, GPU_MEM_USED, GPU_MEM_TOTAL = "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"
# Divisions by a request rate are clamped to at least this many per second: no traffic reads 0, not NaN.
MIN_RATE = 0.001
P50, P99 = 0.5, 0.99             # read from the summaries: both in SUMMARY_QUANTILES


@dataclass(frozen=True)
class Scope:
    """Which series a query reads and how it groups them.

    ``server``: label matchers of every series of the deployment (``namespace="x"``,
    ``job="y"``); ``model``: matchers added to per-model series only (server-wide series such as
    GPU utilisation have no model label); ``window``: the rate window; ``by``: the labels kept.
    """

    server: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    window: str = "5m"
    by: tuple[str, ...] = ("model", "version")

    def select(self, metric: str, *extra: str, per_model: bool = True) -> str:
        matchers = (*self.server, *(self.model if per_model else ()), *extra)
        return f"{metric}{{{','.join(matchers)}}}" if matchers else metric

    def rate(self, metric: str, *extra: str) -> str:
        return f"rate({self.select(metric, *extra)}[{self.window}])"

    def sum_rate(self, metric: str, *extra: str, by: tuple[str, ...] | None = None) -> str:
        return f"sum by ({', '.join(self.by if by is None else by)}) ({self.rate(metric, *extra)})"

    def per_request(self, numerator: str) -> str:
        """``numerator`` (an expression grouped by :attr:`by`) divided by the successful request rate."""
        return f"{numerator} / clamp_min({self.sum_rate(SUCCESS)}, {MIN_RATE:g})"


# -------------------------------------------------------------------------------------- traffic

def request_rate(s: Scope) -> str:
    """Successful requests per second."""
    return s.sum_rate(SUCCESS)


def failure_rate_by_reason(s: Scope) -> str:
    """Failed requests per second, by Triton's failure reason."""
    return s.sum_rate(FAILURE, by=(*s.by, "reason"))


def failure_ratio(s: Scope) -> str:
    """Failed requests over all requests."""
    total = f"{s.sum_rate(SUCCESS)} + {s.sum_rate(FAILURE)}"
    return f"{s.sum_rate(FAILURE)} / clamp_min({total}, {MIN_RATE:g})"


# -------------------------------------------------------------------------------------- latency

def queue_us_per_request(s: Scope) -> str:
    """Mean time a request waited in the scheduler's queue (µs); the autoscaler's metric."""
    return s.per_request(s.sum_rate(QUEUE_US))


def compute_us_per_request(stage: str) -> Callable[[Scope], str]:
    """Mean compute time per request of one stage: ``input``, ``infer`` or ``output`` (µs)."""
    metric = COMPUTE_US[stage]

    def query(s: Scope) -> str:
        return s.per_request(s.sum_rate(metric))
    query.__doc__ = f"Mean compute {stage} time per request (µs)."
    return query


def compute_total(s: Scope, by: tuple[str, ...] | None = None) -> str:
    """The three compute stages' µs per second, summed."""
    return "(" + " + ".join(s.sum_rate(m, by=by) for m in COMPUTE_US.values()) + ")"


def compute_us_per_request_total(s: Scope) -> str:
    """Mean compute time per request, the three stages together (µs)."""
    return s.per_request(compute_total(s))


def request_us_per_request(s: Scope) -> str:
    """Mean time a request spent in the server, queue and compute (µs)."""
    return s.per_request(s.sum_rate(REQUEST_US))


def latency_quantile(quantile: float, summary: str = REQUEST_SUMMARY) -> Callable[[Scope], str]:
    """The worst server's ``quantile`` of ``summary`` (µs) over Triton's sliding window."""
    if quantile not in SUMMARY_QUANTILES:
        raise ValueError(f"quantile {quantile} is not published (tritonkit.serve.metrics.SUMMARY_QUANTILES)")

    matcher = f'quantile="{quantile:g}"'

    def query(s: Scope) -> str:
        return f"max by ({', '.join(s.by)}) ({s.select(summary, matcher)})"
    query.__doc__ = f"p{100 * quantile:g} of {summary} (µs), the worst server's."
    return query


# ------------------------------------------------------------------------------ batching, load

def executed_batch_size(s: Scope) -> str:
    """Mean batch size the model actually executed: inferences per execution."""
    return f"{s.sum_rate(INFERENCES)} / clamp_min({s.sum_rate(EXECUTIONS)}, {MIN_RATE:g})"


def pending_requests(s: Scope) -> str:
    """Requests received and not yet executing, summed over the servers."""
    return f"sum by ({', '.join(s.by)}) ({s.select(PENDING)})"


def instances_vector(instances: Mapping[str, int]) -> str:
    """A constant vector: one series per model (label ``model``) whose value is its instance count."""
    return "(" + " or ".join(f'label_replace(vector({n}), "model", "{m}", "", "")'
                             for m, n in sorted(instances.items())) + ")"


def instance_utilisation(instances: Mapping[str, int]) -> Callable[[Scope], str]:
    """Busy fraction of each model's instances, per server, averaged over the servers.

    ``instances``: the instance count per model from config.pbtxt (the servers do not publish it).
    """
    if not instances:
        raise ValueError("instance_utilisation needs at least one model with instances")

    def query(s: Scope) -> str:
        per_server = (*s.by, "instance")
        requests = f"clamp_min({s.sum_rate(SUCCESS, by=per_server)}, {MIN_RATE:g})"
        busy = (f"{compute_total(s, per_server)} / {requests} * {s.sum_rate(EXECUTIONS, by=per_server)} / 1e6")
        return f"avg by ({', '.join(s.by)}) ({busy} / on (model) group_left () {instances_vector(instances)})"
    query.__doc__ = "Busy fraction of the model's instances (compute time per execution x executions/s / instances)."
    return query


# ------------------------------------------------------------------------------------- devices

def _server_series(metric: str) -> Callable[[Scope], str]:
    def query(s: Scope) -> str:
        return s.select(metric, per_model=False)
    query.__doc__ = f"{metric} of each server."
    return query


cpu_utilisation = _server_series(CPU_UTIL)
cpu_memory_used = _server_series(CPU_MEM_USED)
cpu_memory_total = _server_series(CPU_MEM_TOTAL)
gpu_utilisation = _server_series(GPU_UTIL)
gpu_memory_used = _server_series(GPU_MEM_USED)
gpu_memory_total = _server_series(GPU_MEM_TOTAL)


# -------------------------------------------------------------------------------- the catalogue

MODEL_LEGEND = "{{model}} v{{version}}"
SERVER_LEGEND = "{{pod}}"
GPU_LEGEND = "{{pod}} {{gpu_uuid}}"


@dataclass(frozen=True)
class Series:
    legend: str
    query: Callable[[Scope], str]


@dataclass(frozen=True)
class PanelSpec:
    """One dashboard panel: its series, unit (Grafana's unit id) and what it shows."""

    row: str
    title: str
    unit: str
    description: str
    series: tuple[Series, ...]
    per_model: bool = True      # its series carry the model label (False: one per server or GPU)
    gpu: bool = False           # only on the gpu target (GPU metrics need a GPU and DCGM)
    stacked: bool = False


def _traffic() -> list[PanelSpec]:
    return [
        PanelSpec("Traffic", "Requests per second", "reqps", "Successful requests per second, per model and version "
                  "(nv_inference_request_success).", (Series(MODEL_LEGEND, request_rate),)),
        PanelSpec("Traffic", "Failures by reason", "reqps", "Failed requests per second by Triton's reason "
                  "(OTHER, BACKEND, CANCELED, REJECTED: a full queue or a queue timeout).",
                  (Series(MODEL_LEGEND + " {{reason}}", failure_rate_by_reason),)),
        PanelSpec("Traffic", "Failure ratio", "percentunit", "Failed requests over all requests.",
                  (Series(MODEL_LEGEND, failure_ratio),)),
    ]


def _latency() -> list[PanelSpec]:
    stages = tuple(Series(f"{MODEL_LEGEND} compute {stage}", compute_us_per_request(stage)) for stage in COMPUTE_US)
    return [
        PanelSpec("Latency", "Queue vs compute time per request", "µs", "Mean µs per request in the scheduler's "
                  "queue and in the backend's three compute stages (input, infer, output). A growing queue share "
                  "means the instances are saturated; the autoscaler scales on the queue time.",
                  (Series(f"{MODEL_LEGEND} queue", queue_us_per_request), *stages), stacked=True),
        PanelSpec("Latency", "Server latency p50 / p99", "µs", "Triton's request-time summary (queue + compute, no "
                  "network), the worst server's quantile over Triton's sliding window; needs "
                  "--metrics-config=summary_latencies=true (tritonkit's servers pass it).",
                  (Series(f"{MODEL_LEGEND} p50", latency_quantile(P50)),
                   Series(f"{MODEL_LEGEND} p99", latency_quantile(P99)),
                   Series(f"{MODEL_LEGEND} queue p99", latency_quantile(P99, QUEUE_SUMMARY)))),
        PanelSpec("Latency", "Mean server time per request", "µs", "Mean request time in the server (queue and "
                  "compute), from the cumulative counter.", (Series(MODEL_LEGEND, request_us_per_request),)),
    ]


def _load(instances: Mapping[str, int]) -> list[PanelSpec]:
    panels = [
        PanelSpec("Batching and load", "Executed batch size", "short", "Inferences per execution "
                  "(nv_inference_count / nv_inference_exec_count): the batch the model actually ran, client "
                  "batches and the dynamic batcher's merging together.", (Series(MODEL_LEGEND, executed_batch_size),)),
        PanelSpec("Batching and load", "Pending requests", "short", "Requests received and not yet executing "
                  "(nv_inference_pending_request_count), summed over the servers.",
                  (Series(MODEL_LEGEND, pending_requests),)),
    ]
    if instances:
        counts = ", ".join(f"{m} {n}" for m, n in sorted(instances.items()))
        panels.append(PanelSpec("Batching and load", "Instance utilisation", "percentunit", "Busy fraction of the "
                                "model's instances per server, averaged over the servers: compute time per execution "
                                f"x executions per second / instances. Instances from config.pbtxt: {counts}.",
                                (Series(MODEL_LEGEND, instance_utilisation(instances)),)))
    return panels


def _devices(gpu: bool) -> list[PanelSpec]:
    panels = [
        PanelSpec("Server", "CPU utilisation", "percentunit", "The server host's CPU utilisation "
                  "(nv_cpu_utilization, all cores).", (Series(SERVER_LEGEND, cpu_utilisation),), per_model=False),
        PanelSpec("Server", "CPU memory", "bytes", "The server host's memory in use and in total.",
                  (Series(f"{SERVER_LEGEND} used", cpu_memory_used),
                   Series(f"{SERVER_LEGEND} total", cpu_memory_total)),
                  per_model=False),
    ]
    if gpu:
        panels += [
            PanelSpec("GPU", "GPU utilisation", "percentunit", "nv_gpu_utilization per GPU (DCGM; needs "
                      "--allow-gpu-metrics=true, which the gpu-target manifests pass).",
                      (Series(GPU_LEGEND, gpu_utilisation),), per_model=False, gpu=True),
            PanelSpec("GPU", "GPU memory", "bytes", "GPU memory in use and in total, per GPU.",
                      (Series(f"{GPU_LEGEND} used", gpu_memory_used), Series(f"{GPU_LEGEND} total", gpu_memory_total)),
                      per_model=False, gpu=True),
        ]
    return panels


def dashboard_panels(instances: Mapping[str, int], gpu: bool) -> list[PanelSpec]:
    """Every panel of the dashboard, in order (GPU panels only for ``gpu``)."""
    return [*_traffic(), *_latency(), *_load(instances), *_devices(gpu)]


@dataclass(frozen=True)
class RecordSpec:
    """A recording rule: the recorded series' name and its query."""

    record: str
    query: Callable[[Scope], str]
    help: str = ""


# The recorded series (level:metric:operations), per namespace, job, model and version.
REQUESTS_RECORD = "model:tritonkit_requests_per_second:rate5m"
FAILURE_RATIO_RECORD = "model:tritonkit_failure_ratio:rate5m"
QUEUE_RECORD = "model:tritonkit_queue_us_per_request:rate5m"
COMPUTE_RECORD = "model:tritonkit_compute_us_per_request:rate5m"
BATCH_RECORD = "model:tritonkit_executed_batch_size:rate5m"
P99_RECORD = "model:tritonkit_request_p99_us:max"
UTILISATION_RECORD = "model:tritonkit_instance_utilisation:rate5m"


def recording_rules(instances: Mapping[str, int]) -> list[RecordSpec]:
    """The per-model series the alerts read (and a dashboard may read cheaply)."""
    rules = [RecordSpec(REQUESTS_RECORD, request_rate), RecordSpec(FAILURE_RATIO_RECORD, failure_ratio),
             RecordSpec(QUEUE_RECORD, queue_us_per_request), RecordSpec(COMPUTE_RECORD, compute_us_per_request_total),
             RecordSpec(BATCH_RECORD, executed_batch_size), RecordSpec(P99_RECORD, latency_quantile(P99))]
    if instances:
        rules.append(RecordSpec(UTILISATION_RECORD, instance_utilisation(instances)))
    return [RecordSpec(r.record, r.query, (r.query.__doc__ or "").strip()) for r in rules]


def grafana_scope() -> Scope:
    """The dashboard's scope: its ``namespace`` and ``model`` variables, Grafana's rate interval."""
    return Scope(server=('namespace=~"$namespace"',), model=('model=~"$model"',), window="$__rate_interval")
