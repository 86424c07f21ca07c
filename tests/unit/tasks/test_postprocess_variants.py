"""The card's typed postprocess drives the client's detection dispatch: YOLO box coding and
multi-label, SSD background column."""

from __future__ import annotations

import numpy as np

from tritonkit.cards import NMS_SPEED, get_card
from tritonkit.tasks.detect.math import SSDDecode, YoloDecode
from tritonkit.tasks.detect.math import card_detections as postprocess_card


def _rows() -> np.ndarray:
    """Two well separated boxes (cx, cy, w, h), objectness 0.9, classes 0 and 2 of 4."""
    rows = np.zeros((256, 9), np.float32)
    rows[0, :5], rows[0, 5] = (30, 30, 20, 10, 0.9), 0.95
    rows[1, :5], rows[1, 7] = (90, 80, 10, 30, 0.9), 0.90
    return rows


def test_corner_coded_yolo_outputs_give_the_same_detections():
    card = get_card("demo_shapes_det")
    center = postprocess_card(card, {"output0": _rows()}, None, NMS_SPEED)
    corner_rows = _rows()
    xy, wh = corner_rows[:, 0:2].copy(), corner_rows[:, 2:4].copy()
    corner_rows[:, 0:2], corner_rows[:, 2:4] = xy - wh / 2, xy + wh / 2
    corner = postprocess_card(card.with_overrides(postprocess=YoloDecode(box_coding="corner")),
                              {"output0": corner_rows}, None, NMS_SPEED)
    assert len(center.boxes) == 2
    np.testing.assert_allclose(corner.boxes, center.boxes, atol=1e-4)
    np.testing.assert_array_equal(corner.classes, center.classes)


def test_multi_label_field_forces_candidates_for_every_profile():
    rows = _rows()
    rows[0, 6] = 0.8  # box 0 also scores class 1 above the speed threshold
    card = get_card("demo_shapes_det")
    single = postprocess_card(card, {"output0": rows}, None, NMS_SPEED)
    multi = postprocess_card(card.with_overrides(postprocess=YoloDecode(multi_label=True)), {"output0": rows},
                             None, NMS_SPEED)
    assert len(single.boxes) == 2 and len(multi.boxes) == 3


def test_ssd_background_index_is_the_typed_field():
    ssd = get_card("ssd_resnet18")
    assert ssd.postprocess.background_index == 0
    assert ssd.with_overrides(postprocess=SSDDecode(background_index=None)).postprocess.background_index is None
