"""A sweep's files: sweep.csv, sweep.md and points.json (rewritten after every point), the plot.

``sweep.csv`` holds every finished point (:func:`tritonkit.perf.results.write_rows_csv`),
``sweep.md`` the report tables, the points not measured and the points measured again,
``points.json`` the spec and the status of every point; each is written atomically, so a sweep
interrupted at any moment leaves readable files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tritonkit.perf.plot import plot_latency_throughput
from tritonkit.perf.results import failures_markdown, sweep_tables, write_markdown, write_rows_csv
from tritonkit.perf.spec import PerfSpec
from tritonkit.report import write_json

if TYPE_CHECKING:  # the sweep's own types; it imports this module to write its files
    from tritonkit.perf.sweep import PointResult, SweepResult

PLOTTED_PERCENTILES = (50, 90, 95, 99)


def write_sweep_files(result: SweepResult) -> None:
    """(Re)write sweep.csv, sweep.md and points.json from the points so far, atomically."""
    rows = result.rows
    write_rows_csv(rows, result.merged_csv)
    extra = failures_markdown([p.to_json() for p in result.points if not p.ok]) + retries_markdown(result.points)
    write_markdown(result.markdown, sweep_tables(rows), title=f"perf sweep: {result.spec.model}",
                   preamble=settings_line(result.spec, result.batch_sizes, result.real_data.label if result.real_data else None),
                   epilogue=extra)
    status = {"spec": result.spec.to_dict(), "batch_sizes": list(result.batch_sizes),
              "input_data": result.real_data.to_dict() if result.real_data else result.spec.input_data,
              "stopped_reason": result.stopped_reason, "points": [p.to_json() for p in result.points]}
    write_json(result.status_json, status)


def write_sweep_plot(result: SweepResult) -> Path:
    """latency_throughput.png of the finished points (the spec's percentile when it has one, else p99)."""
    spec = result.spec
    shown = spec.percentile if spec.percentile in PLOTTED_PERCENTILES else 99
    return plot_latency_throughput(result.rows, result.out_dir / "latency_throughput.png", percentile=shown,
                                   title=f"{spec.model} ({spec.protocol})")


def retries_markdown(points: Sequence[PointResult]) -> str:
    """The sweep.md section listing the points measured more than once ("" when none was)."""
    retried = [p for p in points if p.retries]
    if not retried:
        return ""
    lines = [f"- bs {p.batch_size}, concurrency {p.concurrency}: measured {p.attempts} times "
             f"({', '.join(p.retried_for)}; windows doubled each time), {p.seconds:.1f} s in all" for p in retried]
    return "\n### points measured again\n\n" + "\n".join(lines) + "\n"


def settings_line(spec: PerfSpec, sizes: Sequence[int], input_label: str | None = None) -> str:
    """One sentence saying how the sweep measured (the reports' preamble); ``input_label`` says
    what the input data was when it was real images (default: perf_analyzer's ``--input-data``)."""
    how = (f"time windows of {spec.measurement_interval_ms} ms" if spec.measurement_mode == "time_windows"
           else f"count windows of >= {spec.measurement_request_count} requests")
    stab = f"p{spec.percentile}" if spec.percentile else "average latency"
    shapes = f", input shape {' '.join(map(str, spec.input_shapes))}" if spec.input_shapes else ""
    return (f"perf_analyzer, {spec.protocol} at {spec.url}, batch sizes {', '.join(map(str, sizes))}, "
            f"concurrency {spec.concurrency}, {how}, stable within {spec.stability_pct:g}% on {stab}, "
            f"shared memory {spec.shared_memory}, input data {input_label or spec.input_data}{shapes}.")
