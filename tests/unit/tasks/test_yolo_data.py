"""YOLO data.yaml datasets: read as COCO ground truth, checked against ultralytics' own COCO -> YOLO
converter (the reference), empty and malformed label files, class mapping by name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tritonkit.cards import get_card
from tritonkit.errors import DatasetError
from tritonkit.tasks.detect.coco import coco_map, detections_to_coco, load_coco
from tritonkit.tasks.detect.math import Detections
from tritonkit.tasks.detect.task import category_ids_for
from tritonkit.tasks.detect.yolo import label_file, load_yolo
from tests.support.ultralytics_models import write_shapes_dataset

NAMES = ["cat", "dog", "bird"]
SIZES = {1: (120, 90), 2: (64, 200), 3: (150, 150)}  # image id -> (w, h)
GT = {1: [(1, [10, 10, 30, 20]), (3, [50, 40, 60, 45])], 2: [(2, [5, 5, 50, 150])], 3: [(3, [30, 60, 100, 80])]}


def _coco_json(root: Path) -> Path:
    import cv2
    (root / "coco").mkdir(parents=True)
    (root / "val").mkdir()
    images, anns = [], []
    for i, (w, h) in SIZES.items():
        cv2.imwrite(str(root / "val" / f"{i:04d}.png"), np.full((h, w, 3), 90, np.uint8))
        images.append({"id": i, "file_name": f"{i:04d}.png", "width": w, "height": h})
        for c, b in GT[i]:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3],
                         "iscrowd": 0})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]
    path = root / "coco" / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _yolo_from_coco(root: Path) -> Path:
    """The YOLO layout written by ultralytics' convert_coco from the same COCO JSON."""
    # ultralytics runs in its own process: importing it here would patch PIL.Image.open for every later test
    from support.ultralytics_models import _ultralytics_env, cache_root, ultralytics_python
    code = ("import sys; from ultralytics.data.converter import convert_coco; "
            "convert_coco(sys.argv[1], save_dir=sys.argv[2], cls91to80=False)")
    subprocess.run([ultralytics_python(), "-c", code, str(root / "coco"), str(root / "conv")], check=True,
                   capture_output=True, env=_ultralytics_env(cache_root()), timeout=300)
    (root / "yolo" / "images").mkdir(parents=True)
    shutil.copytree(root / "val", root / "yolo" / "images" / "val")
    shutil.copytree(_labels_dir(root),
                    root / "yolo" / "labels" / "val")
    data = root / "yolo" / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": dict(enumerate(NAMES))}))
    return data


def _labels_dir(root: Path) -> Path:
    return next(p for p in root.glob("conv*/labels/val"))


def _detections() -> dict[int, Detections]:
    rng = np.random.default_rng(0)
    out = {}
    for i, gts in GT.items():
        boxes = [[x + rng.uniform(-3, 3), y + rng.uniform(-3, 3), x + w, y + h] for _, (x, y, w, h) in gts]
        boxes.append([0, 0, 20, 20])
        out[i] = Detections(np.array(boxes, np.float32), np.linspace(0.9, 0.3, len(boxes)).astype(np.float32),
                            np.array([c - 1 for c, _ in gts] + [0], np.int64))
    return out


def _map(ds, class_to_cat) -> float:
    results = [r for i, d in _detections().items() for r in detections_to_coco(i, d, class_to_cat)]
    return coco_map(ds.coco, results, ds.image_ids).map50_95


def test_yolo_layout_equals_the_coco_json_it_was_converted_from(tmp_path):
    ann = _coco_json(tmp_path)
    coco = load_coco(tmp_path / "val", ann)
    yolo = load_yolo(_yolo_from_coco(tmp_path))
    assert yolo.problems == []
    assert [im.path.name for im in yolo.images] == [im.path.name for im in coco.images]
    for im_y, im_c in zip(yolo.images, coco.images):
        gy = sorted((a["category_id"], *a["bbox"]) for a in yolo.coco.imgToAnns[im_y.id])
        gc = sorted((a["category_id"], *a["bbox"]) for a in coco.coco.imgToAnns[im_c.id])
        np.testing.assert_allclose(np.array(gy), np.array(gc), atol=1e-3)
    m_yolo, m_coco = _map(yolo, (1, 2, 3)), _map(coco, (1, 2, 3))
    assert 0 < m_coco < 1
    assert m_yolo == pytest.approx(m_coco, abs=1e-9)


def test_shapes_dataset_empty_and_malformed_label_files(tmp_path):
    data = write_shapes_dataset(tmp_path, "detect", n_train=0, n_val=8)
    images = sorted((tmp_path / "images" / "val").iterdir())
    assert not label_file(images[7]).exists()  # the generator leaves one image in eight unlabelled
    bad = label_file(images[0])
    good = bad.read_text().splitlines()
    bad.write_text("\n".join(good + ["7 0.5 0.5 0.1 0.1", "0 0.5 0.5", "x 0.1 0.1 0.1 0.1"]) + "\n")
    ds = load_yolo(data)
    assert len(ds.images) == 8
    assert [p["path"] for p in ds.problems] == [f"{bad}:{len(good) + k}" for k in (1, 2, 3)]
    assert "outside" in ds.problems[0]["reason"] and "5 fields" in ds.problems[1]["reason"]
    assert len(ds.coco.imgToAnns[ds.images[0].id]) == len(good)
    assert ds.coco.imgToAnns.get(ds.images[7].id, []) == []


def test_val_as_txt_list_and_list_of_folders(tmp_path):
    data = write_shapes_dataset(tmp_path, "detect", n_train=0, n_val=4)
    images = sorted((tmp_path / "images" / "val").iterdir())
    (tmp_path / "val.txt").write_text("".join(f"./images/val/{p.name}\n" for p in images[:3]))
    spec = yaml.safe_load(data.read_text())
    data.write_text(yaml.safe_dump({**spec, "val": "val.txt"}))
    assert [im.path.name for im in load_yolo(data).images] == [p.name for p in images[:3]]
    data.write_text(yaml.safe_dump({**spec, "val": ["images/val", "images/val"]}))
    with pytest.raises(DatasetError, match="more than one image"):
        load_yolo(data)  # one file twice would double its ground truth


@pytest.mark.parametrize("content, field", [
    ("val: images/val\n", "names"), ("names: [a]\n", "val"), ("names: [a]\nval: nowhere\n", "val"),
    ("[unclosed\n", "cannot read")])
def test_bad_data_yaml_is_one_line_naming_file_and_field(tmp_path, content, field):
    path = tmp_path / "data.yaml"
    path.write_text(content)
    with pytest.raises(DatasetError) as err:
        load_yolo(path)
    assert str(path) in str(err.value) and field in str(err.value) and "\n" not in str(err.value)


def test_classes_map_by_name_and_coco80_cards_keep_their_ids(tmp_path):
    card = get_card("yolov5s")  # COCO80 card with 91-id category ids
    names = card.label_names()
    root = tmp_path / "y"
    (root / "images" / "val").mkdir(parents=True)
    import cv2
    cv2.imwrite(str(root / "images" / "val" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": ["dog", "person", "unicorn"]}))
    ds = load_yolo(data)
    ids, absent = category_ids_for(card, ds)
    assert ids[names.index("person")] == 2 and ids[names.index("dog")] == 1  # class + 1, as ultralytics' save_json
    assert len(absent) == len(names) - 2 and "unicorn" not in absent
    coco = tmp_path / "c"
    (coco / "val").mkdir(parents=True)
    cv2.imwrite(str(coco / "val" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    (coco / "ann.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
                                               "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}))
    ids, _ = category_ids_for(card, load_coco(coco / "val", coco / "ann.json"))
    assert ids == tuple(card.category_ids)


def test_eval_detect_opens_a_data_yaml_with_malformed_lines_as_excluded(tmp_path):
    from tritonkit.tasks.detect.task import Detection, DetectionOptions
    data = write_shapes_dataset(tmp_path, "detect", n_train=0, n_val=4)
    bad = label_file(sorted((tmp_path / "images" / "val").iterdir())[1])
    bad.write_text(bad.read_text() + "0 0.5 0.5 1.5 0.1\n")
    card = get_card("demo_shapes_det")
    opened = Detection().open_dataset(DetectionOptions(model=card.name, data=data), card)
    assert len(opened.items) == 4
    assert [e["path"] for e in opened.excluded] == [f"{bad}:{len(bad.read_text().splitlines())}"]
    assert opened.description["label_problems"] == 1
    names = card.label_names()
    ids = opened.source.category_ids  # data.yaml names -> the card's classes by name
    in_yaml = set(yaml.safe_load(data.read_text())["names"].values())
    assert [opened.source.dataset.coco.cats[i]["name"] for i in ids if i >= 0] == [n for n in names if n in in_yaml]
