"""The gpu target's server-side preprocessing: an NVIDIA DALI pipeline generated from the card.

:func:`write_dali_model` writes ``<repo>/<name>_dali/1/model.dali`` (the serialised pipeline)
and a ``backend: "dali"`` config: encoded image bytes in (``image_bytes``, UINT8 ``[-1]`` per
sample, the DALI backend's input for files), the card's model input and ``geometry`` (FP64
[6]) out, decoded on the GPU by ``fn.decoders.image(device="mixed")`` (nvJPEG; hardware JPEG
decoder where the GPU has one). :func:`write_dali_chain` chains it before the model in a
``<name>_bytes`` ensemble, as the python preprocess model is chained on the cpu target
(:mod:`tritonkit.model_repository.ensemble`).

The pipeline follows the card as closely as DALI allows, and is NOT bit-identical to the
client's preprocessing (:mod:`tritonkit.client.preprocess_math`):

* ``resize_crop``: ``fn.resize(resize_shorter=resize, antialias=True)`` then
  ``fn.crop_mirror_normalize`` with a centred ``size`` crop. DALI resamples in float and rounds
  once, PIL rounds to uint8 after each pass: pixels differ by at most one grey level on the CPU
  variant (measured in tests/test_dali_pipeline.py); DALI also rounds the longer resized side and
  the crop offset instead of truncating / rounding half to even, so odd geometries can shift by
  one pixel.
* ``resize``: both sides to ``size``, antialiased, then normalised.
* ``letterbox``: ``fn.resize(mode="not_larger")`` (longer side to ``size``, without antialias as
  ``cv2.INTER_LINEAR``), then padding to ``size`` x ``size`` with ``pad_value``, centred; DALI
  rounds the resized sides where ultralytics' ``val`` rule takes the ceiling.
* decoding: nvJPEG's IDCT differs from libjpeg-turbo's (Pillow) by a grey level or two.

The geometry output is computed in the pipeline from the decoded and resized shapes. Serialising
needs no GPU (the backend sets the device when it loads the model), so the pipeline is generated
and checked here; running the ``mixed`` decoder needs an NVIDIA GPU and was not done here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard, Preprocess
from tritonkit.client.preprocess_math import ENCODED_INPUT, FIXED_SIZE_MODES as MODES, GEOMETRY_OUTPUT
from tritonkit.io import atomic_write_bytes
from tritonkit.model_repository.config import ConfigError, data_type, pb_module
from tritonkit.model_repository.ensemble import (
    ChainTensor, PostprocessChain, PreprocessChain, PreprocessNames, preprocess_ensemble_config, preprocess_names,
    served_max_batch)
from tritonkit.model_repository.writer import write_config_only
from tritonkit.names import safe_child
from tritonkit.spec import GEOMETRY_FIELDS

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

dali = lazy_import("nvidia.dali", "nvidia-dali-cuda120 (pip install tritonkit[dali])")
fn = lazy_import("nvidia.dali.fn", "nvidia-dali-cuda120 (pip install tritonkit[dali])")
types = lazy_import("nvidia.dali.types", "nvidia-dali-cuda120 (pip install tritonkit[dali])")

DALI_SUFFIX = "_dali"
DALI_FILE = "model.dali"
DEVICES = ("gpu", "cpu")
# the DALI model in a bytes-in ensemble (written by write_dali_chain, not by the python writer)
DALI_CHAIN = PreprocessChain(backend_source="", support_files=(), suffix=DALI_SUFFIX,
                             encoded=ChainTensor(name=ENCODED_INPUT, dims=(-1,), dtype="UINT8"))


@dataclass(frozen=True, kw_only=True)
class DaliOptions:
    """``device``: ``gpu`` (the served pipeline: ``mixed`` decoder, GPU ops) or ``cpu`` (the same
    graph on the CPU, to check it without a GPU); ``max_batch_size``: the pipeline's batch;
    ``num_threads``: DALI's CPU threads (decoder host side)."""

    max_batch_size: int
    device: str = "gpu"
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device {self.device!r} not one of {DEVICES}")
        if self.max_batch_size < 1 or self.num_threads < 1:
            raise ConfigError("max_batch_size and num_threads must be >= 1")


@dataclass(frozen=True)
class WrittenDali:
    name: str
    path: Path
    config_path: Path


def _normalize(images: Any, pp: Preprocess, dtype: str, crop: int | None,
               pos: tuple[Any, Any] | None = None) -> Any:
    """``(pixel * scale - mean) / std`` in the card's layout, optionally a ``crop`` x ``crop``
    window (centred, or at ``pos``: ``(crop_pos_x, crop_pos_y)``, padded with ``pad_value``)."""
    mean = [m / pp.scale for m in pp.mean]
    std = [s / pp.scale for s in pp.std]
    kwargs: dict[str, Any] = {"crop": (crop, crop), "crop_pos_x": 0.5, "crop_pos_y": 0.5} if crop else {}
    if pos is not None:
        kwargs.update(crop_pos_x=pos[0], crop_pos_y=pos[1], out_of_bounds_policy="pad",
                      fill_values=[(pp.pad_value - m) / s for m, s in zip(mean, std)])
    return fn.crop_mirror_normalize(images, mean=mean, std=std,
                                    dtype=types.FLOAT16 if dtype == "FP16" else types.FLOAT,
                                    output_layout="CHW" if pp.layout == "NCHW" else "HWC", **kwargs)


def _letterbox_pads(resized: Any, size: int) -> tuple[Any, Any, Any, Any]:
    """ultralytics' top/left padding (``round(d - 0.1)`` of ``d = (size - side) / 2``: the floor,
    as ``d`` is a whole or half number) and the crop positions that put the image there.
    ``crop_mirror_normalize`` starts the window at ``crop_pos * (side - size)``; the 0.25 keeps that
    product on the right integer whether DALI rounds it or floors it."""
    new = fn.cast(resized.shape(), dtype=types.FLOAT)
    left = dali.math.floor((size - new[1]) * 0.5)
    top = dali.math.floor((size - new[0]) * 0.5)
    pos_x = dali.math.clamp((left - 0.25) / dali.math.max(size - new[1], 1.0), 0.0, 1.0)
    pos_y = dali.math.clamp((top - 0.25) / dali.math.max(size - new[0], 1.0), 0.0, 1.0)
    return left, top, pos_x, pos_y


def _geometry(decoded: Any, resized: Any, pad_x: Any, pad_y: Any) -> Any:
    """FP64 [6] ``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y`` from the shapes (HWC)."""
    orig = fn.cast(decoded.shape(), dtype=types.FLOAT)
    new = fn.cast(resized.shape(), dtype=types.FLOAT)
    return fn.cast(fn.stack(orig[0], orig[1], new[1] / orig[1], new[0] / orig[0], pad_x, pad_y), dtype=types.FLOAT64)


def _graph(card: ModelCard, device: str) -> tuple[Any, Any]:
    """The pipeline's body: encoded bytes -> (model input, geometry)."""
    pp = card.preprocess
    interp = types.INTERP_LINEAR if pp.interpolation == "bilinear" else types.INTERP_CUBIC
    encoded = fn.external_source(name=ENCODED_INPUT, dtype=types.UINT8, device="cpu")
    decoded = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
    if pp.mode == "resize_crop":
        resized = fn.resize(decoded, resize_shorter=pp.resize_to, interp_type=interp, antialias=True)
        new = fn.cast(resized.shape(), dtype=types.FLOAT)  # the crop starts at (side - size) / 2
        geometry = _geometry(decoded, resized, (pp.size - new[1]) * 0.5, (pp.size - new[0]) * 0.5)
        return _normalize(resized, pp, card.input.dtype, pp.size), geometry
    if pp.mode == "resize":
        resized = fn.resize(decoded, resize_x=pp.size, resize_y=pp.size, interp_type=interp, antialias=True)
        return _normalize(resized, pp, card.input.dtype, None), _geometry(decoded, resized, 0.0, 0.0)
    resized = fn.resize(decoded, size=(pp.size, pp.size), mode="not_larger", interp_type=interp, antialias=False)
    left, top, pos_x, pos_y = _letterbox_pads(resized, pp.size)
    return _normalize(resized, pp, card.input.dtype, pp.size, (pos_x, pos_y)), _geometry(decoded, resized, left, top)


def dali_pipeline(card: ModelCard, options: DaliOptions) -> Any:
    """The DALI pipeline of ``card``'s preprocessing (not built). ``device_id`` is left unset:
    the Triton DALI backend places the pipeline on its instance's GPU when it loads it."""
    if card.preprocess.mode not in MODES:
        raise ConfigError(f"card {card.name!r}: preprocess mode {card.preprocess.mode!r} has no DALI pipeline "
                          f"(supported: {', '.join(MODES)})")
    pipe = dali.Pipeline(batch_size=options.max_batch_size, num_threads=options.num_threads, device_id=None,
                         prefetch_queue_depth=1)
    with pipe:
        pipe.set_outputs(*_graph(card, options.device))
    return pipe


def dali_model_config(card: ModelCard, name: str, max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """``backend: "dali"``: image_bytes (UINT8 [-1]) -> the card's input + geometry, on the GPU."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=name, backend="dali", max_batch_size=max_batch_size)
    cfg.input.append(pb.ModelInput(name=ENCODED_INPUT, data_type=data_type("UINT8"), dims=[-1]))
    cfg.output.append(pb.ModelOutput(name=card.input.name, data_type=data_type(card.input.dtype),
                                     dims=list(card.input.dims)))
    cfg.output.append(pb.ModelOutput(name=GEOMETRY_OUTPUT, data_type=data_type("FP64"), dims=[len(GEOMETRY_FIELDS)]))
    cfg.instance_group.append(pb.ModelInstanceGroup(count=1, kind=pb.ModelInstanceGroup.KIND_GPU))
    cfg.dynamic_batching.max_queue_delay_microseconds = 0
    return cfg


def write_dali_model(card: ModelCard, repo_dir: str | Path, model: str, max_batch_size: int) -> WrittenDali:
    """Write ``<model>_dali`` (the serialised GPU pipeline and its config) into ``repo_dir``."""
    name = model + DALI_SUFFIX
    root = safe_child(repo_dir, name, "model name")
    serialized = dali_pipeline(card, DaliOptions(max_batch_size=max_batch_size)).serialize()
    (root / "1").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "1" / DALI_FILE, serialized)
    config_path = write_config_only(repo_dir, name, dali_model_config(card, name, max_batch_size))
    return WrittenDali(name, root, config_path)


def write_dali_chain(card: ModelCard, repo_dir: str | Path, model: str, *, post: PostprocessChain | None = None,
                     max_batch_size: int | None = None) -> PreprocessNames:
    """The gpu target's bytes-in ensemble: ``<model>_dali`` (:func:`write_dali_model`) and
    ``<model>_bytes`` (or ``<post ensemble>_bytes``) before ``model``, already in ``repo_dir``.
    Clients send each file as UINT8 ``[-1]`` (zero-padded to the longest in a batch)."""
    names = preprocess_names(card, repo_dir, model, post, DALI_CHAIN)
    mbs = served_max_batch(repo_dir, model) if max_batch_size is None else max_batch_size
    write_dali_model(card, repo_dir, model, mbs)
    write_config_only(repo_dir, names.ensemble, preprocess_ensemble_config(card, names, post, mbs, DALI_CHAIN.encoded))
    return names
