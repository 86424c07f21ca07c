"""INT8 by explicit quantization: a QDQ ONNX calibrated on images preprocessed by the card.

TensorRT builds an INT8 plan from a graph that already carries QuantizeLinear/DequantizeLinear
pairs (explicit quantization; the implicit calibrator API is deprecated since TensorRT 10.1). The
QDQ graph is made here with onnxruntime's static quantizer:

* ``QuantFormat.QDQ``, ``QInt8`` activations and weights, per-channel weights;
* symmetric scales (``ActivationSymmetric`` / ``WeightSymmetric``: zero points are 0, as TensorRT
  requires); biases stay float (``QuantizeBias=False``);
* calibration ``max`` (MinMax), ``entropy`` or ``percentile``;
* ``op_types_to_quantize`` is the ops TensorRT runs in INT8 (convolutions and matrix products). For
  each of them onnxruntime quantizes the inputs *and the output*: a Q/DQ pair follows every Conv/Gemm,
  so tensors between them (e.g. after a Relu) are int8 too, and a model ending in a Gemm or Conv has
  its final logits / head outputs quantized (``logits`` is then produced by a DequantizeLinear);
* ``keep_head_float`` (default: the card's ``int8_head`` option; ``float`` keeps it) excludes the
  last quantizable node before each graph output, so the head and the model's outputs stay in float;
* ``exclude`` patterns keep nodes in float (e.g. a detector's box head): ``op:Sigmoid`` matches an
  op type, anything else is an fnmatch pattern on node names (``/model.24/*``).

The calibration images go through the card's own preprocessing, so the scales see exactly the
tensors the server will. The QDQ model also runs on onnxruntime's CPU provider, which is how the
local target measures fp32 vs int8 accuracy and size.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.build_engines.spec import validate_onnx
from tritonkit.cards import ModelCard
from tritonkit.client.decode import decode_file
from tritonkit.client.preprocess import preprocess
from tritonkit.errors import DatasetError, TritonkitError

onnx = lazy_import("onnx")
ort = lazy_import("onnxruntime")
ortq = lazy_import("onnxruntime.quantization", "onnxruntime")
ort_shape = lazy_import("onnxruntime.quantization.shape_inference", "onnxruntime")

CALIB_METHODS = ("max", "entropy", "percentile")
HEAD_FIELD = "int8_head"           # card field: "float" keeps the head (and the outputs) in float
DEFAULT_QUANT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


class QuantizeError(TritonkitError):
    """The QDQ model could not be made."""


@dataclass(frozen=True)
class QuantResult:
    onnx_fp32: Path
    onnx_int8: Path
    size_mb_fp32: float
    size_mb_int8: float
    method: str
    num_images: int
    excluded_nodes: tuple[str, ...]
    qdq_nodes: int
    seconds: float

    def to_dict(self) -> dict:
        return {"onnx_fp32": str(self.onnx_fp32), "onnx_int8": str(self.onnx_int8),
                "size_mb_fp32": round(self.size_mb_fp32, 3), "size_mb_int8": round(self.size_mb_int8, 3),
                "method": self.method, "num_images": self.num_images, "excluded_nodes": list(self.excluded_nodes),
                "qdq_nodes": self.qdq_nodes, "seconds": round(self.seconds, 2)}


def size_mb(path: str | Path) -> float:
    return os.path.getsize(path) / 1e6


def find_calibration_images(calib_dir: str | Path, limit: int | None = None) -> list[Path]:
    """Image files under ``calib_dir`` (recursive, sorted, first ``limit``); an empty set is an error."""
    root = Path(calib_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: calibration folder not found")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be >= 1 (got {limit})", fields=("limit",))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{root}: no calibration images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files[:limit] if limit is not None else files


def _decode(path: Path) -> np.ndarray:
    """RGB uint8 HWC via the project's decoder (client/decode.py); unreadable files are errors."""
    result = decode_file(path)
    if not result.ok:
        raise DatasetError(f"{path}: calibration image unusable: {result.reason}")
    return result.image


def calibration_batches(card: ModelCard, images: Sequence[Path], batch_size: int = 8) -> Iterator[np.ndarray]:
    """Preprocessed calibration batches ``[n, *card.input.dims]`` (float32), in file order.
    A dynamic-size card (``resize_short``) gets one image per batch, each at its own size."""
    if not images:
        raise DatasetError("no calibration images given")
    pp = card.preprocess
    if pp.dynamic:
        batch_size = 1
    buf: list[np.ndarray] = []
    for path in images:
        x, _ = preprocess(_decode(Path(path)), pp)
        buf.append(x.astype(np.float32, copy=False))
        if len(buf) == batch_size:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def resolve_excluded(model, patterns: Sequence[str]) -> list[str]:
    """Node names matched by ``patterns`` (``op:Type`` or fnmatch on names); unmatched patterns are errors."""
    names: list[str] = []
    for pat in patterns:
        if pat.startswith("op:"):
            hits = [n.name for n in model.graph.node if n.op_type == pat[3:]]
        else:
            hits = [n.name for n in model.graph.node if n.name and fnmatch.fnmatchcase(n.name, pat)]
        if not hits:
            raise QuantizeError(f"exclude pattern {pat!r} matches no node of the model")
        names += [h for h in hits if h not in names]
    return names


def head_nodes(model, op_types: Sequence[str] = DEFAULT_QUANT_OPS) -> list[str]:
    """Names of the last ``op_types`` node on each path back from a graph output (the model's head)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    heads: list[str] = []
    for graph_out in model.graph.output:
        stack, seen = [graph_out.name], set()
        while stack:
            node = producers.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in op_types:
                heads += [] if node.name in heads else [node.name]
            else:
                stack.extend(i for i in node.input if i in producers)
    return heads


def keeps_head_float(card: ModelCard) -> bool:
    return card.int8_head == "float"


def _calibration_method(method: str):
    methods = ortq.CalibrationMethod
    try:
        return {"max": methods.MinMax, "entropy": methods.Entropy, "percentile": methods.Percentile}[method]
    except KeyError:
        raise QuantizeError(f"unknown calibration method {method!r}; "
                            f"choose one of {', '.join(CALIB_METHODS)}") from None


def _batch_reader(input_name: str, batches: Iterator[np.ndarray]):
    """An onnxruntime CalibrationDataReader over preprocessed batches (one pass)."""
    class _BatchReader(ortq.CalibrationDataReader):
        def __init__(self) -> None:
            self.count = 0

        def get_next(self):
            batch = next(batches, None)
            if batch is None:
                return None
            self.count += len(batch)
            return {input_name: batch}

    return _BatchReader()


def _name_nodes(model) -> None:
    """Give unnamed nodes stable names so they can be excluded and reported."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def _prepared(model, tmp: Path) -> Path:
    """Save the (node-named) model with onnxruntime's quantization pre-processing: shape inference
    only, no graph optimization, so node names (and exclude patterns) survive."""
    named = tmp / "named.onnx"
    onnx.save(model, str(named))
    prepared = tmp / "prepared.onnx"
    try:
        ort_shape.quant_pre_process(str(named), str(prepared), skip_optimization=True)
    except Exception:  # symbolic shape inference gives up on some graphs; quantize the model as is
        return named
    return prepared


def quantize_int8(card: ModelCard, onnx_in: str | Path, onnx_out: str | Path, calib_images: Sequence[Path],
                  method: str = "max", exclude: Sequence[str] = (), *, percentile: float = 99.999,
                  op_types: Sequence[str] = DEFAULT_QUANT_OPS, per_channel: bool = True,
                  batch_size: int = 8, keep_head_float: bool | None = None) -> QuantResult:
    """Write a symmetric-int8 QDQ copy of ``onnx_in`` to ``onnx_out`` (atomically) and report sizes.

    ``keep_head_float`` None follows the card's ``int8_head`` option (see the module docstring)."""
    calib_method = _calibration_method(method)
    if not calib_images:
        raise DatasetError("no calibration images given (need at least one)")
    if not 0 < percentile <= 100:
        raise QuantizeError(f"percentile must be in (0, 100] (got {percentile})")
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    validate_onnx(card, onnx_in, "fp32")
    model = onnx.load_model(str(onnx_in))
    _name_nodes(model)
    excluded = resolve_excluded(model, exclude)
    if keeps_head_float(card) if keep_head_float is None else keep_head_float:
        excluded += [name for name in head_nodes(model, op_types) if name not in excluded]
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Images are decoded and preprocessed as the calibrator asks for them; an unusable image raises
    # a DatasetError out of quantize_static, and the temp folder takes the partial output with it.
    # Histogram calibrators (entropy, percentile) need equally shaped batches: feed them one image at a time.
    step = batch_size if method == "max" else 1
    reader = _batch_reader(card.input.name, calibration_batches(card, list(calib_images), step))
    with tempfile.TemporaryDirectory(prefix=".qdq.", dir=onnx_out.parent) as tmp:
        named = _prepared(model, Path(tmp))
        tmp_out = Path(tmp) / onnx_out.name
        try:
            ortq.quantize_static(
                str(named), str(tmp_out), reader, quant_format=ortq.QuantFormat.QDQ,
                op_types_to_quantize=list(op_types), per_channel=per_channel,
                activation_type=ortq.QuantType.QInt8, weight_type=ortq.QuantType.QInt8,
                nodes_to_exclude=excluded, calibrate_method=calib_method, extra_options=extra)
        except TritonkitError:
            raise
        except Exception as exc:  # onnxruntime raises plain exceptions with long messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantizeError(f"{onnx_in}: onnxruntime quantization failed: {first}") from None
        qdq = sum(1 for n in onnx.load_model(str(tmp_out)).graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
        if qdq == 0:
            raise QuantizeError(f"{onnx_in}: quantization inserted no QDQ nodes (no {', '.join(op_types)} ops?)")
        os.replace(tmp_out, onnx_out)
    return QuantResult(onnx_in, onnx_out, size_mb(onnx_in), size_mb(onnx_out), method, reader.count,
                       tuple(excluded), qdq, time.perf_counter() - start)


@dataclass(frozen=True)
class OutputDelta:
    """How far the int8 model's outputs are from the fp32 model's on the same inputs."""

    max_abs: float
    mean_abs: float
    cosine: float
    top1_agreement: float | None = None


def compare_onnx_outputs(onnx_fp32: str | Path, onnx_int8: str | Path, batch: np.ndarray,
                         input_name: str) -> OutputDelta:
    """Run both models with onnxruntime (CPU) on ``batch`` and compare their first outputs."""
    def run(path) -> np.ndarray:
        so = ort.SessionOptions()
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return sess.run(None, {input_name: batch})[0].astype(np.float64)

    a, b = run(onnx_fp32), run(onnx_int8)
    if a.shape != b.shape:
        raise QuantizeError(f"output shapes differ: fp32 {a.shape}, int8 {b.shape}")
    diff = np.abs(a - b)
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    denom = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    cos = float(np.mean(np.sum(fa * fb, axis=1) / np.where(denom == 0, 1.0, denom)))
    top1 = float(np.mean(fa.argmax(1) == fb.argmax(1))) if a.ndim == 2 else None
    return OutputDelta(float(diff.max()), float(diff.mean()), cos, top1)
