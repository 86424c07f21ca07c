"""The whole GPU path on a host with an NVIDIA GPU and Docker, into one report.

  tritonkit gpu-smoke --onnx-dir build/onnx --out reports/gpu_smoke               # build, check, print
  tritonkit gpu-smoke --onnx-dir build/onnx --run-docker \\
      --eval-data resnet50=imagenet/val --eval-data demo_shapes=build/demo/shapes_val

Plans (batch 1..8; fp16 on TensorRT 10, fp32 on 11) for resnet50 and the demo models from
<onnx-dir>/<model>.onnx, built by the plan-builder image of the serving release (or by this host's
TensorRT when its version is the serving container's), the plan / container / GPU check, a
gpu-target model repository, the docker serve command (printed; run with --run-docker: loopback
ports, production profile unless --profile dev), then a short eval and perf sweep against it.
Writes <out>/gpu_smoke.json. On a host without an NVIDIA GPU it says so and exits 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonkit.build_engines.releases import DEFAULT_RELEASE
from tritonkit.errors import TritonkitError
from tritonkit.serve.docker import RunOptions
from tritonkit.smoke import CONTAINER_NAME, SMOKE_MODELS, SmokeOptions, require_gpu, run_smoke
from tritonkit.steps import RUNNING, StepRecord


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx-dir", type=Path, default=Path("build/onnx"), help="folder with <model>.onnx files")
    p.add_argument("--models", default=",".join(SMOKE_MODELS), help="comma-separated card names")
    p.add_argument("--out", type=Path, default=Path("reports/gpu_smoke"), help="report folder")
    p.add_argument("--work", type=Path, default=Path("build/gpu_smoke"), help="plans and repository folder")
    p.add_argument("--container-release", help="tritonserver release (default: tritonkit's pinned one)")
    p.add_argument("--container-trt-version", help="TensorRT of that release (else read from the image or the table)")
    p.add_argument("--builder", choices=("auto", "python", "docker"), default="auto",
                   help="plan-builder image of the release (auto, docker), or this host's TensorRT when its version "
                        "is the serving container's (python; auto falls back to it without docker)")
    p.add_argument("--gpu", type=int, help="nvidia-smi index of the GPU to build and serve on (default: all)")
    p.add_argument("--run-docker", action="store_true", help="start the server container and run eval + perf")
    p.add_argument("--profile", choices=("production", "dev"), default="production",
                   help="server profile (production: restricted APIs, key in $TRITONKIT_API_KEY)")
    p.add_argument("--metrics-port", type=int, help="dev profile: publish metrics on this loopback port (default: not)")
    p.add_argument("--eval-data", action="append", default=[], metavar="MODEL=PATH",
                   help="dataset to evaluate MODEL on (repeatable)")
    p.add_argument("--eval-limit", type=int, default=500, help="images per eval")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the server")


def _eval_data(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise TritonkitError(f"--eval-data {item!r} must be MODEL=PATH")
        out[name] = Path(path)
    return out


def options_from_args(args: argparse.Namespace) -> SmokeOptions:
    run = RunOptions(profile=args.profile, http_port=args.http_port, grpc_port=args.grpc_port,
                     metrics_port=args.metrics_port, name=CONTAINER_NAME)
    return SmokeOptions(onnx_dir=args.onnx_dir, models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                        out=args.out, work=args.work, container_release=args.container_release or DEFAULT_RELEASE,
                        container_trt_version=args.container_trt_version, builder=args.builder, gpu_index=args.gpu,
                        run_docker=args.run_docker, eval_data=_eval_data(args.eval_data), eval_limit=args.eval_limit,
                        run=run, ready_timeout_s=args.ready_timeout)


def _show(step: StepRecord) -> None:
    if step.status != RUNNING:
        print(f"[{step.status}] {step.name} {step.detail}".rstrip())


def run(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    gpu = require_gpu(opts.gpu_index)                  # exits 1 on a host without an NVIDIA GPU
    report = run_smoke(opts, gpu, on_step=_show)
    print("\n".join(report.docker_commands))
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {opts.out / 'gpu_smoke.json'}")
    return 1 if report.failed else 0
