"""The numpy mask assembly against ultralytics' own torch ops on the same random head outputs."""

import numpy as np
import pytest

from tritonkit.tasks.instance.masks import process_mask, process_mask_native

from PIL import Image

torch = pytest.importorskip("torch")
# Importing ultralytics replaces PIL.Image.open process-wide (ultralytics/utils/patches.py): an
# unidentifiable file would then fail with ModuleNotFoundError: pi_heif in every later test of this
# process. Only its pure torch ops are used here, so PIL's own open is put back right after.
_pil_open = Image.open
try:
    ops = pytest.importorskip("ultralytics.utils.ops")
finally:
    Image.open = _pil_open


@pytest.mark.parametrize("n", [0, 1, 7])
def test_process_mask_equals_ultralytics(n):
    rng = np.random.default_rng(n)
    protos = rng.normal(size=(32, 40, 48)).astype(np.float32)
    coeffs = rng.normal(size=(n, 32)).astype(np.float32)
    xy = rng.uniform(0, 150, size=(n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, size=(n, 2))], 1).astype(np.float32)
    ours = process_mask(protos, coeffs, boxes, (160, 192))
    ref = ops.process_mask(torch.from_numpy(protos), torch.from_numpy(coeffs), torch.from_numpy(boxes), (160, 192))
    assert ours.shape == tuple(ref.shape)
    np.testing.assert_array_equal(ours, ref.numpy())
    if n:
        assert ours.any()


@pytest.mark.parametrize(("n", "shape"), [(0, (160, 192)), (5, (160, 192)), (6, (120, 192)), (4, (333, 250)), (3, (161, 192)), (8, (158, 190))])
def test_process_mask_native_equals_ultralytics(n, shape):
    rng = np.random.default_rng(n)
    protos = rng.normal(size=(32, 40, 48)).astype(np.float32)
    coeffs = rng.normal(size=(n, 32)).astype(np.float32)
    xy = rng.uniform(0, min(shape) - 45, size=(n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, size=(n, 2))], 1).astype(np.float32)
    ours = process_mask_native(protos, coeffs, boxes, shape)
    ref = ops.process_mask_native(torch.from_numpy(protos), torch.from_numpy(coeffs), torch.from_numpy(boxes), shape)
    assert ours.shape == tuple(ref.shape)
    disagree = np.count_nonzero(ours != ref.numpy())
    assert disagree == 0
    if n:
        assert ours.any()


def test_encode_masks_round_trips_through_pycocotools():
    import json

    from pycocotools import mask as mask_utils

    from tritonkit.tasks.instance.rle import encode_masks

    rng = np.random.default_rng(3)
    masks = (rng.uniform(size=(4, 37, 53)) > 0.6).astype(np.uint8)
    rles = json.loads(json.dumps(encode_masks(masks)))
    assert [r["size"] for r in rles] == [[37, 53]] * 4
    decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), masks)
    assert encode_masks(masks[:0]) == []


def test_decode_seg_anchor_free_equals_ultralytics_nms():
    from types import SimpleNamespace

    from tritonkit.tasks.detect.math import batched_nms
    from tritonkit.tasks.instance.masks import decode_seg_anchor_free

    rng = np.random.default_rng(7)
    nc, a = 3, 400
    xy = rng.uniform(0, 160, size=(2, a))
    wh = rng.uniform(4, 40, size=(2, a))
    out = np.concatenate([xy, wh, rng.uniform(size=(nc, a)), rng.normal(size=(32, a))]).astype(np.float32)
    profile = SimpleNamespace(iou_threshold=0.7, max_detections=300)
    boxes, scores, classes, coeffs = decode_seg_anchor_free(out, nc, 0.25, profile, batched_nms)
    from support.ultralytics_models import ultralytics_nms  # ultralytics runs in its own process

    ref = ultralytics_nms(out[None], conf_thres=0.25, iou_thres=0.7, nc=nc, max_det=300)[0]
    assert len(boxes) == len(ref) > 10
    order = np.lexsort((ref[:, 0], -ref[:, 4]))
    ours = np.lexsort((boxes[:, 0], -scores))
    np.testing.assert_allclose(boxes[ours], ref[order, :4], atol=1e-4)
    np.testing.assert_array_equal(classes[ours], ref[order, 5])
    np.testing.assert_allclose(coeffs[ours], ref[order, 6:], atol=1e-6)
