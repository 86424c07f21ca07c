"""gpu-smoke as a library (tritonkit.smoke) and the DockerServer it runs the container with.

There is no GPU, Docker or TensorRT here. Mocked, and only these: the host's TensorRT (a module
object with a ``__version__`` put in ``sys.modules``), the image probe (a function), and the docker
command runner of DockerServer (a function recording argv). The server readiness that DockerServer
polls is a real HTTP server on a loopback port.
"""

from __future__ import annotations

import ast
import http.server
import json
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from tritonkit.build_engines.releases import RELEASES, ContainerTensorRT
from tritonkit.build_engines.sidecar import GpuInfo
from tritonkit.errors import ServerError, ToolMissingError, TritonkitError
from tritonkit.serve.docker import DockerServer, RunOptions, serve_run_argv
from tritonkit.smoke import (
    CONTAINER_NAME, SmokeOptions, SmokeReport, choose_builder, resolve_container_trt, run_smoke, smoke_precision)
from support.paths import ROOT

TRT_2510 = RELEASES["25.10"].tensorrt


# ---------------------------------------------------------------- builder choice (issue 11, item 3)

def test_a_host_tensorrt_of_another_version_never_builds():
    other = "10.11.0.33"
    assert choose_builder("auto", TRT_2510, other, docker_available=True) == "docker"
    with pytest.raises(ToolMissingError, match=f"this host's TensorRT {other} is not the container's {TRT_2510}"):
        choose_builder("auto", TRT_2510, other, docker_available=False)
    with pytest.raises(TritonkitError, match="plans would not load"):
        choose_builder("python", TRT_2510, other, docker_available=True)


def test_the_plan_builder_image_is_the_default_and_the_host_only_when_it_matches():
    assert choose_builder("auto", TRT_2510, TRT_2510, docker_available=True) == "docker"
    assert choose_builder("auto", TRT_2510, TRT_2510 + ".post1", docker_available=False) == "python"
    assert choose_builder("python", TRT_2510, TRT_2510, docker_available=False) == "python"
    assert choose_builder("docker", TRT_2510, None, docker_available=True) == "docker"
    with pytest.raises(ToolMissingError, match="not importable"):
        choose_builder("python", TRT_2510, None, docker_available=True)


def test_smoke_with_a_host_tensorrt_of_another_version_builds_nothing(tmp_path, monkeypatch, tiny_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.11.0.33"))
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "demo_shapes.onnx").write_bytes(tiny_onnx.read_bytes())
    opts = SmokeOptions(onnx_dir=tmp_path / "onnx", models=("demo_shapes",), out=tmp_path / "r", work=tmp_path / "w",
                        container_release="25.10")
    report = run_smoke(opts, GpuInfo("NVIDIA L4", "8.9"), docker_available=False)
    steps = {s.id: s for s in report.steps}
    assert steps["choose_builder"].status == "failed" and "10.11.0.33" in steps["choose_builder"].detail
    assert not any(s.id.startswith("build_") for s in report.steps)
    assert not (tmp_path / "w" / "plans").exists()
    saved = json.loads((tmp_path / "r" / "gpu_smoke.json").read_text())
    assert saved["failed"] and saved["container_tensorrt"] == TRT_2510
    assert any("unconfirmed" in n for n in saved["notes"])


def test_container_tensorrt_is_read_from_the_image_when_docker_answers():
    report = SmokeReport(gpu={}, container_release="25.10")
    seen = []
    trt = resolve_container_trt("25.10", None, report, docker_available=True,
                                probe=lambda image: seen.append(image) or "10.13.2.6")
    assert trt == ContainerTensorRT("10.13.2.6", "image", True)
    assert seen == ["nvcr.io/nvidia/tritonserver:25.10-py3"]
    assert "the image has 10.13.2.6: using the image's" in report.notes[0]
    override = resolve_container_trt("26.06", "11.1.0.7", report, docker_available=True,
                                     probe=lambda image: pytest.fail("no probe with an override"))
    assert override.version == "11.1.0.7"


def test_tensorrt_11_smoke_builds_fp32_and_says_why():
    assert smoke_precision(ContainerTensorRT("10.13.3.9", "table", False)) == ("fp16", "")
    precision, note = smoke_precision(ContainerTensorRT("11.1.0.7", "override", True))
    assert precision == "fp32" and "strongly typed" in note


# ---------------------------------------------------------------- DockerServer

class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):                                     # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def ready_port():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _Docker:
    """Records docker argv (and each call's timeout); answers run with a container id, inspect with
    ``running``, logs with a line, ``image inspect`` with ``image_present``, pull with a digest."""

    def __init__(self, running: str = "true", image_present: bool = True):
        self.calls: list[list[str]] = []
        self.timeouts: list[float | None] = []
        self.running = running
        self.image_present = image_present

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        self.timeouts.append(kwargs.get("timeout"))
        if argv[1] == "image":
            return subprocess.CompletedProcess(argv, 0 if self.image_present else 1, "[]", "")
        out = {"run": "0123456789abcdef\n", "inspect": self.running + "\n", "logs": "E1201 model load failed\n",
               "stop": CONTAINER_NAME + "\n", "pull": "Digest: sha256:0\n"}[argv[1]]
        return subprocess.CompletedProcess(argv, 0, out, "")


def _argv(http_port: int, tmp_path: Path) -> list[str]:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    return serve_run_argv("25.10", repo=repo, options=RunOptions(profile="dev", http_port=http_port,
                                                                 name=CONTAINER_NAME))


def test_docker_server_starts_waits_and_stops_like_local_server(ready_port, tmp_path):
    docker = _Docker()
    server = DockerServer(_argv(ready_port, tmp_path), name=CONTAINER_NAME, ports=(ready_port, 8001, None),
                          runner=docker)
    with server as s:
        assert s.container_id == "0123456789ab" and s.http_url == f"127.0.0.1:{ready_port}"
        assert s.url("grpc") == "127.0.0.1:8001" and s.metrics_url is None and s.is_alive()
    assert docker.calls[0][:5] == ["docker", "run", "-d", "--name", CONTAINER_NAME]
    assert docker.calls[-1] == ["docker", "stop", "-t", "40", CONTAINER_NAME]
    assert server.stop() is None                            # stopped once


def test_docker_server_that_exits_while_starting_says_so_and_is_stopped(tmp_path):
    from tritonkit.serve.local import free_port

    docker = _Docker(running="false")
    port = free_port()                                       # nothing answers there
    server = DockerServer(_argv(port, tmp_path), name=CONTAINER_NAME, ports=(port, 8001, None), runner=docker)
    with pytest.raises(ServerError, match="exited while starting: E1201 model load failed"):
        server.start(timeout_s=5)
    assert docker.calls[-1][:2] == ["docker", "stop"]


def test_docker_server_pulls_a_missing_image_first_without_a_deadline(ready_port, tmp_path):
    """A fresh host: the image is pulled (no timeout) before `docker run -d`, whose own timeout then
    bounds the start only. (No Docker engine here: docker is a recording fake.)"""
    image = "nvcr.io/nvidia/tritonserver:25.10-py3"
    docker = _Docker(image_present=False)
    server = DockerServer(_argv(ready_port, tmp_path), name=CONTAINER_NAME, ports=(ready_port, 8001, None),
                          runner=docker, image=image)
    with server:
        pass
    verbs = [c[1] for c in docker.calls]
    assert verbs[:3] == ["image", "pull", "run"] and docker.calls[1] == ["docker", "pull", image]
    assert docker.timeouts[1] is None and docker.timeouts[2] is not None
    present = _Docker(image_present=True)
    with DockerServer(_argv(ready_port, tmp_path), name=CONTAINER_NAME, ports=(ready_port, 8001, None),
                      runner=present, image=image):
        pass
    assert "pull" not in [c[1] for c in present.calls]                      # a local image is not pulled again
    with pytest.raises(TritonkitError, match="is not the one the docker run command runs"):
        DockerServer(_argv(ready_port, tmp_path), name=CONTAINER_NAME, image="other:1")


def test_docker_server_needs_a_named_detached_command(tmp_path):
    argv = serve_run_argv("25.10", repo=tmp_path, options=RunOptions(profile="dev"))
    with pytest.raises(TritonkitError, match="must name its container"):
        DockerServer(argv, name=CONTAINER_NAME)


# ---------------------------------------------------------------- layering

def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + \
           [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]


def test_smoke_is_library_code_and_the_cli_file_is_thin():
    smoke = ROOT / "tritonkit" / "smoke.py"
    assert not [m for m in _imports(smoke) if m == "tritonkit.cli" or m.startswith("tritonkit.cli.")]
    text = smoke.read_text()
    assert "print(" not in text and "argparse" not in text and "argv[2:2]" not in text
    cli = ROOT / "tritonkit" / "cli" / "gpu_smoke.py"
    assert not {"subprocess", "shutil", "urllib.request", "json"} & set(_imports(cli))
    assert "main(" not in cli.read_text()


def test_the_eval_call_is_isolated_in_one_function():
    tree = ast.parse((ROOT / "tritonkit" / "smoke.py").read_text())
    users = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
             for n in ast.walk(f) if isinstance(n, ast.Name) and n.id in ("evaluate", "task_for_card")}
    assert users == {"evaluate_served"}


def test_build_engines_and_serve_have_no_cycle():
    """build_engines imports nothing from serve (serve.docker builds on build_engines.docker)."""
    for path in (ROOT / "tritonkit" / "build_engines").glob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("tritonkit.serve")], path.name
