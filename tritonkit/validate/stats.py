"""Triton's statistics API (never restricted), read for one model.

Two sums matter and differ: ``inference_stats`` accumulates per *request*, ``batch_stats``
per *execution* (one entry per batch size, ``compute_infer.count`` executions each).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelCounters:
    inferences: int          # samples inferred
    executions: int          # model executions (batches)
    failures: int            # failed requests the server counted
    compute_ns: int          # compute input + infer + output, summed over executions

    @property
    def mean_execution_ms(self) -> float | None:
        return self.compute_ns / self.executions / 1e6 if self.executions else None


def model_counters(client, model: str) -> ModelCounters | None:
    """Counters of ``model`` from a tritonclient gRPC client, or None when unavailable."""
    try:
        entry = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    except Exception:  # unreachable server, unknown model, or an unexpected answer shape
        return None
    executions = ns = 0
    for b in entry.get("batch_stats", []):
        executions += int(b.get("compute_infer", {}).get("count", 0))
        ns += sum(int(b.get(k, {}).get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output"))
    failures = int(entry.get("inference_stats", {}).get("fail", {}).get("count", 0))
    return ModelCounters(int(entry.get("inference_count", 0)), executions, failures, ns)


def difference(before: ModelCounters | None, after: ModelCounters | None) -> ModelCounters | None:
    """``after - before`` field by field; None when either is missing."""
    if before is None or after is None:
        return None
    return ModelCounters(after.inferences - before.inferences, after.executions - before.executions,
                         after.failures - before.failures, after.compute_ns - before.compute_ns)
