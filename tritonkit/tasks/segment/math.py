"""Semantic segmentation math, numpy only: the ``argmax_mask`` variant, metrics, mask scale-back.

Metrics (numpy only, no I/O). VOC convention: 21 classes (background + 20), label 255 marks
"void" pixels (object borders, ambiguous regions) that are ignored. Rows of the confusion matrix
are ground truth, columns predictions; accumulate over a data set by adding per-image matrices
(:class:`ConfusionMatrix`), then score once (:func:`segmentation_scores`). The definitions are
those of torchvision's reference ``ConfusionMatrix`` (``references/segmentation/utils.py``):

* pixel accuracy (torchvision's ``acc_global``): ``trace / sum``;
* class accuracy (``acc``): ``diag / row sum`` (NaN for a class absent from the ground truth);
* IoU (``iu``): ``diag / (row sum + column sum - diag)`` = TP / (TP + FP + FN).

The one rule torchvision leaves implicit: a class that appears neither in the ground truth nor
in the predictions has IoU ``0 / 0``. Its IoU is NaN (reported as absent, ``None`` in JSON) and it
is left out of the mean; torchvision's ``iu.mean()`` would be NaN then (on VOC val every class
occurs, so both means agree there). A class that is only predicted has IoU 0 and counts.

The ``resize_short`` preprocessing (torchvision's ``SemanticSegmentation`` eval preset) is
shared with every task in :mod:`tritonkit.client.preprocess_math`; the :class:`~tritonkit.spec.Geometry`
it records lets :func:`mask_to_original` bring a predicted mask (model-input size) back to the
original image size with nearest neighbour before scoring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

if __package__:  # part of the tritonkit package
    from tritonkit import spec
else:  # shipped beside a python backend (no tritonkit there): the sibling copy of tritonkit/spec.py
    import tk_spec as spec  # type: ignore[no-redef]

VOC_NUM_CLASSES = 21
VOC_IGNORE_INDEX = 255
MAX_MASK_CLASSES = 255  # a uint8 mask keeps 255 free for void
MASK_OUTPUT = "mask"    # the uint8 [H, W] output of the server-side argmax chain


@spec.postprocess_variant("segment")
@dataclass(frozen=True, kw_only=True)
class ArgmaxMask:
    """Segmentation logits ``[N, C, H, W]`` -> per-pixel class (argmax over C)."""

    kind: ClassVar[str] = "argmax_mask"
    uses_nms_profiles: ClassVar[bool] = False

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """One image's ``[H, W]`` uint8 class map (:func:`argmax_mask`)."""
        return argmax_mask(logits)


# ------------------------------------------------------------------------------------ metrics
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


def _square(conf: np.ndarray) -> np.ndarray:
    conf = np.asarray(conf, np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {conf.shape}")
    return conf


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """``(mean IoU, per-class IoU)`` from a confusion matrix.

    IoU_c = TP / (TP + FP + FN). A class absent from both ground truth and predictions has IoU
    NaN and is left out of the mean (module docstring); the mean is NaN when no class occurs.
    """
    conf = _square(conf)
    tp = np.diag(conf)
    denom = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
    mean = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return mean, iou


def pixel_accuracy(conf: np.ndarray) -> float:
    """Correct pixels over scored pixels (torchvision's ``acc_global``); NaN for an empty matrix."""
    conf = _square(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Per-class recall ``diag / row sum`` (torchvision's ``acc``); NaN where the class has no
    ground-truth pixel."""
    conf = _square(conf)
    rows = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(conf) / np.where(rows > 0, rows, 1), np.nan)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


@dataclass(frozen=True, kw_only=True)
class SegmentationScores:
    """Scores of one accumulated confusion matrix. ``iou``/``class_accuracy`` hold NaN for a
    class with nothing to score (``None`` in :meth:`to_dict`); ``classes_scored`` counts the
    classes in the mean."""

    miou: float
    pixel_accuracy: float
    iou: tuple[float, ...]
    class_accuracy: tuple[float, ...]
    class_names: tuple[str, ...]
    classes_scored: int
    pixels: int

    def per_class(self) -> dict[str, float | None]:
        """``{class name: IoU}``, ``None`` for a class absent from ground truth and predictions."""
        return dict(zip(self.class_names, _nan_to_none(np.asarray(self.iou))))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["miou"] = _nan_to_none(np.asarray([self.miou]))[0]
        d["pixel_accuracy"] = _nan_to_none(np.asarray([self.pixel_accuracy]))[0]
        d["iou"] = _nan_to_none(np.asarray(self.iou))
        d["class_accuracy"] = _nan_to_none(np.asarray(self.class_accuracy))
        d["class_names"] = list(self.class_names)
        return d


def segmentation_scores(conf: np.ndarray, class_names: Sequence[str] | None = None) -> SegmentationScores:
    """mIoU, pixel accuracy and per-class IoU/accuracy of a confusion matrix."""
    conf = _square(conf)
    n = conf.shape[0]
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(n))
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")
    mean, iou = miou(conf)
    return SegmentationScores(miou=mean, pixel_accuracy=pixel_accuracy(conf), iou=tuple(float(v) for v in iou),
                              class_accuracy=tuple(float(v) for v in class_accuracy(conf)), class_names=names,
                              classes_scored=int(np.isfinite(iou).sum()), pixels=int(conf.sum()))


class ConfusionMatrix:
    """A confusion matrix accumulated over images (``update`` per image or batch, or ``add``
    a matrix from a record); ``scores()`` at the end."""

    def __init__(self, num_classes: int = VOC_NUM_CLASSES, ignore_index: int | None = VOC_IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (got {num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one image's (or a batch's) pixels; returns that image's matrix."""
        conf = confusion(pred, gt, self.num_classes, self.ignore_index)
        self.mat += conf
        return conf

    def add(self, conf: np.ndarray) -> None:
        conf = np.asarray(conf)
        if conf.shape != self.mat.shape:
            raise ValueError(f"confusion matrix shape {conf.shape} != {self.mat.shape}")
        self.mat += conf.astype(np.int64)

    def scores(self, class_names: Sequence[str] | None = None) -> SegmentationScores:
        return segmentation_scores(self.mat, class_names)


def confusion_to_entries(conf: np.ndarray) -> list[list[int]]:
    """The non-zero cells ``[[gt, pred, count], ...]`` (a per-image matrix is mostly zeros):
    a compact, JSON-friendly form for per-image records and checkpoints."""
    conf = np.asarray(conf)
    g, p = np.nonzero(conf)
    return [[int(a), int(b), int(conf[a, b])] for a, b in zip(g, p)]


def confusion_from_entries(entries: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Inverse of :func:`confusion_to_entries`."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for g, p, count in entries:
        if not (0 <= g < num_classes and 0 <= p < num_classes):
            raise ValueError(f"confusion entry ({g}, {p}) outside [0, {num_classes})")
        conf[g, p] += count
    return conf


def argmax_mask(logits: np.ndarray, class_axis: int = -3) -> np.ndarray:
    """Class map of ``[..., C, H, W]`` logits as uint8 (first maximum on ties, as ONNX
    ``ArgMax``); at most 255 classes, so that 255 stays free for void."""
    logits = np.asarray(logits)
    if logits.ndim < 3:
        raise ValueError(f"logits need [C, H, W] or [B, C, H, W], got shape {logits.shape}")
    if logits.shape[class_axis] > MAX_MASK_CLASSES:
        raise ValueError(f"{logits.shape[class_axis]} classes do not fit a uint8 mask (at most {MAX_MASK_CLASSES})")
    return np.argmax(logits, axis=class_axis).astype(np.uint8)


def stack_padded(arrays: Sequence[np.ndarray], fill: float = 0.0) -> np.ndarray:
    """``[B, ..., H_max, W_max]``: arrays of different trailing sizes padded at the bottom/right
    (torchvision's reference ``cat_list``; it pads images with 0 and targets with 255).

    A padded image is not the image: near its bottom/right edge a convolutional model sees the
    padding, so masks of a padded batch can differ from one-image requests there (torchvision's
    reference evaluates with batch size 1). :func:`mask_to_original` crops the padding off."""
    if not arrays:
        raise ValueError("stack_padded needs at least one array")
    arrays = [np.asarray(a) for a in arrays]
    lead = {a.shape[:-2] for a in arrays}
    if len(lead) != 1:
        raise ValueError(f"arrays differ in more than their last two dimensions: {sorted(lead)}")
    h = max(a.shape[-2] for a in arrays)
    w = max(a.shape[-1] for a in arrays)
    out = np.full((len(arrays), *arrays[0].shape[:-2], h, w), fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, ..., :a.shape[-2], :a.shape[-1]] = a
    return out


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output pixel for nearest-neighbour resizing, exactly as PIL's
    ``Image.resize(..., NEAREST)`` picks it (what torchvision uses on PIL masks): pixel-center
    sampling ``floor((i + 0.5) * in / out)`` with the coordinate accumulated step by step in
    double precision, so the rare exact ties fall the way PIL's do."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive (in {in_size}, out {out_size})")
    step = in_size / out_size
    coords = np.full(out_size, step)
    coords[0] = 0.5 * step
    # numpy's float cumsum adds sequentially, as PIL's loop does (``xo += a[0]``)
    return np.minimum(np.cumsum(coords).astype(np.int64), in_size - 1)


def mask_to_original(mask: np.ndarray, geometry: Any) -> np.ndarray:
    """A predicted ``[H', W']`` mask (model-input size) at the original image size, nearest
    neighbour (``geometry``: the :class:`~tritonkit.spec.Geometry` of a ``resize_short`` input). A
    mask larger than the recorded input size (a batch padded at the bottom/right to a common
    size) is cropped to it first; a smaller one is an error."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    h, w = geometry.input_hw
    if mask.shape[0] < h or mask.shape[1] < w:
        raise ValueError(f"mask shape {mask.shape} smaller than the model input {h}x{w} it was predicted for")
    mask = mask[:h, :w]
    rows = nearest_indices(h, geometry.orig_h)
    cols = nearest_indices(w, geometry.orig_w)
    return mask[rows[:, None], cols[None, :]]


__all__ = [
    "VOC_NUM_CLASSES", "VOC_IGNORE_INDEX", "MASK_OUTPUT", "MAX_MASK_CLASSES", "ArgmaxMask", "confusion", "miou",
    "pixel_accuracy", "class_accuracy", "SegmentationScores", "segmentation_scores", "ConfusionMatrix",
    "confusion_to_entries", "confusion_from_entries", "argmax_mask", "stack_padded", "nearest_indices",
    "mask_to_original",
]
