"""Shared fixtures: tiny real models, and the real bundled tritonserver started on free ports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# ultralytics, wherever a test runs it (subprocesses inherit these): no network probes, no pip
# auto-install of a missing extra (it would try for pi-heif, faster-coco-eval, ...), settings under
# .cache/ instead of the user's home.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "ultralytics" / "config"))

from onnx_models import tiny_classifier  # noqa: E402


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


@pytest.fixture
def start_server(tmp_path):
    """Factory: ``start_server(repo_dir, **ServerOptions fields) -> LocalServer`` (stopped at teardown)."""
    from tritonkit.serve.local import LocalServer, ServerOptions

    started = []

    def _start(repo: Path, timeout_s: float = 120.0, **options) -> LocalServer:
        server = LocalServer(ServerOptions(model_repository=Path(repo), **options),
                             log_path=tmp_path / f"tritonserver-{len(started)}.log")
        started.append(server)
        return server.start(timeout_s=timeout_s)

    yield _start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory, tiny_onnx):
    """One shared server (session scope) serving the tiny model as ``demo_shapes`` on the cpu target."""
    from tritonkit.cards import get_card
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model
    from tritonkit.serve.local import LocalServer, ServerOptions

    repo = tmp_path_factory.mktemp("repo")
    # The tiny model runs in well under a millisecond: with the default 100 µs queue delay a
    # concurrent burst can be served one request at a time, and the checks that need the dynamic
    # batcher to merge requests (concurrency invariance) would test nothing. 2 ms lets it merge.
    write_model(get_card("demo_shapes"), tiny_onnx, repo, RepoOptions(target="cpu", max_queue_delay_us=2000))
    server = LocalServer(ServerOptions(model_repository=repo), log_path=repo.parent / "tritonserver.log")
    server.start()
    yield server
    server.stop()
