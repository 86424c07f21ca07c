"""A stand-in for Triton's ``triton_python_backend_utils`` (it exists only inside the server's
python stub), written beside a backend's model.py so the backend runs in a plain interpreter."""

PB_UTILS_STUB = '''
"""Stand-in for the server's triton_python_backend_utils (the calls tritonkit's backends make)."""
import numpy as np


class TritonError(Exception):
    # the codes python_backend's pb_stub.cc gives TritonError (TRITONSERVER_Error_Code values)
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = self.msg = message
        self._code = code

    def code(self):
        return self._code


class Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class InferenceRequest:
    def __init__(self, inputs):
        self.inputs = {t.name(): t for t in inputs}


class InferenceResponse:
    def __init__(self, output_tensors, error=None):
        self.output_tensors, self.error = output_tensors, error


def get_input_tensor_by_name(request, name):
    """``request``: an InferenceRequest, or a plain ``{name: array}`` dict."""
    if isinstance(request, InferenceRequest):
        return request.inputs.get(name)
    return Tensor(name, request[name]) if name in request else None


def triton_string_to_numpy(name):
    return {"TYPE_FP32": np.float32, "TYPE_FP64": np.float64, "TYPE_INT32": np.int32,
            "TYPE_INT64": np.int64, "TYPE_UINT8": np.uint8}[name]
'''
