"""config.pbtxt from typed objects, through Triton's own protobuf schema.

A model card plus :class:`RepoOptions` become a ``model_config_pb2.ModelConfig``; text is
produced only by ``google.protobuf.text_format``, so every field name and enum is checked by
the schema (no templates, no string formatting of config text). :func:`parse_config` reads a
config.pbtxt back into the same message type for round trips and for checks.

Targets from one card:

* ``cpu`` — the local CPU target: the ONNX served by a python-backend model running
  onnxruntime (works with the bundled tritonserver, which ships only the python backend).
* ``onnxruntime`` — Triton's ONNX Runtime backend (``onnxruntime_onnx``) in NVIDIA's container.
* ``gpu`` — a TensorRT plan (``tensorrt_plan``), built by ``tritonkit build``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from tritonkit._lazy import lazy_import, load_module
from tritonkit.cards import ModelCard, TensorSpec
from tritonkit.spec import CARD_PARAMETER
from tritonkit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

_model_config_pb2 = lazy_import("tritonclient.grpc.model_config_pb2")
_text_format = lazy_import("google.protobuf.text_format")
_json_format = lazy_import("google.protobuf.json_format")

LABELS_FILE = "labels.txt"
# CARD_PARAMETER (tritonkit.contract): the card a model was made from, embedded in its config so
# a remote client (eval, validate) can check the served contract against it without the repository's files.
ORT_BACKEND_SOURCE = "ort_model.py"


def _ort_python_parameters(options: "RepoOptions") -> dict[str, str]:
    """cpu target: what the python backend's onnxruntime session reads (backends/ort_model.py)."""
    return {"onnx_file": "model.onnx", "intra_op_threads": str(options.intra_op_threads),
            "allow_spinning": "1" if options.ort_spinning else "0"}


@dataclass(frozen=True, kw_only=True)
class Target:
    """How one serving target lays out and configures a model.

    Exactly one of ``backend`` (a Triton backend name) and ``platform`` is set.
    ``backend_files`` are ``(file name in the version folder, source in model_repository/backends)``;
    ``sidecar_suffix``: a file ``<model file><suffix>`` beside the source model file is copied
    along as ``<model_file><suffix>`` when it exists (the plan's build record).
    """

    name: str
    model_file: str
    instance_kind: str                     # ModelInstanceGroup.Kind name: KIND_CPU, KIND_GPU
    accepts_suffixes: tuple[str, ...]
    backend: str = ""
    platform: str = ""
    backend_files: tuple[tuple[str, str], ...] = ()
    sidecar_suffix: str | None = None
    checks_onnx: bool = False
    parameters: Callable[["RepoOptions"], Mapping[str, str]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if bool(self.backend) == bool(self.platform):
            raise ConfigError(f"target {self.name!r}: set exactly one of backend and platform")
        if self.instance_kind not in ("KIND_CPU", "KIND_GPU", "KIND_AUTO", "KIND_MODEL"):
            raise ConfigError(f"target {self.name!r}: instance_kind {self.instance_kind!r} is not a Triton kind")
        if not self.accepts_suffixes:
            raise ConfigError(f"target {self.name!r}: accepts_suffixes must not be empty")

    def accepts(self, suffix: str) -> bool:
        return suffix.lower() in self.accepts_suffixes


TARGET_TABLE: dict[str, Target] = {t.name: t for t in (
    Target(name="cpu", backend="python", model_file="model.onnx", instance_kind="KIND_CPU",
           accepts_suffixes=(".onnx",), backend_files=(("model.py", ORT_BACKEND_SOURCE),), checks_onnx=True,
           parameters=_ort_python_parameters,
           description="python backend running onnxruntime (the bundled local server)"),
    Target(name="onnxruntime", platform="onnxruntime_onnx", model_file="model.onnx", instance_kind="KIND_GPU",
           accepts_suffixes=(".onnx",), checks_onnx=True,
           description="Triton's ONNX Runtime backend in NVIDIA's container"),
    Target(name="gpu", platform="tensorrt_plan", model_file="model.plan", instance_kind="KIND_GPU",
           accepts_suffixes=(".plan", ".engine"), sidecar_suffix=".json",
           description="a TensorRT plan built by tritonkit build"),
)}
TARGETS = tuple(TARGET_TABLE)


def get_target(name: str) -> Target:
    try:
        return TARGET_TABLE[name]
    except KeyError:
        raise ConfigError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None


@dataclass(frozen=True)
class QueuePolicy:
    """Dynamic-batching queue policy: bounded queue, requests past the timeout rejected."""

    max_queue_size: int = 0
    timeout_us: int = 0
    reject_on_timeout: bool = True
    allow_timeout_override: bool = True


@dataclass(frozen=True)
class RepoOptions:
    """How one model is served. Defaults suit a vision model under concurrent load."""

    target: str = "cpu"
    max_batch_size: int | None = None          # None -> the card's
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = ()  # () -> Triton forms the largest batch it can
    max_queue_delay_us: int = 100
    instances: int = 1
    warmup: bool = True
    # Warm up at batch 1 only by default: a warmup sample above the max_batch_size a tuning tool
    # (Model Analyzer, perf tune) gives a config variant fails that variant's load ("failed to run
    # warmup sample"). True adds a warmup at the max batch (the first full batch is then not slow),
    # for a repository whose max_batch_size nothing else changes.
    warmup_max_batch: bool = False
    queue_policy: QueuePolicy | None = None
    intra_op_threads: int = 0                  # cpu target: onnxruntime threads (0 = ORT default)
    # cpu target: idle onnxruntime threads spin-wait (onnxruntime's default). Measured on 2 cores:
    # a ResNet-50 at bs 8 served ~10 % faster with spinning; a client sharing the host (the demo's
    # eval) ran its stream up to 2x faster without it, since spinning threads take its CPUs.
    ort_spinning: bool = True
    version: int = 1
    labels: bool = True
    name: str | None = None                    # None -> the card's name
    parameters: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        get_target(self.target)  # raises for an unknown one
        if self.instances < 1:
            raise ConfigError(f"instances must be >= 1 (got {self.instances})")
        if self.max_queue_delay_us < 0:
            raise ConfigError("max_queue_delay_us must be >= 0")
        if self.version < 1:
            raise ConfigError("version must be >= 1")
        if any(b < 1 for b in self.preferred_batch_sizes):
            raise ConfigError(f"preferred batch sizes must be >= 1 (got {self.preferred_batch_sizes})")


def pb_module():
    """Triton's ``model_config_pb2`` (tritonclient, imported on first use)."""
    return load_module(_model_config_pb2)


def data_type(dtype: str) -> int:
    """Card dtype name ('FP32') -> the ``DataType`` enum value (TYPE_FP32)."""
    return pb_module().DataType.Value(f"TYPE_{dtype}")


def dtype_name(value: int) -> str:
    """``DataType`` enum value -> card dtype name ('FP32')."""
    return pb_module().DataType.Name(value).removeprefix("TYPE_")


def _input(spec: TensorSpec, layout: str):
    pb = pb_module()
    fmt = pb.ModelInput.FORMAT_NCHW if layout == "NCHW" else pb.ModelInput.FORMAT_NHWC
    return pb.ModelInput(name=spec.name, data_type=data_type(spec.dtype), format=fmt, dims=list(spec.dims))


def _output(spec: TensorSpec, label_file: str | None):
    out = pb_module().ModelOutput(name=spec.name, data_type=data_type(spec.dtype), dims=list(spec.dims))
    if label_file:
        out.label_filename = label_file
    return out


def effective_max_batch(card: ModelCard, options: RepoOptions) -> int:
    mbs = card.max_batch_size if options.max_batch_size is None else options.max_batch_size
    if mbs < 1:
        raise ConfigError(f"max_batch_size must be >= 1 (got {mbs})")
    if mbs > card.max_batch_size:
        raise ConfigError(f"max_batch_size {mbs} is above card {card.name!r}'s max {card.max_batch_size}")
    bad = [b for b in options.preferred_batch_sizes if b > mbs]
    if bad:
        raise ConfigError(f"preferred batch sizes {bad} exceed max_batch_size {mbs}")
    return mbs


def model_config(card: ModelCard, options: RepoOptions = RepoOptions()) -> "model_config_pb2.ModelConfig":
    """The ``ModelConfig`` message that serves ``card`` on ``options.target``.

    Built section by section (as pytriton's ``ModelConfigGenerator``): platform/backend and
    parameters, signature, instance group and version, batching, warmup.
    """
    target = get_target(options.target)
    mbs = effective_max_batch(card, options)
    cfg = pb_module().ModelConfig(name=options.name or card.name, max_batch_size=mbs)
    _set_platform(cfg, target)
    _set_parameters(cfg, card, options, target)
    _set_signature(cfg, card, labels=options.labels and card.has_labels)
    _set_instance_group(cfg, target, options.instances)
    cfg.version_policy.specific.versions.append(options.version)
    _set_batching(cfg, options)
    if options.warmup:
        _set_warmup(cfg, card.input, warmup_batch_sizes(mbs, options), card.input_shape(1)[1:])
    return cfg


def _set_platform(cfg, target: Target) -> None:
    if target.backend:
        cfg.backend = target.backend
    else:
        cfg.platform = target.platform
        cfg.default_model_filename = target.model_file


def card_parameter(card: ModelCard) -> str:
    """The card as the value of the ``tritonkit_card`` parameter every model tritonkit writes
    carries (compact JSON): the one persisted copy of the card a model folder holds."""
    return json.dumps(card.to_dict(), separators=(",", ":"))


ULTRALYTICS_METADATA = "metadata"  # the parameter ultralytics' Triton client reads (utils/triton.py)


def client_parameters(card: ModelCard, max_batch: int) -> dict[str, str]:
    """Parameters other clients read: ultralytics' ``metadata`` (a Python literal of names, imgsz,
    stride, task, end2end) for the heads that give it (ultralytics' own output layouts)."""
    metadata = getattr(card.postprocess, "ultralytics_metadata", None)
    if metadata is None:
        return {}
    return {ULTRALYTICS_METADATA: repr(metadata(card.label_names(), card.preprocess.size, max_batch))}


def _set_parameters(cfg, card: ModelCard, options: RepoOptions, target: Target) -> None:
    """The target's own parameters, those other clients read, then the user's, then the embedded card."""
    values = dict(target.parameters(options)) if target.parameters else {}
    values.update(client_parameters(card, cfg.max_batch_size))
    values.update(options.parameters)
    values[CARD_PARAMETER] = card_parameter(card)
    for key, value in values.items():
        cfg.parameters[key].string_value = value


def _set_signature(cfg, card: ModelCard, labels: bool) -> None:
    cfg.input.append(_input(card.input, card.preprocess.layout))
    for i, out in enumerate(card.outputs):
        cfg.output.append(_output(out, LABELS_FILE if (labels and i == 0) else None))


def _set_instance_group(cfg, target: Target, count: int) -> None:
    group = pb_module().ModelInstanceGroup
    cfg.instance_group.append(group(count=count, kind=group.Kind.Value(target.instance_kind)))


def _set_batching(cfg, options: RepoOptions) -> None:
    if not options.dynamic_batching:
        if options.queue_policy is not None:
            raise ConfigError("a queue policy needs dynamic batching")
        return
    db = cfg.dynamic_batching
    db.max_queue_delay_microseconds = options.max_queue_delay_us
    db.preferred_batch_size.extend(options.preferred_batch_sizes)
    if options.queue_policy is not None:
        qp = options.queue_policy
        policy = db.default_queue_policy
        policy.max_queue_size = qp.max_queue_size
        policy.default_timeout_microseconds = qp.timeout_us
        policy.allow_timeout_override = qp.allow_timeout_override
        action = pb_module().ModelQueuePolicy
        policy.timeout_action = action.REJECT if qp.reject_on_timeout else action.DELAY


def warmup_batch_sizes(max_batch_size: int, options: RepoOptions) -> tuple[int, ...]:
    """The batch sizes a model warms up at: 1, which stays valid whatever max_batch_size a tool
    sets later, and the max batch too with ``options.warmup_max_batch``."""
    return tuple(sorted({1, max_batch_size})) if options.warmup_max_batch else (1,)


def _set_warmup(cfg, spec: TensorSpec, batch_sizes: tuple[int, ...], dims: tuple[int, ...] | None = None) -> None:
    """Zero-filled warmup requests at ``batch_sizes``; ``dims`` are concrete per-sample dims (a
    dynamic H/W card warms up at its ``dynamic_shape.opt``)."""
    for bs in batch_sizes:
        w = pb_module().ModelWarmup(name=f"zeros_bs{bs}", batch_size=bs)
        w.inputs[spec.name].data_type = data_type(spec.dtype)
        w.inputs[spec.name].dims.extend(dims if dims is not None else spec.dims)
        w.inputs[spec.name].zero_data = True
        cfg.model_warmup.append(w)


def config_to_text(cfg: "model_config_pb2.ModelConfig") -> str:
    return _text_format.MessageToString(cfg)


def parse_config(text: str, source: str = "config.pbtxt") -> "model_config_pb2.ModelConfig":
    """Parse config.pbtxt text into a ``ModelConfig``; errors name the file and position."""
    cfg = pb_module().ModelConfig()
    try:
        _text_format.Parse(text, cfg)
    except _text_format.ParseError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def config_to_json(cfg: "model_config_pb2.ModelConfig") -> dict:
    """The config as the JSON Triton's HTTP ``/config`` endpoint returns (for comparisons)."""
    return _json_format.MessageToDict(cfg, preserving_proto_field_name=True)
