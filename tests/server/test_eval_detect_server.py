"""`eval detect` end to end: a detector with known output on a COCO-layout set with known
ground truth, through the run-stream engine (in process) and through the real bundled server
(client-side and server-side NMS, onnxruntime reference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.errors import TritonkitError
from tritonkit.evaluate import evaluate
from tritonkit.report import TIMING_MEASURED
from tritonkit.tasks.detect.task import (
    CocoItem, DetectAdapter, DetectionOptions, detection_markdown, records_to_coco)

from support.coco_data import BOXES_IN, CLASSES, SHAPES, constant_rows as _constant_rows, make_dataset
from support.onnx_models import constant_yolo_onnx

CARD = get_card("demo_shapes_det")  # 128x128 letterbox input, 4 classes -> category ids 1..4

@pytest.fixture(scope="module")
def coco_and_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_detect")
    return make_dataset(root / "coco"), constant_yolo_onnx(root / "const.onnx", _constant_rows())


def test_stream_in_process_gives_map_one(coco_and_onnx):
    """The adapter through the run-stream engine with in-process onnxruntime (no server)."""
    import onnxruntime as ort

    from tritonkit.tasks.detect.coco import load_coco_root
    from tritonkit.client.pipeline import CallableBackend, EngineOptions, run_stream, summarize

    coco_root, onnx_path = coco_and_onnx
    ds = load_coco_root(coco_root)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    adapter = DetectAdapter(CARD, CARD.nms("ap"), CARD.category_ids, gt=ds.coco)
    items = [CocoItem(im.file_name, im.path, im.id) for im in ds.images]
    with CallableBackend(lambda x: {"output0": session.run(None, {"images": x})[0]}) as backend:
        stream = run_stream(items, adapter, backend, EngineOptions(batch_size=2, progress=False))
    assert [e["path"] for e in stream.errors] == ["broken.jpg"]
    metrics = summarize(adapter, stream)
    assert metrics["map50"] == pytest.approx(1.0) and metrics["map50_95"] == pytest.approx(1.0)
    assert metrics["ground_truths"] == 9  # the broken image's box is not counted
    # the record boxes are the hand-computed ground truth of image b (scale 0.5, pad 16)
    rec_b = next(r for r in stream.records if r["image_id"] == 2)
    np.testing.assert_allclose(rec_b["boxes"], (BOXES_IN - [0, 16, 0, 16]) / 0.5, atol=1e-3)
    assert {r["category_id"] for r in records_to_coco(stream.records, CARD.category_ids)} == {1, 3, 4}


def test_adapter_pickles_without_the_ground_truth(coco_and_onnx):
    import pickle

    from tritonkit.tasks.detect.coco import load_coco_root

    adapter = DetectAdapter(CARD, CARD.nms("ap"), CARD.category_ids, gt=load_coco_root(coco_and_onnx[0]).coco)
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone.gt is None and clone.card == CARD and clone.profile == adapter.profile
    with pytest.raises(ValueError, match="needs the ground truth"):
        clone.summarize([{"image_id": 1, "boxes": [], "scores": [], "classes": []}])


def test_options_and_markdown_without_server(capsys):
    from tritonkit.cli import main

    with pytest.raises(TritonkitError, match="with data PATH, or images DIR and annotations FILE"):
        DetectionOptions(model="demo_shapes_det")  # the library names fields ...
    assert main(["eval", "detect", "--model", "demo_shapes_det"]) == 1
    assert "--data PATH" in capsys.readouterr().err  # ... the CLI names its flags
    md = detection_markdown({"model": "m", "map50": 0.5, "map50_95": 0.25, "batch_timing": [
        {"nms": "client", "batch_size": 1, "images": 8, "run_model_ms": 2.0, "run_model_img_s": 500.0,
         "run_stream_ms": 3.0, "run_stream_img_s": 333.0, "run_stream_latency_p50_ms": 4.0,
         "run_stream_latency_p99_ms": 6.0},
        {"nms": "server", "batch_size": 1, "images": 8, "run_model_ms": 1.5, "run_model_img_s": 666.0,
         "run_stream_ms": 2.5, "run_stream_img_s": 400.0, "run_stream_latency_p50_ms": 3.5,
         "run_stream_latency_p99_ms": 5.0}]})
    assert "| m (client NMS) | 2.00 | 4.00 | 333.00 | 50.00 | 25.00 |" in md
    assert "| m (server NMS) | 1.50 | 3.50 | 400.00 | 50.00 | 25.00 |" in md
    assert "| client | 1 | 8 | 2.00 | 500.00 | 4.00 | 6.00 | 333.00 | - |" in md


# -- the real server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detect_server(coco_and_onnx, tmp_path_factory, served_repository):
    from tritonkit.model_repository.config import RepoOptions
    from support.chains import write_model_and_chain
    _, onnx_path = coco_and_onnx
    root = tmp_path_factory.mktemp("detect_repo")
    for profile in ("ap", "speed"):
        write_model_and_chain(CARD, onnx_path, root / "repo", profile, RepoOptions(target="cpu", max_batch_size=4))
    server = served_repository(repo=root / "repo").server
    return server


@pytest.mark.parametrize("server_nms", [False, True])
def test_eval_detect_through_the_server(detect_server, coco_and_onnx, tmp_path, server_nms):
    coco_root, onnx_path = coco_and_onnx
    out = tmp_path / "out"
    result = evaluate("detect", DetectionOptions(
        model="demo_shapes_det", data=coco_root, url=detect_server.grpc_url, server_postprocess=server_nms,
        batch_sizes=(1, 2), timing_images=3, reference_onnx=onnx_path, out=out, progress=False))
    saved = json.loads((out / "detection.json").read_text())
    for key in ("model", "images", "errors", "map50", "map50_95", "reference_map50", "p_infer_whole",
                "p_infer_core", "batch_timing"):
        assert key in saved, key
    assert saved["images"] == 3 and [e["path"] for e in saved["errors"]] == ["broken.jpg"]
    assert saved["map50"] == pytest.approx(1.0) and saved["map50_95"] == pytest.approx(1.0)
    assert saved["reference_map50"] == pytest.approx(1.0)
    assert saved["served_model"] == ("demo_shapes_det_ensemble_ap" if server_nms else "demo_shapes_det")
    rows = saved["batch_timing"]
    assert {(r["nms"], r["batch_size"]) for r in rows} == (
        {("client", 1), ("client", 2)} | ({("server", 1), ("server", 2)} if server_nms else set()))
    assert all(r["run_model_ms"] > 0 and r["run_stream_ms"] > 0 for r in rows)
    for r in rows:  # run stream latency per batch, and the throughput beside it
        assert 0 < r["run_stream_latency_p50_ms"] <= r["run_stream_latency_p99_ms"] and r["run_stream_img_s"] > 0
    md = (out / "detection.md").read_text()
    assert "run stream latency p50 (ms/batch) | run stream latency p99 (ms/batch) | run stream throughput (img/s)" in md
    assert TIMING_MEASURED in md
    assert len(json.loads((out / "detections_coco.json").read_text())) == 9
    assert "(client NMS)" in (out / "detection.md").read_text()
    assert result.metrics.map50 == saved["map50"] and result.to_dict() == saved
    # FlagPerf validation fields, and the local server's memory (the bundled server's process tree)
    assert saved["p_val_whole"] > 0 and saved["p_val_core"] > 0
    assert saved["mem"] > 0 and saved["mem_source"].startswith("rss of tritonserver process tree")
    per_image = saved["per_image"]  # every box found: no image with an error, so no worst table
    assert per_image["images"] == 3 and per_image["images_without_error"] == 3 and per_image["worst"] == []
    assert "3 of 3 images without a missed box or a false detection" in (out / "detection.md").read_text()
    records = [json.loads(line)["record"] for line in (out / "detection.jsonl").read_text().splitlines()[1:]
               if "record" in json.loads(line)]
    assert sorted(r["count"] for r in records) == sorted(len(r["boxes"]) for r in records) and len(records) == 3


def test_image_errors_counts_missed_and_false_detections():
    from tritonkit.tasks.detect.task import detection_markdown, image_errors

    anns = [{"bbox": [0, 0, 10, 10], "category_id": 5}, {"bbox": [50, 50, 10, 10], "category_id": 5},
            {"bbox": [80, 80, 5, 5], "category_id": 7, "iscrowd": 1}]
    record = {"image_id": 1, "boxes": [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [50, 50, 60, 60]],
              "scores": [0.9, 0.8, 0.7, 0.1], "classes": [0, 0, 0, 0]}
    got = image_errors(record, anns, category_ids=[5])
    # the 0.1 box is below the confident score; the duplicate and the stray box are false detections
    assert got == {"ground_truths": 2, "detections": 3, "matched": 1, "missed": 1, "false_positives": 2}
    assert image_errors(record, anns, category_ids=[6])["matched"] == 0  # another category never matches
    md = detection_markdown({"model": "m", "per_image": {
        "confident_score": 0.25, "match_iou": 0.5, "images": 2, "images_without_error": 1, "mean_detections": 1.5,
        "max_detections": 3, "worst": [{"path": "a.jpg", "image_id": 1, **got}]}})
    assert "1 of 2 images without" in md and "| a.jpg | 2 | 3 | 1 | 1 | 2 |" in md


def test_cli_eval_detect_and_clear_errors(detect_server, coco_and_onnx, tmp_path, capsys):
    from tritonkit.cli import main

    coco_root, _ = coco_and_onnx
    code = main(["eval", "detect", "--model", "demo_shapes_det", "--data", str(coco_root), "--url",
                 detect_server.grpc_url, "--limit", "2", "--timing-images", "0", "--no-progress",
                 "--nms-profile", "speed", "--out", str(tmp_path / "cli")])
    assert code == 0
    saved = json.loads((tmp_path / "cli" / "detection.json").read_text())
    assert saved["images"] == 2 and saved["map50"] == pytest.approx(1.0)
    assert saved["nms_profile"]["name"] == "speed"

    missing = tmp_path / "nowhere.json"
    code = main(["eval", "detect", "--model", "demo_shapes_det", "--images", str(coco_root / "val2017"),
                 "--annotations", str(missing), "--url", detect_server.grpc_url, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "nowhere.json: annotation file not found" in err[0]
    code = main(["eval", "detect", "--model", "demo_shapes", "--data", str(coco_root), "--url",
                 detect_server.grpc_url, "--out", str(tmp_path / "y")])
    assert code == 1 and "is a classify model" in capsys.readouterr().err
