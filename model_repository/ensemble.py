"""Server-side detection postprocess: an NMS model and the detector -> NMS ensemble.

Three models in the repository, all configs built as ``model_config_pb2.ModelConfig`` messages
(never text templates) and written with :mod:`tritonkit.model_repository.writer`::

    <det>                 the detector (any target: python/onnxruntime, ORT backend, TensorRT)
    <det>_nms_<profile>   python backend (backends/yolo_nms.py): raw outputs + geometry -> detections
    <det>_ensemble_<profile>
                          platform "ensemble": images, geometry -> det_boxes, det_scores,
                          det_classes, det_count

The NMS thresholds of the profile are the NMS model's ``parameters``. The ``geometry`` input
(FP64 [6]) is optional: with it the server returns boxes in original-image pixels, without it
in model-input pixels (a client that keeps the letterbox geometry maps them back itself, and
tools that only know the image input, such as perf_analyzer, can call the ensemble). It is
FP64 so the server maps boxes back with exactly the numbers the client would use (FP32 would
round a letterbox scale like 0.64 and move boxes by ~1e-5 px).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tritonkit.cards import ModelCard, NMSProfile
from tritonkit.client.detection import GEOMETRY_FIELDS
from tritonkit.tasks.detection import (  # the served contract is the detect task's; written here
    GEOMETRY_INPUT, OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES, EnsembleNames, served_ensemble_card)

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

    from tritonkit.model_repository.config import RepoOptions

NMS_BACKEND_SOURCE = "yolo_nms.py"
CARD_FILE = "card.json"


def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _check_detector(card: ModelCard) -> None:
    from tritonkit.model_repository.config import ConfigError

    if card.task != "detect" or card.postprocess not in ("yolo", "ssd"):
        raise ConfigError(f"card {card.name!r} is not a YOLO/SSD detector (task {card.task!r}, "
                          f"postprocess {card.postprocess!r}); server-side NMS needs one")


def _detection_outputs(profile: NMSProfile) -> list:
    pb = _pb()
    m = profile.max_detections
    return [
        pb.ModelOutput(name=OUT_BOXES, data_type=pb.TYPE_FP32, dims=[m, 4]),
        pb.ModelOutput(name=OUT_SCORES, data_type=pb.TYPE_FP32, dims=[m]),
        pb.ModelOutput(name=OUT_CLASSES, data_type=pb.TYPE_INT32, dims=[m]),
        pb.ModelOutput(name=OUT_COUNT, data_type=pb.TYPE_INT32, dims=[1]),
    ]


def _geometry_input():
    pb = _pb()
    return pb.ModelInput(name=GEOMETRY_INPUT, data_type=pb.TYPE_FP64, dims=[len(GEOMETRY_FIELDS)], optional=True)


def nms_model_config(card: ModelCard, name: str, profile: NMSProfile, max_batch_size: int,
                     instances: int = 1) -> "model_config_pb2.ModelConfig":
    """The python-backend NMS model: the card's raw outputs + geometry in, padded detections out."""
    from tritonkit.model_repository.config import data_type

    _check_detector(card)
    pb = _pb()
    cfg = pb.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for spec in card.outputs:
        cfg.input.append(pb.ModelInput(name=spec.name, data_type=data_type(spec.dtype), dims=list(spec.dims)))
    cfg.input.append(_geometry_input())
    cfg.output.extend(_detection_outputs(profile))
    params = {"profile": profile.name, "conf_threshold": repr(profile.conf_threshold),
              "iou_threshold": repr(profile.iou_threshold), "max_detections": str(profile.max_detections),
              "class_agnostic": "true" if profile.class_agnostic else "false",
              "multi_label": "true" if profile.multi_label else "false"}
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    cfg.instance_group.append(pb.ModelInstanceGroup(count=instances, kind=pb.ModelInstanceGroup.KIND_CPU))
    # several queued requests reach one execute() call (one round trip to the python stub)
    cfg.dynamic_batching.max_queue_delay_microseconds = 0
    return cfg


def ensemble_config(card: ModelCard, names: EnsembleNames, profile: NMSProfile,
                    max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """``platform: "ensemble"``: images + geometry -> detector -> NMS model -> detections."""
    from tritonkit.model_repository.config import data_type

    _check_detector(card)
    pb = _pb()
    cfg = pb.ModelConfig(name=names.ensemble, platform="ensemble", max_batch_size=max_batch_size)
    fmt = pb.ModelInput.FORMAT_NCHW if card.preprocess.layout == "NCHW" else pb.ModelInput.FORMAT_NHWC
    cfg.input.append(pb.ModelInput(name=card.input.name, data_type=data_type(card.input.dtype), format=fmt,
                                   dims=list(card.input.dims)))
    cfg.input.append(_geometry_input())
    cfg.output.extend(_detection_outputs(profile))
    raw = {spec.name: f"raw_{spec.name}" for spec in card.outputs}
    steps = cfg.ensemble_scheduling.step
    steps.append(pb.ModelEnsembling.Step(
        model_name=names.detector, model_version=-1, input_map={card.input.name: card.input.name},
        output_map=raw))
    steps.append(pb.ModelEnsembling.Step(
        model_name=names.nms, model_version=-1, input_map={**raw, GEOMETRY_INPUT: GEOMETRY_INPUT},
        output_map={n: n for n in (OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT)}))
    return cfg


def write_nms_model(card: ModelCard, repo_dir: str | Path, name: str, profile: NMSProfile,
                    max_batch_size: int, instances: int = 1) -> Path:
    """Write ``<repo>/<name>``: model.py (the NMS backend), card.json, then config.pbtxt last."""
    import json

    from tritonkit.model_repository.writer import backend_source, write_config_only

    cfg = nms_model_config(card, name, profile, max_batch_size, instances)
    root = Path(repo_dir) / name
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "1" / "model.py").write_text(backend_source(NMS_BACKEND_SOURCE))
    (root / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return write_config_only(repo_dir, name, cfg)


def write_detection_ensemble(card: ModelCard, model_file: str | Path, repo_dir: str | Path,
                             profile: str | NMSProfile, options: "RepoOptions | None" = None,
                             nms_instances: int = 1) -> EnsembleNames:
    """Write the detector (with the lead's writer), its NMS model and the ensemble.

    ``profile`` is one of the card's NMS profile names (or an :class:`NMSProfile`). Returns the
    three model names.
    """
    from tritonkit.model_repository.config import RepoOptions, effective_max_batch
    from tritonkit.model_repository.writer import write_config_only, write_model

    options = options or RepoOptions()
    _check_detector(card)
    prof = card.nms(profile) if isinstance(profile, str) else profile
    mbs = effective_max_batch(card, options)
    detector = write_model(card, model_file, repo_dir, options).name
    names = EnsembleNames.for_detector(detector, prof.name)
    write_nms_model(card, repo_dir, names.nms, prof, mbs, nms_instances)
    write_config_only(repo_dir, names.ensemble, ensemble_config(card, names, prof, mbs))
    return names


def ensemble_card(card: ModelCard, name: str, profile: NMSProfile) -> ModelCard:
    """The served contract of a detection ensemble as a card (same input, the detection outputs),
    so clients check and call it like any model."""
    _check_detector(card)
    return served_ensemble_card(card, name, profile)
