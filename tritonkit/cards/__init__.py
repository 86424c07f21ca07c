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
from typing import Any, Iterator, Mapping

from tritonkit.cards.legacy import from_legacy
from tritonkit.errors import CardError
from tritonkit.io import load_json_bounded
from tritonkit.spec import (
    IMAGENET_MEAN, IMAGENET_STD, TRITON_DTYPES, NMSProfile, Preprocess, SpatialRange, SpecError, TensorSpec,
    checked_keys, field_names, postprocess_from, postprocess_kinds, postprocess_tasks, postprocess_to_dict)
from tritonkit.tasks import import_task_modules

# Each task declares its postprocess variants in its numpy math module (tritonkit/tasks/<task>/math.py);
# importing them registers the variants, and with them the tasks a card can name.
import_task_modules("math")

PRECISIONS = ("fp32", "fp16", "int8")
INT8_HEADS = ("int8", "float")  # how an int8 model keeps its head: quantized, or in float
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

NMS_SPEED = NMSProfile("speed", 0.25, 0.45)
NMS_AP = NMSProfile("ap", 0.001, 0.65)
# YOLOv5 val.py's mAP setting: conf 0.001 / IoU 0.65 with multi-label candidates.
NMS_AP_MULTI = NMSProfile("ap", 0.001, 0.65, multi_label=True)
# ultralytics' own defaults (8.x ``cfg/default.yaml``, conf 0.25 / IoU 0.7 / max_det 300): its predictor
# keeps the best class per box, its validator (conf 0.001) every class above the threshold.
NMS_ULTRALYTICS_SPEED = NMSProfile("speed", 0.25, 0.7)
NMS_ULTRALYTICS_AP = NMSProfile("ap", 0.001, 0.7, multi_label=True)


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
    postprocess: Any
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
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise CardError(f"card name {self.name!r} must be letters, digits, '_', '-', '.'")
        if self.task not in postprocess_tasks():
            raise CardError(f"card {self.name!r}: task {self.task!r} not one of {postprocess_tasks()}")
        try:
            object.__setattr__(self, "postprocess", postprocess_from(self.postprocess))
        except SpecError as exc:
            raise CardError(f"card {self.name!r}: {exc}") from None
        if self.postprocess.task != self.task:
            raise CardError(f"card {self.name!r}: postprocess {self.postprocess.kind!r} does not fit task "
                            f"{self.task!r} (use one of {postprocess_kinds(self.task)})")
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
        if self.postprocess.uses_nms_profiles and not self.nms_profiles:
            raise CardError(f"card {self.name!r}: postprocess {self.postprocess.kind!r} needs NMS profiles")
        profile_names = [p.name for p in self.nms_profiles]
        if len(set(profile_names)) != len(profile_names):
            raise CardError(f"card {self.name!r}: duplicate NMS profile names {profile_names}")

    def head_problems(self) -> list[str]:
        """Why the outputs cannot be the ones the postprocess head reads (empty: they can; heads
        that constrain their outputs say so with ``output_problems``). Not checked on every card: a
        postprocess ensemble's card keeps the head but serves the chain's outputs."""
        check = getattr(self.postprocess, "output_problems", None)
        return check(self.outputs, self.num_classes) if check else []

    def expected_input_dims(self) -> tuple[int, int, int]:
        """Per-sample input dims the preprocess produces; ``-1`` for H and W that vary."""
        return self.preprocess.sample_dims()

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The input's shape at ``batch``; dynamic H and W take ``dynamic_shape.opt``."""
        return (batch, *self._concrete(self.input.dims))

    def _concrete(self, dims: tuple[int, ...]) -> tuple[int, ...]:
        if self.dynamic_shape is None or -1 not in dims:
            return tuple(dims)
        h, w = self.dynamic_shape.opt
        spatial = iter((h, w))
        return tuple(next(spatial, 1) if d == -1 else d for d in dims)

    @property
    def has_labels(self) -> bool:
        """Whether the model is served with a Triton labels file on its first output (its
        postprocess variant says so: classifiers)."""
        return bool(getattr(self.postprocess, "triton_labels", False))

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


LEGACY_CARD_KEYS = ("options",)  # old card files: converted by from_legacy
LEGACY_PREPROCESS_KEYS = ("stride",)  # read by nothing: dropped when an old card file loads


def _checked(section: str, value, cls: type, extra: tuple[str, ...] = ()) -> dict:
    """``value`` as a dict whose keys are all fields of ``cls``; one-line CardError otherwise."""
    try:
        return checked_keys(section, value, cls, extra)
    except SpecError as exc:
        raise CardError(str(exc)) from None


def _preprocess(value) -> Preprocess:
    pp = _checked("preprocess", value, Preprocess, LEGACY_PREPROCESS_KEYS)
    for key in LEGACY_PREPROCESS_KEYS:
        pp.pop(key, None)
    return Preprocess.from_dict(pp)


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
        d["input"] = TensorSpec.from_dict(d["input"], "input")
        d["outputs"] = tuple(TensorSpec.from_dict(o, f"outputs[{i}]") for i, o in enumerate(d["outputs"]))
        d["preprocess"] = _preprocess(d["preprocess"])
        d["nms_profiles"] = tuple(NMSProfile.from_dict(p, f"nms_profiles[{i}]")
                                  for i, p in enumerate(d.get("nms_profiles", ())))
        if d.get("category_ids") is not None:
            d["category_ids"] = tuple(d["category_ids"])
        d["dynamic_shape"] = SpatialRange.from_dict(d.get("dynamic_shape"))
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
        data = load_json_bounded(p, "card file")
    except FileNotFoundError:
        raise CardError(f"{p}: card file not found") from None
    except json.JSONDecodeError as exc:
        raise CardError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # size cap or nesting depth
        raise CardError(str(exc)) from None
    card = card_from_dict(data, source=str(p), base_dir=p.parent)
    problems = card.head_problems()
    if problems:
        raise CardError(f"{p}: {problems[0]}")
    return card


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
    "ModelCard", "TensorSpec", "Preprocess", "NMSProfile", "SpatialRange", "PRECISIONS", "TRITON_DTYPES",
    "field_names", "NMS_SPEED", "NMS_AP", "NMS_AP_MULTI", "NMS_ULTRALYTICS_SPEED",
    "NMS_ULTRALYTICS_AP", "Registry", "REGISTRY", "get_card", "load_labels",
    "card_from_dict", "load_card_file", "IMAGENET_MEAN", "IMAGENET_STD",
]
