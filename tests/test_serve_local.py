"""The bundled tritonserver (local CPU target): start, serve, fail clearly, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tritonkit.errors import ServerError, TritonkitError
from tritonkit.serve.local import LocalServer, ServerOptions, server_argv, server_paths
from tritonkit.serve.profiles import API_KEY_ENV, local_options

pytestmark = pytest.mark.server


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    inp = grpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer("demo_shapes", [inp]).as_numpy("logits")


def test_served_output_equals_in_process_onnxruntime(tiny_server, tiny_onnx):
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((5, 3, 64, 64)).astype(np.float32)
    ref = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(_infer(tiny_server.grpc_url, x), ref, rtol=1e-5, atol=1e-5)


def test_dynamic_batching_does_not_change_results(tiny_server):
    """Concurrent single-image requests (batched together by the server) equal one-at-a-time ones."""
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(16)]
    alone = [_infer(tiny_server.grpc_url, x) for x in xs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda x: _infer(tiny_server.grpc_url, x), xs))
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_server_binds_loopback_only(tiny_server):
    argv = server_argv(server_paths(), tiny_server.options, tiny_server.ports)
    for flag in ("--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"):
        assert flag in argv


def test_model_that_fails_to_load_gives_log_tail(tmp_path, start_server):
    bad = tmp_path / "repo" / "broken" / "1"
    bad.mkdir(parents=True)
    (bad / "model.py").write_text("raise RuntimeError('deliberately broken model')\n")
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 1\n'
        'input { name: "x" data_type: TYPE_FP32 dims: [1] }\noutput { name: "y" data_type: TYPE_FP32 dims: [1] }\n')
    with pytest.raises(ServerError, match="deliberately broken model"):
        start_server(tmp_path / "repo", timeout_s=60)


def test_port_taken_by_another_server_is_not_mistaken_for_ready(tmp_path, tiny_server, start_server):
    """A second server on the first one's ports fails to bind; the health check must not be fooled
    by the first server answering."""
    http, grpc, metrics = tiny_server.ports
    with pytest.raises(ServerError, match="while starting"):
        start_server(tiny_server.options.model_repository, timeout_s=30, http_port=http, grpc_port=grpc,
                     metrics_port=metrics)
    assert tiny_server.is_alive()


def test_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(ServerError, match="does not exist"):
        LocalServer(ServerOptions(model_repository=tmp_path / "nope")).start()


def test_production_profile_needs_a_key(tmp_path):
    with pytest.raises(TritonkitError, match=API_KEY_ENV):
        local_options(tmp_path, "production", env={})
    opts = local_options(tmp_path, "production", env={API_KEY_ENV: "k" * 20})
    assert opts.model_control_mode == "none" and opts.restricted_value == "k" * 20


def _start_cli_server(args: list[str], env: dict, ready_s: float):
    """`tritonkit serve --local ARGS` on free ports, returned once it prints that it is ready."""
    from tritonkit.serve.local import free_port

    ports = [free_port() for _ in range(3)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonkit", "serve", "--local", *args,
         "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    line = ""
    deadline = time.monotonic() + ready_s
    while "ready" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    if "ready" not in line:
        proc.kill()
        raise AssertionError(f"serve did not report ready (exit code {proc.poll()})")
    return proc, ports


def test_cli_serve_local_stops_cleanly_on_sigterm(tmp_path, tiny_server):
    repo = tiny_server.options.model_repository
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    proc, ports = _start_cli_server(["--repo", str(repo)], env, ready_s=90)
    try:
        out = _infer(f"127.0.0.1:{ports[1]}", np.zeros((1, 3, 64, 64), np.float32))
        assert out.shape == (1, 8)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "tritonserver stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_local_production_drains_in_flight_requests_on_sigterm(tmp_path, tiny_onnx):
    """`tritonkit serve --local --profile production`: restricted APIs refuse without the key, and
    slow requests in flight when the CLI gets SIGTERM all complete before it exits."""
    import threading

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tritonkit.cards import get_card
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.validate.requests import burst
    from validate_models import write_faulty

    repo = tmp_path / "repo"
    write_faulty(repo, "slow", tiny_onnx, delay_ms=400, options=RepoOptions(max_batch_size=1))
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{API_KEY_ENV: "cli-drain-test-key-0123456789"})
    outcomes: list = []
    proc, ports = _start_cli_server(["--profile", "production", "--repo", str(repo)], env, ready_s=120)
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_model_repository_index()
        x = np.zeros((1, 3, 64, 64), np.float32)
        sender = threading.Thread(
            target=lambda: outcomes.extend(burst(client, "slow", get_card("demo_shapes"), [x] * 4, 30.0)))
        sender.start()
        time.sleep(0.6)  # the first request is executing, the others queued (1.6 s of work in all)
        proc.send_signal(signal.SIGTERM)  # the CLI stops the server within its 0.5 s poll
        sender.join(timeout=60)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(outcomes) == 4 and all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert max(o.latency_s for o in outcomes) >= 1.4, "four 400 ms executions in a row"
    assert proc.returncode == 0 and "tritonserver stopped (exit code 0)" in rest
