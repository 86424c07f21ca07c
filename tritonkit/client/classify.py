"""Classification math (pure numpy, no I/O) and the classification task adapter.

* :func:`softmax` — numerically stable (max subtracted).
* :func:`topk` — indices of the ``k`` largest scores, highest first; ties go to the lower
  class index (a stable sort of the negated scores), so results never depend on sort internals.
* :func:`accuracy` — top-1 / top-k over per-image records ``{"label", "topk"}``.
* :class:`ClassifyAdapter` — plugs classification into :func:`tritonkit.client.pipeline.run_stream`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.preprocess import preprocess


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x - max) / sum`` along ``axis`` (float64 accumulate, input dtype kept for float input)."""
    x = np.asarray(logits, dtype=np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    out = e / e.sum(axis=axis, keepdims=True)
    return out.astype(logits.dtype if np.issubdtype(np.asarray(logits).dtype, np.floating) else np.float64)


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries along the last axis, largest first, ties -> lower index.

    NaN scores rank last. ``k`` larger than the number of classes returns all of them.
    """
    s = np.asarray(scores)
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    key = -s.astype(np.float64)
    key = np.where(np.isnan(key), np.inf, key)
    order = np.argsort(key, axis=-1, kind="stable")
    return order[..., :min(k, s.shape[-1])]


def accuracy(records: Sequence[Mapping[str, Any]], k: int = 5) -> dict:
    """``top1``, ``top{k}`` (fractions), ``correct1``, ``correct{k}`` and ``images`` from records.

    Each record holds ``label`` (int) and ``topk`` (class indices, best first). No records ->
    accuracies are ``None`` (not 0: nothing was measured).
    """
    n = len(records)
    if n == 0:
        return {"images": 0, "top1": None, f"top{k}": None, "correct1": 0, f"correct{k}": 0}
    labels = np.fromiter((int(r["label"]) for r in records), dtype=np.int64, count=n)
    width = max(len(r["topk"]) for r in records)
    preds = np.full((n, width), -1, dtype=np.int64)
    for i, r in enumerate(records):
        preds[i, :len(r["topk"])] = r["topk"]
    hit1 = preds[:, 0] == labels
    hitk = (preds[:, :k] == labels[:, None]).any(axis=1)
    return {"images": n, "top1": float(hit1.mean()), f"top{k}": float(hitk.mean()),
            "correct1": int(hit1.sum()), f"correct{k}": int(hitk.sum())}


def classify_record(logits: np.ndarray, label: int, k: int = 5) -> dict:
    """The per-image record: label, top-k classes and their softmax probabilities."""
    flat = np.asarray(logits).reshape(-1)
    idx = topk(flat, k)
    probs = softmax(flat.astype(np.float64))[idx]
    return {"label": int(label), "topk": [int(i) for i in idx], "scores": [round(float(p), 6) for p in probs]}


@dataclass(frozen=True)
class ClassifyAdapter:
    """Classification task for the run-stream engine: card preprocessing, softmax top-k, accuracy.

    ``prepare`` expects items with a ``label`` (class index); the first card output holds the logits.
    """

    card: ModelCard
    k: int = 5

    def prepare(self, item: Any, image: Any) -> tuple[np.ndarray, int]:
        """``image``: the decoded RGB PIL image (or an RGB uint8 HWC array)."""
        x, _ = preprocess(image, self.card.preprocess)
        return x.astype(self.card.input.numpy_dtype, copy=False), int(item.label)

    def encoded_meta(self, item: Any, geometry: Any) -> int:
        """The meta of ``item`` when the server preprocessed it (server-side preprocessing)."""
        return int(item.label)

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: int) -> dict:
        return classify_record(outputs[self.card.outputs[0].name], meta, self.k)

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> dict:
        return accuracy(records, self.k)
