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
from typing import TYPE_CHECKING

from tritonkit.cards import ModelCard, TensorSpec
from tritonkit.errors import TritonkitError
from tritonkit.tasks import has_labels

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

TARGETS = ("cpu", "onnxruntime", "gpu")
MODEL_FILES = {"cpu": "model.onnx", "onnxruntime": "model.onnx", "gpu": "model.plan"}
LABELS_FILE = "labels.txt"
# The card a model was made from, embedded in its config so a remote client (validate) can
# check the served contract against it without access to the repository's files.
CARD_PARAMETER = "tritonkit_card"


class ConfigError(TritonkitError):
    """Repository options that cannot make a valid config."""


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
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.instances < 1:
            raise ConfigError(f"instances must be >= 1 (got {self.instances})")
        if self.max_queue_delay_us < 0:
            raise ConfigError("max_queue_delay_us must be >= 0")
        if self.version < 1:
            raise ConfigError("version must be >= 1")
        if any(b < 1 for b in self.preferred_batch_sizes):
            raise ConfigError(f"preferred batch sizes must be >= 1 (got {self.preferred_batch_sizes})")


def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def data_type(dtype: str) -> int:
    """Card dtype name ('FP32') -> the ``DataType`` enum value (TYPE_FP32)."""
    return _pb().DataType.Value(f"TYPE_{dtype}")


def dtype_name(value: int) -> str:
    """``DataType`` enum value -> card dtype name ('FP32')."""
    return _pb().DataType.Name(value).removeprefix("TYPE_")


def _input(spec: TensorSpec, layout: str):
    pb = _pb()
    fmt = pb.ModelInput.FORMAT_NCHW if layout == "NCHW" else pb.ModelInput.FORMAT_NHWC
    return pb.ModelInput(name=spec.name, data_type=data_type(spec.dtype), format=fmt, dims=list(spec.dims))


def _output(spec: TensorSpec, label_file: str | None):
    out = _pb().ModelOutput(name=spec.name, data_type=data_type(spec.dtype), dims=list(spec.dims))
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
    """The ``ModelConfig`` message that serves ``card`` on ``options.target``."""
    pb = _pb()
    mbs = effective_max_batch(card, options)
    cfg = pb.ModelConfig(name=options.name or card.name, max_batch_size=mbs)
    if options.target == "cpu":
        cfg.backend = "python"
        cfg.parameters["onnx_file"].string_value = MODEL_FILES["cpu"]
        cfg.parameters["intra_op_threads"].string_value = str(options.intra_op_threads)
        cfg.parameters["allow_spinning"].string_value = "1" if options.ort_spinning else "0"
        kind = pb.ModelInstanceGroup.KIND_CPU
    elif options.target == "onnxruntime":
        cfg.platform = "onnxruntime_onnx"
        cfg.default_model_filename = MODEL_FILES["onnxruntime"]
        kind = pb.ModelInstanceGroup.KIND_GPU
    else:
        cfg.platform = "tensorrt_plan"
        cfg.default_model_filename = MODEL_FILES["gpu"]
        kind = pb.ModelInstanceGroup.KIND_GPU
    for key, value in options.parameters:
        cfg.parameters[key].string_value = value
    cfg.parameters[CARD_PARAMETER].string_value = json.dumps(card.to_dict(), separators=(",", ":"))

    cfg.input.append(_input(card.input, card.preprocess.layout))
    with_labels = options.labels and has_labels(card)
    for i, out in enumerate(card.outputs):
        cfg.output.append(_output(out, LABELS_FILE if (with_labels and i == 0) else None))

    cfg.instance_group.append(pb.ModelInstanceGroup(count=options.instances, kind=kind))
    cfg.version_policy.specific.versions.append(options.version)

    if options.dynamic_batching:
        db = cfg.dynamic_batching
        db.max_queue_delay_microseconds = options.max_queue_delay_us
        db.preferred_batch_size.extend(options.preferred_batch_sizes)
        if options.queue_policy is not None:
            qp = options.queue_policy
            db.default_queue_policy.max_queue_size = qp.max_queue_size
            db.default_queue_policy.default_timeout_microseconds = qp.timeout_us
            db.default_queue_policy.allow_timeout_override = qp.allow_timeout_override
            db.default_queue_policy.timeout_action = (
                pb.ModelQueuePolicy.REJECT if qp.reject_on_timeout else pb.ModelQueuePolicy.DELAY)
    elif options.queue_policy is not None:
        raise ConfigError("a queue policy needs dynamic batching")

    if options.warmup:
        for bs in sorted({1, mbs}):
            w = pb.ModelWarmup(name=f"zeros_bs{bs}", batch_size=bs)
            w.inputs[card.input.name].data_type = data_type(card.input.dtype)
            w.inputs[card.input.name].dims.extend(card.input.dims)
            w.inputs[card.input.name].zero_data = True
            cfg.model_warmup.append(w)
    return cfg


def config_to_text(cfg: "model_config_pb2.ModelConfig") -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def parse_config(text: str, source: str = "config.pbtxt") -> "model_config_pb2.ModelConfig":
    """Parse config.pbtxt text into a ``ModelConfig``; errors name the file and position."""
    from google.protobuf import text_format

    cfg = _pb().ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def config_to_json(cfg: "model_config_pb2.ModelConfig") -> dict:
    """The config as the JSON Triton's HTTP ``/config`` endpoint returns (for comparisons)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(cfg, preserving_proto_field_name=True)
