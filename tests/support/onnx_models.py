"""Tiny real ONNX models built with onnx.helper, for tests that need a servable model.

They are real graphs (onnxruntime runs them, the bundled Triton serves them); only their size
is small, so tests start fast on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_classifier(path: Path, *, input_name: str = "input", output_name: str = "logits", size: int = 64,
                    num_classes: int = 8, seed: int = 0) -> Path:
    """``[N,3,size,size] -> [N,num_classes]``: conv 3x3 -> relu -> global average pool -> gemm."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3, "conv_w"),
        numpy_helper.from_array(rng.standard_normal((16,)).astype(np.float32) * 0.1, "conv_b"),
        numpy_helper.from_array(rng.standard_normal((num_classes, 16)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.standard_normal((num_classes,)).astype(np.float32) * 0.1, "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], [output_name], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", num_classes])], inits)
    return _save(graph, path)


def tiny_yolo_onnx(path: Path, size: int = 128, stride: int = 8, num_classes: int = 4, seed: int = 0) -> Path:
    """``images [N,3,size,size] -> output0 [N,(size/stride)^2, 5+C]``: a stride-``stride`` conv to
    5+C channels, cells as rows, plus a random per-cell bias, sigmoid, then boxes scaled to
    pixels (cx, cy in [0, size], w, h in [0, size/2]). Random weights give many overlapping
    boxes of varied scores, so NMS has work to do."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    ch = 5 + num_classes
    cells = (size // stride) ** 2
    scale = np.array([size, size, size / 2, size / 2] + [1.0] * (ch - 4), np.float32)
    inits = [
        numpy_helper.from_array(rng.standard_normal((ch, 3, stride, stride)).astype(np.float32) * 0.3, "w"),
        numpy_helper.from_array(rng.standard_normal(ch).astype(np.float32) * 0.5, "b"),
        numpy_helper.from_array(np.array([0, ch, cells], np.int64), "shape"),
        numpy_helper.from_array(scale, "scale"),
        numpy_helper.from_array(rng.standard_normal((cells, ch)).astype(np.float32) * 1.5, "cell_bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["c"], strides=[stride, stride]),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Add", ["t", "cell_bias"], ["tb"]),
        helper.make_node("Sigmoid", ["tb"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["output0"]),
    ]
    return _save(helper.make_graph(
        nodes, "tiny_yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", cells, ch])], inits), path)


def constant_yolo_onnx(path: Path, rows: np.ndarray, size: int = 128) -> Path:
    """A detector that ignores the image and always outputs ``rows`` ([boxes, 5+C]): for
    end-to-end tests whose ground truth is known exactly."""
    from onnx import TensorProto, helper, numpy_helper

    rows = np.asarray(rows, np.float32)
    inits = [numpy_helper.from_array(rows, "rows"), numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
             numpy_helper.from_array(np.zeros((1,), np.float32), "zero")]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "rows"], ["output0"]),
    ]
    return _save(helper.make_graph(
        nodes, "constant_yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", *rows.shape])], inits), path)


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_segmenter(path: Path, *, input_name: str = "input", output_name: str = "out", num_classes: int = 5,
                   seed: int = 0) -> Path:
    """``[N,3,H,W] -> [N,num_classes,H,W]`` logits for any H, W (dynamic batch, height, width):
    conv 3x3 -> relu -> conv 1x1, plus a random per-class bias so every class wins somewhere."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5, "w1"),
        numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((num_classes, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal((num_classes,)).astype(np.float32) * 0.3, "b2"),
    ]
    nodes = [
        helper.make_node("Conv", [input_name, "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_segmenter",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", num_classes, "H", "W"])], inits)
    return _save(graph, path)


def qdq_classifier(path: Path) -> Path:
    """A graph with one QuantizeLinear/DequantizeLinear pair in front of the classifier."""
    import onnx
    from onnx import helper, numpy_helper

    tiny_classifier(path)
    model = onnx.load(str(path))
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                          numpy_helper.from_array(np.array(0, np.int8), "z")])
    q = helper.make_node("QuantizeLinear", ["input", "s", "z"], ["input_q"])
    dq = helper.make_node("DequantizeLinear", ["input_q", "s", "z"], ["input_dq"])
    for node in g.node:
        node.input[:] = ["input_dq" if x == "input" else x for x in node.input]
    g.node.insert(0, dq)
    g.node.insert(0, q)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
