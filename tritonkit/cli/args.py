"""Argument types and flag groups shared by several subcommands (not a subcommand itself)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Sequence

from tritonkit.errors import TritonkitError
from tritonkit.tasks.base import ArgSpec


def first_line(doc: str | None) -> str:
    """The first line of a docstring (a subcommand's one-line help); ``""`` for none."""
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def chosen_parsers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """``parser`` and the subcommand parsers ``args`` went through below it."""
    chain = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            chain += chosen_parsers(action.choices[getattr(args, action.dest)], args)
    return chain


def flag_message(exc: TritonkitError, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The error's message with every option field it names (``exc.fields``) shown as the flag
    that sets it in this command line (``limit`` -> ``--limit``)."""
    text = str(exc)
    flags: dict[str, str] = {}
    for p in chosen_parsers(parser, args):
        for action in p._actions:
            if action.option_strings and action.dest not in flags:
                flags[action.dest] = max(action.option_strings, key=len)
    for field in exc.fields:
        if field in flags:
            text = re.sub(rf"(?<![\w/.-]){re.escape(field)}(?![\w/.-])", flags[field], text)
    return text


def int_list(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> ``(1, 4, 8)``; argparse reports anything else as a usage error."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,8, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """An integer >= 1; argparse reports anything else as a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    values = int_list(text)
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


_KINDS = {"str": {}, "path": {"type": Path}, "int": {"type": int}, "float": {"type": float},
          "ints": {"type": positive_int_list}, "choice": {}, "switch": {"action": "store_true"},
          "clear": {"action": "store_true"}, "off": {"action": "store_true"}}


def add_spec_arguments(p: argparse.ArgumentParser, specs: Sequence[ArgSpec]) -> None:
    """argparse arguments from :class:`~tritonkit.tasks.base.ArgSpec` declarations (an options
    dataclass's, :func:`tritonkit.tasks.base.option_arguments`)."""
    for spec in specs:
        kwargs = dict(_KINDS[spec.kind], help=spec.help)
        if spec.sets_value:
            kwargs["default"] = spec.default
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.metavar:
            kwargs["metavar"] = spec.metavar
        p.add_argument(spec.flag, dest=spec.dest, **kwargs)


def spec_options(args: argparse.Namespace, specs: Sequence[ArgSpec]) -> dict:
    """The option fields the ``specs`` flags set: a switch that is on sets its field (``clear``:
    to None, ``off``: to False); a value flag left at None leaves its field's default."""
    out: dict = {}
    for spec in specs:
        value = getattr(args, spec.dest)
        if spec.kind in ("clear", "off"):
            if value:
                out[spec.field] = None if spec.kind == "clear" else False
        elif spec.field not in out and (value is not None or spec.kind == "switch"):
            out[spec.field] = tuple(value) if spec.kind == "ints" else value
    return out
