"""Cards for the tiny ultralytics fixture models (tests/support/ultralytics_models.py), made from the
built-in ``yolo11n`` card: the fixture's input size, class names and head (anchor-free ``[4 + C, A]``,
or end-to-end ``[K, 6]`` when the ONNX output's last axis is 6)."""

from __future__ import annotations

from pathlib import Path

from tritonkit.cards import ModelCard, Preprocess, TensorSpec, get_card
from tritonkit.onnx_contract import load_onnx
from tritonkit.tasks.detect.math import YoloAnchorFreeDecode, YoloEnd2EndDecode

STRIDES = (8, 16, 32)


def anchors(imgsz: int) -> int:
    """Anchor points of a 3-level ultralytics head at ``imgsz``."""
    return sum((imgsz // s) ** 2 for s in STRIDES)


def tiny_model_card(model, labels_dir: Path, onnx: Path | None = None, *, name: str | None = None,
                    letterbox_rule: str = "val") -> ModelCard:
    """The card of ``model`` (a TinyModel) for ``onnx`` (default: its main export); the labels file
    is written into ``labels_dir``."""
    onnx = Path(onnx or model.onnx)
    out = load_onnx(onnx).graph.output[0]
    last = out.type.tensor_type.shape.dim[-1].dim_value
    if last == 6:
        k = out.type.tensor_type.shape.dim[1].dim_value or -1
        outputs, head = (TensorSpec(out.name, (k, 6)),), YoloEnd2EndDecode()
    else:
        outputs, head = (TensorSpec(out.name, (4 + len(model.names), anchors(model.imgsz))),), YoloAnchorFreeDecode()
    labels = Path(labels_dir) / f"{model.name}_labels.txt"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("".join(f"{n}\n" for n in model.names))
    base = get_card("yolo11n")
    return base.with_overrides(
        name=name or f"tiny_{model.name}", arch=f"ultralytics:{model.name}", input=TensorSpec("images", (3, model.imgsz, model.imgsz)),
        outputs=outputs, postprocess=head, labels=str(labels), num_classes=len(model.names),
        category_ids=tuple(range(1, len(model.names) + 1)), reference={}, max_batch_size=8,
        preprocess=Preprocess(size=model.imgsz, **{**_pre(base.preprocess), "letterbox_rule": letterbox_rule}))


def _pre(pp: Preprocess) -> dict:
    return {k: getattr(pp, k) for k in ("mode", "mean", "std", "pad_value", "interpolation", "scale", "layout")}
