"""Detection postprocessing as pure numpy functions (no I/O): decode, NMS, back to the image.

* :func:`decode_yolo` turns an ultralytics-layout output ``[boxes, 5 + C]`` (``cx, cy, w, h,
  objectness, class scores`` in model-input pixels) into candidate boxes, the way YOLOv5's
  ``non_max_suppression`` does: objectness prefilter, ``score = objectness * class score``,
  best class, or with the profile's ``multi_label`` (YOLOv5 ``val.py``'s mAP setting) every
  class above the threshold as its own candidate (one vectorised ``nonzero``), before the
  class-aware NMS and the max-detections cut.
* :func:`decode_ssd` turns SSD outputs (normalized ``x1y1x2y2`` boxes, softmax scores with a
  background column) into per-class candidates, as torchvision's SSD postprocess does.
* :func:`nms` is greedy non-maximum suppression with torchvision's semantics (suppress when
  IoU > threshold, kept indices in decreasing score order); :func:`batched_nms` makes it
  class-aware with the coordinate-offset trick (boxes of different classes are shifted apart
  so they never overlap).
* :func:`postprocess_yolo` / :func:`postprocess_ssd` chain decode, NMS (an :class:`NMSProfile`)
  and :meth:`Geometry.to_original`, returning :class:`Detections` in original-image pixels.

The same functions run on the client and inside the server-side NMS model
(``model_repository/backends/yolo_nms.py``), so both give identical results. NMS is numpy,
not ``torchvision.ops``: torch is an optional extra, and the server's python model must not
need it. ``torchvision.ops.nms``/``batched_nms`` stay the reference in the tests. On a
YOLOv5s-sized output (25200 x 85) on a 2-core CPU, decode + NMS here took 0.9-1.6 ms per image
with the ``speed`` profile (torch + torchvision: 1.1-1.6 ms) and 15-34 ms with ``ap`` (~13k
candidates, 300 kept; torch + torchvision: 28-76 ms), the ranges being runs at different
machine load.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from tritonkit.cards import ModelCard, NMSProfile
from tritonkit.client.preprocess import Geometry

# The pure math lives in nms_math (numpy only: the server-side NMS model runs it too).
from tritonkit.client.nms_math import (  # noqa: F401  (re-exported)
    CARD_FILE, DETECTION_OUTPUTS, GEOMETRY_FIELDS, GEOMETRY_INPUT, MAX_NMS_CANDIDATES, NMS_MATRIX_MAX, OUT_BOXES,
    OUT_CLASSES, OUT_COUNT, OUT_SCORES, Detections, PaddedDetections, apply_nms, batched_nms, box_area, box_iou,
    corner_to_center,
    decode_ssd, decode_yolo, nms, pad_detections, unpad_detections, xywh_to_xyxy, xyxy_to_xywh)


# -- full postprocess --------------------------------------------------------------------

def to_original(dets: Detections, geometry: Geometry | None) -> Detections:
    """Boxes mapped from model-input pixels to the original image (clipped); ``None`` keeps them."""
    if geometry is None:
        return dets
    return Detections(geometry.to_original(dets.boxes), dets.scores, dets.classes)


def postprocess_yolo(output: np.ndarray, geometry: Geometry | None, profile: NMSProfile,
                     multi_label: bool | None = None) -> Detections:
    """Decode -> NMS -> original-image pixels (clipped), for one image's YOLO output.

    ``multi_label`` None follows the profile's ``multi_label``. With ``geometry`` None the
    boxes stay in model-input pixels (neither mapped nor clipped).
    """
    multi = profile.multi_label if multi_label is None else multi_label
    return to_original(apply_nms(decode_yolo(output, profile.conf_threshold, multi), profile), geometry)


def postprocess_ssd(boxes_norm_xyxy: np.ndarray, scores: np.ndarray, input_size: int | tuple[int, int],
                    geometry: Geometry | None, profile: NMSProfile, background_index: int | None = 0) -> Detections:
    """Decode -> NMS -> original-image pixels (clipped; None: model-input pixels), for one image's SSD outputs."""
    cand = decode_ssd(boxes_norm_xyxy, scores, input_size, profile.conf_threshold, background_index)
    return to_original(apply_nms(cand, profile), geometry)


def ssd_background_index(card: ModelCard) -> int | None:
    """The card's SSD background score column (``None``: the scores have none)."""
    return card.postprocess.background_index


def postprocess_card(card: ModelCard, outputs: Mapping[str, np.ndarray], geometry: Geometry | None,
                     profile: NMSProfile) -> Detections:
    """One image's raw outputs (by the card's output names, batch axis removed) -> Detections
    in original-image pixels (model-input pixels when ``geometry`` is None).

    YOLO candidates are multi-label when the profile says so (a card's ``YoloDecode.multi_label``
    other than ``None`` forces it on or off for every profile)."""
    pp = card.postprocess
    if pp.kind == "yolo":
        output = outputs[card.outputs[0].name]
        if pp.box_coding == "corner":  # x1, y1, x2, y2 -> the cx, cy, w, h decode_yolo reads
            output = corner_to_center(output)
        return postprocess_yolo(output, geometry, profile, multi_label=pp.multi_label)
    if pp.kind == "ssd":
        boxes, scores = (outputs[o.name] for o in card.outputs[:2])
        return postprocess_ssd(boxes, scores, card.preprocess.size, geometry, profile, pp.background_index)
    raise ValueError(f"card {card.name!r}: postprocess {pp.kind!r} is not a detection postprocess")


# -- fixed-size form (server-side NMS outputs) -----------------------------------------------

def geometry_to_array(geometry: Geometry) -> np.ndarray:
    """The letterbox geometry as a float64 ``[6]`` vector (``GEOMETRY_FIELDS`` order)."""
    return np.array([getattr(geometry, f) for f in GEOMETRY_FIELDS], np.float64)


def geometry_from_array(values: np.ndarray) -> Geometry:
    v = np.asarray(values, np.float64).reshape(-1)
    if v.shape != (6,):
        raise ValueError(f"geometry vector needs 6 values {GEOMETRY_FIELDS}, got {v.shape[0]}")
    return Geometry(int(round(v[0])), int(round(v[1])), float(v[2]), float(v[3]), float(v[4]), float(v[5]))
