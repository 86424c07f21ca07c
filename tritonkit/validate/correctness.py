"""correctness: served outputs equal an in-process onnxruntime reference; no NaN/Inf; batching
does not change results.

Tolerances per precision. The error measure is the largest absolute difference divided by the
largest reference magnitude of that output (so logits of any scale compare alike, and values
near zero do not blow a relative error up):

=========  ============  =============  =====================================================
precision  max rel. err  min agreement  why
=========  ============  =============  =====================================================
fp32       1e-4          0.999          same math; only summation order differs (batching, kernels)
fp16       1e-2          0.99           10-bit mantissa, accumulated over a deep network
int8       1e-1          0.9            calibrated 8-bit quantisation; agreement reported alongside
=========  ============  =============  =====================================================

Alongside the error, the card's task says how the outputs agree in its own terms
(:meth:`tritonkit.tasks.Task.output_agreement`): top-1 agreement of classifier scores,
per-pixel argmax agreement of segmenter logits. A served output of class ids (the argmax
ensemble's uint8 mask) has no numeric error to speak of: it is compared pixel for pixel with the
argmax of the reference's logits and passes on the agreement ("min agreement" above; a pixel
whose top two logits are nearly tied may flip).

Inputs are seeded noise of the card's shape (``--seed``), ``--samples`` of them, sent once as
single-sample requests and once as one batch (capped at the served max batch); variable height
and width take the card's ``dynamic_shape.opt``. The reference runs the ONNX's own outputs; a
served output the ONNX lacks (an ensemble's mask) is compared with the ONNX's only output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard
from tritonkit.errors import CardError
from tritonkit.tasks.base import Agreement, Task, task_for_card, top1_agreement
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.requests import burst, infer, seeded_batch
from tritonkit.validate.result import CheckResult, fail, verdict
from tritonkit.validate.stats import difference, model_counters

ort = lazy_import("onnxruntime")


@dataclass(frozen=True)
class Tolerance:
    max_rel_error: float
    min_agreement: float  # for served outputs of class ids (masks), judged by agreement
    note: str


TOLERANCES = {
    "fp32": Tolerance(1e-4, 0.999, "fp32: max |served - reference| <= 1e-4 x max |reference|"),
    "fp16": Tolerance(1e-2, 0.99, "fp16: max |served - reference| <= 1e-2 x max |reference|"),
    "int8": Tolerance(1e-1, 0.9, "int8: max |served - reference| <= 1e-1 x max |reference|"),
}


@dataclass(frozen=True)
class Comparison:
    """One served output against the reference: numeric error, and the task's agreement
    (``agreement.labels``: the output holds class ids, judged by agreement alone)."""

    output: str
    max_abs_error: float
    max_rel_error: float
    agreement: Agreement | None = None
    mismatch: str = ""  # the shapes, when served and reference differ in shape

    @property
    def labels(self) -> bool:
        return self.agreement is not None and self.agreement.labels

    @property
    def top1_agreement(self) -> float | None:
        a = self.agreement
        return a.value if a is not None and a.metric == "top1_agreement" else None

    def within(self, tol: Tolerance) -> bool:
        if self.labels:
            return self.agreement.value >= tol.min_agreement
        return self.max_rel_error <= tol.max_rel_error

    def problem(self, tol: Tolerance) -> str:
        """Why it is not within ``tol`` (one phrase)."""
        if self.labels:
            return f"{self.output}: {self.agreement.metric} {self.agreement.value:.4f} < {tol.min_agreement:g}"
        if self.mismatch:
            return f"{self.output}: {self.mismatch}"
        return f"{self.output}: rel error {self.max_rel_error:.3g} > {tol.max_rel_error:g}"


def compare(output: str, served: np.ndarray, reference: np.ndarray, task: Task | None = None) -> Comparison:
    """Error of ``served`` against ``reference`` (same shape), NaN-aware (NaN counts as infinite
    error), and ``task``'s agreement of the two (default: top-1 agreement of ``[N, C]`` scores)."""
    agreement = task.output_agreement(served, reference) if task is not None else top1_agreement(served, reference)
    a = np.asarray(served, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(output, float("inf"), float("inf"), agreement,
                          mismatch=f"shape {list(a.shape)} is not the reference's {list(b.shape)}")
    diff = np.abs(a - b)
    diff[~np.isfinite(diff)] = np.inf
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(b[np.isfinite(b)]).max()) if np.isfinite(b).any() else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return Comparison(output, max_abs, rel, agreement)


def card_task(card: ModelCard) -> Task | None:
    """The card's task plug-in (its output agreement), None for a task with no plug-in."""
    try:
        return task_for_card(card)
    except CardError:
        return None


def samples(card: ModelCard, n: int, seed: int) -> np.ndarray:
    return seeded_batch(card, n, seed)


def reference_outputs(onnx_path: Path, card: ModelCard, x: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX's outputs on ``x`` under the card's output names: the output of the same name,
    else the ONNX's only output (an ensemble's mask is compared with its segmenter's logits)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, {card.input.name: x})))
    out = {}
    for spec in card.outputs:
        if spec.name not in values and len(values) != 1:
            raise CardError(f"{onnx_path}: no output {spec.name!r} (outputs: {', '.join(names)})")
        out[spec.name] = values[spec.name] if spec.name in values else next(iter(values.values()))
    return out


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
    task = card_task(card)
    worst: list[Comparison] = []
    try:
        for batch in sorted({1, min(len(x), _max_batch(target))}):
            served = served_outputs(ctx, target, x, batch)
            worst += [compare(f"{o}@bs{batch}", served[o], ref[o], task) for o in ref]
    except Exception as exc:
        return fail(name, f"inference failed: {exc}", target.name)
    bad = [c for c in worst if not c.within(tol)]
    figures = {"precision": target.precision, "tolerance": tol.max_rel_error, "samples": len(x),
               "input_shape": list(x.shape[1:]), "reference": str(target.reference_onnx)}
    figures.update(_error_figures(worst, tol))
    problems = [c.problem(tol) for c in bad]
    how = tol.note if any(not c.labels for c in worst) else f"{tol.min_agreement:g} agreement of the class ids"
    return verdict(name, problems, f"{len(x)} seeded inputs within {how} ({target.reference_source})",
                   target.name, **figures)


def _error_figures(comparisons: list[Comparison], tol: Tolerance) -> dict:
    """Worst numeric error over outputs with values, worst agreement per measure (the class-id
    outputs' with their minimum)."""
    figures: dict = {}
    numeric = [c for c in comparisons if not c.labels]
    if numeric:
        figures["max_rel_error"] = max(c.max_rel_error for c in numeric)
        figures["max_abs_error"] = max(c.max_abs_error for c in numeric)
    for c in comparisons:
        if c.agreement is not None:
            key = c.agreement.metric
            figures[key] = min(figures.get(key, 1.0), c.agreement.value)
    if any(c.labels for c in comparisons):
        figures["min_agreement"] = tol.min_agreement
    return figures


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
    task = card_task(target.card)
    worst = 0.0
    differing = 0
    for a, o in zip(alone, together):
        comparisons = [compare(k, o.outputs[k], a[k], task) for k in a]
        worst = max([worst] + [c.max_rel_error for c in comparisons if not c.labels])
        differing += not all(c.within(tol) for c in comparisons)
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


@check_group("correctness", 30, per_endpoint=True)
def run(ctx: Context) -> list[CheckResult]:
    results = []
    for t in ctx.targets:
        results += [check_reference(ctx, t), check_finite(ctx, t), check_concurrency_invariance(ctx, t)]
    return results
