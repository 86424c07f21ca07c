"""tritonkit validate --candidate --stable against real local servers serving two versions of a
classifier whose accuracy is known exactly (tests/support/canary_models.py): the same weights
promote, the perturbed ones (top-1 50 %, half the images disagree) roll back. perf_analyzer runs
the load for real; the p99 bound is opened wide in the promote case because equal servers on a
loaded 2-core box can differ in p99 by chance (the ratio rule itself is tested in
tests/unit/validate/test_canary_units.py). A detector pair (a constant detector whose boxes are
the ground truth, and the same with one box moved) rolls back on mAP and detection agreement."""

from __future__ import annotations

import json

import pytest

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model

from support import readme
from support.canary_models import CARD, colour_classifier, colour_dataset
from support.coco_data import constant_rows
from support.coco_data import make_dataset as make_coco
from support.onnx_models import constant_yolo_onnx


def _serve(served_repository, tmp_path_factory, name: str, swap: bool):
    onnx = colour_classifier(tmp_path_factory.mktemp(name) / "m.onnx", swap=swap)
    return served_repository(lambda repo: write_model(CARD, onnx, repo, RepoOptions(target="cpu")), name=name)


@pytest.fixture(scope="module")
def servers(served_repository, tmp_path_factory):
    """stable, an equal candidate (same weights), a worse candidate (rows swapped)."""
    return {name: _serve(served_repository, tmp_path_factory, name, swap)
            for name, swap in (("stable", False), ("equal", False), ("worse", True))}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return colour_dataset(tmp_path_factory.mktemp("colours") / "val")


def _gate(servers, candidate: str, data, out, *extra: str) -> int:
    return main(["validate", "--candidate", servers[candidate].grpc_url, "--stable", servers["stable"].grpc_url,
                 "--models", CARD.name, "--data", str(data), "--limit", "16", "--concurrency", "2",
                 "--load-seconds", "1", "--load-rounds", "1", "--out", str(out), *extra])


def test_a_worse_candidate_is_rolled_back(servers, data, tmp_path, capsys):
    assert _gate(servers, "worse", data, tmp_path) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("rollback: top1 0.500 vs stable 1.000")
    result = json.loads((tmp_path / "canary.json").read_text())
    assert result["decision"] == "rollback" and result["compared"] == 16
    assert (result["candidate"]["metric"], result["stable"]["metric"]) == (0.5, 1.0)
    assert result["agreement_name"] == "top1_agreement" and result["agreement"] == 0.5
    assert any(p.startswith("top1 fell from 1.0000 to 0.5000") for p in result["problems"])
    assert any(p.startswith("top1_agreement 0.5000 < 0.95") for p in result["problems"])
    for side in ("candidate", "stable"):  # the load ran on both, with the same request count
        assert result[side]["p99_ms"] > 0 and result[side]["load_error"] is None
    assert result["load"]["requests"] >= 50
    assert "## Decision: rollback" in (tmp_path / "canary.md").read_text()


def test_an_equal_candidate_is_promoted(servers, data, tmp_path, capsys):
    assert _gate(servers, "equal", data, tmp_path, "--max-p99-ratio", "100") == 0
    assert capsys.readouterr().out.startswith("promote: top1 1.000 vs stable 1.000")
    result = json.loads((tmp_path / "canary.json").read_text())
    assert result["decision"] == "promote" and result["problems"] == []
    assert result["agreement"] == 1.0 and result["p99_ratio"] > 0


def test_a_candidate_that_does_not_answer_is_one_line(servers, data, tmp_path, capsys):
    assert main(["validate", "--candidate", "127.0.0.1:1", "--stable", servers["stable"].grpc_url, "--models",
                 CARD.name, "--data", str(data), "--limit", "4", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "127.0.0.1:1" in err


def test_the_readme_gate_command_runs(servers, data, tmp_path, capsys):
    """README, Operating it / Canary rollouts: the validate command as written, against the worse
    candidate (the paths and addresses mapped here; a shorter load appended to keep the test short)."""
    (argv,) = readme.commands("### Canary rollouts", "tritonkit validate")
    argv = readme.substituted(argv, {"127.0.0.1:8011": servers["worse"].grpc_url,
                                     "127.0.0.1:8001": servers["stable"].grpc_url, "data/val": str(data),
                                     "reports/canary": str(tmp_path / "canary")})
    assert main(argv[1:] + ["--load-seconds", "1", "--load-rounds", "1"]) == 1
    assert capsys.readouterr().out.startswith("rollback: ")
    assert json.loads((tmp_path / "canary" / "canary.json").read_text())["compared"] == 16


def test_a_detector_that_moves_a_box_is_rolled_back(served_repository, tmp_path_factory, tmp_path, capsys):
    """Detection: a constant detector whose boxes are the ground truth (tests/support/coco_data.py)
    against the same detector with its second box moved off: mAP drops and the detections agree
    on 2 of 3 boxes per image (2 x 2 matched / (3 + 3) = 0.667)."""
    rows = constant_rows()
    moved = rows.copy()
    moved[1, 0:2] += 40.0   # the second box's centre, far from where it was (IoU 0)
    det = get_card("demo_shapes_det")
    urls = {}
    for name, r in (("det_stable", rows), ("det_moved", moved)):
        onnx = constant_yolo_onnx(tmp_path_factory.mktemp(name) / "m.onnx", r)
        urls[name] = served_repository(lambda repo, onnx=onnx: write_model(det, onnx, repo, RepoOptions(target="cpu")),
                                       name=name).grpc_url
    coco = make_coco(tmp_path / "coco", corrupt=False)
    assert main(["validate", "--candidate", urls["det_moved"], "--stable", urls["det_stable"], "--models", det.name,
                 "--data", str(coco), "--concurrency", "2", "--load-seconds", "1", "--load-rounds", "1",
                 "--out", str(tmp_path / "out")]) == 1
    result = json.loads((tmp_path / "out" / "canary.json").read_text())
    assert result["metric"] == "map50_95" and result["stable"]["metric"] == pytest.approx(1.0, abs=1e-6)
    assert result["candidate"]["metric"] < 0.8
    assert result["agreement_name"] == "detection_agreement" and result["agreement"] == pytest.approx(2 / 3)
    assert capsys.readouterr().out.startswith("rollback: map50_95 ")
