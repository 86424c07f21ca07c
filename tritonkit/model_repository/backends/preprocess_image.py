"""Triton python-backend model: server-side preprocessing, encoded image bytes in.

Written into ``<repo>/<model>_preprocess/1/model.py`` by
:func:`tritonkit.model_repository.ensemble.write_preprocess_chain` and chained before the model
in a ``<model>_bytes`` ensemble, so any client (curl, NVIDIA's client examples) sends a JPEG or
PNG file as it is and gets the model's outputs. It imports no tritonkit module (NGC's
tritonserver image has none): the writer copies ``tritonkit/client/preprocess_math.py`` beside
it as ``tk_preprocess.py`` (and ``tritonkit/spec.py`` as ``tk_spec.py``), the very decode and
preprocessing the client runs (torchvision's PIL path for classifiers, ultralytics' letterbox for
YOLO, torchvision's resize-short for segmenters), so the server's model input equals the
client's. The server's Python needs numpy, Pillow and (letterbox cards) OpenCV.

Input (batched): ``image_bytes`` BYTES [1], one encoded image per sample; images of different
sizes share a batch. Outputs: the model input (named, typed and shaped as the card's input) and
``geometry`` FP64 [6] (``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y``; ``x_input = x_orig *
scale + pad``), which a postprocess chain behind the model uses to map results back to the
original image. A card with a variable input size (``resize_short``) gives each image its own
size; the images of one request are padded at the bottom/right to the largest (as the client's
batches are).

Settings: the card (its ``preprocess`` and ``input``) from the config's ``tritonkit_card``
parameter; the config's ``parameters`` may set ``max_pixels`` (the decompression-bomb cap,
default Pillow's). A request with an image that gives no input (not an image, truncated, over
the pixel cap) or an ``image_bytes`` of the wrong shape gets an error naming the image, with
code INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT: the client's mistake, so an operator's alert
on server errors does not fire); anything else that fails is INTERNAL. The other requests of the
execute() call are unaffected.
"""

import importlib
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shipped tk_*.py beside this file
import tk_preprocess as prep  # noqa: E402
import tk_spec  # noqa: E402


def stack_padded(arrays):
    """``[B, ..., H_max, W_max]`` of per-image CHW inputs, zero-padded at the bottom/right."""
    h = max(a.shape[-2] for a in arrays)
    w = max(a.shape[-1] for a in arrays)
    out = np.zeros((len(arrays), *arrays[0].shape[:-2], h, w), arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, ..., :a.shape[-2], :a.shape[-1]] = a
    return out


class InputError(ValueError):
    """A request's input breaks the model's contract: the client's mistake (INVALID_ARG)."""


CLIENT_ERRORS = (InputError, prep.ImageError)


# the third-party modules the preprocessing imports on first use, and their pip packages
NEEDS = {"PIL": "Pillow", "cv2": "opencv-python-headless"}


def missing_packages(preprocess):
    """The pip packages the server's python lacks for ``preprocess`` (OpenCV: letterbox only)."""
    missing = []
    for module in ["PIL"] + (["cv2"] if preprocess.mode == "letterbox" else []):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(NEEDS[module])
    return missing


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = tk_spec.config_parameters(config)
        spec = tk_spec.ServedSpec.from_model_config(config, postprocess=False)
        missing = missing_packages(spec.preprocess)
        if missing:  # fail the load in one line, not every request later
            raise RuntimeError(f"{config.get('name', 'preprocess model')}: the server's python lacks "
                               f"{', '.join(missing)} (pip install {' '.join(missing)})")
        self.pp = spec.preprocess
        self.output_name = spec.input.name
        output = next(o for o in config["output"] if o["name"] == self.output_name)
        self.dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        self.max_pixels = int(params["max_pixels"]) if params.get("max_pixels") else prep.DEFAULT_MAX_PIXELS

    def _inputs(self, blobs):
        """``(batch, geometry)`` of one request's encoded images (float32, FP64 [n, 6])."""
        fixed = not self.pp.dynamic
        batch = np.empty((len(blobs), *prep.sample_shape(self.pp)), np.float32) if fixed else None
        arrays, geometry = [], np.empty((len(blobs), 6), np.float64)
        for i, blob in enumerate(blobs):
            decoded = prep.decode_rgb(bytes(blob), max_pixels=self.max_pixels)
            try:
                x, geo = prep.preprocess_decoded(decoded, self.pp, out=batch[i] if fixed else None)
            except prep.ImageError as exc:
                raise prep.ImageError(f"image {i} of the request: {exc}") from None
            arrays.append(x)
            geometry[i] = geo.as_array()
        return (batch if fixed else stack_padded(arrays)), geometry

    def _one_request(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, prep.ENCODED_INPUT)
        if tensor is None:
            raise InputError(f"input {prep.ENCODED_INPUT!r} is missing")
        blobs = tensor.as_numpy()
        if blobs.ndim == 0 or blobs.shape[0] == 0 or blobs.size != blobs.shape[0]:
            raise InputError(f"{prep.ENCODED_INPUT} must hold one encoded image per sample (got shape "
                             f"{list(blobs.shape)})")
        batch, geometry = self._inputs(blobs.reshape(blobs.shape[0]))
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
