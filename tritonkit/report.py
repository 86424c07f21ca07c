"""Report helpers shared by the commands: atomic JSON, markdown tables, the classification table.

* :func:`write_json` / :func:`write_text` write to a temporary file beside the target and
  rename it into place, so a crash never leaves a half-written report.
* :func:`markdown_table` renders a GitHub markdown table (``None`` -> ``-``, floats rounded).
* :func:`classification_markdown` renders the seed-style table: one row per model, run model
  and run stream ms per batch for each batch size, then top1 / top5.
"""

from __future__ import annotations

import math
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


def fmt(value: Any, digits: int = 2) -> str:
    """Cell text: ``None`` -> ``-``, floats with ``digits`` decimals, the rest ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub markdown table. Every row must have as many cells as ``headers``."""
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells, expected {len(headers)}")
    lines = ["| " + " | ".join(fmt(h) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def classification_rows(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for classification results (each the dict written to classification.json).

    Columns: model, then ``run model bs{N} (ms)`` for every batch size seen, ``run stream bs{N}
    (ms)``, then top1 / top5 in percent.
    """
    sizes = sorted({int(r["batch_size"]) for res in results for r in res.get("batch_timing", [])})
    headers = ["model"] + [f"run model bs{b} (ms)" for b in sizes] + [f"run stream bs{b} (ms)" for b in sizes] \
        + ["top1 (%)", "top5 (%)"]
    rows = []
    for res in results:
        by_bs = {int(r["batch_size"]): r for r in res.get("batch_timing", [])}
        rows.append([res.get("model")]
                    + [by_bs.get(b, {}).get("run_model_ms") for b in sizes]
                    + [by_bs.get(b, {}).get("run_stream_ms") for b in sizes]
                    + [_pct(res.get("top1")), _pct(res.get("top5"))])
    return headers, rows


def classification_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of one ``tritonkit eval classify`` run."""
    headers, rows = classification_rows([result])
    parts = [f"# Classification: {result.get('model')}\n",
             f"{result.get('images', 0)} images evaluated through Triton ({result.get('protocol', '')} "
             f"{result.get('url', '')}), {len(result.get('errors', []))} excluded (unreadable or not an image), "
             f"{len(result.get('notes', []))} converted to RGB.\n",
             markdown_table(headers, rows)]
    acc = [["top1 (%)", _pct(result.get("top1")), _pct(result.get("reference_top1"))],
           ["top5 (%)", _pct(result.get("top5")), _pct(result.get("reference_top5"))]]
    if "reference_top1" in result:
        parts += ["\n## Served vs in-process onnxruntime\n",
                  markdown_table(["metric", "through Triton", "onnxruntime in-process"], acc, digits=3)]
    lat = result.get("latency") or {}
    parts += ["\n## Stream metrics (accuracy run)\n",
              markdown_table(["e2e_time (s)", "p_infer_whole (img/s)", "p_infer_core (img/s)",
                              "latency mean (ms)", "p50", "p90", "p99"],
                             [[result.get("e2e_time"), result.get("p_infer_whole"), result.get("p_infer_core"),
                               lat.get("mean"), lat.get("p50"), lat.get("p90"), lat.get("p99")]])]
    stages = result.get("stages") or {}
    if stages:
        parts += ["\n## Stage times\n",
                  markdown_table(["stage", "total (s)", "ms per image"],
                                 [[name, s.get("total_s"), s.get("ms_per_image")] for name, s in stages.items()],
                                 digits=3)]
    bt = result.get("batch_timing") or []
    if bt:
        parts += ["\n## Run model vs run stream\n",
                  markdown_table(["batch size", "images", "run model (ms/batch)", "run model (img/s)",
                                  "run stream (ms/batch)", "run stream (img/s)"],
                                 [[r["batch_size"], r["images"], r["run_model_ms"], r["run_model_img_s"],
                                   r["run_stream_ms"], r["run_stream_img_s"]] for r in bt])]
    return "".join(parts)
