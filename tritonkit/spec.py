"""The model spec that crosses the server boundary: one module, read by the client, the python
backends and the DALI generator alike.

A model card (:mod:`tritonkit.cards`) is built on the types here: the input/output tensors
(:class:`TensorSpec`), the preprocessing (:class:`Preprocess`), the spatial range of a
dynamic-size input (:class:`SpatialRange`), NMS profiles (:class:`NMSProfile`) and the
postprocess variants, which each task declares in its own numpy math module and registers here
with :func:`postprocess_variant`. :class:`Geometry` is the one map between original-image pixels
and model-input pixels.

This module imports only the standard library and numpy: the repository writer ships it beside
every python backend as ``tk_spec.py`` (NGC's tritonserver image has no tritonkit), where the
backend reads the served card from its config's ``tritonkit_card`` parameter with
:meth:`ServedSpec.from_dict`. The card's JSON form is the typed one (``"postprocess": {"kind":
...}``); card files of older forms are converted once, when :mod:`tritonkit.cards` loads them.
Errors are :class:`SpecError` (a ``ValueError``), one line naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

CARD_PARAMETER = "tritonkit_card"  # the config parameter that carries the card a model was made from
ENCODED_INPUT = "image_bytes"      # encoded image files in (BYTES [1], one per sample): server-side preprocessing
GEOMETRY_TENSOR = "geometry"       # FP64 [6] per sample (GEOMETRY_FIELDS): preprocess out, postprocess in
PREPROCESS_MODES = ("resize_crop", "letterbox", "resize", "resize_short")
INTERPOLATIONS = ("bilinear", "bicubic")
RESAMPLES = ("pil", "tensor")
LETTERBOX_RULES = ("val", "predict")
LAYOUTS = ("NCHW", "NHWC")
TRITON_DTYPES = ("FP32", "FP16", "INT8", "UINT8", "INT32", "INT64", "BOOL")
NUMPY_DTYPES = {"FP32": "float32", "FP16": "float16", "INT8": "int8", "UINT8": "uint8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GEOMETRY_FIELDS = ("orig_h", "orig_w", "scale_x", "scale_y", "pad_x", "pad_y")


class SpecError(ValueError):
    """A spec value that cannot be used (one line naming the field)."""


def field_names(cls: type) -> list[str]:
    """The JSON keys of a spec type: its dataclass fields."""
    return [f.name for f in fields(cls)]


def checked_keys(section: str, value: Any, cls: type, extra: tuple[str, ...] = ()) -> dict:
    """``value`` as a dict whose keys are all fields of ``cls`` (or ``extra``); one-line error otherwise."""
    if not isinstance(value, Mapping):
        raise SpecError(f"{section} must be an object (got {type(value).__name__})")
    valid = field_names(cls) + list(extra)
    unknown = [k for k in value if k not in valid]
    if unknown:
        raise SpecError(f"unknown field {unknown[0]!r} in {section} (valid keys: {', '.join(valid)})")
    return dict(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ tensors
@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``dims`` are per sample: the batch axis is not included."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "FP32"

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("tensor name must not be empty")
        if self.dtype not in TRITON_DTYPES:
            raise SpecError(f"tensor {self.name!r}: dtype {self.dtype!r} not one of {TRITON_DTYPES}")
        if not self.dims or any((d < 1 and d != -1) for d in self.dims):
            raise SpecError(f"tensor {self.name!r}: dims {self.dims} must be positive (or -1)")

    @property
    def numpy_dtype(self) -> str:
        return NUMPY_DTYPES[self.dtype]

    @classmethod
    def from_dict(cls, value: Any, section: str = "tensor") -> "TensorSpec":
        d = checked_keys(section, value, cls)
        return cls(str(d["name"]), tuple(int(v) for v in d["dims"]), str(d.get("dtype", "FP32")))


# ------------------------------------------------------------------------------ preprocessing
@dataclass(frozen=True)
class Preprocess:
    """How a decoded RGB uint8 HWC image becomes the model input.

    mode:
      * ``resize_crop``: resize the shorter side to ``resize``, center-crop ``size`` (ImageNet eval).
      * ``letterbox``: scale to fit ``size`` keeping aspect, pad with ``pad_value`` (YOLO), the way
        ultralytics' validator (``letterbox_rule="val"``) or predictor (``"predict"``) does it.
      * ``resize``: resize both sides to ``size`` ignoring aspect (SSD).
      * ``resize_short``: resize the shorter side to ``size`` keeping aspect, no crop (torchvision's
        ``SemanticSegmentation`` preset): the input's H and W vary, so the card's input dims are
        ``-1`` there and the card needs a ``dynamic_shape``. ``resize``, if given, equals ``size``.
    Pixel math: ``x = (pixel * scale - mean) / std`` per channel, then ``layout``.
    resample (``resize_crop`` and ``resize``): ``pil`` resamples the uint8 image with PIL, as
    torchvision's transforms do on the PIL image ``ImageFolder`` loads (the path published
    ImageNet accuracies come from); ``tensor`` resamples in float, as torchvision on a tensor.
    """

    mode: str
    size: int
    resize: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    scale: float = 1.0 / 255.0
    layout: str = "NCHW"
    pad_value: int = 114
    resample: str = "pil"
    letterbox_rule: str = "val"

    def __post_init__(self) -> None:
        for key, value, allowed in (("mode", self.mode, PREPROCESS_MODES), ("resample", self.resample, RESAMPLES),
                                    ("interpolation", self.interpolation, INTERPOLATIONS),
                                    ("layout", self.layout, LAYOUTS),
                                    ("letterbox_rule", self.letterbox_rule, LETTERBOX_RULES)):
            if value not in allowed:
                raise SpecError(f"preprocess {key} {value!r} not one of {allowed}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise SpecError("preprocess mean and std need 3 values, std positive")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise SpecError(f"preprocess size {self.size!r} must be a positive integer")
        if not 0 <= int(self.pad_value) <= 255:
            raise SpecError(f"preprocess pad_value {self.pad_value} must lie in [0, 255]")
        if self.mode == "resize_crop" and (self.resize is None or self.resize < self.size):
            raise SpecError(f"resize_crop needs resize >= size (got resize={self.resize}, size={self.size})")
        if self.mode == "resize_short" and self.resize is not None and self.resize != self.size:
            raise SpecError(f"resize_short resizes the shorter side to one length: resize ({self.resize}) "
                            f"must equal size ({self.size})")

    @property
    def dynamic(self) -> bool:
        """True when the model input's H and W vary from image to image."""
        return self.mode == "resize_short"

    @property
    def resize_to(self) -> int:
        return self.resize if self.resize is not None else self.size

    def sample_dims(self) -> tuple[int, int, int]:
        """Per-sample input dims this preprocessing produces; ``-1`` for H and W that vary."""
        s = -1 if self.dynamic else self.size
        return (3, s, s) if self.layout == "NCHW" else (s, s, 3)

    @classmethod
    def from_dict(cls, value: Any) -> "Preprocess":
        d = checked_keys("preprocess", value, cls)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class SpatialRange:
    """Input heights and widths a dynamic-size model is served with: ``(H, W)`` at minimum,
    typical (``opt``) and maximum, as a TensorRT optimization profile needs them."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def __post_init__(self) -> None:
        for key in ("min", "opt", "max"):
            hw = tuple(getattr(self, key))
            object.__setattr__(self, key, hw)
            if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
                raise SpecError(f"dynamic_shape.{key} must be [H, W] with positive integers (got {list(hw)})")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise SpecError(f"dynamic_shape needs min <= opt <= max per axis (got min {list(self.min)}, "
                            f"opt {list(self.opt)}, max {list(self.max)})")

    def contains(self, height: int, width: int) -> bool:
        return self.min[0] <= height <= self.max[0] and self.min[1] <= width <= self.max[1]

    @classmethod
    def from_dict(cls, value: Any) -> "SpatialRange | None":
        if value is None:
            return None
        d = checked_keys("dynamic_shape", value, cls)
        return cls(**{k: tuple(d[k]) for k in ("min", "opt", "max")})


# ---------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """How original-image pixels map to model-input pixels: ``x_in = x_orig * scale_x + pad_x``
    (a letterbox pads, a center crop has a negative pad, a resize has none)."""

    orig_h: int
    orig_w: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map x1,y1,x2,y2 boxes from model-input pixels back to the original image, clipped (float32)."""
        b = np.asarray(boxes_xyxy, dtype=np.float32).copy()
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_x) / self.scale_x
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_y) / self.scale_y
        b[..., [0, 2]] = b[..., [0, 2]].clip(0, self.orig_w)
        b[..., [1, 3]] = b[..., [1, 3]].clip(0, self.orig_h)
        return b

    @property
    def input_hw(self) -> tuple[int, int]:
        """The model-input size the original image was resized to (before padding or crop)."""
        return int(round(self.orig_h * self.scale_y)), int(round(self.orig_w * self.scale_x))

    @classmethod
    def from_array(cls, values: Any) -> "Geometry":
        """The inverse of :meth:`as_array` (a server's geometry tensor of one image)."""
        v = np.asarray(values, np.float64).reshape(-1)
        if v.shape != (len(GEOMETRY_FIELDS),):
            raise SpecError(f"a geometry vector has {len(GEOMETRY_FIELDS)} values {GEOMETRY_FIELDS}, "
                            f"got {v.shape[0]}")
        return cls(int(round(v[0])), int(round(v[1])), float(v[2]), float(v[3]), float(v[4]), float(v[5]))

    def as_array(self) -> np.ndarray:
        """FP64 ``[6]`` in :data:`GEOMETRY_FIELDS` order: the ``geometry`` tensor of the server-side
        preprocess and postprocess models."""
        return np.array([getattr(self, f) for f in GEOMETRY_FIELDS], np.float64)


# ------------------------------------------------------------------------------ NMS profiles
def _flag(value: Any) -> bool:
    return str(value or "false").lower() == "true"


@dataclass(frozen=True)
class NMSProfile:
    """Named NMS settings: ``speed`` for timing (conf 0.25 / IoU 0.45), ``ap`` for mAP.

    ``multi_label``: every class whose score is above ``conf_threshold`` becomes its own
    candidate box before the class-aware NMS (YOLOv5's and ultralytics' validators); without it
    each box keeps its best class only (the predictors' setting). ``class_agnostic``: boxes of
    different classes suppress each other.
    """

    name: str
    conf_threshold: float
    iou_threshold: float
    max_detections: int = 300
    class_agnostic: bool = False
    multi_label: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= self.conf_threshold <= 1.0 and 0.0 < self.iou_threshold <= 1.0):
            raise SpecError(f"NMS profile {self.name!r}: thresholds must lie in [0, 1]")
        if isinstance(self.max_detections, bool) or not isinstance(self.max_detections, int) \
                or self.max_detections < 1:
            raise SpecError(f"NMS profile {self.name!r}: max_detections must be an integer >= 1")

    def to_parameters(self) -> tuple[tuple[str, str], ...]:
        """The profile as a server model's config ``parameters`` (string values)."""
        return (("profile", self.name), ("conf_threshold", repr(self.conf_threshold)),
                ("iou_threshold", repr(self.iou_threshold)), ("max_detections", str(self.max_detections)),
                ("class_agnostic", "true" if self.class_agnostic else "false"),
                ("multi_label", "true" if self.multi_label else "false"))

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> "NMSProfile":
        """The inverse of :meth:`to_parameters` (``class_agnostic``/``multi_label`` absent: false)."""
        try:
            return cls(name=params.get("profile") or "server", conf_threshold=float(params["conf_threshold"]),
                       iou_threshold=float(params["iou_threshold"]), max_detections=int(params["max_detections"]),
                       class_agnostic=_flag(params.get("class_agnostic")), multi_label=_flag(params.get("multi_label")))
        except KeyError as exc:
            raise SpecError(f"NMS parameters: missing {exc.args[0]!r}") from None

    @classmethod
    def from_dict(cls, value: Any, section: str = "nms_profiles") -> "NMSProfile":
        return cls(**checked_keys(section, value, cls))


# ----------------------------------------------------------------------- postprocess variants
_VARIANTS: dict[str, type] = {}


def postprocess_variant(task: str):
    """Class decorator: register a postprocess variant (a frozen dataclass with a ``kind``
    ClassVar) for ``task``. Each task declares its variants in its own numpy math module, next to
    the decoder each variant carries; a kind registered twice is an error."""
    def wrap(cls: type) -> type:
        kind = getattr(cls, "kind", None)
        if not kind or not hasattr(cls, "__dataclass_fields__"):
            raise SpecError(f"postprocess variant {cls.__qualname__}: needs a dataclass with a 'kind' ClassVar")
        if kind in _VARIANTS and _VARIANTS[kind] is not cls:
            raise SpecError(f"postprocess kind {kind!r} is already registered ({_VARIANTS[kind].__qualname__})")
        cls.task = task
        _VARIANTS[kind] = cls
        return cls
    return wrap


def postprocess_kinds(task: str | None = None) -> tuple[str, ...]:
    """The registered postprocess kinds (of ``task``): by task name, then in registration order (the
    order of a task's math module), whichever module was imported first."""
    return tuple(k for t in postprocess_tasks() if task is None or t == task
                 for k, cls in _VARIANTS.items() if cls.task == t)


def postprocess_tasks() -> tuple[str, ...]:
    """The tasks that registered postprocess variants, sorted."""
    return tuple(sorted({cls.task for cls in _VARIANTS.values()}))


def variant_class(kind: str) -> type:
    try:
        return _VARIANTS[kind]
    except KeyError:
        raise SpecError(f"postprocess {kind!r} not one of {postprocess_kinds()}") from None


def postprocess_from(value: Any, where: str = "postprocess") -> Any:
    """A variant from a variant, a kind name or a ``{"kind": ..., field: value}`` mapping."""
    if isinstance(value, tuple(_VARIANTS.values())):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a kind name or an object with \"kind\" (got {type(value).__name__})")
    data = dict(value)
    cls = variant_class(data.pop("kind", None))
    unknown = sorted(set(data) - set(field_names(cls)))
    if unknown:
        raise SpecError(f"unknown field {unknown[0]!r} in {where} (kind {cls.kind}; valid keys: "
                        f"{', '.join(['kind', *field_names(cls)])})")
    return cls(**data)


def postprocess_to_dict(pp: Any) -> dict:
    return {"kind": pp.kind, **{f.name: _plain(getattr(pp, f.name)) for f in fields(pp)}}


# ---------------------------------------------------------------------------- the served spec
@dataclass(frozen=True, kw_only=True)
class ServedSpec:
    """What a server-side model needs of the card it was made from: the input, the outputs, the
    preprocessing, the postprocess variant and (dynamic-size inputs) the spatial range. Read from
    the card JSON the config carries (:data:`CARD_PARAMETER`); the other card fields are ignored.
    ``postprocess`` is None when it was not asked for (a preprocess model, which ships no task's
    math, so no postprocess variant is registered beside it)."""

    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess
    postprocess: Any
    dynamic_shape: SpatialRange | None = None

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @classmethod
    def from_dict(cls, card: Mapping[str, Any], postprocess: bool = True) -> "ServedSpec":
        try:
            return cls(input=TensorSpec.from_dict(card["input"], "input"),
                       outputs=tuple(TensorSpec.from_dict(o, f"outputs[{i}]") for i, o in enumerate(card["outputs"])),
                       preprocess=Preprocess.from_dict(card["preprocess"]),
                       postprocess=postprocess_from(card["postprocess"]) if postprocess else None,
                       dynamic_shape=SpatialRange.from_dict(card.get("dynamic_shape")))
        except KeyError as exc:
            raise SpecError(f"card: missing field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise SpecError(f"card: {exc}") from None

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any], postprocess: bool = True) -> "ServedSpec":
        """From a model config as JSON (a python backend's ``args["model_config"]``, parsed)."""
        text = ((config.get("parameters") or {}).get(CARD_PARAMETER) or {}).get("string_value")
        if not text:
            raise SpecError(f"the model config has no {CARD_PARAMETER} parameter (write it with tritonkit repo)")
        return cls.from_dict(json.loads(text), postprocess)


def config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """A model config's ``parameters`` (JSON form) as ``{key: string value}``."""
    return {k: (v or {}).get("string_value", "") for k, v in (config.get("parameters") or {}).items()}


__all__ = ["CARD_PARAMETER", "ENCODED_INPUT", "GEOMETRY_TENSOR", "GEOMETRY_FIELDS", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "LAYOUTS",
           "LETTERBOX_RULES", "PREPROCESS_MODES", "RESAMPLES", "TRITON_DTYPES", "Geometry", "NMSProfile",
           "Preprocess", "ServedSpec", "SpatialRange", "SpecError", "TensorSpec", "checked_keys",
           "config_parameters", "field_names", "postprocess_from", "postprocess_kinds", "postprocess_tasks",
           "postprocess_to_dict", "postprocess_variant", "variant_class"]
