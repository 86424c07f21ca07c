"""Server-side NMS: the detector -> NMS ensemble config, and the real bundled server returning
exactly the client-side postprocess on the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tritonkit.cards import NMSProfile, get_card
from tritonkit.tasks.detect.math import (
    card_detections as postprocess_card, unpad_detections)
from tritonkit.client.preprocess import preprocess
from tritonkit.model_repository.config import ConfigError, config_to_text, parse_config
from tritonkit.spec import GEOMETRY_TENSOR as GEOMETRY_INPUT
from tritonkit.tasks.detect.math import OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES
from tritonkit.model_repository.ensemble import chain_ensemble_config, postprocess_model_config
from tritonkit.cards import card_from_dict
from tritonkit.errors import CardError
from tritonkit.spec import CARD_PARAMETER
from tritonkit.tasks.base import task_for_card
from tritonkit.tasks.detect.task import nms_chain
from support.chains import write_model_and_chain

from support.onnx_models import tiny_yolo_onnx

CARD = get_card("demo_shapes_det")  # input images [3,128,128], output0 [256, 9] (4 classes)
# The demo card's profiles are single-label; a multi-label ap (YOLOv5 val.py) on a copy of it,
# so the built-in card and the demo's numbers stay as they are.
AP_MULTI = NMSProfile("ap_multi", 0.001, 0.65, multi_label=True)
ML_CARD = CARD.with_overrides(nms_profiles=(*CARD.nms_profiles, AP_MULTI))
PROFILES = ("speed", "ap", "ap_multi")


# -- configs (no server) ------------------------------------------------------------------

def _configs(card, profile: str, model: str = "det", instances: int = 1, max_batch_size: int = 8):
    """The NMS chain of ``card`` for ``profile``: its names, postprocess model config and ensemble config."""
    chain = nms_chain(card, card.nms(profile)).with_instances(instances)
    names = chain.names(model)
    return (names, postprocess_model_config(card, names.postprocess, chain, max_batch_size),
            chain_ensemble_config(card, names, chain, max_batch_size))


def test_ensemble_config_chains_detector_and_nms():
    names, _, cfg = _configs(CARD, "ap")
    assert (names.postprocess, names.ensemble) == ("det_nms_ap", "det_ensemble_ap")
    assert cfg.platform == "ensemble" and cfg.max_batch_size == 8
    assert [i.name for i in cfg.input] == ["images", GEOMETRY_INPUT]
    assert cfg.input[1].optional and list(cfg.input[1].dims) == [6]
    assert [o.name for o in cfg.output] == [OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT]
    assert list(cfg.output[0].dims) == [CARD.nms("ap").max_detections, 4]
    det, nms = cfg.ensemble_scheduling.step
    assert det.model_name == "det" and dict(det.output_map) == {"output0": "raw_output0"}
    assert nms.model_name == "det_nms_ap"
    assert dict(nms.input_map) == {"output0": "raw_output0", GEOMETRY_INPUT: GEOMETRY_INPUT}
    assert parse_config(config_to_text(cfg)) == cfg  # valid text through Triton's own schema


def test_nms_model_config_carries_the_profile_and_the_card():
    _, cfg, _ = _configs(CARD, "speed", instances=2, max_batch_size=4)
    assert cfg.backend == "python" and cfg.instance_group[0].count == 2
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert float(params["conf_threshold"]) == 0.25 and float(params["iou_threshold"]) == 0.45
    assert params["max_detections"] == "300" and params["class_agnostic"] == "false"
    assert params["multi_label"] == "false"
    assert card_from_dict(json.loads(params[CARD_PARAMETER])) == CARD  # the one persisted card
    _, ml, _ = _configs(ML_CARD, "ap_multi", max_batch_size=4)
    assert {k: v.string_value for k, v in ml.parameters.items()}["multi_label"] == "true"
    assert [i.name for i in cfg.input] == ["output0", GEOMETRY_INPUT]
    assert list(cfg.input[0].dims) == [256, 9]


def test_ssd_ensemble_feeds_boxes_and_scores_to_the_nms_model():
    ssd = get_card("ssd_resnet18")
    names, nms_cfg, cfg = _configs(ssd, "ap", model="ssd", max_batch_size=4)
    det, nms = cfg.ensemble_scheduling.step
    assert dict(det.output_map) == {"boxes": "raw_boxes", "scores": "raw_scores"}
    assert dict(nms.input_map) == {"boxes": "raw_boxes", "scores": "raw_scores", GEOMETRY_INPUT: GEOMETRY_INPUT}
    assert [(i.name, list(i.dims)) for i in nms_cfg.input] == [
        ("boxes", [8732, 4]), ("scores", [8732, 81]), (GEOMETRY_INPUT, [6])]
    assert parse_config(config_to_text(cfg)) == cfg


def test_a_classifier_has_no_server_side_postprocess():
    card = get_card("demo_shapes")
    assert task_for_card(card).server_chains(card) == []
    with pytest.raises(CardError, match="no server-side postprocess variants"):
        task_for_card(card).server_chains(card, ("ap",))


# -- the real server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ensemble_server(tmp_path_factory, served_repository):
    from tritonkit.model_repository.config import RepoOptions

    onnx_path = tiny_yolo_onnx(tmp_path_factory.mktemp("ensemble") / "tiny_yolo.onnx")
    names = {}

    def write(repo):
        names.update({p: write_model_and_chain(ML_CARD, onnx_path, repo, p, RepoOptions(target="cpu", max_batch_size=8))
                      for p in PROFILES})

    return served_repository(write, name="ensemble").server, names


def _images(n: int, seed: int = 0):
    """Preprocessed inputs and letterbox geometries of ``n`` random images of different shapes."""
    rng = np.random.default_rng(seed)
    xs, geos = [], []
    for h, w in [(96, 160), (200, 120), (128, 128), (50, 300)][:n]:
        x, geo = preprocess(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), CARD.preprocess)
        xs.append(x)
        geos.append(geo)
    return np.stack(xs), geos


def _infer(url, model, inputs: dict, outputs: list[str]) -> dict:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    req = []
    for name, arr in inputs.items():
        t = grpc.InferInput(name, list(arr.shape), "FP64" if arr.dtype == np.float64 else "FP32")
        t.set_data_from_numpy(arr)
        req.append(t)
    result = client.infer(model, req, outputs=[grpc.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


OUTS = [OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT]


def test_ensemble_equals_client_side_postprocess(ensemble_server):
    server, names = ensemble_server
    x, geos = _images(4)
    geometry = np.stack([g.as_array() for g in geos])
    counts = {}
    for profile in PROFILES:
        n = names[profile]
        raw = _infer(server.grpc_url, n.model, {"images": x}, ["output0"])["output0"]
        served = _infer(server.grpc_url, n.ensemble, {"images": x, GEOMETRY_INPUT: geometry}, OUTS)
        counts[profile] = served[OUT_COUNT][:, 0].tolist()
        for b, geo in enumerate(geos):
            ours = postprocess_card(ML_CARD, {"output0": raw[b]}, geo, ML_CARD.nms(profile))
            theirs = unpad_detections(served[OUT_BOXES][b], served[OUT_SCORES][b], served[OUT_CLASSES][b],
                                      served[OUT_COUNT][b])
            assert len(ours) > 1  # NMS had several boxes to keep, in a real image size
            assert len(theirs) == len(ours)
            np.testing.assert_array_equal(theirs.boxes, ours.boxes)
            np.testing.assert_array_equal(theirs.scores, ours.scores)
            np.testing.assert_array_equal(theirs.classes, ours.classes)
            assert (served[OUT_CLASSES][b][len(ours):] == -1).all()
            if profile == "ap_multi":  # some box is detected as two classes
                _, per_box = np.unique(theirs.boxes, axis=0, return_counts=True)
                assert per_box.max() > 1
    assert counts["ap_multi"] != counts["ap"]  # the server honoured multi_label


def test_ensemble_without_geometry_returns_input_pixels(ensemble_server):
    server, names = ensemble_server
    x, geos = _images(2, seed=1)
    n = names["speed"]
    raw = _infer(server.grpc_url, n.model, {"images": x}, ["output0"])["output0"]
    served = _infer(server.grpc_url, n.ensemble, {"images": x}, OUTS)
    for b, geo in enumerate(geos):
        in_pixels = unpad_detections(served[OUT_BOXES][b], served[OUT_SCORES][b], served[OUT_CLASSES][b],
                                     served[OUT_COUNT][b])
        ours = postprocess_card(CARD, {"output0": raw[b]}, geo, CARD.nms("speed"))
        assert len(ours) > 1 and not np.allclose(in_pixels.boxes, ours.boxes)  # not mapped back yet
        np.testing.assert_array_equal(in_pixels.scores, ours.scores)
        np.testing.assert_array_equal(in_pixels.to_original(geo).boxes, ours.boxes)


def test_profiles_reach_the_server_model(ensemble_server):
    server, names = ensemble_server
    x, _ = _images(1, seed=2)
    speed = _infer(server.grpc_url, names["speed"].ensemble, {"images": x}, OUTS)
    ap = _infer(server.grpc_url, names["ap"].ensemble, {"images": x}, OUTS)
    assert ap[OUT_COUNT][0, 0] > speed[OUT_COUNT][0, 0] > 0
    assert speed[OUT_SCORES][0, : speed[OUT_COUNT][0, 0]].min() > 0.25
