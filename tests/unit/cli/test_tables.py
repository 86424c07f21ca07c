"""Tables on stdout never cut a name: through a pipe, at any COLUMNS, on a narrow terminal; and
every listing's --json holds the same rows as its table."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from tritonkit.cards import REGISTRY
from tritonkit.cli import main
from tritonkit.cli.cards import cards_table
from tritonkit.cli.tables import print_tables, show_tables
from tritonkit.perf.results import LatencySplit, PerfRow, write_rows_csv
from tritonkit.report import TextTable
from tritonkit.validate.report import ValidationReport
from tritonkit.validate.result import CheckResult
from support.paths import ROOT

LONG = "a_customer_model_with_a_really_long_name_v2_int8"


def cli(*argv: str, columns: int) -> str:
    """``tritonkit ARGV`` in a subprocess with stdout a pipe and COLUMNS set, as `| grep` runs it."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "tritonkit", *argv], capture_output=True, text=True, check=True,
                          cwd=ROOT, env=env).stdout


def table_names(text: str) -> list[str]:
    """The first cell of every body row of the markdown tables in ``text``."""
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")]
    return [r.split(" | ")[0][2:] for r in rows[1:]]


@pytest.mark.parametrize("columns", [40, 80])
def test_cards_through_a_pipe_print_whole_names(columns):
    out = cli("cards", columns=columns)
    names = [c.name for c in REGISTRY]
    assert table_names(out) == names
    yolo = [ln for ln in out.splitlines() if "yolo" in ln]            # `tritonkit cards | grep yolo`
    assert {n for n in names if "yolo" in n} <= set(table_names("\n".join(["| h |", *yolo])))
    assert "…" not in out


def test_cards_json_holds_the_table_rows():
    listed = json.loads(cli("cards", "--json", columns=40))
    assert [c["name"] for c in listed] == table_names(cli("cards", columns=40))
    assert [c["labels"] for c in listed] == [r[7] for r in cards_table().rows]


def rendered(tables, width: int, terminal: bool) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)
    print_tables(tables, console)
    return console.file.getvalue()


def test_a_wide_terminal_draws_the_table_with_every_key_cell_whole():
    table = cards_table()
    shown = rendered([table], 220, terminal=True)
    assert "┃" in shown                                                   # drawn, not markdown
    assert all(row[i] in shown for row in table.rows for i in table.keys)


@pytest.mark.parametrize("width", [30, 40, 60, 100])
def test_a_narrow_terminal_never_cuts_a_key_cell(width):
    table = TextTable("models", ("model", "task", "detail"),
                      ((LONG, "detect", "a long free text that may fold onto several lines " * 2),
                       ("demo_shapes", "classify", "short")))
    shown = rendered([table], width, terminal=True)
    assert LONG in shown and "demo_shapes" in shown and "…" not in shown
    shown = rendered([cards_table()], width, terminal=True)
    assert all(r[0] in shown and r[7] in shown for r in cards_table().rows)


def test_rich_markup_in_a_cell_is_shown_as_written():
    table = TextTable("t", ("name", "n"), (("model[bold]x", "1"),))
    assert "model[bold]x" in rendered([table], 100, terminal=True)


def test_validate_checks_table_keeps_check_and_model_whole():
    report = ValidationReport(checks=(
        CheckResult("correctness.reference", False, "max abs diff 3.2e-1 over the tolerance " * 3, model=LONG,
                    hint="rebuild the plan"),
        CheckResult("server.live", True, "live"),))
    table = report.table()
    assert table.rows[0][:3] == ("correctness.reference", LONG, "FAIL") and "fix: rebuild the plan" in table.rows[0][3]
    for width in (40, 120):
        shown = rendered([table], width, terminal=True)
        assert "correctness.reference" in shown and LONG in shown and "(server)" in shown


def test_show_tables_json_holds_the_same_rows(capsys):
    table = TextTable("models", ("model", "img/s"), ((LONG, "12.5"), ("b", "3.0")), note="measured")
    show_tables([table], as_json=True)
    (got,) = json.loads(capsys.readouterr().out)
    assert got == {"title": "models", "headers": ["model", "img/s"], "note": "measured",
                   "rows": [{"model": LONG, "img/s": "12.5"}, {"model": "b", "img/s": "3.0"}]}


def test_deploy_capacity_json_is_the_capacity_file(tmp_path, capsys):
    split = LatencySplit(0, 0, 0, 0, 0, 0, 0)
    rows = [PerfRow(model=LONG, batch_size=1, concurrency=c, infer_per_s=rps, avg_us=p99, p50_us=p99, p90_us=p99,
                    p95_us=p99, p99_us=p99, split=split, protocol="grpc")
            for c, rps, p99 in ((1, 100.0, 10_000.0), (4, 380.0, 30_000.0))]
    write_rows_csv(rows, tmp_path / "sweep.csv")
    argv = ["deploy", "capacity", "--sweep", str(tmp_path), "--slo-p99-ms", "50", "--target-rps", "1000",
            "--out", str(tmp_path / "cap"), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "cap" / "capacity.json").read_text()) and printed["model"] == LONG


def subparser(*names: str):
    """The argparse parser of ``tritonkit NAMES...``."""
    import argparse

    from tritonkit.cli import build_parser

    p = build_parser()
    for name in names:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return p


@pytest.mark.parametrize("command", [("cards",), ("eval", "classify"), ("eval", "detect"), ("eval", "segment"),
                                     ("perf", "sweep"), ("perf", "ladder"), ("perf", "tune"), ("validate",),
                                     ("export",), ("deploy", "capacity")])
def test_every_command_that_prints_a_table_takes_json(command):
    readme = (ROOT / "README.md").read_text()
    assert any(a.option_strings == ["--json"] for a in subparser(*command)._actions), command
    listed = readme.split("takes `--json`")[1].split("\n\n")[0]         # the README's list of them
    assert re.search(rf"\b{command[0] if command[0] == 'eval' else command[-1]}\b", listed), command


def test_printed_paths_stay_whole_on_one_line_through_a_pipe(tmp_path):
    """The CLI's lines are not wrapped at COLUMNS: a long output path can be copied from a pipe."""
    split = LatencySplit(0, 0, 0, 0, 0, 0, 0)
    write_rows_csv([PerfRow(model="m", batch_size=1, concurrency=1, infer_per_s=100.0, avg_us=1e4, p50_us=1e4,
                            p90_us=1e4, p95_us=1e4, p99_us=1e4, split=split, protocol="grpc")], tmp_path / "sweep.csv")
    out = tmp_path / ("a_rather_long_folder_name_for_the_capacity_report_" * 2) / "cap"
    printed = cli("deploy", "capacity", "--sweep", str(tmp_path), "--slo-p99-ms", "50", "--target-rps", "100",
                  "--out", str(out), columns=40)
    assert str(out / "capacity.json") in printed and (out / "capacity.json").is_file()
