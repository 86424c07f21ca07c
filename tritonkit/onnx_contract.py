"""The one check of an ONNX graph against a model card, used by export, repository and build.

:func:`onnx_mismatches` lists every way the graph's inputs and outputs disagree with the card,
one phrase each (empty: the graph fits):

* the card's input is the graph's only real input (initializers listed as inputs do not count);
* each card tensor exists, with the card's dtype and rank ``1 + len(dims)``;
* per-sample dims agree; a card ``-1`` (dynamic) dim needs a dynamic graph dim, a graph dim that
  is dynamic (or unknown) is accepted for a fixed card dim;
* the batch axis is dynamic, or fixed at exactly the one batch the range allows.

:func:`check_onnx_against_card` raises those phrases as one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard, TensorSpec
from tritonkit.errors import TritonkitError

onnx = lazy_import("onnx")

# TensorProto element type -> Triton dtype name
ONNX_TO_TRITON = {1: "FP32", 10: "FP16", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL"}


class OnnxContractError(TritonkitError):
    """An ONNX file is missing, unreadable or disagrees with its model card."""


def load_onnx(path: str | Path):
    """The graph of an ONNX file (external data not loaded), with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise OnnxContractError(f"{path}: ONNX file not found")
    try:
        return onnx.load_model(str(path), load_external_data=False)  # (the proxy has its own .load)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise OnnxContractError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


def graph_inputs(model) -> list:
    """Graph inputs that are real inputs (not initializers listed as inputs, as old exporters did)."""
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def graph_dims(value_info) -> list[int]:
    """Dims of a graph value: an int for a fixed dim, ``-1`` for a dynamic or unknown one
    (empty when the rank is unknown)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]


def _batch_problem(b0: int, batch: tuple[int, int]) -> str | None:
    if b0 == -1 or batch[0] == batch[1] == b0:
        return None
    return (f"has a fixed batch of {b0}; re-export with a dynamic batch axis (batches {batch[0]}..{batch[1]} "
            f"are served; a fixed-batch plan fails in Triton with 'expected dimension 0 between {b0} and {b0}')")


def _tensor_problems(kind: str, spec: TensorSpec, values: dict, batch: tuple[int, int]) -> list[str]:
    """Problems of one card tensor, as phrases without the tensor's name."""
    v = values.get(spec.name)
    if v is None:
        return [f"missing (graph {kind}s: {sorted(values)})"]
    problems = []
    elem = v.type.tensor_type.elem_type
    dtype = ONNX_TO_TRITON.get(elem, f"onnx type {elem}")
    if dtype != spec.dtype:
        problems.append(f"dtype {dtype}, card says {spec.dtype}")
    dims = graph_dims(v)
    if not dims:
        return problems  # rank unknown: nothing more to compare
    want = ", ".join(map(str, spec.dims))
    if len(dims) != len(spec.dims) + 1:
        return problems + [f"has rank {len(dims)} {dims}, card expects [batch, {want}]"]
    dim_problems = []
    for axis, (have, card_dim) in enumerate(zip(dims[1:], spec.dims), start=1):
        if card_dim == -1 and have != -1:
            dim_problems.append(f"dim {axis} is fixed at {have}, card says -1 (dynamic)")
        elif card_dim != -1 and have != -1 and have != card_dim:
            dim_problems.append(f"dim {axis} is {have}, card says {card_dim}")
    if dim_problems:
        dim_problems[-1] += f" (graph shape {dims}, card [batch, {want}])"
    batch_problem = _batch_problem(dims[0], batch)
    return problems + dim_problems + ([batch_problem] if batch_problem else [])


def tensor_mismatches(card: ModelCard, model_or_path, *, batch: tuple[int, int] | None = None) -> dict[str, list[str]]:
    """The problems of :func:`onnx_mismatches` grouped by what they concern: ``"graph"``,
    ``"input 'name'"`` or ``"output 'name'"`` -> phrases (only entries with problems)."""
    model = load_onnx(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    batch = batch or (1, card.max_batch_size)
    inputs = {v.name: v for v in graph_inputs(model)}
    outputs = {v.name: v for v in model.graph.output}
    found: dict[str, list[str]] = {}
    if card.input.name in inputs and len(inputs) > 1:
        found["graph"] = [f"has {len(inputs)} inputs {sorted(inputs)}; card {card.name!r} describes only "
                          f"{card.input.name!r}"]
    for kind, spec, values in (("input", card.input, inputs), *(("output", o, outputs) for o in card.outputs)):
        problems = _tensor_problems(kind, spec, values, batch)
        if problems:
            found[f"{kind} {spec.name!r}"] = problems
    head = card.head_problems()
    if head:
        found[f"card {card.name!r}"] = head
    return found


def onnx_mismatches(card: ModelCard, model_or_path, *, batch: tuple[int, int] | None = None) -> list[str]:
    """Every way the graph disagrees with ``card``, one phrase each (empty: it fits).

    ``model_or_path``: an ``onnx.ModelProto`` or a path (read with :func:`load_onnx`).
    ``batch``: the ``(min, max)`` batch range served (default ``(1, card.max_batch_size)``); a
    fixed graph batch is accepted only when the range is exactly that batch.
    """
    return [f"{what} {p}" for what, problems in tensor_mismatches(card, model_or_path, batch=batch).items()
            for p in problems]


def check_onnx_against_card(card: ModelCard, path: str | Path, *, batch: tuple[int, int] | None = None) -> None:
    """Raise :class:`OnnxContractError` (one line naming the file, every problem listed) when the
    ONNX at ``path`` does not fit ``card``."""
    problems = onnx_mismatches(card, Path(path), batch=batch)
    if problems:
        raise OnnxContractError(f"{path} does not match card {card.name!r}: " + "; ".join(problems))


__all__ = ["OnnxContractError", "ONNX_TO_TRITON", "load_onnx", "graph_inputs", "graph_dims", "onnx_mismatches",
           "tensor_mismatches", "check_onnx_against_card"]
