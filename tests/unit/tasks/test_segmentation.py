"""Segmentation: metrics against hand-worked cases and torchvision's reference definitions, void
handling, mask scale-back, resize_short parity with torchvision's preset, and the demo segmenter."""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.tasks.segment.math import (
    VOC_IGNORE_INDEX, ConfusionMatrix, argmax_mask, class_accuracy, confusion, confusion_from_entries, confusion_to_entries, mask_to_original, miou, nearest_indices, pixel_accuracy, segmentation_scores, stack_padded)
from tritonkit.client.preprocess import preprocess, resize_short_size
from tritonkit.spec import Geometry, Preprocess
from tritonkit.tasks.segment.voc import open_voc
from tritonkit.demo.segshapes import SegmentationSetSpec, ensure_segmentation_data
from tritonkit.demo.train_seg import SegmenterConfig, SegmenterSpec, train_segmenter


def test_hand_computed_case():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2],
                     [2, 0, 0, 1]])
    conf = confusion(pred, gt, 3)
    # rows: ground truth, columns: prediction (the two 255 pixels are ignored)
    np.testing.assert_array_equal(conf, [[3, 1, 0],
                                         [0, 3, 1],
                                         [1, 0, 1]])
    mean, per_class = miou(conf)
    # IoU_c = TP / (row + column - TP): class 0: 3/(4+4-3), class 1: 3/(4+4-3), class 2: 1/(2+2-1)
    np.testing.assert_allclose(per_class, [3 / 5, 3 / 5, 1 / 3])
    assert mean == pytest.approx((3 / 5 + 3 / 5 + 1 / 3) / 3)
    assert pixel_accuracy(conf) == pytest.approx(7 / 10)


def test_absent_class_is_left_out_of_the_mean():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1])
    mean, per_class = miou(confusion(pred, gt, 21))
    assert mean == 1.0
    assert np.isnan(per_class[2:]).all() and per_class.shape == (21,)


def test_confusion_accumulates_over_images():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 21, (30, 40)) for _ in range(3)]
    preds = [rng.integers(0, 21, (30, 40)) for _ in range(3)]
    gts[0][:5] = VOC_IGNORE_INDEX
    total = sum(confusion(p, g) for p, g in zip(preds, gts))
    together = confusion(np.stack(preds), np.stack(gts))
    np.testing.assert_array_equal(total, together)
    assert together.sum() == 3 * 30 * 40 - 5 * 40


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="prediction label 21 outside"):
        confusion(np.array([21]), np.array([0]))
    with pytest.raises(ValueError, match="ground truth label 30 outside"):
        confusion(np.array([0]), np.array([30]))
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="integers"):
        confusion(np.zeros(3), np.zeros(3, int))


# ------------------------------------------------------------- scores, accumulation, void handling


def test_scores_of_the_hand_computed_case_with_an_absent_and_a_predicted_only_class():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [255, 255, 255, 255]])
    pred = np.array([[0, 0, 1, 3],
                     [0, 3, 1, 1],
                     [2, 2, 2, 2]])  # class 2 only under void: never scored; class 3 predicted only
    cm = ConfusionMatrix(5)
    cm.update(pred, gt)
    s = cm.scores(["bg", "a", "b", "c", "d"])
    # class 0: TP 3, FN 1 -> 3/4; class 1: TP 3, FN 1 -> 3/4; class 3: TP 0, FP 2 -> 0;
    # classes 2 and 4: in neither ground truth nor (scored) prediction -> NaN, left out
    np.testing.assert_allclose(s.iou, [3 / 4, 3 / 4, np.nan, 0.0, np.nan])
    assert s.miou == pytest.approx((3 / 4 + 3 / 4 + 0) / 3)
    assert s.classes_scored == 3 and s.pixels == 8
    assert s.pixel_accuracy == pytest.approx(6 / 8)
    np.testing.assert_allclose(s.class_accuracy, [3 / 4, 3 / 4, np.nan, np.nan, np.nan])
    d = s.to_dict()
    assert d["iou"][2] is None and d["iou"][4] is None and d["iou"][3] == 0.0
    assert s.per_class()["d"] is None and s.per_class()["a"] == pytest.approx(0.75)


def test_void_pixels_change_nothing_whatever_is_predicted_there():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 4, (20, 30))
    pred = rng.integers(0, 4, (20, 30))
    gt_void = gt.copy()
    gt_void[::3] = VOC_IGNORE_INDEX
    keep = gt_void != VOC_IGNORE_INDEX
    other_pred = pred.copy()
    other_pred[~keep] = (pred[~keep] + 1) % 4
    a = confusion(pred, gt_void, 4)
    np.testing.assert_array_equal(a, confusion(other_pred, gt_void, 4))
    np.testing.assert_array_equal(a, confusion(pred[keep], gt[keep], 4))


def test_definitions_match_torchvision_reference_confusion_matrix():
    """torchvision's references/segmentation/utils.py ConfusionMatrix, written out in torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    n = 6
    gts = [rng.integers(0, n, (17, 23)) for _ in range(4)]
    preds = [rng.integers(0, n, (17, 23)) for _ in range(4)]
    gts[1][:4] = VOC_IGNORE_INDEX
    mat = torch.zeros((n, n), dtype=torch.int64)
    cm = ConfusionMatrix(n)
    for p, g in zip(preds, gts):
        a, b = torch.from_numpy(g), torch.from_numpy(p)
        k = (a >= 0) & (a < n)
        mat += torch.bincount(n * a[k].to(torch.int64) + b[k], minlength=n ** 2).reshape(n, n)
        cm.update(p, g)
    np.testing.assert_array_equal(cm.mat, mat.numpy())
    h = mat.float()
    s = cm.scores()
    assert s.pixel_accuracy == pytest.approx(float(torch.diag(h).sum() / h.sum()), rel=1e-6)
    np.testing.assert_allclose(s.class_accuracy, (torch.diag(h) / h.sum(1)).numpy(), rtol=1e-6)
    iu = torch.diag(h) / (h.sum(1) + h.sum(0) - torch.diag(h))
    np.testing.assert_allclose(s.iou, iu.numpy(), rtol=1e-6)
    assert s.miou == pytest.approx(float(iu.mean()), rel=1e-6)  # every class occurs: same mean


def test_confusion_entries_round_trip_and_accumulate():
    rng = np.random.default_rng(3)
    conf = confusion(rng.integers(0, 21, (40, 40)), rng.integers(0, 21, (40, 40)))
    entries = confusion_to_entries(conf)
    assert all(count > 0 for _, _, count in entries)
    np.testing.assert_array_equal(confusion_from_entries(entries, 21), conf)
    cm = ConfusionMatrix(21)
    cm.add(confusion_from_entries(entries, 21))
    cm.add(conf)
    np.testing.assert_array_equal(cm.mat, 2 * conf)
    with pytest.raises(ValueError, match="outside"):
        confusion_from_entries([[21, 0, 1]], 21)
    with pytest.raises(ValueError, match="shape"):
        cm.add(np.zeros((3, 3), int))


def test_empty_matrix_scores_nan():
    s = segmentation_scores(np.zeros((3, 3), int))
    assert np.isnan(s.miou) and np.isnan(s.pixel_accuracy) and s.classes_scored == 0
    assert s.to_dict()["miou"] is None
    assert np.isnan(class_accuracy(np.zeros((2, 2)))).all()


def test_argmax_mask_first_maximum_and_uint8():
    logits = np.zeros((2, 3, 2, 2), np.float32)
    logits[0, 2, 0, 0] = 1.0
    logits[1, 1, 1, 1] = 5.0
    logits[1, 2, 1, 1] = 5.0  # tie -> first
    mask = argmax_mask(logits)
    assert mask.dtype == np.uint8 and mask.shape == (2, 2, 2)
    np.testing.assert_array_equal(mask, [[[2, 0], [0, 0]], [[0, 0], [0, 1]]])
    with pytest.raises(ValueError, match="uint8"):
        argmax_mask(np.zeros((256, 1, 1)))


# ------------------------------------------------------------------------------ geometry, scale-back
@pytest.mark.parametrize("h, w, expect", [(375, 500, (520, 693)), (500, 375, (693, 520)), (300, 300, (520, 520)),
                                          (1000, 1001, (520, 520))])
def test_resize_short_size(h, w, expect):
    assert resize_short_size(h, w, 520) == expect


@pytest.mark.parametrize("n_in, n_out", [(5, 12), (12, 5), (7, 7), (520, 375), (693, 500), (3, 1000), (750, 520)])
def test_nearest_indices_match_pil_nearest(n_in, n_out):
    """(520, 375) and (750, 520) hold exact ties, where PIL's double-precision walk decides."""
    from PIL import Image

    row = np.arange(n_in, dtype=np.int32).reshape(1, -1)
    pil_x = np.asarray(Image.fromarray(row).resize((n_out, 1), Image.Resampling.NEAREST))[0]
    pil_y = np.asarray(Image.fromarray(row.T.copy()).resize((1, n_out), Image.Resampling.NEAREST))[:, 0]
    np.testing.assert_array_equal(nearest_indices(n_in, n_out), pil_x)
    np.testing.assert_array_equal(nearest_indices(n_in, n_out), pil_y)


def _resize_short_geometry(h: int, w: int, size: int) -> Geometry:
    nh, nw = resize_short_size(h, w, size)
    return Geometry(h, w, nw / w, nh / h)


def _resize_short(rgb, size, mean=None, std=None, interpolation="bilinear"):
    pp = Preprocess("resize_short", size, interpolation=interpolation,
                    **({"mean": mean, "std": std} if mean is not None else {}))
    return preprocess(rgb, pp)


def test_mask_to_original_inverts_resize_short():
    geo = _resize_short_geometry(5, 8, 3)  # 5x8 -> 3x4 (int(3 * 8 / 5) = 4)
    assert geo.input_hw == (3, 4)
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    back = mask_to_original(mask, geo)
    assert back.shape == (5, 8) and back.dtype == np.uint8
    # rows: floor((i + .5) * 3 / 5) = 0,0,1,2,2; cols: floor((j + .5) * 4 / 8) = 0,0,1,1,2,2,3,3
    np.testing.assert_array_equal(back, [[0, 0, 1, 1, 2, 2, 3, 3]] * 2 + [[4, 4, 5, 5, 6, 6, 7, 7]]
                                  + [[8, 8, 9, 9, 10, 10, 11, 11]] * 2)
    # a mask resized down by PIL (as torchvision resizes targets) comes back onto its regions
    from PIL import Image

    geo = _resize_short_geometry(8, 12, 4)  # halved: regions on even pixels survive the round trip
    labels = np.zeros((8, 12), np.uint8)
    labels[:, 6:] = 3
    labels[4:, :2] = 7
    small = np.asarray(Image.fromarray(labels).resize(geo.input_hw[::-1], Image.Resampling.NEAREST))
    np.testing.assert_array_equal(mask_to_original(small, geo), labels)


def test_stack_padded_pads_bottom_right_and_scale_back_crops_it():
    a = np.ones((3, 2, 4), np.float32)
    b = np.full((3, 5, 3), 2, np.float32)
    batch = stack_padded([a, b], fill=-1)
    assert batch.shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(batch[0, :, :2, :4], a)
    assert (batch[0, :, 2:] == -1).all() and (batch[1, :, :, 3] == -1).all()
    geo = Geometry(2, 4, 1.0, 1.0)
    masks = stack_padded([np.ones((2, 4), np.uint8), np.zeros((5, 3), np.uint8)], fill=255)
    np.testing.assert_array_equal(mask_to_original(masks[0], geo), np.ones((2, 4)))
    with pytest.raises(ValueError, match="more than their last two"):
        stack_padded([np.zeros((3, 2, 2)), np.zeros((1, 2, 2))])


def test_mask_to_original_crops_batch_padding_and_refuses_small_masks():
    geo = Geometry(4, 4, 0.5, 0.5)
    padded = np.full((3, 5), 9, np.uint8)
    padded[:2, :2] = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(mask_to_original(padded, geo),
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    with pytest.raises(ValueError, match="smaller than the model input"):
        mask_to_original(np.zeros((1, 2), np.uint8), geo)


# ------------------------------------------------------------------ resize_short parity with torchvision
@pytest.mark.parametrize("h, w, size", [(375, 500, 520), (333, 250, 120), (64, 64, 64), (90, 41, 33)])
def test_preprocess_resize_short_equals_torchvision_preset(h, w, size):
    pytest.importorskip("torchvision")
    from PIL import Image
    from torchvision.transforms._presets import SemanticSegmentation

    rng = np.random.default_rng(h * w)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC))
    img = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    x, geo = _resize_short(img, size)
    ref = SemanticSegmentation(resize_size=size)(Image.fromarray(img)).numpy()
    assert x.shape == ref.shape == (3, *geo.input_hw) and x.dtype == np.float32
    assert (geo.orig_h, geo.orig_w) == (h, w)
    np.testing.assert_array_equal(x, ref)  # bit for bit: ToTensor's division, then Normalize


def test_preprocess_resize_short_refuses_non_rgb():
    with pytest.raises(ValueError, match="RGB HWC"):
        _resize_short(np.zeros((4, 4), np.uint8), 8)
    with pytest.raises(ValueError, match="interpolation"):
        _resize_short(np.zeros((4, 4, 3), np.uint8), 8, interpolation="lanczos")


# ------------------------------------------------------------------------------------ demo segmenter
def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _independent_miou(onnx_path, data, spec) -> float:
    """The val mIoU recomputed here: PIL decode, resize_short, onnxruntime, argmax, scale-back."""
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cm = ConfusionMatrix(spec.num_classes)
    for item in open_voc(data, "val", spec.num_classes).items:
        rgb = np.asarray(Image.open(item.path).convert("RGB"))
        x, geo = _resize_short(rgb, spec.size, spec.mean, spec.std)
        pred = argmax_mask(sess.run([spec.output_name], {spec.input_name: x[None]})[0])[0]
        cm.update(mask_to_original(pred, geo), item.read_mask(spec.num_classes))
    return cm.scores().miou


def test_segmenter_one_epoch_exports_dynamic_batch_height_width(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    data = ensure_segmentation_data(tmp_path / "data", seed=1, spec=SegmentationSetSpec(train_images=8, val_images=5),
                                    progress=False)
    spec = SegmenterSpec(size=32, width=8)
    config = SegmenterConfig(epochs=1, batch_size=4, threads=1)
    res = train_segmenter(data, tmp_path / "cache", config, spec, progress=False)
    assert not res.cached and res.metric == "val_miou" and len(res.history) == 1
    assert (res.train_images, res.val_images) == (8, 5)
    model = onnx.load(str(res.onnx_path))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "out")
    assert _dims(inp) == ["batch", 3, "height", "width"]
    assert _dims(out) == ["batch", spec.num_classes, "height", "width"]
    sess = ort.InferenceSession(str(res.onnx_path), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 40, 56), (1, 3, 71, 33), (3, 3, 32, 32)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        assert sess.run(["out"], {"input": x})[0].shape == (shape[0], spec.num_classes) + shape[2:]
    assert res.value == pytest.approx(_independent_miou(res.onnx_path, data, spec), abs=1e-12)
    again = train_segmenter(data, tmp_path / "cache", config, spec, progress=False)
    assert again.cached and again.onnx_path == res.onnx_path and again.value == res.value


@pytest.mark.slow
def test_segmenter_reaches_target_miou_and_is_cached(tmp_path):

    data = ensure_segmentation_data(tmp_path / "data", progress=False)
    res = train_segmenter(data, tmp_path / "cache", progress=False)
    assert res.value >= SegmenterConfig().target_miou and res.passed
    assert res.value == pytest.approx(_independent_miou(res.onnx_path, data, SegmenterSpec()), abs=1e-12)
    again = train_segmenter(data, tmp_path / "cache", progress=False)
    assert again.cached and again.value == res.value
