"""List the model cards, or show one card in full (JSON).

  tritonkit cards                 # table of built-in cards
  tritonkit cards resnet50        # one card as JSON
  tritonkit cards my_card.json    # validate and show a user card file
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="card name or path to a card .json file")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tritonkit.cards import REGISTRY, get_card

    console = Console()
    if args.model:
        print(json.dumps(get_card(args.model).to_dict(), indent=2))
        return 0
    table = Table(title="tritonkit model cards")
    for col in ("name", "task", "input", "preprocess", "outputs", "max batch", "labels"):
        table.add_column(col)
    for c in REGISTRY:
        pp = c.preprocess
        pre = f"{pp.mode} {pp.resize_to}->{pp.size} {pp.interpolation}" if pp.mode == "resize_crop" \
            else f"{pp.mode} {pp.size}"
        table.add_row(c.name, c.task, f"{c.input.name} {list(c.input.dims)} {c.input.dtype}", pre,
                      ", ".join(f"{o.name} {list(o.dims)}" for o in c.outputs), str(c.max_batch_size), c.labels)
    console.print(table)
    return 0
