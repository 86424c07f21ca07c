"""Validation pieces that need no server: options, metrics parsing, tolerances, queue-policy
bounds, contract rules, the report files, the production profile's docker arguments, and the
CLI against an address where nothing listens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from support.plans import plan_context as _plan_context

from tritonkit.cards import get_card
from tritonkit.errors import TritonkitError
from tritonkit.host import HostPort
from tritonkit.serve.local import free_port
from tritonkit.serve.profiles import (API_KEY_ENV, API_KEY_HEADER, key_headers, local_options,
                                      docker_args)
from tritonkit.validate.contract import config_problems
from tritonkit.validate.correctness import TOLERANCES, burst_size, compare
from tritonkit.validate.groups import (
    check_group, check_groups, default_groups, get_group, group_names, opt_in_groups)
from tritonkit.validate.metrics import parse_metrics, rejected_count, total
from tritonkit.validate.options import ValidateOptions, parse_checks, parse_duration, parse_pairs
from tritonkit.validate.overload import BATCHER_IDLE_RECHECK_MS, QueueLimits, bound_ms, queue_limits
from tritonkit.validate.report import ValidationReport
from tritonkit.validate.result import fail, ok

# Lines in the exposition format of Triton 2.51's /metrics (label order as it prints them).
METRICS_TEXT = """\
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="m",reason="OTHER",version="1"} 0
nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1
nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 7
nv_inference_request_failure{model="other",reason="REJECTED",version="1"} 100
nv_inference_pending_request_count{model="m",version="1"} 3
nv_cpu_utilization 0.25
"""


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("90s", 90), ("1.5h", 5400), ("500ms", 0.5), ("45", 45)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "5d", "-3s"])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(TritonkitError, match="duration"):
        parse_duration(text)


def test_parse_checks_all_excludes_the_opt_in_soak_and_keeps_run_order():
    assert "soak" not in parse_checks("all")
    assert parse_checks("overload,readiness,bad-requests") == ("readiness", "bad_requests", "overload")
    with pytest.raises(TritonkitError, match="unknown checks"):
        parse_checks("readiness,telepathy")


def test_parse_pairs():
    assert parse_pairs(["a=x.onnx,b=y.onnx"], "--reference-onnx") == (("a", "x.onnx"), ("b", "y.onnx"))
    assert parse_pairs(["only.onnx"], "--reference-onnx", ("m",)) == (("m", "only.onnx"),)
    with pytest.raises(TritonkitError, match="MODEL=VALUE"):
        parse_pairs(["only.onnx"], "--reference-onnx", ("m1", "m2"))
    with pytest.raises(TritonkitError, match="more than once"):
        parse_pairs(["a=1", "a=2"], "--cards")


def test_options_reject_pairs_for_models_not_validated():
    with pytest.raises(TritonkitError, match="not in --models"):
        ValidateOptions(models=("a",), reference_onnx=(("b", "x.onnx"),))
    with pytest.raises(TritonkitError, match="precision"):
        ValidateOptions(models=("a",), precisions=(("a", "fp8"),))
    with pytest.raises(TritonkitError, match="at least one model"):
        ValidateOptions(models=())


def test_check_groups_are_registered_once_in_run_order():
    from tritonkit.validate import badrequests, readiness, soak

    assert group_names() == ("readiness", "contract", "correctness", "bad_requests", "security", "load",
                             "overload", "soak")
    assert opt_in_groups() == ("soak",) and default_groups() == group_names()[:-1]
    assert [g.name for g in check_groups() if g.per_endpoint] == ["readiness", "contract", "correctness"]
    assert get_group("readiness").run is readiness.run and get_group("bad_requests").run is badrequests.run
    assert get_group("soak").run is soak.run
    with pytest.raises(TritonkitError, match="unknown check group 'nope'"):
        get_group("nope")


def test_options_take_their_groups_from_the_registry():
    options = ValidateOptions(models=("m",))
    assert options.checks == default_groups() and options.groups() == default_groups()
    assert options.not_requested() == ("soak",)
    soaked = ValidateOptions(models=("m",), checks=("load", "readiness"), soak_seconds=60)
    assert soaked.groups() == ("readiness", "load", "soak") and soaked.not_requested() == ()
    assert parse_checks("all") == default_groups() and parse_checks("soak,bad-requests") == ("bad_requests", "soak")
    with pytest.raises(TritonkitError, match="unknown checks"):
        ValidateOptions(models=("m",), checks=("nope",))


def test_a_group_declared_with_the_decorator_is_known_everywhere(monkeypatch):
    """One declaration: the options accept it, it runs in its order, its per-endpoint flag is read."""
    from tritonkit.validate import groups as registry
    from tritonkit.validate.runner import run_group

    monkeypatch.setattr(registry, "_GROUPS", dict(registry._GROUPS))  # the registration is undone after the test

    @check_group("extra", 25, per_endpoint=True)
    def run(ctx):
        return [ok("extra.probe", "ran")]

    assert group_names()[:4] == ("readiness", "contract", "extra", "correctness")
    assert "extra" in default_groups() and get_group("extra").per_endpoint
    assert parse_checks("extra,readiness") == ("readiness", "extra")
    assert [c.name for c in run_group("extra", None)] == ["extra.probe"]
    with pytest.raises(TritonkitError, match="registered twice"):
        check_group("extra", 26)(lambda ctx: [])
    with pytest.raises(TritonkitError, match="'load' and 'late' both have order 60"):
        check_group("late", 60)(lambda ctx: [])


def test_metrics_parsing_and_rejected_count():
    samples = parse_metrics(METRICS_TEXT)
    assert total(samples, "nv_inference_pending_request_count", model="m") == 3
    assert total(samples, "nv_cpu_utilization") == 0.25
    assert rejected_count(samples, "m") == (7, 'nv_inference_request_failure{reason="REJECTED"}')
    # An older server without the reason label: the total failure counter is used.
    old = parse_metrics('nv_inference_request_failure{model="m",version="1"} 4\n')
    assert rejected_count(old, "m") == (4, "nv_inference_request_failure")
    assert rejected_count(samples, "absent")[0] is None


def test_metrics_label_values_with_commas_and_escapes():
    (s,) = parse_metrics('x{a="1,2",b="say \\"hi\\""} 5\n')
    assert s.labels == {"a": "1,2", "b": 'say "hi"'} and s.value == 5


def test_compare_measures_error_relative_to_output_scale():
    ref = np.array([[10.0, -5.0, 0.0]])
    c = compare("o", ref + np.array([[0.0, 0.0, 1e-4]]), ref)
    assert c.max_rel_error == pytest.approx(1e-5) and c.within(TOLERANCES["fp32"])
    assert not compare("o", ref * 1.01, ref).within(TOLERANCES["fp32"])
    assert compare("o", ref * 1.01, ref).within(TOLERANCES["fp16"])
    nan = ref.copy()
    nan[0, 2] = np.nan
    assert compare("o", nan, ref).max_rel_error == float("inf")
    assert compare("o", ref[:, :2], ref).max_rel_error == float("inf")


def test_tolerances_loosen_with_precision():
    assert TOLERANCES["fp32"].max_rel_error < TOLERANCES["fp16"].max_rel_error < TOLERANCES["int8"].max_rel_error


def test_concurrency_burst_fits_a_bounded_queue():
    assert burst_size({}, 4) == 16
    cfg = {"max_batch_size": 64, "dynamic_batching": {"default_queue_policy": {"max_queue_size": 4}},
           "instance_group": [{"count": 1}]}
    assert burst_size(cfg, 4) == 5


def test_queue_limits_from_served_config():
    assert queue_limits({}) is None
    assert queue_limits({"dynamic_batching": {}}) is None
    # A timeout that only delays does not bound the queue.
    assert queue_limits({"dynamic_batching": {"default_queue_policy": {
        "default_timeout_microseconds": "1000", "timeout_action": "DELAY"}}}) is None
    limits = queue_limits({"dynamic_batching": {"default_queue_policy": {
        "max_queue_size": 8, "default_timeout_microseconds": "100000"}}})
    assert limits == QueueLimits(8, 100000, True)


def test_overload_bound_takes_the_larger_wait():
    size_only = QueueLimits(8, 0, True)
    assert bound_ms(size_only, 4, 50.0) == pytest.approx((2 + 1) * 50 + 50)
    both = QueueLimits(8, 100_000, True)
    assert bound_ms(both, 4, 50.0) == pytest.approx(100 + BATCHER_IDLE_RECHECK_MS + 50)


def test_config_problems_catch_layout_max_batch_and_labels():
    card = get_card("demo_shapes")
    good = {"max_batch_size": 64, "input": [{"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW"}],
            "output": [{"name": "logits", "label_filename": "labels.txt"}]}
    assert config_problems(card, good) == []
    bad = {"max_batch_size": 128, "input": [{"name": "input", "data_type": "TYPE_FP16", "format": "FORMAT_NHWC"}],
           "output": [{"name": "logits"}]}
    problems = " | ".join(config_problems(card, bad))
    for expected in ("max_batch_size 128 > card max 64", "FORMAT_NHWC", "TYPE_FP16", "no label_filename"):
        assert expected in problems


def test_report_files_and_verdict(tmp_path):
    report = ValidationReport((ok("readiness.live", "live"),
                               fail("load.slo", "p99 300 ms > SLO 200 ms\nsecond line", "m", p99_ms=300.0,
                                    latency={"p50_ms": 1.5})))
    assert not report.passed and [c.name for c in report.failed] == ["load.slo"]
    json_path, md_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["passed"] is False
    assert data["checks"][1] == {"name": "load.slo", "model": "m", "passed": False,
                                 "detail": "p99 300 ms > SLO 200 ms\nsecond line",
                                 "figures": {"p99_ms": 300.0, "latency": {"p50_ms": 1.5}}}
    md = md_path.read_text()
    assert "FAILED (1 of 2 checks)" in md and "**FAIL**" in md and "p99 300 ms > SLO 200 ms second line" in md
    assert not ValidationReport(()).passed, "a report with no checks must not pass"
    assert ValidationReport((ok("a", "fine"),)).passed


def test_figures_with_nan_are_written_as_strict_json(tmp_path):
    report = ValidationReport((fail("correctness.reference", "NaN", "m", max_rel_error=float("inf")),))
    json_path, _ = report.write(tmp_path)
    assert json.loads(json_path.read_text())["checks"][0]["figures"]["max_rel_error"] == "inf"


def test_key_headers_use_the_grpc_protocol_prefix():
    assert key_headers("http", "k") == {API_KEY_HEADER: "k"}
    assert key_headers("grpc", "k") == {"triton-grpc-protocol-" + API_KEY_HEADER: "k"}


def test_production_profile_key_rules(tmp_path):
    with pytest.raises(TritonkitError, match="at least 16"):
        local_options(tmp_path, "production", env={API_KEY_ENV: "short"})
    with pytest.raises(TritonkitError, match="only letters"):
        local_options(tmp_path, "production", env={API_KEY_ENV: "x" * 16 + ",model-repository"})
    opts = local_options(tmp_path, "production", env={API_KEY_ENV: "k" * 20})
    assert opts.model_control_mode == "none" and opts.strict_readiness and opts.restricted_key == API_KEY_HEADER


def test_production_docker_args_hide_the_key_and_publish_no_metrics(tmp_path):
    key = "s3cret-key-0123456789"
    args = docker_args("production", tmp_path, (18000, 18001, 18002), env={API_KEY_ENV: key})
    joined = " ".join(args.docker_options + args.server_command)
    assert key not in joined
    assert "127.0.0.1:18000:8000" in joined and "127.0.0.1:18001:8001" in joined
    assert "18002" not in joined and ":8002" not in joined
    i = args.docker_options.index("-e")
    assert args.docker_options[i + 1] == API_KEY_ENV
    assert "--stop-timeout" in args.docker_options
    with pytest.raises(TritonkitError, match=API_KEY_ENV):
        docker_args("production", tmp_path, env={})


def test_production_docker_command_expands_to_the_restricted_flags(tmp_path):
    """Run the container's shell command with `printf` standing in for tritonserver: the key
    from the environment must land, intact, in both restriction flags."""
    key = "abc_DEF-123.456~789"
    args = docker_args("production", tmp_path, env={API_KEY_ENV: key})
    assert args.server_command[:2] == ("sh", "-c")
    script = args.server_command[2].replace("exec tritonserver", "printf '%s\\n'", 1)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                         env={API_KEY_ENV: key, "PATH": os.environ.get("PATH", "")}).stdout.splitlines()
    apis = "model-repository,shared-memory,logging,trace"
    assert f"--http-restricted-api={apis}:{API_KEY_HEADER}={key}" in out
    assert f"--grpc-restricted-protocol={apis}:{API_KEY_HEADER}={key}" in out
    assert "--model-control-mode=none" in out and "--strict-readiness=true" in out
    assert any(a.startswith("--exit-timeout-secs=") for a in out)


def test_cli_against_a_dead_address_fails_every_check_with_the_reason(tmp_path):
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "tritonkit", "validate", "--url", f"127.0.0.1:{port}", "--models", "demo_shapes",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    data = json.loads((tmp_path / "validation.json").read_text())
    assert data["passed"] is False
    groups = {c["name"].split(".")[0] for c in data["checks"]}
    assert {"readiness", "contract", "correctness", "bad_requests", "security", "load", "overload"} <= groups
    assert all(not c["passed"] for c in data["checks"])
    assert f"127.0.0.1:{port}" in data["checks"][0]["detail"]
    assert all("not run" in c["detail"] for c in data["checks"][1:])
    assert (tmp_path / "report.md").is_file()


def test_cli_checks_table_through_a_pipe_and_json(tmp_path):
    """Piped at COLUMNS=40 the checks table keeps every check name and the model whole; --json
    prints validation.json and nothing else."""
    from support.paths import ROOT

    model = "demo_shapes_with_a_long_served_name_v2"
    argv = [sys.executable, "-m", "tritonkit", "validate", "--url", f"127.0.0.1:{free_port()}", "--models", model,
            "--checks", "readiness,contract", "--out", str(tmp_path)]
    env = {**os.environ, "COLUMNS": "40", "PYTHONPATH": str(ROOT)}
    table = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    checks = json.loads((tmp_path / "validation.json").read_text())["checks"]
    assert table.returncode == 1 and checks
    for c in checks:
        assert f"| {c['name']} | {c['model'] or '(server)'} | FAIL |" in table.stdout
    printed = subprocess.run(argv + ["--json"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert printed.returncode == 1
    written = json.loads((tmp_path / "validation.json").read_text())       # the --json run's file
    assert json.loads(printed.stdout) == written
    assert [(c["name"], c["model"]) for c in written["checks"]] == [(c["name"], c["model"]) for c in checks]


def test_cli_bad_arguments_are_one_line_errors(tmp_path):
    from tritonkit.cli import main

    assert main(["validate", "--models", "m", "--soak", "forever", "--out", str(tmp_path)]) == 1
    assert main(["validate", "--models", "m", "--checks", "vibes", "--out", str(tmp_path)]) == 1


# ---------------------------------------------------------------- plan readiness (no GPU needed)
# A TensorRT plan cannot be built or served here; the sidecar checks are plain Python over the
# sidecar JSON, so a placeholder plan file with a real sidecar exercises them end to end.

def test_plan_readiness_uses_the_sidecar_checks(tmp_path):
    from tritonkit.build_engines.compat import RELEASES
    from tritonkit.validate.readiness import check_plan

    ctx, target = _plan_context(tmp_path, RELEASES["25.10"].tensorrt, "25.10")
    assert target.precision == "fp16" and target.precision_source.endswith("model.plan.json")
    result = check_plan(ctx, target)
    assert result.passed and "fits tritonserver 25.10" in result.detail


def test_plan_readiness_fails_for_a_plan_built_with_other_tensorrt(tmp_path):
    from tritonkit.build_engines.compat import RELEASES
    from tritonkit.validate.readiness import check_plan

    ctx, target = _plan_context(tmp_path, RELEASES["25.01"].tensorrt, "25.10")
    result = check_plan(ctx, target)
    assert not result.passed and RELEASES["25.01"].tensorrt in result.detail


def test_plan_readiness_needs_the_container_release(tmp_path):
    from tritonkit.build_engines.compat import RELEASES
    from tritonkit.validate.readiness import check_plan

    ctx, target = _plan_context(tmp_path, RELEASES["25.10"].tensorrt, None)
    result = check_plan(ctx, target)
    assert not result.passed and "--container-release" in result.detail


def test_non_plan_models_are_not_applicable():
    from tritonkit.validate.context import ModelTarget
    from tritonkit.validate.readiness import check_plan

    target = ModelTarget("m", None, "x", {"backend": "python"})
    result = check_plan(None, target)
    assert result.passed and result.detail == "not applicable: no plans"


def test_combined_report_keeps_every_run_and_fails_when_any_check_failed(tmp_path):
    first = ValidationReport(checks=(ok("readiness.live", "live"), ok("load.slo", "p99 ok", "a")),
                             server={"grpc": "127.0.0.1:1"}, models=({"name": "a"},), not_requested=("soak",),
                             started="t0", seconds=2.0)
    second = ValidationReport(checks=(fail("overload.rejections", "none rejected", "b"),),
                              server={"grpc": "127.0.0.1:1"}, models=({"name": "b"},), not_requested=("soak",),
                              started="t1", seconds=3.0)
    both = ValidationReport.combine([first, second])
    assert [c.name for c in both.checks] == ["readiness.live", "load.slo", "overload.rejections"]
    assert [m["name"] for m in both.models] == ["a", "b"] and both.started == "t0" and both.seconds == 5.0
    assert not both.passed and [c.model for c in both.failed] == ["b"]
    assert ValidationReport.combine([first]).passed and both.not_requested == ("soak",)
    saved = json.loads(both.write_json(tmp_path / "v.json").read_text())
    assert saved["summary"] == {"checks": 3, "failed": 1}
    with pytest.raises(ValueError):
        ValidationReport.combine([])
