"""Triton python-backend model: detection postprocess (decode + NMS + back to image pixels).

Written into ``<repo>/<det>_nms_<profile>/1/model.py`` by the repository writer (the detect
task's NMS chain, ``tritonkit repo --server-postprocess``) and chained after the detector in an
ensemble, so a client sends images (+ their letterbox geometry) and gets final detections. It
imports no tritonkit module (NGC's tritonserver image has none): the writer ships this task's
numpy math beside it as ``tk_detect.py`` and the spec module as ``tk_spec.py``, the very code the
client runs, so server-side and client-side NMS give identical results.

Inputs (batched): the detector's raw outputs, named as in the card, and the optional
``geometry`` FP64 [6] (``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y``; ``x_input = x_orig *
scale + pad``). Outputs: ``det_boxes`` FP32 [M, 4] (x1, y1, x2, y2: original-image pixels,
clipped, when the geometry is sent; model-input pixels when it is not, for clients that map
boxes back themselves), ``det_scores`` FP32 [M], ``det_classes`` INT32 [M] (class index, -1 in
padding), ``det_count`` INT32 [1].

Settings: the detector's card (its outputs and postprocess variant) from the config's
``tritonkit_card`` parameter; the NMS profile from the other ``parameters`` (``conf_threshold``,
``iou_threshold``, ``max_detections``, ``class_agnostic``, ``multi_label``, ``profile``).
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped tk_*.py beside this file
import tk_detect  # noqa: E402
import tk_spec  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.spec = tk_spec.ServedSpec.from_model_config(config)
        self.profile = tk_spec.NMSProfile.from_parameters(tk_spec.config_parameters(config))
        size = self.spec.preprocess.size
        self.input_hw = (size, size)

    def _one_request(self, request):
        raw = {}
        for name in self.spec.output_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} missing from the request")
            raw[name] = tensor.as_numpy()
        geometry_tensor = pb_utils.get_input_tensor_by_name(request, tk_spec.GEOMETRY_TENSOR)
        geometry = None if geometry_tensor is None else geometry_tensor.as_numpy()
        batch = next(iter(raw.values())).shape[0]
        if geometry is not None and geometry.shape[0] != batch:
            raise ValueError(f"geometry has {geometry.shape[0]} rows for a batch of {batch}")
        m = self.profile.max_detections
        boxes = np.zeros((batch, m, 4), np.float32)
        scores = np.zeros((batch, m), np.float32)
        classes = np.full((batch, m), -1, np.int32)
        counts = np.zeros((batch, 1), np.int32)
        for b in range(batch):
            geo = None if geometry is None else tk_spec.Geometry.from_array(geometry[b])
            dets = tk_detect.detections(self.spec.postprocess, {n: a[b] for n, a in raw.items()},
                                        self.spec.output_names, self.input_hw, self.profile, geo)
            padded = tk_detect.pad_detections(dets, m)
            boxes[b], scores[b], classes[b], counts[b, 0] = padded.boxes, padded.scores, padded.classes, padded.count
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(tk_detect.OUT_BOXES, boxes), pb_utils.Tensor(tk_detect.OUT_SCORES, scores),
            pb_utils.Tensor(tk_detect.OUT_CLASSES, classes), pb_utils.Tensor(tk_detect.OUT_COUNT, counts)])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one_request(request))
            except Exception as exc:  # one bad request gets its own error, the model stays up
                error = pb_utils.TritonError(f"detection postprocess failed: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def finalize(self):
        self.spec = None
