"""Decode one encoded image to RGB uint8 HWC, the way torchvision's ImageFolder loader does.

torchvision's ``pil_loader`` is ``Image.open(f).convert("RGB")``; the same conversion is applied
here, so grayscale (``L``, ``LA``, ``I;16``, ``I``, ``F``), palette (``P``), ``CMYK``, ``RGBA``
and other modes are evaluated exactly as a torchvision eval would see them. Such images are
*noted* (the run evaluates them and lists what was converted). Files that cannot give an
image — zero bytes, not an image, truncated or corrupt — are *errors* with a reason. The
decode is forced to complete (``Image.load``), so a truncated JPEG is caught here instead of
silently yielding a half-grey image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodeResult:
    """``image`` (RGB uint8 HWC) or ``None`` with ``reason``; ``note`` says what was converted."""

    image: np.ndarray | None
    reason: str | None = None
    note: str | None = None
    mode: str | None = None

    @property
    def ok(self) -> bool:
        return self.image is not None


# leading bytes of the formats a dataset holds -> format name
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def sniff_format(data: bytes) -> str | None:
    """The image format its signature bytes announce (``JPEG``, ``PNG`` ...), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for sig, name in _SIGNATURES if data.startswith(sig)), None)


def decode_image(data: bytes) -> DecodeResult:
    """Decode encoded image bytes (JPEG, PNG, ...) to RGB uint8 HWC. Never raises for bad data."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return DecodeResult(None, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "image"
            mode = img.mode
            try:
                img.load()  # force the full decode: truncation surfaces here, not later
            except (OSError, SyntaxError, ValueError) as exc:
                return DecodeResult(None, f"truncated or corrupt {fmt}: {exc}", mode=mode)
            rgb = img if mode == "RGB" else img.convert("RGB")
            array = np.asarray(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        fmt = sniff_format(data)
        if fmt is not None:  # the signature says image, but PIL could not parse its header
            return DecodeResult(None, f"corrupt {fmt}: unreadable header ({len(data)} bytes)")
        return DecodeResult(None, f"not an image (unrecognized format, {len(data)} bytes)")
    except Image.DecompressionBombError as exc:
        return DecodeResult(None, f"refused: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return DecodeResult(None, f"corrupt image: {exc}")
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        return DecodeResult(None, f"decoded to an unusable shape {array.shape}", mode=mode)
    note = None if mode == "RGB" else f"converted {mode} to RGB"
    return DecodeResult(np.ascontiguousarray(array), None, note, mode)


def decode_file(path) -> DecodeResult:
    """:func:`decode_image` on a file; an unreadable file is an error result, not an exception."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return DecodeResult(None, f"cannot read {path}: {exc.strerror or exc}")
    return decode_image(data)
