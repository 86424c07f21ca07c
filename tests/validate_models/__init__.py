"""Repositories with deliberately faulty models, for the validation tests.

Every model is the tiny ``demo_shapes`` classifier written by the real repository writer (config,
labels, card.json), with ``faulty_model.py`` as its python-backend model so a fault can be
switched on by a config parameter.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tritonkit.cards import get_card
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model

HERE = Path(__file__).parent


def write_faulty(repo: Path, name: str, onnx: Path, *, fault: str = "none", delay_ms: int = 0,
                 options: RepoOptions = RepoOptions()) -> Path:
    """Write model ``name`` into ``repo`` with ``fault`` and ``delay_ms``; returns its folder."""
    opts = replace(options, target="cpu", name=name, warmup=False,
                   parameters=tuple(options.parameters) + (("fault", fault), ("delay_ms", str(delay_ms))))
    written = write_model(get_card("demo_shapes"), onnx, repo, opts)
    (written.path / "1" / "model.py").write_text((HERE / "faulty_model.py").read_text())
    return written.path
