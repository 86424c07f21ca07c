"""Latency outliers of sequential requests: does a model's config make some requests stall?

One request at a time (nothing else in flight), so a request should never wait in the queue:
any latency far above the median is the server's doing. ``make demo`` probes the classifier
with and without a queue policy on the same ONNX. On the bundled Triton 2.51, while other
processes kept the 2-core machine busy, a model with any ``default_queue_policy`` (a size limit
alone included) had 1-16 of 1,000 sequential requests wait about 500 ms (the dynamic batcher's
idle recheck), and a 100 ms queue timeout rejected them even at concurrency 1; the same model
without a queue policy showed none. On an idle machine neither showed any.

:func:`summarize` is pure and unit-tested; :func:`probe` sends the requests.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from tritonkit.triton import infer, make_client, one_line, seeded_batch

# A request slower than this many times the median, and at least STALL_FLOOR_MS, is a stall.
STALL_FACTOR = 20.0
STALL_FLOOR_MS = 50.0


@dataclass(frozen=True)
class StallSummary:
    model: str
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    stalls: int            # slow outliers, rejected ones included
    stall_ms_median: float | None
    first_errors: tuple[str, ...] = ()

    @property
    def stall_rate(self) -> float:
        return self.stalls / self.requests if self.requests else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "first_errors": list(self.first_errors), "stall_rate": self.stall_rate}


def summarize(model: str, latencies_ms, errors: list[str] | tuple[str, ...] = ()) -> StallSummary:
    """Median, p99, max and the count of stalls (see STALL_FACTOR) of one probe's latencies."""
    lat = np.asarray(latencies_ms, dtype=float)
    if lat.size == 0:
        return StallSummary(model, 0, len(errors), 0.0, 0.0, 0.0, 0, None, tuple(errors[:3]))
    p50 = float(np.percentile(lat, 50))
    slow = lat[lat > max(STALL_FACTOR * p50, STALL_FLOOR_MS)]
    return StallSummary(model, int(lat.size), len(errors), p50, float(np.percentile(lat, 99)), float(lat.max()),
                        int(slow.size), float(np.median(slow)) if slow.size else None, tuple(errors[:3]))


def probe(url: str, model: str, card, requests: int = 1000, timeout_s: float = 10.0,
          headers: dict | None = None) -> StallSummary:
    """``requests`` sequential bs-1 gRPC inferences of seeded input; latency of each, errors kept."""
    x = seeded_batch(card, 1, 0)
    client = make_client("grpc", url)
    latencies, errors = [], []
    try:
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                infer(client, model, card, x, timeout_s, headers)
            except Exception as exc:  # the server's answer is the measurement: keep it, go on
                errors.append(one_line(exc, limit=200))
            latencies.append((time.perf_counter() - t0) * 1e3)
    finally:
        client.close()
    return summarize(model, latencies, errors)
