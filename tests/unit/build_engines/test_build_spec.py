"""BuildSpec: batch range defaults and errors, the one optimization profile, ONNX checks against the card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.onnx_models import qdq_classifier as _qdq_onnx, tiny_classifier
from tritonkit.build_engines.spec import (
    BatchRange, BuildSpecError, default_opt_batch, default_plan_path, make_spec, sha256_file, validate_onnx)
from tritonkit.cards import get_card

CARD = get_card("demo_shapes")          # input "input" 3x64x64, max_batch_size 64


def _fixed_batch_onnx(path: Path, batch: int) -> Path:
    """The tiny classifier with its batch axis pinned (what a careless export produces)."""
    import onnx

    tiny_classifier(path)
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(path))
    return path


def test_profile_spans_min_to_max_with_card_dims(tiny_onnx, tmp_path):
    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "p.plan", min_batch=1, opt_batch=4, max_batch=8)
    prof = spec.profile()
    assert prof.input_name == "input"
    assert prof.min == (1, 3, 64, 64)
    assert prof.opt == (4, 3, 64, 64)
    assert prof.max == (8, 3, 64, 64)
    assert spec.workspace_bytes == 4096 * 2**20


def test_defaults_are_one_to_card_max_with_power_of_two_opt(tiny_onnx, tmp_path):
    spec = make_spec(CARD, tiny_onnx, "fp32", tmp_path / "p.plan")
    assert (spec.batch.min, spec.batch.opt, spec.batch.max) == (1, 32, CARD.max_batch_size)
    # A max_batch_size > 1 config can never meet a plan whose batch range is just 1 (server#4038).
    assert spec.profile().max[0] == CARD.max_batch_size


@pytest.mark.parametrize("mn,mx,expected", [(1, 1, 1), (1, 2, 1), (1, 8, 4), (1, 32, 16), (1, 12, 4), (6, 8, 6)])
def test_default_opt_batch(mn, mx, expected):
    assert default_opt_batch(mn, mx) == expected


def test_max_above_card_is_one_clear_error(tiny_onnx, tmp_path):
    with pytest.raises(BuildSpecError, match=r"max_batch 65 is above the max_batch_size 64 of card 'demo_shapes'"):
        make_spec(CARD, tiny_onnx, "fp16", tmp_path / "p.plan", max_batch=65)


@pytest.mark.parametrize("mn,opt,mx,msg", [
    (0, 1, 4, "min_batch must be >= 1"),
    (4, 2, 8, "min <= opt <= max"),
    (1, 9, 8, "min <= opt <= max"),
    (1, None, 0, "max_batch must be >= 1"),
])
def test_bad_batch_ranges(tiny_onnx, tmp_path, mn, opt, mx, msg):
    with pytest.raises(BuildSpecError, match=msg):
        make_spec(CARD, tiny_onnx, "fp16", tmp_path / "p.plan", min_batch=mn, opt_batch=opt, max_batch=mx)


def test_unknown_precision_is_clear(tiny_onnx, tmp_path):
    with pytest.raises(BuildSpecError, match="unknown precision 'bf16'; choose one of fp32, fp16, int8"):
        make_spec(CARD, tiny_onnx, "bf16", tmp_path / "p.plan")


@pytest.mark.parametrize("kwargs,msg", [
    ({"workspace_mb": 0}, "workspace_mb must be >= 1"),
    ({"opt_level": 6}, "optimization level must be 0..5"),
    ({"hardware_compat": "turing+"}, "unknown hardware compatibility 'turing\\+'"),
])
def test_other_bad_options(tiny_onnx, tmp_path, kwargs, msg):
    with pytest.raises(BuildSpecError, match=msg):
        make_spec(CARD, tiny_onnx, "fp16", tmp_path / "p.plan", **kwargs)


def test_missing_and_corrupt_onnx(tmp_path):
    with pytest.raises(BuildSpecError, match=r"nope\.onnx: ONNX file not found"):
        validate_onnx(CARD, tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(BuildSpecError, match=r"bad\.onnx: not a readable ONNX model"):
        validate_onnx(CARD, bad)


def test_input_name_and_dims_must_match_card(tmp_path):
    other_name = tiny_classifier(tmp_path / "a.onnx", input_name="images")
    with pytest.raises(BuildSpecError, match=r"input 'input' missing \(graph inputs: \['images'\]\)"):
        validate_onnx(CARD, other_name)
    other_size = tiny_classifier(tmp_path / "b.onnx", size=32)
    with pytest.raises(BuildSpecError, match="input 'input' dim 2 is 32, card says 64; input 'input' dim 3 is 32"):
        validate_onnx(CARD, other_size)


def test_extra_graph_input_is_a_mismatch_with_the_card(tmp_path):
    """The card and the plan's one profile describe one input; a second graph input is refused up front."""
    import onnx
    from onnx import TensorProto, helper

    path = tiny_classifier(tmp_path / "two.onnx")
    model = onnx.load(str(path))
    model.graph.input.append(helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 1]))
    onnx.save(model, str(path))
    with pytest.raises(BuildSpecError, match=r"graph has 2 inputs \['aux', 'input'\]; card 'demo_shapes' describes "
                                             r"only 'input'"):
        make_spec(CARD, path, "fp16", tmp_path / "p.plan", max_batch=8)
    assert not (tmp_path / "p.plan").exists()


def test_fixed_batch_is_refused_unless_the_range_is_that_batch(tmp_path):
    fixed = _fixed_batch_onnx(tmp_path / "fixed.onnx", 1)
    with pytest.raises(BuildSpecError, match="fixed batch of 1; re-export with a dynamic batch axis"):
        make_spec(CARD, fixed, "fp16", tmp_path / "p.plan", max_batch=8)
    spec = make_spec(CARD, fixed, "fp16", tmp_path / "p.plan", min_batch=1, opt_batch=1, max_batch=1)
    assert spec.profile().max == (1, 3, 64, 64)


def test_int8_needs_a_qdq_graph(tiny_onnx, tmp_path):
    with pytest.raises(BuildSpecError, match="int8 builds from a QDQ ONNX"):
        make_spec(CARD, tiny_onnx, "int8", tmp_path / "p.plan")
    spec = make_spec(CARD, _qdq_onnx(tmp_path / "qdq.onnx"), "int8", tmp_path / "p.plan", max_batch=8)
    assert spec.precision == "int8"


def test_batch_range_object_validates_itself():
    with pytest.raises(BuildSpecError):
        BatchRange(2, 1, 4)
    assert BatchRange(1, 1, 1).max == 1


def test_plan_path_and_digest(tiny_onnx, tmp_path):
    assert default_plan_path(tmp_path, CARD, "int8") == tmp_path / "demo_shapes_int8.plan"
    import hashlib

    assert sha256_file(tiny_onnx) == hashlib.sha256(Path(tiny_onnx).read_bytes()).hexdigest()



def test_dynamic_height_width_profile_from_the_card(tmp_path):
    """A resize_short card's -1 H/W take the card's dynamic_shape min/opt/max in the profile,
    and the sidecar made from it validates (H and W may range, the channels may not)."""
    import dataclasses

    from support.onnx_models import tiny_segmenter
    from tritonkit.build_engines.sidecar import GpuInfo, SidecarError, make_sidecar, sidecar_from_dict

    card = get_card("demo_seg")  # dims (3, -1, -1); H/W min (64, 64), opt (64, 85), max (128, 128)
    onnx = tiny_segmenter(tmp_path / "seg.onnx", num_classes=card.num_classes)
    spec = make_spec(card, onnx, "fp16", tmp_path / "seg.plan", max_batch=8)
    prof = spec.profile()
    assert prof.min == (1, 3, 64, 64) and prof.opt == (4, 3, 64, 85) and prof.max == (8, 3, 128, 128)
    side = make_sidecar(spec, sha256_file(onnx), "10.13.3.9", GpuInfo("NVIDIA L4", "8.9"), "trtexec")
    assert side.sample_dims == (3, 128, 128)
    with pytest.raises(BuildSpecError, match="dynamic H and W"):
        dataclasses.replace(spec, spatial=None)
    data = side.to_dict()
    data["profile"]["min"][1] = 1  # channels may not range
    with pytest.raises(SidecarError, match="differ only in the batch axis"):
        sidecar_from_dict(data, "x.json")
    data["profile"]["min"][1], data["profile"]["min"][3] = 3, 200  # W min above max
    with pytest.raises(SidecarError, match="min <= opt <= max"):
        sidecar_from_dict(data, "x.json")
