"""`tritonkit validate` on a served segmenter (input [3, -1, -1]) and its argmax ensemble (uint8
mask), against the real bundled tritonserver: the tiny segmenter served under the demo_seg card.
The correctness check compares per pixel, and fails against a reference whose weights differ."""

from __future__ import annotations

import numpy as np
import pytest

from support.onnx_models import tiny_segmenter
from tritonkit.cards import get_card
from tritonkit.model_repository.config import RepoOptions
from support.chains import write_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.tasks.base import get_task
from tritonkit.validate import ValidateOptions, validate
from tritonkit.validate.context import ensemble_card
from tritonkit.validate.correctness import TOLERANCES, compare, reference_outputs

CARD = get_card("demo_seg")
ENSEMBLE = "demo_seg_ensemble_argmax"


def _perturbed(source, path, delta: float = 0.6):
    """The same segmenter with one class's bias raised: it wins some pixels it lost before."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    for i, init in enumerate(model.graph.initializer):
        if init.name == "b2":
            bias = numpy_helper.to_array(init).copy()
            bias[0] += delta
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(bias, "b2"))
    onnx.save(model, str(path))
    return path


# -- units: no server -----------------------------------------------------------------------------

def test_segment_task_compares_per_pixel_and_masks_against_argmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    task = get_task("segment")
    same = compare("out", logits, logits, task)
    assert same.agreement.metric == "pixel_agreement" and same.agreement.value == 1.0 and not same.labels
    shifted = logits.copy()
    shifted[:, 0] += 0.5
    changed = np.mean(np.argmax(shifted, 1) == np.argmax(logits, 1))
    assert 0 < changed < 1
    assert compare("out", shifted, logits, task).agreement.value == pytest.approx(changed)
    mask = np.argmax(shifted, axis=1).astype(np.uint8)
    c = compare("mask", mask, logits, task)
    assert c.labels and c.agreement.value == pytest.approx(changed)
    assert not c.within(TOLERANCES["fp32"]) and "pixel_agreement" in c.problem(TOLERANCES["fp32"])
    assert compare("mask", np.argmax(logits, 1).astype(np.uint8), logits, task).within(TOLERANCES["fp32"])
    assert compare("mask", mask[:, :3], logits, task).agreement.value == 0.0  # other size: nothing agrees
    cut = compare("out", logits[:, :, :3], logits, task)
    assert not cut.within(TOLERANCES["fp32"])
    assert "is not the reference's [2, 5, 6, 7]" in cut.problem(TOLERANCES["fp32"])
    # classifier scores keep their top-1 agreement; a classifier has no per-pixel measure
    scores = rng.standard_normal((4, 10))
    assert get_task("classify").output_agreement(scores, scores).metric == "top1_agreement"
    assert get_task("classify").output_agreement(logits, logits) is None


def test_reference_of_an_ensemble_mask_is_the_segmenters_only_output(tmp_path):
    onnx = tiny_segmenter(tmp_path / "seg.onnx")
    card = ensemble_card(ENSEMBLE, {"output": [{"name": "mask", "data_type": "TYPE_UINT8", "dims": ["-1", "-1"]}]},
                         CARD)
    assert card.name == ENSEMBLE and [(o.name, o.dtype, o.dims) for o in card.outputs] == [("mask", "UINT8", (-1, -1))]
    assert card.input == CARD.input and card.task == "segment"
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 85)).astype(np.float32)
    ref = reference_outputs(onnx, card, x)
    assert list(ref) == ["mask"] and ref["mask"].shape == (2, 5, 64, 85)


# -- the real server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seg_server(tmp_path_factory, served_repository):
    root = tmp_path_factory.mktemp("segvalidate")
    onnx = tiny_segmenter(root / "seg.onnx")
    repo = root / "repo"
    write_model(CARD, onnx, repo, RepoOptions(target="cpu", max_queue_delay_us=2000))
    write_chain(CARD, repo, "demo_seg")
    server = served_repository(repo=repo).server
    server.onnx = onnx
    return server


def _options(server, **kw) -> ValidateOptions:
    kw.setdefault("models", ("demo_seg", ENSEMBLE))
    return ValidateOptions(url=server.grpc_url, api_key_env="TRITONKIT_TEST_UNSET_KEY", **kw)


def _check(report, name, model):
    found = [c for c in report.by_name(name) if c.model == model]
    assert len(found) == 1, [(c.name, c.model) for c in report.checks]
    return found[0]


def test_functional_checks_pass_on_a_served_segmenter_and_its_argmax_ensemble(seg_server):
    report = validate(_options(seg_server, checks=("readiness", "contract", "correctness", "bad_requests")))
    assert report.passed, [(c.name, c.model, c.detail) for c in report.failed]
    seg = _check(report, "correctness.reference", "demo_seg")
    assert seg.figures["pixel_agreement"] == 1.0 and seg.figures["max_rel_error"] <= 1e-4
    assert seg.figures["input_shape"] == [3, 64, 85]                 # the card's dynamic_shape.opt
    ens = _check(report, "correctness.reference", ENSEMBLE)
    assert ens.figures["pixel_agreement"] == 1.0 and "max_rel_error" not in ens.figures
    assert "agreement of the class ids" in ens.detail and "served ONNX" in ens.detail
    meta = _check(report, "contract.metadata", ENSEMBLE)
    assert "ensemble of 'demo_seg'" in meta.figures["card_source"]
    assert "(mask)" in _check(report, "bad_requests.still_serving", ENSEMBLE).detail


def test_correctness_fails_per_pixel_when_the_model_differs(seg_server, tmp_path):
    other = _perturbed(seg_server.onnx, tmp_path / "perturbed.onnx")
    report = validate(_options(seg_server, checks=("correctness",),
                               reference_onnx=(("demo_seg", str(other)), (ENSEMBLE, str(other)))))
    seg = _check(report, "correctness.reference", "demo_seg")
    assert not seg.passed and "rel error" in seg.detail
    assert 0 < seg.figures["pixel_agreement"] < 1
    ens = _check(report, "correctness.reference", ENSEMBLE)
    assert not ens.passed and "pixel_agreement" in ens.detail
    assert ens.figures["pixel_agreement"] == pytest.approx(seg.figures["pixel_agreement"])
    assert _check(report, "correctness.finite", ENSEMBLE).passed
    assert _check(report, "correctness.concurrency_invariance", ENSEMBLE).passed


def test_load_runs_perf_analyzer_at_the_cards_size(seg_server, tmp_path):
    report = validate(_options(seg_server, models=(ENSEMBLE,), checks=("load",), load_seconds=2, concurrency=1,
                               slo_p99_ms=5000, out=tmp_path))
    load = _check(report, "load.slo", ENSEMBLE)
    assert load.passed, load.detail
    logs = list((tmp_path / "load").rglob("*.log"))
    assert logs and "--shape input:3,64,85" in logs[0].read_text()
