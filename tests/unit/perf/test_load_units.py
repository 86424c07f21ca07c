"""The load check's pure parts: a fixed-count perf_analyzer command, request sizing, stall text."""

from __future__ import annotations

from types import SimpleNamespace

from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
from tritonkit.perf.stalls import summarize
from tritonkit.validate.load import MAX_REQUESTS, MIN_REQUESTS, planned_requests, stall_text


def test_request_count_spec_has_no_stability_flags():
    argv = PerfSpec(model="m", concurrency=ConcurrencyRange(2, 2), request_count=300).argv("pa", "o.csv")
    assert argv[argv.index("--request-count") + 1] == "300"
    for flag in ("-s", "--max-trials", "--measurement-interval", "--measurement-mode"):
        assert flag not in argv
    sweep = PerfSpec(model="m").argv("pa", "o.csv")  # sweeps keep their stability criterion
    assert "--request-count" not in sweep and "-s" in sweep and "--max-trials" in sweep


def test_planned_requests_follow_the_calibrated_rate_within_bounds():
    point = lambda rate: SimpleNamespace(rows=[SimpleNamespace(req_per_s=rate)])  # noqa: E731
    assert planned_requests(point(150.0), 10) == 1500
    assert planned_requests(point(1.0), 10) == MIN_REQUESTS
    assert planned_requests(point(1e9), 10) == MAX_REQUESTS
    assert planned_requests(SimpleNamespace(rows=[]), 10) == MIN_REQUESTS


def test_stall_text_says_when_the_slo_is_unreachable_with_the_figures():
    stalled = summarize("m", [2.0] * 195 + [510.0, 520.0, 500.0, 505.0, 515.0])
    text = stall_text(stalled, 200.0)
    assert "5 of 200 sequential requests waited 510 ms" in text and "unreachable" in text
    assert "within reach" in stall_text(stalled, 1000.0)
    clean = stall_text(summarize("m", [2.0] * 200), 200.0)
    assert "no queue-policy stall in 200" in clean
