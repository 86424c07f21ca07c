"""PASCAL VOC2012 semantic segmentation data: layout, palette masks, per-file errors.

Layout (what ``VOCtrainval_11-May-2012.tar`` unpacks to)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png     palette PNGs, index = class id, 255 = void
    VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt one <id> a line

:func:`open_voc` accepts the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or ``VOC2012``.
A missing folder or split list is one :class:`~tritonkit.errors.DatasetError` naming the path.

Masks are read as palette indices (:func:`read_palette_mask`): the index IS the class id, so a
mask is never converted to RGB. A file that cannot be scored (no mask, no image, a mask of
another size than its image, a mask that is not a palette/grayscale image, class ids outside
``[0, num_classes)`` other than 255) is an *error*: counted and listed with the reason as a
``{"path", "reason"}`` record (the same records as :class:`tritonkit.tasks.classify.data.Dataset`'s
excluded files), and the rest is evaluated. :func:`open_voc` checks every mask when the data set
is opened (or only presence and header sizes, leaving content to scoring time).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.errors import DatasetError

Image = lazy_import("PIL.Image")

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
VOID = 255
DEVKIT = "VOCdevkit"
YEAR_DIR = "VOC2012"
IMAGES_DIR = "JPEGImages"
MASKS_DIR = "SegmentationClass"
SPLITS_DIR = "ImageSets/Segmentation"
MASK_MODES = ("P", "L")  # palette PNGs (VOC); single-channel index images are read the same way


def voc_palette() -> list[int]:
    """The 256-entry VOC color map as a flat ``[r, g, b] * 256`` list (index 255: 224, 224, 192)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def encode_palette_png(mask: np.ndarray) -> bytes:
    """A ``[H, W]`` uint8 class-id mask as a VOC palette PNG (index = class id)."""
    mask = np.ascontiguousarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be [H, W] uint8, got {mask.dtype} {mask.shape}")
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    img.putpalette(voc_palette())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def read_palette_mask(data: bytes, where: str = "mask") -> np.ndarray:
    """Class ids ``[H, W]`` uint8 of a palette (or grayscale index) PNG, never converted to RGB.

    Raises :class:`DatasetError` naming ``where`` for an unreadable file or another mode (an
    RGB-colored mask would need a color -> class table, and is refused)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in MASK_MODES:
                raise DatasetError(f"{where}: mask mode {img.mode} is not a palette image "
                                   f"(expected P, palette index = class id)")
            return np.array(img, dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for bad files
        raise DatasetError(f"{where}: unreadable mask ({type(exc).__name__}: {exc})") from None


def check_mask(mask: np.ndarray, num_classes: int, image_hw: tuple[int, int] | None = None,
               where: str = "mask") -> None:
    """Raise :class:`DatasetError` for a mask of the wrong size or with class ids outside
    ``[0, num_classes)`` other than 255 (void)."""
    if image_hw is not None and tuple(mask.shape[:2]) != tuple(image_hw):
        raise DatasetError(f"{where}: mask size {mask.shape[1]}x{mask.shape[0]} != image size "
                           f"{image_hw[1]}x{image_hw[0]}")
    ids = np.unique(mask)
    bad = ids[(ids >= num_classes) & (ids != VOID)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise DatasetError(f"{where}: class ids {shown} outside [0, {num_classes}) and not {VOID} (void)")


@dataclass(frozen=True)
class VOCItem:
    """One image of a VOC split: ``key`` (the id), ``path`` (JPEG) and ``mask_path`` (PNG)."""

    key: str
    path: Path
    mask_path: Path

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def read_mask(self, num_classes: int, image_hw: tuple[int, int] | None = None) -> np.ndarray:
        """The checked class-id mask (:func:`read_palette_mask` + :func:`check_mask`)."""
        where = str(self.mask_path)
        try:
            data = self.mask_path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{where}: cannot read mask ({exc.strerror or exc})") from None
        mask = read_palette_mask(data, where)
        check_mask(mask, num_classes, image_hw, where)
        return mask


@dataclass
class VOCDataset:
    """Items to evaluate plus ``errors``: ``{"path", "reason"}`` for listed ids that cannot be.
    ``subset`` says how a limit chose the items (``tritonkit.client.items.limit_dataset``)."""

    items: list[VOCItem]
    root: Path
    split: str
    split_file: Path
    num_classes: int
    errors: list[dict] = field(default_factory=list)
    subset: str = "all"

    @property
    def listed(self) -> int:
        return len(self.items) + len(self.errors)

    def describe(self) -> dict:
        return {"layout": "voc2012", "root": str(self.root), "split": self.split,
                "split_file": str(self.split_file), "images_listed": self.listed,
                "images_used": len(self.items), "subset": self.subset, "errors": len(self.errors)}

    def excluded(self) -> list[dict]:
        return sorted(self.errors, key=lambda e: e["path"])


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder of ``root`` (the folder holding VOCdevkit, VOCdevkit, or VOC2012)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: VOC data folder not found")
    for candidate in (root, root / YEAR_DIR, root / DEVKIT / YEAR_DIR):
        if (candidate / IMAGES_DIR).is_dir() or (candidate / MASKS_DIR).is_dir():
            return candidate
    if root.name == YEAR_DIR:
        return root
    return root / YEAR_DIR if root.name == DEVKIT else root / DEVKIT / YEAR_DIR


def _check_layout(voc: Path, split: str) -> Path:
    split_file = voc / SPLITS_DIR / f"{split}.txt"
    for need in (voc, voc / IMAGES_DIR, voc / MASKS_DIR, split_file):
        if not need.exists():
            raise DatasetError(f"{need}: not found (expected the VOC2012 layout VOCdevkit/VOC2012/"
                               f"{{{IMAGES_DIR},{MASKS_DIR},{SPLITS_DIR}/{split}.txt}})")
    return split_file


def _read_ids(split_file: Path) -> list[str]:
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{split_file}: cannot read split list ({exc})") from None
    ids = [ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not ids:
        raise DatasetError(f"{split_file}: split list has no ids")
    return list(dict.fromkeys(ids))


def _image_size(path: Path) -> tuple[int, int] | str:
    """``(h, w)`` from the header, or the reason it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as exc:  # PIL raises many types for bad files
        return f"unreadable ({type(exc).__name__}: {exc})"


def _item_error(voc: Path, key: str, num_classes: int, check_masks: bool) -> tuple[VOCItem | None, str | None]:
    image, mask_path = voc / IMAGES_DIR / f"{key}.jpg", voc / MASKS_DIR / f"{key}.png"
    if not image.is_file():
        return None, f"image {IMAGES_DIR}/{key}.jpg not found"
    if not mask_path.is_file():
        return None, f"mask {MASKS_DIR}/{key}.png not found"
    image_hw = _image_size(image)
    if isinstance(image_hw, str):
        return None, f"image {image_hw}"
    item = VOCItem(key, image, mask_path)
    try:
        if check_masks:
            item.read_mask(num_classes, image_hw)
        else:
            mask_hw = _image_size(mask_path)
            if isinstance(mask_hw, str):
                return None, f"mask {mask_hw}"
            if mask_hw != image_hw:
                return None, f"mask size {mask_hw[1]}x{mask_hw[0]} != image size {image_hw[1]}x{image_hw[0]}"
    except DatasetError as exc:
        return None, str(exc).removeprefix(f"{mask_path}: ")
    return item, None


def open_voc(root: str | Path, split: str = "val", num_classes: int = len(VOC_CLASSES),
             check_masks: bool = True) -> VOCDataset:
    """The ids of ``ImageSets/Segmentation/<split>.txt`` as items; unusable ids as errors.

    ``check_masks`` reads every mask now (mode, class ids, size; one small PNG each); without it only the files' presence and header sizes are checked, and a bad mask surfaces
    when its item is scored (:meth:`VOCItem.read_mask` raises).

    Raises :class:`DatasetError` (one line naming the missing path) when the layout is wrong
    or when no listed id can be evaluated."""
    voc = find_voc_root(root)
    split_file = _check_layout(voc, split)
    items, errors = [], []
    for key in _read_ids(split_file):
        item, reason = _item_error(voc, key, num_classes, check_masks)
        if item is None:
            errors.append({"path": key, "reason": reason})
        else:
            items.append(item)
    if not items:
        first = errors[0]["reason"] if errors else "no ids"
        raise DatasetError(f"{split_file}: none of its {len(errors)} ids can be evaluated (first: {first})")
    return VOCDataset(items, voc, split, split_file, num_classes, errors)


__all__ = ["VOC_CLASSES", "VOID", "voc_palette", "encode_palette_png", "read_palette_mask", "check_mask",
           "VOCItem", "VOCDataset", "find_voc_root", "open_voc"]
