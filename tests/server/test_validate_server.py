"""`tritonkit validate` against the real bundled tritonserver serving the tiny model (dev profile).

The shared session server passes readiness, contract, correctness, bad requests and load, and
must fail security (dev profile: nothing restricted) and overload (no queue policy). Failing
variants that need no other repository are made here: a card that does not match, a reference
ONNX of another model, an unmeetable SLO, perf_analyzer absent from the environment.
"""

from __future__ import annotations

import json
import sys

import pytest

from support.onnx_models import tiny_classifier
from tritonkit.cards import get_card
from tritonkit.validate import ValidateOptions, validate


def _options(server, **kw) -> ValidateOptions:
    kw.setdefault("models", ("demo_shapes",))
    kw.setdefault("api_key_env", "TRITONKIT_TEST_UNSET_KEY")
    return ValidateOptions(url=server.grpc_url, **kw)


def _only(report, name):
    found = report.by_name(name)
    assert len(found) == 1, [c.name for c in report.checks]
    return found[0]


def test_functional_battery_passes_on_a_good_deployment(tiny_server, tmp_path):
    report = validate(_options(tiny_server, checks=("readiness", "contract", "correctness", "bad_requests", "load"),
                               load_seconds=3, concurrency=2, slo_p99_ms=2000, out=tmp_path))
    failed = [(c.name, c.detail) for c in report.failed]
    assert report.passed, failed
    names = {c.name for c in report.checks}
    assert {"readiness.live", "readiness.ready", "readiness.model", "readiness.plan", "contract.metadata",
            "contract.labels", "correctness.reference", "correctness.finite",
            "correctness.concurrency_invariance", "bad_requests.errors", "bad_requests.still_serving",
            "load.slo"} <= names
    ref = _only(report, "correctness.reference")
    assert ref.figures["max_rel_error"] <= 1e-4 and ref.figures["samples"] == 8
    assert "served ONNX" in ref.detail  # found through the local server's repository
    inv = _only(report, "correctness.concurrency_invariance")
    assert inv.figures["executions"] < inv.figures["requests"], "the concurrent requests should have been batched"
    load = _only(report, "load.slo")
    assert 0 < load.figures["p99_ms"] <= 2000 and load.figures["server_errors"] == 0
    cases = _only(report, "bad_requests.errors").figures["cases"]
    assert cases["unknown model"]["status"] == "StatusCode.NOT_FOUND"
    assert cases["wrong dtype"]["status"] == "StatusCode.INVALID_ARGUMENT"
    # the card travels inside the served config, so a remote validation finds it too
    assert _only(report, "contract.metadata").figures["card_source"] == "config parameter tritonkit_card"
    data = json.loads((tmp_path / "validation.json").read_text())
    assert data["passed"] is True and len(data["checks"]) == len(report.checks)
    assert (tmp_path / "load" / "demo_shapes").is_dir()


def test_security_fails_on_a_dev_profile_server_naming_what_is_open(tiny_server):
    report = validate(_options(tiny_server, checks=("security",)))
    restricted = _only(report, "security.restricted_apis")
    assert not restricted.passed
    for api in ("model-repository (http)", "shared-memory (grpc)", "logging (http)", "trace (grpc)"):
        assert api in restricted.detail
    assert "TRITONKIT_TEST_UNSET_KEY is not set" in restricted.detail
    # The dev server still runs with model control none and binds loopback: those hold.
    assert _only(report, "security.model_control").passed
    bind = _only(report, "security.loopback_bind")
    assert bind.passed and bind.figures["pid"] == tiny_server.process.pid
    assert not report.passed


def test_security_fails_when_model_control_is_open(tiny_server, start_server):
    """A server that lets clients load models (explicit mode) fails the model-control probe; the
    probe names a model that does not exist, so nothing on the server changes."""
    server = start_server(tiny_server.options.model_repository, model_control_mode="explicit",
                          load_models=("demo_shapes",))
    report = validate(_options(server, checks=("security",)))
    control = _only(report, "security.model_control")
    assert not control.passed and "model control is open" in control.detail, control.detail
    import tritonclient.grpc as grpcclient

    index = grpcclient.InferenceServerClient(server.grpc_url).get_model_repository_index(as_json=True)
    assert [m["name"] for m in index.get("models", [])] == ["demo_shapes"]


def test_overload_fails_for_a_model_without_queue_policy(tiny_server):
    report = validate(_options(tiny_server, checks=("overload",)))
    (result,) = report.checks
    assert result.name == "overload.queue_policy" and not result.passed
    assert "no queue policy" in result.detail


def test_contract_fails_when_the_card_does_not_match(tiny_server, tmp_path):
    card = get_card("demo_shapes").to_dict()
    card.update(name="other", outputs=[{"name": "logits", "dims": [1000], "dtype": "FP32"}], num_classes=1000,
                labels="imagenet1k", max_batch_size=32)
    path = tmp_path / "other.json"
    path.write_text(json.dumps(card))
    report = validate(_options(tiny_server, checks=("contract",), cards=(("demo_shapes", str(path)),)))
    meta = _only(report, "contract.metadata")
    assert not meta.passed
    assert "output 'logits'" in meta.detail and "max_batch_size 64 > card max 32" in meta.detail
    labels = _only(report, "contract.labels")
    assert not labels.passed and "labels differ" in labels.detail


def test_correctness_fails_against_another_models_reference(tiny_server, tmp_path):
    other = tiny_classifier(tmp_path / "other.onnx", seed=7)
    report = validate(_options(tiny_server, checks=("correctness",),
                               reference_onnx=(("demo_shapes", str(other)),)))
    ref = _only(report, "correctness.reference")
    assert not ref.passed and "rel error" in ref.detail and ref.figures["max_rel_error"] > 1e-2
    assert _only(report, "correctness.finite").passed


def test_a_model_the_server_lacks_fails_every_check_with_the_reason(tiny_server):
    """A card is known for it, but nothing is served under that name: nothing may pass."""
    report = validate(_options(tiny_server, models=("absent_model",), cards=(("absent_model", "demo_shapes"),),
                               checks=("readiness", "contract", "correctness", "bad_requests", "overload")))
    per_model = [c for c in report.checks if c.model == "absent_model"]
    assert {c.group for c in per_model} == {"readiness", "contract", "correctness", "bad_requests", "overload"}
    assert all(not c.passed for c in per_model), [(c.name, c.detail) for c in per_model if c.passed]
    for name in ("bad_requests.errors", "bad_requests.still_serving"):
        detail = _only(report, name).detail
        assert "not run" in detail and "absent_model" in detail, detail


def test_load_fails_when_p99_misses_the_slo(tiny_server):
    report = validate(_options(tiny_server, checks=("load",), load_seconds=1.5, slo_p99_ms=0.001))
    load = _only(report, "load.slo")
    assert not load.passed and "> SLO 0.001 ms" in load.detail


def test_load_fails_with_the_reason_when_perf_analyzer_is_missing(tiny_server, tmp_path, monkeypatch):
    # An environment without perf_analyzer: nothing beside the interpreter, nothing on PATH.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    report = validate(_options(tiny_server, checks=("load",)))
    load = _only(report, "load.slo")
    assert not load.passed and "perf_analyzer not found" in load.detail


def test_short_soak_counts_requests_shm_cycles_and_rss(tiny_server):
    report = validate(_options(tiny_server, checks=(), soak_seconds=10, concurrency=2))
    assert [c.name for c in report.checks] == ["soak.errors", "soak.shared_memory", "soak.rss_growth"]
    errors, shm, rss = report.checks
    assert errors.passed and errors.figures["requests"] > 20, errors.detail
    assert shm.passed and shm.figures["cycles"] >= 2, shm.detail
    assert rss.passed and rss.figures["pid"] == tiny_server.process.pid, rss.detail
    assert rss.figures["samples"] >= 2 and rss.figures["baseline_mb"] > 10
    # No region may be left registered after the cycles.
    import tritonclient.grpc as grpcclient

    status = grpcclient.InferenceServerClient(tiny_server.grpc_url).get_system_shared_memory_status(as_json=True)
    assert not status.get("regions")


def test_remote_server_without_pid_reports_what_it_cannot_measure(tiny_server):
    """A remote address cannot be faked here, so the endpoints of a real context are replaced by
    what :func:`resolve_endpoints` gives for a remote host (no pid, not local)."""
    from dataclasses import replace

    from tritonkit.validate.context import Context
    from tritonkit.validate.security import check_bind
    from tritonkit.validate.soak import MemoryTrace, Tally, rss_result, shm_result

    ctx = Context.create(_options(tiny_server))
    ctx.endpoints = replace(ctx.endpoints, local=False, pid=None, repo=None,
                            pid_note="server 10.0.0.9 is remote (pass --server-pid on the server host)")
    for result in (rss_result(ctx, MemoryTrace(), 10.0), check_bind(ctx)):
        assert not result.passed and "not measurable" in result.detail and "--server-pid" in result.detail
    shm = shm_result(ctx, Tally())
    assert not shm.passed and "this machine" in shm.detail


def test_cli_exit_codes_and_files(tiny_server, tmp_path):
    from tritonkit.cli import main

    good = tmp_path / "good"
    assert main(["validate", "--url", tiny_server.grpc_url, "--models", "demo_shapes",
                 "--checks", "readiness,contract", "--out", str(good)]) == 0
    assert json.loads((good / "validation.json").read_text())["passed"] is True
    assert "PASSED" in (good / "report.md").read_text()
    bad = tmp_path / "bad"
    assert main(["validate", "--url", tiny_server.grpc_url, "--models", "demo_shapes,no_such_model",
                 "--checks", "readiness", "--out", str(bad)]) == 1
    data = json.loads((bad / "validation.json").read_text())
    missing = [c for c in data["checks"] if c["model"] == "no_such_model" and c["name"] == "readiness.model"]
    assert missing and not missing[0]["passed"] and "not in the repository index" in missing[0]["detail"]


@pytest.mark.slow
def test_long_soak_keeps_errors_at_zero_and_memory_bounded(tiny_server):
    report = validate(_options(tiny_server, checks=(), soak_seconds=180, concurrency=4))
    assert report.passed, [(c.name, c.detail) for c in report.failed]
    errors, shm, rss = report.checks
    assert errors.figures["requests"] > 1000 and shm.figures["cycles"] > 100
    assert rss.figures["growth_mb"] <= 100 and rss.figures["samples"] >= 100


def test_load_check_passes_on_a_loaded_machine(tiny_server, tmp_path):
    """Processes burning every core while the load check runs: the check measures a fixed load
    (a request count sized for its set time), so a busy machine slows it but cannot make it
    fail as "unstable" (perf_analyzer's stability criterion is for sweeps)."""
    import os
    import subprocess

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        report = validate(_options(tiny_server, checks=("load",), load_seconds=3, concurrency=2,
                                   slo_p99_ms=60_000, out=tmp_path))
    finally:
        for p in burners:
            p.kill()
            p.wait()
    load = _only(report, "load.slo")
    assert load.passed, load.detail
    assert load.figures["server_errors"] == 0 and load.figures["requests"] >= 50
    log = (tmp_path / "load" / "demo_shapes" / "bs1_c2.log").read_text()
    assert "--request-count" in log and "--max-trials" not in log and "stable" not in log.lower()
