"""A deployment's observability on disk: Grafana dashboard, Prometheus rules, their promtool tests.

Layout under ``out`` (``deploy k8s`` writes it under ``<out>/observability``; ``deploy
observability`` for servers outside Kubernetes writes it at ``out`` with a Prometheus config)::

    grafana/dashboard.json         the dashboard (import it, or put it in a provisioning folder)
    prometheus/rules.yaml          recording + alerting rules, a plain Prometheus rules file
    prometheus/rules.test.yaml     promtool unit tests: each alert firing and staying silent
    prometheus/prometheus.yml      (without Kubernetes) scrapes the servers, loads rules.yaml
    OBSERVABILITY.md, observability.json   (without Kubernetes) what was written and why

Outside Kubernetes the scrape config gives the servers' series the labels the Prometheus
Operator's ServiceMonitor gives them in a cluster (``job`` = ``<name>-metrics``, ``namespace``,
``pod`` = the scraped address), so the dashboard, the rules and the prometheus-adapter rule read
the same series in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tritonkit._lazy import lazy_import
from tritonkit.deploy.alert_tests import RULES_FILE, promtool_tests
from tritonkit.deploy.alerts import (
    DEFAULT_AT_MAX_MINUTES, RuleSpec, Thresholds, alert_rules, derive_thresholds, rule_groups, rules_for)
from tritonkit.deploy.capacity import CapacityPlan
from tritonkit.deploy.dashboard import DashboardSpec, dashboard_json
from tritonkit.deploy.repository import RepositoryInfo, StartupBudget
from tritonkit.deploy.spec import DeployError, DeploySpec, check_int
from tritonkit.host import DEFAULT_METRICS_PORT, parse_address
from tritonkit.io import atomic_write_json, atomic_write_text
from tritonkit.report import markdown_table
from tritonkit.serve.metrics import metrics_flags

yaml = lazy_import("yaml", "pyyaml")

HEADER = "# Written by tritonkit; regenerate rather than edit.\n"
DASHBOARD = "grafana/dashboard.json"
RULES = f"prometheus/{RULES_FILE}"
RULES_TEST = "prometheus/rules.test.yaml"
PROMETHEUS_CONFIG = "prometheus/prometheus.yml"


def instances_of(info: RepositoryInfo) -> dict[str, int]:
    """Model -> instance count, for the models that run instances (ensembles have none)."""
    return {m.name: m.instances for m in info.models if m.instances > 0}


def repository_rules(info: RepositoryInfo, thresholds: Thresholds, **kw) -> RuleSpec:
    """The :class:`RuleSpec` of a repository's models."""
    return rules_for(info.names, instances_of(info), thresholds, **kw)


def startup_minutes(budget_s: int) -> int:
    """The pods-not-ready alert's wait: the startup probe's budget, in whole minutes, at least 5."""
    return max(5, math.ceil(budget_s / 60))


def deployment_rules(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget, thresholds: Thresholds,
                     at_max_minutes: int = DEFAULT_AT_MAX_MINUTES) -> RuleSpec:
    """The rules of a Kubernetes deployment: its names, the autoscaler's maximum, the startup budget."""
    return repository_rules(info, thresholds, name=spec.name, namespace=spec.namespace, kubernetes=True,
                            max_replicas=spec.hpa_max_replicas, at_max_minutes=at_max_minutes,
                            not_ready_minutes=startup_minutes(startup.budget_s))


def plan_thresholds(spec: DeploySpec, capacity: CapacityPlan | None, **kw) -> Thresholds:
    """Thresholds of a Kubernetes deployment: the capacity plan's SLO and queue, else the autoscaler's target."""
    if capacity is not None:
        kw.setdefault("slo_p99_ms", capacity.slo_p99_ms)
        kw.update(sweep_queue_us=capacity.queue_us, sweep_point=capacity.point)
    return derive_thresholds(queue_target_us=spec.queue_target_us, **kw)


@dataclass(frozen=True)
class ScrapeConfig:
    """Where a Prometheus outside Kubernetes scrapes the servers' metrics."""

    targets: tuple[str, ...] = (f"127.0.0.1:{DEFAULT_METRICS_PORT}",)
    interval_s: int = 15

    def __post_init__(self) -> None:
        if not self.targets:
            raise DeployError("give at least one metrics target (host:port)", fields=("targets",))
        object.__setattr__(self, "targets", tuple(str(parse_address(t, DEFAULT_METRICS_PORT)) for t in self.targets))
        check_int(self.interval_s, "scrape_interval_s", 1, 3600)


def prometheus_config(rules: RuleSpec, scrape: ScrapeConfig) -> dict:
    """A complete Prometheus configuration: scrape the targets with the deployment's labels, load the rules."""
    interval = f"{scrape.interval_s}s"
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [RULES_FILE],
            "scrape_configs": [{
                "job_name": rules.job, "metrics_path": "/metrics",
                "static_configs": [{"targets": list(scrape.targets), "labels": {"namespace": rules.namespace}}],
                "relabel_configs": [{"source_labels": ["__address__"], "target_label": "pod"}]}]}


@dataclass
class ObservabilityResult:
    out: Path
    rules: RuleSpec
    gpu: bool
    panels: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    scrape: ScrapeConfig | None = None

    def to_dict(self) -> dict:
        return {"out": str(self.out), "name": self.rules.name, "namespace": self.rules.namespace,
                "job": self.rules.job, "target": "gpu" if self.gpu else "cpu", "panels": self.panels,
                "alerts": self.alerts, "recording_rules": self.records,
                "thresholds": self.rules.thresholds.to_dict(), "server_flags": list(metrics_flags()),
                "scrape_targets": list(self.scrape.targets) if self.scrape else None,
                "files": [str(p.relative_to(self.out)) for p in self.files]}

    def markdown(self, prefix: str = "") -> str:
        """The report section; ``prefix``: the folder the paths are shown under."""
        r = self.rules
        rows = [(a.alert, a.severity, f"{a.for_minutes} min", a.annotations(dict.fromkeys(a.labels, "…"))["summary"])
                for a in alert_rules(r)]
        devices = "GPU included" if self.gpu else "cpu target: no GPU panels"
        files = [f"- `{prefix}{DASHBOARD}`: Grafana dashboard ({len(self.panels)} panels, {devices}); variables "
                 "datasource, namespace, model. Import it in Grafana (Dashboards > New > Import).",
                 f"- `{prefix}{RULES}`: {len(self.records)} recording rules and {len(self.alerts)} alerts on the "
                 f"series of job `{r.job}` in namespace `{r.namespace}`; `{prefix}{RULES_TEST}`: promtool tests of "
                 f"every alert (`promtool test rules {prefix}{RULES_TEST}`)."]
        if self.scrape:
            files.append(f"- `{prefix}{PROMETHEUS_CONFIG}`: scrapes {', '.join(self.scrape.targets)} every "
                         f"{self.scrape.interval_s} s as job `{r.job}`, namespace `{r.namespace}`, and loads the "
                         f"rules: `prometheus --config.file={prefix}{PROMETHEUS_CONFIG}`.")
        files.append(f"- The servers must run with `{' '.join(metrics_flags())}` for the latency quantiles "
                     "(tritonkit's serve commands and manifests pass it).")
        return "\n".join(["## Dashboard and alerts", "", *files, "", "Thresholds:", "",
                          *(f"- {s}" for s in r.thresholds.sources), "",
                          markdown_table(("alert", "severity", "for", "summary"), rows), ""])


def _yaml(obj) -> str:
    return HEADER + yaml.safe_dump(obj, sort_keys=False, width=10_000, allow_unicode=True)


def write_observability(rules: RuleSpec, gpu: bool, out: str | Path, scrape: ScrapeConfig | None = None,
                        report: bool = False) -> ObservabilityResult:
    """Write the dashboard, the rules and their tests (and with ``scrape``, the Prometheus config)."""
    out = Path(out)
    board = dashboard_json(DashboardSpec(rules.name, rules.namespace, dict(rules.instances), gpu))
    groups = rule_groups(rules)
    result = ObservabilityResult(out, rules, gpu, scrape=scrape,
                                 panels=[p["title"] for p in board["panels"] if p.get("type") != "row"],
                                 records=[r["record"] for r in groups[0]["rules"]],
                                 alerts=[r["alert"] for r in groups[1]["rules"]])
    texts = {RULES: _yaml({"groups": groups}), RULES_TEST: _yaml(promtool_tests(rules))}
    if scrape is not None:
        texts[PROMETHEUS_CONFIG] = _yaml(prometheus_config(rules, scrape))
    result.files.append(atomic_write_json(out / DASHBOARD, board))
    result.files += [atomic_write_text(out / rel, text) for rel, text in texts.items()]
    if report:
        result.files.append(atomic_write_text(out / "OBSERVABILITY.md",
                                              f"# Observability of `{rules.name}`\n\n" + result.markdown()))
        result.files.append(out / "observability.json")
        atomic_write_json(out / "observability.json", result.to_dict())
    return result
