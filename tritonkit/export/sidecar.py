"""The export sidecar ``<out>/<name>.json``: what an ONNX was made from and what it measures.

Not to be confused with the plan sidecar of :mod:`tritonkit.build_engines.sidecar`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from tritonkit import __version__
from tritonkit.cards import ModelCard
from tritonkit.export.builders import ExportError

SIDECAR_SCHEMA = 2  # 2: adopted graphs say so and claim no arch; unknown FLOPs are null


def export_sidecar(card: ModelCard, result, extra: dict) -> dict:
    """The sidecar of ``result`` (an :class:`~tritonkit.export.export.ExportResult`).

    ``arch`` is the builder the graph was built with, ``None`` for an adopted ONNX (the graph
    was not built here, so the card's arch is not claimed)."""
    adopted = bool(result.source.get("adopted"))
    d = {
        "schema": SIDECAR_SCHEMA,
        "card": card.name,
        "arch": None if adopted else card.arch,
        "adopted": adopted,
        "source": result.source,
        "random_weights": result.random_weights,
        "opset": result.opset,
        "input": {"name": card.input.name, "shape": ["batch", *card.input.dims], "dtype": card.input.dtype},
        "outputs": [{"name": o.name, "shape": ["batch", *o.dims], "dtype": o.dtype} for o in card.outputs],
        "params": result.params,
        "macs_per_image": result.macs_per_image,
        "flops_per_image": result.flops_per_image,
        "gflops_per_image": None if result.flops_per_image is None else round(result.flops_per_image / 1e9, 4),
        "flops_method": result.flops_method,
        "onnx_file": result.onnx_path.name,
        "onnx_sha256": result.onnx_sha256,
        "size_mb": result.size_mb,
        "tritonkit_version": __version__,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    d.update(extra)
    return d


def read_export_sidecar(path: str | Path) -> dict:
    """An export sidecar as a dict (errors name the file)."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ExportError(f"{p}: export sidecar not found") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{p}: export sidecar is not valid JSON ({exc.msg})") from None


__all__ = ["SIDECAR_SCHEMA", "export_sidecar", "read_export_sidecar"]
