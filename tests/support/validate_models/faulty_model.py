"""Python-backend test model: the tiny ONNX run with onnxruntime, plus a deliberate fault.

Config parameters (string values):

* ``fault`` — ``none``; ``nan`` (the first output column becomes NaN); ``batch_mix`` (every
  request's outputs are shifted by its position inside the execution, so results change when
  dynamic batching groups requests together, and only then); ``lenient`` (an input of any other
  shape is answered with zeros instead of an error: served with ``-1`` input dims it accepts
  malformed requests); ``leak`` (keeps 1 MB more memory after every execution); ``flaky`` (every
  third execution answers each of its requests with an error).
* ``delay_ms`` — sleep this long in every execution (a slow model, for overload and drain tests).
"""

import json
import os
import time

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        onnx_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.fault = params.get("fault", "none")
        self.delay_s = float(params.get("delay_ms") or 0) / 1000.0
        self.output_dims = [int(d) for d in config["output"][0]["dims"]]
        self.sample_shape = (3, 64, 64)
        self.hoard = []
        self.executions = 0

    def execute(self, requests):
        if self.delay_s:
            time.sleep(self.delay_s)
        self.executions += 1
        if self.fault == "leak":
            self.hoard.append(np.ones(256 * 1024, dtype=np.float32))  # 1 MB, touched, never freed
        if self.fault == "flaky" and self.executions % 3 == 0:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError("flaky model: deliberate failure"))
                    for _ in requests]
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        if self.fault == "lenient" and any(tuple(x.shape[1:]) != self.sample_shape for x in arrays):
            return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
                self.output_name, np.zeros((len(x), *self.output_dims), dtype=np.float32))]) for x in arrays]
        out = self.session.run([self.output_name], {self.input_name: np.concatenate(arrays, axis=0)})[0]
        responses = []
        start = 0
        for position, x in enumerate(arrays):
            part = np.array(out[start:start + len(x)], dtype=np.float32)
            start += len(x)
            if self.fault == "nan":
                part[:, 0] = np.nan
            elif self.fault == "batch_mix":
                part += np.float32(position)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)]))
        return responses
