"""Classification math, numpy only: the ``softmax_topk`` postprocess variant, softmax, top-k, accuracy.

* :class:`SoftmaxTopK` — the variant of task ``classify``: logits -> softmax -> the ``top_k``
  best classes (:meth:`SoftmaxTopK.record`).
* :func:`softmax` — numerically stable (max subtracted).
* :func:`topk` — indices of the ``k`` largest scores, highest first; ties go to the lower
  class index (a stable sort of the negated scores), so results never depend on sort internals.
* :func:`accuracy` — top-1 / top-k over per-image records ``{"label", "topk"}``.

Non-finite logits (NaN, Inf: a broken engine) are never scored: :func:`classify_record` raises
:class:`NonFiniteOutput`, which the run-stream engine turns into that image's error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

if __package__:  # part of the tritonkit package
    from tritonkit import spec
else:  # shipped beside a python backend (no tritonkit there): the sibling copy of tritonkit/spec.py
    import tk_spec as spec  # type: ignore[no-redef]


class NonFiniteOutput(ValueError):
    """A model output holds NaN or Inf where a score was expected."""


@spec.postprocess_variant("classify")
@dataclass(frozen=True, kw_only=True)
class SoftmaxTopK:
    """Classifier logits -> softmax -> the ``top_k`` best classes (top-1 and top-``top_k``
    accuracy are reported)."""

    kind: ClassVar[str] = "softmax_topk"
    uses_nms_profiles: ClassVar[bool] = False
    triton_labels: ClassVar[bool] = True  # served with a labels file on output 0 (Triton's classification extension)
    top_k: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise spec.SpecError(f"postprocess softmax_topk: top_k must be an integer >= 1 (got {self.top_k!r})")

    def record(self, logits: np.ndarray, label: int) -> dict:
        """The per-image record of one image's logits (see :func:`classify_record`)."""
        return classify_record(logits, label, self.top_k)


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
    """The per-image record: label, top-k classes and their softmax probabilities. Raises
    :class:`NonFiniteOutput` when a logit is NaN or infinite."""
    flat = np.asarray(logits).reshape(-1)
    bad = int(np.count_nonzero(~np.isfinite(flat))) if np.issubdtype(flat.dtype, np.floating) else 0
    if bad:
        raise NonFiniteOutput(f"{bad} of {flat.size} logits are not finite (NaN or Inf); not scored")
    idx = topk(flat, k)
    probs = softmax(flat.astype(np.float64))[idx]
    return {"label": int(label), "topk": [int(i) for i in idx], "scores": [round(float(p), 6) for p in probs]}
