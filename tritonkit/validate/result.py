"""The outcome of one validation check, and the report that collects them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from tritonkit.triton import one_line


@dataclass(frozen=True)
class CheckResult:
    """One check against one model (or the whole server when ``model`` is None).

    ``name`` is ``group.check`` (``correctness.reference``); ``detail`` is one readable line
    that says why it failed or what passed; ``figures`` are the numbers behind the verdict
    (latencies in ms, counts, RSS in MB), JSON-serialisable.
    """

    name: str
    passed: bool
    detail: str
    model: str | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    hint: str | None = None  # the command that fixes a failure (tritonkit.validate.hints)

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def to_dict(self) -> dict:
        out = {"name": self.name, "model": self.model, "passed": self.passed, "detail": self.detail,
               "figures": _jsonable(dict(self.figures))}
        if self.hint is not None:
            out["hint"] = self.hint
        return out


def ok(name: str, detail: str, model: str | None = None, **figures: Any) -> CheckResult:
    return CheckResult(name, True, detail, model, figures)


def fail(name: str, detail: str, model: str | None = None, *, hint: str | None = None, **figures: Any) -> CheckResult:
    return CheckResult(name, False, detail, model, figures, hint)


def verdict(name: str, problems: list[str], passed_detail: str, model: str | None = None, *,
            hint: str | None = None, **figures: Any) -> CheckResult:
    """Passed when ``problems`` is empty, else failed listing them (with ``hint``, the fix)."""
    if problems:
        return fail(name, "; ".join(problems), model, hint=hint, **figures)
    return ok(name, passed_detail, model, **figures)


def error_text(exc: BaseException) -> str:
    """One line for an exception: tritonclient's server message when it has one."""
    return one_line(exc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, float):
        return round(value, 6) if value == value and abs(value) != float("inf") else str(value)
    return value
