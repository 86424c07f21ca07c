"""Raw inference requests for validation: seeded inputs, one call, a concurrent burst.

Validation talks to tritonclient directly, without the retrying client of
:mod:`tritonkit.client`: a retry would hide exactly the errors these checks count.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from tritonkit.cards import ModelCard


def seeded_batch(card: ModelCard, batch: int, seed: int) -> np.ndarray:
    """A deterministic input batch of the card's shape and dtype (normal noise for floats)."""
    rng = np.random.default_rng(seed)
    shape = card.input_shape(batch)
    dtype = np.dtype(card.input.numpy_dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 255) + 1, shape).astype(dtype)


def make_inputs(card: ModelCard, x: np.ndarray, protocol: str = "grpc") -> list:
    if protocol == "grpc":
        import tritonclient.grpc as client
    else:
        import tritonclient.http as client
    inp = client.InferInput(card.input.name, list(x.shape), card.input.dtype)
    inp.set_data_from_numpy(x)
    return [inp]


def requested_outputs(card: ModelCard) -> list:
    import tritonclient.grpc as grpcclient

    return [grpcclient.InferRequestedOutput(o.name) for o in card.outputs]


def infer(client, model: str, card: ModelCard, x: np.ndarray, timeout_s: float,
          headers: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """One synchronous gRPC inference; outputs by name. Errors propagate."""
    result = client.infer(model, make_inputs(card, x), outputs=requested_outputs(card),
                          client_timeout=timeout_s, headers=dict(headers) if headers else None)
    return {o.name: result.as_numpy(o.name) for o in card.outputs}


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
