"""A canary gate: compare a candidate server with the stable one, then ``promote`` or ``rollback``.

``tritonkit validate --candidate URL --stable URL`` runs, for one served model:

1. **accuracy** — the same sample of the user's dataset (the task's own reader and ``--limit``
   subset, so both servers see the same images) through each server with the eval engine
   (:class:`tritonkit.evaluate.EvalRun`: the served card, the task's dataset and adapter, the
   run-stream engine); the task's metric on each, and how the two agree image by image
   (:mod:`tritonkit.validate.agreement`: top-1, detections, masks);
2. **latency** — the same fixed-count perf_analyzer load on each server, in interleaved rounds
   (stable, candidate, candidate, stable ...), sized like the ``load`` check
   (:mod:`tritonkit.validate.load`); the p99 of each is the median of its rounds;
3. **the decision** — ``rollback`` when the metric dropped by more than ``max_metric_drop``,
   the agreement is below ``min_agreement``, the candidate's p99 is above ``max_p99_ratio`` x
   the stable's, or the candidate failed images or load the stable served; else ``promote``.

Writes ``<out>/canary.json`` and ``<out>/canary.md``; each side's streams are in memory only.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tritonkit.client.pipeline import EngineOptions, run_stream, summarize
from tritonkit.errors import TritonkitError
from tritonkit.evaluate import EvalRun, fetch_served_card
from tritonkit.perf.binary import locate_perf_analyzer
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec, served_input_shapes
from tritonkit.perf.sweep import PointResult, run_point
from tritonkit.report import markdown_table, write_json, write_text
from tritonkit.tasks.base import OptionsError, StreamOptions, Task, get_task
from tritonkit.validate.agreement import Measure, RecordingAdapter, measure_for, paired
from tritonkit.validate.load import CALIBRATION_REQUESTS, planned_requests

PROMOTE, ROLLBACK = "promote", "rollback"
ROLES = ("candidate", "stable")


class CanaryError(TritonkitError):
    """A canary comparison that cannot run as asked."""


@dataclass(frozen=True, kw_only=True)
class CanaryOptions:
    """One candidate/stable comparison. ``dataset``: ``(field, value)`` pairs for the task's options
    (``data``, ``gt``, ``annotations``, ``images``, ``split`` ...); ``limit``: images compared."""

    candidate: str
    stable: str
    model: str
    dataset: tuple[tuple[str, Any], ...]
    out: Path
    limit: int = 100
    max_metric_drop: float = 0.01        # absolute, in the metric's units (a fraction: 0.01 = 1 point)
    min_agreement: float = 0.95
    max_p99_ratio: float = 1.25
    concurrency: int = 4
    load_seconds: float = 10.0
    rounds: int = 3
    workers: int = 2
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.candidate == self.stable:
            raise CanaryError(f"--candidate and --stable are the same server ({self.candidate})")
        for name, low in (("limit", 1), ("concurrency", 1), ("rounds", 1), ("workers", 1)):
            if getattr(self, name) < low:
                raise CanaryError(f"{name} must be >= {low} (got {getattr(self, name)})", fields=(name,))
        for name in ("max_metric_drop", "min_agreement", "max_p99_ratio", "load_seconds", "timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise CanaryError(f"{name} must be a finite number >= 0 (got {value})", fields=(name,))
        if self.min_agreement > 1:
            raise CanaryError(f"min_agreement is a fraction in [0, 1] (got {self.min_agreement})",
                              fields=("min_agreement",))


@dataclass
class Side:
    """One server's figures: the task metric on the sample, images it failed, and its load rounds."""

    url: str
    metric: float | None = None
    images: int = 0
    failed: list[str] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    req_per_s: list[float] = field(default_factory=list)
    load_error: str | None = None

    @property
    def p99_median_ms(self) -> float | None:
        return statistics.median(self.p99_ms) if self.p99_ms else None

    def to_dict(self) -> dict:
        return {"url": self.url, "metric": self.metric, "images": self.images, "failed": list(self.failed),
                "p99_ms": self.p99_median_ms, "p99_rounds_ms": list(self.p99_ms),
                "req_per_s": statistics.median(self.req_per_s) if self.req_per_s else None,
                "load_error": self.load_error}


@dataclass
class CanaryResult:
    """The comparison and its decision (``promote`` when ``problems`` is empty)."""

    task: str
    model: str
    metric: str
    agreement_name: str
    agreement: float | None
    compared: int
    candidate: Side
    stable: Side
    thresholds: dict
    load: dict
    problems: list[str] = field(default_factory=list)

    @property
    def decision(self) -> str:
        return ROLLBACK if self.problems else PROMOTE

    @property
    def p99_ratio(self) -> float | None:
        c, s = self.candidate.p99_median_ms, self.stable.p99_median_ms
        return c / s if c is not None and s else None

    def to_dict(self) -> dict:
        return {"decision": self.decision, "task": self.task, "model": self.model, "metric": self.metric,
                "agreement_name": self.agreement_name, "agreement": self.agreement, "compared": self.compared,
                "p99_ratio": self.p99_ratio, "candidate": self.candidate.to_dict(), "stable": self.stable.to_dict(),
                "thresholds": dict(self.thresholds), "load": dict(self.load), "problems": list(self.problems)}

    def summary(self) -> str:
        """The decision and the figures behind it, one line."""
        return f"{self.decision}: " + "; ".join(figure_lines(self))


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def figure_lines(r: CanaryResult) -> list[str]:
    t = r.thresholds
    c, s = r.candidate, r.stable
    lines = [f"{r.metric} {_num(c.metric)} vs stable {_num(s.metric)} (drop allowed {t['max_metric_drop']:g})",
             f"{r.agreement_name} {_num(r.agreement)} on {r.compared} images (min {t['min_agreement']:g})"]
    ratio = r.p99_ratio
    lines.append(f"p99 {_num(c.p99_median_ms, 2)} ms vs {_num(s.p99_median_ms, 2)} ms"
                 + (f" (x{ratio:.2f}, max x{t['max_p99_ratio']:g})" if ratio is not None else ""))
    return lines


def decide(r: CanaryResult) -> list[str]:
    """Why the candidate must not be promoted (empty: promote)."""
    t, c, s = r.thresholds, r.candidate, r.stable
    problems = []
    if c.metric is None or s.metric is None:
        problems.append(f"{r.metric} not measured on both servers (candidate {_num(c.metric)}, "
                        f"stable {_num(s.metric)})")
    elif s.metric - c.metric > t["max_metric_drop"] + 1e-12:
        problems.append(f"{r.metric} fell from {s.metric:.4f} to {c.metric:.4f} "
                        f"(-{s.metric - c.metric:.4f} > {t['max_metric_drop']:g} allowed)")
    if r.agreement is None or r.agreement < t["min_agreement"]:
        problems.append(f"{r.agreement_name} {_num(r.agreement, 4)} < {t['min_agreement']:g}")
    only_candidate = sorted(set(c.failed) - set(s.failed))
    if only_candidate:
        problems.append(f"the candidate failed {len(only_candidate)} images the stable served "
                        f"(first: {only_candidate[0]})")
    for role, side in (("candidate", c), ("stable", s)):
        if side.load_error:
            problems.append(f"{role} load failed: {side.load_error}")
    ratio = r.p99_ratio
    if ratio is not None and ratio > t["max_p99_ratio"]:
        problems.append(f"p99 {c.p99_median_ms:.2f} ms is x{ratio:.2f} the stable's {s.p99_median_ms:.2f} ms "
                        f"(> x{t['max_p99_ratio']:g})")
    return problems


# -- accuracy ---------------------------------------------------------------------------------
DATASET_FLAGS = {"data": "--data", "gt": "--gt", "annotations": "--annotations", "images": "--images",
                 "split": "--split", "limit": "--limit"}


def side_options(task: Task, options: CanaryOptions, url: str, role: str) -> StreamOptions:
    """The task's eval options for one side: the served model at ``url``, the dataset, the limit."""
    names = {f.name for f in fields(task.options_type)}
    stray = [k for k, _ in options.dataset if k not in names]
    if stray:
        raise CanaryError(f"{DATASET_FLAGS.get(stray[0], stray[0])} does not apply to {task.name} models")
    values = {**dict(options.dataset), **({"limit": options.limit} if "limit" in names else {})}
    try:
        return task.options_type(model_name=options.model, url=url, out=options.out / role, timing_images=0,
                                 progress=False, workers=options.workers, timeout_s=options.timeout_s, **values)
    except OptionsError as exc:
        raise CanaryError(exc.render(DATASET_FLAGS)) from None


def stream_side(task: Task, measure: Measure, options: StreamOptions) -> tuple[Side, list[dict]]:
    """The sample through one server: its metric, the images it failed, its per-image records."""
    run = EvalRun(task, options)
    client = run.connect(run.served)
    try:
        engine = EngineOptions(batch_size=1, workers=options.workers, in_flight=options.in_flight,
                               progress=False, description=f"{run.card.name} {options.url}")
        stream = run_stream(run.data.items, RecordingAdapter(run.adapter, measure), client, engine)
    finally:
        client.close()
    metrics = task.metrics(summarize(run.adapter, stream), False).to_dict()
    side = Side(url=options.url, metric=metrics.get(measure.metric), images=stream.evaluated,
                failed=[e["path"] for e in stream.errors])
    return side, stream.records


# -- latency ----------------------------------------------------------------------------------
def _load_spec(options: CanaryOptions, url: str, requests: int, shapes: tuple) -> PerfSpec:
    c = options.concurrency
    return PerfSpec(model=options.model, url=url, protocol="grpc", batch_size=1, concurrency=ConcurrencyRange(c, c),
                    request_count=requests, timeout_s=options.load_seconds * 4 + 120, input_shapes=shapes)


def _point_error(point: PointResult) -> str:
    return f"{point.error}" + (f" | {point.stderr_tail.splitlines()[-1]}" if point.stderr_tail else "")


def compare_load(options: CanaryOptions, sides: dict[str, Side], work: Path) -> dict:
    """The same fixed-count load on each server in interleaved rounds (the order flips each
    round); each side's p99 and rate per round go into ``sides``. Returns the load's set-up."""
    analyzer = locate_perf_analyzer()
    shapes = served_input_shapes(options.stable, "grpc", options.model, timeout_s=options.timeout_s)
    calibration = run_point(_load_spec(options, options.stable, CALIBRATION_REQUESTS * options.concurrency, shapes),
                            _mkdir(work / "calibration"), analyzer)
    if not calibration.ok:
        sides["stable"].load_error = _point_error(calibration)
        return {"concurrency": options.concurrency, "requests": None, "rounds": 0}
    requests = planned_requests(calibration, options.load_seconds)
    for i in range(options.rounds):
        for role in (ROLES[::-1] if i % 2 == 0 else ROLES):
            side = sides[role]
            if side.load_error:
                continue
            point = run_point(_load_spec(options, side.url, requests, shapes), _mkdir(work / f"{role}-{i}"), analyzer)
            if not point.ok:
                side.load_error = _point_error(point)
                continue
            side.p99_ms.append(point.rows[-1].p99_us / 1000.0)
            side.req_per_s.append(point.rows[-1].req_per_s)
    return {"concurrency": options.concurrency, "requests": requests, "rounds": options.rounds,
            "order": "interleaved, stable first in even rounds", "p99": "median of the rounds"}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the whole comparison -------------------------------------------------------------------
def compare(options: CanaryOptions) -> CanaryResult:
    """Accuracy and agreement on the same sample, p99 under the same load; the decision; the
    reports written to ``options.out``."""
    card = fetch_served_card(StreamOptions(model_name=options.model, url=options.stable, timeout_s=options.timeout_s),
                             options.model)
    if card is None:
        raise CanaryError(f"model {options.model!r} at {options.stable} carries no tritonkit card: its task and "
                          "dataset are unknown")
    task, measure = get_task(card.task), measure_for(card.task)
    sides, records = {}, {}
    for role, url in (("stable", options.stable), ("candidate", options.candidate)):
        sides[role], records[role] = stream_side(task, measure, side_options(task, options, url, role))
    mine, theirs = paired(records["candidate"], records["stable"])
    with tempfile.TemporaryDirectory(prefix="tritonkit-canary-") as tmp:
        load = compare_load(options, sides, Path(tmp))
    thresholds = {"max_metric_drop": options.max_metric_drop, "min_agreement": options.min_agreement,
                  "max_p99_ratio": options.max_p99_ratio}
    result = CanaryResult(task=task.name, model=options.model, metric=measure.metric,
                          agreement_name=measure.agreement,
                          agreement=measure.agree(mine, theirs, card) if mine else None, compared=len(mine),
                          candidate=sides["candidate"], stable=sides["stable"], thresholds=thresholds, load=load)
    result.problems = decide(result)
    write_reports(result, options.out)
    return result


def canary_markdown(r: CanaryResult) -> str:
    c, s = r.candidate, r.stable
    rows = [[r.metric, c.metric, s.metric], ["images evaluated", c.images, s.images],
            ["images failed", len(c.failed), len(s.failed)],
            ["p99 (ms, median of rounds)", c.p99_median_ms, s.p99_median_ms],
            ["p99 per round (ms)", ", ".join(f"{v:.2f}" for v in c.p99_ms), ", ".join(f"{v:.2f}" for v in s.p99_ms)]]
    parts = [f"# Canary `{r.model}` ({r.task}): {r.decision}\n\n",
             f"Candidate `{c.url}` against stable `{s.url}` on the same {r.compared} images and the same load "
             f"({r.load.get('requests')} requests at concurrency {r.load.get('concurrency')}, "
             f"{r.load.get('rounds')} interleaved rounds).\n\n",
             markdown_table(["", "candidate", "stable"], rows, digits=4),
             f"\n\n{r.agreement_name}: {_num(r.agreement, 4)}\n\n## Decision: {r.decision}\n\n"]
    parts += [f"- {line}\n" for line in figure_lines(r)]
    parts += ["\nWhy not promoted:\n\n"] + [f"- {p}\n" for p in r.problems] if r.problems else []
    return "".join(parts)


def write_reports(result: CanaryResult, out: Path) -> None:
    write_json(out / "canary.json", result.to_dict())
    write_text(out / "canary.md", canary_markdown(result))


__all__ = ["CanaryError", "CanaryOptions", "CanaryResult", "PROMOTE", "ROLLBACK", "Side", "compare",
           "canary_markdown", "decide", "figure_lines", "side_options", "stream_side"]
