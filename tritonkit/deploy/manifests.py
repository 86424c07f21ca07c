"""Kubernetes objects for one deployment, as plain dicts (serialised by :mod:`tritonkit.deploy.writer`).

Three groups:

* :func:`base_objects` — what runs on any cluster: the Deployment, the client Service (HTTP and
  gRPC), a headless Service whose DNS name resolves to every ready pod (for clients that spread
  requests themselves: a long-lived gRPC connection through a plain Service stays on one pod),
  the metrics Service (ClusterIP, port 8002 only, for monitoring), a NetworkPolicy that admits the
  metrics port only from the monitoring namespace, and a PodDisruptionBudget.
* :func:`autoscale_objects` — a HorizontalPodAutoscaler on Triton's queue time per request (a
  custom metric served by prometheus-adapter) and the ServiceMonitor that has Prometheus scrape
  the metrics Service; :func:`adapter_rule` is the prometheus-adapter rule between them.
* :func:`kserve_objects` — optionally, the same server as a KServe ``InferenceService``.
* :func:`canary_objects` — with a canary: a second Deployment serving the new repository behind
  the same client Service (traffic splits by ready pods), and a Service for each track so the
  two can be compared (``tritonkit validate --candidate ... --stable ...``);
  :func:`kserve_canary_objects` — the InferenceService with the new repository and
  ``canaryTrafficPercent``.

Every Deployment's pods carry ``tritonkit.io/track`` (``stable``, or ``canary``) in their labels and
in the Deployment's selector, so two Deployments never select each other's pods (Kubernetes'
canary pattern), while the client Service, the NetworkPolicy and the PodDisruptionBudget select
both. The stable Deployment carries its track with or without a canary: adding or removing a
canary never changes its (immutable) selector.

The server runs with the production profile's flags: model control ``none``, strict readiness,
the restricted APIs behind the API key (:func:`tritonkit.serve.profiles.restricted_flags`), and an
exit timeout that, with the preStop delay, fits in ``terminationGracePeriodSeconds``, so a rolling
update or a drain lets in-flight requests finish.

No value of the spec is ever parsed by a shell: the container command is a fixed script
(:func:`launcher_script`, which only reads the key file) and the flags are its separate
arguments; every value was checked by :class:`~tritonkit.deploy.spec.DeploySpec` before it gets here.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import replace

from tritonkit.deploy.queries import QUEUE_US, Scope, queue_us_per_request
from tritonkit.deploy.repository import RepositoryInfo, StartupBudget
from tritonkit.deploy.spec import DeploySpec, RepositorySource
from tritonkit.serve.metrics import metrics_flags
from tritonkit.serve.profiles import API_KEY_ENV, CONTAINER_REPO, restricted_flags

PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
CLIENT_PORTS = ("http", "grpc")
APP_PROTOCOLS = {"http": "http", "grpc": "kubernetes.io/h2c", "metrics": "http"}
API_KEY_ITEM = "api-key"                       # the key inside the API-key Secret
KEY_DIR = "/var/run/secrets/tritonkit"
KEY_FILE = f"{KEY_DIR}/{API_KEY_ITEM}"
CLOUD_DIR = "/var/run/secrets/tritonkit-cloud"
CLOUD_ITEM = "credentials.json"
CLOUD_ENV = "TRITON_CLOUD_CREDENTIAL_PATH"    # Triton's credential file for s3:// gs:// as://
QUEUE_METRIC = "triton_queue_us_per_request"
# requests == limits: Guaranteed QoS, so a replica serves as the single server the sweep measured.
DEFAULT_RESOURCES = {"cpu": ("4", "8Gi"), "gpu": ("4", "16Gi")}
SHM_SIZE = "1Gi"                               # python backend and shared-memory tensors (docker --shm-size=1g)
DEFAULT_TMP_MI = 1024
TRACK_LABEL = "tritonkit.io/track"
STABLE, CANARY = "stable", "canary"


def labels(spec: DeploySpec) -> dict[str, str]:
    return {**selector(spec), "app.kubernetes.io/component": "inference-server",
            "app.kubernetes.io/part-of": "tritonkit", "app.kubernetes.io/managed-by": "tritonkit"}


def selector(spec: DeploySpec) -> dict[str, str]:
    """The pods of the deployment, both tracks (Services, NetworkPolicy, PodDisruptionBudget)."""
    return {"app.kubernetes.io/name": "tritonserver", "app.kubernetes.io/instance": spec.name}


def track_selector(spec: DeploySpec, track: str) -> dict[str, str]:
    """The pods of one track (its Deployment's selector, its own Service)."""
    return {**selector(spec), TRACK_LABEL: track}


def _meta(spec: DeploySpec, name: str, extra: dict | None = None, annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": spec.namespace, "labels": {**labels(spec), **(extra or {})}}
    if annotations:
        meta["annotations"] = annotations
    return meta


def server_flags(spec: DeploySpec, info: RepositoryInfo) -> list[str]:
    """tritonserver's flags but the API key's: the production profile's, on the ports of :data:`PORTS`,
    then what the repository's plans need (``info.server_args``)."""
    return [f"--model-repository={spec.source.model_repository}", "--model-control-mode=none",
            "--strict-readiness=true", f"--exit-timeout-secs={spec.exit_timeout_s}", "--exit-on-error=true",
            "--disable-auto-complete-config", *(f"--{p}-port={n}" for p, n in PORTS.items()),
            "--allow-metrics=true", f"--allow-gpu-metrics={'true' if info.target == 'gpu' else 'false'}",
            *metrics_flags(), *info.server_args]


def launcher_script() -> str:
    """The container's fixed ``sh -c`` script: read the key file, then exec tritonserver with the
    flags given as the script's arguments (``"$@"``) and the two restricted-API flags.

    The script is the same for every deployment: no value of the spec is pasted into it, and
    the shell never parses the arguments, so no flag can be split, expanded or run. Only the key
    needs a shell (it is in neither the pod spec nor the container runtime's config); exec hands
    the shell's process to Triton, which so receives SIGTERM itself and drains. A missing or
    empty key file stops the container with one line instead of serving with an empty key.
    Kubernetes leaves ``$(cat ...)`` alone (it names no environment variable).
    """
    marker = "@KEY@"
    restricted = []
    for flag in restricted_flags(marker):
        before, after = flag.split(marker)
        restricted.append(shlex.quote(before) + '"$key"' + (shlex.quote(after) if after else ""))
    missing = shlex.quote(f"tritonkit: API key file {KEY_FILE} is missing or empty")
    return (f"key=$(cat {shlex.quote(KEY_FILE)} 2>/dev/null) && [ -n \"$key\" ] || {{ echo {missing} >&2; exit 1; }}; "
            f'exec tritonserver "$@" {" ".join(restricted)}')


def server_command(spec: DeploySpec, info: RepositoryInfo) -> list[str]:
    """The container command: :func:`launcher_script`, with the flags as separate arguments
    (``sh -c SCRIPT tritonserver FLAG...``: the word after the script is the shell's ``$0``)."""
    return ["sh", "-c", launcher_script(), "tritonserver", *server_flags(spec, info)]


def resources(spec: DeploySpec, target: str) -> dict:
    cpu_default, memory_default = DEFAULT_RESOURCES[target]
    amounts = {"cpu": spec.cpu or cpu_default, "memory": spec.memory or memory_default}
    limits = dict(amounts)
    if target == "gpu":
        limits["nvidia.com/gpu"] = spec.gpus
    return {"requests": amounts, "limits": limits}


def _probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def _tmp_size_mi(spec: DeploySpec, info: RepositoryInfo) -> int:
    """/tmp: Triton copies an object-store repository there before loading it."""
    if spec.source.kind != "url":
        return DEFAULT_TMP_MI
    return max(DEFAULT_TMP_MI, math.ceil(2 * info.total_bytes / 2**20))


def container(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget) -> dict:
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"},
              {"name": "api-key", "mountPath": KEY_DIR, "readOnly": True}]
    env = [{"name": "HOME", "value": "/tmp"}]
    if spec.source.kind == "pvc":
        mounts.append({"name": "models", "mountPath": CONTAINER_REPO, "readOnly": True})
    if spec.cloud_credentials_secret:
        mounts.append({"name": "cloud-credentials", "mountPath": CLOUD_DIR, "readOnly": True})
        env.append({"name": CLOUD_ENV, "value": f"{CLOUD_DIR}/{CLOUD_ITEM}"})
    uid = spec.run_as_user
    return {
        "name": "tritonserver", "image": spec.image, "imagePullPolicy": "Always",
        "command": server_command(spec, info), "env": env,
        "ports": [{"name": p, "containerPort": n, "protocol": "TCP"} for p, n in PORTS.items()],
        "startupProbe": _probe("/v2/health/ready", startup.period_s, startup.failure_threshold),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "readinessProbe": _probe("/v2/health/ready", 5, 2),
        # the endpoints controller takes the pod out of the Services before Triton gets SIGTERM
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.prestop_s)]}}},
        "resources": resources(spec, info.target),
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": mounts,
    }


def volumes(spec: DeploySpec, info: RepositoryInfo) -> list[dict]:
    vols = [{"name": "tmp", "emptyDir": {"sizeLimit": f"{_tmp_size_mi(spec, info)}Mi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
            {"name": "api-key", "secret": {"secretName": spec.key_secret, "defaultMode": 0o440,
                                           "items": [{"key": API_KEY_ITEM, "path": API_KEY_ITEM}]}}]
    if spec.source.kind == "pvc":
        vols.append({"name": "models", "persistentVolumeClaim": {"claimName": spec.source.ref, "readOnly": True}})
    if spec.cloud_credentials_secret:
        vols.append({"name": "cloud-credentials", "secret": {
            "secretName": spec.cloud_credentials_secret, "defaultMode": 0o440,
            "items": [{"key": CLOUD_ITEM, "path": CLOUD_ITEM}]}})
    return vols


def pod_spec(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget) -> dict:
    uid = spec.run_as_user
    pod = {
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.grace_period_s,
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(spec, info, startup)],
        "volumes": volumes(spec, info),
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": selector(spec)}}],
    }
    if info.target == "gpu":
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return pod


def deployment(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget, *, replicas: bool = True,
               annotations: dict | None = None, track: str = STABLE) -> dict:
    """The server's Deployment for ``track`` (the canary's is ``<name>-canary``); ``replicas=False``
    leaves the count to an autoscaler."""
    pods = track_selector(spec, track)
    body = {"revisionHistoryLimit": 5, "selector": {"matchLabels": pods},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {**labels(spec), **pods},
                                      "annotations": {"tritonkit.io/models": ",".join(info.names)}},
                         "spec": pod_spec(spec, info, startup)}}
    if replicas:
        body = {"replicas": spec.replicas, **body}
    name = spec.name if track == STABLE else spec.canary_name
    meta = _meta(spec, name, {TRACK_LABEL: track},
                 annotations={"tritonkit.io/models": ",".join(info.names), "tritonkit.io/target": info.target,
                              **(annotations or {})})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body}


def _service(spec: DeploySpec, name: str, role: str, ports: tuple[str, ...], headless: bool = False,
             track: str | None = None) -> dict:
    body = {"type": "ClusterIP", "selector": selector(spec) if track is None else track_selector(spec, track),
            "ports": [{"name": p, "port": PORTS[p], "targetPort": p, "protocol": "TCP",
                       "appProtocol": APP_PROTOCOLS[p]} for p in ports]}
    if headless:
        body.update(clusterIP="None", publishNotReadyAddresses=False)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, name, {"tritonkit.io/service": role}),
            "spec": body}


def services(spec: DeploySpec) -> list[dict]:
    """Client (HTTP + gRPC), headless (every ready pod's address in DNS) and metrics (monitoring only)."""
    return [_service(spec, spec.name, "client", CLIENT_PORTS),
            _service(spec, spec.headless_service, "headless", CLIENT_PORTS, headless=True),
            _service(spec, f"{spec.name}-metrics", "metrics", ("metrics",))]


def network_policy(spec: DeploySpec) -> dict:
    """Clients may reach HTTP and gRPC; only the monitoring namespace reaches the metrics port."""
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spec.monitoring_namespace}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(spec, spec.name),
            "spec": {"podSelector": {"matchLabels": selector(spec)}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": PORTS[p]} for p in CLIENT_PORTS]},
                                 {"from": [monitoring], "ports": [{"protocol": "TCP", "port": PORTS["metrics"]}]}]}}


def disruption_budget(spec: DeploySpec) -> dict:
    """One pod at a time may be evicted (node drains), the rest keep serving."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(spec, spec.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(spec)}}}


def base_objects(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget,
                 annotations: dict | None = None) -> list[dict]:
    return [deployment(spec, info, startup, annotations=annotations), *services(spec), network_policy(spec),
            disruption_budget(spec)]


def autoscaler(spec: DeploySpec) -> dict:
    """Scale on the mean queue time per request of the pods (:data:`QUEUE_METRIC`, in µs)."""
    metric = {"type": "Pods", "pods": {"metric": {"name": QUEUE_METRIC},
                                       "target": {"type": "AverageValue", "averageValue": str(spec.queue_target_us)}}}
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 30,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(spec, spec.name),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
                     "minReplicas": spec.replicas, "maxReplicas": spec.hpa_max_replicas,
                     "metrics": [metric], "behavior": behavior}}


def service_monitor(spec: DeploySpec) -> dict:
    """Prometheus Operator: scrape the metrics Service (adds the namespace and pod labels the rule needs)."""
    match = {**selector(spec), "tritonkit.io/service": "metrics"}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": _meta(spec, spec.name),
            "spec": {"selector": {"matchLabels": match}, "namespaceSelector": {"matchNames": [spec.namespace]},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}}


def adapter_rule() -> dict:
    """prometheus-adapter rule: queue µs per successful request, per pod, over 2 minutes
    (:func:`tritonkit.deploy.queries.queue_us_per_request` in the adapter's template scope)."""
    scope = Scope(server=("<<.LabelMatchers>>",), window="2m", by=("<<.GroupBy>>",))
    return {"seriesQuery": f'{QUEUE_US}{{namespace!="",pod!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": f"^{QUEUE_US}$", "as": QUEUE_METRIC},
            "metricsQuery": queue_us_per_request(scope)}


def autoscale_objects(spec: DeploySpec) -> list[dict]:
    return [autoscaler(spec), service_monitor(spec)]


def storage_uri(source: RepositorySource) -> str:
    """KServe's storageUri for ``source`` (an image is a KServe modelcar: models at /models)."""
    if source.kind == "image":
        return f"oci://{source.ref}"
    if source.kind == "pvc":
        return f"pvc://{source.ref}/"
    if source.ref.startswith("as://"):
        account, _, rest = source.ref.removeprefix("as://").partition("/")
        return f"https://{account}.blob.core.windows.net/{rest}"
    return source.ref


def kserve_objects(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget) -> list[dict]:
    """A KServe InferenceService running the same server through KServe's Triton runtime.

    KServe's runtime starts tritonserver without a shell, so here the key comes from the Secret
    as an environment variable that Kubernetes expands into the arguments."""
    flags = [f for f in server_flags(spec, info) + restricted_flags(f"$({API_KEY_ENV})")
             if not f.startswith(("--model-repository=", "--http-port=", "--grpc-port="))]
    model = {"modelFormat": {"name": "triton"}, "storageUri": storage_uri(spec.source),
             "runtimeVersion": f"{spec.release}-py3", "args": flags,
             "env": [{"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": spec.key_secret,
                                                                           "key": API_KEY_ITEM}}}],
             "resources": resources(spec, info.target),
             "securityContext": container(spec, info, startup)["securityContext"]}
    return [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": _meta(spec, spec.name, annotations={"serving.kserve.io/enable-prometheus-scraping": "true"}),
             "spec": {"predictor": {"minReplicas": spec.replicas, "maxReplicas": spec.hpa_max_replicas,
                                    "model": model}}}]


def canary_objects(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget,
                   annotations: dict | None = None) -> list[dict]:
    """The canary Deployment (``spec.canary_spec()`` with the new repository's ``info``), and a
    Service for each track's pods alone (the client Service already selects both)."""
    return [deployment(spec.canary_spec(), info, startup, annotations=annotations, track=CANARY),
            _service(spec, spec.canary_name, CANARY, CLIENT_PORTS, track=CANARY),
            _service(spec, spec.stable_name, STABLE, CLIENT_PORTS, track=STABLE)]


def kserve_canary_objects(spec: DeploySpec, info: RepositoryInfo, startup: StartupBudget) -> list[dict]:
    """The InferenceService updated to the canary's repository with ``canaryTrafficPercent``:
    applied over the running one, KServe keeps the last rolled-out revision for the rest of the
    traffic (serverless deployment mode only)."""
    scaled_as_stable = replace(spec.canary_spec(), replicas=spec.replicas, max_replicas=spec.max_replicas)
    isvc = kserve_objects(scaled_as_stable, info, startup)
    predictor = isvc[0]["spec"]["predictor"]
    isvc[0]["spec"]["predictor"] = {"canaryTrafficPercent": spec.canary.percent, **predictor}
    return isvc
