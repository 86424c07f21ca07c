"""Report helpers shared by the commands: atomic JSON, markdown tables, the eval report sections.

* :func:`write_json` / :func:`write_text` write to a temporary file beside the target and
  rename it into place, so a crash never leaves a half-written report.
* :func:`markdown_table` renders a GitHub markdown table (``None`` -> ``-``, floats rounded);
  every cell goes through :func:`fmt`, which escapes text (:func:`escape_text`) so that a file
  name with a newline, a ``|`` or bytes that are not UTF-8 stays in its cell and the report
  stays valid UTF-8 (the JSON reports keep the exact name: ``\\udcff`` escapes round-trip).
* :class:`TextTable`: a finished table of strings (markdown, CSV, JSON rows); the CLI shows it in
  the terminal (:func:`tritonkit.cli.tables.print_tables`) without ever cutting a cell.
* :func:`stream_markdown` / :func:`files_markdown`: the sections every eval report shares (each
  task's own section is its ``Task.markdown``, in :mod:`tritonkit.tasks`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from tritonkit.io import atomic_write_json, atomic_write_text


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically (temp file in the same folder, then rename)."""
    return atomic_write_text(path, text)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically; numpy values, Paths and ``to_dict()`` objects
    are converted; NaN/inf become ``null`` (strict JSON)."""
    return atomic_write_json(path, obj)


_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff|]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "|": "\\|"}


def _escape_char(match: re.Match) -> str:
    c = match.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """``text`` as one line of valid UTF-8 for a markdown cell: newline, tab and other control
    characters as ``\\n``, ``\\t``, ``\\xNN``; a byte of a non-UTF-8 file name (Python's
    surrogate escape) as ``\\xNN``; ``|`` as ``\\|``."""
    return _UNSAFE.sub(_escape_char, text)


def fmt(value: Any, digits: int = 2) -> str:
    """Cell text: ``None`` -> ``-``, floats with ``digits`` decimals, the rest ``str``, escaped
    (:func:`escape_text`)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}f}"
    return escape_text(str(value))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub markdown table. Every row must have as many cells as ``headers``."""
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells, expected {len(headers)}")
    lines = ["| " + " | ".join(fmt(h) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TextTable:
    """A finished table of strings: written as markdown and CSV, printed as JSON rows, shown in the
    terminal by :func:`tritonkit.cli.tables.print_tables`. ``keys``: the columns holding values a
    user copies into a command (names, paths): the terminal never wraps or cuts those."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    keys: tuple[int, ...] = (0,)

    def markdown(self) -> str:
        """The table as a GitHub markdown section (title, table, note)."""
        parts = [f"### {self.title}", "", markdown_table(self.headers, self.rows).rstrip("\n")]
        if self.note:
            parts += ["", self.note]
        return "\n".join(parts) + "\n"

    def csv_text(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.headers)
        writer.writerows(self.rows)
        return buf.getvalue()

    def records(self) -> list[dict[str, str]]:
        """One ``{header: cell}`` dict per row."""
        return [dict(zip(self.headers, row)) for row in self.rows]

    def to_dict(self) -> dict:
        """The ``--json`` form of a table: title, headers, rows as ``{header: cell}``, note."""
        return {"title": self.title, "headers": list(self.headers), "rows": self.records(), "note": self.note}


def pct(x: float | None) -> float | None:
    """A fraction as a percentage (``None`` stays ``None``)."""
    return None if x is None else 100.0 * x


def pct_text(x: float | None) -> str:
    """A fraction as percent text for a summary line: ``0.7613`` -> ``76.13%``, None -> ``-``."""
    return "-" if x is None else f"{100 * x:.2f}%"


# The run model / run stream columns of every eval report (one row of ``batch_timing`` each) and
# the line saying how each is measured (tritonkit.client.timing has the definitions).
TIMING_HEADERS = ("run model (ms/batch)", "run model (img/s)", "run stream latency p50 (ms/batch)",
                  "run stream latency p99 (ms/batch)", "run stream throughput (img/s)")
TIMING_MEASURED = (
    "Run model: batches sent one at a time, request sent -> outputs decoded, mean ms per batch. Run stream "
    "latency: each batch of the stream (decode workers, several requests in flight) from the moment its first "
    "image starts to decode to the end of its postprocess, p50 / p99 over the batches. Run stream throughput: "
    "images / wall time of the whole stream (with batches overlapping it is more than batch size / latency).")


def timing_cells(row: Mapping[str, Any]) -> list[Any]:
    """The :data:`TIMING_HEADERS` cells of one ``batch_timing`` row (``None`` where not measured,
    e.g. latency in a result written before it was recorded)."""
    return [row.get("run_model_ms"), row.get("run_model_img_s"), row.get("run_stream_latency_p50_ms"),
            row.get("run_stream_latency_p99_ms"), row.get("run_stream_img_s")]


def stream_markdown(result: Mapping[str, Any], stages: bool = True) -> str:
    """The report sections every eval has, from its result dict: the FlagPerf stream metrics of
    the accuracy run and (``stages``) the per-stage times."""
    lat = result.get("latency") or {}
    parts = ["\n## Stream metrics (accuracy run)\n\n",
             markdown_table(["e2e_time (s)", "p_infer_whole (img/s)", "p_infer_core (img/s)",
                             "latency mean (ms)", "p50", "p90", "p99"],
                            [[result.get("e2e_time"), result.get("p_infer_whole"), result.get("p_infer_core"),
                              lat.get("mean"), lat.get("p50"), lat.get("p90"), lat.get("p99")]])]
    if result.get("run_notes"):
        parts += ["\n## Run notes\n\n"] + [f"- {escape_text(str(note))}\n" for note in result["run_notes"]]
    stage_times = (result.get("stages") or {}) if stages else {}
    if stage_times:
        parts += ["\n## Stage times\n\n",
                  markdown_table(["stage", "total (s)", "ms per image"],
                                 [[name, s.get("total_s"), s.get("ms_per_image")] for name, s in stage_times.items()],
                                 digits=3)]
    return "".join(parts)


def files_markdown(errors: Sequence[Mapping[str, Any]] | None, notes: Sequence[Mapping[str, Any]] | None) -> str:
    """The report's list of every excluded file (path and reason) and every converted one."""
    parts = []
    if errors:
        parts += [f"\n## Excluded files ({len(errors)}, not evaluated)\n\n",
                  markdown_table(["path", "reason"], [[e["path"], e["reason"]] for e in errors])]
    if notes:
        parts += [f"\n## Converted files ({len(notes)}, evaluated)\n\n",
                  markdown_table(["path", "note"], [[n["path"], n["note"]] for n in notes])]
    return "".join(parts)
