"""A thin Triton client for the run-stream engine (gRPC or HTTP, optional system shared memory).

:class:`TritonInfer` connects, checks the server is live and the model ready, and **checks the
served model against the card before the first request** (input/output names, datatypes,
dims, ``max_batch_size`` >= the largest batch the run will send), raising one
:class:`~tritonkit.errors.ServerError` that lists every mismatch, as Triton's
``image_client.py`` does in ``parse_model``. Then :meth:`TritonInfer.submit` sends a batch and
returns a ``concurrent.futures.Future`` of ``{output name: numpy array}``:

* gRPC: ``async_infer`` with a callback, so several requests are on the wire from one thread
  (the gRPC client is thread-safe);
* HTTP: the tritonclient HTTP client is not thread-safe, so a pool of ``in_flight`` threads
  each holds its own client and sends synchronously.

Every call has a total deadline, ``timeout_s`` (:class:`tritonkit.triton.DeadlineClient`; the
server's live/ready probe ``connect_timeout_s``), and a call past it fails naming the call.
Readiness, metadata and config come from :class:`tritonkit.served_model.ServedModel`.
Requests that fail because the server is *unavailable* (connection refused/reset, gRPC
UNAVAILABLE, HTTP 503) are retried with exponential backoff and jitter; any other failure
(invalid argument, deadline exceeded, model error) fails at once: retrying would not help.

A ``url`` naming several endpoints (a comma list, or a DNS name with several addresses such as a
headless Service) connects through a :class:`tritonkit.client.endpoints.EndpointPool`: each
attempt goes to a ready endpoint, a retry to another one, and a failure at an endpoint that is
no longer ready (a draining server answers "unknown model") is retried like an unavailable one;
:meth:`TritonInfer.endpoints_report` gives each endpoint's share, errors and latency.

With ``shm=True`` inputs and outputs travel through system shared memory
(``tritonclient.utils.shared_memory``): one input region and one region per output for each
in-flight slot, registered with the server at connect and unregistered and destroyed on
:meth:`TritonInfer.close` (also at interpreter exit if close was never called).

:class:`EncodedInfer` sends encoded image files instead (server-side preprocessing: the
``<model>_bytes`` ensembles of :func:`tritonkit.model_repository.ensemble.write_preprocess_chain`).
"""

from __future__ import annotations

import copy
import queue
import random
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client import shm as shm_lifecycle
from tritonkit.client.endpoints import EndpointPool, EndpointUnready, resolve_endpoints
from tritonkit.client.preprocess_math import ENCODED_INPUT, GEOMETRY_OUTPUT
from tritonkit.contract import contract_mismatches, normalize_config, normalize_metadata  # noqa: F401
from tritonkit.errors import ServerError, TritonkitError
from tritonkit.served_model import ModelUnready, ServedModel
from tritonkit.triton import (  # noqa: F401  (PROTOCOLS, DEFAULT_PORTS re-exported)
    DEFAULT_PORTS, PROTOCOLS, client_module, make_client, one_line, shm_module)


@dataclass(frozen=True)
class ClientOptions:
    """How to reach and talk to the server. ``model_name`` None -> the card's name."""

    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    model_name: str | None = None
    model_version: str = ""
    in_flight: int = 2
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    shm: bool = False
    connect_timeout_s: float = 10.0
    probe_interval_s: float = 1.0  # several endpoints: how often each is health-probed

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ServerError(f"protocol {self.protocol!r} not one of {PROTOCOLS}")
        if self.in_flight < 1:
            raise ServerError(f"in_flight must be >= 1 (got {self.in_flight})")
        if self.retries < 0 or self.timeout_s <= 0:
            raise ServerError("retries must be >= 0 and timeout_s > 0")

    @property
    def address(self) -> str:
        """``host:port`` (a scheme such as ``grpc://`` or ``http://`` is dropped)."""
        return self.url.split("://", 1)[-1].rstrip("/")


# ------------------------------------------------------------------ pure helpers (tested)
def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry ``attempt`` (0-based): ``min(cap, base * 2**attempt)`` scaled by a
    uniform jitter in [0.5, 1] so clients that failed together do not retry together."""
    ceiling = min(cap_s, base_s * (2 ** attempt))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def is_retryable(exc: BaseException) -> bool:
    """True only for 'server unavailable' failures: connection errors, gRPC UNAVAILABLE, HTTP 503."""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, ConnectionError):
        return True
    status = getattr(exc, "status", None)
    status = status() if callable(status) else status
    if status is not None and str(status) in ("StatusCode.UNAVAILABLE", "503", "UNAVAILABLE"):
        return True
    if status is None and isinstance(exc, OSError):
        return True  # socket-level errors from the HTTP client
    return False


# ---------------------------------------------------------------------- shared memory
@dataclass
class _ShmRegion:
    name: str
    key: str
    size: int
    handle: Any


def _cleanup_regions(client_factory, regions: list[_ShmRegion]) -> None:
    """Unregister from the server (best effort) and destroy local regions. Idempotent."""
    if not regions:
        return
    shm = shm_module()
    try:
        client = client_factory()
        for r in regions:
            try:
                client.unregister_system_shared_memory(r.name)
            except Exception:  # noqa: BLE001 - the server may already be gone
                pass
        client.close()
    except Exception:  # noqa: BLE001
        pass
    for r in regions:
        try:
            shm.destroy_shared_memory_region(r.handle)
        except Exception:  # noqa: BLE001 - already destroyed
            pass
    regions.clear()


# ----------------------------------------------------------------------------- client
class TritonInfer:
    """Sends batches of one card's input to one served model. See the module docstring."""

    def __init__(self, card: ModelCard, options: ClientOptions = ClientOptions(), max_batch: int = 1):
        self.card = card
        self.options = options
        self.model_name = options.model_name or card.name
        self.max_batch = max_batch
        self._client = None
        self._served: ServedModel | None = None
        self._local = threading.local()
        self._http_pool: ThreadPoolExecutor | None = None
        self._regions: list[_ShmRegion] = []
        self._slots: queue.Queue[int] | None = None
        self._slot_regions: list[dict[str, _ShmRegion]] = []
        self._finalizer = None
        self.retries_done = 0
        self.pool: EndpointPool | None = None
        self._clients: dict[str, tuple[int, Any]] = {}
        self._clients_lock = threading.Lock()
        self._retired: list = []

    # -- connection ---------------------------------------------------------------
    def _new_client(self, address: str | None = None):
        o = self.options
        return make_client(o.protocol, address or o.address, o.timeout_s, connect_timeout_s=o.connect_timeout_s)

    def _thread_client(self, address: str | None = None):
        if address is not None:  # several endpoints: this thread's client of the endpoint's generation
            clients = self._local.__dict__.setdefault("clients", {})
            generation, held = clients.get(address, (None, None))
            if generation != self.pool.generation(address):
                if held is not None:
                    held.close()  # only this thread used it
                generation, held = clients[address] = (self.pool.generation(address), self._new_client(address))
            return held
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def _served_at(self, client) -> ServedModel:
        """The served model behind ``client`` (its readiness probes bounded by ``connect_timeout_s``)."""
        o = self.options
        return ServedModel(client, self.model_name, version=o.model_version, probe_timeout_s=o.connect_timeout_s)

    @staticmethod
    def _check_server(served: ServedModel) -> None:
        """Live, ready and the model ready; EndpointUnready (one line) otherwise."""
        try:
            served.check_ready()
        except ModelUnready as exc:
            raise EndpointUnready(str(exc)) from None

    def connect(self) -> "TritonInfer":
        """Connect, check live/ready and the model contract; set up shared memory if asked.
        A URL naming several endpoints connects through an :class:`EndpointPool` instead."""
        o = self.options
        addresses = self._addresses()
        if len(addresses) > 1:
            return self._connect_pool(addresses)
        self._client = self._new_client()
        self._served = self._served_at(self._client)
        self._check_server(self._served)
        self.check_contract(self.max_batch)
        if o.shm:
            self._setup_shm()
        if o.protocol == "http":
            self._http_pool = ThreadPoolExecutor(o.in_flight, thread_name_prefix="triton-http")
        return self

    def _addresses(self) -> list[str]:
        """The endpoints ``options.url`` names; one name that does not resolve is left to connect's errors."""
        try:
            return resolve_endpoints(self.options.url, DEFAULT_PORTS[self.options.protocol])
        except ServerError:
            if "," in self.options.url:
                raise
            return [self.options.address]

    # -- several endpoints --------------------------------------------------------------
    def _connect_pool(self, addresses: list[str]) -> "TritonInfer":
        o = self.options
        if o.shm:
            raise ServerError(f"shm needs one server on this host; url names {len(addresses)} endpoints")
        self.pool = EndpointPool(addresses, self._probe, probe_interval_s=o.probe_interval_s,
                                 url=o.url, default_port=DEFAULT_PORTS[o.protocol])
        self.pool.admit_all()
        self._client = self._endpoint_client(self.pool.ready()[0])
        self.pool.start()
        if o.protocol == "http":
            self._http_pool = ThreadPoolExecutor(o.in_flight, thread_name_prefix="triton-http")
        return self

    def _probe(self, address: str, admit: bool) -> None:
        """The pool's health probe: a fresh connection; ``admit`` adds the contract check."""
        client = self._new_client(address)
        try:
            served = self._served_at(client)
            self._check_server(served)
            if admit:
                at = copy.copy(self)  # the (overridable) contract check, against this endpoint only
                at.options, at._client, at._served = replace(self.options, url=address), client, served
                at.check_contract(self.max_batch)
        finally:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def _endpoint_client(self, address: str):
        """The shared (gRPC) client of ``address`` for its current generation; a rejoined endpoint
        gets a new connection (the old channel may be in reconnect backoff; it is closed at close)."""
        generation = self.pool.generation(address)
        with self._clients_lock:
            held = self._clients.get(address)
            if held is None or held[0] != generation:
                if held is not None:
                    self._retired.append(held[1])
                held = self._clients[address] = (generation, self._new_client(address))
            return held[1]

    def _route(self, avoid: str | None):
        """``(endpoint or None, client)`` for the next attempt (the fixed client with one endpoint)."""
        if self.pool is None:
            return None, (self._client if self._http_pool is None else self._thread_client())
        address = self.pool.pick(avoid)
        return address, (self._endpoint_client(address) if self._http_pool is None else self._thread_client(address))

    def _record(self, address: str | None, t0: float, batch: np.ndarray, error: BaseException | None) -> None:
        if address is not None:
            self.pool.record(address, time.perf_counter() - t0, int(batch.shape[0]),
                             None if error is None else one_line(error), error is not None and is_retryable(error))

    def endpoints_report(self):
        """Each endpoint's share, errors and latency (:class:`PoolReport`); None with one endpoint."""
        return self.pool.report() if self.pool is not None else None

    def served_model(self) -> tuple[dict, dict]:
        """``(metadata, config)`` of the served model, normalized (fetched once per connection)."""
        if self._served is None:
            self._served = self._served_at(self._client)
        return self._served.contract()

    def check_contract(self, batch_size: int) -> None:
        meta, cfg = self.served_model()
        problems = contract_mismatches(self.card, meta, cfg, batch_size)
        if problems:
            raise ServerError(f"model {self.model_name!r} at {self.options.address} does not match card "
                              f"{self.card.name!r}: " + "; ".join(problems))

    # -- shared memory ------------------------------------------------------------
    def _setup_shm(self) -> None:
        shm = shm_module()

        specs = [("in", self.card.input)] + [("out", s) for s in self.card.outputs]
        if any(d < 0 for _, s in specs for d in s.dims):
            raise TritonkitError("shm needs fixed tensor dims in the card (a -1 dim cannot be sized)", fields=("shm",))
        tag = shm_lifecycle.region_tag()
        self._slots = queue.Queue()
        client = self._client
        shm_lifecycle.reclaim_stale(client)
        factory = self._new_client
        self._finalizer = weakref.finalize(self, _cleanup_regions, factory, self._regions)
        shm_lifecycle.REGISTRY.track(self._finalizer)
        try:
            for slot in range(self.options.in_flight):
                regions = {}
                for kind, spec in specs:
                    size = self.max_batch * int(np.prod(spec.dims)) * np.dtype(spec.numpy_dtype).itemsize
                    name = f"{tag}_{slot}_{kind}_{spec.name}"
                    handle = shm.create_shared_memory_region(name, f"/{name}", size)
                    region = _ShmRegion(name, f"/{name}", size, handle)
                    self._regions.append(region)
                    client.register_system_shared_memory(name, f"/{name}", size)
                    regions[spec.name] = region
                self._slot_regions.append(regions)
                self._slots.put(slot)
        except Exception as exc:  # noqa: BLE001
            self._finalizer()
            raise ServerError(f"{self.options.address}: cannot set up system shared memory "
                              f"({one_line(exc)}); the server must run on this host") from None

    # -- requests -----------------------------------------------------------------
    def _request(self, batch: np.ndarray, slot: int | None):
        o = self.options
        mod = client_module(o.protocol)
        spec = self.card.input
        inp = mod.InferInput(spec.name, list(batch.shape), spec.dtype)
        outs = [mod.InferRequestedOutput(s.name) for s in self.card.outputs] if o.protocol == "grpc" else \
            [mod.InferRequestedOutput(s.name, binary_data=True) for s in self.card.outputs]
        if slot is None:
            inp.set_data_from_numpy(np.ascontiguousarray(batch, dtype=spec.numpy_dtype))
        else:
            shm = shm_module()
            regions = self._slot_regions[slot]
            data = np.ascontiguousarray(batch, dtype=spec.numpy_dtype)
            shm.set_shared_memory_region(regions[spec.name].handle, [data])
            inp.set_shared_memory(regions[spec.name].name, data.nbytes)
            n = batch.shape[0]
            for out, s in zip(outs, self.card.outputs):
                nbytes = n * int(np.prod(s.dims)) * np.dtype(s.numpy_dtype).itemsize
                out.set_shared_memory(regions[s.name].name, nbytes)
        return [inp], outs

    def request_for(self, batch: np.ndarray) -> tuple[list, list]:
        """``(inputs, requested outputs)`` of one batch without shared memory, for any client of
        this protocol (the asyncio clients of :func:`tritonkit.triton.make_aio_client` take them)."""
        return self._request(batch, None)

    def outputs_of(self, result) -> dict[str, np.ndarray]:
        """The arrays of one response to a :meth:`request_for` request, by output name."""
        return self._outputs(result, None)

    def _outputs(self, result, slot: int | None) -> dict[str, np.ndarray]:
        if slot is None:
            return {s.name: result.as_numpy(s.name) for s in self.card.outputs}
        shm = shm_module()
        arrays = {}
        for s in self.card.outputs:
            out = result.get_output(s.name)
            shape = [int(d) for d in (out.shape if hasattr(out, "shape") else out["shape"])]
            view = shm.get_contents_as_numpy(self._slot_regions[slot][s.name].handle, np.dtype(s.numpy_dtype), shape)
            arrays[s.name] = np.array(view, copy=True)  # the slot is reused by the next request
        return arrays

    def _acquire(self) -> int | None:
        return self._slots.get() if self._slots is not None else None

    def _release(self, slot: int | None) -> None:
        if slot is not None and self._slots is not None:
            self._slots.put(slot)

    def _failure(self, exc: BaseException, attempts: int, address: str | None = None) -> ServerError:
        what = f"after {attempts} attempts" if attempts > 1 else "request failed"
        where = "" if self.pool is None or self.pool.ready() else \
            f" (no endpoint ready of {', '.join(self.pool.addresses)})"
        return ServerError(f"{self.options.protocol} {address or self.options.address} model {self.model_name!r}: "
                           f"inference {what}: {one_line(exc)}{where}")

    def submit(self, batch: np.ndarray) -> "Future[dict[str, np.ndarray]]":
        """Send one batch (first axis = batch); the future resolves to the outputs."""
        if self._client is None:
            raise ServerError("TritonInfer.submit before connect()")
        if batch.shape[0] > self.max_batch:
            raise ServerError(f"batch of {batch.shape[0]} is above the {self.max_batch} this client checked for")
        if self._http_pool is not None:
            return self._http_pool.submit(self._infer_sync, batch)
        future: Future = Future()
        future.set_running_or_notify_cancel()
        self._grpc_attempt(batch, future, 0)
        return future

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Blocking :meth:`submit`."""
        return self.submit(batch).result()

    def infer_here(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`infer` as a synchronous call from the calling thread, with the same deadline,
        retries and failover: no callback thread between the response and the caller. One image
        at a time on the small classifier served locally (2 shared cores, noisy), ``predict`` went
        from 0.71-0.86 of a hand-written synchronous tritonclient call through :meth:`submit` to
        0.89-1.26 this way."""
        if self._client is None:
            raise ServerError("TritonInfer.infer_here before connect()")
        if batch.shape[0] > self.max_batch:
            raise ServerError(f"batch of {batch.shape[0]} is above the {self.max_batch} this client checked for")
        return self._infer_sync(batch)

    def _grpc_attempt(self, batch: np.ndarray, future: Future, attempt: int, avoid: str | None = None) -> None:
        o = self.options
        slot = self._acquire()
        address, client = self._route(avoid)
        t0 = time.perf_counter()

        def callback(result, error) -> None:
            try:
                if error is None:
                    outputs = self._outputs(result, slot)
                    self._record(address, t0, batch, None)
                    future.set_result(outputs)
                    return
            except Exception as exc:  # noqa: BLE001 - reading the outputs failed
                self._record(address, t0, batch, exc)
                future.set_exception(self._failure(exc, attempt + 1, address))
                return
            finally:
                self._release(slot)
            self._record(address, t0, batch, error)
            self._retry_or_fail(batch, future, attempt, error, address)

        try:
            inputs, outputs = self._request(batch, slot)
            client.async_infer(self.model_name, inputs, callback, model_version=o.model_version,
                               outputs=outputs, client_timeout=o.timeout_s)
        except Exception as exc:  # noqa: BLE001 - raised before the request left
            self._release(slot)
            self._record(address, t0, batch, exc)
            self._retry_or_fail(batch, future, attempt, exc, address)

    def _retry_or_fail(self, batch: np.ndarray, future: Future, attempt: int, error: BaseException,
                       address: str | None = None) -> None:
        o = self.options
        if address is not None and not is_retryable(error) and attempt < o.retries:
            threading.Thread(target=self._retry_if_unready, args=(batch, future, attempt, error, address),
                             daemon=True).start()  # not in gRPC's callback thread: the probe blocks
            return
        if is_retryable(error) and attempt < o.retries:
            self.retries_done += 1
            timer = threading.Timer(backoff_delay(attempt, o.backoff_s, o.backoff_max_s),
                                    self._grpc_attempt, (batch, future, attempt + 1, address))
            timer.daemon = True
            timer.start()
        else:
            future.set_exception(self._failure(error, attempt + 1, address))

    def _retry_if_unready(self, batch: np.ndarray, future: Future, attempt: int, error: BaseException,
                          address: str) -> None:
        """Several endpoints: a failure at an endpoint that is no longer ready is retried elsewhere."""
        if self.pool.confirm(address):
            future.set_exception(self._failure(error, attempt + 1, address))
        else:
            self._retry_or_fail(batch, future, attempt,
                                ConnectionError(f"{address} is no longer ready ({one_line(error)})"), address)

    def _infer_sync(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        o = self.options
        attempt, address = 0, None
        while True:
            slot = self._acquire()
            address, client = self._route(address)
            t0 = time.perf_counter()
            try:
                inputs, outputs = self._request(batch, slot)
                result = client.infer(self.model_name, inputs, model_version=o.model_version, outputs=outputs)
                arrays = self._outputs(result, slot)
                self._record(address, t0, batch, None)
                return arrays
            except Exception as exc:  # noqa: BLE001 - classified below
                self._record(address, t0, batch, exc)
                if address is not None and not is_retryable(exc) and attempt < o.retries \
                        and not self.pool.confirm(address):
                    exc = ConnectionError(f"{address} is no longer ready ({one_line(exc)})")
                if not (is_retryable(exc) and attempt < o.retries):
                    raise self._failure(exc, attempt + 1, address) from None
            finally:
                self._release(slot)
            self.retries_done += 1
            time.sleep(backoff_delay(attempt, o.backoff_s, o.backoff_max_s))
            attempt += 1

    # -- teardown -----------------------------------------------------------------
    def close(self) -> None:
        if self._http_pool is not None:
            self._http_pool.shutdown(wait=True)
            self._http_pool = None
        if self.pool is not None:
            self.pool.close()
            with self._clients_lock:
                held = [c for _, c in self._clients.values()] + self._retired
                self._clients, self._retired = {}, []
            for client in held:
                if client is not self._client:
                    client.close()
        if self._finalizer is not None:
            self._finalizer()
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
            self._client = None

    def __enter__(self) -> "TritonInfer":
        return self.connect() if self._client is None else self

    def __exit__(self, *exc) -> None:
        self.close()


class EncodedInfer(TritonInfer):
    """Sends encoded images (JPEG, PNG ... files as they are) to a bytes-in model: the server
    decodes and preprocesses. A batch is an object array ``[n, 1]`` of ``bytes``; the input is
    ``image_bytes``, BYTES ``[1]`` (the python preprocess model) or UINT8 ``[-1]`` (the DALI
    one: each file zero-padded to the batch's longest). The card describes the outputs; the
    served ``geometry`` output, when there is one, is returned too. No shared memory (the
    encoded sizes vary)."""

    encoded_dtype = "BYTES"
    extra_outputs: tuple[str, ...] = ()

    def check_contract(self, batch_size: int) -> None:
        if self.options.shm:
            raise ServerError("shared memory is not used for encoded-image inputs (their sizes vary)")
        meta, cfg = self.served_model()
        encoded = meta["inputs"].get(ENCODED_INPUT)
        problems = [] if encoded is not None and encoded["datatype"] in ("BYTES", "UINT8") else \
            [f"input {ENCODED_INPUT!r} (BYTES or UINT8) not served (server has {sorted(meta['inputs'])})"]
        # the encoded input stands in for the card's input; everything else is checked as usual
        stand_in = {self.card.input.name: {"datatype": self.card.input.dtype, "shape": [-1, *self.card.input.dims]}}
        problems += contract_mismatches(self.card, {**meta, "inputs": stand_in}, {**cfg, "inputs": {}}, batch_size)
        if problems:
            raise ServerError(f"model {self.model_name!r} at {self.options.address} does not take encoded images "
                              f"for card {self.card.name!r}: " + "; ".join(problems))
        self.encoded_dtype = encoded["datatype"]
        self.extra_outputs = (GEOMETRY_OUTPUT,) if GEOMETRY_OUTPUT in meta["outputs"] else ()

    def _request(self, batch: np.ndarray, slot: int | None):
        mod = client_module(self.options.protocol)
        blobs = [bytes(b) for b in np.asarray(batch, dtype=object).reshape(len(batch), -1)[:, 0]]
        if self.encoded_dtype == "UINT8":
            data = np.zeros((len(blobs), max(len(b) for b in blobs)), np.uint8)
            for i, b in enumerate(blobs):
                data[i, :len(b)] = np.frombuffer(b, np.uint8)
        else:
            data = np.array(blobs, dtype=object).reshape(-1, 1)
        inp = mod.InferInput(ENCODED_INPUT, list(data.shape), self.encoded_dtype)
        inp.set_data_from_numpy(data)
        names = [s.name for s in self.card.outputs] + list(self.extra_outputs)
        binary = {} if self.options.protocol == "grpc" else {"binary_data": True}
        return [inp], [mod.InferRequestedOutput(n, **binary) for n in names]

    def _outputs(self, result, slot: int | None) -> dict[str, np.ndarray]:
        return {n: result.as_numpy(n) for n in [s.name for s in self.card.outputs] + list(self.extra_outputs)}
