"""Accuracy and timing through Triton: `eval classify` (top1/top5) and `eval detect` (COCO mAP).

Each task is its own module exposing a docstring (its help), add_arguments(parser) and
run(args) -> int. Register a task by adding it to TASKS below; see tritonkit.client.pipeline
for the task-adapter protocol the run-stream engine expects.
"""

from __future__ import annotations

import argparse
import importlib

from tritonkit.errors import TritonkitError
from tritonkit.io import ensure_out_dir

# task name -> module implementing it (imported when the parser is built; keep top-level imports light)
TASKS = {
    "classify": "tritonkit.client.classify_task",
    "detect": "tritonkit.client.detect_task",
}


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def _unavailable(task: str, module_path: str):
    def run(args: argparse.Namespace) -> int:
        raise TritonkitError(f"eval {task} is not available in this build ({module_path} is missing)")
    return run


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="task", metavar="TASK")
    for task, module_path in TASKS.items():
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name != module_path:
                raise
            sp = sub.add_parser(task, help=f"(not available: {module_path} missing)")
            sp.set_defaults(_task_run=_unavailable(task, module_path))
            continue
        sp = sub.add_parser(task, help=_first_line(module.__doc__), description=module.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(_task_run=module.run)


def run(args: argparse.Namespace) -> int:
    task_run = getattr(args, "_task_run", None)
    if task_run is None:
        args._parser.print_help()
        return 2
    if getattr(args, "out", None) is not None:
        ensure_out_dir(args.out, "--out")
    return int(task_run(args) or 0)
