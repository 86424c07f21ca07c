"""``await tritonkit.connect_async(url)``: :class:`~tritonkit.predict.model.Model` for asyncio.

The same connection plan and per-image code as the sync client (:mod:`tritonkit.predict.batches`);
requests go through tritonclient's asyncio clients (``tritonclient.grpc.aio`` /
``tritonclient.http.aio``), one per endpoint, with the eval's rules: every call bounded by
``timeout_s``, a server that is unavailable tried again (``retries``, exponential backoff with
jitter) on the next endpoint when there are several, any other failure reported at once.
Reading, decoding and preprocessing run in a thread pool, off the event loop. Connecting (the
served card, the contract check) runs in a thread too.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.endpoints import resolve_endpoints
from tritonkit.client.infer import TritonInfer, backoff_delay, is_retryable
from tritonkit.errors import ServerError
from tritonkit.predict.batches import Batch, chunks, finish, load, request, split
from tritonkit.predict.inputs import to_item
from tritonkit.predict.model import DEFAULT_BATCH, is_batch
from tritonkit.predict.target import ConnectOptions, Plan, PlanView, open_client, parse_target, plan
from tritonkit.triton import DEFAULT_PORTS, make_aio_client, one_line


class AsyncModel(PlanView):
    """A served model for asyncio applications: ``await m.predict(x)``, ``async for r in
    m.predict_iter(paths)``, ``await m.close()`` (or ``async with``)."""

    def __init__(self, plan_: Plan, codec: TritonInfer, options: ConnectOptions) -> None:
        self.plan = plan_
        self.options = options
        self._codec = codec  # builds requests and reads responses; its own connection is closed
        self._addresses = resolve_endpoints(plan_.target.url, DEFAULT_PORTS[plan_.target.protocol])
        self._turn = itertools.count()
        self._clients: dict[str, Any] = {}
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="predict-aio")
        self._slots = asyncio.Semaphore(options.in_flight)

    # -- predicting ------------------------------------------------------------------------
    async def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """One image -> its result; a list of images -> a list of results in the same order, in
        batches of ``batch_size`` (default: the served max batch size)."""
        if is_batch(x):
            return [r async for r in self.predict_iter(x, batch_size=batch_size or self.max_batch)]
        return (await self._run(await self._load([to_item(x, 0)])))[0]

    async def predict_iter(self, inputs: Iterable[Any], batch_size: int = DEFAULT_BATCH) -> AsyncIterator[Any]:
        """Results for ``inputs`` in order, ``batch_size`` images per request (at most the served
        max batch size), at most ``in_flight`` batches on the wire."""
        size = max(1, min(int(batch_size), self.max_batch))
        window: collections.deque = collections.deque()
        for chunk in chunks((to_item(v, i) for i, v in enumerate(inputs)), size):
            window.append(asyncio.ensure_future(self._run(await self._load(chunk))))
            while len(window) > self.options.in_flight:
                for result in await window.popleft():
                    yield result
        while window:
            for result in await window.popleft():
                yield result

    async def _load(self, items: list) -> Batch:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, load, self.plan.adapter, items, None)

    async def _run(self, batch: Batch) -> list:
        ok = batch.ok
        if not ok:
            return finish(self.plan.adapter, batch, {})
        try:
            outputs = split(await self._infer(request(self.plan.adapter, ok)), ok)
        except ServerError as exc:
            if len(ok) == 1 and not self.plan.adapter.encoded:
                raise
            outputs = {}
            for ld in ok:  # each image alone (see Model._one_by_one)
                try:
                    outputs.update(split(await self._infer(request(self.plan.adapter, [ld])), [ld]))
                except ServerError as alone:
                    outputs[ld.index] = alone
            if len(ok) > 1 and all(isinstance(v, BaseException) for v in outputs.values()):
                raise exc
        return finish(self.plan.adapter, batch, outputs)

    async def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One request with the eval's deadline, retry and failover rules."""
        o, target = self.options, self.plan.target
        attempt = 0
        while True:
            address = self._addresses[next(self._turn) % len(self._addresses)]
            inputs, outputs = self._codec.request_for(batch)
            bound = {"client_timeout": o.timeout_s} if target.protocol == "grpc" else {}
            try:
                async with self._slots:
                    result = await asyncio.wait_for(self._client(address).infer(
                        self.plan.called, inputs, outputs=outputs, **bound), o.timeout_s)
                return self._codec.outputs_of(result)
            except asyncio.TimeoutError:
                raise ServerError(f"{target.protocol} {address} model {self.plan.called!r}: inference: no answer "
                                  f"within {o.timeout_s:g} s (deadline exceeded)") from None
            except Exception as exc:  # noqa: BLE001 - classified: retried when the server is unavailable
                if not (is_retryable(exc) and attempt < o.retries):
                    what = f"after {attempt + 1} attempts" if attempt else "request failed"
                    raise ServerError(f"{target.protocol} {address} model {self.plan.called!r}: inference {what}: "
                                      f"{one_line(exc)}") from None
            await asyncio.sleep(backoff_delay(attempt, 0.2, 5.0))
            attempt += 1

    def _client(self, address: str) -> Any:
        if address not in self._clients:
            self._clients[address] = make_aio_client(self.plan.target.protocol, address, self.options.timeout_s)
        return self._clients[address]

    # -- lifetime --------------------------------------------------------------------------
    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncModel":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _connect(url: str, model: str | None, card: Any, protocol: str | None,
             options: ConnectOptions) -> tuple[Plan, TritonInfer]:
    p = plan(parse_target(url, model, protocol), card, options)
    codec = open_client(p, options)  # live, ready and the contract, checked once
    codec.close()
    return p, codec


async def connect_async(url: str, model: str | None = None, *, card: ModelCard | str | Path | None = None,
                        protocol: str | None = None, nms_profile: str | None = None,
                        server_preprocess: bool = False, server_postprocess: bool | None = None,
                        timeout_s: float = 60.0, retries: int = 3, in_flight: int = 2,
                        workers: int = 2) -> AsyncModel:
    """:func:`tritonkit.connect` for asyncio: ``m = await tritonkit.connect_async(url)``."""
    options = ConnectOptions(nms_profile=nms_profile, server_preprocess=server_preprocess,
                             server_postprocess=server_postprocess, timeout_s=timeout_s, retries=retries,
                             in_flight=in_flight, workers=workers)
    p, codec = await asyncio.to_thread(_connect, url, model, card, protocol, options)
    return AsyncModel(p, codec, options)


__all__ = ["AsyncModel", "connect_async"]
