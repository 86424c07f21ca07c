"""BuildSpec -> trtexec argv per TensorRT major (flag spellings from trtexec's parser, sampleOptions.cpp of
release/10.8, 10.16 and 11.0), the runnable container command, and the CLI paths that print it. No Docker
or trtexec runs here: the commands are checked as text."""

from __future__ import annotations

import shlex
import sys

import pytest

from tritonkit.build_engines.spec import make_spec
from tritonkit.build_engines.trtexec import container_argv, container_command, trtexec_argv, trtexec_command
from tritonkit.cards import get_card
from tritonkit.cli import main

CARD = get_card("demo_shapes")
TRT10 = "10.13.3.9"


def test_fp16_argv_exactly(tiny_onnx, tmp_path):
    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "m.plan", min_batch=1, opt_batch=4, max_batch=8)
    assert trtexec_argv(spec, tensorrt_version=TRT10) == [
        "trtexec",
        f"--onnx={tiny_onnx}",
        f"--saveEngine={tmp_path / 'm.plan'}",
        "--minShapes=input:1x3x64x64",
        "--optShapes=input:4x3x64x64",
        "--maxShapes=input:8x3x64x64",
        "--fp16",
        "--memPoolSize=workspace:4096",
        "--builderOptimizationLevel=3",
        "--skipInference",
    ]


def test_every_option_maps_to_its_flag(tmp_path):
    from support.onnx_models import qdq_classifier as _qdq_onnx

    qdq = _qdq_onnx(tmp_path / "q.onnx")
    spec = make_spec(CARD, qdq, "int8", tmp_path / "m.plan", min_batch=2, opt_batch=16, max_batch=32,
                     workspace_mb=2048, timing_cache=tmp_path / "t.cache", opt_level=5, version_compatible=True,
                     hardware_compat="ampere+")
    assert trtexec_argv(spec, "/usr/src/tensorrt/bin/trtexec", tensorrt_version=TRT10) == [
        "/usr/src/tensorrt/bin/trtexec",
        f"--onnx={qdq}",
        f"--saveEngine={tmp_path / 'm.plan'}",
        "--minShapes=input:2x3x64x64",
        "--optShapes=input:16x3x64x64",
        "--maxShapes=input:32x3x64x64",
        "--fp16",                                   # with --int8: layers outside Q/DQ pairs run fp16
        "--int8",                                   # explicit quantization: QDQ graph, no --calib
        "--memPoolSize=workspace:2048",
        f"--timingCacheFile={tmp_path / 't.cache'}",
        "--builderOptimizationLevel=5",
        "--versionCompatible",
        "--hardwareCompatibilityLevel=ampere+",
        "--skipInference",
    ]
    same_cc = make_spec(CARD, qdq, "int8", tmp_path / "m.plan", hardware_compat="same-cc")
    assert "--hardwareCompatibilityLevel=sameComputeCapability" in trtexec_argv(same_cc, tensorrt_version=TRT10)


def test_fp32_has_no_precision_flag(tiny_onnx, tmp_path):
    for version in (TRT10, "11.1.0.7"):
        argv = trtexec_argv(make_spec(CARD, tiny_onnx, "fp32", tmp_path / "m.plan"), tensorrt_version=version)
        assert not {"--fp16", "--int8"} & set(argv)


def test_container_path_overrides(tiny_onnx, tmp_path):
    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "m.plan", timing_cache=tmp_path / "c")
    argv = trtexec_argv(spec, tensorrt_version=TRT10, onnx="/work/m.onnx", plan="/work/m.plan", timing_cache="/work/c")
    assert argv[1:3] == ["--onnx=/work/m.onnx", "--saveEngine=/work/m.plan"]
    assert "--timingCacheFile=/work/c" in argv


def test_command_is_shell_quoted(tmp_path):
    from support.onnx_models import tiny_classifier

    onnx = tiny_classifier(tmp_path / "my models" / "m.onnx")
    spec = make_spec(CARD, onnx, "fp16", tmp_path / "out dir" / "m.plan", max_batch=8)
    cmd = trtexec_command(spec, tensorrt_version=TRT10)
    assert f"'--onnx={onnx}'" in cmd
    assert shlex.split(cmd) == trtexec_argv(spec, tensorrt_version=TRT10)


def test_cli_trtexec_only_prints_the_command_and_builds_nothing(tiny_onnx, tmp_path, capsys):
    code = main(["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--precision", "fp16",
                 "--min-batch", "1", "--opt-batch", "4", "--max-batch", "8", "--out", str(tmp_path), "--trtexec-only"])
    out = capsys.readouterr()
    assert code == 0
    plan = tmp_path / "demo_shapes_fp16.plan"
    spec = make_spec(CARD, tiny_onnx, "fp16", plan, min_batch=1, opt_batch=4, max_batch=8)
    from tritonkit.build_engines.releases import DEFAULT_RELEASE, RELEASES

    trt = RELEASES[DEFAULT_RELEASE].tensorrt
    comment, command = out.out.strip().splitlines()
    assert comment.startswith(f"# tensorrt {DEFAULT_RELEASE}: TensorRT {trt}") and "unconfirmed" in comment
    assert command == container_command(spec, DEFAULT_RELEASE, trt)
    assert "--adopt-plan" in out.err and f"--trt-version {trt}" in out.err
    assert list(tmp_path.iterdir()) == []


def test_cli_without_tensorrt_exits_1_with_the_trtexec_command(tiny_onnx, tmp_path, monkeypatch, capsys):
    """TensorRT is made unimportable (sys.modules entry None) so the test means the same on a GPU host."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code = main(["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--max-batch", "8",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "TensorRT is missing here" in err
    assert "trtexec --onnx=" in err and "--maxShapes=input:8x3x64x64" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_precision_is_one_line_and_writes_nothing(tiny_onnx, tmp_path, capsys):
    code = main(["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--precision", "bf16",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.splitlines() == ["tritonkit build: error: unknown precision 'bf16'; choose one of fp32, fp16, int8"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,msg", [
    (["--precision", "fp16", "--qdq-only"], "--qdq-only needs --precision int8 and --calib-dir"),
    (["--precision", "fp16", "--calib-dir", "."], "--calib-dir is for --precision int8"),
    (["--adopt-plan", "x.plan"], "--adopt-plan needs --trt-version"),
    (["--max-batch", "65"], "--max-batch 65 is above the max_batch_size 64"),  # the field shown as its flag
])
def test_cli_bad_combinations(tiny_onnx, tmp_path, capsys, argv, msg):
    code = main(["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--out", str(tmp_path), *argv])
    assert code == 1
    assert msg in capsys.readouterr().err


# ---------------------------------------------------------------- per TensorRT major, runnable commands

def test_trtexec_11_gets_no_precision_flags(tmp_path):
    """trtexec 11 rejects --fp16/--int8 ("Unknown option"): an int8 build from the QDQ ONNX has none."""
    from support.onnx_models import qdq_classifier as _qdq_onnx

    spec = make_spec(CARD, _qdq_onnx(tmp_path / "q.onnx"), "int8", tmp_path / "m.plan", max_batch=8)
    v10 = trtexec_argv(spec, tensorrt_version="10.8.0.43")
    v11 = trtexec_argv(spec, tensorrt_version="11.1.0.7")
    assert {"--fp16", "--int8"} <= set(v10)
    assert not {"--fp16", "--int8", "--best", "--stronglyTyped"} & set(v11)
    assert [a for a in v10 if a not in ("--fp16", "--int8")] == v11


def test_trtexec_11_fp16_needs_an_fp16_onnx(tiny_onnx, tmp_path):
    from tritonkit.build_engines.spec import BuildSpecError

    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "m.plan", max_batch=8)
    with pytest.raises(BuildSpecError, match="modelopt.onnx.autocast"):
        trtexec_argv(spec, tensorrt_version="11.0.0.1")


def test_same_compute_capability_is_refused_for_25_01_trtexec(tiny_onnx, tmp_path):
    from tritonkit.build_engines.releases import RELEASES
    from tritonkit.build_engines.spec import BuildSpecError

    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "m.plan", max_batch=8, hardware_compat="same-cc")
    with pytest.raises(BuildSpecError, match="same-cc needs TensorRT 10.9"):
        trtexec_argv(spec, tensorrt_version=RELEASES["25.01"].tensorrt)
    assert "--hardwareCompatibilityLevel=sameComputeCapability" in trtexec_argv(spec, tensorrt_version="10.9.0.34")


def test_container_command_runs_as_printed(tmp_path):
    """Container paths for every file, the release's image, trtexec by its path in the image, no placeholder."""
    from support.onnx_models import tiny_classifier

    onnx = tiny_classifier(tmp_path / "onnx dir" / "m.onnx")
    spec = make_spec(CARD, onnx, "fp16", tmp_path / "plans" / "m_fp16.plan", max_batch=8,
                     timing_cache=tmp_path / "cache" / "t.cache")
    argv = container_argv(spec, "25.10", TRT10, gpus="device=1")
    image = argv.index("nvcr.io/nvidia/tensorrt:25.10-py3")
    assert argv[image + 1] == "/usr/src/tensorrt/bin/trtexec"
    assert argv[argv.index("--gpus") + 1] == "device=1"
    mounts = [argv[i + 1] for i, a in enumerate(argv[:image]) if a == "-v"]
    assert mounts == [f"{onnx.parent.resolve()}:/work/onnx:ro", f"{(tmp_path / 'plans').resolve()}:/work/plans",
                      f"{(tmp_path / 'cache').resolve()}:/work/cache"]
    inner = argv[image + 2:]
    assert "--onnx=/work/onnx/m.onnx" in inner and "--saveEngine=/work/plans/m_fp16.plan" in inner
    assert "--timingCacheFile=/work/cache/t.cache" in inner
    assert not any(str(tmp_path) in a for a in inner)                    # no host path inside the container
    line = container_command(spec, "25.10", TRT10)
    assert '--user "$(id -u):$(id -g)"' in line and "<release>" not in line
    assert shlex.split(line)[argv.index("--user") + 1] == "$(id -u):$(id -g)"


@pytest.mark.parametrize("release,trt,flag", [("25.01", "10.8.0.43", "--fp16"), ("26.06", "11.1.0.7", None)])
def test_cli_trtexec_only_per_release_and_override(tmp_path, capsys, release, trt, flag):
    """26.06 ships TensorRT 11 with an unconfirmed exact version: the CLI needs the override."""
    from support.onnx_models import qdq_classifier as _qdq_onnx

    qdq = _qdq_onnx(tmp_path / "q.onnx")
    argv = ["build", "--model", "demo_shapes", "--onnx", str(qdq), "--precision", "int8", "--max-batch", "8",
            "--out", str(tmp_path / "out"), "--trtexec-only", "--container-release", release]
    if release == "26.06":
        assert main(argv) == 1
        assert "--container-trt-version" in capsys.readouterr().err
        argv += ["--container-trt-version", trt]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"nvcr.io/nvidia/tensorrt:{release}-py3 /usr/src/tensorrt/bin/trtexec" in out
    assert ("--int8" in out) == (flag is not None) and ("--fp16" in out) == (flag is not None)
