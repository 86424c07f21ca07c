"""correctness: served outputs equal an in-process onnxruntime reference; no NaN/Inf; batching
does not change results.

Tolerances per precision. The error measure is the largest absolute difference divided by the
largest reference magnitude of that output (so logits of any scale compare alike, and values
near zero do not blow a relative error up):

=========  ============  ====================================================================
precision  max rel. err  why
=========  ============  ====================================================================
fp32       1e-4          same math; only summation order differs (batching, kernels)
fp16       1e-2          10-bit mantissa, accumulated over a deep network
int8       1e-1          calibrated 8-bit quantisation; top-1 agreement reported alongside
=========  ============  ====================================================================

Inputs are seeded noise of the card's shape (``--seed``), ``--samples`` of them, sent once as
single-sample requests and once as one batch (capped at the served max batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.requests import burst, infer, seeded_batch
from tritonkit.validate.result import CheckResult, fail, verdict
from tritonkit.validate.stats import difference, model_counters

ort = lazy_import("onnxruntime")


@dataclass(frozen=True)
class Tolerance:
    max_rel_error: float
    note: str


TOLERANCES = {
    "fp32": Tolerance(1e-4, "fp32: max |served - reference| <= 1e-4 x max |reference|"),
    "fp16": Tolerance(1e-2, "fp16: max |served - reference| <= 1e-2 x max |reference|"),
    "int8": Tolerance(1e-1, "int8: max |served - reference| <= 1e-1 x max |reference|"),
}


@dataclass(frozen=True)
class Comparison:
    output: str
    max_abs_error: float
    max_rel_error: float
    top1_agreement: float | None

    def within(self, tol: Tolerance) -> bool:
        return self.max_rel_error <= tol.max_rel_error


def compare(output: str, served: np.ndarray, reference: np.ndarray) -> Comparison:
    """Error of ``served`` against ``reference`` (same shape), NaN-aware (NaN counts as infinite error)."""
    a = np.asarray(served, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(output, float("inf"), float("inf"), None)
    diff = np.abs(a - b)
    diff[~np.isfinite(diff)] = np.inf
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(b[np.isfinite(b)]).max()) if np.isfinite(b).any() else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    top1 = None
    if a.ndim == 2 and a.shape[1] > 1:
        top1 = float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
    return Comparison(output, max_abs, rel, top1)


def samples(card: ModelCard, n: int, seed: int) -> np.ndarray:
    return seeded_batch(card, n, seed)


def reference_outputs(onnx_path: Path, card: ModelCard, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in card.outputs]
    return dict(zip(names, session.run(names, {card.input.name: x})))


def served_outputs(ctx: Context, target: ModelTarget, x: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Outputs for every row of ``x``, sent in sequential requests of ``batch`` rows."""
    parts: dict[str, list[np.ndarray]] = {o.name: [] for o in target.card.outputs}
    for start in range(0, len(x), batch):
        out = infer(ctx.grpc(), target.name, target.card, x[start:start + batch], ctx.options.request_timeout_s)
        for name, value in out.items():
            parts[name].append(value)
    return {name: np.concatenate(v, axis=0) for name, v in parts.items()}


def _max_batch(target: ModelTarget) -> int:
    return max(1, int(target.config.get("max_batch_size", 0)) or 1)


def _precondition(name: str, target: ModelTarget) -> CheckResult | None:
    if target.card is None:
        return fail(name, target.card_source, target.name)
    if target.config_error:
        return fail(name, target.config_error, target.name)
    return None


def check_reference(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "correctness.reference"
    blocked = _precondition(name, target)
    if blocked:
        return blocked
    if target.reference_onnx is None:
        return fail(name, target.reference_source, target.name)
    tol = TOLERANCES[target.precision]
    card = target.card
    x = samples(card, ctx.options.samples, ctx.options.seed)
    try:
        ref = reference_outputs(target.reference_onnx, card, x)
    except Exception as exc:  # onnxruntime raises its own error types
        return fail(name, f"reference {target.reference_onnx} did not run: {exc}", target.name)
    worst: list[Comparison] = []
    try:
        for batch in sorted({1, min(len(x), _max_batch(target))}):
            served = served_outputs(ctx, target, x, batch)
            worst += [compare(f"{o}@bs{batch}", served[o], ref[o]) for o in ref]
    except Exception as exc:
        return fail(name, f"inference failed: {exc}", target.name)
    bad = [c for c in worst if not c.within(tol)]
    figures = {"precision": target.precision, "tolerance": tol.max_rel_error, "samples": len(x),
               "reference": str(target.reference_onnx),
               "max_rel_error": max(c.max_rel_error for c in worst),
               "max_abs_error": max(c.max_abs_error for c in worst)}
    top1 = [c.top1_agreement for c in worst if c.top1_agreement is not None]
    if top1:
        figures["top1_agreement"] = min(top1)
    problems = [f"{c.output}: rel error {c.max_rel_error:.3g} > {tol.max_rel_error:g}" for c in bad]
    return verdict(name, problems, f"{len(x)} seeded inputs within {tol.note} ({target.reference_source})",
                   target.name, **figures)


def check_finite(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "correctness.finite"
    blocked = _precondition(name, target)
    if blocked:
        return blocked
    x = samples(target.card, ctx.options.samples, ctx.options.seed + 1)
    try:
        out = served_outputs(ctx, target, x, min(len(x), _max_batch(target)))
    except Exception as exc:
        return fail(name, f"inference failed: {exc}", target.name)
    bad = {n: int(np.size(v) - np.isfinite(v).sum()) for n, v in out.items()
           if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()}
    problems = [f"output {n!r}: {k} NaN/Inf values in {np.size(out[n])}" for n, k in bad.items()]
    return verdict(name, problems, f"all outputs finite on {len(x)} seeded inputs", target.name,
                   non_finite=sum(bad.values()))


def burst_size(config: dict, concurrency: int) -> int:
    """Enough simultaneous requests to be batched together, but no more than a bounded queue
    accepts (queue-full rejections are the overload check's business, not this one's)."""
    n = max(2 * concurrency, 16)
    policy = config.get("dynamic_batching", {}).get("default_queue_policy", {})
    queue = int(policy.get("max_queue_size", 0) or 0)
    if queue > 0:  # one batch executing per instance, the rest must fit in the queue
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        n = min(n, queue + instances)
    return max(2, n)


def check_concurrency_invariance(ctx: Context, target: ModelTarget) -> CheckResult:
    """The same single-sample requests, sent all at once (so dynamic batching groups them) and
    one at a time, give the same outputs within the precision's tolerance."""
    name = "correctness.concurrency_invariance"
    blocked = _precondition(name, target)
    if blocked:
        return blocked
    tol = TOLERANCES[target.precision]
    n = burst_size(target.config, ctx.options.concurrency)
    x = samples(target.card, n, ctx.options.seed + 2)
    timeout = ctx.options.request_timeout_s
    try:
        alone = [infer(ctx.grpc(), target.name, target.card, x[i:i + 1], timeout) for i in range(n)]
        before = model_counters(ctx.grpc(), target.name)
        together = burst(ctx.grpc(), target.name, target.card, [x[i:i + 1] for i in range(n)], timeout)
        counted = difference(before, model_counters(ctx.grpc(), target.name))
    except Exception as exc:
        return fail(name, f"inference failed: {exc}", target.name)
    errors = [o for o in together if not o.ok]
    if errors:
        return fail(name, f"{len(errors)} of {n} concurrent requests failed: {errors[0].error}", target.name)
    worst = 0.0
    differing = 0
    for a, o in zip(alone, together):
        rel = max(compare(k, o.outputs[k], a[k]).max_rel_error for k in a)
        worst = max(worst, rel)
        differing += rel > tol.max_rel_error
    figures = {"requests": n, "max_rel_error": worst, "tolerance": tol.max_rel_error}
    batching = ""
    if counted is not None and counted.executions > 0:
        executions = counted.executions
        figures["executions"] = executions
        figures["mean_batch"] = counted.inferences / executions
        batching = f"; server ran them in {executions} executions (mean batch {figures['mean_batch']:.1f})"
        if executions >= n:
            batching += ", i.e. not batched together: the invariance holds trivially here"
    problems = [f"{differing} of {n} outputs changed when sent concurrently (max rel error {worst:.3g} > "
                f"{tol.max_rel_error:g}){batching}"] if differing else []
    return verdict(name, problems, f"{n} concurrent requests equal one-at-a-time results{batching}",
                   target.name, **figures)


def run(ctx: Context) -> list[CheckResult]:
    results = []
    for t in ctx.targets:
        results += [check_reference(ctx, t), check_finite(ctx, t), check_concurrency_invariance(ctx, t)]
    return results
