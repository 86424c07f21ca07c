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
    import onnx
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
