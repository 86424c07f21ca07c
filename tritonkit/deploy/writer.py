"""Write a deployment: a Kustomize base and overlay, the same objects rendered to plain YAML, a report.

Layout under ``out``::

    base/                     kustomization.yaml + the objects every cluster can run
    overlays/autoscale/       base + HorizontalPodAutoscaler + ServiceMonitor + PrometheusRule (Deployment
                              replicas left to the autoscaler); needs Prometheus Operator and prometheus-adapter
    prometheus-adapter/rules.yaml   the custom-metric rule the autoscaler reads
    observability/            Grafana dashboard, the alert rules as a plain file and their promtool
                              tests (see :mod:`tritonkit.deploy.observability`)
    kserve/inferenceservice.yaml    (optional) the same server as a KServe InferenceService
    rendered/base.yaml, rendered/autoscale.yaml[, rendered/kserve.yaml]   plain multi-document YAML
    deploy.json, DEPLOY.md    what was written and why (models, probes, checks, capacity)

``kubectl apply -k <out>/overlays/autoscale`` and ``kubectl apply -f <out>/rendered/autoscale.yaml``
create the same objects.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tritonkit._lazy import lazy_import
from tritonkit.deploy import manifests
from tritonkit.deploy.alerts import DEFAULT_AT_MAX_MINUTES, RuleSpec, Thresholds, prometheus_rule
from tritonkit.deploy.capacity import CapacityPlan
from tritonkit.deploy.checks import SKIPPED_SECURITY_CHECKS, SchemaReport, skip_annotations, validate_objects
from tritonkit.deploy.observability import (
    ObservabilityResult, deployment_rules, plan_thresholds, write_observability)
from tritonkit.deploy.repository import RepositoryInfo, StartupBudget, check_plans, read_repository, startup_budget
from tritonkit.deploy.spec import DeploySpec
from tritonkit.io import atomic_write_json, atomic_write_text
from tritonkit.report import markdown_table

yaml = lazy_import("yaml", "pyyaml")

HEADER = "# Written by tritonkit deploy k8s; regenerate rather than edit, or patch it in an overlay.\n"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
BASE_FILES = {"Deployment": "deployment.yaml", "Service": "services.yaml", "NetworkPolicy": "networkpolicy.yaml",
              "PodDisruptionBudget": "poddisruptionbudget.yaml"}
AUTOSCALE_FILES = {"HorizontalPodAutoscaler": "hpa.yaml", "ServiceMonitor": "servicemonitor.yaml",
                   "PrometheusRule": "prometheusrule.yaml"}
OBSERVABILITY_DIR = "observability"


@dataclass(frozen=True)
class Rendered:
    """The objects of each variant, complete (what ``kubectl apply -f`` takes)."""

    base: tuple[dict, ...]
    autoscale: tuple[dict, ...]
    kserve: tuple[dict, ...] = ()

    def all_objects(self) -> list[dict]:
        """Every distinct object once (the autoscale variant holds the base's, minus replicas)."""
        return [*self.base, *self.autoscale[len(self.base):], *self.kserve]


def render(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget, rules: RuleSpec | None = None) -> Rendered:
    """The objects of each variant; with ``rules``, the autoscale variant carries their PrometheusRule."""
    notes = skip_annotations("Deployment")
    base = manifests.base_objects(spec, info, startup, annotations=notes)
    scaled = [manifests.deployment(spec, info, startup, replicas=False, annotations=notes), *base[1:]]
    kserve = manifests.kserve_objects(spec, info, startup) if spec.kserve else []
    alerting = [prometheus_rule(spec, rules)] if rules is not None else []
    return Rendered(tuple(base), tuple(scaled + manifests.autoscale_objects(spec) + alerting), tuple(kserve))


def deployment_notes(spec: DeploySpec, info: RepositoryInfo) -> list[str]:
    """What the manifests cannot check and the user must see to before applying them."""
    notes = []
    needs = {m.name: m.python_imports for m in info.models if m.python_imports}
    if needs and spec.source.kind != "image" and not spec.server_image:
        listed = "; ".join(f"{name} imports {', '.join(mods)}" for name, mods in needs.items())
        notes.append(f"python-backend models need packages NGC's tritonserver image lacks ({listed}): "
                     "give a server image that has them")
    elif needs:
        notes.append("the server image must provide what the python-backend models import: "
                     + "; ".join(f"{name}: {', '.join(mods)}" for name, mods in needs.items()))
    if spec.source.kind == "pvc":
        notes.append(f"PersistentVolumeClaim {spec.source.ref!r} must exist in namespace {spec.namespace!r}, hold the "
                     "repository at its root and be ReadOnlyMany or ReadWriteMany (replicas run on several nodes)")
    if spec.source.kind == "url" and not spec.cloud_credentials_secret:
        notes.append(f"no credentials Secret: Triton reads {spec.source.ref} with the pod's workload identity "
                     "or the node's role")
    notes.append(f"Secret {spec.key_secret!r} with key '{manifests.API_KEY_ITEM}' must exist before the pods start")
    return notes


@dataclass
class DeployResult:
    out: Path
    spec: DeploySpec
    repository: RepositoryInfo
    startup: StartupBudget
    schema: SchemaReport
    files: list[Path] = field(default_factory=list)
    capacity: CapacityPlan | None = None
    notes: list[str] = field(default_factory=list)
    observability: ObservabilityResult | None = None

    def to_dict(self) -> dict:
        s = self.spec
        return {"out": str(self.out), "name": s.name, "namespace": s.namespace, "image": s.image,
                "source": {"kind": s.source.kind, "ref": s.source.ref}, "target": self.repository.target,
                "replicas": s.replicas, "max_replicas": s.hpa_max_replicas, "queue_target_us": s.queue_target_us,
                "headless_service": s.headless_service, "headless_dns": s.headless_dns,
                "api_key_secret": s.key_secret, "grace_period_s": s.grace_period_s,
                "exit_timeout_s": s.exit_timeout_s, "repository": self.repository.to_dict(),
                "startup": self.startup.to_dict(), "schema": self.schema.to_dict(),
                "skipped_security_checks": {k: why for k, (_, why) in SKIPPED_SECURITY_CHECKS.items()},
                "capacity": self.capacity.to_dict() if self.capacity else None, "notes": list(self.notes),
                "observability": self.observability.to_dict() if self.observability else None,
                "files": [str(p.relative_to(self.out)) for p in self.files]}


def dump(objects: list[dict] | tuple[dict, ...]) -> str:
    """Objects as multi-document YAML, keys in the order built."""
    return HEADER + yaml.safe_dump_all(list(objects), sort_keys=False, default_flow_style=False, width=10_000)


def _kustomization(resources: list[str], patches: list[dict] | None = None) -> str:
    body = {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": resources}
    if patches:
        body["patches"] = patches
    return HEADER + yaml.safe_dump(body, sort_keys=False)


def _by_file(objects: tuple[dict, ...], files: dict[str, str]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for obj in objects:
        grouped.setdefault(files[obj["kind"]], []).append(obj)
    return grouped


def _layout(spec: DeploySpec, rendered: Rendered) -> dict[str, str]:
    """Relative path -> text of every file of the Kustomize tree and the rendered YAML."""
    texts: dict[str, str] = {}
    base = _by_file(rendered.base, BASE_FILES)
    texts["base/kustomization.yaml"] = _kustomization(list(base))
    texts.update({f"base/{name}": dump(objs) for name, objs in base.items()})
    extra = _by_file(rendered.autoscale[len(rendered.base):], AUTOSCALE_FILES)
    remove = {"target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": spec.name},
              "patch": '[{"op": "remove", "path": "/spec/replicas"}]'}
    texts["overlays/autoscale/kustomization.yaml"] = _kustomization(["../../base", *extra], [remove])
    texts.update({f"overlays/autoscale/{name}": dump(objs) for name, objs in extra.items()})
    texts["prometheus-adapter/rules.yaml"] = (
        HEADER + "# prometheus-adapter: add under rules.custom of its Helm values, or to the rules: list of its "
        "--config file.\n" + yaml.safe_dump({"rules": {"custom": [manifests.adapter_rule()]}}, sort_keys=False,
                                  width=10_000))
    texts["rendered/base.yaml"] = dump(rendered.base)
    texts["rendered/autoscale.yaml"] = dump(rendered.autoscale)
    if rendered.kserve:
        texts["kserve/inferenceservice.yaml"] = dump(rendered.kserve)
        texts["rendered/kserve.yaml"] = dump(rendered.kserve)
    return texts


def write_deployment(spec: DeploySpec, repo: str | Path, out: str | Path, capacity: CapacityPlan | None = None,
                     thresholds: Thresholds | None = None,
                     at_max_minutes: int = DEFAULT_AT_MAX_MINUTES) -> DeployResult:
    """Read ``repo`` and check its TensorRT plans against ``spec.release``, render every object,
    validate it against the Kubernetes schemas, write it all, with the dashboard and alert rules
    (``thresholds`` default: from ``capacity``, else the autoscaler's target; see
    :func:`tritonkit.deploy.observability.plan_thresholds`)."""
    info, plan_notes = check_plans(read_repository(repo), spec.release, spec.container_trt_version)
    startup = startup_budget(info, spec.source.kind)
    rules = deployment_rules(spec, info, startup, thresholds or plan_thresholds(spec, capacity), at_max_minutes)
    rendered = render(spec, info, startup, rules)
    schema = validate_objects(rendered.all_objects())
    out = Path(out)
    result = DeployResult(out, spec, info, startup, schema, capacity=capacity,
                          notes=deployment_notes(spec, info) + plan_notes)
    for rel, text in _layout(spec, rendered).items():
        result.files.append(atomic_write_text(out / rel, text))
    result.observability = write_observability(rules, info.target == "gpu", out / OBSERVABILITY_DIR)
    result.files += result.observability.files
    result.files.append(atomic_write_text(out / "DEPLOY.md", report_markdown(result)))
    result.files.append(out / "deploy.json")
    atomic_write_json(out / "deploy.json", result.to_dict())
    return result


def _models_section(result: DeployResult) -> list[str]:
    info = result.repository
    rows = [(m.name, m.platform, m.device, m.instances, m.max_batch_size, m.warmups, f"{m.bytes / 1e6:.1f}")
            for m in info.models]
    return [f"## Models ({info.target} target, from `{info.path}`)", "",
            markdown_table(("model", "platform", "device", "instances", "max batch", "warmups", "MB"), rows)]


def _server_section(result: DeployResult) -> list[str]:
    s, st = result.spec, result.startup
    return [
        "## Server", "",
        f"- image `{s.image}`, repository from the {s.source.kind} source (`{s.source.model_repository}`)",
        f"- {s.replicas} replicas; rolling updates add one pod before removing one (maxSurge 1, maxUnavailable 0)",
        *([f"- TensorRT plans checked against tritonserver {s.release}; they need "
           + ", ".join(f"`{a}`" for a in result.repository.server_args)] if result.repository.server_args else []),
        "- production flags: model control none, strict readiness, restricted APIs (model-repository, "
        f"shared-memory, logging, trace) behind the key in Secret `{s.key_secret}` (key `{manifests.API_KEY_ITEM}`), "
        "read from a mounted file at start",
        f"- draining: preStop waits {s.prestop_s} s (the pod leaves the Services), then SIGTERM and Triton's "
        f"exit timeout of {s.exit_timeout_s} s; terminationGracePeriodSeconds {s.grace_period_s}",
        f"- probes: startup `/v2/health/ready` every {st.period_s} s up to {st.budget_s} s "
        f"(estimate {st.estimate_s:g} s: {st.rule}); liveness `/v2/health/live`; readiness `/v2/health/ready`",
        "- non-root, read-only root filesystem (emptyDir /tmp and /dev/shm), no privilege escalation, "
        "all capabilities dropped, seccomp RuntimeDefault, no service-account token, requests = limits", ""]


def _network_section(result: DeployResult) -> list[str]:
    s = result.spec
    return [
        "## Services", "",
        f"- `{s.name}`: HTTP 8000 and gRPC 8001 for clients (a gRPC connection stays on one pod)",
        f"- `{s.headless_service}` (headless): `{s.headless_dns}` resolves to every ready pod, for clients "
        "that spread requests over the replicas themselves",
        f"- `{s.name}-metrics`: port 8002, ClusterIP; the NetworkPolicy admits it only from namespace "
        f"`{s.monitoring_namespace}`", "",
        "## Autoscaling (overlays/autoscale)", "",
        f"HPA `{s.name}` aims at a mean queue time per request at {s.queue_target_us} µs per pod, "
        f"between {s.replicas} and {s.hpa_max_replicas} replicas. The metric `{manifests.QUEUE_METRIC}` is "
        "rate(nv_inference_queue_duration_us) / rate(nv_inference_request_success) per pod, served by "
        "prometheus-adapter (prometheus-adapter/rules.yaml) from what the ServiceMonitor has Prometheus "
        "scrape. Needs Prometheus Operator and prometheus-adapter in the cluster (the Prometheus must select "
        "this ServiceMonitor).", ""]


def _checks_section(result: DeployResult) -> list[str]:
    sc = result.schema
    lines = ["## Offline checks", "",
             f"Kubernetes {sc.version} schemas (kubernetes-validate, strict): {len(sc.validated)} objects valid"
             + (f", {len(sc.errors)} invalid" if sc.errors else "") + "."]
    lines += [f"- skipped {oid}: {why}" for oid, why in sc.skipped]
    lines += [f"- INVALID {e}" for e in sc.errors]
    lines += ["", "Security checks skipped on purpose (checkov.io/skip annotations on the Deployment):"]
    lines += [f"- {cid}: {why}" for cid, (_, why) in SKIPPED_SECURITY_CHECKS.items()]
    return lines + ["", "No cluster ran these manifests here; they were rendered and checked offline.", ""]


def report_markdown(result: DeployResult) -> str:
    s = result.spec
    q = shlex.quote   # every value pasted into the shell lines is one word (names are checked; the path is not)
    apply = ["## Apply", "", *(f"- {note}" for note in result.notes), "", "```bash",
             f"kubectl create namespace {q(s.namespace)}",
             f"kubectl -n {q(s.namespace)} create secret generic {q(s.key_secret)} "
             f"--from-literal={manifests.API_KEY_ITEM}=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\"",
             f"kubectl apply -k {q(str(result.out / 'overlays' / 'autoscale'))}   "
             f"# or -k {q(str(result.out / 'base'))} without autoscaling",
             "```", ""]
    parts = [f"# Deployment `{s.name}` in namespace `{s.namespace}`", "", *_models_section(result),
             *_server_section(result), *_network_section(result), *_checks_section(result)]
    if result.observability:
        parts += [result.observability.markdown(f"{OBSERVABILITY_DIR}/"),
                  "The same rules are the PrometheusRule of overlays/autoscale (the Prometheus must select it: "
                  "kube-prometheus-stack's selects rules labelled with its release unless told otherwise). "
                  "The Kubernetes alerts read kube-state-metrics.", ""]
    if result.capacity:
        parts.append(result.capacity.markdown())
    return "\n".join(parts + apply)
