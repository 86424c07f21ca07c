"""Read and decode one encoded image the way torchvision's ImageFolder loader does.

torchvision's ``pil_loader`` is ``Image.open(f).convert("RGB")``; the same conversion is applied
here, so grayscale (``L``, ``LA``, ``I;16``, ``I``, ``F``), palette (``P``), ``CMYK``, ``RGBA``
and other modes are evaluated exactly as a torchvision eval would see them. Such images are
*noted* (the run evaluates them and lists what was converted). Files that cannot give an
image — zero bytes, not an image, truncated or corrupt, larger than the size cap — are
*errors* with a reason. The decode is forced to complete (``Image.load``), so a truncated JPEG
is caught here instead of silently yielding a half-grey image.

The decode itself is :func:`tritonkit.client.preprocess_math.decode_rgb` (also run by the
server-side preprocess model); this module adds the bounded file reading and the size cap. Colour
JPEGs are decoded by simplejpeg when it is installed: the same libjpeg-turbo with PIL's settings
(accurate DCT, fancy upsampling), so the same pixels, without PIL's per-file Python; the RGB PIL
image then shares the decoded array's memory. Anything simplejpeg rejects or warns about
(corrupt, truncated data), and every other format, is decoded by PIL, whose verdict stands.

The decoded image is handed on as the RGB **PIL image** (:attr:`DecodeResult.pil`), so the
classification preprocessing resamples it with PIL's C code exactly as torchvision's
transforms do; :attr:`DecodeResult.image` gives the RGB uint8 HWC array for code that wants
one (computed on first use).

Reading is bounded (:func:`read_image_bytes`): the file's size is checked against ``max_bytes``
(:data:`DEFAULT_MAX_BYTES` unless given) and its first bytes must carry an image signature
before the rest is read, so a 5 GB file named ``.JPEG`` is refused from its size and a text
file from its first bytes, without reading either whole. :class:`ImageError` is the per-file
error: the run records its message as that file's reason and goes on.
"""

from __future__ import annotations

import os
from pathlib import Path

from tritonkit.client import preprocess_math as pm
from tritonkit.client.preprocess_math import DEFAULT_MAX_PIXELS, DecodeResult, sniff_format  # noqa: F401  (re-exported)
from tritonkit.errors import TritonkitError

DEFAULT_MAX_BYTES = 64 << 20  # 64 MiB: far above any photo of a benchmark data set
HEADER_BYTES = 32


class ImageError(TritonkitError, pm.ImageError):
    """One file cannot be used as an image (unreadable, not an image, too large, degenerate
    geometry). The run records the message as that file's error and goes on. (A ValueError, as
    the dependency-free :class:`tritonkit.client.preprocess_math.ImageError` it refines.)"""


def format_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KiB``: a byte count for a one-line reason."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def _check_size(size: int, max_bytes: int | None) -> None:
    if size <= 0:
        raise ImageError("empty file (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise ImageError(f"refused: file is {format_bytes(size)} ({size} bytes), over the "
                         f"{format_bytes(max_bytes)} max_bytes limit")


def read_image_bytes(path: str | Path, *, offset: int = 0, size: int | None = None,
                     max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The encoded bytes of an image file, or of ``size`` bytes at ``offset`` (a tar member).

    The size is checked first (``max_bytes``; None = no cap), then the first bytes must carry an
    image signature (:func:`sniff_format`); only then is the rest read. Raises
    :class:`ImageError` with the reason; ``OSError`` from the file system propagates.
    """
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size - offset
        _check_size(size, max_bytes)
        f.seek(offset)
        head = f.read(min(size, HEADER_BYTES))
        if sniff_format(head) is None:
            if not head:
                raise ImageError(f"file ends before its data (0 of {size} bytes)")
            raise ImageError(f"not an image (unrecognized header {head[:8].hex()}, {size} bytes)")
        data = head + f.read(size - len(head))
    if len(data) != size:
        raise ImageError(f"file ends early (read {len(data)} of {size} bytes)")
    return data


def decode_image(data: bytes, *, max_bytes: int | None = DEFAULT_MAX_BYTES, draft: int | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodeResult:
    """Decode encoded image bytes (JPEG, PNG, ...) to an RGB PIL image. Never raises for bad data.

    Refused before decoding: more than ``max_bytes`` bytes, or a header announcing more than
    ``max_pixels`` pixels (None: no cap).

    ``draft`` (fast mode, not torchvision's reference): let libjpeg downscale a JPEG by 1/2, 1/4
    or 1/8 while decoding, keeping its shorter side at least ``draft`` pixels.
    """
    if not data:
        return DecodeResult(None, "empty file (0 bytes)")
    try:
        _check_size(len(data), max_bytes)
    except ImageError as exc:
        return DecodeResult(None, str(exc))
    return pm.decode_rgb(data, draft=draft, max_pixels=max_pixels)


def decode_file(path, *, max_bytes: int | None = DEFAULT_MAX_BYTES, draft: int | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodeResult:
    """:func:`decode_image` on a file read with :func:`read_image_bytes`; an unreadable, oversized
    or non-image file is an error result, not an exception."""
    try:
        data = read_image_bytes(path, max_bytes=max_bytes)
    except ImageError as exc:
        return DecodeResult(None, str(exc))
    except OSError as exc:
        return DecodeResult(None, f"cannot read {path}: {exc.strerror or exc}")
    return decode_image(data, max_bytes=max_bytes, draft=draft, max_pixels=max_pixels)
