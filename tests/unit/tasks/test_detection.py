"""Detection postprocess: YOLO/SSD decode, NMS against torchvision, the round trip to image pixels."""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.cards import NMS_AP, NMS_SPEED, NMSProfile, Preprocess, get_card
from tritonkit.tasks.detect.math import (
    Detections, SSDDecode, YoloDecode, batched_nms, box_iou, card_detections as postprocess_card, decode_ssd, decode_yolo,
    detections, nms, pad_detections, unpad_detections, xywh_to_xyxy, xyxy_to_xywh)


def postprocess_yolo(output, geometry, profile, multi_label=None):
    """The YOLO variant's decode -> NMS -> original pixels, on one image's output."""
    return detections(YoloDecode(multi_label=multi_label), {"o": output}, ["o"], (0, 0), profile, geometry)


def postprocess_ssd(boxes, scores, size, geometry, profile, background_index=0):
    """The SSD variant's decode -> NMS -> original pixels, on one image's outputs."""
    return detections(SSDDecode(background_index=background_index), {"b": boxes, "s": scores}, ["b", "s"],
                      (size, size), profile, geometry)


def xyxy_to_cxcywh(b):
    b = np.asarray(b, np.float32)
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)
from tritonkit.spec import Geometry
from tritonkit.client.preprocess import preprocess


def _random_boxes(rng, n, extent=600.0, max_side=120.0):
    xy = rng.random((n, 2)) * extent
    wh = rng.random((n, 2)) * max_side + 0.5
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _distinct_scores(rng, n):
    """Scores without ties (a tie makes the order of equal-score boxes implementation-defined)."""
    return (rng.permutation(n) + rng.random(n) * 0.5).astype(np.float32) / n


def _torch(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


# -- NMS against torchvision --------------------------------------------------------------

@pytest.mark.parametrize("n", [30, 400, 1500])  # both the IoU-matrix path (<= 512) and the loop
@pytest.mark.parametrize("iou", [0.3, 0.45, 0.65])
def test_nms_matches_torchvision(n, iou):
    import torchvision

    rng = np.random.default_rng(n)
    boxes, scores = _random_boxes(rng, n, extent=40 if n < 100 else 600), _distinct_scores(rng, n)
    ours = nms(boxes, scores, iou)
    ref = torchvision.ops.nms(_torch(boxes), _torch(scores), iou).numpy()
    assert 0 < len(ours) < n  # the case really suppresses something
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("seed", range(4))
def test_batched_nms_matches_torchvision_and_truncates(seed):
    import torchvision

    rng = np.random.default_rng(100 + seed)
    n = 3000
    boxes, scores = _random_boxes(rng, n, extent=300), _distinct_scores(rng, n)
    classes = rng.integers(0, 80, n)
    ref = torchvision.ops.batched_nms(_torch(boxes), _torch(scores), _torch(classes), 0.5).numpy()
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), ref)
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5, max_detections=100), ref[:100])
    # class-aware keeps more than class-agnostic on the same boxes
    assert len(ref) > len(nms(boxes, scores, 0.5))


@pytest.mark.parametrize("max_keep", [5, 50, 400])
def test_truncated_nms_equals_truncated_reference_when_the_prefix_must_grow(max_keep):
    """Heavily overlapping boxes: the first score-order prefix keeps too few, so it grows."""
    import torchvision

    rng = np.random.default_rng(max_keep)
    n = 6000
    boxes, scores = _random_boxes(rng, n, extent=150, max_side=80), _distinct_scores(rng, n)
    ref = torchvision.ops.nms(_torch(boxes), _torch(scores), 0.3).numpy()
    assert len(ref) < 1024 < n  # a 1024 prefix cannot be enough for max_keep 400
    np.testing.assert_array_equal(nms(boxes, scores, 0.3, max_keep=max_keep), ref[:max_keep])


def test_nms_threshold_is_strict_and_degenerate_boxes_survive_like_torchvision():
    import torchvision

    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 2, 1.01]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    for thr in (0.25, 0.5, 0.9):
        ref = torchvision.ops.nms(_torch(boxes), _torch(scores), thr).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, thr), ref)
    # IoU of the first two is exactly 0.5: equal to the threshold does not suppress
    assert 1 in nms(boxes, scores, 0.5)
    assert 1 not in nms(boxes, scores, 0.49)
    assert 4 not in nms(boxes, scores, 0.9)


def test_nms_empty_and_mismatched_input():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)


def test_box_iou_matches_torchvision():
    import torchvision

    rng = np.random.default_rng(7)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    ref = torchvision.ops.box_iou(_torch(a).double(), _torch(b).double()).numpy()
    np.testing.assert_allclose(box_iou(a, b), ref, atol=1e-12)


# -- YOLO: encode known boxes, decode them back ------------------------------------------

def _letterbox_geometry(h, w, size):
    img = np.zeros((h, w, 3), np.uint8)
    return preprocess(img, Preprocess(mode="letterbox", size=size, mean=(0, 0, 0), std=(1, 1, 1)))[1]


def _encode_yolo(boxes_in, classes, objectness, class_score, num_classes, other=0.01):
    """One YOLO output row per box: cx, cy, w, h, objectness, one-hot-ish class scores
    (``other`` in the other classes)."""
    rows = np.zeros((len(boxes_in), 5 + num_classes), np.float32)
    b = np.asarray(boxes_in, np.float64)
    rows[:, 0:2] = (b[:, 0:2] + b[:, 2:4]) / 2
    rows[:, 2:4] = b[:, 2:4] - b[:, 0:2]
    rows[:, 4] = objectness
    rows[:, 5:] = other
    rows[np.arange(len(b)), 5 + np.asarray(classes)] = class_score
    return rows


def test_yolo_round_trip_known_boxes_through_letterbox():
    """Known boxes in a 375x500 image -> letterbox to 320 -> YOLO rows (+ duplicates, a second
    class at the same place, background noise) -> decode/NMS/scale back = the same boxes."""
    rng = np.random.default_rng(0)
    geo = _letterbox_geometry(375, 500, 320)
    assert geo.pad_y > 0 and geo.pad_x == 0 and geo.scale_x == pytest.approx(0.64)
    truth = np.array([[10, 20, 110, 220], [300.5, 40.25, 480, 200], [50, 250, 240, 370], [200, 100, 260, 160]],
                     np.float64)
    classes = np.array([3, 0, 7, 3])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    to_input = np.array([geo.scale_x, geo.scale_y, geo.scale_x, geo.scale_y])
    pad = np.array([geo.pad_x, geo.pad_y, geo.pad_x, geo.pad_y])
    truth_in = truth * to_input + pad
    rows = [_encode_yolo(truth_in, classes, scores, 1.0, 10)]
    # near-duplicates of each box, lower score, same class: NMS must remove them
    rows.append(_encode_yolo(truth_in + 2.0, classes, scores * 0.5, 1.0, 10))
    # the same place, another class, low score: class-aware NMS keeps it
    rows.append(_encode_yolo(truth_in[:1], [5], [0.3], 1.0, 10))
    # background: low objectness noise everywhere
    noise = _encode_yolo(_random_boxes(rng, 200, extent=250, max_side=60), rng.integers(0, 10, 200), 0.1, 1.0, 10)
    rows.append(noise)
    output = np.concatenate(rows)[rng.permutation(sum(len(r) for r in rows))]

    dets = postprocess_yolo(output, geo, NMS_SPEED)
    assert len(dets) == 5
    np.testing.assert_array_equal(dets.classes, [3, 0, 7, 3, 5])
    np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.7, 0.6, 0.3], rtol=1e-6)
    np.testing.assert_allclose(dets.boxes[:4], truth, atol=1e-3)
    np.testing.assert_allclose(dets.boxes[4], truth[0], atol=1e-3)
    assert dets.boxes.dtype == np.float32 and dets.classes.dtype == np.int64

    agnostic = postprocess_yolo(output, geo, NMSProfile("agnostic", 0.25, 0.45, class_agnostic=True))
    assert len(agnostic) == 4  # the second-class box at the same place is suppressed now


def test_yolo_boxes_outside_the_image_are_clipped():
    geo = Geometry(100, 200, 1.0, 1.0, 0.0, 50.0)  # 200x100 image letterboxed to 200x200
    out = _encode_yolo(np.array([[-20.0, 30.0, 80.0, 190.0]]), [1], [0.9], 1.0, 3)
    dets = postprocess_yolo(out, geo, NMS_SPEED)
    np.testing.assert_allclose(dets.boxes, [[0, 0, 80, 100]], atol=1e-5)


def test_decode_yolo_score_is_objectness_times_class_and_multi_label():
    rows = np.array([[50, 50, 20, 20, 0.8, 0.5, 0.4, 0.1],
                     [10, 10, 4, 4, 0.2, 0.9, 0.9, 0.9]], np.float32)  # second: objectness below conf
    single = decode_yolo(rows, 0.25)
    np.testing.assert_allclose(single.scores, [0.4])
    np.testing.assert_array_equal(single.classes, [0])
    np.testing.assert_allclose(single.boxes, [[40, 40, 60, 60]])
    multi = decode_yolo(rows, 0.25, multi_label=True)
    np.testing.assert_allclose(sorted(multi.scores), [0.32, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(sorted(multi.classes), [0, 1])
    with pytest.raises(ValueError, match=r"\[boxes, 5 \+ classes\]"):
        decode_yolo(np.zeros((3, 5)), 0.1)


ML_SPEED = NMSProfile("speed_ml", 0.25, 0.45, multi_label=True)


def test_multi_label_box_with_two_classes_gives_two_detections():
    """One box scoring above the threshold in two classes: multi-label keeps it once per class
    (class-aware NMS never suppresses across classes), single-label only as its best class."""
    rows = np.array([[50, 50, 20, 20, 0.9, 0.8, 0.6, 0.1],   # classes 0 (0.72) and 1 (0.54)
                     [51, 51, 20, 20, 0.9, 0.7, 0.5, 0.1],   # overlapping duplicate: suppressed
                     [150, 150, 10, 10, 0.9, 0.1, 0.2, 0.9]], np.float32)  # only class 2 (0.81)
    geo = Geometry(200, 200, 1, 1, 0, 0)
    single = postprocess_yolo(rows, geo, NMS_SPEED)
    np.testing.assert_array_equal(single.classes, [2, 0])
    multi = postprocess_yolo(rows, geo, ML_SPEED)
    np.testing.assert_array_equal(multi.classes, [2, 0, 1])
    np.testing.assert_allclose(multi.scores, [0.81, 0.72, 0.54], rtol=1e-6)
    np.testing.assert_allclose(multi.boxes[1], multi.boxes[2])  # the same box, two classes
    np.testing.assert_allclose(multi.boxes[1], [40, 40, 60, 60])
    # the explicit argument overrides the profile; postprocess_card follows the profile
    assert len(postprocess_yolo(rows, geo, ML_SPEED, multi_label=False)) == 2
    card = get_card("demo_shapes_det").with_overrides(nms_profiles=(NMS_SPEED, ML_SPEED))
    rows4 = np.concatenate([rows, np.zeros((3, 1), np.float32)], axis=1)  # 4 classes
    assert len(postprocess_card(card, {"output0": rows4}, geo, card.nms("speed_ml"))) == 3
    assert len(postprocess_card(card, {"output0": rows4}, geo, card.nms("speed"))) == 2


@pytest.mark.parametrize("seed", range(3))
def test_multi_label_matches_torchvision_batched_nms_on_expanded_candidates(seed):
    """Reference: objectness prefilter, one candidate per (box, class) with obj * cls > conf
    built with plain loops, torchvision.ops.batched_nms, max-detections cut."""
    import torchvision

    rng = np.random.default_rng(200 + seed)
    n, c, conf, iou, max_det = 1200, 6, 0.05, 0.5, 300
    out = np.zeros((n, 5 + c), np.float32)
    out[:, :4] = xyxy_to_cxcywh(_random_boxes(rng, n, extent=250, max_side=80))
    out[:, 4] = rng.random(n)
    out[:, 5:] = rng.random((n, c)) ** 3  # several classes above conf on many boxes
    boxes, scores, classes = [], [], []
    for row in out:
        if row[4] <= conf:
            continue
        for k in range(c):
            s = row[5 + k] * row[4]
            if s > conf:
                boxes.append(xywh_to_xyxy(row[:4]))
                scores.append(s)
                classes.append(k)
    boxes, scores, classes = np.array(boxes), np.array(scores, np.float32), np.array(classes)
    assert len(scores) > 1.5 * (out[:, 4] > conf).sum()  # really expanded
    keep = torchvision.ops.batched_nms(_torch(boxes), _torch(scores), _torch(classes), iou).numpy()[:max_det]
    assert len(keep) == max_det  # the cut matters
    profile = NMSProfile("ml", conf, iou, max_detections=max_det, multi_label=True)
    ours = postprocess_yolo(out, None, profile)
    np.testing.assert_array_equal(ours.classes, classes[keep])
    np.testing.assert_allclose(ours.scores, scores[keep], rtol=1e-6)
    np.testing.assert_allclose(ours.boxes, boxes[keep], atol=1e-4)
    single = postprocess_yolo(out, None, NMSProfile("sl", conf, iou, max_detections=max_det))
    assert len(set(map(tuple, single.boxes.tolist()))) == len(single)  # one class per box


def test_nms_profile_multi_label_round_trips_through_card_json(tmp_path):
    import json

    from tritonkit.cards import card_from_dict, load_card_file

    card = get_card("yolov5s")
    assert card.nms("ap").multi_label and not card.nms("speed").multi_label
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card.to_dict()))
    back = load_card_file(path)
    assert back == card and back.nms("ap").multi_label is True
    old = card.to_dict()
    for p in old["nms_profiles"]:
        del p["multi_label"]  # a card written before the field existed
    assert not any(p.multi_label for p in card_from_dict(old).nms_profiles)


def test_max_detections_caps_the_output():
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 500, extent=5000, max_side=10)  # far apart: nothing suppressed
    out = _encode_yolo(boxes, rng.integers(0, 4, 500), _distinct_scores(rng, 500) * 0.5 + 0.5, 1.0, 4)
    dets = postprocess_yolo(out, Geometry(5100, 5100, 1, 1, 0, 0), NMSProfile("cap", 0.001, 0.65, max_detections=37))
    assert len(dets) == 37
    assert np.all(np.diff(dets.scores) <= 0)


# -- SSD ----------------------------------------------------------------------------------

def test_ssd_decode_skips_background_and_round_trips():
    card = get_card("ssd_resnet18")
    geo = Geometry(480, 640, 300 / 640, 300 / 480, 0.0, 0.0)
    truth = np.array([[64.0, 48.0, 320.0, 240.0], [400.0, 100.0, 600.0, 460.0]])
    norm = truth / np.array([640, 480, 640, 480])
    boxes = np.concatenate([norm, norm + 0.01, np.full((5, 4), 0.5)]).astype(np.float32)
    scores = np.full((9, 81), 0.0, np.float32)
    scores[:, 0] = 1.0  # background everywhere ...
    scores[0, [0, 18]] = [0.1, 0.9]  # ... except: class column 18 -> class index 17
    scores[1, [0, 1]] = [0.2, 0.8]
    scores[2, [0, 18]] = [0.5, 0.5]  # duplicate of box 0, same class, lower score
    scores[3, [0, 1]] = [0.6, 0.4]
    dets = postprocess_ssd(boxes, scores, 300, geo, NMS_SPEED, background_index=0)
    np.testing.assert_array_equal(dets.classes, [17, 0])
    np.testing.assert_allclose(dets.scores, [0.9, 0.8])
    np.testing.assert_allclose(dets.boxes, truth, atol=1e-3)
    via_card = postprocess_card(card, {"boxes": boxes, "scores": scores}, geo, NMS_SPEED)
    np.testing.assert_array_equal(via_card.boxes, dets.boxes)
    # background column never becomes a detection, even when it is the highest score
    assert 80 not in decode_ssd(boxes, scores, 300, 0.25, background_index=0).classes
    with pytest.raises(ValueError, match="background index 81"):
        decode_ssd(boxes, scores, 300, 0.1, background_index=81)


# -- helpers ------------------------------------------------------------------------------

def test_box_format_conversions_invert():
    rng = np.random.default_rng(1)
    b = _random_boxes(rng, 20)
    xywh = xyxy_to_xywh(b)
    np.testing.assert_allclose(xywh[:, 2:], b[:, 2:] - b[:, :2])
    cxcywh = np.concatenate([xywh[:, :2] + xywh[:, 2:] / 2, xywh[:, 2:]], axis=1)
    np.testing.assert_allclose(xywh_to_xyxy(cxcywh), b, rtol=1e-6, atol=1e-4)


def test_padding_and_geometry_vector_round_trip():
    dets = Detections.create([[1, 2, 3, 4], [5, 6, 7, 8]], [0.9, 0.5], [2, 0])
    padded = pad_detections(dets, 5)
    assert padded.count == 2 and padded.boxes.shape == (5, 4)
    assert list(padded.classes) == [2, 0, -1, -1, -1]
    back = unpad_detections(padded.boxes, padded.scores, padded.classes, np.array([padded.count]))
    np.testing.assert_array_equal(back.boxes, dets.boxes)
    np.testing.assert_array_equal(back.classes, dets.classes)
    assert pad_detections(dets, 1).count == 1
    geo = Geometry(375, 500, 0.64, 0.64, 0.0, 40.0)
    assert Geometry.from_array(geo.as_array()) == geo
    with pytest.raises(ValueError, match="6 values"):
        Geometry.from_array(np.zeros(5))


def test_postprocess_card_uses_the_card_output_name():
    card = get_card("demo_shapes_det")
    out = _encode_yolo(np.array([[10.0, 10.0, 50.0, 40.0]]), [2], [0.9], 1.0, card.num_classes)
    dets = postprocess_card(card, {card.outputs[0].name: out}, Geometry(128, 128, 1, 1, 0, 0), NMS_AP)
    np.testing.assert_array_equal(dets.classes, [2])
    with pytest.raises(ValueError, match="not a detection postprocess"):
        postprocess_card(get_card("demo_shapes"), {}, Geometry(1, 1, 1, 1, 0, 0), NMS_AP)


# -- class-aware NMS with boxes that stick out of the image -----------------------------------

def test_batched_nms_keeps_classes_apart_with_negative_coordinates():
    """torchvision's ``max + 1`` offset lets a shifted box with negative corners land on a box
    of the previous class; ours must keep both (different classes never suppress)."""
    boxes = np.array([[0, 0, 100, 100], [-100, -100, 0, 0]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([0, 1]), 0.5), [0, 1])
    # same class: they do not overlap, both kept; a true duplicate of another class is kept too
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([0, 0]), 0.5), [0, 1])
    dup = np.array([[-50, -40, 60, 70], [-49, -40, 60, 70], [-50, -40, 60, 70]], np.float32)
    np.testing.assert_array_equal(batched_nms(dup, [0.9, 0.8, 0.7], np.array([0, 0, 1]), 0.5), [0, 2])


# -- cards: the COCO category map and the GPU NMS option ---------------------------------------

STANDARD_COCO91 = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45))
                   + list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))


@pytest.mark.parametrize("name", ["yolov5s", "yolov3", "ssd_resnet18"])
def test_coco_cards_map_80_classes_to_the_91_category_ids(name):
    card = get_card(name)
    assert len(STANDARD_COCO91) == 80
    assert list(card.category_ids) == STANDARD_COCO91
    by_name = dict(zip(card.label_names(), card.category_ids))
    # instances_val2017.json ids of classes around every gap in the 91-id space
    assert {k: by_name[k] for k in ("person", "traffic light", "fire hydrant", "stop sign", "giraffe",
                                    "backpack", "umbrella", "handbag", "tie", "skateboard", "wine glass",
                                    "potted plant", "bed", "dining table", "toilet", "tv", "refrigerator",
                                    "book", "toothbrush")} == {
        "person": 1, "traffic light": 10, "fire hydrant": 11, "stop sign": 13, "giraffe": 25,
        "backpack": 27, "umbrella": 28, "handbag": 31, "tie": 32, "skateboard": 41, "wine glass": 46,
        "potted plant": 64, "bed": 65, "dining table": 67, "toilet": 70, "tv": 72, "refrigerator": 82,
        "book": 84, "toothbrush": 90}


def test_yolo_cards_layout_and_profiles():
    for name, size, boxes in (("yolov5s", 640, 25200), ("yolov3", 416, 10647)):
        card = get_card(name)
        assert card.input.dims == (3, size, size) and card.outputs[0].dims == (boxes, 85)
        assert card.preprocess.mode == "letterbox"
        assert card.preprocess.pad_value == 114
        speed, ap = card.nms("speed"), card.nms("ap")
        assert (speed.conf_threshold, speed.iou_threshold) == (0.25, 0.45)
        assert (ap.conf_threshold, ap.iou_threshold) == (0.001, 0.65)
        assert ap.multi_label and not speed.multi_label  # YOLOv5 val.py's mAP setting
    ssd = get_card("ssd_resnet18")
    assert [o.name for o in ssd.outputs] == ["boxes", "scores"] and ssd.postprocess.kind == "ssd"
    for name in ("ssd_resnet18", "demo_shapes_det"):  # unchanged: single-label profiles
        assert not any(p.multi_label for p in get_card(name).nms_profiles)
        assert get_card(name).nms("ap") == NMS_AP


# -- the whole pipeline with exact answers: COCO mAP 1.0 with the 91-id map --------------------

def test_known_boxes_encode_decode_nms_scale_back_give_map_one(tmp_path):
    """Ground-truth boxes of a tiny COCO set (three image shapes, 91-space category ids) ->
    letterbox to 640 -> yolov5s-sized output rows (with duplicates and noise) -> the card's
    postprocess (``ap`` profile) -> COCO results -> COCOeval: mAP@0.5 and @[.5:.95] are 1.0."""
    import json

    from tritonkit.tasks.detect.coco import coco_map, detections_to_coco, load_coco

    card = get_card("yolov5s")
    rng = np.random.default_rng(5)
    shapes = {1: (480, 640), 2: (427, 640), 3: (640, 359), 4: (500, 375)}
    truth = {1: [(0, [12.0, 30.0, 200.0, 400.0]), (2, [300.0, 200.0, 630.0, 470.0]), (0, [210.0, 40.0, 230.0, 60.0])],
             2: [(11, [5.0, 5.0, 300.0, 250.0]), (79, [400.0, 100.0, 450.0, 180.0])],
             3: [(60, [0.0, 300.0, 359.0, 640.0]), (24, [100.0, 20.0, 200.0, 120.0])],
             4: []}  # an image without ground truth: nothing detected there
    (tmp_path / "val2017").mkdir()
    images, anns = [], []
    for image_id, (h, w) in shapes.items():
        name = f"{image_id:012d}.jpg"
        (tmp_path / "val2017" / name).write_bytes(b"")
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for cls, (x1, y1, x2, y2) in truth[image_id]:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": card.category_ids[cls],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": c, "name": n} for c, n in zip(card.category_ids, card.label_names())]
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    ds = load_coco(tmp_path / "val2017", ann)

    results = []
    for image_id, (h, w) in shapes.items():
        geo = _letterbox_geometry(h, w, 640)
        output = rng.random((25200, 85), dtype=np.float32) * 0.0005  # background: below every threshold
        output[:, :4] = np.abs(output[:, :4]) * 1e3 + 1
        if truth[image_id]:
            b = np.array([box for _, box in truth[image_id]])
            cls = [c for c, _ in truth[image_id]]
            to_in = b * [geo.scale_x, geo.scale_y, geo.scale_x, geo.scale_y] + [geo.pad_x, geo.pad_y] * 2
            n = len(b)
            # other classes at 0: the multi-label ap profile would make each other class
            # above conf 0.001 its own (low-score) detection
            rows = np.concatenate([_encode_yolo(to_in, cls, 0.95, 0.9, 80, other=0.0),
                                   _encode_yolo(to_in + 1.5, cls, 0.5, 0.9, 80, other=0.0)])  # duplicates
            output[rng.choice(25200, 2 * n, replace=False)] = rows
        dets = postprocess_card(card, {"output0": output}, geo, card.nms("ap"))
        assert len(dets) == len(truth[image_id])
        results += detections_to_coco(image_id, dets, card.category_ids)
    assert {r["category_id"] for r in results} == {1, 3, 13, 90, 67, 27}  # via COCO80_TO_91
    m = coco_map(ds.coco, results, ds.image_ids)
    assert m.map50 == pytest.approx(1.0) and m.map50_95 == pytest.approx(1.0)
    assert m.map_small == pytest.approx(1.0) and m.map_large == pytest.approx(1.0)
    assert (m.images, m.ground_truths, m.detections) == (4, 7, 7)
