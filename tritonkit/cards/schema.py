"""The JSON Schema of a card file, made from the same dataclass field lists the loader checks.

``tritonkit/data/card.schema.json`` is this schema as shipped (``tritonkit cards --schema``
prints it); a test keeps the file equal to :func:`card_json_schema`.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from importlib import resources

from tritonkit.cards import INT8_HEADS, PRECISIONS, ModelCard
from tritonkit.spec import (
    INTERPOLATIONS, LAYOUTS, LETTERBOX_RULES, PREPROCESS_MODES, RESAMPLES, TRITON_DTYPES, NMSProfile, Preprocess,
    SpatialRange, TensorSpec, postprocess_kinds, postprocess_tasks, variant_class)

SCHEMA_FILE = "card.schema.json"
SCHEMA_ID = "https://tritonkit.invalid/card.schema.json"
_SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
            "bool": {"type": "boolean"}}
_REFS = {"TensorSpec": "#/$defs/tensor", "Preprocess": "#/$defs/preprocess", "NMSProfile": "#/$defs/nms_profile",
         "SpatialRange": "#/$defs/dynamic_shape", "Any": "#/$defs/postprocess"}


def _enums() -> dict[tuple[str, str], tuple]:
    """Fields whose values are one of a fixed list: the card's and spec's own, and those a
    postprocess variant declares in its ``field_choices``."""
    out = {("ModelCard", "task"): postprocess_tasks(), ("ModelCard", "precision"): PRECISIONS,
           ("ModelCard", "int8_head"): INT8_HEADS, ("Preprocess", "mode"): PREPROCESS_MODES,
           ("Preprocess", "interpolation"): INTERPOLATIONS, ("Preprocess", "layout"): LAYOUTS,
           ("Preprocess", "resample"): RESAMPLES, ("Preprocess", "letterbox_rule"): LETTERBOX_RULES,
           ("TensorSpec", "dtype"): TRITON_DTYPES}
    for kind in postprocess_kinds():
        cls = variant_class(kind)
        out.update({(cls.__name__, name): tuple(values) for name, values in getattr(cls, "field_choices", {}).items()})
    return out
_SPECIAL = {
    ("ModelCard", "reference"): {
        "type": "object", "description": "published numbers: {dataset: {metric: value}}",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "number"}}},
    ("ModelCard", "labels"): {
        "type": "string", "description": "a built-in label set name (imagenet1k, coco80...) or a .txt file, "
                                         "one name per line, relative to the card file"},
    ("ModelCard", "arch"): {"type": "string", "description": "the export builder's name (tritonkit.export.builders)"},
}


def _type(annotation: str) -> dict:
    """JSON Schema of one field annotation string (the few forms the card dataclasses use)."""
    text = annotation.strip()
    if text.endswith("| None"):
        inner = _type(text[: -len("| None")])
        return {"anyOf": [inner, {"type": "null"}]}
    if text in _SCALARS:
        return dict(_SCALARS[text])
    if text in _REFS:
        return {"$ref": _REFS[text]}
    if text.startswith("tuple[") and text.endswith(", ...]"):
        return {"type": "array", "items": _type(text[len("tuple["):-len(", ...]")])}
    if text.startswith("tuple["):
        parts = [p.strip() for p in text[len("tuple["):-1].split(",")]
        return {"type": "array", "items": _type(parts[0]), "minItems": len(parts), "maxItems": len(parts)}
    raise ValueError(f"no JSON Schema for annotation {annotation!r}")


def _object(cls: type, extra: dict | None = None) -> dict:
    props, required = {}, []
    enums = _enums()
    for f in fields(cls):
        key = (cls.__name__, f.name)
        schema = _SPECIAL.get(key) or _type(f.type)
        if key in enums:
            values = list(enums[key])
            schema = {"anyOf": [{"enum": values}, {"type": "null"}]} if "None" in f.type else {"enum": values}
        props[f.name] = schema
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
    out = {"type": "object", "properties": {**props, **(extra or {})}, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _postprocess() -> dict:
    variants = []
    for kind in postprocess_kinds():
        obj = _object(variant_class(kind), {"kind": {"const": kind}})
        obj["required"] = ["kind", *obj.get("required", [])]
        variants.append(obj)
    return {"oneOf": [{"enum": list(postprocess_kinds())}, *variants],
            "description": "a kind name (its defaults) or an object tagged by kind"}


def card_json_schema() -> dict:
    """The card file's JSON Schema (draft 2020-12)."""
    card = _object(ModelCard, {"options": {
        "type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        "deprecated": True, "description": "old card files: [key, value] pairs, converted to typed fields on load"}})
    card["description"] = "A tritonkit model card (tritonkit cards NAME prints a built-in one)."
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "tritonkit model card", **card,
            "$defs": {"tensor": _object(TensorSpec), "preprocess": _object(Preprocess),
                      "nms_profile": _object(NMSProfile), "dynamic_shape": _object(SpatialRange),
                      "postprocess": _postprocess()}}


def schema_text() -> str:
    return json.dumps(card_json_schema(), indent=2) + "\n"


def shipped_schema_text() -> str:
    """The schema file shipped in ``tritonkit/data``."""
    return resources.files("tritonkit.data").joinpath(SCHEMA_FILE).read_text()


__all__ = ["card_json_schema", "schema_text", "shipped_schema_text", "SCHEMA_FILE"]
