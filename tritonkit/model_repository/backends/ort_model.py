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

Every request's inputs are checked against the model's contract before anything runs: the
rank, each fixed dim of the config, and each variable dim (``-1``) against the card's
``dynamic_shape.max`` (the card is embedded in the config's ``parameters`` as
``tritonkit_card``; a variable dim without a bound stays free). A request beyond it is answered
``INVALID_ARG`` (HTTP 400, gRPC INVALID_ARGUMENT) without running: an oversized image must not
make onnxruntime allocate gigabytes. Failures of onnxruntime itself on valid inputs are INTERNAL.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

CARD_PARAMETER = "tritonkit_card"   # tritonkit.contract.CARD_PARAMETER (this file imports no tritonkit)


class InputError(ValueError):
    """A request's input breaks the model's contract: the client's mistake (INVALID_ARG)."""


def input_limits(config):
    """``{input name: (dims, bounds)}``: the config's per-sample dims and, for each, the largest
    value a request may send (a fixed dim itself; a variable dim the card's ``dynamic_shape.max``,
    taken as ``[H, W]`` in the order the variable dims appear; None where nothing bounds it)."""
    card_text = (config.get("parameters", {}).get(CARD_PARAMETER) or {}).get("string_value")
    card = json.loads(card_text) if card_text else {}
    spatial = (card.get("dynamic_shape") or {}).get("max")
    limits = {}
    for tensor in config["input"]:
        dims = [int(d) for d in tensor["dims"]]
        free = iter(spatial) if spatial and tensor["name"] == (card.get("input") or {}).get("name") else iter(())
        limits[tensor["name"]] = (dims, [d if d != -1 else next(free, None) for d in dims])
    return limits


def check_input(name, shape, dims, bounds, batched):
    """Raise :class:`InputError` unless ``shape`` (batch first when ``batched``) fits ``dims`` / ``bounds``."""
    sample = list(shape[1:] if batched else shape)
    if len(sample) != len(dims):
        raise InputError(f"input {name!r} has shape {list(shape)}; the model takes per-sample dims {dims}")
    for axis, (got, want, most) in enumerate(zip(sample, dims, bounds)):
        if want != -1 and got != want:
            raise InputError(f"input {name!r} has shape {list(shape)}; per-sample dim {axis} must be {want}")
        if most is not None and got > most:
            raise InputError(f"input {name!r} has shape {list(shape)}; per-sample dims may be at most "
                             f"{[b if b is not None else -1 for b in bounds]} (the card's dynamic_shape max)")


def client_error(message):
    """An error response that blames the request: INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT)."""
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(
        message, pb_utils.TritonError.INVALID_ARG))


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
        self.limits = input_limits(config)
        # dim 0 is the batch (execute() concatenates along it) unless the config says max_batch_size 0
        self.batched = int(config.get("max_batch_size", 1)) > 0
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._inputs(request)
            except InputError as exc:  # the client's mistake, answered on its own
                responses[index] = client_error(str(exc))
                continue
            except Exception as exc:  # a request that cannot be read is answered on its own
                responses[index] = self._error(exc)
                continue
            key = tuple(a.shape[1:] for a in arrays)
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            for index, response in zip([i for i, _ in members], self._run_group([a for _, a in members])):
                responses[index] = response
        return responses

    def _inputs(self, request):
        """The request's input arrays, each checked against the model's limits (:func:`check_input`)."""
        arrays = []
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise InputError(f"input {name!r} is missing")
            array = tensor.as_numpy()
            check_input(name, array.shape, *self.limits[name], self.batched)
            arrays.append(array)
        return arrays

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
