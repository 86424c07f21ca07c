"""Capacity planning from a perf sweep: the replicas a target request rate needs, checked by hand."""

from __future__ import annotations

import pytest

from tritonkit.deploy.capacity import CapacityRequest, CapacityRule, load_sweep, plan_capacity
from tritonkit.deploy.spec import DeployError
from tritonkit.perf.results import LatencySplit, PerfRow, write_rows_csv


def row(model: str, bs: int, conc: int, req_per_s: float, p99_ms: float, protocol: str = "grpc") -> PerfRow:
    split = LatencySplit(0, 0, 0, 0, p99_ms * 500.0, 0, 0)
    return PerfRow(model=model, batch_size=bs, concurrency=conc, infer_per_s=req_per_s * bs, avg_us=p99_ms * 500.0,
                   p50_us=p99_ms * 500.0, p90_us=p99_ms * 800.0, p95_us=p99_ms * 900.0, p99_us=p99_ms * 1000.0,
                   split=split, protocol=protocol)


SWEEP = [row("resnet50", 1, 1, 100.0, 10.0), row("resnet50", 1, 4, 380.0, 30.0), row("resnet50", 1, 8, 450.0, 80.0),
         row("resnet50", 4, 1, 60.0, 20.0), row("resnet50", 4, 4, 150.0, 45.0), row("resnet50", 4, 8, 170.0, 95.0)]


def test_hand_worked_case():
    """bs 1 (the smallest measured): within p99 <= 50 ms the best point is c=4 at 380 req/s.
    Headroom 25 % -> 285 req/s planned per replica; 1000 / 285 = 3.51 -> 4 replicas, + 1 spare = 5."""
    plan = plan_capacity(SWEEP, CapacityRequest(slo_p99_ms=50, target_rps=1000, rule=CapacityRule(headroom=0.25)))
    assert (plan.model, plan.batch_size, plan.concurrency, plan.config) == ("resnet50", 1, 4, "grpc")
    assert plan.capacity_rps == pytest.approx(380.0) and plan.capacity_img_per_s == pytest.approx(380.0)
    assert plan.p99_ms == pytest.approx(30.0)
    assert plan.usable_rps == pytest.approx(285.0)
    assert (plan.replicas_for_load, plan.replicas) == (4, 5)
    assert "75%" in plan.rule and "ceil(target / (capacity x 0.75)) + 1" in plan.rule


def test_batch_size_four_counts_requests_not_images():
    """bs 4: within 50 ms the best is c=4, 150 req/s (600 img/s). Headroom 30 % -> 105 req/s;
    300 / 105 = 2.86 -> 3, + 1 spare = 4."""
    plan = plan_capacity(SWEEP, CapacityRequest(slo_p99_ms=50, target_rps=300, batch_size=4))
    assert plan.capacity_rps == pytest.approx(150.0) and plan.capacity_img_per_s == pytest.approx(600.0)
    assert plan.usable_rps == pytest.approx(105.0)
    assert (plan.replicas_for_load, plan.replicas) == (3, 4)


def test_exact_division_needs_no_extra_replica_and_the_minimum_holds():
    rows = [row("m", 1, 2, 400.0, 5.0)]
    # 400 x 0.75 = 300 planned per replica: 900 req/s is exactly 3 replicas, + 1 spare
    assert plan_capacity(rows, CapacityRequest(slo_p99_ms=10, target_rps=900,
                                               rule=CapacityRule(headroom=0.25))).replicas == 4
    small = CapacityRequest(slo_p99_ms=10, target_rps=10, rule=CapacityRule(spare=0, min_replicas=3))
    plan = plan_capacity(rows, small)
    assert (plan.replicas_for_load, plan.replicas) == (1, 3)


def test_tighter_slo_picks_a_lower_point():
    plan = plan_capacity(SWEEP, CapacityRequest(slo_p99_ms=15, target_rps=1000, rule=CapacityRule(headroom=0.0)))
    assert plan.concurrency == 1 and plan.capacity_rps == pytest.approx(100.0)
    assert (plan.replicas_for_load, plan.replicas) == (10, 11)


def test_errors_name_the_problem():
    with pytest.raises(DeployError, match=r"p99 <= 5 ms \(lowest p99 10.0 ms\)"):
        plan_capacity(SWEEP, CapacityRequest(slo_p99_ms=5, target_rps=100))
    two = SWEEP + [row("yolo", 1, 1, 50.0, 20.0)]
    with pytest.raises(DeployError, match="several models"):
        plan_capacity(two, CapacityRequest(slo_p99_ms=50, target_rps=100))
    assert plan_capacity(two, CapacityRequest(slo_p99_ms=50, target_rps=100, model="yolo")).capacity_rps == 50.0
    with pytest.raises(DeployError, match="batch_size 2 was not measured"):
        plan_capacity(SWEEP, CapacityRequest(slo_p99_ms=50, target_rps=100, batch_size=2))
    with pytest.raises(DeployError, match="headroom"):
        CapacityRule(headroom=1.0)


def test_reads_the_sweep_csv_from_its_folder(tmp_path):
    write_rows_csv(SWEEP, tmp_path / "sweep.csv")
    rows = load_sweep(tmp_path)
    plan = plan_capacity(rows, CapacityRequest(slo_p99_ms=50, target_rps=1000, rule=CapacityRule(headroom=0.25)))
    assert plan.replicas == 5
    md = plan.markdown()
    assert md.startswith("## Capacity") and "380.0 req/s" in md and "| replicas | 5 |" in md
