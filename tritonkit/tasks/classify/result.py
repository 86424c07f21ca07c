"""The classification result of one image (what ``Model.predict`` returns for a classifier)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritonkit.tasks.results import Prediction


@dataclass(frozen=True, eq=False)
class Classification(Prediction):
    """The card's top-k: ``top`` is ``((label, score), ...)`` best first (softmax probabilities,
    as the eval's per-image records hold them), ``classes`` the class indices in the same order.
    :meth:`numpy` is ``[k, 2]``: class index, score."""

    top: tuple[tuple[str, float], ...]
    classes: tuple[int, ...]
    source: str = ""

    @property
    def label(self) -> str:
        """The best class's name."""
        return self.top[0][0]

    @property
    def score(self) -> float:
        return self.top[0][1]

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(s for _, s in self.top)

    def numpy(self) -> np.ndarray:
        return np.array([[c, s] for c, s in zip(self.classes, self.scores)], np.float64).reshape(-1, 2)


__all__ = ["Classification"]
