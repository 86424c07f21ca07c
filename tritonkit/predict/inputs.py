"""An application's images as run-stream items: paths, encoded bytes, PIL images, numpy arrays.

Every input becomes an item of :mod:`tritonkit.client.pipeline` (``key`` and ``read_bytes()``),
so ``Model.predict`` reads, decodes and prepares it with the eval's own
:func:`~tritonkit.client.pipeline.load_item`: a path is read as eval reads a dataset file, bytes
are decoded as a file's, and an image already in memory (a PIL image, an HxWx3 uint8 RGB array)
is a :class:`~tritonkit.client.pipeline.DecodedItem`, converted to RGB as a decoded file is and
sent without a round trip through an encoder (server-side preprocessing, which takes files,
gets it as a PNG). Whatever cannot be an image becomes that item's error, not an exception.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.client.decode import ImageError
from tritonkit.client.items import FileItem
from tritonkit.client.preprocess_math import DecodeResult

Image = lazy_import("PIL.Image", install_hint="pillow")


@dataclass(frozen=True)
class BytesItem:
    """An encoded image held in memory (JPEG, PNG ... bytes)."""

    key: str
    data: bytes

    def read_bytes(self) -> bytes:
        return self.data


@dataclass(frozen=True, eq=False)
class ImageItem:
    """An image in memory: a PIL image, or a numpy ``[H, W, 3]`` uint8 RGB array (``[H, W]`` gray
    and ``[H, W, 4]`` RGBA are converted to RGB, with a note, as a decoded file would be)."""

    key: str
    image: Any

    def decoded(self) -> DecodeResult:
        try:
            pil = _as_pil(self.image)
            mode = pil.mode
            rgb = pil if mode == "RGB" else pil.convert("RGB")
        except (ImageError, OSError, ValueError, TypeError) as exc:
            return DecodeResult(None, str(exc))
        note = None if mode == "RGB" else f"converted from {mode} to RGB"
        return DecodeResult(rgb, note=note, mode=mode, original_size=rgb.size)

    def read_bytes(self) -> bytes:
        """The image as a PNG file (lossless; for server-side preprocessing, which takes files)."""
        decoded = self.decoded()
        if not decoded.ok:
            raise ImageError(decoded.reason)
        buffer = io.BytesIO()
        decoded.pil.save(buffer, format="PNG")
        return buffer.getvalue()


@dataclass(frozen=True)
class InvalidItem:
    """An input of a type no image can come from; reading it is its error."""

    key: str
    reason: str

    def read_bytes(self) -> bytes:
        raise ImageError(self.reason)


def _as_pil(image: Any) -> Any:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ImageError(f"array of shape {image.shape} and dtype {image.dtype}: expected an [H, W, 3] uint8 RGB "
                             f"array (or [H, W] gray, [H, W, 4] RGBA)")
        if 0 in image.shape:
            raise ImageError(f"empty array (shape {image.shape})")
        return Image.fromarray(np.ascontiguousarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1
                                                    else image))
    image.load()  # a lazily opened file is decoded here; its failure is this image's error
    return image


def to_item(value: Any, index: int) -> Any:
    """One input as an item: a path (``str`` or ``os.PathLike``), bytes, a PIL image or a numpy
    array; anything else an :class:`InvalidItem`. ``index`` names inputs that are not files."""
    key = f"<input {index}>"
    if isinstance(value, (str, os.PathLike)):
        return FileItem(str(value), Path(value), -1)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BytesItem(key, bytes(value))
    if isinstance(value, np.ndarray) or _is_pil(value):
        return ImageItem(key, value)
    return InvalidItem(key, f"cannot predict on a {type(value).__name__}: give a path, bytes, a PIL image or an "
                            f"[H, W, 3] uint8 array")


def _is_pil(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("PIL.") and hasattr(value, "convert") and hasattr(value, "load")


__all__ = ["BytesItem", "ImageItem", "InvalidItem", "to_item"]
