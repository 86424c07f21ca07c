"""Export a card's model to ONNX (dynamic batch), or check and adopt a user's ONNX.

From weights (``export_model(card, out, weights=FILE)``): the card's arch is built without
weights (``torchvision:<name>`` from ``torchvision.models``; ``timm:gluon_resnet50_v1b`` as
torchvision's ResNet-50, whose parameter names timm's checkpoint uses; ``timm:<name>`` through
timm when installed; ``demo:<name>`` from :mod:`tritonkit.demo.models`), the state dict file is
loaded and checked key by key and shape by shape, the model is exported with the card's tensor
names and a dynamic batch axis, ``onnx.checker`` runs, and onnxruntime is compared with torch
on a random batch of 2 (a batch the export never saw, so the dynamic axis is exercised).
``random_weights=True`` exports an untrained model: accuracy numbers from it mean nothing, so
it needs that explicit flag, prints a red warning and is recorded in the sidecar.

From a user ONNX (``onnx=FILE``): the graph is checked against the card (input/output names,
per-sample dims, dtype, a batch axis that is dynamic or at least the card's max batch), every
mismatch listed on its own line, then copied.

Either way ``<out>/<name>.onnx`` and ``<out>/<name>.json`` (the sidecar: source, opset, params,
FLOPs, sha256, size) are written atomically (temp file, then rename).

Params: at export, the torch model's parameter count (what torchvision/timm publish); for a
user ONNX, its floating-point initializers (BatchNorm already folded, so a little fewer).

FLOPs: at export, ``torch.utils.flop_counter.FlopCounterMode`` on one image; for a user ONNX,
multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul nodes from the graph after ONNX shape
inference with batch 1 (:func:`onnx_macs`). Both report MACs and FLOPs = 2 x MACs, and the
sidecar says which method gave them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tritonkit.cards import ModelCard, TensorSpec
from tritonkit.errors import TritonkitError, ToolMissingError

MIN_OPSET = 17
SIDECAR_SCHEMA = 1
FLOPS_TORCH = "torch.utils.flop_counter.FlopCounterMode (torch model, batch 1, at export)"
FLOPS_ONNX = "ONNX graph: Conv/ConvTranspose/Gemm/MatMul MACs after shape inference (batch 1)"
# onnxruntime vs torch on the verification batch: |ort - torch| <= ATOL + RTOL * |torch|
VERIFY_ATOL = 1e-3
VERIFY_RTOL = 1e-3
# TensorProto element type -> Triton dtype name
_ONNX_TO_TRITON = {1: "FP32", 10: "FP16", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL"}
_WEIGHT_CONTAINERS = ("state_dict", "model_state_dict", "model", "net", "ema")


class ExportError(TritonkitError):
    """The weights or ONNX do not fit the card, or the export failed its checks."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    card: str
    onnx_path: Path
    sidecar_path: Path
    source: dict
    opset: int
    params: int
    macs_per_image: int
    flops_method: str
    onnx_sha256: str
    size_mb: float
    random_weights: bool = False
    max_abs_diff: float | None = None

    @property
    def flops_per_image(self) -> int:
        return 2 * self.macs_per_image


# -- small pure helpers ----------------------------------------------------------------------

def sha256_file(path: str | Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _first(items, n: int = 3) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def compare_state_dict(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Problems between a model's parameter shapes and a file's (empty: they match), as phrases."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k])} vs model {tuple(expected[k])}" for k in expected
              if k in found and tuple(found[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys, first {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, first {_first(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, first {shapes[0]}")
    return problems


def unwrap_state_dict(obj: Any) -> Any:
    """The tensor mapping inside common checkpoint containers (``{"state_dict": ...}``,
    ``{"model": ...}``), with a ``module.`` prefix from DataParallel removed."""
    if isinstance(obj, Mapping):
        for key in _WEIGHT_CONTAINERS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                obj = inner
                break
        if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
            obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


# -- ONNX graph facts ----------------------------------------------------------------------------

def graph_inputs(model) -> list:
    """Graph inputs that are real inputs (not initializers listed as inputs, as old exporters did)."""
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def _dims(value_info) -> list[int | str | None]:
    """Dims of a value: int, the symbol name for a dynamic dim, or None when unnamed/unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def onnx_param_count(model) -> int:
    """Elements of the floating-point weights: initializers plus ``Constant`` tensors (shape
    constants and other integer tensors are not parameters)."""
    from onnx import TensorProto

    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    total = sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer if t.data_type in float_types)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in float_types:
                    total += int(np.prod(attr.t.dims, dtype=np.int64))
    return total


def check_onnx_against_card(model, card: ModelCard) -> list[str]:
    """Every way the graph's input/outputs disagree with the card, one phrase each (empty: fits)."""
    problems: list[str] = []
    inputs = {v.name: v for v in graph_inputs(model)}
    outputs = {v.name: v for v in model.graph.output}

    def check(kind: str, spec: TensorSpec, values: dict) -> None:
        v = values.get(spec.name)
        if v is None:
            problems.append(f"{kind} {spec.name!r} not found (the model's {kind}s: {_first(values, 5) or 'none'})")
            return
        elem = v.type.tensor_type.elem_type
        dtype = _ONNX_TO_TRITON.get(elem, f"onnx type {elem}")
        if dtype != spec.dtype:
            problems.append(f"{kind} {spec.name!r}: dtype {dtype}, card says {spec.dtype}")
        dims = _dims(v)
        if not dims:
            return  # rank unknown: nothing to compare
        if len(dims) != len(spec.dims) + 1:
            problems.append(f"{kind} {spec.name!r}: shape {dims} has rank {len(dims)}, card expects "
                            f"[batch, {', '.join(map(str, spec.dims))}]")
            return
        batch = dims[0]
        if isinstance(batch, int) and batch != 0 and batch < card.max_batch_size:
            problems.append(f"{kind} {spec.name!r}: batch axis fixed at {batch}, card max batch is "
                            f"{card.max_batch_size} (export with a dynamic batch axis)")
        for axis, (have, want) in enumerate(zip(dims[1:], spec.dims), start=1):
            if isinstance(have, int) and have != 0 and want != -1 and have != want:
                problems.append(f"{kind} {spec.name!r}: dim {axis} is {have}, card says {want} "
                                f"(per-sample dims {list(spec.dims)})")

    check("input", card.input, inputs)
    for spec in card.outputs:
        check("output", spec, outputs)
    return problems


def _with_batch_one(model, card: ModelCard):
    """A copy whose real inputs have batch 1 and the card's dims where they were symbolic."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for v in graph_inputs(m):
        dims = v.type.tensor_type.shape.dim
        if not len(dims):
            continue
        dims[0].Clear()
        dims[0].dim_value = 1
        if v.name == card.input.name and len(dims) == len(card.input.dims) + 1:
            for d, want in zip(list(dims)[1:], card.input.dims):
                if not d.HasField("dim_value") and want > 0:
                    d.Clear()
                    d.dim_value = want
    return m


def onnx_macs(model, card: ModelCard) -> tuple[int, list[str]]:
    """Multiply-accumulates of one image through the graph: Conv, ConvTranspose, Gemm, MatMul,
    from ONNX shape inference at batch 1. Returns ``(macs, op types skipped for unknown shapes)``."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(_with_batch_one(model, card), data_prop=True)
    shapes: dict[str, list] = {}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        shapes[v.name] = _dims(v)
    for t in inferred.graph.initializer:
        shapes[t.name] = list(t.dims)

    def known(name: str) -> list[int] | None:
        d = shapes.get(name)
        return d if d and all(isinstance(x, int) and x > 0 for x in d) else None

    total, skipped = 0, []
    for node in inferred.graph.node:
        op = node.op_type
        if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        if op == "Conv":
            w, out = known(node.input[1]), known(node.output[0])
            if w and out:
                total += int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
                continue
        elif op == "ConvTranspose":
            x, w = known(node.input[0]), known(node.input[1])
            if x and w:
                total += int(np.prod(x, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
                continue
        elif op == "Gemm":
            a, out = known(node.input[0]), known(node.output[0])
            if a and out and len(a) == 2:
                trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                total += int(np.prod(out, dtype=np.int64)) * (a[0] if trans_a else a[1])
                continue
        else:  # MatMul
            a, out = known(node.input[0]), known(node.output[0])
            if a and out:
                total += int(np.prod(out, dtype=np.int64)) * a[-1]
                continue
        skipped.append(op)
    return total, skipped


# -- torch side ----------------------------------------------------------------------------------

def build_model(card: ModelCard):
    """The card's arch as a torch module with random weights (eval mode)."""
    import torch

    prefix, _, name = card.arch.partition(":")
    torch.manual_seed(0)
    if prefix == "torchvision" or card.arch == "timm:gluon_resnet50_v1b":
        import torchvision

        tv_name = "resnet50" if card.arch == "timm:gluon_resnet50_v1b" else name
        try:
            model = torchvision.models.get_model(tv_name, weights=None, num_classes=card.num_classes)
        except ValueError:
            raise ExportError(f"card {card.name!r}: arch {card.arch!r} is not a torchvision model") from None
    elif prefix == "timm":
        try:
            import timm
        except ImportError:
            raise ToolMissingError(f"card {card.name!r}: arch {card.arch!r} needs the timm package "
                                   f"(pip install timm), or pass --onnx with an exported model") from None
        try:
            model = timm.create_model(name, pretrained=False, num_classes=card.num_classes)
        except RuntimeError as exc:
            raise ExportError(f"card {card.name!r}: timm cannot build {name!r} ({exc})") from None
    elif prefix == "demo":
        from tritonkit.demo.models import build

        model = build(card.arch, card.num_classes, card.preprocess.size)
    else:
        raise ExportError(f"card {card.name!r}: arch {card.arch!r} cannot be built here; "
                          f"export it with its own tool and pass --onnx FILE")
    return model.eval()


def load_state_dict_file(path: str | Path) -> dict:
    """A state dict (name -> tensor) from a ``.pth`` file, with one-line errors naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors of many kinds here
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if "Unsupported global" in text:
            reason = "it holds pickled objects, not only tensors (save model.state_dict() instead)"
        elif "weights_only" in text or "WeightsUnpickler" in text:
            reason = "corrupt, truncated or not a torch.save file"
        raise ExportError(f"{path}: not a PyTorch state dict file ({reason[:200]})") from None
    sd = unwrap_state_dict(obj)
    if not isinstance(sd, Mapping) or not sd:
        raise ExportError(f"{path}: not a state dict (found {type(obj).__name__}, expected a mapping of "
                          f"parameter names to tensors)")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ExportError(f"{path}: not a state dict ({len(bad)} entries are not name -> tensor, first "
                          f"{_first(bad)})")
    return dict(sd)


def load_weights(model, path: str | Path, card: ModelCard) -> None:
    """Load a state dict file into ``model``, refusing any missing/unexpected key or shape change."""
    sd = load_state_dict_file(path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in sd.items()}
    # BatchNorm's num_batches_tracked is a counter, absent from many published checkpoints.
    for k in [k for k in expected if k.endswith("num_batches_tracked") and k not in found]:
        expected.pop(k)
    problems = compare_state_dict(expected, found)
    if problems:
        raise ExportError(f"{path}: does not match {card.arch} for card {card.name!r}: {'; '.join(problems)}")
    model.load_state_dict(sd, strict=False)


def torch_param_count(model) -> int:
    """Elements of the torch model's parameters (BatchNorm affine included, buffers not): the
    count torchvision and timm publish (resnet50: 25,557,032). The ONNX graph's initializers
    give fewer, because the exporter folds BatchNorm into the convolutions and merges equal
    tensors; the sidecar keeps that count too, as ``onnx_params``."""
    return int(sum(p.numel() for p in model.parameters()))


def torch_flops(model, card: ModelCard) -> int:
    """FLOPs of one image through ``model`` (torch's counter: 2 per multiply-accumulate)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(card.input_shape(1), dtype=torch.float32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _torch_export(model, card: ModelCard, path: Path, opset: int) -> None:
    import torch

    names = [card.input.name] + [o.name for o in card.outputs]
    dummy = torch.zeros(card.input_shape(1), dtype=torch.float32)
    with warnings.catch_warnings():
        # the TorchScript exporter is still the one that needs no extra package (onnxscript)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (dummy,), str(path), input_names=names[:1], output_names=names[1:],
                          dynamic_axes={n: {0: "batch"} for n in names}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)


def verify_with_onnxruntime(model, onnx_path: Path, card: ModelCard, batch: int = 2, seed: int = 0) -> float:
    """Max |onnxruntime - torch| over all outputs on a random batch; raises if they disagree."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(seed).standard_normal(card.input_shape(batch)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run([o.name for o in card.outputs], {card.input.name: x})
    worst = 0.0
    for spec, r, g in zip(card.outputs, ref, got):
        if g.shape != r.shape:
            raise ExportError(f"{onnx_path}: output {spec.name!r} has shape {g.shape} in onnxruntime, "
                              f"torch gives {r.shape}")
        diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.all(diff <= VERIFY_ATOL + VERIFY_RTOL * np.abs(r)):
            raise ExportError(f"{onnx_path}: onnxruntime and torch disagree on output {spec.name!r} "
                              f"(max abs diff {float(diff.max()):.3g})")
    return worst


def _check_torch_outputs(model, card: ModelCard) -> None:
    import torch

    with torch.no_grad():
        out = model(torch.zeros(card.input_shape(1)))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if len(outs) != len(card.outputs):
        raise ExportError(f"card {card.name!r}: model gives {len(outs)} outputs, card lists {len(card.outputs)}")
    for spec, o in zip(card.outputs, outs):
        if tuple(o.shape[1:]) != tuple(spec.dims):
            raise ExportError(f"card {card.name!r}: output {spec.name!r} has per-sample shape "
                              f"{tuple(o.shape[1:])}, card says {tuple(spec.dims)}")


# -- files ---------------------------------------------------------------------------------------

def _tmp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _warn_random(card: ModelCard) -> None:
    from rich.console import Console

    Console(stderr=True).print(
        f"[bold red]WARNING: exporting {card.name!r} with RANDOM weights (--random-weights): every accuracy "
        f"number measured with this model is meaningless. Use it for plumbing and timing only.[/]")


def _sidecar(card: ModelCard, result: ExportResult, extra: dict) -> dict:
    from tritonkit import __version__

    d = {
        "schema": SIDECAR_SCHEMA,
        "card": card.name,
        "arch": card.arch,
        "source": result.source,
        "random_weights": result.random_weights,
        "opset": result.opset,
        "input": {"name": card.input.name, "shape": ["batch", *card.input.dims], "dtype": card.input.dtype},
        "outputs": [{"name": o.name, "shape": ["batch", *o.dims], "dtype": o.dtype} for o in card.outputs],
        "params": result.params,
        "macs_per_image": result.macs_per_image,
        "flops_per_image": result.flops_per_image,
        "gflops_per_image": round(result.flops_per_image / 1e9, 4),
        "flops_method": result.flops_method,
        "onnx_file": result.onnx_path.name,
        "onnx_sha256": result.onnx_sha256,
        "size_mb": result.size_mb,
        "tritonkit_version": __version__,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    d.update(extra)
    return d


def _opset_of(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def export_model(card: ModelCard, out_dir: str | Path, weights: str | Path | None = None,
                 onnx: str | Path | None = None, random_weights: bool = False,
                 opset: int = MIN_OPSET) -> ExportResult:
    """Write ``<out_dir>/<card.name>.onnx`` and its sidecar from exactly one of ``weights`` (a
    state dict file), ``onnx`` (a user ONNX, checked then copied) or ``random_weights=True``."""
    chosen = [x for x in (weights is not None, onnx is not None, bool(random_weights)) if x]
    if len(chosen) != 1:
        raise ExportError("give exactly one of --weights FILE.pth, --onnx FILE.onnx or --random-weights")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if onnx is not None:
        return _adopt_onnx(card, Path(onnx), out_dir)
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: needs opset >= {MIN_OPSET}")
    return _export_torch(card, out_dir, None if weights is None else Path(weights), opset)


def _export_torch(card: ModelCard, out_dir: Path, weights: Path | None, opset: int) -> ExportResult:
    import onnx as onnx_lib
    import onnxruntime
    import torch

    if weights is not None:
        model = build_model(card)
        load_weights(model, weights, card)
        source = {"kind": "weights", "file": str(weights), "sha256": sha256_file(weights)}
    else:
        model = build_model(card)
        _warn_random(card)
        source = {"kind": "random", "seed": 0}
    _check_torch_outputs(model, card)
    flops = torch_flops(model, card)
    final = out_dir / f"{card.name}.onnx"
    tmp = _tmp_path(final)
    try:
        _torch_export(model, card, tmp, opset)
        try:
            onnx_lib.checker.check_model(str(tmp))
        except onnx_lib.checker.ValidationError as exc:
            raise ExportError(f"{final}: exported ONNX fails onnx.checker ({str(exc).splitlines()[0]})") from None
        graph = onnx_lib.load(str(tmp), load_external_data=False)
        problems = check_onnx_against_card(graph, card)
        if problems:
            raise ExportError(f"{final}: exported graph disagrees with card {card.name!r}: {'; '.join(problems)}")
        diff = verify_with_onnxruntime(model, tmp, card)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    result = ExportResult(card=card.name, onnx_path=final, sidecar_path=out_dir / f"{card.name}.json",
                          source=source, opset=_opset_of(graph), params=torch_param_count(model),
                          macs_per_image=flops // 2, flops_method=FLOPS_TORCH, onnx_sha256=sha256_file(final),
                          size_mb=round(final.stat().st_size / 1e6, 3), random_weights=weights is None,
                          max_abs_diff=diff)
    extra = {"verify": {"runtime": f"onnxruntime {onnxruntime.__version__}", "batch": 2, "max_abs_diff": diff},
             "params_method": "torch model parameters (as published)", "onnx_params": onnx_param_count(graph),
             "torch_version": torch.__version__, "onnx_version": onnx_lib.__version__}
    _write_json_atomic(result.sidecar_path, _sidecar(card, result, extra))
    return result


def _adopt_onnx(card: ModelCard, src: Path, out_dir: Path) -> ExportResult:
    import onnx as onnx_lib

    if not src.is_file():
        raise ExportError(f"{src}: ONNX file not found")
    try:
        model = onnx_lib.load(str(src), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise ExportError(f"{src}: not an ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    try:
        onnx_lib.checker.check_model(str(src))
    except onnx_lib.checker.ValidationError as exc:
        raise ExportError(f"{src}: fails onnx.checker ({str(exc).splitlines()[0]})") from None
    problems = check_onnx_against_card(model, card)
    if problems:
        raise ExportError(f"{src} does not match card {card.name!r}:\n" + "\n".join(f"  - {p}" for p in problems))
    macs, skipped = onnx_macs(model, card)
    final = out_dir / f"{card.name}.onnx"
    if final.resolve() != src.resolve():
        tmp = _tmp_path(final)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    digest = sha256_file(final)
    result = ExportResult(card=card.name, onnx_path=final, sidecar_path=out_dir / f"{card.name}.json",
                          source={"kind": "onnx", "file": str(src), "sha256": digest},
                          opset=_opset_of(model), params=onnx_param_count(model), macs_per_image=macs,
                          flops_method=FLOPS_ONNX, onnx_sha256=digest,
                          size_mb=round(final.stat().st_size / 1e6, 3))
    extra = {"params_method": "ONNX floating-point initializers and Constant tensors"}
    if skipped:
        extra["flops_ops_without_shapes"] = skipped
    _write_json_atomic(result.sidecar_path, _sidecar(card, result, extra))
    return result


def read_sidecar(path: str | Path) -> dict:
    """An export sidecar as a dict (errors name the file)."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ExportError(f"{p}: export sidecar not found") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{p}: export sidecar is not valid JSON ({exc.msg})") from None


def result_dict(result: ExportResult) -> dict:
    d = asdict(result)
    d["onnx_path"], d["sidecar_path"] = str(result.onnx_path), str(result.sidecar_path)
    d["flops_per_image"] = result.flops_per_image
    return d


__all__ = ["ExportError", "ExportResult", "export_model", "build_model", "load_state_dict_file", "load_weights",
           "compare_state_dict", "unwrap_state_dict", "check_onnx_against_card", "onnx_macs", "onnx_param_count",
           "torch_param_count", "torch_flops", "verify_with_onnxruntime", "sha256_file", "read_sidecar", "result_dict",
           "MIN_OPSET"]
