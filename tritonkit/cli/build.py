"""Build a TensorRT plan (fp32/fp16/int8) from a card's ONNX, with its compatibility sidecar.

  tritonkit build --model resnet50 --onnx build/onnx/resnet50.onnx --precision fp16 \\
      --min-batch 1 --opt-batch 4 --max-batch 8 --out build/plans
  tritonkit build ... --trtexec-only --container-release 25.10   # print the trtexec container command
  tritonkit build --model resnet50 --onnx model.onnx --precision int8 \\
      --calib-dir calib/ --calib-images 256 --calib-method entropy --out build/plans
  tritonkit build ... --precision int8 --calib-dir calib/ --qdq-only   # stop after the QDQ ONNX (runs on CPU)
  tritonkit build ... --adopt-plan build/plans/resnet50_fp16.plan \\
      --trtexec-log build/plans/resnet50_fp16.plan.trtexec.log

Writes <out>/<model>_<precision>.plan and <plan>.json (TensorRT version, GPU, profile, ONNX
sha256) through a temp folder. The profile always spans batch min..max, so the plan matches a
Triton config with max_batch_size = max. int8 is explicit quantization: the plan is built from a
QDQ ONNX (made here from calibration images with --calib-dir, or given with --onnx).
Precision follows the TensorRT major: 10.x sets fp16 (and fp16 + int8 for a QDQ ONNX); 11 builds
strongly typed, so int8 is the QDQ ONNX as it is and fp16 needs an fp16 ONNX made first.
With --trtexec-only the `docker run` of nvcr.io/nvidia/tensorrt:<release>-py3 that builds the plan
with its trtexec is printed (flags for that release's TensorRT major), its output kept in a log; then
--adopt-plan the result: the sidecar records the TensorRT version trtexec printed in that log.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tritonkit.build_engines.builder import adopt_plan, build_plan
from tritonkit.build_engines.compat import check_plan_for_card
from tritonkit.build_engines.flags import int8_notes, precision_flags
from tritonkit.build_engines.host import build_gpu, docker_gpus_arg
from tritonkit.build_engines.quantize import find_calibration_images, quantize_int8
from tritonkit.build_engines.releases import DEFAULT_RELEASE
from tritonkit.build_engines.spec import (
    DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_MB, HARDWARE_COMPAT, PRECISION_TARGETS, PRECISIONS, default_plan_path,
    make_spec)
from tritonkit.build_engines.trtexec import container_command, release_tensorrt, trtexec_version
from tritonkit.cards import get_card
from tritonkit.cli.args import positive_int
from tritonkit.errors import TritonkitError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="card name or card .json")
    p.add_argument("--onnx", required=True, type=Path, help="the model's ONNX (dynamic batch axis)")
    # No argparse choices: an unknown precision gets BuildSpec's one-line error (exit 1), not a usage dump.
    p.add_argument("--precision", default="fp16", help=f"one of {', '.join(PRECISIONS)} (default fp16)")
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for (default: half the max, power of two)")
    p.add_argument("--max-batch", type=int, help="default: the card's max_batch_size")
    p.add_argument("--out", type=Path, default=Path("build/plans"), help="output folder")
    p.add_argument("--plan", type=Path, help="plan file (default: <out>/<model>_<precision>.plan)")
    p.add_argument("--workspace-mb", type=int, default=DEFAULT_WORKSPACE_MB, help="TensorRT workspace pool (MiB)")
    p.add_argument("--timing-cache", type=Path, help="timing cache file, read and updated")
    p.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL, help="builder optimization level 0..5")
    p.add_argument("--version-compatible", action="store_true",
                   help="plan also runs on newer TensorRT: the same major, or the next one from 10 to 11 (lean "
                        "runtime embedded; tritonserver loads it with "
                        "--backend-config=tensorrt,version-compatible=true)")
    p.add_argument("--hardware-compat", default="none", choices=tuple(HARDWARE_COMPAT),
                   help="ampere+: any Ampere or newer GPU; same-cc: GPUs of the same compute capability")
    p.add_argument("--trtexec-only", action="store_true", help="print the trtexec command and stop")
    q = p.add_argument_group("int8 (explicit quantization)")
    q.add_argument("--calib-dir", type=Path, help="calibration images; makes the QDQ ONNX first")
    q.add_argument("--calib-images", type=positive_int, default=256, help="use the first N images (sorted)")
    q.add_argument("--calib-method", default="max", choices=("max", "entropy", "percentile"))
    q.add_argument("--percentile", type=float, default=99.999, help="for --calib-method percentile")
    q.add_argument("--exclude-nodes", action="append", default=[], metavar="PATTERN",
                   help="keep in float: node-name glob, or op:TYPE (repeatable)")
    q.add_argument("--qdq-out", type=Path, help="QDQ ONNX path (default: <out>/<model>_int8_qdq.onnx)")
    q.add_argument("--qdq-only", action="store_true", help="stop after writing the QDQ ONNX")
    a = p.add_argument_group("plans built by trtexec")
    a.add_argument("--adopt-plan", type=Path, help="write the sidecar for this trtexec-built plan")
    a.add_argument("--trtexec-log", type=Path, help="trtexec's output for --adopt-plan: the TensorRT version is read "
                                                    "from its [TensorRT vNNNNNN] banner")
    a.add_argument("--trt-version", help="or that version given directly (10.13.3.9, or the banner's v101303)")
    p.add_argument("--container-release", help="tritonserver release: the plan is checked against it; "
                                               "--trtexec-only prints the command for it (default: the pinned one)")
    p.add_argument("--container-trt-version", help="TensorRT version of that release, if not in tritonkit's table "
                                                   "or unconfirmed there")
    p.add_argument("--gpu", type=int, help="nvidia-smi index of the build GPU (queried with nvidia-smi -i N; "
                                           "containers get --gpus device=N)")


def _quantize(args: argparse.Namespace, card) -> Path:
    out = args.qdq_out or args.out / f"{card.name}_int8_qdq.onnx"
    images = find_calibration_images(args.calib_dir, args.calib_images)
    res = quantize_int8(card, args.onnx, out, images, args.calib_method, tuple(args.exclude_nodes),
                        percentile=args.percentile)
    print(f"QDQ ONNX: {res.onnx_int8} ({res.method} calibration on {res.num_images} images, "
          f"{res.qdq_nodes} Q/DQ nodes, {len(res.excluded_nodes)} nodes kept float)")
    print(f"size: fp32 {res.size_mb_fp32:.3f} MB -> int8 {res.size_mb_int8:.3f} MB")
    print("this QDQ ONNX runs on the CPU target (tritonkit repo --target cpu) for CPU int8 numbers; "
          "TensorRT int8 numbers come only from a plan built and served on a GPU")
    return res.onnx_int8


def run(args: argparse.Namespace) -> int:
    card = get_card(args.model)
    onnx = args.onnx
    if args.qdq_only and not (args.precision == "int8" and args.calib_dir):
        raise TritonkitError("--qdq-only needs --precision int8 and --calib-dir")
    if args.calib_dir is not None and args.precision != "int8":
        raise TritonkitError("--calib-dir is for --precision int8")
    if args.adopt_plan is not None and not (args.trt_version or args.trtexec_log):
        raise TritonkitError("--adopt-plan needs --trtexec-log (trtexec's output) or --trt-version (the TensorRT "
                             "version trtexec printed)")
    if args.precision == "int8" and args.calib_dir is not None:
        onnx = _quantize(args, card)
        if args.qdq_only:
            return 0
    plan = args.plan or default_plan_path(args.out, card, args.precision)
    spec = make_spec(card, onnx, args.precision, plan, min_batch=args.min_batch, opt_batch=args.opt_batch,
                     max_batch=args.max_batch, workspace_mb=args.workspace_mb, timing_cache=args.timing_cache,
                     opt_level=args.opt_level, version_compatible=args.version_compatible,
                     hardware_compat=args.hardware_compat)
    if args.trtexec_only:
        return _print_trtexec(args, spec, onnx, plan)
    if args.adopt_plan is not None:
        built = adopt_plan(spec, args.adopt_plan, _builder_version(args), gpu_index=args.gpu)
    else:
        built = build_plan(spec, gpu_index=args.gpu)
    s = built.sidecar
    print(f"plan: {built.plan} ({s.precision_label()}, batch {s.min_batch}..{s.max_batch}, "
          f"TensorRT {s.tensorrt_version}, {s.gpu_name} sm {s.compute_capability})")
    print(f"sidecar: {built.sidecar_path}")
    print(f"{s.precision} is measured on: {PRECISION_TARGETS[s.precision]}")
    for note in built.notes:
        print(f"note: {note}")
    if args.container_release:
        gpu = build_gpu(args.gpu)
        res = check_plan_for_card(card, built.plan, args.container_release, max_batch_size=s.max_batch,
                                  host_cc=gpu.compute_capability, host_gpu_name=gpu.name,
                                  container_trt=args.container_trt_version)
        print(f"compatible with tritonserver {res.container_release} (TensorRT {res.container_tensorrt})")
        for note in (res.container_note, *res.notes) if res.container_note else res.notes:
            print(f"note: {note}")
    return 0


def _builder_version(args: argparse.Namespace) -> str:
    """The TensorRT version trtexec printed: from --trtexec-log, else --trt-version."""
    if args.trtexec_log is None:
        return trtexec_version(args.trt_version)
    try:
        text = args.trtexec_log.read_text(errors="replace")
    except OSError as exc:
        raise TritonkitError(f"{args.trtexec_log}: cannot read ({exc.strerror or exc})") from None
    return trtexec_version(text, str(args.trtexec_log))


def _print_trtexec(args: argparse.Namespace, spec, onnx: Path, plan: Path) -> int:
    release = args.container_release or DEFAULT_RELEASE
    version, described = release_tensorrt(release, args.container_trt_version)
    log = plan.with_name(plan.name + ".trtexec.log")
    print(f"# tensorrt {release}: {described}")
    print(f"{container_command(spec, release, version, gpus=docker_gpus_arg(args.gpu))} 2>&1 | "
          f"tee {shlex.quote(str(log))}")
    adopt = ["tritonkit", "build", "--model", args.model, "--onnx", str(onnx), "--precision", args.precision,
             "--min-batch", str(spec.batch.min), "--opt-batch", str(spec.batch.opt),
             "--max-batch", str(spec.batch.max), "--plan", str(plan), "--adopt-plan", str(plan),
             "--trtexec-log", str(log)]
    print(f"# then record its sidecar: {shlex.join(adopt)}", file=sys.stderr)
    for note in int8_notes(precision_flags(spec, version), version):
        print(f"# note: {note}", file=sys.stderr)
    return 0
