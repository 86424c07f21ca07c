"""Several endpoints: perf_analyzer measures one server (``-u`` takes one address), so a URL
naming several (a comma list, or a DNS name with several addresses such as a headless
Service) gets one whole sweep per endpoint, one after another, and a side-by-side summary.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from tritonkit.client.endpoints import resolve_endpoints
from tritonkit.errors import ServerError
from tritonkit.perf.report import settings_line
from tritonkit.perf.spec import PerfSpec
from tritonkit.perf.sweep import SweepOptions, SweepResult, run_sweep
from tritonkit.report import markdown_table, write_json, write_text
from tritonkit.triton import DEFAULT_PORTS


@dataclass
class EndpointSweeps:
    """One sweep per endpoint, one after another: ``results`` by endpoint, ``unreachable``
    (endpoint -> why no point ran there), and the side-by-side summary written to ``out``."""

    results: dict[str, SweepResult]
    unreachable: dict[str, str]
    markdown: Path | None = None
    summary_json: Path | None = None


def endpoint_folder(address: str) -> str:
    """``10.0.0.5:8001`` -> ``10.0.0.5_8001`` (an output folder name)."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in address).strip("_")


def endpoint_addresses(spec: PerfSpec) -> list[str]:
    """The endpoints ``spec.url`` names (a comma list, or a DNS name with several addresses)."""
    return resolve_endpoints(spec.url, DEFAULT_PORTS[spec.protocol])


def run_endpoint_sweeps(spec: PerfSpec, out_dir: str | os.PathLike, options: SweepOptions = SweepOptions(), *,
                        on_endpoint: Callable[[str, Path], None] | None = None) -> EndpointSweeps:
    """:func:`run_sweep` for every endpoint of ``spec.url``, sequentially, each into
    ``<out>/<host_port>/`` (its own sweep.csv: one replica's capacity, what ``deploy capacity``
    takes). Sequential, not at once: perf_analyzer's latencies describe one server under the
    load it alone generates; concurrent sweeps would measure the client host as much as the
    fleet. An endpoint that is not ready is reported and the others are still measured.
    Writes ``<out>/endpoints.md`` and ``<out>/endpoints.json`` comparing the endpoints."""
    out = Path(out_dir)
    sweeps = EndpointSweeps({}, {})
    for address in endpoint_addresses(spec):
        folder = out / endpoint_folder(address)
        if on_endpoint is not None:
            on_endpoint(address, folder)
        try:
            sweeps.results[address] = run_sweep(replace(spec, url=address), folder, options)
        except ServerError as exc:
            sweeps.unreachable[address] = str(exc)
    out.mkdir(parents=True, exist_ok=True)
    _write_summary(sweeps, spec, options.batch_sizes or (spec.batch_size,), out)
    return sweeps


def _write_summary(sweeps: EndpointSweeps, spec: PerfSpec, sizes: Sequence[int], out: Path) -> None:
    """endpoints.json and endpoints.md: the endpoints side by side."""
    rows = endpoint_rows(sweeps)
    sweeps.summary_json = write_json(out / "endpoints.json", {"spec": spec.to_dict(),
                                                               "endpoints": [r.to_dict() for r in rows]})
    sweeps.markdown = write_text(out / "endpoints.md", (
        f"# perf sweep per endpoint: {spec.model}\n\nperf_analyzer measures one server at a time: each endpoint "
        f"was swept on its own, one after another, into a folder named after it (its sweep.csv is one replica's "
        f"capacity). {settings_line(spec, sizes)}\n\n"
        + markdown_table(
            ["endpoint", "batch size", "best img/s", "at concurrency", "p99 there (ms)", "failed points", "note"],
            [r.cells() for r in rows])))


@dataclass(frozen=True)
class EndpointRow:
    """One endpoint at one batch size: the best throughput, its concurrency and p99, failures
    (``batch_size`` None: the endpoint was not measured; ``note`` says why)."""

    endpoint: str
    batch_size: int | None = None
    best_img_per_s: float | None = None
    concurrency: int | None = None
    p99_ms: float | None = None
    failed_points: int | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def cells(self) -> list:
        return list(self.to_dict().values())


def endpoint_rows(sweeps: EndpointSweeps) -> list[EndpointRow]:
    """Per endpoint and batch size: the best throughput, its concurrency and p99, failures."""
    rows: list[EndpointRow] = []
    for address, result in sweeps.results.items():
        for b in result.batch_sizes:
            mine = [r for r in result.rows if r.batch_size == b]
            best = max(mine, key=lambda r: r.img_per_s) if mine else None
            rows.append(EndpointRow(address, b, round(best.img_per_s, 1) if best else None,
                                    best.concurrency if best else None,
                                    round(best.p99_us / 1000, 2) if best else None, len(result.failed),
                                    result.stopped_reason))
    rows += [EndpointRow(address, note=why) for address, why in sweeps.unreachable.items()]
    return rows
