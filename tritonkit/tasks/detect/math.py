"""Detection math, numpy only: the postprocess variants and their decoders, NMS, the padded form.

Both the client and the server-side NMS model run this module: the repository writer ships it
beside the NMS model's ``model.py`` as ``tk_detect.py`` (NGC's tritonserver image has no
tritonkit), so server-side and client-side detections are identical.

* **Variants** (:func:`tritonkit.spec.postprocess_variant`, task ``detect``): :class:`YoloDecode`
  (one output ``[N, boxes, 5 + C]``, ultralytics' YOLOv5/v3 layout with objectness),
  :class:`YoloAnchorFreeDecode` (``[N, 4 + C, anchors]``, YOLOv8/YOLO11), :class:`YoloEnd2EndDecode`
  (``[N, K, 6]``, NMS-free heads: a score threshold and a count only) and :class:`SSDDecode`
  (normalized boxes + softmax scores). Each variant decodes one image's raw
  outputs into candidate boxes (:meth:`candidates`) and says whether NMS follows (``needs_nms``); a new
  head is one more variant class here (the kind -> decoder table is the variant registry).
* :func:`nms` is greedy non-maximum suppression with torchvision's semantics (suppress when IoU
  > threshold, kept indices in decreasing score order); :func:`batched_nms` makes it
  class-aware with the coordinate-offset trick. ``torchvision.ops`` stays the reference in the
  tests; torch is not needed here.
* :func:`detections` chains a variant's decode, NMS with a profile (:class:`~tritonkit.spec.NMSProfile`,
  or anything with its fields) and the map back to original-image pixels (:class:`~tritonkit.spec.Geometry`).
* Non-finite boxes or scores (a broken engine, an overflowing input) never become detections:
  :meth:`Detections.finite` drops them before NMS, on both sides.

On a YOLOv5s-sized output (25200 x 85) on a 2-core CPU, decode + NMS took 0.9-1.6 ms per image
with the ``speed`` profile (torch + torchvision: 1.1-1.6 ms) and 15-34 ms with ``ap`` (~13k
candidates, 300 kept; torch + torchvision: 28-76 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

if __package__:  # part of the tritonkit package
    from tritonkit import spec
else:  # shipped beside a python backend (no tritonkit there): the sibling copy of tritonkit/spec.py
    import tk_spec as spec  # type: ignore[no-redef]

# YOLOv5 keeps at most this many candidates (highest scores) before NMS.
MAX_NMS_CANDIDATES = 30000
# The server-side NMS model's outputs (and the detection ensemble's).
OUT_BOXES = "det_boxes"
OUT_SCORES = "det_scores"
OUT_CLASSES = "det_classes"
OUT_COUNT = "det_count"
DETECTION_OUTPUTS = (OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT)
BOX_CODINGS = ("center_size", "corner")


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes ``[K, 4]`` (x1, y1, x2, y2, float32), scores ``[K]`` (float32), class indices ``[K]``
    (int64, 0-based into the card's labels), in decreasing score order after NMS."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.classes.shape != (n,):
            raise ValueError(f"Detections: boxes {self.boxes.shape}, scores ({n},), classes "
                             f"{self.classes.shape} do not agree")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def create(cls, boxes, scores, classes) -> "Detections":
        return cls(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1),
                   np.asarray(classes, np.int64).reshape(-1))

    @classmethod
    def empty(cls) -> "Detections":
        return cls.create(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def select(self, index) -> "Detections":
        return Detections(self.boxes[index], self.scores[index], self.classes[index])

    def finite(self) -> "Detections":
        """Only the rows whose box and score are finite numbers."""
        keep = np.isfinite(self.scores) & np.isfinite(self.boxes).all(axis=1)
        return self if keep.all() else self.select(keep)

    def to_original(self, geometry: Any) -> "Detections":
        """Boxes mapped from model-input pixels to the original image (clipped); None keeps them."""
        if geometry is None:
            return self
        return Detections(geometry.to_original(self.boxes), self.scores, self.classes)


# -- box math ----------------------------------------------------------------------------

def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Center x, y, width, height -> x1, y1, x2, y2 (any leading shape)."""
    xywh = np.asarray(xywh)
    half = xywh[..., 2:4] / 2
    return np.concatenate([xywh[..., 0:2] - half, xywh[..., 0:2] + half], axis=-1)


def xyxy_to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 -> top-left x, y, width, height (the COCO ``bbox`` layout)."""
    xyxy = np.asarray(xyxy)
    return np.concatenate([xyxy[..., 0:2], xyxy[..., 2:4] - xyxy[..., 0:2]], axis=-1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[len(a), len(b)]`` of xyxy boxes."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# -- NMS ---------------------------------------------------------------------------------

# Up to this many candidates the whole IoU matrix is computed at once (measured faster below
# ~500 boxes on CPU: the per-box Python loop dominates there); above it, the loop of
# one-vs-rest IoUs, which touches far less memory.
NMS_MATRIX_MAX = 512


def _greedy_nms_matrix(x1, y1, x2, y2, areas, order, iou_threshold, limit) -> list:
    """Greedy suppression over ``order`` from the full pairwise IoU matrix (small inputs)."""
    bx1, by1, bx2, by2, ar = x1[order], y1[order], x2[order], y2[order], areas[order]
    w = np.minimum(bx2[:, None], bx2[None, :]) - np.maximum(bx1[:, None], bx1[None, :])
    h = np.minimum(by2[:, None], by2[None, :]) - np.maximum(by1[:, None], by1[None, :])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = inter / (ar[:, None] + ar[None, :] - inter) > iou_threshold
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        if len(keep) >= limit:
            break
        suppressed |= over[i]  # marks lower-scoring overlaps (and i itself, already passed)
    return keep


def _greedy_nms(x1, y1, x2, y2, areas, order, iou_threshold, limit) -> list:
    """Greedy suppression over ``order`` (indices, best first); stops after ``limit`` kept."""
    if len(order) <= NMS_MATRIX_MAX:
        return _greedy_nms_matrix(x1, y1, x2, y2, areas, order, iou_threshold, limit)
    keep = []
    while order.size and len(keep) < limit:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        h = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        # NaN (two empty boxes) compares False: degenerate boxes never suppress
        order = rest[~(iou > iou_threshold)]
    return keep


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS. Returns kept indices (int64) in decreasing score order.

    A box is dropped when its IoU with a higher-scoring kept box is above ``iou_threshold``
    (torchvision's rule; ties in score keep the input order). With ``max_keep`` only the first
    ``max_keep`` kept boxes are wanted, so the work is done on a prefix of the score order that
    grows until it yields that many: a box's fate depends only on higher-scoring boxes, so this
    equals truncating the full result (``tests/test_detection.py`` checks it against
    torchvision), and it is several times faster when there are thousands of candidates.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    limit = len(boxes) if max_keep is None else max_keep
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    prefix = max(4 * limit, 1024)
    while True:
        keep = _greedy_nms(x1, y1, x2, y2, areas, order[:prefix], iou_threshold, limit)
        if len(keep) >= limit or prefix >= len(order):
            return np.asarray(keep, np.int64)
        prefix *= 4


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
                max_detections: int | None = None) -> np.ndarray:
    """Class-aware NMS: boxes only suppress boxes of the same class.

    Uses the coordinate-offset trick of ``torchvision.ops.batched_nms``, with the offset
    ``class * (max coordinate - min(min coordinate, 0) + 1)``: torchvision's ``max + 1`` when
    no coordinate is negative, and still a true separation for boxes that stick out of the
    image (decoded YOLO boxes often have negative corners; with ``max + 1`` a box of one class
    can then overlap a shifted box of the next class and suppress it).
    Boxes of different classes never overlap and one NMS pass does all classes. Returns kept
    indices in decreasing score order, at most ``max_detections``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    if len(classes) != len(boxes):
        raise ValueError(f"batched_nms: {len(boxes)} boxes but {len(classes)} class ids")
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    offsets = classes.astype(np.float64) * (boxes.max() - min(boxes.min(), 0.0) + 1.0)
    return nms(boxes + offsets[:, None], scores, iou_threshold, max_keep=max_detections)


# -- decoding ----------------------------------------------------------------------------

def decode_yolo(output: np.ndarray, conf_threshold: float, multi_label: bool = False) -> Detections:
    """Candidates from one image's ultralytics output ``[boxes, 5 + C]`` (input pixels).

    ``score = objectness * class score``; rows whose objectness is not above the threshold are
    dropped first. Without ``multi_label`` each box keeps its best class; with it, one
    candidate per (box, class) pair whose score is above the threshold, in box-then-class
    order (YOLOv5's ``(x[:, 5:] > conf_thres).nonzero()``), so one box can be detected as
    several classes; the class-aware NMS then treats each class separately.
    """
    out = np.asarray(output)
    if out.ndim != 2 or out.shape[1] < 6:
        raise ValueError(f"decode_yolo: expected [boxes, 5 + classes], got shape {out.shape}")
    out = out[out[:, 4] > conf_threshold]
    cls_scores = out[:, 5:] * out[:, 4:5]
    boxes = xywh_to_xyxy(out[:, :4])
    if multi_label:
        rows, cls = np.nonzero(cls_scores > conf_threshold)
        return Detections.create(boxes[rows], cls_scores[rows, cls], cls)
    cls = cls_scores.argmax(axis=1)
    best = cls_scores[np.arange(len(cls)), cls]
    keep = best > conf_threshold
    return Detections.create(boxes[keep], best[keep], cls[keep])


def decode_ssd(boxes_norm_xyxy: np.ndarray, scores: np.ndarray, input_size: int | tuple[int, int],
               conf_threshold: float, background_index: int | None = 0) -> Detections:
    """Per-class candidates from one image's SSD outputs.

    ``boxes_norm_xyxy`` is ``[anchors, 4]`` in [0, 1]; ``scores`` is ``[anchors, classes (+1)]``
    (softmax). The ``background_index`` column (None: there is none) is skipped and class
    indices are renumbered to the remaining columns. ``input_size`` is the model input side,
    or ``(height, width)``.
    """
    b = np.asarray(boxes_norm_xyxy, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32)
    if s.ndim != 2 or len(s) != len(b):
        raise ValueError(f"decode_ssd: boxes {b.shape} and scores {s.shape} disagree")
    if background_index is not None:
        if not 0 <= background_index < s.shape[1]:
            raise ValueError(f"decode_ssd: background index {background_index} outside {s.shape[1]} score columns")
        s = np.delete(s, background_index, axis=1)
    h, w = (input_size, input_size) if np.isscalar(input_size) else input_size
    rows, cls = np.nonzero(s > conf_threshold)
    scale = np.array([w, h, w, h], np.float32)
    return Detections.create(b[rows] * scale, s[rows, cls], cls)



# -- NMS of candidates ----------------------------------------------------------------

def apply_nms(candidates: Detections, profile,
              max_candidates: int = MAX_NMS_CANDIDATES) -> Detections:
    """NMS of decoded candidates with a card's profile (class-aware unless ``class_agnostic``)."""
    if len(candidates) > max_candidates:
        top = np.argsort(-candidates.scores, kind="stable")[:max_candidates]
        candidates = candidates.select(top)
    if profile.class_agnostic:
        keep = nms(candidates.boxes, candidates.scores, profile.iou_threshold, profile.max_detections)
    else:
        keep = batched_nms(candidates.boxes, candidates.scores, candidates.classes,
                           profile.iou_threshold, profile.max_detections)
    return candidates.select(keep)




# -- the variants: one image's raw outputs -> candidates ----------------------------------

def _check_box_coding(kind: str, coding: str) -> None:
    if coding not in BOX_CODINGS:
        raise spec.SpecError(f"postprocess {kind}: box_coding {coding!r} not one of {BOX_CODINGS}")


def _check_stride(kind: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise spec.SpecError(f"postprocess {kind}: stride must be a positive integer (got {value!r})")


def ultralytics_metadata(names: Sequence[str], imgsz: int, batch: int, stride: int, end2end: bool) -> dict:
    """What ultralytics' Triton client (``ultralytics/utils/triton.py``, ``TritonRemoteModel``) reads
    from a served config's ``metadata`` parameter (a Python literal) and ``AutoBackend`` applies as
    its export metadata: the task, the class names by id, the input size ``[h, w]``, the stride and
    the head. ``args.dynamic`` is False: the served input has a fixed size, so its predictor
    letterboxes every image to exactly ``imgsz`` (``LetterBox(auto=False)``)."""
    return {"task": "detect", "names": dict(enumerate(str(n) for n in names)), "imgsz": [int(imgsz), int(imgsz)],
            "stride": int(stride), "batch": int(batch), "channels": 3, "end2end": bool(end2end),
            "args": {"nms": bool(end2end), "dynamic": False}}


def _check_multi_label(kind: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise spec.SpecError(f"postprocess {kind}: multi_label must be true, false or null (got {value!r})")


def corner_to_center(output: np.ndarray) -> np.ndarray:
    """YOLO rows ``x1, y1, x2, y2, ...`` -> ``cx, cy, w, h, ...`` (what :func:`decode_yolo` reads)."""
    return np.concatenate([(output[..., 0:2] + output[..., 2:4]) / 2, output[..., 2:4] - output[..., 0:2],
                           output[..., 4:]], axis=-1)


@spec.postprocess_variant("detect")
@dataclass(frozen=True, kw_only=True)
class YoloDecode:
    """One output ``[N, boxes, 5 + C]``: box, objectness, class scores (YOLOv5/v3's layout).

    ``box_coding``: ``center_size`` (cx, cy, w, h; ultralytics) or ``corner`` (x1, y1, x2, y2),
    in input pixels. ``multi_label``: ``None`` lets each NMS profile decide; ``True``/``False``
    forces multi-label candidates (every class above the threshold) on or off for every profile.
    """

    kind: ClassVar[str] = "yolo"
    needs_nms: ClassVar[bool] = True           # candidates go through NMS
    uses_nms_profiles: ClassVar[bool] = True   # a card with this head needs NMS profiles
    field_choices: ClassVar[dict] = {"box_coding": BOX_CODINGS}
    box_coding: str = "center_size"
    multi_label: bool | None = None

    def __post_init__(self) -> None:
        _check_box_coding(self.kind, self.box_coding)
        _check_multi_label(self.kind, self.multi_label)

    def candidates(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int], profile: Any) -> Detections:
        output = outputs[0]
        if self.box_coding == "corner":  # x1, y1, x2, y2 -> the cx, cy, w, h decode_yolo reads
            output = corner_to_center(output)
        multi = profile.multi_label if self.multi_label is None else self.multi_label
        return decode_yolo(output, profile.conf_threshold, multi)


@spec.postprocess_variant("detect")
@dataclass(frozen=True, kw_only=True)
class SSDDecode:
    """Two outputs: ``boxes [N, anchors, 4]`` (normalized, ``box_coding``) and ``scores [N,
    anchors, C (+1)]`` (softmax). ``background_index``: the background score column, ``None``
    when the scores have none."""

    kind: ClassVar[str] = "ssd"
    needs_nms: ClassVar[bool] = True
    uses_nms_profiles: ClassVar[bool] = True
    field_choices: ClassVar[dict] = {"box_coding": BOX_CODINGS}
    box_coding: str = "corner"
    background_index: int | None = 0

    def __post_init__(self) -> None:
        _check_box_coding(self.kind, self.box_coding)
        if self.background_index is not None and (isinstance(self.background_index, bool)
                                                  or not isinstance(self.background_index, int)
                                                  or self.background_index < 0):
            raise spec.SpecError(f"postprocess ssd: background_index must be an index >= 0 or null "
                                 f"(got {self.background_index!r})")

    def candidates(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int], profile: Any) -> Detections:
        boxes, scores = outputs[0], outputs[1]
        if self.box_coding == "center_size":
            boxes = xywh_to_xyxy(np.asarray(boxes, np.float32).reshape(-1, 4))
        return decode_ssd(boxes, scores, input_hw, profile.conf_threshold, self.background_index)


def decode_anchor_free(output: np.ndarray, conf_threshold: float, multi_label: bool = False) -> Detections:
    """Candidates from one image's ultralytics anchor-free output ``[4 + C, anchors]`` (YOLOv8/v9/
    YOLO11/v12 ``output0``): ``cx, cy, w, h`` in input pixels, then the class scores (already
    sigmoid, no objectness). As ultralytics' ``non_max_suppression``: anchors whose best score is
    not above the threshold are dropped; without ``multi_label`` each box keeps its best class,
    with it (and more than one class) one candidate per (box, class) above the threshold."""
    out = np.asarray(output)
    if out.ndim != 2 or out.shape[0] < 5:
        raise ValueError(f"decode_anchor_free: expected [4 + classes, anchors], got shape {out.shape}")
    scores = out[4:]
    keep = scores.max(axis=0) > conf_threshold
    boxes = xywh_to_xyxy(out[:4, keep].T)
    scores = scores[:, keep].T
    if multi_label and scores.shape[1] > 1:
        rows, cls = np.nonzero(scores > conf_threshold)
        return Detections.create(boxes[rows], scores[rows, cls], cls)
    cls = scores.argmax(axis=1)
    return Detections.create(boxes, scores[np.arange(len(cls)), cls], cls)


def decode_end2end(output: np.ndarray, conf_threshold: float) -> Detections:
    """Detections from one image's NMS-free output ``[K, 6]`` (``x1, y1, x2, y2, score, class`` in
    input pixels; YOLO26, YOLOv10, ``nms=True`` exports): the rows whose score is above the
    threshold, in the model's order (as ultralytics' ``non_max_suppression`` on an end-to-end head)."""
    out = np.asarray(output)
    if out.ndim != 2 or out.shape[1] != 6:
        raise ValueError(f"decode_end2end: expected [detections, 6], got shape {out.shape}")
    out = out[out[:, 4] > conf_threshold]
    return Detections.create(out[:, :4], out[:, 4], np.round(out[:, 5]))


@spec.postprocess_variant("detect")
@dataclass(frozen=True, kw_only=True)
class YoloAnchorFreeDecode:
    """One output ``[N, 4 + C, anchors]``: ``cx, cy, w, h`` (input pixels) then the C class scores,
    sigmoid already, no objectness (ultralytics YOLOv8, v9, YOLO11, v12, and YOLO26's default
    export). ``multi_label`` as :class:`YoloDecode`'s: None lets each NMS profile decide."""

    kind: ClassVar[str] = "yolo_anchor_free"
    needs_nms: ClassVar[bool] = True
    uses_nms_profiles: ClassVar[bool] = True
    multi_label: bool | None = None
    stride: int = 32  # the head's largest stride (ultralytics' ``stride`` metadata; 64 for P6 models)

    def __post_init__(self) -> None:
        _check_multi_label(self.kind, self.multi_label)
        _check_stride(self.kind, self.stride)

    def ultralytics_metadata(self, names: Sequence[str], imgsz: int, batch: int) -> dict:
        """The ``metadata`` ultralytics' Triton client reads from the served config (see
        :func:`ultralytics_metadata`)."""
        return ultralytics_metadata(names, imgsz, batch, self.stride, end2end=False)

    def output_problems(self, outputs: Sequence[Any], num_classes: int) -> list[str]:
        """Why the card's outputs cannot be this head's (empty: they can)."""
        dims = tuple(outputs[0].dims)
        if len(dims) != 2 or dims[0] not in (-1, 4 + num_classes):
            return [f"outputs[0] {outputs[0].name!r}: dims {list(dims)} are not [4 + num_classes "
                    f"({4 + num_classes}), anchors] of a yolo_anchor_free head"]
        return []

    def candidates(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int], profile: Any) -> Detections:
        multi = profile.multi_label if self.multi_label is None else self.multi_label
        return decode_anchor_free(outputs[0], profile.conf_threshold, multi)


@spec.postprocess_variant("detect")
@dataclass(frozen=True, kw_only=True)
class YoloEnd2EndDecode:
    """One output ``[N, K, 6]``: ``x1, y1, x2, y2, score, class`` in input pixels, NMS already done
    by the model (YOLO26's NMS-free head, YOLOv10, ultralytics' ``nms=True`` exports). Of an NMS
    profile only ``conf_threshold`` and ``max_detections`` apply."""

    kind: ClassVar[str] = "yolo_end2end"
    needs_nms: ClassVar[bool] = False
    uses_nms_profiles: ClassVar[bool] = True
    stride: int = 32  # the head's largest stride (ultralytics' ``stride`` metadata)

    def __post_init__(self) -> None:
        _check_stride(self.kind, self.stride)

    def ultralytics_metadata(self, names: Sequence[str], imgsz: int, batch: int) -> dict:
        return ultralytics_metadata(names, imgsz, batch, self.stride, end2end=True)

    def output_problems(self, outputs: Sequence[Any], num_classes: int) -> list[str]:
        dims = tuple(outputs[0].dims)
        if len(dims) != 2 or dims[1] != 6:
            return [f"outputs[0] {outputs[0].name!r}: dims {list(dims)} are not [detections, 6] "
                    f"(x1, y1, x2, y2, score, class) of a yolo_end2end head"]
        return []

    def candidates(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int], profile: Any) -> Detections:
        return decode_end2end(outputs[0], profile.conf_threshold)


def detections(pp: Any, outputs: Mapping[str, np.ndarray], output_names: Sequence[str], input_hw: tuple[int, int],
               profile: Any, geometry: Any = None) -> Detections:
    """One image's raw outputs (by ``output_names``, batch axis removed) -> Detections, through the
    variant ``pp``'s decode, then NMS with ``profile`` (variants whose ``needs_nms`` is False only keep
    the best ``max_detections`` above the threshold), then original-image pixels (clipped) when
    ``geometry`` is given (model-input pixels otherwise)."""
    if getattr(pp, "task", None) != "detect":
        raise ValueError(f"postprocess {getattr(pp, 'kind', pp)!r} is not a detection postprocess")
    cand = pp.candidates([np.asarray(outputs[n]) for n in output_names], input_hw, profile).finite()
    if pp.needs_nms:
        dets = apply_nms(cand, profile)
    else:
        keep = np.argsort(-cand.scores, kind="stable")[:profile.max_detections]
        dets = cand.select(keep[cand.scores[keep] > profile.conf_threshold])
    return dets.to_original(geometry)


def card_detections(card: Any, outputs: Mapping[str, np.ndarray], geometry: Any, profile: Any) -> Detections:
    """:func:`detections` with what a model card (or a :class:`~tritonkit.spec.ServedSpec`) says:
    its postprocess variant, output names and input size."""
    size = card.preprocess.size
    return detections(card.postprocess, outputs, [o.name for o in card.outputs], (size, size), profile, geometry)


# -- fixed-size form (server-side NMS outputs) -----------------------------------------------

@dataclass(frozen=True, eq=False)
class PaddedDetections:
    """Detections padded to a fixed count (what a server model returns): boxes ``[M, 4]``,
    scores ``[M]``, classes ``[M]`` (int32, -1 in padding) and ``count`` valid rows."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    count: int


def pad_detections(dets: Detections, max_detections: int) -> PaddedDetections:
    n = min(len(dets), max_detections)
    boxes = np.zeros((max_detections, 4), np.float32)
    scores = np.zeros(max_detections, np.float32)
    classes = np.full(max_detections, -1, np.int32)
    boxes[:n], scores[:n], classes[:n] = dets.boxes[:n], dets.scores[:n], dets.classes[:n]
    return PaddedDetections(boxes, scores, classes, n)


def unpad_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, count: int) -> Detections:
    n = int(np.asarray(count).reshape(-1)[0])
    return Detections.create(boxes[:n], scores[:n], classes[:n])
