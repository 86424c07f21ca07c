"""Parameter and FLOP counts: of the torch model at export, or of an ONNX graph.

ONNX graphs: multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul at batch 1, from the
shapes ONNX shape inference gives. Where it cannot (a Conv fed by a ``Pad`` whose pads are
computed at run time), one batch-1 onnxruntime run records the shapes of the values those ops
read and write. A node whose shapes are still unknown makes the count unknown, never a smaller
number: :class:`MacCount` then has ``macs=None`` and says how many ops had no shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard
from tritonkit.onnx_contract import graph_dims, graph_inputs

onnx = lazy_import("onnx")
ort = lazy_import("onnxruntime")
torch = lazy_import("torch")
flop_counter = lazy_import("torch.utils.flop_counter")

FLOPS_TORCH = "torch.utils.flop_counter.FlopCounterMode (torch model, batch 1, at export)"
FLOPS_ONNX = "ONNX graph: Conv/ConvTranspose/Gemm/MatMul MACs after shape inference (batch 1)"
FLOPS_ONNX_ORT = "ONNX graph: Conv/ConvTranspose/Gemm/MatMul MACs, shapes from one batch-1 onnxruntime run"
COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_NUMPY = {1: np.float32, 10: np.float16, 11: np.float64, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_}


@dataclass(frozen=True)
class MacCount:
    """MACs of one image (``None``: unknown), how they were counted, and the ops without shapes."""

    macs: int | None
    method: str
    ops_without_shapes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.macs is None:
            return f"unknown ({len(self.ops_without_shapes)} ops without shapes)"
        return f"{self.macs / 1e9:.3f} GMACs"


def torch_param_count(model) -> int:
    """Elements of the torch model's parameters (BatchNorm affine included, buffers not): the
    count torchvision and timm publish (resnet50: 25,557,032)."""
    return int(sum(p.numel() for p in model.parameters()))


def torch_flops(model, card: ModelCard) -> int:
    """FLOPs of one image through ``model`` (torch's counter: 2 per multiply-accumulate)."""
    x = torch.zeros(card.input_shape(1), dtype=torch.float32)
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def onnx_param_count(model) -> int:
    """Elements of the floating-point weights: initializers plus ``Constant`` tensors."""
    float_types = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
    total = sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer if t.data_type in float_types)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in float_types:
                    total += int(np.prod(attr.t.dims, dtype=np.int64))
    return total


def _with_batch_one(model, card: ModelCard):
    """A copy whose real inputs have batch 1 and the card's concrete dims where they were symbolic."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    concrete = card.input_shape(1)[1:]
    for v in graph_inputs(m):
        dims = v.type.tensor_type.shape.dim
        if not len(dims):
            continue
        dims[0].Clear()
        dims[0].dim_value = 1
        if v.name == card.input.name and len(dims) == len(concrete) + 1:
            for d, want in zip(list(dims)[1:], concrete):
                if not d.HasField("dim_value") and want > 0:
                    d.Clear()
                    d.dim_value = want
    return m


def _node_macs(node, known) -> int | None:
    op = node.op_type
    if op == "Conv":
        w, out = known(node.input[1]), known(node.output[0])
        return int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64)) if w and out else None
    if op == "ConvTranspose":
        x, w = known(node.input[0]), known(node.input[1])
        return int(np.prod(x, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64)) if x and w else None
    a, out = known(node.input[0]), known(node.output[0])
    if not (a and out):
        return None
    if op == "Gemm":
        if len(a) != 2:
            return None
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        return int(np.prod(out, dtype=np.int64)) * (a[0] if trans_a else a[1])
    return int(np.prod(out, dtype=np.int64)) * a[-1]  # MatMul


def _count(nodes, shapes: dict) -> tuple[int, list[str]]:
    def known(name: str) -> list[int] | None:
        d = shapes.get(name)
        return list(d) if d and all(isinstance(x, int) and x > 0 for x in d) else None

    total, missing = 0, []
    for node in nodes:
        if node.op_type in COUNTED_OPS:
            macs = _node_macs(node, known)
            if macs is None:
                missing.append(node.op_type)
            else:
                total += macs
    return total, missing


def _ort_shapes(model, card: ModelCard, names: list[str], types: dict) -> dict:
    """Shapes of ``names`` from one batch-1 onnxruntime run (each added as a graph output)."""
    m = _with_batch_one(model, card)
    present = {o.name for o in m.graph.output}
    default_type = m.graph.input[0].type.tensor_type.elem_type if m.graph.input else 1
    for name in names:
        if name not in present:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, default_type), None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for v in sess.get_inputs():
        spec = next((i for i in graph_inputs(m) if i.name == v.name), None)
        dtype = _NUMPY.get(spec.type.tensor_type.elem_type, np.float32) if spec is not None else np.float32
        feeds[v.name] = np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in v.shape], dtype=dtype)
    got = sess.run(names, feeds)
    return {name: list(value.shape) for name, value in zip(names, got)}


def onnx_macs(model, card: ModelCard) -> MacCount:
    """MACs of one image through the graph (Conv, ConvTranspose, Gemm, MatMul), see the module doc."""
    inferred = onnx.shape_inference.infer_shapes(_with_batch_one(model, card), data_prop=True)
    shapes: dict[str, list] = {}
    types: dict[str, int] = {}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        shapes[v.name] = graph_dims(v)
        types[v.name] = v.type.tensor_type.elem_type
    for t in inferred.graph.initializer:
        shapes[t.name] = list(t.dims)
    total, missing = _count(inferred.graph.node, shapes)
    if not missing:
        return MacCount(total, FLOPS_ONNX)
    weights = {t.name for t in inferred.graph.initializer}
    names = sorted({n for node in inferred.graph.node if node.op_type in COUNTED_OPS
                    for n in (*node.input[:2], node.output[0]) if n and n not in weights})
    try:
        shapes.update(_ort_shapes(model, card, names, types))
    except Exception:  # onnxruntime refuses some graphs (custom ops, external data): counted as unknown
        return MacCount(None, FLOPS_ONNX, tuple(missing))
    total, missing = _count(inferred.graph.node, shapes)
    return MacCount(None if missing else total, FLOPS_ONNX_ORT, tuple(missing))


__all__ = ["MacCount", "torch_param_count", "torch_flops", "onnx_param_count", "onnx_macs", "FLOPS_TORCH",
           "FLOPS_ONNX", "FLOPS_ONNX_ORT"]
