"""A validation context over a repository holding one placeholder TensorRT plan and its sidecar
(TensorRT cannot run here: the plan is a placeholder, the checks read only its sidecar)."""

from __future__ import annotations

from tritonkit.cards import get_card
from tritonkit.validate.options import ValidateOptions
from tritonkit.host import HostPort


def plan_context(tmp_path, trt_version: str, release: str | None):
    from tritonkit.build_engines.sidecar import PlanProfile, Sidecar, sidecar_text
    from tritonkit.validate.context import Context, Endpoints, resolve_precision

    vdir = tmp_path / "repo" / "demo_shapes" / "1"
    vdir.mkdir(parents=True)
    (vdir / "model.plan").write_bytes(b"placeholder: not a real engine")
    side = Sidecar(model="demo_shapes", tensorrt_version=trt_version, gpu_name="NVIDIA A10",
                   compute_capability="8.6", precision="fp16",
                   profile=PlanProfile("input", (1, 3, 64, 64), (8, 3, 64, 64), (64, 3, 64, 64)),
                   onnx_sha256="0" * 64, onnx_file="demo.onnx", build_flags=("fp16",), version_compatible=False,
                   hardware_compat="none", tritonkit_version="0.1.0", built_at="2026-01-01T00:00:00+00:00",
                   builder="trtexec")
    (vdir / "model.plan.json").write_text(sidecar_text(side))
    options = ValidateOptions(models=("demo_shapes",), container_release=release)
    config = {"platform": "tensorrt_plan", "max_batch_size": 64,
              "version_policy": {"specific": {"versions": ["1"]}}}
    endpoints = Endpoints(grpc=HostPort("127.0.0.1", 1), http=HostPort("127.0.0.1", 2),
                          metrics_url="http://127.0.0.1:3/metrics", local=True, pid=None, pid_note="test",
                          repo=tmp_path / "repo")
    precision, source = resolve_precision("demo_shapes", options, get_card("demo_shapes"), config, tmp_path / "repo")
    from tritonkit.validate.context import ModelTarget

    target = ModelTarget(name="demo_shapes", card=get_card("demo_shapes"), card_source="test", config=config,
                         precision=precision, precision_source=source)
    return Context(options=options, endpoints=endpoints, api_key=None, targets=(target,)), target

