"""ServedModel against the real bundled tritonserver: one fetch per question, readiness in one line.

The calls are counted by a thin wrapper around the real tritonclient client (every call still
goes to the real server); nothing about the server is simulated.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tritonkit.cards import get_card
from tritonkit.errors import ServerError
from tritonkit.serve.local import free_port
from tritonkit.served_model import ModelUnready, ServedModel
from tritonkit.triton import make_client



class Counting:
    """The real client, with every call counted by name."""

    def __init__(self, client) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()
        self.protocol, self.address = client.protocol, client.address

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


@pytest.fixture(params=["grpc", "http"])
def counted(request, tiny_server):
    url = tiny_server.grpc_url if request.param == "grpc" else tiny_server.http_url
    client = Counting(make_client(request.param, url, 10.0))
    yield client
    client.close()


def test_config_metadata_and_card_are_fetched_once(counted):
    served = ServedModel(counted, "demo_shapes")
    for _ in range(3):
        config = served.config()
        card = served.card()
        meta, cfg = served.contract()
        served.metadata()
    assert counted.calls["get_model_config"] == 1 and counted.calls["get_model_metadata"] == 1
    assert config["name"] == "demo_shapes" and int(config["max_batch_size"]) == get_card("demo_shapes").max_batch_size
    assert card == get_card("demo_shapes")  # the card the repository writer embedded
    assert cfg["max_batch_size"] == card.max_batch_size and card.input.name in meta["inputs"]
    meta["inputs"].clear()  # callers may edit what contract() gives them: the next call is fresh
    assert card.input.name in served.contract()[0]["inputs"]
    assert counted.calls["get_model_config"] == 1 and counted.calls["get_model_metadata"] == 1


def test_another_model_on_the_same_server_is_one_shared_object(counted):
    served = ServedModel(counted, "demo_shapes")
    missing = served.model("no_such_model")
    assert served.model("no_such_model") is missing and missing.model("demo_shapes") is served
    assert missing.client is counted and served.first_step() is None  # not an ensemble


def test_readiness_is_asked_afresh_every_time(counted):
    served = ServedModel(counted, "demo_shapes")
    served.check_ready()
    served.check_ready()
    assert counted.calls["is_server_live"] == 2 and counted.calls["is_model_ready"] == 2
    assert served.alive() and served.live() and served.server_ready() and served.model_ready()


def test_a_model_that_is_not_served_is_one_line_naming_the_ready_ones(counted):
    missing = ServedModel(counted, "no_such_model")
    with pytest.raises(ModelUnready) as err:
        missing.check_ready()
    text = str(err.value)
    assert text.startswith(f"{counted.protocol} {counted.address}: model 'no_such_model' is not ready")
    assert text.endswith("; ready models: demo_shapes") and "\n" not in text
    with pytest.raises(ServerError, match=r"cannot read the config of model 'no_such_model' \(get_model_config"):
        missing.config()
    with pytest.raises(ServerError):  # a failed fetch is not remembered: asked again
        missing.config()
    assert counted.calls["get_model_config"] == 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_nothing_listening_is_unready_in_one_line_and_not_alive(protocol):
    with ServedModel.connect(protocol, f"127.0.0.1:{free_port()}", "m", timeout_s=5.0) as served:
        assert served.alive() is False
        with pytest.raises(ModelUnready) as err:
            served.check_ready()
    assert str(err.value).startswith(f"Triton server at {protocol} 127.0.0.1:") and "is unreachable" in str(err.value)
    assert "\n" not in str(err.value)
