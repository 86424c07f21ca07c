"""Triton transport helpers: one client factory, one error translation, raw requests.

Everything that talks to a Triton server through ``tritonclient`` builds its client here:

* :func:`make_client` — a gRPC or HTTP ``InferenceServerClient`` wrapped in a
  :class:`DeadlineClient`: with ``timeout_s`` every call has a total deadline (gRPC: its
  ``client_timeout`` unless the caller passes one; HTTP: a deadline on the whole exchange, so a
  server trickling bytes cannot stretch a call past it) and a call that runs out raises
  tritonclient's ``InferenceServerException`` naming the call; :func:`call_kwargs` the keyword
  arguments that bound one call with another deadline;
* :func:`make_aio_client` — the asyncio clients of ``tritonclient.grpc.aio`` / ``tritonclient.http.aio``
  (``tritonkit.connect_async``);
* :func:`translate_errors` — a context manager turning tritonclient, gRPC and socket
  exceptions into one-line :class:`~tritonkit.errors.ServerError`\\ s that name the call;
* :func:`one_line` — any exception as one short line (the server's message when it has one);
* :func:`input_shape`, :func:`seeded_batch`, :func:`make_inputs`, :func:`requested_outputs`, :func:`infer` — raw
  requests without retries (validation and the stall probe count exactly the errors a retry
  would hide);
* :func:`shm_module` — ``tritonclient.utils.shared_memory`` with a clear error when it cannot load.

``tritonclient`` is imported on first use (:func:`tritonkit._lazy.lazy_import`).
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from tritonkit._lazy import lazy_import, load_module
from tritonkit.cards import ModelCard
from tritonkit.errors import CardError, ServerError, ToolMissingError

grpcclient = lazy_import("tritonclient.grpc")
httpclient = lazy_import("tritonclient.http")
grpc_aio = lazy_import("tritonclient.grpc.aio")
http_aio = lazy_import("tritonclient.http.aio")
tritonutils = lazy_import("tritonclient.utils")
_shared_memory = lazy_import("tritonclient.utils.shared_memory")
_grpc = lazy_import("grpc", install_hint="grpcio")
_gevent = lazy_import("gevent")

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
LINE_LIMIT = 300

__all__ = ["PROTOCOLS", "DEFAULT_PORTS", "client_module", "make_client", "make_aio_client", "DeadlineClient",
           "call_kwargs", "one_line", "translate_errors", "transport_errors", "input_shape", "seeded_batch", "make_inputs", "requested_outputs",
           "infer", "shm_module", "grpcclient", "httpclient", "tritonutils"]


def client_module(protocol: str):
    """``tritonclient.grpc`` or ``tritonclient.http`` (lazily imported)."""
    if protocol == "grpc":
        return grpcclient
    if protocol == "http":
        return httpclient
    raise ServerError(f"protocol {protocol!r} not one of {', '.join(PROTOCOLS)}")


def make_client(protocol: str, url: str, timeout_s: float | None = None, *,
                connect_timeout_s: float | None = None) -> "DeadlineClient":
    """A tritonclient ``InferenceServerClient`` for ``protocol`` at ``url`` (``host:port``),
    wrapped so that every call has the total deadline ``timeout_s`` (none when None).

    HTTP: ``connect_timeout_s`` (default ``timeout_s``) bounds the connection and ``timeout_s``
    each read too. A call may pass ``client_timeout=`` (both protocols) for another deadline.
    A URL the client cannot use raises a one-line ServerError.
    """
    module = client_module(protocol)
    address = url.split("://", 1)[-1].rstrip("/")
    kwargs: dict[str, float] = {}
    if protocol == "http":
        if timeout_s is not None:
            kwargs["network_timeout"] = timeout_s
        if (connect_timeout_s or timeout_s) is not None:
            kwargs["connection_timeout"] = connect_timeout_s or timeout_s
    else:
        kwargs["channel_args"] = grpc_channel_args(module)

    def factory():
        with translate_errors(f"create a {protocol} client", where=address):
            return module.InferenceServerClient(address, **kwargs)

    return DeadlineClient(protocol, factory, timeout_s, address=address)


def make_aio_client(protocol: str, address: str, timeout_s: float | None = None):
    """A tritonclient asyncio ``InferenceServerClient`` (``tritonclient.grpc.aio`` or
    ``tritonclient.http.aio``) for ``address`` (``host:port``); HTTP connects within ``timeout_s``.
    It has no deadline of its own: bound each call (``asyncio.wait_for``). Close it with ``await
    client.close()``. A URL the client cannot use raises a one-line ServerError."""
    client_module(protocol)  # an unknown protocol is refused here, in the usual words
    with translate_errors(f"create a {protocol} asyncio client", where=address):
        if protocol == "grpc":
            return grpc_aio.InferenceServerClient(address, channel_args=grpc_channel_args(grpcclient))
        return http_aio.InferenceServerClient(address, **({"conn_timeout": timeout_s} if timeout_s else {}))


def grpc_channel_args(module) -> list[tuple[str, object]]:
    """tritonclient's own gRPC channel options, plus a subchannel pool of the client's own.

    gRPC shares connections between channels to the same address through a process-wide
    subchannel pool, with the pool's reconnect backoff: a client made for a server that has
    just been restarted (an endpoint back in a multi-endpoint pool, a resumed eval in the same
    process) would be refused for up to the backoff. Its own pool connects afresh."""
    keepalive = module.KeepAliveOptions()
    return [("grpc.max_send_message_length", module.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", module.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.use_local_subchannel_pool", 1)]


class DeadlineClient:
    """A tritonclient ``InferenceServerClient`` whose every call has a total deadline.

    Attributes and methods are the wrapped client's (:attr:`raw`). gRPC methods that take
    ``client_timeout`` get ``timeout_s`` when the caller gives none (gRPC enforces it end to
    end). HTTP calls run under a ``gevent.Timeout`` of ``client_timeout`` or ``timeout_s``
    covering connect, send and the whole response (the HTTP client's own timeouts bound each
    read only); on expiry the connection pool is closed and the next call opens a new one. A
    call past its deadline raises ``InferenceServerException("<call>: no answer within <t> s
    (deadline exceeded)")``. HTTP ``async_infer`` is bounded only while sending.
    """

    def __init__(self, protocol: str, factory: Callable[[], Any], timeout_s: float | None, *, address: str = ""):
        self.protocol = protocol
        self.address = address
        self.timeout_s = timeout_s
        self._factory = factory
        self._raw = factory()
        self._takes_timeout: dict[str, bool] = {}

    @property
    def raw(self):
        """The wrapped tritonclient client (re-created after an HTTP deadline closed it)."""
        if self._raw is None:
            self._raw = self._factory()
        return self._raw

    def __getattr__(self, name: str):
        if name in ("_raw", "_factory", "_takes_timeout"):  # not set yet: no recursion through raw
            raise AttributeError(name)
        attr = getattr(self.raw, name)
        if name.startswith("_") or not callable(attr) or name == "close":
            return attr

        def bounded(*args, **kwargs):
            return self._call(name, attr, args, kwargs)

        bounded.__name__ = name
        return bounded

    def _call(self, name: str, method: Callable, args: tuple, kwargs: dict):
        if self.protocol == "grpc":
            if kwargs.get("client_timeout") is None and self.timeout_s is not None and self._takes(name, method):
                kwargs["client_timeout"] = self.timeout_s
            try:
                return method(*args, **kwargs)
            except tritonutils.InferenceServerException as exc:
                if "DEADLINE_EXCEEDED" not in str(exc.status()):
                    raise
                raise _deadline_error(name, kwargs.get("client_timeout"), exc.status()) from None
        deadline = kwargs.pop("client_timeout", None) or self.timeout_s
        if deadline is None:
            return method(*args, **kwargs)
        timer = _gevent.Timeout(deadline)
        timer.start()
        try:
            return method(*args, **kwargs)
        except _gevent.Timeout as exc:
            if exc is not timer:
                raise
            self._drop_connection()
            raise _deadline_error(name, deadline, "DEADLINE_EXCEEDED") from None
        finally:
            timer.close()

    def _takes(self, name: str, method: Callable) -> bool:
        if name not in self._takes_timeout:
            try:
                self._takes_timeout[name] = "client_timeout" in inspect.signature(method).parameters
            except (TypeError, ValueError):
                self._takes_timeout[name] = False
        return self._takes_timeout[name]

    def _drop_connection(self) -> None:
        """A call cut off mid-response leaves its connection unusable: close the client."""
        raw, self._raw = self._raw, None
        try:
            raw.close()
        except Exception:  # noqa: BLE001 - closing a half-read connection; nothing to keep
            pass

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()

    def __enter__(self) -> "DeadlineClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _deadline_error(call: str, deadline: float | None, status: Any):
    text = f"{call}: no answer within {deadline:g} s (deadline exceeded)" if deadline else \
        f"{call}: deadline exceeded"
    return tritonutils.InferenceServerException(msg=text, status=str(status))


def call_kwargs(protocol: str, timeout_s: float | None) -> dict[str, float]:
    """Keyword arguments that bound one call with ``timeout_s`` instead of the client's deadline:
    ``client_timeout`` for gRPC; none for HTTP, whose clients use the deadline of
    :func:`make_client` (a :class:`DeadlineClient` takes ``client_timeout`` for HTTP calls too)."""
    return {"client_timeout": timeout_s} if protocol == "grpc" and timeout_s is not None else {}


def one_line(exc: BaseException | str, limit: int = LINE_LIMIT) -> str:
    """An exception (or text) as one short line: tritonclient's server message when it has one,
    else ``str(exc)``; its first non-empty line, whitespace collapsed; the type name when empty."""
    if isinstance(exc, str):
        text = exc
    else:
        message = getattr(exc, "message", None)
        text = (message() if callable(message) else None) or str(exc)
    lines = [" ".join(line.split()) for line in str(text).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if not isinstance(exc, str) else ""
    return lines[0][:limit]


def transport_errors() -> tuple[type[BaseException], ...]:
    """The exception types a Triton call raises when the call itself fails (server or network)."""
    types: list[type[BaseException]] = [OSError]  # ConnectionError, socket errors and timeouts
    for module, name in ((tritonutils, "InferenceServerException"), (_grpc, "RpcError")):
        try:
            types.append(getattr(module, name))
        except (ToolMissingError, ImportError):
            pass
    return tuple(types)


@contextmanager
def translate_errors(call: str, *, where: str = "", context: str | None = None) -> Iterator[None]:
    """Turn tritonclient, gRPC and socket errors raised inside into one-line ServerErrors.

    The message names the call: ``"<where>: <call> failed: <server message>"``, or with
    ``context``: ``"<context> (<call>: <server message>)"``. ServerErrors pass unchanged.
    """
    try:
        yield
    except ServerError:
        raise
    except Exception as exc:  # noqa: BLE001 - filtered against transport_errors() below
        if not isinstance(exc, transport_errors()) and not _is_bad_address(exc, call):
            raise
        detail = one_line(exc)
        named = any(detail.startswith(f"{name}: ") for name in call.split("/"))  # a deadline names its call
        if context is not None:
            raise ServerError(f"{context} ({detail if named else f'{call}: {detail}'})") from None
        prefix = f"{where}: " if where else ""
        raise ServerError(f"{prefix}{detail if named else f'{call} failed: {detail}'}") from None


def _is_bad_address(exc: BaseException, call: str) -> bool:
    """Client constructors reject a malformed URL with ValueError/TypeError of their own."""
    return call.startswith("create a ") and isinstance(exc, (ValueError, TypeError))


# -- raw requests ---------------------------------------------------------------------------

def input_shape(card: ModelCard, batch: int, shape_hw: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The card's input shape at ``batch``; variable H and W (``-1``) take ``shape_hw`` (height,
    width) when given, else the card's ``dynamic_shape.opt``. A ``-1`` with neither is an error."""
    if shape_hw is not None:
        if len(shape_hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape_hw):
            raise CardError(f"shape_hw must be (height, width) with positive integers (got {shape_hw!r})")
        if -1 in card.input.dims:
            spatial = iter(shape_hw)
            return (batch, *(next(spatial, 1) if d == -1 else d for d in card.input.dims))
    shape = card.input_shape(batch)
    if -1 in shape:
        raise CardError(f"card {card.name!r}: input {card.input.name!r} has variable dims and no dynamic_shape; "
                        f"give shape_hw")
    return shape


def seeded_batch(card: ModelCard, batch: int, seed: int, shape_hw: tuple[int, int] | None = None) -> np.ndarray:
    """A deterministic input batch of the card's shape and dtype (normal noise for floats);
    variable H and W at ``shape_hw`` or the card's ``dynamic_shape.opt`` (:func:`input_shape`)."""
    rng = np.random.default_rng(seed)
    shape = input_shape(card, batch, shape_hw)
    dtype = np.dtype(card.input.numpy_dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 255) + 1, shape).astype(dtype)


def make_inputs(card: ModelCard, x: np.ndarray, protocol: str = "grpc") -> list:
    """The card's input tensor holding ``x``, for ``protocol``'s client."""
    inp = client_module(protocol).InferInput(card.input.name, list(x.shape), card.input.dtype)
    inp.set_data_from_numpy(x)
    return [inp]


def requested_outputs(card: ModelCard, protocol: str = "grpc") -> list:
    return [client_module(protocol).InferRequestedOutput(o.name) for o in card.outputs]


def infer(client, model: str, card: ModelCard, x: np.ndarray, timeout_s: float,
          headers: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """One synchronous gRPC inference, no retries; outputs by name. Errors propagate."""
    result = client.infer(model, make_inputs(card, x), outputs=requested_outputs(card),
                          client_timeout=timeout_s, headers=dict(headers) if headers else None)
    return {o.name: result.as_numpy(o.name) for o in card.outputs}


def shm_module() -> Any:
    """``tritonclient.utils.shared_memory`` (it imports ``pkg_resources``, i.e. setuptools < 81)."""
    try:
        with warnings.catch_warnings():  # its own pkg_resources deprecation notice, not ours to act on
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            return load_module(_shared_memory)
    except ImportError as exc:
        raise ToolMissingError(f"system shared memory needs tritonclient.utils.shared_memory, which failed to "
                               f"import ({exc}); it needs pkg_resources: pip install 'setuptools<81'") from None
