"""tritonkit deploy k8s: manifests from a cpu-target (demo-like) and a gpu-target repository, checked offline.

No cluster runs here: the objects are checked against the pinned Kubernetes schemas
(kubernetes-validate), scanned with checkov, and the Kustomize tree is rendered with
``kubectl kustomize`` where kubectl is installed. The gpu repository holds a placeholder plan
with a real sidecar (TensorRT cannot build or load plans on this machine): the plan check reads
only sidecars and configs, the rest only the config.pbtxt and file sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tritonkit.build_engines.builder import install_plan
from tritonkit.build_engines.compat import DEFAULT_RELEASE, RELEASES, TRITON_IMAGE, VERSION_COMPATIBLE_SERVER_ARG
from tritonkit.build_engines.sidecar import GpuInfo, make_sidecar
from tritonkit.build_engines.spec import make_spec, sha256_file
from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.deploy import (
    DeployError, DeploySpec, RepositorySource, read_repository, startup_budget, validate_objects, write_deployment)
from tritonkit.deploy.checks import SKIPPED_SECURITY_CHECKS
from tritonkit.deploy.spec import CanarySpec
from tritonkit.deploy.manifests import CLOUD_ENV, QUEUE_METRIC, adapter_rule, launcher_script, storage_uri
from tritonkit.model_repository.config import RepoOptions
from support.chains import write_model_and_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.results import LatencySplit, PerfRow, write_rows_csv
from tritonkit.serve.profiles import API_KEY_ENV, EXIT_TIMEOUT_S, restricted_flags

from support.onnx_models import tiny_yolo_onnx

SERVE_IMAGE = "registry.example.com/tritonkit-serve:25.10"


@pytest.fixture(scope="module")
def cpu_repo(tmp_path_factory, tiny_onnx) -> Path:
    """The demo's kinds of models on the cpu target: a classifier, a detector with its NMS model and ensemble."""
    root = tmp_path_factory.mktemp("cpu")
    repo = root / "model_repository"
    write_model(get_card("demo_shapes"), tiny_onnx, repo, RepoOptions(target="cpu"))
    write_model_and_chain(get_card("demo_shapes_det"), tiny_yolo_onnx(root / "yolo.onnx"), repo, "ap",
                             RepoOptions(target="cpu"))
    return repo


def placeholder_plan(root: Path, card: str = "resnet50", *, tensorrt: str | None = None, **spec_kw) -> Path:
    """Placeholder plan bytes with a real sidecar: built with ``tensorrt`` (default: the TensorRT of
    the default release) on an L4 (compute capability 8.9), batch 1..8."""
    onnx = root / f"{card}.onnx"
    onnx.write_bytes(b"placeholder onnx")
    spec = make_spec(get_card(card), onnx, "fp16", root / f"{card}_fp16.plan", max_batch=8, check_onnx=False,
                     **spec_kw)
    side = make_sidecar(spec, sha256_file(onnx), tensorrt or RELEASES[DEFAULT_RELEASE].tensorrt,
                        GpuInfo("NVIDIA L4", "8.9"), "tensorrt-python")
    install_plan(b"\0" * 4096, side, spec.plan)
    return spec.plan


def gpu_repository(root: Path, **plan_kw) -> Path:
    """A resnet50 tensorrt_plan model (max batch 8) from :func:`placeholder_plan`."""
    root.mkdir(parents=True, exist_ok=True)
    write_model(get_card("resnet50"), placeholder_plan(root, **plan_kw), root / "model_repository",
                RepoOptions(target="gpu", max_batch_size=8))
    return root / "model_repository"


@pytest.fixture(scope="module")
def gpu_repo(tmp_path_factory) -> Path:
    """A tensorrt_plan model whose plan is placeholder bytes with a real sidecar (never loaded here)."""
    return gpu_repository(tmp_path_factory.mktemp("gpu"))


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def container_of(objects: list[dict]) -> dict:
    return by_kind(objects)[("Deployment", "tritonkit")]["spec"]["template"]["spec"]["containers"][0]


def test_reads_models_and_target_from_the_configs(cpu_repo, gpu_repo):
    cpu = read_repository(cpu_repo)
    assert cpu.names == ("demo_shapes", "demo_shapes_det", "demo_shapes_det_ensemble_ap", "demo_shapes_det_nms_ap")
    assert cpu.target == "cpu"
    devices = {m.name: m.device for m in cpu.models}
    assert devices["demo_shapes_det_ensemble_ap"] == "none" and devices["demo_shapes"] == "cpu"
    gpu = read_repository(gpu_repo)
    assert (gpu.names, gpu.target) == (("resnet50",), "gpu")
    assert gpu.models[0].platform == "tensorrt_plan" and gpu.models[0].warmups == 1  # bs 1 (RepoOptions.warmup_max_batch adds bs 8)
    assert gpu.total_bytes > 4096


def test_cpu_deployment_runs_the_production_profile(cpu_repo, tmp_path):
    spec = DeploySpec(source=RepositorySource(kind="pvc", ref="triton-models"), namespace="serving")
    result = write_deployment(spec, cpu_repo, tmp_path)
    objects = load(tmp_path / "rendered" / "base.yaml")
    c = container_of(objects)
    assert c["image"] == TRITON_IMAGE.format(release=DEFAULT_RELEASE) == "nvcr.io/nvidia/tritonserver:25.10-py3"
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert c["resources"]["requests"] == c["resources"]["limits"]  # Guaranteed QoS
    # a fixed script reads the key file; the flags are its arguments, never parsed by the shell
    assert c["command"][:4] == ["sh", "-c", launcher_script(), "tritonserver"]
    for flag in ("--model-repository=/models", "--model-control-mode=none", "--strict-readiness=true",
                 f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--allow-gpu-metrics=false"):
        assert flag in c["command"][4:]
    assert 'exec tritonserver "$@" ' in launcher_script()
    pod = by_kind(objects)[("Deployment", "tritonkit")]["spec"]["template"]["spec"]
    # SIGTERM comes after the preStop delay; Triton's exit timeout must fit in what remains
    assert pod["terminationGracePeriodSeconds"] >= spec.prestop_s + EXIT_TIMEOUT_S
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(spec.prestop_s)]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == result.startup.budget_s
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False and "tolerations" not in pod
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and "emptyDir" in volumes["tmp"]
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "triton-models", "readOnly": True}
    assert volumes["api-key"]["secret"]["secretName"] == "tritonkit-api-key"
    assert all(o["metadata"]["namespace"] == "serving" for o in objects)
    summary = json.loads((tmp_path / "deploy.json").read_text())
    assert summary["repository"]["models"][0]["name"] == "demo_shapes" and summary["target"] == "cpu"
    assert summary["headless_dns"] == "tritonkit-headless.serving.svc.cluster.local"
    # NGC's image has no onnxruntime (the cpu target's python backend); the NMS model is self-contained
    assert "demo_shapes imports onnxruntime" in summary["notes"][0]
    assert "demo_shapes_det_nms_ap" not in summary["notes"][0]


def test_gpu_deployment_asks_for_a_gpu_and_uses_the_serve_image(gpu_repo, tmp_path):
    result = write_deployment(DeploySpec(source=RepositorySource(kind="image", ref=SERVE_IMAGE), gpus=2), gpu_repo,
                              tmp_path)
    assert not any("python-backend" in note for note in result.notes)
    objects = load(tmp_path / "rendered" / "base.yaml")
    c = container_of(objects)
    assert c["image"] == SERVE_IMAGE
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--allow-gpu-metrics=true" in c["command"][4:]
    pod = by_kind(objects)[("Deployment", "tritonkit")]["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "models" not in {v["name"] for v in pod["volumes"]}  # the repository is in the image


def test_object_store_source_with_a_credentials_file(gpu_repo, tmp_path):
    source = RepositorySource(kind="url", ref="s3://bucket/models")
    write_deployment(DeploySpec(source=source, cloud_credentials_secret="triton-s3"), gpu_repo, tmp_path)
    c = container_of(load(tmp_path / "rendered" / "base.yaml"))
    assert c["command"][4] == "--model-repository=s3://bucket/models"
    assert {"name": CLOUD_ENV, "value": "/var/run/secrets/tritonkit-cloud/credentials.json"} in c["env"]
    assert not any("secretKeyRef" in str(e) for e in c["env"])  # secrets are files, never env values


def test_startup_budget_grows_with_the_repository(gpu_repo, tmp_path):
    """Hand-worked: a 2 GB plan from s3 at 25 MB/s = 80 s, + 30 s start + 10 s (one GPU instance)
    + 2 s (1 warmup x 2 s) = 122 s; doubled 244 -> 25 probes of 10 s = 250 s. From a PVC (100 MB/s):
    30 + 20 + 10 + 2 = 62 -> 124 -> 13 probes = 130 s."""
    big = tmp_path / "repo"
    shutil.copytree(gpu_repo, big)
    with open(big / "resnet50" / "1" / "model.plan", "r+b") as f:
        f.truncate(2_000_000_000)  # sparse: no disk used
    info = read_repository(big)
    s3 = startup_budget(info, "url")
    assert s3.estimate_s == pytest.approx(122.0, abs=0.1)
    assert (s3.failure_threshold, s3.budget_s) == (25, 250)
    assert (startup_budget(info, "pvc").failure_threshold, startup_budget(info, "image").budget_s) == (13, 120)
    write_deployment(DeploySpec(source=RepositorySource(kind="url", ref="gs://b/m")), big, tmp_path / "out")
    pod = by_kind(load(tmp_path / "out" / "rendered" / "base.yaml"))[("Deployment", "tritonkit")]["spec"]["template"]
    tmp = {v["name"]: v for v in pod["spec"]["volumes"]}["tmp"]["emptyDir"]["sizeLimit"]
    assert int(tmp.removesuffix("Mi")) >= 2 * 2_000_000_000 / 2**20  # Triton copies the repository to /tmp


def test_services_keep_metrics_inside_the_cluster(cpu_repo, tmp_path):
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m")), cpu_repo, tmp_path)
    objs = by_kind(load(tmp_path / "rendered" / "base.yaml"))
    client, headless = objs[("Service", "tritonkit")], objs[("Service", "tritonkit-headless")]
    metrics = objs[("Service", "tritonkit-metrics")]
    assert [p["port"] for p in client["spec"]["ports"]] == [8000, 8001]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    assert [p["port"] for p in metrics["spec"]["ports"]] == [8002]
    assert all(o["spec"].get("type") == "ClusterIP" for (k, _), o in objs.items() if k == "Service")
    assert all(8002 not in [p["port"] for p in s["spec"]["ports"]] for s in (client, headless))
    ingress = objs[("NetworkPolicy", "tritonkit")]["spec"]["ingress"]
    metrics_rule = [r for r in ingress if any(p["port"] == 8002 for p in r["ports"])]
    assert metrics_rule == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}], "ports": [{"protocol": "TCP", "port": 8002}]}]
    assert objs[("PodDisruptionBudget", "tritonkit")]["spec"]["maxUnavailable"] == 1


def test_autoscale_overlay_scales_on_queue_time_per_request(cpu_repo, tmp_path):
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m"), replicas=3, queue_target_us=20_000),
                     cpu_repo, tmp_path)
    objs = by_kind(load(tmp_path / "rendered" / "autoscale.yaml"))
    assert "replicas" not in objs[("Deployment", "tritonkit")]["spec"]  # the autoscaler owns the count
    hpa = objs[("HorizontalPodAutoscaler", "tritonkit")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 6)
    metric = hpa["metrics"][0]["pods"]
    assert metric["metric"]["name"] == QUEUE_METRIC == adapter_rule()["name"]["as"]
    assert metric["target"] == {"type": "AverageValue", "averageValue": "20000"}
    query = adapter_rule()["metricsQuery"]
    assert query.index("nv_inference_queue_duration_us") < query.index("/") < query.index("nv_inference_request_success")
    monitor = objs[("ServiceMonitor", "tritonkit")]["spec"]
    metrics_labels = objs[("Service", "tritonkit-metrics")]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= metrics_labels.items()
    assert monitor["endpoints"][0]["port"] == "metrics"
    rules = yaml.safe_load((tmp_path / "prometheus-adapter" / "rules.yaml").read_text())
    assert rules["rules"]["custom"] == [adapter_rule()]


def test_every_object_validates_against_the_pinned_schemas(cpu_repo, gpu_repo, tmp_path):
    for repo, kserve in ((cpu_repo, True), (gpu_repo, False)):
        out = tmp_path / repo.parent.name
        result = write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m"), kserve=kserve), repo, out)
        assert result.schema.ok, result.schema.errors
        for variant in ("base", "autoscale", "kserve") if kserve else ("base", "autoscale"):
            report = validate_objects(load(out / "rendered" / f"{variant}.yaml"))
            assert report.ok, report.errors
            assert {o.split("/")[0] for o, _ in report.skipped} <= {"ServiceMonitor", "PrometheusRule", "InferenceService"}
            assert all("no schema in kubernetes-validate" in why for _, why in report.skipped)
        assert len(result.schema.validated) == 7  # Deployment, 3 Services, NetworkPolicy, PDB, HPA


def test_schema_validation_catches_a_bad_object(gpu_repo, tmp_path):
    write_deployment(DeploySpec(source=RepositorySource(kind="image", ref=SERVE_IMAGE)), gpu_repo, tmp_path)
    deployment = load(tmp_path / "rendered" / "base.yaml")[0]
    deployment["spec"]["replica"] = 2  # misspelt: strict schemas reject unknown fields
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45"
    report = validate_objects([deployment])
    assert not report.ok and report.errors[0].startswith("Deployment/tritonkit")
    assert "replica" in " ".join(report.errors) or "45" in " ".join(report.errors)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_kustomize_builds_what_was_rendered(cpu_repo, tmp_path):
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m")), cpu_repo, tmp_path)
    for tree, rendered in (("base", "base"), ("overlays/autoscale", "autoscale")):
        built = subprocess.run(["kubectl", "kustomize", str(tmp_path / tree)], capture_output=True, text=True,
                               check=True).stdout
        assert by_kind([d for d in yaml.safe_load_all(built) if d]) == by_kind(load(tmp_path / "rendered" / f"{rendered}.yaml"))


def _checkov() -> str | None:
    for candidate in (os.environ.get("CHECKOV"), str(Path(sys.prefix) / "checkov" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _scan(binary: str, folder: Path) -> dict:
    proc = subprocess.run([binary, "-d", str(folder), "--framework", "kubernetes", "--skip-download", "-o", "json"],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.skipif(_checkov() is None, reason="checkov not installed (scripts/setup.sh puts it in .venv/checkov)")
def test_security_scan_fails_no_check(cpu_repo, gpu_repo, tmp_path):
    """checkov without a platform key gives no severities, so the bar is stricter than 'no HIGH':
    no failed check at all, apart from the skips listed (with reasons) in the manifests."""
    binary = _checkov()
    canary = CanarySpec(source=RepositorySource(kind="pvc", ref="m2"), percent=10)  # canary/ and kserve/canary.yaml
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m"), kserve=True, canary=canary), cpu_repo,
                     tmp_path / "cpu", canary_repo=cpu_repo)
    assert (tmp_path / "cpu" / "rendered" / "canary.yaml").is_file()
    write_deployment(DeploySpec(source=RepositorySource(kind="image", ref=SERVE_IMAGE)), gpu_repo, tmp_path / "gpu")
    report = _scan(binary, tmp_path)
    assert report["summary"]["passed"] > 100
    assert report["summary"]["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == set(SKIPPED_SECURITY_CHECKS)
    # each listed skip is needed: without the annotations exactly those checks fail
    bare = tmp_path / "bare"
    bare.mkdir()
    text = (tmp_path / "gpu" / "rendered" / "base.yaml").read_text()
    (bare / "base.yaml").write_text(text.replace("checkov.io/skip", "x-unskipped"))
    failed = {c["check_id"] for c in _scan(binary, bare)["results"]["failed_checks"]}
    assert failed == set(SKIPPED_SECURITY_CHECKS)


def test_cli_writes_manifests_with_capacity(cpu_repo, tmp_path, capsys):
    split = LatencySplit(0, 0, 0, 0, 0, 0, 0)
    rows = [PerfRow(model="demo_shapes", batch_size=1, concurrency=c, infer_per_s=rps, avg_us=p99, p50_us=p99,
                    p90_us=p99, p95_us=p99, p99_us=p99, split=split, protocol="grpc")
            for c, rps, p99 in ((1, 100.0, 10_000.0), (4, 380.0, 30_000.0), (8, 450.0, 80_000.0))]
    write_rows_csv(rows, tmp_path / "perf" / "sweep.csv")
    out = tmp_path / "k8s"
    common = ["deploy", "k8s", "--repo", str(cpu_repo), "--pvc", "models", "--out", str(out)]
    capacity = ["--sweep", str(tmp_path / "perf"), "--slo-p99-ms", "50", "--target-rps", "1000", "--headroom", "0.25"]
    assert main(common + capacity) == 0
    summary = json.loads((out / "deploy.json").read_text())
    assert summary["replicas"] == 5 and summary["capacity"]["capacity_rps"] == pytest.approx(380.0)
    report = (out / "DEPLOY.md").read_text()
    assert "## Capacity" in report and "No cluster ran these manifests" in report
    assert load(out / "rendered" / "base.yaml")[0]["spec"]["replicas"] == 5
    assert main(common + capacity + ["--replicas", "3"]) == 1
    assert main(["deploy", "capacity", *capacity, "--out", str(tmp_path / "cap")]) == 0
    assert json.loads((tmp_path / "cap" / "capacity.json").read_text())["replicas"] == 5
    assert main(["deploy", "k8s", "--repo", str(cpu_repo), "--model-url", "http://x/models", "--out", str(out)]) == 1
    assert "must start with s3://, gs://, as://" in capsys.readouterr().err


def test_spec_and_repository_errors_name_the_field(tmp_path):
    pvc = RepositorySource(kind="pvc", ref="m")
    with pytest.raises(DeployError, match="^name 'Triton'"):
        DeploySpec(source=pvc, name="Triton")
    with pytest.raises(DeployError, match="cloud_credentials_secret"):
        DeploySpec(source=pvc, cloud_credentials_secret="creds")
    with pytest.raises(DeployError, match="max_replicas 1 is below replicas 2"):
        DeploySpec(source=pvc, max_replicas=1)
    with pytest.raises(DeployError, match="memory"):
        DeploySpec(source=pvc, memory="16 GB")
    with pytest.raises(DeployError, match="no <model>/config.pbtxt"):
        read_repository(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.pbtxt").write_text('name: "b"\nbackend: "python"\n')
    with pytest.raises(DeployError, match="differs from its folder"):
        read_repository(tmp_path)


def test_kserve_inference_service_maps_each_source(gpu_repo, tmp_path):
    azure = RepositorySource(kind="url", ref="as://acct/models/resnet")
    assert storage_uri(azure) == "https://acct.blob.core.windows.net/models/resnet"
    assert storage_uri(RepositorySource(kind="pvc", ref="claim")) == "pvc://claim/"
    assert storage_uri(RepositorySource(kind="image", ref=SERVE_IMAGE)) == f"oci://{SERVE_IMAGE}"  # a modelcar
    write_deployment(DeploySpec(source=RepositorySource(kind="url", ref="s3://b/m"), kserve=True), gpu_repo, tmp_path)
    isvc = load(tmp_path / "kserve" / "inferenceservice.yaml")[0]["spec"]["predictor"]
    assert isvc["model"]["storageUri"] == "s3://b/m" and isvc["model"]["runtimeVersion"] == "25.10-py3"
    args = isvc["model"]["args"]
    assert restricted_flags(f"$({API_KEY_ENV})")[0] in args and "--model-control-mode=none" in args
    assert not any(a.startswith("--model-repository") for a in args)  # KServe's runtime sets it
    assert isvc["model"]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_version_compatible_plans_get_the_tensorrt_backend_flag(tmp_path):
    """tensorrt_backend src/tensorrt.cc reads the backend config key "version-compatible" and
    src/loader.cc then allows the plan's host code (setEngineHostCodeAllowed): without the flag a
    version-compatible plan fails to load. Both an older TensorRT's plan and one of the serving
    TensorRT itself need it."""
    for trt in (RELEASES["25.06"].tensorrt, RELEASES[DEFAULT_RELEASE].tensorrt):
        root = tmp_path / trt
        repo = gpu_repository(root, tensorrt=trt, version_compatible=True)
        result = write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m"), kserve=True), repo,
                                  root / "out")
        c = container_of(load(root / "out" / "rendered" / "base.yaml"))
        assert c["command"][4:].count(VERSION_COMPATIBLE_SERVER_ARG) == 1
        isvc = load(root / "out" / "kserve" / "inferenceservice.yaml")[0]
        assert VERSION_COMPATIBLE_SERVER_ARG in isvc["spec"]["predictor"]["model"]["args"]
        summary = json.loads((root / "out" / "deploy.json").read_text())
        assert summary["repository"]["server_args"] == [VERSION_COMPATIBLE_SERVER_ARG]
        assert VERSION_COMPATIBLE_SERVER_ARG in (root / "out" / "DEPLOY.md").read_text()
        assert any("NVIDIA L4" in n and "8.9" in n for n in result.notes)  # the GPU the pods need


def test_a_plain_plan_of_the_serving_tensorrt_gets_no_extra_flag(gpu_repo, tmp_path):
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m")), gpu_repo, tmp_path)
    assert not any(a.startswith("--backend-config") for a in container_of(load(tmp_path / "rendered" / "base.yaml"))["command"])


@pytest.mark.parametrize("case", ["other_tensorrt", "no_sidecar", "older_than_the_plan"])
def test_plans_that_will_not_load_in_the_release_are_refused_in_one_line(case, tmp_path, capsys):
    """A plan from another TensorRT (not version-compatible), a plan without a sidecar, and a
    version-compatible plan on an older TensorRT would CrashLoop a pod started with
    --exit-on-error=true: refused before anything is written."""
    trt = {"other_tensorrt": RELEASES["25.06"].tensorrt, "no_sidecar": None, "older_than_the_plan": "10.99.0.1"}[case]
    repo = gpu_repository(tmp_path / "r", tensorrt=trt, version_compatible=case == "older_than_the_plan")
    if case == "no_sidecar":
        (repo / "resnet50" / "1" / "model.plan.json").unlink()
    out = tmp_path / "out"
    assert main(["deploy", "k8s", "--repo", str(repo), "--pvc", "m", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"will not load in tritonserver {DEFAULT_RELEASE}" in err and "resnet50/1/model.plan" in err
    assert not out.exists()


def test_release_and_container_tensorrt_decide_the_check(tmp_path, capsys):
    """The plan check runs against --release (and --container-trt-version where given), not a fixed one."""
    repo = gpu_repository(tmp_path / "r", tensorrt=RELEASES["25.06"].tensorrt)
    common = ["deploy", "k8s", "--repo", str(repo), "--pvc", "m"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 1
    assert main(common + ["--release", "25.06", "--out", str(tmp_path / "b")]) == 0
    c = container_of(load(tmp_path / "b" / "rendered" / "base.yaml"))
    assert c["image"] == TRITON_IMAGE.format(release="25.06")
    assert main(common + ["--container-trt-version", RELEASES["25.06"].tensorrt, "--out", str(tmp_path / "c")]) == 0
    assert main(common + ["--container-trt-version", "10.x\n", "--out", str(tmp_path / "d")]) == 1
    assert "--container-trt-version" in capsys.readouterr().err
