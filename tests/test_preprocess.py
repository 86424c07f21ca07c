"""Preprocessing: parity with torchvision's eval transforms, letterbox geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.client.preprocess import (
    Geometry, center_crop_offsets, letterbox, preprocess, resize_weights, shorter_side_size)

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
