"""Triton python-backend model: segmentation logits -> uint8 class mask (server-side argmax).

Written into ``<repo>/<seg>_argmax/1/model.py`` by the repository writer (the segment task's
argmax chain, ``tritonkit repo --server-postprocess``) and chained after a segmenter, so a client
receives ``B x H x W`` bytes instead of ``B x C x H x W`` float logits (21 x 520 x 693 x 4 bytes,
~30 MB, per VOC image at 520 px). It imports no tritonkit module (NGC's tritonserver image has
none): the writer ships this task's numpy math beside it as ``tk_segment.py``.

Input: the segmenter's logits ``[B, C, H, W]`` (any float type; ``[C, H, W]`` when the model
is not batched). Output: ``[B, H, W]`` UINT8, the index of the first largest logit of each
pixel (as ``numpy.argmax`` and ONNX ``ArgMax`` break ties). At most 255 classes, so 255 stays
free for void. H and W may differ from request to request.

Config ``parameters`` (string values, all optional): ``input_name`` (the logits tensor; default:
the config's first input), ``output_name`` (the mask; default: the config's first output),
``class_axis`` (axis of the classes in the batched input; default ``1``).
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped tk_*.py beside this file
import tk_segment  # noqa: E402
import tk_spec  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = tk_spec.config_parameters(config)
        inputs, outputs = config.get("input", []), config.get("output", [])
        self.input_name = params.get("input_name") or (inputs[0]["name"] if inputs else "")
        self.output_name = params.get("output_name") or (outputs[0]["name"] if outputs else "")
        if not self.input_name or not self.output_name:
            raise ValueError("argmax: the config names no input or output (parameters input_name, output_name)")
        batched = int(config.get("max_batch_size", 0)) > 0
        axis = int(params.get("class_axis") or 1)
        # a model that is not batched receives [C, H, W]: the class axis moves one down
        self.class_axis = axis if batched else axis - 1

    def _one_request(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise ValueError(f"input {self.input_name!r} missing from the request")
        mask = tk_segment.argmax_mask(tensor.as_numpy(), self.class_axis)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, mask)])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one_request(request))
            except Exception as exc:  # one bad request gets its own error, the model stays up
                error = pb_utils.TritonError(f"argmax failed: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def finalize(self):
        pass
