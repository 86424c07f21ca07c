"""List the model cards, or show one card in full (JSON), or print the card file's JSON Schema.

  tritonkit cards                        # table of built-in cards
  tritonkit cards --json                 # every built-in card as JSON (a list, the table's cards in its order)
  tritonkit cards resnet50 --json        # one card as JSON: the start of your own card file
  tritonkit cards my_card.json           # validate and show a user card file
  tritonkit cards --schema               # the JSON Schema card files follow
  tritonkit cards --from-onnx m.onnx     # a card drafted from an ultralytics detect export
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonkit.cards import REGISTRY, get_card
from tritonkit.cards.schema import shipped_schema_text
from tritonkit.cli.tables import print_json, print_tables
from tritonkit.export.onnx_card import detect_card, read_graph
from tritonkit.report import TextTable

COLUMNS = ("name", "task", "input", "preprocess", "postprocess", "outputs", "max batch", "labels")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="card name or path to a card .json file")
    p.add_argument("--json", action="store_true",
                   help="print JSON (with NAME: that card, a valid card file to copy and edit; without: every card)")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of card files and exit")
    p.add_argument("--from-onnx", metavar="MODEL.onnx",
                   help="print a card drafted from an ultralytics detect ONNX export (class names written "
                        "beside it as MODEL.names.txt)")
    p.add_argument("--name", help="with --from-onnx: the card's name (default: the file's stem)")


def _preprocess_text(pp) -> str:
    if pp.mode == "resize_crop":
        return f"{pp.mode} {pp.resize_to}->{pp.size} {pp.interpolation}"
    if pp.mode == "resize_short":
        return f"{pp.mode} {pp.resize_to} (H, W vary) {pp.interpolation}"
    return f"{pp.mode} {pp.size}"


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(shipped_schema_text(), end="")
        return 0
    if args.from_onnx:
        graph = read_graph(args.from_onnx)
        print_json(detect_card(graph, args.name or Path(args.from_onnx).stem).to_dict())
        return 0
    if args.model:  # one card is always shown as JSON
        print_json(get_card(args.model).to_dict())
        return 0
    if args.json:
        print_json([c.to_dict() for c in REGISTRY])
        return 0
    print_tables([cards_table()])
    return 0


def cards_table() -> TextTable:
    """The built-in cards, one row each; the name and the labels set are values users type."""
    rows = tuple((c.name, c.task, f"{c.input.name} {list(c.input.dims)} {c.input.dtype}",
                  _preprocess_text(c.preprocess), c.postprocess.kind,
                  ", ".join(f"{o.name} {list(o.dims)}" for o in c.outputs), str(c.max_batch_size), str(c.labels))
                 for c in REGISTRY)
    return TextTable("tritonkit model cards", COLUMNS, rows, keys=(0, 7))
