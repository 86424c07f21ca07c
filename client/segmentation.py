"""Semantic segmentation metrics as pure numpy functions (no I/O): confusion matrix and mIoU.

VOC convention: 21 classes (background + 20), label 255 marks "void" pixels (object borders,
ambiguous regions) that are ignored. Rows of the confusion matrix are ground truth, columns
predictions; accumulate over a dataset by adding per-image matrices, then call :func:`miou`.
"""

from __future__ import annotations

import numpy as np

VOC_NUM_CLASSES = 21
VOC_IGNORE_INDEX = 255


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int = VOC_NUM_CLASSES,
              ignore_index: int | None = VOC_IGNORE_INDEX) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts: ``conf[g, p]`` pixels of class g predicted as p.

    Pixels whose ground truth is ``ignore_index`` are skipped. Ground truth outside
    ``[0, num_classes)`` (other than the ignore index) or predictions outside it are errors.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(gt.dtype, np.integer)):
        raise ValueError(f"labels must be integers (got {pred.dtype} and {gt.dtype})")
    valid = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    for what, a in (("ground truth", g), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = a[(a < 0) | (a >= num_classes)][0]
            raise ValueError(f"{what} label {bad} outside [0, {num_classes})")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """``(mean IoU, per-class IoU)`` from a confusion matrix.

    IoU_c = TP / (TP + FP + FN). A class absent from both ground truth and predictions has IoU
    NaN and is left out of the mean (the usual VOC/torchvision reference convention).
    """
    conf = np.asarray(conf, np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {conf.shape}")
    tp = np.diag(conf)
    denom = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
    mean = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return mean, iou


def pixel_accuracy(conf: np.ndarray) -> float:
    conf = np.asarray(conf, np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")
