"""Latency vs throughput: one line per batch size (and per serving config), one PNG.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so no global backend is
switched and no display is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tritonkit._lazy import lazy_import
from tritonkit.perf.results import PerfRow, ResultsError

mpl_agg = lazy_import("matplotlib.backends.backend_agg")
mpl_figure = lazy_import("matplotlib.figure")

PLOT_STATS = ("p50", "p90", "p95", "p99")


def latency_series(rows: Sequence[PerfRow], stat: str = "p99") -> dict[str, list[PerfRow]]:
    """The plot's lines: ``name -> points ordered by concurrency``, one per batch size (per
    model/config and batch size when the rows hold several)."""
    if stat not in PLOT_STATS:
        raise ResultsError(f"latency {stat!r} is not in perf_analyzer's CSV ({', '.join(PLOT_STATS)})")
    labels = list(dict.fromkeys(r.label for r in rows))
    series: dict[str, list[PerfRow]] = {}
    for label in labels:
        for bs in sorted({r.batch_size for r in rows if r.label == label}):
            name = f"{label}, bs {bs}" if len(labels) > 1 else f"bs {bs}"
            series[name] = sorted((r for r in rows if r.label == label and r.batch_size == bs),
                                  key=lambda r: r.concurrency)
    return series


def plot_latency_throughput(rows: Sequence[PerfRow], path: str | os.PathLike, *, percentile: int = 99,
                            title: str = "latency vs throughput") -> Path:
    """Write a PNG: x = images/s, y = p``percentile`` latency (ms); points labelled by concurrency.

    ``percentile`` must be one perf_analyzer reports in every CSV (50, 90, 95, 99).
    """

    stat = f"p{percentile}"
    if not rows:
        raise ResultsError("nothing to plot: no measured points")
    series = latency_series(rows, stat)
    fig = mpl_figure.Figure(figsize=(7.5, 4.8), dpi=110)
    mpl_agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, line in series.items():
        xs = [r.img_per_s for r in line]
        ys = [r.latency_ms(stat) for r in line]
        ax.plot(xs, ys, marker="o", label=name)
        for r, x, y in zip(line, xs, ys):
            ax.annotate(f"c{r.concurrency}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("throughput (images/s)")
    ax.set_ylabel(f"{stat} latency per request (ms)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(out)
    return out
