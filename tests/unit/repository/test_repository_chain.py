"""The repository's python backends run without tritonkit, writing a chain leaves the detector
alone, and the Target table drives the configs.

The backends are loaded in a separate interpreter started with ``-I -S`` whose ``sys.path`` holds
only numpy's site-packages and a stub of ``triton_python_backend_utils`` (the module the Triton
python backend provides; it cannot run here outside the server), and where ``import tritonkit``
is blocked, as in NGC's tritonserver image.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tritonkit.model_repository.writer as writer
from support.isolated import run_isolated as _run_isolated
from tritonkit.cards import NMSProfile, card_from_dict, get_card
from tritonkit.spec import CARD_PARAMETER
from tritonkit.tasks.segment.task import ARGMAX_BACKEND
from tritonkit.tasks.detect.math import card_detections as postprocess_card
from tritonkit.spec import GEOMETRY_TENSOR as GEOMETRY_INPUT
from tritonkit.tasks.detect.math import OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES, unpad_detections
from tritonkit.client.preprocess import preprocess
from tritonkit.model_repository.config import (
    TARGET_TABLE, TARGETS, ConfigError, RepoOptions, Target, config_to_json, config_to_text, get_target,
    model_config, parse_config, pb_module)
from tritonkit.model_repository.ensemble import ChainTensor, PostprocessChain, write_postprocess_chain
from support.chains import write_chain
from tritonkit.model_repository.writer import write_model

from support.onnx_models import tiny_yolo_onnx

CARD = get_card("demo_shapes_det")
ML_CARD = CARD.with_overrides(nms_profiles=(*CARD.nms_profiles, NMSProfile("ap_multi", 0.001, 0.65, multi_label=True)))


def _images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xs, geos = [], []
    for h, w in [(96, 160), (200, 120), (128, 128)][:n]:
        x, geo = preprocess(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), CARD.preprocess)
        xs.append(x)
        geos.append(geo)
    return np.stack(xs), geos


def _check_nms_model(tmp_path: Path, repo: Path, detector: str, profile: str, raw: np.ndarray, geos) -> None:
    model_dir = repo / f"{detector}_nms_{profile}"
    assert (model_dir / "1" / "tk_detect.py").is_file() and (model_dir / "1" / "tk_spec.py").is_file()
    for name in ("model.py", "tk_detect.py", "tk_spec.py"):
        # unconditional imports only: the shipped math imports tritonkit.spec solely when it is
        # part of the tritonkit package (``if __package__``); the isolated run below proves it
        imports = [line for line in (model_dir / "1" / name).read_text().splitlines()
                   if line.startswith(("import ", "from "))]
        assert imports and not [line for line in imports if "tritonkit" in line]
    geometry = np.stack([g.as_array() for g in geos])
    # one request with the geometry, one without (boxes stay in model-input pixels)
    served = _run_isolated(tmp_path / profile, model_dir, [{"output0": raw, GEOMETRY_INPUT: geometry},
                                                            {"output0": raw}])
    prof = ML_CARD.nms(profile)
    for with_geo, result in zip((True, False), served):
        for b, geo in enumerate(geos):
            ours = postprocess_card(ML_CARD, {"output0": raw[b]}, geo if with_geo else None, prof)
            theirs = unpad_detections(result[OUT_BOXES][b], result[OUT_SCORES][b], result[OUT_CLASSES][b],
                                      result[OUT_COUNT][b])
            assert len(ours) > 1 and len(theirs) == len(ours)
            np.testing.assert_array_equal(theirs.boxes, ours.boxes)
            np.testing.assert_array_equal(theirs.scores, ours.scores)
            np.testing.assert_array_equal(theirs.classes, ours.classes)


def test_cpu_repository_backends_run_without_tritonkit(tmp_path):
    import onnxruntime as ort

    onnx_path = tiny_yolo_onnx(tmp_path / "tiny_yolo.onnx")
    repo = tmp_path / "repo"
    detector = write_model(ML_CARD, onnx_path, repo, RepoOptions(target="cpu", max_batch_size=8)).name
    for profile in ("speed", "ap_multi"):
        write_chain(ML_CARD, repo, detector, profile)
    x, geos = _images(3)
    # the detector's model.py (onnxruntime) against onnxruntime run here
    (out,) = _run_isolated(tmp_path / "det", repo / detector, [{"images": x}])
    expected = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    np.testing.assert_allclose(out["output0"], expected, rtol=1e-5, atol=1e-5)
    for profile in ("speed", "ap_multi"):
        _check_nms_model(tmp_path, repo, detector, profile, expected, geos)


def test_gpu_repository_nms_backend_runs_without_tritonkit(tmp_path):
    """The gpu target's plan is a dummy file (no TensorRT here): only its NMS model is python."""
    plan = tmp_path / "det.plan"
    plan.write_bytes(b"not a real plan")
    repo = tmp_path / "repo"
    detector = write_model(ML_CARD, plan, repo, RepoOptions(target="gpu", max_batch_size=8)).name
    names = write_chain(ML_CARD, repo, detector, "ap")
    assert parse_config((repo / detector / "config.pbtxt").read_text()).platform == "tensorrt_plan"
    assert sorted(p.name for p in repo.rglob("model.py")) == ["model.py"]  # the NMS model's only
    assert parse_config((repo / names.ensemble / "config.pbtxt").read_text()).max_batch_size == 8
    rng = np.random.default_rng(3)
    raw = rng.random((2, 256, 9)).astype(np.float32)
    raw[..., :2] *= 128
    raw[..., 2:4] *= 40
    x, geos = _images(2)
    _check_nms_model(tmp_path, repo, detector, "ap", raw, geos)


# -- writing a chain writes the detector zero times --------------------------------------------

def _stamps(folder: Path) -> dict:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_write_nms_chain_leaves_the_detector_alone(tmp_path, monkeypatch):
    onnx_path = tiny_yolo_onnx(tmp_path / "tiny_yolo.onnx")
    repo = tmp_path / "repo"
    detector = write_model(CARD, onnx_path, repo, RepoOptions(target="cpu", max_batch_size=4)).name
    before = _stamps(repo / detector)
    calls = []
    monkeypatch.setattr(writer, "write_model", lambda *a, **k: calls.append(a))
    names = [write_chain(CARD, repo, detector, p) for p in ("ap", "speed")]
    assert calls == []
    assert _stamps(repo / detector) == before
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        [detector] + [n.postprocess for n in names] + [n.ensemble for n in names])
    # the chain follows the served detector's max batch, not the card's
    assert parse_config((repo / names[0].postprocess / "config.pbtxt").read_text()).max_batch_size == 4


def test_write_nms_chain_needs_the_detector_written_first(tmp_path):
    with pytest.raises(ConfigError, match="write the model 'det' before"):
        write_chain(CARD, tmp_path, "det", "ap")


def test_a_postprocess_chain_other_than_nms(tmp_path):
    """The chain writer is not NMS-specific: an argmax-like chain with no extra inputs."""
    seg = CARD.with_overrides(name="seg")
    chain = PostprocessChain(kind="argmax", backend_source=ARGMAX_BACKEND, parameters=(("axis", "0"),),
                             outputs=(ChainTensor(name="mask", dims=(128, 128), dtype="INT32"),))
    names = write_postprocess_chain(seg, tmp_path, "seg", chain, max_batch_size=2)
    assert (names.postprocess, names.ensemble) == ("seg_argmax", "seg_ensemble_argmax")
    post = parse_config((tmp_path / names.postprocess / "config.pbtxt").read_text())
    ens = parse_config((tmp_path / names.ensemble / "config.pbtxt").read_text())
    assert [i.name for i in post.input] == ["output0"] and post.parameters["axis"].string_value == "0"
    assert [i.name for i in ens.input] == ["images"] and [o.name for o in ens.output] == ["mask"]
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["seg", "seg_argmax"]
    assert card_from_dict(json.loads(post.parameters[CARD_PARAMETER].string_value)) == seg  # the one card copy
    assert not (tmp_path / names.postprocess / "card.json").exists()


def test_cli_server_nms_writes_the_detector_once(tmp_path, monkeypatch):
    from tritonkit.cli import repo as cli_repo

    onnx_path = tiny_yolo_onnx(tmp_path / "tiny_yolo.onnx")
    real = cli_repo.write_model
    calls = []
    monkeypatch.setattr(cli_repo, "write_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    parser = __import__("argparse").ArgumentParser()
    cli_repo.add_arguments(parser)
    args = parser.parse_args(["--model", "demo_shapes_det", "--model-file", str(onnx_path),
                              "--out", str(tmp_path / "repo"), "--server-postprocess", "ap,speed"])
    assert cli_repo.run(args) == 0
    assert len(calls) == 1
    assert {p.name for p in (tmp_path / "repo").iterdir()} == {
        "demo_shapes_det", "demo_shapes_det_nms_ap", "demo_shapes_det_ensemble_ap",
        "demo_shapes_det_nms_speed", "demo_shapes_det_ensemble_speed"}


# -- the Target table -------------------------------------------------------------------------

@pytest.mark.parametrize("name", TARGETS)
def test_target_table_round_trips_through_config_text(name, tmp_path):
    target = get_target(name)
    card = get_card("yolov5s")
    cfg = model_config(card, RepoOptions(target=name))
    again = parse_config(config_to_text(cfg))
    assert again == cfg
    assert (again.backend, again.platform) == (target.backend, target.platform)
    if target.platform:
        assert again.default_model_filename == target.model_file
    kind = pb_module().ModelInstanceGroup.Kind.Name(again.instance_group[0].kind)
    assert kind == target.instance_kind
    for suffix in target.accepts_suffixes:
        assert target.accepts(suffix.upper())
    assert not target.accepts(".txt")


def test_target_rows_are_validated():
    with pytest.raises(ConfigError, match="exactly one of backend and platform"):
        Target(name="x", model_file="m", instance_kind="KIND_CPU", accepts_suffixes=(".m",))
    with pytest.raises(ConfigError, match="instance_kind"):
        Target(name="x", platform="p", model_file="m", instance_kind="CPU", accepts_suffixes=(".m",))
    assert set(TARGET_TABLE) == set(TARGETS) == {"cpu", "onnxruntime", "gpu"}


def test_wrong_suffix_names_the_target(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"x")
    with pytest.raises(Exception, match="target 'gpu' serves a .plan or .engine file, got .onnx"):
        write_model(CARD, f, tmp_path / "repo", RepoOptions(target="gpu"))
