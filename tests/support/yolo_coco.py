"""A split of an ultralytics YOLO-layout dataset (``data.yaml``, ``images/<split>``, ``labels/<split>``
with normalized ``class cx cy w h`` lines) as a COCO instances JSON, for the evaluations that read COCO:
image ids 1..N in file order, category id = class + 1 (what ultralytics' validator writes for a
non-COCO dataset), boxes in pixels. An image without a label file has no objects."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _names(data_yaml: Path) -> list[str]:
    """The ``names:`` block of the fixture's data.yaml (``  <id>: <name>`` lines)."""
    lines = data_yaml.read_text().splitlines()
    start = lines.index("names:") + 1
    pairs = [line.strip().split(":", 1) for line in lines[start:] if line.startswith("  ")]
    return [name.strip() for _, name in sorted(pairs, key=lambda p: int(p[0]))]


def yolo_split_to_coco(data_yaml: Path, out: Path, split: str = "val") -> tuple[Path, Path]:
    """(images folder, COCO JSON written to ``out``) of ``split``."""
    from PIL import Image

    root = Path(data_yaml).parent
    images_dir = root / "images" / split
    images, annotations = [], []
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for image_id, path in enumerate(files, start=1):
        with Image.open(path) as im:
            w, h = im.size
        images.append({"id": image_id, "file_name": path.name, "width": w, "height": h})
        label = root / "labels" / split / f"{path.stem}.txt"
        for line in (label.read_text().splitlines() if label.is_file() else []):
            cls, cx, cy, bw, bh = (float(v) for v in line.split())
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(_names(Path(data_yaml)))]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return images_dir, out
