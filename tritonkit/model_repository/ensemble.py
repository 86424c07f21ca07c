"""Server-side postprocess chains: a python postprocess model after a served model, as an ensemble.

A chain is described by a :class:`PostprocessChain` (backend source, the files it needs beside
it, parameters, extra ensemble inputs, output specs); :func:`write_postprocess_chain` writes the
postprocess model and the ensemble, never the served model itself (write that first with
:func:`tritonkit.model_repository.writer.write_model`). Detection NMS is the first chain::

    <det>                 the detector (any target: python/onnxruntime, ORT backend, TensorRT)
    <det>_nms_<profile>   python backend (backends/yolo_nms.py + tk_nms.py): raw outputs + geometry -> detections
    <det>_ensemble_<profile>
                          platform "ensemble": images, geometry -> det_boxes, det_scores,
                          det_classes, det_count

A preprocess chain (:class:`PreprocessChain`, :func:`write_preprocess_chain`) is the same
idea before the model: encoded image bytes in, the server decodes and preprocesses::

    <model>_preprocess    python backend (backends/preprocess_image.py + tk_preprocess.py):
                          image_bytes (BYTES [1]) -> the model input + geometry (FP64 [6])
    <model>_bytes         platform "ensemble": image_bytes -> preprocess -> model -> the model's
                          outputs + geometry
    <det>_ensemble_<profile>_bytes
                          in front of a postprocess chain's ensemble (detection NMS): image_bytes
                          -> preprocess -> detector -> NMS (the server's geometry) -> detections

(the bytes-in version of any served model or ensemble ``X`` is ``X_bytes``).

All configs are ``model_config_pb2.ModelConfig`` messages (never text templates). The NMS
thresholds of the profile are the NMS model's ``parameters``. The ``geometry`` input (FP64
[6]) is optional: with it the server returns boxes in original-image pixels, without it in
model-input pixels (a client that keeps the letterbox geometry maps them back itself, and
tools that only know the image input, such as perf_analyzer, can call the ensemble). It is
FP64 so the server maps boxes back with exactly the numbers the client would use (FP32 would
round a letterbox scale like 0.64 and move boxes by ~1e-5 px).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tritonkit.cards import ModelCard, NMSProfile, TensorSpec
from tritonkit.client import nms_math, preprocess_math
from tritonkit.client.nms_math import (  # noqa: F401  (re-exported: the served tensor names)
    CARD_FILE, DETECTION_OUTPUTS, GEOMETRY_FIELDS, GEOMETRY_INPUT, OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES)
from tritonkit.client.preprocess_math import ENCODED_INPUT, GEOMETRY_OUTPUT
from tritonkit.io import atomic_write_bytes, atomic_write_text
from tritonkit.model_repository.config import (
    ConfigError, RepoOptions, data_type, effective_max_batch, parse_config, pb_module)
from tritonkit.model_repository.writer import backend_source, write_card, write_config_only, write_model
from tritonkit.tasks.detection import EnsembleNames, served_ensemble_card  # noqa: F401  (re-exported)
from tritonkit.tasks.segmentation import MASK_OUTPUT, ArgmaxNames

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

NMS_BACKEND_SOURCE = "yolo_nms.py"
ARGMAX_BACKEND_SOURCE = "argmax_mask.py"
NMS_MATH_FILE = "tk_nms.py"  # nms_math.py as the NMS model's model.py imports it
PREPROCESS_BACKEND_SOURCE = "preprocess_image.py"
PREPROCESS_MATH_FILE = "tk_preprocess.py"  # preprocess_math.py as the preprocess model's model.py imports it


# -- the generic chain --------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ChainTensor:
    """An input or output of a postprocess model (``dtype`` a Triton name such as FP64)."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "FP32"
    optional: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.dims:
            raise ConfigError(f"chain tensor {self.name!r}: name and dims are required")


@dataclass(frozen=True, kw_only=True)
class SupportFile:
    """A file copied into the postprocess model's version folder (``name``) from ``source``."""

    name: str
    source: Path


@dataclass(frozen=True)
class ChainNames:
    """Model names of one postprocess chain."""

    model: str
    postprocess: str
    ensemble: str


@dataclass(frozen=True, kw_only=True)
class PostprocessChain:
    """A python-backend postprocess after a served model, and the ensemble joining them.

    The postprocess model takes every card output (by the card's names) plus ``extra_inputs``
    (also ensemble inputs, passed straight through) and returns ``outputs``. Names:
    ``<model>_<kind>_<variant>`` and ``<model>_ensemble_<variant>`` (``variant`` empty:
    ``<model>_<kind>`` and ``<model>_ensemble_<kind>``).
    """

    kind: str
    variant: str = ""
    backend_source: str                      # file in model_repository/backends -> model.py
    support_files: tuple[SupportFile, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    extra_inputs: tuple[ChainTensor, ...] = ()
    outputs: tuple[ChainTensor, ...]
    instances: int = 1

    def __post_init__(self) -> None:
        if not self.kind or not self.outputs:
            raise ConfigError("a postprocess chain needs a kind and at least one output")
        if self.instances < 1:
            raise ConfigError(f"instances must be >= 1 (got {self.instances})")

    def names(self, model: str) -> ChainNames:
        if self.variant:
            return ChainNames(model, f"{model}_{self.kind}_{self.variant}", f"{model}_ensemble_{self.variant}")
        return ChainNames(model, f"{model}_{self.kind}", f"{model}_ensemble_{self.kind}")


def _chain_input(t: ChainTensor):
    return pb_module().ModelInput(name=t.name, data_type=data_type(t.dtype), dims=list(t.dims), optional=t.optional)


def _chain_output(t: ChainTensor):
    return pb_module().ModelOutput(name=t.name, data_type=data_type(t.dtype), dims=list(t.dims))


def postprocess_model_config(card: ModelCard, name: str, chain: PostprocessChain,
                             max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """The python-backend postprocess model: the card's outputs + extra inputs in, chain outputs out."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for spec in card.outputs:
        cfg.input.append(pb.ModelInput(name=spec.name, data_type=data_type(spec.dtype), dims=list(spec.dims)))
    cfg.input.extend(_chain_input(t) for t in chain.extra_inputs)
    cfg.output.extend(_chain_output(t) for t in chain.outputs)
    for key, value in chain.parameters:
        cfg.parameters[key].string_value = value
    cfg.instance_group.append(pb.ModelInstanceGroup(count=chain.instances, kind=pb.ModelInstanceGroup.KIND_CPU))
    # several queued requests reach one execute() call (one round trip to the python stub)
    cfg.dynamic_batching.max_queue_delay_microseconds = 0
    return cfg


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


def write_postprocess_chain(card: ModelCard, repo_dir: str | Path, model: str, chain: PostprocessChain,
                            max_batch_size: int | None = None) -> ChainNames:
    """Write the postprocess model and the ensemble after ``model`` (which must be in ``repo_dir``).

    The served model itself is not touched. ``max_batch_size`` None -> the served model's.
    Each folder's config.pbtxt is written last, atomically.
    """
    mbs = served_max_batch(repo_dir, model) if max_batch_size is None else max_batch_size
    names = chain.names(model)
    root = Path(repo_dir) / names.postprocess
    version_dir = root / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(version_dir / "model.py", backend_source(chain.backend_source))
    for extra in chain.support_files:
        atomic_write_bytes(version_dir / extra.name, Path(extra.source).read_bytes())
    write_card(root, card)
    write_config_only(repo_dir, names.postprocess, postprocess_model_config(card, names.postprocess, chain, mbs))
    write_config_only(repo_dir, names.ensemble, chain_ensemble_config(card, names, chain, mbs))
    return names


# -- detection NMS, the first chain ---------------------------------------------------------

def _check_detector(card: ModelCard) -> None:
    if card.postprocess.kind not in ("yolo", "ssd"):  # the card's task follows from its postprocess
        raise ConfigError(f"card {card.name!r} is not a YOLO/SSD detector (task {card.task!r}, "
                          f"postprocess {card.postprocess.kind!r}); server-side NMS needs one")


def _nms_parameters(profile: NMSProfile) -> tuple[tuple[str, str], ...]:
    return (("profile", profile.name), ("conf_threshold", repr(profile.conf_threshold)),
            ("iou_threshold", repr(profile.iou_threshold)), ("max_detections", str(profile.max_detections)),
            ("class_agnostic", "true" if profile.class_agnostic else "false"),
            ("multi_label", "true" if profile.multi_label else "false"))


def nms_chain(card: ModelCard, profile: NMSProfile, instances: int = 1) -> PostprocessChain:
    """The NMS postprocess chain of a YOLO/SSD card for one profile."""
    _check_detector(card)
    m = profile.max_detections
    return PostprocessChain(
        kind="nms", variant=profile.name, backend_source=NMS_BACKEND_SOURCE,
        support_files=(SupportFile(name=NMS_MATH_FILE, source=Path(nms_math.__file__)),),
        parameters=_nms_parameters(profile),
        extra_inputs=(ChainTensor(name=GEOMETRY_INPUT, dims=(len(GEOMETRY_FIELDS),), dtype="FP64", optional=True),),
        outputs=(ChainTensor(name=OUT_BOXES, dims=(m, 4)), ChainTensor(name=OUT_SCORES, dims=(m,)),
                 ChainTensor(name=OUT_CLASSES, dims=(m,), dtype="INT32"),
                 ChainTensor(name=OUT_COUNT, dims=(1,), dtype="INT32")),
        instances=instances)


def nms_model_config(card: ModelCard, name: str, profile: NMSProfile, max_batch_size: int,
                     instances: int = 1) -> "model_config_pb2.ModelConfig":
    """The python-backend NMS model: the card's raw outputs + geometry in, padded detections out."""
    return postprocess_model_config(card, name, nms_chain(card, profile, instances), max_batch_size)


def ensemble_config(card: ModelCard, names: EnsembleNames, profile: NMSProfile,
                    max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """``platform: "ensemble"``: images + geometry -> detector -> NMS model -> detections."""
    return chain_ensemble_config(card, ChainNames(names.detector, names.nms, names.ensemble), nms_chain(card, profile), max_batch_size)


def write_nms_chain(card: ModelCard, repo_dir: str | Path, detector_name: str, profile: str | NMSProfile,
                    max_batch_size: int | None = None, instances: int = 1) -> EnsembleNames:
    """Write ``<det>_nms_<profile>`` and ``<det>_ensemble_<profile>`` after the detector already in
    ``repo_dir`` (which is not rewritten). ``profile``: a card profile name or an NMSProfile;
    ``max_batch_size`` None -> the served detector's."""
    prof = card.nms(profile) if isinstance(profile, str) else profile
    names = write_postprocess_chain(card, repo_dir, detector_name, nms_chain(card, prof, instances), max_batch_size)
    return EnsembleNames(names.model, names.postprocess, names.ensemble)


# -- segmentation argmax, the second chain ---------------------------------------------------

def argmax_chain(card: ModelCard, instances: int = 1) -> PostprocessChain:
    """The argmax postprocess chain of a segmenter: its logits ``[C, H, W]`` in, the uint8
    ``mask`` ``[H, W]`` out (backends/argmax_mask.py, self-contained)."""
    if card.postprocess.kind != "argmax_mask":  # the card's task follows from its postprocess
        raise ConfigError(f"card {card.name!r} is not a segmenter (task {card.task!r}, postprocess "
                          f"{card.postprocess.kind!r}); server-side argmax needs one")
    logits = card.outputs[0]
    return PostprocessChain(
        kind="argmax", backend_source=ARGMAX_BACKEND_SOURCE,
        parameters=(("input_name", logits.name), ("output_name", MASK_OUTPUT), ("class_axis", "1")),
        outputs=(ChainTensor(name=MASK_OUTPUT, dims=(-1, -1), dtype="UINT8"),), instances=instances)


def write_argmax_chain(card: ModelCard, repo_dir: str | Path, segmenter_name: str,
                       max_batch_size: int | None = None, instances: int = 1) -> ArgmaxNames:
    """Write ``<seg>_argmax`` and ``<seg>_ensemble_argmax`` after the segmenter already in
    ``repo_dir`` (not rewritten); ``max_batch_size`` None -> the served segmenter's."""
    names = write_postprocess_chain(card, repo_dir, segmenter_name, argmax_chain(card, instances), max_batch_size)
    return ArgmaxNames(names.model, names.postprocess, names.ensemble)


def write_detection_ensemble(card: ModelCard, model_file: str | Path, repo_dir: str | Path,
                             profile: str | NMSProfile, options: RepoOptions | None = None,
                             nms_instances: int = 1) -> EnsembleNames:
    """The detector (:func:`write_model`) then its NMS chain (:func:`write_nms_chain`), once each.

    For several profiles write the detector once and call :func:`write_nms_chain` per profile.
    """
    options = options or RepoOptions()
    _check_detector(card)
    prof = card.nms(profile) if isinstance(profile, str) else profile
    detector = write_model(card, model_file, repo_dir, options).name
    return write_nms_chain(card, repo_dir, detector, prof, effective_max_batch(card, options), nms_instances)


def ensemble_card(card: ModelCard, name: str, profile: NMSProfile) -> ModelCard:
    """The served contract of a detection ensemble as a card (same input, the detection outputs),
    so clients check and call it like any model."""
    _check_detector(card)
    return served_ensemble_card(card, name, profile)


# -- preprocess chains: encoded image bytes in ------------------------------------------------

@dataclass(frozen=True)
class PreprocessNames:
    """Model names of one preprocess chain: the served model, the preprocess model, the ensemble
    and, when the ensemble ends in a postprocess chain, that chain's postprocess model."""

    model: str
    preprocess: str
    ensemble: str
    postprocess: str | None = None


def bytes_ensemble_name(served: str) -> str:
    """The bytes-in ensemble in front of the model or ensemble ``served``: ``<served>_bytes``."""
    return f"{served}_bytes"


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
    support_files: tuple[SupportFile, ...] = (
        SupportFile(name=PREPROCESS_MATH_FILE, source=Path(preprocess_math.__file__)),)
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
        raise ConfigError(f"card {card.name!r}: preprocess mode {card.preprocess.mode!r} has a variable input "
                          f"size; server-side preprocessing supports {', '.join(preprocess_math.MODES)}")


def preprocess_model_config(card: ModelCard, name: str, chain: PreprocessChain,
                            max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """The python-backend preprocess model: encoded bytes in, the card's input + geometry out."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    cfg.input.append(_chain_input(ENCODED))
    cfg.output.append(pb.ModelOutput(name=card.input.name, data_type=data_type(card.input.dtype),
                                     dims=list(card.input.dims)))
    cfg.output.append(_chain_output(GEOMETRY))
    for key, value in chain.parameters:
        cfg.parameters[key].string_value = value
    cfg.instance_group.append(pb.ModelInstanceGroup(count=chain.instances, kind=pb.ModelInstanceGroup.KIND_CPU))
    cfg.dynamic_batching.max_queue_delay_microseconds = 0
    return cfg


def preprocess_ensemble_config(card: ModelCard, names: PreprocessNames, post: PostprocessChain | None,
                               max_batch_size: int, encoded: ChainTensor = ENCODED) -> "model_config_pb2.ModelConfig":
    """``platform: "ensemble"``: image_bytes -> preprocess -> model [-> postprocess]. Without a
    postprocess the outputs are the card's and ``geometry``; with one, the chain's outputs (its
    ``geometry`` input, if it has one, fed from the preprocess model)."""
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
    if extra - {GEOMETRY_INPUT}:
        raise ConfigError(f"postprocess chain {post.kind!r}: inputs {sorted(extra - {GEOMETRY_INPUT})} cannot be "
                          f"fed by the preprocess model (only {GEOMETRY_INPUT!r})")
    raw = {s.name: f"raw_{s.name}" for s in card.outputs}
    cfg.output.extend(_chain_output(t) for t in post.outputs)
    steps.append(pb.ModelEnsembling.Step(model_name=names.model, model_version=-1,
                                         input_map={card.input.name: "preprocessed"}, output_map=raw))
    steps.append(pb.ModelEnsembling.Step(
        model_name=names.postprocess, model_version=-1,
        input_map={**raw, **({GEOMETRY_INPUT: GEOMETRY_OUTPUT} if GEOMETRY_INPUT in extra else {})},
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
    version_dir = Path(repo_dir) / names.preprocess / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(version_dir / "model.py", backend_source(chain.backend_source))
    for extra in chain.support_files:
        atomic_write_bytes(version_dir / extra.name, Path(extra.source).read_bytes())
    write_card(version_dir.parent, card)
    write_config_only(repo_dir, names.preprocess, preprocess_model_config(card, names.preprocess, chain, mbs))
    write_config_only(repo_dir, names.ensemble, preprocess_ensemble_config(card, names, post, mbs, chain.encoded))
    return names
