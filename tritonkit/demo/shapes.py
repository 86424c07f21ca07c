"""The embedded demo's data: generated shapes, deterministic from a seed, nothing downloaded.

* Classification (card ``demo_shapes``): one shape of 8 classes (circle, square, triangle,
  cross, ring, star, hexagon, diamond) per image, random color, size, position and rotation,
  on a textured noisy background; JPEGs of varied non-square sizes in the ImageNet folder
  layout ``root/{train,val}/<class>/*.JPEG``. The shape lies inside the region the card's
  ``resize_crop`` keeps (the centered square of the shorter side), as ImageNet objects do.
* Detection (card ``demo_shapes_det``): 1-5 non-overlapping objects of 4 classes (circle,
  square, triangle, star) per image on textured backgrounds, varied sizes, in the COCO layout
  ``root/{train2017,val2017}/*.jpg`` + ``root/annotations/instances_{train2017,val2017}.json``
  (``bbox`` is the tight ``[x, y, w, h]`` of the drawn shape, ``area`` its pixel count).

Every image has its own random stream, seeded from ``(seed, split, index)``, so a set is the
same bytes for the same seed and parameters. A set is cached: ``manifest.json`` in its root
records a key (hash of generator version, seed and parameters) and a digest of every file;
``ensure_*`` regenerates only when the key differs or files are missing. Generation writes a
temporary sibling folder and renames it into place, so an interrupted run leaves no half set.

The drawing functions (:func:`shape_polygons`, :func:`shape_mask`, :func:`textured_background`,
:func:`draw_classification_image`, :func:`draw_detection_image`) are pure array code; only
the ``ensure_*``/``generate_*`` functions touch the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import load_labels
from tritonkit.errors import DatasetError

cv2 = lazy_import("cv2")

GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
CLASSIFICATION_KIND = "demo_shapes classification"
DETECTION_KIND = "demo_shapes_det detection"
CLASSIFICATION_SPLITS = ("train", "val")
DETECTION_SPLITS = ("train2017", "val2017")
# Drawing happens at this supersampling factor for anti-aliased edges.
_AA = 4


def classification_classes() -> list[str]:
    return load_labels("demo_shapes")


def detection_classes() -> list[str]:
    return load_labels("demo_shapes_det")


@dataclass(frozen=True)
class ClassificationSetSpec:
    """Size and look of the generated classification set."""

    train_per_class: int = 300
    val_per_class: int = 50
    min_side: int = 60
    max_side: int = 120
    max_aspect: float = 1.6
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train_per_class < 1 or self.val_per_class < 1:
            raise DatasetError("classification set: train_per_class and val_per_class must be >= 1")
        if not 16 <= self.min_side <= self.max_side:
            raise DatasetError(f"classification set: need 16 <= min_side <= max_side "
                               f"(got {self.min_side}, {self.max_side})")


@dataclass(frozen=True)
class DetectionSetSpec:
    """Size and look of the generated detection set."""

    train_images: int = 1200
    val_images: int = 300
    min_side: int = 96
    max_side: int = 224
    max_aspect: float = 1.5
    min_objects: int = 1
    max_objects: int = 5
    min_radius: float = 0.08    # object circumradius, as a fraction of the shorter image side
    max_radius: float = 0.22
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train_images < 1 or self.val_images < 1:
            raise DatasetError("detection set: train_images and val_images must be >= 1")
        if not 1 <= self.min_objects <= self.max_objects:
            raise DatasetError(f"detection set: need 1 <= min_objects <= max_objects "
                               f"(got {self.min_objects}, {self.max_objects})")
        if not 0 < self.min_radius <= self.max_radius < 0.5:
            raise DatasetError("detection set: need 0 < min_radius <= max_radius < 0.5")


@dataclass(frozen=True)
class ObjectBox:
    """One drawn object: class index into the label set, tight box ``[x, y, w, h]``, pixel area."""

    class_index: int
    bbox: tuple[float, float, float, float]
    area: float


# -- pure drawing ------------------------------------------------------------------------------

def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    a = phase + np.arange(n) * (2 * np.pi / n)
    return np.stack([np.cos(a), np.sin(a)], axis=1) * radius


def shape_polygons(kind: str, cx: float, cy: float, radius: float, angle: float) -> list[np.ndarray]:
    """Outline(s) of a shape as float ``[K, 2]`` x, y polygons; the first is filled, the rest
    (the ring's hole) are cut out. ``radius`` is the circumradius, ``angle`` in radians."""
    r = float(radius)
    if kind in ("circle", "ring"):
        outer = _regular(96, r, 0.0)
        polys = [outer] if kind == "circle" else [outer, _regular(96, 0.55 * r, 0.0)]
        return [p + (cx, cy) for p in polys]
    if kind == "square":
        local = _regular(4, r, np.pi / 4)
    elif kind == "triangle":
        local = _regular(3, r, -np.pi / 2)
    elif kind == "hexagon":
        local = _regular(6, r, 0.0)
    elif kind == "star":
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        a = -np.pi / 2 + np.arange(10) * (np.pi / 5)
        local = np.stack([np.cos(a), np.sin(a)], axis=1) * radii[:, None]
    elif kind == "diamond":
        local = np.array([[0.0, -r], [0.55 * r, 0.0], [0.0, r], [-0.55 * r, 0.0]])
    elif kind == "cross":
        a = 0.3 * r
        local = np.array([[a, -r], [a, -a], [r, -a], [r, a], [a, a], [a, r],
                          [-a, r], [-a, a], [-r, a], [-r, -a], [-a, -a], [-a, -r]])
    else:
        raise ValueError(f"unknown shape {kind!r}")
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return [local @ rot.T + (cx, cy)]


def shape_window(kind: str, height: int, width: int, cx: float, cy: float, radius: float,
                 angle: float) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage (float32 in [0, 1]) of one shape over the window of the image it
    touches: ``(mask, top, left)``. Drawing only the window keeps many-object images cheap."""
    top, left = max(int(np.floor(cy - radius)) - 1, 0), max(int(np.floor(cx - radius)) - 1, 0)
    bottom = min(int(np.ceil(cy + radius)) + 2, height)
    right = min(int(np.ceil(cx + radius)) + 2, width)
    h, w = max(bottom - top, 1), max(right - left, 1)
    big = np.zeros((h * _AA, w * _AA), np.uint8)
    polys = shape_polygons(kind, (cx - left + 0.5) * _AA - 0.5, (cy - top + 0.5) * _AA - 0.5, radius * _AA, angle)
    for i, poly in enumerate(polys):
        cv2.fillPoly(big, [np.round(poly).astype(np.int32)], 255 if i == 0 else 0)
    small = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) * np.float32(1.0 / 255.0), top, left


def shape_mask(kind: str, height: int, width: int, cx: float, cy: float, radius: float,
               angle: float) -> np.ndarray:
    """Anti-aliased coverage ``[height, width]`` float32 in [0, 1] of one shape."""
    window, top, left = shape_window(kind, height, width, cx, cy, radius, angle)
    mask = np.zeros((height, width), np.float32)
    mask[top:top + window.shape[0], left:left + window.shape[1]] = window
    return mask


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random base color with low-frequency blotches, a few faint strokes and pixel noise
    (float32 HWC in pixel units)."""
    base = rng.uniform(20, 235, size=3).astype(np.float32)
    cells = int(rng.integers(3, 8))
    blotch = rng.normal(0.0, rng.uniform(10, 35), size=(cells, cells, 3)).astype(np.float32)
    img = base + cv2.resize(blotch, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 4))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        tone = tuple(float(v) for v in base + rng.normal(0, 30, size=3))
        cv2.line(img, p1, p2, tone, int(rng.integers(1, 3)), cv2.LINE_AA)
    # uniform pixel noise (standard deviation 3..12): several times cheaper to draw than normal
    amplitude = np.float32(rng.uniform(3, 12) * np.sqrt(3.0))
    img += (rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * (2 * amplitude)
    return img


def _contrasting_color(rng: np.random.Generator, background: np.ndarray, min_distance: float = 90.0) -> np.ndarray:
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(100):
        color = rng.uniform(0, 255, size=3)
        if np.linalg.norm(color - mean) >= min_distance:
            return color
    return np.where(mean > 127, 0.0, 255.0)


def _paint(img: np.ndarray, window: np.ndarray, top: int, left: int, color: np.ndarray,
           rng: np.random.Generator) -> None:
    """Blend a slightly shaded solid color into ``img`` (float32 HWC) through the coverage
    ``window`` placed at ``top, left``, in place."""
    h, w = window.shape
    g = rng.normal(0, 0.25, size=2)
    gx = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.float32(g[0])
    gy = np.linspace(-0.5, 0.5, h, dtype=np.float32) * np.float32(g[1])
    shade = 1.0 + gy[:, None] + gx[None, :]
    fill = np.clip(color.astype(np.float32)[None, None, :] * shade[..., None], 0, 255)
    region = img[top:top + h, left:left + w]
    m = window[..., None]
    region += (fill - region) * m


def _image_size(rng: np.random.Generator, min_side: int, max_side: int, max_aspect: float) -> tuple[int, int]:
    while True:
        h, w = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
        if h != w and max(h, w) / min(h, w) <= max_aspect:
            return h, w


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def draw_classification_image(rng: np.random.Generator, kind: str, spec: ClassificationSetSpec) -> np.ndarray:
    """One RGB uint8 image of one ``kind`` shape. The shape stays inside the centered square of
    side ``min(h, w)`` (what ``resize_crop`` keeps), with random size, offset and rotation."""
    h, w = _image_size(rng, spec.min_side, spec.max_side, spec.max_aspect)
    img = textured_background(rng, h, w)
    side = min(h, w)
    radius = side * rng.uniform(0.22, 0.40)
    slack = max(side / 2 - radius - 1, 0.0)
    cx = w / 2 + rng.uniform(-slack, slack)
    cy = h / 2 + rng.uniform(-slack, slack)
    window, top, left = shape_window(kind, h, w, cx, cy, radius, rng.uniform(0, 2 * np.pi))
    _paint(img, window, top, left, _contrasting_color(rng, img), rng)
    return _to_uint8(img)


def _window_box(window: np.ndarray, top: int, left: int) -> tuple[tuple[float, float, float, float], float] | None:
    """Tight ``[x, y, w, h]`` box and pixel area of the half-covered pixels of a window."""
    on = window >= 0.5
    if not on.any():
        return None
    ys = np.nonzero(on.any(axis=1))[0]
    xs = np.nonzero(on.any(axis=0))[0]
    x0, y0, x1, y1 = int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1
    return (float(left + x0), float(top + y0), float(x1 - x0), float(y1 - y0)), float(on.sum())


def draw_detection_image(rng: np.random.Generator, spec: DetectionSetSpec,
                         classes: list[str]) -> tuple[np.ndarray, list[ObjectBox]]:
    """One RGB uint8 image with 1-5 non-overlapping shapes and their ground-truth boxes."""
    h, w = _image_size(rng, spec.min_side, spec.max_side, spec.max_aspect)
    img = textured_background(rng, h, w)
    side = min(h, w)
    wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    placed: list[tuple[float, float, float]] = []
    objects: list[ObjectBox] = []
    for _ in range(wanted):
        for _attempt in range(50):
            radius = side * rng.uniform(spec.min_radius, spec.max_radius)
            cx = rng.uniform(radius + 1, w - radius - 1)
            cy = rng.uniform(radius + 1, h - radius - 1)
            if all(np.hypot(cx - px, cy - py) > radius + pr + 2 for px, py, pr in placed):
                break
        else:
            continue
        cls = int(rng.integers(0, len(classes)))
        window, top, left = shape_window(classes[cls], h, w, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        box = _window_box(window, top, left)
        if box is None:
            continue
        placed.append((cx, cy, radius))
        _paint(img, window, top, left, _contrasting_color(rng, img[top:top + window.shape[0],
                                                                    left:left + window.shape[1]]), rng)
        objects.append(ObjectBox(cls, box[0], box[1]))
    return _to_uint8(img), objects


# -- files -------------------------------------------------------------------------------------

def _rng(seed: int, split: int, index: int, extra: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, split, index, extra]))


def _encode_jpeg(img_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
        raise DatasetError("JPEG encoding failed")
    return buf.tobytes()


def spec_key(kind: str, seed: int, spec) -> str:
    """The cache key of a set: hash of what determines its content."""
    blob = json.dumps({"kind": kind, "generator_version": GENERATOR_VERSION, "seed": int(seed),
                       "spec": asdict(spec)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tree_digest(root: Path, relative: list[str]) -> str:
    """sha256 over the names and bytes of ``relative`` files under ``root`` (in the given order)."""
    h = hashlib.sha256()
    for rel in relative:
        h.update(rel.encode() + b"\0")
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a generated set, or None when absent or unreadable."""
    path = Path(root) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _is_current(root: Path, kind: str, key: str) -> bool:
    m = read_manifest(root)
    if not m or m.get("kind") != kind or m.get("key") != key:
        return False
    files = m.get("files")
    return isinstance(files, list) and all((root / rel).is_file() for rel in files)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=True)


def _prepare_target(root: Path) -> Path:
    """Refuse to replace a folder that is not a generated set; return a fresh temp sibling."""
    if root.exists():
        if not root.is_dir():
            raise DatasetError(f"{root}: exists and is not a folder")
        if any(root.iterdir()) and read_manifest(root) is None:
            raise DatasetError(f"{root}: folder is not empty and holds no {MANIFEST}; "
                               f"refusing to overwrite it with generated data (choose another folder)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


@contextmanager
def staged_set(root: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``root`` to generate a set in (see :func:`_prepare_target`);
    whatever is left of it on the way out (a failure before :func:`commit_set`) is removed."""
    tmp = _prepare_target(root)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def commit_set(tmp: Path, root: Path, kind: str, seed: int, spec, classes: list[str], files: list[str]) -> None:
    """Write the manifest of the set generated in ``tmp`` and move it into place as ``root``."""
    manifest = {"kind": kind, "key": spec_key(kind, seed, spec), "seed": seed,
                "generator_version": GENERATOR_VERSION, "spec": asdict(spec), "classes": classes,
                "files": files, "data_sha256": tree_digest(tmp, files)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)


def ensure_set(generate: Callable[..., Path], kind: str, root: str | Path, seed: int, spec,
               progress: bool) -> Path:
    """``root`` when it holds the current set of ``kind`` for ``seed`` and ``spec``, else
    ``generate(root, seed, spec, progress)``."""
    root = Path(root)
    if _is_current(root, kind, spec_key(kind, seed, spec)):
        return root
    return generate(root, seed, spec, progress)


def generate_classification_data(root: str | Path, seed: int = 0,
                                 spec: ClassificationSetSpec = ClassificationSetSpec(),
                                 progress: bool = True) -> Path:
    """Write the classification set under ``root`` (replacing a previous generated set)."""
    root = Path(root)
    classes = classification_classes()
    files: list[str] = []
    counts = {"train": spec.train_per_class, "val": spec.val_per_class}
    with staged_set(root) as tmp:
        with _progress(progress) as bar:
            task = bar.add_task("generating demo_shapes images", total=sum(counts.values()) * len(classes))
            for split_i, split in enumerate(CLASSIFICATION_SPLITS):
                for ci, name in enumerate(classes):
                    folder = tmp / split / name
                    folder.mkdir(parents=True)
                    for i in range(counts[split]):
                        img = draw_classification_image(_rng(seed, split_i, i, ci + 1), name, spec)
                        rel = f"{split}/{name}/{name}_{i:05d}.JPEG"
                        (tmp / rel).write_bytes(_encode_jpeg(img, spec.jpeg_quality))
                        files.append(rel)
                        bar.advance(task)
        commit_set(tmp, root, CLASSIFICATION_KIND, seed, spec, classes, files)
    return root


def ensure_classification_data(root: str | Path, seed: int = 0,
                               spec: ClassificationSetSpec = ClassificationSetSpec(),
                               progress: bool = True) -> Path:
    """The classification set under ``root``, generated only when missing or out of date."""
    return ensure_set(generate_classification_data, CLASSIFICATION_KIND, root, seed, spec, progress)


def coco_document(images: list[dict], annotations: list[dict], classes: list[str], split: str) -> dict:
    """A COCO instances document (the layout of ``instances_val2017.json``)."""
    return {
        "info": {"description": f"tritonkit demo shapes, {split}", "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(classes)],
    }


def generate_detection_data(root: str | Path, seed: int = 0, spec: DetectionSetSpec = DetectionSetSpec(),
                            progress: bool = True) -> Path:
    """Write the COCO-layout detection set under ``root`` (replacing a previous generated set)."""
    root = Path(root)
    classes = detection_classes()
    files: list[str] = []
    counts = {"train2017": spec.train_images, "val2017": spec.val_images}
    with staged_set(root) as tmp:
        (tmp / "annotations").mkdir()
        with _progress(progress) as bar:
            task = bar.add_task("generating demo_shapes_det images", total=sum(counts.values()))
            for split_i, split in enumerate(DETECTION_SPLITS):
                (tmp / split).mkdir()
                images, anns = [], []
                for i in range(counts[split]):
                    img, objects = draw_detection_image(_rng(seed, 10 + split_i, i), spec, classes)
                    image_id = i + 1
                    name = f"{image_id:012d}.jpg"
                    (tmp / split / name).write_bytes(_encode_jpeg(img, spec.jpeg_quality))
                    files.append(f"{split}/{name}")
                    images.append({"id": image_id, "file_name": name, "height": int(img.shape[0]),
                                   "width": int(img.shape[1])})
                    for obj in objects:
                        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": obj.class_index + 1,
                                     "bbox": list(obj.bbox), "area": obj.area, "iscrowd": 0})
                    bar.advance(task)
                rel = f"annotations/instances_{split}.json"
                (tmp / rel).write_text(json.dumps(coco_document(images, anns, classes, split)))
                files.append(rel)
        commit_set(tmp, root, DETECTION_KIND, seed, spec, classes, files)
    return root


def ensure_detection_data(root: str | Path, seed: int = 0, spec: DetectionSetSpec = DetectionSetSpec(),
                          progress: bool = True) -> Path:
    """The detection set under ``root``, generated only when missing or out of date."""
    return ensure_set(generate_detection_data, DETECTION_KIND, root, seed, spec, progress)


__all__ = [
    "ClassificationSetSpec", "DetectionSetSpec", "ObjectBox", "shape_polygons", "shape_mask", "shape_window",
    "textured_background", "draw_classification_image", "draw_detection_image", "coco_document",
    "generate_classification_data", "ensure_classification_data", "generate_detection_data",
    "ensure_detection_data", "read_manifest", "spec_key", "tree_digest", "classification_classes",
    "detection_classes",
]
