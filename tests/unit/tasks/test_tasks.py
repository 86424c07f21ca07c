"""The eval task registry, the typed eval result's JSON convention, and the eval CLI built from
the registry (no server: these test the plug-in seams themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tritonkit.cards import get_card
from tritonkit.errors import CardError, TritonkitError
from tritonkit.evaluate import EvalResult
from tritonkit.tasks.base import (
    OptionsError, StreamOptions, Task, arg, get_task, list_tasks, register_task, task_for_card)
import tritonkit.tasks.base as tasks_base
from tritonkit.tasks.classify.task import Classification, ClassificationMetrics, ClassificationOptions
from tritonkit.tasks.detect.task import Detection, DetectionDetails, DetectionMetrics
from tritonkit.tasks.segment.task import Segmentation


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is, restored after the test (registrations made here do not leak)."""
    monkeypatch.setattr(tasks_base, "_TASKS", dict(tasks_base._TASKS))


def test_builtin_tasks_are_registered():
    assert list_tasks() == ["classify", "detect", "segment"]
    assert isinstance(get_task("classify"), Classification) and isinstance(get_task("detect"), Detection)
    assert isinstance(task_for_card(get_card("yolov5s")), Detection)
    assert isinstance(task_for_card(get_card("deeplabv3_resnet50")), Segmentation)
    assert get_card("resnet50").has_labels and not get_card("yolov5s").has_labels
    assert not get_card("demo_seg").has_labels
    with pytest.raises(CardError, match="unknown task 'instance'"):
        get_task("instance")


def test_register_task_rejects_duplicates_and_non_tasks(scratch_registry):
    with pytest.raises(TritonkitError, match="task 'classify' is already registered"):
        @register_task("classify")
        class Again(Classification):
            pass
    assert type(get_task("classify")) is Classification
    with pytest.raises(TritonkitError, match="is not a Task subclass"):
        register_task("plain")(object)
    assert "plain" not in list_tasks()


def _toy_task():
    @dataclass(frozen=True, kw_only=True)
    class ToyOptions(StreamOptions):
        masks: Path | None = field(default=None, metadata=arg("--masks", "mask folder", kind="path"))

    class Toy(Task):
        """Toy: a task registered by a test.

        Its description is the CLI help."""

        description = __doc__
        options_type = ToyOptions
        checkpoint = "toy.jsonl"

        def open_dataset(self, options, card): ...

        def adapter(self, options, card, data): ...

        def timing_adapter(self, card, options=None): ...

        def markdown(self, result): ...

        def summary_rows(self, result): ...

    return Toy


def test_eval_subcommands_come_from_the_registry(scratch_registry, capsys):
    from tritonkit.cli import build_parser

    def eval_tasks(parser) -> set[str]:
        sub = next(a for a in parser._actions if a.dest == "command").choices["eval"]
        return set(next(a for a in sub._actions if a.dest == "task").choices)

    assert eval_tasks(build_parser()) == {"classify", "detect", "segment"}
    register_task("toy")(_toy_task())
    parser = build_parser()
    assert eval_tasks(parser) == {"classify", "detect", "segment", "toy"}
    args = parser.parse_args(["eval", "toy", "--model", "m", "--masks", "x", "--batch-sizes", "2,4"])
    from tritonkit.cli.evaluate import options_from_args

    options = options_from_args(get_task("toy"), args)
    assert (options.masks, options.batch_sizes, options.model) == (Path("x"), (2, 4), "m")
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "toy", "--help"])
    out = capsys.readouterr().out
    assert "Toy: a task registered by a test." in out and "--masks" in out and "mask folder" in out


def test_options_errors_name_fields_and_the_cli_names_flags(capsys):
    from tritonkit.cli import main

    with pytest.raises(OptionsError) as exc:
        ClassificationOptions(model="resnet50", data=Path("d"), batch_sizes=(0,))
    assert str(exc.value) == "batch_sizes must be positive integers (got [0])"
    assert exc.value.render({"batch_sizes": "--batch-sizes"}).startswith("--batch-sizes must be")
    with pytest.raises(OptionsError, match="^workers and in_flight must be >= 1"):
        ClassificationOptions(model="resnet50", data=Path("d"), workers=0)
    assert main(["eval", "classify", "--model", "resnet50", "--data", "d", "--workers", "0"]) == 1
    assert "--workers and --in-flight must be >= 1" in capsys.readouterr().err
    assert main(["eval", "classify", "--model", "resnet50"]) == 1
    assert "--data PATH (folder or .tar) or --tar FILE" in capsys.readouterr().err


def test_no_md5_check_clears_the_field():
    from tritonkit.cli import build_parser
    from tritonkit.cli.evaluate import options_from_args

    task = get_task("classify")
    argv = ["eval", "classify", "--model", "resnet50", "--tar", "x.tar"]
    assert options_from_args(task, build_parser().parse_args(argv)).md5 == ClassificationOptions.md5
    assert options_from_args(task, build_parser().parse_args(argv + ["--no-md5-check"])).md5 is None


def _result(metrics, details=None, **kw) -> EvalResult:
    common = dict(task="t", model="m", served_model="m", url="u", protocol="grpc", shm=False, dataset={},
                  batch_size=1, batch_sizes=[1], workers=1, in_flight=1, pool="thread", published={}, images=3,
                  errors=[], notes=[], resumed=0, stream_images=3, e2e_time=1.0, p_infer_whole=3.0,
                  p_infer_core=4.0, latency={}, e2e_time_covers="", stages={}, checkpoint="c")
    return EvalResult(**{**common, **kw}, metrics=metrics, details=details)


def test_result_dict_flattens_metrics_and_keeps_the_published_keys():
    cls = ClassificationMetrics.from_summary({"top1": 0.5, "top5": 1.0, "correct1": 1, "correct5": 2,
                                              "images": 2, "reference_top1": 0.5}, has_reference=False)
    d = _result(cls).to_dict()
    assert (d["top1"], d["top5"], d["correct1"], d["correct5"]) == (0.5, 1.0, 1, 2)
    assert not any(k.startswith("reference") for k in d) and "metrics" not in d and "details" not in d
    assert not {"batch_timing", "timing_notes", "timing_images", "retries", "max_abs_diff"} & set(d)

    det = DetectionMetrics.from_summary({"map50": 0.75, "map50_95": 0.5, "reference_map50": 0.7}, has_reference=True)
    profile = get_card("yolov5s").nms("ap")
    res = _result(det, DetectionDetails(server_nms=True, nms_profile=profile, timing_nms_profile=profile),
                  reference_onnx="r.onnx", max_abs_diff={"output0": 0.0})
    res.batch_timing, res.timing_notes, res.timing_images, res.retries = [], [], 0, 0
    d = res.to_dict()
    assert d["map50"] == 0.75 and d["reference_map50"] == 0.7 and d["reference_map50_95"] is None
    assert d["server_nms"] is True and d["nms_profile"]["name"] == "ap" and "coco_results" not in d
    assert d["reference_onnx"] == "r.onnx" and d["timing_notes"] == [] and d["retries"] == 0
