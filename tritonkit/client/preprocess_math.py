"""Image decoding and preprocessing that the client and the server-side preprocess model both run.

Everything from an encoded image to one model input and its :class:`~tritonkit.spec.Geometry`:
the decode as torchvision's ``ImageFolder`` loader does it (:func:`decode_rgb`), classification
resize/crop with PIL's C resampling (or torchvision's float tensor path), ultralytics' letterbox,
segmentation's ``resize_short`` (torchvision's ``SemanticSegmentation`` preset), and the
normalisation into a float32 buffer. See :mod:`tritonkit.client.preprocess` for the exactness
notes; that module is this one with tritonkit's error type around it.

This module imports nothing from tritonkit but :mod:`tritonkit.spec` (shipped beside it), only
numpy, Pillow and (for the letterbox) OpenCV, each on first use: the repository writer copies it
beside the server-side preprocess model's ``model.py`` as ``tk_preprocess.py`` (NGC's
tritonserver image has no tritonkit), so a client that sends encoded bytes gets the very pixels
the client-side path would have produced. The settings are a :class:`~tritonkit.spec.Preprocess`
(a card's ``preprocess``, or the one the server reads from the card its config carries).
"""

from __future__ import annotations

import functools
import importlib
import io
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np

if __package__:  # part of the tritonkit package
    from tritonkit import spec
    from tritonkit.spec import Geometry, Preprocess
else:  # shipped beside a python backend (no tritonkit there): the sibling copy of tritonkit/spec.py
    import tk_spec as spec  # type: ignore[no-redef]
    from tk_spec import Geometry, Preprocess  # type: ignore[no-redef]

# The exact PIL path holds two intermediate images (the horizontal pass over every row, the
# vertical pass over the crop's columns); when they would exceed this many pixels (64 MiB; only
# aspect ratios beyond ~1:300 do) the crop window alone is resampled, so memory stays bounded.
EXACT_MAX_PIXELS = 1 << 24
# The tensor path's dense window of weights may hold at most this many entries (128 MiB of float64).
MAX_WINDOW_WEIGHTS = 1 << 24
LETTERBOX_RULES = spec.LETTERBOX_RULES
FIXED_SIZE_MODES = ("resize_crop", "resize", "letterbox")  # one input size for every image
MODES = (*FIXED_SIZE_MODES, "resize_short")                 # what preprocess() implements
# PIL's own decompression-bomb threshold, Image.MAX_IMAGE_PIXELS (it only warns up to twice
# this): refused here instead
DEFAULT_MAX_PIXELS = 89_478_485
# The server-side preprocess model's tensors: encoded images in (BYTES, one per sample), the
# model input and the geometry out (FP64 [6], spec.GEOMETRY_FIELDS).
ENCODED_INPUT = spec.ENCODED_INPUT
GEOMETRY_OUTPUT = spec.GEOMETRY_TENSOR
_PIL_FILTERS = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling.BILINEAR / BICUBIC


@functools.lru_cache(maxsize=None)
def _module(name: str) -> Any:
    """Import a third-party module on first use (this module cannot use tritonkit's lazy proxy:
    it also runs where tritonkit is not installed), so importing it stays light."""
    return importlib.import_module(name)


def _pil() -> Any:
    return _module("PIL.Image")


def _cv2() -> Any:
    return _module("cv2")


@functools.lru_cache(maxsize=None)
def _simplejpeg() -> Any:
    """simplejpeg (libjpeg-turbo, no per-file Python) when installed, else None: the PIL decode
    is the fallback, so the server-side copy of this module needs only numpy, Pillow and OpenCV."""
    try:
        return importlib.import_module("simplejpeg")
    except ImportError:
        return None


class ImageError(ValueError):
    """One image gives no model input (undecodable, degenerate geometry). On the client,
    :class:`tritonkit.client.decode.ImageError` (a TritonkitError) is raised in its place."""


# ------------------------------------------------------------------------- sizes and offsets
def shorter_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` output size: shorter side -> ``short``, longer truncated."""
    if h < 1 or w < 1:
        raise ImageError(f"image has a zero side ({w}x{h})")
    if h <= w:
        return short, int(short * w / h)
    return int(short * h / w), short


def center_crop_offsets(h: int, w: int, crop: int) -> tuple[int, int]:
    """torchvision's ``CenterCrop`` top/left offsets (rounding half to even, as it does)."""
    return int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))


# ---------------------------------------------------------------------- tensor-path weights
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
def weights_window(in_size: int, out_size: int, start: int, count: int,
                   interpolation: str = "bilinear") -> tuple[np.ndarray, int]:
    """Rows ``start .. start+count`` of the antialiased ``(out_size, in_size)`` resampling matrix,
    restricted to the source indices they touch: ``(weights (count, span), first source index)``.

    Same construction as PIL's ``ImagingResample`` and torch's ``_upsample_*_aa`` kernels: when
    shrinking, the filter support is widened by the scale factor. Cached and read-only: a data
    set's images share a few sizes. A window too large to hold raises :class:`ImageError`.
    """
    if in_size < 1 or out_size < 1 or count < 1:
        raise ImageError(f"resampling sizes must be positive (in {in_size}, out {out_size}, count {count})")
    kernel, support = _filter(interpolation)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    center = scale * (np.arange(start, start + count, dtype=np.float64) + 0.5)
    # int() truncates toward zero, as the reference kernels' casts do; clamped to the image
    lo = np.maximum(np.trunc(center - support + 0.5), 0)[:, None]
    hi = np.minimum(np.trunc(center + support + 0.5), in_size)[:, None]
    first, last = int(lo.min()), int(hi.max())
    if last <= first or count * (last - first) > MAX_WINDOW_WEIGHTS:
        raise ImageError(f"cannot resample {in_size} -> {out_size} pixels (window of {count} x {last - first})")
    j = np.arange(first, last, dtype=np.float64)[None, :]
    w = np.where((j >= lo) & (j < hi), kernel((j - center[:, None] + 0.5) / filterscale), 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=w, where=total != 0.0)
    w.setflags(write=False)
    return w, first


def resize_weights(in_size: int, out_size: int, interpolation: str = "bilinear") -> np.ndarray:
    """The dense ``(out_size, in_size)`` resampling matrix (rows sum to 1) of the tensor path."""
    w, first = weights_window(in_size, out_size, 0, out_size, interpolation)
    full = np.zeros((out_size, in_size))
    full[:, first:first + w.shape[1]] = w
    return full


def _resample(img: np.ndarray, wy: tuple[np.ndarray, int], wx: tuple[np.ndarray, int]) -> np.ndarray:
    """``wy @ img @ wx.T`` per channel on an HWC image, over the source window in use (float32)."""
    (ky, y0), (kx, x0) = wy, wx
    window = img[y0:y0 + ky.shape[1], x0:x0 + kx.shape[1]].astype(np.float32, copy=False)
    tmp = np.tensordot(ky.astype(np.float32), window, axes=(1, 0))           # (oh, ww, C)
    return np.einsum("ox,hxc->hoc", kx.astype(np.float32), tmp, optimize=True)  # (oh, ow, C)


def resize_crop(img: np.ndarray, resize: int, crop: int, interpolation: str = "bilinear") -> np.ndarray:
    """Tensor path: resize the shorter side to ``resize``, center-crop ``crop`` x ``crop``.

    ``img`` is HWC (uint8 or float, pixel units); returns float32 HWC in the same units. Equals
    torchvision ``CenterCrop(crop)(Resize(resize, antialias=True)(x))`` on float input.
    """
    h, w = img.shape[:2]
    nh, nw = shorter_side_size(h, w, resize)
    if nh < crop or nw < crop:
        raise ImageError(f"resized image {nh}x{nw} is smaller than the crop {crop}")
    top, left = center_crop_offsets(nh, nw, crop)
    return _resample(img, weights_window(h, nh, top, crop, interpolation),
                     weights_window(w, nw, left, crop, interpolation))


def resize_exact(img: np.ndarray, out_h: int, out_w: int, interpolation: str = "bilinear") -> np.ndarray:
    """Tensor path: resize HWC to ``out_h`` x ``out_w`` (antialiased, float32 out)."""
    h, w = img.shape[:2]
    return _resample(img, weights_window(h, out_h, 0, out_h, interpolation),
                     weights_window(w, out_w, 0, out_w, interpolation))


# --------------------------------------------------------------------------------- PIL path
def _pil_filter(interpolation: str) -> int:
    return {"bilinear": _pil().Resampling.BILINEAR, "bicubic": _pil().Resampling.BICUBIC}[interpolation]


_PIL_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}  # PIL's filter supports (Resample.c)


def pil_source_span(in_size: int, out_size: int, start: int, count: int, interpolation: str = "bilinear",
                    margin: int = 1) -> tuple[int, int]:
    """Source indices ``[lo, hi)`` that PIL's resampling of ``in_size -> out_size`` reads for the
    outputs ``start .. start+count`` (its ``precompute_coeffs`` bounds), widened by ``margin``."""
    scale = in_size / out_size
    support = _PIL_SUPPORT[interpolation] * max(scale, 1.0)
    lo = int((start + 0.5) * scale - support + 0.5)
    hi = int((start + count - 1 + 0.5) * scale + support + 0.5)
    return max(lo - margin, 0), min(hi + margin, in_size)


def exact_box(in_size: int, out_size: int, start: int, count: int, offset: int = 0) -> tuple[float, float] | None:
    """The resize box (``lo, hi`` along one axis, relative to source index ``offset``) with which
    PIL computes the outputs ``start .. start+count`` of its ``in_size -> out_size`` resampling
    bit for bit, or None where it cannot.

    PIL takes the box as float32 and derives the filter's scale and centers from it, so the box
    reproduces the full resize only when the scale ``in_size / out_size`` is a dyadic fraction
    (e.g. a shorter side resized to 256) and both ends are float32-exact: then every center and
    weight is computed from the same exact numbers as in the full resize.
    """
    den = out_size // math.gcd(in_size, out_size)
    if den & (den - 1):
        return None
    lo = Fraction(start * in_size, out_size) - offset
    hi = Fraction((start + count) * in_size, out_size) - offset
    if lo < 0 or any(Fraction(float(np.float32(v))) != v for v in (lo, hi)):
        return None
    return float(lo), float(hi)


@dataclass(frozen=True)
class _CropPlan:
    """How :func:`pil_resize_crop` computes one geometry: source rows ``[r0, r1)`` get the
    horizontal pass (all ``nw`` columns, or only the crop's through ``xbox``), the vertical pass
    reads them (only the crop's rows through ``ybox``, else all ``nh`` rows of a full-height image)."""

    nh: int
    nw: int
    top: int
    left: int
    r0: int
    r1: int
    xbox: tuple[float, float] | None
    ybox: tuple[float, float] | None


@functools.lru_cache(maxsize=1024)
def _crop_plan(h: int, w: int, resize: int, crop: int, interpolation: str) -> _CropPlan:
    nh, nw = shorter_side_size(h, w, resize)
    if nh < crop or nw < crop:
        raise ImageError(f"resized image {nh}x{nw} is smaller than the crop {crop}")
    top, left = center_crop_offsets(nh, nw, crop)
    r0, r1 = pil_source_span(h, nh, top, crop, interpolation) if nh != h else (top, top + crop)
    xbox = exact_box(w, nw, left, crop) if nw != w else None
    ybox = exact_box(h, nh, top, crop, offset=r0) if nh != h else None
    return _CropPlan(nh, nw, top, left, r0, r1, xbox, ybox)


def _row_window(img: Any, r0: int, r1: int) -> Any:
    """Rows ``[r0, r1)`` of ``img``: a view of its array when it is one (:func:`_rgb_view`), else a copy."""
    if (r0, r1) == (0, img.height):
        return img
    source = getattr(img, "_rgbx_source", None)
    if source is not None and img.im is source[0]:
        view = _rgb_view(source[1][r0:r1])
        if view is not None:
            return view
    return img.crop((0, r0, img.width, r1))


def _exact_resize_crop(img: Any, resize: int, crop: int, interpolation: str) -> tuple[Any, int]:
    """torchvision's ``CenterCrop(crop)(Resize(resize)(img))`` pixels, bit for bit: ``(image,
    row)``, the crop being rows ``row .. row+crop`` of ``image`` (``crop`` wide).

    PIL resamples horizontally, rounds to uint8, then vertically. Its passes are run one at a
    time on what the crop keeps: the horizontal pass only on the source rows the vertical pass
    reads (each output row depends on its own source row alone), the vertical pass only on the
    crop's columns, and either pass only on the crop's outputs where :func:`exact_box` allows.
    """
    w, h = img.size
    plan = _crop_plan(h, w, resize, crop, interpolation)
    flt = _pil_filter(interpolation)
    rows = plan.r1 - plan.r0
    img = _row_window(img, plan.r0, plan.r1)
    left = plan.left
    if plan.xbox is not None:
        img, left = img.resize((crop, rows), flt, box=(plan.xbox[0], 0, plan.xbox[1], rows)), 0
    elif plan.nw != w:
        img = img.resize((plan.nw, rows), flt)
    if plan.nh == h:
        return img.crop((left, 0, left + crop, rows)) if (left, img.width) != (0, crop) else img, 0
    if plan.ybox is not None:
        if (left, img.width) != (0, crop):
            img = img.crop((left, 0, left + crop, rows))
        return img.resize((crop, crop), flt, box=(0, plan.ybox[0], crop, plan.ybox[1])), 0
    full = _pil().new("RGB", (crop, h), None)
    full.paste(img, (-left, plan.r0))
    return full.resize((crop, plan.nh), flt), plan.top


def pil_resize_crop(img: Any, resize: int, crop: int, interpolation: str = "bilinear",
                    fast: bool = False) -> Any:
    """PIL path: ``CenterCrop(crop)(Resize(resize)(img))`` on an RGB PIL image, bit-identical
    to torchvision's (unless ``fast``, or intermediates beyond ``EXACT_MAX_PIXELS``)."""
    w, h = img.size
    nh, nw = shorter_side_size(h, w, resize)
    if nh < crop or nw < crop:
        raise ImageError(f"resized image {nh}x{nw} is smaller than the crop {crop}")
    top, left = center_crop_offsets(nh, nw, crop)
    flt = _pil_filter(interpolation)
    if fast or nw * h + crop * nh > EXACT_MAX_PIXELS:
        sx, sy = w / nw, h / nh
        return img.resize((crop, crop), flt, box=(left * sx, top * sy, (left + crop) * sx, (top + crop) * sy))
    out, row = _exact_resize_crop(img, resize, crop, interpolation)
    return out if (row, out.height) == (0, crop) else out.crop((0, row, crop, row + crop))


def _crop_pixels(img: Any, pp: Preprocess, fast: bool) -> np.ndarray:
    """The ``resize_crop`` pixels as an ``(s, s, 4)`` uint8 array (RGB and a padding byte): the
    resampled image is pasted into the array's memory, without PIL's conversion to bytes."""
    w, h = img.size
    crop = pp.size
    nh, nw = shorter_side_size(h, w, pp.resize_to)
    if fast or nw * h + crop * nh > EXACT_MAX_PIXELS:
        out, row = pil_resize_crop(img, pp.resize_to, crop, pp.interpolation, fast), 0
    else:
        out, row = _exact_resize_crop(img, pp.resize_to, crop, pp.interpolation)
    pixels = np.empty((crop, crop, 4), np.uint8)
    target = _rgb_view(pixels, writable=True)
    if target is None:
        return np.asarray(out.crop((0, row, crop, row + crop)))
    target.paste(out, (0, -row))
    return pixels


# -------------------------------------------------------------------------------- letterbox
@dataclass(frozen=True)
class LetterboxPlan:
    """The resizes (``(width, height)`` each, in order) and padding of a letterbox."""

    resizes: tuple[tuple[int, int], ...]
    new_w: int
    new_h: int
    top: int
    bottom: int
    left: int
    right: int


def letterbox_plan(h: int, w: int, size: int, rule: str = "val") -> LetterboxPlan:
    """ultralytics' letterbox arithmetic for a ``size`` x ``size`` input (ultralytics 8.4).

    ``val`` (what ``yolo val`` / ``model.val()`` scores mAP with): ``BaseDataset.load_image``
    (``ultralytics/data/base.py``, ``rect_mode``) resizes the longer side to ``size`` with
    ``min(math.ceil(side * r), size)``, then ``LetterBox(new_shape=size, scaleup=False)``
    (``ultralytics/data/augment.py``, as ``YOLODataset.build_transforms`` builds it for
    evaluation) pads. ``predict``: ``LetterBox(new_shape=size, auto=False)`` alone on the
    original image (``scaleup=True``, sides ``max(round(side * r), 1)``). Padding: ``dw / 2``
    each side, ``top = round(dh - 0.1)``, ``bottom = round(dh + 0.1)`` (Python's round).
    """
    if h < 1 or w < 1 or size < 1:
        raise ImageError(f"cannot letterbox a {w}x{h} image to {size}")
    if rule not in LETTERBOX_RULES:
        raise ValueError(f"letterbox rule {rule!r} not one of {LETTERBOX_RULES}")
    resizes = []
    rw, rh = w, h
    if rule == "val":
        r = size / max(h, w)
        if r != 1:
            rw, rh = min(math.ceil(w * r), size), min(math.ceil(h * r), size)
            resizes.append((rw, rh))
    r = min(size / rh, size / rw)
    if rule == "val":
        r = min(r, 1.0)  # scaleup=False
    new_w, new_h = max(round(rw * r), 1), max(round(rh * r), 1)
    if (new_w, new_h) != (rw, rh):
        resizes.append((new_w, new_h))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    return LetterboxPlan(tuple(resizes), new_w, new_h, round(dh - 0.1), round(dh + 0.1),
                         round(dw - 0.1), round(dw + 0.1))


def letterbox(img: np.ndarray, size: int, pad_value: int = 114, interpolation: str = "bilinear",
              rule: str = "val") -> tuple[np.ndarray, Geometry]:
    """Letterbox an HWC uint8 image to ``size`` x ``size`` as ultralytics does
    (:func:`letterbox_plan`, ``_cv2().resize``, ``_cv2().copyMakeBorder``); returns the image and its
    :class:`Geometry` (per-axis scales ``new / original``, as ultralytics' ``scale_boxes``)."""
    h, w = img.shape[:2]
    plan = letterbox_plan(h, w, size, rule)
    flag = _cv2().INTER_LINEAR if interpolation == "bilinear" else _cv2().INTER_CUBIC
    for rw, rh in plan.resizes:
        img = _cv2().resize(img, (rw, rh), interpolation=flag)
    out = _cv2().copyMakeBorder(img, plan.top, plan.bottom, plan.left, plan.right, _cv2().BORDER_CONSTANT,
                             value=(pad_value, pad_value, pad_value))
    if out.shape[:2] != (size, size):
        raise ImageError(f"letterbox of a {w}x{h} image gave {out.shape[1]}x{out.shape[0]}, not {size}x{size}")
    return out, Geometry(h, w, plan.new_w / w, plan.new_h / h, float(plan.left), float(plan.top))


# ---------------------------------------------------------------------------- normalisation
def _affine(pp: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """``(pixel * scale - mean) / std`` folded into ``pixel * k + b`` (float32 per channel)."""
    return _affine_of(float(pp.scale), tuple(pp.mean), tuple(pp.std))


@functools.lru_cache(maxsize=64)
def _affine_of(scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    std_ = np.asarray(std, dtype=np.float32)
    k, b = (np.float32(scale) / std_).astype(np.float32), (-np.asarray(mean, dtype=np.float32) / std_)
    k.setflags(write=False)
    b.setflags(write=False)
    return k, b


def normalize(img: np.ndarray, pp: Preprocess) -> np.ndarray:
    """``(pixel * scale - mean) / std`` per channel, HWC in, float32 HWC out."""
    k, b = _affine(pp)
    return img.astype(np.float32, copy=False) * k + b


def normalize_into(img: np.ndarray, pp: Preprocess, out: np.ndarray) -> np.ndarray:
    """Normalise an HWC image (uint8 or float; channels beyond the third, such as the padding
    byte of :func:`_crop_pixels`, are ignored) straight into ``out`` (float32, ``pp.layout``:
    CHW or HWC), with no temporary image.

    Each value is ``float32(pixel) * k + b`` in float32 (:func:`_affine`), whichever way: a
    contiguous uint8 image is split into planes by OpenCV, converted into ``out`` and scaled there.
    """
    k, b = _affine(pp)
    if pp.layout == "NCHW":
        if img.dtype == np.uint8 and img.flags.c_contiguous and img.shape[2] in (3, 4):
            planes = _cv2().split(img)
        else:
            planes = [img[..., c] for c in range(3)]
        for c in range(3):
            np.copyto(out[c], planes[c], casting="unsafe")
        np.multiply(out, k.reshape(3, 1, 1), out=out)
        np.add(out, b.reshape(3, 1, 1), out=out)
        return out
    np.multiply(img[..., :3], k, out=out, dtype=np.float32)
    np.add(out, b, out=out)
    return out


def to_layout(img_hwc: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(img_hwc.transpose(2, 0, 1) if layout == "NCHW" else img_hwc)


def sample_shape(pp: Preprocess, hw: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """The per-sample model input shape (``(3, h, w)`` or ``(h, w, 3)``): ``size`` x ``size``, or
    ``hw`` for a dynamic-size mode (``resize_short``: :func:`resize_short_size` of the image)."""
    h, w = (pp.size, pp.size) if hw is None else hw
    return (3, h, w) if pp.layout == "NCHW" else (h, w, 3)


# ------------------------------------------------------------------------------ entry points
def _check_input(img) -> tuple[Any, np.ndarray | None]:
    """``(pil, array)``: exactly one is set; PIL images are converted to RGB like the loader."""
    if isinstance(img, _pil().Image):
        if img.width < 1 or img.height < 1:
            raise ImageError(f"image has a zero side ({img.width}x{img.height})")
        return (img if img.mode == "RGB" else img.convert("RGB")), None
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB HWC image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"image has a zero side ({arr.shape[1]}x{arr.shape[0]})")
    return None, arr


def _resize_crop_geometry(h: int, w: int, pp: Preprocess) -> Geometry:
    nh, nw = shorter_side_size(h, w, pp.resize_to)
    top, left = center_crop_offsets(nh, nw, pp.size)
    return Geometry(h, w, nw / w, nh / h, -float(left), -float(top))


def resize_short_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` with the shorter side ``size`` and the longer ``int(size * long / short)``
    (torchvision's ``_compute_resized_output_size`` for a one-element size, no ``max_size``)."""
    if height < 1 or width < 1 or size < 1:
        raise ImageError(f"cannot resize a {width}x{height} image to a shorter side of {size}")
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def _resize_short(pil: Any, arr: np.ndarray | None, pp: Preprocess) -> tuple[np.ndarray, Geometry]:
    """torchvision's ``SemanticSegmentation(resize_size=size)`` resize on the PIL image: the
    shorter side to ``size`` with PIL (skipped when it already has that size, as torchvision does)."""
    if arr is not None:
        if arr.dtype != np.uint8:
            raise ValueError(f"resize_short takes a uint8 or PIL image (got {arr.dtype})")
        pil = _pil().fromarray(np.ascontiguousarray(arr))
    nh, nw = resize_short_size(pil.height, pil.width, pp.size)
    geo = Geometry(pil.height, pil.width, nw / pil.width, nh / pil.height, 0.0, 0.0)
    if (nh, nw) != (pil.height, pil.width):
        pil = pil.resize((nw, nh), _PIL_FILTERS[pp.interpolation])
    return np.asarray(pil), geo


def _pixels(pil: Any, arr: np.ndarray | None, pp: Preprocess, fast: bool) -> tuple[np.ndarray, Geometry]:
    """The resampled HWC pixels (uint8 or float32) and the geometry, per the card's mode."""
    if pp.mode == "resize_short":
        return _resize_short(pil, arr, pp)
    if pp.mode == "letterbox":
        src = np.asarray(pil) if arr is None else arr
        if src.dtype != np.uint8:
            src = np.clip(np.rint(src), 0, 255).astype(np.uint8)
        return letterbox(np.ascontiguousarray(src), pp.size, pp.pad_value, pp.interpolation, pp.letterbox_rule)
    h, w = (pil.height, pil.width) if arr is None else arr.shape[:2]
    if pp.resample == "tensor":
        src = np.asarray(pil) if arr is None else arr
        if pp.mode == "resize_crop":
            return resize_crop(src, pp.resize_to, pp.size, pp.interpolation), _resize_crop_geometry(h, w, pp)
        return resize_exact(src, pp.size, pp.size, pp.interpolation), Geometry(h, w, pp.size / w, pp.size / h, 0.0, 0.0)
    if arr is not None:
        if arr.dtype != np.uint8:
            raise ValueError(f"resample 'pil' takes a uint8 or PIL image (got {arr.dtype}); "
                             f"float input needs resample='tensor'")
        pil = _pil().fromarray(np.ascontiguousarray(arr))
    if pp.mode == "resize_crop":
        return _crop_pixels(pil, pp, fast), _resize_crop_geometry(h, w, pp)
    out = pil.resize((pp.size, pp.size), _pil_filter(pp.interpolation))
    return np.asarray(out), Geometry(h, w, pp.size / w, pp.size / h, 0.0, 0.0)


def _normalize_divided(pixels: np.ndarray, pp: Preprocess, out: np.ndarray) -> np.ndarray:
    """``(pixel / (1 / scale) - mean) / std`` in float32, in that order: torchvision's
    ``ToTensor`` + ``Normalize`` on the PIL image, bit for bit (the ``resize_short`` preset)."""
    x = pixels[..., :3].astype(np.float32) / np.float32(1.0 / pp.scale)
    mean, std = np.asarray(pp.mean, np.float32), np.asarray(pp.std, np.float32)
    y = (x - mean) / std
    np.copyto(out, y.transpose(2, 0, 1) if pp.layout == "NCHW" else y)
    return out


def preprocess(img, pp: Preprocess, *, out: np.ndarray | None = None,
               fast: bool = False) -> tuple[np.ndarray, Geometry]:
    """Turn one decoded RGB image (a PIL image, or an HWC array: uint8, or float in pixel units
    for ``resample="tensor"``) into a model input and the :class:`Geometry` of the transform.

    Returns the per-sample float32 array (CHW or HWC per the card), written into ``out`` when
    given (e.g. ``batch[i]`` of a preallocated batch). ``fast`` trades exactness for speed
    (module docstring). A geometry that cannot be computed raises :class:`ImageError`.
    """
    if pp.mode not in MODES:
        raise ValueError(f"preprocess mode {pp.mode!r} is not implemented by preprocess()")
    pil, arr = _check_input(img)
    pixels, geo = _pixels(pil, arr, pp, fast)
    hw = pixels.shape[:2] if pp.dynamic else None
    shape = sample_shape(pp, hw)
    if (hw is None and pixels.shape[:2] != (pp.size, pp.size)) or pixels.shape[2] not in (3, 4):
        raise ImageError(f"preprocessing gave {pixels.shape}, expected {(pp.size, pp.size, 3)}")
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
    if pp.dynamic:
        return _normalize_divided(pixels, pp, out), geo
    return normalize_into(pixels, pp, out), geo


# ------------------------------------------------------------------------------------ decode
@dataclass(frozen=True)
class DecodeResult:
    """``pil`` (the RGB PIL image, fully decoded) or ``None`` with ``reason``; ``note`` says what
    was converted; ``original_size`` is ``(width, height)`` in the file (before any draft
    downscaling)."""

    pil: Any
    reason: str | None = None
    note: str | None = None
    mode: str | None = None
    original_size: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.pil is not None

    @cached_property
    def image(self) -> np.ndarray | None:
        """The RGB uint8 HWC array (``None`` for an error result)."""
        return None if self.pil is None else np.ascontiguousarray(np.asarray(self.pil, dtype=np.uint8))


# leading bytes of the formats a dataset holds -> format name
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))
_PNM_MAGIC = {b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"}


def sniff_format(data: bytes) -> str | None:
    """The image format its signature bytes announce (``JPEG``, ``PNG`` ...), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] in _PNM_MAGIC and data[2:3].isspace():
        return "PPM"
    return next((name for sig, name in _SIGNATURES if data.startswith(sig)), None)


def _rgb_view(rgbx: np.ndarray, writable: bool = False) -> Any:
    """An RGB PIL image whose memory is the ``(h, w, 4)`` uint8 array ``rgbx`` (no copy: PIL keeps
    an RGB pixel in 4 bytes, the last one padding), or None where this Pillow cannot map it.

    Read-only unless ``writable`` (then pasting into the image writes into the array). The image
    keeps the array alive and remembers it, so that :func:`_row_window` can take rows of it
    without copying. (Pillow's ``frombuffer`` maps such a buffer only as mode RGBX, which its
    resampling would treat as four channels, so its ``map_buffer`` is called with mode RGB.)
    """
    h, w = rgbx.shape[:2]
    if rgbx.dtype != np.uint8 or rgbx.shape[2:] != (4,) or not rgbx.flags.c_contiguous:
        return None
    try:
        core = _pil().core.map_buffer(rgbx, (w, h), "raw", 0, ("RGB", 0, 1))
        img = _pil().new("RGB", (0, 0))._new(core)
    except Exception:  # noqa: BLE001 - another Pillow: the callers copy instead
        return None
    if img.mode != "RGB" or img.size != (w, h):
        return None
    img.readonly = 0 if writable else 1
    img._rgbx_source = (core, rgbx)
    return img


def _decode_jpeg(data: bytes, size: tuple[int, int], scale: int = 1) -> Any:
    """A baseline or progressive RGB JPEG decoded by simplejpeg into an RGB image (:func:`_rgb_view`),
    or None (no simplejpeg, or anything it rejects: PIL then decodes the file and decides).

    Both run libjpeg-turbo with its accurate integer DCT and fancy upsampling (PIL's defaults, also
    when its ``draft`` scales), so the pixels are PIL's; ``strict`` turns libjpeg's warnings
    (corrupt or truncated data) into errors, which sends such files to PIL. ``scale`` (1, 2, 4
    or 8) downscales by DCT scaling while decoding, as PIL's ``draft`` does.
    """
    sj = _simplejpeg()
    if sj is None:
        return None
    want = (-(-size[1] // scale), -(-size[0] // scale))
    try:
        rgbx = sj.decode_jpeg(data, colorspace="RGBX", fastdct=False, fastupsample=False, strict=True,
                              min_height=want[0] if scale > 1 else 0, min_width=want[1] if scale > 1 else 0)
    except Exception:  # noqa: BLE001 - PIL's decode gives this file's verdict
        return None
    if rgbx.shape != (*want, 4):
        return None
    return _rgb_view(rgbx)


def _jpeg_fast_path(data: bytes, max_pixels: int | None, draft: int | None) -> DecodeResult | None:
    """A colour JPEG within the pixel limits decoded by :func:`_decode_jpeg` without PIL's header
    parsing (``draft``: at PIL's draft scale), or None: anything else (and anything simplejpeg
    rejects) takes PIL's path."""
    sj = _simplejpeg()
    if sj is None or not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        height, width, colorspace, _ = sj.decode_jpeg_header(data)
    except Exception:  # noqa: BLE001 - PIL's path reports it
        return None
    pil_limit = _pil().MAX_IMAGE_PIXELS  # PIL warns above it, refuses above twice it: its path does that
    if colorspace not in ("YCbCr", "RGB") or width < 1 or height < 1 or \
            any(cap is not None and width * height > cap for cap in (max_pixels, pil_limit)):
        return None
    scale = 1
    if draft is not None:  # PIL's JpegImageFile.draft: the largest of 8, 4, 2 keeping both sides >= draft
        scale = next(sc for sc in (8, 4, 2, 1) if min(width // draft, height // draft) >= sc)
    img = _decode_jpeg(data, (width, height), scale)
    return None if img is None else DecodeResult(img, None, None, "RGB", (width, height))


def _open_rgb(data: bytes, draft: int | None, max_pixels: int | None) -> DecodeResult:
    """The decode itself; exceptions are turned into reasons by :func:`decode_rgb`."""
    fast = _jpeg_fast_path(data, max_pixels, draft)
    if fast is not None:
        return fast
    try:
        with _pil().open(io.BytesIO(data)) as img:
            fmt = img.format or "image"
            mode = img.mode
            size = img.size
            if max_pixels is not None and size[0] * size[1] > max_pixels:
                return DecodeResult(None, f"refused: {fmt} of {size[0]}x{size[1]} = {size[0] * size[1]} pixels, "
                                          f"over the max_pixels limit of {max_pixels}", mode=mode)
            if draft is not None and fmt == "JPEG":
                img.draft("RGB", (draft, draft))  # DCT scaling by 1/2, 1/4 or 1/8, shorter side kept >= draft
            try:
                img.load()  # force the full decode: truncation surfaces here, not later
            except (OSError, SyntaxError, ValueError) as exc:
                return DecodeResult(None, f"truncated or corrupt {fmt}: {exc}", mode=mode)
            rgb = img if mode == "RGB" else img.convert("RGB")
    except _pil().UnidentifiedImageError:
        fmt = sniff_format(data)
        if fmt is not None:  # the signature says image, but PIL could not parse its header
            return DecodeResult(None, f"corrupt {fmt}: unreadable header ({len(data)} bytes)")
        return DecodeResult(None, f"not an image (unrecognized format, {len(data)} bytes)")
    if rgb.mode != "RGB" or rgb.width < 1 or rgb.height < 1:
        return DecodeResult(None, f"decoded to an unusable image ({rgb.mode} {rgb.width}x{rgb.height})", mode=mode)
    note = None if mode == "RGB" else f"converted {mode} to RGB"
    return DecodeResult(rgb, None, note, mode, size)


def decode_rgb(data: bytes, *, draft: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodeResult:
    """Decode encoded image bytes (JPEG, PNG, ...) to an RGB PIL image, as torchvision's
    ``pil_loader`` does (``Image.open(f).convert("RGB")``, the decode forced to complete). Never
    raises for bad data: the result carries the reason instead.

    Refused before decoding: a header announcing more than ``max_pixels`` pixels (None: no cap).
    ``draft`` (fast mode, not torchvision's reference): let libjpeg downscale a JPEG by 1/2, 1/4
    or 1/8 while decoding, keeping its shorter side at least ``draft`` pixels.
    """
    if not data:
        return DecodeResult(None, "empty file (0 bytes)")
    try:
        return _open_rgb(data, draft, max_pixels)
    except _pil().DecompressionBombError as exc:
        return DecodeResult(None, f"refused: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return DecodeResult(None, f"corrupt image: {exc}")
    except MemoryError:
        return DecodeResult(None, f"refused: out of memory decoding {len(data)} bytes")
    except Exception as exc:  # noqa: BLE001 - one bad file must never end a run
        return DecodeResult(None, f"cannot decode: {type(exc).__name__}: {exc}")


# how a complete file of these formats ends (within its last bytes: JPEG allows trailing padding)
_END_MARKERS = {"JPEG": (b"\xff\xd9", 1024), "PNG": (b"IEND", 64)}


def check_encoded(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an encoded image from its header, without decoding its pixels (a
    client that sends files checks them this cheaply): :class:`ImageError` when the header is not
    an image's, announces more than ``max_pixels`` pixels, or a JPEG / PNG lacks its end marker
    (a truncated file). Damage inside the compressed data is not seen."""
    try:
        with _pil().open(io.BytesIO(data)) as img:
            width, height = img.size
            fmt = img.format or "image"
    except Exception as exc:  # noqa: BLE001 - any unreadable header is this file's error
        fmt = sniff_format(data)
        raise ImageError(f"corrupt {fmt}: unreadable header ({len(data)} bytes)" if fmt else
                         f"not an image (unrecognized format, {len(data)} bytes)") from exc
    if width < 1 or height < 1:
        raise ImageError(f"image has a zero side ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(f"refused: {fmt} of {width}x{height} = {width * height} pixels, over the max_pixels "
                         f"limit of {max_pixels}")
    marker, tail = _END_MARKERS.get(fmt, (b"", 0))
    if marker and marker not in data[-tail:]:
        raise ImageError(f"truncated {fmt}: no end marker ({len(data)} bytes)")
    return width, height


def preprocess_decoded(decoded: DecodeResult, pp: Preprocess, *, out: np.ndarray | None = None,
                       fast: bool = False) -> tuple[np.ndarray, Geometry]:
    """:func:`preprocess` of a :func:`decode_rgb` result, the geometry in the file's pixels
    (also when the decode was drafted); a failed decode raises :class:`ImageError`."""
    if not decoded.ok:
        raise ImageError(decoded.reason)
    x, geo = preprocess(decoded.pil, pp, out=out, fast=fast)
    w0, h0 = decoded.original_size or (geo.orig_w, geo.orig_h)
    if (h0, w0) != (geo.orig_h, geo.orig_w):  # drafted: express the geometry in the file's pixels
        geo = _resize_crop_geometry(h0, w0, pp)
    return x, geo
