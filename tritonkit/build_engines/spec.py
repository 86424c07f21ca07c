"""One build spec for a TensorRT plan, shared by the Python-API builder and ``trtexec``.

A :class:`BuildSpec` is made from a model card, an ONNX file and a precision; it carries the
single optimization profile the plan is built with. The profile always spans
``min=(min_batch, *dims)`` .. ``max=(max_batch, *dims)`` from the card's per-sample dims, so a
plan can never be built with a static batch of 1 while the Triton config says
``max_batch_size > 1`` (the "expected dimension 0 between 1 and 1" failure,
triton-inference-server/server#4038). A card with dynamic height and width (``-1`` dims,
``resize_short`` segmenters) gives them from its ``dynamic_shape``: H and W at ``min``, ``opt``
and ``max`` go into the profile's min, opt and max shapes.

The ONNX is checked against the card with ``onnx`` before anything else: the file exists, the
input name and per-sample dims match, the batch axis is dynamic, and an ``int8`` build gets a
QDQ graph (explicit quantization; TensorRT is given no calibrator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonkit.cards import ModelCard, SpatialRange
from tritonkit.errors import TritonkitError
from tritonkit.io import sha256_file  # noqa: F401  (builder and compat import it from here)
from tritonkit.onnx_contract import OnnxContractError, load_onnx, onnx_mismatches

PRECISIONS = ("fp32", "fp16", "int8")
# Where each precision is built and measured. fp16 has no CPU counterpart worth measuring (the CPU
# target serves ONNX through onnxruntime's CPU provider), so an fp16 number is always a GPU number.
PRECISION_TARGETS = {
    "fp32": "GPU (TensorRT plan) and CPU target (the fp32 ONNX through onnxruntime)",
    "fp16": "GPU only (TensorRT plan); the CPU target has no fp16 path",
    "int8": "GPU (TensorRT plan from the QDQ ONNX) and CPU target (the same QDQ ONNX through onnxruntime)",
}
# Our names -> trtexec's --hardwareCompatibilityLevel values -> tensorrt.HardwareCompatibilityLevel members.
HARDWARE_COMPAT = {
    "none": ("none", "NONE"),
    "ampere+": ("ampere+", "AMPERE_PLUS"),
    "same-cc": ("sameComputeCapability", "SAME_COMPUTE_CAPABILITY"),
}
MAX_OPT_LEVEL = 5          # trtexec --builderOptimizationLevel: 0..5, default 3
DEFAULT_OPT_LEVEL = 3
DEFAULT_WORKSPACE_MB = 4096
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class BuildSpecError(TritonkitError):
    """A build request that cannot make a valid plan."""


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes a plan accepts: ``min <= opt <= max``."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 1:
            raise BuildSpecError(f"min_batch must be >= 1 (got {self.min})", fields=("min_batch",))
        if not self.min <= self.opt <= self.max:
            raise BuildSpecError(
                f"batch range must satisfy min <= opt <= max (got min {self.min}, opt {self.opt}, max {self.max})")


def default_opt_batch(min_batch: int, max_batch: int) -> int:
    """The batch TensorRT tunes kernels for when none is given.

    Half the max, rounded down to a power of two (8 -> 4, 32 -> 16), never below ``min``: with
    dynamic batching Triton mostly forms mid-sized batches, and tactics chosen for the middle of
    the range stay reasonable at both ends.
    """
    half = max(1, max_batch // 2)
    opt = 1 << (half.bit_length() - 1)
    return max(min_batch, min(opt, max_batch))


def batch_range(card: ModelCard, min_batch: int = 1, opt_batch: int | None = None,
                max_batch: int | None = None) -> BatchRange:
    """Defaults ``1 / default_opt_batch / card.max_batch_size``; a max above the card's is an error."""
    mx = card.max_batch_size if max_batch is None else max_batch
    if mx > card.max_batch_size:
        raise BuildSpecError(f"max_batch {mx} is above the max_batch_size {card.max_batch_size} of card "
                             f"{card.name!r}; the Triton config could not use it", fields=("max_batch",))
    if mx < 1:
        raise BuildSpecError(f"max_batch must be >= 1 (got {mx})", fields=("max_batch",))
    opt = default_opt_batch(min_batch, mx) if opt_batch is None else opt_batch
    return BatchRange(min_batch, opt, mx)


@dataclass(frozen=True)
class ProfileShapes:
    """The one optimization profile of a plan: full shapes (batch first) for one input."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"input": self.input_name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class BuildSpec:
    """Everything needed to build one plan, independent of the tool that builds it."""

    model: str
    input_name: str
    sample_dims: tuple[int, ...]
    onnx: Path
    plan: Path
    precision: str
    batch: BatchRange
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Path | None = None
    opt_level: int = DEFAULT_OPT_LEVEL
    version_compatible: bool = False
    hardware_compat: str = "none"
    spatial: SpatialRange | None = None   # H and W of the -1 dims (a dynamic-size card)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BuildSpecError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.workspace_mb < 1:
            raise BuildSpecError(f"workspace_mb must be >= 1 (got {self.workspace_mb})", fields=("workspace_mb",))
        if not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise BuildSpecError(f"builder optimization level must be 0..{MAX_OPT_LEVEL} (got {self.opt_level})")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise BuildSpecError(f"unknown hardware compatibility {self.hardware_compat!r}; "
                                 f"choose one of {', '.join(HARDWARE_COMPAT)}")
        dynamic = sum(1 for d in self.sample_dims if d == -1)
        if any(d < 1 and d != -1 for d in self.sample_dims) or (dynamic and (self.spatial is None or dynamic != 2)):
            raise BuildSpecError(f"{self.model}: per-sample dims {self.sample_dims} must be concrete (> 0), or "
                                 "have dynamic H and W (-1, -1) with the card's dynamic_shape, to build a "
                                 "TensorRT profile")

    def _dims(self, hw: tuple[int, int] | None) -> tuple[int, ...]:
        if hw is None or self.spatial is None:
            return tuple(self.sample_dims)
        spatial = iter(hw)
        return tuple(next(spatial) if d == -1 else d for d in self.sample_dims)

    def profile(self) -> ProfileShapes:
        sp = self.spatial
        return ProfileShapes(self.input_name, (self.batch.min, *self._dims(sp and sp.min)),
                             (self.batch.opt, *self._dims(sp and sp.opt)), (self.batch.max, *self._dims(sp and sp.max)))

    @property
    def workspace_bytes(self) -> int:
        return self.workspace_mb * (1 << 20)

    def flag_summary(self) -> tuple[str, ...]:
        """Tool-neutral record of the build options (stored in the sidecar)."""
        flags = [f"precision={self.precision}", f"workspace_mb={self.workspace_mb}",
                 f"opt_level={self.opt_level}", f"hardware_compat={self.hardware_compat}"]
        if self.version_compatible:
            flags.append("version_compatible")
        if self.timing_cache is not None:
            flags.append("timing_cache")
        return tuple(flags)


def validate_onnx(card: ModelCard, onnx_path: str | Path, precision: str = "fp32",
                  batch: BatchRange | None = None) -> None:
    """Check the ONNX against the card before any build; one error lists every problem.

    * the file exists and parses;
    * the graph fits the card (:func:`tritonkit.onnx_contract.onnx_mismatches`: the card's input is the
      only graph input, names, dtypes and per-sample dims agree, a named dynamic dim is accepted);
    * the batch axis is dynamic (a fixed batch is only accepted when the whole range is that batch);
    * ``int8`` needs QuantizeLinear/DequantizeLinear nodes (explicit quantization).
    """
    path = Path(onnx_path)
    try:
        model = load_onnx(path)
    except OnnxContractError as exc:
        raise BuildSpecError(str(exc)) from None
    problems = onnx_mismatches(card, model, batch=(batch.min, batch.max) if batch is not None else None)
    ops = {n.op_type for n in model.graph.node}
    if precision == "int8" and not set(QDQ_OPS) <= ops:
        problems.append("precision int8 builds from a QDQ ONNX (explicit quantization) and this graph has no "
                        "QuantizeLinear/DequantizeLinear nodes; make one with "
                        "`tritonkit build --precision int8 --calib-dir DIR --qdq-only`")
    if problems:
        raise BuildSpecError(f"{path} does not fit card {card.name!r}: " + "; ".join(problems))


def make_spec(card: ModelCard, onnx_path: str | Path, precision: str, plan_path: str | Path, *,
              min_batch: int = 1, opt_batch: int | None = None, max_batch: int | None = None,
              workspace_mb: int = DEFAULT_WORKSPACE_MB, timing_cache: str | Path | None = None,
              opt_level: int = DEFAULT_OPT_LEVEL, version_compatible: bool = False,
              hardware_compat: str = "none", check_onnx: bool = True) -> BuildSpec:
    """A validated :class:`BuildSpec`: precision and batch range first, then the ONNX against the card."""
    if precision not in PRECISIONS:
        raise BuildSpecError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if card.input.dtype not in ("FP32", "FP16"):
        raise BuildSpecError(f"card {card.name!r}: input dtype {card.input.dtype} is not a float image input")
    batch = batch_range(card, min_batch, opt_batch, max_batch)
    if check_onnx:
        validate_onnx(card, onnx_path, precision, batch)
    return BuildSpec(
        model=card.name, input_name=card.input.name, sample_dims=tuple(card.input.dims), onnx=Path(onnx_path),
        plan=Path(plan_path), precision=precision, batch=batch, workspace_mb=workspace_mb,
        timing_cache=Path(timing_cache) if timing_cache is not None else None, opt_level=opt_level,
        version_compatible=version_compatible, hardware_compat=hardware_compat, spatial=card.dynamic_shape)


def default_plan_path(out_dir: str | Path, card: ModelCard, precision: str) -> Path:
    """``<out>/<model>_<precision>.plan`` (its sidecar is ``<plan>.json``)."""
    return Path(out_dir) / f"{card.name}_{precision}.plan"
