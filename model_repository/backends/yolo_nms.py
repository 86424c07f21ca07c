"""Triton python-backend model: detection postprocess (decode + NMS + back to image pixels).

Copied into ``<repo>/<model>/1/model.py`` by :func:`tritonkit.model_repository.ensemble.write_nms_model`
and chained after the detector in an ensemble, so a client sends images (+ their letterbox
geometry) and gets final detections. It runs the very functions the client uses
(:func:`tritonkit.client.detection.postprocess_card`), so server-side and client-side NMS give
identical results; the server runs its python models in the environment tritonkit is
installed in.

Inputs (batched): the detector's raw outputs, named as in the card, and the optional
``geometry`` FP64 [6] (``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y``; ``x_input = x_orig *
scale + pad``). Outputs: ``det_boxes`` FP32 [M, 4] (x1, y1, x2, y2: original-image pixels,
clipped, when the geometry is sent; model-input pixels when it is not, for clients that map
boxes back themselves), ``det_scores`` FP32 [M], ``det_classes`` INT32 [M] (class index, -1 in
padding), ``det_count`` INT32 [1].

Settings come from the model config's ``parameters``: ``conf_threshold``, ``iou_threshold``,
``max_detections``, ``class_agnostic``, ``multi_label`` (absent: false, as repositories written
before it), ``profile`` (a name, for logs): the profile the repository was written for, which
need not be one of the card's. The card (outputs, postprocess kind, options) is read from
``card.json`` in the model folder.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonkit.cards import NMSProfile, load_card_file
from tritonkit.client.detection import geometry_from_array, pad_detections, postprocess_card
from tritonkit.model_repository.ensemble import (
    CARD_FILE, GEOMETRY_INPUT, OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.card = load_card_file(os.path.join(args["model_repository"], CARD_FILE))
        self.profile = NMSProfile(
            name=params.get("profile") or "server",
            conf_threshold=float(params["conf_threshold"]),
            iou_threshold=float(params["iou_threshold"]),
            max_detections=int(params["max_detections"]),
            class_agnostic=params.get("class_agnostic", "false").lower() == "true",
            multi_label=params.get("multi_label", "false").lower() == "true")
        self.raw_names = [o.name for o in self.card.outputs]

    def _one_request(self, request):
        raw = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.raw_names}
        geometry_tensor = pb_utils.get_input_tensor_by_name(request, GEOMETRY_INPUT)
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
            geo = None if geometry is None else geometry_from_array(geometry[b])
            dets = postprocess_card(self.card, {n: a[b] for n, a in raw.items()}, geo, self.profile)
            padded = pad_detections(dets, m)
            boxes[b], scores[b], classes[b], counts[b, 0] = padded.boxes, padded.scores, padded.classes, padded.count
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(OUT_BOXES, boxes), pb_utils.Tensor(OUT_SCORES, scores),
            pb_utils.Tensor(OUT_CLASSES, classes), pb_utils.Tensor(OUT_COUNT, counts)])

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
        self.card = None
