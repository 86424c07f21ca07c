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
