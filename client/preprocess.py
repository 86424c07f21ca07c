"""Image preprocessing as pure numpy functions (no I/O).

* :func:`resize_weights` builds the separable antialiased resampling matrix that torchvision
  (``Resize(..., antialias=True)``) and PIL use, so ``resize_crop`` matches torchvision's eval
  transform on float input to ~1e-6 while computing only the cropped window.
* :func:`letterbox` is the YOLO letterbox (aspect-preserving fit + constant padding), returning
  the scale and padding needed to map boxes back.
* :func:`preprocess` applies a card's :class:`~tritonkit.cards.Preprocess` and returns the model
  input plus the :class:`Geometry` of the transform.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tritonkit.cards import Preprocess


@dataclass(frozen=True)
class Geometry:
    """How input-image pixels map to model-input pixels: ``x_in = x_orig * scale_x + pad_x``."""

    orig_h: int
    orig_w: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map x1,y1,x2,y2 boxes from model-input pixels back to the original image, clipped."""
        b = np.asarray(boxes_xyxy, dtype=np.float32).copy()
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_x) / self.scale_x
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_y) / self.scale_y
        b[..., [0, 2]] = b[..., [0, 2]].clip(0, self.orig_w)
        b[..., [1, 3]] = b[..., [1, 3]].clip(0, self.orig_h)
        return b


def _filter(interpolation: str):
    if interpolation == "bilinear":
        def tri(x: np.ndarray) -> np.ndarray:
            x = np.abs(x)
            return np.where(x < 1.0, 1.0 - x, 0.0)
        return tri, 1.0
    if interpolation == "bicubic":
        a = -0.5  # PIL's and torch's antialiased bicubic kernel

        def cubic(x: np.ndarray) -> np.ndarray:
            x = np.abs(x)
            near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
            return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
        return cubic, 2.0
    raise ValueError(f"unknown interpolation {interpolation!r}")


@functools.lru_cache(maxsize=512)
def resize_weights(in_size: int, out_size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Dense ``(out_size, in_size)`` antialiased resampling matrix (rows sum to 1), read-only.

    Same construction as PIL's ``ImagingResample`` and torch's ``_upsample_*_aa`` kernels:
    when shrinking, the filter support is widened by the scale factor. Cached: a data set's
    images share a few sizes, and building the matrix cost more than applying it.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive (in {in_size}, out {out_size})")
    kernel, support = _filter(interpolation)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    center = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    # int() truncates toward zero, as the reference kernels' casts do; clamped to the image
    lo = np.maximum(np.trunc(center - support + 0.5), 0)[:, None]
    hi = np.minimum(np.trunc(center + support + 0.5), in_size)[:, None]
    j = np.arange(in_size, dtype=np.float64)[None, :]
    w = np.where((j >= lo) & (j < hi), kernel((j - center[:, None] + 0.5) / filterscale), 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=w, where=total != 0.0)
    w.setflags(write=False)
    return w


def shorter_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` output size: shorter side -> ``short``, longer truncated."""
    if h <= w:
        return short, int(short * w / h)
    return int(short * h / w), short


def center_crop_offsets(h: int, w: int, crop: int) -> tuple[int, int]:
    """torchvision's ``CenterCrop`` top/left offsets (rounding half to even, as it does)."""
    return int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))


def _resample(img: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """``wy @ img @ wx.T`` per channel on an HWC float image, touching only rows/cols in use."""
    ys = np.nonzero(wy.any(axis=0))[0]
    xs = np.nonzero(wx.any(axis=0))[0]
    y0, y1 = int(ys[0]), int(ys[-1]) + 1
    x0, x1 = int(xs[0]), int(xs[-1]) + 1
    window = img[y0:y1, x0:x1].astype(np.float32, copy=False)
    wy32 = wy[:, y0:y1].astype(np.float32)
    wx32 = wx[:, x0:x1].astype(np.float32)
    tmp = np.tensordot(wy32, window, axes=(1, 0))          # (oh, ww, C)
    return np.einsum("ox,hxc->hoc", wx32, tmp, optimize=True)  # (oh, ow, C)


def resize_crop(img: np.ndarray, resize: int, crop: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize the shorter side to ``resize`` then center-crop ``crop`` x ``crop``.

    ``img`` is HWC (uint8 or float, pixel units); returns float32 HWC in the same units.
    Equals torchvision ``CenterCrop(crop)(Resize(resize, antialias=True)(x))`` on float input.
    """
    h, w = img.shape[:2]
    nh, nw = shorter_side_size(h, w, resize)
    if nh < crop or nw < crop:
        raise ValueError(f"resized image {nh}x{nw} is smaller than the crop {crop}")
    top, left = center_crop_offsets(nh, nw, crop)
    wy = resize_weights(h, nh, interpolation)[top:top + crop]
    wx = resize_weights(w, nw, interpolation)[left:left + crop]
    return _resample(img, wy, wx)


def resize_exact(img: np.ndarray, out_h: int, out_w: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize HWC to ``out_h`` x ``out_w`` (antialiased, float32 out)."""
    h, w = img.shape[:2]
    return _resample(img, resize_weights(h, out_h, interpolation), resize_weights(w, out_w, interpolation))


def letterbox(img: np.ndarray, size: int, pad_value: int = 114,
              interpolation: str = "bilinear") -> tuple[np.ndarray, float, tuple[float, float]]:
    """Fit an HWC uint8 image into ``size`` x ``size`` keeping aspect, pad with ``pad_value``.

    Returns ``(image, scale, (pad_x, pad_y))`` with ``x_in = x_orig * scale + pad_x``. Follows
    the YOLOv5 letterbox (``auto=False``): the image is scaled so its longer side fills
    ``size``, padding is split evenly (left/top get the floor).
    """
    import cv2

    h, w = img.shape[:2]
    scale = min(size / h, size / w)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    if (new_w, new_h) != (w, h):
        flag = cv2.INTER_LINEAR if interpolation == "bilinear" else cv2.INTER_CUBIC
        img = cv2.resize(img, (new_w, new_h), interpolation=flag)
    dw, dh = (size - new_w) / 2.0, (size - new_h) / 2.0
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT,
                             value=(pad_value, pad_value, pad_value))
    return out, scale, (float(left), float(top))


def normalize(img: np.ndarray, pp: Preprocess) -> np.ndarray:
    """``(pixel * scale - mean) / std`` per channel, HWC float32 in, float32 out."""
    mean = np.asarray(pp.mean, dtype=np.float32)
    std = np.asarray(pp.std, dtype=np.float32)
    # fold scale into one multiply-add: (x*s - m)/sd = x*(s/sd) - m/sd
    return img.astype(np.float32, copy=False) * (np.float32(pp.scale) / std) - mean / std


def to_layout(img_hwc: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(img_hwc.transpose(2, 0, 1) if layout == "NCHW" else img_hwc)


def preprocess(img: np.ndarray, pp: Preprocess) -> tuple[np.ndarray, Geometry]:
    """Turn one decoded RGB HWC image (uint8, or float in pixel units) into a model input.

    Returns the per-sample array (CHW or HWC, float32) and the :class:`Geometry` of the transform.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB HWC image, got shape {img.shape}")
    h, w = img.shape[:2]
    if pp.mode == "resize_crop":
        out = resize_crop(img, pp.resize_to, pp.size, pp.interpolation)
        nh, nw = shorter_side_size(h, w, pp.resize_to)
        top, left = center_crop_offsets(nh, nw, pp.size)
        geo = Geometry(h, w, nw / w, nh / h, -float(left), -float(top))
    elif pp.mode == "letterbox":
        src = img if img.dtype == np.uint8 else np.clip(np.rint(img), 0, 255).astype(np.uint8)
        out, scale, (px, py) = letterbox(src, pp.size, pp.pad_value, pp.interpolation)
        geo = Geometry(h, w, scale, scale, px, py)
    else:  # resize
        out = resize_exact(img, pp.size, pp.size, pp.interpolation)
        geo = Geometry(h, w, pp.size / w, pp.size / h, 0.0, 0.0)
    return to_layout(normalize(out, pp), pp.layout), geo


def batch(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack per-sample inputs into one contiguous batch."""
    return np.ascontiguousarray(np.stack(arrays, axis=0))


