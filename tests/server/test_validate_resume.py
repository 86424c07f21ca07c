"""The resilient eval client against real bundled tritonservers that die mid-run.

* the server is killed (SIGKILL) while an eval is streaming: the run stops with one clear error
  after retrying the unavailable server, a fresh server is started, ``--resume`` finishes the
  run, and the result is exactly the uninterrupted one (one entry per image, same metrics);
* the eval client itself is killed (SIGKILL) mid-run: ``--resume`` likewise gives exactly the
  uninterrupted results;
* per-request deadlines: a request slower than ``--timeout`` fails at its deadline
  (gRPC DEADLINE_EXCEEDED, HTTP read timeout), without being retried.

The served model is the tiny classifier behind a python-backend model that sleeps 40 ms per
execution, so a run lasts long enough to be interrupted part way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from support.classify_data import CARD
from support.resume import CHECKPOINT, METRICS, entries as _entries, evaluate_classification, options as _options
from tritonkit.client.checkpoint import read_checkpoint
from tritonkit.client.infer import ClientOptions, TritonInfer
from tritonkit.errors import ServerError
from tritonkit.evaluate import evaluate
from tritonkit.model_repository.config import RepoOptions
from tritonkit.tasks.classify.task import Classification, ClassificationOptions
from support.validate_models import write_faulty

def _assert_same_results(resumed: dict, full: dict, resumed_out, full_out) -> None:
    assert {k: resumed[k] for k in METRICS} == {k: full[k] for k in METRICS}
    assert resumed["errors"] == full["errors"] and resumed["notes"] == full["notes"]
    assert _entries(resumed_out) == _entries(full_out)


def test_server_killed_mid_eval_then_restarted_and_resumed_gives_the_uninterrupted_results(
        slow_repo, data, tmp_path, start_server, monkeypatch):
    data_dir, expect = data
    first = start_server(slow_repo)
    full = evaluate_classification(_options(data_dir, tmp_path / "full", first.grpc_url))
    n_items = full["images"] + len(full["errors"])
    assert full["images"] == expect["good"] and len(_entries(tmp_path / "full")) == n_items

    # Kill the server just before the fifth batch goes out: batches are in flight, the rest
    # of the run finds nobody listening.
    real_submit = TritonInfer.submit
    sent = {"n": 0}

    def submit_then_kill(self, batch):
        sent["n"] += 1
        if sent["n"] == 5:
            first.kill()
        return real_submit(self, batch)

    monkeypatch.setattr(TritonInfer, "submit", submit_then_kill)
    out = tmp_path / "interrupted"
    with pytest.raises(ServerError) as failure:
        evaluate_classification(_options(data_dir, out, first.grpc_url, retries=2))
    message = str(failure.value)
    assert "after 3 attempts" in message, message  # unavailable: retried with backoff, then given up
    assert "rerun with --resume" in message and str(out / CHECKPOINT) in message
    monkeypatch.setattr(TritonInfer, "submit", real_submit)
    done = _entries(out)
    assert 0 < len(done) < n_items

    second = start_server(slow_repo)  # a fresh server (new ports), the same repository
    resumed = evaluate_classification(_options(data_dir, out, second.grpc_url, resume=True))
    assert resumed["resumed"] == len(done)
    assert resumed["stream_images"] == expect["good"] - sum("record" in e for e in done.values())
    _assert_same_results(resumed, full, out, tmp_path / "full")


def test_client_killed_mid_eval_then_resumed_gives_the_uninterrupted_results(slow_repo, data, tmp_path,
                                                                             start_server):
    data_dir, expect = data
    server = start_server(slow_repo)
    full = evaluate_classification(_options(data_dir, tmp_path / "full", server.grpc_url))
    n_items = full["images"] + len(full["errors"])

    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "tritonkit", "eval", "classify", "--model", "demo_shapes", "--data", str(data_dir),
            "--url", server.grpc_url, "--batch-sizes", "1", "--in-flight", "1", "--timing-images", "0",
            "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            ckpt = out / CHECKPOINT
            if ckpt.is_file() and len(ckpt.read_bytes().splitlines()) > 6:  # header + some images
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"eval ended before it could be killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, partial, _ = read_checkpoint(out / CHECKPOINT)
    assert 0 < len(partial) < n_items

    from tritonkit.cli import main

    assert main(argv[3:] + ["--resume"]) == 0
    resumed = json.loads((out / "classification.json").read_text())
    assert resumed["resumed"] == len(partial)
    # The killed run used batch size 1, the uninterrupted one 2: the per-image results agree anyway.
    _assert_same_results(resumed, full, out, tmp_path / "full")


def test_a_request_past_its_deadline_fails_at_once_without_retries(tmp_path, tiny_onnx, start_server):
    repo = tmp_path / "very_slow"
    write_faulty(repo, "demo_shapes", tiny_onnx, delay_ms=1500, options=RepoOptions(max_batch_size=1))
    server = start_server(repo)
    x = np.zeros((1, 3, 64, 64), np.float32)
    for protocol in ("grpc", "http"):
        client = TritonInfer(CARD, ClientOptions(url=server.url(protocol), protocol=protocol, timeout_s=0.5,
                                                 retries=3, backoff_s=0.01), max_batch=1)
        client.connect()
        try:
            start = time.monotonic()
            with pytest.raises(ServerError, match="inference request failed") as failure:
                client.submit(x).result(timeout=30)
            elapsed = time.monotonic() - start
            assert 0.4 < elapsed < 1.4, (protocol, elapsed)  # the deadline, not the 1.5 s execution
            assert "attempts" not in str(failure.value) and client.retries_done == 0, str(failure.value)
        finally:
            client.close()
