"""A COCO-layout set whose ground truth is a constant detector's boxes, mapped back by hand, and
that detector's output rows (the ``demo_shapes_det`` card's layout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tritonkit.cards import get_card

CARD = get_card("demo_shapes_det")  # 128x128 letterbox input, 4 classes -> category ids 1..4

# The constant detector's boxes in model-input pixels (x1, y1, x2, y2) and class indices.
BOXES_IN = np.array([[10, 26, 50, 66], [60, 30, 120, 100], [20, 80, 40, 110]], np.float64)
CLASSES = [0, 2, 3]
# Image shapes (h, w) and, worked out by hand, their letterbox to 128: scale and vertical pad.
SHAPES = {"a": ((96, 128), 1.0, 16.0), "b": ((192, 256), 0.5, 16.0), "c": ((96, 128), 1.0, 16.0)}


def constant_rows() -> np.ndarray:
    """The constant detector's output ``[256, 9]``: three boxes, then empty rows."""
    rows = np.zeros((256, 9), np.float32)
    rows[:3, 0:2] = (BOXES_IN[:, :2] + BOXES_IN[:, 2:]) / 2
    rows[:3, 2:4] = BOXES_IN[:, 2:] - BOXES_IN[:, :2]
    rows[:3, 4] = [0.9, 0.8, 0.7]
    rows[np.arange(3), 5 + np.array(CLASSES)] = 1.0
    return rows


def make_dataset(root: Path, corrupt: bool = True) -> Path:
    """COCO layout whose ground truth is the constant detector's boxes mapped back by hand."""
    from PIL import Image

    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, (stem, ((h, w), scale, pad_y)) in enumerate(SHAPES.items(), start=1):
        name = f"{stem}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "val2017" / name)
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        for box, cls in zip(BOXES_IN, CLASSES):
            x1, y1, x2, y2 = (box - [0, pad_y, 0, pad_y]) / scale
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cls + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    if corrupt:  # listed with ground truth, but not an image: an error, excluded from the mAP
        (root / "val2017" / "broken.jpg").write_bytes(b"not a jpeg")
        images.append({"id": 99, "file_name": "broken.jpg", "height": 10, "width": 10})
        anns.append({"id": 999, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})
    cats = [{"id": c, "name": n} for c, n in zip(CARD.category_ids, CARD.label_names())]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root
