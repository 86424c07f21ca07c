"""The ultralytics heads on synthetic outputs: anchor-free ``[4 + C, A]`` and end-to-end ``[K, 6]``,
their card checks and their JSON form. (Agreement with ultralytics' own postprocess on a real model's
outputs: tests/unit/tasks/test_yolo_heads_ultralytics.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.cards import NMS_ULTRALYTICS_AP, NMS_ULTRALYTICS_SPEED, card_from_dict, get_card
from tritonkit.errors import CardError
from tritonkit.spec import TensorSpec
from tritonkit.tasks.detect.math import YoloAnchorFreeDecode, YoloEnd2EndDecode, card_detections


def _anchor_free(num_classes: int = 3, anchors: int = 50) -> np.ndarray:
    """Two boxes (cx, cy, w, h) of class 0 and 2 overlapping a weaker copy of the first; noise elsewhere."""
    out = np.zeros((4 + num_classes, anchors), np.float32)
    out[:4] = np.array([40, 40, 10, 10], np.float32)[:, None]
    out[:, 0] = (30, 30, 20, 10, 0.95, 0.30, 0.01)
    out[:, 1] = (31, 30, 20, 10, 0.60, 0.02, 0.01)    # overlaps box 0 (IoU > 0.7): suppressed
    out[:, 2] = (90, 80, 10, 30, 0.01, 0.02, 0.90)
    out[4:, 3:] = 0.0001
    return out


def _card(**changes):
    card = get_card("yolo11n").with_overrides(outputs=(TensorSpec("output0", (7, 50)),), num_classes=3,
                                              category_ids=None, labels="demo_shapes_det")
    return card.with_overrides(**changes)


def test_anchor_free_decode_keeps_best_class_and_suppresses_overlaps():
    dets = card_detections(_card(), {"output0": _anchor_free()}, None, NMS_ULTRALYTICS_SPEED)
    assert dets.classes.tolist() == [0, 2]
    np.testing.assert_allclose(dets.scores, [0.95, 0.90])
    np.testing.assert_allclose(dets.boxes, [[20, 25, 40, 35], [85, 65, 95, 95]])


def test_anchor_free_multi_label_profile_adds_second_class_candidates():
    dets = card_detections(_card(), {"output0": _anchor_free()}, None, NMS_ULTRALYTICS_AP)
    found = set(zip(dets.classes.tolist(), [round(float(s), 2) for s in dets.scores]))
    assert {(0, 0.95), (1, 0.3), (2, 0.9)} <= found  # box 0 is also class 1 (0.30), its own candidate
    forced = card_detections(_card(postprocess=YoloAnchorFreeDecode(multi_label=False)), {"output0": _anchor_free()},
                             None, NMS_ULTRALYTICS_AP)
    assert (1, 0.3) not in set(zip(forced.classes.tolist(), [round(float(s), 2) for s in forced.scores]))


def test_end2end_only_thresholds_and_caps():
    rows = np.array([[10, 10, 20, 20, 0.9, 2], [11, 10, 21, 20, 0.8, 2], [0, 0, 5, 5, 0.1, 0],
                     [30, 30, 40, 40, 0.5, 1]], np.float32)
    card = _card(outputs=(TensorSpec("output0", (4, 6)),), postprocess=YoloEnd2EndDecode())
    dets = card_detections(card, {"output0": rows}, None, NMS_ULTRALYTICS_SPEED)
    # no NMS: the two overlapping class-2 boxes both stay; the 0.1 row is under conf 0.25
    assert dets.classes.tolist() == [2, 2, 1]
    np.testing.assert_allclose(dets.boxes[0], [10, 10, 20, 20])
    capped = card_detections(card, {"output0": rows}, None, NMS_ULTRALYTICS_SPEED.__class__(
        "few", 0.25, 0.7, max_detections=2))
    assert capped.scores.tolist() == pytest.approx([0.9, 0.8])


def test_cards_round_trip_and_name_the_output_that_disagrees(tmp_path):
    import json

    from tritonkit.cards import load_card_file
    from tritonkit.onnx_contract import onnx_mismatches

    card = get_card("yolov8n")
    assert card.to_dict()["postprocess"] == {"kind": "yolo_anchor_free", "multi_label": None, "stride": 32}
    assert card.outputs[0].dims == (84, 8400) and card.preprocess.letterbox_rule == "val"
    assert card_from_dict(card.to_dict()) == card and card.head_problems() == []
    path = tmp_path / "card.json"
    data = card.to_dict()
    data["outputs"][0]["dims"] = [85, 8400]  # an objectness column: not this head
    path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=rf"^{path}: outputs\[0\] 'output0': dims \[85, 8400\] are not "
                                        r"\[4 \+ num_classes \(84\), anchors\]"):
        load_card_file(path)
    data["outputs"][0]["dims"] = [300, 7]
    data["postprocess"] = {"kind": "yolo_end2end"}
    path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"dims \[300, 7\] are not \[detections, 6\]"):
        load_card_file(path)
    data["outputs"][0]["dims"] = [300, 6]
    path.write_text(json.dumps(data))
    assert load_card_file(path).postprocess == YoloEnd2EndDecode()


def test_a_classifier_onnx_is_named_as_not_this_detector(tmp_path):
    """An ONNX that is no detector (a classifier's [N, 8] logits) against a detect card: the output and
    the head are both named."""
    from support.onnx_models import tiny_classifier
    from tritonkit.onnx_contract import onnx_mismatches

    onnx = tiny_classifier(tmp_path / "cls.onnx", input_name="images", output_name="output0", size=64)
    card = _card(input=TensorSpec("images", (3, 64, 64)), outputs=(TensorSpec("output0", (8,)),),
                 preprocess=get_card("yolo11n").preprocess.__class__(mode="letterbox", size=64, mean=(0, 0, 0),
                                                                     std=(1, 1, 1)))
    problems = onnx_mismatches(card, onnx)
    assert any("are not [4 + num_classes (7), anchors] of a yolo_anchor_free head" in p for p in problems)


def test_ultralytics_predictions_map_to_the_annotations_by_file_stem(tmp_path):
    import json

    from tritonkit.errors import DatasetError
    from tritonkit.tasks.detect.coco import coco_map, load_coco, read_ultralytics_predictions

    (tmp_path / "img").mkdir()
    gt = {"images": [{"id": 7, "file_name": "val_0001.png", "width": 100, "height": 80},
                     {"id": 9, "file_name": "0042.png", "width": 100, "height": 80}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [10, 10, 20, 20], "area": 400,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 9, "category_id": 1, "bbox": [50, 40, 10, 30], "area": 300,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    for f in ("val_0001.png", "0042.png"):
        (tmp_path / "img" / f).write_bytes(b"")
    coco = load_coco(tmp_path / "img", tmp_path / "gt.json", missing="skip").coco
    preds = [  # ultralytics: image_id is the stem (an int when numeric), file_name the image's name
        {"image_id": "val_0001", "file_name": "val_0001.png", "category_id": 2, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 42, "category_id": 1, "bbox": [50, 40, 10, 30], "score": 0.8},
        {"image_id": "elsewhere", "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.7}]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(preds))
    results, unknown = read_ultralytics_predictions(path, coco)
    assert unknown == 1 and [r["image_id"] for r in results] == [7, 9]
    assert coco_map(coco, results, [7, 9]).map50 == pytest.approx(1.0)
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(DatasetError, match=rf"^{path}: expected ultralytics' predictions.json .*'category_id' missing"):
        read_ultralytics_predictions(path, coco)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match=rf"^{path}: cannot read ultralytics predictions"):
        read_ultralytics_predictions(path, coco)
