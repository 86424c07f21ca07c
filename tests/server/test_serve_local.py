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
from tritonkit.serve import keyshim
from tritonkit.serve.local import LocalServer, ServerOptions, server_argv, server_paths
from tritonkit.serve.profiles import API_KEY_ENV, local_options


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


def test_port_taken_by_another_server_is_not_mistaken_for_ready(tmp_path, tiny_server, start_server, monkeypatch):
    """A second server on the first one's ports fails to bind; the health check must not be fooled
    by the first server answering. (The ports are checked before a start, see
    test_busy_port_is_named_before_starting; this is the race where one is taken after the check,
    so the check is skipped here.)"""
    import tritonkit.serve.local as local

    monkeypatch.setattr(local, "check_ports_free", lambda host, ports: None)
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
    from support.validate_models import write_faulty

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


# ---------------------------------------------------------------- lifecycle and security
def _tritonservers_under(pid: int) -> list:
    import psutil

    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "tritonserver"]
    except psutil.Error:
        return []


def _wait_gone(procs: list, deadline_s: float) -> list:
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=deadline_s)
    return alive


def test_cli_serve_local_dies_with_its_parent_on_sigkill(tiny_server):
    """kill -9 of `tritonkit serve --local` once left tritonserver holding the ports."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc, ports = _start_cli_server(["--repo", str(tiny_server.options.model_repository)], env, ready_s=90)
    try:
        servers = _tritonservers_under(proc.pid)
        assert len(servers) == 1
        tree = servers + servers[0].children(recursive=True)
        assert any(p.name() == "triton_python_backend_stub" for p in tree)
        proc.kill()
        proc.wait(timeout=30)
        alive = _wait_gone(tree, deadline_s=60)
        assert alive == [], f"still running after the parent's SIGKILL: {[(p.pid, p.name()) for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_local_busy_port_is_one_line(tmp_path, tiny_server):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tritonkit", "serve", "--local", "--repo", str(tiny_server.options.model_repository),
             "--grpc-port", str(port), "--http-port", "0", "--metrics-port", "0"],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and f"grpc port {port}" in err and "already in use" in err, err


def test_busy_port_is_named_before_starting(tmp_path, tiny_server):
    http, grpc, metrics = tiny_server.ports
    with pytest.raises(ServerError, match=f"http port {http} on 127.0.0.1 is already in use"):
        LocalServer(ServerOptions(model_repository=tiny_server.options.model_repository, http_port=http)).start()


@pytest.mark.skipif(keyshim.compiler() is None,
                    reason="no C compiler for the key shim (test_without_a_compiler_the_key_exposure_is_reported)")
def test_production_key_is_not_on_the_server_command_line(tmp_path, tiny_server, start_server):
    """The key reaches tritonserver (restricted APIs answer with it) but not /proc/<pid>/cmdline,
    nor the environment of its python-backend stubs."""
    from pathlib import Path

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tritonkit.serve.profiles import key_headers
    from tritonkit.validate.security import exposed_keys

    key = "cmdline-test-key-0123456789abcdef"
    opts = local_options(tiny_server.options.model_repository, "production", env={API_KEY_ENV: key})
    server = start_server(opts.model_repository, **{k: getattr(opts, k) for k in (
        "model_control_mode", "restricted_key", "restricted_value", "restricted_apis", "metrics_host")})
    assert not server.key_on_command_line
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert key.encode() not in cmdline and b"--grpc-restricted-protocol=" in cmdline
    assert exposed_keys(cmdline.decode().split("\0"), key) == []
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_model_repository_index()
    assert client.get_model_repository_index(headers=key_headers("grpc", key)).models[0].name == "demo_shapes"
    stubs = server._tree
    assert stubs and all(key.encode() not in Path(f"/proc/{p.pid}/environ").read_bytes() for p in stubs)


def test_without_a_compiler_the_key_exposure_is_reported(tmp_path, monkeypatch):
    """Without a C compiler the key shim cannot be built: the key goes on the command line, the
    server says so, and validate's key-exposure check finds it."""
    from tritonkit.validate.security import exposed_keys

    monkeypatch.setattr(keyshim, "compiler", lambda: None)
    key = "exposed-test-key-0123456789abcdef"
    server = LocalServer(local_options(tmp_path, "production", env={API_KEY_ENV: key}), cache_dir=tmp_path / "c")
    paths = server_paths(tmp_path / "c")
    env: dict = {}
    argv, shim = server._argv_and_env(paths, env)
    assert shim is None and server.key_on_command_line and keyshim.VALUE_ENV not in env
    assert any(key in a for a in argv)
    assert exposed_keys(argv, key) == ["--http-restricted-api", "--grpc-restricted-protocol", "the key itself"]


def test_production_profile_keeps_metrics_on_loopback_and_warns_beyond_it(tmp_path):
    from tritonkit.serve.profiles import bind_warnings

    opts = local_options(tmp_path, "production", host="0.0.0.0", env={API_KEY_ENV: "k" * 20})
    argv = server_argv(server_paths(), opts, (1, 2, 3))
    assert "--metrics-address=127.0.0.1" in argv and "--grpc-address=0.0.0.0" in argv
    assert bind_warnings("production", "127.0.0.1") == bind_warnings("dev", "localhost") == []
    (warning,) = bind_warnings("production", "0.0.0.0")
    assert "beyond loopback" in warning and "0.0.0.0" in warning
    assert "open to anyone" in bind_warnings("dev", "10.0.0.5")[0]


def test_orphaned_stub_of_a_killed_server_is_reclaimed_at_the_next_start(tiny_server, start_server):
    """kill -9 of tritonserver alone can leave its python-backend stub (ppid 1) with its 64 MB region;
    the next start kills it and removes the region. The stub is stopped (SIGSTOP) before the
    server is killed, so that it surely outlives it: a running stub sometimes notices and exits."""
    from pathlib import Path

    from tritonkit.serve.reaper import as_stub

    first = start_server(tiny_server.options.model_repository)
    stubs = [as_stub(p) for p in first._tree]
    assert stubs and all(s is not None and s.region for s in stubs)
    regions = [Path("/dev/shm") / s.region for s in stubs]
    assert all(r.exists() for r in regions)
    for stub in stubs:
        os.kill(stub.pid, signal.SIGSTOP)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    assert all(p.is_running() for p in first._tree), "the stub outlives its server (the case reclaimed)"
    second = start_server(tiny_server.options.model_repository)
    reclaimed = " ".join(second.reclaimed)
    assert all(f"pid {s.pid}" in reclaimed for s in stubs), second.reclaimed
    assert _wait_gone(first._tree, deadline_s=30) == []
    assert not any(r.exists() for r in regions)


def test_stop_leaves_no_stub_behind(tiny_server, start_server):
    server = start_server(tiny_server.options.model_repository)
    tree = list(server._tree)
    assert tree
    server.stop()
    assert _wait_gone(tree, deadline_s=30) == []


def test_validate_reports_a_key_left_on_the_command_line(tiny_server, start_server, monkeypatch):
    """A production server whose key is on its command line (no C compiler for the shim here,
    as on a host without one) fails validate's key-exposure check, naming /proc/<pid>/cmdline;
    the same server with the shim passes it (test_production_key_is_not_on_the_server_command_line)."""
    from tritonkit.validate import validate
    from tritonkit.validate.options import ValidateOptions

    key = "exposed-validate-key-0123456789ab"
    monkeypatch.setattr(keyshim, "shim_library", lambda cache_dir: None)
    server = start_server(tiny_server.options.model_repository, restricted_key="tritonkit-api-key",
                          restricted_value=key)
    assert server.key_on_command_line
    monkeypatch.setenv("TRITONKIT_TEST_EXPOSED_KEY", key)
    report = validate(ValidateOptions(models=("demo_shapes",), url=server.grpc_url, checks=("security",),
                                      api_key_env="TRITONKIT_TEST_EXPOSED_KEY"))
    (exposure,) = report.by_name("security.key_exposure")
    assert not exposure.passed
    assert f"/proc/{server.process.pid}/cmdline" in exposure.detail and "the key itself" in exposure.detail
    assert key not in exposure.detail


def test_unmapped_stale_backend_regions_are_removed_fresh_ones_kept(tmp_path):
    """Server and stub both killed (kill -9 of the process group) leave only the region file."""
    import time
    import uuid
    from pathlib import Path

    from tritonkit.serve.reaper import REGION_PREFIX, reclaim_orphans

    old = Path("/dev/shm") / f"{REGION_PREFIX}tritonkit-test-{uuid.uuid4()}"
    fresh = Path("/dev/shm") / f"{REGION_PREFIX}tritonkit-test-{uuid.uuid4()}"
    try:
        for path in (old, fresh):
            path.write_bytes(b"\0" * 64)
        an_hour_ago = time.time() - 3600
        os.utime(old, (an_hour_ago, an_hour_ago))
        notes = reclaim_orphans()
        assert not old.exists() and fresh.exists()
        assert f"removed /dev/shm/{old.name} (no process maps it)" in notes
    finally:
        old.unlink(missing_ok=True)
        fresh.unlink(missing_ok=True)
