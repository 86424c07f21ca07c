"""The segmentation result of one image (what ``Model.predict`` returns for a segmenter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritonkit.tasks.results import Prediction


@dataclass(frozen=True, eq=False)
class Mask(Prediction):
    """The class of every pixel at the original image size: ``classes`` ``[H, W]`` (indices
    into ``labels``, the card's class names). :meth:`numpy` is ``classes``."""

    classes: np.ndarray
    labels: tuple[str, ...]
    source: str = ""

    @property
    def present(self) -> tuple[str, ...]:
        """The names of the classes that cover at least one pixel."""
        return tuple(self.labels[int(i)] if 0 <= int(i) < len(self.labels) else str(int(i))
                     for i in np.unique(self.classes))

    def numpy(self) -> np.ndarray:
        return self.classes


__all__ = ["Mask"]
