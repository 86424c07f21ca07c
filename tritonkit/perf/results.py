"""perf_analyzer CSVs -> typed rows -> tables (terminal, markdown, CSV).

perf_analyzer's ``-f`` CSV has one line per concurrency level. Its columns (µs, except the
throughput) are, with and without ``--verbose-csv`` / ``--percentile``::

    Concurrency, Inferences/Second, Client Send, Network+Server Send/Recv, Server Queue,
    Server Compute Input, Server Compute Infer, Server Compute Output, Client Recv,
    p50 latency, p90 latency, p95 latency, p99 latency
    [--verbose-csv: Avg latency (absent when --percentile is given), request/response, response wait]

The latency split (client send ... client recv) is built by perf_analyzer to add up to the
average client latency; when the CSV has no ``Avg latency`` column the row's average is that
sum (``avg_measured`` False says so).

"Inferences/Second" counts every sample of a batch (requests/s x batch size), so for image
models it is images per second; requests per second is that divided by the batch size.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tritonkit.errors import TritonkitError
from tritonkit.io import atomic_write_text
from tritonkit.report import TextTable, fmt, markdown_table

STATS = ("avg", "p50", "p90", "p95", "p99")
COLUMN_UNITS = ("text", "int", "bool", "rate", "us")


class ResultsError(TritonkitError):
    """A perf_analyzer CSV that cannot be read as expected."""


@dataclass(frozen=True)
class LatencySplit:
    """Where the average request time goes (µs), as perf_analyzer splits it."""

    client_send_us: float
    network_us: float            # network + server send/recv (gRPC/HTTP framing, (de)serialisation)
    server_queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    client_recv_us: float

    def total_us(self) -> float:
        return (self.client_send_us + self.network_us + self.server_queue_us + self.compute_input_us
                + self.compute_infer_us + self.compute_output_us + self.client_recv_us)

    @property
    def server_compute_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us


@dataclass(frozen=True)
class PerfRow:
    """One measured point: a model at one batch size and concurrency."""

    model: str
    batch_size: int
    concurrency: int
    infer_per_s: float           # perf_analyzer's Inferences/Second: samples (images) per second
    avg_us: float
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    split: LatencySplit
    avg_measured: bool = True    # False: avg is the sum of the split (CSV without "Avg latency")
    protocol: str = ""
    shared_memory: str = "none"

    @property
    def img_per_s(self) -> float:
        return self.infer_per_s

    @property
    def req_per_s(self) -> float:
        return self.infer_per_s / self.batch_size

    def latency_us(self, stat: str) -> float:
        if stat not in STATS:
            raise ResultsError(f"latency statistic {stat!r} not one of {', '.join(STATS)}")
        return getattr(self, f"{stat}_us")

    def latency_ms(self, stat: str) -> float:
        return self.latency_us(stat) / 1000.0

    @property
    def config(self) -> str:
        """How it was served, for labels: ``grpc``, ``http+shm`` ..."""
        label = self.protocol or "?"
        return label + ("+shm" if self.shared_memory == "system" else
                        "+cudashm" if self.shared_memory == "cuda" else "")

    @property
    def label(self) -> str:
        return f"{self.model} ({self.config})" if self.protocol else self.model


@dataclass(frozen=True)
class Column:
    """One quantity of a measured point, in every form it takes.

    ``name`` is its column in our merged CSV (sweep.csv), ``attr`` the :class:`PerfRow`
    attribute it is (``split.<x>``: of the row's :class:`LatencySplit`), ``unit`` how it is
    written: ``text``, ``int``, ``bool``, ``rate`` (per second, 3 decimals) or ``us``
    (microseconds in the row, milliseconds in the CSV, 4 decimals). ``analyzer`` is
    perf_analyzer's ``-f`` CSV header for it (None: perf_analyzer does not report it);
    ``optional``: perf_analyzer may leave that column out; ``derived``: computed from the
    others, written but not read back.
    """

    name: str
    attr: str
    unit: str
    analyzer: str | None = None
    optional: bool = False
    derived: bool = False

    def __post_init__(self) -> None:
        if self.unit not in COLUMN_UNITS:
            raise ValueError(f"column {self.name!r}: unit {self.unit!r} not one of {', '.join(COLUMN_UNITS)}")

    def value(self, row: PerfRow):
        """The row's value (µs for a ``us`` column)."""
        owner = row.split if self.attr.startswith("split.") else row
        return getattr(owner, self.attr.removeprefix("split."))

    def cell(self, row: PerfRow):
        """The merged CSV's value for ``row``."""
        value = self.value(row)
        if self.unit == "us":
            return round(value / 1000.0, 4)
        return round(value, 3) if self.unit == "rate" else value

    def parse(self, text: str):
        """The row's value from the merged CSV's text (ValueError when it is not one)."""
        if self.unit == "us":
            return float(text) * 1000.0
        if self.unit == "rate":
            return float(text)
        if self.unit == "int":
            return int(text)
        return text == "True" if self.unit == "bool" else text


COLUMNS = (
    Column("model", "model", "text"),
    Column("protocol", "protocol", "text"),
    Column("shared_memory", "shared_memory", "text"),
    Column("batch_size", "batch_size", "int"),
    Column("concurrency", "concurrency", "int", "Concurrency"),
    Column("img_per_s", "infer_per_s", "rate", "Inferences/Second"),
    Column("req_per_s", "req_per_s", "rate", derived=True),
    Column("avg_ms", "avg_us", "us", "Avg latency", optional=True),  # absent with --percentile
    Column("p50_ms", "p50_us", "us", "p50 latency"),
    Column("p90_ms", "p90_us", "us", "p90 latency"),
    Column("p95_ms", "p95_us", "us", "p95 latency"),
    Column("p99_ms", "p99_us", "us", "p99 latency"),
    Column("client_send_ms", "split.client_send_us", "us", "Client Send"),
    Column("network_ms", "split.network_us", "us", "Network+Server Send/Recv"),
    Column("server_queue_ms", "split.server_queue_us", "us", "Server Queue"),
    Column("compute_input_ms", "split.compute_input_us", "us", "Server Compute Input"),
    Column("compute_infer_ms", "split.compute_infer_us", "us", "Server Compute Infer"),
    Column("compute_output_ms", "split.compute_output_us", "us", "Server Compute Output"),
    Column("client_recv_ms", "split.client_recv_us", "us", "Client Recv"),
    Column("avg_measured", "avg_measured", "bool"),
)
ANALYZER_COLUMNS = tuple(c for c in COLUMNS if c.analyzer is not None)
ROW_CSV_COLUMNS = tuple(c.name for c in COLUMNS)


def row_from_values(values: dict) -> PerfRow:
    """A PerfRow from ``{attr: value}`` (the ``split.<x>`` ones make its split; without
    ``avg_us`` the average is the split's sum and ``avg_measured`` is False)."""
    split = LatencySplit(**{k.removeprefix("split."): v for k, v in values.items() if k.startswith("split.")})
    own = {k: v for k, v in values.items() if not k.startswith("split.")}
    if own.get("avg_us") is None:
        own.update(avg_us=split.total_us(), avg_measured=False)
    return PerfRow(**own, split=split)


def parse_csv_text(text: str, *, model: str, batch_size: int, protocol: str = "", shared_memory: str = "none",
                   source: str = "<csv>") -> list[PerfRow]:
    """Rows of one perf_analyzer ``-f`` CSV (concurrency mode). Stops at the first blank line
    (``--collect-metrics`` appends a second section after one)."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line)
    if not lines:
        raise ResultsError(f"{source}: empty perf_analyzer CSV")
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c.analyzer for c in ANALYZER_COLUMNS if not c.optional and c.analyzer not in header]
    if missing:
        hint = " (a Request Rate CSV from --request-rate-range? only concurrency sweeps are read)" if "Request Rate" in header else ""
        raise ResultsError(f"{source}: not a perf_analyzer concurrency CSV, missing columns {missing}{hint}")
    given = {"model": model, "batch_size": int(batch_size), "protocol": protocol, "shared_memory": shared_memory,
             "avg_measured": True}
    rows = [row_from_values({**given, **_analyzer_values(raw, f"{source} line {n}")})
            for n, raw in enumerate(reader, start=2)]
    if not rows:
        raise ResultsError(f"{source}: header but no measurements")
    return rows


def _analyzer_values(raw: dict, where: str) -> dict:
    """``{attr: value}`` of one perf_analyzer CSV line (an empty optional column is left out)."""
    raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
    values = {}
    try:
        for c in ANALYZER_COLUMNS:
            if raw.get(c.analyzer, "") or not c.optional:
                values[c.attr] = float(raw[c.analyzer])
    except ValueError as exc:
        raise ResultsError(f"{where}: not a number ({exc})") from None
    if not all(math.isfinite(v) for v in values.values()):
        raise ResultsError(f"{where}: non-finite value")
    values["concurrency"] = int(values["concurrency"])
    return values


def parse_csv(path: str | os.PathLike, *, model: str, batch_size: int, protocol: str = "",
              shared_memory: str = "none") -> list[PerfRow]:
    """Rows of the perf_analyzer CSV at ``path`` (the batch size is not in the file: pass it)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ResultsError(f"{p}: perf_analyzer wrote no CSV") from None
    return parse_csv_text(text, model=model, batch_size=batch_size, protocol=protocol,
                          shared_memory=shared_memory, source=str(p))


@dataclass(frozen=True)
class ServerCounts:
    """The server section of perf_analyzer's report for the last measured level."""

    inference_count: int
    execution_count: int
    success_count: int

    @property
    def avg_batch(self) -> float:
        """Images per model execution: > 1 when the dynamic batcher merged requests."""
        return self.inference_count / self.execution_count if self.execution_count else 0.0


_COUNT_RE = re.compile(r"Inference count: (\d+)\s+Execution count: (\d+)\s+Successful request count: (\d+)")


def parse_server_counts(stdout: str) -> ServerCounts | None:
    """Inference / execution / successful request counts from perf_analyzer's stdout (the last
    concurrency level reported), or None when the text has no server section."""
    found = _COUNT_RE.findall(stdout)
    if not found:
        return None
    inference, execution, success = (int(x) for x in found[-1])
    return ServerCounts(inference, execution, success)


# --------------------------------------------------------------------------------------------
# Our merged CSV (one line per point, ms) and reading it back

def row_to_dict(row: PerfRow) -> dict:
    """The merged CSV's line for ``row`` (:data:`COLUMNS`: latencies in ms)."""
    return {c.name: c.cell(row) for c in COLUMNS}


def write_rows_csv(rows: Iterable[PerfRow], path: str | os.PathLike) -> Path:
    """Every point, one line each (latencies in ms), written atomically."""
    p = Path(path)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row_to_dict(row))
    atomic_write_text(p, buf.getvalue())
    return p


def read_rows_csv(path: str | os.PathLike) -> list[PerfRow]:
    """Read back a CSV written by :func:`write_rows_csv`."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ResultsError(f"{p}: not found") from None
    rows = []
    for n, d in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            rows.append(row_from_values({c.attr: c.parse(d[c.name]) for c in COLUMNS if not c.derived}))
        except (KeyError, ValueError, TypeError) as exc:
            raise ResultsError(f"{p} line {n}: unreadable ({exc})") from None
    return rows


# --------------------------------------------------------------------------------------------
# Tables


def best_rows(rows: Sequence[PerfRow]) -> dict[tuple[str, int], PerfRow]:
    """``(label, batch size) -> `` the point with the highest throughput."""
    best: dict[tuple[str, int], PerfRow] = {}
    for r in rows:
        key = (r.label, r.batch_size)
        if key not in best or r.img_per_s > best[key].img_per_s:
            best[key] = r
    return best


def lowest_concurrency_rows(rows: Sequence[PerfRow]) -> dict[tuple[str, int], PerfRow]:
    """``(label, batch size) ->`` the point at the lowest measured concurrency."""
    low: dict[tuple[str, int], PerfRow] = {}
    for r in rows:
        key = (r.label, r.batch_size)
        if key not in low or r.concurrency < low[key].concurrency:
            low[key] = r
    return low


def _labels_and_sizes(rows: Sequence[PerfRow]) -> tuple[list[str], list[int]]:
    labels = list(dict.fromkeys(r.label for r in rows))
    sizes = sorted({r.batch_size for r in rows})
    return labels, sizes


def ms_per_batch_table(rows: Sequence[PerfRow], stat: str = "avg") -> TextTable:
    """The seed tables' layout: rows = model, columns = batch size, ms per batch (one request
    of that batch at the lowest measured concurrency, normally 1)."""
    labels, sizes = _labels_and_sizes(rows)
    low = lowest_concurrency_rows(rows)
    body = []
    for label in labels:
        body.append((label, *(fmt(low[(label, b)].latency_ms(stat)) if (label, b) in low else "—" for b in sizes)))
    concs = sorted({r.concurrency for r in low.values()})
    note = f"client-side {stat} latency of one request at concurrency {', '.join(map(str, concs))} (the lowest measured)."
    if stat == "avg" and any(not r.avg_measured for r in low.values()):
        note += " avg = sum of perf_analyzer's latency split where its CSV has no Avg latency column (--percentile)."
    return TextTable(f"ms per batch ({stat} latency)", ("model", *(f"bs {b}" for b in sizes)), tuple(body), note=note)


def throughput_table(rows: Sequence[PerfRow]) -> TextTable:
    """Rows = model, columns = batch size: images/s at the best concurrency (and that concurrency)."""
    labels, sizes = _labels_and_sizes(rows)
    best = best_rows(rows)
    body = []
    for label in labels:
        cells = []
        for b in sizes:
            r = best.get((label, b))
            cells.append(f"{fmt(r.img_per_s, 1)} (c={r.concurrency})" if r else "—")
        body.append((label, *cells))
    return TextTable("images/s at the best concurrency", ("model", *(f"bs {b}" for b in sizes)), tuple(body),
                     note="perf_analyzer's infer/s, which counts every image of a batch.")


def detail_table(rows: Sequence[PerfRow], model_label: str | None = None) -> TextTable:
    """Every point of one model/config: throughput, percentiles, and where the time goes (ms)."""
    chosen = [r for r in rows if model_label is None or r.label == model_label]
    headers = ("bs", "conc", "img/s", "req/s", "avg", "p50", "p90", "p95", "p99", "queue", "comp in",
               "comp infer", "comp out", "send", "network", "recv")
    body = []
    for r in sorted(chosen, key=lambda r: (r.batch_size, r.concurrency)):
        s = r.split
        body.append((str(r.batch_size), str(r.concurrency), fmt(r.img_per_s, 1), fmt(r.req_per_s, 1),
                     fmt(r.avg_us / 1000, 3) + ("" if r.avg_measured else "*"),
                     *(fmt(r.latency_ms(st), 3) for st in ("p50", "p90", "p95", "p99")),
                     *(fmt(v / 1000, 3) for v in (s.server_queue_us, s.compute_input_us, s.compute_infer_us,
                                                   s.compute_output_us, s.client_send_us, s.network_us,
                                                   s.client_recv_us))))
    note = "latencies in ms (client side); queue / comp = server side; send / network / recv = client and wire."
    if any(not r.avg_measured for r in chosen):
        note += " * avg = sum of the split (CSV without an Avg latency column)."
    return TextTable(f"all points: {model_label or 'all models'}", headers, tuple(body), note=note)


def sweep_tables(rows: Sequence[PerfRow]) -> list[TextTable]:
    """The report tables of a sweep: ms per batch, img/s (rows = model, columns = bs), then one
    detail table per model/config with every point."""
    if not rows:
        return []
    labels, _ = _labels_and_sizes(rows)
    return [ms_per_batch_table(rows), throughput_table(rows), *(detail_table(rows, label) for label in labels)]


def failures_markdown(points: Sequence[dict]) -> str:
    """A markdown section listing failed and skipped points with their error and stderr tail."""
    if not points:
        return ""
    out = ["### points not measured", ""]
    for p in points:
        out.append(f"- bs {p['batch_size']}, concurrency {p['concurrency']}: **{p['status']}**"
                   + (f" ({p['error_kind']})" if p.get("error_kind") else "") + f" — {p.get('error') or ''}")
        if p.get("stderr_tail"):
            out += ["", "  ```", *(f"  {ln}" for ln in p["stderr_tail"].splitlines()), "  ```"]
    return "\n".join(out) + "\n"


def write_markdown(path: str | os.PathLike, tables: Sequence[TextTable], *, title: str, preamble: str = "",
                   epilogue: str = "") -> Path:
    parts = [f"## {title}", ""]
    if preamble:
        parts += [preamble, ""]
    if not tables:
        parts += ["(no point finished)", ""]
    parts += [t.markdown() for t in tables]
    if epilogue:
        parts += [epilogue]
    p = Path(path)
    atomic_write_text(p, "\n".join(parts).rstrip() + "\n")
    return p

