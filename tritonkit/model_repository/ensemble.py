"""Server-side chains in a model repository: a python model before or after a served model, as an ensemble.

A postprocess chain is described by a :class:`~tritonkit.served.PostprocessChain` (backend
source, the files it ships beside it, parameters, extra ensemble inputs, output specs) that the
model's task declares (:meth:`tritonkit.tasks.base.Task.server_chains`: detection NMS per
profile, segmentation argmax); :func:`write_postprocess_chain` writes the postprocess model and
the ensemble, never the served model itself (write that first with
:func:`tritonkit.model_repository.writer.write_model`)::

    <det>                 the detector (any target: python/onnxruntime, ORT backend, TensorRT)
    <det>_nms_<profile>   python backend (the detect task's backend.py + tk_detect.py + tk_spec.py):
                          raw outputs + geometry -> detections
    <det>_ensemble_<profile>
                          platform "ensemble": images, geometry -> det_boxes, det_scores,
                          det_classes, det_count

A preprocess chain (:class:`PreprocessChain`, :func:`write_preprocess_chain`) is the same
idea before the model: encoded image bytes in, the server decodes and preprocesses::

    <model>_preprocess    python backend (backends/preprocess_image.py + tk_preprocess.py + tk_spec.py):
                          image_bytes (BYTES [1]) -> the model input + geometry (FP64 [6])
    <model>_bytes         platform "ensemble": image_bytes -> preprocess -> model -> the model's
                          outputs + geometry
    <model>_ensemble_<variant>_bytes
                          in front of a postprocess chain's ensemble: image_bytes -> preprocess
                          -> model -> postprocess (the server's geometry) -> its outputs

(the bytes-in version of any served model or ensemble ``X`` is ``X_bytes``).

All configs are ``model_config_pb2.ModelConfig`` messages (never text templates). Every chain
model carries the served model's card in its ``tritonkit_card`` parameter, which its backend
reads (:class:`tritonkit.spec.ServedSpec`); the chain's own settings (an NMS profile's
thresholds) are further ``parameters``. The ``geometry`` input (FP64 [6]) of a postprocess chain
is optional: with it the server maps results to original-image pixels, without it they stay in
model-input pixels (a client that keeps the letterbox geometry maps them back itself, and tools
that only know the image input, such as perf_analyzer, can call the ensemble). It is FP64 so the
server maps boxes back with exactly the numbers the client would use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tritonkit.cards import ModelCard
from tritonkit.client import preprocess_math
from tritonkit.client.preprocess_math import ENCODED_INPUT, GEOMETRY_OUTPUT
from tritonkit.io import atomic_write_bytes, atomic_write_text
from tritonkit.model_repository.config import ConfigError, card_parameter, data_type, parse_config, pb_module
from tritonkit.model_repository.writer import backend_source, write_config_only
from tritonkit.served import (
    ChainNames, ChainTensor, PostprocessChain, SupportFile, bytes_ensemble_name, shipped)
from tritonkit.spec import CARD_PARAMETER, GEOMETRY_FIELDS, GEOMETRY_TENSOR

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

PREPROCESS_BACKEND_SOURCE = "preprocess_image.py"
PREPROCESS_MATH_FILE = "tk_preprocess.py"  # preprocess_math.py as the preprocess model's model.py imports it


def _chain_input(t: ChainTensor):
    return pb_module().ModelInput(name=t.name, data_type=data_type(t.dtype), dims=list(t.dims), optional=t.optional)


def _chain_output(t: ChainTensor):
    return pb_module().ModelOutput(name=t.name, data_type=data_type(t.dtype), dims=list(t.dims))


def _python_model(cfg, card: ModelCard, parameters: tuple[tuple[str, str], ...], instances: int):
    """A chain's python model: its parameters and the card it serves (the one copy in its folder),
    ``instances`` CPU instances, dynamic batching without delay (several queued requests reach one
    execute() call: one round trip to the python stub)."""
    pb = pb_module()
    for key, value in parameters:
        cfg.parameters[key].string_value = value
    cfg.parameters[CARD_PARAMETER].string_value = card_parameter(card)
    cfg.instance_group.append(pb.ModelInstanceGroup(count=instances, kind=pb.ModelInstanceGroup.KIND_CPU))
    cfg.dynamic_batching.max_queue_delay_microseconds = 0
    return cfg


def postprocess_model_config(card: ModelCard, name: str, chain: PostprocessChain,
                             max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """The python-backend postprocess model: the card's outputs + extra inputs in, chain outputs out."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for spec in card.outputs:
        cfg.input.append(pb.ModelInput(name=spec.name, data_type=data_type(spec.dtype), dims=list(spec.dims)))
    cfg.input.extend(_chain_input(t) for t in chain.extra_inputs)
    cfg.output.extend(_chain_output(t) for t in chain.outputs)
    return _python_model(cfg, card, chain.parameters, chain.instances)


def chain_ensemble_config(card: ModelCard, names: ChainNames, chain: PostprocessChain,
                          max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """``platform: "ensemble"``: the card's input + extra inputs -> model -> postprocess -> outputs."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=names.ensemble, platform="ensemble", max_batch_size=max_batch_size)
    fmt = pb.ModelInput.FORMAT_NCHW if card.preprocess.layout == "NCHW" else pb.ModelInput.FORMAT_NHWC
    cfg.input.append(pb.ModelInput(name=card.input.name, data_type=data_type(card.input.dtype), format=fmt,
                                   dims=list(card.input.dims)))
    cfg.input.extend(_chain_input(t) for t in chain.extra_inputs)
    cfg.output.extend(_chain_output(t) for t in chain.outputs)
    raw = {spec.name: f"raw_{spec.name}" for spec in card.outputs}
    steps = cfg.ensemble_scheduling.step
    steps.append(pb.ModelEnsembling.Step(
        model_name=names.model, model_version=-1, input_map={card.input.name: card.input.name}, output_map=raw))
    steps.append(pb.ModelEnsembling.Step(
        model_name=names.postprocess, model_version=-1,
        input_map={**raw, **{t.name: t.name for t in chain.extra_inputs}},
        output_map={t.name: t.name for t in chain.outputs}))
    return cfg


def served_max_batch(repo_dir: str | Path, model: str) -> int:
    """``max_batch_size`` of a model already written to ``repo_dir`` (its config.pbtxt)."""
    path = Path(repo_dir) / model / "config.pbtxt"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; write the model {model!r} before its postprocess chain")
    return parse_config(path.read_text(), source=str(path)).max_batch_size


def _write_python_files(version_dir: Path, source, support_files: tuple[SupportFile, ...]) -> None:
    """A python-backend model's ``model.py`` and the files shipped beside it."""
    version_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(version_dir / "model.py", backend_source(source))
    for extra in support_files:
        atomic_write_bytes(version_dir / extra.name, Path(extra.source).read_bytes())


def write_postprocess_chain(card: ModelCard, repo_dir: str | Path, model: str, chain: PostprocessChain,
                            max_batch_size: int | None = None) -> ChainNames:
    """Write the postprocess model and the ensemble after ``model`` (which must be in ``repo_dir``).

    The served model itself is not touched. ``max_batch_size`` None -> the served model's.
    Each folder's config.pbtxt is written last, atomically.
    """
    mbs = served_max_batch(repo_dir, model) if max_batch_size is None else max_batch_size
    names = chain.names(model)
    _write_python_files(Path(repo_dir) / names.postprocess / "1", chain.backend_source, chain.support_files)
    write_config_only(repo_dir, names.postprocess, postprocess_model_config(card, names.postprocess, chain, mbs))
    write_config_only(repo_dir, names.ensemble, chain_ensemble_config(card, names, chain, mbs))
    return names


# -- preprocess chains: encoded image bytes in ------------------------------------------------

@dataclass(frozen=True)
class PreprocessNames:
    """Model names of one preprocess chain: the served model, the preprocess model, the ensemble
    and, when the ensemble ends in a postprocess chain, that chain's postprocess model."""

    model: str
    preprocess: str
    ensemble: str
    postprocess: str | None = None


ENCODED = ChainTensor(name=ENCODED_INPUT, dims=(1,), dtype="STRING")  # BYTES, one file per sample
GEOMETRY = ChainTensor(name=GEOMETRY_OUTPUT, dims=(len(GEOMETRY_FIELDS),), dtype="FP64")


@dataclass(frozen=True, kw_only=True)
class PreprocessChain:
    """A python-backend preprocess before a served model: ``image_bytes`` (BYTES [1], one encoded
    image per sample) -> the card's input and ``geometry``. The backend runs
    :mod:`tritonkit.client.preprocess_math`, copied beside it. ``parameters``: the preprocess
    model's config parameters (``max_pixels``). ``suffix`` names the preprocess model
    (``<model><suffix>``) and ``encoded`` is its input (the gpu target's DALI model,
    :mod:`tritonkit.model_repository.dali`, takes UINT8 ``[-1]``)."""

    backend_source: str = PREPROCESS_BACKEND_SOURCE
    support_files: tuple[SupportFile, ...] = shipped((PREPROCESS_MATH_FILE, preprocess_math))
    parameters: tuple[tuple[str, str], ...] = ()
    instances: int = 1
    suffix: str = "_preprocess"
    encoded: ChainTensor = ENCODED

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ConfigError(f"instances must be >= 1 (got {self.instances})")

    def names(self, model: str, post: PostprocessChain | None = None) -> PreprocessNames:
        if post is None:
            return PreprocessNames(model, model + self.suffix, bytes_ensemble_name(model))
        chained = post.names(model)
        return PreprocessNames(model, model + self.suffix, bytes_ensemble_name(chained.ensemble), chained.postprocess)



def _check_preprocessable(card: ModelCard) -> None:
    if card.preprocess.mode not in preprocess_math.MODES:
        raise ConfigError(f"card {card.name!r}: preprocess mode {card.preprocess.mode!r}: server-side "
                          f"preprocessing supports {', '.join(preprocess_math.MODES)}")


def preprocess_model_config(card: ModelCard, name: str, chain: PreprocessChain,
                            max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """The python-backend preprocess model: encoded bytes in, the card's input + geometry out."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    cfg.input.append(_chain_input(ENCODED))
    cfg.output.append(pb.ModelOutput(name=card.input.name, data_type=data_type(card.input.dtype),
                                     dims=list(card.input.dims)))
    cfg.output.append(_chain_output(GEOMETRY))
    return _python_model(cfg, card, chain.parameters, chain.instances)


def preprocess_ensemble_config(card: ModelCard, names: PreprocessNames, post: PostprocessChain | None,
                               max_batch_size: int, encoded: ChainTensor = ENCODED) -> "model_config_pb2.ModelConfig":
    """``platform: "ensemble"``: image_bytes -> preprocess -> model [-> postprocess]. Without a
    postprocess the outputs are the card's and ``geometry``; with one, the chain's outputs (its
    ``geometry`` input, if it has one, fed from the preprocess model; if it has none, as with
    segmentation argmax, ``geometry`` is an output too, so the client maps results back)."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=names.ensemble, platform="ensemble", max_batch_size=max_batch_size)
    cfg.input.append(_chain_input(encoded))
    pre_out = {card.input.name: "preprocessed", GEOMETRY_OUTPUT: GEOMETRY_OUTPUT}
    steps = cfg.ensemble_scheduling.step
    steps.append(pb.ModelEnsembling.Step(model_name=names.preprocess, model_version=-1,
                                         input_map={ENCODED_INPUT: ENCODED_INPUT}, output_map=pre_out))
    if post is None:
        cfg.output.extend(pb.ModelOutput(name=s.name, data_type=data_type(s.dtype), dims=list(s.dims))
                          for s in card.outputs)
        cfg.output.append(_chain_output(GEOMETRY))
        steps.append(pb.ModelEnsembling.Step(model_name=names.model, model_version=-1,
                                             input_map={card.input.name: "preprocessed"},
                                             output_map={s.name: s.name for s in card.outputs}))
        return cfg
    extra = {t.name for t in post.extra_inputs}
    if extra - {GEOMETRY_TENSOR}:
        raise ConfigError(f"postprocess chain {post.kind!r}: inputs {sorted(extra - {GEOMETRY_TENSOR})} cannot be "
                          f"fed by the preprocess model (only {GEOMETRY_TENSOR!r})")
    raw = {s.name: f"raw_{s.name}" for s in card.outputs}
    cfg.output.extend(_chain_output(t) for t in post.outputs)
    if GEOMETRY_TENSOR not in extra:
        cfg.output.append(_chain_output(GEOMETRY))
    steps.append(pb.ModelEnsembling.Step(model_name=names.model, model_version=-1,
                                         input_map={card.input.name: "preprocessed"}, output_map=raw))
    steps.append(pb.ModelEnsembling.Step(
        model_name=names.postprocess, model_version=-1,
        input_map={**raw, **({GEOMETRY_TENSOR: GEOMETRY_OUTPUT} if GEOMETRY_TENSOR in extra else {})},
        output_map={t.name: t.name for t in post.outputs}))
    return cfg


def preprocess_names(card: ModelCard, repo_dir: str | Path, model: str, post: PostprocessChain | None,
                     chain: PreprocessChain) -> PreprocessNames:
    """The chain's names, after checking the card has a fixed input size and ``post`` is written."""
    _check_preprocessable(card)
    names = chain.names(model, post)
    if names.postprocess is not None and not (Path(repo_dir) / names.postprocess / "config.pbtxt").is_file():
        raise ConfigError(f"{Path(repo_dir) / names.postprocess}: not found; write the postprocess chain first")
    return names


def write_preprocess_chain(card: ModelCard, repo_dir: str | Path, model: str, *,
                           post: PostprocessChain | None = None, chain: PreprocessChain = PreprocessChain(),
                           max_batch_size: int | None = None) -> PreprocessNames:
    """Write ``<model>_preprocess`` and the bytes-in ensemble before ``model`` (already in
    ``repo_dir``, not rewritten). ``post``: a postprocess chain already written after ``model``
    (:func:`write_postprocess_chain`, e.g. :func:`nms_chain`) that the ensemble ends in.
    ``max_batch_size`` None -> the served model's. Each config.pbtxt is written last, atomically."""
    names = preprocess_names(card, repo_dir, model, post, chain)
    mbs = served_max_batch(repo_dir, model) if max_batch_size is None else max_batch_size
    _write_python_files(Path(repo_dir) / names.preprocess / "1", chain.backend_source, chain.support_files)
    write_config_only(repo_dir, names.preprocess, preprocess_model_config(card, names.preprocess, chain, mbs))
    write_config_only(repo_dir, names.ensemble, preprocess_ensemble_config(card, names, post, mbs, chain.encoded))
    return names


__all__ = ["ENCODED", "GEOMETRY", "PREPROCESS_BACKEND_SOURCE", "PREPROCESS_MATH_FILE", "ChainNames", "ChainTensor",
           "PostprocessChain", "PreprocessChain", "PreprocessNames", "SupportFile", "bytes_ensemble_name",
           "chain_ensemble_config", "postprocess_model_config", "preprocess_ensemble_config",
           "preprocess_model_config", "preprocess_names", "served_max_batch", "write_postprocess_chain",
           "write_preprocess_chain"]
