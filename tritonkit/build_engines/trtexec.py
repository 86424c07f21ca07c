"""A :class:`~tritonkit.build_engines.spec.BuildSpec` as a ``trtexec`` command line, for the TensorRT
major of the container that will run it.

Flag spellings follow trtexec's parser (``samples/common/sampleOptions.cpp`` in NVIDIA/TensorRT, read on
release/10.8, release/10.16, release/11.0 and main) and NVIDIA's pages "Migrating trtexec Usage from
TensorRT 8.x to 10.x" and "... from TensorRT 10.x to 11.x":

* shapes: ``--minShapes/--optShapes/--maxShapes=name:1x3x224x224`` (all three, batch included);
* ``--memPoolSize=workspace:<size>`` (MiB by default);
* precision (:mod:`.flags`): 10.x ``--fp16``, or ``--fp16 --int8`` for a QDQ ONNX (explicit
  quantization, no ``--calib``); 11 has no precision flags (strongly typed: the ONNX's own types);
* ``--timingCacheFile=<file>`` loads and saves the timing cache;
* ``--builderOptimizationLevel=N`` (0..5, default 3);
* ``--versionCompatible`` and ``--hardwareCompatibilityLevel=none|ampere+|sameComputeCapability``
  (``sameComputeCapability`` from 10.9 on);
* ``--skipInference`` stops after the engine is saved.

:func:`container_argv` wraps it in ``docker run`` of NGC's ``tensorrt:<release>-py3`` image, whose
trtexec is ``/usr/src/tensorrt/bin/trtexec`` (where NVIDIA's TensorRT packages install it; the image
does not put it on PATH), with the ONNX, plan and cache folders mounted: a command that runs as printed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tritonkit.build_engines.flags import precision_flags
from tritonkit.build_engines.releases import (
    TENSORRT_IMAGE, VERSION_RE, CompatError, container_tensorrt, container_tensorrt_major, parse_release,
    parse_tensorrt_version)
from tritonkit.build_engines.spec import HARDWARE_COMPAT, BuildSpec

TRTEXEC_IN_CONTAINER = "/usr/src/tensorrt/bin/trtexec"
# trtexec's first line names the TensorRT that runs it: "&&&& RUNNING TensorRT.trtexec [TensorRT v101303] # ..."
# (samples/common/logging.h, defineTest: "[TensorRT v" + NV_TENSORRT_VERSION + "]"; NvInferRuntimeBase.h of
# 10.x and 11: NV_TENSORRT_VERSION = major * 10000 + minor * 100 + patch)
_BANNER_RE = re.compile(r"\[TensorRT v(\d{6,})\]")
_MOUNTS = {"onnx": "/work/onnx", "plan": "/work/plans", "cache": "/work/cache"}
_USER_SHELL = "$(id -u):$(id -g)"


def banner_version(number: int) -> str:
    """``101303`` (``NV_TENSORRT_VERSION`` of 10.x and 11) -> ``"10.13.3"``."""
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def trtexec_version(text: str, source: str = "--trt-version") -> str:
    """The TensorRT version that ran trtexec, from its ``[TensorRT v101303]`` banner (anywhere in
    ``text``: its whole output, the banner, or ``v101303``) or a full version given as it is
    (``10.13.3.9``). One-line error otherwise."""
    text = str(text)
    m = _BANNER_RE.search(text) or _BANNER_RE.search(f"[TensorRT {text.strip()}]")
    if m is not None:
        return banner_version(int(m.group(1)))
    if VERSION_RE.fullmatch(text.strip()):
        return parse_tensorrt_version(text)
    raise CompatError(f"{source}: neither trtexec's '[TensorRT vNNNNNN]' banner nor a TensorRT version like 10.13.3.9")


def release_tensorrt(release: str, override: str | None = None) -> tuple[str, str]:
    """(the version trtexec's flags are chosen for, a description) of ``tensorrt:<release>-py3``'s TensorRT:
    the exact version where tritonkit knows it, else the major alone (the flags depend on nothing else;
    the plan's sidecar then records the version trtexec prints, never a guess)."""
    try:
        trt = container_tensorrt(release, override)
    except CompatError:
        major = container_tensorrt_major(release, override)        # a release not in the table: one-line error
        return str(major), f"TensorRT {major}.x (exact version not in tritonkit's table; trtexec prints it)"
    return trt.version, trt.describe()


def shape_arg(name: str, shape: tuple[int, ...]) -> str:
    return f"{name}:{'x'.join(str(d) for d in shape)}"


def trtexec_argv(spec: BuildSpec, trtexec: str = "trtexec", *, tensorrt_version: str,
                 onnx: str | Path | None = None, plan: str | Path | None = None,
                 timing_cache: str | Path | None = None) -> list[str]:
    """The argv that builds ``spec`` with the trtexec of ``tensorrt_version``. Path overrides serve mounts."""
    flags = precision_flags(spec, tensorrt_version)
    prof = spec.profile()
    argv = [
        trtexec,
        f"--onnx={onnx if onnx is not None else spec.onnx}",
        f"--saveEngine={plan if plan is not None else spec.plan}",
        f"--minShapes={shape_arg(prof.input_name, prof.min)}",
        f"--optShapes={shape_arg(prof.input_name, prof.opt)}",
        f"--maxShapes={shape_arg(prof.input_name, prof.max)}",
        *flags.trtexec_flags,
        f"--memPoolSize=workspace:{spec.workspace_mb}",
    ]
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


def trtexec_command(spec: BuildSpec, trtexec: str = "trtexec", **kwargs) -> str:
    """:func:`trtexec_argv` as one shell-quoted line."""
    return shlex.join(trtexec_argv(spec, trtexec, **kwargs))


def container_argv(spec: BuildSpec, release: str, tensorrt_version: str, *, gpus: str = "all",
                   user: str = _USER_SHELL) -> list[str]:
    """``docker run`` of ``tensorrt:<release>-py3`` building ``spec`` with its trtexec; host folders
    of the ONNX, plan and timing cache are mounted at /work/onnx (read-only), /work/plans, /work/cache."""
    image = TENSORRT_IMAGE.format(release=parse_release(release))
    mounts = ["-v", f"{spec.onnx.parent.resolve()}:{_MOUNTS['onnx']}:ro",
              "-v", f"{spec.plan.parent.resolve()}:{_MOUNTS['plan']}"]
    cache = None
    if spec.timing_cache is not None:
        mounts += ["-v", f"{spec.timing_cache.parent.resolve()}:{_MOUNTS['cache']}"]
        cache = f"{_MOUNTS['cache']}/{spec.timing_cache.name}"
    inner = trtexec_argv(spec, TRTEXEC_IN_CONTAINER, tensorrt_version=tensorrt_version,
                         onnx=f"{_MOUNTS['onnx']}/{spec.onnx.name}", plan=f"{_MOUNTS['plan']}/{spec.plan.name}",
                         timing_cache=cache)
    return ["docker", "run", "--rm", "--gpus", gpus, "--user", user, *mounts, image, *inner]


def container_command(spec: BuildSpec, release: str, tensorrt_version: str, **kwargs) -> str:
    """:func:`container_argv` as one line a shell runs as printed (``--user "$(id -u):$(id -g)"``)."""
    line = shlex.join(container_argv(spec, release, tensorrt_version, **kwargs))
    return line.replace(shlex.quote(_USER_SHELL), f'"{_USER_SHELL}"')


__all__ = ["shape_arg", "trtexec_argv", "trtexec_command", "container_argv", "container_command",
           "TRTEXEC_IN_CONTAINER", "trtexec_version", "banner_version", "release_tensorrt"]
