"""PerfSpec -> perf_analyzer argv, locating the binary, and per-point fault handling of sweeps.

The sweep tests run a *fake* perf_analyzer (fault injection): a small script on a temp path that
behaves like the real binary for the flags the sweep passes — it writes a real captured CSV
(tests/data/perf) for good points, and for the points a test picks it exits non-zero with a real
captured stderr, or hangs. A real server cannot be made to fail on cue at one chosen point, so
this is the one part simulated; the real binary and server are exercised in test_perf_server.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from support.paths import DATA as TEST_DATA
from tritonkit.errors import ServerError, ToolMissingError
from tritonkit.perf.binary import analyzer_env, check_perf_analyzer, cuda_runtime_lib_dir, find_perf_analyzer
from tritonkit.perf.spec import ConcurrencyRange, PerfError, PerfSpec
from tritonkit.perf.sweep import (
    KIND_EXIT, KIND_MODEL_MISSING, KIND_QUEUE_TIMEOUT, KIND_SERVER_UNREACHABLE, KIND_TIMEOUT, KIND_UNSTABLE,
    KIND_WINDOW, SweepOptions, SweepProgress, classify_failure, minimum_point_seconds, run_sweep)
from tritonkit.perf.results import read_rows_csv

DATA = TEST_DATA / "perf"


def test_argv_count_windows_with_every_option():
    spec = PerfSpec(
        model="resnet50", url="10.0.0.2:8001", protocol="grpc", batch_size=8,
        concurrency=ConcurrencyRange(1, 4, 1), measurement_mode="count_windows", measurement_request_count=200,
        stability_pct=10, percentile=99, shared_memory="system", output_shared_memory_bytes=65536,
        max_trials=6, input_data="zero", async_mode=True, model_version="2")
    assert spec.argv("/opt/pa", "/out/p.csv") == [
        "/opt/pa", "-m", "resnet50", "-x", "2", "-u", "10.0.0.2:8001", "-i", "grpc", "-b", "8",
        "--concurrency-range", "1:4:1", "--measurement-mode", "count_windows",
        "--measurement-request-count", "200", "-s", "10", "--max-trials", "6", "--percentile", "99",
        "--input-data", "zero", "--shared-memory", "system", "--output-shared-memory-size", "65536",
        "--async", "-f", "/out/p.csv", "--verbose-csv"]


def test_argv_time_windows_defaults():
    spec = PerfSpec(model="m", url="127.0.0.1:8000", protocol="http", measurement_interval_ms=1500,
                    stability_pct=12.5, verbose_csv=False)
    assert spec.argv(Path("pa"), Path("x.csv")) == [
        "pa", "-m", "m", "-u", "127.0.0.1:8000", "-i", "http", "-b", "1", "--concurrency-range", "1:1:1",
        "--measurement-mode", "time_windows", "--measurement-interval", "1500", "-s", "12.5",
        "--max-trials", "10", "--input-data", "random", "--shared-memory", "none", "-f", "x.csv"]


def test_at_gives_a_single_point():
    spec = PerfSpec(model="m", concurrency=ConcurrencyRange.parse("1:8:2"))
    point = spec.at(4, 3)
    assert point.batch_size == 4 and point.concurrency.levels() == (3,)
    assert spec.concurrency.levels() == (1, 3, 5, 7)


@pytest.mark.parametrize("text, levels", [("4", (4,)), ("1:4", (1, 2, 3, 4)), ("2:8:3", (2, 5, 8))])
def test_concurrency_range_parse(text, levels):
    assert ConcurrencyRange.parse(text).levels() == levels


@pytest.mark.parametrize("text", ["0:4", "4:1", "1:4:0", "a:b", "1:2:3:4", ""])
def test_bad_concurrency_range(text):
    with pytest.raises(PerfError):
        ConcurrencyRange.parse(text)


@pytest.mark.parametrize("changes, match", [
    ({"protocol": "udp"}, "protocol"), ({"measurement_mode": "forever"}, "measurement mode"),
    ({"shared_memory": "gpu"}, "shared memory"), ({"batch_size": 0}, "batch size"),
    ({"percentile": 100}, "percentile"), ({"stability_pct": 0}, "stability"), ({"max_trials": 0}, "trials"),
    ({"model": ""}, "model"), ({"timeout_s": 0}, "timeout"),
])
def test_spec_validation(changes, match):
    with pytest.raises(PerfError, match=match):
        PerfSpec(**{"model": "m", **changes})


def test_missing_binary_names_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError) as err:
        find_perf_analyzer()
    message = str(err.value)
    assert "\n" not in message
    assert "pip install 'tritonclient[all]==2.50.0'" in message and "apt-get install libb64-0d" in message
    assert "LD_LIBRARY_PATH" in message
    with pytest.raises(ToolMissingError, match="not found or not executable"):
        find_perf_analyzer(tmp_path / "perf_analyzer")


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("stderr, fix", [
    ("perf_analyzer: error while loading shared libraries: libb64.so.0d: cannot open shared object file",
     "apt-get install libb64-0d"),
    ("perf_analyzer: error while loading shared libraries: libcudart.so.12: cannot open shared object file",
     "nvidia-cuda-runtime-cu12"),
])
def test_binary_that_cannot_load_its_libraries_names_the_fix(tmp_path, stderr, fix):
    fake = _script(tmp_path / "perf_analyzer", f"import sys\nsys.stderr.write({stderr!r} + '\\n')\nsys.exit(127)\n")
    with pytest.raises(ToolMissingError, match=fix):
        check_perf_analyzer(fake, analyzer_env())


def test_the_installed_binary_runs_with_the_env_we_build():
    binary = find_perf_analyzer()
    env = analyzer_env({"PATH": os.environ.get("PATH", "")})
    lib = cuda_runtime_lib_dir()
    assert lib is not None and (lib / "libcudart.so.12").exists()
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(lib)
    check_perf_analyzer(binary, env)  # raises if the binary cannot start


@pytest.mark.parametrize("file, kind", [
    ("stderr_model_missing_grpc.txt", KIND_MODEL_MISSING),
    ("stderr_model_missing_http.txt", KIND_MODEL_MISSING),
    ("stderr_server_down_grpc.txt", KIND_SERVER_UNREACHABLE),
    ("stderr_server_down_http.txt", KIND_SERVER_UNREACHABLE),
    ("stderr_unstable.txt", KIND_UNSTABLE),
    ("stderr_window_too_short.txt", KIND_WINDOW),
    ("stderr_batch_too_big.txt", KIND_EXIT),
    ("stderr_queue_timeout.txt", KIND_QUEUE_TIMEOUT),
    ("stderr_server_killed_grpc.txt", KIND_EXIT),  # ambiguous text: the sweep asks the server (liveness)
])
def test_failures_are_classified_from_real_stderr(file, kind):
    assert classify_failure(99, (DATA / file).read_text()) == kind
    assert classify_failure(None, "") == KIND_TIMEOUT


# ---- sweeps against the fake binary ------------------------------------------------------

FAKE = r'''
import json, sys, time
from pathlib import Path
args = sys.argv[1:]
if args == ["--version"]:
    print("Perf Analyzer Version 2.50.0 (fake)")
    sys.exit(0)
plan = json.loads(Path(__file__).with_name("plan.json").read_text())
opt = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-")}
bs, conc = opt["-b"], opt["--concurrency-range"].split(":")[0]
calls = Path(__file__).with_name("calls.log")
earlier = calls.read_text().split().count(f"{bs},{conc}") if calls.exists() else 0
with open(calls, "a") as log:
    log.write(f"{bs},{conc}\n")
with open(Path(__file__).with_name("argv.log"), "a") as log:
    log.write(" ".join(args) + "\n")
fault = plan["faults"].get(f"{bs},{conc}")
if fault and earlier < fault.get("times", 1000):
    time.sleep(fault.get("sleep", 0))
    sys.stderr.write(Path(fault["stderr"]).read_text() if fault.get("stderr") else "")
    sys.exit(fault.get("code", 99))
lines = Path(plan["csv"]).read_text().splitlines()
row = lines[1].split(",")
row[0] = conc
Path(opt["-f"]).write_text(lines[0] + "\n" + ",".join(row) + "\n")
'''


@pytest.fixture
def fake_pa(tmp_path):
    """Factory: ``fake_pa(faults) -> path`` of a fake perf_analyzer failing at the given points."""
    def make(faults: dict) -> Path:
        folder = tmp_path / "fakebin"
        folder.mkdir(exist_ok=True)
        (folder / "plan.json").write_text(json.dumps({"csv": str(DATA / "grpc_bs1_c1-3.csv"), "faults": faults}))
        return _script(folder / "perf_analyzer", FAKE)
    return make


def _calls(binary: Path) -> list[str]:
    log = binary.with_name("calls.log")
    return log.read_text().split() if log.exists() else []


SPEC = PerfSpec(model="demo_shapes", url="127.0.0.1:1", concurrency=ConcurrencyRange(1, 2),
                measurement_mode="count_windows", measurement_request_count=10)


def fake_sweep(binary, out, spec=SPEC, **options):
    """run_sweep with the fake binary: no readiness check, a server that always answers, no plot."""
    settings = {"check_ready": False, "liveness": lambda: True, "plot": False, **options}
    return run_sweep(spec, out, SweepOptions(binary=binary, **settings))


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, fake_pa):
    binary = fake_pa({"2,1": {"code": 99, "stderr": str(DATA / "stderr_batch_too_big.txt")}})
    result = fake_sweep(binary, tmp_path / "out", batch_sizes=(1, 2))
    assert _calls(binary) == ["1,1", "1,2", "2,1", "2,2"]
    assert [p.status for p in result.points] == ["ok", "ok", "failed", "ok"]
    bad = result.points[2]
    assert bad.error_kind == KIND_EXIT and "exit code 99" in bad.error
    assert "batch-size must be <= 64" in bad.stderr_tail
    assert bad.log_path.is_file() and "batch-size must be" in bad.log_path.read_text()
    # finished points: CSVs kept, merged table has exactly their rows
    assert sorted(p.name for p in (tmp_path / "out" / "points").glob("*.csv")) == \
        ["bs1_c1.csv", "bs1_c2.csv", "bs2_c2.csv"]
    merged = read_rows_csv(result.merged_csv)
    assert [(r.batch_size, r.concurrency) for r in merged] == [(1, 1), (1, 2), (2, 2)]
    status = json.loads(result.status_json.read_text())
    assert [p["status"] for p in status["points"]] == ["ok", "ok", "failed", "ok"]
    assert "batch-size must be" in result.markdown.read_text()
    assert result.stopped_reason is None


def test_queue_timeout_is_named_with_its_cause_and_the_sweep_goes_on(tmp_path, fake_pa):
    binary = fake_pa({"1,2": {"code": 99, "stderr": str(DATA / "stderr_queue_timeout.txt")}})
    result = fake_sweep(binary, tmp_path / "out")
    assert [p.status for p in result.points] == ["ok", "failed"]
    bad = result.points[1]
    assert bad.error_kind == KIND_QUEUE_TIMEOUT and bad.attempts == 1
    assert "Request timeout expired" in bad.error and "queue policy" in bad.error and "\n" not in bad.error
    assert "queue policy" in result.markdown.read_text()


def test_model_missing_stops_the_sweep_and_keeps_what_was_measured(tmp_path, fake_pa):
    binary = fake_pa({"1,2": {"stderr": str(DATA / "stderr_model_missing_grpc.txt")}})
    result = fake_sweep(binary, tmp_path / "out", batch_sizes=(1, 2))
    assert _calls(binary) == ["1,1", "1,2"]
    assert [p.status for p in result.points] == ["ok", "failed", "skipped", "skipped"]
    assert result.points[1].error_kind == KIND_MODEL_MISSING
    assert "model_missing" in result.stopped_reason
    assert (tmp_path / "out" / "points" / "bs1_c1.csv").is_file()
    assert len(read_rows_csv(result.merged_csv)) == 1


def test_server_dying_mid_sweep_is_detected_by_the_liveness_check(tmp_path, fake_pa):
    """The stderr of a killed server ("Socket closed") is ambiguous; the sweep asks the server."""
    binary = fake_pa({"1,2": {"stderr": str(DATA / "stderr_server_killed_grpc.txt")}})
    asked = []

    def dead() -> bool:
        asked.append(1)
        return False

    result = fake_sweep(binary, tmp_path / "out", batch_sizes=(1, 2), liveness=dead)
    assert asked == [1]                       # asked once, after the failure only
    assert result.points[1].error_kind == KIND_SERVER_UNREACHABLE
    assert "stopped answering" in result.points[1].error
    assert [p.status for p in result.points] == ["ok", "failed", "skipped", "skipped"]


def test_a_hanging_point_is_killed_at_the_timeout(tmp_path, fake_pa):
    binary = fake_pa({"1,1": {"sleep": 30}})
    spec = PerfSpec(model="m", url="127.0.0.1:1", concurrency=ConcurrencyRange(1, 2), timeout_s=1.0)
    result = fake_sweep(binary, tmp_path / "out", spec)
    assert result.points[0].error_kind == KIND_TIMEOUT and result.points[0].seconds < 10
    assert result.points[1].ok


def test_stop_on_error(tmp_path, fake_pa):
    binary = fake_pa({"1,1": {"code": 2, "stderr": str(DATA / "stderr_unstable.txt")}})
    result = fake_sweep(binary, tmp_path / "out", stop_on_error=True)
    assert [p.status for p in result.points] == ["failed", "skipped"]
    assert result.points[0].error_kind == KIND_UNSTABLE and "--max-trials" in result.points[0].error
    assert result.points[0].attempts == 2 and _calls(binary) == ["1,1", "1,1"]


def test_unstable_point_is_measured_again_with_longer_windows(tmp_path, fake_pa):
    binary = fake_pa({"1,1": {"code": 2, "stderr": str(DATA / "stderr_unstable.txt"), "times": 1}})
    result = fake_sweep(binary, tmp_path / "out")
    assert [p.status for p in result.points] == ["ok", "ok"]
    assert result.points[0].attempts == 2 and result.points[1].attempts == 1
    argvs = binary.with_name("argv.log").read_text().splitlines()
    assert "--measurement-request-count 10 " in argvs[0] and "--measurement-request-count 20 " in argvs[1]
    # both attempts are in the point's log
    assert result.points[0].log_path.read_text().count("--- stderr") == 2
    no_retry = fake_sweep(fake_pa({"1,1": {"code": 3, "times": 99, "stderr": str(
        DATA / "stderr_window_too_short.txt")}}), tmp_path / "out2", unstable_retries=0)
    assert no_retry.points[0].status == "failed" and no_retry.points[0].attempts == 1


def test_interrupted_sweep_keeps_the_finished_points(tmp_path, fake_pa):
    binary = fake_pa({})

    def interrupt(progress):
        if progress.point.concurrency == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake_sweep(binary, tmp_path / "out", batch_sizes=(1, 2), on_progress=interrupt, plot=True)
    merged = read_rows_csv(tmp_path / "out" / "sweep.csv")
    assert [(r.batch_size, r.concurrency) for r in merged] == [(1, 1), (1, 2)]
    assert (tmp_path / "out" / "latency_throughput.png").is_file()


def test_no_server_fails_before_the_first_point(tmp_path):
    """The real binary and tritonclient against a port nobody listens on."""
    from tritonkit.serve.local import free_port

    spec = PerfSpec(model="m", url=f"127.0.0.1:{free_port()}")
    with pytest.raises(ServerError) as err:
        run_sweep(spec, tmp_path / "out")
    assert "Triton server at grpc 127.0.0.1:" in str(err.value) and "is unreachable" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


# ---- ladder and tune pieces that need no server --------------------------------------------

def test_windows_stable_follows_perf_analyzers_rule():
    from tritonkit.perf.ladder import windows_stable

    assert not windows_stable([100, 100], 10)                 # fewer than three windows
    assert windows_stable([50, 100, 105, 109], 10)             # only the last three count
    assert not windows_stable([100, 105, 111], 10)             # 111/100 - 1 = 11% > 10%


def test_in_process_onnxruntime_measurement(tiny_onnx):
    from tritonkit.cards import get_card
    from tritonkit.perf.ladder import measure_onnxruntime

    r = measure_onnxruntime(tiny_onnx, get_card("demo_shapes"), 4, window_s=0.1, stability_pct=100, max_windows=6)
    assert r.img_per_s > 0 and r.batches >= len(r.windows_img_per_s)
    assert r.ms_per_batch == pytest.approx(4 / r.img_per_s * 1e3)
    assert 3 <= len(r.windows_img_per_s) <= 6


def test_synthetic_images_decode_to_the_asked_size():
    from tritonkit.client.decode import decode_image
    from tritonkit.perf.ladder import synthetic_items

    items = synthetic_items(3, size=(120, 90))
    assert len({it.key for it in items}) == 3 and len({it.read_bytes() for it in items}) == 3
    assert decode_image(items[0].read_bytes()).image.shape == (90, 120, 3)


def test_trtexec_rung_is_reported_not_measured_with_a_reason():
    from tritonkit.perf.ladder import trtexec_rung

    rung = trtexec_rung()
    assert rung.img_per_s is None and rung.ratio(100.0) is None
    assert rung.note.startswith("not measured") and "GPU" in rung.note


def test_trtexec_argv_and_summary_parsing():
    from tritonkit.perf.ladder import parse_trtexec_perf, trtexec_bench_argv

    assert trtexec_bench_argv("trtexec", "/m/model.plan", "input", (8, 3, 64, 64), duration_s=4) == [
        "trtexec", "--loadEngine=/m/model.plan", "--shapes=input:8x3x64x64", "--warmUp=500", "--duration=4"]
    perf = parse_trtexec_perf((DATA / "trtexec_summary_format.txt").read_text())
    assert perf.qps == 1250.5 and perf.img_per_s(8) == pytest.approx(1250.5 * 8)
    # the end-to-end "Latency:" line, not H2D / D2H / GPU compute
    assert perf.latency_ms == {"min": 0.75, "max": 2.5, "mean": 0.81, "median": 0.79,
                               "p90": 0.84, "p95": 0.88, "p99": 1.2}
    assert perf.gpu_compute_ms["mean"] == 0.76
    from tritonkit.errors import TritonkitError

    with pytest.raises(TritonkitError, match="Throughput"):
        parse_trtexec_perf("&&&& PASSED TensorRT.trtexec [TensorRT v100500] # trtexec --skipInference\n")


def test_trtexec_rung_measured_with_a_plan_and_becomes_the_limit(tmp_path):
    from tritonkit.cards import get_card
    from tritonkit.perf.ladder import RUNG_ORT, LadderOptions, LadderResult, Rung, trtexec_rung

    card = get_card("demo_shapes")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine")
    fake = _script(tmp_path / "trtexec", f"""import sys
from pathlib import Path
Path({str(tmp_path / "argv.txt")!r}).write_text(" ".join(sys.argv[1:]))
sys.stdout.write(Path({str(DATA / "trtexec_summary_format.txt")!r}).read_text())
""")
    rung = trtexec_rung(plan, card, 4, trtexec=str(fake), duration_s=2, log_path=tmp_path / "trtexec.log")
    assert (tmp_path / "argv.txt").read_text() == (
        f"--loadEngine={plan} --shapes={card.input.name}:4x{'x'.join(map(str, card.input.dims))} "
        "--warmUp=500 --duration=2")
    assert rung.img_per_s == pytest.approx(1250.5 * 4) and rung.p99_ms == 1.2
    assert "Throughput: 1250.5 qps" in (tmp_path / "trtexec.log").read_text()
    result = LadderResult(LadderOptions(card=card, onnx=tmp_path / "m.onnx", grpc_url="x", batch_size=4),
                          [rung, Rung(RUNG_ORT, "onnxruntime", 1000.0)])
    assert result.limit_rung is rung and result.rungs[1].ratio(result.limit) == pytest.approx(1000 / (1250.5 * 4))
    assert "trtexec" in result.table().note and result.to_json()["limit_rung"] == rung.name
    # without a measured trtexec figure the limit is in-process onnxruntime
    result.rungs[0] = trtexec_rung(None, card, 4, trtexec=str(fake))
    assert result.limit == 1000.0 and "--plan" in result.rungs[0].note
    # a failing trtexec is a row with its reason, not a crash
    failing = _script(tmp_path / "trtexec_bad", "import sys\nprint('[E] Error[1]: engine deserialization failed')\n"
                                                "print('&&&& FAILED TensorRT.trtexec')\nsys.exit(1)\n")
    bad = trtexec_rung(plan, card, 4, trtexec=str(failing))
    assert bad.img_per_s is None and bad.note.startswith("failed: trtexec exit code 1")
    assert "deserialization failed" in bad.note


def test_tune_grid_and_preferred_parsing():
    from tritonkit.errors import TritonkitError
    from tritonkit.perf.tune import TuneGrid, parse_preferred

    assert parse_preferred("4,8") == ((4,), (8,))
    assert parse_preferred("4+8,none") == ((4, 8), ())
    with pytest.raises(TritonkitError):
        parse_preferred("4,x")
    grid = TuneGrid((0, 100), ((4,), (8,)), (1, 2))
    variants = grid.variants()
    assert len(variants) == 8 and len({v.label for v in variants}) == 8
    with pytest.raises(TritonkitError):
        TuneGrid((-1,), ((4,),), (1,))


def test_tune_variant_becomes_repo_options_the_config_writer_accepts():
    from tritonkit.cards import get_card
    from tritonkit.model_repository.config import RepoOptions, model_config
    from tritonkit.perf.tune import Variant

    options = Variant(500, (4, 8), 2).repo_options(RepoOptions(target="cpu", intra_op_threads=1))
    cfg = model_config(get_card("demo_shapes"), options)
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.instance_group[0].count == 2
    assert cfg.parameters["intra_op_threads"].string_value == "1"


def test_pick_best_respects_the_bound():
    from tritonkit.perf.results import parse_csv
    from tritonkit.perf.tune import TunePoint, Variant, pick_best

    rows = parse_csv(DATA / "grpc_bs1_c1-3.csv", model="m", batch_size=1)   # real rows, 3 concurrencies
    points = [TunePoint(Variant(d, (), 1), row) for d, row in zip((0, 100, 500), rows)]
    points.append(TunePoint(Variant(900, (), 1), None, error="reload failed"))
    fastest = max(points[:3], key=lambda p: p.row.img_per_s)
    assert pick_best(points, 1e9) is fastest
    tight = min(p.row.p99_us for p in points[:3]) / 1000.0
    best = pick_best(points, tight)
    assert best is not None and best.row.p99_us / 1000.0 <= tight
    assert [p.within_bound for p in points].count(True) == 1 and not points[3].within_bound


def test_ladder_names_its_baseline_and_flags_rungs_above_it_as_noisy(tmp_path):
    from tritonkit.cards import get_card
    from tritonkit.perf.ladder import RUNG_GRPC, RUNG_HTTP, RUNG_ORT, LadderOptions, LadderResult, Rung

    card = get_card("demo_shapes")
    result = LadderResult(LadderOptions(card=card, onnx=tmp_path / "m.onnx", grpc_url="x", batch_size=4),
                          [Rung(RUNG_ORT, "onnxruntime", 1000.0), Rung(RUNG_GRPC, "perf_analyzer", 1480.0),
                           Rung(RUNG_HTTP, "perf_analyzer", 900.0)])
    table = result.table()
    assert "compute limit" not in table.note
    assert "onnxruntime in-process at the same batch size (4)" in table.note and "noise" in table.note
    grpc_row = next(row for row in table.rows if row[0] == RUNG_GRPC)
    http_row = next(row for row in table.rows if row[0] == RUNG_HTTP)
    assert "noisy: 48% above the baseline" in grpc_row[-1] and "noisy" not in http_row[-1]
    data = result.to_json()
    assert data["noisy"] == [RUNG_GRPC] and data["baseline"].startswith(RUNG_ORT)


def test_sweep_reports_progress_with_an_estimate_and_the_retries(tmp_path, fake_pa):
    binary = fake_pa({"1,1": {"code": 2, "stderr": str(DATA / "stderr_unstable.txt"), "times": 1}})
    seen: list[SweepProgress] = []
    result = fake_sweep(binary, tmp_path / "out", batch_sizes=(1, 2), on_progress=seen.append)
    assert [(p.done, p.left, p.total) for p in seen] == [(1, 3, 4), (2, 2, 4), (3, 1, 4), (4, 0, 4)]
    assert all(p.elapsed_s > 0 for p in seen) and seen[-1].eta_s == 0
    assert seen[0].eta_s == pytest.approx(seen[0].elapsed_s * 3)  # the mean time per point, times the points left
    assert [p.retries for p in seen] == [1, 1, 1, 1] and seen[0].point.retried_for == [KIND_UNSTABLE]
    status = json.loads(result.status_json.read_text())
    assert status["points"][0]["retries"] == 1 and status["points"][0]["retried_for"] == [KIND_UNSTABLE]
    assert "### points measured again" in result.markdown.read_text()
    assert "bs 1, concurrency 1: measured 2 times (unstable" in result.markdown.read_text()
    assert minimum_point_seconds(PerfSpec(model="m", measurement_interval_ms=2000)) == 6.0
