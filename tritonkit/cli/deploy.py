"""Deploy a model repository to Kubernetes: manifests (Kustomize + plain YAML), capacity, observability.

  tritonkit deploy k8s --repo model_repository --image registry.example.com/tritonkit-serve:25.10 \\
      --out build/k8s
  tritonkit deploy k8s --repo model_repository --model-url s3://bucket/models \\
      --sweep reports/perf --slo-p99-ms 50 --target-rps 800 --out build/k8s
  tritonkit deploy k8s --repo model_repository --pvc models-v1 --canary model_repository_v2 \
      --canary-pvc models-v2 --canary-percent 10 --out build/k8s
  tritonkit deploy capacity --sweep reports/perf/sweep.csv --slo-p99-ms 50 --target-rps 800
  tritonkit deploy observability --repo model_repository --slo-p99-ms 50 --target 127.0.0.1:8002 \\
      --out build/observability

k8s: reads every config.pbtxt of --repo (models, cpu or gpu target, startup probe budget) and
writes a Kustomize base (Deployment, client / headless / metrics Services, NetworkPolicy,
PodDisruptionBudget), an overlay adding a HorizontalPodAutoscaler on Triton's queue time per
request with its ServiceMonitor and the PrometheusRule of the alerts, the prometheus-adapter rule,
optionally a KServe InferenceService, the same objects rendered to plain YAML, a Grafana dashboard
and the alert rules with their promtool tests (observability/), and DEPLOY.md / deploy.json. Every
object is validated offline against the pinned Kubernetes schemas. Nothing is applied to a cluster.
The repository's TensorRT plans are checked against --release as `repo` and `serve --docker` check
them: a plan from another TensorRT is refused, a version-compatible plan gets the server flag it
needs. Every value that reaches a manifest is checked, and none is ever parsed by a shell.
The repository reaches the pods from the serve image (--image), a PersistentVolumeClaim (--pvc)
or an object store Triton reads (--model-url s3:// gs:// as://).
--canary NEW_REPO adds canary/: a second Deployment (<name>-canary) serving the new repository
behind the same Service, with replicas for --canary-percent of the pods (the split is by pods,
stated in DEPLOY.md), and <name>-canary / <name>-stable Services for `tritonkit validate
--candidate ... --stable ...`; with --kserve also kserve/canary.yaml (canaryTrafficPercent).

capacity: the replicas a target request rate needs, from a perf sweep's throughput at the SLO
per replica, with the headroom rule stated (also in k8s's report when --sweep is given).

observability: for servers outside Kubernetes, the Grafana dashboard, the alert rules and their
promtool tests that k8s writes under observability/, plus a Prometheus config scraping --target.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from tritonkit.build_engines.compat import DEFAULT_RELEASE
from tritonkit.cli.tables import cli_console, print_json
from tritonkit.deploy import (
    CapacityRequest, CapacityRule, DeploySpec, RepositorySource, load_sweep, plan_capacity, write_deployment)
from tritonkit.deploy.alerts import DEFAULT_AT_MAX_MINUTES, DEFAULT_FAILURE_RATIO, Thresholds, derive_thresholds
from tritonkit.deploy.capacity import capacity_point, point_text
from tritonkit.deploy.observability import ScrapeConfig, plan_thresholds, repository_rules, write_observability
from tritonkit.deploy.repository import read_repository
from tritonkit.deploy.spec import TRITON_UID, CanarySpec
from tritonkit.errors import TritonkitError
from tritonkit.io import atomic_write_json, atomic_write_text


def _capacity_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("capacity (from a perf sweep)")
    g.add_argument("--sweep", type=Path, required=required, help="a perf sweep's sweep.csv or its output folder")
    g.add_argument("--slo-p99-ms", type=float, required=required, help="p99 latency bound per request (ms)")
    g.add_argument("--target-rps", type=float, required=required, help="requests per second to serve in total")
    g.add_argument("--model", dest="sweep_model", help="model in the sweep (default: its only model)")
    g.add_argument("--batch-size", type=int, help="client batch size (default: the smallest measured)")
    g.add_argument("--headroom", type=float, default=0.3, help="fraction of a replica's capacity kept free (0.3)")
    g.add_argument("--spare", type=int, default=1, help="replicas added so one can be lost (1)")
    g.add_argument("--min-replicas", type=int, default=2, help="never fewer replicas (2)")


def _alert_arguments(p: argparse.ArgumentParser, kubernetes: bool) -> None:
    g = p.add_argument_group("alerts (thresholds; --slo-p99-ms sets the p99 alert)")
    g.add_argument("--queue-slo-ms", type=float,
                   help="mean queue time per request to alert above (default: the sweep's at its capacity point, "
                        + ("else the autoscaler's --queue-target-ms)" if kubernetes else "else 10 ms)"))
    g.add_argument("--max-failure-ratio", type=float, default=DEFAULT_FAILURE_RATIO,
                   help="failed / all requests to alert above (default %(default)s)")
    if kubernetes:
        g.add_argument("--at-max-minutes", type=int, default=DEFAULT_AT_MAX_MINUTES,
                       help="alert when the autoscaler stays at --max-replicas this long (default %(default)s)")


K8S_WRITES = """Writes under --out:
  base/                         Deployment, client / headless / metrics Services, NetworkPolicy,
                                PodDisruptionBudget (kustomization.yaml)
  overlays/autoscale/           base + HorizontalPodAutoscaler on queue time per request, ServiceMonitor,
                                PrometheusRule (the alerts below)
  prometheus-adapter/rules.yaml the custom-metric rule the autoscaler reads
  kserve/inferenceservice.yaml  with --kserve
  canary/                       with --canary: the canary Deployment (<name>-canary) behind the same
                                Service, <name>-canary / <name>-stable Services (kustomization.yaml)
  kserve/canary.yaml            with --canary and --kserve: the InferenceService with canaryTrafficPercent
  rendered/*.yaml               every variant as plain multi-document YAML (base, autoscale, kserve,
                                canary, kserve-canary)
  observability/grafana/dashboard.json       Grafana dashboard: traffic, failures by reason, queue vs
                                compute, p50/p99, executed batch size, pending, instance (and GPU) use
  observability/prometheus/rules.yaml        recording + alerting rules (queue, failures, p99 vs SLO,
                                model not ready, metrics down, replicas at max, pods not ready)
  observability/prometheus/rules.test.yaml   promtool tests: each alert firing and staying silent
  DEPLOY.md, deploy.json        what was written and why
The servers run with --metrics-config=summary_latencies=true (p50/p99 from Triton's summaries)."""

OBSERVABILITY_WRITES = """Writes under --out:
  grafana/dashboard.json        Grafana dashboard: traffic, failures by reason, queue vs compute, p50/p99,
                                executed batch size, pending, instance (and GPU) use
  prometheus/rules.yaml         recording + alerting rules (queue, failures, p99 vs SLO, model not ready,
                                metrics down)
  prometheus/rules.test.yaml    promtool tests: each alert firing and staying silent
  prometheus/prometheus.yml     Prometheus config scraping every --target and loading rules.yaml
  OBSERVABILITY.md, observability.json   what was written and why (thresholds, targets)
The servers must run with --metrics-config=summary_latencies=true (p50/p99 from Triton's summaries)."""


def _k8s_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, required=True, help="the model repository (read for models and target)")
    p.add_argument("--out", type=Path, default=Path("build/k8s"), help="output folder (default build/k8s)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="serve image with the repository at /models (the Dockerfile's serve stage)")
    src.add_argument("--pvc", help="PersistentVolumeClaim holding the repository (ReadOnlyMany / ReadWriteMany)")
    src.add_argument("--model-url", help="object-store repository Triton reads: s3://, gs:// or as://")
    p.add_argument("--server-image", help="server image for --pvc / --model-url (default: NGC tritonserver of --release)")
    p.add_argument("--release", default=DEFAULT_RELEASE,
                   help="NGC tritonserver release of the server image (for --image: the release the serve image is "
                        "built on); the repository's TensorRT plans are checked against it (default %(default)s)")
    p.add_argument("--container-trt-version",
                   help="TensorRT version of that release, if not in tritonkit's table (for the plan check)")
    p.add_argument("--name", default="tritonkit", help="object name prefix (default tritonkit)")
    p.add_argument("--namespace", default="tritonkit")
    p.add_argument("--replicas", type=int, help="replicas (default 2, or from the capacity of --sweep)")
    p.add_argument("--max-replicas", type=int, help="autoscaler maximum (default twice the replicas)")
    p.add_argument("--cpu", help="cpu request = limit per pod (default 4)")
    p.add_argument("--memory", help="memory request = limit per pod (default 8Gi cpu target, 16Gi gpu)")
    p.add_argument("--gpus", type=int, default=1, help="nvidia.com/gpu per pod, gpu target (default 1)")
    p.add_argument("--queue-target-ms", type=float, default=10.0,
                   help="autoscaler target: mean queue time per request per pod (default 10 ms)")
    p.add_argument("--run-as-user", type=int, default=TRITON_UID,
                   help="non-root uid of the server (default %(default)s, the image's triton-server user)")
    p.add_argument("--monitoring-namespace", default="monitoring", help="namespace allowed to scrape metrics")
    p.add_argument("--api-key-secret", help="Secret holding the API key as 'api-key' (default <name>-api-key)")
    p.add_argument("--cloud-credentials-secret",
                   help="--model-url: Secret holding Triton's credentials.json (omit for workload identity)")
    p.add_argument("--kserve", action="store_true", help="also write a KServe InferenceService")
    _canary_arguments(p)
    _capacity_arguments(p, required=False)
    _alert_arguments(p, kubernetes=True)


def _observability_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, required=True, help="the model repository the servers serve")
    p.add_argument("--out", type=Path, default=Path("build/observability"),
                   help="output folder (default build/observability)")
    p.add_argument("--name", default="tritonkit", help="deployment name: the scrape job is <name>-metrics")
    p.add_argument("--namespace", default="tritonkit", help="namespace label given to the servers' series")
    p.add_argument("--target", action="append", dest="targets",
                   help="metrics address host:port of a server to scrape, repeatable (default 127.0.0.1:8002)")
    p.add_argument("--url", default="127.0.0.1:8001", help="the servers' gRPC address for the runbooks' commands")
    p.add_argument("--scrape-interval", type=int, default=15, help="seconds between scrapes (default 15)")
    g = p.add_argument_group("thresholds from a perf sweep")
    g.add_argument("--sweep", type=Path,
                   help="a perf sweep's sweep.csv or folder: the queue bound at its capacity point")
    g.add_argument("--slo-p99-ms", type=float, help="p99 latency SLO per request (ms): the p99 alert")
    g.add_argument("--model", dest="sweep_model", help="model in the sweep (default: its only model)")
    g.add_argument("--batch-size", type=int, help="client batch size in the sweep (default: the smallest measured)")
    _alert_arguments(p, kubernetes=False)


def _canary_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("canary (a second repository for a share of the traffic)")
    g.add_argument("--canary", type=Path, metavar="NEW_REPO",
                   help="the new model repository (read for its models and plans); writes canary/ (a second "
                        "Deployment behind the same Service) and, with --kserve, kserve/canary.yaml")
    g.add_argument("--canary-percent", type=int, default=10,
                   help="share of the traffic for the canary (default 10; without KServe rounded to whole pods)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--canary-image", help="serve image with the new repository at /models")
    src.add_argument("--canary-pvc", help="PersistentVolumeClaim holding the new repository")
    src.add_argument("--canary-model-url", help="object-store URL of the new repository (s3://, gs://, as://)")
    g.add_argument("--canary-server-image", help="server image for --canary-pvc / --canary-model-url "
                                                 "(default: the stable one's)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)
    k = sub.add_parser("k8s", help="Kubernetes manifests, dashboard and alerts for a model repository",
                       description="Kubernetes manifests (Kustomize base + overlay, rendered YAML), a Grafana "
                                   "dashboard and Prometheus alerts for a model repository.\n\n" + K8S_WRITES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _k8s_arguments(k)
    o = sub.add_parser("observability", help="Grafana dashboard, alert rules and a Prometheus config (no Kubernetes)",
                       description="Grafana dashboard, Prometheus alert rules with their promtool tests, and a "
                                   "Prometheus config scraping --target, for servers outside Kubernetes.\n\n"
                                   + OBSERVABILITY_WRITES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _observability_arguments(o)
    c = sub.add_parser("capacity", help="replicas for a target request rate from a perf sweep",
                       description="Replicas for a target request rate from a perf sweep's throughput at the SLO.")
    _capacity_arguments(c, required=True)
    c.add_argument("--out", type=Path, help="also write capacity.json and capacity.md here")
    c.add_argument("--json", action="store_true", help="print capacity.json on stdout instead of the summary")


def _source(image: str | None, pvc: str | None, url: str | None) -> RepositorySource:
    if image:
        return RepositorySource(kind="image", ref=image)
    if pvc:
        return RepositorySource(kind="pvc", ref=pvc)
    return RepositorySource(kind="url", ref=url)


def _canary(args: argparse.Namespace) -> CanarySpec | None:
    given = [f for f in ("canary_image", "canary_pvc", "canary_model_url", "canary_server_image")
             if getattr(args, f) is not None]
    if args.canary is None:
        if given:
            raise TritonkitError(f"--{given[0].replace('_', '-')} needs --canary NEW_REPO")
        return None
    if not any(getattr(args, f) for f in ("canary_image", "canary_pvc", "canary_model_url")):
        raise TritonkitError("--canary needs where the pods get the new repository: --canary-image, --canary-pvc "
                             "or --canary-model-url")
    return CanarySpec(source=_source(args.canary_image, args.canary_pvc, args.canary_model_url),
                      percent=args.canary_percent, server_image=args.canary_server_image)


def _capacity(args: argparse.Namespace):
    if args.sweep is None:
        if args.target_rps is not None:
            raise TritonkitError("--target-rps needs --sweep (and --slo-p99-ms)")
        return None
    if args.slo_p99_ms is None or args.target_rps is None:
        raise TritonkitError("--sweep needs --slo-p99-ms and --target-rps")
    rule = CapacityRule(headroom=args.headroom, spare=args.spare, min_replicas=args.min_replicas)
    request = CapacityRequest(slo_p99_ms=args.slo_p99_ms, target_rps=args.target_rps, model=args.sweep_model,
                              batch_size=args.batch_size, rule=rule)
    return plan_capacity(load_sweep(args.sweep), request)


def _queue_target_us(ms: float) -> int:
    if not math.isfinite(ms) or not 0.001 <= ms <= 3_600_000:
        raise TritonkitError(f"--queue-target-ms must be a number of milliseconds in [0.001, 3600000] (got {ms})")
    return round(ms * 1000)


def _run_k8s(args: argparse.Namespace, console: Console) -> int:
    plan = _capacity(args)
    if plan is not None and args.replicas is not None:
        raise TritonkitError("give --replicas or --sweep (which sets the replicas), not both")
    spec = DeploySpec(source=_source(args.image, args.pvc, args.model_url), name=args.name, namespace=args.namespace, release=args.release,
                      container_trt_version=args.container_trt_version,
                      server_image=args.server_image, max_replicas=args.max_replicas, cpu=args.cpu,
                      memory=args.memory, gpus=args.gpus, queue_target_us=_queue_target_us(args.queue_target_ms),
                      run_as_user=args.run_as_user, monitoring_namespace=args.monitoring_namespace, api_key_secret=args.api_key_secret,
                      cloud_credentials_secret=args.cloud_credentials_secret, kserve=args.kserve,
                      canary=_canary(args))
    replicas = plan.replicas if plan else args.replicas
    if replicas is not None:
        spec = replace(spec, replicas=replicas)
    thresholds = plan_thresholds(spec, plan, slo_p99_ms=args.slo_p99_ms, queue_slo_ms=args.queue_slo_ms,
                                 failure_ratio=args.max_failure_ratio)
    result = write_deployment(spec, args.repo, args.out, capacity=plan, thresholds=thresholds,
                              at_max_minutes=args.at_max_minutes, canary_repo=args.canary)
    info = result.repository
    console.print(f"{info.target} target, models: {', '.join(info.names)}; image {spec.image}; "
                  f"{spec.replicas} replicas (autoscaler up to {spec.hpa_max_replicas})")
    console.print(f"startup probe allows {result.startup.budget_s} s; headless Service DNS: {spec.headless_dns}")
    if plan:
        console.print(f"capacity: {plan.capacity_rps:.1f} req/s per replica at p99 <= {plan.slo_p99_ms:g} ms "
                      f"-> {plan.replicas} replicas for {plan.target_rps:g} req/s")
    if result.canary:
        c = result.canary
        console.print(f"canary: {spec.canary_name}, {c.replicas} replica(s) beside {spec.replicas}: "
                      f"{100 * c.share:.1f} % of the connections (asked {c.percent} %)"
                      + (f"; KServe canaryTrafficPercent {c.percent}" if spec.kserve else ""))
    for note in result.notes:
        console.print(f"note: {note}")
    _print_alerts(console, result.observability)
    console.print(f"wrote {args.out}/base, {args.out}/overlays/autoscale, "
                  + (f"{args.out}/canary, " if result.canary else "")
                  + f"{args.out}/rendered, {args.out}/observability, {args.out}/DEPLOY.md")
    schema = result.schema
    if not schema.ok:
        raise TritonkitError(f"{len(schema.errors)} object(s) fail the Kubernetes {schema.version} schemas: "
                             f"{schema.errors[0]}")
    console.print(f"Kubernetes {schema.version} schemas: {len(schema.validated)} objects valid, "
                  f"{len(schema.skipped)} custom resources not checked ({', '.join(o for o, _ in schema.skipped)})")
    return 0


def _print_alerts(console: Console, obs) -> None:
    console.print(f"dashboard: {len(obs.panels)} panels; alerts: {', '.join(obs.alerts)}")
    for line in obs.rules.thresholds.sources:
        console.print(f"  {line}")


def _sweep_thresholds(args: argparse.Namespace) -> Thresholds:
    if args.sweep is None:
        return derive_thresholds(slo_p99_ms=args.slo_p99_ms, queue_slo_ms=args.queue_slo_ms,
                                 failure_ratio=args.max_failure_ratio)
    if args.slo_p99_ms is None:
        raise TritonkitError("--sweep needs --slo-p99-ms (the capacity point is the best rate within it)")
    row = capacity_point(load_sweep(args.sweep), args.slo_p99_ms, args.sweep_model, args.batch_size)
    return derive_thresholds(slo_p99_ms=args.slo_p99_ms, queue_slo_ms=args.queue_slo_ms,
                             sweep_queue_us=row.split.server_queue_us, sweep_point=point_text(row),
                             failure_ratio=args.max_failure_ratio)


def _run_observability(args: argparse.Namespace, console: Console) -> int:
    thresholds = _sweep_thresholds(args)
    info = read_repository(args.repo)
    scrape = ScrapeConfig(tuple(args.targets or ScrapeConfig().targets), args.scrape_interval)
    rules = repository_rules(info, thresholds, name=args.name, namespace=args.namespace, url=args.url)
    result = write_observability(rules, info.target == "gpu", args.out, scrape, report=True)
    console.print(f"{info.target} target, models: {', '.join(info.names)}; scraping {', '.join(scrape.targets)} "
                  f"as job {rules.job}, namespace {rules.namespace}")
    _print_alerts(console, result)
    console.print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def _run_capacity(args: argparse.Namespace, console: Console) -> int:
    plan = _capacity(args)
    if args.json:
        console = cli_console(stderr=True)
        print_json(plan.to_dict())
    console.print(f"{plan.model} ({plan.config}), batch size {plan.batch_size}: {plan.capacity_rps:.1f} req/s per "
                  f"replica at p99 <= {plan.slo_p99_ms:g} ms (concurrency {plan.concurrency}, p99 {plan.p99_ms:.1f} ms)")
    console.print(f"{plan.target_rps:g} req/s -> {plan.replicas} replicas ({plan.replicas_for_load} for the load)")
    console.print(f"rule: {plan.rule}")
    if args.out:
        atomic_write_json(args.out / "capacity.json", plan.to_dict())
        atomic_write_text(args.out / "capacity.md", plan.markdown())
        console.print(f"wrote {args.out / 'capacity.json'} and {args.out / 'capacity.md'}")
    return 0


def run(args: argparse.Namespace) -> int:
    console = cli_console()
    if args.deploy_command == "k8s":
        return _run_k8s(args, console)
    if args.deploy_command == "observability":
        return _run_observability(args, console)
    return _run_capacity(args, console)
