"""A generated semantic segmentation set for the embedded demo (card ``demo_seg``).

Images are 1-3 non-overlapping shapes (circle, square, triangle, star) on the textured
backgrounds of :mod:`tritonkit.demo.shapes`, in random sizes (both sides between ``min_side``
and ``max_side``, never square, so a ``resize_short`` input varies in width and height). Masks
are VOC palette PNGs whose index is the class id (0 = background, ``demo_seg.txt`` order), with
a band of 255 (void) along every shape's outline, as VOC marks object borders. The set is
written in the VOC2012 layout, so :func:`tritonkit.tasks.segment.voc.open_voc` reads it::

    <root>/manifest.json
    <root>/VOCdevkit/VOC2012/JPEGImages/{train,val}_00000.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/{train,val}_00000.png
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt

Deterministic and cached like the other demo sets (:func:`ensure_segmentation_data` regenerates
only when the manifest's key differs or a file is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import load_labels
from tritonkit.tasks.segment.voc import DEVKIT, IMAGES_DIR, MASKS_DIR, SPLITS_DIR, VOID, YEAR_DIR, encode_palette_png
from tritonkit.demo.shapes import (
    _contrasting_color, _encode_jpeg, _image_size, _paint, _progress, _rng, _to_uint8, commit_set, ensure_set,
    shape_window, staged_set, textured_background)
from tritonkit.errors import DatasetError

cv2 = lazy_import("cv2")

SEGMENTATION_KIND = "demo_seg segmentation"
SEGMENTATION_SPLITS = ("train", "val")
LABELS = "demo_seg"


def segmentation_classes() -> list[str]:
    """``background`` then the shape classes; the list index is the mask's class id."""
    return load_labels(LABELS)


@dataclass(frozen=True, kw_only=True)
class SegmentationSetSpec:
    """Size and look of the generated segmentation set."""

    train_images: int = 640
    val_images: int = 160
    min_side: int = 56
    max_side: int = 112
    max_aspect: float = 1.5
    min_objects: int = 1
    max_objects: int = 3
    min_radius: float = 0.14    # object circumradius, as a fraction of the shorter image side
    max_radius: float = 0.30
    void_width: int = 1         # pixels of void on each side of an outline
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train_images < 1 or self.val_images < 1:
            raise DatasetError("segmentation set: train_images and val_images must be >= 1")
        if not 16 <= self.min_side <= self.max_side:
            raise DatasetError(f"segmentation set: need 16 <= min_side <= max_side "
                               f"(got {self.min_side}, {self.max_side})")
        if not 1 <= self.min_objects <= self.max_objects:
            raise DatasetError("segmentation set: need 1 <= min_objects <= max_objects")
        if not 0 < self.min_radius <= self.max_radius < 0.5:
            raise DatasetError("segmentation set: need 0 < min_radius <= max_radius < 0.5")
        if self.void_width < 0:
            raise DatasetError("segmentation set: void_width must be >= 0")


def void_band(objects: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of an outline of the boolean ``objects`` map (inside or out)."""
    if width == 0:
        return np.zeros(objects.shape, bool)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    on = objects.astype(np.uint8)
    return cv2.dilate(on, kernel).astype(bool) & ~cv2.erode(on, kernel).astype(bool)


def draw_segmentation_image(rng: np.random.Generator, spec: SegmentationSetSpec,
                            classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its ``[H, W]`` uint8 mask (class ids, 255 along outlines).

    ``classes[0]`` is the background; a pixel belongs to a shape when the shape covers at
    least half of it."""
    h, w = _image_size(rng, spec.min_side, spec.max_side, spec.max_aspect)
    img = textured_background(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    side = min(h, w)
    gap = 2 * spec.void_width + 2
    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _attempt in range(50):
            radius = side * rng.uniform(spec.min_radius, spec.max_radius)
            cx = rng.uniform(radius + 1, w - radius - 1)
            cy = rng.uniform(radius + 1, h - radius - 1)
            if all(np.hypot(cx - px, cy - py) > radius + pr + gap for px, py, pr in placed):
                break
        else:
            continue
        cls = int(rng.integers(1, len(classes)))
        window, top, left = shape_window(classes[cls], h, w, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        placed.append((cx, cy, radius))
        region = img[top:top + window.shape[0], left:left + window.shape[1]]
        _paint(img, window, top, left, _contrasting_color(rng, region), rng)
        mask[top:top + window.shape[0], left:left + window.shape[1]][window >= 0.5] = cls
    mask[void_band(mask > 0, spec.void_width)] = VOID
    return _to_uint8(img), mask


def voc_folder(root: str | Path) -> Path:
    """The ``VOC2012`` folder of a generated set."""
    return Path(root) / DEVKIT / YEAR_DIR


def generate_segmentation_data(root: str | Path, seed: int = 0, spec: SegmentationSetSpec = SegmentationSetSpec(),
                               progress: bool = True) -> Path:
    """Write the VOC-layout segmentation set under ``root`` (replacing a previous generated set)."""
    root = Path(root)
    classes = segmentation_classes()
    files: list[str] = []
    counts = {"train": spec.train_images, "val": spec.val_images}
    with staged_set(root) as tmp:
        voc = voc_folder(tmp)
        for sub in (IMAGES_DIR, MASKS_DIR, SPLITS_DIR):
            (voc / sub).mkdir(parents=True)
        with _progress(progress) as bar:
            task = bar.add_task("generating demo_seg images", total=sum(counts.values()))
            for split_i, split in enumerate(SEGMENTATION_SPLITS):
                ids = []
                for i in range(counts[split]):
                    img, mask = draw_segmentation_image(_rng(seed, 20 + split_i, i), spec, classes)
                    key = f"{split}_{i:05d}"
                    (voc / IMAGES_DIR / f"{key}.jpg").write_bytes(_encode_jpeg(img, spec.jpeg_quality))
                    (voc / MASKS_DIR / f"{key}.png").write_bytes(encode_palette_png(mask))
                    ids.append(key)
                    bar.advance(task)
                (voc / SPLITS_DIR / f"{split}.txt").write_text("".join(f"{k}\n" for k in ids))
                prefix = f"{DEVKIT}/{YEAR_DIR}"
                files += [f"{prefix}/{IMAGES_DIR}/{k}.jpg" for k in ids]
                files += [f"{prefix}/{MASKS_DIR}/{k}.png" for k in ids]
                files.append(f"{prefix}/{SPLITS_DIR}/{split}.txt")
        commit_set(tmp, root, SEGMENTATION_KIND, seed, spec, classes, files)
    return root


def ensure_segmentation_data(root: str | Path, seed: int = 0, spec: SegmentationSetSpec = SegmentationSetSpec(),
                             progress: bool = True) -> Path:
    """The segmentation set under ``root``, generated only when missing or out of date."""
    return ensure_set(generate_segmentation_data, SEGMENTATION_KIND, root, seed, spec, progress)


__all__ = ["SegmentationSetSpec", "segmentation_classes", "void_band", "draw_segmentation_image", "voc_folder",
           "generate_segmentation_data", "ensure_segmentation_data", "SEGMENTATION_SPLITS", "SEGMENTATION_KIND"]
