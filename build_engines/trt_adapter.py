"""The only module that touches the ``tensorrt`` package: a BuildSpec in, serialized plan bytes out.

``tensorrt`` is imported inside :func:`import_tensorrt`, so tritonkit imports and runs (and
prints the equivalent ``trtexec`` command) on machines without TensorRT. The calls follow the
TensorRT 10.x Python API:

* ``Builder(logger)``; ``create_network(0)`` (explicit batch is the only mode in TensorRT 10);
* ``OnnxParser(network, logger).parse_from_file(path)``;
* ``create_builder_config()`` + ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``,
  ``set_flag(BuilderFlag.FP16 | INT8 | VERSION_COMPATIBLE)``, ``builder_optimization_level``,
  ``hardware_compatibility_level``;
* ``create_timing_cache(bytes)`` / ``set_timing_cache(cache, ignore_mismatch)`` and, after the
  build, ``get_timing_cache().serialize()``;
* one ``create_optimization_profile()`` with ``set_shape(name, min, opt, max)``;
* ``build_serialized_network(network, config)`` (``None`` on failure).

INT8 is explicit quantization: the ONNX carries QDQ nodes and no calibrator is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonkit.build_engines.spec import HARDWARE_COMPAT, BuildSpec, BuildSpecError
from tritonkit.build_engines.trtexec import trtexec_command
from tritonkit.errors import ToolMissingError, TritonkitError

MIN_TRT_MAJOR = 10


@dataclass(frozen=True)
class EngineBuild:
    """What one TensorRT build produced."""

    plan: bytes
    tensorrt_version: str
    timing_cache: bytes | None
    notes: tuple[str, ...] = ()


def import_tensorrt(spec: BuildSpec | None = None):
    """The ``tensorrt`` module, or a one-line ToolMissingError with the trtexec command to run instead."""
    try:
        import tensorrt  # noqa: PLC0415 - optional, GPU hosts only
    except (ImportError, OSError) as exc:
        hint = (trtexec_command(spec) if spec is not None
                else "see `tritonkit build --trtexec-only` for the trtexec command")
        raise ToolMissingError(
            f"TensorRT is missing here (import tensorrt failed: {type(exc).__name__}); run this instead, "
            f"in nvcr.io/nvidia/tensorrt:<release>-py3 of the serving release: {hint}") from None
    return tensorrt


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


def build_serialized(spec: BuildSpec, trt=None) -> EngineBuild:
    """Build ``spec`` with the TensorRT Python API; raise one-line errors on any failure."""
    trt = trt if trt is not None else import_tensorrt(spec)
    version = str(trt.__version__)
    if _major(version) < MIN_TRT_MAJOR:
        raise ToolMissingError(f"TensorRT {version} found; tritonkit builds plans with TensorRT "
                               f"{MIN_TRT_MAJOR}.x or newer")
    notes: list[str] = []
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        raise TritonkitError(f"{spec.onnx}: TensorRT's ONNX parser failed: {_parser_errors(parser)}")

    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if spec.input_name not in inputs:
        raise BuildSpecError(f"{spec.onnx}: TensorRT sees inputs {inputs}, not {spec.input_name!r}")
    if len(inputs) != 1:
        raise BuildSpecError(f"{spec.onnx}: TensorRT sees {len(inputs)} inputs {inputs}; the card describes one")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    if spec.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif spec.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    config.builder_optimization_level = spec.opt_level
    if spec.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if spec.hardware_compat != "none":
        member = HARDWARE_COMPAT[spec.hardware_compat][1]
        level = getattr(trt.HardwareCompatibilityLevel, member, None)
        if level is None:
            raise BuildSpecError(f"TensorRT {version} has no HardwareCompatibilityLevel.{member}")
        config.hardware_compatibility_level = level

    if spec.timing_cache is not None:
        old = spec.timing_cache.read_bytes() if spec.timing_cache.is_file() else b""
        cache = config.create_timing_cache(old)
        if not config.set_timing_cache(cache, False):
            # A cache from another TensorRT version or GPU: start a fresh one rather than fail.
            notes.append(f"timing cache {spec.timing_cache} did not match this TensorRT/GPU; started a new one")
            config.set_timing_cache(config.create_timing_cache(b""), False)

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
    return EngineBuild(bytes(serialized), version, cache_out, tuple(notes))
