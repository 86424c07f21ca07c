"""perf sweep, ladder and tune on a served segmenter (variable height and width) and its argmax
ensemble, against the real bundled tritonserver with the real perf_analyzer. The tiny segmenter
is served under the demo_seg card (input [3, -1, -1], dynamic_shape opt 64x85). Checked by what
perf_analyzer was asked and what it wrote, never by timings."""

from __future__ import annotations

import json

import pytest

from support.onnx_models import tiny_segmenter
from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.errors import TritonkitError
from tritonkit.model_repository.config import RepoOptions
from support.chains import write_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.spec import ConcurrencyRange, InputShape, PerfSpec, card_input_shapes, served_input_shapes
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.perf.ladder import (
    RUNG_GRPC, RUNG_ORT, RUNG_STREAM, LadderOptions, measure_onnxruntime, run_ladder, synthetic_items)
from tritonkit.perf.results import read_rows_csv

CARD = get_card("demo_seg")
QUICK = dict(measurement_mode="time_windows", measurement_interval_ms=500, stability_pct=100, max_trials=10)


@pytest.fixture(scope="module")
def seg_server(tmp_path_factory, served_repository):
    """demo_seg (the tiny segmenter on the cpu target) and demo_seg_ensemble_argmax."""
    root = tmp_path_factory.mktemp("segperf")
    onnx = tiny_segmenter(root / "seg.onnx")
    repo = root / "repo"
    write_model(CARD, onnx, repo, RepoOptions(target="cpu"))
    write_chain(CARD, repo, "demo_seg")
    server = served_repository(repo=repo).server
    server.onnx = onnx
    return server


def test_ladder_options_and_in_process_rung_take_the_override(tmp_path):
    onnx = tiny_segmenter(tmp_path / "seg.onnx")
    options = LadderOptions(card=CARD, onnx=onnx, grpc_url="127.0.0.1:1", batch_size=2, shape_hw=(32, 40))
    assert options.input_shape == (2, 3, 32, 40)
    assert LadderOptions(card=CARD, onnx=onnx, grpc_url="127.0.0.1:1", batch_size=2).input_shape == (2, 3, 64, 85)
    with pytest.raises(TritonkitError, match="shape_hw"):
        LadderOptions(card=CARD, onnx=onnx, grpc_url="127.0.0.1:1", shape_hw=(0, 40))
    r = measure_onnxruntime(onnx, CARD, 2, window_s=0.05, max_windows=3, shape_hw=(32, 40))
    assert r.batches > 0 and r.img_per_s > 0


def test_card_shapes_take_the_opt_size_or_the_override():
    assert card_input_shapes(CARD) == (InputShape("input", (3, 64, 85)),)
    assert card_input_shapes(CARD, (32, 48)) == (InputShape("input", (3, 32, 48)),)
    assert card_input_shapes(get_card("demo_shapes")) == ()
    argv = PerfSpec(model="demo_seg", input_shapes=card_input_shapes(CARD)).argv("perf_analyzer", "x.csv")
    assert argv[argv.index("--shape") + 1] == "input:3,64,85"
    assert "--shape" not in PerfSpec(model="demo_shapes").argv("perf_analyzer", "x.csv")
    with pytest.raises(TritonkitError, match="positive"):
        InputShape("input", (3, 0, 8))
    with pytest.raises(TritonkitError, match="shape_hw"):
        card_input_shapes(CARD, (64,))


def test_served_shapes_come_from_the_embedded_card_also_behind_the_ensemble(seg_server):
    for model in ("demo_seg", "demo_seg_ensemble_argmax"):
        assert served_input_shapes(seg_server.grpc_url, "grpc", model) == (InputShape("input", (3, 64, 85)),)
    assert served_input_shapes(seg_server.http_url, "http", "demo_seg", (40, 56)) == (
        InputShape("input", (3, 40, 56)),)


def test_sweep_of_the_segmenter_records_the_shape(seg_server, tmp_path):
    spec = PerfSpec(model="demo_seg", url=seg_server.grpc_url, concurrency=ConcurrencyRange(1, 1),
                    input_shapes=card_input_shapes(CARD), **QUICK)
    result = run_sweep(spec, tmp_path / "sweep", SweepOptions(plot=False))
    assert [p.status for p in result.points] == ["ok"], result.points[0].error
    assert result.rows[0].img_per_s > 0
    status = json.loads(result.status_json.read_text())
    assert status["spec"]["input_shapes"] == ["input:3,64,85"]
    assert "input shape input:3,64,85" in result.markdown.read_text()
    assert "--shape input:3,64,85" in result.points[0].log_path.read_text()


def test_cli_sweep_of_the_argmax_ensemble_finds_the_shape_and_takes_an_override(seg_server, tmp_path):
    out = tmp_path / "cli"
    code = main(["perf", "sweep", "--model", "demo_seg_ensemble_argmax", "--url", seg_server.grpc_url,
                 "--batch-sizes", "2", "--concurrency", "1", "--interval", "500", "--stability", "100",
                 "--shape-hw", "48,40", "--no-plot", "--out", str(out)])
    assert code == 0
    rows = read_rows_csv(out / "sweep.csv")
    assert len(rows) == 1 and rows[0].batch_size == 2 and rows[0].img_per_s > 0
    assert "--shape input:3,48,40" in (out / "points" / "bs2_c1.log").read_text()
    assert json.loads((out / "points.json").read_text())["spec"]["input_shapes"] == ["input:3,48,40"]


def test_ladder_of_the_segmenter(seg_server, tmp_path):
    options = LadderOptions(card=CARD, onnx=seg_server.onnx, grpc_url=seg_server.grpc_url, batch_size=2,
                            concurrency=1, measurement_interval_ms=500, stability_pct=100, max_trials=10,
                            images=tuple(synthetic_items(8, size=(96, 72))))
    result = run_ladder(options, tmp_path / "ladder")
    for name in (RUNG_ORT, RUNG_GRPC, RUNG_STREAM):
        rung = result.rung(name)
        assert rung.img_per_s and rung.img_per_s > 0, (name, rung.note)
    data = json.loads((tmp_path / "ladder" / "ladder.json").read_text())
    assert data["input_shape"] == [2, 3, 64, 85]
    assert "input 3x64x85" in (tmp_path / "ladder" / "ladder.md").read_text()
    assert "--shape input:3,64,85" in (tmp_path / "ladder" / "grpc" / "points" / "bs2_c1.log").read_text()


def test_cli_tune_of_the_segmenter_at_an_override_size(seg_server, tmp_path):
    """One variant on tune's own bundled server (explicit model control)."""
    out = tmp_path / "tune"
    code = main(["perf", "tune", "--model", "demo_seg", "--onnx", str(seg_server.onnx), "--p99-ms", "60000",
                 "--delays", "0", "--preferred", "none", "--instances", "1", "--concurrency", "1",
                 "--interval", "500", "--stability", "100", "--shape-hw", "64,72", "--out", str(out)])
    assert code == 0
    logs = list((out / "points").rglob("bs1_c1.log"))
    assert len(logs) == 1 and "--shape input:3,64,72" in logs[0].read_text()
    assert json.loads(next((out / "points").rglob("points.json")).read_text())["spec"]["input_shapes"] == [
        "input:3,64,72"]
