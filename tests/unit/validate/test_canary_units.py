"""The canary gate's parts without a server: each task's agreement on hand-made records (worked
out by hand), the decision rules, the options and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.tasks.base import get_task
from tritonkit.client.items import FileItem
from tritonkit.client.pipeline import CallableBackend, EngineOptions, run_stream
from tritonkit.tasks.segment.task import SegmentAdapter
from tritonkit.validate.agreement import (
    PREDICTION, RecordingAdapter, detection_agreement, mask_agreement, measure_for, paired, top1_agreement)
from tritonkit.validate.canary import CanaryError, CanaryOptions, CanaryResult, Side, decide, side_options

from support.onnx_models import tiny_segmenter

DET = get_card("demo_shapes_det")


def _result(candidate: Side, stable: Side, agreement: float | None = 1.0, **thresholds) -> CanaryResult:
    t = {"max_metric_drop": 0.01, "min_agreement": 0.95, "max_p99_ratio": 1.25, **thresholds}
    r = CanaryResult(task="classify", model="m", metric="top1", agreement_name="top1_agreement",
                     agreement=agreement, compared=10, candidate=candidate, stable=stable, thresholds=t, load={})
    r.problems = decide(r)
    return r


def test_top1_agreement_counts_images_with_the_same_top_class():
    cand = [{"key": k, "topk": [c, 9]} for k, c in (("a", 1), ("b", 2), ("c", 3), ("d", 4))]
    stab = [{"key": k, "topk": [c, 1]} for k, c in (("d", 4), ("a", 1), ("c", 0), ("b", 2))]
    mine, theirs = paired(cand, stab)
    assert [r["key"] for r in theirs] == ["a", "b", "c", "d"]
    assert top1_agreement(mine, theirs, get_card("demo_shapes")) == 0.75


def _det(boxes, scores, classes) -> dict:
    return {"key": "x", "image_id": 1, "boxes": boxes, "scores": scores, "classes": classes}


def test_detection_agreement_matches_confident_boxes_by_class_and_iou():
    stable = _det([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 1, 2])
    assert detection_agreement([stable], [stable], DET) == 1.0
    # one box moved off (IoU 0), one class changed, one kept; plus a low-score box that does not count
    cand = _det([[0, 0, 10, 10], [20, 20, 40, 40], [100, 100, 110, 110], [0, 0, 10, 10]],
                [0.9, 0.8, 0.7, 0.1], [0, 3, 2, 1])
    assert detection_agreement([cand], [stable], DET) == pytest.approx(2 * 1 / (3 + 3))
    # a box shifted by 2 px keeps IoU (8x10)/(12x10) = 0.667 >= 0.5: still matched
    shifted = _det([[2, 0, 12, 10]], [0.9], [0])
    assert detection_agreement([shifted], [_det([[0, 0, 10, 10]], [0.9], [0])], DET) == 1.0
    empty = _det([], [], [])
    assert detection_agreement([empty], [empty], DET) == 1.0
    assert detection_agreement([empty], [stable], DET) == 0.0


def test_mask_agreement_is_the_miou_of_one_mask_against_the_other():
    card = get_card("demo_seg")
    stable = np.zeros((4, 4), np.uint8)
    stable[:, 2:] = 1                     # 8 px of 0, 8 px of 1
    cand = stable.copy()
    cand[0, 2] = 0                        # one px of class 1 called 0
    # class 0: inter 8, union 9; class 1: inter 7, union 8 -> mean (8/9 + 7/8) / 2
    got = mask_agreement([{PREDICTION: cand}], [{PREDICTION: stable}], card)
    assert got == pytest.approx((8 / 9 + 7 / 8) / 2)
    assert mask_agreement([{PREDICTION: stable}], [{PREDICTION: stable}], card) == 1.0
    assert mask_agreement([{PREDICTION: cand[:2]}], [{PREDICTION: stable}], card) == 0.0


def test_every_task_has_a_measure_of_its_own_metric():
    for task, metric in (("classify", "top1"), ("detect", "map50_95"), ("segment", "miou")):
        measure = measure_for(task)
        assert measure.metric == metric
        assert any(f == metric for f in get_task(task).metrics_type.__dataclass_fields__)
    assert measure_for("segment").prediction is not None and measure_for("classify").prediction is None


@pytest.mark.parametrize("cand, stab, agreement, extra, expected", [
    (Side("c", metric=0.80, p99_ms=[10.0]), Side("s", metric=0.805, p99_ms=[9.0]), 0.97, {}, []),
    (Side("c", metric=0.78, p99_ms=[10.0]), Side("s", metric=0.80, p99_ms=[10.0]), 0.97, {}, ["top1 fell"]),
    (Side("c", metric=0.80, p99_ms=[13.0]), Side("s", metric=0.80, p99_ms=[10.0]), 0.97, {}, ["p99 13.00 ms"]),
    (Side("c", metric=0.80, p99_ms=[13.0]), Side("s", metric=0.80, p99_ms=[10.0]), 0.97,
     {"max_p99_ratio": 1.5}, []),
    (Side("c", metric=0.80), Side("s", metric=0.80), 0.90, {}, ["top1_agreement 0.9000 < 0.95"]),
    (Side("c", metric=None), Side("s", metric=0.80), 1.0, {}, ["top1 not measured"]),
    (Side("c", metric=0.8, failed=["a.jpg", "b.jpg"]), Side("s", metric=0.8, failed=["b.jpg"]), 1.0, {},
     ["the candidate failed 1 images the stable served (first: a.jpg)"]),
    (Side("c", metric=0.8, load_error="exit code 99: boom"), Side("s", metric=0.8), 1.0, {},
     ["candidate load failed: exit code 99: boom"]),
])
def test_decision_rules(cand, stab, agreement, extra, expected):
    r = _result(cand, stab, agreement, **extra)
    assert len(r.problems) == len(expected)
    for problem, start in zip(r.problems, expected):
        assert problem.startswith(start)
    assert r.decision == ("rollback" if expected else "promote")
    assert r.summary().startswith(f"{r.decision}: top1 ")


def test_p99_is_the_median_of_the_rounds():
    side = Side("c", p99_ms=[30.0, 10.0, 12.0])
    assert side.p99_median_ms == 12.0 and side.to_dict()["p99_rounds_ms"] == [30.0, 10.0, 12.0]


def test_options_and_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(CanaryError, match="are the same server"):
        CanaryOptions(candidate="a:1", stable="a:1", model="m", dataset=(("data", tmp_path),), out=tmp_path)
    with pytest.raises(CanaryError, match="min_agreement is a fraction"):
        CanaryOptions(candidate="a:1", stable="b:1", model="m", dataset=(), out=tmp_path, min_agreement=95)
    options = CanaryOptions(candidate="a:1", stable="b:1", model="m", dataset=(("annotations", tmp_path),),
                            out=tmp_path)
    with pytest.raises(CanaryError, match="^--annotations does not apply to classify models"):
        side_options(get_task("classify"), options, "a:1", "candidate")
    base = ["validate", "--stable", "b:1", "--out", str(tmp_path)]
    for argv, message in ((["--candidate", "a:1", "--models", "m"], "give --data"),
                          (["--candidate", "a:1", "--data", str(tmp_path)], "one model: give it with --models"),
                          (["--models", "m", "--data", str(tmp_path)], "needs both --candidate and --stable")):
        assert main(base + argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err
    assert main(["validate", "--out", str(tmp_path)]) == 1
    assert "--models" in capsys.readouterr().err


def test_side_options_carry_the_dataset_and_limit(tmp_path):
    options = CanaryOptions(candidate="a:1", stable="b:1", model="demo_shapes", dataset=(("data", Path("/d")),),
                            out=tmp_path, limit=7)
    o = side_options(get_task("classify"), options, "a:1", "candidate")
    assert (o.url, o.model_name, o.limit, o.data, o.timing_images, o.out) == (
        "a:1", "demo_shapes", 7, Path("/d"), 0, tmp_path / "candidate")


def _segment_records(onnx: Path, items) -> list[dict]:
    """The segmenter ``onnx`` in-process (onnxruntime) over ``items`` through the engine, with the
    canary's recording adapter around the task's own."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    seg = get_card("demo_seg")
    adapter = RecordingAdapter(SegmentAdapter(seg, score=False), measure_for("segment"))
    with CallableBackend(lambda x: {seg.outputs[0].name: session.run(None, {seg.input.name: x})[0]}) as backend:
        stream = run_stream(items, adapter, backend, EngineOptions(batch_size=1, progress=False))
    return stream.records


def test_segment_records_carry_the_mask_at_the_original_size(tmp_path):
    """No server here: the task's adapter and the engine with two in-process segmenters (the server
    path is the same engine with a Triton client as the backend)."""
    from PIL import Image

    items = []
    for i, (h, w) in enumerate(((50, 70), (64, 48))):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        items.append(FileItem(path.name, path, 0))
    seg = get_card("demo_seg")
    a = _segment_records(tiny_segmenter(tmp_path / "a.onnx", num_classes=seg.num_classes, seed=0), items)
    b = _segment_records(tiny_segmenter(tmp_path / "b.onnx", num_classes=seg.num_classes, seed=3), items)
    assert [r[PREDICTION].shape for r in a] == [(50, 70), (64, 48)] and a[0][PREDICTION].dtype == np.uint8
    assert mask_agreement(a, a, seg) == 1.0
    assert 0.0 <= mask_agreement(a, b, seg) < 1.0
