"""Typed postprocess variants of a model card, tagged by ``kind`` in JSON.

``{"kind": "yolo", "multi_label": true}`` loads as ``YoloDecode(multi_label=True)``; a bare kind
name (``"yolo"``) means the variant with its defaults. Card files written before the variants
existed (a ``postprocess`` string plus an ``options`` list of string pairs) are converted by
:func:`from_legacy`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Mapping, Union

from tritonkit.errors import CardError

BOX_CODINGS = ("center_size", "corner")


@dataclass(frozen=True, kw_only=True)
class SoftmaxTopK:
    """Classifier logits -> softmax -> the ``top_k`` best classes."""

    kind: ClassVar[str] = "softmax_topk"
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise CardError(f"postprocess softmax_topk: top_k must be >= 1 (got {self.top_k})")


@dataclass(frozen=True, kw_only=True)
class YoloDecode:
    """One output ``[N, boxes, 5 + C]``: box, objectness, class scores (the ultralytics layout).

    ``box_coding``: ``center_size`` (cx, cy, w, h; ultralytics) or ``corner`` (x1, y1, x2, y2),
    in input pixels. ``multi_label``: ``None`` lets each NMS profile decide; ``True``/``False``
    forces multi-label candidates (every class above the threshold) on or off for every profile.
    """

    kind: ClassVar[str] = "yolo"
    box_coding: str = "center_size"
    multi_label: bool | None = None

    def __post_init__(self) -> None:
        _check_box_coding(self.kind, self.box_coding)
        if self.multi_label is not None and not isinstance(self.multi_label, bool):
            raise CardError(f"postprocess yolo: multi_label must be true, false or null (got {self.multi_label!r})")


@dataclass(frozen=True, kw_only=True)
class SSDDecode:
    """Two outputs: ``boxes [N, anchors, 4]`` (normalized, ``box_coding``) and ``scores [N,
    anchors, C (+1)]`` (softmax). ``background_index``: the background score column, ``None``
    when the scores have none."""

    kind: ClassVar[str] = "ssd"
    box_coding: str = "corner"
    background_index: int | None = 0

    def __post_init__(self) -> None:
        _check_box_coding(self.kind, self.box_coding)
        if self.background_index is not None and (isinstance(self.background_index, bool)
                                                  or not isinstance(self.background_index, int)
                                                  or self.background_index < 0):
            raise CardError(f"postprocess ssd: background_index must be an index >= 0 or null "
                            f"(got {self.background_index!r})")


@dataclass(frozen=True, kw_only=True)
class ArgmaxMask:
    """Segmentation logits ``[N, C, H, W]`` -> per-pixel class (argmax over C)."""

    kind: ClassVar[str] = "argmax_mask"


Postprocess = Union[SoftmaxTopK, YoloDecode, SSDDecode, ArgmaxMask]
VARIANTS: dict[str, type] = {c.kind: c for c in (SoftmaxTopK, YoloDecode, SSDDecode, ArgmaxMask)}
POSTPROCESS_KINDS = tuple(VARIANTS)
# which postprocess kinds each task accepts
TASK_KINDS = {"classify": ("softmax_topk",), "detect": ("yolo", "ssd"), "segment": ("argmax_mask",)}
# options of old card files -> (postprocess kind it belongs to, field)
LEGACY_OPTIONS = {"multi_label": ("yolo", "multi_label"), "score_background_index": ("ssd", "background_index"),
                  "gpu_nms_box_coding": (None, "box_coding"), "gpu_nms": (None, None), "precision": (None, None)}


def _check_box_coding(kind: str, coding: str) -> None:
    if coding not in BOX_CODINGS:
        raise CardError(f"postprocess {kind}: box_coding {coding!r} not one of {BOX_CODINGS}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def postprocess_from(value, where: str = "postprocess") -> Postprocess:
    """A variant from a variant, a kind name or a ``{"kind": ..., field: value}`` mapping."""
    if isinstance(value, tuple(VARIANTS.values())):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise CardError(f"{where} must be a kind name or an object with \"kind\" (got {type(value).__name__})")
    data = dict(value)
    kind = data.pop("kind", None)
    cls = VARIANTS.get(kind)
    if cls is None:
        raise CardError(f"{where} {kind!r} not one of {POSTPROCESS_KINDS}")
    unknown = sorted(set(data) - set(field_names(cls)))
    if unknown:
        raise CardError(f"unknown field {unknown[0]!r} in {where} (kind {kind}; valid keys: "
                        f"{', '.join(['kind', *field_names(cls)])})")
    return cls(**data)


def postprocess_to_dict(pp: Postprocess) -> dict:
    return {"kind": pp.kind, **{f.name: getattr(pp, f.name) for f in fields(pp)}}


def _legacy_value(key: str, text: str):
    value = str(text).strip()
    if key == "multi_label":
        if value.lower() not in ("true", "false"):
            raise CardError(f"option multi_label must be true or false (got {text!r})")
        return True if value.lower() == "true" else None  # "false" left the choice to each profile
    if key == "score_background_index":
        return None if value.lower() in ("none", "-1", "") else int(value)
    if key == "gpu_nms_box_coding":
        return {"0": "corner", "1": "center_size"}.get(value, value)
    return value


def from_legacy(kind: str, options) -> tuple[Postprocess, str | None]:
    """``(postprocess, precision)`` from an old card's ``postprocess`` string and ``options`` pairs.

    ``multi_label``, ``score_background_index`` and ``gpu_nms_box_coding`` become variant fields,
    ``precision`` the card's typed field; ``gpu_nms`` (which had no reader) is dropped."""
    data: dict = {"kind": kind}
    precision = None
    for pair in options:
        if len(pair) != 2:
            raise CardError(f"options entries must be [key, value] pairs (got {list(pair)!r})")
        key, text = pair
        if key not in LEGACY_OPTIONS:
            raise CardError(f"unknown option {key!r} (known: {', '.join(LEGACY_OPTIONS)})")
        owner, field = LEGACY_OPTIONS[key]
        if key == "precision":
            precision = str(text).lower()
        elif field is not None and owner in (None, kind) and kind in VARIANTS and field in field_names(VARIANTS[kind]):
            data[field] = _legacy_value(key, text)
    return postprocess_from(data), precision


__all__ = ["SoftmaxTopK", "YoloDecode", "SSDDecode", "ArgmaxMask", "Postprocess", "VARIANTS", "POSTPROCESS_KINDS",
           "TASK_KINDS", "BOX_CODINGS", "postprocess_from", "postprocess_to_dict", "from_legacy"]
