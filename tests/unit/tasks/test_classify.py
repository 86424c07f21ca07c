"""Classification math on crafted logits, with torch as the reference where it defines the result."""

from __future__ import annotations

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.tasks.classify.task import ClassifyAdapter
from tritonkit.tasks.classify.math import accuracy, classify_record, softmax, topk


def test_softmax_matches_torch_and_is_stable():
    import torch

    x = np.random.default_rng(0).standard_normal((4, 1000)).astype(np.float32) * 20
    np.testing.assert_allclose(softmax(x), torch.softmax(torch.from_numpy(x), dim=-1).numpy(), rtol=1e-5, atol=1e-7)
    big = np.array([1000.0, 1001.0, 999.0])
    out = softmax(big)
    assert np.all(np.isfinite(out)) and out.sum() == pytest.approx(1.0)
    assert out.argmax() == 1


def test_topk_matches_torch_without_ties():
    import torch

    x = np.random.default_rng(1).standard_normal((8, 1000)).astype(np.float32)
    ref = torch.topk(torch.from_numpy(x), 5, dim=-1).indices.numpy()
    np.testing.assert_array_equal(topk(x, 5), ref)


def test_topk_breaks_ties_by_lower_index():
    x = np.array([0.5, 2.0, 2.0, 1.0, 2.0, 0.5])
    assert topk(x, 4).tolist() == [1, 2, 4, 3]
    assert topk(np.zeros(7), 3).tolist() == [0, 1, 2]
    assert topk(np.array([0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.2]), 5).tolist() == [1, 2, 3, 4, 5]


def test_topk_nan_ranks_last_and_k_is_clipped():
    x = np.array([np.nan, 0.1, 0.9])
    assert topk(x, 3).tolist() == [2, 1, 0]
    assert topk(np.array([3.0, 1.0]), 5).tolist() == [0, 1]
    with pytest.raises(ValueError):
        topk(x, 0)


def test_accuracy_counts_hits():
    records = [
        {"label": 3, "topk": [3, 1, 2, 0, 4]},   # top1 hit
        {"label": 2, "topk": [1, 5, 7, 2, 0]},   # top5 hit only
        {"label": 9, "topk": [1, 2, 3, 4, 5]},   # miss
        {"label": 0, "topk": [0]},               # short list (fewer classes than k)
    ]
    acc = accuracy(records)
    assert acc["images"] == 4
    assert acc["correct1"] == 2 and acc["correct5"] == 3
    assert acc["top1"] == pytest.approx(0.5) and acc["top5"] == pytest.approx(0.75)


def test_accuracy_of_nothing_is_none_not_zero():
    acc = accuracy([])
    assert acc["top1"] is None and acc["top5"] is None and acc["images"] == 0


def test_accuracy_agrees_with_direct_argmax_on_random_logits():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((300, 20))
    labels = rng.integers(0, 20, 300)
    records = [classify_record(lg, lb) for lg, lb in zip(logits, labels)]
    acc = accuracy(records)
    assert acc["top1"] == pytest.approx(float(np.mean(logits.argmax(1) == labels)))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert acc["top5"] == pytest.approx(float(np.mean((top5 == labels[:, None]).any(1))))


def test_classify_record_is_json_ready_and_probabilities_sorted():
    import json

    rec = classify_record(np.array([1.0, 3.0, 2.0, 0.0], dtype=np.float32), label=2, k=3)
    assert rec["label"] == 2 and rec["topk"] == [1, 2, 0]
    assert rec["scores"] == sorted(rec["scores"], reverse=True) and 0 < sum(rec["scores"]) <= 1
    json.dumps(rec)


def test_adapter_prepares_card_input_and_summarizes():
    card = get_card("demo_shapes")
    adapter = ClassifyAdapter(card)

    class Item:
        key, label = "x", 4

    rgb = np.random.default_rng(3).integers(0, 256, (90, 80, 3), dtype=np.uint8)
    x, meta = adapter.prepare(Item(), rgb)
    assert x.shape == card.input.dims and x.dtype == np.float32 and meta == 4
    logits = np.zeros(card.num_classes, dtype=np.float32)
    logits[4] = 5.0
    rec = adapter.postprocess({"logits": logits}, meta)
    assert rec["topk"][0] == 4
    assert adapter.summarize([rec])["top1"] == 1.0
