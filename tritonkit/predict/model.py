"""``tritonkit.connect(url).predict(images)``: the served model as an application calls it.

:func:`connect` reads the served card once, checks the contract once and keeps one client
(:mod:`tritonkit.predict.target`). :meth:`Model.predict` takes one image (a path, bytes, a PIL
image, an ``[H, W, 3]`` uint8 RGB array) or a list of them and returns the task's typed result
per image in original-image coordinates; :meth:`Model.predict_iter` streams results for any
number of inputs with bounded memory. Lists go in batches of up to the served max batch size,
``in_flight`` requests on the wire while the next batch is decoded; an image that cannot be read
or preprocessed is a :class:`~tritonkit.tasks.results.Failed` in its place. A request that fails
for a batch is sent again image by image, so one image the server refuses costs only itself.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator

from tritonkit.cards import ModelCard
from tritonkit.client.infer import TritonInfer
from tritonkit.errors import ServerError
from tritonkit.predict.batches import Batch, chunks, finish, load, request, split
from tritonkit.predict.inputs import to_item
from tritonkit.predict.target import ConnectOptions, Plan, PlanView, open_client, parse_target, plan

DEFAULT_BATCH = 8


def is_batch(x: Any) -> bool:
    """A list or tuple of inputs (one image is a path, bytes, a PIL image or an array)."""
    return isinstance(x, (list, tuple))


class Model(PlanView):
    """A served model, connected (see the module docstring). Close it, or use it in ``with``."""

    def __init__(self, plan_: Plan, client: TritonInfer, options: ConnectOptions) -> None:
        self.plan = plan_
        self.options = options
        self._client = client
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="predict")

    # -- predicting ------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """One image -> its result; a list of images -> a list of results in the same order, in
        batches of ``batch_size`` (default: the served max batch size). A segmenter's images of
        one batch are padded to the largest, as eval pads them: ``batch_size=1`` gives the
        reference masks (the eval's batch 1) for images of different sizes."""
        if is_batch(x):
            return list(self.predict_iter(x, batch_size=batch_size or self.max_batch))
        return self._finish(*self._send(load(self.plan.adapter, [to_item(x, 0)], None), here=True))[0]

    def predict_iter(self, inputs: Iterable[Any], batch_size: int = DEFAULT_BATCH) -> Iterator[Any]:
        """Results for ``inputs`` (any iterable, read lazily) in order, ``batch_size`` images per
        request (at most the served max batch size); at most ``in_flight`` batches are held."""
        size = max(1, min(int(batch_size), self.max_batch))
        items = (to_item(value, i) for i, value in enumerate(inputs))
        window: collections.deque = collections.deque()
        for chunk in chunks(items, size):
            window.append(self._send(load(self.plan.adapter, chunk, self._pool)))
            while len(window) > self.options.in_flight:
                yield from self._finish(*window.popleft())
        while window:
            yield from self._finish(*window.popleft())

    def _send(self, batch: Batch, here: bool = False) -> tuple[Batch, Future | None]:
        """The batch's request on the wire (``here``: sent synchronously from this thread, the
        shorter path for one request at a time); None when no image of it can be sent."""
        ok = batch.ok
        if not ok:
            return batch, None
        x = request(self.plan.adapter, ok)
        if not here:
            return batch, self._client.submit(x)
        done: Future = Future()
        try:
            done.set_result(self._client.infer_here(x))
        except ServerError as exc:
            done.set_exception(exc)
        return batch, done

    def _finish(self, batch: Batch, future: Future | None) -> list:
        if future is None:
            return finish(self.plan.adapter, batch, {})
        try:
            outputs = split(future.result(), batch.ok)
        except ServerError as exc:
            outputs = self._one_by_one(batch, exc)
        return finish(self.plan.adapter, batch, outputs)

    def _one_by_one(self, batch: Batch, error: ServerError) -> dict:
        """After a batch's request failed: each image alone; raises ``error`` when every image
        fails alone too (the server is the problem, not an image), except for a single encoded
        file (server-side preprocessing: the server decoding it is what failed)."""
        ok = batch.ok
        if len(ok) == 1 and not self.plan.adapter.encoded:
            raise error
        outputs: dict = {}
        for ld in ok:
            try:
                outputs.update(split(self._client.submit(request(self.plan.adapter, [ld])).result(), [ld]))
            except ServerError as exc:
                outputs[ld.index] = exc
        if len(ok) > 1 and all(isinstance(v, BaseException) for v in outputs.values()):
            raise error
        return outputs

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        d = self.describe()
        return f"Model({d['model']!r} at {d['protocol']}://{d['url']}, {d['task']}, card {d['card']!r})"


def connect(url: str, model: str | None = None, *, card: ModelCard | str | Path | None = None,
            protocol: str | None = None, nms_profile: str | None = None, server_preprocess: bool = False,
            server_postprocess: bool | None = None, timeout_s: float = 60.0, retries: int = 3,
            in_flight: int = 2, workers: int = 2) -> Model:
    """Connect to a served model: ``connect("grpc://127.0.0.1:8001/resnet50")``.

    ``url``: ``grpc://`` or ``http://``, one ``host:port`` or a comma list of them, then
    ``/<model>`` (or the model's name as ``model``). ``card``: a card (name, .json file or
    ModelCard) the served card must equal; by default the served card is used. ``nms_profile``:
    the detector's NMS profile (default ``speed`` where the card has one). ``server_postprocess``:
    None uses the server-side NMS/argmax ensemble where it is served, True requires it, False
    never; ``server_preprocess=True`` sends encoded files to the ``_bytes`` ensemble.
    ``timeout_s`` is every call's deadline, ``retries`` how often an unavailable server is tried
    again (on another endpoint when there are several); ``in_flight`` requests at once,
    ``workers`` threads decoding and preprocessing. Raises a one-line TritonkitError."""
    options = ConnectOptions(nms_profile=nms_profile, server_preprocess=server_preprocess,
                             server_postprocess=server_postprocess, timeout_s=timeout_s, retries=retries,
                             in_flight=in_flight, workers=workers)
    p = plan(parse_target(url, model, protocol), card, options)
    return Model(p, open_client(p, options), options)


__all__ = ["DEFAULT_BATCH", "Model", "connect", "is_batch"]
