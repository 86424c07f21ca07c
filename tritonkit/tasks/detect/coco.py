"""COCO detection data and metrics: load and check a dataset, build results, run COCOeval.

Layout (COCO val2017)::

    COCO_ROOT/val2017/*.jpg
    COCO_ROOT/annotations/instances_val2017.json

or explicit ``images`` folder + ``annotations`` file. Annotations are read and checked here
(every problem is one :class:`~tritonkit.errors.DatasetError` naming the file and field), then
handed to pycocotools' ``COCO`` index; metrics come from pycocotools' ``COCOeval`` (bbox),
restricted to the images actually evaluated so a ``--limit`` run gives a meaningful mAP.
Images without ground truth are kept (COCOeval counts their detections as false positives).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.tasks.detect.math import Detections
from tritonkit.errors import DatasetError
from tritonkit.io import atomic_write_text, load_json_bounded

pycoco = lazy_import("pycocotools.coco")
pycocoeval = lazy_import("pycocotools.cocoeval")

if TYPE_CHECKING:  # pragma: no cover
    from pycocotools.coco import COCO

DEFAULT_IMAGES = "val2017"
DEFAULT_ANNOTATIONS = "annotations/instances_val2017.json"
MISSING_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    path: Path
    height: int | None = None
    width: int | None = None


@dataclass
class CocoDataset:
    """A checked COCO detection set: the pycocotools index plus the images to evaluate."""

    images_dir: Path
    annotations_file: Path
    coco: "COCO"
    images: list[CocoImage]
    skipped_missing: int = 0

    @property
    def category_ids(self) -> list[int]:
        return sorted(self.coco.getCatIds())

    @property
    def image_ids(self) -> list[int]:
        return [im.id for im in self.images]

    def num_annotations(self, image_ids: Iterable[int] | None = None) -> int:
        ids = self.image_ids if image_ids is None else list(image_ids)
        return len(self.coco.getAnnIds(imgIds=ids))


def resolve_paths(root: str | Path | None = None, images: str | Path | None = None,
                  annotations: str | Path | None = None) -> tuple[Path, Path]:
    """``(images_dir, annotations_file)`` from a COCO root and/or explicit paths."""
    if root is None and (images is None or annotations is None):
        raise DatasetError("give a COCO root (with val2017/ and annotations/instances_val2017.json) "
                           "or both images (a folder) and annotations (a file)", fields=("images", "annotations"))
    images_dir = Path(images) if images is not None else Path(root) / DEFAULT_IMAGES
    ann_file = Path(annotations) if annotations is not None else Path(root) / DEFAULT_ANNOTATIONS
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: image folder not found")
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    return images_dir, ann_file


def _read_json(path: Path) -> dict:
    try:
        data = load_json_bounded(path, "annotation file")
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None
    except ValueError as exc:  # size cap or nesting depth, one line naming the file
        raise DatasetError(str(exc)) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    return data


def _check_list(data: dict, key: str, path: Path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        got = "missing" if value is None else type(value).__name__
        raise DatasetError(f"{path}: field '{key}' must be a list ({got})")
    return value


def _bad_entries(entries: list, required: dict[str, tuple[type, ...]]) -> tuple[int, str]:
    """(count, description of the first) entries lacking a field or with a wrong type."""
    first, count = "", 0
    for i, e in enumerate(entries):
        problem = None
        if not isinstance(e, dict):
            problem = "not an object"
        else:
            for field, types in required.items():
                v = e.get(field)
                if v is None or isinstance(v, bool) or not isinstance(v, types):
                    problem = f"field '{field}' {'missing' if v is None else 'has type ' + type(v).__name__}"
                    break
        if problem:
            count += 1
            if not first:
                first = f"#{i}: {problem}"
    return count, first


def _valid_bbox(bbox: list) -> bool:
    """``[x, y, w, h]`` of finite numbers (not bools) with ``w, h >= 0``."""
    return (len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
            and all(math.isfinite(v) for v in bbox) and bbox[2] >= 0 and bbox[3] >= 0)


def _check_unique_file_names(images: list[dict], path: Path) -> None:
    """Two ``images`` entries with one file name would silently drop one image and its ground
    truth (the folder holds one file): an annotation error naming the image ids."""
    by_name: dict[str, list[int]] = {}
    for im in images:
        by_name.setdefault(Path(im["file_name"]).name, []).append(im["id"])
    dups = sorted((ids for ids in by_name.values() if len(ids) > 1), key=min)
    if dups:
        name = next(n for n, ids in by_name.items() if ids == dups[0])
        raise DatasetError(f"{path}: {len(dups)} file names are listed by more than one image (first: "
                           f"{name!r} for image ids {', '.join(map(str, dups[0]))})")


def check_annotations(data: dict, path: Path) -> dict:
    """Validate COCO detection JSON (the input is not modified); returns a copy with COCOeval's defaults
    filled in (``id``, ``area`` = w*h, ``iscrowd`` = 0 where absent)."""
    images = _check_list(data, "images", path)
    anns = _check_list(data, "annotations", path)
    cats = _check_list(data, "categories", path)
    for key, entries, required in (
            ("images", images, {"id": (int,), "file_name": (str,)}),
            ("annotations", anns, {"image_id": (int,), "category_id": (int,), "bbox": (list,)}),
            ("categories", cats, {"id": (int,)})):
        n, first = _bad_entries(entries, required)
        if n:
            raise DatasetError(f"{path}: {n} malformed entries in '{key}' (first {first})")
    bad_boxes = [i for i, a in enumerate(anns) if not _valid_bbox(a["bbox"])]
    if bad_boxes:
        first = anns[bad_boxes[0]]
        raise DatasetError(f"{path}: {len(bad_boxes)} annotations have a bbox that is not [x, y, w, h] of finite "
                           f"numbers with w, h >= 0 (first #{bad_boxes[0]}: image id {first['image_id']}, "
                           f"bbox {first['bbox']})")
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetError(f"{path}: {len(dup)} duplicate image ids in 'images' (first: {dup[:5]})")
    _check_unique_file_names(images, path)
    known = set(ids)
    orphans = [a["image_id"] for a in anns if a["image_id"] not in known]
    if orphans:
        raise DatasetError(f"{path}: {len(orphans)} annotations refer to image ids not in 'images' "
                           f"(first: {', '.join(map(str, orphans[:5]))})")
    cat_ids = {c["id"] for c in cats}
    unknown = sorted({a["category_id"] for a in anns} - cat_ids)
    if unknown:
        raise DatasetError(f"{path}: annotations use category ids not in 'categories': {unknown[:10]}")
    out = dict(data)
    fixed = []
    used = {a["id"] for a in anns if isinstance(a.get("id"), int)}
    next_id = max(used, default=0) + 1
    for a in anns:
        a = dict(a)
        if not isinstance(a.get("id"), int):
            a["id"], next_id = next_id, next_id + 1
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
        fixed.append(a)
    out["annotations"] = fixed
    return out


def _coco_index(data: dict) -> "COCO":
    coco = pycoco.COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(images_dir: str | Path, annotations_file: str | Path, limit: int | None = None,
              missing: str = "error") -> CocoDataset:
    """Load and check a COCO detection set.

    Images are taken in id order; ``limit`` keeps the first ``limit`` of them. Images listed in
    the annotations but absent from ``images_dir`` are an error (``missing="error"``: how many
    and the first few names) or dropped (``missing="skip"``, counted in ``skipped_missing``).
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be >= 1 (got {limit})", fields=("limit",))
    images_dir, ann_path = Path(images_dir), Path(annotations_file)
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: image folder not found")
    data = check_annotations(_read_json(ann_path), ann_path)
    if not data["images"]:
        raise DatasetError(f"{ann_path}: 'images' is empty")
    listed = sorted(data["images"], key=lambda im: im["id"])
    on_disk = {p.name for p in images_dir.iterdir()}
    absent = [im["file_name"] for im in listed if Path(im["file_name"]).name not in on_disk]
    if absent and missing == "error":
        raise DatasetError(
            f"{len(absent)} of {len(listed)} images listed in {ann_path} are missing from {images_dir} "
            f"(first: {', '.join(absent[:3])}); check the image folder and the annotations file, or skip "
            f"them (missing='skip')")
    absent_set = set(absent)
    present = [im for im in listed if im["file_name"] not in absent_set]
    if not present:
        raise DatasetError(f"none of the {len(listed)} images listed in {ann_path} is in {images_dir}")
    if limit is not None:
        present = present[:limit]
    images = [CocoImage(im["id"], im["file_name"], images_dir / Path(im["file_name"]).name,
                        im.get("height"), im.get("width")) for im in present]
    return CocoDataset(images_dir, ann_path, _coco_index(data), images, skipped_missing=len(absent))


def load_coco_root(root: str | Path | None = None, images: str | Path | None = None,
                   annotations: str | Path | None = None, limit: int | None = None,
                   missing: str = "error") -> CocoDataset:
    images_dir, ann_file = resolve_paths(root, images, annotations)
    return load_coco(images_dir, ann_file, limit=limit, missing=missing)


def check_categories(dataset: CocoDataset, category_ids: Sequence[int], model: str) -> list[int]:
    """Card category ids absent from the dataset (a warning); none at all in common is an error."""
    have = set(dataset.category_ids)
    absent = [c for c in category_ids if c not in have]
    if len(absent) == len(category_ids):
        raise DatasetError(f"{dataset.annotations_file}: none of model {model!r}'s category ids "
                           f"({list(category_ids)[:5]}...) are dataset categories ({sorted(have)[:5]}...)")
    return absent


# -- results and metrics -------------------------------------------------------------------

def detections_to_coco(image_id: int, dets: "Detections", category_ids: Sequence[int] | None,
                       decimals: int = 3) -> list[dict]:
    """COCO results entries for one image: original-pixel ``bbox`` [x, y, w, h], score, and
    ``category_id`` = ``category_ids[class]`` (the class index itself when None)."""
    boxes = np.asarray(dets.boxes, np.float64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).round(decimals)
    classes = np.asarray(dets.classes).astype(int)
    if category_ids is not None:
        if len(classes) and (classes.min() < 0 or classes.max() >= len(category_ids)):
            raise ValueError(f"class index outside the card's {len(category_ids)} category ids")
        cats = [int(category_ids[c]) for c in classes]
    else:
        cats = classes.tolist()
    return [{"image_id": int(image_id), "category_id": cat, "bbox": box, "score": round(float(s), 5)}
            for cat, box, s in zip(cats, xywh.tolist(), np.asarray(dets.scores).tolist())]


def write_results(path: str | Path, results: list[dict]) -> Path:
    """Write a COCO results JSON (the format pycocotools' ``loadRes`` and the COCO server read)."""
    return atomic_write_text(path, json.dumps(results))


@dataclass(frozen=True)
class CocoMetrics:
    """COCOeval bbox summary. An area range with no ground truth is None (COCOeval's -1)."""

    map50_95: float | None
    map50: float | None
    map75: float | None
    map_small: float | None
    map_medium: float | None
    map_large: float | None
    images: int
    detections: int
    ground_truths: int
    summary: str = ""

    def to_dict(self, with_summary: bool = False) -> dict:
        d = asdict(self)
        if not with_summary:
            d.pop("summary")
        return d


def _stat(value: float) -> float | None:
    v = float(value)
    return None if (v < 0 or math.isnan(v)) else v


def _empty_results(gt: "COCO") -> "COCO":
    """A results index with no detections (pycocotools' loadRes cannot take an empty list)."""
    return _coco_index({"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                        "annotations": []})


def _ultralytics_image_id(stem: str) -> str:
    """ultralytics' image id of a file stem, as text: a numeric stem is an int there (``0042`` -> 42)."""
    return str(int(stem)) if stem.isnumeric() else stem


def read_ultralytics_predictions(path: str | Path, gt: "COCO") -> tuple[list[dict], int]:
    """ultralytics' validator predictions (``predictions.json`` of ``yolo val save_json=True``) as
    COCO results on ``gt``: its ``image_id`` is the image file's stem, so each prediction is moved to
    the ground-truth image whose file has that stem (``file_name`` when given); ``category_id`` is
    kept (ultralytics writes COCO's 91 ids for COCO, ``class + 1`` otherwise). Returns the results
    and how many predictions named an image the annotations lack (left out)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ultralytics predictions ({exc})") from None
    required = {"image_id": (int, str), "category_id": (int,), "bbox": (list,), "score": (int, float)}
    bad, why = _bad_entries(data, required) if isinstance(data, list) else (0, "")
    if not isinstance(data, list) or bad:
        raise DatasetError(f"{path}: expected ultralytics' predictions.json (a list of image_id, category_id, "
                           f"bbox, score){'; ' + why if why else ''}")
    by_stem = {_ultralytics_image_id(Path(im["file_name"]).stem): im["id"] for im in gt.dataset["images"]}
    out, unknown = [], 0
    for p in data:
        name = Path(p["file_name"]).stem if isinstance(p.get("file_name"), str) else str(p["image_id"])
        stem = _ultralytics_image_id(name)
        if stem not in by_stem:
            unknown += 1
            continue
        out.append({"image_id": by_stem[stem], "category_id": int(p["category_id"]),
                    "bbox": [float(v) for v in p["bbox"]], "score": float(p["score"])})
    return out, unknown


def coco_map(gt: "COCO", results: list[dict], image_ids: Iterable[int]) -> CocoMetrics:
    """COCOeval (bbox) over ``image_ids`` only. No detections gives mAP 0 where there is ground
    truth; no ground truth at all gives None (nothing to measure)."""

    ids = sorted(set(int(i) for i in image_ids))
    if not ids:
        raise DatasetError("no images were evaluated")
    known = set(gt.getImgIds())
    foreign = sorted({r["image_id"] for r in results} - known)
    if foreign:
        raise ValueError(f"results refer to image ids not in the annotations: {foreign[:5]}")
    wanted = set(ids)
    results = [r for r in results if r["image_id"] in wanted]
    n_gt = len(gt.getAnnIds(imgIds=ids))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = gt.loadRes(copy.deepcopy(results)) if results else _empty_results(gt)
        ev = pycocoeval.COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    summary = "\n".join(line for line in buf.getvalue().splitlines() if line.lstrip().startswith("Average"))
    return CocoMetrics(map50_95=_stat(s[0]), map50=_stat(s[1]), map75=_stat(s[2]), map_small=_stat(s[3]),
                       map_medium=_stat(s[4]), map_large=_stat(s[5]), images=len(ids),
                       detections=len(results), ground_truths=n_gt, summary=summary)
