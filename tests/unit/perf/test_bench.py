"""The bench (benchmarks/): ratio verdicts from interleaved pairs, the report, the PyTriton fix.

Nothing here measures speed: the figures are given, and perf_analyzer rows come from captured CSVs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import bench
from benchmarks.pytriton_peer import matching_libpython_env
from benchmarks.ratios import (INCONCLUSIVE, MET, NOT_JUDGED, NOT_MEASURED, UNMET, Measured, RatioResult, RatioSpec,
                               interleave, verdict)
from tritonkit.perf.results import parse_csv
from tritonkit.steps import StepLog
from support.paths import DATA as TEST_DATA

DATA = TEST_DATA / "perf"


# -- verdicts ----------------------------------------------------------------------------------------

def test_a_ratio_is_met_or_unmet_only_when_its_spread_is_within_its_margin():
    assert verdict([1.10, 1.12, 1.11], 1.0) == MET              # spread 0.02 < margin 0.11
    assert verdict([0.70, 0.72, 0.71], 0.8) == UNMET            # spread 0.02 < margin 0.09
    assert verdict([0.95, 1.20, 1.05], 1.0) == INCONCLUSIVE     # spread 0.25 > margin 0.05
    assert verdict([1.76, 5.58, 3.0], 2.0) == INCONCLUSIVE      # two runs of main: 1.76 and 5.58
    assert verdict([0.5, 0.95, 0.6], 1.0) == INCONCLUSIVE       # spread 0.45 > margin 0.4 (median 0.6) ...
    assert verdict([0.5, 0.8, 0.6], 1.0) == UNMET               # ... spread 0.3 < margin 0.4
    assert verdict([2.0, 2.0, 2.0], 2.0) == MET                 # on the goal, no spread: met


def test_too_few_pairs_no_pair_and_unjudged_goals():
    assert verdict([3.0, 3.0], 1.0) == INCONCLUSIVE             # fewer than three pairs
    assert verdict([], 1.0) == NOT_MEASURED
    assert verdict([], 1.0, judged=False) == NOT_MEASURED
    assert verdict([1.2, 1.3, 1.25], 2.0, judged=False) == NOT_JUDGED


def test_the_verdict_is_symmetric_in_spread_not_in_the_side_of_the_goal():
    # the same spread is conclusive far from the goal, inconclusive near it
    assert verdict([1.4, 1.5, 1.6], 1.0) == MET
    assert verdict([1.4, 1.5, 1.6], 1.45) == INCONCLUSIVE
    assert verdict([1.4, 1.5, 1.6], 1.9) == UNMET


def test_interleave_measures_a_then_b_in_every_pair():
    order: list[str] = []
    pairs = interleave(lambda: order.append("A") or len(order), lambda: order.append("B") or -len(order), 3)
    assert order == ["A", "B"] * 3
    assert pairs == [(1, -2), (3, -4), (5, -6)]


def test_ratio_result_median_min_max_and_medians_of_each_side():
    spec = RatioSpec("serving_efficiency", 0.97, measure=lambda run: None)
    r = RatioResult.of(spec, Measured([(30.0, 28.0), (27.0, 30.0), (33.0, 30.0)], "served", "in-process"),
                       load_before=1.5, load_after=2.5)
    assert r.values == pytest.approx([30 / 28, 0.9, 1.1])
    assert r.median == pytest.approx(30 / 28) and r.min == pytest.approx(0.9) and r.max == pytest.approx(1.1)
    assert r.numerator == 30.0 and r.denominator == 30.0      # medians of A and of B
    assert r.spread == pytest.approx(0.2) and r.margin == pytest.approx(30 / 28 - 0.97)
    assert r.verdict == INCONCLUSIVE
    d = r.to_dict()
    assert d["verdict"] == INCONCLUSIVE and d["median"] == pytest.approx(30 / 28) and d["load_after"] == 2.5
    assert d["pairs"] == [(30.0, 28.0), (27.0, 30.0), (33.0, 30.0)] or d["pairs"] == [[30.0, 28.0], [27.0, 30.0],
                                                                                       [33.0, 30.0]]


# -- the report -------------------------------------------------------------------------------------

def _captured_rows():
    rows = parse_csv(DATA / "grpc_bs1_c1-3.csv", model="demo_shapes", batch_size=1, protocol="grpc",
                     shared_memory="none")
    return rows[-1].img_per_s, rows[0].img_per_s


def test_benchmarks_markdown_shows_each_pair_the_verdict_and_what_was_not_measured():
    served, other = _captured_rows()
    gain = RatioSpec("dynamic_batching_gain", 2.0, measure=lambda run: None, judged=False, why_not_judged="GPU goal")
    results = [
        RatioResult.of(gain, Measured([(served, other)] * 3, "on", "off", where_time_goes="queue"),
                       load_before=0.5, load_after=0.75),
        RatioResult.of(RatioSpec("vs_sequential_client", 2.0, measure=lambda run: None),
                       Measured([(served, other)] * 3, "stream", "sequential")),
        RatioResult.of(RatioSpec("cpu_target_vs_pytriton", 1.0, measure=lambda run: None),
                       error="PyTriton exited (1): AttributeError: '_thread.RLock' object has no attribute"),
    ]
    log = StepLog()
    log.call("prepare_models", lambda: "ok")
    md = bench.benchmarks_markdown(results, {"cpus": 2, "load_avg_start": (0.5, 0.4, 0.3)}, log.records)
    value = served / other
    assert f"{value:.3f}" in md and f"{served:,.2f}" in md and f"{other:,.2f}" in md
    assert "where the time goes: queue" in md and "not judged: GPU goal" in md
    assert "### cpu_target_vs_pytriton: not measured" in md and "_recursion_count" not in md.split("error:")[0]
    assert "error: PyTriton exited (1): AttributeError" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert NOT_JUDGED in rows["dynamic_batching_gain"] and "0.50 → 0.75" in rows["dynamic_batching_gain"]
    assert (MET if value >= 2.0 else UNMET) in rows["vs_sequential_client"]
    assert NOT_MEASURED in rows["cpu_target_vs_pytriton"]
    assert f"{served:,.2f} / {other:,.2f} = {value:.3f}" in md          # each pair is listed
    assert "prepare_models" in rows and "0.30" in md.split("Server:")[0]


def test_a_failed_ratio_step_is_reported_not_measured_and_the_rest_still_run(tmp_path, monkeypatch):
    """The bench pipeline with the model preparation replaced by a failure (no export, no server):
    every ratio that needs the server is skipped, and still appears in bench.json and BENCHMARKS.md."""
    def broken(run):
        raise bench.TritonkitError("torch is not installed")

    def measured(run):
        return Measured([(4.0, 2.0), (4.1, 2.0), (3.9, 2.0)], "ours", "theirs")

    monkeypatch.setattr(bench, "pipeline", _pipeline_with(broken, measured))
    opts = bench.BenchOptions(out=tmp_path / "out", benchmarks_md=tmp_path / "BENCHMARKS.md")
    run = bench.run_bench(opts)
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(data["ratios"]) == {s.name for s in bench.RATIOS}
    pre = data["ratios"]["client_preprocess_vs_torchvision"]
    assert pre["verdict"] == MET and pre["median"] == pytest.approx(2.0)
    serving = data["ratios"]["serving_efficiency"]
    assert serving["verdict"] == NOT_MEASURED and serving["error"] == "needs start_server (skipped)"
    assert data["steps"][0] == {**data["steps"][0], "id": "prepare_models", "status": "failed",
                                "detail": "torch is not installed"}
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "### serving_efficiency: not measured" in md and (tmp_path / "out" / "BENCHMARKS.md").read_text() == md
    assert not run.log.passed


def _pipeline_with(prepare, preprocess_measure):
    """bench.pipeline with the model step and the one server-free ratio replaced."""
    original = bench.pipeline

    def patched(opts):
        steps = []
        for step in original(opts).steps:
            if step.id == "prepare_models":
                step = bench.Step("prepare_models", prepare)
            elif step.id == "client_preprocess_vs_torchvision":
                spec = RatioSpec(step.id, 1.5, preprocess_measure)
                step = bench.Step(step.id, lambda run: bench.measure_ratio(spec, run))
            steps.append(step)
        return bench.Pipeline(steps)
    return patched


# -- PyTriton's libpython -----------------------------------------------------------------------------

def test_the_pytriton_process_gets_this_interpreters_libpython_first(tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    env = matching_libpython_env({"PATH": "/bin", "LD_LIBRARY_PATH": f"/opt/x{os.pathsep}{libdir}"},
                                 libdir=str(libdir), shared=True)
    assert env["LD_LIBRARY_PATH"] == f"{libdir}{os.pathsep}/opt/x" and env["PATH"] == "/bin"
    assert matching_libpython_env({}, libdir=str(libdir), shared=True) == {"LD_LIBRARY_PATH": str(libdir)}
    # a static interpreter (no libpython to load) or a missing folder: unchanged
    assert matching_libpython_env({"A": "1"}, libdir=str(libdir), shared=False) == {"A": "1"}
    assert matching_libpython_env({"A": "1"}, libdir=str(tmp_path / "none"), shared=True) == {"A": "1"}


def test_the_peer_runs_with_the_libpython_its_standard_library_belongs_to():
    """The python-backend stub links libpython by name; this interpreter's own comes first for it."""
    import sysconfig

    env = matching_libpython_env({})
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == sysconfig.get_config_var("LIBDIR")
    else:
        assert "LD_LIBRARY_PATH" not in env


def test_the_pipeline_has_a_step_per_ratio_and_the_peer_only_around_its_own():
    ids = bench.pipeline(bench.BenchOptions()).ids
    assert set(ids) >= {s.name for s in bench.RATIOS}
    at = ids.index("cpu_target_vs_pytriton")
    assert ids[at - 1:at + 2] == ("start_pytriton", "cpu_target_vs_pytriton", "stop_pytriton")
    at = ids.index("start_yolo")  # the ultralytics peer and its server only around their own ratios
    assert ids[at:at + 4] == ("start_yolo", "vs_ultralytics_predict_bs1", "vs_ultralytics_predict_bs8", "stop_yolo")
    assert ids[-2:] == ("stop_server", "write_report")
    only = bench.pipeline(bench.BenchOptions(only=("client_preprocess_vs_torchvision",))).ids
    assert only == ("prepare_models", "start_server", "client_preprocess_vs_torchvision", "stop_server",
                    "write_report")
    with pytest.raises(bench.TritonkitError, match="unknown ratios: nope"):
        bench.BenchOptions(only=("nope",))
    with pytest.raises(bench.TritonkitError, match="pairs must be >= 3"):
        bench.BenchOptions(pairs=2)
