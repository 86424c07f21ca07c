"""How two served versions of a model agree on the same images, in each task's terms.

The per-image records are the task adapters' own (what ``tritonkit eval`` writes to its
checkpoint), one set from each server; a :class:`Measure` per task says which metric of the
task's the two are judged on and how their predictions agree:

* classify — ``top1`` accuracy; top-1 agreement: the fraction of images whose top class is the same.
* detect — ``map50_95``; detection agreement: confident detections (score >=
  :data:`~tritonkit.tasks.detect.task.CONFIDENT_SCORE`) of the candidate matched to the stable's
  by class at IoU >= :data:`~tritonkit.tasks.detect.task.MATCH_IOU` (the task's own per-image
  matching, :func:`~tritonkit.tasks.detect.task.image_errors`, with the stable's detections as
  the truth), as ``2 x matched / (candidate + stable detections)`` over all images (an F1; 1
  when neither detects anything).
* segment — ``miou``; mask agreement: the mIoU of the candidate's masks against the stable's
  (the task's confusion matrix, the stable's masks as the truth). The records of a segmenter
  hold no mask, so :attr:`Measure.prediction` adds each image's mask (original size, uint8) to
  its in-memory record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.pipeline import TaskAdapter
from tritonkit.errors import CardError
from tritonkit.tasks.detect.task import CONFIDENT_SCORE, image_errors
from tritonkit.tasks.segment.math import ConfusionMatrix, confusion, mask_to_original

PREDICTION = "_prediction"   # record key of the extra per-image prediction (kept in memory only)

Records = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Measure:
    """One task's comparison: ``metric`` (the key of the task's metrics the two are judged on),
    ``agreement`` (its name), ``agree(candidate, stable, card)`` (records paired by image, in the
    same order; a fraction in [0, 1]) and ``prediction`` (None, or what to add to each record)."""

    metric: str
    agreement: str
    agree: Callable[[Records, Records, ModelCard], float]
    prediction: Callable[[TaskAdapter, Mapping[str, np.ndarray], Any], Any] | None = None


def top1_agreement(candidate: Records, stable: Records, card: ModelCard) -> float:
    same = [int(c["topk"][0]) == int(s["topk"][0]) for c, s in zip(candidate, stable)]
    return float(np.mean(same)) if same else 0.0


def _as_annotations(record: Mapping[str, Any]) -> list[dict]:
    """The confident detections of ``record`` as COCO annotations (category id = class index)."""
    out = []
    for box, score, cls in zip(record.get("boxes", ()), record.get("scores", ()), record.get("classes", ())):
        if score >= CONFIDENT_SCORE:
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append({"bbox": [x1, y1, x2 - x1, y2 - y1], "category_id": int(cls), "iscrowd": 0})
    return out


def detection_agreement(candidate: Records, stable: Records, card: ModelCard) -> float:
    ids = tuple(range(card.num_classes))
    matched = detections = 0
    for c, s in zip(candidate, stable):
        figures = image_errors(c, _as_annotations(s), ids)
        matched += figures["matched"]
        detections += figures["detections"] + figures["ground_truths"]
    return 1.0 if detections == 0 else 2.0 * matched / detections


def original_mask(adapter: TaskAdapter, outputs: Mapping[str, np.ndarray], meta: Any) -> np.ndarray:
    """A segmenter's predicted mask at the original image size (the adapter's decode, scaled back)."""
    return mask_to_original(adapter.decode(outputs), meta.geometry).astype(np.uint8)


def mask_agreement(candidate: Records, stable: Records, card: ModelCard) -> float:
    cm = ConfusionMatrix(card.num_classes, ignore_index=None)
    for c, s in zip(candidate, stable):
        a, b = np.asarray(c[PREDICTION]), np.asarray(s[PREDICTION])
        if a.shape != b.shape:
            return 0.0
        cm.add(confusion(a, b, card.num_classes, ignore_index=None))
    miou = cm.scores().to_dict()["miou"]
    return float(miou) if miou is not None else 0.0


MEASURES: dict[str, Measure] = {
    "classify": Measure("top1", "top1_agreement", top1_agreement),
    "detect": Measure("map50_95", "detection_agreement", detection_agreement),
    "segment": Measure("miou", "mask_miou", mask_agreement, prediction=original_mask),
}


def measure_for(task: str) -> Measure:
    try:
        return MEASURES[task]
    except KeyError:
        raise CardError(f"no candidate/stable comparison for task {task!r} (known: {', '.join(MEASURES)})") from None


def paired(candidate: Records, stable: Records) -> tuple[list, list]:
    """The records of the images both servers answered, in the same order (by ``key``)."""
    by_key = {r["key"]: r for r in stable}
    keys = [r["key"] for r in candidate if r["key"] in by_key]
    mine = {r["key"]: r for r in candidate}
    return [mine[k] for k in keys], [by_key[k] for k in keys]


@dataclass(frozen=True, eq=False)
class RecordingAdapter(TaskAdapter):
    """A task adapter whose records also hold ``measure.prediction`` (under :data:`PREDICTION`)."""

    inner: TaskAdapter
    measure: Measure

    def prepare(self, item: Any, image: Any) -> tuple[np.ndarray, Any]:
        return self.inner.prepare(item, image)

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any) -> dict:
        record = self.inner.postprocess(outputs, meta)
        if self.measure.prediction is not None:
            record = {**record, PREDICTION: self.measure.prediction(self.inner, outputs, meta)}
        return record

    def summarize(self, records: Sequence[dict]) -> dict:
        return self.inner.summarize(records)

    def encoded_meta(self, item: Any, geometry: Any) -> Any:
        return self.inner.encoded_meta(item, geometry)

    def decode(self, outputs: Mapping[str, np.ndarray]) -> Any:
        return self.inner.decode(outputs)

    def collate(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return self.inner.collate(inputs)


__all__ = ["MEASURES", "Measure", "PREDICTION", "RecordingAdapter", "detection_agreement", "mask_agreement",
           "measure_for", "original_mask", "paired", "top1_agreement"]
