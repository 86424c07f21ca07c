"""Result tables in the terminal (rich): the library builds TextTables, the CLI shows them."""

from __future__ import annotations

from typing import Sequence

from tritonkit._lazy import lazy_import
from tritonkit.perf.results import TextTable

rich_console = lazy_import("rich.console")
rich_tables = lazy_import("rich.table")


def rich_table(table: TextTable):
    """``table`` as a ``rich.table.Table``: first column left-aligned, the numbers right-aligned."""
    out = rich_tables.Table(title=table.title, caption=table.note or None)
    for i, h in enumerate(table.headers):
        out.add_column(h, justify="left" if i == 0 else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


def print_tables(tables: Sequence[TextTable], console=None) -> None:
    """Print each table to ``console`` (a ``rich.console.Console``; default: a new one on stdout)."""
    console = console or rich_console.Console()
    for t in tables:
        console.print(rich_table(t))
