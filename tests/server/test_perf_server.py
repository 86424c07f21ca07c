"""perf sweeps, the ladder and the config sweep against the real bundled tritonserver with the
real perf_analyzer. Checked by parsing what they wrote and by consistency, never by fixed
numbers (timings vary from run to run and host to host)."""

from __future__ import annotations

import json

import pytest

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.perf.results import parse_csv, read_rows_csv

# Short, forgiving measurements: the point is that everything runs and parses, not precision
# (windows of 0.5 s that may differ by up to 2x: stable even while other jobs load the 2 cores).
QUICK = dict(measurement_mode="time_windows", measurement_interval_ms=500, stability_pct=100, max_trials=10)


def test_short_real_sweep(tiny_server, tmp_path):
    spec = PerfSpec(model="demo_shapes", url=tiny_server.grpc_url, concurrency=ConcurrencyRange(1, 2), **QUICK)
    result = run_sweep(spec, tmp_path / "sweep", SweepOptions(batch_sizes=(1, 2)))
    assert [(p.batch_size, p.concurrency, p.status) for p in result.points] == [
        (1, 1, "ok"), (1, 2, "ok"), (2, 1, "ok"), (2, 2, "ok")]
    for p in result.points:
        # each point's own CSV is on disk and parses to the row the sweep kept
        again = parse_csv(p.csv_path, model="demo_shapes", batch_size=p.batch_size, protocol="grpc")
        assert again == p.rows and len(again) == 1 and again[0].concurrency == p.concurrency
        row = again[0]
        assert row.img_per_s > 0 and row.avg_measured           # --verbose-csv gives the average
        assert row.p50_us <= row.p99_us
        # Little's law: concurrency / latency x batch = images/s (loose: separate measurements)
        assert row.concurrency / (row.avg_us / 1e6) * row.batch_size == pytest.approx(row.img_per_s, rel=0.35)
        assert row.split.compute_infer_us > 0
    merged = read_rows_csv(result.merged_csv)
    assert [(r.batch_size, r.concurrency) for r in merged] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    status = json.loads(result.status_json.read_text())
    assert all(p["status"] == "ok" for p in status["points"])
    assert result.plot is not None and result.plot.stat().st_size > 10_000
    md = result.markdown.read_text()
    assert "| demo_shapes (grpc)" in md and "bs 2" in md


def test_cli_sweep_http_with_system_shared_memory(tiny_server, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["perf", "sweep", "--model", "demo_shapes", "--url", tiny_server.http_url, "--protocol", "http",
                 "--shm", "system", "--batch-sizes", "2", "--concurrency", "1", "--interval", "500",
                 "--stability", "100", "--no-plot", "--out", str(out)])
    assert code == 0
    rows = read_rows_csv(out / "sweep.csv")
    assert len(rows) == 1 and rows[0].shared_memory == "system" and rows[0].protocol == "http"
    assert rows[0].batch_size == 2 and rows[0].img_per_s > 0
    log = (out / "points" / "bs2_c1.log").read_text()
    assert "--shared-memory system" in log and "-i http" in log
    # --json: the sweep's tables (ms per batch, img/s, every point) on stdout, progress on stderr
    capsys.readouterr()
    assert main(["perf", "sweep", "--model", "demo_shapes", "--url", tiny_server.grpc_url, "--batch-sizes", "2",
                 "--concurrency", "1", "--interval", "500", "--stability", "100", "--no-plot",
                 "--out", str(tmp_path / "json"), "--json"]) == 0
    printed = capsys.readouterr()
    tables = json.loads(printed.out)
    (row,) = read_rows_csv(tmp_path / "json" / "sweep.csv")
    assert [t["title"] for t in tables][:2] == ["ms per batch (avg latency)", "images/s at the best concurrency"]
    assert tables[0]["rows"][0]["model"] == row.label and "bs 2" in tables[1]["headers"]
    assert tables[2]["rows"][0]["img/s"] == f"{row.img_per_s:.1f}" and "points" in printed.err


def test_cli_model_not_ready_is_one_line(tiny_server, tmp_path, capsys):
    code = main(["perf", "sweep", "--model", "no_such_model", "--url", tiny_server.grpc_url, "--out",
                 str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "no_such_model" in err and "demo_shapes" in err      # names the models that are ready


def test_ladder_side_by_side_on_the_bundled_server(tiny_onnx, tmp_path):
    """No --url: the ladder serves the ONNX on the bundled server itself (gRPC and HTTP), then stops it."""
    from tritonkit.perf.ladder import RUNG_GRPC, RUNG_HTTP, RUNG_ORT, RUNG_SHM, RUNG_STREAM, RUNG_TRTEXEC
    from tritonkit.perf.ladder import LadderOptions, run_ladder, synthetic_items

    options = LadderOptions(card=get_card("demo_shapes"), onnx=tiny_onnx, batch_size=4, concurrency=2,
                            measurement_interval_ms=500, stability_pct=100, max_trials=10,
                            images=tuple(synthetic_items(24, size=(96, 80))))
    result = run_ladder(options, tmp_path / "ladder")
    served = result.options
    assert served.grpc_url and served.http_url and served.model == "demo_shapes"
    assert "Started GRPCInferenceService" in (tmp_path / "ladder" / "tritonserver.log").read_text()
    names = [r.name for r in result.rungs]
    assert names == [RUNG_TRTEXEC, RUNG_ORT, RUNG_GRPC, RUNG_HTTP, RUNG_SHM, RUNG_STREAM]
    assert result.rung(RUNG_TRTEXEC).img_per_s is None and "not measured" in result.rung(RUNG_TRTEXEC).note
    limit = result.limit
    assert limit and limit > 0
    for name in names[1:]:
        rung = result.rung(name)
        assert rung.img_per_s is not None and rung.img_per_s > 0, rung.note
        assert rung.ratio(limit) == pytest.approx(rung.img_per_s / limit)
    saved = json.loads((tmp_path / "ladder" / "ladder.json").read_text())
    assert [r["name"] for r in saved["rungs"]] == names
    assert saved["rungs"][1]["ratio"] == pytest.approx(1.0)
    # the served rungs' raw perf_analyzer output is kept beside the report
    assert (tmp_path / "ladder" / "grpc_shm" / "points" / "bs4_c1.csv").exists() is False
    assert (tmp_path / "ladder" / "grpc_shm" / "points" / "bs4_c2.csv").is_file()


def test_tune_reloads_each_variant_and_writes_back_the_best(tiny_onnx, tmp_path):
    from tritonkit.model_repository.config import parse_config
    from tritonkit.perf.tune import TuneGrid, TuneOptions, run_tune

    # no preferred sizes: the server reports max_batch_size there, which the reload check accepts
    grid = TuneGrid(delays_us=(0, 3000), preferred=((),), instances=(1,))
    measure = PerfSpec(model="x", concurrency=ConcurrencyRange(4, 4), **QUICK)
    options = TuneOptions(card=get_card("demo_shapes"), onnx=tiny_onnx, p99_bound_ms=1000.0, grid=grid,
                          measure=measure, write_back=tmp_path / "repo")
    result = run_tune(options, tmp_path / "tune")
    assert [p.variant.max_queue_delay_us for p in result.points] == [0, 3000]
    assert all(p.row is not None and p.error is None for p in result.points)
    assert result.best is max(result.points, key=lambda p: p.row.img_per_s)
    # the config written back is the best variant's
    cfg = parse_config(result.written_back.read_text())
    assert cfg.dynamic_batching.max_queue_delay_microseconds == result.best.variant.max_queue_delay_us
    assert list(cfg.dynamic_batching.preferred_batch_size) == []
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert len(saved["points"]) == 2 and saved["best"]["label"] == result.best.variant.label
    # an unreachable bound keeps every point but picks none
    from tritonkit.perf.tune import pick_best

    assert pick_best(result.points, 1e-6) is None and not any(p.within_bound for p in result.points)
