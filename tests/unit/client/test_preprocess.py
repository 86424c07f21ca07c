"""Preprocessing: parity with torchvision's eval transforms, letterbox geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.client.decode import decode_image
from tritonkit.spec import Geometry
from tritonkit.client.preprocess import (
    center_crop_offsets, letterbox, letterbox_plan, preprocess, preprocess_bytes, resize_weights, shorter_side_size)

SIZES = [(375, 500), (500, 333), (224, 224), (800, 600), (256, 300), (100, 180), (257, 1000)]


def _torchvision_eval(img01: np.ndarray, card_name: str) -> np.ndarray:
    """torchvision's eval transform on a float64 CHW tensor (float64 so torch's own rounding
    does not blur the comparison: its float32 kernels differ from its float64 ones by ~1e-5)."""
    import torch
    from torchvision.transforms import v2 as T

    pp = get_card(card_name).preprocess
    mode = T.InterpolationMode.BILINEAR if pp.interpolation == "bilinear" else T.InterpolationMode.BICUBIC
    t = torch.from_numpy(img01).permute(2, 0, 1)
    tf = T.Compose([T.Resize(pp.resize, interpolation=mode, antialias=True), T.CenterCrop(pp.size),
                    T.Normalize(pp.mean, pp.std)])
    return tf(t).numpy()


@pytest.mark.parametrize("card_name", ["resnet50", "gluon_resnet50_v1b", "darknet53", "demo_shapes"])
@pytest.mark.parametrize("hw", SIZES)
def test_resize_crop_matches_torchvision_eval_transform(card_name, hw):
    """The tensor-path option (``resample="tensor"``) against torchvision on a float tensor."""
    rng = np.random.default_rng(hash(hw) % 2**32)
    pixels = rng.random((*hw, 3)) * 255.0
    ours, _ = preprocess(pixels.astype(np.float32), _tensor_path(get_card(card_name).preprocess))
    ref = _torchvision_eval(pixels / 255.0, card_name)
    assert ours.shape == ref.shape == get_card(card_name).input.dims
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def _tensor_path(pp):
    return dataclasses.replace(pp, resample="tensor")


def test_resize_weights_match_torch_antialias_kernel():
    import torch

    for in_size, out_size, interp in [(500, 341, "bilinear"), (375, 256, "bicubic"), (100, 256, "bilinear")]:
        eye = torch.eye(in_size, dtype=torch.float64).reshape(in_size, 1, 1, in_size)
        out = torch.nn.functional.interpolate(eye, size=(1, out_size), mode=interp, antialias=True)
        np.testing.assert_allclose(resize_weights(in_size, out_size, interp), out.reshape(in_size, out_size).T.numpy(),
                                   atol=1e-12)


def test_shorter_side_and_crop_offsets_follow_torchvision():
    assert shorter_side_size(375, 500, 256) == (256, 341)
    assert shorter_side_size(500, 333, 256) == (384, 256)
    assert center_crop_offsets(256, 341, 224) == (16, 58)


def test_uint8_and_float_input_agree():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    pp = _tensor_path(get_card("demo_shapes").preprocess)
    a, _ = preprocess(img, pp)
    b, _ = preprocess(img.astype(np.float32), pp)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match="RGB HWC"):
        preprocess(np.zeros((10, 10), np.uint8), get_card("resnet18").preprocess)


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (100, 700), (640, 640), (37, 53)])
def test_letterbox_geometry_round_trip(hw):
    h, w = hw
    img = np.full((h, w, 3), 200, np.uint8)
    out, geo = letterbox(img, 640, rule="predict")
    scale, px, py = (geo.scale_x if w >= h else geo.scale_y), geo.pad_x, geo.pad_y
    assert out.shape == (640, 640, 3)
    assert scale == pytest.approx(min(640 / h, 640 / w))
    # the image content occupies exactly the unpadded window; the rest is the pad value
    inner = out[int(py):int(py) + round(h * scale), int(px):int(px) + round(w * scale)]
    assert (inner == 200).all()
    assert (out == 114).sum() == 3 * (640 * 640 - inner.shape[0] * inner.shape[1])
    geo = Geometry(h, w, scale, scale, px, py)
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.5, w * 0.75, h * 0.9]], np.float32)
    in_model = boxes * scale + np.array([px, py, px, py], np.float32)
    np.testing.assert_allclose(geo.to_original(in_model), boxes, atol=1e-3)


def test_to_original_clips_to_the_image():
    geo = Geometry(100, 200, 2.0, 2.0, 10.0, 20.0)
    out = geo.to_original(np.array([[-50, -50, 1000, 1000]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 200, 100]])


def test_yolo_preprocess_scales_pixels_to_unit_range():
    img = np.full((320, 640, 3), 255, np.uint8)
    x, geo = preprocess(img, get_card("yolov5s").preprocess)
    assert x.shape == (3, 640, 640)
    assert x.max() == pytest.approx(1.0) and x.min() == pytest.approx(114 / 255)
    assert (geo.scale_x, geo.pad_x, geo.pad_y) == (1.0, 0.0, 160.0)


# -- the PIL path: torchvision's reference (ImageFolder's loader + transforms on the PIL image) --

def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth image with noise (photo-like: resampling rounds differently on flat and sharp areas)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (h // 7 + 2, w // 7 + 2, 3), dtype=np.uint8)).resize((w, h), 3)
    noisy = np.asarray(base).astype(np.int16) + rng.integers(-12, 13, (h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _file_in_mode(mode: str, h: int, w: int, seed: int) -> bytes:
    import io

    from PIL import Image

    rgb = Image.fromarray(_photo(h, w, seed))
    buf = io.BytesIO()
    if mode == "RGB":
        rgb.save(buf, "JPEG", quality=90)
    elif mode == "L":
        rgb.convert("L").save(buf, "JPEG", quality=90)
    elif mode == "CMYK":
        rgb.convert("CMYK").save(buf, "JPEG", quality=90)
    elif mode == "RGBA":
        rgba = rgb.copy()
        rgba.putalpha(Image.fromarray(_photo(h, w, seed + 1)[..., 0]))
        rgba.save(buf, "PNG")
    elif mode == "P":
        rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(buf, "PNG")
    elif mode == "I;16":
        Image.fromarray(_photo(h, w, seed)[..., 0].astype(np.uint16) * 257).save(buf, "PNG")
    return buf.getvalue()


def _torchvision_pil_reference(data: bytes, pp) -> np.ndarray:
    """torchvision's eval on the PIL image its ImageFolder loader gives (``pil_loader``)."""
    import io

    import torch
    from PIL import Image
    from torchvision import transforms as T

    torch.set_num_threads(1)
    mode = T.InterpolationMode.BILINEAR if pp.interpolation == "bilinear" else T.InterpolationMode.BICUBIC
    img = Image.open(io.BytesIO(data)).convert("RGB")
    resize = T.Resize(pp.resize, interpolation=mode) if pp.mode == "resize_crop" else \
        T.Resize((pp.size, pp.size), interpolation=mode)
    steps = [resize, T.CenterCrop(pp.size)] if pp.mode == "resize_crop" else [resize]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(pp.mean, pp.std)])(img).numpy()


PHOTO_SIZES = [(375, 500), (500, 375), (333, 500), (480, 640), (256, 256), (224, 300), (90, 1200), (1000, 57),
               (257, 255), (64, 64), (1, 300)]


@pytest.mark.parametrize("card_name", ["resnet50", "gluon_resnet50_v1b", "darknet53", "demo_shapes", "ssd_resnet18"])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "CMYK", "P", "I;16"])
def test_pil_path_equals_torchvision_pil_reference(card_name, mode):
    """The default (``resample="pil"``) on decoded files of many sizes and modes equals
    torchvision's PIL-path eval transform within 1e-5 after normalisation (bilinear and bicubic
    cards; resize_crop and plain resize)."""
    pp = get_card(card_name).preprocess
    assert pp.resample == "pil"
    for i, (h, w) in enumerate(PHOTO_SIZES):
        data = _file_in_mode(mode, h, w, seed=i)
        decoded = decode_image(data)
        assert decoded.ok, decoded.reason
        ours, geo = preprocess(decoded.pil, pp)
        ref = _torchvision_pil_reference(data, pp)
        assert ours.shape == ref.shape == get_card(card_name).input.dims and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0, err_msg=f"{mode} {h}x{w}")
        from_array, _ = preprocess(decoded.image, pp)  # the uint8 array gives the same input
        np.testing.assert_array_equal(from_array, ours)


def test_pil_path_differs_from_the_tensor_path_the_card_can_ask_for():
    """The two resamplings really differ (uint8 rounding between PIL's passes), so the parity
    tests above and the tensor-path ones each check their own path."""
    img = _photo(375, 500, 0)
    pp = get_card("resnet50").preprocess
    pil, _ = preprocess(img, pp)
    tensor, _ = preprocess(img, _tensor_path(pp))
    assert 1e-3 < np.abs(pil - tensor).max() < 0.05


def test_batch_buffer_and_out_slot_equal_per_sample_preprocessing():
    pp = get_card("resnet50").preprocess
    images = [_photo(h, w, i) for i, (h, w) in enumerate(PHOTO_SIZES[:4])]
    batch = np.empty((4, 3, 224, 224), np.float32)
    geos = [preprocess(img, pp, out=batch[i])[1] for i, img in enumerate(images)]
    for i, img in enumerate(images):
        x, geo = preprocess(img, pp)
        np.testing.assert_array_equal(batch[i], x)
        assert geo == geos[i]
    nhwc = dataclasses.replace(pp, layout="NHWC")
    np.testing.assert_array_equal(preprocess(images[0], nhwc)[0], batch[0].transpose(1, 2, 0))
    with pytest.raises(ValueError, match="out must be float32"):
        preprocess(images[0], pp, out=np.empty((3, 224, 224), np.float64))


def test_float_input_needs_the_tensor_path():
    with pytest.raises(ValueError, match="resample='tensor'"):
        preprocess(np.zeros((80, 80, 3), np.float32), get_card("resnet50").preprocess)


def test_fast_mode_is_close_to_exact_and_keeps_geometry_in_file_pixels():
    """Fast mode (window-only resampling; JPEG DCT downscaling while decoding) is not exact but
    close; the geometry stays in the file's pixels even when the decoder downscaled."""
    pp = get_card("resnet50").preprocess
    for h, w in [(375, 500), (1200, 1600)]:
        data = _file_in_mode("RGB", h, w, seed=3)
        exact, geo, _ = preprocess_bytes(data, pp)
        fast, geo_fast, decoded = preprocess_bytes(data, pp, fast=True)
        assert fast.shape == exact.shape and geo_fast == geo
        assert np.abs(fast - exact).mean() < 0.05
        if (h, w) == (1200, 1600):
            assert decoded.pil.size == (400, 300) and decoded.original_size == (1600, 1200)  # 1/4, >= 256


# -- letterbox: ultralytics' arithmetic ------------------------------------------------------

def _ultralytics_val_letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
    """A transcription of ultralytics 8.4's validation preprocessing for one image, kept apart
    from the implementation: ``BaseDataset.load_image`` (ultralytics/data/base.py, rect_mode)
    then ``LetterBox(new_shape=size, scaleup=False)`` (ultralytics/data/augment.py,
    ``get_params`` + ``apply_image``), and the ``ratio_pad`` ultralytics evaluates with."""
    import math

    import cv2

    h0, w0 = img.shape[:2]
    r = size / max(h0, w0)
    if r != 1:
        w, h = (min(math.ceil(w0 * r), size), min(math.ceil(h0 * r), size))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    shape = img.shape[:2]
    r = min(size / shape[0], size / shape[1])
    r = min(r, 1.0)
    new_unpad = max(round(shape[1] * r), 1), max(round(shape[0] * r), 1)
    dw, dh = size - new_unpad[0], size - new_unpad[1]
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    ratio_pad = ((shape[0] / h0 * r, shape[1] / w0 * r), (left, top))
    return img, ratio_pad


def _letterbox_sizes() -> list[tuple[int, int]]:
    rng = np.random.default_rng(11)
    return [(int(rng.integers(1, 1300)), int(rng.integers(1, 1300))) for _ in range(60)] + [
        (480, 640), (640, 480), (333, 500), (640, 640), (641, 639), (1, 3000), (3000, 1), (20, 20000), (7, 9)]


@pytest.mark.parametrize("size", [640, 416, 128])
def test_letterbox_equals_ultralytics_val_transcription(size):
    rng = np.random.default_rng(size)
    for h, w in _letterbox_sizes():
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref, ((gy, gx), (px, py)) = _ultralytics_val_letterbox(img, size)
        ours, geo = letterbox(img, size)
        assert ours.shape == ref.shape == (size, size, 3), (h, w)
        np.testing.assert_array_equal(ours, ref, err_msg=f"{h}x{w}")
        assert (geo.scale_x, geo.scale_y, geo.pad_x, geo.pad_y) == pytest.approx((gx, gy, px, py), rel=1e-12)


def test_letterbox_equals_real_ultralytics():
    """Against ultralytics' own code, run in a subprocess (importing ultralytics replaces PIL's
    opener for the whole process): the validator's load_image + LetterBox (rule ``val``) and the
    predictor's LetterBox (rule ``predict``), pixel for pixel, on odd sizes at 640 and 96."""
    from support.ultralytics_models import ultralytics_available, ultralytics_letterbox

    if not ultralytics_available():
        pytest.skip("ultralytics is not installed (requirements.txt pins it)")
    rng = np.random.default_rng(5)
    sizes = [(1, 1), (3, 1000), (1000, 3), (639, 481), (481, 639), (640, 640), (97, 95), (480, 641), (50, 70)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    for size in (640, 96):
        for rule in ("val", "predict"):
            for img, ref in zip(images, ultralytics_letterbox(images, size, rule)):
                np.testing.assert_array_equal(letterbox(img, size, rule=rule)[0], ref)
    # the two rules differ where one image is resized twice: the check can fail
    other = ultralytics_letterbox(images[-1:], 640, "predict")[0]
    assert not np.array_equal(letterbox(images[-1], 640, rule="val")[0], other)


def test_letterbox_plan_never_gives_a_zero_side():
    for rule in ("val", "predict"):
        for h, w in [(1, 20000), (20000, 1), (20, 20000), (1, 1)]:
            plan = letterbox_plan(h, w, 640, rule)
            assert plan.new_w >= 1 and plan.new_h >= 1 and max(plan.new_w, plan.new_h) == 640
            assert plan.top + plan.bottom + plan.new_h == 640 == plan.left + plan.right + plan.new_w
