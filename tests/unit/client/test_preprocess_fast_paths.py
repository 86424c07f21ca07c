"""The faster exact paths of classification decode + preprocessing give torchvision's PIL-path
pixels bit for bit: resampling only what the crop keeps (row windows, exact resize boxes), the
zero-copy RGB view of a decoded array, simplejpeg's decode against PIL's, the plane-wise
normalisation against the per-pixel formula."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from tritonkit.cards import get_card
from tritonkit.client import preprocess_math as pm
from tritonkit.client.decode import decode_image
from tritonkit.client.preprocess import pil_resize_crop, preprocess

# (height, width): landscape, portrait, square, exactly the resize side, odd and extreme shapes
SIZES = [(375, 500), (500, 375), (480, 640), (640, 427), (333, 500), (256, 300), (300, 256), (224, 224),
         (257, 1000), (1000, 257), (231, 233), (480, 480), (97, 640), (512, 768)]


def _photo(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    """Smooth content plus noise (resampling of pure noise or flat colour would hide rounding)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, channels), dtype=np.uint8)
    small = Image.fromarray(base[..., 0] if channels == 1 else base)
    smooth = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
    noisy = smooth + rng.integers(-20, 21, smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _reference_crop(img: Image.Image, resize: int, crop: int, interpolation: str) -> np.ndarray:
    """torchvision's ``CenterCrop(crop)(Resize(resize)(img))``: PIL's full resize, then the crop."""
    w, h = img.size
    nh, nw = pm.shorter_side_size(h, w, resize)
    top, left = pm.center_crop_offsets(nh, nw, crop)
    flt = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.BICUBIC
    return np.asarray(img.resize((nw, nh), flt))[top:top + crop, left:left + crop]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("resize,crop", [(256, 224), (232, 224), (256, 256), (160, 128), (342, 299)])
def test_window_resampling_equals_full_resize_then_crop(resize, crop, interpolation):
    for i, (h, w) in enumerate(SIZES):
        if min(h, w) < 8:
            continue
        img = Image.fromarray(_photo(h, w, i))
        ours = np.asarray(pil_resize_crop(img, resize, crop, interpolation))
        np.testing.assert_array_equal(ours, _reference_crop(img, resize, crop, interpolation), err_msg=f"{w}x{h}")


def test_exact_boxes_are_taken_on_dyadic_axes_only():
    # 375 -> 256: the scale 375/256 is a binary fraction, so the crop's box is exact
    assert pm.exact_box(375, 256, 16, 224) == (375 * 16 / 256, 375 * 240 / 256)
    assert pm.exact_box(375, 256, 16, 224, offset=20) == (375 * 16 / 256 - 20, 375 * 240 / 256 - 20)
    # 500 -> 341 and 480 -> 232 are not: PIL's float32 box would shift the filter's centers
    assert pm.exact_box(500, 341, 58, 224) is None
    assert pm.exact_box(480, 232, 4, 224) is None
    # a box that would start before the window is refused
    assert pm.exact_box(375, 256, 16, 224, offset=40) is None
    plan = pm._crop_plan(375, 500, 256, 224, "bilinear")
    assert plan.ybox is not None and plan.xbox is None
    plan = pm._crop_plan(500, 375, 256, 224, "bilinear")
    assert plan.xbox is not None and plan.ybox is None


def test_source_span_holds_every_row_the_resize_reads():
    """Rows outside the span must not change the crop: blank them and compare."""
    for h, w in [(375, 500), (640, 480), (1000, 257)]:
        for interpolation in ("bilinear", "bicubic"):
            pixels = _photo(h, w, 7)
            nh, nw = pm.shorter_side_size(h, w, 256)
            top, _ = pm.center_crop_offsets(nh, nw, 224)
            r0, r1 = pm.pil_source_span(h, nh, top, 224, interpolation, margin=0)
            assert 0 <= r0 < r1 <= h
            blanked = np.zeros_like(pixels)
            blanked[r0:r1] = pixels[r0:r1]
            full = _reference_crop(Image.fromarray(pixels), 256, 224, interpolation)
            np.testing.assert_array_equal(_reference_crop(Image.fromarray(blanked), 256, 224, interpolation), full)


def test_rgb_view_shares_the_array_and_its_row_windows():
    rgbx = np.zeros((30, 20, 4), np.uint8)
    rgbx[..., :3] = _photo(30, 20, 1)
    img = pm._rgb_view(rgbx)
    assert img.mode == "RGB" and img.size == (20, 30) and img.readonly
    np.testing.assert_array_equal(np.asarray(img), rgbx[..., :3])
    window = pm._row_window(img, 5, 17)
    np.testing.assert_array_equal(np.asarray(window), rgbx[5:17, :, :3])
    rgbx[6, 3, 0] ^= 0xFF  # the window is a view of the array, not a copy
    assert np.asarray(window)[1, 3, 0] == rgbx[6, 3, 0]
    # an image modified in place no longer reads from the array: its window is a copy of it
    img.paste((1, 2, 3), (0, 0, 20, 30))
    assert np.asarray(pm._row_window(img, 5, 17)).tolist() == [[[1, 2, 3]] * 20] * 12
    writable = pm._rgb_view(np.zeros((4, 4, 4), np.uint8), writable=True)
    writable.paste((9, 8, 7), (0, 0, 4, 4))
    assert writable._rgbx_source[1][..., :3].tolist() == [[[9, 8, 7]] * 4] * 4


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels,dtype", [(3, np.uint8), (4, np.uint8), (3, np.float32)])
def test_normalize_into_equals_the_per_pixel_formula(layout, channels, dtype):
    pp = dataclasses.replace(get_card("resnet50").preprocess, layout=layout)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (224, 224, channels)).astype(dtype)
    k, b = pm._affine(pp)
    expected = img[..., :3].astype(np.float32) * k + b       # float32 throughout, as torchvision's ToTensor
    if layout == "NCHW":
        expected = expected.transpose(2, 0, 1)
    out = np.full(pm.sample_shape(pp), np.nan, np.float32)
    pm.normalize_into(img, pp, out)
    np.testing.assert_array_equal(out, expected)
    std = np.asarray(pp.std, np.float32)
    reference = (img[..., :3].astype(np.float32) / 255.0 - np.asarray(pp.mean, np.float32)) / std
    np.testing.assert_allclose(out, reference.transpose(2, 0, 1) if layout == "NCHW" else reference, atol=1e-6)


def _encode(pixels: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **save)
    return buf.getvalue()


JPEG_VARIANTS = [dict(quality=90), dict(quality=95, subsampling=0), dict(quality=80, subsampling=1),
                 dict(quality=90, progressive=True), dict(quality=90, keep_rgb=True, subsampling=0),
                 dict(quality=75, optimize=True), dict(quality=90, restart_marker_rows=1)]


@pytest.mark.parametrize("save", JPEG_VARIANTS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_simplejpeg_decode_equals_pils(save):
    pytest.importorskip("simplejpeg")
    for i, (h, w) in enumerate([(375, 500), (333, 501), (17, 33), (480, 640)]):
        data = _encode(_photo(h, w, i), **save)
        decoded = decode_image(data)
        assert decoded.ok and decoded.note is None and decoded.original_size == (w, h)
        assert getattr(decoded.pil, "_rgbx_source", None) is not None  # simplejpeg's, not PIL's
        with Image.open(io.BytesIO(data)) as ref:
            np.testing.assert_array_equal(decoded.image, np.asarray(ref.convert("RGB")))


def test_jpegs_simplejpeg_does_not_take_go_to_pil(monkeypatch):
    """Grayscale and CMYK JPEGs, corrupt data libjpeg only warns about, and a missing simplejpeg:
    PIL decodes (and judges) them exactly as before."""
    gray = _encode(_photo(60, 80, 1, channels=1))
    cmyk_buf = io.BytesIO()
    Image.fromarray(_photo(60, 80, 2)).convert("CMYK").save(cmyk_buf, "JPEG")
    for data, mode in [(gray, "L"), (cmyk_buf.getvalue(), "CMYK")]:
        decoded = decode_image(data)
        assert decoded.ok and decoded.mode == mode and decoded.note == f"converted {mode} to RGB"
        with Image.open(io.BytesIO(data)) as ref:
            np.testing.assert_array_equal(decoded.image, np.asarray(ref.convert("RGB")))
    good = _encode(_photo(120, 160, 3), quality=90)
    damaged = bytearray(good)
    damaged[len(good) // 2: len(good) // 2 + 40] = bytes(40)  # libjpeg warns (corrupt data), PIL decodes on
    decoded = decode_image(bytes(damaged))
    with Image.open(io.BytesIO(bytes(damaged))) as ref:
        ref.load()
        np.testing.assert_array_equal(decoded.image, np.asarray(ref.convert("RGB")))
    assert not decode_image(good[: len(good) // 2]).ok  # truncated: PIL's verdict, an error
    monkeypatch.setattr(pm, "_simplejpeg", lambda: None)
    without = decode_image(good)
    assert without.ok and getattr(without.pil, "_rgbx_source", None) is None
    np.testing.assert_array_equal(without.image, decode_image(good).image)


@pytest.mark.parametrize("card_name", ["resnet50", "gluon_resnet50_v1b"])
def test_decode_and_preprocess_equal_torchvision_pil_path(card_name):
    """End to end on JPEG bytes: the client's path against ``pil_loader`` + torchvision's transform."""
    from torchvision import transforms as T

    pp = get_card(card_name).preprocess
    mode = T.InterpolationMode.BILINEAR if pp.interpolation == "bilinear" else T.InterpolationMode.BICUBIC
    reference = T.Compose([T.Resize(pp.resize_to, interpolation=mode), T.CenterCrop(pp.size), T.ToTensor(),
                           T.Normalize(pp.mean, pp.std)])
    for i, (h, w) in enumerate(SIZES):
        data = _encode(_photo(h, w, 40 + i), quality=90)
        ours, _ = preprocess(decode_image(data).pil, pp)
        ref = reference(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0, err_msg=f"{w}x{h}")


def test_simplejpeg_draft_decode_equals_pils_draft():
    """Fast mode's DCT-scaled decode: the same scale and pixels as PIL's ``draft``."""
    pytest.importorskip("simplejpeg")
    for (h, w), draft in [((375, 500), 256), ((1200, 1600), 256), ((3000, 2000), 256), ((4001, 999), 224)]:
        data = _encode(_photo(h, w, 5), quality=90)
        ours = pm.decode_rgb(data, draft=draft)
        assert ours.original_size == (w, h) and getattr(ours.pil, "_rgbx_source", None) is not None
        with Image.open(io.BytesIO(data)) as ref:
            ref.draft("RGB", (draft, draft))
            ref.load()
            np.testing.assert_array_equal(ours.image, np.asarray(ref.convert("RGB")))
