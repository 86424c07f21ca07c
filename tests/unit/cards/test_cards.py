"""Model cards: registry, validation, user card files, label sets."""

from __future__ import annotations

import json

import pytest

from tritonkit.cards import (
    REGISTRY, ModelCard, NMSProfile, Preprocess, Registry, TensorSpec, card_from_dict, get_card, load_card_file)
from tritonkit.errors import CardError
from tritonkit.spec import SpecError

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
    """The spec types refuse bad values with a SpecError (a ValueError, which every CardError is too)."""
    with pytest.raises(SpecError, match="resize >= size"):
        Preprocess("resize_crop", size=224, resize=200)
    with pytest.raises(SpecError, match="interpolation"):
        Preprocess("resize", size=224, interpolation="nearest")
    with pytest.raises(SpecError, match="thresholds"):
        NMSProfile("x", 1.5, 0.5)
    with pytest.raises(CardError, match="postprocess 'yolo' needs NMS profiles"):
        get_card("yolov5s").with_overrides(nms_profiles=())
    assert issubclass(CardError, SpecError) and issubclass(SpecError, ValueError)


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


# -- typed postprocess, old card files, reference, precision -----------------------------------

def _old_style(card_name: str, **changes) -> dict:
    """A card as files were written before typed postprocess: kind string + options bag,
    reference as [[metric, value]]."""
    data = get_card(card_name).to_dict()
    data["postprocess"] = data["postprocess"]["kind"]
    data["reference"] = [[m, v] for metrics in data["reference"].values() for m, v in metrics.items()]
    data.update(changes)
    return data


def test_postprocess_is_a_tagged_variant_with_typed_fields(tmp_path):
    from tritonkit.tasks.detect.math import SSDDecode, YoloDecode

    yolo = get_card("yolov5s")
    assert yolo.postprocess == YoloDecode(box_coding="center_size", multi_label=None)
    assert yolo.to_dict()["postprocess"] == {"kind": "yolo", "box_coding": "center_size", "multi_label": None}
    data = yolo.to_dict()
    data["postprocess"] = {"kind": "yolo", "multi_label": True}
    card = card_from_dict(data)
    assert card.postprocess.multi_label is True and card.postprocess.kind == "yolo"
    data["postprocess"] = {"kind": "yolo", "multi_label": "true"}  # a string is not a boolean
    with pytest.raises(CardError, match="multi_label must be true, false or null"):
        card_from_dict(data)
    data["postprocess"] = {"kind": "ssd", "background": 0}
    with pytest.raises(CardError, match=r"unknown field 'background' in postprocess \(kind ssd; valid keys: "
                                        r"kind, box_coding, background_index\)"):
        card_from_dict(data)
    assert get_card("ssd_resnet18").postprocess == SSDDecode(box_coding="corner", background_index=0)
    with pytest.raises(CardError, match="postprocess 'ssd' does not fit task 'classify'"):
        get_card("resnet18").with_overrides(postprocess="ssd")


def test_old_card_files_with_options_still_load(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_old_style("ssd_resnet18", options=[["score_background_index", "none"],
                                                                   ["gpu_nms", "EfficientNMS_TRT"],
                                                                   ["gpu_nms_box_coding", "0"],
                                                                   ["precision", "FP16"]])))
    card = load_card_file(path)
    assert card.postprocess.background_index is None and card.postprocess.box_coding == "corner"
    assert card.precision == "fp16"
    assert card.published_metrics() == get_card("ssd_resnet18").published_metrics()

    path.write_text(json.dumps(_old_style("yolov5s", options=[["multi_label", "true"]])))
    card = load_card_file(path)
    assert card.postprocess.multi_label is True
    assert card.published_metrics() == {"map50": 0.560} and card.references() == {"published": {"map50": 0.560}}
    path.write_text(json.dumps(_old_style("yolov5s", options=[["multi_label", "false"]])))
    assert load_card_file(path).postprocess.multi_label is None  # "false" always left it to the profile
    path.write_text(json.dumps(_old_style("yolov5s", options=[["nms_magic", "1"]])))
    with pytest.raises(CardError, match=r"old.json: unknown option 'nms_magic' \(known: multi_label"):
        load_card_file(path)


def test_reference_is_per_dataset_and_published_metrics_stays_flat():
    r50 = get_card("resnet50")
    assert r50.references() == {"imagenet1k-val": {"top1": 0.7613}}
    assert r50.published_metrics() == {"top1": 0.7613}
    assert r50.to_dict()["reference"] == {"imagenet1k-val": {"top1": 0.7613}}
    two = r50.with_overrides(reference={"imagenet1k-val": {"top1": 0.76, "top5": 0.93}, "imagenet-v2": {"top1": 0.63}})
    assert two.references()["imagenet-v2"] == {"top1": 0.63}
    assert card_from_dict(two.to_dict()) == two
    with pytest.raises(CardError, match="reference\\['x'\\] must map metric names to numbers"):
        r50.with_overrides(reference={"x": {"top1": "high"}})


def test_precision_is_a_typed_field():
    assert get_card("resnet18").with_overrides(precision="int8").precision == "int8"
    with pytest.raises(CardError, match="precision 'bf16' not one of"):
        get_card("resnet18").with_overrides(precision="bf16")


# -- card-file errors, schema, label files --------------------------------------------------------

def test_a_typo_in_a_card_file_names_the_field_the_file_and_the_valid_keys(tmp_path, capsys):
    from tritonkit.cli import main

    data = get_card("resnet18").to_dict()
    data["preprocess"]["interp"] = data["preprocess"].pop("interpolation")
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError) as err:
        load_card_file(path)
    text = str(err.value)
    assert "\n" not in text and "typo.json" in text and "unknown field 'interp' in preprocess" in text
    assert "valid keys: mode, size, resize, mean, std, interpolation" in text
    assert "__init__" not in text
    data = get_card("resnet18").to_dict()
    data["max_batch"] = 8
    path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"typo.json: unknown field 'max_batch' in the card \(valid keys: name, task"):
        load_card_file(path)
    assert main(["cards", str(path)]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "unknown field 'max_batch'" in err_lines[0]


def test_shipped_json_schema_is_the_loaders_field_lists(capsys):
    from tritonkit.cards import SpatialRange, field_names
    from tritonkit.cards.schema import card_json_schema, schema_text, shipped_schema_text
    from tritonkit.cli import main

    assert shipped_schema_text() == schema_text()  # regenerate tritonkit/data/card.schema.json when fields change
    schema = card_json_schema()
    assert set(schema["properties"]) == set(field_names(ModelCard)) | {"options"}
    assert set(schema["$defs"]["preprocess"]["properties"]) == set(field_names(Preprocess))
    assert set(schema["$defs"]["dynamic_shape"]["properties"]) == set(field_names(SpatialRange))
    assert schema["$defs"]["preprocess"]["properties"]["mode"]["enum"] == [
        "resize_crop", "letterbox", "resize", "resize_short"]
    kinds = [v["properties"]["kind"]["const"] for v in schema["$defs"]["postprocess"]["oneOf"][1:]]
    assert kinds == ["softmax_topk", "yolo", "ssd", "yolo_anchor_free", "yolo_end2end", "argmax_mask"]
    for card in REGISTRY:  # every built-in card's JSON has only schema keys and all required ones
        d = card.to_dict()
        assert set(d) <= set(schema["properties"]) and set(schema["required"]) <= set(d)
    assert main(["cards", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


def test_labels_file_relative_to_the_card_file(tmp_path):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "my_labels.txt").write_text("\n".join(f"class_{i}" for i in range(8)) + "\n")
    data = get_card("demo_shapes").to_dict()
    data["labels"] = "my_labels.txt"
    path = tmp_path / "cards" / "mine.json"
    path.write_text(json.dumps(data))
    card = load_card_file(path)
    assert card.label_names() == [f"class_{i}" for i in range(8)]
    assert get_card(str(path)).label_names()[-1] == "class_7"
    assert load_card_file(path) == card  # a file path is stable across loads
    data["labels"] = "absent.txt"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"mine.json: labels file '.*absent.txt' not found"):
        load_card_file(path)
    assert get_card("demo_shapes").label_names()[0] == load_labels_builtin("demo_shapes")[0]


def load_labels_builtin(name):
    from tritonkit.cards import load_labels

    return load_labels(name)


# -- dynamic spatial sizes (segmentation) --------------------------------------------------------

def _segmenter(**changes):
    from tritonkit.tasks.segment.math import ArgmaxMask
    from tritonkit.cards import SpatialRange

    base = dict(name="seg", task="segment", arch="torchvision:deeplabv3_resnet50",
                input=TensorSpec("input", (3, -1, -1)), outputs=(TensorSpec("out", (21, -1, -1)),),
                preprocess=Preprocess("resize_short", size=520, resize=520), postprocess=ArgmaxMask(),
                labels="coco80", num_classes=80,
                dynamic_shape=SpatialRange(min=(520, 520), opt=(520, 704), max=(520, 1040)))
    base.update(changes)
    return ModelCard(**base)


def test_resize_short_cards_have_dynamic_hw_and_a_profile_range():
    from tritonkit.cards import SpatialRange

    card = _segmenter()
    assert card.expected_input_dims() == (3, -1, -1)
    assert card.input_shape(2) == (2, 3, 520, 704)  # dynamic dims take dynamic_shape.opt
    assert card_from_dict(card.to_dict()) == card
    with pytest.raises(CardError, match="disagree with preprocess"):
        _segmenter(input=TensorSpec("input", (3, 520, 520)))
    with pytest.raises(CardError, match="give dynamic_shape"):
        _segmenter(dynamic_shape=None)
    with pytest.raises(SpecError, match="min <= opt <= max"):
        SpatialRange(min=(520, 520), opt=(520, 2000), max=(520, 1040))
    with pytest.raises(CardError, match="dynamic_shape is only for dynamic-size inputs"):
        get_card("resnet18").with_overrides(dynamic_shape=SpatialRange(min=(1, 1), opt=(1, 1), max=(1, 1)))
    with pytest.raises(SpecError, match=r"resize \(480\) must equal size \(520\)"):
        Preprocess("resize_short", size=520, resize=480)


def test_dynamic_card_against_a_fixed_size_onnx_is_one_clear_line(tmp_path):
    from support.onnx_models import tiny_classifier

    from tritonkit.onnx_contract import OnnxContractError, check_onnx_against_card

    card = _segmenter(outputs=(TensorSpec("logits", (8,)),), task="classify", postprocess="softmax_topk",
                      labels="demo_shapes", num_classes=8)
    fixed = tiny_classifier(tmp_path / "fixed.onnx")  # input [N, 3, 64, 64]
    with pytest.raises(OnnxContractError) as err:
        check_onnx_against_card(card, fixed)
    text = str(err.value)
    assert "\n" not in text and "fixed.onnx does not match card 'seg'" in text
    assert "input 'input' dim 2 is fixed at 64, card says -1 (dynamic)" in text


def test_darknet53_follows_the_seed_table():
    pp = get_card("darknet53").preprocess
    assert (pp.mode, pp.resize, pp.size) == ("resize_crop", 256, 256)


@pytest.mark.parametrize("card", list(REGISTRY), ids=REGISTRY.names())
def test_every_builtin_card_round_trips_through_json_and_hashes(card):
    assert card_from_dict(json.loads(json.dumps(card.to_dict()))) == card
    assert hash(card) == hash(card_from_dict(card.to_dict()))


def test_cards_json_dumps_a_card_file_that_loads_back(capsys, tmp_path):
    """`tritonkit cards NAME --json` is the start of a user card file: it loads as the same card."""
    import json as _json

    from tritonkit.cards import REGISTRY, card_from_dict, get_card
    from tritonkit.cli import main

    assert main(["cards", "resnet50", "--json"]) == 0
    dumped = _json.loads(capsys.readouterr().out)
    assert card_from_dict(dumped) == get_card("resnet50")
    assert main(["cards", "--json"]) == 0
    every = _json.loads(capsys.readouterr().out)
    assert [c["name"] for c in every] == REGISTRY.names()
