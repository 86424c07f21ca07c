"""Model cards: everything the pipeline needs to know about a model, as frozen data.

A card is to tritonkit what a ``Weights`` entry is to torchvision: it carries the input
contract (name, per-sample dims, dtype, layout), the preprocessing (resize/crop or
letterbox, mean/std, interpolation), the outputs, the task and postprocess kind, the NMS
profiles, the labels and the max batch. Export, repository generation, the client, perf and
validation all read the same card, so a model is described once.

Cards live in one :class:`Registry`; :data:`REGISTRY` holds the built-in ones and rejects
duplicate names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterator, Mapping

from tritonkit.cards.postprocess import (
    POSTPROCESS_KINDS, TASK_KINDS, ArgmaxMask, Postprocess, SoftmaxTopK, SSDDecode, YoloDecode, from_legacy,
    postprocess_from, postprocess_to_dict)
from tritonkit.errors import CardError

TASKS = ("classify", "detect", "segment")
PREPROCESS_MODES = ("resize_crop", "letterbox", "resize", "resize_short")
INTERPOLATIONS = ("bilinear", "bicubic")
PRECISIONS = ("fp32", "fp16", "int8")
INT8_HEADS = ("int8", "float")  # how an int8 model keeps its head: quantized, or in float
RESAMPLES = ("pil", "tensor")
TRITON_DTYPES = ("FP32", "FP16", "INT8", "UINT8", "INT32", "INT64", "BOOL")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``dims`` are per sample: the batch axis is not included."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "FP32"

    def __post_init__(self) -> None:
        if not self.name:
            raise CardError("tensor name must not be empty")
        if self.dtype not in TRITON_DTYPES:
            raise CardError(f"tensor {self.name!r}: dtype {self.dtype!r} not one of {TRITON_DTYPES}")
        if not self.dims or any((d < 1 and d != -1) for d in self.dims):
            raise CardError(f"tensor {self.name!r}: dims {self.dims} must be positive (or -1)")

    @property
    def numpy_dtype(self) -> str:
        return {"FP32": "float32", "FP16": "float16", "INT8": "int8", "UINT8": "uint8",
                "INT32": "int32", "INT64": "int64", "BOOL": "bool"}[self.dtype]


@dataclass(frozen=True)
class Preprocess:
    """How a decoded RGB uint8 HWC image becomes the model input.

    mode:
      * ``resize_crop``: resize the shorter side to ``resize``, center-crop ``size`` (ImageNet eval).
      * ``letterbox``: scale to fit ``size`` keeping aspect, pad with ``pad_value`` (YOLO).
      * ``resize``: resize both sides to ``size`` ignoring aspect (SSD).
      * ``resize_short``: resize the shorter side to ``resize`` keeping aspect, no crop (torchvision's
        ``SemanticSegmentation`` preset): the input's H and W vary, so the card's input dims are
        ``-1`` there and the card needs a ``dynamic_shape``. ``size`` equals ``resize``.
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
    stride: int = 32
    resample: str = "pil"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLES:
            raise CardError(f"resample {self.resample!r} not one of {RESAMPLES}")
        if self.mode not in PREPROCESS_MODES:
            raise CardError(f"preprocess mode {self.mode!r} not one of {PREPROCESS_MODES}")
        if self.interpolation not in INTERPOLATIONS:
            raise CardError(f"interpolation {self.interpolation!r} not one of {INTERPOLATIONS}")
        if self.layout not in ("NCHW", "NHWC"):
            raise CardError(f"layout {self.layout!r} must be NCHW or NHWC")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise CardError("mean and std need 3 values, std positive")
        if self.size < 1:
            raise CardError(f"preprocess size {self.size} must be positive")
        if self.mode == "resize_crop":
            if self.resize is None or self.resize < self.size:
                raise CardError(f"resize_crop needs resize >= size (got resize={self.resize}, size={self.size})")
        if self.mode == "resize_short" and self.resize is not None and self.resize != self.size:
            raise CardError(f"resize_short resizes the shorter side to one length: resize ({self.resize}) "
                            f"must equal size ({self.size})")

    @property
    def dynamic(self) -> bool:
        """True when the model input's H and W vary from image to image."""
        return self.mode == "resize_short"

    @property
    def resize_to(self) -> int:
        return self.resize if self.resize is not None else self.size


@dataclass(frozen=True)
class NMSProfile:
    """Named NMS settings: ``speed`` for timing (conf 0.25 / IoU 0.45), ``ap`` for mAP.

    ``multi_label`` (YOLO postprocess): every class whose ``objectness * class score`` is above
    ``conf_threshold`` becomes its own candidate box before the class-aware NMS, as YOLOv5's
    ``val.py`` does for mAP (``multi_label=True`` at conf 0.001); without it each box keeps its
    best class only (YOLOv5's detect/speed setting). SSD decoding is per class either way.
    Card JSON without the field loads as ``False``.
    """

    name: str
    conf_threshold: float
    iou_threshold: float
    max_detections: int = 300
    class_agnostic: bool = False
    multi_label: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= self.conf_threshold <= 1.0 and 0.0 < self.iou_threshold <= 1.0):
            raise CardError(f"NMS profile {self.name!r}: thresholds must lie in [0, 1]")
        if self.max_detections < 1:
            raise CardError(f"NMS profile {self.name!r}: max_detections must be >= 1")


NMS_SPEED = NMSProfile("speed", 0.25, 0.45)
NMS_AP = NMSProfile("ap", 0.001, 0.65)
# YOLOv5 val.py's mAP setting: conf 0.001 / IoU 0.65 with multi-label candidates.
NMS_AP_MULTI = NMSProfile("ap", 0.001, 0.65, multi_label=True)


@dataclass(frozen=True, kw_only=True)
class SpatialRange:
    """Input heights and widths a dynamic-size model is served with: ``(H, W)`` at minimum,
    typical (``opt``) and maximum, as a TensorRT optimization profile needs them."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def __post_init__(self) -> None:
        for key in ("min", "opt", "max"):
            hw = getattr(self, key)
            if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
                raise CardError(f"dynamic_shape.{key} must be [H, W] with positive integers (got {list(hw)})")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise CardError(f"dynamic_shape needs min <= opt <= max per axis (got min {list(self.min)}, "
                            f"opt {list(self.opt)}, max {list(self.max)})")


def _normalize_reference(value) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
    """``{dataset: {metric: value}}`` (or the old ``((metric, value), ...)`` form, filed under
    dataset ``"published"``) as a hashable, ordered tuple."""
    if isinstance(value, Mapping):
        items = value.items()
    else:
        pairs = tuple(value)
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[1], Mapping | tuple) for p in pairs):
            items = pairs
        else:
            items = (("published", pairs),) if pairs else ()
    out = []
    for dataset, metrics in items:
        metrics = metrics.items() if isinstance(metrics, Mapping) else metrics
        try:
            out.append((str(dataset), tuple((str(m), float(v)) for m, v in metrics)))
        except (TypeError, ValueError):
            raise CardError(f"reference[{dataset!r}] must map metric names to numbers") from None
    return tuple(out)


@dataclass(frozen=True)
class ModelCard:
    """Everything about one model that export, repository, client, perf and validate need."""

    name: str
    task: str
    arch: str
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess
    postprocess: Postprocess
    labels: str
    num_classes: int
    max_batch_size: int = 32
    nms_profiles: tuple[NMSProfile, ...] = ()
    category_ids: tuple[int, ...] | None = None
    weights_file: str | None = None
    reference: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    precision: str | None = None
    dynamic_shape: SpatialRange | None = None
    int8_head: str = "int8"
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise CardError(f"card name {self.name!r} must be letters, digits, '_', '-', '.'")
        if self.task not in TASKS:
            raise CardError(f"card {self.name!r}: task {self.task!r} not one of {TASKS}")
        try:
            object.__setattr__(self, "postprocess", postprocess_from(self.postprocess))
        except CardError as exc:
            raise CardError(f"card {self.name!r}: {exc}") from None
        if self.postprocess.kind not in TASK_KINDS[self.task]:
            raise CardError(f"card {self.name!r}: postprocess {self.postprocess.kind!r} does not fit task "
                            f"{self.task!r} (use one of {TASK_KINDS[self.task]})")
        object.__setattr__(self, "reference", _normalize_reference(self.reference))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise CardError(f"card {self.name!r}: precision {self.precision!r} not one of {PRECISIONS}")
        if self.int8_head not in INT8_HEADS:
            raise CardError(f"card {self.name!r}: int8_head must be int8 or float (got {self.int8_head!r}); "
                            "float keeps the last layers and the outputs in float in an int8 model")
        if not self.outputs:
            raise CardError(f"card {self.name!r}: needs at least one output")
        if self.max_batch_size < 1:
            raise CardError(f"card {self.name!r}: max_batch_size must be >= 1")
        if self.num_classes < 1:
            raise CardError(f"card {self.name!r}: num_classes must be >= 1")
        expected = self.expected_input_dims()
        if tuple(self.input.dims) != expected:
            raise CardError(
                f"card {self.name!r}: input dims {self.input.dims} disagree with preprocess "
                f"({self.preprocess.mode}, {self.preprocess.layout}, size {self.preprocess.size}) "
                f"which gives {expected}")
        if self.preprocess.dynamic and self.dynamic_shape is None:
            raise CardError(f"card {self.name!r}: input dims {self.input.dims} vary ({self.preprocess.mode}); "
                            f"give dynamic_shape {{min, opt, max}} as [H, W]")
        if not self.preprocess.dynamic and self.dynamic_shape is not None:
            raise CardError(f"card {self.name!r}: dynamic_shape is only for dynamic-size inputs "
                            f"(preprocess resize_short), not {self.preprocess.mode}")
        names = [t.name for t in (self.input, *self.outputs)]
        if len(set(names)) != len(names):
            raise CardError(f"card {self.name!r}: tensor names must be unique, got {names}")
        if self.category_ids is not None and len(self.category_ids) != self.num_classes:
            raise CardError(f"card {self.name!r}: category_ids has {len(self.category_ids)} entries, "
                            f"num_classes is {self.num_classes}")
        if self.task == "detect" and not self.nms_profiles:
            raise CardError(f"card {self.name!r}: a detector needs NMS profiles")
        profile_names = [p.name for p in self.nms_profiles]
        if len(set(profile_names)) != len(profile_names):
            raise CardError(f"card {self.name!r}: duplicate NMS profile names {profile_names}")

    def expected_input_dims(self) -> tuple[int, int, int]:
        """Per-sample input dims the preprocess produces; ``-1`` for H and W that vary."""
        s = -1 if self.preprocess.dynamic else self.preprocess.size
        return (3, s, s) if self.preprocess.layout == "NCHW" else (s, s, 3)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The input's shape at ``batch``; dynamic H and W take ``dynamic_shape.opt``."""
        return (batch, *self._concrete(self.input.dims))

    def _concrete(self, dims: tuple[int, ...]) -> tuple[int, ...]:
        if self.dynamic_shape is None or -1 not in dims:
            return tuple(dims)
        h, w = self.dynamic_shape.opt
        spatial = iter((h, w))
        return tuple(next(spatial, 1) if d == -1 else d for d in dims)

    def published_metrics(self) -> dict[str, float]:
        """The published numbers as one flat ``{metric: value}`` (every dataset's metrics)."""
        return {metric: value for _, metrics in self.reference for metric, value in metrics}

    def references(self) -> dict[str, dict[str, float]]:
        """The published numbers as ``{dataset: {metric: value}}``."""
        return {dataset: dict(metrics) for dataset, metrics in self.reference}

    def nms(self, profile: str) -> NMSProfile:
        for p in self.nms_profiles:
            if p.name == profile:
                return p
        raise CardError(f"card {self.name!r} has no NMS profile {profile!r}; "
                        f"known: {', '.join(p.name for p in self.nms_profiles) or 'none'}")

    def label_names(self) -> list[str]:
        names = load_labels(self.labels)
        if len(names) != self.num_classes:
            raise CardError(f"card {self.name!r}: label set {self.labels!r} has {len(names)} names, "
                            f"num_classes is {self.num_classes}")
        return names

    def with_overrides(self, **changes) -> "ModelCard":
        """A copy with fields replaced (validated again), e.g. another name or max batch."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = _to_jsonable(self)
        d["postprocess"] = postprocess_to_dict(self.postprocess)
        d["reference"] = self.references()
        return d


def _to_jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_jsonable(x) for x in obj]
    return obj


def field_names(cls: type) -> list[str]:
    """The JSON keys of a card part: its dataclass fields (the schema is made from the same lists)."""
    return [f.name for f in fields(cls)]


LEGACY_CARD_KEYS = ("options",)  # old card files: converted by from_legacy


def _checked(section: str, value, cls: type, extra: tuple[str, ...] = ()) -> dict:
    """``value`` as a dict whose keys are all fields of ``cls``; one-line error otherwise."""
    if not isinstance(value, Mapping):
        raise CardError(f"{section} must be an object (got {type(value).__name__})")
    valid = field_names(cls) + list(extra)
    unknown = [k for k in value if k not in valid]
    if unknown:
        raise CardError(f"unknown field {unknown[0]!r} in {section} (valid keys: {', '.join(valid)})")
    return dict(value)


def _tensor(section: str, value) -> TensorSpec:
    d = _checked(section, value, TensorSpec)
    return TensorSpec(d["name"], tuple(d["dims"]), d.get("dtype", "FP32"))


def _preprocess(value) -> Preprocess:
    pp = _checked("preprocess", value, Preprocess)
    for key in ("mean", "std"):
        if key in pp:
            pp[key] = tuple(pp[key])
    return Preprocess(**pp)


def _dynamic_shape(value) -> SpatialRange | None:
    if value is None:
        return None
    d = _checked("dynamic_shape", value, SpatialRange)
    return SpatialRange(**{k: tuple(d[k]) for k in ("min", "opt", "max")})


def _labels(value, base: Path | None) -> str:
    """A label set name, or a ``.txt`` path (relative to the card file) made absolute."""
    if not isinstance(value, str) or not value:
        raise CardError("labels must be a label set name or a .txt file path")
    if not _is_label_path(value):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise CardError(f"labels file {str(path)!r} not found")
    return str(path.resolve())


def card_from_dict(data: Mapping, source: str = "<dict>", base_dir: str | Path | None = None) -> ModelCard:
    """Build a card from plain data (a JSON file a user wrote), with errors naming the field.

    Unknown keys are refused with the valid ones listed. A ``labels`` path is relative to
    ``base_dir`` (the card file's folder). Old card files (``postprocess`` as a string plus an
    ``options`` list, ``reference`` as ``[[metric, value]]``) are converted."""
    try:
        d = _checked("the card", data, ModelCard, LEGACY_CARD_KEYS)
        d["input"] = _tensor("input", d["input"])
        d["outputs"] = tuple(_tensor(f"outputs[{i}]", o) for i, o in enumerate(d["outputs"]))
        d["preprocess"] = _preprocess(d["preprocess"])
        d["nms_profiles"] = tuple(NMSProfile(**_checked(f"nms_profiles[{i}]", p, NMSProfile))
                                  for i, p in enumerate(d.get("nms_profiles", ())))
        if d.get("category_ids") is not None:
            d["category_ids"] = tuple(d["category_ids"])
        d["dynamic_shape"] = _dynamic_shape(d.get("dynamic_shape"))
        d["labels"] = _labels(d["labels"], None if base_dir is None else Path(base_dir))
        if "options" in d or isinstance(d.get("postprocess"), str):
            options = [tuple(pair) for pair in d.pop("options", ())]
            head = [pair for pair in options if pair and pair[0] == "int8_head"]
            if head and len(head[0]) == 2:
                d.setdefault("int8_head", str(head[0][1]).lower())
            d["postprocess"], precision = from_legacy(d["postprocess"], [p for p in options if p not in head])
            if precision is not None and d.get("precision") is None:
                d["precision"] = precision
        else:
            d["postprocess"] = postprocess_from(d["postprocess"])
        return ModelCard(**d)
    except CardError as exc:
        raise CardError(f"{source}: {exc}") from None
    except KeyError as exc:
        raise CardError(f"{source}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CardError(f"{source}: {exc}") from None


def load_card_file(path: str | Path) -> ModelCard:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise CardError(f"{p}: card file not found") from None
    except json.JSONDecodeError as exc:
        raise CardError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return card_from_dict(data, source=str(p), base_dir=p.parent)


def _is_label_path(labels: str) -> bool:
    return labels.endswith(".txt") or "/" in labels or "\\" in labels


@lru_cache(maxsize=None)
def _label_file(name: str) -> tuple[str, ...]:
    try:
        text = resources.files("tritonkit.data").joinpath(f"{name}.txt").read_text()
    except FileNotFoundError:
        raise CardError(f"unknown label set {name!r} (no tritonkit/data/{name}.txt)") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=None)
def _label_path(path: str) -> tuple[str, ...]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CardError(f"labels file {path!r}: {exc.strerror or exc}") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def load_labels(name: str) -> list[str]:
    """Class names of a label set shipped in ``tritonkit/data`` (``imagenet1k``, ``coco80`` ...),
    or of a ``.txt`` file (one name per line) when ``name`` is a path."""
    return list(_label_path(name) if _is_label_path(name) else _label_file(name))


class Registry:
    """Named model cards. Registering a name twice is an error, never a silent overwrite."""

    def __init__(self) -> None:
        self._cards: dict[str, ModelCard] = {}

    def register(self, card: ModelCard) -> ModelCard:
        if card.name in self._cards:
            raise CardError(f"duplicate model card name {card.name!r}")
        self._cards[card.name] = card
        return card

    def get(self, name: str) -> ModelCard:
        try:
            return self._cards[name]
        except KeyError:
            raise CardError(f"unknown model {name!r}; known models: {', '.join(sorted(self._cards))}") from None

    def names(self) -> list[str]:
        return sorted(self._cards)

    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self._cards[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._cards

    def __len__(self) -> int:
        return len(self._cards)


REGISTRY = Registry()


# The built-in card modules build their cards from the classes above, so they are imported
# here, once those classes exist, and their cards registered.
from tritonkit.cards import classification, detection, segmentation  # noqa: E402

for _module in (classification, detection, segmentation):
    for _card in _module.CARDS:
        REGISTRY.register(_card)


def get_card(name_or_path: str) -> ModelCard:
    """A built-in card by name, or a user card from a ``.json`` file path."""
    if name_or_path.endswith(".json"):
        return load_card_file(name_or_path)
    return REGISTRY.get(name_or_path)


__all__ = [
    "ModelCard", "TensorSpec", "Preprocess", "NMSProfile", "SpatialRange", "SoftmaxTopK", "YoloDecode",
    "SSDDecode", "ArgmaxMask", "Postprocess", "POSTPROCESS_KINDS", "PRECISIONS", "field_names", "NMS_SPEED",
    "NMS_AP", "NMS_AP_MULTI",
    "Registry",
    "REGISTRY", "get_card", "load_labels", "card_from_dict", "load_card_file", "IMAGENET_MEAN",
    "IMAGENET_STD",
]
