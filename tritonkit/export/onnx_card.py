"""A detection card drafted from an ONNX file: the graph's tensors and ultralytics' metadata.

``yolo export format=onnx`` writes ``metadata_props`` (``task``, ``names``, ``imgsz``, ``stride``,
``end2end`` ... as Python literals). With them the draft is a complete card: the output layout picks
the postprocess variant (``[N, 4 + C, A]``: ``yolo_anchor_free``; ``[N, K, 6]``: ``yolo_end2end``),
``imgsz`` the letterbox size (dynamic H/W inputs get it), ultralytics' NMS defaults the profiles.
The class names are written beside the ONNX (``MODEL.names.txt``) since a card names a label set
or a file. Whatever disagrees with the graph is one :class:`~tritonkit.errors.CardError` line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tritonkit._lazy import lazy_import
from tritonkit.cards import NMS_ULTRALYTICS_AP, NMS_ULTRALYTICS_SPEED, ModelCard, Preprocess, TensorSpec
from tritonkit.errors import CardError
from tritonkit.io import atomic_write_text
from tritonkit.tasks.detect.math import YoloAnchorFreeDecode, YoloEnd2EndDecode

onnx = lazy_import("onnx")


@dataclass(frozen=True)
class OnnxGraph:
    """Graph tensors (name, dtype, dims with None for dynamic) and the metadata, parsed."""

    path: Path
    inputs: tuple[tuple[str, str, tuple], ...]
    outputs: tuple[tuple[str, str, tuple], ...]
    metadata: dict


def _tensors(values) -> tuple[tuple[str, str, tuple], ...]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        out.append((v.name, dtype, tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)))
    return tuple(out)


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def read_graph(path: str | Path) -> OnnxGraph:
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError ...
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CardError(f"{path}: not a readable ONNX file ({why})") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    meta = {p.key: _literal(p.value) for p in model.metadata_props}
    return OnnxGraph(path, _tensors(inputs), _tensors(model.graph.output), meta)


def _names(graph: OnnxGraph) -> list[str]:
    names = graph.metadata.get("names")
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise CardError(f"{graph.path}: metadata field 'names' is not a list or 0..N-1 mapping of class names")


def _size(graph: OnnxGraph, dims: tuple) -> int:
    imgsz = graph.metadata.get("imgsz")
    size = imgsz if isinstance(imgsz, int) else (imgsz[0] if isinstance(imgsz, (list, tuple)) and imgsz else None)
    if not isinstance(size, int) or (isinstance(imgsz, (list, tuple)) and len(set(imgsz)) != 1):
        raise CardError(f"{graph.path}: metadata field 'imgsz' must be one square size (got {imgsz!r})")
    fixed = [d for d in dims[2:] if d is not None]
    if any(d != size for d in fixed):
        raise CardError(f"{graph.path}: metadata field 'imgsz' {imgsz!r} disagrees with input dims {list(dims)}")
    return size


def _postprocess(graph: OnnxGraph, dims: tuple, nc: int):
    """The head variant from the output layout, checked against the class count."""
    if len(dims) == 3 and dims[2] == 6 and (graph.metadata.get("end2end") is True or dims[1] != 4 + nc):
        return YoloEnd2EndDecode(stride=int(graph.metadata.get("stride", 32))), (dims[1], 6)
    if len(dims) == 3 and dims[1] is not None:
        if dims[1] != 4 + nc:
            raise CardError(f"{graph.path}: metadata field 'names' has {nc} classes but output "
                            f"{graph.outputs[0][0]!r} has {dims[1]} channels (expected 4 + {nc})")
        return YoloAnchorFreeDecode(), (dims[1], dims[2])  # dims[2] None: dynamic, set by detect_card
    raise CardError(f"{graph.path}: output {graph.outputs[0][0]!r} dims {list(dims)} are not an ultralytics "
                    f"detect head ([N, 4+C, A] or [N, K, 6])")


def detect_card(graph: OnnxGraph, name: str) -> ModelCard:
    """A detect card from ultralytics' metadata; the names file is written beside the ONNX."""
    if "task" not in graph.metadata:
        tensors = "; ".join(f"{kind} {n} {t} {['?' if d is None else d for d in dims]}" for kind, group in
                            (("input", graph.inputs), ("output", graph.outputs)) for n, t, dims in group)
        raise CardError(f"{graph.path}: no ultralytics metadata (graph: {tensors}); write the card by hand from "
                        f"`tritonkit cards yolov8n --json`, setting task, labels, num_classes, preprocess, postprocess")
    if graph.metadata.get("task") != "detect":
        raise CardError(f"{graph.path}: metadata field 'task' is {graph.metadata.get('task')!r}; "
                        f"only ultralytics detect exports are supported here")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CardError(f"{graph.path}: expected one input and one output, found "
                        f"{len(graph.inputs)} and {len(graph.outputs)}")
    names = _names(graph)
    (in_name, _, in_dims), (out_name, _, out_dims) = graph.inputs[0], graph.outputs[0]
    size = _size(graph, in_dims)
    post, out_shape = _postprocess(graph, out_dims, len(names))
    if out_shape[-1] is None:  # dynamic anchors: ultralytics' strides 8, 16, 32 at the letterbox size
        out_shape = (out_shape[0], sum((size // s) ** 2 for s in (8, 16, 32)))
    if None in out_shape:
        raise CardError(f"{graph.path}: output {out_name!r} dims {list(out_dims)}: set the detection count")
    labels = graph.path.with_suffix(".names.txt")
    atomic_write_text(labels, "\n".join(names) + "\n")
    return ModelCard(
        name=name, task="detect", arch=f"onnx:{graph.path.name}",
        input=TensorSpec(in_name, (3, size, size)), outputs=(TensorSpec(out_name, tuple(out_shape)),),
        preprocess=Preprocess(mode="letterbox", size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                              pad_value=114, letterbox_rule="val"),
        postprocess=post, labels=str(labels.resolve()), num_classes=len(names), max_batch_size=16,
        nms_profiles=(NMS_ULTRALYTICS_SPEED, NMS_ULTRALYTICS_AP),
        description=f"{graph.metadata.get('description', 'ultralytics export')} ({graph.path.name})",
        int8_head="float")  # as the built-in ultralytics cards
