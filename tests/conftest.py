"""Shared fixtures: tiny real models, and the real bundled tritonserver serving repositories.

The tree: ``tests/unit/<stage>/`` needs no server, ``tests/server/`` starts the real bundled
tritonserver (every test there is marked ``server`` here, by folder), ``tests/support/`` holds
what several test modules share (models, data sets, the isolated backend runner). Long tests are
marked ``slow`` where they are (``make test`` leaves them out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from support.onnx_models import tiny_classifier
from support.paths import ROOT, TESTS

SERVER_TESTS = TESTS / "server"
# ultralytics, wherever a test runs it (subprocesses inherit these): no network probes, no pip
# auto-install of a missing extra (it would try for pi-heif, faster-coco-eval, ...), settings under
# .cache/ instead of the user's home.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics" / "config"))


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if SERVER_TESTS in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A tiny classifier ONNX matching the ``demo_shapes`` card (input 3x64x64, 8 logits)."""
    return tiny_classifier(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def yolo_model():
    """Factory: ``yolo_model(name) -> TinyModel``, a tiny ultralytics model trained here (see
    ``tests/support/ultralytics_models.py``; built once, cached under .cache/ultralytics); skips
    where ultralytics is not installed."""
    from support.ultralytics_models import tiny_model, ultralytics_available

    if not ultralytics_available():
        pytest.skip("ultralytics is not installed (requirements.txt pins it)")
    return tiny_model


@dataclass
class ServedRepository:
    """A repository and the local tritonserver serving it."""

    repo: Path
    server: object  # tritonkit.serve.local.LocalServer

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    @property
    def http_url(self) -> str:
        return self.server.http_url


def _serving(make_dir: Callable[[str], Path]):
    """A factory ``serve(write, name=..., timeout_s=..., **ServerOptions fields)``: ``write(repo)``
    fills a new repository folder, then a local tritonserver serves it; all are stopped at the end."""
    from tritonkit.serve.local import LocalServer, ServerOptions

    started = []

    def serve(write: Callable[[Path], object] | None = None, *, name: str = "repo", timeout_s: float = 120.0,
              repo: Path | None = None, **options) -> ServedRepository:
        repo = repo if repo is not None else make_dir(name)
        if write is not None:
            write(repo)
        server = LocalServer(ServerOptions(model_repository=repo, **options),
                             log_path=repo.parent / f"tritonserver-{repo.name}-{len(started)}.log")
        started.append(server)
        server.start(timeout_s=timeout_s)
        return ServedRepository(repo, server)

    return serve, started


@pytest.fixture(scope="module")
def served_repository(tmp_path_factory):
    """Module scope: ``served_repository(write, name=...)`` -> :class:`ServedRepository`, the real
    bundled tritonserver serving a repository that ``write(repo_dir)`` filled."""
    serve, started = _serving(tmp_path_factory.mktemp)
    yield serve
    for server in started:
        server.stop()


@pytest.fixture
def start_server(tmp_path):
    """Function scope: ``start_server(repo_dir, **ServerOptions fields) -> LocalServer`` (stopped at
    teardown), for tests that stop, kill or restart their server."""
    serve, started = _serving(lambda name: tmp_path / name)
    yield lambda repo, timeout_s=120.0, **options: serve(repo=Path(repo), timeout_s=timeout_s, **options).server
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory, tiny_onnx):
    """One shared server (session scope) serving the tiny model as ``demo_shapes`` on the cpu target."""
    from tritonkit.cards import get_card
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model

    serve, started = _serving(tmp_path_factory.mktemp)
    # The tiny model runs in well under a millisecond: with the default 100 µs queue delay a
    # concurrent burst can be served one request at a time, and the checks that need the dynamic
    # batcher to merge requests (concurrency invariance) would test nothing. 2 ms lets it merge.
    served = serve(lambda repo: write_model(get_card("demo_shapes"), tiny_onnx, repo,
                                            RepoOptions(target="cpu", max_queue_delay_us=2000)))
    yield served.server
    for server in started:
        server.stop()
