"""List the model cards, or show one card in full (JSON), or print the card file's JSON Schema.

  tritonkit cards                 # table of built-in cards
  tritonkit cards resnet50        # one card as JSON
  tritonkit cards my_card.json    # validate and show a user card file
  tritonkit cards --schema        # the JSON Schema card files follow
"""

from __future__ import annotations

import argparse
import json

from tritonkit.cards import REGISTRY, get_card
from tritonkit.cards.schema import shipped_schema_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="card name or path to a card .json file")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of card files and exit")


def _preprocess_text(pp) -> str:
    if pp.mode == "resize_crop":
        return f"{pp.mode} {pp.resize_to}->{pp.size} {pp.interpolation}"
    if pp.mode == "resize_short":
        return f"{pp.mode} {pp.resize_to} (H, W vary) {pp.interpolation}"
    return f"{pp.mode} {pp.size}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.schema:
        print(shipped_schema_text(), end="")
        return 0
    if args.model:
        print(json.dumps(get_card(args.model).to_dict(), indent=2))
        return 0
    table = Table(title="tritonkit model cards")
    for col in ("name", "task", "input", "preprocess", "postprocess", "outputs", "max batch", "labels"):
        table.add_column(col)
    for c in REGISTRY:
        table.add_row(c.name, c.task, f"{c.input.name} {list(c.input.dims)} {c.input.dtype}",
                      _preprocess_text(c.preprocess), c.postprocess.kind,
                      ", ".join(f"{o.name} {list(o.dims)}" for o in c.outputs), str(c.max_batch_size), c.labels)
    Console().print(table)
    return 0
