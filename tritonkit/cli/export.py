"""Export a model card's model to ONNX with a dynamic batch axis (or check and adopt a user ONNX).

Exactly one source:
  --weights FILE.pth   a state dict for the card's arch, built by its registered builder
                       (torchvision:*, timm:gluon_resnet50_v1b as torchvision's ResNet-50, timm:* with
                       timm installed, demo:*); keys and shapes are checked, the export is verified
                       against torch with onnxruntime
  --onnx FILE.onnx     an ONNX you exported (e.g. ultralytics YOLO); checked against the card
                       (tensor names, per-sample dims, dtype, batch axis), then copied; the sidecar
                       records it as adopted, with its sha256
  --random-weights     an untrained model, for plumbing and timing only (accuracy is meaningless)

Writes <out>/<name>.onnx and the sidecar <out>/<name>.json (source and sha256, opset, params,
FLOPs per image and how they were counted, ONNX sha256 and size).

  tritonkit export --model resnet50 --weights resnet50-0676ba61.pth --out build/onnx
  tritonkit export --model yolov5s --onnx yolov5s.onnx --out build/onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tritonkit.demo  # noqa: F401  (registers the demo archs' export builders)
from tritonkit.cards import get_card
from tritonkit.cli.tables import print_json, print_tables
from tritonkit.export import ExportResult, export_model
from tritonkit.io import ensure_out_dir
from tritonkit.names import safe_child
from tritonkit.report import TextTable


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="NAME|CARD.json", help="built-in card name or a card JSON file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, metavar="FILE.pth|DIR",
                     help="state dict file for the card's arch, or a folder holding the card's weights_file")
    src.add_argument("--onnx", type=Path, metavar="FILE.onnx", help="an existing ONNX to check and adopt")
    src.add_argument("--random-weights", action="store_true",
                     help="export untrained weights (accuracy meaningless; recorded in the sidecar)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset for torch exports (>= 17; default 17)")
    p.add_argument("--json", action="store_true", help="print the export result as JSON instead of a table")


def _flops_text(result: ExportResult) -> str:
    if result.macs_per_image is None:
        return f"FLOPs {result.flops_method}"
    return (f"{result.macs_per_image / 1e9:.3f} GMACs = {result.flops_per_image / 1e9:.3f} GFLOPs "
            f"({result.flops_method})")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    card = get_card(args.model)
    if args.random_weights:
        Console(stderr=True).print(
            f"[bold red]WARNING: exporting {card.name!r} with RANDOM weights (--random-weights): every accuracy "
            f"number measured with this model is meaningless. Use it for plumbing and timing only.[/]")
    safe_child(args.out, f"{card.name}.onnx", "card name")
    ensure_out_dir(args.out, "--out")
    result = export_model(card, args.out, weights=args.weights, onnx=args.onnx,
                          random_weights=args.random_weights, opset=args.opset)
    if args.json:
        print_json(result.to_dict())
        return 0
    print_tables([export_table(card.name, result)])
    return 0


def export_table(name: str, result: ExportResult) -> TextTable:
    """What was written (the paths whole: they go into the next command) and what it measured."""
    source = result.source
    kind = "adopted ONNX" if source.get("adopted") else source["kind"]
    rows = [("source", kind + (f" {source['file']}" if "file" in source else "")),
            ("onnx", str(result.onnx_path)),
            ("onnx size", f"{result.size_mb:.2f} MB, sha256 {result.onnx_sha256}"),
            ("sidecar", str(result.sidecar_path)), ("opset", str(result.opset)), ("params", f"{result.params:,}"),
            ("per image", _flops_text(result))]
    if result.max_abs_diff is not None:
        rows.append(("onnxruntime vs torch", f"max abs diff {result.max_abs_diff:.2e} (batch 2)"))
    if result.random_weights:
        rows.append(("weights", "RANDOM: accuracy is meaningless"))
    return TextTable(f"export {name}", ("field", "value"), tuple(rows), keys=(0, 1))
