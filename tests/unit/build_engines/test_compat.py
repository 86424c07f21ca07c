"""Plan / container / GPU compatibility from sidecars: the release table, the rules, repository scans.

Plans here are placeholder bytes with real sidecars (TensorRT cannot build real plans on this
machine); the checks only read sidecars and configs, so nothing else is mocked. nvidia-smi and
docker are absent here, which the host-probe tests rely on (PATH is emptied to be sure).
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from tritonkit.build_engines import compat
from tritonkit.build_engines.builder import install_plan
from tritonkit.build_engines import host
from tritonkit.build_engines.compat import (
    DEFAULT_RELEASE, MIN_PATCHED_RELEASE, RELEASES, VERSION_COMPATIBLE_SERVER_ARG, CompatError, check_plan,
    check_plan_for_card, container_tensorrt, server_args_for)
from tritonkit.build_engines.host import parse_nvidia_smi
from tritonkit.build_engines.releases import version_tuple
from tritonkit.model_repository.plans import check_repository_plans
from tritonkit.build_engines.sidecar import GpuInfo, SidecarError, make_sidecar, sidecar_path
from tritonkit.build_engines.spec import make_spec, sha256_file
from tritonkit.cards import get_card
from tritonkit.errors import ToolMissingError

CARD = get_card("demo_shapes")
TRT_2510 = RELEASES["25.10"].tensorrt


def _sidecar(onnx, tmp_path, *, trt=TRT_2510, cc="8.9", gpu="NVIDIA L4", max_batch=8, min_batch=1, **spec_kw):
    spec = make_spec(CARD, onnx, "fp16", tmp_path / "m.plan", min_batch=min_batch, opt_batch=min_batch,
                     max_batch=max_batch, **spec_kw)
    return make_sidecar(spec, sha256_file(onnx), trt, GpuInfo(gpu, cc), "tensorrt-python")


def _plan(onnx, tmp_path, name="demo_shapes_fp16.plan", **kw):
    side = _sidecar(onnx, tmp_path, **kw)
    plan = tmp_path / name
    install_plan(b"placeholder engine bytes", side, plan)
    return plan


def test_release_table_is_well_formed():
    assert DEFAULT_RELEASE in RELEASES and compat.is_patched(DEFAULT_RELEASE)
    assert MIN_PATCHED_RELEASE == "25.07"
    for rel, info in RELEASES.items():
        assert re.fullmatch(r"\d{2}\.\d{2}", rel) and info.release == rel
        assert info.tensorrt is None or re.fullmatch(rf"{info.tensorrt_major}\.\d+\.\d+\.\d+", info.tensorrt)
        assert info.min_compute_capability == "7.5"
        assert info.confirmed <= {"tensorrt", "cuda", "min_compute_capability"}
        assert info.tensorrt is not None or "tensorrt" not in info.confirmed
    known = [version_tuple(RELEASES[r].tensorrt) for r in sorted(RELEASES) if RELEASES[r].tensorrt]
    assert known == sorted(known)                           # TensorRT only moves forward with releases
    majors = [RELEASES[r].tensorrt_major for r in sorted(RELEASES)]
    assert majors == sorted(majors)


def test_matching_plan_loads(tiny_onnx, tmp_path):
    res = check_plan(_sidecar(tiny_onnx, tmp_path), "25.10", "8.9", host_gpu_name="NVIDIA L4")
    assert res.ok, res.problems
    assert res.container_tensorrt == TRT_2510
    assert res.server_args == () and res.notes == ()


def test_tensorrt_mismatch_explains_which_why_and_what_to_do(tiny_onnx, tmp_path):
    side = _sidecar(tiny_onnx, tmp_path, trt=RELEASES["25.06"].tensorrt)
    res = check_plan(side, "25.10", "8.9")
    assert not res.ok
    (msg,) = res.problems
    assert f"built with TensorRT {RELEASES['25.06'].tensorrt}" in msg
    assert f"tritonserver 25.10 ships TensorRT {TRT_2510}" in msg
    assert "only deserializes in the TensorRT version that built it" in msg
    assert "nvcr.io/nvidia/tensorrt:25.10-py3" in msg and "serve it with tritonserver 25.06" in msg


def test_version_compatible_plan_runs_on_newer_same_major(tiny_onnx, tmp_path):
    side = _sidecar(tiny_onnx, tmp_path, trt=RELEASES["25.06"].tensorrt, version_compatible=True)
    newer = check_plan(side, "25.10", "8.9")
    assert newer.ok
    assert newer.server_args == (VERSION_COMPATIBLE_SERVER_ARG,)
    assert server_args_for([newer, newer]) == (VERSION_COMPATIBLE_SERVER_ARG,)
    same = check_plan(dataclasses.replace(side, tensorrt_version=TRT_2510), "25.10", "8.9")
    assert same.ok and same.server_args == (VERSION_COMPATIBLE_SERVER_ARG,)
    older = check_plan(dataclasses.replace(side, tensorrt_version=TRT_2510), "25.06", "8.9")
    assert not older.ok and "same or a newer TensorRT" in older.problems[0]
    other_major = check_plan(dataclasses.replace(side, tensorrt_version="9.3.0.1"), "25.10", "8.9")
    assert not other_major.ok and "different major version" in other_major.problems[0]


def test_compute_capability_mismatch(tiny_onnx, tmp_path):
    res = check_plan(_sidecar(tiny_onnx, tmp_path, cc="8.9"), "25.10", "9.0", host_gpu_name="NVIDIA H100")
    assert not res.ok
    assert "built for compute capability 8.9 (NVIDIA L4) but the host GPU is 9.0 (NVIDIA H100)" in res.problems[0]
    assert "--hardware-compat ampere+" in res.problems[0]


def test_same_capability_other_gpu_model_is_a_note(tiny_onnx, tmp_path):
    res = check_plan(_sidecar(tiny_onnx, tmp_path, cc="8.0", gpu="NVIDIA A100"), "25.10", "8.0",
                     host_gpu_name="NVIDIA A30")
    assert res.ok and "loads it with a warning" in res.notes[0]
    same_cc = check_plan(_sidecar(tiny_onnx, tmp_path, cc="8.0", gpu="NVIDIA A100", hardware_compat="same-cc"),
                         "25.10", "8.0", host_gpu_name="NVIDIA A30")
    assert same_cc.ok and same_cc.notes == ()


def test_ampere_plus_rules(tiny_onnx, tmp_path):
    side = _sidecar(tiny_onnx, tmp_path, cc="8.6", hardware_compat="ampere+")
    assert check_plan(side, "25.10", "9.0").ok
    assert check_plan(side, "25.10", (12, 0)).ok
    turing = check_plan(side, "25.10", "7.5")
    assert not turing.ok and "Ampere or newer GPUs (compute capability >= 8.0)" in turing.problems[0]
    built_on_turing = check_plan(dataclasses.replace(side, compute_capability="7.5"), "25.10", "8.6")
    assert not built_on_turing.ok and "Ampere or newer build GPU" in built_on_turing.problems[0]


def test_host_below_container_minimum(tiny_onnx, tmp_path):
    res = check_plan(_sidecar(tiny_onnx, tmp_path, cc="7.0", gpu="Tesla V100"), "25.10", "7.0")
    assert any("below the 7.5 that tritonserver 25.10 supports" in p for p in res.problems)


def test_unknown_host_gpu_is_a_note_not_a_pass_of_the_gpu_check(tiny_onnx, tmp_path):
    res = check_plan(_sidecar(tiny_onnx, tmp_path), "25.10", None)
    assert res.ok and "not checked" in res.notes[0]


def test_unknown_release_needs_an_explicit_version(tiny_onnx, tmp_path):
    side = _sidecar(tiny_onnx, tmp_path, trt="10.13.2.6")
    unknown = r"release 25.09 is not in tritonkit.s TensorRT table .*\(--container-trt-version\)"
    with pytest.raises(CompatError, match=unknown):
        check_plan(side, "25.09", "8.9")
    assert check_plan(side, "25.09", "8.9", container_trt="10.13.2.6").ok
    with pytest.raises(CompatError, match="must look like YY.MM"):
        container_tensorrt("2025.10")
    with pytest.raises(CompatError, match="must look like 10.13.3.9"):
        container_tensorrt("25.10", "latest")


def test_old_release_gets_a_security_note(tiny_onnx, tmp_path):
    res = check_plan(_sidecar(tiny_onnx, tmp_path, trt=RELEASES["25.06"].tensorrt), "25.06", "8.9")
    assert res.ok and any("predates the security fixes of 25.07" in n for n in res.notes)


def test_plan_without_sidecar_is_refused(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine")
    with pytest.raises(SidecarError, match=r"model.plan: no sidecar model.plan.json"):
        check_plan_for_card(CARD, plan, "25.10")


def test_corrupt_sidecar_names_file_and_field(tiny_onnx, tmp_path):
    plan = _plan(tiny_onnx, tmp_path)
    side = sidecar_path(plan)
    side.write_text(side.read_text().replace('"compute_capability": "8.9"', '"compute_capability": "sm89"'))
    with pytest.raises(SidecarError, match=r"demo_shapes_fp16.plan.json: field 'compute_capability'"):
        check_plan_for_card(CARD, plan, "25.10")
    side.write_text("{not json")
    with pytest.raises(SidecarError, match="not valid JSON"):
        check_plan_for_card(CARD, plan, "25.10")


def test_onnx_hash_mismatch_is_refused(tiny_onnx, tmp_path):
    from support.onnx_models import tiny_classifier

    plan = _plan(tiny_onnx, tmp_path)
    assert check_plan_for_card(CARD, plan, "25.10", max_batch_size=8, host_cc="8.9", onnx=tiny_onnx).ok
    other = tiny_classifier(tmp_path / "retrained.onnx", seed=1)
    with pytest.raises(CompatError, match=r"built from a different ONNX than .*retrained.onnx"):
        check_plan_for_card(CARD, plan, "25.10", max_batch_size=8, onnx=other)


def test_card_contract_checks(tiny_onnx, tmp_path):
    plan = _plan(tiny_onnx, tmp_path, max_batch=8)
    with pytest.raises(CompatError, match="profile max batch is 8 but max_batch_size is 64"):
        check_plan_for_card(CARD, plan, "25.10")                    # the card's own max_batch_size
    plan2 = _plan(tiny_onnx, tmp_path, name="b.plan", min_batch=2)
    with pytest.raises(CompatError, match="profile min batch is 2"):
        check_plan_for_card(CARD, plan2, "25.10", max_batch_size=8)
    renamed = CARD.with_overrides(name="demo_shapes_v2")
    with pytest.raises(CompatError, match="built for model 'demo_shapes', not 'demo_shapes_v2'"):
        check_plan_for_card(renamed, plan, "25.10", max_batch_size=8)


def test_lead_plan_check_uses_these_rules(tiny_onnx, tmp_path):
    from tritonkit.model_repository.plans import check_plan_file

    plan = _plan(tiny_onnx, tmp_path, max_batch=CARD.max_batch_size)
    check_plan_file(CARD, plan, "25.10", CARD.max_batch_size)
    with pytest.raises(CompatError, match="ships TensorRT"):
        check_plan_file(CARD, plan, "25.06", CARD.max_batch_size)
    with pytest.raises(CompatError, match="profile max batch"):
        check_plan_file(CARD, plan, "25.10", CARD.max_batch_size * 2)   # above the profile: refused


def _gpu_repo(tiny_onnx, tmp_path, max_batch=8, **kw):
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model

    plan = _plan(tiny_onnx, tmp_path, max_batch=max_batch, **kw)
    repo = tmp_path / "repo"
    write_model(CARD, plan, repo, RepoOptions(target="gpu", max_batch_size=8))
    return repo


def test_repository_scan_passes_and_collects_server_args(tiny_onnx, tmp_path):
    repo = _gpu_repo(tiny_onnx, tmp_path, trt=RELEASES["25.06"].tensorrt, version_compatible=True)
    results = check_repository_plans(repo, "25.10", "8.9", onnx_files={"demo_shapes": tiny_onnx})
    assert [r.plan for r in results] == [str(repo / "demo_shapes" / "1" / "model.plan")]
    assert server_args_for(results) == (VERSION_COMPATIBLE_SERVER_ARG,)


def test_repository_scan_reports_every_failing_plan(tiny_onnx, tmp_path):
    repo = _gpu_repo(tiny_onnx, tmp_path, max_batch=4)
    (repo / "demo_shapes" / "1" / "model.plan.json").unlink()
    with pytest.raises(CompatError, match=r"1 plan\(s\) in .* will not load in tritonserver 25.10: .*no sidecar"):
        check_repository_plans(repo, "25.10", "8.9")


def test_repository_scan_checks_config_against_profile(tiny_onnx, tmp_path):
    repo = _gpu_repo(tiny_onnx, tmp_path, max_batch=8, cc="8.6")
    cfg = repo / "demo_shapes" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("max_batch_size: 8", "max_batch_size: 16"))
    with pytest.raises(CompatError) as info:
        check_repository_plans(repo, "25.10", "8.9")
    msg = str(info.value)
    assert "profile max batch is 8 but max_batch_size is 16" in msg
    assert "built for compute capability 8.6" in msg
    with pytest.raises(CompatError, match="model repository not found"):
        check_repository_plans(tmp_path / "nowhere", "25.10")


def test_cpu_models_are_not_plans(tiny_onnx, tmp_path):
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model

    repo = tmp_path / "repo"
    write_model(CARD, tiny_onnx, repo, RepoOptions(target="cpu"))
    assert check_repository_plans(repo, "25.10", "8.9") == []


def test_nvidia_smi_parsing():
    gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA GeForce RTX 4090, 8.9\n")
    assert gpus == [GpuInfo("NVIDIA H100 80GB HBM3", "9.0"), GpuInfo("NVIDIA GeForce RTX 4090", "8.9")]
    with pytest.raises(Exception, match="no GPU"):
        parse_nvidia_smi("\n")


def test_image_probe_pulls_first_then_runs_with_its_deadline(monkeypatch, tmp_path):
    """docker is a script (no engine here) that logs its argv: the image is absent, so it is pulled
    before the `docker run` that reads libnvinfer's version."""
    log = tmp_path / "calls"
    script = tmp_path / "docker"
    script.write_text(f'#!/bin/sh\necho "$1" >> {log}\ncase "$1" in image) exit 1;; pull) exit 0;; '
                      'run) echo "10.13.3.9-1+cuda13.0"; exit 0;; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert host.probe_container_tensorrt("nvcr.io/nvidia/tritonserver:25.10-py3") == "10.13.3.9"
    calls = log.read_text().split()
    assert calls == ["image", "pull", "run"]


def test_host_probes_without_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="nvidia-smi not found"):
        host.host_gpus()
    with pytest.raises(ToolMissingError, match="docker not found"):
        host.probe_container_tensorrt("nvcr.io/nvidia/tritonserver:25.10-py3")


def test_gpu_smoke_on_a_host_without_gpu_says_so_and_exits_1(monkeypatch, tmp_path, capsys):
    from tritonkit.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))                  # no nvidia-smi
    code = main(["gpu-smoke", "--out", str(tmp_path / "r"), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 1
    assert "gpu-smoke needs an NVIDIA GPU" in err and "nvidia-smi not found" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


# ---------------------------------------------------------------- issue 11: majors, unconfirmed rows, overrides

def test_version_compatible_plans_cross_the_majors_nvidia_documents(tiny_onnx, tmp_path):
    """TensorRT 11.4.1 Support Matrix: 10 -> 11 and 8 -> 10 are supported, nothing else across a major."""
    side = _sidecar(tiny_onnx, tmp_path, version_compatible=True)
    ten_to_eleven = check_plan(dataclasses.replace(side, tensorrt_version="10.14.1.48"), "26.06", "8.9",
                               container_trt="11.1.0.7")
    assert ten_to_eleven.ok, ten_to_eleven.problems
    assert ten_to_eleven.server_args == (VERSION_COMPATIBLE_SERVER_ARG,)
    eight_to_ten = check_plan(dataclasses.replace(side, tensorrt_version="8.6.1.6"), "25.10", "8.9")
    assert eight_to_ten.ok and eight_to_ten.server_args == (VERSION_COMPATIBLE_SERVER_ARG,)
    eight_to_eleven = check_plan(dataclasses.replace(side, tensorrt_version="8.6.1.6"), "26.06", "8.9",
                                 container_trt="11.1.0.7")
    assert not eight_to_eleven.ok and "only 8 -> 10 and 10 -> 11" in eight_to_eleven.problems[0]
    eleven_to_ten = check_plan(dataclasses.replace(side, tensorrt_version="11.1.0.7"), "25.10", "8.9")
    assert not eleven_to_ten.ok and "same or a newer TensorRT" in eleven_to_ten.problems[0]
    not_vc = check_plan(dataclasses.replace(side, version_compatible=False, tensorrt_version="10.14.1.48"),
                        "26.06", "8.9", container_trt="11.1.0.7")
    assert not not_vc.ok


def test_tensorrt_11_rows_and_the_first_release_with_it():
    from tritonkit.build_engines.releases import FIRST_TENSORRT_11_RELEASE, container_tensorrt_major

    assert FIRST_TENSORRT_11_RELEASE == "26.06" and RELEASES["26.06"].tensorrt_major == 11
    assert all(i.tensorrt_major == 10 for r, i in RELEASES.items() if r < "26.06")
    assert all(i.tensorrt_major == 11 for r, i in RELEASES.items() if r >= "26.06")
    assert container_tensorrt_major("26.10") == 11 and container_tensorrt_major("25.10") == 10
    with pytest.raises(CompatError, match=r"26.06 ships TensorRT 11.x but its exact version is unconfirmed.*"
                                          r"\(--container-trt-version\)"):
        container_tensorrt("26.06")
    assert container_tensorrt("26.06", "11.1.0.7").version == "11.1.0.7"


def test_unconfirmed_table_values_are_said_to_be_so(tiny_onnx, tmp_path):
    side = _sidecar(tiny_onnx, tmp_path)
    unconfirmed = check_plan(side, "25.10", "8.9")
    assert unconfirmed.ok and "unconfirmed" in unconfirmed.container_note
    assert "unconfirmed" not in RELEASES["25.01"].to_dict()["confirmed"]
    confirmed = check_plan(dataclasses.replace(side, tensorrt_version=RELEASES["25.01"].tensorrt), "25.01", "8.9")
    assert confirmed.container_note == ""                   # 25.01's TensorRT is from NVIDIA's release notes
    overridden = check_plan(side, "25.10", "8.9", container_trt=TRT_2510)
    assert overridden.container_note == ""
    assert container_tensorrt("25.10", "10.14.1.48.post1").version == "10.14.1.48"


@pytest.mark.parametrize("command", ["repo", "build", "serve"])
def test_every_command_taking_a_release_takes_the_trt_override(tiny_onnx, tmp_path, capsys, monkeypatch, command):
    """A release outside the table (25.11) fails with a pointer to --container-trt-version; with it, it works.
    nvidia-smi and docker are absent here (PATH emptied of them): the GPU check is skipped with a note."""
    from tritonkit.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    plan = _plan(tiny_onnx, tmp_path, trt="10.13.3.9", max_batch=CARD.max_batch_size)
    if command == "repo":
        argv = ["repo", "--model", "demo_shapes", "--model-file", str(plan), "--target", "gpu",
                "--out", str(tmp_path / "repo"), "--container-release", "25.11"]
    elif command == "build":
        argv = ["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--max-batch", "8",
                "--out", str(tmp_path / "plans"), "--trtexec-only", "--container-release", "25.11"]
    else:
        from tritonkit.model_repository.config import RepoOptions
        from tritonkit.model_repository.writer import write_model

        write_model(CARD, plan, tmp_path / "srv", RepoOptions(target="gpu"))
        argv = ["serve", "--docker", "--profile", "dev", "--repo", str(tmp_path / "srv"), "--print-only",
                "--container-release", "25.11"]
    assert main(argv) == 1
    assert "--container-trt-version" in capsys.readouterr().err
    assert main([*argv, "--container-trt-version", "10.13.3.9"]) == 0
    out = capsys.readouterr().out
    if command == "repo":
        assert (tmp_path / "repo" / "demo_shapes" / "config.pbtxt").is_file()
    else:                                       # the printed command is for that release
        assert "nvcr.io/nvidia/tensorrt:25.11-py3" in out or "nvcr.io/nvidia/tritonserver:25.11-py3" in out


def test_gpu_smoke_takes_the_trt_override_too():
    from tritonkit.cli import build_parser

    args = build_parser().parse_args(["gpu-smoke", "--container-release", "25.11", "--container-trt-version",
                                      "10.13.3.9"])
    assert (args.container_release, args.container_trt_version) == ("25.11", "10.13.3.9")


def test_repository_scan_lives_in_the_repository_layer_only():
    """The model_repository <-> build_engines cycle is gone: build_engines imports no model_repository module."""
    import ast
    from pathlib import Path

    root = Path(compat.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("tritonkit.model_repository", "tritonkit.serve")), \
                    f"{path.name} imports {node.module}"


def test_validate_takes_the_trt_override_for_its_plan_check(tiny_onnx, tmp_path):
    """validate's readiness.plan check against a release outside the table (25.11), with the override."""
    from tritonkit.cli import build_parser
    from tritonkit.validate.options import ValidateOptions

    args = build_parser().parse_args(["validate", "--models", "m", "--out", str(tmp_path), "--container-release", "25.11",
                                      "--container-trt-version", "10.13.3.9"])
    assert args.container_trt_version == "10.13.3.9"
    assert ValidateOptions(models=("m",), container_release="25.11",
                           container_trt_version="10.13.3.9").container_trt_version == "10.13.3.9"


def test_validate_plan_check_uses_the_override(tmp_path):
    from support.plans import plan_context as _plan_context

    from tritonkit.validate.readiness import check_plan as readiness_plan

    ctx, target = _plan_context(tmp_path, "10.13.3.9", "25.11")
    refused = readiness_plan(ctx, target)
    assert not refused.passed and "--container-trt-version" in refused.detail
    ctx = dataclasses.replace(ctx, options=dataclasses.replace(ctx.options, container_trt_version="10.13.3.9"))
    assert readiness_plan(ctx, target).passed


def test_nvidia_smi_compute_capability_must_be_a_number():
    with pytest.raises(Exception, match="expected a value like 8.6"):
        parse_nvidia_smi("NVIDIA L4, [N/A]\n")
