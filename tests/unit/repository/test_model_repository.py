"""config.pbtxt generation (protobuf, round-trip) and the atomic repository writer."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.cards import REGISTRY, get_card
from tritonkit.cli import build_parser
from tritonkit.cli.repo import options_from_args as repo_options_from_args
from tritonkit.errors import TritonkitError
from tritonkit.model_repository.config import (
    ConfigError, QueuePolicy, RepoOptions, config_to_text, model_config, parse_config)
from tritonkit.model_repository.writer import check_onnx_against_card, write_model


@pytest.mark.parametrize("name", REGISTRY.names())
@pytest.mark.parametrize("target", ["cpu", "onnxruntime", "gpu"])
def test_every_card_round_trips_through_text(name, target):
    card = get_card(name)
    cfg = model_config(card, RepoOptions(target=target, preferred_batch_sizes=(1,), instances=2))
    again = parse_config(config_to_text(cfg))
    assert again == cfg
    assert again.max_batch_size == card.max_batch_size
    assert [i.name for i in again.input] == [card.input.name]
    assert list(again.input[0].dims) == list(card.input.dims)
    assert [o.name for o in again.output] == [o.name for o in card.outputs]
    assert again.instance_group[0].count == 2


def test_cpu_target_is_python_backend_with_onnx_parameters():
    cfg = model_config(get_card("resnet50"), RepoOptions(target="cpu", intra_op_threads=2))
    assert cfg.backend == "python" and cfg.platform == ""
    assert cfg.parameters["onnx_file"].string_value == "model.onnx"
    assert cfg.parameters["intra_op_threads"].string_value == "2"
    # onnxruntime's own default (spin-waiting threads) unless the host is shared with clients
    assert cfg.parameters["allow_spinning"].string_value == "1"
    shared = model_config(get_card("resnet50"), RepoOptions(target="cpu", ort_spinning=False))
    assert shared.parameters["allow_spinning"].string_value == "0"
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert cfg.output[0].label_filename == "labels.txt"
    assert cfg.input[0].format == pb.ModelInput.FORMAT_NCHW


def test_config_embeds_the_card_it_was_made_from():
    import json

    from tritonkit.cards import card_from_dict
    from tritonkit.model_repository.config import CARD_PARAMETER

    card = get_card("yolov5s")
    cfg = model_config(card, RepoOptions(target="gpu"))
    assert card_from_dict(json.loads(cfg.parameters[CARD_PARAMETER].string_value)) == card


def test_gpu_target_is_tensorrt_plan_on_gpu_instances():
    cfg = model_config(get_card("yolov5s"), RepoOptions(target="gpu"))
    assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert not cfg.output[0].label_filename  # detectors carry no classification labels


def test_dynamic_batching_queue_policy_and_warmup():
    opts = RepoOptions(preferred_batch_sizes=(4, 8), max_queue_delay_us=500,
                       queue_policy=QueuePolicy(max_queue_size=16, timeout_us=20000))
    cfg = model_config(get_card("resnet18"), opts)
    db = cfg.dynamic_batching
    assert list(db.preferred_batch_size) == [4, 8] and db.max_queue_delay_microseconds == 500
    assert db.default_queue_policy.max_queue_size == 16
    assert db.default_queue_policy.default_timeout_microseconds == 20000
    assert db.default_queue_policy.timeout_action == pb.ModelQueuePolicy.REJECT
    assert [w.batch_size for w in cfg.model_warmup] == [1]
    assert cfg.model_warmup[0].inputs["input"].zero_data
    full = model_config(get_card("resnet18"), RepoOptions(warmup_max_batch=True))
    assert [w.batch_size for w in full.model_warmup] == [1, 32]


def test_warmup_stays_valid_when_a_tool_lowers_max_batch_size():
    """Model Analyzer's variants keep the repository's model_warmup and change max_batch_size: a
    warmup above the new max fails the load ("failed to run warmup sample"). By default every
    warmup is at batch 1, valid for any max_batch_size >= 1; --warmup-max-batch restores the max."""
    card = get_card("demo_shapes")
    for mbs in (1, 2, 64):
        cfg = model_config(card, RepoOptions(max_batch_size=mbs))
        assert all(w.batch_size <= 1 for w in cfg.model_warmup) and len(cfg.model_warmup) == 1
    args = build_parser().parse_args(["repo", "--model", "demo_shapes", "--model-file", "m.onnx",
                                      "--warmup-max-batch"])
    assert repo_options_from_args(args).warmup_max_batch
    assert not repo_options_from_args(build_parser().parse_args(
        ["repo", "--model", "demo_shapes", "--model-file", "m.onnx"])).warmup_max_batch


def test_no_dynamic_batching_omits_the_block():
    cfg = model_config(get_card("resnet18"), RepoOptions(dynamic_batching=False, warmup=False))
    assert not cfg.HasField("dynamic_batching") and len(cfg.model_warmup) == 0


@pytest.mark.parametrize("opts, message", [
    (dict(target="tpu"), "unknown target"),
    (dict(max_batch_size=64), "above card"),
    (dict(preferred_batch_sizes=(64,), max_batch_size=8), "exceed max_batch_size"),
    (dict(instances=0), "instances"),
    (dict(dynamic_batching=False, queue_policy=QueuePolicy(4)), "needs dynamic batching"),
])
def test_bad_options_are_refused(opts, message):
    with pytest.raises(ConfigError, match=message):
        model_config(get_card("resnet18"), RepoOptions(**opts))


def test_parse_error_names_the_file():
    with pytest.raises(ConfigError, match="my/config.pbtxt"):
        parse_config("max_batch_size: {", source="my/config.pbtxt")


def test_write_model_layout(tmp_path, tiny_onnx):
    card = get_card("demo_shapes")
    w = write_model(card, tiny_onnx, tmp_path / "repo")
    root = tmp_path / "repo" / "demo_shapes"
    assert (root / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert "TritonPythonModel" in (root / "1" / "model.py").read_text()
    assert (root / "labels.txt").read_text().split() == card.label_names()
    assert parse_config(w.config_path.read_text()) == model_config(card)
    # leaves nothing beside the repository
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_write_model_replaces_existing_and_failure_leaves_old(tmp_path, tiny_onnx):
    card = get_card("demo_shapes")
    write_model(card, tiny_onnx, tmp_path / "repo", RepoOptions(instances=1))
    write_model(card, tiny_onnx, tmp_path / "repo", RepoOptions(instances=3))
    cfg = parse_config((tmp_path / "repo" / "demo_shapes" / "config.pbtxt").read_text())
    assert cfg.instance_group[0].count == 3
    with pytest.raises(TritonkitError, match="not found"):
        write_model(card, tmp_path / "missing.onnx", tmp_path / "repo")
    assert (tmp_path / "repo" / "demo_shapes" / "1" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_onnx_that_disagrees_with_the_card_is_refused(tmp_path):
    from support.onnx_models import tiny_classifier

    wrong_name = tiny_classifier(tmp_path / "a.onnx", input_name="data")
    with pytest.raises(TritonkitError, match="input 'input' missing"):
        check_onnx_against_card(get_card("demo_shapes"), wrong_name)
    wrong_size = tiny_classifier(tmp_path / "b.onnx", size=32)
    with pytest.raises(TritonkitError, match=r"shape \[-1, 3, 32, 32\]"):
        check_onnx_against_card(get_card("demo_shapes"), wrong_size)
    wrong_classes = tiny_classifier(tmp_path / "c.onnx", num_classes=5)
    with pytest.raises(TritonkitError, match="output 'logits'"):
        check_onnx_against_card(get_card("demo_shapes"), wrong_classes)
    not_onnx = tmp_path / "d.onnx"
    not_onnx.write_text("hello")
    with pytest.raises(TritonkitError, match="not a readable ONNX"):
        check_onnx_against_card(get_card("demo_shapes"), not_onnx)
