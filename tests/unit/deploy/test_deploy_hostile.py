"""deploy k8s against hostile values: every value that reaches a manifest is checked whole, and the
container command runs no value through a shell.

No cluster or container runtime runs here. The rendered container command is executed the way
the runtime would after the kubelet: Kubernetes' ``$(VAR)`` expansion of command and args
(re-implemented below from ``third_party/forked/golang/expansion`` of Kubernetes), then an exec
of the resulting list without a shell, with a stand-in ``tritonserver`` on PATH that records the
arguments it receives. Where the command is ``sh -c``, that exact script runs under the real
``sh``; only the key file's path is pointed at a temporary file (the pod mounts it from a Secret).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tritonkit.cli import main
from tritonkit.deploy import DeployError, DeploySpec, RepositorySource, write_deployment
from tritonkit.deploy.manifests import API_KEY_ITEM, KEY_DIR
from tritonkit.serve.profiles import API_KEY_HEADER

KEY = "k" * 32
KEY_FILE = f"{KEY_DIR}/{API_KEY_ITEM}"   # where the pod mounts the key Secret


@pytest.fixture()
def repo(tmp_path) -> Path:
    """A one-model repository (a python-backend config; only config.pbtxt is read)."""
    folder = tmp_path / "repo" / "m"
    folder.mkdir(parents=True)
    (folder / "config.pbtxt").write_text('name: "m"\nbackend: "python"\nmax_batch_size: 1\n')
    return tmp_path / "repo"


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a command/args item: ``$$`` is ``$``, ``$(NAME)`` is the variable's
    value where the container defines it and left as written where not; any other ``$`` stays."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1]
        end = text.find(")", i + 2) if nxt == "(" else -1
        if nxt == "$":
            out.append("$")
        elif end != -1:
            name = text[i + 2:end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
            continue
        else:
            out.append("$" + nxt)
        i += 2
    return "".join(out)


def run_container(container: dict, workdir: Path,
                  key: str | None = KEY) -> tuple[subprocess.CompletedProcess, list[str] | None]:
    """Run ``container``'s command as the runtime would, with a recording ``tritonserver`` and the
    key file holding ``key`` (None: no key file); returns the process and the argv tritonserver
    received (None if it never started)."""
    bindir = workdir / "bin"
    bindir.mkdir()
    record = workdir / "argv.json"
    fake = bindir / "tritonserver"
    fake.write_text("#!/usr/bin/env python3\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    key_file = workdir / "api-key"
    if key is not None:
        key_file.write_text(key)
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    argv = [k8s_expand(a, env) for a in container["command"] + container.get("args", [])]
    argv = [a.replace(KEY_FILE, str(key_file)) for a in argv]
    proc = subprocess.run(argv, cwd=workdir, env={**env, "PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(workdir)},
                          capture_output=True, text=True, timeout=30)
    return proc, (json.loads(record.read_text()) if record.exists() else None)


def deployment_container(out: Path) -> dict:
    docs = [d for d in yaml.safe_load_all((out / "rendered" / "base.yaml").read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("source", [RepositorySource(kind="url", ref="s3://bucket/models"),
                                    RepositorySource(kind="pvc", ref="models"),
                                    RepositorySource(kind="image", ref="registry.example.com:5000/serve:25.10")])
def test_rendered_command_starts_tritonserver_with_exactly_the_flags(source, repo, tmp_path):
    write_deployment(DeploySpec(source=source), repo, tmp_path / "out")
    proc, argv = run_container(deployment_container(tmp_path / "out"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected_repo = source.ref if source.kind == "url" else "/models"
    assert argv[0] == f"--model-repository={expected_repo}"
    assert "--model-control-mode=none" in argv and "--exit-on-error=true" in argv
    apis = "model-repository,shared-memory,logging,trace"
    assert argv[-2:] == [f"--http-restricted-api={apis}:{API_KEY_HEADER}={KEY}",
                         f"--grpc-restricted-protocol={apis}:{API_KEY_HEADER}={KEY}"]


@pytest.mark.parametrize("payload", ["$(touch${IFS}PWNED)", "`touch${IFS}PWNED`", '"$(touch${IFS}PWNED)"',
                                     "x;touch${IFS}PWNED", "x\ntouch PWNED", "x'$(touch PWNED)'", "x && touch PWNED"])
def test_a_value_past_validation_still_runs_nothing(payload, repo, tmp_path):
    """Second line of defence: a value that got past the spec's checks (set here behind the
    frozen dataclass's back) reaches tritonserver as one literal argument and runs nothing."""
    spec = DeploySpec(source=RepositorySource(kind="url", ref="s3://bucket/models"))
    hostile = "s3://bucket/r" + payload
    object.__setattr__(spec.source, "ref", hostile)
    write_deployment(spec, repo, tmp_path / "out")
    proc, argv = run_container(deployment_container(tmp_path / "out"), tmp_path)
    assert not (tmp_path / "PWNED").exists(), "the payload ran in the container's shell"
    assert argv is not None and argv[0] == f"--model-repository={hostile}", proc.stderr


@pytest.mark.parametrize("key", ["", None])
def test_an_empty_or_missing_key_file_stops_the_container_with_one_line(key, repo, tmp_path):
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="models")), repo, tmp_path / "out")
    proc, argv = run_container(deployment_container(tmp_path / "out"), tmp_path, key)
    assert argv is None  # tritonserver never started with an empty key
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and "API key file" in proc.stderr


HOSTILE = [
    # (flags, the flag the one-line error must name)
    (["--model-url", "s3://b/r$(touch /tmp/x)"], "--model-url"),
    (["--model-url", "s3://b/r$(id)"], "--model-url"),
    (["--model-url", "s3://b/r`id`"], "--model-url"),
    (["--model-url", 's3://b/r"x'], "--model-url"),
    (["--model-url", "s3://b/r\n"], "--model-url"),
    (["--model-url", "s3://b/r;id"], "--model-url"),
    (["--model-url", "s3://b/$(HOME)"], "--model-url"),       # Kubernetes would expand it
    (["--pvc", "models\n"], "--pvc"),
    (["--image", "registry.example.com/serve:1;id"], "--image"),
    (["--pvc", "m", "--server-image", "nvcr.io/nvidia/tritonserver:25.10-py3;id"], "--server-image"),
    (["--pvc", "m", "--server-image", "nvcr.io/nvidia/tritonserver:25.10-py3 --privileged"], "--server-image"),
    (["--pvc", "m", "--server-image", "nvcr.io/nvidia/tritonserver:25.10-py3\nid"], "--server-image"),
    (["--pvc", "m", "--server-image", "img$(id)"], "--server-image"),
    (["--pvc", "m", "--name", "tritonkit\n"], "--name"),
    (["--pvc", "m", "--namespace", "serving\n"], "--namespace"),
    (["--pvc", "m", "--monitoring-namespace", "monitoring\n"], "--monitoring-namespace"),
    (["--pvc", "m", "--cpu", "4\n"], "--cpu"),
    (["--pvc", "m", "--memory", "8Gi\n"], "--memory"),
    (["--pvc", "m", "--release", "25.10\n"], "--release"),
    (["--pvc", "m", "--api-key-secret", "key\n"], "--api-key-secret"),
    (["--model-url", "s3://b/m", "--cloud-credentials-secret", "creds;id"], "--cloud-credentials-secret"),
    (["--pvc", "m", "--queue-target-ms", "nan"], "--queue-target-ms"),
    (["--pvc", "m", "--queue-target-ms", "inf"], "--queue-target-ms"),
    (["--pvc", "m", "--replicas", "0"], "--replicas"),
    (["--pvc", "m", "--max-replicas", str(2**40)], "--max-replicas"),
    (["--pvc", "m", "--gpus", "0"], "--gpus"),
    (["--pvc", "m", "--run-as-user", "0"], "--run-as-user"),
    (["--pvc", "m", "--sweep", "s.csv", "--slo-p99-ms", "nan", "--target-rps", "10"], "--slo-p99-ms"),
    (["--pvc", "m", "--sweep", "s.csv", "--slo-p99-ms", "50", "--target-rps", "inf"], "--target-rps"),
]


@pytest.mark.parametrize("flags,flag", HOSTILE, ids=[f"{flag}={f[-1]!r}" for f, flag in HOSTILE])
def test_cli_refuses_every_hostile_value_with_one_line(flags, flag, repo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["deploy", "k8s", "--repo", str(repo), "--out", str(out), *flags]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and flag in err, err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("image", ["nvcr.io/nvidia/tritonserver:25.10-py3", "serve", "localhost:5000/a/b_c.d-e:v1",
                                   "registry.example.com/serve@sha256:" + "a" * 64])
def test_valid_image_references_pass(image, repo, tmp_path):
    spec = DeploySpec(source=RepositorySource(kind="pvc", ref="m"), server_image=image)
    write_deployment(spec, repo, tmp_path)
    assert deployment_container(tmp_path)["image"] == image


def test_spec_checks_types_not_only_text():
    pvc = RepositorySource(kind="pvc", ref="m")
    for field, value in (("replicas", True), ("replicas", "2"), ("exit_timeout_s", 1.5), ("prestop_s", -1),
                         ("release", 25.10), ("cpu", 4)):
        with pytest.raises(DeployError, match=field):
            replace(DeploySpec(source=pvc), **{field: value})


def test_deploy_report_quotes_the_output_path(repo, tmp_path):
    out = tmp_path / "k8s out; touch PWNED"
    write_deployment(DeploySpec(source=RepositorySource(kind="pvc", ref="m")), repo, out)
    apply = next(line for line in (out / "DEPLOY.md").read_text().splitlines() if line.startswith("kubectl apply"))
    words = shlex.split(apply, comments=True)
    assert words == ["kubectl", "apply", "-k", str(out / "overlays" / "autoscale")]
    assert os.path.isdir(words[-1])
