"""BuildSpec -> trtexec argv (flag spellings from trtexec's TensorRT 10 --help), and the CLI paths that print it."""

from __future__ import annotations

import shlex
import sys

import pytest

from tritonkit.build_engines.spec import make_spec
from tritonkit.build_engines.trtexec import trtexec_argv, trtexec_command
from tritonkit.cards import get_card
from tritonkit.cli import main

CARD = get_card("demo_shapes")


def test_fp16_argv_exactly(tiny_onnx, tmp_path):
    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "m.plan", min_batch=1, opt_batch=4, max_batch=8)
    assert trtexec_argv(spec) == [
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
    from test_build_spec import _qdq_onnx

    qdq = _qdq_onnx(tmp_path / "q.onnx")
    spec = make_spec(CARD, qdq, "int8", tmp_path / "m.plan", min_batch=2, opt_batch=16, max_batch=32,
                     workspace_mb=2048, timing_cache=tmp_path / "t.cache", opt_level=5, version_compatible=True,
                     hardware_compat="ampere+")
    assert trtexec_argv(spec, "/usr/src/tensorrt/bin/trtexec") == [
        "/usr/src/tensorrt/bin/trtexec",
        f"--onnx={qdq}",
        f"--saveEngine={tmp_path / 'm.plan'}",
        "--minShapes=input:2x3x64x64",
        "--optShapes=input:16x3x64x64",
        "--maxShapes=input:32x3x64x64",
        "--int8",                                   # explicit quantization: QDQ graph, no --calib
        "--memPoolSize=workspace:2048",
        f"--timingCacheFile={tmp_path / 't.cache'}",
        "--builderOptimizationLevel=5",
        "--versionCompatible",
        "--hardwareCompatibilityLevel=ampere+",
        "--skipInference",
    ]
    same_cc = make_spec(CARD, qdq, "int8", tmp_path / "m.plan", hardware_compat="same-cc")
    assert "--hardwareCompatibilityLevel=sameComputeCapability" in trtexec_argv(same_cc)


def test_fp32_has_no_precision_flag(tiny_onnx, tmp_path):
    argv = trtexec_argv(make_spec(CARD, tiny_onnx, "fp32", tmp_path / "m.plan"))
    assert not {"--fp16", "--int8"} & set(argv)


def test_container_path_overrides(tiny_onnx, tmp_path):
    spec = make_spec(CARD, tiny_onnx, "fp16", tmp_path / "m.plan", timing_cache=tmp_path / "c")
    argv = trtexec_argv(spec, onnx="/work/m.onnx", plan="/work/m.plan", timing_cache="/work/c")
    assert argv[1:3] == ["--onnx=/work/m.onnx", "--saveEngine=/work/m.plan"]
    assert "--timingCacheFile=/work/c" in argv


def test_command_is_shell_quoted(tmp_path):
    from onnx_models import tiny_classifier

    onnx = tiny_classifier(tmp_path / "my models" / "m.onnx")
    spec = make_spec(CARD, onnx, "fp16", tmp_path / "out dir" / "m.plan", max_batch=8)
    cmd = trtexec_command(spec)
    assert f"'--onnx={onnx}'" in cmd
    assert shlex.split(cmd) == trtexec_argv(spec)


def test_cli_trtexec_only_prints_the_command_and_builds_nothing(tiny_onnx, tmp_path, capsys):
    code = main(["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--precision", "fp16",
                 "--min-batch", "1", "--opt-batch", "4", "--max-batch", "8", "--out", str(tmp_path), "--trtexec-only"])
    out = capsys.readouterr()
    assert code == 0
    plan = tmp_path / "demo_shapes_fp16.plan"
    spec = make_spec(CARD, tiny_onnx, "fp16", plan, min_batch=1, opt_batch=4, max_batch=8)
    assert out.out.strip() == trtexec_command(spec)
    assert "--adopt-plan" in out.err
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
    (["--max-batch", "65"], "above the max_batch_size 64"),
])
def test_cli_bad_combinations(tiny_onnx, tmp_path, capsys, argv, msg):
    code = main(["build", "--model", "demo_shapes", "--onnx", str(tiny_onnx), "--out", str(tmp_path), *argv])
    assert code == 1
    assert msg in capsys.readouterr().err
