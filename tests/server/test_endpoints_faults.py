"""The multi-endpoint client against two real bundled tritonservers on loopback, with faults.

* one endpoint killed (SIGKILL) mid-eval, then started again on its ports: the eval finishes with
  exactly the results of an uninterrupted run, the report shows the traffic leaving the dead
  endpoint and coming back once it rejoins, and every batch is served exactly once;
* every endpoint down: one clear line and exit 1 once the retries are spent, the checkpoint
  intact, and ``--resume`` against a server that is back finishes with the uninterrupted results;
* a rolling restart (stop one gracefully, start it, stop the other) under load: zero failed
  requests, and every answer equals the one the model gives when nothing restarts.

The served model is the tiny classifier behind a python-backend model that sleeps per
execution, so requests are in flight when a server goes away.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import wait

import numpy as np
import pytest

from support.classify_data import CARD
from support.resume import CHECKPOINT, METRICS, entries as _entries, options as _options
from tritonkit.cli import main
from tritonkit.client.infer import ClientOptions, TritonInfer
from tritonkit.evaluate import evaluate
from tritonkit.model_repository.config import RepoOptions
from tritonkit.tasks.classify.task import Classification
from support.validate_models import write_faulty


def restart(start_server, repo, old):
    """A new server on the ports ``old`` had (so the endpoint address is the same)."""
    return start_server(repo, http_port=old.ports.http, grpc_port=old.ports.grpc, metrics_port=old.ports.metrics)


def wait_until(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_an_endpoint_killed_mid_eval_then_back_changes_no_result_and_the_report_shows_the_traffic(
        slow_repo, data, tmp_path, start_server, monkeypatch):
    data_dir, expect = data
    a, b = start_server(slow_repo), start_server(slow_repo)
    url = f"{a.grpc_url},{b.grpc_url}"
    full = evaluate("classify", _options(data_dir, tmp_path / "full", url)).to_dict()
    assert full["images"] == expect["good"]
    shares = {e["address"]: e["share"] for e in full["endpoints"]["endpoints"]}
    assert set(shares) == {a.grpc_url, b.grpc_url} and all(s > 0 for s in shares.values()), shares

    real_submit = TritonInfer.submit
    sent = {"n": 0, "back": None}

    def submit_with_faults(self, batch):
        sent["n"] += 1
        if sent["n"] == 4:
            a.kill()  # batches are in flight to it; they are retried on b
        if sent["n"] == 9:
            sent["back"] = restart(start_server, slow_repo, a)
            wait_until(lambda: a.grpc_url in self.pool.ready())  # the health probe puts it back
        return real_submit(self, batch)

    monkeypatch.setattr(TritonInfer, "submit", submit_with_faults)
    out = tmp_path / "faulted"
    faulted = evaluate("classify", _options(data_dir, out, url)).to_dict()

    assert {k: faulted[k] for k in METRICS} == {k: full[k] for k in METRICS}
    assert faulted["errors"] == full["errors"] and faulted["notes"] == full["notes"]
    assert _entries(out) == _entries(tmp_path / "full")  # one entry per image, the same entries
    section = faulted["endpoints"]
    by_address = {e["address"]: e for e in section["endpoints"]}
    batches = -(-expect["good"] // 2)
    assert sum(e["ok"] for e in by_address.values()) == batches  # each batch served exactly once
    assert by_address[a.grpc_url]["taken_out"] >= 1 and by_address[a.grpc_url]["rejoined"] == 1
    assert by_address[b.grpc_url]["taken_out"] == 0 and by_address[b.grpc_url]["errors"] == 0
    events = [(ev["endpoint"], ev["event"]) for ev in section["events"]]
    assert events[0] == (a.grpc_url, "out") and (a.grpc_url, "in") in events, events
    # the shift of traffic: nothing to a while it is out, b carries the load, a serves again once back
    phases = section["phases"]
    out_phase = phases[1]
    assert out_phase["requests"].get(a.grpc_url, 0) == 0 and out_phase["requests"].get(b.grpc_url, 0) > 0
    assert phases[-1]["requests"].get(a.grpc_url, 0) > 0, phases
    report = (out / Classification.result_md).read_text()
    assert "## Endpoints" in report and a.grpc_url in report and "Traffic between events" in report


def test_every_endpoint_down_one_line_exit_1_then_resume_finishes_the_run(
        slow_repo, data, tmp_path, start_server, monkeypatch, capsys):
    data_dir, expect = data
    a, b = start_server(slow_repo), start_server(slow_repo)
    url = f"{a.grpc_url},{b.grpc_url}"
    full = evaluate("classify", _options(data_dir, tmp_path / "full", url)).to_dict()

    real_submit = TritonInfer.submit
    sent = {"n": 0}

    def submit_then_kill_all(self, batch):
        sent["n"] += 1
        if sent["n"] == 5:
            a.kill()
            b.kill()
        return real_submit(self, batch)

    monkeypatch.setattr(TritonInfer, "submit", submit_then_kill_all)
    out = tmp_path / "down"
    argv = ["eval", "classify", "--model", "demo_shapes", "--data", str(data_dir), "--url", url,
            "--batch-sizes", "2", "--in-flight", "2", "--timing-images", "0", "--retries", "2",
            "--no-progress", "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tritonkit eval: error: ") and "after 3 attempts" in err, err
    assert f"no endpoint ready of {a.grpc_url}, {b.grpc_url}" in err and "rerun with --resume" in err, err
    done = _entries(out)
    assert 0 < len(done) < full["images"] + len(full["errors"])

    monkeypatch.setattr(TritonInfer, "submit", real_submit)
    restart(start_server, slow_repo, b)  # one of the two is back: the pool takes it, the other stays out
    assert main(argv + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"endpoint {b.grpc_url} (ready)" in printed and f"endpoint {a.grpc_url} (out)" in printed, printed
    resumed = json.loads((out / Classification.result_json).read_text())
    assert resumed["resumed"] == len(done)
    assert {k: resumed[k] for k in METRICS} == {k: full[k] for k in METRICS}
    assert _entries(out) == _entries(tmp_path / "full")
    states = {e["address"]: e["state"] for e in resumed["endpoints"]["endpoints"]}
    assert states == {a.grpc_url: "out", b.grpc_url: "ready"}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_rolling_restart_under_load_fails_no_request(protocol, tmp_path, tiny_onnx, start_server):
    repo = tmp_path / "repo"
    write_faulty(repo, "demo_shapes", tiny_onnx, delay_ms=15, options=RepoOptions(max_batch_size=4))
    a, b = start_server(repo, exit_timeout_s=3), start_server(repo, exit_timeout_s=3)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 3, 64, 64)).astype(np.float32) for _ in range(4)]
    client = TritonInfer(CARD, ClientOptions(url=f"{a.url(protocol)},{b.url(protocol)}", protocol=protocol,
                                             in_flight=4, retries=3, probe_interval_s=0.2), max_batch=2)
    client.connect()
    expected = [client.infer(x)["logits"] for x in inputs]
    stop, results, failures = threading.Event(), [], []

    def load() -> None:
        i = 0
        while not stop.is_set():
            futures = [(k, client.submit(inputs[k])) for k in ((i + j) % 4 for j in range(4))]
            wait([f for _, f in futures])
            for k, f in futures:
                (failures.append(repr(f.exception())) if f.exception() else results.append((k, f.result())))
            i += 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: len(results) > 20)
        a.stop()                                   # graceful: in-flight requests drain
        wait_until(lambda: a.url(protocol) not in client.pool.ready())
        a = restart(start_server, repo, a)
        wait_until(lambda: a.url(protocol) in client.pool.ready())
        served_before = len(results)
        wait_until(lambda: len(results) > served_before + 20)
        b.stop()
        n = len(results)
        wait_until(lambda: len(results) > n + 20)  # a carries the load alone
    finally:
        stop.set()
        loader.join(timeout=60)
        report = client.endpoints_report()
        client.close()
    assert failures == []
    for k, outputs in results:
        np.testing.assert_allclose(outputs["logits"], expected[k], rtol=1e-5, atol=1e-5)
    by_address = {e.address: e for e in report.endpoints}
    assert by_address[a.url(protocol)].rejoined == 1 and by_address[b.url(protocol)].state == "out"
    assert sum(e.ok for e in report.endpoints) == len(results) + len(inputs)  # + the reference answers
