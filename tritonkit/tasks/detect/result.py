"""The detection result of one image (what ``Model.predict`` returns for a detector)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritonkit.tasks.results import Prediction


@dataclass(frozen=True, eq=False)
class Detections(Prediction):
    """Detections in original-image pixels after NMS, highest score first: ``boxes`` ``[N, 4]``
    (x1, y1, x2, y2, float32), ``scores`` ``[N]`` (float32), ``classes`` ``[N]`` (int64 indices
    into the card's labels) and ``labels`` (their names). :meth:`numpy` is ``[N, 6]``: the box,
    the score, the class index (ultralytics' ``boxes.data`` layout)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    labels: tuple[str, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.scores)

    def numpy(self) -> np.ndarray:
        return np.concatenate([self.boxes.astype(np.float32).reshape(-1, 4),
                               self.scores.astype(np.float32).reshape(-1, 1),
                               self.classes.astype(np.float32).reshape(-1, 1)], axis=1)


__all__ = ["Detections"]
