"""Accuracy and timing through Triton: one `eval TASK` per registered task (classify, detect ...).

The subcommands come from the task registry (tritonkit.tasks.base.list_tasks): each task's
description is its help, and the fields of its options dataclass declare its flags (the stream
flags every eval takes among them). Add a task by adding its package under tritonkit/tasks;
nothing here changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonkit.cli.args import add_spec_arguments, first_line, spec_options
from tritonkit.cli.tables import cli_console, print_tables
from tritonkit.errors import TritonkitError
from tritonkit.evaluate import EvalResult, evaluate
from tritonkit.tasks.base import OptionsError, Task, field_flags, get_task, list_tasks, option_arguments
from tritonkit.io import ensure_out_dir
from tritonkit.report import TIMING_MEASURED, TextTable, escape_text


SHOWN_ERRORS = 20  # excluded files printed by the summary (the reports list all of them)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="task", metavar="TASK")
    for name in list_tasks():
        task = get_task(name)
        sp = sub.add_parser(name, help=first_line(task.description), description=task.description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_spec_arguments(sp, option_arguments(task.options_type))
        sp.add_argument("--json", action="store_true",
                        help=f"print {task.result_json} on stdout instead of the summary table")
        sp.set_defaults(_task=name)


def options_from_args(task: Task, args: argparse.Namespace):
    """The task's options from parsed flags; an invalid value is reported with its flag."""
    try:
        return task.options_type(**spec_options(args, option_arguments(task.options_type)))
    except OptionsError as exc:
        raise TritonkitError(exc.render(field_flags(task.options_type))) from None


def run(args: argparse.Namespace) -> int:
    name = getattr(args, "_task", None)
    if name is None:
        args._parser.print_help()
        return 2
    task = get_task(name)
    if getattr(args, "out", None) is not None:
        ensure_out_dir(args.out, "--out")
    result = evaluate(task, options_from_args(task, args))
    if args.json:
        print((Path(args.out) / task.result_json).read_text(encoding="utf-8"), end="")
        return 0
    print_summary(task, result, Path(args.out))
    return 0


def summary_table(task: Task, result: EvalResult) -> TextTable:
    """The task's metric rows, then errors, stream throughput, stream timing and endpoints."""
    rows = [*task.summary_rows(result), ("errors / converted", f"{len(result.errors)} / {len(result.notes)}")]
    for label, value in (("p_infer_whole", result.p_infer_whole), ("p_infer_core", result.p_infer_core)):
        if value is not None:
            rows.append((f"{label} (img/s)", f"{value:.1f}"))
    for row in result.batch_timing or []:
        rows += _timing_rows(task.timing_row_label(row), row)
    for e in (result.endpoints.to_dict()["endpoints"] if result.endpoints is not None else []):
        share = "-" if e["share"] is None else f"{100 * e['share']:.1f}%"
        rows.append((f"endpoint {e['address']} ({e['state']})",
                     f"{share} of requests, {e['errors']} failed, out {e['taken_out']}x"))
    return TextTable(f"{result.model}: {result.images} images", ("metric", "value"),
                     tuple((str(label), str(value)) for label, value in rows))


def _timing_rows(label: str, row: dict) -> list[tuple[str, str]]:
    """Run model and run stream latency per batch (ms), and run stream throughput, as separate rows."""
    def ms(key: str) -> str:
        return "-" if row.get(key) is None else f"{row[key]:.1f}"

    out = [(f"{label} run model (ms/batch)", ms("run_model_ms"))]
    if row.get("run_stream_latency_p50_ms") is not None:
        out.append((f"{label} run stream latency p50 / p99 (ms/batch)",
                    f"{ms('run_stream_latency_p50_ms')} / {ms('run_stream_latency_p99_ms')}"))
    if row.get("run_stream_img_s") is not None:
        out.append((f"{label} run stream throughput (img/s)", f"{row['run_stream_img_s']:.1f}"))
    return out


def print_summary(task: Task, result: EvalResult, out: Path) -> None:
    """One table for every task: its metric rows, then errors, stream throughput and timing."""
    console = cli_console()
    print_tables([summary_table(task, result)], console)
    for e in result.errors[:SHOWN_ERRORS]:
        console.print(f"excluded {escape_text(e['path'])}: {escape_text(e['reason'])}", markup=False, highlight=False,
                      soft_wrap=True)
    if len(result.errors) > SHOWN_ERRORS:
        console.print(f"... and {len(result.errors) - SHOWN_ERRORS} more excluded files (all listed in the reports)")
    if result.batch_timing:
        console.print(TIMING_MEASURED, markup=False, highlight=False, soft_wrap=True)
    for note in (result.run_notes or []) + (result.timing_notes or []):
        console.print(escape_text(note), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out / task.result_json} and {out / task.result_md}")
