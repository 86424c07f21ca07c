"""The served-model contract: does what a Triton server says about a model agree with its card?

Pure functions over plain dicts (no I/O, no tritonclient): :func:`normalize_metadata` and
:func:`normalize_config` turn the gRPC (``as_json``) or HTTP renderings into one form, and
:func:`contract_mismatches` lists every difference from a card. The run-stream client
(:class:`tritonkit.client.infer.TritonInfer`) checks it before its first request, and
validation's ``contract.metadata`` check reports it.
"""

from __future__ import annotations

from typing import Any, Mapping

from tritonkit.cards import ModelCard

__all__ = ["normalize_metadata", "normalize_config", "contract_mismatches"]


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
                            "dims": _dims(t.get("dims"))} for t in cfg.get(key, ())}
    return {"name": cfg.get("name", ""), "max_batch_size": int(cfg.get("max_batch_size", 0) or 0),
            "inputs": tensors("input"), "outputs": tensors("output")}


def _dims_match(served: tuple[int, ...], card: tuple[int, ...]) -> bool:
    return len(served) == len(card) and all(a == -1 or b == -1 or a == b for a, b in zip(served, card))


def contract_mismatches(card: ModelCard, metadata: Mapping, config: Mapping, batch_size: int) -> list[str]:
    """Every way the served model (normalized metadata and config) disagrees with ``card``.

    Pure. Checks the card's input and outputs exist with the same datatype and per-sample dims
    (metadata shapes carry a leading -1 batch axis when the model batches), and that
    ``max_batch_size`` allows ``batch_size``.
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
    extra = sorted(set(metadata["inputs"]) - {card.input.name})
    if extra:
        problems.append(f"server expects extra inputs {extra} the card does not describe")
    return problems
