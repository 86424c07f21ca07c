"""Numpy-only mask assembly of YOLO-seg heads, as ultralytics' ``ops.crop_mask`` / ``ops.process_mask``."""

from __future__ import annotations

import numpy as np


def crop_mask(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Zero each mask ``[N,H,W]`` outside its xyxy pixel box ``[N,4]`` (half-open, like ultralytics)."""
    _, h, w = masks.shape
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    cols = np.arange(w, dtype=boxes.dtype)[None, None, :]
    rows = np.arange(h, dtype=boxes.dtype)[None, :, None]
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return masks * inside.astype(masks.dtype)


def process_mask(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary uint8 masks ``[N,mh,mw]`` at prototype resolution, cropped to the boxes given at input ``shape``."""
    c, mh, mw = protos.shape
    if len(coeffs) == 0:
        return np.zeros((0, mh, mw), dtype=np.uint8)
    logits = (coeffs.astype(np.float32) @ protos.astype(np.float32).reshape(c, -1)).reshape(-1, mh, mw)
    ratio = np.array([mw / shape[1], mh / shape[0]] * 2, dtype=np.float32)
    return crop_mask((logits > 0).astype(np.uint8), boxes.astype(np.float32) * ratio)


def _axis_weights(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear resize (``align_corners=False``) along one axis."""
    src = np.maximum((np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(scale) - 0.5, 0).astype(np.float32)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int], scale_hw: tuple[float, float] | None = None) -> np.ndarray:
    """Resize ``[N,H,W]`` float maps as torch's ``F.interpolate(mode="bilinear", align_corners=False)``."""
    n, h, w = x.shape
    sh, sw = scale_hw or (h / out_hw[0], w / out_hw[1])
    r0, r1, ry = _axis_weights(h, out_hw[0], sh)
    c0, c1, cx = _axis_weights(w, out_hw[1], sw)
    top = x[:, r0][:, :, c0] * (1 - cx) + x[:, r0][:, :, c1] * cx
    bottom = x[:, r1][:, :, c0] * (1 - cx) + x[:, r1][:, :, c1] * cx
    return (top * (1 - ry)[:, None] + bottom * ry[:, None]).astype(np.float32)


def scale_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop the letterbox padding off ``[N,H,W]`` float maps and resize them to ``shape`` (ultralytics' rule)."""
    h1, w1 = masks.shape[1:]
    h0, w0 = shape
    if (h1, w1) == (h0, w0):
        return masks
    gain = min(h1 / h0, w1 / w0)
    pad_w, pad_h = (w1 - max(round(w0 * gain), 1)) / 2, (h1 - max(round(h0 * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(h0 * gain), 1), left + max(round(w0 * gain), 1)
    return resize_bilinear(masks[:, top:bottom, left:right].astype(np.float32), shape)


def process_mask_native(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary uint8 masks ``[N,*shape]`` upsampled to ``shape`` and cropped to the boxes there.

    This is what ultralytics' segment validator uses when it writes COCO JSON (``save_json``).
    """
    c, mh, mw = protos.shape
    h, w = shape
    if len(coeffs) == 0:
        return np.zeros((0, h, w), dtype=np.uint8)
    logits = (coeffs.astype(np.float32) @ protos.astype(np.float32).reshape(c, -1)).reshape(-1, mh, mw)
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // np.gcd(4, pad | pad // 2)
    if f > 1:
        logits = resize_bilinear(logits, (mh * f, mw * f), (1 / f, 1 / f))
    masks = (scale_masks(logits, shape) > 0).astype(np.uint8)
    return crop_mask(masks, boxes.astype(np.float32))


def decode_seg_anchor_free(output0: np.ndarray, num_classes: int, conf_threshold: float, nms_profile, nms_fn):
    """One image's ``[4+C+32, A]`` head: kept ``(boxes xyxy, scores, classes, coefficients)`` after NMS.

    ``nms_fn`` is the detect task's class-aware NMS (``batched_nms``); the instance task does not copy it.
    """
    out = np.asarray(output0, np.float32).T
    cls_scores = out[:, 4:4 + num_classes]
    classes = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(out)), classes]
    keep = scores > conf_threshold
    xywh, coeffs = out[keep, :4], out[keep, 4 + num_classes:]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    scores, classes = scores[keep], classes[keep]
    kept = nms_fn(boxes, scores, classes, nms_profile.iou_threshold, nms_profile.max_detections)
    return boxes[kept], scores[kept], classes[kept], coeffs[kept]
