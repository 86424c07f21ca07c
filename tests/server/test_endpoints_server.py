"""perf and validate with several endpoints, against two real bundled tritonservers on loopback
(plus a port nobody listens on, standing for a replica that is down), and the HTTP client.

* ``perf sweep --url a,b,dead``: perf_analyzer takes one server, so the CLI says it runs one
  sweep per endpoint, each into its own folder, compares them in endpoints.md, reports the
  dead endpoint and exits 1;
* ``validate --url a,b,dead``: readiness, contract and correctness at every endpoint (the dead
  one fails readiness), bad requests once, at the first ready endpoint;
* an HTTP eval through two endpoints spreads the batches over both and counts each once.
"""

from __future__ import annotations

import json

import pytest

from support.classify_data import make_dataset
from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.evaluate import evaluate
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.results import read_rows_csv
from tritonkit.serve.local import free_port
from tritonkit.tasks.classify.task import ClassificationOptions
from tritonkit.validate import ValidateOptions, validate


@pytest.fixture
def two_servers(tmp_path, tiny_onnx, start_server):
    repo = tmp_path / "repo"
    write_model(get_card("demo_shapes"), tiny_onnx, repo, RepoOptions(target="cpu", max_queue_delay_us=2000))
    return start_server(repo), start_server(repo)


def test_perf_sweeps_each_endpoint_on_its_own_and_reports_a_dead_one(two_servers, tmp_path, capsys):
    a, b = two_servers
    dead = f"127.0.0.1:{free_port()}"
    out = tmp_path / "perf"
    code = main(["perf", "sweep", "--model", "demo_shapes", "--url", f"{a.grpc_url},{b.grpc_url},{dead}",
                 "--batch-sizes", "1", "--concurrency", "1", "--interval", "500", "--stability", "100",
                 "--no-plot", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1  # the dead endpoint could not be measured
    assert "perf measures one server at a time: 3 endpoints" in printed, printed
    for server in (a, b):
        folder = out / server.grpc_url.replace(":", "_")
        rows = read_rows_csv(folder / "sweep.csv")
        assert len(rows) == 1 and rows[0].img_per_s > 0
        assert f"-u {server.grpc_url}" in (folder / "points" / "bs1_c1.log").read_text()
    summary = {e["endpoint"]: e for e in json.loads((out / "endpoints.json").read_text())["endpoints"]}
    assert summary[a.grpc_url]["best_img_per_s"] > 0 and summary[b.grpc_url]["best_img_per_s"] > 0
    assert summary[dead]["best_img_per_s"] is None and dead in summary[dead]["note"]
    md = (out / "endpoints.md").read_text()
    assert a.grpc_url in md and b.grpc_url in md and "one server at a time" in md


def test_validate_checks_every_endpoint_and_stresses_one(two_servers, tmp_path):
    a, b = two_servers
    dead = f"127.0.0.1:{free_port()}"
    report = validate(ValidateOptions(models=("demo_shapes",), url=f"{a.grpc_url},{b.grpc_url},{dead}",
                                      checks=("readiness", "contract", "correctness", "bad_requests"),
                                      api_key_env="TRITONKIT_TEST_UNSET_KEY", out=tmp_path))
    by_endpoint: dict[str, list] = {}
    for c in report.checks:
        by_endpoint.setdefault(c.figures["endpoint"], []).append(c)
        assert c.detail.startswith(c.figures["endpoint"] + ": ")
    assert set(by_endpoint) == {a.grpc_url, b.grpc_url, dead}
    for good in (a.grpc_url, b.grpc_url):
        groups = {c.group for c in by_endpoint[good]}
        assert {"readiness", "contract", "correctness"} <= groups
        assert all(c.passed for c in by_endpoint[good]), [(c.name, c.detail) for c in by_endpoint[good]]
    assert [c.group for c in by_endpoint[b.grpc_url]].count("bad_requests") == 0  # stressed once, at a
    assert "bad_requests" in {c.group for c in by_endpoint[a.grpc_url]}
    assert not report.passed and all(not c.passed for c in by_endpoint[dead])
    assert report.server["shared_checks_at"] == a.grpc_url
    assert report.server["ready_endpoints"] == [a.grpc_url, b.grpc_url]
    assert json.loads((tmp_path / "validation.json").read_text())["server"]["endpoints"] == [
        a.grpc_url, b.grpc_url, dead]


def test_validate_refuses_one_http_url_for_several_endpoints(tmp_path, capsys):
    code = main(["validate", "--url", "127.0.0.1:1,127.0.0.1:2", "--http-url", "127.0.0.1:3",
                 "--models", "demo_shapes", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "--http-url name one server" in err, err


def test_an_http_eval_spreads_over_two_endpoints_and_counts_each_batch_once(two_servers, tmp_path):
    a, b = two_servers
    expect = make_dataset(tmp_path / "data", n_good=20)
    result = evaluate("classify", ClassificationOptions(
        model="demo_shapes", data=tmp_path / "data", out=tmp_path / "out", url=f"{a.http_url},{b.http_url}",
        protocol="http", batch_sizes=(2,), in_flight=2, timing_images=0, progress=False)).to_dict()
    assert result["images"] == expect["good"]
    endpoints = result["endpoints"]["endpoints"]
    assert {e["address"] for e in endpoints} == {a.http_url, b.http_url}
    assert all(e["ok"] > 0 and e["errors"] == 0 for e in endpoints)
    assert sum(e["ok"] for e in endpoints) == -(-expect["good"] // 2)
    assert sum(e["images"] for e in endpoints) == expect["good"]
    assert sum(e["share"] for e in endpoints) == pytest.approx(1.0, abs=1e-3)
