"""Decoding real generated files: bad files are errors, odd modes are converted like torchvision."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tritonkit.client.decode import decode_file, decode_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(h=48, w=40, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _torchvision_loader(path) -> np.ndarray:
    """torchvision's ImageFolder loader (``pil_loader``): the reference for conversions."""
    from torchvision.datasets.folder import pil_loader

    return np.asarray(pil_loader(str(path)))


def test_rgb_jpeg_decodes_without_note(tmp_path):
    p = tmp_path / "a.JPEG"
    p.write_bytes(_encode(Image.fromarray(_rgb()), "JPEG", quality=95))
    r = decode_file(p)
    assert r.ok and r.note is None and r.reason is None
    assert r.image.shape == (48, 40, 3) and r.image.dtype == np.uint8
    np.testing.assert_array_equal(r.image, _torchvision_loader(p))


@pytest.mark.parametrize("name, content, reason", [
    ("empty.JPEG", b"", "empty file"),
    ("random.JPEG", np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
    ("notes.JPEG", b"this is a text file renamed to .JPEG\n" * 20, "not an image"),
])
def test_non_images_are_errors(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    r = decode_file(p)
    assert not r.ok and r.image is None
    assert reason in r.reason


def test_truncated_jpeg_is_an_error_not_a_grey_image(tmp_path):
    full = _encode(Image.fromarray(_rgb(200, 200)), "JPEG", quality=95)
    p = tmp_path / "cut.JPEG"
    p.write_bytes(full[: len(full) // 2])
    r = decode_file(p)
    assert not r.ok
    assert "truncated" in r.reason


def test_truncated_png_is_an_error(tmp_path):
    full = _encode(Image.fromarray(_rgb(100, 100)), "PNG")
    r = decode_image(full[: len(full) - 200])
    assert not r.ok and r.reason


def test_corrupt_jpeg_headers_are_errors_that_say_jpeg(tmp_path):
    full = _encode(Image.fromarray(_rgb(120, 120)), "JPEG", quality=95)
    dht = full.find(b"\xff\xc4")                      # Huffman table segment overwritten
    r = decode_image(full[:dht + 5] + b"\xff" * 40 + full[dht + 45:])
    assert not r.ok and r.reason.startswith("corrupt JPEG"), r.reason
    sof = full.find(b"\xff\xc0")                      # frame header with zero width and height
    r = decode_image(full[:sof + 5] + b"\x00\x00\x00\x00" + full[sof + 9:])
    assert not r.ok and r.reason.startswith("corrupt JPEG"), r.reason


def test_missing_file_is_an_error_result(tmp_path):
    r = decode_file(tmp_path / "nope.jpg")
    assert not r.ok and "cannot read" in r.reason


def _cmyk_jpeg() -> bytes:
    return _encode(Image.fromarray(_rgb(32, 24, 5)).convert("CMYK"), "JPEG", quality=95)


def _gray_alpha() -> Image.Image:
    img = Image.fromarray(_rgb()[..., 0].copy())
    img.putalpha(Image.fromarray(_rgb(seed=2)[..., 0].copy()))
    return img


def _palette_png() -> bytes:
    img = Image.fromarray(_rgb(30, 30, 6)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    return _encode(img, "PNG", transparency=0)


@pytest.mark.parametrize("mode, data_fn", [
    ("L", lambda: _encode(Image.fromarray(_rgb()[..., 0]), "JPEG")),
    ("LA", lambda: _encode(_gray_alpha(), "PNG")),
    ("I;16", lambda: _encode(Image.fromarray((_rgb()[..., 0].astype(np.uint16) * 300)), "PNG")),
    ("CMYK", _cmyk_jpeg),
    ("RGBA", lambda: _encode(Image.fromarray(np.dstack([_rgb(), _rgb(seed=1)[..., :1]])), "PNG")),
    ("P", _palette_png),
])
def test_other_modes_convert_like_torchvision_and_are_noted(tmp_path, mode, data_fn):
    p = tmp_path / f"img_{mode.replace(';', '')}.png"
    p.write_bytes(data_fn())
    with Image.open(p) as im:
        assert im.mode.startswith(mode[0])  # the file really is in that mode
    r = decode_file(p)
    assert r.ok, r.reason
    assert r.note is not None and "to RGB" in r.note
    assert r.image.ndim == 3 and r.image.shape[2] == 3 and r.image.dtype == np.uint8
    np.testing.assert_array_equal(r.image, _torchvision_loader(p))
