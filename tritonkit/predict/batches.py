"""The per-batch steps ``Model.predict`` shares between its sync and asyncio forms.

Per image it runs exactly what the eval's run-stream engine runs:
:func:`~tritonkit.client.pipeline.load_item` (read, decode, the card's preprocessing), the
adapter's ``collate`` for the request, then the adapter's ``result`` (the same function whose
output the eval's per-image record is built from: ``TaskAdapter.record(result(...))``). An image
that fails on the way is a :class:`~tritonkit.tasks.results.Failed` in its place.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from tritonkit.client.pipeline import TaskAdapter, load_item
from tritonkit.tasks.results import Failed
from tritonkit.triton import one_line


@dataclass
class Batch:
    """One batch of loaded images (``loaded``: the engine's per-item records, in input order)."""

    loaded: list

    @property
    def ok(self) -> list:
        return [ld for ld in self.loaded if ld.error is None]


def chunks(values: Iterable[Any], size: int) -> Iterator[list]:
    """``values`` in lists of ``size`` (the last may be shorter), read lazily."""
    it = iter(values)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def load(adapter: TaskAdapter, items: Sequence[Any], pool: Any | None) -> Batch:
    """Read, decode and prepare ``items`` (in ``pool`` when there are several)."""
    if pool is None or len(items) == 1:
        return Batch([load_item(adapter, i, it) for i, it in enumerate(items)])
    return Batch(list(pool.map(load_item, itertools.repeat(adapter), range(len(items)), items)))


def request(adapter: TaskAdapter, loaded: Sequence[Any]) -> np.ndarray:
    """The request array of ``loaded`` (each with an input)."""
    return np.ascontiguousarray(adapter.collate([ld.input for ld in loaded]))


def finish(adapter: TaskAdapter, batch: Batch, outputs: Mapping[str, Any]) -> list:
    """One result per image of ``batch``, in order. ``outputs`` maps each of the batch's images
    that was sent (``batch.ok``) to its outputs (batch axis removed) or to its request's error."""
    out = []
    for ld in batch.loaded:
        if ld.error is not None:
            out.append(Failed(ld.key, ld.error))
            continue
        got = outputs[ld.index]
        if isinstance(got, BaseException):
            out.append(Failed(ld.key, one_line(got)))
            continue
        try:
            out.append(replace(adapter.result(got, ld.meta), source=ld.key))
        except Exception as exc:  # noqa: BLE001 - non-finite outputs, a bad geometry: this image's error
            out.append(Failed(ld.key, f"postprocess failed: {one_line(exc)}"))
    return out


def split(outputs: Mapping[str, np.ndarray], loaded: Sequence[Any]) -> dict[int, dict[str, np.ndarray]]:
    """Each sent image's outputs (batch axis removed), by its index in the batch."""
    return {ld.index: {name: arr[i] for name, arr in outputs.items()} for i, ld in enumerate(loaded)}


__all__ = ["Batch", "chunks", "finish", "load", "request", "split"]
