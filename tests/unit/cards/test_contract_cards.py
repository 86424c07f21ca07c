"""The served-card comparison (tritonkit.contract): reading the card a config carries, and one
line per differing field."""

from __future__ import annotations

import json

import pytest

from tritonkit.cards import get_card
from tritonkit.spec import CARD_PARAMETER
from tritonkit.contract import card_differences, embedded_card, served_card
from tritonkit.errors import CardError

CARD = get_card("demo_shapes")


def _config(card_dict, grpc: bool = True) -> dict:
    cfg = {"name": "m", "parameters": {CARD_PARAMETER: {"string_value": json.dumps(card_dict)}}}
    return {"config": cfg} if grpc else cfg


def test_served_card_from_grpc_and_http_renderings():
    for grpc in (True, False):
        assert served_card(_config(CARD.to_dict(), grpc), "src") == CARD
    assert served_card({"config": {"name": "m"}}, "src") is None and embedded_card({"name": "m"}) is None
    with pytest.raises(CardError, match="src: parameter tritonkit_card is not a card"):
        served_card({"parameters": {CARD_PARAMETER: {"string_value": "[1, 2]"}}}, "src")


def test_same_card_has_no_differences_whatever_its_name_and_documentation():
    other = CARD.with_overrides(name="renamed", description="x", max_batch_size=4, weights_file="w.pth")
    assert card_differences(CARD, other) == []


def test_each_differing_field_is_one_line():
    pp = CARD.preprocess
    served = CARD.with_overrides(preprocess=type(pp)(**{**pp.__dict__, "mean": (0.5, 0.5, 0.5),
                                                          "interpolation": "bicubic"}))
    assert card_differences(CARD, served) == [
        'preprocess.interpolation: "bilinear" != served "bicubic"',
        "preprocess.mean: [0.485, 0.456, 0.406] != served [0.5, 0.5, 0.5]"]
    resnet = card_differences(get_card("resnet50"), CARD)
    assert "labels: 1000 names (imagenet1k) != served 8 names (demo_shapes)" in resnet
    assert "outputs[0].dims: [1000] != served [8]" in resnet


def test_labels_compare_by_names_and_by_file_name_when_unreadable(tmp_path):
    names = CARD.label_names()
    same = tmp_path / "shapes.txt"
    same.write_text("\n".join(names) + "\n")
    assert card_differences(CARD, CARD.with_overrides(labels=str(same))) == []  # same names, other source
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("\n".join([names[1], names[0], *names[2:]]) + "\n")
    assert card_differences(CARD, CARD.with_overrides(labels=str(swapped))) == [
        f"labels: 2 names differ, first class 0: {names[0]!r} != served {names[1]!r}"]
    # the served card names a label file of another machine: kept by its file name, compared by it
    data = {**CARD.to_dict(), "labels": "/elsewhere/shapes.txt"}
    remote = served_card(_config(data), "src")
    assert remote.labels == "shapes" and card_differences(CARD.with_overrides(labels=str(same)), remote) == []
    assert card_differences(CARD.with_overrides(labels=str(swapped)), remote) == [
        f"labels: {swapped} != served shapes"]
