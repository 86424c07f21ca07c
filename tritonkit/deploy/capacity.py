"""Replicas needed for a target request rate, from a perf sweep's throughput at the SLO.

Input: the rows of a ``tritonkit perf sweep`` (``sweep.csv``, read by
:func:`tritonkit.perf.results.read_rows_csv`), measured against ONE server with the resources a
replica gets. For the chosen model and client batch size, the per-replica capacity is the highest
request rate among the measured points whose p99 latency is within the SLO.

Headroom rule (:class:`CapacityRule`): each replica is planned at no more than
``1 - headroom`` of that capacity (load is never spread perfectly and the sweep's point is the
edge of the SLO), then ``spare`` replicas are added so that losing one (a node drain, a rolling
update, a crash) keeps the rest within the SLO; never fewer than ``min_replicas``::

    replicas = max(min_replicas, ceil(target_rps / (capacity_rps * (1 - headroom))) + spare)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from tritonkit.deploy.spec import DeployError, check_int
from tritonkit.perf.results import PerfRow, read_rows_csv
from tritonkit.report import fmt, markdown_table

SWEEP_CSV = "sweep.csv"


@dataclass(frozen=True, kw_only=True)
class CapacityRule:
    headroom: float = 0.3
    spare: int = 1
    min_replicas: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.headroom < 1.0:  # False for NaN too
            raise DeployError(f"headroom must be in [0, 1) (got {self.headroom})", fields=("headroom",))
        check_int(self.spare, "spare", 0, 1000)
        check_int(self.min_replicas, "min_replicas", 1)

    def text(self) -> str:
        return (f"each replica planned at {100 * (1 - self.headroom):g}% of its throughput at the SLO "
                f"(headroom {100 * self.headroom:g}%), plus {self.spare} spare replica(s) so one can be lost, "
                f"at least {self.min_replicas}: replicas = max({self.min_replicas}, "
                f"ceil(target / (capacity x {1 - self.headroom:g})) + {self.spare})")


@dataclass(frozen=True, kw_only=True)
class CapacityRequest:
    slo_p99_ms: float
    target_rps: float
    model: str | None = None          # None: the only model of the sweep
    batch_size: int | None = None     # None: the smallest batch size measured (requests of that size)
    rule: CapacityRule = field(default_factory=CapacityRule)

    def __post_init__(self) -> None:
        for field in ("slo_p99_ms", "target_rps"):
            value = getattr(self, field)
            if not math.isfinite(value) or value <= 0:
                raise DeployError(f"{field} must be a finite number > 0 (got {value})", fields=(field,))
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", 1)


@dataclass(frozen=True)
class CapacityPlan:
    model: str
    config: str                 # how the sweep served it: grpc, http+shm ...
    batch_size: int
    slo_p99_ms: float
    target_rps: float
    capacity_rps: float         # per replica, at the SLO
    capacity_img_per_s: float
    concurrency: int            # the sweep point that gave it
    p99_ms: float
    queue_us: float             # mean queue time per request at that point (the server's, from the sweep)
    point: str                  # that point in words (point_text)
    usable_rps: float           # capacity x (1 - headroom)
    replicas_for_load: int
    replicas: int
    rule: str

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        rows = [("model (served as)", f"{self.model} ({self.config})"), ("client batch size", self.batch_size),
                ("SLO", f"p99 <= {fmt(self.slo_p99_ms, 1)} ms"),
                ("throughput at the SLO, one replica", f"{fmt(self.capacity_rps, 1)} req/s "
                 f"({fmt(self.capacity_img_per_s, 1)} img/s) at concurrency {self.concurrency}, "
                 f"p99 {fmt(self.p99_ms, 1)} ms, queue {fmt(self.queue_us / 1000, 2)} ms per request"),
                ("planned per replica", f"{fmt(self.usable_rps, 1)} req/s"),
                ("target", f"{fmt(self.target_rps, 1)} req/s"),
                ("replicas for the load", self.replicas_for_load), ("replicas", self.replicas)]
        return ("## Capacity\n\n" + markdown_table(("", "value"), rows) + f"\nRule: {self.rule}.\n\n"
                "The sweep measured one server with the resources one replica gets; the rate is requests of the "
                "client batch size above, at the client that ran the sweep.\n")


def load_sweep(path: str | Path) -> list[PerfRow]:
    """The rows of a sweep: its ``sweep.csv``, or the sweep's output folder holding it."""
    p = Path(path)
    return read_rows_csv(p / SWEEP_CSV if p.is_dir() else p)


def _pick(rows: Sequence[PerfRow], model: str | None, batch_size: int | None) -> tuple[str, int, list[PerfRow]]:
    models = sorted({r.model for r in rows})
    if not models:
        raise DeployError("the sweep has no measured point")
    model = model or (models[0] if len(models) == 1 else None)
    if model is None:
        raise DeployError(f"the sweep measured several models ({', '.join(models)}): choose one with model")
    mine = [r for r in rows if r.model == model]
    if not mine:
        raise DeployError(f"model {model!r} is not in the sweep (measured: {', '.join(models)})")
    sizes = sorted({r.batch_size for r in mine})
    size = batch_size or sizes[0]
    chosen = [r for r in mine if r.batch_size == size]
    if not chosen:
        raise DeployError(f"batch_size {size} was not measured for {model!r} (measured: {sizes})")
    return model, size, chosen


def capacity_point(rows: Sequence[PerfRow], slo_p99_ms: float, model: str | None = None,
                   batch_size: int | None = None) -> PerfRow:
    """The sweep's point of highest request rate with p99 within ``slo_p99_ms``, for ``model`` (default:
    the sweep's only model) at ``batch_size`` (default: the smallest measured)."""
    model, size, chosen = _pick(rows, model, batch_size)
    within = [r for r in chosen if r.p99_us / 1000.0 <= slo_p99_ms]
    if not within:
        best = min(r.p99_us for r in chosen) / 1000.0
        raise DeployError(f"no measured point of {model!r} at batch size {size} meets p99 <= {slo_p99_ms:g} ms "
                          f"(lowest p99 {best:.1f} ms)")
    return max(within, key=lambda r: r.req_per_s)


def point_text(row: PerfRow) -> str:
    """One sweep point in words: model, batch size, concurrency, rate, p99."""
    return (f"{row.model}, batch size {row.batch_size}, concurrency {row.concurrency}: {row.req_per_s:.1f} req/s, "
            f"p99 {row.p99_us / 1000:.1f} ms")


def plan_capacity(rows: Sequence[PerfRow], request: CapacityRequest) -> CapacityPlan:
    """Replicas for ``request.target_rps`` under the headroom rule (see the module docstring)."""
    best = capacity_point(rows, request.slo_p99_ms, request.model, request.batch_size)
    model, size = best.model, best.batch_size
    rule = request.rule
    usable = best.req_per_s * (1.0 - rule.headroom)
    if not usable > 0:
        raise DeployError(f"the sweep's point within the SLO ({model!r}, batch size {size}) served "
                          f"{best.req_per_s} req/s; no capacity can be planned from it")
    for_load = math.ceil(request.target_rps / usable - 1e-9)  # 3.0000000001 is 3 replicas
    replicas = max(rule.min_replicas, for_load + rule.spare)
    return CapacityPlan(model=model, config=best.config, batch_size=size, slo_p99_ms=request.slo_p99_ms,
                        target_rps=request.target_rps, capacity_rps=best.req_per_s,
                        capacity_img_per_s=best.img_per_s, concurrency=best.concurrency,
                        p99_ms=best.p99_us / 1000.0, queue_us=best.split.server_queue_us, point=point_text(best),
                        usable_rps=usable,
                        replicas_for_load=for_load, replicas=replicas, rule=rule.text())
