"""The one step runner (tritonkit.steps) behind demo, gpu-smoke and the bench."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tritonkit.errors import TritonkitError
from tritonkit.steps import Pipeline, Step, StepError, StepLog, StepRecord, StepSkipped


def _on_disk(path: Path) -> list[tuple[str, str]]:
    return [(s["id"], s["status"]) for s in json.loads(path.read_text())["steps"]]


def test_steplog_records_failures_and_goes_on(tmp_path):
    lines: list[str] = []
    log = StepLog(tmp_path / "out" / "steps.json", on_event=lambda r: lines.append(r.line()))
    ran = []

    def server_down():
        ran.append(2)
        raise TritonkitError("server not ready\nlong trace here")

    assert log.call("one", lambda: ran.append(1) or "fine") == "fine"
    assert _on_disk(log.path) == [("one", "ok")]
    assert log.call("two", server_down) is None
    assert _on_disk(log.path) == [("one", "ok"), ("two", "failed")]
    log.call("three", lambda: ran.append(3) or {}["missing"])
    assert log.call("four", lambda: ran.append(4) or 42) == 42
    log.skip("five", "nothing to serve")
    assert ran == [1, 2, 3, 4]

    disk = json.loads(log.path.read_text())["steps"]
    assert [(s["id"], s["status"]) for s in disk] == [("one", "ok"), ("two", "failed"), ("three", "failed"),
                                                     ("four", "ok"), ("five", "skipped")]
    assert disk[0]["detail"] == "fine"
    assert disk[1]["detail"] == "server not ready"
    assert disk[2]["detail"].startswith("KeyError: 'missing'") and "test_steps.py:" in disk[2]["detail"]
    assert disk[4]["detail"] == "nothing to serve" and disk[4]["seconds"] == 0.0
    assert all(s["seconds"] >= 0 for s in disk)
    assert json.loads(log.path.read_text())["failed"] is True
    assert [s.id for s in log.failed()] == ["two", "three"] and not log.passed
    assert log.ok("one") and log.ok("four") and not log.ok("two") and not log.ok("five") and not log.ok("six")
    assert any("two: failed" in line and "server not ready" in line for line in lines)
    assert any(line == "one ..." for line in lines)
    assert any("five: skipped" in line for line in lines)


def test_call_returns_the_value_only_on_success():
    log = StepLog()
    assert log.call("answer", lambda x: x * 2, 21) == 42
    assert log.call("broken", lambda: 1 / 0) is None
    assert log.records[0].detail == "" and log.records[1].detail.startswith("ZeroDivisionError: division by zero")


def test_steplog_times_steps_and_lets_interrupts_through(tmp_path):
    log = StepLog(tmp_path / "steps.json")
    log.call("sleep", time.sleep, 0.05)
    assert log.records[0].seconds >= 0.04

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        log.call("interrupted", interrupted)
    # the interrupted step is still on disk, not marked ok
    assert _on_disk(log.path)[1] == ("interrupted", "failed")
    assert "interrupted (KeyboardInterrupt)" == log.records[1].detail


def test_pipeline_skips_what_needs_a_failed_step_and_runs_the_rest(tmp_path):
    ran: list[str] = []

    def make(name, fail=False, skip=False):
        def fn(ctx):
            ctx.append(name)
            if fail:
                raise TritonkitError(f"{name} broke")
            if skip:
                raise StepSkipped("option off")
            return f"{name} done"
        return fn

    pipeline = Pipeline([
        Step("data", make("data")),
        Step("train", make("train", fail=True), needs=("data",)),
        Step("quantize", make("quantize"), needs=("train",)),
        Step("detector", make("detector", skip=True), needs=("data",)),
        Step("eval_detector", make("eval_detector"), needs=["detector"]),
        Step("report", make("report")),
    ])
    log = pipeline.run(ran, StepLog(tmp_path / "steps.json"))
    assert ran == ["data", "train", "detector", "report"]
    by_id = {r.id: r for r in log.records}
    assert [r.id for r in log.records] == list(pipeline.ids)
    assert by_id["train"].status == "failed" and by_id["train"].detail == "train broke"
    assert by_id["quantize"].status == "skipped" and by_id["quantize"].detail == "needs train (failed)"
    assert by_id["detector"].status == "skipped" and by_id["detector"].detail == "option off"
    assert by_id["eval_detector"].detail == "needs detector (skipped)"
    assert by_id["report"].status == "ok" and by_id["report"].detail == "report done"
    assert _on_disk(tmp_path / "steps.json")[-1] == ("report", "ok")


def test_an_interrupt_still_runs_the_cleanup_steps_then_propagates(tmp_path):
    ran: list[str] = []

    def interrupt(ctx):
        raise KeyboardInterrupt

    pipeline = Pipeline([
        Step("start", lambda ctx: ctx.append("start")),
        Step("measure", interrupt, needs=("start",)),
        Step("more", lambda ctx: ctx.append("more")),
        Step("stop", lambda ctx: ctx.append("stop"), needs=("start",), cleanup=True),
        Step("report", lambda ctx: ctx.append("report"), cleanup=True),
    ])
    log = StepLog(tmp_path / "steps.json")
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(ran, log)
    assert ran == ["start", "stop", "report"]
    assert _on_disk(log.path) == [("start", "ok"), ("measure", "failed"), ("more", "skipped"), ("stop", "ok"),
                                  ("report", "ok")]


def test_ids_are_identifiers_and_needs_come_earlier():
    for bad in ("eval classify fp32", "Eval", "build-plan", "", "1step"):
        with pytest.raises(StepError, match="identifier"):
            Step(bad, print)
    with pytest.raises(StepError, match="identifier"):
        StepLog().call("not an id", print)
    with pytest.raises(StepError, match="needs later, which no earlier step is"):
        Pipeline([Step("first", print, needs=("later",)), Step("later", print)])
    with pytest.raises(StepError, match="used twice"):
        Pipeline([Step("a", print), Step("a", print)])


def test_subjects_name_per_model_steps():
    log = StepLog()
    log.call("eval", lambda: "fine", subject="resnet50")
    log.call("eval", lambda: 1 / 0, subject="demo_shapes")
    assert log.ok("eval", "resnet50") and not log.ok("eval", "demo_shapes")
    assert log.status("eval") == "failed"  # the latest record of that id
    assert [r.name for r in log.records] == ["eval[resnet50]", "eval[demo_shapes]"]
    assert StepRecord("report", "ok", 0.5).line() == "report: ok in 0.5 s"
