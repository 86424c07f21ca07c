"""The latency-outlier summary of the queue-policy probe (pure; no server)."""

import pytest

from tritonkit.perf.stalls import STALL_FLOOR_MS, summarize


def test_outliers_far_above_the_median_are_stalls():
    lat = [2.0] * 995 + [501.0, 502.0, 503.0, 30.0, 1.0]
    s = summarize("m", lat, ["Request timeout expired"] * 3)
    assert s.requests == 1000 and s.errors == 3 and s.p50_ms == 2.0
    assert s.stalls == 3 and s.stall_ms_median == 502.0 and s.max_ms == 503.0   # 30 ms is not a stall
    assert s.stall_rate == pytest.approx(0.003) and s.to_dict()["first_errors"] == ["Request timeout expired"] * 3


def test_slow_model_without_outliers_has_no_stalls():
    s = summarize("m", [40.0, 41.0, 45.0, STALL_FLOOR_MS + 1])   # above the floor but not 20x the median
    assert s.stalls == 0 and s.stall_ms_median is None
    assert summarize("m", []).requests == 0
