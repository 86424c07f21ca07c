"""COCO data checks and COCOeval metrics on a tiny synthetic set with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritonkit.tasks.detect.coco import (
    check_categories, coco_map, detections_to_coco, load_coco, load_coco_root, resolve_paths, write_results)
from tritonkit.tasks.detect.math import Detections
from tritonkit.errors import DatasetError

CATEGORY_IDS = (1, 3, 7)  # a card's class index -> dataset category id (with gaps, as in COCO)

# image id -> [(category id, [x, y, w, h])]; sizes cover COCO's small (<32^2), medium and large
GROUND_TRUTH = {
    11: [(1, [10, 10, 20, 20]), (3, [50, 40, 60, 50])],
    12: [(7, [5, 5, 150, 120]), (1, [200, 30, 40, 40]), (3, [100, 100, 25, 10])],
    13: [(3, [30, 60, 120, 110])],
    14: [],  # an image without ground truth is kept
}


def make_coco(root: Path, gt=GROUND_TRUTH, present=None) -> Path:
    """Write COCO_ROOT/val2017/*.jpg (empty placeholders: only names are checked here) and
    COCO_ROOT/annotations/instances_val2017.json."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for image_id, boxes in gt.items():
        name = f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": name, "height": 300, "width": 400})
        if present is None or image_id in present:
            (root / "val2017" / name).write_bytes(b"")
        for cat, bbox in boxes:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": bbox,
                         "area": bbox[2] * bbox[3], "iscrowd": 0})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in CATEGORY_IDS]}
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def dets_for(image_id: int, drop: int | None = None, score0: float = 0.9) -> Detections:
    """Detections equal to the ground truth of one image (xyxy, class indices)."""
    rows = [r for i, r in enumerate(GROUND_TRUTH[image_id]) if i != drop]
    boxes = [[x, y, x + w, y + h] for _, (x, y, w, h) in rows]
    classes = [CATEGORY_IDS.index(c) for c, _ in rows]
    scores = [score0 - 0.1 * i for i in range(len(rows))]
    return Detections.create(boxes, scores, classes)


def results_for(ids, drop=None):
    out = []
    for image_id in ids:
        out += detections_to_coco(image_id, dets_for(image_id, drop=drop.get(image_id) if drop else None),
                                  CATEGORY_IDS)
    return out


@pytest.fixture
def coco_root(tmp_path) -> Path:
    make_coco(tmp_path / "coco")
    return tmp_path / "coco"


def test_perfect_detections_give_map_one(coco_root):
    ds = load_coco_root(coco_root)
    assert ds.image_ids == [11, 12, 13, 14]
    m = coco_map(ds.coco, results_for(ds.image_ids), ds.image_ids)
    assert m.map50 == pytest.approx(1.0) and m.map50_95 == pytest.approx(1.0)
    assert m.map_small == pytest.approx(1.0) and m.map_medium == pytest.approx(1.0)
    assert m.map_large == pytest.approx(1.0)
    assert (m.images, m.detections, m.ground_truths) == (4, 6, 6)


def test_a_dropped_detection_lowers_map(coco_root):
    ds = load_coco_root(coco_root)
    m = coco_map(ds.coco, results_for(ds.image_ids, drop={12: 1}), ds.image_ids)
    assert m.map50 < 1.0 and m.map50_95 < 1.0
    assert m.map_medium < 1.0  # the dropped box (40x40) is medium
    assert m.map_small == pytest.approx(1.0)


def test_false_positive_on_image_without_ground_truth_counts(coco_root):
    ds = load_coco_root(coco_root)
    fp = detections_to_coco(14, Detections.create([[0, 0, 50, 50]], [0.99], [0]), CATEGORY_IDS)
    m = coco_map(ds.coco, results_for(ds.image_ids) + fp, ds.image_ids)
    assert m.map50 < 1.0


def test_limit_restricts_evaluation_to_the_images_run(coco_root):
    ds = load_coco_root(coco_root, limit=2)
    assert ds.image_ids == [11, 12]
    m = coco_map(ds.coco, results_for(ds.image_ids), ds.image_ids)
    assert m.map50 == pytest.approx(1.0) and m.ground_truths == 5  # image 13's box is not counted
    # without the restriction image 13's undetected box would count as a miss
    full = coco_map(ds.coco, results_for(ds.image_ids), [11, 12, 13])
    assert full.map50 < 1.0


def test_no_detections_gives_zero_not_a_crash(coco_root):
    ds = load_coco_root(coco_root)
    m = coco_map(ds.coco, [], ds.image_ids)
    assert m.map50 == 0.0 and m.map50_95 == 0.0 and m.detections == 0


def test_area_range_without_ground_truth_is_none(coco_root):
    ds = load_coco_root(coco_root)
    m = coco_map(ds.coco, results_for([13]), [13])
    assert m.map_large == pytest.approx(1.0)
    assert m.map_small is None and m.map_medium is None


def test_results_json_layout(tmp_path):
    dets = Detections.create([[10.5, 20, 30.25, 60]], [0.123456789], [2])
    (entry,) = detections_to_coco(5, dets, CATEGORY_IDS)
    assert entry == {"image_id": 5, "category_id": 7, "bbox": [10.5, 20.0, 19.75, 40.0], "score": 0.12346}
    path = write_results(tmp_path / "r" / "results.json", [entry])
    assert json.loads(path.read_text()) == [entry]
    with pytest.raises(ValueError, match="category ids"):
        detections_to_coco(5, Detections.create([[0, 0, 1, 1]], [0.5], [3]), CATEGORY_IDS)


def test_results_for_unknown_images_are_refused(coco_root):
    ds = load_coco_root(coco_root)
    with pytest.raises(ValueError, match="99"):
        coco_map(ds.coco, detections_to_coco(99, dets_for(11), CATEGORY_IDS), ds.image_ids)


# -- bad data: one clear error naming the file ------------------------------------------

def test_missing_annotation_file_is_named(tmp_path):
    (tmp_path / "val2017").mkdir()
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: annotation file not found"):
        load_coco_root(tmp_path)
    with pytest.raises(DatasetError, match="nope.json: annotation file not found"):
        load_coco(tmp_path / "val2017", tmp_path / "nope.json")


def test_missing_image_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="val2017: image folder not found"):
        resolve_paths(tmp_path)


def test_malformed_json_is_named(coco_root):
    ann = coco_root / "annotations" / "instances_val2017.json"
    ann.write_text('{"images": [1, 2')
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: not valid JSON .* line 1"):
        load_coco_root(coco_root)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("images"), r"field 'images' must be a list \(missing\)"),
    (lambda d: d.update(annotations={}), r"field 'annotations' must be a list \(dict\)"),
    (lambda d: d["images"][1].pop("file_name"), r"1 malformed entries in 'images' \(first #1: field 'file_name' missing\)"),
    (lambda d: d["annotations"][2].update(bbox=[1, 2, 3]), r"bbox that is not \[x, y, w, h\].*first #2"),
    (lambda d: d["annotations"][0].update(image_id=999), r"1 annotations refer to image ids not in 'images' \(first: 999\)"),
    (lambda d: d["annotations"][0].update(category_id=42), r"category ids not in 'categories': \[42\]"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"duplicate image ids .*11"),
])
def test_malformed_annotations_are_named(coco_root, mutate, message):
    ann = coco_root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message) as info:
        load_coco_root(coco_root)
    assert str(ann) in str(info.value)
    assert "\n" not in str(info.value)


def test_images_missing_from_the_folder_are_counted_and_named(tmp_path):
    make_coco(tmp_path / "coco", present={11, 13})
    with pytest.raises(DatasetError, match=r"2 of 4 images .* missing from .*val2017 \(first: 000000000012\.jpg, "
                                           r"000000000014\.jpg\)"):
        load_coco_root(tmp_path / "coco")
    ds = load_coco_root(tmp_path / "coco", missing="skip")
    assert ds.image_ids == [11, 13] and ds.skipped_missing == 2


def test_explicit_paths_and_defaults_filled(tmp_path):
    ann = make_coco(tmp_path / "c")
    data = json.loads(ann.read_text())
    for a in data["annotations"]:
        del a["id"], a["area"], a["iscrowd"]  # a hand-made set may lack COCOeval's fields
    other = tmp_path / "mine.json"
    other.write_text(json.dumps(data))
    ds = load_coco_root(images=tmp_path / "c" / "val2017", annotations=other)
    m = coco_map(ds.coco, results_for(ds.image_ids), ds.image_ids)
    assert m.map50_95 == pytest.approx(1.0)
    assert json.loads(other.read_text()) == data  # the user's file is not modified


def test_category_check(coco_root):
    ds = load_coco_root(coco_root)
    assert check_categories(ds, (1, 3, 7, 8), "m") == [8]
    with pytest.raises(DatasetError, match="none of model 'm'"):
        check_categories(ds, (50, 51), "m")


def test_coco_map_agrees_with_pycocotools_reading_files(coco_root, tmp_path):
    """Our in-memory path equals pycocotools' own file-based loadRes/COCOeval."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = load_coco_root(coco_root)
    rng = np.random.default_rng(0)
    results = results_for(ds.image_ids, drop={12: 0})
    for r in results:  # jitter so the IoU thresholds matter
        r["bbox"] = [v + float(rng.normal(0, 2)) for v in r["bbox"]]
    ours = coco_map(ds.coco, results, ds.image_ids)
    path = write_results(tmp_path / "res.json", results)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_root / "annotations" / "instances_val2017.json"))
        ev = COCOeval(gt, gt.loadRes(str(path)), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert 0 < ours.map50_95 < 1
    assert ours.map50_95 == pytest.approx(ev.stats[0]) and ours.map50 == pytest.approx(ev.stats[1])


def test_deeply_nested_annotations_give_one_line_naming_the_file(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    ann = tmp_path / "ann.json"
    ann.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError) as info:
        load_coco(images, ann)
    msg = str(info.value)
    assert str(ann) in msg and "nested too deeply" in msg and "\n" not in msg


def test_annotations_over_the_size_cap_are_refused_with_the_cap(tmp_path, monkeypatch):
    import tritonkit.io as tio
    monkeypatch.setattr(tio, "MAX_JSON_BYTES", 10)
    images = tmp_path / "images"
    images.mkdir()
    ann = tmp_path / "ann.json"
    ann.write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(DatasetError, match="10-byte limit"):
        load_coco(images, ann)
