"""Fixtures of the real-server tests (every test under tests/server/ is marked ``server``)."""

from __future__ import annotations

import pytest

from support.classify_data import make_dataset
from support.validate_models import write_faulty
from tritonkit.model_repository.config import RepoOptions


@pytest.fixture
def slow_repo(tmp_path, tiny_onnx):
    repo = tmp_path / "repo"
    write_faulty(repo, "demo_shapes", tiny_onnx, delay_ms=40, options=RepoOptions(max_batch_size=8))
    return repo


@pytest.fixture
def data(tmp_path):
    expect = make_dataset(tmp_path / "data", n_good=30)
    return tmp_path / "data", expect
