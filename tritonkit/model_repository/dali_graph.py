"""The gpu target's DALI preprocessing graph, self-contained: it becomes the served model's ``1/dali.py``.

This module imports only ``nvidia.dali`` (NGC's tritonserver image has DALI for its dali backend,
and no tritonkit): :mod:`tritonkit.model_repository.dali` copies its source into
``<model>_dali/1/dali.py`` with the card's settings and an ``@autoserialize`` pipeline after it,
so the server serialises the pipeline with its own DALI when it loads the model (dali_backend
README, "Autoserialization"; ``src/model_provider/model_provider.h``) and no ``model.dali`` from
another DALI version is ever deserialised there.

Executor. Triton's dali backend creates the pipeline with ``daliCreatePipeline(..., device_id, 0,
1, 0, 0, 0)`` (dali_backend ``src/dali_executor/dali_pipeline.h``), which DALI's C API turns into
the asynchronous pipelined executor without its dynamic flag (``daliCreatePipeline2(..., 1, 1,
...)`` -> ``DALI_EXEC_IS_ASYNC | DALI_EXEC_IS_PIPELINED``, ``dali/c_api/c_api.cc``): the legacy
executor, where no GPU output may feed a CPU operator (``DataNode._check_gpu2cpu`` in
``nvidia/dali/data_node.py``). So every number here is computed on the CPU from the encoded
bytes (``fn.peek_image_shape``, which DALI's docs name for exactly this case), never from
``.shape()`` of a decoded or resized GPU image; the resized size goes to ``fn.resize(size=...)``
as a CPU argument input, and the geometry output is a CPU tensor.

Rounding follows what DALI itself would have done with ``resize_shorter`` / ``mode="not_larger"``
(``ResizeAttr::AdjustOutputSize`` and ``CalculateSampleParams`` in
``dali/operators/image/resize/resize_attr.cc``: one scale for both sides, the other side
``round_int`` = ``std::roundf``, at least 1) and with ``crop_mirror_normalize``'s centred crop
(``CropAttr::CalculateAnchor``: ``std::round(crop_pos * (side - crop))``, half away from zero).
"""

import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types

ENCODED_INPUT = "image_bytes"
MODES = ("resize_crop", "resize", "letterbox")


def _round(x):
    """``std::roundf`` for ``x >= 0`` (DALI's ``round_int`` and ``std::round``: half away from zero)."""
    return dmath.floor(x + 0.5)


def _scaled_sides(h, w, target, shorter):
    """DALI's sides for ``resize_shorter=target`` (``shorter``) or ``size=(target, target),
    mode="not_larger"``: the one scale ``target / min`` (or ``/ max``) times each side, rounded."""
    scale = target / (dmath.min(h, w) if shorter else dmath.max(h, w))
    return dmath.max(_round(h * scale), 1.0), dmath.max(_round(w * scale), 1.0)


def _normalize(images, params, crop, pos=None):
    """``(pixel * scale - mean) / std`` in the card's layout and dtype, optionally a ``crop`` x ``crop``
    window (centred, or at ``pos`` = ``(crop_pos_x, crop_pos_y)``, padded with ``pad_value``)."""
    mean = [m / params["scale"] for m in params["mean"]]
    std = [s / params["scale"] for s in params["std"]]
    kwargs = {"crop": (crop, crop), "crop_pos_x": 0.5, "crop_pos_y": 0.5} if crop else {}
    if pos is not None:
        kwargs.update(crop_pos_x=pos[0], crop_pos_y=pos[1], out_of_bounds_policy="pad",
                      fill_values=[(params["pad_value"] - m) / s for m, s in zip(mean, std)])
    return fn.crop_mirror_normalize(images, mean=mean, std=std,
                                    dtype=types.FLOAT16 if params["dtype"] == "FP16" else types.FLOAT,
                                    output_layout="CHW" if params["layout"] == "NCHW" else "HWC", **kwargs)


def _geometry(h, w, new_h, new_w, pad_x, pad_y):
    """FP64 [6] ``orig_h, orig_w, scale_x, scale_y, pad_x, pad_y`` (CPU nodes only)."""
    f64 = [fn.cast(v, dtype=types.FLOAT64) for v in (h, w, new_h, new_w, pad_x, pad_y)]
    h, w, new_h, new_w, pad_x, pad_y = f64
    return fn.stack(h, w, new_w / w, new_h / h, pad_x, pad_y)


def _letterbox_pos(new, size):
    """ultralytics' top/left padding (``round(d - 0.1)`` of ``d = (size - side) / 2``: the floor) and
    the crop position that puts the image there: the anchor ``round(pos * (side - size))`` is then
    ``round(0.25 - pad)`` = ``-pad``."""
    pad = dmath.floor((size - new) * 0.5)
    return pad, dmath.clamp((pad - 0.25) / dmath.max(size - new, 1.0), 0.0, 1.0)


def stages(params, device):
    """The graph's nodes by name (``resized``, ``image``, ``geometry``, ``sides``): encoded bytes in,
    decoded by nvJPEG (``mixed``) on ``device="gpu"``, by the CPU decoder on ``device="cpu"``."""
    mode, size = params["mode"], params["size"]
    interp = types.INTERP_LINEAR if params["interpolation"] == "bilinear" else types.INTERP_CUBIC
    encoded = fn.external_source(name=ENCODED_INPUT, dtype=types.UINT8, device="cpu")
    decoded = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
    shape = fn.cast(fn.peek_image_shape(encoded), dtype=types.FLOAT)       # [H, W, C] on the CPU
    h, w = shape[0], shape[1]
    if mode == "resize":
        resized = fn.resize(decoded, resize_x=size, resize_y=size, interp_type=interp, antialias=True)
        return {"resized": resized, "image": _normalize(resized, params, None),
                "geometry": _geometry(h, w, h * 0.0 + size, w * 0.0 + size, 0.0, 0.0)}
    crop = mode == "resize_crop"
    new_h, new_w = _scaled_sides(h, w, params["resize_to"] if crop else size, crop)
    resized = fn.resize(decoded, size=fn.stack(new_h, new_w), interp_type=interp, antialias=crop)
    if crop:
        left, top = _round((new_w - size) * 0.5), _round((new_h - size) * 0.5)    # the centred crop's anchor
        image = _normalize(resized, params, size)
        pad_x, pad_y = -left, -top
    else:
        (pad_x, pos_x), (pad_y, pos_y) = _letterbox_pos(new_w, size), _letterbox_pos(new_h, size)
        image = _normalize(resized, params, size, (pos_x, pos_y))
    return {"resized": resized, "image": image, "geometry": _geometry(h, w, new_h, new_w, pad_x, pad_y),
            "sides": fn.stack(new_h, new_w)}


def graph(params, device):
    """(model input, geometry) for the card settings ``params`` (see :func:`stages`)."""
    if params["mode"] not in MODES:
        raise ValueError(f"preprocess mode {params['mode']!r} has no DALI pipeline (supported: {', '.join(MODES)})")
    nodes = stages(params, device)
    return nodes["image"], nodes["geometry"]
