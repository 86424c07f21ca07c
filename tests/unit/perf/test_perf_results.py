"""Parsing real perf_analyzer CSVs (tests/data/perf, captured from the real binary against the
bundled server), the merged CSV, the report tables and the latency/throughput plot."""

from __future__ import annotations

import csv
import io
from dataclasses import fields
from pathlib import Path

import pytest
from rich.console import Console

from tritonkit.cli.tables import print_tables
from tritonkit.perf.plot import latency_series, plot_latency_throughput
from tritonkit.perf.results import (
    COLUMNS, LatencySplit, PerfRow, ResultsError, detail_table, ms_per_batch_table, parse_csv, parse_csv_text,
    read_rows_csv, row_to_dict, sweep_tables, throughput_table, write_markdown, write_rows_csv)
from support.paths import DATA as TEST_DATA

DATA = TEST_DATA / "perf"
# file -> (batch size, protocol, shared memory): the settings it was captured with (see README.md there)
CAPTURED = {
    "grpc_bs1_c1-3.csv": (1, "grpc", "none"),
    "grpc_bs4_c1-2_verbose_p99.csv": (4, "grpc", "none"),
    "http_bs2_c1-2_shm_verbose.csv": (2, "http", "system"),
    "grpc_bs8_c1_p95.csv": (8, "grpc", "none"),
    "grpc_bs1_c1_metrics.csv": (1, "grpc", "none"),
}


def _parse(name: str, model: str = "demo_shapes") -> list[PerfRow]:
    bs, protocol, shm = CAPTURED[name]
    return parse_csv(DATA / name, model=model, batch_size=bs, protocol=protocol, shared_memory=shm)


def _raw(name: str) -> list[dict]:
    """The file read independently with the csv module (header line + data lines, up to a blank)."""
    lines = [ln for ln in (DATA / name).read_text().splitlines() if ln.strip()]
    return list(csv.DictReader(lines))


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_every_captured_csv_parses_to_its_lines(name):
    rows = _parse(name)
    raw = _raw(name)
    assert len(rows) == len(raw)
    for row, line in zip(rows, raw):
        assert row.concurrency == int(line["Concurrency"])
        assert row.infer_per_s == pytest.approx(float(line["Inferences/Second"]))
        assert row.p50_us == float(line["p50 latency"]) and row.p99_us == float(line["p99 latency"])
        assert row.split.server_queue_us == float(line["Server Queue"])
        assert row.split.compute_infer_us == float(line["Server Compute Infer"])
        assert row.split.network_us == float(line["Network+Server Send/Recv"])
        assert row.p50_us <= row.p90_us <= row.p95_us <= row.p99_us
        assert row.batch_size == CAPTURED[name][0]


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_throughput_counts_images_not_requests(name):
    """perf_analyzer's infer/s is requests/s x batch: Little's law on the real data says so.

    concurrency / average latency = requests per second; times the batch it must give the
    reported infer/s (within 15%: the windows and the average are measured separately).
    """
    for row in _parse(name):
        requests_per_s = row.concurrency / (row.avg_us / 1e6)
        assert requests_per_s * row.batch_size == pytest.approx(row.infer_per_s, rel=0.15)
        assert row.img_per_s == row.infer_per_s
        assert row.req_per_s == pytest.approx(row.infer_per_s / row.batch_size)


def test_avg_latency_column_used_when_present_and_split_adds_up_to_it():
    for name in ("http_bs2_c1-2_shm_verbose.csv", "grpc_bs1_c1_metrics.csv"):
        for row, line in zip(_parse(name), _raw(name)):
            assert row.avg_measured
            assert row.avg_us == float(line["Avg latency"])
            # perf_analyzer builds the split to add up to the average (rounding per column)
            assert row.split.total_us() == pytest.approx(row.avg_us, abs=8)


def test_without_avg_column_the_average_is_the_split_sum():
    # --percentile drops "Avg latency" even with --verbose-csv; plain CSVs never have it
    for name in ("grpc_bs4_c1-2_verbose_p99.csv", "grpc_bs1_c1-3.csv"):
        assert "Avg latency" not in _raw(name)[0]
        for row in _parse(name):
            assert not row.avg_measured
            assert row.avg_us == row.split.total_us()


def test_collect_metrics_section_and_empty_gpu_columns_are_ignored():
    text = (DATA / "grpc_bs1_c1_metrics.csv").read_text() + "\nServer Metrics\nsomething,else\n"
    rows = parse_csv_text(text, model="m", batch_size=1)
    assert len(rows) == 1 and rows[0].concurrency == 1


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("Request Rate,Inferences/Second,p50 latency\n10,9.9,100\n", "Request Rate"),
    ((DATA / "grpc_bs1_c1-3.csv").read_text().splitlines()[0] + "\n", "no measurements"),
    ((DATA / "grpc_bs1_c1-3.csv").read_text().replace("1463.25", "fast"), "not a number"),
])
def test_bad_csv_is_one_clear_error(text, match):
    with pytest.raises(ResultsError, match=match):
        parse_csv_text(text, model="m", batch_size=1, source="x.csv")


def test_missing_csv_file_says_so(tmp_path):
    with pytest.raises(ResultsError, match="wrote no CSV"):
        parse_csv(tmp_path / "nope.csv", model="m", batch_size=1)


def test_merged_csv_round_trips(tmp_path):
    rows = _parse("grpc_bs1_c1-3.csv") + _parse("http_bs2_c1-2_shm_verbose.csv")
    path = write_rows_csv(rows, tmp_path / "sweep.csv")
    again = read_rows_csv(path)
    assert len(again) == len(rows)
    for a, b in zip(again, rows):
        assert (a.model, a.protocol, a.shared_memory, a.batch_size, a.concurrency) == \
               (b.model, b.protocol, b.shared_memory, b.batch_size, b.concurrency)
        assert a.img_per_s == pytest.approx(b.img_per_s, rel=1e-6)
        assert a.p99_us == pytest.approx(b.p99_us, abs=0.1)
        assert a.split.server_queue_us == pytest.approx(b.split.server_queue_us, abs=0.1)
        assert a.avg_measured == b.avg_measured


def test_one_column_table_drives_both_csvs(tmp_path):
    """Every PerfRow quantity has one Column; writing, reading back and writing again is exact."""
    covered = {c.attr for c in COLUMNS}
    own = {f.name for f in fields(PerfRow) if f.name != "split"} | {"req_per_s"}
    assert covered == own | {f"split.{f.name}" for f in fields(LatencySplit)}
    # every perf_analyzer header named in the table is one the real binary writes
    verbose = set(_raw("http_bs2_c1-2_shm_verbose.csv")[0])
    assert {c.analyzer for c in COLUMNS if c.analyzer} <= verbose
    rows = [r for name in sorted(CAPTURED) for r in _parse(name)]
    first = write_rows_csv(rows, tmp_path / "a.csv").read_text()
    assert first.splitlines()[0].split(",") == [c.name for c in COLUMNS]
    again = read_rows_csv(tmp_path / "a.csv")
    assert write_rows_csv(again, tmp_path / "b.csv").read_text() == first
    assert [row_to_dict(r) for r in again] == [row_to_dict(r) for r in rows]
    assert [r.avg_measured for r in again] == [r.avg_measured for r in rows] and not all(r.avg_measured for r in rows)


def test_merged_csv_missing_a_column_is_one_clear_error(tmp_path):
    rows = _parse("grpc_bs1_c1-3.csv")
    text = write_rows_csv(rows, tmp_path / "a.csv").read_text()
    lines = [",".join(cells[:-1]) for cells in (line.split(",") for line in text.splitlines())]  # no avg_measured
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match=r"b.csv line 2: unreadable \('avg_measured'\)"):
        read_rows_csv(tmp_path / "b.csv")


def _two_models() -> list[PerfRow]:
    return (_parse("grpc_bs1_c1-3.csv") + _parse("grpc_bs4_c1-2_verbose_p99.csv")
            + _parse("grpc_bs8_c1_p95.csv", model="other"))


def test_ms_per_batch_table_is_models_by_batch_size():
    rows = _two_models()
    table = ms_per_batch_table(rows)
    assert table.headers == ("model", "bs 1", "bs 4", "bs 8")
    assert [r[0] for r in table.rows] == ["demo_shapes (grpc)", "other (grpc)"]
    demo = table.rows[0]
    c1_bs1 = next(r for r in rows if r.model == "demo_shapes" and r.batch_size == 1 and r.concurrency == 1)
    assert demo[1] == f"{c1_bs1.avg_us / 1000:.2f}"
    assert demo[3] == "—"            # demo_shapes was not measured at bs 8
    assert table.rows[1][1] == "—" and table.rows[1][3] != "—"
    assert "sum of perf_analyzer's latency split" in table.note       # these CSVs have no Avg latency
    measured = ms_per_batch_table(_parse("http_bs2_c1-2_shm_verbose.csv"))
    assert "latency split" not in measured.note


def test_throughput_table_picks_the_best_concurrency():
    rows = _parse("grpc_bs1_c1-3.csv")
    best = max(rows, key=lambda r: r.img_per_s)
    cell = throughput_table(rows).rows[0][1]
    assert cell == f"{best.img_per_s:.1f} (c={best.concurrency})"


def test_detail_table_has_one_line_per_point_and_marks_derived_averages():
    rows = _parse("grpc_bs4_c1-2_verbose_p99.csv")
    table = detail_table(rows, rows[0].label)
    assert len(table.rows) == len(rows)
    assert all(r[4].endswith("*") for r in table.rows)
    assert "sum of the split" in table.note


def test_markdown_report_is_a_valid_table(tmp_path):
    rows = _two_models()
    path = write_markdown(tmp_path / "r.md", sweep_tables(rows), title="t", epilogue="tail text\n")
    text = path.read_text()
    assert text.startswith("## t")
    tables = [ln for ln in text.splitlines() if ln.startswith("|")]
    header_rows = [ln for ln in tables if set(ln) <= set("|-: ")]
    # every table has a header separator and all lines of one table have the same column count
    assert len(header_rows) == len(sweep_tables(rows))
    assert "| model" in text and "tail text" in text


def test_latency_series_one_line_per_batch_size_ordered_by_concurrency():
    rows = _parse("grpc_bs4_c1-2_verbose_p99.csv") + _parse("grpc_bs1_c1-3.csv")
    series = latency_series(rows, "p99")
    assert list(series) == ["bs 1", "bs 4"]
    assert [r.concurrency for r in series["bs 1"]] == [1, 2, 3]
    with pytest.raises(ResultsError):
        latency_series(rows, "p42")


def test_plot_writes_a_png(tmp_path):
    from PIL import Image

    rows = _two_models()
    path = plot_latency_throughput(rows, tmp_path / "plot.png", percentile=95, title="x")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
    with pytest.raises(ResultsError, match="no measured points"):
        plot_latency_throughput([], tmp_path / "none.png")


def test_server_counts_show_the_dynamic_batcher_at_work():
    from tritonkit.perf.results import parse_server_counts

    on = parse_server_counts((DATA / "stdout_bs1_c8_dynamic_batching.txt").read_text())
    off = parse_server_counts((DATA / "stdout_bs1_c8_no_batching.txt").read_text())
    assert on.inference_count == on.success_count and on.avg_batch > 1.0       # requests merged
    assert off.execution_count == off.inference_count and off.avg_batch == 1.0  # one execution per request
    assert parse_server_counts("no server section") is None


def test_tables_print_in_the_terminal_with_every_cell():
    rows = _parse("grpc_bs1_c1-3.csv")
    table = throughput_table(rows)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_tables([table], console)
    shown = console.file.getvalue()
    assert table.title in shown and all(cell in shown for row in table.rows for cell in row)
