"""Ultralytics' YOLO dataset layout read as a checked COCO detection set.

Layout::

    data.yaml            path: ROOT, val: images/val (a folder, a .txt list of images, or a list),
                         names: [a, b, ...] or {0: a, 1: b, ...}
    ROOT/images/val/*.jpg
    ROOT/labels/val/*.txt   one ``class cx cy w h`` line per object, normalised to the image size

An image without a label file has no objects. A malformed label line is reported (file and line)
and skipped; the rest is evaluated. Categories are the ``names`` with ids class + 1 (as
ultralytics' ``save_json`` writes them for a non-COCO set), so class ids
map to a card's classes by name (:func:`tritonkit.tasks.detect.task.category_ids_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tritonkit._lazy import lazy_import
from tritonkit.errors import DatasetError
from tritonkit.tasks.detect.coco import CocoDataset, CocoImage, _coco_index, check_annotations

cv2 = lazy_import("cv2")

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


@dataclass
class YoloDataset(CocoDataset):
    """A YOLO-layout set as a COCO one, plus the label lines that could not be read."""

    problems: list[dict] = field(default_factory=list)  # {"path": "LABELS.txt:LINE", "reason"}


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: data file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read data file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'path', 'val' and 'names'")
    return data


def _names(data: dict, path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DatasetError(f"{path}: field 'names' must have the keys 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: field 'names' must be a non-empty list or mapping of class names")
    return [str(n) for n in names]


def _root(data: dict, path: Path) -> Path:
    root = Path(str(data.get("path") or "."))
    return root if root.is_absolute() else path.parent / root


def _images_of(entry: Path, root: Path, path: Path) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if entry.is_file() and entry.suffix == ".txt":
        out = []
        for line in entry.read_text().splitlines():
            line = line.strip()
            if line:
                p = Path(line)
                out.append(p if p.is_absolute() else (entry.parent if line.startswith("./") else root) / p)
        return out
    raise DatasetError(f"{path}: field 'val' names {entry}, which is neither a folder nor a .txt list of images")


def val_images(data: dict, path: Path) -> list[Path]:
    """The validation images ``val`` names (relative to ``path``, itself relative to the yaml)."""
    val = data.get("val")
    if val is None:
        raise DatasetError(f"{path}: field 'val' is missing")
    root = _root(data, path)
    entries = val if isinstance(val, list) else [val]
    images = [img for e in entries for img in _images_of(root / str(e), root, path)]
    if not images:
        raise DatasetError(f"{path}: field 'val' lists no images")
    return images


def label_file(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_line(line: str, nc: int) -> tuple[int, list[float]] | str:
    fields = line.split()
    if len(fields) != 5:
        return f"expected 5 fields 'class cx cy w h', got {len(fields)}"
    try:
        cls, values = int(fields[0]), [float(v) for v in fields[1:]]
    except ValueError:
        return "class must be an integer and cx cy w h numbers"
    if not 0 <= cls < nc:
        return f"class {cls} outside 0..{nc - 1}"
    if not all(0.0 <= v <= 1.0 for v in values):
        return "cx cy w h must be normalised to [0, 1]"
    return cls, values


def _annotations(image: Path, image_id: int, size: tuple[int, int], nc: int, problems: list[dict]) -> list[dict]:
    lf = label_file(image)
    if not lf.is_file():
        return []
    h, w = size
    anns = []
    for n, line in enumerate(lf.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parsed = _parse_line(line, nc)
        if isinstance(parsed, str):
            problems.append({"path": f"{lf}:{n}", "reason": f"{parsed} (line skipped)"})
            continue
        cls, (cx, cy, bw, bh) = parsed
        anns.append({"image_id": image_id, "category_id": cls + 1,
                     "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]})
    return anns


def _size(image: Path) -> tuple[int, int]:
    img = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{image}: cannot read image")
    return img.shape[:2]


def load_yolo(data_yaml: str | Path, limit: int | None = None) -> YoloDataset:
    """Read a YOLO data.yaml's ``val`` split; image ids are 1.. in path order."""
    path = Path(data_yaml)
    data = _read_yaml(path)
    names = _names(data, path)
    images = val_images(data, path)[:limit]
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise DatasetError(f"{path}: {len(missing)} images listed by 'val' are missing (first: {missing[0]})")
    problems: list[dict] = []
    entries, anns = [], []
    for image_id, img in enumerate(images, 1):
        h, w = _size(img)
        entries.append({"id": image_id, "file_name": str(img), "height": h, "width": w})
        anns += _annotations(img, image_id, (h, w), len(names), problems)
    coco = {"images": entries, "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in enumerate(names, 1)]}
    index = _coco_index(check_annotations(coco, path))
    cimages = [CocoImage(e["id"], e["file_name"], Path(e["file_name"]), e["height"], e["width"]) for e in entries]
    return YoloDataset(images[0].parent, path, index, cimages, problems=problems)
