"""Ultralytics YOLO models served by tritonkit on the real local tritonserver, with ultralytics itself
as the reference (run in subprocesses, tests/support/ultralytics_models.py):

* mAP50 / mAP50-95 of ``tritonkit eval detect`` through Triton (client NMS, and the server NMS or
  select ensemble) equal ultralytics' validator's predictions (``val(save_json=True, rect=False)``)
  rescored by pycocotools on the same ground truth, within 0.005 — for the YOLO11 anchor-free head and
  the YOLO26 NMS-free head;
* ultralytics' own Triton client (``YOLO("grpc://host:port/<model>")``) reads the served model's
  ``metadata`` and gives the class names and the boxes ultralytics gives on the local ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritonkit.evaluate import evaluate
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model
from tritonkit.tasks.detect.task import Detection, DetectionOptions

from support.chains import write_chains
from support.ultralytics_models import ultralytics_predict, ultralytics_val
from support.yolo_cards import tiny_model_card
from support.yolo_coco import yolo_split_to_coco

# fixture -> the export served (the YOLO11 anchor-free head; the YOLO26 nms=False end-to-end head)
MODELS = {"detect": "default", "end2end": "end2end"}
MAP_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def served(yolo_model, served_repository, tmp_path_factory):
    """Both tiny models served raw (``tiny_<fixture>``) and behind their ``ap`` postprocess ensembles."""
    root = tmp_path_factory.mktemp("ultralytics_served")
    cards = {}

    def write(repo: Path) -> None:
        for fixture, export in MODELS.items():
            model = yolo_model(fixture)
            card = tiny_model_card(model, root / "labels", model.exports[export])
            write_model(card, model.exports[export], repo, RepoOptions(target="cpu"))
            write_chains(card, repo, card.name, ("ap",), card.max_batch_size)
            cards[fixture] = card

    return served_repository(write, name="repo"), cards


@pytest.mark.parametrize("server_nms", [False, True])
@pytest.mark.parametrize("fixture", list(MODELS))
def test_map_through_triton_equals_ultralytics_val(served, yolo_model, tmp_path, fixture, server_nms):
    server, cards = served
    model = yolo_model(fixture)
    onnx = model.exports[MODELS[fixture]]
    images, annotations = yolo_split_to_coco(model.data, tmp_path / "coco.json")
    ref = ultralytics_val(onnx, model.data, task="detect", imgsz=model.imgsz, out=tmp_path / "ultralytics")
    out = tmp_path / "eval"
    result = evaluate("detect", DetectionOptions(
        model=cards[fixture].name, images=images, annotations=annotations, url=server.grpc_url,
        server_postprocess=server_nms, batch_sizes=(4,), timing_images=0, ultralytics_reference=ref["predictions"],
        out=out, progress=False))
    saved = json.loads((out / "detection.json").read_text())
    ultra = saved["ultralytics_reference"]
    assert saved["images"] == 24 and ultra["detections"] > 0
    assert saved["served_model"] == cards[fixture].name + ("_ensemble_ap" if server_nms else "")
    assert result.metrics.map50 == pytest.approx(ultra["map50"], abs=MAP_TOLERANCE)
    assert result.metrics.map50_95 == pytest.approx(ultra["map50_95"], abs=MAP_TOLERANCE)
    assert result.metrics.map50 > 0.5  # a model that detects: the agreement is not of two zeros
    md = (out / "detection.md").read_text()
    assert "ultralytics val" in md and str(ref["predictions"]) in md
    summary = dict(Detection().summary_rows(result))
    assert summary["ultralytics val mAP50-95"] == f"{100 * ultra['map50_95']:.2f}%"


@pytest.mark.parametrize("fixture", list(MODELS))
def test_ultralytics_client_through_triton_equals_local_onnx(served, yolo_model, fixture):
    server, cards = served
    model = yolo_model(fixture)
    images = sorted((model.data.parent / "images" / "val").glob("*.png"))[:4]
    remote = ultralytics_predict(f"grpc://{server.grpc_url}/{cards[fixture].name}", images, task="detect",
                                 imgsz=model.imgsz)
    local = ultralytics_predict(str(model.exports[MODELS[fixture]]), images, task="detect", imgsz=model.imgsz,
                                rect=False)  # a fixed-size letterbox, as for the served (fixed-size) model
    assert remote["names"] == {str(i): n for i, n in enumerate(model.names)}
    assert sum(len(r["scores"]) for r in local["results"]) > 0
    for theirs, ours in zip(local["results"], remote["results"]):
        assert ours["classes"] == theirs["classes"]
        np.testing.assert_allclose(np.reshape(ours["boxes"], (-1, 4)), np.reshape(theirs["boxes"], (-1, 4)),
                                   atol=1e-2)
        np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=1e-4)


@pytest.mark.parametrize("fixture", list(MODELS))
def test_validate_contract_and_correctness_on_the_served_heads(served, fixture, tmp_path):
    """validate's contract and correctness checks (served outputs vs the ONNX in process, batching
    invariance) on the raw served model of each head, finding the card in the served config."""
    from tritonkit.validate import ValidateOptions, validate

    server, cards = served
    report = validate(ValidateOptions(url=server.grpc_url, models=(cards[fixture].name,),
                                      checks=("readiness", "contract", "correctness"),
                                      api_key_env="TRITONKIT_TEST_UNSET_KEY", out=tmp_path))
    assert report.passed, [(c.name, c.detail) for c in report.failed]
    ref = report.by_name("correctness.reference")[0]
    assert ref.figures["max_rel_error"] <= 1e-4


def test_perf_sweep_on_the_anchor_free_model(served, tmp_path):
    """A short real perf_analyzer sweep of the served YOLO11 head and of its NMS ensemble."""
    from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
    from tritonkit.perf.sweep import SweepOptions, run_sweep

    server, cards = served
    for model in (cards["detect"].name, cards["detect"].name + "_ensemble_ap"):
        spec = PerfSpec(model=model, url=server.grpc_url, concurrency=ConcurrencyRange(1, 1),
                        measurement_mode="time_windows", measurement_interval_ms=500, stability_pct=100,
                        max_trials=10)
        result = run_sweep(spec, tmp_path / model, SweepOptions(batch_sizes=(2,)))
        assert [(p.batch_size, p.status) for p in result.points] == [(2, "ok")], model
        assert result.points[0].rows[0].img_per_s > 0
