"""Every Triton call has a total deadline: fake servers on 127.0.0.1 that never answer, trickle
an HTTP header one byte at a time, or answer live/ready and then stall.

The servers are real sockets and a real grpcio server implementing the KServe v2 service (the
``GRPCInferenceService`` that tritonclient ships), not mocks of the client: the client code under
test runs unchanged against them. Each stalling server gives up after a bounded time, so a
client without a deadline fails the assertion (it gets an answer) instead of hanging the suite.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent import futures

import pytest

from tritonkit.cards import get_card
from tritonkit.client.infer import ClientOptions, TritonInfer
from tritonkit.errors import ServerError
from tritonkit.host import HostPort
from tritonkit.served_model import ModelUnready, ServedModel
from tritonkit.triton import make_client, translate_errors, tritonutils
from tritonkit.validate.context import Context, Endpoints, served_config
from tritonkit.validate.options import ValidateOptions

pytestmark = pytest.mark.timeout(60)

CARD = get_card("demo_shapes")
STALL_S = 12.0  # how long a stalling server holds a call before it answers after all


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


class TrickleHTTP(BlackHole):
    """Answers every HTTP request with a valid ``200`` whose header arrives one byte every 20 ms
    (about STALL_S in all): each read sees data, so only a total deadline cuts it short."""

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn = self.sock.accept()[0]
            except OSError:
                continue
            self.conns.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            pad = b"a" * int(STALL_S / 0.02)
            response = b"HTTP/1.1 200 OK\r\nX-Pad: " + pad + b"\r\nContent-Length: 0\r\n\r\n"
            for i in range(len(response)):
                if self.stop.is_set():
                    return
                conn.sendall(response[i:i + 1])
                time.sleep(0.02)
        except OSError:
            return


class StallingKServe:
    """A grpcio KServe v2 server on 127.0.0.1: live and ready at once; the calls named in
    ``stall`` wait STALL_S (or until closed) before they answer."""

    def __init__(self, stall: set[str]) -> None:
        from tritonclient.grpc import service_pb2 as pb
        from tritonclient.grpc import service_pb2_grpc as pbg

        import grpc

        release = self.release = threading.Event()

        def hold(name: str) -> None:
            if name in stall:
                release.wait(STALL_S)

        class Servicer(pbg.GRPCInferenceServiceServicer):
            def ServerLive(self, request, context):
                return pb.ServerLiveResponse(live=True)

            def ServerReady(self, request, context):
                return pb.ServerReadyResponse(ready=True)

            def ModelReady(self, request, context):
                hold("ModelReady")
                return pb.ModelReadyResponse(ready=True)

            def ModelMetadata(self, request, context):
                hold("ModelMetadata")
                return pb.ModelMetadataResponse(name=request.name)

            def ModelConfig(self, request, context):
                hold("ModelConfig")
                return pb.ModelConfigResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{port}"
        self.server.start()

    def close(self) -> None:
        self.release.set()
        self.server.stop(0)


@pytest.fixture
def black_hole():
    server = BlackHole()
    yield server
    server.close()


@pytest.fixture
def trickle():
    server = TrickleHTTP()
    yield server
    server.close()


def _stalling(request, stall: set[str]) -> StallingKServe:
    server = StallingKServe(stall)
    request.addfinalizer(server.close)
    return server


# ------------------------------------------------------------------------------ transport
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_black_hole_ends_at_the_deadline_naming_the_call(black_hole, protocol):
    client = make_client(protocol, black_hole.url, 1.0)
    try:
        with pytest.raises(ServerError, match=r"is_server_live: no answer within 1 s \(deadline exceeded\)"):
            with translate_errors("is_server_live", where=black_hole.url):
                client.is_server_live()
    finally:
        client.close()


def test_http_trickling_a_header_ends_at_the_total_deadline(trickle):
    """Each read gets a byte within the per-read timeout; only the total deadline stops it."""
    client = make_client("http", trickle.url, 1.0)
    try:
        with pytest.raises(tritonutils.InferenceServerException, match="is_server_live: no answer within 1 s"):
            client.is_server_live()
        with pytest.raises(tritonutils.InferenceServerException, match="is_server_ready: no answer within 0.5 s"):
            client.is_server_ready(client_timeout=0.5)  # a per-call deadline; a fresh connection after the cut
    finally:
        client.close()


def test_eval_client_over_http_fails_in_one_line_on_a_trickling_server(trickle):
    client = TritonInfer(CARD, ClientOptions(url=trickle.url, protocol="http", timeout_s=1.0, connect_timeout_s=1.0))
    try:
        with pytest.raises(ServerError) as info:
            client.connect()
    finally:
        client.close()
    message = str(info.value)
    assert "unreachable" in message and "is_server_live: no answer within 1 s" in message
    assert len(message.splitlines()) == 1


# --------------------------------------------------------------------- a server that stalls
@pytest.mark.parametrize("stall, call", [({"ModelReady"}, "is_model_ready"),
                                         ({"ModelMetadata"}, "get_model_metadata"),
                                         ({"ModelConfig"}, "get_model_config")])
def test_eval_client_names_the_grpc_call_that_stalled(request, stall, call):
    server = _stalling(request, stall)
    client = TritonInfer(CARD, ClientOptions(url=server.url, timeout_s=1.0, retries=0))
    try:
        with pytest.raises(ServerError, match=rf"{call}: no answer within 1 s \(deadline exceeded\)"):
            client.connect()
    finally:
        client.close()


def test_validate_context_bounds_its_grpc_calls(request):
    server = _stalling(request, {"ModelConfig", "ModelReady"})
    host, port = server.url.split(":")
    options = ValidateOptions(models=("m",), url=server.url, request_timeout_s=1.0)
    endpoints = Endpoints(grpc=HostPort(host, int(port)), http=HostPort(host, 1), metrics_url="", local=False,
                          pid=None, pid_note="", repo=None)
    ctx = Context(options, endpoints, None)
    try:
        config, why = served_config(ctx.served("m"))
        assert config == {} and "get_model_config: no answer within 1 s" in why
        with pytest.raises(tritonutils.InferenceServerException, match="is_model_ready: no answer within 1 s"):
            ctx.grpc().is_model_ready("m")
        assert ctx.grpc().is_server_live() is True  # the client still works after a deadline
    finally:
        ctx.close()


def test_served_model_probe_names_the_stalled_call(request):
    server = _stalling(request, {"ModelReady"})
    with ServedModel.connect("grpc", server.url, "m", timeout_s=1.0) as served:
        with pytest.raises(ModelUnready, match="is_model_ready: no answer within 1 s"):
            served.check_ready()


def test_an_explicit_client_timeout_wins_and_answers_pass_through(request):
    server = _stalling(request, set())
    client = make_client("grpc", server.url, 0.001)  # far too short for any call
    try:
        assert client.is_model_ready("m", client_timeout=10.0) is True
        assert client.get_model_metadata("m", as_json=True, client_timeout=10.0)["name"] == "m"
    finally:
        client.close()
