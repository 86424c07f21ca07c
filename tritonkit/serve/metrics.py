"""The metrics every server tritonkit starts publishes, beyond Triton's defaults.

Triton (2.51 bundled here, and NGC's 25.x images) publishes per model and version, on its
metrics port: request success and failure counts (failures with a ``reason`` label: OTHER,
BACKEND, CANCELED, REJECTED), inference and execution counts, cumulative request, queue and
compute input / infer / output times in µs (``counter_latencies``, on by default), the pending
request count, and the CPU (and, with ``--allow-gpu-metrics``, GPU) utilisation and memory.

Latency percentiles need ``--metrics-config summary_latencies=true`` (off by default): it adds
the Prometheus summaries ``nv_inference_{request,queue,compute_input,compute_infer,
compute_output}_summary_us`` with one series per quantile of :data:`SUMMARY_QUANTILES` (set with
``summary_quantiles=<q>:<error>,...``), over Triton's sliding window. Triton 2.51 offers no
latency histogram for these (only counters and summaries), so the percentiles are per server:
across replicas a dashboard or alert can take the worst pod's, not a fleet-wide quantile.

:func:`metrics_flags` are the flags that turn them on; the local server
(:mod:`tritonkit.serve.local`), the mounted docker profile (:mod:`tritonkit.serve.profiles`)
and the Kubernetes manifests (:mod:`tritonkit.deploy.manifests`) all pass them.
"""

from __future__ import annotations

# quantile -> the error Triton's summary may make on it (prometheus-cpp's CKMS estimator)
SUMMARY_QUANTILES = {0.5: 0.05, 0.9: 0.01, 0.99: 0.001}


def metrics_flags() -> tuple[str, ...]:
    """tritonserver flags: latency summaries on, with the quantiles of :data:`SUMMARY_QUANTILES`."""
    quantiles = ",".join(f"{q:g}:{e:g}" for q, e in SUMMARY_QUANTILES.items())
    return ("--metrics-config=summary_latencies=true", f"--metrics-config=summary_quantiles={quantiles}")
