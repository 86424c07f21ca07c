"""Export a card's model to ONNX (dynamic batch), or check and adopt a user's ONNX.

From weights (``export_model(card, out, weights=FILE)``): the card's arch is built by its
builder (:mod:`tritonkit.export.builders`), the state dict file is loaded and checked key by key
and shape by shape, the model is exported with the card's tensor names and a dynamic batch axis
(and dynamic H/W where the card's dims are ``-1``), ``onnx.checker`` runs, the graph is checked
against the card (:mod:`tritonkit.onnx_contract`) and onnxruntime is compared with torch on a
random batch of 2 (a batch the export never saw). ``random_weights=True`` exports an untrained
model; the result and sidecar say so.

From a user ONNX (``onnx=FILE``): the graph is checked against the card, every mismatch listed
on its own line, then copied. The sidecar records that the graph was adopted (with its sha256)
and claims no arch: it was not built here.

Either way ``<out>/<name>.onnx`` and ``<out>/<name>.json`` (the sidecar) are written atomically.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard
from tritonkit.export.builders import (
    BuiltModel, ExportError, adapted_outputs, build_model, export_module)
from tritonkit.export.flops import (
    FLOPS_TORCH, onnx_macs, onnx_param_count, torch_flops, torch_param_count)
from tritonkit.export.sidecar import export_sidecar
from tritonkit.export.weights import load_weights, weights_path
from tritonkit.io import atomic_write_bytes, atomic_write_json, sha256_file
from tritonkit.onnx_contract import load_onnx, onnx_mismatches, tensor_mismatches

onnx_lib = lazy_import("onnx")
ort = lazy_import("onnxruntime")
torch = lazy_import("torch")

MIN_OPSET = 17
# onnxruntime vs torch on the verification batch: |ort - torch| <= ATOL + RTOL * |torch|
VERIFY_ATOL = 1e-3
VERIFY_RTOL = 1e-3


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and measured (``macs_per_image`` None: unknown)."""

    card: str
    onnx_path: Path
    sidecar_path: Path
    source: dict
    opset: int
    params: int
    macs_per_image: int | None
    flops_method: str
    onnx_sha256: str
    size_mb: float
    random_weights: bool = False
    max_abs_diff: float | None = None

    @property
    def flops_per_image(self) -> int | None:
        return None if self.macs_per_image is None else 2 * self.macs_per_image

    def to_dict(self) -> dict:
        d = asdict(self)
        d["onnx_path"], d["sidecar_path"] = str(self.onnx_path), str(self.sidecar_path)
        d["flops_per_image"] = self.flops_per_image
        return d


def result_dict(result: ExportResult) -> dict:
    return result.to_dict()


def _tmp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def _dynamic_axes(card: ModelCard) -> dict[str, dict[int, str]]:
    """Batch axis of every tensor, plus each ``-1`` per-sample dim of the card (dynamic H and W)."""
    axes = {}
    for spec in (card.input, *card.outputs):
        axes[spec.name] = {0: "batch", **{i + 1: f"{spec.name}_dim{i + 1}" for i, d in enumerate(spec.dims) if d == -1}}
    return axes


def _torch_export(module, card: ModelCard, path: Path, opset: int) -> None:
    names = [card.input.name] + [o.name for o in card.outputs]
    dummy = torch.zeros(card.input_shape(1), dtype=torch.float32)
    with warnings.catch_warnings():
        # the TorchScript exporter is still the one that needs no extra package (onnxscript)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, (dummy,), str(path), input_names=names[:1], output_names=names[1:],
                          dynamic_axes=_dynamic_axes(card), opset_version=opset, do_constant_folding=True,
                          dynamo=False)
    state_card_dims(path, card)


def state_card_dims(path: Path, card: ModelCard) -> None:
    """Write the card's fixed per-sample dims into the graph's outputs where the tracer left them
    symbolic (a segmenter's class dimension behind a Resize of dynamic size comes out as a
    name), so the served output is ``[batch, C, height, width]``. Dims the card gives as ``-1``
    and the batch axis stay symbolic."""
    model = onnx_lib.load_model(str(path))
    specs = {spec.name: spec for spec in card.outputs}
    changed = False
    for out in model.graph.output:
        spec = specs.get(out.name)
        shape = out.type.tensor_type.shape
        if spec is None or len(shape.dim) != len(spec.dims) + 1:
            continue
        for dim, want in zip(list(shape.dim)[1:], spec.dims):
            if want != -1 and not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.dim_value = want
                changed = True
    if changed:
        onnx_lib.save_model(model, str(path))


def _same_dims(have: tuple, want: tuple) -> bool:
    return len(have) == len(want) and all(w == -1 or h == w for h, w in zip(have, want))


def check_torch_outputs(built: BuiltModel, card: ModelCard) -> None:
    """The module's adapted outputs on one image have the card's count and per-sample dims."""
    shape = card.input_shape(1)
    with torch.no_grad():
        try:
            raw = built.module(torch.zeros(shape))
        except (RuntimeError, ValueError) as exc:  # shape errors inside the model's forward
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"card {card.name!r}: arch {card.arch} fails on an input of shape "
                              f"{list(shape)} ({text[:200]})") from None
    outs = adapted_outputs(built, raw, card)
    if len(outs) != len(card.outputs):
        raise ExportError(f"card {card.name!r}: model gives {len(outs)} outputs, card lists {len(card.outputs)}")
    for spec, o in zip(card.outputs, outs):
        if not _same_dims(tuple(o.shape[1:]), tuple(spec.dims)):
            raise ExportError(f"card {card.name!r}: output {spec.name!r} has per-sample shape "
                              f"{tuple(o.shape[1:])}, card says {tuple(spec.dims)}")


def _verify_shape(card: ModelCard, batch: int) -> tuple[int, ...]:
    shape = card.input_shape(batch)
    sp = card.dynamic_shape
    if sp is None:
        return shape
    hw = iter(sp.min if sp.min != sp.opt else sp.max)
    return (batch, *(next(hw) if d == -1 else s for d, s in zip(card.input.dims, shape[1:])))


def verify_with_onnxruntime(module, onnx_path: Path, card: ModelCard, batch: int = 2, seed: int = 0) -> float:
    """Max |onnxruntime - torch| over all outputs on a random batch; raises if they disagree.
    ``module`` returns the card's outputs as a tuple (:func:`export_module`). A dynamic-size card
    is checked at another H and W than the traced ones (``dynamic_shape.min``, else ``max``), so
    a size the tracer baked into the graph shows up here."""
    x = np.random.default_rng(seed).standard_normal(_verify_shape(card, batch)).astype(np.float32)
    with torch.no_grad():
        ref = [r.numpy() for r in module(torch.from_numpy(x))]
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


def _opset_of(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def export_model(card: ModelCard, out_dir: str | Path, weights: str | Path | None = None,
                 onnx: str | Path | None = None, random_weights: bool = False,
                 opset: int = MIN_OPSET) -> ExportResult:
    """Write ``<out_dir>/<card.name>.onnx`` and its sidecar from exactly one of ``weights`` (a
    state dict file), ``onnx`` (a user ONNX, checked then copied) or ``random_weights=True``."""
    chosen = [x for x in (weights is not None, onnx is not None, bool(random_weights)) if x]
    if len(chosen) != 1:
        raise ExportError("give exactly one source: weights (a state dict file), onnx (an ONNX file) or "
                          "random_weights")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if onnx is not None:
        return adopt_onnx(card, Path(onnx), out_dir)
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset}: needs opset >= {MIN_OPSET}")
    return _export_torch(card, out_dir, None if weights is None else weights_path(card, weights), opset)


def _write_checked_onnx(module, card: ModelCard, final: Path, opset: int):
    """Export to a temp file, check it (checker, card contract, onnxruntime), then rename it
    into place. Returns ``(graph, max abs diff)``."""
    tmp = _tmp_path(final)
    try:
        _torch_export(module, card, tmp, opset)
        try:
            onnx_lib.checker.check_model(str(tmp))
        except onnx_lib.checker.ValidationError as exc:
            raise ExportError(f"{final}: exported ONNX fails onnx.checker ({str(exc).splitlines()[0]})") from None
        graph = load_onnx(tmp)
        problems = onnx_mismatches(card, graph)
        if problems:
            raise ExportError(f"{final}: exported graph disagrees with card {card.name!r}: {'; '.join(problems)}")
        diff = verify_with_onnxruntime(module, tmp, card)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return graph, diff


def _export_torch(card: ModelCard, out_dir: Path, weights: Path | None, opset: int) -> ExportResult:
    built = build_model(card)
    notes: list[str] = []
    if weights is not None:
        notes = load_weights(built, weights, card)
        source = {"kind": "weights", "file": str(weights), "sha256": sha256_file(weights)}
    else:
        source = {"kind": "random", "seed": 0}
    check_torch_outputs(built, card)
    module = export_module(built)
    flops = torch_flops(module, card)
    final = out_dir / f"{card.name}.onnx"
    graph, diff = _write_checked_onnx(module, card, final, opset)
    result = ExportResult(card=card.name, onnx_path=final, sidecar_path=out_dir / f"{card.name}.json",
                          source=source, opset=_opset_of(graph), params=torch_param_count(built.module),
                          macs_per_image=flops // 2, flops_method=FLOPS_TORCH, onnx_sha256=sha256_file(final),
                          size_mb=round(final.stat().st_size / 1e6, 3), random_weights=weights is None,
                          max_abs_diff=diff)
    extra = {"verify": {"runtime": f"onnxruntime {ort.__version__}", "batch": 2, "max_abs_diff": diff},
             "params_method": "torch model parameters (as published)", "onnx_params": onnx_param_count(graph),
             "torch_version": torch.__version__, "onnx_version": onnx_lib.__version__}
    if notes:
        extra["notes"] = notes
    atomic_write_json(result.sidecar_path, export_sidecar(card, result, extra))
    return result


def _adoption_problems(card: ModelCard, src: Path, model) -> None:
    try:
        onnx_lib.checker.check_model(str(src))
    except onnx_lib.checker.ValidationError as exc:
        raise ExportError(f"{src}: fails onnx.checker ({str(exc).splitlines()[0]})") from None
    found = tensor_mismatches(card, model)
    if found:
        raise ExportError(f"{src} does not match card {card.name!r}:\n"
                          + "\n".join(f"  - {what}: {'; '.join(problems)}" for what, problems in found.items()))


def adopt_onnx(card: ModelCard, src: Path, out_dir: Path) -> ExportResult:
    """Check a user's ONNX against the card, copy it to ``<out_dir>/<name>.onnx`` and write a
    sidecar saying it was adopted (its sha256; no arch claimed)."""
    model = load_onnx(src)
    _adoption_problems(card, src, model)
    count = onnx_macs(model, card)
    final = out_dir / f"{card.name}.onnx"
    if final.resolve() != src.resolve():
        atomic_write_bytes(final, src.read_bytes())
    digest = sha256_file(final)
    result = ExportResult(card=card.name, onnx_path=final, sidecar_path=out_dir / f"{card.name}.json",
                          source={"kind": "onnx", "adopted": True, "file": str(src), "sha256": digest},
                          opset=_opset_of(model), params=onnx_param_count(model), macs_per_image=count.macs,
                          flops_method=count.method if count.macs is not None else count.text,
                          onnx_sha256=digest, size_mb=round(final.stat().st_size / 1e6, 3))
    extra = {"params_method": "ONNX floating-point initializers and Constant tensors",
             "built_from": f"adopted ONNX (not built here; the card's arch {card.arch!r} is not verified)"}
    if count.ops_without_shapes:
        extra["flops_ops_without_shapes"] = list(count.ops_without_shapes)
    atomic_write_json(result.sidecar_path, export_sidecar(card, result, extra))
    return result


__all__ = ["ExportResult", "export_model", "adopt_onnx", "check_torch_outputs", "verify_with_onnxruntime",
           "result_dict", "MIN_OPSET"]
