"""Triton python-backend model: detection postprocess (decode + NMS + back to image pixels).

Written into ``<repo>/<model>/1/model.py`` by
:func:`tritonkit.model_repository.ensemble.write_nms_chain` and chained after the detector in
an ensemble, so a client sends images (+ their letterbox geometry) and gets final detections.
It imports no tritonkit module (NGC's tritonserver image has none): the writer copies the
numpy-only ``tritonkit/client/nms_math.py`` beside it as ``tk_nms.py``, the very math the client
runs, so server-side and client-side NMS give identical results.

Inputs (batched): the detector's raw outputs, named as in the card, and the optional
``geometry`` FP64 [6] (``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y``; ``x_input = x_orig *
scale + pad``). Outputs: ``det_boxes`` FP32 [M, 4] (x1, y1, x2, y2: original-image pixels,
clipped, when the geometry is sent; model-input pixels when it is not, for clients that map
boxes back themselves), ``det_scores`` FP32 [M], ``det_classes`` INT32 [M] (class index, -1 in
padding), ``det_count`` INT32 [1].

Settings come from the model config's ``parameters``: ``conf_threshold``, ``iou_threshold``,
``max_detections``, ``class_agnostic``, ``multi_label`` (absent: false, as repositories written
before it), ``profile`` (a name, for logs). The card (outputs, postprocess kind, options) is
read as plain JSON from ``card.json`` in the model folder.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

MATH_MODULE = "tk_nms"


def _load_sibling(name):
    """Import ``<name>.py`` from this file's folder (the model's version folder)."""
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


nms_math = _load_sibling(MATH_MODULE)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        with open(os.path.join(args["model_repository"], nms_math.CARD_FILE)) as f:
            self.spec = nms_math.DetectorSpec.from_card_json(json.load(f))
        self.profile = nms_math.NMSSettings.from_parameters(params)

    def _one_request(self, request):
        raw = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.spec.output_names}
        geometry_tensor = pb_utils.get_input_tensor_by_name(request, nms_math.GEOMETRY_INPUT)
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
            geo = None if geometry is None else geometry[b]
            dets = nms_math.postprocess_raw(self.spec, {n: a[b] for n, a in raw.items()}, geo, self.profile)
            padded = nms_math.pad_detections(dets, m)
            boxes[b], scores[b], classes[b], counts[b, 0] = padded.boxes, padded.scores, padded.classes, padded.count
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(nms_math.OUT_BOXES, boxes), pb_utils.Tensor(nms_math.OUT_SCORES, scores),
            pb_utils.Tensor(nms_math.OUT_CLASSES, classes), pb_utils.Tensor(nms_math.OUT_COUNT, counts)])

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
