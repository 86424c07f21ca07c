"""Triton python-backend model: server-side preprocessing, encoded image bytes in.

Written into ``<repo>/<model>_preprocess/1/model.py`` by
:func:`tritonkit.model_repository.ensemble.write_preprocess_chain` and chained before the model
in a ``<model>_bytes`` ensemble, so any client (curl, NVIDIA's client examples) sends a JPEG or
PNG file as it is and gets the model's outputs. It imports no tritonkit module (NGC's
tritonserver image has none): the writer copies ``tritonkit/client/preprocess_math.py`` beside
it as ``tk_preprocess.py``, the very decode and preprocessing the client runs (torchvision's
PIL path for classifiers, ultralytics' letterbox for YOLO), so the server's model input equals
the client's. The server's Python needs numpy, Pillow and (letterbox cards) OpenCV.

Input (batched): ``image_bytes`` BYTES [1], one encoded image per sample; images of different
sizes share a batch (each is decoded and preprocessed to the card's fixed input size).
Outputs: the model input (named, typed and shaped as the card's input) and ``geometry`` FP64
[6] (``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y``; ``x_input = x_orig * scale + pad``),
which the detection ensemble feeds to the NMS model so boxes come back in original pixels.

Settings: the card (its ``preprocess`` and ``input``) is read as plain JSON from ``card.json``
in the model folder; the config's ``parameters`` may set ``max_pixels`` (the decompression-bomb
cap, default Pillow's). A request with an image that gives no input (not an image, truncated,
over the pixel cap) or an ``image_bytes`` of the wrong shape gets an error naming the image,
with code INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT: the client's mistake, so an operator's
alert on server errors does not fire); anything else that fails is INTERNAL. The other requests
of the execute() call are unaffected.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

MATH_MODULE = "tk_preprocess"


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


prep = _load_sibling(MATH_MODULE)


class InputError(ValueError):
    """A request's input breaks the model's contract: the client's mistake (INVALID_ARG)."""


CLIENT_ERRORS = (InputError, prep.ImageError)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        with open(os.path.join(args["model_repository"], prep.CARD_FILE)) as f:
            card = json.load(f)
        self.pp = prep.PreprocessSpec.from_card_json(card)
        self.output_name = card["input"]["name"]
        output = next(o for o in config["output"] if o["name"] == self.output_name)
        self.dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        self.max_pixels = int(params["max_pixels"]) if params.get("max_pixels") else prep.DEFAULT_MAX_PIXELS
        self.sample_shape = prep.sample_shape(self.pp)

    def _one_request(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, prep.ENCODED_INPUT)
        if tensor is None:
            raise InputError(f"input {prep.ENCODED_INPUT!r} is missing")
        blobs = tensor.as_numpy()
        if blobs.ndim == 0 or blobs.shape[0] == 0 or blobs.size != blobs.shape[0]:
            raise InputError(f"{prep.ENCODED_INPUT} must hold one encoded image per sample (got shape "
                             f"{list(blobs.shape)})")
        blobs = blobs.reshape(blobs.shape[0], 1)
        batch = np.empty((blobs.shape[0], *self.sample_shape), np.float32)
        geometry = np.empty((blobs.shape[0], 6), np.float64)
        for i, blob in enumerate(blobs[:, 0]):
            decoded = prep.decode_rgb(bytes(blob), max_pixels=self.max_pixels)
            try:
                _, geo = prep.preprocess_decoded(decoded, self.pp, out=batch[i])
            except prep.ImageError as exc:
                raise prep.ImageError(f"image {i} of the request: {exc}") from None
            geometry[i] = geo.as_array()
        out = batch if self.dtype == np.float32 else batch.astype(self.dtype)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(self.output_name, out), pb_utils.Tensor(prep.GEOMETRY_OUTPUT, geometry)])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one_request(request))
            except CLIENT_ERRORS as exc:  # the client's image or tensor: its own error, INVALID_ARG
                error = pb_utils.TritonError(f"bad input: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            except Exception as exc:  # one failing request gets its own error, the model stays up
                error = pb_utils.TritonError(f"preprocess failed: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def finalize(self):
        self.pp = None
