"""The only module that touches the ``tensorrt`` package: a BuildSpec in, serialized plan bytes out.

``tensorrt`` is imported through :func:`import_tensorrt`, so tritonkit imports and runs (and
prints the equivalent ``trtexec`` command) on machines without TensorRT. What to call is decided
by the installed major, parsed from ``tensorrt.__version__`` (never from an exception). The calls
exist in both TensorRT 10.x and 11 (``include/NvInfer.h`` and ``python/src/infer/pyCore.cpp`` of
NVIDIA/TensorRT on release/10.8, release/10.16, release/11.0 and main):

* ``Builder(logger)``; ``create_network(0)`` (explicit batch is the only mode since 10; 11 is
  strongly typed without a flag);
* ``OnnxParser(network, logger).parse_from_file(path)``;
* ``create_builder_config()`` + ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``,
  ``builder_optimization_level``, ``hardware_compatibility_level``, ``set_flag(VERSION_COMPATIBLE)``;
* precision flags only on 10.x (:mod:`.flags`: FP16, or FP16 + INT8 for a QDQ ONNX); none on 11;
* ``create_timing_cache(bytes)`` -> may return ``None`` for a corrupt or foreign cache (NVIDIA's own
  ``shared/utils/cacheUtils.cpp`` checks for nullptr): then a fresh cache, with a note;
  ``set_timing_cache(cache, ignore_mismatch)`` returns False for a cache that does not match: then a
  fresh one too; a fresh cache that cannot be created or set is a one-line error, never ignored;
  after the build, ``get_timing_cache().serialize()``;
* one ``create_optimization_profile()`` with ``set_shape(name, min, opt, max)``;
* ``build_serialized_network(network, config)`` (``None`` on failure).

INT8 is explicit quantization: the ONNX carries QDQ nodes and no calibrator is set.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tritonkit.build_engines.flags import PrecisionFlags, int8_notes, precision_flags
from tritonkit.build_engines.spec import HARDWARE_COMPAT, BuildSpec, BuildSpecError
from tritonkit.build_engines.releases import DEFAULT_RELEASE, container_tensorrt
from tritonkit.build_engines.trtexec import container_command
from tritonkit.errors import ToolMissingError, TritonkitError

MIN_TRT_MAJOR = 10


@dataclass(frozen=True)
class EngineBuild:
    """What one TensorRT build produced."""

    plan: bytes
    tensorrt_version: str
    timing_cache: bytes | None
    notes: tuple[str, ...] = ()
    precision_record: tuple[str, ...] = ()      # the sidecar's int8 entry (PrecisionFlags.int8_record)


def _without_tensorrt_hint(spec: BuildSpec | None) -> str:
    """The container command that builds ``spec`` in the default release (when it can be formed)."""
    if spec is None:
        return "`tritonkit build --trtexec-only --container-release R` prints the container command"
    try:
        trt = container_tensorrt(DEFAULT_RELEASE)
        return (f"run this (tensorrt {DEFAULT_RELEASE}, {trt.describe()}; pick the serving release with "
                f"--trtexec-only --container-release R): {container_command(spec, DEFAULT_RELEASE, trt.version)}")
    except TritonkitError as exc:
        return f"`tritonkit build --trtexec-only --container-release R` prints the container command ({exc})"


def import_tensorrt(spec: BuildSpec | None = None):
    """The ``tensorrt`` module, or a one-line ToolMissingError with the container command to run instead.

    Imported by name each call (not through ``_lazy``): a missing native library raises OSError,
    which the lazy proxy does not turn into a one-line error, and tests swap ``sys.modules``.
    """
    try:
        return importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:
        raise ToolMissingError(f"TensorRT is missing here (import tensorrt failed: {type(exc).__name__}); "
                               f"{_without_tensorrt_hint(spec)}") from None


def installed_version(trt) -> str:
    """``tensorrt.__version__`` as a string."""
    return str(getattr(trt, "__version__", ""))


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def _parser_errors(parser) -> str:
    msgs = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        desc = err.desc() if hasattr(err, "desc") else str(err)
        node = err.node() if hasattr(err, "node") else -1
        msgs.append(f"node {node}: {desc}" if node is not None and node >= 0 else str(desc))
    return "; ".join(msgs) or "no parser message"


def _configure(trt, builder, spec: BuildSpec, version: str, flags: PrecisionFlags):
    """A builder config for ``spec`` on this TensorRT version (precision per :mod:`.flags`)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    for name in flags.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    config.builder_optimization_level = spec.opt_level
    if spec.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if spec.hardware_compat != "none":
        member = HARDWARE_COMPAT[spec.hardware_compat][1]
        level = getattr(trt.HardwareCompatibilityLevel, member, None)
        if level is None:
            raise BuildSpecError(f"TensorRT {version} has no HardwareCompatibilityLevel.{member}")
        config.hardware_compatibility_level = level
    return config


def _fresh_timing_cache(config, path) -> None:
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise TritonkitError(f"{path}: TensorRT could not create a timing cache")


def _attach_timing_cache(config, spec: BuildSpec) -> list[str]:
    """Load ``spec.timing_cache`` into ``config``; a corrupt, stale or foreign cache is replaced by a new one."""
    path = spec.timing_cache
    old = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(old)
    if cache is not None and config.set_timing_cache(cache, False):
        return []
    _fresh_timing_cache(config, path)
    if cache is None:
        return [f"timing cache {path} could not be read by this TensorRT (corrupt or from another version); "
                "started a new one"]
    return [f"timing cache {path} did not match this TensorRT/GPU; started a new one"]


def _parse(trt, builder, logger, spec: BuildSpec):
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        raise TritonkitError(f"{spec.onnx}: TensorRT's ONNX parser failed: {_parser_errors(parser)}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if spec.input_name not in inputs:
        raise BuildSpecError(f"{spec.onnx}: TensorRT sees inputs {inputs}, not {spec.input_name!r}")
    if len(inputs) != 1:
        raise BuildSpecError(f"{spec.onnx}: TensorRT sees {len(inputs)} inputs {inputs}; the card describes one")
    return network


def build_serialized(spec: BuildSpec, trt=None) -> EngineBuild:
    """Build ``spec`` with the TensorRT Python API; raise one-line errors on any failure."""
    trt = trt if trt is not None else import_tensorrt(spec)
    version = installed_version(trt)
    if _major(version) < MIN_TRT_MAJOR:
        raise ToolMissingError(f"TensorRT {version} found; tritonkit builds plans with TensorRT "
                               f"{MIN_TRT_MAJOR}.x or newer")
    flags = precision_flags(spec, version)         # refuse what this TensorRT cannot build, before any work
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _parse(trt, builder, logger, spec)
    config = _configure(trt, builder, spec, version, flags)
    notes = int8_notes(flags, version)
    notes += _attach_timing_cache(config, spec) if spec.timing_cache is not None else []
    prof = spec.profile()
    profile = builder.create_optimization_profile()
    profile.set_shape(prof.input_name, prof.min, prof.opt, prof.max)
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TritonkitError(f"{spec.onnx}: TensorRT could not build a {spec.precision} plan for profile "
                             f"{prof.min}..{prof.max} (see the TensorRT messages above)")
    cache_out = None
    if spec.timing_cache is not None:
        cache_out = bytes(config.get_timing_cache().serialize())
    return EngineBuild(bytes(serialized), version, cache_out, tuple(notes), flags.int8_record())
