"""Segmentation metrics: confusion matrix and mIoU against a case worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.client.segmentation import VOC_IGNORE_INDEX, confusion, miou, pixel_accuracy


def test_hand_computed_case():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2],
                     [2, 0, 0, 1]])
    conf = confusion(pred, gt, 3)
    # rows: ground truth, columns: prediction (the two 255 pixels are ignored)
    np.testing.assert_array_equal(conf, [[3, 1, 0],
                                         [0, 3, 1],
                                         [1, 0, 1]])
    mean, per_class = miou(conf)
    # IoU_c = TP / (row + column - TP): class 0: 3/(4+4-3), class 1: 3/(4+4-3), class 2: 1/(2+2-1)
    np.testing.assert_allclose(per_class, [3 / 5, 3 / 5, 1 / 3])
    assert mean == pytest.approx((3 / 5 + 3 / 5 + 1 / 3) / 3)
    assert pixel_accuracy(conf) == pytest.approx(7 / 10)


def test_absent_class_is_left_out_of_the_mean():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1])
    mean, per_class = miou(confusion(pred, gt, 21))
    assert mean == 1.0
    assert np.isnan(per_class[2:]).all() and per_class.shape == (21,)


def test_confusion_accumulates_over_images():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 21, (30, 40)) for _ in range(3)]
    preds = [rng.integers(0, 21, (30, 40)) for _ in range(3)]
    gts[0][:5] = VOC_IGNORE_INDEX
    total = sum(confusion(p, g) for p, g in zip(preds, gts))
    together = confusion(np.stack(preds), np.stack(gts))
    np.testing.assert_array_equal(total, together)
    assert together.sum() == 3 * 30 * 40 - 5 * 40


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="prediction label 21 outside"):
        confusion(np.array([21]), np.array([0]))
    with pytest.raises(ValueError, match="ground truth label 30 outside"):
        confusion(np.array([0]), np.array([30]))
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="integers"):
        confusion(np.zeros(3), np.zeros(3, int))
