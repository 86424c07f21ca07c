"""The run-stream engine with a real in-process model (a tiny ONNX run by onnxruntime), no server.

The inference backend here is not a mock of the Triton API: it is a real callable running
onnxruntime on a small ONNX built with onnx.helper, plugged in through the same
``InferBackend`` protocol the Triton client implements.
"""

from __future__ import annotations

import io
import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.classify_data import CARD, OrtModel, make_dataset, run_classify as _run
from tritonkit.cards import get_card
from tritonkit.client.checkpoint import CheckpointError, read_checkpoint
from tritonkit.tasks.classify.task import ClassifyAdapter
from tritonkit.tasks.classify.math import topk
from tritonkit.tasks.classify.data import open_dataset
from tritonkit.client.decode import decode_file
from tritonkit.client.pipeline import CallableBackend, EngineOptions, run_stream, summarize
from tritonkit.client.preprocess import preprocess
from tritonkit.client.timing import StageTimes, batch_timing, flagperf_metrics, latency_stats, union_length

@pytest.fixture
def dataset(tmp_path):
    expect = make_dataset(tmp_path / "data")
    return open_dataset(tmp_path / "data", CARD), expect


def test_stream_equals_per_image_inference(dataset, tiny_onnx):
    """Every record equals decoding, preprocessing and running that image alone (batching,
    threading and out-of-order completion change nothing); bad files are errors, gray is noted."""
    ds, expect = dataset
    model = OrtModel(tiny_onnx)
    result = _run(ds, model)
    assert result.evaluated == expect["good"] == len(result.records)
    assert {e["path"] for e in result.errors} == expect["errors"]
    assert all(e["reason"] for e in result.errors)
    assert {n["path"] for n in result.notes} == expect["notes"]
    assert result.batches == -(-expect["good"] // 3)  # last batch smaller
    by_key = {r["key"]: r for r in result.records}
    for item in ds.items:
        if item.key in expect["errors"]:
            continue
        x, _ = preprocess(decode_file(item.path).image, CARD.preprocess)
        logits = model(x[None])["logits"][0]
        assert by_key[item.key]["topk"] == topk(logits, 5).tolist(), item.key
        assert by_key[item.key]["label"] == item.label
    assert [r["key"] for r in result.records] == [it.key for it in ds.items if it.key in by_key]
    t = result.timing
    assert t.counts["decode"] == len(ds.items) and t.counts["preprocess"] == expect["good"]
    assert t.counts["infer"] == expect["good"] and len(t.requests) == result.batches


def test_in_flight_window_is_bounded(dataset, tiny_onnx):
    ds, _ = dataset
    model = OrtModel(tiny_onnx, sleep_s=0.03)
    _run(ds, model, batch_size=1, in_flight=3)
    assert 2 <= model.max_active <= 3  # several requests overlap, never more than the window
    model1 = OrtModel(tiny_onnx, sleep_s=0.01)
    _run(ds, model1, batch_size=2, in_flight=1)
    assert model1.max_active == 1


def test_reference_backend_gives_reference_metrics(dataset, tiny_onnx):
    ds, expect = dataset
    opts = EngineOptions(batch_size=4, progress=False)
    with CallableBackend(OrtModel(tiny_onnx), 2) as served, CallableBackend(OrtModel(tiny_onnx), 1) as ref:
        result = run_stream(ds.items, ClassifyAdapter(CARD), served, opts, reference=ref)
    metrics = summarize(ClassifyAdapter(CARD), result)
    assert metrics["images"] == expect["good"]
    assert metrics["reference_top1"] == metrics["top1"] and metrics["reference_top5"] == metrics["top5"]
    assert result.max_abs_diff == {"logits": 0.0}
    assert [r["topk"] for r in result.reference_records] == [r["topk"] for r in result.records]


def test_process_pool_gives_the_same_records(dataset, tiny_onnx):
    ds, _ = dataset
    threads = _run(ds, OrtModel(tiny_onnx))
    procs = _run(ds, OrtModel(tiny_onnx), pool="process")
    assert procs.records == threads.records and procs.errors == threads.errors


def test_a_failing_backend_stops_the_run_but_keeps_finished_images(dataset, tiny_onnx, tmp_path):
    ds, _ = dataset
    ckpt = tmp_path / "ck.jsonl"
    with pytest.raises(RuntimeError, match="server went away"):
        _run(ds, OrtModel(tiny_onnx, fail_after=2), checkpoint=ckpt, in_flight=1)
    _, entries, _ = read_checkpoint(ckpt)
    assert sum("record" in e for e in entries.values()) >= 6  # two batches of 3 were finished


class SlowFailingModel(OrtModel):
    """Call number ``fail_on`` sleeps, then fails; every other call answers at once."""

    def __init__(self, onnx_path: Path, fail_on: int):
        super().__init__(onnx_path)
        self.fail_on = fail_on

    def __call__(self, batch: np.ndarray) -> dict:
        with self._lock:
            self.calls += 1
            call = self.calls
        if call == self.fail_on:
            time.sleep(0.3)
            raise RuntimeError("this request failed")
        return {"logits": self.session.run(["logits"], {"input": batch})[0]}


def test_responses_that_arrived_before_a_failure_are_kept(dataset, tiny_onnx, tmp_path):
    """Batches after the failed one that already answered are checkpointed, not thrown away."""
    ds, _ = dataset
    ckpt = tmp_path / "ck.jsonl"
    with pytest.raises(RuntimeError, match="this request failed"):
        _run(ds, SlowFailingModel(tiny_onnx, fail_on=2), checkpoint=ckpt, batch_size=2, in_flight=3)
    _, entries, _ = read_checkpoint(ckpt)
    records = sum("record" in e for e in entries.values())
    assert records == 2 + 2 * 2  # batch 1, and batches 3 and 4 that were in flight beside batch 2


def test_resume_after_interruption_is_exact(dataset, tiny_onnx, tmp_path):
    """Interrupted + resumed == uninterrupted: one entry per image, same records and metrics."""
    ds, expect = dataset
    adapter = ClassifyAdapter(CARD)
    full = _run(ds, OrtModel(tiny_onnx), checkpoint=tmp_path / "full.jsonl")

    ckpt = tmp_path / "ck.jsonl"
    with pytest.raises(RuntimeError):
        _run(ds, OrtModel(tiny_onnx, fail_after=3), checkpoint=ckpt, in_flight=1)
    _, partial, _ = read_checkpoint(ckpt)
    assert 0 < len(partial) < len(ds.items)

    model = OrtModel(tiny_onnx)
    resumed = _run(ds, model, checkpoint=ckpt, resume=True)
    assert resumed.resumed == len(partial)
    assert model.calls == -(-(expect["good"] - sum("record" in e for e in partial.values())) // 3)
    assert resumed.records == full.records
    assert resumed.errors == full.errors and resumed.notes == full.notes
    assert summarize(adapter, resumed) == summarize(adapter, full)
    _, entries, _ = read_checkpoint(ckpt)
    lines = [json.loads(x) for x in ckpt.read_text().splitlines()[1:]]
    assert len(lines) == len(entries) == len(ds.items)  # exactly one entry per image

    again = _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt, resume=True)  # nothing left to do
    assert again.resumed == len(ds.items) and again.batches == 0 and again.records == full.records


def test_resume_drops_a_torn_last_line(dataset, tiny_onnx, tmp_path):
    ds, expect = dataset
    ckpt = tmp_path / "ck.jsonl"
    full = _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt)
    lines = ckpt.read_text().splitlines(keepends=True)
    ckpt.write_text("".join(lines[:-2]) + lines[-2][: len(lines[-2]) // 2])  # died mid-write
    resumed = _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt, resume=True)
    assert resumed.records == full.records
    assert len(ckpt.read_text().splitlines()) == len(ds.items) + 1  # header + one line per image


def test_resume_refuses_another_runs_checkpoint_and_fresh_run_keeps_old(dataset, tiny_onnx, tmp_path):
    ds, _ = dataset
    ckpt = tmp_path / "ck.jsonl"
    _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt, run_identity={"model": "a", "data": "x"})
    with pytest.raises(CheckpointError, match=r"another run \(differs in model\)"):
        _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt, run_identity={"model": "b", "data": "x"}, resume=True)
    old = ckpt.read_text()
    _run(ds, OrtModel(tiny_onnx), checkpoint=ckpt, run_identity={"model": "b", "data": "x"})
    assert (tmp_path / "ck.jsonl.prev").read_text() == old


def test_bad_checkpoint_line_names_the_line(tmp_path):
    ckpt = tmp_path / "ck.jsonl"
    ckpt.write_text('{"checkpoint": 1, "run": {}}\n{"key": "a", "record": {}}\nnot json\n')
    with pytest.raises(CheckpointError, match="ck.jsonl: line 3 is not valid JSON"):
        read_checkpoint(ckpt)


# ----------------------------------------------------------------------------- timing
def test_union_length_counts_overlaps_once():
    assert union_length([]) == 0.0
    assert union_length([(0, 1), (2, 3)]) == pytest.approx(2.0)
    assert union_length([(0, 2), (1, 3), (2.5, 2.7), (5, 6)]) == pytest.approx(4.0)
    rng = np.random.default_rng(0)
    iv = [(s, s + d) for s, d in zip(rng.uniform(0, 10, 50), rng.uniform(0, 1, 50))]
    grid = np.linspace(0, 12, 120001)
    covered = np.zeros_like(grid, dtype=bool)
    for s, e in iv:
        covered |= (grid >= s) & (grid < e)
    assert union_length(iv) == pytest.approx(covered.sum() * (grid[1] - grid[0]), abs=1e-3)


def test_latency_stats_and_flagperf_metrics():
    v = list(np.random.default_rng(1).exponential(5.0, 200))
    stats = latency_stats(v)
    assert stats["count"] == 200 and stats["p99"] == pytest.approx(float(np.percentile(v, 99)))
    assert stats["mean"] == pytest.approx(float(np.mean(v)))
    assert latency_stats([])["p50"] is None
    t = StageTimes()
    t.add_request(0.0, 0.5, 4)
    t.add_request(0.25, 0.75, 4)  # overlaps the first
    t.add_request(2.0, 2.5, 2)
    t.wall_s = 5.0
    m = flagperf_metrics(t, e2e_s=6.0)
    assert m["e2e_time"] == 6.0
    assert m["p_infer_whole"] == pytest.approx(10 / 5.0)
    assert m["p_infer_core"] == pytest.approx(10 / 1.25)
    assert m["latency"]["mean"] == pytest.approx(500.0)


def test_batch_timing_row():
    row = batch_timing(4, [0.01, 0.03], 8, stream_wall_s=0.5, stream_batches=5, stream_images=20,
                       stream_latencies_ms=[30.0, 10.0, 20.0, 40.0, 50.0])
    assert row.run_model_ms == pytest.approx(20.0) and row.run_model_img_s == pytest.approx(200.0)
    assert row.run_stream_ms == pytest.approx(100.0) and row.run_stream_img_s == pytest.approx(40.0)
    assert row.run_stream_latency_p50_ms == pytest.approx(30.0) and row.run_stream_latency_mean_ms == pytest.approx(30.0)
    assert row.run_stream_latency_p99_ms == pytest.approx(float(np.percentile([10, 20, 30, 40, 50], 99)))
    empty = batch_timing(1, [], 0, 0.0, 0, 0)
    assert empty.run_model_ms is None and empty.run_stream_latency_p50_ms is None


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_stream_latency_of_each_batch_spans_its_decode_and_its_request(dataset, tiny_onnx, pool):
    """Each batch's run stream latency starts when its first image starts to decode and ends after
    its postprocess: it holds the batch's request round trip and every image's decode, in a worker
    thread or process alike (one monotonic clock)."""
    ds, expect = dataset
    result = _run(ds, OrtModel(tiny_onnx, sleep_s=0.01), batch_size=2, in_flight=2, pool=pool)
    t = result.timing
    assert len(t.batches) == len(t.requests) == result.batches and sum(n for *_, n in t.batches) == expect["good"]
    for (b0, b1, bn), (r0, r1, rn) in zip(t.batches, t.requests):
        assert bn == rn and b0 <= r0 < r1 <= b1
    assert t.batch_latencies_ms() == [(b1 - b0) * 1e3 for b0, b1, _ in t.batches]


# ----------------------------------------------------------------- client pure helpers
def _served(mbs=8, in_dims=(3, 64, 64), out_dims=(8,), in_name="input", out_name="logits", dtype="FP32"):
    from tritonkit.client.infer import normalize_config, normalize_metadata

    meta = {"name": "m", "inputs": [{"name": in_name, "datatype": dtype, "shape": [str(d) for d in (-1, *in_dims)]}],
            "outputs": [{"name": out_name, "datatype": "FP32", "shape": [str(d) for d in (-1, *out_dims)]}]}
    cfg = {"config": {"name": "m", "input": [{"name": in_name, "data_type": f"TYPE_{dtype}", "dims": list(in_dims)}],
                      "output": [{"name": out_name, "data_type": "TYPE_FP32", "dims": list(out_dims)}]}}
    if mbs:
        cfg["config"]["max_batch_size"] = mbs
    return normalize_metadata(meta), normalize_config(cfg)


def test_contract_check_passes_a_matching_model():
    from tritonkit.client.infer import contract_mismatches

    assert contract_mismatches(CARD, *_served(), batch_size=8) == []


def test_contract_check_lists_every_mismatch():
    from tritonkit.client.infer import contract_mismatches

    meta, cfg = _served(mbs=4, in_dims=(3, 224, 224), out_name="prob", dtype="FP16")
    problems = contract_mismatches(CARD, meta, cfg, batch_size=8)
    text = "; ".join(problems)
    assert "max_batch_size 4 < batch size 8" in text
    assert "input 'input' datatype FP16 != card FP32" in text
    assert "input 'input' shape [-1, 3, 224, 224]" in text
    assert "output 'logits' not served" in text
    assert "max_batch_size is 0" in "; ".join(contract_mismatches(CARD, *_served(mbs=0), batch_size=1))


def test_retry_policy_only_for_unavailable():
    from tritonclient.utils import InferenceServerException

    from tritonkit.client.infer import backoff_delay, is_retryable

    assert is_retryable(ConnectionRefusedError())
    assert is_retryable(InferenceServerException("down", status="StatusCode.UNAVAILABLE"))
    assert not is_retryable(InferenceServerException("bad shape", status="StatusCode.INVALID_ARGUMENT"))
    assert not is_retryable(InferenceServerException("slow", status="StatusCode.DEADLINE_EXCEEDED"))
    assert not is_retryable(TimeoutError())
    assert not is_retryable(ValueError("x"))
    rng = random.Random(0)
    delays = [backoff_delay(a, 0.1, 1.0, rng) for a in range(6)]
    for a, d in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2 ** a)
        assert ceiling * 0.5 <= d <= ceiling


def _closed_port() -> int:
    from tritonkit.serve.local import free_port

    return free_port()  # nothing listens there once the probe socket is closed


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unreachable_server_is_a_clear_error(protocol):
    from tritonkit.client.infer import ClientOptions, TritonInfer
    from tritonkit.errors import ServerError

    url = f"127.0.0.1:{_closed_port()}"
    client = TritonInfer(CARD, ClientOptions(url=url, protocol=protocol, connect_timeout_s=2.0))
    with pytest.raises(ServerError, match=f"{protocol} {url} is unreachable"):
        client.connect()


def test_grpc_requests_are_retried_while_unavailable_then_fail_clearly():
    """A real gRPC client against a closed port gives UNAVAILABLE: retried with backoff, then one error."""
    import tritonclient.grpc as grpcclient

    from tritonkit.client.infer import ClientOptions, TritonInfer
    from tritonkit.errors import ServerError

    url = f"127.0.0.1:{_closed_port()}"
    client = TritonInfer(CARD, ClientOptions(url=url, retries=2, backoff_s=0.01, timeout_s=5.0), max_batch=2)
    client._client = grpcclient.InferenceServerClient(url)  # skip connect(): nothing is listening
    with pytest.raises(ServerError, match="after 3 attempts"):
        client.submit(np.zeros((1, 3, 64, 64), np.float32)).result(timeout=30)
    assert client.retries_done == 2
    client.close()


# ------------------------------------------------------------------------- reports, CLI
def test_report_helpers(tmp_path):
    from tritonkit.report import markdown_table, write_json
    from tritonkit.tasks.classify.task import classification_rows

    table = markdown_table(["a", "b"], [[1.23456, None], ["x|y", 3]])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1.23 | - |", "| x\\|y | 3 |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [[1]])
    p = write_json(tmp_path / "r" / "x.json", {"v": np.float32(0.5), "nan": float("nan"), "p": tmp_path})
    assert json.loads(p.read_text()) == {"v": 0.5, "nan": None, "p": str(tmp_path)}
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]  # no temp file left behind
    headers, rows = classification_rows([{"model": "m", "top1": 0.5, "top5": 0.9, "batch_timing": [
        {"batch_size": 4, "run_model_ms": 2.0, "run_stream_ms": 5.0, "run_stream_latency_p50_ms": 9.0,
         "run_stream_img_s": 800.0},
        {"batch_size": 1, "run_model_ms": 1.0, "run_stream_ms": 3.0, "run_stream_latency_p50_ms": 4.0,
         "run_stream_img_s": 333.0}]}])
    assert headers == ["model", "run model bs1 (ms)", "run model bs4 (ms)", "run stream p50 bs1 (ms)",
                       "run stream p50 bs4 (ms)", "run stream bs1 (img/s)", "run stream bs4 (img/s)",
                       "top1 (%)", "top5 (%)"]
    assert rows == [["m", 1.0, 2.0, 4.0, 9.0, 333.0, 800.0, 50.0, 90.0]]


def _cli(argv, capsys):
    from tritonkit.cli import main

    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_cli_missing_dataset_and_unknown_model_exit_1_with_one_line(tmp_path, capsys):
    code, err = _cli(["eval", "classify", "--model", "demo_shapes", "--data", str(tmp_path / "nope"),
                      "--no-progress", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and len(err.splitlines()) == 1 and "nope: dataset not found" in err
    code, err = _cli(["eval", "classify", "--model", "no_such_model", "--data", str(tmp_path)], capsys)
    assert code == 1 and len(err.splitlines()) == 1 and "unknown model 'no_such_model'" in err
    code, err = _cli(["eval", "classify", "--model", "yolov5s", "--data", str(tmp_path)], capsys)
    assert code == 1 and "use `tritonkit eval detect`" in err


def test_cli_unreachable_server_exit_1(tmp_path, capsys):
    make_dataset(tmp_path / "data", n_good=2)
    url = f"127.0.0.1:{_closed_port()}"
    code, err = _cli(["eval", "classify", "--model", "demo_shapes", "--data", str(tmp_path / "data"),
                      "--url", url, "--no-progress", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and len(err.splitlines()) == 1 and url in err and "unreachable" in err


def test_cli_help_is_light():
    """`tritonkit eval classify --help` must not import heavy libraries."""
    import subprocess

    code = ("import sys, tritonkit.cli as c; c.build_parser(); "
            "heavy = [m for m in ('torch', 'onnxruntime', 'tritonclient', 'cv2', 'matplotlib', 'PIL') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
