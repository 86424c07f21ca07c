"""Triton python-backend model that serves an ONNX file with onnxruntime (the CPU target).

Copied into ``<repo>/<model>/<version>/model.py`` by ``tritonkit repo --target cpu``. It reads
its settings from the model config's ``parameters``:

* ``onnx_file`` — the ONNX in the version folder (default ``model.onnx``)
* ``intra_op_threads`` — onnxruntime intra-op threads (0 = onnxruntime's default)
* ``allow_spinning`` — ``"0"`` makes idle onnxruntime threads sleep instead of spin-waiting
  (frees the CPU for other processes on the host, e.g. the client's decode workers)

With dynamic batching Triton hands ``execute`` several requests at once; requests whose
inputs have the same per-sample shapes are concatenated into one onnxruntime run and the
outputs split back per request, so batching on the server really batches the compute. A model
with dynamic height and width (segmentation) can receive requests of different sizes in one
call: each shape group runs on its own (never padded here: padding would change the outputs).
A group that fails gets its own error responses; the other groups are answered.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        onnx_path = os.path.join(version_dir, params.get("onnx_file") or "model.onnx")
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if params.get("allow_spinning") in ("0", "1"):
            options.add_session_config_entry("session.intra_op.allow_spinning", params["allow_spinning"])
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.input_names]
            except Exception as exc:  # a malformed request is answered on its own
                responses[index] = self._error(exc)
                continue
            key = tuple(a.shape[1:] for a in arrays)
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            for index, response in zip([i for i, _ in members], self._run_group([a for _, a in members])):
                responses[index] = response
        return responses

    def _run_group(self, per_request):
        """One onnxruntime run over requests with the same per-sample shapes."""
        try:
            sizes = [arrays[0].shape[0] for arrays in per_request]
            feeds = {}
            for i, name in enumerate(self.input_names):
                parts = [arrays[i] for arrays in per_request]
                feeds[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            outputs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # one bad batch must not take the model down
            return [self._error(exc) for _ in per_request]
        responses = []
        start = 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size], dtype=self.output_dtypes[name]))
                for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    @staticmethod
    def _error(exc):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"onnxruntime failed: {exc}"))

    def finalize(self):
        self.session = None
