"""Detection math that both the client and the server-side NMS model run: numpy only.

Decode (YOLO, SSD), greedy NMS with torchvision's semantics, the fixed-size padded form the
server returns, the letterbox map back to original-image pixels, and the names of the
server-side postprocess tensors. This module imports nothing but numpy: the repository writer
copies it beside the NMS model's ``model.py`` (NGC's tritonserver image has no tritonkit), and
:mod:`tritonkit.client.detection` re-exports it for the client. Profiles are duck-typed (any
object with ``conf_threshold``, ``iou_threshold``, ``max_detections``, ``class_agnostic`` and
``multi_label``): :class:`tritonkit.cards.NMSProfile` on the client, :class:`NMSSettings`
read from config parameters on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# YOLOv5 keeps at most this many candidates (highest scores) before NMS.
MAX_NMS_CANDIDATES = 30000
# Server-side postprocess tensors (the NMS model and the detection ensemble) and the card file
# the repository writer puts in each model folder.
CARD_FILE = "card.json"
GEOMETRY_INPUT = "geometry"
OUT_BOXES = "det_boxes"
OUT_SCORES = "det_scores"
OUT_CLASSES = "det_classes"
OUT_COUNT = "det_count"
DETECTION_OUTPUTS = (OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT)
GEOMETRY_FIELDS = ("orig_h", "orig_w", "scale_x", "scale_y", "pad_x", "pad_y")


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


# -- back to the original image ------------------------------------------------------------

def boxes_to_original(boxes_xyxy: np.ndarray, geometry: Sequence[float]) -> np.ndarray:
    """Map x1,y1,x2,y2 boxes from model-input pixels to the original image, clipped.

    ``geometry`` is the ``GEOMETRY_FIELDS`` vector (``x_in = x_orig * scale + pad``); the same
    arithmetic as :meth:`tritonkit.client.preprocess.Geometry.to_original`, in float32.
    """
    v = np.asarray(geometry, np.float64).reshape(-1)
    if v.shape != (len(GEOMETRY_FIELDS),):
        raise ValueError(f"geometry vector needs {len(GEOMETRY_FIELDS)} values {GEOMETRY_FIELDS}, got {v.shape[0]}")
    orig_h, orig_w = int(round(v[0])), int(round(v[1]))
    scale_x, scale_y, pad_x, pad_y = (float(x) for x in v[2:])
    b = np.asarray(boxes_xyxy, dtype=np.float32).copy()
    b[..., [0, 2]] = (b[..., [0, 2]] - pad_x) / scale_x
    b[..., [1, 3]] = (b[..., [1, 3]] - pad_y) / scale_y
    b[..., [0, 2]] = b[..., [0, 2]].clip(0, orig_w)
    b[..., [1, 3]] = b[..., [1, 3]].clip(0, orig_h)
    return b


# -- the server side: settings from config parameters and card.json ----------------------

def _flag(value: str | None) -> bool:
    return str(value or "false").lower() == "true"


@dataclass(frozen=True)
class NMSSettings:
    """An NMS profile as the server model reads it from its config ``parameters``."""

    name: str
    conf_threshold: float
    iou_threshold: float
    max_detections: int = 300
    class_agnostic: bool = False
    multi_label: bool = False

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> "NMSSettings":
        """``conf_threshold``, ``iou_threshold``, ``max_detections`` (required), ``class_agnostic``,
        ``multi_label`` (absent: false) and ``profile`` (a name, for logs)."""
        return cls(name=params.get("profile") or "server", conf_threshold=float(params["conf_threshold"]),
                   iou_threshold=float(params["iou_threshold"]), max_detections=int(params["max_detections"]),
                   class_agnostic=_flag(params.get("class_agnostic")), multi_label=_flag(params.get("multi_label")))


@dataclass(frozen=True)
class DetectorSpec:
    """What the server's postprocess needs from a card, read from its JSON form (``card.json``).

    Reads the typed form (``"postprocess": {"kind": "yolo", "box_coding": ..., "multi_label": ...}``)
    and the older one (a ``postprocess`` string plus an ``options`` list of string pairs)."""

    postprocess: str
    output_names: tuple[str, ...]
    input_size: int
    multi_label: bool | None        # True/False forces multi-label candidates; None: the profile's
    background_index: int | None    # SSD: the background score column (None: there is none)
    box_coding: str = "center_size"

    @classmethod
    def from_card_json(cls, card: Mapping) -> "DetectorSpec":
        pp = card["postprocess"]
        if isinstance(pp, Mapping):
            kind = str(pp["kind"])
            multi = pp.get("multi_label")
            background = pp.get("background_index", 0)
            coding = pp.get("box_coding") or ("corner" if kind == "ssd" else "center_size")
        else:  # the older card form
            options = {str(k): str(v) for k, v in card.get("options", ())}
            kind, text = str(pp), options.get("score_background_index", "0")
            multi = True if _flag(options.get("multi_label")) else None
            background = None if text.lower() in ("none", "-1", "") else int(text)
            coding = "corner" if kind == "ssd" else "center_size"
        return cls(postprocess=kind, output_names=tuple(str(o["name"]) for o in card["outputs"]),
                   input_size=int(card["preprocess"]["size"]), multi_label=multi,
                   background_index=None if background is None else int(background), box_coding=str(coding))


def corner_to_center(output: np.ndarray) -> np.ndarray:
    """YOLO rows ``x1, y1, x2, y2, ...`` -> ``cx, cy, w, h, ...`` (what :func:`decode_yolo` reads)."""
    return np.concatenate([(output[..., 0:2] + output[..., 2:4]) / 2, output[..., 2:4] - output[..., 0:2],
                           output[..., 4:]], axis=-1)


def postprocess_raw(spec: DetectorSpec, outputs: Mapping[str, np.ndarray], geometry: Sequence[float] | None,
                    profile) -> Detections:
    """One image's raw outputs -> Detections (original-image pixels when ``geometry`` is given).

    The server-side twin of :func:`tritonkit.client.detection.postprocess_card`, driven by a
    :class:`DetectorSpec` instead of a card; both give identical results.
    """
    if spec.postprocess == "yolo":
        multi = profile.multi_label if spec.multi_label is None else spec.multi_label
        output = outputs[spec.output_names[0]]
        if spec.box_coding == "corner":
            output = corner_to_center(output)
        cand = decode_yolo(output, profile.conf_threshold, multi)
    elif spec.postprocess == "ssd":
        boxes, scores = (outputs[n] for n in spec.output_names[:2])
        cand = decode_ssd(boxes, scores, spec.input_size, profile.conf_threshold, spec.background_index)
    else:
        raise ValueError(f"postprocess {spec.postprocess!r} is not a detection postprocess")
    dets = apply_nms(cand, profile)
    if geometry is None:
        return dets
    return Detections(boxes_to_original(dets.boxes, geometry), dets.scores, dets.classes)
