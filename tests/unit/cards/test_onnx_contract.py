"""The one ONNX-vs-card check shared by export, repository and build (tritonkit.onnx_contract)."""

from __future__ import annotations

import pytest
from support.onnx_models import tiny_classifier

from tritonkit.cards import TensorSpec, get_card
from tritonkit.onnx_contract import OnnxContractError, check_onnx_against_card, onnx_mismatches, tensor_mismatches

CARD = get_card("demo_shapes")


def test_a_fitting_graph_has_no_mismatches(tiny_onnx):
    assert onnx_mismatches(CARD, tiny_onnx) == [] and tensor_mismatches(CARD, tiny_onnx) == {}
    check_onnx_against_card(CARD, tiny_onnx)  # no error


def test_every_problem_is_listed_and_grouped_by_tensor(tmp_path):
    path = tiny_classifier(tmp_path / "m.onnx", size=32, num_classes=5)
    card = CARD.with_overrides(outputs=(TensorSpec("logits", (8,), "FP16"), TensorSpec("extra", (2,))))
    grouped = tensor_mismatches(card, path)
    assert list(grouped) == ["input 'input'", "output 'logits'", "output 'extra'"]
    assert grouped["output 'logits'"] == ["dtype FP32, card says FP16",
                                          "dim 1 is 5, card says 8 (graph shape [-1, 5], card [batch, 8])"]
    assert grouped["output 'extra'"] == ["missing (graph outputs: ['logits'])"]
    flat = onnx_mismatches(card, path)
    assert flat[0] == "input 'input' dim 2 is 32, card says 64"
    assert len(flat) == sum(len(v) for v in grouped.values())
    with pytest.raises(OnnxContractError) as err:
        check_onnx_against_card(card, path)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{path} does not match card 'demo_shapes': ")


def test_fixed_batch_is_accepted_only_for_that_one_batch(tmp_path):
    import onnx

    path = tiny_classifier(tmp_path / "fixed.onnx")
    model = onnx.load(str(path))
    for v in (*model.graph.input, *model.graph.output):
        v.type.tensor_type.shape.dim[0].Clear()
        v.type.tensor_type.shape.dim[0].dim_value = 4
    assert any("fixed batch of 4" in p for p in onnx_mismatches(CARD, model))
    assert onnx_mismatches(CARD, model, batch=(4, 4)) == []
