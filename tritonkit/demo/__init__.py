"""The embedded demo: generated data, models trained on the CPU, the whole pipeline (`make demo`)."""

from __future__ import annotations

from pathlib import Path

from tritonkit.demo.shapes import ensure_classification_data
from tritonkit.demo.train import train_classifier
from tritonkit.export.builders import register_builder

# The demo's archs, built by tritonkit.demo.models (imported, with torch, on first use).
for _arch in ("demo:shapes_cnn", "demo:shapes_yolo"):
    register_builder(_arch, "tritonkit.demo.models:build_for_card")
register_builder("demo:shapes_segnet", "tritonkit.demo.train_seg:build_for_card")


def trained_onnx(work: str | Path = "build/demo", cache: str | Path = ".cache/demo", progress: bool = True) -> Path:
    """The demo's trained ``demo_shapes`` classifier ONNX: generates the data set and trains it
    when the cache has no current model (minutes on a CPU), else reuses the cached one."""
    data = ensure_classification_data(Path(work) / "data" / "shapes_cls", progress=progress)
    return Path(train_classifier(data, Path(cache), progress=progress).onnx_path)
