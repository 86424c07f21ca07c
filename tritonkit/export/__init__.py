"""The export stage: a card's model to ONNX, or a user's ONNX checked and adopted.

* :mod:`~tritonkit.export.builders`: arch name -> torch module + output adapter (a registry);
* :mod:`~tritonkit.export.weights`: state-dict files, loaded key by key;
* :mod:`~tritonkit.export.flops`: parameter and FLOP counts (torch model or ONNX graph);
* :mod:`~tritonkit.export.sidecar`: the export sidecar ``<name>.json``;
* :mod:`~tritonkit.export.export`: :func:`export_model` itself.

The ONNX-vs-card check is :mod:`tritonkit.onnx_contract`, shared with the repository and build stages.
"""

from __future__ import annotations

from tritonkit.export.builders import (
    BuiltModel, ExportError, build_model, builder_names, dict_outputs, get_builder, register_builder, tensor_outputs)
from tritonkit.export.export import (
    MIN_OPSET, ExportResult, adopt_onnx, export_model, result_dict, verify_with_onnxruntime)
from tritonkit.export.flops import MacCount, onnx_macs, onnx_param_count, torch_flops, torch_param_count
from tritonkit.export.sidecar import SIDECAR_SCHEMA, read_export_sidecar
from tritonkit.export.weights import compare_state_dict, load_state_dict_file, load_weights, unwrap_state_dict

__all__ = ["ExportError", "ExportResult", "BuiltModel", "export_model", "adopt_onnx", "build_model", "register_builder",
           "get_builder", "builder_names", "tensor_outputs", "dict_outputs", "load_state_dict_file", "load_weights",
           "compare_state_dict", "unwrap_state_dict", "MacCount", "onnx_macs", "onnx_param_count", "torch_param_count",
           "torch_flops", "verify_with_onnxruntime", "read_export_sidecar", "result_dict", "MIN_OPSET",
           "SIDECAR_SCHEMA"]
