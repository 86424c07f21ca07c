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
                 options: RepoOptions = RepoOptions(), any_input_dims: bool = False) -> Path:
    """Write model ``name`` into ``repo`` with ``fault`` and ``delay_ms``; returns its folder.

    ``any_input_dims`` serves the input with ``-1`` dims (a config that lets any shape through).
    """
    opts = replace(options, target="cpu", name=name, warmup=False,
                   parameters=tuple(options.parameters) + (("fault", fault), ("delay_ms", str(delay_ms))))
    written = write_model(get_card("demo_shapes"), onnx, repo, opts)
    (written.path / "1" / "model.py").write_text((HERE / "faulty_model.py").read_text())
    if any_input_dims:
        config = written.path / "config.pbtxt"
        text = config.read_text()
        fixed = "  dims: 3\n  dims: 64\n  dims: 64\n"
        assert text.count(fixed) == 1, "the input dims block of the demo_shapes config changed"
        config.write_text(text.replace(fixed, "  dims: -1\n  dims: -1\n  dims: -1\n"))
    return written.path
