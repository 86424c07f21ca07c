"""Image preprocessing (no I/O): a decoded image -> one model input and its geometry.

* **Classification** (``resize_crop``, and ``resize``) with a card's ``resample="pil"`` (the
  default) equals torchvision's eval transform on the PIL image ``ImageFolder`` loads
  (``Resize(resize, interpolation)`` -> ``CenterCrop(size)`` -> ``ToTensor`` -> ``Normalize``),
  which is where published ImageNet accuracies come from: PIL resamples the uint8 image in C
  (horizontal pass, uint8 rounding, vertical pass). The same passes are run one at a time on
  what the crop keeps, bit-identical to resizing the whole image and cropping: the horizontal
  pass only on the source rows the vertical pass reads (a view of the decoded array, no copy),
  the vertical pass only on the crop's columns, and either pass only on the crop's outputs where
  that is exact (:func:`~tritonkit.client.preprocess_math.exact_box`: a shorter side resized to
  256 has a binary-fraction scale). The crop lands in a uint8 buffer and normalisation writes
  float32 straight into the output (optionally a slot of a preallocated batch), plane by
  plane; nothing is float64.
* ``resample="tensor"`` keeps torchvision's *tensor* path (float resampling with the
  antialiased kernels of :func:`resize_weights`), computing only the cropped window.
* ``fast=True`` (an option of this API, not torchvision's reference): PIL resamples only the
  cropped window (``Image.resize(box=...)``, also on the longer side, where the float32 box
  shifts the filter slightly), and :func:`preprocess_bytes` lets libjpeg downscale large JPEGs
  while decoding (``draft``). Its output differs slightly from the exact
  mode; measure the accuracy change before using it.
* **Letterbox** (YOLO) equals ultralytics' validation transform, or its predictor's (the card's
  ``letterbox_rule``; :func:`letterbox_plan`).
* **resize_short** (segmentation) equals torchvision's ``SemanticSegmentation`` preset on the PIL
  image: the shorter side resized with PIL, no crop, ``ToTensor`` + ``Normalize`` in their order.

Memory is bounded by the output size whatever the aspect ratio: a resized side far larger than
the target (a 1x20000 image) is resampled as a window only, and a geometry that cannot be
computed raises :class:`~tritonkit.client.decode.ImageError`, the per-file error.

The implementation is :mod:`tritonkit.client.preprocess_math` (dependency-free, so the
server-side preprocess model runs the same code); this module gives it the card's types and
tritonkit's error type: every function here raises :class:`~tritonkit.client.decode.ImageError`
where the pure module raises its own ``ImageError``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from tritonkit.client import preprocess_math as pm
from tritonkit.client.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodeResult, ImageError, decode_image
from tritonkit.client.preprocess_math import (  # noqa: F401  (re-exported: the pure parts that raise nothing)
    EXACT_MAX_PIXELS, LETTERBOX_RULES, MAX_WINDOW_WEIGHTS, LetterboxPlan, center_crop_offsets, normalize,
    normalize_into, sample_shape, to_layout)
from tritonkit.spec import Geometry, Preprocess


def _as_image_error(fn: Callable) -> Callable:
    """``fn`` of the pure module, raising tritonkit's :class:`ImageError` for its per-image error."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except pm.ImageError as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError(str(exc)) from exc
    return wrapper


shorter_side_size = _as_image_error(pm.shorter_side_size)
weights_window = _as_image_error(pm.weights_window)
resize_weights = _as_image_error(pm.resize_weights)
resize_crop = _as_image_error(pm.resize_crop)
resize_exact = _as_image_error(pm.resize_exact)
pil_resize_crop = _as_image_error(pm.pil_resize_crop)
letterbox_plan = _as_image_error(pm.letterbox_plan)
letterbox = _as_image_error(pm.letterbox)
resize_short_size = _as_image_error(pm.resize_short_size)
_preprocess_decoded = _as_image_error(pm.preprocess_decoded)
preprocess = _as_image_error(pm.preprocess)


def draft_size(pp: Preprocess) -> int | None:
    """The shorter side a JPEG may be DCT-downscaled to while decoding in fast mode (the resize
    target of ``resize_crop``); None for modes whose geometry must stay in original pixels."""
    return pp.resize_to if pp.mode == "resize_crop" else None


def preprocess_bytes(data: bytes, pp: Preprocess, *, fast: bool = False, max_bytes: int | None = DEFAULT_MAX_BYTES,
                     max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, Geometry, DecodeResult]:
    """Decode encoded bytes and preprocess them; ``fast`` also lets libjpeg downscale while
    decoding (:func:`draft_size`). Raises :class:`ImageError` for a file that gives no input."""
    decoded = decode_image(data, max_bytes=max_bytes, draft=draft_size(pp) if fast else None, max_pixels=max_pixels)
    x, geo = _preprocess_decoded(decoded, pp, fast=fast)
    return x, geo, decoded
