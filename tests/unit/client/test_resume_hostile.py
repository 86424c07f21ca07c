"""Resume and reports under hostile input: file names that are not UTF-8 or hold newlines,
files renamed or repaired between a run and ``--resume``, transient read errors, headerless and
corrupt checkpoints, two runs on one output folder.

The engine runs a real in-process model (the tiny ONNX under onnxruntime, as in
test_pipeline.py) on real files; the only stand-in is :class:`FlakyItem`, which raises the EIO
that a failing disk would (it cannot be produced on demand here).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.classify_data import CARD, OrtModel, make_dataset, run_classify as _run

from tritonkit.client.checkpoint import (
    Checkpoint, CheckpointError, OutputLock, OutputLockedError, read_checkpoint, scan_checkpoint)
from tritonkit.tasks.classify.data import open_dataset
from tritonkit.io import to_json_text
from tritonkit.report import files_markdown, markdown_table, stream_markdown, write_text
from tritonkit.tasks.base import get_task

BAD_NAME = os.fsdecode(b"bad\xff\xfename.png")  # not UTF-8: Python holds it with surrogate escapes


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    expect = make_dataset(root)
    return root, expect


# ------------------------------------------------------------------------ 8: file names
def test_tables_escape_newlines_pipes_and_bytes_that_are_not_utf8():
    table = markdown_table(["path", "reason"], [[f"circle/{BAD_NAME}", "two\nlines|and\ttab\r"]])
    lines = table.splitlines()
    assert len(lines) == 3 and all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert lines[2] == "| circle/bad\\xff\\xfename.png | two\\nlines\\|and\\ttab\\r |"
    table.encode("utf-8")  # strict: no surrogate left


def test_a_run_with_hostile_file_names_writes_valid_reports_and_resumes(data, tiny_onnx, tmp_path):
    root, expect = data
    shutil.move(root / "star" / "gray.png", root / "star" / BAD_NAME)  # noted (converted) under a bad name
    (root / "circle" / "zero.jpg").rename(root / "circle" / "zero\nline.jpg")  # an error, name with a newline
    ds = open_dataset(root, CARD)
    ckpt = tmp_path / "ck.jsonl"
    stream = _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt)
    assert f"star/{BAD_NAME}" in {n["path"] for n in stream.notes}
    assert "circle/zero\nline.jpg" in {e["path"] for e in stream.errors}

    result = {"model": "demo_shapes", "images": stream.evaluated, "errors": stream.errors, "notes": stream.notes,
              "run_notes": [f"{BAD_NAME} dropped\nsecond line"]}
    md = get_task("classify").markdown(result) + stream_markdown(result)
    path = write_text(tmp_path / "classification.md", md)
    text = path.read_bytes().decode("utf-8")  # strict UTF-8
    assert "| star/bad\\xff\\xfename.png |" in text and "| circle/zero\\nline.jpg |" in text
    assert "- bad\\xff\\xfename.png dropped\\nsecond line" in text
    table_rows = [ln for ln in text.splitlines() if ln.startswith("| circle/") or ln.startswith("| star/")]
    assert all(ln.endswith(" |") for ln in table_rows)
    assert json.loads(to_json_text({"notes": stream.notes}))["notes"] == stream.notes  # JSON keeps the exact name

    again = _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt, resume=True)
    assert again.records == stream.records and again.resumed == len(ds.items) and again.batches == 0


# ----------------------------------------------------------------- 9: renamed between runs
def test_a_file_renamed_before_resume_is_evaluated_and_its_old_entry_dropped(data, tiny_onnx, tmp_path):
    root, _ = data
    ckpt = tmp_path / "ck.jsonl"
    first = _run(open_dataset(root, CARD), OrtModel(tiny_onnx), checkpoint=ckpt)
    old = first.records[0]["key"]
    new = old.replace(".jpg", "_renamed.jpg")
    (root / old).rename(root / new)
    model = OrtModel(tiny_onnx)
    for _ in range(2):  # and every later resume
        resumed = _run(open_dataset(root, CARD), model, checkpoint=ckpt, resume=True)
        keys = [r["key"] for r in resumed.records]
        assert new in keys and old not in keys and len(keys) == len(first.records)
        assert any(repr(old) in note and "dropped" in note for note in resumed.run_notes)
    assert model.calls == 1  # the renamed file once; the second resume finds it in the checkpoint


# -------------------------------------------------------------- 10: errors are not final
def test_a_file_repaired_before_resume_is_evaluated(data, tiny_onnx, tmp_path):
    root, expect = data
    ckpt = tmp_path / "ck.jsonl"
    first = _run(open_dataset(root, CARD), OrtModel(tiny_onnx), checkpoint=ckpt)
    assert "circle/zero.jpg" in {e["path"] for e in first.errors}
    shutil.copy(root / first.records[0]["key"], root / "circle" / "zero.jpg")  # repaired
    resumed = _run(open_dataset(root, CARD), OrtModel(tiny_onnx), checkpoint=ckpt, resume=True)
    assert "circle/zero.jpg" in {r["key"] for r in resumed.records}
    assert "circle/zero.jpg" not in {e["path"] for e in resumed.errors}
    assert {e["path"] for e in resumed.errors} == expect["errors"] - {"circle/zero.jpg"}
    _, entries, _ = read_checkpoint(ckpt)
    assert "record" in entries["circle/zero.jpg"]  # the new result replaced the recorded error
    lines = ckpt.read_text().splitlines()[1:]
    assert len(lines) == len(entries) + 1  # the error that failed the same way kept its one line


class FlakyItem:
    """A dataset item whose first ``failures`` reads raise EIO (a disk hiccup), then read fine."""

    def __init__(self, item, failures: int):
        self._item, self.failures, self.reads = item, failures, 0

    def __getattr__(self, name):
        return getattr(self._item, name)

    @property
    def key(self) -> str:
        return self._item.key

    def read_bytes(self) -> bytes:
        self.reads += 1
        if self.reads <= self.failures:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return self._item.read_bytes()


class FlakyDataset:
    def __init__(self, items):
        self.items = items


def test_transient_read_errors_are_retried_a_bounded_number_of_times(data, tiny_onnx):
    root, _ = data
    items = list(open_dataset(root, CARD).items)
    good = [it for it in items if it.key.endswith(".jpg") and "zero" not in it.key and "cut" not in it.key]
    hiccup, dead = FlakyItem(good[0], failures=2), FlakyItem(good[1], failures=10 ** 6)
    flaky = [hiccup if it is good[0] else dead if it is good[1] else it for it in items]
    stream = _run(FlakyDataset(flaky), OrtModel(tiny_onnx))
    assert hiccup.key in {r["key"] for r in stream.records} and hiccup.reads == 3
    reasons = {e["path"]: e["reason"] for e in stream.errors}
    assert dead.reads == 3 and "Input/output error" in reasons[dead.key] and "3 attempts" in reasons[dead.key]


# ----------------------------------------------------------------- 11: checkpoint damage
def test_a_headerless_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "ck.jsonl"
    ckpt.write_text('{"key": "a/x.jpg", "record": {"top1": 1}}\n')
    with pytest.raises(CheckpointError, match="has no header line"):
        Checkpoint(ckpt, {"model": "m"}, resume=True)
    assert ckpt.read_text() == '{"key": "a/x.jpg", "record": {"top1": 1}}\n'  # left as it was


def test_a_corrupt_middle_line_is_skipped_and_counted(data, tiny_onnx, tmp_path):
    root, _ = data
    ds = open_dataset(root, CARD)
    ckpt = tmp_path / "ck.jsonl"
    full = _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt)
    lines = ckpt.read_text().splitlines(keepends=True)
    lost = json.loads(lines[3])["key"]
    lines[3] = lines[3][:10] + "\x00garbage\n"  # torn in the middle of the file
    lines[5] = '["valid json", "but no entry"]\n'
    ckpt.write_text("".join(lines))
    scan = scan_checkpoint(ckpt)
    assert [n for n, _ in scan.skipped] == [4, 6]
    with pytest.raises(CheckpointError, match="line 4 is not valid JSON"):
        read_checkpoint(ckpt)  # the strict read still names the line
    model = OrtModel(tiny_onnx)
    resumed = _run(ds, model, checkpoint=ckpt, resume=True)
    assert resumed.records == full.records and resumed.errors == full.errors
    assert model.calls >= 1 and lost in {r["key"] for r in resumed.records}
    assert [n for n in resumed.run_notes if "line 4" in n or "line 6" in n] and len(resumed.run_notes) == 2


# ----------------------------------------------------------------------- 12: output lock
def test_a_second_run_on_one_folder_is_refused_naming_the_holder(tmp_path):
    with OutputLock(tmp_path, "eval") as first:
        assert first.note is None
        holder = json.loads((tmp_path / ".tritonkit.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
        with pytest.raises(OutputLockedError) as info:
            OutputLock(tmp_path, "eval").acquire()
        message = str(info.value)
        assert f"pid {os.getpid()} on {holder['host']}" in message and "another eval" in message
        assert len(message.splitlines()) == 1
    with OutputLock(tmp_path, "eval") as again:  # released: the next run takes it
        assert again.note is None


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    code = ("import sys, time; from tritonkit.client.checkpoint import OutputLock; "
            "OutputLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"pid {proc.pid} "):
            OutputLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with OutputLock(tmp_path) as lock:
        assert lock.note and f"pid {proc.pid} " in lock.note and "no longer running" in lock.note


def test_cli_eval_on_a_locked_folder_exits_1_in_one_line(tmp_path, capsys):
    from tritonkit.cli import main

    make_dataset(tmp_path / "data", n_good=2)
    out = tmp_path / "o"
    out.mkdir()
    with OutputLock(out, "eval"):
        code = main(["eval", "classify", "--model", "demo_shapes", "--data", str(tmp_path / "data"),
                     "--url", "127.0.0.1:1", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "another eval is using this folder" in err
    assert f"pid {os.getpid()}" in err
    assert not (out / "classification.jsonl").exists()
