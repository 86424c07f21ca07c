"""tritonkit deploy k8s --canary: a second Deployment behind the same Service (split by pods), the
per-track Services, KServe's canaryTrafficPercent; checked offline (no cluster runs here: the
objects are validated against the pinned Kubernetes schemas; the checkov scan of a canary
deployment is in test_deploy_k8s.py's security test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.deploy import DeployError, DeploySpec, RepositorySource, validate_objects, write_deployment
from tritonkit.deploy.manifests import TRACK_LABEL
from tritonkit.deploy.spec import CanarySpec, canary_split
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.writer import write_model

from support import readme
from support.onnx_models import tiny_classifier


@pytest.fixture(scope="module")
def repos(tmp_path_factory, tiny_onnx) -> tuple[Path, Path]:
    """The stable repository (demo_shapes) and a new one (demo_shapes from other weights, 2 instances)."""
    root = tmp_path_factory.mktemp("canary")
    write_model(get_card("demo_shapes"), tiny_onnx, root / "v1", RepoOptions(target="cpu"))
    write_model(get_card("demo_shapes"), tiny_classifier(root / "v2.onnx", seed=1), root / "v2",
                RepoOptions(target="cpu", instances=2))
    return root / "v1", root / "v2"


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def selects(selector: dict, pod_labels: dict) -> bool:
    return selector.items() <= pod_labels.items()


PVC = RepositorySource(kind="pvc", ref="models-v1")
CANARY = CanarySpec(source=RepositorySource(kind="pvc", ref="models-v2"), percent=10)


@pytest.mark.parametrize("stable, percent, expected", [
    (2, 10, (1, 1 / 3)),      # one pod is the least: 1 of 3
    (9, 10, (1, 0.1)),        # 9 stable + 1 canary: exactly 10 %
    (18, 10, (2, 0.1)),
    (3, 50, (3, 0.5)),
    (4, 25, (1, 0.2)),        # 4 x 25/75 = 1.33 -> 1 pod: 1 of 5
    (1, 99, (99, 0.99)),
])
def test_canary_split_rounds_to_whole_pods(stable, percent, expected):
    replicas, share = canary_split(stable, percent)
    assert replicas == expected[0] and share == pytest.approx(expected[1])


def test_canary_deployment_shares_the_client_service_and_has_its_own(repos, tmp_path):
    v1, v2 = repos
    result = write_deployment(DeploySpec(source=PVC, replicas=2, canary=CANARY), v1, tmp_path, canary_repo=v2)
    assert result.schema.ok, result.schema.errors
    assert len(result.schema.validated) == 10  # 7 + the canary Deployment and its two Services
    canary = by_kind(load(tmp_path / "rendered" / "canary.yaml"))
    base = by_kind(load(tmp_path / "rendered" / "base.yaml"))
    stable_dep, canary_dep = base[("Deployment", "tritonkit")], canary[("Deployment", "tritonkit-canary")]
    assert canary_dep["spec"]["replicas"] == 1 and stable_dep["spec"]["replicas"] == 2
    stable_pods = stable_dep["spec"]["template"]["metadata"]["labels"]
    canary_pods = canary_dep["spec"]["template"]["metadata"]["labels"]
    assert (stable_pods[TRACK_LABEL], canary_pods[TRACK_LABEL]) == ("stable", "canary")
    # neither Deployment selects the other's pods; the client Service, PDB and NetworkPolicy select both
    assert not selects(stable_dep["spec"]["selector"]["matchLabels"], canary_pods)
    assert not selects(canary_dep["spec"]["selector"]["matchLabels"], stable_pods)
    for selector in (base[("Service", "tritonkit")]["spec"]["selector"],
                     base[("PodDisruptionBudget", "tritonkit")]["spec"]["selector"]["matchLabels"],
                     base[("NetworkPolicy", "tritonkit")]["spec"]["podSelector"]["matchLabels"]):
        assert selects(selector, stable_pods) and selects(selector, canary_pods)
    own = {name: canary[("Service", name)]["spec"]["selector"] for name in ("tritonkit-canary", "tritonkit-stable")}
    assert selects(own["tritonkit-canary"], canary_pods) and not selects(own["tritonkit-canary"], stable_pods)
    assert selects(own["tritonkit-stable"], stable_pods) and not selects(own["tritonkit-stable"], canary_pods)
    # the canary serves the new repository with its own config (2 instances), same production flags
    container = canary_dep["spec"]["template"]["spec"]["containers"][0]
    claims = {v["name"]: v for v in canary_dep["spec"]["template"]["spec"]["volumes"]}
    assert claims["models"]["persistentVolumeClaim"]["claimName"] == "models-v2"
    assert "--model-control-mode=none" in container["command"] and "--strict-readiness=true" in container["command"]
    assert canary_dep["metadata"]["annotations"]["checkov.io/skip1"].startswith("CKV_K8S_43=")
    summary = json.loads((tmp_path / "deploy.json").read_text())["canary"]
    assert (summary["replicas"], summary["share"], summary["percent"]) == (1, pytest.approx(1 / 3, abs=1e-4), 10)
    assert summary["service"] == "tritonkit-canary" and summary["stable_service"] == "tritonkit-stable"
    kustomization = yaml.safe_load((tmp_path / "canary" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["deployment.yaml", "services.yaml"]
    report = (tmp_path / "DEPLOY.md").read_text()
    assert "1/3 = 33.3 % of the connections (asked: 10 %)" in report
    assert "at least 9 stable replicas beside 1 canary replica(s)" in report
    assert "tritonkit validate --candidate tritonkit-canary.tritonkit.svc.cluster.local:8001" in report


def test_the_stable_selector_does_not_change_when_a_canary_is_added(repos, tmp_path):
    """A Deployment's selector is immutable: the stable one carries its track with or without a canary."""
    v1, v2 = repos
    write_deployment(DeploySpec(source=PVC), v1, tmp_path / "plain")
    write_deployment(DeploySpec(source=PVC, canary=CANARY), v1, tmp_path / "canary", canary_repo=v2)
    plain = by_kind(load(tmp_path / "plain" / "rendered" / "base.yaml"))[("Deployment", "tritonkit")]
    with_canary = by_kind(load(tmp_path / "canary" / "rendered" / "base.yaml"))[("Deployment", "tritonkit")]
    assert plain["spec"]["selector"] == with_canary["spec"]["selector"]
    assert plain["spec"]["selector"]["matchLabels"][TRACK_LABEL] == "stable"
    assert not (tmp_path / "plain" / "canary").exists() and json.loads(
        (tmp_path / "plain" / "deploy.json").read_text())["canary"] is None


def test_kserve_canary_sets_canary_traffic_percent(repos, tmp_path):
    v1, v2 = repos
    canary = CanarySpec(source=RepositorySource(kind="url", ref="s3://bucket/v2"), percent=10)
    spec = DeploySpec(source=RepositorySource(kind="url", ref="s3://bucket/v1"), replicas=3, kserve=True,
                      canary=canary)
    result = write_deployment(spec, v1, tmp_path, canary_repo=v2)
    assert result.schema.ok
    stable = load(tmp_path / "kserve" / "inferenceservice.yaml")[0]["spec"]["predictor"]
    new = load(tmp_path / "kserve" / "canary.yaml")[0]
    predictor = new["spec"]["predictor"]
    assert new["metadata"]["name"] == "tritonkit"  # the same InferenceService, updated
    assert predictor["canaryTrafficPercent"] == 10 and predictor["model"]["storageUri"] == "s3://bucket/v2"
    assert stable["model"]["storageUri"] == "s3://bucket/v1" and "canaryTrafficPercent" not in stable
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (stable["minReplicas"], stable["maxReplicas"])
    assert ("InferenceService/tritonkit", ) == tuple({o for o, _ in validate_objects([new]).skipped})
    assert "canaryTrafficPercent: 10" in (tmp_path / "DEPLOY.md").read_text()


def test_canary_errors_name_the_field(repos, tmp_path, capsys):
    v1, v2 = repos
    with pytest.raises(DeployError, match="canary_percent must be an integer in \\[1, 99\\]"):
        CanarySpec(source=PVC, percent=100)
    with pytest.raises(DeployError, match="needs its repository"):
        write_deployment(DeploySpec(source=PVC, canary=CANARY), v1, tmp_path)
    common = ["deploy", "k8s", "--repo", str(v1), "--pvc", "models-v1", "--out", str(tmp_path / "out")]
    assert main(common + ["--canary", str(v2)]) == 1
    assert "--canary needs where the pods get the new repository" in capsys.readouterr().err
    assert main(common + ["--canary-pvc", "models-v2"]) == 1
    assert "--canary-pvc needs --canary NEW_REPO" in capsys.readouterr().err
    assert main(common + ["--canary", str(v2), "--canary-pvc", "Models V2"]) == 1
    assert "pvc 'Models V2'" in capsys.readouterr().err
    assert main(common + ["--canary", str(v2), "--canary-pvc", "models-v2", "--canary-percent", "10"]) == 0
    assert "10 % or less takes at least 9" in (tmp_path / "out" / "DEPLOY.md").read_text()
    assert "tritonkit-canary, 1 replica(s) beside 2: 33.3 % of the connections" in capsys.readouterr().out


def test_the_readme_canary_deploy_command_runs(repos, tmp_path):
    """README, Operating it / Canary rollouts: the deploy command as written (its paths mapped here)."""
    v1, v2 = repos
    (argv,) = readme.commands("### Canary rollouts", "tritonkit deploy")
    argv = readme.substituted(argv, {"model_repository": str(v1), "model_repository_v2": str(v2),
                                     "build/k8s": str(tmp_path / "k8s")})
    assert main(argv[1:]) == 0
    assert by_kind(load(tmp_path / "k8s" / "rendered" / "canary.yaml"))[("Deployment", "tritonkit-canary")]
