"""Raw inference requests for validation: seeded inputs, one call, a concurrent burst.

Validation talks to tritonclient directly, without the retrying client of
:mod:`tritonkit.client`: a retry would hide exactly the errors these checks count. The single
requests (:func:`seeded_batch`, :func:`make_inputs`, :func:`requested_outputs`, :func:`infer`)
live in :mod:`tritonkit.triton`, shared with the perf stall probe.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.triton import infer, make_inputs, requested_outputs, seeded_batch

__all__ = ["Outcome", "burst", "percentiles_ms", "infer", "make_inputs", "requested_outputs", "seeded_batch"]


@dataclass
class Outcome:
    """One request of a burst: its latency and either outputs or the server's error."""

    index: int
    latency_s: float
    outputs: dict[str, np.ndarray] | None = None
    error: str | None = None
    status: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Pending:
    total: int
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: list = field(default_factory=list)


def burst(client, model: str, card: ModelCard, batches: list[np.ndarray], timeout_s: float) -> list[Outcome]:
    """Send every batch at once (async gRPC), wait for all; outcomes in send order.

    A request with no answer after ``timeout_s`` is cancelled by the client and reported as an
    error (``DEADLINE_EXCEEDED``), so a hung server shows as failures, not as a hang here.
    """
    pending = _Pending(len(batches))
    if not batches:
        return []

    def callback(index: int, start: float, result, error) -> None:
        latency = time.perf_counter() - start
        if error is not None:
            outcome = Outcome(index, latency, error=error.message() or str(error), status=str(error.status()))
        else:
            outcome = Outcome(index, latency, outputs={o.name: result.as_numpy(o.name) for o in card.outputs})
        with pending.lock:
            pending.outcomes.append(outcome)
            if len(pending.outcomes) == pending.total:
                pending.done.set()

    outputs = requested_outputs(card)
    # Serialize every request first, then send them back to back: the burst reaches the server
    # as close together as the client can make it (so the dynamic batcher sees them at once).
    inputs = [make_inputs(card, x) for x in batches]
    for i, inp in enumerate(inputs):
        start = time.perf_counter()
        client.async_infer(model, inp, callback=_bind(callback, i, start), outputs=outputs, client_timeout=timeout_s)
    if not pending.done.wait(timeout_s + 10.0):
        with pending.lock:
            seen = {o.index for o in pending.outcomes}
            for i in range(len(batches)):
                if i not in seen:
                    pending.outcomes.append(Outcome(i, timeout_s, error="no response (client gave up)",
                                                    status="NO_RESPONSE"))
    with pending.lock:
        return sorted(pending.outcomes, key=lambda o: o.index)


def _bind(callback, index: int, start: float):
    return lambda result, error: callback(index, start, result, error)


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds ({} for no samples)."""
    if not latencies_s:
        return {}
    a = np.asarray(latencies_s) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}
