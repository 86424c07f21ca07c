"""What ``Model.predict`` gives back for one image: the base of every task's result type.

Each task declares its own result type in ``tritonkit/tasks/<task>/result.py`` (classify:
:class:`~tritonkit.tasks.classify.result.Classification`, detect:
:class:`~tritonkit.tasks.detect.result.Detections`, segment:
:class:`~tritonkit.tasks.segment.result.Mask`), a frozen dataclass deriving from
:class:`Prediction`; an image that gives no result is a :class:`Failed` in its place.

The one convention: :meth:`Prediction.to_dict` is the JSON form (dataclass fields in order,
numpy arrays as lists, tuples as lists); :meth:`Prediction.numpy` the numpy view (also what
``np.asarray(result)`` gives). Numpy only, no project imports: this module sits at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` as JSON data: arrays and tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Prediction:
    """Base of the per-image result types (frozen dataclasses). ``ok`` is True for a result."""

    ok = True

    def to_dict(self) -> dict:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def numpy(self) -> np.ndarray:  # pragma: no cover - every result type overrides it
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)


@dataclass(frozen=True)
class Failed(Prediction):
    """An image that gave no result: ``source`` (its path, or ``<input N>``) and ``reason`` (one
    line: unreadable, not an image, too small for the crop, non-finite outputs ...)."""

    source: str
    reason: str
    ok = False

    def numpy(self) -> np.ndarray:
        return np.zeros(0)


__all__ = ["Failed", "Prediction", "plain"]
