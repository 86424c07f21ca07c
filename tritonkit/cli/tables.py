"""Tables on stdout: the library builds TextTables, the CLI shows them, and never cuts a cell.

On a terminal a table is drawn with rich: the key columns (names, paths: what a user copies into
a command) are never wrapped, the others fold onto more lines instead of being cut. If the
terminal is too narrow for the key columns to stay whole, or stdout is not a terminal (a pipe,
a file), the table is printed as plain markdown, one row per line, so `tritonkit cards | grep
yolo` finds whole names whatever COLUMNS says. Listing commands take ``--json`` (:func:`print_json`).
"""

from __future__ import annotations

import io
from typing import Any, Sequence

from tritonkit._lazy import lazy_import
from tritonkit.io import to_json_text
from tritonkit.report import TextTable

rich_console = lazy_import("rich.console")
rich_tables = lazy_import("rich.table")
rich_text = lazy_import("rich.text")


def _numeric(cells: Sequence[str]) -> bool:
    return bool(cells) and all(c[:1].isdigit() or c[:1] in "-—" for c in cells)


def rich_table(table: TextTable):
    """``table`` as a ``rich.table.Table``: number columns right-aligned, the rest left; key columns
    never wrapped, the others wrapped at spaces (no narrower than their longest word, 16 at most)
    and folded rather than cut. Cells are plain text (a ``[`` in a name is not rich markup)."""
    out = rich_tables.Table(title=table.title, caption=table.note or None)
    for i, h in enumerate(table.headers):
        cells = [row[i] for row in table.rows]
        if i in table.keys:
            width = max(len(h), *(len(c) for c in cells))
        else:
            width = min(16, max(len(w) for text in (h, *cells) for w in (text.split() or [""])))
        out.add_column(h, justify="right" if i and _numeric(cells) else "left", no_wrap=i in table.keys,
                       overflow="fold", min_width=width)
    for row in table.rows:
        out.add_row(*(rich_text.Text(cell) for cell in row))
    return out


def cli_console(stderr: bool = False):
    """The CLI's console for its lines: ``soft_wrap`` so a long path or name is never broken
    across lines (a terminal wraps it on screen, a pipe gets it whole on one line)."""
    return rich_console.Console(stderr=stderr, soft_wrap=True)


def _fits(table: TextTable, drawn, width: int) -> bool:
    """Whether ``drawn`` (a rich table of ``table``) shows every key cell whole at ``width``."""
    probe = rich_console.Console(file=io.StringIO(), width=width, color_system=None)
    probe.print(drawn)
    lines = probe.file.getvalue().splitlines()
    return all(any(row[i] in line for line in lines) for row in table.rows for i in table.keys)


def print_tables(tables: Sequence[TextTable], console=None) -> None:
    """Print each table to ``console`` (a ``rich.console.Console``; default: a new one on stdout):
    drawn on a terminal wide enough for the key columns, plain markdown otherwise."""
    out = console or cli_console()
    for t in tables:
        drawn = rich_table(t)
        if out.is_terminal and _fits(t, drawn, out.width):
            out.print(drawn, soft_wrap=False)
        else:
            out.print(t.markdown(), markup=False, highlight=False, soft_wrap=True)


def show_tables(tables: Sequence[TextTable], console=None, as_json: bool = False) -> None:
    """``--json``: the tables as one JSON list on stdout; otherwise :func:`print_tables`."""
    if as_json:
        print_json([t.to_dict() for t in tables])
    else:
        print_tables(tables, console)


def print_json(obj: Any) -> None:
    """``obj`` (plain data, numpy values, ``to_dict()`` objects) as indented strict JSON on stdout:
    the ``--json`` form of a listing."""
    print(to_json_text(obj), end="")


def json_flag(p) -> None:
    """The ``--json`` flag of a listing command (an ``argparse`` parser or group)."""
    p.add_argument("--json", action="store_true",
                   help="print the tables as JSON on stdout (title, headers, rows, note); progress goes to stderr")
