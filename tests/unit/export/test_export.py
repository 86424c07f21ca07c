"""`tritonkit export`: torch weights -> ONNX (dynamic batch, opset >= 17, checker), the params/FLOPs
sidecar, random weights only behind a flag with a loud warning, and adopting a user ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tritonkit.cli import main

# torchvision's published figures for squeezenet1_1 (its Weights.meta: num_params, GFLOPS = GMACs)
SQUEEZENET11_PARAMS = 1_235_496
SQUEEZENET11_GMACS = 0.35


@pytest.fixture(scope="module")
def squeezenet_weights(tmp_path_factory):
    """A state dict file of torchvision's squeezenet1_1 (initialised with a fixed seed), as
    torchvision ships its weights: a plain ``torch.save(model.state_dict())``."""
    import torch
    import torchvision

    torch.manual_seed(123)
    model = torchvision.models.squeezenet1_1(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "squeezenet1_1-test.pth"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def exported(squeezenet_weights, tmp_path_factory):
    path, _ = squeezenet_weights
    out = tmp_path_factory.mktemp("onnx")
    assert main(["export", "--model", "squeezenet1_1", "--weights", str(path), "--out", str(out)]) == 0
    return out


def test_weights_export_is_a_checked_dynamic_batch_onnx(exported, squeezenet_weights):
    import onnx
    import onnxruntime as ort
    import torch

    model = onnx.load(str(exported / "squeezenet1_1.onnx"))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param and out.type.tensor_type.shape.dim[0].dim_param
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 224, 224]

    # the file's weights are the ones exported: onnxruntime equals torch at a batch never traced
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    got = ort.InferenceSession(str(exported / "squeezenet1_1.onnx"),
                               providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
    with torch.no_grad():
        ref = squeezenet_weights[1](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def test_sidecar_records_published_params_and_flops(exported, squeezenet_weights):
    from tritonkit.io import sha256_file

    side = json.loads((exported / "squeezenet1_1.json").read_text())
    assert side["card"] == "squeezenet1_1" and side["random_weights"] is False
    assert side["source"] == {"kind": "weights", "file": str(squeezenet_weights[0]),
                              "sha256": sha256_file(squeezenet_weights[0])}
    assert side["params"] == SQUEEZENET11_PARAMS  # the torch model's count, as torchvision publishes it
    assert 0 < side["onnx_params"] <= side["params"]
    assert side["macs_per_image"] / 1e9 == pytest.approx(SQUEEZENET11_GMACS, abs=0.01)
    assert side["flops_per_image"] == 2 * side["macs_per_image"]
    assert side["onnx_sha256"] == sha256_file(exported / "squeezenet1_1.onnx")
    assert side["opset"] >= 17 and side["verify"]["max_abs_diff"] < 1e-3


def test_no_source_is_a_usage_error_and_random_weights_warn_loudly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", "demo_shapes", "--out", str(tmp_path)])
    assert exc.value.code == 2 and not list(tmp_path.iterdir())
    assert "--random-weights" in capsys.readouterr().err

    assert main(["export", "--model", "demo_shapes", "--random-weights", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "WARNING" in err and "RANDOM weights" in err and "meaningless" in err
    assert "RANDOM" in captured.out
    side = json.loads((tmp_path / "demo_shapes.json").read_text())
    assert side["random_weights"] is True and side["source"]["kind"] == "random"


def test_bad_weights_files_are_one_line_errors(tmp_path, squeezenet_weights, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint\n" * 10)
    assert main(["export", "--model", "squeezenet1_1", "--weights", str(garbage), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "garbage.pth: not a PyTorch state dict file (corrupt, truncated" in err[0]

    # squeezenet weights for the demo card's arch: every key is wrong, nothing is written
    assert main(["export", "--model", "demo_shapes", "--weights", str(squeezenet_weights[0]),
                 "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match demo:shapes_cnn" in err[0] and "missing keys" in err[0]
    assert not (tmp_path / "o" / "demo_shapes.onnx").exists()


def test_user_onnx_is_checked_against_the_card_and_counted(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--out", str(out)]) == 0
    side = json.loads((out / "demo_shapes.json").read_text())
    assert side["source"]["kind"] == "onnx"
    assert side["params"] == 16 * 3 * 3 * 3 + 16 + 8 * 16 + 8  # conv w, b; gemm w, b
    assert side["macs_per_image"] == 16 * 64 * 64 * 27 + 8 * 16
    assert (out / "demo_shapes.onnx").read_bytes() == tiny_onnx.read_bytes()

    capsys.readouterr()
    assert main(["export", "--model", "resnet50", "--onnx", str(tiny_onnx), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "does not match card 'resnet50'" in err and "dim 2 is 64, card says 224" in err
    assert "'logits': dim 1 is 8, card says 1000" in err
    assert not (tmp_path / "r" / "resnet50.onnx").exists()


# -- builders, output adapters, dynamic sizes ------------------------------------------------------

def _seg_card(**changes):
    """A tiny segmentation card (4 classes, 32x32 input) for the test builders below."""
    from tritonkit.tasks.segment.math import ArgmaxMask
    from tritonkit.cards import ModelCard, Preprocess, TensorSpec

    base = dict(name="tiny_seg", task="segment", arch="test:tiny_seg", input=TensorSpec("input", (3, 32, 32)),
                outputs=(TensorSpec("out", (4, 32, 32)),), preprocess=Preprocess("resize", size=32),
                postprocess=ArgmaxMask(), labels="demo_shapes_det", num_classes=4, max_batch_size=4)
    base.update(changes)
    return ModelCard(**base)


def _tiny_seg_module():
    """A segmentation-shaped model returning ``{"out", "aux"}`` as torchvision's do."""
    import torch
    from torch import nn

    class TinySeg(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Conv2d(3, 8, 3, padding=1)
            self.classifier = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            f = torch.relu(self.backbone(x))
            return {"out": self.classifier(f), "aux": f}

    return TinySeg()


@pytest.fixture(scope="module")
def seg_builders():
    from tritonkit.export import BuiltModel, dict_outputs, register_builder

    register_builder("test:tiny_seg", lambda card: BuiltModel(
        _tiny_seg_module(), dict_outputs("out"), dropped_prefixes=("aux_classifier.",), note="aux weights dropped"))
    register_builder("test:tiny_seg_raw", lambda card: _tiny_seg_module())  # no adapter: a dict reaches export


def test_dict_outputs_export_the_adapted_head_and_drop_aux_weights(seg_builders, tmp_path):
    import onnx
    import torch

    from tritonkit.export import export_model

    card = _seg_card()
    sd = _tiny_seg_module().state_dict()
    sd["aux_classifier.0.weight"] = torch.zeros(4, 8, 1, 1)  # as torchvision's published checkpoints carry
    weights = tmp_path / "seg.pth"
    torch.save(sd, weights)
    result = export_model(card, tmp_path / "out", weights=weights)
    graph = onnx.load(str(result.onnx_path))
    assert [o.name for o in graph.graph.output] == ["out"]
    side = json.loads(result.sidecar_path.read_text())
    assert side["arch"] == "test:tiny_seg" and side["notes"] == ["1 aux weights dropped"]
    assert side["macs_per_image"] == 32 * 32 * (8 * 27 + 4 * 8)


def test_a_dict_output_without_adapter_is_one_line_not_a_traceback(seg_builders, tmp_path, capsys):
    from tritonkit.cli import main

    path = tmp_path / "raw.json"
    path.write_text(json.dumps(_seg_card(name="raw_seg", arch="test:tiny_seg_raw").to_dict()))
    assert main(["export", "--model", str(path), "--random-weights", "--out", str(tmp_path / "o")]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "WARNING" not in line and line.strip()]
    assert err[-1].startswith("tritonkit export: error: card 'raw_seg' (arch test:tiny_seg_raw): model returns "
                              "a dict with keys ['out', 'aux']")
    assert not (tmp_path / "o" / "raw_seg.onnx").exists()


def test_unknown_arch_names_the_builders_and_the_onnx_way_out():
    from tritonkit.cards import get_card
    from tritonkit.export import ExportError, build_model, builder_names

    assert "torchvision:*" in builder_names() and "timm:gluon_resnet50_v1b" in builder_names()
    with pytest.raises(ExportError, match=r"arch 'ultralytics:yolov5s' has no builder here \(known: .*\); "
                                          r"export it with its own tool and pass --onnx FILE"):
        build_model(get_card("yolov5s"))


def test_torchvision_segmentation_builder_adapts_out_and_drops_aux():
    """Builds torchvision's smallest segmentation model (no weights, no download) and checks the
    builder's adapter and dropped prefixes; the export path itself is covered by the tiny model."""
    import torch

    from tritonkit.export import build_model

    card = _seg_card(arch="torchvision:lraspp_mobilenet_v3_large", input=_seg_card().input)
    built = build_model(card)
    assert built.dropped_prefixes == ("aux_classifier.",)
    with torch.no_grad():
        (out,) = built.adapter(built.module(torch.zeros(1, 3, 32, 32)))
    assert tuple(out.shape) == (1, 4, 32, 32)


def test_dynamic_hw_card_exports_dynamic_spatial_axes(seg_builders, tmp_path):
    import onnx
    import onnxruntime as ort

    from tritonkit.cards import Preprocess, SpatialRange, TensorSpec
    from tritonkit.export import export_model

    card = _seg_card(name="dyn_seg", input=TensorSpec("input", (3, -1, -1)), outputs=(TensorSpec("out", (4, -1, -1)),),
                     preprocess=Preprocess("resize_short", size=32),
                     dynamic_shape=SpatialRange(min=(16, 16), opt=(32, 48), max=(64, 64)))
    result = export_model(card, tmp_path, random_weights=True)
    dims = onnx.load(str(result.onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    x = np.zeros((1, 3, 24, 40), np.float32)  # a size the export never saw
    out = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == (1, 4, 24, 40)
    assert result.macs_per_image == 32 * 48 * (8 * 27 + 4 * 8)  # counted at dynamic_shape.opt


# -- adopting an ONNX: provenance and FLOPs -------------------------------------------------------

def test_adopted_onnx_is_recorded_as_adopted_and_claims_no_arch(tiny_onnx, tmp_path):
    from tritonkit.export import read_export_sidecar
    from tritonkit.io import sha256_file

    assert main(["export", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--out", str(tmp_path)]) == 0
    side = read_export_sidecar(tmp_path / "demo_shapes.json")
    assert side["adopted"] is True and side["arch"] is None
    assert side["source"] == {"kind": "onnx", "adopted": True, "file": str(tiny_onnx), "sha256": sha256_file(tiny_onnx)}
    assert "not built here" in side["built_from"]


def _runtime_pad_classifier(path, *, custom_op: bool = False):
    """tiny_classifier's graph with a Pad before the Conv whose pads are computed from the data at
    run time (0 * max(x) + [0,0,1,1,0,0,1,1]), so shape inference cannot size the Conv. With
    ``custom_op`` the input first goes through an op onnxruntime does not know."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(np.zeros(16, np.float32), "conv_b"),
             numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "fc_b"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "base_pads"),
             numpy_helper.from_array(np.array(0, np.int64), "zero")]
    src = "x"
    nodes = []
    if custom_op:
        nodes.append(helper.make_node("Mystery", ["input"], ["x"], domain="test.custom"))
    else:
        nodes.append(helper.make_node("Identity", ["input"], ["x"]))
    nodes += [
        helper.make_node("ReduceMax", [src], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
        helper.make_node("Mul", ["mi", "zero"], ["z"]),
        helper.make_node("Add", ["base_pads", "z"], ["pads"]),
        helper.make_node("Pad", [src, "pads"], ["padded"]),
        helper.make_node("Conv", ["padded", "conv_w", "conv_b"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "runtime_pad", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("test.custom", 1)] if custom_op else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_flops_of_a_conv_behind_a_runtime_pad_are_counted_not_dropped(tmp_path):
    import onnx

    from tritonkit.export import read_export_sidecar

    path = _runtime_pad_classifier(tmp_path / "pad.onnx")
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), data_prop=True)
    conv_out = [v for v in inferred.graph.value_info if v.name == "c"]
    assert not conv_out or not all(d.dim_value for d in conv_out[0].type.tensor_type.shape.dim[2:])  # unsized
    assert main(["export", "--model", "demo_shapes", "--onnx", str(path), "--out", str(tmp_path / "o")]) == 0
    side = read_export_sidecar(tmp_path / "o" / "demo_shapes.json")
    assert side["macs_per_image"] == 16 * 64 * 64 * 27 + 8 * 16  # the Conv is counted (was: 128, the Gemm alone)
    assert "onnxruntime run" in side["flops_method"]


def test_flops_without_shapes_are_unknown_never_a_smaller_number(tmp_path):
    import onnx

    from tritonkit.cards import get_card
    from tritonkit.export import onnx_macs

    model = onnx.load(str(_runtime_pad_classifier(tmp_path / "custom.onnx", custom_op=True)))
    count = onnx_macs(model, get_card("demo_shapes"))
    assert count.macs is None and count.ops_without_shapes == ("Conv", "Gemm")
    assert count.text == "unknown (2 ops without shapes)"


def test_a_model_that_fails_on_the_card_input_is_one_line(tmp_path):
    from tritonkit.cards import Preprocess, TensorSpec, get_card
    from tritonkit.export import ExportError, export_model

    # squeezenet's 3x3 stride-2 poolings cannot shrink a 16x16 input that far: its forward raises
    small = get_card("squeezenet1_1").with_overrides(name="sq_tiny", input=TensorSpec("input", (3, 16, 16)),
                                                     preprocess=Preprocess("resize_crop", size=16, resize=16))
    with pytest.raises(ExportError) as err:
        export_model(small, tmp_path, random_weights=True)
    assert "\n" not in str(err.value) and "card 'sq_tiny': arch torchvision:squeezenet1_1 fails on an input of " \
                                          "shape [1, 3, 16, 16]" in str(err.value)


def test_a_weights_folder_is_searched_for_the_cards_weights_file(squeezenet_weights, tmp_path):
    """--weights DIR: the card's weights_file in it (where downloaded weights are kept)."""
    from tritonkit.cards import get_card
    from tritonkit.export.builders import ExportError
    from tritonkit.export.weights import weights_path

    path, _ = squeezenet_weights
    card = get_card("squeezenet1_1")
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(ExportError, match=rf"no {card.weights_file} \(card 'squeezenet1_1'.s weights_file\)"):
        weights_path(card, folder)
    (folder / card.weights_file).write_bytes(path.read_bytes())
    assert weights_path(card, folder) == folder / card.weights_file
    assert weights_path(card, path) == path  # a file is taken as it is
    with pytest.raises(ExportError, match="names no weights_file"):
        weights_path(card.with_overrides(weights_file=None), folder)
    out = tmp_path / "onnx"
    assert main(["export", "--model", "squeezenet1_1", "--weights", str(folder), "--out", str(out)]) == 0
    assert (out / "squeezenet1_1.onnx").is_file()
