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
    log = tmp_path / "demo_shapes_fp16.plan.trtexec.log"
    assert command == f"{container_command(spec, DEFAULT_RELEASE, trt)} 2>&1 | tee {log}"
    # the sidecar will record what trtexec prints, not the table's (unconfirmed) value
    assert "--adopt-plan" in out.err and f"--trtexec-log {log}" in out.err and "--trt-version" not in out.err
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
    (["--adopt-plan", "x.plan"], "--adopt-plan needs --trtexec-log (trtexec's output) or --trt-version"),
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


@pytest.mark.parametrize("release,override,flag", [("25.01", None, "--fp16"), ("26.06", None, None),
                                                   ("26.06", "11.1.0.7", None), ("26.04", None, "--fp16")])
def test_cli_trtexec_only_per_release_and_override(tmp_path, capsys, release, override, flag):
    """The flags follow the release's TensorRT major, known for every row of the table even where the exact
    version is not (26.04: 10.x, 26.06: 11.x), so no override is needed for them."""
    from support.onnx_models import qdq_classifier as _qdq_onnx

    qdq = _qdq_onnx(tmp_path / "q.onnx")
    argv = ["build", "--model", "demo_shapes", "--onnx", str(qdq), "--precision", "int8", "--max-batch", "8",
            "--out", str(tmp_path / "out"), "--trtexec-only", "--container-release", release]
    assert main(argv + (["--container-trt-version", override] if override else [])) == 0
    out, err = capsys.readouterr()
    # int8 from this (FP32) QDQ ONNX: float layers FP16 on TensorRT 10, FP32 on 11, which the printout says
    assert ("# note: int8 on TensorRT 11: the layers outside the Q/DQ pairs run in FP32" in err) == (flag is None)
    assert f"nvcr.io/nvidia/tensorrt:{release}-py3 /usr/src/tensorrt/bin/trtexec" in out
    assert ("--int8" in out) == (flag is not None) and ("--fp16" in out) == (flag is not None)
    if release != "25.01" and override is None:
        assert "exact version not in tritonkit's table; trtexec prints it" in out.splitlines()[0]


def test_cli_trtexec_only_refuses_a_release_outside_the_table(tiny_onnx, tmp_path, capsys):
    argv = ["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--precision", "fp32", "--max-batch", "8",
            "--out", str(tmp_path), "--trtexec-only", "--container-release", "27.01"]
    assert main(argv) == 1
    assert "--container-trt-version" in capsys.readouterr().err


def test_same_cc_with_only_the_major_known_asks_for_the_version(tiny_onnx, tmp_path):
    from tritonkit.build_engines.spec import BuildSpecError

    spec = make_spec(CARD, tiny_onnx, "fp32", tmp_path / "m.plan", max_batch=8, hardware_compat="same-cc")
    with pytest.raises(BuildSpecError, match="only the major of this TensorRT"):
        trtexec_argv(spec, tensorrt_version="10")
    assert "--hardwareCompatibilityLevel=sameComputeCapability" in trtexec_argv(spec, tensorrt_version="11")


@pytest.mark.parametrize("text,version", [
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101303] # /usr/src/tensorrt/bin/trtexec --onnx=m.onnx\n", "10.13.3"),
    ("[TensorRT v110100]", "11.1.0"), ("v100800", "10.8.0"), ("10.13.3.9", "10.13.3.9")])
def test_trtexec_version_reads_the_banner(text, version):
    """NV_TENSORRT_VERSION = major * 10000 + minor * 100 + patch (NvInferRuntimeBase.h, 10.x and 11)."""
    from tritonkit.build_engines.trtexec import trtexec_version

    assert trtexec_version(text) == version


def test_adopt_records_the_version_trtexec_printed(tiny_onnx, tmp_path, capsys, monkeypatch):
    """The sidecar's TensorRT is read from trtexec's log, not taken from tritonkit's table (which says
    10.13.3.9 for 25.10, unconfirmed). No GPU here: nvidia-smi is a script naming one L4."""
    from tritonkit.build_engines.sidecar import read_sidecar

    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA L4, 8.9, 00000000:3B:00.0'\n")
    (fakebin / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:/usr/bin:/bin")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"engine")
    log = tmp_path / "m.plan.trtexec.log"
    log.write_text("&&&& RUNNING TensorRT.trtexec [TensorRT v101401] # /usr/src/tensorrt/bin/trtexec\n[I] ...\n")
    base = ["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--precision", "fp32", "--max-batch", "8",
            "--plan", str(plan), "--adopt-plan", str(plan)]
    assert main(base + ["--trtexec-log", str(log)]) == 0
    assert read_sidecar(plan).tensorrt_version == "10.14.1"
    log.write_text("[I] no banner here\n")
    assert main(base + ["--trtexec-log", str(log)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{log}: neither trtexec's '[TensorRT vNNNNNN]' banner" in err[-1]
    assert read_sidecar(plan).tensorrt_version == "10.14.1"                 # the refused log left it as it was


def test_build_help_says_what_version_compatible_plans_run_on():
    """The help follows compat's rule (TensorRT 11.4.1 Support Matrix: 10 -> 11 version-compatible
    engines run), not the older "same major" only."""
    import argparse

    from tritonkit.build_engines.compat import CROSS_MAJOR_VERSION_COMPATIBLE, VERSION_COMPATIBLE_SERVER_ARG
    from tritonkit.cli import build as build_cli

    parser = argparse.ArgumentParser()
    build_cli.add_arguments(parser)
    (action,) = [a for a in parser._actions if "--version-compatible" in a.option_strings]
    assert (10, 11) in CROSS_MAJOR_VERSION_COMPATIBLE
    assert "the next one from 10 to 11" in action.help and VERSION_COMPATIBLE_SERVER_ARG in action.help
    assert "of the same major version" not in action.help
