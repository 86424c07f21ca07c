"""Run the whole pipeline on generated data with the local Triton server (the main job).

Generates a labelled shapes image set and a COCO-format detection set, trains a small
classifier and detector on the CPU (cached), exports ONNX, quantizes to INT8 (QDQ), writes the
model repository (cpu target, server-side NMS ensemble), starts the bundled tritonserver,
evaluates accuracy and timing through it (each against the same ONNX in-process), runs a short
perf_analyzer sweep, validates the deployment, then runs segmentation end to end on its own
server (generated VOC-layout set, small segmenter, argmax ensemble), and writes
reports/demo/report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonkit.demo.run import DemoOptions, run_demo
from tritonkit.io import ensure_out_dir
from tritonkit.steps import StepRecord


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("reports/demo"))
    p.add_argument("--work", type=Path, default=Path("build/demo"), help="data, ONNX and repository")
    p.add_argument("--cache", type=Path, default=Path(".cache/demo"), help="trained models (reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--no-perf", action="store_true")
    p.add_argument("--no-validate", action="store_true")
    p.add_argument("--no-detection", action="store_true")
    p.add_argument("--no-segmentation", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _show(record: StepRecord) -> None:
    print(f"[demo] {record.line()}", flush=True)


def run(args: argparse.Namespace) -> int:
    for folder, flag in ((args.out, "--out"), (args.work, "--work"), (args.cache, "--cache")):
        ensure_out_dir(folder, flag)
    steps = run_demo(DemoOptions(out=args.out, work=args.work, cache=args.cache, seed=args.seed,
                                 int8=not args.no_int8, perf=not args.no_perf, validate=not args.no_validate,
                                 detection=not args.no_detection, segmentation=not args.no_segmentation,
                                 progress=not args.no_progress),
                     on_step=_show)
    failed = steps.failed()
    report = args.out / "report.md"
    if failed:
        print(f"demo finished with {len(failed)} failed step(s): " + "; ".join(f"{s.name}: {s.detail}" for s in failed))
        return 1
    print(f"demo finished: {report}")
    return 0
