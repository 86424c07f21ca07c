"""Write a deployment: a Kustomize base and overlay, the same objects rendered to plain YAML, a report.

Layout under ``out``::

    base/                     kustomization.yaml + the objects every cluster can run
    overlays/autoscale/       base + HorizontalPodAutoscaler + ServiceMonitor + PrometheusRule (Deployment
                              replicas left to the autoscaler); needs Prometheus Operator and prometheus-adapter
    prometheus-adapter/rules.yaml   the custom-metric rule the autoscaler reads
    observability/            Grafana dashboard, the alert rules as a plain file and their promtool
                              tests (see :mod:`tritonkit.deploy.observability`)
    kserve/inferenceservice.yaml    (optional) the same server as a KServe InferenceService
    canary/                   (with a canary) kustomization.yaml + the canary Deployment and the
                              per-track Services, applied beside base or overlays/autoscale
    kserve/canary.yaml        (with a canary and KServe) the InferenceService with canaryTrafficPercent
    rendered/base.yaml, rendered/autoscale.yaml[, rendered/kserve.yaml, rendered/canary.yaml,
    rendered/kserve-canary.yaml]   plain multi-document YAML
    deploy.json, DEPLOY.md    what was written and why (models, probes, checks, capacity)

``kubectl apply -k <out>/overlays/autoscale`` and ``kubectl apply -f <out>/rendered/autoscale.yaml``
create the same objects.
"""

from __future__ import annotations

import math
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
from tritonkit.deploy.spec import DeployError, DeploySpec, canary_split
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
CANARY_FILES = {"Deployment": "deployment.yaml", "Service": "services.yaml"}


@dataclass(frozen=True)
class CanaryPlan:
    """The canary's repository as read, its startup budget, and how the traffic splits."""

    repository: RepositoryInfo
    startup: StartupBudget
    percent: int
    replicas: int
    share: float           # the share of the traffic the canary pods get (Service split by pods)

    def to_dict(self) -> dict:
        return {"repository": self.repository.to_dict(), "startup": self.startup.to_dict(),
                "percent": self.percent, "replicas": self.replicas, "share": round(self.share, 4)}


def canary_plan(spec: DeploySpec, repo: str | Path | None) -> tuple[CanaryPlan | None, list[str]]:
    """The canary repository ``repo`` read and plan-checked against the spec's release (None
    without a canary), and the plan check's notes."""
    if spec.canary is None:
        if repo is not None:
            raise DeployError("a canary repository needs the canary's source and percent", fields=("canary",))
        return None, []
    if repo is None:
        raise DeployError("a canary needs its repository (the folder to read its models from)", fields=("canary",))
    info, notes = check_plans(read_repository(repo), spec.release, spec.container_trt_version)
    replicas, share = canary_split(spec.replicas, spec.canary.percent)
    plan = CanaryPlan(info, startup_budget(info, spec.canary.source.kind), spec.canary.percent, replicas, share)
    return plan, [f"canary: {n}" for n in notes]


@dataclass(frozen=True)
class Rendered:
    """The objects of each variant, complete (what ``kubectl apply -f`` takes)."""

    base: tuple[dict, ...]
    autoscale: tuple[dict, ...]
    kserve: tuple[dict, ...] = ()
    canary: tuple[dict, ...] = ()
    kserve_canary: tuple[dict, ...] = ()

    def all_objects(self) -> list[dict]:
        """Every distinct object once (the autoscale variant holds the base's, minus replicas; the
        KServe canary is the same InferenceService as ``kserve``, validated as its own version)."""
        return [*self.base, *self.autoscale[len(self.base):], *self.kserve, *self.canary, *self.kserve_canary]


def render(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget, rules: RuleSpec | None = None,
           canary: CanaryPlan | None = None) -> Rendered:
    """The objects of each variant; with ``rules``, the autoscale variant carries their PrometheusRule;
    with ``canary``, the canary's objects."""
    notes = skip_annotations("Deployment")
    base = manifests.base_objects(spec, info, startup, annotations=notes)
    scaled = [manifests.deployment(spec, info, startup, replicas=False, annotations=notes), *base[1:]]
    kserve = manifests.kserve_objects(spec, info, startup) if spec.kserve else []
    alerting = [prometheus_rule(spec, rules)] if rules is not None else []
    canaries, kserve_canary = [], []
    if canary is not None:
        canaries = manifests.canary_objects(spec, canary.repository, canary.startup, annotations=notes)
        if spec.kserve:
            kserve_canary = manifests.kserve_canary_objects(spec, canary.repository, canary.startup)
    return Rendered(tuple(base), tuple(scaled + manifests.autoscale_objects(spec) + alerting), tuple(kserve),
                    tuple(canaries), tuple(kserve_canary))


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
    canary: CanaryPlan | None = None

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
                "canary": self._canary_dict(),
                "files": [str(p.relative_to(self.out)) for p in self.files]}


    def _canary_dict(self) -> dict | None:
        if self.canary is None:
            return None
        c = self.spec.canary
        return {**self.canary.to_dict(), "source": {"kind": c.source.kind, "ref": c.source.ref},
                "image": self.spec.canary_spec().image, "deployment": self.spec.canary_name,
                "service": self.spec.canary_name, "stable_service": self.spec.stable_name}


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
    if rendered.canary:
        canary = _by_file(rendered.canary, CANARY_FILES)
        texts["canary/kustomization.yaml"] = _kustomization(list(canary))
        texts.update({f"canary/{name}": dump(objs) for name, objs in canary.items()})
        texts["rendered/canary.yaml"] = dump(rendered.canary)
    if rendered.kserve_canary:
        texts["kserve/canary.yaml"] = dump(rendered.kserve_canary)
        texts["rendered/kserve-canary.yaml"] = dump(rendered.kserve_canary)
    return texts


def write_deployment(spec: DeploySpec, repo: str | Path, out: str | Path, capacity: CapacityPlan | None = None,
                     thresholds: Thresholds | None = None, at_max_minutes: int = DEFAULT_AT_MAX_MINUTES,
                     canary_repo: str | Path | None = None) -> DeployResult:
    """Read ``repo`` (and ``canary_repo``, the canary's repository, with ``spec.canary``) and check
    their TensorRT plans against ``spec.release``, render every object, validate it against the
    Kubernetes schemas, write it all, with the dashboard and alert rules (``thresholds`` default:
    from ``capacity``, else the autoscaler's target; see
    :func:`tritonkit.deploy.observability.plan_thresholds`)."""
    info, plan_notes = check_plans(read_repository(repo), spec.release, spec.container_trt_version)
    canary, canary_notes = canary_plan(spec, canary_repo)
    startup = startup_budget(info, spec.source.kind)
    rules = deployment_rules(spec, info, startup, thresholds or plan_thresholds(spec, capacity), at_max_minutes)
    rendered = render(spec, info, startup, rules, canary)
    schema = validate_objects(rendered.all_objects())
    out = Path(out)
    notes = deployment_notes(spec, info) + plan_notes + canary_notes
    if canary is not None:
        notes += [f"canary: {n}" for n in deployment_notes(spec.canary_spec(), canary.repository)
                  if not n.startswith("Secret ")]
    result = DeployResult(out, spec, info, startup, schema, capacity=capacity, notes=notes, canary=canary)
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


def _canary_section(result: DeployResult) -> list[str]:
    """How the canary's traffic splits, how to compare the tracks, how to promote or roll back."""
    s, plan = result.spec, result.canary
    c, cs = s.canary, s.canary_spec()
    q = shlex.quote
    total = s.replicas + plan.replicas
    exact = math.ceil(plan.replicas * (100 - c.percent) / c.percent)  # stable pods for <= percent per canary pod
    ns = f"{s.namespace}.svc.cluster.local"
    lines = [
        "## Canary (canary/)", "",
        f"- repository `{plan.repository.path}` ({', '.join(plan.repository.names)}), from the {c.source.kind} "
        f"source `{c.source.ref}`, image `{cs.image}`",
        f"- Deployment `{s.canary_name}`: {plan.replicas} replica(s) beside the {s.replicas} stable ones behind "
        f"Service `{s.name}`. A Service spreads connections over the ready pods of both tracks, so the canary gets "
        f"{plan.replicas}/{total} = {100 * plan.share:.1f} % of the connections (asked: {c.percent} %). The split "
        f"moves in steps of one pod ({100 / total:.1f} % here); {c.percent} % or less takes at least {exact} "
        f"stable replicas beside {plan.replicas} canary replica(s).",
        "- a gRPC connection stays on one pod: requests follow the split only for clients that open many "
        f"connections or spread over `{s.headless_dns}` (it lists both tracks)",
        "- with overlays/autoscale the autoscaler scales the stable Deployment only: as it adds pods, the "
        "canary's share falls",
        f"- Services `{s.canary_name}` and `{s.stable_name}` each reach one track, to compare them on the same "
        "images and load (exit 0: promote, 1: rollback):", "",
        "```bash",
        f"tritonkit validate --candidate {s.canary_name}.{ns}:8001 --stable {s.stable_name}.{ns}:8001 "
        "--models MODEL --data DATASET --out reports/canary",
        f"kubectl apply -k {q(str(result.out / 'canary'))}      # start the canary",
        f"kubectl delete -k {q(str(result.out / 'canary'))}     # roll back (the stable pods keep serving)",
        "```", "",
        f"Promote: write the deployment again with `--repo {q(str(plan.repository.path))}` and the canary's "
        "source as the stable one, apply it, then delete the canary as above."]
    if s.kserve:
        lines += ["", f"KServe (kserve/canary.yaml): the InferenceService `{s.name}` with the canary's storageUri "
                  f"and `canaryTrafficPercent: {c.percent}`. Applied over the running one, KServe routes {c.percent} % "
                  "of the requests to the new revision and the rest to the last rolled-out one (an integer percent, "
                  "split per request by the Knative ingress; serverless deployment mode only). Each revision has its "
                  "own Service (`kubectl get revisions`) for the comparison above. Promote: remove "
                  "`canaryTrafficPercent` and apply; roll back: set it to 0."]
    return lines + [""]


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
    if result.canary:
        parts += _canary_section(result)
    if result.capacity:
        parts.append(result.capacity.markdown())
    return "\n".join(parts + apply)
