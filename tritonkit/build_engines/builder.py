"""Build a plan from a :class:`BuildSpec` and write it with its sidecar, atomically.

:func:`build_plan` queries the build GPU first (a failed query costs no finished engine), runs the
TensorRT Python API (:mod:`.trt_adapter`), then writes plan and
sidecar in a temporary folder beside the destination and moves them in: first the old sidecar
goes, then the plan, then the new sidecar — an interruption leaves at worst a plan without a
sidecar, which every check refuses, never a plan paired with another build's sidecar.
:func:`adopt_plan` writes the sidecar for a plan built by ``trtexec``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonkit.build_engines.flags import int8_notes, precision_flags
from tritonkit.build_engines.host import build_device, build_gpu
from tritonkit.build_engines.sidecar import (
    GpuInfo, Sidecar, check_tensorrt_version, make_sidecar, sidecar_path, sidecar_text)
from tritonkit.build_engines.spec import BuildSpec
from tritonkit.build_engines.trt_adapter import build_serialized, import_tensorrt
from tritonkit.build_engines.trtexec import trtexec_argv
from tritonkit.errors import TritonkitError
from tritonkit.io import atomic_write_bytes, atomic_write_text, sha256_file


@dataclass(frozen=True)
class BuiltPlan:
    plan: Path
    sidecar_path: Path
    sidecar: Sidecar
    notes: tuple[str, ...] = ()


def _the_gpu(gpu: GpuInfo | None, gpu_index: int | None) -> GpuInfo:
    return gpu if gpu is not None else build_gpu(gpu_index)


def install_plan(plan_bytes: bytes, side: Sidecar, plan: Path) -> Path:
    """Write ``plan`` and its sidecar through a temp folder (see the module docstring for the order)."""
    plan = Path(plan)
    plan.parent.mkdir(parents=True, exist_ok=True)
    side_path = sidecar_path(plan)
    staging = Path(tempfile.mkdtemp(prefix=f".{plan.name}.", dir=plan.parent))
    try:
        tmp_plan = staging / plan.name
        tmp_side = staging / side_path.name
        tmp_plan.write_bytes(plan_bytes)
        tmp_side.write_text(sidecar_text(side))
        side_path.unlink(missing_ok=True)
        os.replace(tmp_plan, plan)
        os.replace(tmp_side, side_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return side_path


def build_plan(spec: BuildSpec, *, trt=None, gpu: GpuInfo | None = None, gpu_index: int | None = None) -> BuiltPlan:
    """Build ``spec`` with TensorRT and install ``spec.plan`` + sidecar (+ the timing cache).

    ``trt`` is the tensorrt module (imported when ``None``); ``gpu`` the build GPU (queried with
    ``nvidia-smi [-i gpu_index]`` when ``None``, before the build). The build runs on this process's
    CUDA device 0: with ``gpu_index`` it must be that GPU (:func:`~.host.build_device`, one-line
    error otherwise), and its PCI bus id is recorded.
    """
    trt = trt if trt is not None else import_tensorrt(spec)       # a missing TensorRT is said first
    the_gpu = build_device(_the_gpu(gpu, gpu_index), gpu_index)     # then the GPU, before any build work
    onnx_digest = sha256_file(spec.onnx)
    built = build_serialized(spec, trt)
    side = make_sidecar(spec, onnx_digest, built.tensorrt_version, the_gpu, "tensorrt-python",
                        build_flags=spec.flag_summary() + built.precision_record)
    side_path = install_plan(built.plan, side, spec.plan)
    if built.timing_cache is not None and spec.timing_cache is not None:
        atomic_write_bytes(spec.timing_cache, built.timing_cache)
    return BuiltPlan(spec.plan, side_path, side, built.notes)


def adopt_plan(spec: BuildSpec, plan: str | Path, tensorrt_version: str, gpu: GpuInfo | None = None, *,
               gpu_index: int | None = None) -> BuiltPlan:
    """Record a sidecar for a plan that ``trtexec`` built from ``spec`` (same ONNX, profile, flags).

    The TensorRT version is the one trtexec printed (``[TensorRT v101303]`` -> ``10.13.3``, or
    the container's full version); the GPU is queried when not given. A failed query leaves the
    plan where it is.
    """
    plan = Path(plan)
    if not plan.is_file() or plan.stat().st_size == 0:
        raise TritonkitError(f"{plan}: plan file not found (or empty)")
    check_tensorrt_version(tensorrt_version)
    precision = precision_flags(spec, tensorrt_version)
    flags = tuple(trtexec_argv(spec, tensorrt_version=tensorrt_version, onnx=spec.onnx.name, plan=plan.name)[1:])
    side = make_sidecar(spec, sha256_file(spec.onnx), tensorrt_version, _the_gpu(gpu, gpu_index), "trtexec",
                        build_flags=flags + precision.int8_record())
    atomic_write_text(sidecar_path(plan), sidecar_text(side))
    return BuiltPlan(plan, sidecar_path(plan), side, tuple(int8_notes(precision, tensorrt_version)))
