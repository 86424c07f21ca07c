"""Every query tritonkit writes returns data from a real Triton, through a real Prometheus.

The README's "Dashboard and alerts" lines, run as written (paths and ports substituted): `tritonkit
serve --local` serves the tiny classifier (the bundled tritonserver 2.51, CPU), `tritonkit deploy
observability` writes the dashboard, the rules and the Prometheus config scraping its metrics
port, and Prometheus (Debian's 2.42) runs that config on 127.0.0.1 (a free port, a temp TSDB; the
written scrape and evaluation intervals shortened to 1 s so a few scrapes fit in seconds). Under a
few threads of requests, every dashboard panel's query (Grafana's variables filled in), every
recording rule, the alerts' expressions and the prometheus-adapter rule's series and metrics
queries (from the Kubernetes manifests) are run through Prometheus' HTTP API: each returns data
for the served model. This is the check that catches a metric the server does not publish
(triton-inference-server/server#6247: "unable to get metric avg_time_queue_us").

GPU panels need a GPU and DCGM: promtool only parses them here (no GPU on this machine).
"""

from __future__ import annotations

import math
import shlex
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.deploy.alerts import alert_rules, derive_thresholds, rules_for
from tritonkit.deploy.dashboard import DashboardSpec, dashboard_json, panel_queries
from tritonkit.deploy.manifests import adapter_rule
from tritonkit.deploy.queries import REQUESTS_RECORD
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model
from tritonkit.serve.local import free_port

from support import prometheus
from support.processes import background
from support.readme import command_lines as commands

pytestmark = pytest.mark.skipif(prometheus.PROMETHEUS is None or prometheus.PROMTOOL is None,
                                reason=prometheus.MISSING)
NAMESPACE, JOB, MODEL = "tritonkit", "tritonkit-metrics", "demo_shapes"
SCRAPES = 6                # scrapes (1 s apart) before the queries run
WAIT_S = 60.0              # at most this long for them


class Load:
    """``threads`` clients sending batch-1 requests to ``MODEL`` until stopped."""

    def __init__(self, grpc_url: str, threads: int = 3):
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.done = 0
        self._clients = [grpcclient.InferenceServerClient(grpc_url) for _ in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in self._clients]

    def _run(self, client) -> None:
        x = grpcclient.InferInput("input", [1, 3, 64, 64], "FP32")
        x.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.float32))
        while not self.stop.is_set():
            try:
                client.infer(MODEL, [x])
                self.done += 1
            except Exception as exc:  # noqa: BLE001  (reported by the test)
                self.errors.append(str(exc))
                self.stop.wait(0.2)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)
        for c in self._clients:
            c.close()


def _finite(sample: dict) -> bool:
    return math.isfinite(float(sample["value"][1]))


def _of_model(result: list[dict], model: str = MODEL) -> list[dict]:
    return [s for s in result if s["metric"].get("model") == model and _finite(s)]


def _wait_for_scrapes(prom: prometheus.Prometheus, load: Load) -> None:
    """Until Prometheus has scraped the server SCRAPES times and recorded a request rate (WAIT_S at most)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        scraped = prom.query(f'count_over_time(up{{job="{JOB}"}}[1m])')
        recorded = prom.query(f'{REQUESTS_RECORD}{{job="{JOB}"}} > 0')
        if scraped and float(scraped[0]["value"][1]) >= SCRAPES and recorded:
            return
        time.sleep(0.5)
    raise AssertionError(f"after {WAIT_S:.0f} s: scrapes {scraped}, recorded {recorded}, requests {load.done}, "
                         f"errors {load.errors[:3]}; log: {prom.log.read_text()[-1500:]}")


def _grafana(expr: str) -> str:
    """A panel query as Grafana sends it: the dashboard's variables set to the served model."""
    return expr.replace("$namespace", NAMESPACE).replace("$model", MODEL).replace("$__rate_interval", "5s")


def _check_panels(prom: prometheus.Prometheus, board: dict) -> int:
    checked = 0
    for q in panel_queries(board):
        result = prom.query(_grafana(q.expr))
        if 'model=~"$model"' in q.expr:
            assert _of_model(result), (q.panel, q.legend, q.expr, result)
        else:   # the server's own series (CPU): one per scraped server
            assert result and all(_finite(s) and s["metric"].get("pod") for s in result), (q.panel, q.expr, result)
        checked += 1
    return checked


def _check_rules(prom: prometheus.Prometheus, rules_file: Path) -> None:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    for rule in groups[0]["rules"]:
        assert _of_model(prom.query(f'{rule["record"]}{{namespace="{NAMESPACE}",job="{JOB}"}}')), rule["record"]
        assert _of_model(prom.query(rule["expr"])), rule["expr"]
    loaded = prom.api("rules")["groups"]
    assert sorted(g["name"] for g in loaded) == sorted(g["name"] for g in groups)
    for group in loaded:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    states = {r["name"]: r["state"] for g in loaded for r in g["rules"] if r["type"] == "alerting"}
    assert states["TritonkitModelNotReady"] == states["TritonkitMetricsDown"] == "inactive"


def _check_alert_expressions(prom: prometheus.Prometheus) -> None:
    """The alerts' expressions on the real series, with bounds every served request crosses and one
    model of the repository that the server does not have."""
    tiny = derive_thresholds(slo_p99_ms=1e-6, queue_slo_ms=1e-9, failure_ratio=1e-9)
    rules = rules_for([MODEL, "not_served"], {MODEL: 1}, tiny, name="tritonkit", namespace=NAMESPACE)
    fired = {a.alert: prom.query(a.expr) for a in alert_rules(rules)}
    assert _of_model(fired["TritonkitQueueTimeHigh"]) and _of_model(fired["TritonkitP99AboveSLO"])
    assert fired["TritonkitFailureRatioHigh"] == [] and fired["TritonkitMetricsDown"] == []
    assert [s["metric"]["model"] for s in fired["TritonkitModelNotReady"]] == ["not_served"]


def _check_adapter(prom: prometheus.Prometheus) -> None:
    rule = adapter_rule()
    series = prom.series(rule["seriesQuery"])
    assert series and all(s["namespace"] == NAMESPACE and s["pod"] for s in series), series
    pod = series[0]["pod"]
    query = rule["metricsQuery"].replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod="{pod}"')
    result = prom.query(query.replace("<<.GroupBy>>", "pod"))
    assert len(result) == 1 and result[0]["metric"] == {"pod": pod} and _finite(result[0]), result


def _readme_lines() -> tuple[list[str], list[str], list[str]]:
    lines = commands("### Dashboard and alerts")
    serve = next(c for c in lines if c.startswith("tritonkit serve --local"))
    observe = next(c for c in lines if c.startswith("tritonkit deploy observability"))
    prom = next(c for c in lines if c.startswith("prometheus "))
    return shlex.split(serve.rstrip("&")), shlex.split(observe), shlex.split(prom)


def test_readme_observability_every_query_returns_data_from_a_real_triton(tmp_path, tiny_onnx, monkeypatch):
    write_model(get_card(MODEL), tiny_onnx, tmp_path / "model_repository", RepoOptions(target="cpu"))
    monkeypatch.chdir(tmp_path)
    serve, observe, prom_line = _readme_lines()
    http, grpc, metrics = (free_port() for _ in range(3))
    serve_argv = [sys.executable, "-m", *serve, "--http-port", str(http), "--grpc-port", str(grpc),
                  "--metrics-port", str(metrics)]
    with background(serve_argv, tmp_path / "serve.log", f"http://127.0.0.1:{http}/v2/health/ready"):
        assert main([a.replace("127.0.0.1:8002", f"127.0.0.1:{metrics}") for a in observe[1:]]) == 0
        out = tmp_path / "build" / "observability"
        config_path = out / "prometheus" / "prometheus.yml"
        assert f"--config.file={config_path.relative_to(tmp_path)}" in prom_line
        config = yaml.safe_load(config_path.read_text())
        assert config["scrape_configs"][0]["static_configs"][0]["targets"] == [f"127.0.0.1:{metrics}"]
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        with prometheus.Prometheus(config_path, tmp_path / "prometheus") as prom, Load(f"127.0.0.1:{grpc}") as load:
            readme_flags = {a.split("=")[0] for a in prom_line[1:]}
            assert readme_flags <= {a.split("=")[0] for a in prom.argv()[1:]}
            _wait_for_scrapes(prom, load)
            board = yaml.safe_load((out / "grafana" / "dashboard.json").read_text())
            assert _check_panels(prom, board) == len(panel_queries(board)) >= 17
            _check_rules(prom, out / "prometheus" / "rules.yaml")
            _check_alert_expressions(prom)
            _check_adapter(prom)
        assert load.done > 0 and not load.errors, load.errors[:3]


def test_gpu_panels_parse_with_promtool(tmp_path):
    """No GPU here: the GPU panels' queries are only parsed by promtool."""
    board = dashboard_json(DashboardSpec("tritonkit", NAMESPACE, {MODEL: 1}, gpu=True))
    gpu = [_grafana(q.expr) for q in panel_queries(board) if "nv_gpu_" in q.expr]
    assert len(gpu) == 3
    checked = prometheus.check_expressions(gpu, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
