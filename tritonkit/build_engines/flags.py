"""What a :class:`BuildSpec` asks of TensorRT, per TensorRT major version — one decision for the
Python API (:mod:`.trt_adapter`) and for ``trtexec`` (:mod:`.trtexec`).

TensorRT 10.x (weakly typed): ``BuilderFlag.FP16`` / ``INT8`` and ``trtexec --fp16`` / ``--int8``
enable reduced precision (deprecated since 10.12: ``TRT_DEPRECATED_ENUM`` on kFP16/kINT8 in
``include/NvInfer.h`` of release/10.12). An int8 build from a QDQ ONNX sets FP16 too, else every layer
outside the Q/DQ pairs runs in FP32/TF32 (``kINT8``'s own comment: "with FP32 fallback with FP16
fallback if kFP16 also specified").

TensorRT 11 (strongly typed, always): kFP16/kINT8 are gone from ``BuilderFlag`` (``include/NvInfer.h``
on release/11.0 and main) and trtexec 11 has no ``--fp16``/``--int8`` (``samples/common/sampleOptions.cpp``
on release/11.0 parses them only for the safety builder). NVIDIA's pages "Removed Python APIs and
Replacements (10.x to 11.x)" and "Migrating trtexec Usage from TensorRT 10.x to 11.x" give the
replacements: int8 = explicit quantization (the QDQ ONNX, no flag); fp16 = an fp16 ONNX made first
with ModelOpt AutoCast. ``nvidia-modelopt`` is not a tritonkit dependency (its wheel requires torch,
and its ``onnx`` extra onnxruntime-gpu and cupy), so an fp32 ONNX asked for fp16 on 11 is refused
with the commands that make the fp16 ONNX: the install line of NVIDIA's "Python Migration Patterns
for TensorRT 11.x" page (TensorRT 11.4.1 docs, "Migrating from Weak Typing to Strong Typing") and
``python -m modelopt.onnx.autocast`` with ``--keep_io_types`` (``modelopt/onnx/autocast/__main__.py``
of NVIDIA/TensorRT-Model-Optimizer: without it the model's inputs and outputs become FP16, which the
cards' FP32 input contract refuses; the same page's Python example passes ``keep_io_types=True``).

int8 is not the same build on both majors. On 10.x the FP16 flag set with INT8 runs the layers outside
the Q/DQ pairs in FP16; 11 has no such flag and runs them in the QDQ ONNX's own float type, FP32 for
the QDQ ONNX tritonkit makes (onnxruntime's quantizer keeps the graph's FP32). So int8 figures of the
two majors are not comparable: every int8 build states the precision of its float layers
(``PrecisionFlags.float_layers``, recorded in the sidecar as ``int8_float_layers=...``), and an
FP32 one carries :data:`INT8_FP32_LAYERS_NOTE`, which names ModelOpt ONNX PTQ's
``--high_precision_dtype fp16`` (``modelopt/onnx/quantization/__main__.py``; FP16 is its default)
as the way to FP16 float layers on 11.

``sameComputeCapability``: trtexec 10.8 (tritonserver 25.01) accepts only ``none`` and ``ampere+``
(sampleOptions.cpp, release/10.8) and its NvInfer.h has no kSAME_COMPUTE_CAPABILITY; 10.9 has both.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonkit._lazy import lazy_import
from tritonkit.build_engines.releases import version_tuple
from tritonkit.build_engines.sidecar import INT8_FLOAT_LAYERS_FLAG
from tritonkit.build_engines.spec import BuildSpec, BuildSpecError

onnx = lazy_import("onnx")

SUPPORTED_MAJORS = (10, 11)
STRONGLY_TYPED_MAJOR = 11
SAME_CC_MIN_VERSION = (10, 9)
AUTOCAST_INSTALL = 'pip3 install --no-cache-dir --extra-index-url https://pypi.nvidia.com "nvidia-modelopt[all]"'
AUTOCAST_HINT = ("make an fp16 ONNX first with NVIDIA ModelOpt AutoCast ({install}; python -m modelopt.onnx.autocast "
                 "--onnx_path {onnx} --output_path {out} --keep_io_types) and build that one")


INT8_FP32_LAYERS_NOTE = (
    "int8 on TensorRT {major}: the layers outside the Q/DQ pairs run in FP32 (TensorRT 11 builds strongly typed and "
    "has no FP16 fallback flag; a TensorRT 10 int8 build runs them in FP16), so its int8 latency is not comparable "
    "with a TensorRT 10 int8 plan's; for FP16 float layers quantize with ModelOpt ONNX PTQ (python -m "
    "modelopt.onnx.quantization --quantize_mode int8 --high_precision_dtype fp16) and build that QDQ ONNX")


@dataclass(frozen=True)
class PrecisionFlags:
    """The precision switches one build uses: BuilderFlag member names and trtexec flags; for int8,
    ``float_layers``: the precision of the layers outside the Q/DQ pairs (``fp16`` or ``fp32``)."""

    builder_flags: tuple[str, ...]
    trtexec_flags: tuple[str, ...]
    strongly_typed: bool
    float_layers: str = ""

    def int8_record(self) -> tuple[str, ...]:
        """The sidecar's build-flag entry for an int8 build (empty for the other precisions)."""
        return (f"{INT8_FLOAT_LAYERS_FLAG}={self.float_layers}",) if self.float_layers else ()


def onnx_has_fp16(path) -> bool:
    """True when the ONNX carries float16 tensors (initializers, inputs or Casts to float16)."""
    model = onnx.load_model(str(path), load_external_data=False)   # (the lazy proxy has its own .load)
    fp16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == fp16 for t in model.graph.initializer):
        return True
    if any(v.type.tensor_type.elem_type == fp16 for v in model.graph.input):
        return True
    return any(n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute)
               for n in model.graph.node)


def _version(tensorrt_version: str) -> tuple[int, ...]:
    """A full version, or a major alone (``"11"``: a release whose exact TensorRT is not known here)."""
    text = str(tensorrt_version).strip()
    return (int(text),) if text.isdigit() else version_tuple(text)


def check_supported(spec: BuildSpec, tensorrt_version: str) -> int:
    """The TensorRT major, after refusing what that TensorRT cannot build; one-line errors.
    ``tensorrt_version`` may be a major alone: the precision flags depend on nothing else."""
    version = _version(tensorrt_version)
    if version[0] not in SUPPORTED_MAJORS:
        raise BuildSpecError(f"TensorRT {tensorrt_version}: tritonkit builds plans with TensorRT "
                             f"{' and '.join(map(str, SUPPORTED_MAJORS))}")
    if spec.hardware_compat == "same-cc" and len(version) == 1 and version[0] < STRONGLY_TYPED_MAJOR:
        raise BuildSpecError(f"hardware_compat same-cc needs TensorRT 10.9 or newer and only the major of this "
                             f"TensorRT ({version[0]}) is known; pass its full version (--container-trt-version)")
    if spec.hardware_compat == "same-cc" and version[:2] < SAME_CC_MIN_VERSION:
        raise BuildSpecError(f"hardware_compat same-cc needs TensorRT 10.9 or newer; TensorRT {tensorrt_version} "
                             "(tritonserver 25.01's) knows only none and ampere+")
    return version[0]


def precision_flags(spec: BuildSpec, tensorrt_version: str) -> PrecisionFlags:
    """The flags for ``spec.precision`` on that TensorRT (see the module docstring)."""
    major = check_supported(spec, tensorrt_version)
    if major < STRONGLY_TYPED_MAJOR:
        if spec.precision == "fp16":
            return PrecisionFlags(("FP16",), ("--fp16",), False)
        if spec.precision == "int8":
            return PrecisionFlags(("FP16", "INT8"), ("--fp16", "--int8"), False, "fp16")
        return PrecisionFlags((), (), False)
    if spec.precision == "fp16" and not onnx_has_fp16(spec.onnx):
        out = spec.onnx.with_name(f"{spec.onnx.stem}_fp16.onnx")
        hint = AUTOCAST_HINT.format(install=AUTOCAST_INSTALL, onnx=spec.onnx, out=out)
        raise BuildSpecError(f"{spec.onnx}: TensorRT {tensorrt_version} builds strongly typed (no fp16 flag) and this "
                             f"ONNX has no float16 tensors; {hint}")
    if spec.precision == "int8":
        return PrecisionFlags((), (), True, "fp16" if onnx_has_fp16(spec.onnx) else "fp32")
    return PrecisionFlags((), (), True)


def int8_notes(flags: PrecisionFlags, tensorrt_version: str) -> list[str]:
    """The note an int8 build with FP32 float layers carries (see the module docstring)."""
    if flags.float_layers != "fp32":
        return []
    return [INT8_FP32_LAYERS_NOTE.format(major=_version(tensorrt_version)[0])]


__all__ = ["PrecisionFlags", "precision_flags", "check_supported", "onnx_has_fp16", "int8_notes", "SUPPORTED_MAJORS",
           "STRONGLY_TYPED_MAJOR", "INT8_FP32_LAYERS_NOTE"]
