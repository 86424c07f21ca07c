"""Read and decode one encoded image the way torchvision's ImageFolder loader does.

torchvision's ``pil_loader`` is ``Image.open(f).convert("RGB")``; the same conversion is applied
here, so grayscale (``L``, ``LA``, ``I;16``, ``I``, ``F``), palette (``P``), ``CMYK``, ``RGBA``
and other modes are evaluated exactly as a torchvision eval would see them. Such images are
*noted* (the run evaluates them and lists what was converted). Files that cannot give an
image — zero bytes, not an image, truncated or corrupt, larger than the size cap — are
*errors* with a reason. The decode is forced to complete (``Image.load``), so a truncated JPEG
is caught here instead of silently yielding a half-grey image.

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

import io
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.errors import TritonkitError

Image = lazy_import("PIL.Image")  # pillow: a dependency, imported on first decode (keeps --help light)

DEFAULT_MAX_BYTES = 64 << 20  # 64 MiB: far above any photo of a benchmark data set
# PIL's own decompression-bomb threshold, Image.MAX_IMAGE_PIXELS (it only warns up to twice
# this): refused here instead
DEFAULT_MAX_PIXELS = 89_478_485
HEADER_BYTES = 32


class ImageError(TritonkitError, ValueError):
    """One file cannot be used as an image (unreadable, not an image, too large, degenerate
    geometry). The run records the message as that file's error and goes on."""


@dataclass(frozen=True)
class DecodeResult:
    """``pil`` (the RGB PIL image, fully decoded) or ``None`` with ``reason``; ``note`` says what
    was converted; ``original_size`` is ``(width, height)`` in the file (before any draft
    downscaling)."""

    pil: Image.Image | None
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


def _open_checked(data: bytes, draft: int | None, max_pixels: int | None) -> DecodeResult:
    """The decode itself; exceptions are turned into reasons by :func:`decode_image`."""
    try:
        with Image.open(io.BytesIO(data)) as img:
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
    except Image.UnidentifiedImageError:
        fmt = sniff_format(data)
        if fmt is not None:  # the signature says image, but PIL could not parse its header
            return DecodeResult(None, f"corrupt {fmt}: unreadable header ({len(data)} bytes)")
        return DecodeResult(None, f"not an image (unrecognized format, {len(data)} bytes)")
    if rgb.mode != "RGB" or rgb.width < 1 or rgb.height < 1:
        return DecodeResult(None, f"decoded to an unusable image ({rgb.mode} {rgb.width}x{rgb.height})", mode=mode)
    note = None if mode == "RGB" else f"converted {mode} to RGB"
    return DecodeResult(rgb, None, note, mode, size)


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
        return _open_checked(data, draft, max_pixels)
    except ImageError as exc:
        return DecodeResult(None, str(exc))
    except Image.DecompressionBombError as exc:
        return DecodeResult(None, f"refused: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return DecodeResult(None, f"corrupt image: {exc}")
    except MemoryError:
        return DecodeResult(None, f"refused: out of memory decoding {len(data)} bytes")
    except Exception as exc:  # noqa: BLE001 - one bad file must never end a run
        return DecodeResult(None, f"cannot decode: {type(exc).__name__}: {exc}")


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
