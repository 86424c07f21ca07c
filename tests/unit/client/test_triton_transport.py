"""tritonkit.triton: the client factory, error translation and one-line errors; tritonkit.contract."""

from __future__ import annotations

import socket

import pytest

from tritonkit import triton
from tritonkit.cards import get_card
from tritonkit.contract import contract_mismatches, normalize_config, normalize_metadata
from tritonkit.errors import ServerError
from tritonkit.triton import call_kwargs, make_client, one_line, translate_errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_translate_errors_names_the_call_and_keeps_one_line():
    with pytest.raises(ServerError) as err:
        with translate_errors("get_model_config", where="127.0.0.1:1"):
            raise ConnectionRefusedError("connection refused\nsecond line of detail")
    assert str(err.value) == "127.0.0.1:1: get_model_config failed: connection refused"
    with pytest.raises(ServerError, match=r"^server gone \(is_server_live: timed out\)$"):
        with translate_errors("is_server_live", context="server gone"):
            raise TimeoutError("timed out")


def test_translate_errors_passes_other_errors_through():
    with pytest.raises(KeyError):
        with translate_errors("infer"):
            raise KeyError("not a transport error")
    with pytest.raises(ServerError, match="^mine$"):
        with translate_errors("infer"):
            raise ServerError("mine")


def test_tritonclient_errors_become_server_errors_with_the_server_message():
    from tritonclient.utils import InferenceServerException

    exc = InferenceServerException("Request for unknown model: 'x' is not found", status="StatusCode.NOT_FOUND")
    assert one_line(exc) == "Request for unknown model: 'x' is not found"
    with pytest.raises(ServerError, match="infer failed: Request for unknown model"):
        with translate_errors("infer"):
            raise exc


def test_one_line():
    assert one_line(ValueError("  a   b \n c")) == "a b"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert len(one_line(ValueError("x" * 1000))) == triton.LINE_LIMIT
    assert one_line("text\nmore", limit=2) == "te"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_make_client_against_nothing_fails_in_one_named_line(protocol):
    url = f"127.0.0.1:{_closed_port()}"
    client = make_client(protocol, url, 2.0)
    try:
        with pytest.raises(ServerError) as err:
            with translate_errors("is_server_live", where=url):
                client.is_server_live(**call_kwargs(protocol, 2.0))
    finally:
        client.close()
    assert str(err.value).startswith(f"{url}: is_server_live failed: ") and "\n" not in str(err.value)


def test_make_client_refuses_an_unknown_protocol_and_bounds_grpc_calls():
    with pytest.raises(ServerError, match="protocol 'udp'"):
        make_client("udp", "127.0.0.1:1")
    assert call_kwargs("grpc", 3.0) == {"client_timeout": 3.0}
    assert call_kwargs("http", 3.0) == {}


def test_shm_module_is_public_and_loads():
    shm = triton.shm_module()
    assert callable(shm.create_shared_memory_region)


def test_contract_lives_below_the_client():
    import tritonkit.client.infer as infer

    assert infer.contract_mismatches is contract_mismatches  # one definition, re-exported
    card = get_card("demo_shapes")
    meta = normalize_metadata({
        "name": "m", "inputs": [{"name": "input", "datatype": "FP32", "shape": ["-1", "3", "64", "64"]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": ["-1", "8"]}]})
    cfg = normalize_config({"config": {
        "name": "m", "max_batch_size": 4,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": ["3", "64", "64"]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": ["8"]}]}})
    assert contract_mismatches(card, meta, cfg, 4) == []
    assert contract_mismatches(card, meta, cfg, 8) == ["max_batch_size 4 < batch size 8"]


def test_grpc_clients_get_their_own_subchannel_pool_and_tritonclients_limits():
    """A client made right after a server restart must connect afresh, not inherit the
    process-wide pool's reconnect backoff (the resumed-eval fault test failed 3 runs in 4 without)."""
    import tritonclient.grpc as grpc_client

    from tritonkit.triton import grpc_channel_args

    args = dict(grpc_channel_args(grpc_client))
    assert args["grpc.use_local_subchannel_pool"] == 1
    assert args["grpc.max_receive_message_length"] == grpc_client.MAX_GRPC_MESSAGE_SIZE
    assert args["grpc.keepalive_timeout_ms"] == grpc_client.KeepAliveOptions().keepalive_timeout_ms
