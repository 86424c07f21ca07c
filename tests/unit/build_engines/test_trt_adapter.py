"""The TensorRT builder path against a recording fake of the ``tensorrt`` module's surface.

TensorRT cannot be installed on this machine (no NVIDIA GPU, no wheel for it), so these tests
install ``RecordingTensorRT`` — a fake of exactly the ``tensorrt`` API that trt_adapter calls —
into ``sys.modules`` (only inside each test, via monkeypatch) or pass it in directly. The fake is
the only thing mocked. It models both majors as NVIDIA's headers define them (``include/NvInfer.h``
on release/10.16 and release/11.0): on 10.x ``BuilderFlag`` has FP16 and INT8, on 11 it has neither
(so code that still sets them fails here exactly as on a real TensorRT 11), and
``create_timing_cache`` returns None for a cache it cannot read, as the C++ API may. It parses the
real ONNX with ``onnx`` to know the network inputs and records every builder call; the tests assert
the profile shapes, flags, pool limit and timing-cache use, and that plan bytes and sidecar are
written atomically. The nvidia-smi GPU query is replaced by an explicit GpuInfo or a fake
``nvidia-smi`` script on PATH.
"""

from __future__ import annotations

import json
import os
import sys
import types
from datetime import datetime
from pathlib import Path

import pytest

from tritonkit.build_engines import builder as builder_mod
from tritonkit.build_engines.builder import adopt_plan, build_plan
from tritonkit.build_engines.sidecar import GpuInfo, SidecarError, read_sidecar, sidecar_path
from tritonkit.build_engines.spec import BuildSpecError, make_spec, sha256_file
from tritonkit.build_engines.trt_adapter import build_serialized, import_tensorrt
from tritonkit.cards import get_card
from tritonkit.errors import ToolMissingError, TritonkitError

CARD = get_card("demo_shapes")
GPU = GpuInfo("NVIDIA L4", "8.9")


class RecordingTensorRT(types.ModuleType):
    """Records the calls trt_adapter makes on the tensorrt API; returns canned plan/cache bytes."""

    def __init__(self, version: str = "10.13.3.9", *, fail_build: bool = False, parse_ok: bool = True,
                 no_fresh_cache: bool = False):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list[tuple] = []
        self.fail_build = fail_build
        self.parse_ok = parse_ok
        self.no_fresh_cache = no_fresh_cache          # create_timing_cache(b"") returns None too
        self.plan_bytes = b"\x00FAKE-PLAN\x01" * 64
        calls = self.calls
        fake = self

        self.Logger = type("Logger", (), {"WARNING": "WARNING",
                                          "__init__": lambda s, sev: calls.append(("Logger", sev))})
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        flags = {"VERSION_COMPATIBLE": "VERSION_COMPATIBLE", "TF32": "TF32"}
        if int(version.split(".")[0]) < 11:                      # removed in TensorRT 11 (strongly typed)
            flags.update(FP16="FP16", INT8="INT8")
        self.BuilderFlag = types.SimpleNamespace(**flags)
        self.HardwareCompatibilityLevel = types.SimpleNamespace(
            NONE="NONE", AMPERE_PLUS="AMPERE_PLUS", SAME_COMPUTE_CAPABILITY="SAME_COMPUTE_CAPABILITY")

        class Cache:
            def __init__(self, data: bytes):
                self.data = data

            def serialize(self):
                return memoryview(self.data + b"+new")

        class Config:
            def __init__(self):
                object.__setattr__(self, "cache", None)

            def __setattr__(self, name, value):
                calls.append(("set", name, value))
                object.__setattr__(self, name, value)

            def set_memory_pool_limit(self, pool, size):
                calls.append(("set_memory_pool_limit", pool, size))

            def set_flag(self, flag):
                calls.append(("set_flag", flag))

            def create_timing_cache(self, data):
                calls.append(("create_timing_cache", bytes(data)))
                if bytes(data).startswith(b"CORRUPT") or (fake.no_fresh_cache and not bytes(data)):
                    return None                                  # ITimingCache* may be nullptr
                return Cache(bytes(data))

            def set_timing_cache(self, cache, ignore_mismatch):
                calls.append(("set_timing_cache", cache.data, ignore_mismatch))
                if cache.data.startswith(b"STALE"):
                    return False
                object.__setattr__(self, "cache", cache)
                return True

            def get_timing_cache(self):
                return self.cache

            def add_optimization_profile(self, profile):
                calls.append(("add_optimization_profile", profile))

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

        class Network:
            inputs: list[str] = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return types.SimpleNamespace(name=self.inputs[i])

        class ParserError:
            def desc(self):
                return "Unsupported op FancyOp"

            def node(self):
                return 7

        class OnnxParser:
            def __init__(self, network, logger):
                self.network = network
                self.num_errors = 0

            def parse_from_file(self, path):
                import onnx

                calls.append(("parse_from_file", path))
                if not fake.parse_ok:
                    self.num_errors = 1
                    return False
                model = onnx.load(path)
                inits = {i.name for i in model.graph.initializer}
                self.network.inputs = [i.name for i in model.graph.input if i.name not in inits]
                return True

            def get_error(self, i):
                return ParserError()

        class Builder:
            def __init__(self, logger):
                calls.append(("Builder",))

            def create_network(self, flags):
                calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calls.append(("build_serialized_network",))
                return None if fake.fail_build else memoryview(fake.plan_bytes)

        self.Builder, self.OnnxParser = Builder, OnnxParser

    def named(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


def _spec(onnx, tmp_path, **kw):
    kw.setdefault("max_batch", 8)
    kw.setdefault("opt_batch", 4)
    return make_spec(CARD, onnx, kw.pop("precision", "fp16"), tmp_path / "out" / "demo_shapes_fp16.plan", **kw)


def test_fp16_build_calls(tiny_onnx, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    trt = RecordingTensorRT()
    spec = _spec(tiny_onnx, tmp_path, workspace_mb=1024, timing_cache=cache)
    built = build_serialized(spec, trt)

    assert trt.named("create_network") == [("create_network", 0)]          # explicit batch: TRT 10 default
    assert trt.named("parse_from_file") == [("parse_from_file", str(tiny_onnx))]
    assert trt.named("set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 1024 * 2**20)]
    assert trt.named("set_flag") == [("set_flag", "FP16")]
    sets = {c[1]: c[2] for c in trt.named("set")}
    assert sets == {"builder_optimization_level": 3}                      # no hardware level, no calibrator
    assert trt.named("create_timing_cache") == [("create_timing_cache", b"OLD")]
    assert trt.named("set_timing_cache") == [("set_timing_cache", b"OLD", False)]
    assert trt.named("set_shape") == [("set_shape", "input", (1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))]
    assert len(trt.named("add_optimization_profile")) == 1
    order = [c[0] for c in trt.calls]
    assert order.index("add_optimization_profile") < order.index("build_serialized_network")
    assert built.plan == trt.plan_bytes
    assert built.tensorrt_version == "10.13.3.9"
    assert built.timing_cache == b"OLD+new"


def test_int8_version_and_hardware_compat_flags(tmp_path):
    from support.onnx_models import qdq_classifier as _qdq_onnx

    trt = RecordingTensorRT()
    spec = _spec(_qdq_onnx(tmp_path / "q.onnx"), tmp_path, precision="int8", version_compatible=True,
                 hardware_compat="ampere+", opt_level=5)
    build_serialized(spec, trt)
    # TensorRT 10: FP16 with INT8, else the layers outside the Q/DQ pairs fall back to FP32/TF32
    assert trt.named("set_flag") == [("set_flag", "FP16"), ("set_flag", "INT8"), ("set_flag", "VERSION_COMPATIBLE")]
    sets = {c[1]: c[2] for c in trt.named("set")}
    assert sets == {"builder_optimization_level": 5, "hardware_compatibility_level": "AMPERE_PLUS"}
    assert "int8_calibrator" not in sets                                    # explicit quantization
    assert trt.named("create_timing_cache") == []


def test_stale_timing_cache_is_replaced_with_a_fresh_one(tiny_onnx, tmp_path):
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"STALE-from-another-gpu")
    trt = RecordingTensorRT()
    built = build_serialized(_spec(tiny_onnx, tmp_path, timing_cache=cache), trt)
    assert [c[1] for c in trt.named("create_timing_cache")] == [b"STALE-from-another-gpu", b""]
    assert built.timing_cache == b"+new"
    assert "did not match" in built.notes[0]


def test_build_plan_writes_plan_sidecar_and_cache(tiny_onnx, tmp_path, monkeypatch):
    cache = tmp_path / "t.cache"
    trt = RecordingTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)                      # found by the lazy import
    spec = _spec(tiny_onnx, tmp_path, timing_cache=cache)
    built = build_plan(spec, gpu=GPU)

    assert spec.plan.read_bytes() == trt.plan_bytes
    assert built.sidecar_path == sidecar_path(spec.plan) == spec.plan.with_name("demo_shapes_fp16.plan.json")
    data = json.loads(built.sidecar_path.read_text())
    assert data["tensorrt_version"] == "10.13.3.9"
    assert (data["gpu_name"], data["compute_capability"]) == ("NVIDIA L4", "8.9")
    assert data["precision"] == "fp16"
    assert data["profile"] == {"input": "input", "min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}
    assert data["onnx_sha256"] == sha256_file(tiny_onnx)
    assert data["builder"] == "tensorrt-python"
    assert "precision=fp16" in data["build_flags"] and "timing_cache" in data["build_flags"]
    assert datetime.fromisoformat(data["built_at"]).tzinfo is not None
    from tritonkit import __version__

    assert data["tritonkit_version"] == __version__
    assert read_sidecar(spec.plan) == built.sidecar
    assert cache.read_bytes() == b"+new"
    assert sorted(p.name for p in spec.plan.parent.iterdir()) == ["demo_shapes_fp16.plan", "demo_shapes_fp16.plan.json"]


def test_failed_build_leaves_previous_plan_untouched(tiny_onnx, tmp_path):
    spec = _spec(tiny_onnx, tmp_path)
    build_plan(spec, trt=RecordingTensorRT(), gpu=GPU)
    before = (spec.plan.read_bytes(), sidecar_path(spec.plan).read_text())
    with pytest.raises(TritonkitError, match="TensorRT could not build a fp16 plan"):
        build_plan(spec, trt=RecordingTensorRT(fail_build=True), gpu=GPU)
    assert (spec.plan.read_bytes(), sidecar_path(spec.plan).read_text()) == before
    assert len(list(spec.plan.parent.iterdir())) == 2


def test_interrupted_install_never_pairs_a_plan_with_a_stale_sidecar(tiny_onnx, tmp_path, monkeypatch):
    spec = _spec(tiny_onnx, tmp_path)
    build_plan(spec, trt=RecordingTensorRT("10.11.0.33"), gpu=GPU)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".plan.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(builder_mod.os, "replace", failing_replace)
    with pytest.raises(OSError):
        build_plan(spec, trt=RecordingTensorRT("10.13.3.9"), gpu=GPU)
    with pytest.raises(SidecarError, match="no sidecar"):
        read_sidecar(spec.plan)                                             # refused, not silently 10.11
    assert [p.name for p in spec.plan.parent.iterdir()] == ["demo_shapes_fp16.plan"]


def test_parser_errors_are_reported(tiny_onnx, tmp_path):
    with pytest.raises(TritonkitError, match="ONNX parser failed: node 7: Unsupported op FancyOp"):
        build_serialized(_spec(tiny_onnx, tmp_path), RecordingTensorRT(parse_ok=False))


def test_network_input_must_be_the_cards(tmp_path):
    from support.onnx_models import tiny_classifier

    onnx = tiny_classifier(tmp_path / "m.onnx", input_name="images")
    spec = make_spec(CARD, onnx, "fp16", tmp_path / "m.plan", max_batch=8, check_onnx=False)
    with pytest.raises(BuildSpecError, match=r"TensorRT sees inputs \['images'\], not 'input'"):
        build_serialized(spec, RecordingTensorRT())


def test_old_tensorrt_is_refused(tiny_onnx, tmp_path):
    with pytest.raises(ToolMissingError, match="TensorRT 8.6.1.6 found; tritonkit builds plans with TensorRT 10"):
        build_serialized(_spec(tiny_onnx, tmp_path), RecordingTensorRT("8.6.1.6"))


def test_missing_tensorrt_names_the_trtexec_command(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    spec = _spec(tiny_onnx, tmp_path)
    with pytest.raises(ToolMissingError) as info:
        import_tensorrt(spec)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("TensorRT is missing here")
    assert "trtexec --onnx=" in msg and "--optShapes=input:4x3x64x64" in msg
    assert "/usr/src/tensorrt/bin/trtexec" in msg and "nvcr.io/nvidia/tensorrt:" in msg and "<release>" not in msg
    with pytest.raises(ToolMissingError):
        build_plan(spec, gpu=GPU)
    assert not spec.plan.parent.exists() or list(spec.plan.parent.iterdir()) == []


def test_adopt_plan_records_a_trtexec_build(tiny_onnx, tmp_path):
    spec = _spec(tiny_onnx, tmp_path)
    with pytest.raises(TritonkitError, match="plan file not found"):
        adopt_plan(spec, spec.plan, "10.13.3.9", GPU)
    spec.plan.parent.mkdir(parents=True)
    spec.plan.write_bytes(b"engine")
    built = adopt_plan(spec, spec.plan, "10.13.3.9", GPU)
    side = read_sidecar(spec.plan)
    assert side == built.sidecar
    assert side.builder == "trtexec"
    assert "--fp16" in side.build_flags and "--maxShapes=input:8x3x64x64" in side.build_flags
    assert side.tensorrt_version == "10.13.3.9"
    with pytest.raises(SidecarError, match="tensorrt_version"):
        adopt_plan(spec, spec.plan, "ten", GPU)
    with pytest.raises(SidecarError, match="'10.13' is not a version like 10.13.3.9"):
        adopt_plan(spec, spec.plan, "10.13", GPU)              # too coarse: 10.13.2 and 10.13.3 plans do not mix
    assert read_sidecar(spec.plan) == side                     # the refused versions left the sidecar as it was


def test_gpu_smoke_pipeline_with_fake_gpu_and_fake_tensorrt(tiny_onnx, tmp_path, monkeypatch, capsys):
    """gpu-smoke end to end up to the docker step. No GPU here: nvidia-smi is a script printing one
    L4, TensorRT is the recording fake, docker is absent (so the server is not started)."""
    import shutil

    from tritonkit.build_engines.compat import RELEASES
    from tritonkit.cli import main

    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    smi = fakebin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA L4, 8.9'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:/usr/bin:/bin")
    assert shutil.which("docker") is None
    monkeypatch.setitem(sys.modules, "tensorrt", RecordingTensorRT(RELEASES["25.10"].tensorrt))
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    shutil.copy(tiny_onnx, onnx_dir / "demo_shapes.onnx")        # demo_shapes_det has no ONNX: a failed step

    code = main(["gpu-smoke", "--onnx-dir", str(onnx_dir), "--models", "demo_shapes,demo_shapes_det",
                 "--out", str(tmp_path / "report"), "--work", str(tmp_path / "work")])
    report = json.loads((tmp_path / "report" / "gpu_smoke.json").read_text())
    steps = {(s["id"], s["subject"]): s for s in report["steps"]}
    assert code == 1 and report["failed"]
    assert steps[("build_fp16_plan", "demo_shapes")]["status"] == "ok"
    assert steps[("build_fp16_plan", "demo_shapes_det")]["status"] == "failed"
    assert "demo_shapes_det.onnx: ONNX file not found" in steps[("build_fp16_plan", "demo_shapes_det")]["detail"]
    assert steps[("compat_check", "demo_shapes")]["status"] == "ok"
    assert steps[("repository_check", None)]["status"] == "ok"
    plan = tmp_path / "work" / "model_repository" / "demo_shapes" / "1" / "model.plan"
    assert read_sidecar(plan).max_batch == 8 and read_sidecar(plan).gpu_name == "NVIDIA L4"
    assert report["precision_note"].startswith("fp16 plans built and measured on NVIDIA L4")
    assert any("not started" in n for n in report["notes"])
    assert any(line.startswith("docker run --rm --gpus all") for line in report["docker_commands"])


# ---------------------------------------------------------------- TensorRT 11 and the issues of 10.x

TRT11 = "11.1.0.7"          # any 11.x: the fake's surface depends only on the major


def _fp16_onnx(path: Path) -> Path:
    """The tiny classifier with its logits cast through float16 (what an AutoCast ONNX carries)."""
    import onnx
    from onnx import TensorProto, helper
    from support.onnx_models import tiny_classifier

    model = onnx.load(str(tiny_classifier(path)))
    graph = model.graph
    graph.node[-1].output[0] = "logits_f32"
    graph.node.extend([helper.make_node("Cast", ["logits_f32"], ["logits_f16"], to=TensorProto.FLOAT16),
                       helper.make_node("Cast", ["logits_f16"], ["logits"], to=TensorProto.FLOAT)])
    onnx.save(model, str(path))
    return path


def test_the_fake_tensorrt_11_has_no_precision_flags():
    """The removal the fake models: the call trt_adapter made before 11 support fails on it."""
    with pytest.raises(AttributeError):
        RecordingTensorRT(TRT11).BuilderFlag.FP16
    with pytest.raises(AttributeError):
        RecordingTensorRT(TRT11).BuilderFlag.INT8
    assert RecordingTensorRT("10.16.0.72").BuilderFlag.FP16 == "FP16"


def test_tensorrt_11_int8_builds_the_qdq_onnx_without_a_precision_flag(tmp_path):
    from support.onnx_models import qdq_classifier as _qdq_onnx

    trt = RecordingTensorRT(TRT11)
    spec = _spec(_qdq_onnx(tmp_path / "q.onnx"), tmp_path, precision="int8", version_compatible=True)
    built = build_serialized(spec, trt)
    assert trt.named("set_flag") == [("set_flag", "VERSION_COMPATIBLE")]
    assert built.tensorrt_version == TRT11 and built.plan == trt.plan_bytes


def test_tensorrt_11_fp16_from_an_fp32_onnx_is_refused_with_the_autocast_command(tiny_onnx, tmp_path):
    trt = RecordingTensorRT(TRT11)
    with pytest.raises(BuildSpecError) as info:
        build_serialized(_spec(tiny_onnx, tmp_path), trt)
    msg = str(info.value)
    assert "\n" not in msg and "strongly typed" in msg
    assert "python -m modelopt.onnx.autocast --onnx_path" in msg
    # the flag that keeps FP32 inputs/outputs (see the next test) and NVIDIA's install line
    assert "--keep_io_types" in msg.split("modelopt.onnx.autocast", 1)[1]
    assert 'pip3 install --no-cache-dir --extra-index-url https://pypi.nvidia.com "nvidia-modelopt[all]"' in msg
    assert trt.named("Builder") == []                                    # refused before any TensorRT work


def _autocast_without_keep_io_types(path: Path) -> Path:
    """What AutoCast writes without --keep_io_types (modelopt/onnx/autocast/__main__.py: "otherwise they
    will be converted to FP16"): the graph's input and output are float16. (No ModelOpt here: the
    graph interface is rewritten with onnx; only the interface matters to the contract.)"""
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(_fp16_onnx(path)))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, str(path))
    return path


def test_following_the_autocast_hint_gives_an_onnx_the_card_accepts(tmp_path):
    """With --keep_io_types the fp16 ONNX keeps the card's FP32 input and builds on TensorRT 11; without
    it the card's contract refuses the ONNX before any build."""
    kept = _spec(_fp16_onnx(tmp_path / "kept.onnx"), tmp_path)
    build_serialized(kept, RecordingTensorRT(TRT11))
    with pytest.raises(BuildSpecError, match="does not fit card"):
        _spec(_autocast_without_keep_io_types(tmp_path / "fp16_io.onnx"), tmp_path)


def test_tensorrt_11_fp16_builds_an_fp16_onnx_as_it_is(tmp_path):
    trt = RecordingTensorRT(TRT11)
    spec = _spec(_fp16_onnx(tmp_path / "m16.onnx"), tmp_path, max_batch=8)
    build_serialized(spec, trt)
    assert trt.named("set_flag") == []
    assert len(trt.named("build_serialized_network")) == 1


def test_tensorrt_fp32_sets_no_precision_flag_on_either_major(tiny_onnx, tmp_path):
    for version in ("10.13.3.9", TRT11):
        trt = RecordingTensorRT(version)
        build_serialized(_spec(tiny_onnx, tmp_path, precision="fp32"), trt)
        assert trt.named("set_flag") == []


def test_next_major_is_refused(tiny_onnx, tmp_path):
    with pytest.raises(BuildSpecError, match="tritonkit builds plans with TensorRT 10 and 11"):
        build_serialized(_spec(tiny_onnx, tmp_path), RecordingTensorRT("12.0.0.1"))


def test_corrupt_timing_cache_gives_a_fresh_cache_and_a_note_not_a_traceback(tiny_onnx, tmp_path):
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"CORRUPT bytes")
    for version in ("10.13.3.9", TRT11):
        trt = RecordingTensorRT(version)
        built = build_serialized(_spec(tiny_onnx, tmp_path, precision="fp32", timing_cache=cache), trt)
        assert [c[1] for c in trt.named("create_timing_cache")] == [b"CORRUPT bytes", b""]
        assert trt.named("set_timing_cache") == [("set_timing_cache", b"", False)]
        assert built.timing_cache == b"+new"
        assert len(built.notes) == 1 and "could not be read" in built.notes[0] and "started a new one" in built.notes[0]


def test_same_compute_capability_is_refused_for_tensorrt_10_8(tiny_onnx, tmp_path):
    spec = _spec(tiny_onnx, tmp_path, hardware_compat="same-cc")
    trt = RecordingTensorRT("10.8.0.43")
    with pytest.raises(BuildSpecError, match="same-cc needs TensorRT 10.9 or newer"):
        build_serialized(spec, trt)
    assert trt.named("Builder") == []
    ok = RecordingTensorRT("10.9.0.34")
    build_serialized(spec, ok)
    assert {c[1]: c[2] for c in ok.named("set")}["hardware_compatibility_level"] == "SAME_COMPUTE_CAPABILITY"


def test_wheel_versions_with_post_suffix_are_recorded(tiny_onnx, tmp_path):
    spec = _spec(tiny_onnx, tmp_path)
    built = build_plan(spec, trt=RecordingTensorRT("10.14.1.48.post1"), gpu=GPU)
    assert read_sidecar(spec.plan).tensorrt_version == "10.14.1.48.post1" == built.sidecar.tensorrt_version


def _fake_smi(tmp_path, monkeypatch, script: str) -> None:
    fakebin = tmp_path / "bin"
    fakebin.mkdir(exist_ok=True)
    smi = fakebin / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:/usr/bin:/bin")


def test_the_gpu_is_queried_before_the_build(tiny_onnx, tmp_path, monkeypatch):
    """nvidia-smi is a script that fails: no TensorRT work is done, so no finished engine is lost."""
    _fake_smi(tmp_path, monkeypatch, "echo 'NVIDIA-SMI has failed because it could not communicate' >&2\nexit 9\n")
    trt = RecordingTensorRT()
    spec = _spec(tiny_onnx, tmp_path)
    with pytest.raises(TritonkitError, match="nvidia-smi failed"):
        build_plan(spec, trt=trt)
    assert trt.named("build_serialized_network") == []
    assert not spec.plan.exists()


def test_mixed_gpus_name_nvidia_smi_i_and_docker_device_not_cuda_visible_devices(tiny_onnx, tmp_path, monkeypatch):
    """A fake nvidia-smi lists two different GPUs, or one when asked with -i."""
    _fake_smi(tmp_path, monkeypatch, 'if [ "$3" = "-i" ]; then echo "NVIDIA L4, 8.9"; '
                                     'else printf "NVIDIA H100, 9.0\\nNVIDIA L4, 8.9\\n"; fi\n')
    spec = _spec(tiny_onnx, tmp_path)
    with pytest.raises(TritonkitError) as info:
        build_plan(spec, trt=RecordingTensorRT())
    msg = str(info.value)
    assert "nvidia-smi -i N" in msg and "--gpus device=N" in msg and "ignore CUDA_VISIBLE_DEVICES" in msg
    built = build_plan(spec, trt=RecordingTensorRT(), gpu_index=1)
    assert (built.sidecar.gpu_name, built.sidecar.compute_capability) == ("NVIDIA L4", "8.9")


def test_old_driver_without_compute_cap_falls_back_to_the_cuda_driver(monkeypatch, tmp_path):
    """R470's nvidia-smi rejects the compute_cap field: the name and PCI bus id are queried instead and
    the capability comes from the fallback (the CUDA driver on a real host; a function here)."""
    from tritonkit.build_engines.host import host_gpus

    _fake_smi(tmp_path, monkeypatch,
              'case "$1" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\'; exit 2;; '
              'esac\necho "Tesla T4, 00000000:3B:00.0"\n')
    seen = []
    gpus = host_gpus(cc_fallback=lambda bus: seen.append(bus) or "7.5")
    assert gpus == [GpuInfo("Tesla T4", "7.5")] and seen == ["00000000:3B:00.0"]
    with pytest.raises(TritonkitError, match="no compute_cap field"):
        host_gpus(cc_fallback=lambda bus: None)


def test_gpu_n_is_the_device_the_build_runs_on_or_the_build_is_refused(tiny_onnx, tmp_path, monkeypatch):
    """`build --gpu 1` on a host whose CUDA device 0 (this process) is another GPU: refused in one line
    before any TensorRT work; when device 0 is GPU 1 the plan is built and its sidecar records GPU 1's
    bus id. (No GPU here: nvidia-smi is a script, the CUDA driver's answer for device 0 a function.)"""
    from tritonkit.build_engines import host

    _fake_smi(tmp_path, monkeypatch, 'if [ "$3" = "-i" ]; then echo "NVIDIA L4, 8.9, 00000000:3B:00.0"; '
                                     'else printf "NVIDIA H100, 9.0, 00000000:17:00.0\\n'
                                     'NVIDIA L4, 8.9, 00000000:3B:00.0\\n"; fi\n')
    spec = _spec(tiny_onnx, tmp_path)
    monkeypatch.setattr(host, "cuda_device_bus_id", lambda ordinal=0: "0000:17:00.0")     # device 0: the H100
    trt = RecordingTensorRT()
    with pytest.raises(TritonkitError) as info:
        build_plan(spec, trt=trt, gpu_index=1)
    msg = str(info.value)
    assert "\n" not in msg and "--gpu 1 is NVIDIA L4 at PCI 00000000:3B:00.0" in msg and "0000:17:00.0" in msg
    assert "CUDA_VISIBLE_DEVICES=1" in msg
    assert trt.named("Builder") == [] and not spec.plan.exists()
    monkeypatch.setattr(host, "cuda_device_bus_id", lambda ordinal=0: "0000:3b:00.0")     # CUDA_VISIBLE_DEVICES=1
    built = build_plan(spec, trt=RecordingTensorRT(), gpu_index=1)
    side = read_sidecar(spec.plan)
    assert (side.gpu_name, side.compute_capability, side.gpu_bus_id) == ("NVIDIA L4", "8.9", "0000:3b:00.0")
    assert built.sidecar == side


def test_nvidia_smi_bus_ids_and_driver_bus_ids_compare():
    from tritonkit.build_engines.host import bus_key, parse_nvidia_smi

    gpus = parse_nvidia_smi("NVIDIA A100-SXM4-80GB, 8.0, 00000000:07:00.0\nTesla T4, 7.5\n")
    assert [(g.name, g.compute_capability, g.pci_bus_id) for g in gpus] == [
        ("NVIDIA A100-SXM4-80GB", "8.0", "00000000:07:00.0"), ("Tesla T4", "7.5", None)]
    assert bus_key("00000000:3B:00.0") == bus_key("0000:3b:00.0") != bus_key("0000:3c:00.0")
    assert bus_key("not a bus") is None


def test_a_fresh_timing_cache_that_cannot_be_made_is_a_one_line_error(tiny_onnx, tmp_path):
    """After a stale cache (set_timing_cache False) the fresh cache is checked too: TensorRT returning no
    cache is said in one line, not passed on as None."""
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"STALE-from-another-gpu")
    trt = RecordingTensorRT(no_fresh_cache=True)
    with pytest.raises(TritonkitError, match="could not create a timing cache"):
        build_serialized(_spec(tiny_onnx, tmp_path, timing_cache=cache), trt)
    assert trt.named("build_serialized_network") == []


def _fp16_qdq_onnx(path: Path) -> Path:
    """The QDQ graph with a float16 initializer (as ModelOpt ONNX PTQ's --high_precision_dtype fp16 writes)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from support.onnx_models import qdq_classifier as _qdq_onnx

    model = onnx.load(str(_qdq_onnx(path)))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float16), "unused_fp16"))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("version,make,layers", [("10.13.3.9", "fp32", "fp16"), (TRT11, "fp32", "fp32"),
                                                 (TRT11, "fp16", "fp16")])
def test_int8_plans_say_the_precision_of_their_float_layers(tmp_path, version, make, layers):
    """TensorRT 10 int8 sets FP16 (float layers FP16); 11 runs an FP32 QDQ ONNX's float layers in FP32:
    that plan carries a note, its sidecar records it, its label names the major, the plan check repeats it."""
    from support.onnx_models import qdq_classifier as _qdq_onnx

    from tritonkit.build_engines.compat import check_plan

    onnx = (_qdq_onnx if make == "fp32" else _fp16_qdq_onnx)(tmp_path / "q.onnx")
    spec = _spec(onnx, tmp_path, precision="int8")
    built = build_plan(spec, trt=RecordingTensorRT(version), gpu=GPU)
    side = read_sidecar(spec.plan)
    major = version.split(".")[0]
    assert f"int8_float_layers={layers}" in side.build_flags
    assert side.precision_label() == f"int8 (TensorRT {major}, float layers {layers})"
    flagged = layers == "fp32"
    assert any("not comparable with a TensorRT 10 int8 plan" in n for n in built.notes) == flagged
    release, trt = ("26.06", TRT11) if major == "11" else ("25.10", version)
    notes = check_plan(side, release, "8.9", container_trt=trt).notes
    assert any(n.startswith("int8 (TensorRT 11, float layers fp32): int8 on TensorRT 11") for n in notes) == flagged
