"""Validation against a real production-profile server serving deliberately faulty models.

One module-scoped bundled tritonserver, started with the production profile (restricted APIs
with a key, model control none, loopback), serves:

* ``demo_shapes`` — the tiny classifier, healthy;
* ``nan_model`` — the same, with NaN in its first output column;
* ``batch_mix`` — correct alone, shifted when dynamic batching groups requests;
* ``slow_queue`` — 50 ms per execution, max batch 4, queue policy max 16 + 100 ms timeout REJECT;
* ``slow_size_only`` — the same with only max_queue_size 8 (queue-full rejections only);
* ``lenient`` — served with ``-1`` input dims and answering any shape (accepts malformed requests);
* ``leaky`` — keeps 1 MB per execution (50 ms each), for the soak's memory bound;
* ``flaky`` — every third execution fails, for the soak's error count.

Plus a SIGTERM test on its own server: in-flight requests finish when the server drains.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tritonkit.model_repository.config import QueuePolicy, RepoOptions
from tritonkit.serve.local import LocalServer
from tritonkit.serve.profiles import API_KEY_ENV, local_options
from tritonkit.validate import ValidateOptions, validate
from support.validate_models import write_faulty

KEY_ENV = "TRITONKIT_TEST_VALIDATE_KEY"
KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory, tiny_onnx):
    repo = tmp_path_factory.mktemp("faulty_repo")
    write_faulty(repo, "demo_shapes", tiny_onnx)
    write_faulty(repo, "nan_model", tiny_onnx, fault="nan")
    write_faulty(repo, "batch_mix", tiny_onnx, fault="batch_mix", options=RepoOptions(max_queue_delay_us=20000))
    write_faulty(repo, "slow_queue", tiny_onnx, delay_ms=50,
                 options=RepoOptions(max_batch_size=4, queue_policy=QueuePolicy(max_queue_size=16, timeout_us=100_000)))
    write_faulty(repo, "slow_size_only", tiny_onnx, delay_ms=50,
                 options=RepoOptions(max_batch_size=4, queue_policy=QueuePolicy(max_queue_size=8)))
    write_faulty(repo, "lenient", tiny_onnx, fault="lenient", any_input_dims=True)
    write_faulty(repo, "leaky", tiny_onnx, fault="leak", delay_ms=50)
    write_faulty(repo, "flaky", tiny_onnx, fault="flaky")
    options = local_options(repo, "production", env={API_KEY_ENV: KEY})
    server = LocalServer(options, log_path=repo.parent / "prod-server.log").start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        yield server
    server.stop()


def _validate(server, models, checks, **kw):
    return validate(ValidateOptions(models=tuple(models), url=server.grpc_url, checks=tuple(checks),
                                    api_key_env=kw.pop("api_key_env", KEY_ENV), **kw))


def _result(report, name, model=None):
    found = report.by_name(name, model)
    assert len(found) == 1, [(c.name, c.model) for c in report.checks]
    return found[0]


def test_security_passes_on_the_production_profile(prod_server):
    report = _validate(prod_server, ["demo_shapes"], ["security"])
    assert report.passed, [(c.name, c.detail) for c in report.failed]
    probes = _result(report, "security.restricted_apis").figures["probes"]
    assert len(probes) == 8 and all(p["without_key"] == "refused" and p["with_key"] == "answered"
                                    for p in probes.values())
    assert "model control is none" in _result(report, "security.model_control").detail


def test_security_without_the_key_cannot_confirm_access(prod_server):
    report = _validate(prod_server, ["demo_shapes"], ["security", "readiness"], api_key_env="TRITONKIT_TEST_NO_KEY")
    restricted = _result(report, "security.restricted_apis")
    assert not restricted.passed and "TRITONKIT_TEST_NO_KEY is not set" in restricted.detail
    assert "open without the key" not in restricted.detail
    assert not _result(report, "security.model_control").passed
    # Readiness still works without the key, through the per-model endpoint, and says so.
    model = _result(report, "readiness.model", "demo_shapes")
    assert model.passed and "repository index not readable" in model.detail


def test_readiness_and_contract_pass_with_the_key(prod_server):
    report = _validate(prod_server, ["demo_shapes", "slow_queue"], ["readiness", "contract"])
    assert report.passed, [(c.name, c.model, c.detail) for c in report.failed]
    assert "repository index" in _result(report, "readiness.model", "slow_queue").detail


def test_nan_outputs_fail_the_finite_check(prod_server):
    report = _validate(prod_server, ["nan_model"], ["correctness"])
    finite = _result(report, "correctness.finite", "nan_model")
    assert not finite.passed and finite.figures["non_finite"] == 8 and "NaN/Inf" in finite.detail
    assert not _result(report, "correctness.reference", "nan_model").passed


def test_batch_dependent_outputs_fail_concurrency_invariance(prod_server):
    report = _validate(prod_server, ["batch_mix"], ["correctness"])
    inv = _result(report, "correctness.concurrency_invariance", "batch_mix")
    assert not inv.passed and "changed when sent concurrently" in inv.detail
    assert inv.figures["executions"] < inv.figures["requests"]
    # One request at a time (any batch size) the model is right: only batching breaks it.
    assert _result(report, "correctness.reference", "batch_mix").passed


def test_overload_sheds_load_cleanly_with_a_queue_policy(prod_server):
    report = _validate(prod_server, ["slow_queue"], ["overload"])
    assert report.passed, [(c.name, c.detail, dict(c.figures)) for c in report.failed]
    rej = _result(report, "overload.rejections", "slow_queue").figures
    assert rej["rejected"] > 0 and rej["other_errors"] == 0 and rej["queue_timeout"] > 0
    metrics = _result(report, "overload.metrics", "slow_queue").figures
    assert metrics["rejected_delta"] >= metrics["client_queue_timeouts"] > 0
    assert metrics["pending_peak"] >= 1
    acc = _result(report, "overload.accepted_latency", "slow_queue").figures
    assert acc["accepted"] > 0 and acc["latency"]["p99_ms"] <= acc["allowed_ms"]


def test_overload_with_only_a_size_limit_is_invisible_in_metrics(prod_server):
    report = _validate(prod_server, ["slow_size_only"], ["overload"])
    assert _result(report, "overload.rejections", "slow_size_only").passed
    assert _result(report, "overload.recovery", "slow_size_only").passed
    metrics = _result(report, "overload.metrics", "slow_size_only")
    assert not metrics.passed and "invisible to monitoring" in metrics.detail


def test_bad_requests_leave_the_production_server_serving(prod_server):
    report = _validate(prod_server, ["demo_shapes"], ["bad_requests"])
    assert report.passed, [(c.name, c.detail) for c in report.failed]


def test_bad_requests_fail_when_the_server_accepts_a_malformed_request(prod_server):
    report = _validate(prod_server, ["lenient"], ["bad_requests"])
    errors = _result(report, "bad_requests.errors", "lenient")
    assert not errors.passed and "wrong shape: OK the server accepted it" in errors.detail
    cases = errors.figures["cases"]
    assert cases["wrong shape"]["status"] == "OK"
    # The other malformed requests are still refused, and the server keeps serving.
    assert cases["wrong dtype"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert cases["payload larger than its shape (HTTP)"]["status"] == "HTTP 400"
    assert _result(report, "bad_requests.still_serving", "lenient").passed


def test_soak_fails_on_request_errors_and_memory_growth(prod_server):
    report = _validate(prod_server, ["leaky", "flaky"], [], soak_seconds=8, concurrency=2, rss_bound_mb=20)
    errors = _result(report, "soak.errors")
    assert not errors.passed and errors.figures["errors"] > 0 and "flaky model" in errors.detail
    rss = _result(report, "soak.rss_growth")
    assert not rss.passed and rss.figures["growth_mb"] > 20 and "RSS grew" in rss.detail, rss.detail
    assert rss.figures["pid"] == prod_server.process.pid


def test_sigterm_lets_in_flight_requests_finish(tmp_path, tiny_onnx):
    """Slow requests in flight when the server gets SIGTERM all complete successfully."""
    import tritonclient.grpc as grpcclient

    from tritonkit.cards import get_card
    from tritonkit.validate.requests import burst

    repo = tmp_path / "repo"
    write_faulty(repo, "slow", tiny_onnx, delay_ms=400, options=RepoOptions(max_batch_size=1))
    server = LocalServer(local_options(repo, "dev"), log_path=tmp_path / "server.log").start()
    try:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        card = get_card("demo_shapes")
        x = np.zeros((1, 3, 64, 64), np.float32)
        outcomes: list = []
        import threading

        sender = threading.Thread(target=lambda: outcomes.extend(burst(client, "slow", card, [x] * 4, 30.0)))
        sender.start()
        time.sleep(0.6)  # the first request is executing, the others queued
        server.process.send_signal(signal.SIGTERM)
        sender.join(timeout=60)
        code = server.process.wait(timeout=60)
    finally:
        server.stop()
    assert len(outcomes) == 4
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert max(o.latency_s for o in outcomes) >= 1.2, "four 400 ms executions in a row"
    assert code == 0


@pytest.mark.slow
def test_sustained_overload_keeps_the_server_healthy(prod_server):
    """Twenty bursts of 1024 requests against the slow model: every one sheds load cleanly and
    the server is ready and correct afterwards."""
    for _ in range(20):
        report = _validate(prod_server, ["slow_queue"], ["overload"], overload_requests=1024)
        assert report.passed, [(c.name, c.detail) for c in report.failed]
    after = _validate(prod_server, ["demo_shapes"], ["readiness", "correctness"])
    assert after.passed, [(c.name, c.detail) for c in after.failed]


def test_load_slo_miss_on_a_queue_policy_model_reports_the_stall_probe(prod_server):
    """An SLO the model cannot meet (1 ms against 50 ms executions) on a model with a queue
    policy: the check probes sequential requests for the bundled server's queue-policy stalls
    and says what it found, with the figures, and names the command to measure capacity."""
    report = _validate(prod_server, ["slow_size_only"], ["load"], slo_p99_ms=1.0, load_seconds=2, concurrency=1)
    load = _result(report, "load.slo", "slow_size_only")
    assert not load.passed and "> SLO 1 ms" in load.detail and "sequential requests" in load.detail
    stalls = load.figures["stalls"]
    assert stalls["requests"] == 200 and stalls["errors"] == 0 and stalls["p50_ms"] >= 50
    assert "tritonkit" in load.hint
