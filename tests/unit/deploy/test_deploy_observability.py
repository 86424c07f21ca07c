"""The dashboard and alert rules that deploy k8s / deploy observability write, checked offline.

promtool (Debian's prometheus package, which scripts/setup.sh installs) parses every dashboard
query and the rules, and runs the promtool tests written beside the rules: each alert fires on
synthetic series that cross its threshold and stays silent on series that do not. That those
tests can fail is shown by breaking each alert in turn. The same queries against a real
Prometheus scraping a real Triton: tests/server/test_observability_server.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tritonkit.cards import get_card
from tritonkit.cli import build_parser, main
from tritonkit.deploy import DeploySpec, RepositorySource, read_repository, write_deployment
from tritonkit.deploy.alerts import Thresholds, alert_rules, derive_thresholds, rules_for
from tritonkit.deploy.dashboard import DashboardSpec, dashboard_json, panel_queries
from tritonkit.deploy.observability import instances_of
from tritonkit.deploy.queries import P99_RECORD
from tritonkit.deploy.spec import DeployError
from tritonkit.errors import TritonkitError
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.results import LatencySplit, PerfRow, write_rows_csv
from tritonkit.serve.local import Ports, ServerOptions, server_argv, server_paths
from tritonkit.serve.metrics import SUMMARY_QUANTILES, metrics_flags
from tritonkit.serve.profiles import docker_args

from support import prometheus
from support.chains import write_model_and_chain
from support.onnx_models import tiny_yolo_onnx
from support.readme import command_lines as commands

needs_promtool = pytest.mark.skipif(prometheus.PROMTOOL is None, reason=prometheus.MISSING)
README = "### Dashboard and alerts"


@pytest.fixture(scope="module")
def cpu_repo(tmp_path_factory, tiny_onnx) -> Path:
    """A classifier, and a detector with its NMS model and ensemble (an ensemble has no instances)."""
    root = tmp_path_factory.mktemp("obs")
    repo = root / "model_repository"
    write_model(get_card("demo_shapes"), tiny_onnx, repo, RepoOptions(target="cpu", instances=2))
    write_model_and_chain(get_card("demo_shapes_det"), tiny_yolo_onnx(root / "yolo.onnx"), repo, "ap",
                          RepoOptions(target="cpu"))
    return repo


def _board(repo: Path, gpu: bool) -> dict:
    return dashboard_json(DashboardSpec("tritonkit", "serving", instances_of(read_repository(repo)), gpu))


def _thresholds(**kw) -> Thresholds:
    return derive_thresholds(slo_p99_ms=50.0, queue_target_us=10_000, **kw)


def test_dashboard_has_every_panel_the_operator_needs(cpu_repo):
    board = _board(cpu_repo, gpu=False)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "namespace", "model"]
    assert board["templating"]["list"][1]["current"]["value"] == "serving"
    panels = {p["title"]: p for p in board["panels"] if p["type"] == "timeseries"}
    exprs = {t: [q["expr"] for q in p["targets"]] for t, p in panels.items()}
    assert "sum by (model, version, reason)" in exprs["Failures by reason"][0]
    split = exprs["Queue vs compute time per request"]
    for metric in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert sum(f"nv_inference_{metric}_duration_us" in e for e in split) == 1
    assert all("/ clamp_min(sum by (model, version) (rate(nv_inference_request_success" in e for e in split)
    quantiles = [re.search(r'quantile="([0-9.]+)"', e).group(1) for e in exprs["Server latency p50 / p99"]]
    assert quantiles == ["0.5", "0.99", "0.99"] and {float(q) for q in quantiles} <= set(SUMMARY_QUANTILES)
    assert any(f"summary_quantiles=0.5:" in f for f in metrics_flags())
    batch = exprs["Executed batch size"][0]
    assert batch.index("nv_inference_count{") < batch.index("/") < batch.index("nv_inference_exec_count{")
    assert "nv_inference_pending_request_count" in exprs["Pending requests"][0]
    util = exprs["Instance utilisation"][0]   # demo_shapes has 2 instances; the ensemble none
    assert 'label_replace(vector(2), "model", "demo_shapes", "", "")' in util and "ensemble" not in util
    assert not any("nv_gpu" in e for es in exprs.values() for e in es)
    for title, es in exprs.items():
        per_model = not title.startswith("CPU")
        for e in es:
            assert 'namespace=~"$namespace"' in e and ('model=~"$model"' in e) == per_model, (title, e)
            assert "[$__rate_interval]" in e or "rate(" not in e
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cell & cells, p["title"]
        cells |= cell


def test_gpu_target_adds_the_gpu_panels(cpu_repo):
    cpu, gpu = _board(cpu_repo, gpu=False), _board(cpu_repo, gpu=True)
    extra = [q for q in panel_queries(gpu) if q not in panel_queries(cpu)]
    assert {q.panel for q in extra} == {"GPU utilisation", "GPU memory"}
    assert {q.expr.split("{")[0] for q in extra} == {"nv_gpu_utilization", "nv_gpu_memory_used_bytes",
                                                      "nv_gpu_memory_total_bytes"}


@needs_promtool
def test_promtool_parses_every_dashboard_query(cpu_repo, tmp_path):
    grafana = {"$__rate_interval": "1m", "$namespace": "serving", "$model": ".*"}
    exprs = []
    for q in panel_queries(_board(cpu_repo, gpu=True)):
        expr = q.expr
        for var, value in grafana.items():
            expr = expr.replace(var, value)
        exprs.append(expr)
    checked = prometheus.check_expressions(exprs, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
    broken = prometheus.check_expressions([exprs[0].replace(")", "", 1)], tmp_path)
    assert broken.returncode != 0


def _deploy(repo: Path, out: Path, **kw):
    spec = DeploySpec(source=RepositorySource(kind="pvc", ref="models"), namespace="serving", max_replicas=6)
    return write_deployment(spec, repo, out, thresholds=_thresholds(), **kw)


@needs_promtool
def test_written_rules_pass_promtool_and_every_alert_is_tested(cpu_repo, tmp_path):
    result = _deploy(cpu_repo, tmp_path)
    rules_dir = tmp_path / "observability" / "prometheus"
    checked = prometheus.promtool("check", "rules", str(rules_dir / "rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = prometheus.promtool("test", "rules", "rules.test.yaml", cwd=rules_dir)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    groups = yaml.safe_load((rules_dir / "rules.yaml").read_text())["groups"]
    alerts = [r["alert"] for r in groups[1]["rules"]]
    assert alerts == ["TritonkitQueueTimeHigh", "TritonkitFailureRatioHigh", "TritonkitP99AboveSLO",
                      "TritonkitModelNotReady", "TritonkitMetricsDown", "TritonkitReplicasAtMax",
                      "TritonkitPodsNotReady"]
    names = [t["name"] for t in yaml.safe_load((rules_dir / "rules.test.yaml").read_text())["tests"]]
    for alert in alerts:
        assert f"{alert} fires" in names and f"{alert} stays silent" in names
    assert all(r["annotations"]["runbook"] for r in groups[1]["rules"])
    # the PrometheusRule of the autoscale overlay holds the same groups
    rule = yaml.safe_load((tmp_path / "overlays" / "autoscale" / "prometheusrule.yaml").read_text().split("\n", 1)[1])
    assert rule["kind"] == "PrometheusRule" and rule["metadata"]["namespace"] == "serving"
    assert rule["spec"]["groups"] == groups
    kustomization = yaml.safe_load((tmp_path / "overlays" / "autoscale" / "kustomization.yaml").read_text())
    assert "prometheusrule.yaml" in kustomization["resources"]
    assert result.observability.alerts == alerts
    # each model of the repository (ensemble and NMS model included) is watched for readiness
    not_ready = next(r for r in groups[1]["rules"] if r["alert"] == "TritonkitModelNotReady")["expr"]
    assert all(f'"model", "{m}"' in not_ready for m in read_repository(cpu_repo).names)


@needs_promtool
def test_promtool_tests_fail_when_the_alerts_are_broken(cpu_repo, tmp_path):
    """Every alert never fires (each 'fires' test must fail), then always fires (each 'stays silent'
    test must fail): the written tests check every alert both ways."""
    _deploy(cpu_repo, tmp_path)
    rules_dir = tmp_path / "observability" / "prometheus"
    original = yaml.safe_load((rules_dir / "rules.yaml").read_text())
    alerts = [r["alert"] for r in original["groups"][1]["rules"]]
    for expr, failing in (("vector(1) == 0", "fires"), ("vector(1)", "stays silent")):
        broken = json.loads(json.dumps(original))
        for rule in broken["groups"][1]["rules"]:
            rule["expr"] = expr
        (rules_dir / "rules.yaml").write_text(yaml.safe_dump(broken, sort_keys=False, width=10_000))
        tested = prometheus.promtool("test", "rules", "rules.test.yaml", cwd=rules_dir)
        assert tested.returncode != 0
        failed = set(re.findall(r"name: (\w+) (fires|stays silent),", tested.stderr))
        # (an alert that always fires fails its 'fires' test too: with the wrong labels)
        assert {(alert, failing) for alert in alerts} <= failed, tested.stderr[-3000:]
        if failing == "fires":
            assert {f for _, f in failed} == {"fires"}


def _row(conc: int, rps: float, p99_ms: float, queue_us: float) -> PerfRow:
    split = LatencySplit(0, 0, queue_us, 0, 0, 0, 0)
    return PerfRow(model="demo_shapes", batch_size=1, concurrency=conc, infer_per_s=rps, avg_us=p99_ms * 1000,
                   p50_us=p99_ms * 1000, p90_us=p99_ms * 1000, p95_us=p99_ms * 1000, p99_us=p99_ms * 1000,
                   split=split, protocol="grpc")


def test_thresholds_come_from_the_flags_the_sweep_or_the_autoscaler(tmp_path, cpu_repo, capsys):
    assert derive_thresholds(queue_slo_ms=2.5, queue_target_us=10_000).queue_us == 2500
    assert derive_thresholds(queue_target_us=20_000).queue_us == 20_000
    assert derive_thresholds().queue_us == 10_000
    assert derive_thresholds(sweep_queue_us=40.0, sweep_point="x").queue_us == 100.0   # the floor
    no_slo = rules_for(["m"], {"m": 1}, derive_thresholds(), name="t", namespace="n")
    assert "TritonkitP99AboveSLO" not in [a.alert for a in alert_rules(no_slo)]
    write_rows_csv([_row(1, 100, 10, 500), _row(4, 380, 30, 2400), _row(8, 450, 80, 9000)], tmp_path / "sweep.csv")
    out = tmp_path / "obs"
    argv = ["deploy", "observability", "--repo", str(cpu_repo), "--out", str(out), "--sweep", str(tmp_path),
            "--slo-p99-ms", "50", "--target", "10.1.2.3:9102", "--target", "10.1.2.4"]
    assert main(argv) == 0
    summary = json.loads((out / "observability.json").read_text())
    assert summary["thresholds"]["queue_us"] == 2400 and summary["thresholds"]["p99_ms"] == 50   # concurrency 4
    assert "concurrency 4" in summary["thresholds"]["sources"][1]
    config = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["job_name"] == "tritonkit-metrics" and job["static_configs"][0]["targets"] == ["10.1.2.3:9102",
                                                                                              "10.1.2.4:8002"]
    assert config["rule_files"] == ["rules.yaml"] and (out / "prometheus" / "rules.yaml").is_file()
    assert "## Dashboard and alerts" in (out / "OBSERVABILITY.md").read_text()
    capsys.readouterr()
    for bad, flag in ((["--max-failure-ratio", "2"], "--max-failure-ratio"),
                      (["--queue-slo-ms", "0"], "--queue-slo-ms"), (["--slo-p99-ms", "-1"], "--slo-p99-ms")):
        assert main(["deploy", "observability", "--repo", str(cpu_repo), "--out", str(out), *bad]) == 1
        assert flag in capsys.readouterr().err
    assert main(["deploy", "observability", "--repo", str(cpu_repo), "--out", str(out), "--sweep", str(tmp_path)]) == 1
    assert "--sweep needs --slo-p99-ms" in capsys.readouterr().err
    k8s = ["deploy", "k8s", "--repo", str(cpu_repo), "--pvc", "m", "--out", str(tmp_path / "k8s")]
    assert main(k8s + ["--target-rps", "100"]) == 1
    assert main(k8s + ["--slo-p99-ms", "30"]) == 0     # an SLO alone sets the p99 alert
    rules = (tmp_path / "k8s" / "observability" / "prometheus" / "rules.yaml").read_text()
    assert f'{P99_RECORD}{{namespace="tritonkit",job="tritonkit-metrics"}} > 30000' in rules


def _runbook_commands(runbook: str) -> list[list[str]]:
    """The tritonkit command lines of a runbook, placeholders (<...>) given a value."""
    text = re.sub(r"<[^>]*>", "7", runbook)
    parts = [part.strip() for part in re.split(r"[;&]| then ", text)]
    return [shlex.split(part) for part in parts if part.startswith("tritonkit ")]


@pytest.mark.parametrize("kubernetes", [False, True])
def test_every_runbook_names_tritonkit_commands_the_cli_accepts(kubernetes):
    rules = rules_for(["demo_shapes", "det"], {"demo_shapes": 1}, _thresholds(), name="tritonkit", namespace="serving",
                      kubernetes=kubernetes, max_replicas=4)
    parser = build_parser()
    for alert in alert_rules(rules):
        labels = {label: f"value-of-{label}" for label in alert.labels}
        labels.update(instance="10.0.0.1:8002", model="demo_shapes")
        found = _runbook_commands(alert.annotations(labels)["runbook"])
        assert found, alert.alert
        for argv in found:
            if argv[:3] == ["tritonkit", "deploy", "k8s"]:   # "deploy k8s ... --max-replicas": shown abbreviated
                continue
            args = parser.parse_args(argv[1:])                # SystemExit on an unknown flag or subcommand
            assert args.command in {"perf", "deploy", "validate"}, argv


def deploy_help(action: str) -> str:
    """The ``tritonkit deploy ACTION --help`` text."""
    return next(a for a in build_parser()._subparsers._group_actions[0].choices["deploy"]._actions
                if a.dest == "deploy_command").choices[action].format_help()


def test_deploy_k8s_help_lists_every_file_it_writes(cpu_repo, tmp_path):
    """Every file of a deployment with every option that adds files (KServe, a canary): its folder
    is in the help, and each observability file and kserve/canary.yaml by its path."""
    assert main(["deploy", "k8s", "--repo", str(cpu_repo), "--pvc", "m", "--kserve", "--canary", str(cpu_repo),
                 "--canary-pvc", "m2", "--out", str(tmp_path)]) == 0
    files = json.loads((tmp_path / "deploy.json").read_text())["files"]
    assert any(f.startswith("canary/") for f in files) and "kserve/canary.yaml" in files
    text = deploy_help("k8s")
    for rel in files:
        parts = rel.split("/")
        shown = [f"{parts[0]}/" if len(parts) > 1 else parts[0]]
        if parts[0] == "observability" or rel == "kserve/canary.yaml":
            shown.append(rel)
        if parts[0] == "rendered":
            shown.append(Path(rel).stem)      # each rendered variant is named
        for item in shown:
            assert item in text, (rel, item)


def test_deploy_observability_help_lists_every_file_it_writes(cpu_repo, tmp_path):
    assert main(["deploy", "observability", "--repo", str(cpu_repo), "--out", str(tmp_path)]) == 0
    files = json.loads((tmp_path / "observability.json").read_text())["files"]
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert set(files) <= written and len(written) >= 5
    text = deploy_help("observability")
    for rel in written:
        assert rel in text, rel


def test_servers_start_with_the_latency_summaries(cpu_repo, tmp_path):
    flags = metrics_flags()
    assert flags[0] == "--metrics-config=summary_latencies=true"
    opts = ServerOptions(model_repository=cpu_repo)
    local = server_argv(server_paths(), opts, Ports(1, 2, 3))
    docker = docker_args("dev", cpu_repo).server_command
    result = _deploy(cpu_repo, tmp_path)
    deployment = next(d for d in yaml.safe_load_all((tmp_path / "rendered" / "base.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    for argv in (local, docker, container):
        assert all(argv.count(f) == 1 for f in flags), argv
    assert result.observability.to_dict()["server_flags"] == list(flags)


@needs_promtool
def test_readme_kubernetes_commands_run_as_written(cpu_repo, tmp_path, monkeypatch):
    """The README's deploy k8s and promtool lines, in a folder holding the repository as model_repository."""
    (tmp_path / "model_repository").symlink_to(cpu_repo, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    lines = [c for c in commands(README) if "build/k8s" in c]
    assert [c.split()[:3] for c in lines] == [["tritonkit", "deploy", "k8s"], ["promtool", "check", "rules"],
                                               ["promtool", "test", "rules"]]
    assert main(shlex.split(lines[0])[1:]) == 0
    for line in lines[1:]:
        ran = prometheus.promtool(*shlex.split(line)[1:])
        assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout


def test_rule_spec_errors_name_the_field():
    with pytest.raises(DeployError, match="max_failure_ratio"):
        derive_thresholds(failure_ratio=1.5)
    with pytest.raises(DeployError, match="no model"):
        rules_for([], {}, derive_thresholds(), name="t", namespace="n")
    with pytest.raises(TritonkitError, match="not a valid model name"):
        rules_for(['m"} or vector(1)'], {}, derive_thresholds(), name="t", namespace="n")
    with pytest.raises(DeployError, match="at_max_minutes"):
        rules_for(["m"], {}, derive_thresholds(), name="t", namespace="n", at_max_minutes=0)
