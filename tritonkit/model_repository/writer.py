"""Write models into a Triton model repository, atomically.

Layout written for one model::

    <repo>/<name>/config.pbtxt        (with the card it was made from in its tritonkit_card parameter)
    <repo>/<name>/labels.txt          (classifiers)
    <repo>/<name>/<version>/model.onnx | model.plan
    <repo>/<name>/<version>/model.py  (cpu target: python backend running onnxruntime)

Everything is assembled in a temporary folder beside the repository and moved into place at
the end, so a failure never leaves a half-written model that would stop the server loading.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tritonkit.cards import ModelCard
from tritonkit.errors import TritonkitError
from tritonkit.io import atomic_write_text
from tritonkit.onnx_contract import check_onnx_against_card
from tritonkit.model_repository.config import (
    LABELS_FILE, ORT_BACKEND_SOURCE, RepoOptions, Target, config_to_text, get_target, model_config)
from tritonkit.names import safe_child

__all__ = ["ORT_BACKEND_SOURCE", "WrittenModel", "backend_source", "check_model_file", "check_onnx_against_card",
           "write_model", "write_config_only"]


@dataclass(frozen=True)
class WrittenModel:
    name: str
    path: Path
    config_path: Path
    model_file: Path


def backend_source(source: str | Path) -> str:
    """Source text of a python-backend model: a file path (a task's ``backend.py``), or the name
    of one shipped in ``tritonkit/model_repository/backends``."""
    if isinstance(source, Path):
        return source.read_text()
    return resources.files("tritonkit.model_repository").joinpath("backends", source).read_text()


def check_model_file(card: ModelCard, model_file: Path, target: str | Target) -> None:
    """The model file exists, has a suffix the target serves and (ONNX targets) matches the card."""
    spec = target if isinstance(target, Target) else get_target(target)
    if not model_file.is_file():
        raise TritonkitError(f"{model_file}: model file not found")
    suffix = model_file.suffix.lower()
    if not spec.accepts(suffix):
        raise TritonkitError(f"{model_file}: target {spec.name!r} serves a {' or '.join(spec.accepts_suffixes)} "
                             f"file, got {suffix or 'no suffix'}")
    if spec.checks_onnx:
        check_onnx_against_card(card, model_file)


def _stage_model(root: Path, card: ModelCard, model_file: Path, options: RepoOptions, target: Target, cfg) -> None:
    """Everything of one model under ``root`` (a staging folder), config.pbtxt last."""
    version_dir = root / str(options.version)
    version_dir.mkdir(parents=True)
    shutil.copyfile(model_file, version_dir / target.model_file)
    for dest, source in target.backend_files:
        (version_dir / dest).write_text(backend_source(source))
    if target.sidecar_suffix:
        sidecar = model_file.with_name(model_file.name + target.sidecar_suffix)
        if sidecar.is_file():
            shutil.copyfile(sidecar, version_dir / (target.model_file + target.sidecar_suffix))
    if options.labels and card.has_labels:
        (root / LABELS_FILE).write_text("\n".join(card.label_names()) + "\n")
    (root / "config.pbtxt").write_text(config_to_text(cfg))


def _same_device(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def _staging_dir(repo_dir: Path, name: str) -> Path:
    """A fresh folder to build ``name`` in, on ``repo_dir``'s file system so the swap is a rename.

    Preferably beside the repository: tritonserver 2.51 takes every subfolder of the repository,
    hidden ones included, for a model, so a staging folder left inside it by a killed run stops a
    server started with ``--exit-on-error``. Only where the parent is another file system (``--out``
    is its own mount) or not writable is the model built in a hidden folder inside ``repo_dir``.
    """
    parent = repo_dir.parent
    if _same_device(parent, repo_dir):
        try:
            return Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
        except PermissionError:
            pass
    return Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo_dir))


def write_model(card: ModelCard, model_file: str | Path, repo_dir: str | Path,
                options: RepoOptions = RepoOptions()) -> WrittenModel:
    """Write (or replace) one model in ``repo_dir`` for ``options.target``; returns its paths."""
    model_file = Path(model_file)
    repo_dir = Path(repo_dir)
    target = get_target(options.target)
    check_model_file(card, model_file, target)
    cfg = model_config(card, options)
    name = cfg.name
    safe_child(repo_dir, name, "model name")
    repo_dir.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(repo_dir, name)
    try:
        _stage_model(staging / name, card, model_file, options, target, cfg)
        final = repo_dir / name
        if final.exists():
            final.rename(staging / f"{name}.old")
        (staging / name).rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenModel(name, final, final / "config.pbtxt", final / str(options.version) / target.model_file)


def write_config_only(repo_dir: str | Path, name: str, cfg) -> Path:
    """Write a config.pbtxt (atomically) for a model folder that needs no model file (ensembles)."""
    root = safe_child(repo_dir, name, "model name")
    (root / "1").mkdir(parents=True, exist_ok=True)
    return atomic_write_text(root / "config.pbtxt", config_to_text(cfg))
