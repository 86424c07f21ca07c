"""The CLI: one entry point, help from docstrings, domain errors as one line and exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tritonkit.cli import SUBCOMMANDS, build_parser, main
from tritonkit.cli.args import flag_message
from tritonkit.errors import DatasetError
from tritonkit.model_repository.config import parse_config
from support.paths import ROOT


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_package_and_help_import_no_heavy_libraries():
    code = ("import sys; from tritonkit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'tensorrt', 'tritonclient', 'onnxruntime', 'cv2', 'matplotlib') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_unknown_model_is_one_line_exit_1(capsys):
    assert main(["cards", "resnet51"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'resnet51'" in err[0]


def test_cards_shows_a_card_as_json(capsys):
    assert main(["cards", "yolov5s"]) == 0
    assert '"letterbox"' in capsys.readouterr().out


def test_repo_writes_cpu_model(tmp_path, tiny_onnx, capsys):
    out = tmp_path / "repo"
    code = main(["repo", "--model", "demo_shapes", "--model-file", str(tiny_onnx), "--out", str(out),
                 "--preferred", "4,8", "--instances", "2", "--queue-size", "32", "--queue-timeout-us", "5000"])
    assert code == 0
    cfg = parse_config((out / "demo_shapes" / "config.pbtxt").read_text())
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.instance_group[0].count == 2
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 32
    assert cfg.parameters["allow_spinning"].string_value == "1"
    assert main(["repo", "--model", "demo_shapes", "--model-file", str(tiny_onnx), "--out", str(out),
                 "--no-ort-spinning"]) == 0
    shared = parse_config((out / "demo_shapes" / "config.pbtxt").read_text())
    assert shared.parameters["allow_spinning"].string_value == "0"


def test_repo_with_server_nms_writes_the_ensemble(tmp_path):
    from support.onnx_models import tiny_yolo_onnx

    onnx_path = tiny_yolo_onnx(tmp_path / "det.onnx")
    out = tmp_path / "repo"
    assert main(["repo", "--model", "demo_shapes_det", "--model-file", str(onnx_path), "--out", str(out),
                 "--server-postprocess", "ap,speed"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["demo_shapes_det", "demo_shapes_det_ensemble_ap", "demo_shapes_det_ensemble_speed",
                     "demo_shapes_det_nms_ap", "demo_shapes_det_nms_speed"]
    assert parse_config((out / "demo_shapes_det_ensemble_ap" / "config.pbtxt").read_text()).platform == "ensemble"


def test_repo_bad_model_file_is_one_line(tmp_path, capsys):
    assert main(["repo", "--model", "demo_shapes", "--model-file", str(tmp_path / "x.onnx"),
                 "--out", str(tmp_path / "repo")]) == 1
    err = capsys.readouterr().err
    assert "x.onnx: model file not found" in err and "Traceback" not in err


def test_gpu_repo_refuses_a_plan_without_release(tmp_path, capsys):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\0" * 16)
    assert main(["repo", "--model", "resnet18", "--model-file", str(plan), "--target", "gpu",
                 "--out", str(tmp_path / "repo")]) == 1
    assert "--container-release" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_serve_docker_prints_the_pinned_command(tmp_path, tiny_onnx, capsys):
    """No Docker engine runs here: --print-only shows the command the GPU host would run."""
    out = tmp_path / "repo"
    main(["repo", "--model", "demo_shapes", "--model-file", str(tiny_onnx), "--out", str(out)])
    capsys.readouterr()
    assert main(["serve", "--docker", "--repo", str(out), "--print-only", "--profile", "dev"]) == 0
    command = capsys.readouterr().out
    assert command.startswith("docker run") and "--gpus" in command
    assert "nvcr.io/nvidia/tritonserver:" in command and f"{out.resolve()}:/models:ro" in command


def test_serve_docker_production_needs_the_key(tmp_path, tiny_onnx, capsys, monkeypatch):
    monkeypatch.delenv("TRITONKIT_API_KEY", raising=False)
    out = tmp_path / "repo"
    main(["repo", "--model", "demo_shapes", "--model-file", str(tiny_onnx), "--out", str(out)])
    assert main(["serve", "--docker", "--repo", str(out), "--print-only", "--profile", "production"]) == 1
    assert "TRITONKIT_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("TRITONKIT_API_KEY", "x" * 24)
    assert main(["serve", "--docker", "--repo", str(out), "--print-only", "--profile", "production"]) == 0
    command = capsys.readouterr().out
    assert "x" * 24 not in command and "--model-control-mode=none" in command


# ------------------------------------------------------------------------------ README


def _joined_commands(lines: list[str]) -> list[str]:
    """Shell lines with ``\\`` continuations joined and whitespace collapsed."""
    out, current = [], ""
    for line in lines:
        line = line.strip()
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        out.append(" ".join((current + line).split()))
        current = ""
    return [c for c in out if c]


def _readme_section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = [i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if i != -1]
    return text[start:min(nxt) if nxt else len(text)]


def _code_lines(section: str) -> list[str]:
    import re

    return [ln for block in re.findall(r"```bash\n(.*?)```", section, re.S) for ln in block.splitlines()]


def test_readme_setup_is_exactly_make_demo_and_make_test():
    setup = _readme_section((ROOT / "README.md").read_text(), "## Set-up")
    commands = [c.split("#")[0].strip() for c in _joined_commands(_code_lines(setup))]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_readme_gpu_section_has_the_dockerfile_container_commands():
    """Every docker build/run in the Dockerfile's header comment appears verbatim in the README's
    GPU target section, and that section runs them in the pipeline's order."""
    header = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#"))
    docker = [c for c in _joined_commands(header) if c.startswith("docker ")]
    assert [c.split()[:2] + [c.split()[2]] for c in docker] == [
        ["docker", "build", "--target"], ["docker", "run", "--rm"], ["docker", "build", "--target"],
        ["docker", "run", "--rm"]]
    gpu = _readme_section((ROOT / "README.md").read_text(), "### GPU target")
    readme = [c.split(" #")[0].strip() for c in _joined_commands(_code_lines(gpu)) if not c.startswith("#")]
    for cmd in docker:
        assert cmd in readme, cmd
    order = [readme.index(c) for c in docker]
    assert order == sorted(order)
    steps = [next(i for i, c in enumerate(readme) if c.startswith(p)) for p in
             ("tritonkit export", "docker build --target plan-builder", "tritonkit repo",
              "docker build --target serve", "tritonkit eval classify")]
    assert steps == sorted(steps)
    repo = next(c for c in readme if c.startswith("tritonkit repo"))
    plan_max = docker[1].split("--max-batch ")[1].split()[0]
    assert "--target gpu" in repo and f"--max-batch {plan_max}" in repo  # the plan's batch range


def test_library_errors_name_fields_and_the_cli_shows_flags(tmp_path, capsys):
    """The library message names the field; the CLI prints the flag of the command it ran."""
    err = DatasetError("limit must be >= 1 (got 0); see annotations/limit.json", fields=("limit",))
    assert str(err).startswith("limit must be")
    argv = ["eval", "classify", "--model", "demo_shapes", "--data", str(tmp_path)]
    args = build_parser().parse_args(argv)
    assert flag_message(err, build_parser(), args) == "--limit must be >= 1 (got 0); see annotations/limit.json"
    # a command without that flag keeps the field name
    other = build_parser().parse_args(["cards", "demo_shapes"])
    assert flag_message(err, build_parser(), other) == str(err)
