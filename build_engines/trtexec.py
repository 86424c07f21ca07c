"""A :class:`~tritonkit.build_engines.spec.BuildSpec` as a ``trtexec`` command line.

Flag spellings follow trtexec's own ``--help`` for TensorRT 10.x (``samples/common/sampleOptions.cpp``
in NVIDIA/TensorRT) and NVIDIA's "Migrating trtexec Usage from TensorRT 8.x to 10.x" page:

* shapes: ``--minShapes/--optShapes/--maxShapes=name:1x3x224x224`` (all three, batch included);
* ``--memPoolSize=workspace:<size>`` replaces the removed ``--workspace`` (size in MiB by default);
* ``--fp16`` / ``--int8`` enable the precision in addition to fp32; an ``--int8`` build from a QDQ
  ONNX is explicit quantization, so no ``--calib`` cache is given;
* ``--timingCacheFile=<file>`` loads and saves the timing cache;
* ``--builderOptimizationLevel=N`` (0..5, default 3);
* ``--versionCompatible`` and ``--hardwareCompatibilityLevel=none|ampere+|sameComputeCapability``;
* ``--skipInference`` stops after the engine is saved.

Explicit batch is the only mode in TensorRT 10, so no ``--explicitBatch``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tritonkit.build_engines.spec import HARDWARE_COMPAT, BuildSpec


def shape_arg(name: str, shape: tuple[int, ...]) -> str:
    return f"{name}:{'x'.join(str(d) for d in shape)}"


def trtexec_argv(spec: BuildSpec, trtexec: str = "trtexec", *, onnx: str | Path | None = None,
                 plan: str | Path | None = None, timing_cache: str | Path | None = None) -> list[str]:
    """The argv that builds ``spec`` with trtexec. Path overrides serve container mounts."""
    prof = spec.profile()
    argv = [
        trtexec,
        f"--onnx={onnx if onnx is not None else spec.onnx}",
        f"--saveEngine={plan if plan is not None else spec.plan}",
        f"--minShapes={shape_arg(prof.input_name, prof.min)}",
        f"--optShapes={shape_arg(prof.input_name, prof.opt)}",
        f"--maxShapes={shape_arg(prof.input_name, prof.max)}",
    ]
    if spec.precision == "fp16":
        argv.append("--fp16")
    elif spec.precision == "int8":
        argv.append("--int8")
    argv.append(f"--memPoolSize=workspace:{spec.workspace_mb}")
    cache = timing_cache if timing_cache is not None else spec.timing_cache
    if cache is not None:
        argv.append(f"--timingCacheFile={cache}")
    argv.append(f"--builderOptimizationLevel={spec.opt_level}")
    if spec.version_compatible:
        argv.append("--versionCompatible")
    if spec.hardware_compat != "none":
        argv.append(f"--hardwareCompatibilityLevel={HARDWARE_COMPAT[spec.hardware_compat][0]}")
    argv.append("--skipInference")
    return argv


def trtexec_command(spec: BuildSpec, trtexec: str = "trtexec", **overrides) -> str:
    """:func:`trtexec_argv` as one shell-quoted line."""
    return shlex.join(trtexec_argv(spec, trtexec, **overrides))
