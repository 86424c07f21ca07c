"""The served-model contract: does what a Triton server says about a model agree with its card?

Pure functions over plain dicts (no I/O, no tritonclient): :func:`normalize_metadata` and
:func:`normalize_config` turn the gRPC (``as_json``) or HTTP renderings into one form, and
:func:`contract_mismatches` lists every difference from a card. The run-stream client
(:class:`tritonkit.client.infer.TritonInfer`) checks it before its first request, and
validation's ``contract.metadata`` check reports it. :func:`embedded_card` reads the card a
served config carries and :func:`card_differences` compares two cards field by field (eval
refuses a card that disagrees with the served one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from tritonkit.cards import ModelCard, card_from_dict
from tritonkit.errors import CardError, TritonkitError
from tritonkit.spec import CARD_PARAMETER

__all__ = ["normalize_metadata", "normalize_config", "contract_mismatches", "CARD_PARAMETER", "COMPARED_FIELDS",
           "embedded_card", "served_card", "card_differences"]


def _dims(values) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))


def normalize_metadata(raw: Mapping[str, Any]) -> dict:
    """Model metadata (gRPC ``as_json`` dict with int64 as strings, or HTTP dict) -> plain ints."""
    def tensors(key: str) -> dict:
        return {t["name"]: {"datatype": t.get("datatype", ""), "shape": _dims(t.get("shape"))}
                for t in raw.get(key, ())}
    return {"name": raw.get("name", ""), "inputs": tensors("inputs"), "outputs": tensors("outputs")}


def normalize_config(raw: Mapping[str, Any]) -> dict:
    """Model config (gRPC ``{"config": ...}`` or HTTP dict) -> ``max_batch_size`` and tensors.

    Protobuf JSON omits zero values, so a missing ``max_batch_size`` means 0 (no batching).
    """
    cfg = raw.get("config", raw)

    def tensors(key: str) -> dict:
        return {t["name"]: {"datatype": str(t.get("data_type", "")).removeprefix("TYPE_"),
                            "dims": _dims(t.get("dims")), "optional": bool(t.get("optional", False))}
                for t in cfg.get(key, ())}
    return {"name": cfg.get("name", ""), "max_batch_size": int(cfg.get("max_batch_size", 0) or 0),
            "inputs": tensors("input"), "outputs": tensors("output")}


def _dims_match(served: tuple[int, ...], card: tuple[int, ...]) -> bool:
    return len(served) == len(card) and all(a == -1 or b == -1 or a == b for a, b in zip(served, card))


def contract_mismatches(card: ModelCard, metadata: Mapping, config: Mapping, batch_size: int) -> list[str]:
    """Every way the served model (normalized metadata and config) disagrees with ``card``.

    Pure. Checks the card's input and outputs exist with the same datatype and per-sample dims
    (metadata shapes carry a leading -1 batch axis when the model batches), that
    ``max_batch_size`` allows ``batch_size``, and that the server needs no other input (inputs
    its config marks optional, such as a postprocess ensemble's ``geometry``, are not needed).
    """
    problems: list[str] = []
    mbs = int(config["max_batch_size"])
    if mbs == 0:
        problems.append("max_batch_size is 0 (the model does not batch); the client sends batched inputs")
    elif mbs < batch_size:
        problems.append(f"max_batch_size {mbs} < batch size {batch_size}")
    for kind, specs in (("input", (card.input,)), ("output", card.outputs)):
        served_meta = metadata[f"{kind}s"]
        served_cfg = config[f"{kind}s"]
        for spec in specs:
            meta = served_meta.get(spec.name)
            if meta is None:
                problems.append(f"{kind} {spec.name!r} not served (server has {sorted(served_meta)})")
                continue
            if meta["datatype"] != spec.dtype:
                problems.append(f"{kind} {spec.name!r} datatype {meta['datatype']} != card {spec.dtype}")
            shape = meta["shape"][1:] if mbs > 0 else meta["shape"]
            cfg = served_cfg.get(spec.name)
            if not _dims_match(shape, spec.dims):
                problems.append(f"{kind} {spec.name!r} shape {list(meta['shape'])} != card "
                                f"[{'-1, ' if mbs > 0 else ''}{', '.join(map(str, spec.dims))}]")
            elif cfg is not None and cfg["dims"] and not _dims_match(cfg["dims"], spec.dims):
                problems.append(f"{kind} {spec.name!r} config dims {list(cfg['dims'])} != card {list(spec.dims)}")
    optional = {name for name, t in config["inputs"].items() if t.get("optional")}
    extra = sorted(set(metadata["inputs"]) - {card.input.name} - optional)
    if extra:
        problems.append(f"server expects extra inputs {extra} the card does not describe")
    return problems


# -- the served card ------------------------------------------------------------------------


# Card fields that change what a client sends or how it reads the answer; the others (name,
# description, weights, published figures, build options, max batch: the served config's own
# max_batch_size is checked by contract_mismatches) do not.
COMPARED_FIELDS = ("task", "input", "outputs", "preprocess", "postprocess", "labels", "num_classes",
                   "category_ids", "dynamic_shape")


def embedded_card(config: Mapping[str, Any]) -> dict | None:
    """The card JSON a served config carries in its ``tritonkit_card`` parameter (gRPC
    ``{"config": ...}`` or HTTP rendering), parsed; None when it carries none.

    Raises ValueError when the parameter is not a JSON object."""
    cfg = config.get("config", config)
    text = (cfg.get("parameters", {}).get(CARD_PARAMETER) or {}).get("string_value")
    if not text:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"parameter {CARD_PARAMETER} is not a JSON object")
    return data


def served_card(config: Mapping[str, Any], source: str) -> ModelCard | None:
    """The card a served config carries, as a :class:`ModelCard` (None when it carries none).

    A labels file named by the served card that is not on this machine (the repository was
    written elsewhere) is kept by its file name, so the card still parses and compares by name.
    Raises CardError (naming ``source``) for a card that does not parse."""
    try:
        data = embedded_card(config)
    except ValueError as exc:
        raise CardError(f"{source}: parameter {CARD_PARAMETER} is not a card ({exc})") from None
    if data is None:
        return None
    labels = data.get("labels")
    if isinstance(labels, str) and ("/" in labels or "\\" in labels) and not Path(labels).is_file():
        data = {**data, "labels": _label_stem(labels)}
    return card_from_dict(data, source)


def _label_stem(labels: str) -> str:
    name = labels.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".txt") else name


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    """Nested dicts/lists as ``{"preprocess.mean": [...], "outputs[0].dims": [...]}``; lists of
    numbers or strings stay whole (one line for a whole mean or dims)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
        out = {f"{prefix}.count": len(value)}
        for i, item in enumerate(value):
            out.update(_flat(item, f"{prefix}[{i}]"))
        return out
    return {prefix: list(value) if isinstance(value, tuple) else value}


def _labels_value(card: ModelCard) -> Any:
    """What labels mean: the names when the set or file can be read here, else its name."""
    try:
        return card.label_names()
    except TritonkitError:
        return _label_stem(card.labels)


def _labels_difference(given: ModelCard, served: ModelCard) -> str | None:
    a, b = _labels_value(given), _labels_value(served)
    if a == b:
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"labels: {len(a)} names ({given.labels}) != served {len(b)} names ({served.labels})"
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        diff = sum(x != y for x, y in zip(a, b))
        return f"labels: {diff} names differ, first class {i}: {a[i]!r} != served {b[i]!r}"
    if _label_stem(given.labels) == _label_stem(served.labels):
        return None  # one side unreadable here: the same label file name is all that can be compared
    return f"labels: {given.labels} != served {served.labels}"


def card_differences(given: ModelCard, served: ModelCard) -> list[str]:
    """One line per card field on which ``given`` and the ``served`` card disagree
    (``preprocess.mean: [0.485, ...] != served [0.5, ...]``), over :data:`COMPARED_FIELDS`;
    labels by their class names when both can be read here (else by file name); [] when they agree."""
    a, b = given.to_dict(), served.to_dict()
    lines: list[str] = []
    for key in COMPARED_FIELDS:
        if key == "labels":
            line = _labels_difference(given, served)
            lines += [line] if line else []
            continue
        fa, fb = _flat(a.get(key), key), _flat(b.get(key), key)
        for path in sorted(set(fa) | set(fb)):
            va, vb = fa.get(path, "(absent)"), fb.get(path, "(absent)")
            if va != vb:
                lines.append(f"{path}: {_short(va)} != served {_short(vb)}")
    return lines


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
