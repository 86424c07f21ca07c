"""Stage timers and the timing reports: run model vs run stream, and the FlagPerf metrics.

Definitions (all from ``time.perf_counter``):

* **stage times** — ``decode`` and ``preprocess`` are measured per image inside the worker
  pool (summed over workers, so they are CPU time spent, not wall time), ``infer`` is the
  request round trip (submit -> response, batch of images), ``postprocess`` per image.
* **run model** — the preprocessed batches sent one after another (one request in flight):
  ms per batch and img/s. What the model costs behind the server, with nothing around it.
* **run stream latency** — per batch of the whole stream (decode + preprocess + infer +
  postprocess, workers and several requests in flight): from the moment the first of its images
  starts to decode to the end of its postprocess, p50 / p99 over the batches. The time one
  batch takes end to end, comparable with run model's ms per batch. Decode runs in worker
  threads or processes; ``perf_counter`` is the system's monotonic clock, one for all of them.
* **run stream throughput** — images / wall time of the whole stream (img/s). ``run_stream_ms``
  is the same figure per batch (wall time / batches): with several batches in flight it is
  shorter than a batch's latency, so it is no latency.
* FlagPerf names: ``e2e_time`` (s, the whole run), ``p_infer_whole`` (img/s over the stream's
  wall time), ``p_infer_core`` (img/s over the time at least one request was in flight, i.e.
  the union of request intervals, so overlapping requests are not double counted), ``latency``
  (ms per request: mean, p50, p90, p99).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

STAGES = ("decode", "preprocess", "infer", "postprocess")


def latency_stats(values_ms: Sequence[float]) -> dict:
    """mean / p50 / p90 / p99 / min / max of latencies in ms (``count`` 0 -> all None)."""
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "min": None, "max": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"count": int(v.size), "mean": float(v.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "min": float(v.min()), "max": float(v.max())}


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by ``[start, end]`` intervals (overlaps counted once)."""
    total = 0.0
    cur_start = cur_end = None
    for start, end in sorted((float(a), float(b)) for a, b in intervals if b > a):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


@dataclass
class StageTimes:
    """Accumulated per-stage seconds and counts plus every request's (start, end, images)."""

    totals: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})
    requests: list[tuple[float, float, int]] = field(default_factory=list)
    batches: list[tuple[float, float, int]] = field(default_factory=list)   # run stream latency per batch
    wall_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, seconds: float, images: int = 1) -> None:
        with self._lock:
            self.totals[stage] = self.totals.get(stage, 0.0) + seconds
            self.counts[stage] = self.counts.get(stage, 0) + images

    def add_request(self, start: float, end: float, images: int) -> None:
        with self._lock:
            self.requests.append((start, end, images))
            self.totals["infer"] += end - start
            self.counts["infer"] += images

    def add_batch(self, started: float, finished: float, images: int) -> None:
        """One batch of the stream: its first image started decoding at ``started``, its
        postprocess ended at ``finished``."""
        with self._lock:
            self.batches.append((started, finished, images))

    def batch_latencies_ms(self) -> list[float]:
        """Run stream latency of every batch (ms): decode start of its first image -> postprocess end."""
        return [(e - s) * 1e3 for s, e, _ in self.batches]

    @property
    def images(self) -> int:
        return sum(n for _, _, n in self.requests)

    def latencies_ms(self) -> list[float]:
        return [(e - s) * 1e3 for s, e, _ in self.requests]

    def infer_busy_s(self) -> float:
        return union_length((s, e) for s, e, _ in self.requests)

    def per_stage(self) -> dict:
        """ms per image for each stage, total seconds, and (infer) ms per request."""
        out = {}
        for stage in STAGES:
            n = self.counts.get(stage, 0)
            total = self.totals.get(stage, 0.0)
            out[stage] = {"total_s": total, "images": n, "ms_per_image": (total / n * 1e3) if n else None}
        reqs = len(self.requests)
        out["infer"]["requests"] = reqs
        out["infer"]["ms_per_request"] = (self.totals["infer"] / reqs * 1e3) if reqs else None
        out["infer"]["busy_s"] = self.infer_busy_s()
        return out


def flagperf_metrics(times: StageTimes, e2e_s: float) -> dict:
    """``e2e_time``, ``p_infer_whole``, ``p_infer_core`` and ``latency`` for one stream run."""
    n = times.images
    busy = times.infer_busy_s()
    return {
        "e2e_time": e2e_s,
        "p_infer_whole": n / times.wall_s if times.wall_s > 0 else None,
        "p_infer_core": n / busy if busy > 0 else None,
        "latency": latency_stats(times.latencies_ms()),
    }


@dataclass(frozen=True)
class BatchTiming:
    """One row of the run-model vs run-stream table (one batch size)."""

    batch_size: int
    images: int
    run_model_ms: float | None       # ms per batch, batches sent one at a time
    run_model_img_s: float | None
    run_stream_ms: float | None      # stream wall time / batches: 1 / throughput per batch, not a latency
    run_stream_img_s: float | None   # run stream throughput: images / stream wall time
    run_stream_latency_p50_ms: float | None = None   # per batch: first image's decode start -> postprocess end
    run_stream_latency_p99_ms: float | None = None
    run_stream_latency_mean_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def run_model_times(submit, batches: Sequence[np.ndarray], warmup: int = 1) -> list[float]:
    """Seconds per batch sending ``batches`` one after another (``submit(x).result()``).

    The first ``warmup`` batches are sent once more beforehand and not counted.
    """
    for x in batches[:warmup]:
        submit(x).result()
    out = []
    for x in batches:
        t0 = time.perf_counter()
        submit(x).result()
        out.append(time.perf_counter() - t0)
    return out


def batch_timing(batch_size: int, model_s: Sequence[float], model_images: int, stream_wall_s: float,
                 stream_batches: int, stream_images: int, stream_latencies_ms: Sequence[float] = ()) -> BatchTiming:
    """Pure: the table row from run-model per-batch seconds, the stream's wall time and the
    stream's per-batch latencies (ms, :meth:`StageTimes.batch_latencies_ms`)."""
    model_total = float(sum(model_s))
    latency = latency_stats(stream_latencies_ms)
    return BatchTiming(
        batch_size=batch_size,
        images=stream_images,
        run_model_ms=model_total / len(model_s) * 1e3 if model_s else None,
        run_model_img_s=model_images / model_total if model_total > 0 else None,
        run_stream_ms=stream_wall_s / stream_batches * 1e3 if stream_batches else None,
        run_stream_img_s=stream_images / stream_wall_s if stream_wall_s > 0 else None,
        run_stream_latency_p50_ms=latency["p50"], run_stream_latency_p99_ms=latency["p99"],
        run_stream_latency_mean_ms=latency["mean"],
    )
