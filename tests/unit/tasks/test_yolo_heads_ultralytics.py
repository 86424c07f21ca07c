"""The client decode + NMS of the ultralytics heads equals ultralytics' own ``non_max_suppression``
(run in a subprocess: importing ultralytics here would change this process) on the raw outputs of
real models: the tiny YOLO11 (anchor-free ``[N, 4 + C, A]``) and YOLO26 ``nms=False`` (end-to-end
``[N, K, 6]``) fixtures, on the fixture dataset's val images letterboxed by tritonkit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonkit.client.preprocess import preprocess
from tritonkit.spec import NMSProfile
from tritonkit.tasks.detect.math import detections

from support.ultralytics_models import ultralytics_nms
from support.yolo_cards import tiny_model_card

# ultralytics' validator (conf 0.001, multi-label, IoU 0.7) and predictor (conf 0.25, best class)
PROFILES = (NMSProfile("ap", 0.001, 0.7, multi_label=True), NMSProfile("speed", 0.25, 0.7),
            NMSProfile("few", 0.05, 0.5, max_detections=5))


def _raw_outputs(card, onnx: Path, images: list[Path]) -> np.ndarray:
    import onnxruntime as ort

    from PIL import Image

    batch = np.stack([preprocess(np.asarray(Image.open(p).convert("RGB")), card.preprocess)[0] for p in images])
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {card.input.name: batch.astype(np.float32)})[0]


def _rows(dets) -> np.ndarray:
    """x1, y1, x2, y2, score, class rows in a canonical order (ties in score may be ordered apart)."""
    rows = np.concatenate([dets.boxes, dets.scores[:, None], dets.classes[:, None].astype(np.float32)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("fixture, export", [("detect", "default"), ("end2end", "end2end")])
def test_decode_and_nms_equal_ultralytics(yolo_model, tmp_path, fixture, export):
    model = yolo_model(fixture)
    card = tiny_model_card(model, tmp_path, model.exports[export])
    images = sorted((model.data.parent / "images" / "val").glob("*.png"))[:8]
    raw = _raw_outputs(card, model.exports[export], images)
    assert raw.shape[1:] == card.outputs[0].dims
    end2end = not card.postprocess.needs_nms
    total = 0
    for profile in PROFILES:
        ref = ultralytics_nms(raw, conf_thres=profile.conf_threshold, iou_thres=profile.iou_threshold,
                              multi_label=profile.multi_label, max_det=profile.max_detections, end2end=end2end)
        for b in range(len(images)):
            ours = detections(card.postprocess, {"output0": raw[b]}, ["output0"], (model.imgsz,) * 2, profile)
            theirs = ref[b]
            assert len(ours) == len(theirs), (profile.name, b)
            np.testing.assert_allclose(_rows(ours), theirs[np.lexsort(theirs.T[::-1])], atol=1e-4)
            total += len(ours)
    assert total > 0  # the models detect something: the comparison is not of empty lists


@pytest.mark.parametrize("fixture, export", [("detect", "default"), ("end2end", "end2end")])
def test_int8_qdq_calibration_keeps_the_map(yolo_model, tmp_path, fixture, export):
    """int8 QDQ (onnxruntime's static quantizer, calibrated on train images through the card's
    letterbox; the yolo cards keep the head float) of both heads, scored like fp32 by pycocotools on
    the val split: within 0.04 mAP50 and mAP50-95 of the fp32 model."""
    from PIL import Image

    from support.yolo_coco import yolo_split_to_coco
    from tritonkit.build_engines.quantize import quantize_int8
    from tritonkit.tasks.detect.coco import coco_map, detections_to_coco, load_coco
    from tritonkit.tasks.detect.math import card_detections

    import onnxruntime as ort

    model = yolo_model(fixture)
    onnx = model.exports[export]
    card = tiny_model_card(model, tmp_path, onnx)
    assert card.int8_head == "float"
    calib = sorted((model.data.parent / "images" / "train").glob("*.png"))[:32]
    result = quantize_int8(card, onnx, tmp_path / "int8.onnx", calib)
    assert result.qdq_nodes > 0 and result.excluded_nodes
    ds = load_coco(*yolo_split_to_coco(model.data, tmp_path / "coco.json"))
    scores = []
    for path in (onnx, result.onnx_int8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        found = []
        for image in ds.images:
            x, geometry = preprocess(np.asarray(Image.open(image.path).convert("RGB")), card.preprocess)
            raw = session.run(None, {card.input.name: x[None].astype(np.float32)})[0][0]
            found += detections_to_coco(image.id, card_detections(card, {card.outputs[0].name: raw}, geometry,
                                                                  card.nms("ap")), card.category_ids)
        scores.append(coco_map(ds.coco, found, ds.image_ids))
    fp32, int8 = scores
    assert fp32.map50 > 0.8
    assert int8.map50 == pytest.approx(fp32.map50, abs=0.04)
    assert int8.map50_95 == pytest.approx(fp32.map50_95, abs=0.04)


@pytest.mark.parametrize("rule", ["val", "predict"])
def test_yolo_card_input_equals_ultralytics_tensor(rule):
    """The model input the yolo cards build (letterbox by the card's rule, /255, RGB, CHW) is the tensor
    ultralytics' validator (``val``) or predictor (``predict``) feeds the model, pixel for pixel (its
    letterboxed uint8 image divided by 255 in float32); run by ultralytics itself in a subprocess."""
    from support.ultralytics_models import ultralytics_available, ultralytics_letterbox
    from tritonkit.cards import get_card

    if not ultralytics_available():
        pytest.skip("ultralytics is not installed (requirements.txt pins it)")
    card = get_card("yolo11n")
    assert card.preprocess.letterbox_rule == "val" and get_card("yolov8n").preprocess == card.preprocess
    pp = card.preprocess.__class__(**{**{k: getattr(card.preprocess, k) for k in (
        "mode", "size", "mean", "std", "pad_value", "interpolation", "scale", "layout")}, "letterbox_rule": rule})
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((375, 500), (481, 639), (1000, 3),
                                                                           (200, 200), (720, 1280))]
    for img, ref in zip(images, ultralytics_letterbox(images, pp.size, rule)):
        x, _ = preprocess(img, pp)
        expected = ref.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        assert x.shape == (3, 640, 640)
        np.testing.assert_allclose(x, expected, rtol=0, atol=1e-7)
