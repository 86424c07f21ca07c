"""The VOC2012 loader on generated data, including bad masks; the generated demo set; palette PNGs."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from tritonkit.client.items import limit_dataset
from tritonkit.tasks.segment.math import ConfusionMatrix, argmax_mask, mask_to_original
from tritonkit.client.preprocess import preprocess
from tritonkit.spec import Preprocess
from tritonkit.tasks.segment.voc import (
    VOC_CLASSES, VOID, check_mask, encode_palette_png, find_voc_root, open_voc, read_palette_mask, voc_palette)
from tritonkit.demo.segshapes import (
    SegmentationSetSpec, draw_segmentation_image, ensure_segmentation_data, segmentation_classes, voc_folder,
    void_band)
from tritonkit.errors import DatasetError

from support.onnx_models import tiny_segmenter

SMALL = SegmentationSetSpec(train_images=6, val_images=12)
NUM = len(segmentation_classes())


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return ensure_segmentation_data(tmp_path_factory.mktemp("seg") / "data", seed=3, spec=SMALL, progress=False)


@pytest.fixture
def copy(generated, tmp_path):
    """A private copy of the generated set that a test may damage."""
    return shutil.copytree(generated, tmp_path / "data")


# -- palette PNGs ---------------------------------------------------------------------------------

def test_palette_png_round_trip_keeps_indices_not_colors():
    mask = np.array([[0, 1, 2], [20, VOID, 7]], np.uint8)
    data = encode_palette_png(mask)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "P"
        assert img.getpalette()[:6] == [0, 0, 0, 128, 0, 0]  # VOC colors: background black, class 1 dark red
    np.testing.assert_array_equal(read_palette_mask(data), mask)
    assert voc_palette()[3 * VOID:3 * VOID + 3] == [224, 224, 192]
    assert len(VOC_CLASSES) == 21


def test_rgb_mask_is_refused_not_converted():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 128  # the VOC color of class 1, as an RGB image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    with pytest.raises(DatasetError, match="m.png: mask mode RGB is not a palette image"):
        read_palette_mask(buf.getvalue(), "m.png")
    with pytest.raises(DatasetError, match="unreadable mask"):
        read_palette_mask(b"not a png", "m.png")


def test_check_mask_names_size_and_class_problems():
    mask = np.array([[0, 4, VOID], [9, 30, 1]], np.uint8)
    with pytest.raises(DatasetError, match=r"class ids 9, 30 outside \[0, 5\) and not 255"):
        check_mask(mask, 5)
    check_mask(mask, 31)
    with pytest.raises(DatasetError, match="mask size 3x2 != image size 4x2"):
        check_mask(mask, 31, (2, 4))


# -- the generated set ----------------------------------------------------------------------------

def test_drawn_masks_have_classes_and_a_void_border():
    classes = segmentation_classes()
    assert classes[0] == "background" and len(classes) == NUM
    rng = np.random.default_rng(0)
    img, mask = draw_segmentation_image(rng, SegmentationSetSpec(), classes)
    assert img.shape[:2] == mask.shape and img.dtype == np.uint8 and mask.shape[0] != mask.shape[1]
    ids = set(np.unique(mask).tolist())
    assert 0 in ids and VOID in ids and ids - {0, VOID} and max(ids - {VOID}) < NUM
    # void separates every shape from the background: no shape pixel touches a background pixel
    shape = (mask > 0) & (mask != VOID)
    grown = np.zeros_like(shape)
    grown[1:] |= shape[:-1]
    grown[:-1] |= shape[1:]
    grown[:, 1:] |= shape[:, :-1]
    grown[:, :-1] |= shape[:, 1:]
    assert not (grown & (mask == 0)).any()


def test_void_band_is_the_outline():
    on = np.zeros((9, 9), bool)
    on[3:6, 3:6] = True
    band = void_band(on, 1)
    expect = np.zeros((9, 9), bool)
    expect[2:7, 2:7] = True
    expect[4, 4] = False  # the 3x3 square's center is more than one pixel from its outline
    np.testing.assert_array_equal(band, expect)
    assert not void_band(on, 0).any()


def test_generated_set_reads_as_voc_at_every_root_level(generated):
    voc = voc_folder(generated)
    for root in (generated, generated / "VOCdevkit", voc):
        assert find_voc_root(root) == voc
        ds = open_voc(root, "val", NUM)
        assert len(ds.items) == SMALL.val_images and ds.errors == []
    train = open_voc(generated, "train", NUM)
    assert [it.key for it in train.items] == [f"train_{i:05d}" for i in range(SMALL.train_images)]
    item = ds.items[0]
    assert item.read_bytes()[:3] == b"\xff\xd8\xff"
    mask = item.read_mask(NUM)
    with Image.open(item.path) as img:
        assert mask.shape == (img.height, img.width)


def test_generation_is_cached_and_deterministic(generated, tmp_path):
    before = (generated / "manifest.json").stat().st_mtime_ns
    assert ensure_segmentation_data(generated, seed=3, spec=SMALL, progress=False) == generated
    assert (generated / "manifest.json").stat().st_mtime_ns == before
    other = ensure_segmentation_data(tmp_path / "again", seed=3, spec=SMALL, progress=False)
    name = "VOCdevkit/VOC2012/SegmentationClass/val_00003.png"
    assert (other / name).read_bytes() == (generated / name).read_bytes()


# -- layout and per-file errors -------------------------------------------------------------------

def test_missing_layout_parts_are_named(copy, tmp_path):
    with pytest.raises(DatasetError, match="nowhere: VOC data folder not found"):
        open_voc(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"ImageSets/Segmentation/test.txt: not found"):
        open_voc(copy, "test", NUM)
    shutil.rmtree(voc_folder(copy) / "SegmentationClass")
    with pytest.raises(DatasetError, match=r"VOC2012/SegmentationClass: not found"):
        open_voc(copy, "val", NUM)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty/VOCdevkit/VOC2012: not found"):
        open_voc(tmp_path / "empty", "val", NUM)


def _rewrite(path, mask=None, rgb=None):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG") if rgb is not None else None
    path.write_bytes(buf.getvalue() if rgb is not None else encode_palette_png(mask))


def test_bad_files_are_counted_listed_and_the_rest_evaluated(copy):
    voc = voc_folder(copy)
    masks = voc / "SegmentationClass"
    def own(key):
        return read_palette_mask((masks / f"{key}.png").read_bytes())

    (masks / "val_00001.png").unlink()                                                  # missing mask
    _rewrite(masks / "val_00002.png", mask=own("val_00002")[:-3])                       # wrong size
    _rewrite(masks / "val_00003.png", rgb=np.zeros(own("val_00003").shape + (3,), np.uint8))  # RGB mask
    bad_ids = own("val_00004")
    bad_ids[0, 0] = NUM + 2
    _rewrite(masks / "val_00004.png", mask=bad_ids)                                     # class id out of range
    (voc / "JPEGImages" / "val_00005.jpg").unlink()                             # missing image
    with open(voc / "ImageSets/Segmentation/val.txt", "a") as f:
        f.write("val_99999\n")                                                  # listed, no files
    ds = open_voc(copy, "val", NUM)
    reasons = {e["path"]: e["reason"] for e in ds.errors}
    assert set(reasons) == {"val_00001", "val_00002", "val_00003", "val_00004", "val_00005", "val_99999"}
    assert reasons["val_00001"] == "mask SegmentationClass/val_00001.png not found"
    assert reasons["val_00002"].startswith("mask size ") and "!= image size" in reasons["val_00002"]
    assert "mask mode RGB is not a palette image" in reasons["val_00003"]
    assert f"class ids {NUM + 2} outside [0, {NUM})" in reasons["val_00004"]
    assert reasons["val_00005"] == "image JPEGImages/val_00005.jpg not found"
    assert len(ds.items) == SMALL.val_images - 5
    assert ds.describe()["errors"] == 6 and ds.listed == SMALL.val_images + 1
    assert [e["path"] for e in ds.excluded()] == sorted(reasons)
    limited = limit_dataset(ds, 3)
    assert len(limited.items) == 3 and limited.describe()["subset"].startswith("3 of 7 images")
    # without the up-front mask check, only presence and sizes are checked at open time ...
    lazy = open_voc(copy, "val", NUM, check_masks=False)
    assert {e["path"] for e in lazy.errors} == {"val_00001", "val_00002", "val_00005", "val_99999"}
    # ... and a bad mask surfaces when its item is scored
    item = next(it for it in lazy.items if it.key == "val_00004")
    with pytest.raises(DatasetError, match="val_00004.png: class ids"):
        item.read_mask(NUM)


def test_no_usable_id_is_one_error(copy):
    (voc_folder(copy) / "ImageSets/Segmentation/val.txt").write_text("nothing_here\n")
    with pytest.raises(DatasetError, match=r"val.txt: none of its 1 ids can be evaluated \(first: image"):
        open_voc(copy, "val", NUM)


# -- the chain an eval runs, on the tiny segmenter ---------------------------------------------------

def test_tiny_segmenter_through_preprocess_argmax_and_scale_back(generated, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tiny_segmenter(tmp_path / "seg.onnx", num_classes=NUM)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cm = ConfusionMatrix(NUM)
    for item in open_voc(generated, "val", NUM).items:
        rgb = np.asarray(Image.open(item.path).convert("RGB"))
        x, geo = preprocess(rgb, Preprocess("resize_short", 48))
        logits = sess.run(["out"], {"input": x[None]})[0]
        assert logits.shape == (1, NUM, *geo.input_hw)
        mask = mask_to_original(argmax_mask(logits)[0], geo)
        assert mask.shape == rgb.shape[:2]
        cm.update(mask, item.read_mask(NUM, rgb.shape[:2]))
    s = cm.scores(segmentation_classes())
    assert s.pixels == int(sum((item.read_mask(NUM) != VOID).sum() for item in open_voc(generated, "val", NUM).items))
    assert 0.0 <= s.miou <= 1.0 and s.classes_scored >= 2
