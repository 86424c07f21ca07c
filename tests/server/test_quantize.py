"""INT8 QDQ generation with onnxruntime's static quantizer, calibrated through the card's preprocessing.

Everything here really runs (onnxruntime on CPU, and the bundled tritonserver for the serving
test); nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonkit.build_engines.quantize import (
    QuantizeError, calibration_batches, compare_onnx_outputs, find_calibration_images, quantize_int8)
from tritonkit.build_engines.spec import validate_onnx
from tritonkit.cards import get_card
from tritonkit.errors import CardError, DatasetError

CARD = get_card("demo_shapes")          # input 3x64x64, 8 classes


def conv_net(path: Path, seed: int = 0) -> Path:
    """``[N,3,64,64] -> [N,8]``: conv 3->32, relu, conv 32->32 ("head_conv"), relu, GAP, gemm.

    Big enough (~10k weights) that int8 weights make the file smaller despite the added Q/DQ nodes.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def w(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    inits = [numpy_helper.from_array(w(32, 3, 3, 3, scale=0.3), "stem_w"),
             numpy_helper.from_array(w(32, scale=0.1), "stem_b"),
             numpy_helper.from_array(w(32, 32, 3, 3, scale=0.1), "head_w"),
             numpy_helper.from_array(w(32, scale=0.1), "head_b"),
             numpy_helper.from_array(w(8, 32, scale=0.5), "fc_w"),
             numpy_helper.from_array(w(8, scale=0.1), "fc_b")]
    nodes = [helper.make_node("Conv", ["input", "stem_w", "stem_b"], ["c1"], pads=[1, 1, 1, 1], name="stem_conv"),
             helper.make_node("Relu", ["c1"], ["r1"], name="stem_relu"),
             helper.make_node("Conv", ["r1", "head_w", "head_b"], ["c2"], pads=[1, 1, 1, 1], name="head_conv"),
             helper.make_node("Relu", ["c2"], ["r2"], name="head_relu"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "conv_net",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Smooth synthetic photos (gradients + a bright square) of varying sizes, as PNG and JPEG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(70, 120)), int(rng.integers(70, 120))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), rng.integers(0, 255))], -1)
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 255, 3)
        p = folder / f"img_{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(img.astype(np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    return conv_net(tmp_path_factory.mktemp("q") / "net.onnx")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("calib"), 12)


def _nodes(path):
    import onnx

    return onnx.load(str(path)).graph


@pytest.mark.parametrize("method", ["max", "entropy", "percentile"])
def test_qdq_model_is_smaller_and_close_to_fp32(fp32, images, tmp_path, method):
    out = tmp_path / f"net_{method}.onnx"
    res = quantize_int8(CARD, fp32, out, images, method)
    graph = _nodes(out)
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 3
    assert res.qdq_nodes == ops.count("QuantizeLinear") + ops.count("DequantizeLinear")
    # symmetric int8: every zero point is an int8 zero
    from onnx import numpy_helper

    zps = [numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_zero_point")]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    assert res.size_mb_int8 < res.size_mb_fp32
    assert res.num_images == len(images) and res.method == method
    validate_onnx(CARD, out, "int8")                                   # the int8 build spec accepts it

    batch = np.concatenate(list(calibration_batches(CARD, images)))
    delta = compare_onnx_outputs(fp32, out, batch, "input")
    assert delta.cosine > 0.99
    assert delta.top1_agreement >= 0.9
    assert delta.max_abs > 0                                            # it really is a different model


def test_excluded_nodes_stay_float(fp32, images, tmp_path):
    out = tmp_path / "net_excl.onnx"
    res = quantize_int8(CARD, fp32, out, images, "max", exclude=("head_c*", "op:Gemm"))
    assert res.excluded_nodes == ("head_conv", "fc")
    graph = _nodes(out)
    by_name = {n.name: n for n in graph.node}
    produced_by_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    floats = {i.name for i in graph.initializer if i.data_type == 1}
    for name, weight in (("head_conv", "head_w"), ("fc", "fc_w")):
        node = by_name[name]
        assert not set(node.input) & produced_by_dq, f"{name} reads a dequantized tensor"
        assert weight in node.input and weight in floats
    stem = by_name["stem_conv"]
    assert set(stem.input[:2]) <= produced_by_dq                         # the stem is quantized


def test_no_or_bad_calibration_images(fp32, tmp_path):
    with pytest.raises(DatasetError, match="no calibration images given"):
        quantize_int8(CARD, fp32, tmp_path / "o.onnx", [], "max")
    with pytest.raises(DatasetError, match=r"calib: calibration folder not found"):
        find_calibration_images(tmp_path / "calib")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="empty: no calibration images"):
        find_calibration_images(tmp_path / "empty")
    with pytest.raises(DatasetError, match="limit must be >= 1"):
        find_calibration_images(tmp_path / "empty", 0)


def test_unreadable_image_names_the_file_and_writes_nothing(fp32, images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out" / "o.onnx"
    with pytest.raises(DatasetError, match=r"broken.jpg: calibration image unusable"):
        quantize_int8(CARD, fp32, out, [*images[:3], bad], "max")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_found_images_are_sorted_and_limited(images):
    found = find_calibration_images(images[0].parent, 5)
    assert found == sorted(images)[:5]


@pytest.mark.parametrize("kwargs,msg", [
    ({"method": "kl"}, "unknown calibration method 'kl'"),
    ({"exclude": ("no_such_node*",)}, "exclude pattern 'no_such_node\\*' matches no node"),
    ({"percentile": 0}, "percentile must be in"),
])
def test_bad_options(fp32, images, tmp_path, kwargs, msg):
    with pytest.raises(QuantizeError, match=msg):
        quantize_int8(CARD, fp32, tmp_path / "o.onnx", images, **kwargs)


def test_cli_qdq_only(fp32, images, tmp_path, capsys):
    from tritonkit.cli import main

    code = main(["build", "--model", "demo_shapes", "--onnx", str(fp32), "--precision", "int8",
                 "--calib-dir", str(images[0].parent), "--calib-images", "6", "--calib-method", "percentile",
                 "--exclude-nodes", "op:Gemm", "--out", str(tmp_path), "--qdq-only"])
    out = capsys.readouterr().out
    assert code == 0
    qdq = tmp_path / "demo_shapes_int8_qdq.onnx"
    assert qdq.is_file() and "percentile calibration on 6 images" in out and "1 nodes kept float" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_shapes_int8_qdq.onnx"]   # no plan attempted


def test_qdq_model_serves_on_the_local_cpu_target(fp32, images, tmp_path, start_server):
    """The int8 QDQ model through the bundled tritonserver (python backend running onnxruntime)."""
    import tritonclient.grpc as grpc

    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model

    qdq = tmp_path / "net_int8.onnx"
    quantize_int8(CARD, fp32, qdq, images, "max")
    write_model(CARD, qdq, tmp_path / "repo", RepoOptions(target="cpu"))
    server = start_server(tmp_path / "repo")
    x = np.concatenate(list(calibration_batches(CARD, images[:4])))
    client = grpc.InferenceServerClient(server.grpc_url)
    inp = grpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    served = client.infer("demo_shapes", [inp]).as_numpy("logits")
    import onnxruntime as ort

    ref = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(served, ref, rtol=1e-5, atol=1e-5)


def test_onnxruntime_quantizes_the_logits_unless_the_head_is_kept_float(fp32, images, tmp_path):
    """What the module docstring says: Q/DQ also follows each Conv/Gemm output, the final logits
    included; keep_head_float (or the card's int8_head=float option) keeps the last Gemm and the output float."""
    from tritonkit.build_engines.quantize import head_nodes

    def producer_of_logits(path):
        graph = _nodes(path)
        return {o: n for n in graph.node for o in n.output}["logits"]

    default = quantize_int8(CARD, fp32, tmp_path / "d.onnx", images, "max")
    assert producer_of_logits(tmp_path / "d.onnx").op_type == "DequantizeLinear"
    assert default.excluded_nodes == ()
    import onnx

    assert head_nodes(onnx.load(str(fp32))) == ["fc"]
    kept = quantize_int8(CARD, fp32, tmp_path / "k.onnx", images, "max", keep_head_float=True)
    assert kept.excluded_nodes == ("fc",)
    assert producer_of_logits(tmp_path / "k.onnx").op_type == "Gemm"
    by_card = quantize_int8(CARD.with_overrides(int8_head="float"), fp32, tmp_path / "c.onnx",
                            images, "max")
    assert by_card.excluded_nodes == ("fc",)
    with pytest.raises(CardError, match="int8_head must be int8 or float"):
        quantize_int8(CARD.with_overrides(int8_head="fp16"), fp32, tmp_path / "x.onnx", images)


def test_head_nodes_walk_back_through_non_quantized_ops(tmp_path):
    """tiny_classifier ends Conv -> Relu -> GAP -> Flatten -> Gemm; a detector head can end in Sigmoid."""
    import onnx
    from support.onnx_models import tiny_classifier

    from tritonkit.build_engines.quantize import head_nodes

    model = onnx.load(str(tiny_classifier(tmp_path / "t.onnx")))
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}_{node.op_type}"
    assert head_nodes(model) == ["n4_Gemm"]
    assert head_nodes(model, op_types=("Conv",)) == ["n0_Conv"]          # the walk passes ops not quantized
