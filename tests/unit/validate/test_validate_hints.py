"""Hints of failing validation checks: they name the tritonkit command, and a hint already
followed is not given again (pure: the checks' verdict functions on recorded outcomes)."""

from __future__ import annotations

from types import SimpleNamespace

from tritonkit.validate.hints import RECIPE_QUEUE_TIMEOUT_US
from tritonkit.validate.overload import BurstRecord, QueueLimits, metrics_result, rejections_result
from tritonkit.validate.report import ValidationReport
from tritonkit.validate.requests import Outcome
from tritonkit.validate.result import ok

FULL = "Exceeds maximum queue size"


def _record(queue_full: int, accepted: int = 5) -> BurstRecord:
    outcomes = [Outcome(i, 0.01, error=FULL, status="StatusCode.UNAVAILABLE") for i in range(queue_full)]
    outcomes += [Outcome(queue_full + i, 0.02, outputs={}) for i in range(accepted)]
    return BurstRecord(size=len(outcomes), outcomes=outcomes, exec_ms=1.0, rejected_metric_delta=0.0,
                       rejected_metric_name="nv_inference_request_failure", pending_peak=16.0, metrics_error=None)


def test_metrics_hint_adds_a_timeout_only_when_there_is_none():
    size_only = metrics_result(_target(), _record(40), QueueLimits(16, 0, True))
    assert not size_only.passed and "invisible to monitoring" in size_only.detail
    assert "has no timeout" in size_only.detail
    assert f"tritonkit repo ... --queue-timeout-us {RECIPE_QUEUE_TIMEOUT_US}" in size_only.hint


def test_a_followed_hint_is_not_repeated():
    """Size 16 and a 2 s timeout (the hint followed): the queue fills before any request waits
    2 s, so the failure stands, but the advice is the next step, not "add a timeout" again."""
    both = metrics_result(_target(), _record(40), QueueLimits(16, 2_000_000, True))
    assert not both.passed and "the 2000 ms queue timeout never fired" in both.detail
    assert "default_timeout_microseconds" not in both.detail + both.hint and "add" not in both.hint
    assert "no --queue-size" in both.hint and "--queue-timeout-us 2000000" in both.hint


def test_no_rejection_names_the_validate_flag_and_reports_carry_the_hints(tmp_path):
    none = rejections_result(_target(), _record(0, accepted=64), 3000.0)
    assert not none.passed and "`tritonkit validate ... --overload-requests 256`" in none.hint
    report = ValidationReport((ok("readiness.live", "live"), none))
    assert report.to_dict()["checks"][1]["hint"] == none.hint and "hint" not in report.to_dict()["checks"][0]
    md = report.markdown()
    assert "## How to fix" in md and f"- `overload.rejections` (m): {none.hint}" in md


def _target() -> SimpleNamespace:
    """A stand-in for a ModelTarget: the verdict functions read only its name."""
    return SimpleNamespace(name="m")
