#!/usr/bin/env python3
"""The GPU check for a host with only CUDA, torch and torchvision (no TensorRT, DALI or Docker).

    PYTHONPATH=. python3 scripts/gpu_check.py --demo-weights .cache/demo --out reports/gpu_check.json

Writes one JSON report (tritonkit.gpu_check: steps, measured values, which are proxies, what stays
unverified). Without a CUDA device the GPU steps are skipped and it exits 0; with one it exits 1
when a step failed. Needs nothing from the network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonkit.errors import TritonkitError
from tritonkit.gpu_check import CHECK_CARDS, GpuCheckOptions, run_gpu_check
from tritonkit.steps import RUNNING, StepRecord


def _show(record: StepRecord) -> None:
    if record.status != RUNNING:
        print(record.line(), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="the JSON report to write")
    p.add_argument("--demo-weights", type=Path, help="folder with the demo's trained models (e.g. .cache/demo); "
                                                     "random weights (seed 0) where none is found")
    p.add_argument("--work", type=Path, default=Path("build/gpu_check"), help="exported ONNX and plans")
    p.add_argument("--cards", default=",".join(CHECK_CARDS), help="demo cards for the fp16 check")
    p.add_argument("--images", type=int, default=32, help="generated images per card")
    args = p.parse_args(argv)
    opts = GpuCheckOptions(out=args.out, work=args.work, demo_weights=args.demo_weights, images=args.images,
                           cards=tuple(c.strip() for c in args.cards.split(",") if c.strip()))
    try:
        report = run_gpu_check(opts, on_step=_show)
    except TritonkitError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 1
    print(f"report: {args.out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
