"""Benchmark ratios that hold on a noisy machine: interleaved repeats, a median, and a verdict.

A ratio's two figures, A (numerator) and B (denominator), are measured as interleaved pairs,
A B A B ... (at least :data:`MIN_PAIRS`), so load from other processes falls on both alike. Each
pair gives one ratio A/B; the ratio reported is their median, with the min and the max. The
verdict (:func:`verdict`):

* ``not measured``: no pair (the measurement failed; the error is kept);
* ``not judged here``: a goal that belongs to other hardware (e.g. a GPU figure on a CPU host);
* ``inconclusive``: fewer than :data:`MIN_PAIRS` pairs, or the spread (max - min) is larger than
  the margin between the median and the goal, so this machine cannot tell met from unmet;
* ``met`` (median >= goal) or ``unmet``.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

MIN_PAIRS = 3
MET, UNMET, INCONCLUSIVE = "met", "unmet", "inconclusive"
NOT_MEASURED, NOT_JUDGED = "not measured", "not judged here"


def verdict(values: Sequence[float], goal: float, *, judged: bool = True) -> str:
    """``met`` / ``unmet`` / ``inconclusive`` / ``not judged here`` / ``not measured`` for per-pair
    ratios ``values`` against ``goal`` (the ratio is better the larger it is)."""
    if not values:
        return NOT_MEASURED
    if not judged:
        return NOT_JUDGED
    if len(values) < MIN_PAIRS:
        return INCONCLUSIVE
    median = statistics.median(values)
    if max(values) - min(values) > abs(median - goal):
        return INCONCLUSIVE
    return MET if median >= goal else UNMET


def load_average() -> float:
    """The machine's 1-minute load average."""
    return os.getloadavg()[0]


def interleave(measure_a: Callable[[], float], measure_b: Callable[[], float], pairs: int,
               ) -> list[tuple[float, float]]:
    """``pairs`` pairs measured A B A B ... (A first in every pair)."""
    out = []
    for _ in range(pairs):
        a = measure_a()
        out.append((a, measure_b()))
    return out


@dataclass
class Measured:
    """What a ratio's measure returns: the (A, B) pairs in the order measured, and words about them."""

    pairs: list[tuple[float, float]]
    numerator_is: str
    denominator_is: str
    note: str = ""
    where_time_goes: str = ""
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RatioSpec:
    """One ratio of the bench: its name (an identifier), the goal and the function measuring it.
    ``judged`` is False for a goal that belongs to other hardware (reported, not judged)."""

    name: str
    goal: float
    measure: Callable[[Any], Measured]
    judged: bool = True
    why_not_judged: str = ""


@dataclass
class RatioResult:
    """One ratio as measured: the per-pair figures, the median with min and max, and the verdict."""

    name: str
    goal: float
    judged: bool = True
    pairs: list[tuple[float, float]] = field(default_factory=list)
    numerator_is: str = ""
    denominator_is: str = ""
    note: str = ""
    where_time_goes: str = ""
    why_not_judged: str = ""
    error: str = ""
    load_before: float | None = None
    load_after: float | None = None

    @classmethod
    def of(cls, spec: RatioSpec, measured: Measured | None = None, *, error: str = "",
           load_before: float | None = None, load_after: float | None = None) -> "RatioResult":
        words = {} if measured is None else {k: getattr(measured, k) for k in
                                             ("pairs", "numerator_is", "denominator_is", "note", "where_time_goes")}
        return cls(spec.name, spec.goal, spec.judged, why_not_judged=spec.why_not_judged, error=error,
                   load_before=load_before, load_after=load_after, **words)

    @property
    def values(self) -> list[float]:
        """A/B of every pair with a non-zero B."""
        return [a / b for a, b in self.pairs if b]

    def _stat(self, fn, which: int | None = None) -> float | None:
        vals = self.values if which is None else [p[which] for p in self.pairs]
        return fn(vals) if vals else None

    @property
    def median(self) -> float | None:
        return self._stat(statistics.median)

    @property
    def min(self) -> float | None:
        return self._stat(min)

    @property
    def max(self) -> float | None:
        return self._stat(max)

    @property
    def spread(self) -> float | None:
        return None if not self.values else self.max - self.min

    @property
    def margin(self) -> float | None:
        return None if not self.values else abs(self.median - self.goal)

    @property
    def numerator(self) -> float | None:
        """Median of the A figures."""
        return self._stat(statistics.median, 0)

    @property
    def denominator(self) -> float | None:
        """Median of the B figures."""
        return self._stat(statistics.median, 1)

    @property
    def verdict(self) -> str:
        return verdict(self.values, self.goal, judged=self.judged)

    def to_dict(self) -> dict:
        return {**asdict(self), "values": self.values, "median": self.median, "min": self.min, "max": self.max,
                "spread": self.spread, "margin": self.margin, "numerator_median": self.numerator,
                "denominator_median": self.denominator, "verdict": self.verdict}
