"""Bad client input to the python backends is refused as the client's mistake: INVALID_ARG.

Against the real bundled tritonserver (CPU): an input beyond the card's ``dynamic_shape.max`` to
the onnxruntime-backed segmenter, and a non-image upload to a ``*_bytes`` ensemble (and to its
preprocess model directly), over HTTP (400) and gRPC (INVALID_ARGUMENT); the oversized request
must not run (the server's memory, summed over tritonserver and its python stubs, is checked
to stay within a bound far below what running it costs). The backends' own shape checks are also
run in-process with the stand-in of ``triton_python_backend_utils`` (tests/support/backend_stub.py):
Triton's core already refuses fixed dims that differ from the config, so that second line of
defence cannot be reached through the server.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from support.backend_stub import PB_UTILS_STUB
from support.paths import PACKAGE
from tritonkit.cards import get_card
from tritonkit.client.preprocess_math import ENCODED_INPUT
from tritonkit.spec import CARD_PARAMETER
from tritonkit.model_repository.config import RepoOptions, config_to_json, model_config
from tritonkit.model_repository.ensemble import write_preprocess_chain
from tritonkit.model_repository.writer import write_model

from support.onnx_models import tiny_classifier, tiny_segmenter

SEG = get_card("demo_seg")          # input [3, -1, -1], dynamic_shape max 128 x 128
CLS = get_card("demo_shapes")
BACKENDS = PACKAGE / "model_repository" / "backends"
MIB = 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory, served_repository):
    """demo_seg (the tiny segmenter, cpu target) and demo_shapes with its bytes-in chain."""
    root = tmp_path_factory.mktemp("inputerrors")
    names = {}

    def write(repo):
        write_model(SEG, tiny_segmenter(root / "seg.onnx"), repo, RepoOptions(target="cpu", warmup=False))
        cls = write_model(CLS, tiny_classifier(root / "cls.onnx"), repo,
                          RepoOptions(target="cpu", max_batch_size=4)).name
        names["chain"] = write_preprocess_chain(CLS, repo, cls)

    srv = served_repository(write, name="inputerrors", timeout_s=180).server
    srv.chain = names["chain"]
    return srv


def _http(server, model: str, name: str, array: np.ndarray) -> tuple[int, str]:
    """KServe v2 over plain HTTP (binary tensor data): the status and the body."""
    if array.dtype == np.object_:
        raw = b"".join(len(b).to_bytes(4, "little") + b for b in array.reshape(-1))
        datatype = "BYTES"
    else:
        raw, datatype = np.ascontiguousarray(array, np.float32).tobytes(), "FP32"
    header = json.dumps({"inputs": [{"name": name, "shape": list(array.shape), "datatype": datatype,
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    req = urllib.request.Request(f"http://{server.http_url}/v2/models/{model}/infer", data=header + raw,
                                 method="POST", headers={"Content-Type": "application/octet-stream",
                                                         "Inference-Header-Content-Length": str(len(header))})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode(errors="replace")[:500]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _grpc(server, model: str, name: str, array: np.ndarray) -> tuple[str, str]:
    """The gRPC status code name ("OK" when it succeeded) and the message."""
    import grpc
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    client = tgrpc.InferenceServerClient(server.grpc_url)
    tensor = tgrpc.InferInput(name, list(array.shape), "BYTES" if array.dtype == np.object_ else "FP32")
    tensor.set_data_from_numpy(array)
    try:
        client.infer(model, [tensor])
        return grpc.StatusCode.OK.name, ""
    except InferenceServerException as exc:
        return str(exc.status()).removeprefix("StatusCode."), exc.message()
    finally:
        client.close()


def _server_rss(server) -> int:
    """Resident bytes of tritonserver and every process under it (the python stubs)."""
    import psutil

    proc = psutil.Process(server.process.pid)
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_an_input_beyond_the_cards_max_is_refused_without_running(server):
    """The issue's case: 1x3x2048x2048 to a card whose max is 128x128 ran, and the server kept
    2.6 GB. Now each protocol answers the client's error and the server stays within 512 MiB of
    where it was. Measured here: these six requests grew it by ~160 MiB refused (the request
    bodies and the python backend's shared memory) and by ~1.1 GiB when they ran."""
    ok = np.zeros((1, 3, 128, 128), np.float32)  # at the max: served
    assert _http(server, "demo_seg", "input", ok)[0] == 200
    assert _grpc(server, "demo_seg", "input", ok)[0] == "OK"
    before = _server_rss(server)
    for shape in ((1, 3, 2048, 2048), (1, 3, 128, 129), (2, 3, 1024, 64)):
        big = np.zeros(shape, np.float32)
        status, body = _http(server, "demo_seg", "input", big)
        assert status == 400, body
        assert "dynamic_shape max" in body and "[3, 128, 128]" in body
        code, message = _grpc(server, "demo_seg", "input", big)
        assert code == "INVALID_ARGUMENT", message
    grown = _server_rss(server) - before
    assert grown < 512 * MIB, f"the server grew by {grown / MIB:.0f} MiB"
    assert _grpc(server, "demo_seg", "input", ok)[0] == "OK"  # and it still serves


@pytest.mark.parametrize("blob", [b"this is not an image", b"", b"\xff\xd8\xff\xe0 truncated jpeg"],
                         ids=["text", "empty", "truncated"])
def test_a_non_image_upload_is_the_clients_error(server, blob):
    names = server.chain
    data = np.array([[blob]], dtype=np.object_)
    for model in (names.ensemble, names.preprocess):
        status, body = _http(server, model, ENCODED_INPUT, data)
        assert status == 400, (model, body)
        code, message = _grpc(server, model, ENCODED_INPUT, data)
        assert code == "INVALID_ARGUMENT", (model, message)
        assert "image 0 of the request" in message


# -- the backends' own checks, in-process with the stand-in module --------------------------------

@pytest.fixture()
def backend(monkeypatch):
    """Load a backend file with the stand-in ``triton_python_backend_utils``."""
    stub = types.ModuleType("triton_python_backend_utils")
    exec(PB_UTILS_STUB, stub.__dict__)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stub)

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"backend_{name}", BACKENDS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_ort_backend_limits_come_from_the_config_and_the_embedded_card(backend):
    ort_model = backend("ort_model")
    assert ort_model.CARD_PARAMETER == CARD_PARAMETER
    seg = config_to_json(model_config(SEG, RepoOptions(target="cpu")))
    assert ort_model.input_limits(seg) == {"input": ([3, -1, -1], [3, 128, 128])}
    cls = config_to_json(model_config(CLS, RepoOptions(target="cpu")))
    assert ort_model.input_limits(cls) == {"input": ([3, 64, 64], [3, 64, 64])}
    nhwc = {"input": [{"name": "x", "dims": ["-1", "-1", "3"]}], "parameters": {
        CARD_PARAMETER: {"string_value": json.dumps({"input": {"name": "x"}, "dynamic_shape": {"max": [40, 50]}})}}}
    assert ort_model.input_limits(nhwc) == {"x": ([-1, -1, 3], [40, 50, 3])}  # H, W in order
    no_card = {"input": [{"name": "x", "dims": [3, -1, -1]}]}
    assert ort_model.input_limits(no_card) == {"x": ([3, -1, -1], [3, None, None])}  # nothing bounds them


@pytest.mark.parametrize("shape,why", [((1, 3, 64, 65), "dim 2 must be 64"), ((1, 3, 64), "per-sample dims"),
                                       ((1, 4, 64, 64), "dim 0 must be 3")])
def test_ort_backend_refuses_a_wrong_fixed_dim_as_invalid_arg(backend, shape, why):
    ort_model = backend("ort_model")
    dims, bounds = ort_model.input_limits(config_to_json(model_config(CLS, RepoOptions(target="cpu"))))["input"]
    with pytest.raises(ort_model.InputError, match=why):
        ort_model.check_input("input", shape, dims, bounds, batched=True)
    ort_model.check_input("input", (7, 3, 64, 64), dims, bounds, batched=True)  # any batch: Triton bounds it
    response = ort_model.client_error("x")
    assert response.error.code() == sys.modules["triton_python_backend_utils"].TritonError.INVALID_ARG
