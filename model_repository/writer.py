"""Write models into a Triton model repository, atomically.

Layout written for one model::

    <repo>/<name>/config.pbtxt
    <repo>/<name>/labels.txt          (classifiers)
    <repo>/<name>/card.json           (the card it was made from, for later contract checks)
    <repo>/<name>/<version>/model.onnx | model.plan
    <repo>/<name>/<version>/model.py  (cpu target: python backend running onnxruntime)

Everything is assembled in a temporary folder beside the repository and moved into place at
the end, so a failure never leaves a half-written model that would stop the server loading.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tritonkit.cards import ModelCard
from tritonkit.errors import TritonkitError
from tritonkit.tasks import has_labels
from tritonkit.model_repository.config import (
    LABELS_FILE, MODEL_FILES, RepoOptions, config_to_text, model_config)

ORT_BACKEND_SOURCE = "ort_model.py"


@dataclass(frozen=True)
class WrittenModel:
    name: str
    path: Path
    config_path: Path
    model_file: Path


def backend_source(filename: str) -> str:
    """Source text of a python-backend model shipped in ``model_repository/backends``."""
    return resources.files("tritonkit.model_repository").joinpath("backends", filename).read_text()


def check_model_file(card: ModelCard, model_file: Path, target: str) -> None:
    if not model_file.is_file():
        raise TritonkitError(f"{model_file}: model file not found")
    suffix = model_file.suffix.lower()
    if target in ("cpu", "onnxruntime") and suffix != ".onnx":
        raise TritonkitError(f"{model_file}: target {target!r} serves an .onnx file, got {suffix or 'no suffix'}")
    if target == "gpu" and suffix not in (".plan", ".engine"):
        raise TritonkitError(f"{model_file}: target 'gpu' serves a TensorRT plan (.plan), got {suffix or 'no suffix'}")
    if target in ("cpu", "onnxruntime"):
        check_onnx_against_card(card, model_file)


def check_onnx_against_card(card: ModelCard, onnx_path: Path) -> None:
    """One clear error listing every way the ONNX's graph inputs/outputs disagree with the card."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / various on corrupt files
        raise TritonkitError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__})") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    outputs = {o.name: o for o in model.graph.output}
    problems = []

    def dims_of(vi) -> list:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]

    def matches(graph_dims: list, spec_dims: tuple) -> bool:
        return len(graph_dims) == len(spec_dims) + 1 and all(
            a == -1 or b == -1 or a == b for a, b in zip(graph_dims[1:], spec_dims))

    if card.input.name not in inputs:
        problems.append(f"input {card.input.name!r} missing (graph has {sorted(inputs)})")
    else:
        d = dims_of(inputs[card.input.name])
        if not matches(d, card.input.dims):
            problems.append(f"input {card.input.name!r} shape {d} != [batch, {', '.join(map(str, card.input.dims))}]")
        elif d[0] not in (-1, 0) and d[0] < card.max_batch_size:
            problems.append(f"input {card.input.name!r} has a fixed batch of {d[0]}; export with a dynamic batch axis")
    for spec in card.outputs:
        if spec.name not in outputs:
            problems.append(f"output {spec.name!r} missing (graph has {sorted(outputs)})")
            continue
        d = dims_of(outputs[spec.name])
        if d and not matches(d, spec.dims):
            problems.append(f"output {spec.name!r} shape {d} != [batch, {', '.join(map(str, spec.dims))}]")
    if problems:
        raise TritonkitError(f"{onnx_path} does not match card {card.name!r}: " + "; ".join(problems))


def write_model(card: ModelCard, model_file: str | Path, repo_dir: str | Path,
                options: RepoOptions = RepoOptions()) -> WrittenModel:
    """Write (or replace) one model in ``repo_dir`` for ``options.target``; returns its paths."""
    model_file = Path(model_file)
    repo_dir = Path(repo_dir)
    check_model_file(card, model_file, options.target)
    cfg = model_config(card, options)
    name = cfg.name
    repo_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo_dir.parent))
    try:
        root = staging / name
        version_dir = root / str(options.version)
        version_dir.mkdir(parents=True)
        shutil.copyfile(model_file, version_dir / MODEL_FILES[options.target])
        if options.target == "cpu":
            (version_dir / "model.py").write_text(backend_source(ORT_BACKEND_SOURCE))
        if options.target == "gpu":
            sidecar = model_file.with_name(model_file.name + ".json")
            if sidecar.is_file():
                shutil.copyfile(sidecar, version_dir / (MODEL_FILES["gpu"] + ".json"))
        if options.labels and has_labels(card):
            (root / LABELS_FILE).write_text("\n".join(card.label_names()) + "\n")
        (root / "card.json").write_text(json.dumps(card.to_dict(), indent=2) + "\n")
        (root / "config.pbtxt").write_text(config_to_text(cfg))
        final = repo_dir / name
        if final.exists():
            old = staging / f"{name}.old"
            final.rename(old)
        (staging / name).rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenModel(name, final, final / "config.pbtxt", final / str(options.version) / MODEL_FILES[options.target])


def write_config_only(repo_dir: str | Path, name: str, cfg) -> Path:
    """Write a config.pbtxt for a model folder that needs no model file (ensembles)."""
    root = Path(repo_dir) / name
    (root / "1").mkdir(parents=True, exist_ok=True)
    path = root / "config.pbtxt"
    tmp = path.with_suffix(".pbtxt.tmp")
    tmp.write_text(config_to_text(cfg))
    tmp.replace(path)
    return path
