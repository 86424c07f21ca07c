"""Model cards: registry, validation, user card files, label sets."""

from __future__ import annotations

import json

import pytest

from tritonkit.cards import (
    REGISTRY, ModelCard, NMSProfile, Preprocess, Registry, TensorSpec, card_from_dict, get_card, load_card_file)
from tritonkit.errors import CardError

SEED_MODELS = ["resnet50", "gluon_resnet50_v1b", "resnet18", "alexnet", "squeezenet1_0", "squeezenet1_1",
               "vgg11", "vgg13", "vgg16", "vgg19", "darknet53", "yolov5s", "yolov3", "ssd_resnet18"]


def test_registry_holds_the_seed_models_and_demo_models():
    for name in SEED_MODELS + ["demo_shapes", "demo_shapes_det"]:
        assert name in REGISTRY


def test_duplicate_names_are_rejected():
    reg = Registry()
    card = get_card("resnet18")
    reg.register(card)
    with pytest.raises(CardError, match="duplicate model card name 'resnet18'"):
        reg.register(card.with_overrides(max_batch_size=4))


def test_unknown_model_lists_known_ones():
    with pytest.raises(CardError, match="unknown model 'resnet51'.*resnet50"):
        get_card("resnet51")


@pytest.mark.parametrize("card", list(REGISTRY), ids=REGISTRY.names())
def test_builtin_cards_are_consistent(card):
    assert card.input.dims == card.expected_input_dims()
    assert len(card.label_names()) == card.num_classes
    if card.task == "detect":
        assert {p.name for p in card.nms_profiles} >= {"speed", "ap"}
        assert card.category_ids is not None and len(card.category_ids) == card.num_classes


def test_seed_preprocessing_values():
    r50 = get_card("resnet50").preprocess
    assert (r50.resize, r50.size, r50.interpolation) == (256, 224, "bilinear")
    assert get_card("gluon_resnet50_v1b").preprocess.interpolation == "bicubic"
    assert get_card("darknet53").input.dims == (3, 256, 256)
    y5 = get_card("yolov5s")
    assert y5.preprocess.mode == "letterbox" and y5.input.dims == (3, 640, 640)
    assert y5.nms("speed").conf_threshold == 0.25 and y5.nms("ap").iou_threshold == 0.65
    assert get_card("yolov3").input.dims == (3, 416, 416)


def test_coco_category_map_is_the_91_id_space():
    ids = get_card("yolov5s").category_ids
    assert len(ids) == 80 and len(set(ids)) == 80 and ids[0] == 1 and ids[-1] == 90
    assert 12 not in ids and 26 not in ids  # ids COCO never used


@pytest.mark.parametrize("change, message", [
    (dict(task="segmentation"), "task"),
    (dict(max_batch_size=0), "max_batch_size"),
    (dict(input=TensorSpec("input", (3, 224, 225))), "disagree with preprocess"),
    (dict(outputs=()), "at least one output"),
    (dict(outputs=(TensorSpec("input", (1000,)),)), "unique"),
    (dict(name="bad name"), "card name"),
    (dict(postprocess="magic"), "postprocess"),
])
def test_invalid_cards_are_rejected(change, message):
    with pytest.raises(CardError, match=message):
        get_card("resnet18").with_overrides(**change)


def test_preprocess_and_nms_validation():
    with pytest.raises(CardError, match="resize >= size"):
        Preprocess("resize_crop", size=224, resize=200)
    with pytest.raises(CardError, match="interpolation"):
        Preprocess("resize", size=224, interpolation="nearest")
    with pytest.raises(CardError, match="thresholds"):
        NMSProfile("x", 1.5, 0.5)
    with pytest.raises(CardError, match="a detector needs NMS profiles"):
        get_card("yolov5s").with_overrides(nms_profiles=())


def test_card_json_round_trip(tmp_path):
    card = get_card("yolov5s")
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card.to_dict()))
    assert load_card_file(path) == card
    assert get_card(str(path)) == card


def test_card_file_errors_name_the_file_and_field(tmp_path):
    data = get_card("resnet18").to_dict()
    del data["preprocess"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"mine.json: missing field 'preprocess'"):
        load_card_file(path)
    path.write_text("{not json")
    with pytest.raises(CardError, match="mine.json: not valid JSON"):
        load_card_file(path)
    with pytest.raises(CardError, match="card file not found"):
        load_card_file(tmp_path / "absent.json")
    data = get_card("resnet18").to_dict()
    data["max_batch_size"] = -1
    with pytest.raises(CardError, match="<dict>: card 'resnet18': max_batch_size"):
        card_from_dict(data)


def test_cards_are_frozen():
    card = get_card("resnet18")
    with pytest.raises(AttributeError):
        card.name = "other"  # type: ignore[misc]
    assert isinstance(card, ModelCard)
