"""One step runner for the multi-stage runs (``demo``, ``gpu-smoke``, ``make bench``).

A :class:`Step` is an identifier, a function and the steps it needs::

    PIPELINE = Pipeline([
        Step("generate_data", generate_data),
        Step("train_classifier", train_classifier, needs=("generate_data",)),
        Step("stop_server", stop_server, needs=("start_server",), cleanup=True),
    ])
    log = PIPELINE.run(context, StepLog(out / "steps.json"))

Every step is recorded ``ok``, ``failed`` or ``skipped`` with a one-line detail and its seconds,
and the log is rewritten atomically (``tritonkit.io``) after each step, so a crash never loses
what was done. A failing step does not stop the run: the steps that need it are skipped (their
detail names the step), the others still run. A step function says "not this time" by raising
:class:`StepSkipped`; what it returns as a ``str`` becomes its detail. An interrupt (Ctrl-C) is
recorded on the step it hit, the remaining ``cleanup`` steps still run, then it propagates.

Steps decided at run time (one per model, say) go through :meth:`StepLog.call` directly, with a
``subject`` naming what the step acted on.
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tritonkit.errors import TritonkitError
from tritonkit.io import atomic_write_json

OK, FAILED, SKIPPED, RUNNING = "ok", "failed", "skipped", "running"
_ID = re.compile(r"[a-z][a-z0-9_]*\Z")


class StepError(TritonkitError):
    """A pipeline that cannot run as declared (bad id, unknown or later ``needs``)."""


class StepSkipped(TritonkitError):
    """Raised by a step function: record the step ``skipped`` with this message as the reason."""


def check_step_id(step_id: str) -> str:
    if not isinstance(step_id, str) or not _ID.match(step_id):
        raise StepError(f"step id {step_id!r} must be an identifier (lowercase letters, digits, _)")
    return step_id


@dataclass(frozen=True)
class Step:
    """One step of a :class:`Pipeline`: ``fn(context)`` runs once every step in ``needs`` is ok.
    ``cleanup`` steps (stopping a server, writing the report) also run after an interrupt."""

    id: str
    fn: Callable[[Any], object]
    needs: tuple[str, ...] = ()
    cleanup: bool = False

    def __post_init__(self) -> None:
        check_step_id(self.id)
        object.__setattr__(self, "needs", tuple(check_step_id(n) for n in self.needs))


@dataclass
class StepRecord:
    """What happened to one step."""

    id: str
    status: str = RUNNING
    seconds: float = 0.0
    detail: str = ""
    subject: str | None = None

    @property
    def name(self) -> str:
        """The id, with the subject in brackets when there is one (``eval[resnet50]``)."""
        return f"{self.id}[{self.subject}]" if self.subject else self.id

    def line(self) -> str:
        """One line for a console: ``name ...`` while running, else status, seconds and detail."""
        if self.status == RUNNING:
            return f"{self.name} ..."
        return f"{self.name}: {self.status} in {self.seconds:.1f} s" + (f" — {self.detail}" if self.detail else "")

    def to_dict(self) -> dict:
        return asdict(self)


def failure_line(exc: BaseException) -> str:
    """One line for a failed step: a TritonkitError's first line; else the type, message and where."""
    if isinstance(exc, TritonkitError):
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    text = str(exc).strip().splitlines()
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ") + where


@dataclass
class StepLog:
    """Records of the steps run so far, rewritten to ``path`` (when given) after every change.
    ``on_event`` sees each record when its step starts (status ``running``) and when it ends."""

    path: Path | None = None
    on_event: Callable[[StepRecord], None] | None = None
    records: list[StepRecord] = field(default_factory=list)

    def call(self, step_id: str, fn: Callable[..., object], *args, subject: str | None = None):
        """Run ``fn(*args)`` as step ``step_id`` now; its return value, or None when it did not succeed."""
        record = StepRecord(check_step_id(step_id), subject=subject)
        self._add(record)
        t0 = time.perf_counter()
        value = None
        try:
            value = fn(*args)
            record.status, record.detail = OK, value if isinstance(value, str) else ""
        except StepSkipped as exc:
            record.status, record.detail = SKIPPED, failure_line(exc)
        except Exception as exc:  # noqa: BLE001 - the run goes on; the reason and its place are recorded
            record.status, record.detail = FAILED, failure_line(exc)
        except BaseException as exc:  # an interrupt: recorded on this step, then it propagates
            record.status, record.detail = FAILED, f"interrupted ({type(exc).__name__})"
            raise
        finally:
            record.seconds = round(time.perf_counter() - t0, 3)
            self._changed(record)
        return value if record.status == OK else None

    def skip(self, step_id: str, reason: str, subject: str | None = None) -> StepRecord:
        record = StepRecord(check_step_id(step_id), SKIPPED, 0.0, reason, subject)
        self._add(record)
        return record

    def status(self, step_id: str, subject: str | None = None) -> str | None:
        """The status of the latest record of ``step_id`` (and ``subject``), None when it never ran."""
        for record in reversed(self.records):
            if record.id == step_id and (subject is None or record.subject == subject):
                return record.status
        return None

    def ok(self, step_id: str, subject: str | None = None) -> bool:
        return self.status(step_id, subject) == OK

    def failed(self) -> list[StepRecord]:
        return [r for r in self.records if r.status == FAILED]

    @property
    def passed(self) -> bool:
        return not self.failed()

    def to_dict(self) -> dict:
        return {"steps": [r.to_dict() for r in self.records], "failed": not self.passed}

    def save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, self.to_dict())

    def _add(self, record: StepRecord) -> None:
        self.records.append(record)
        self._changed(record)

    def _changed(self, record: StepRecord) -> None:
        self.save()
        if self.on_event is not None:
            self.on_event(record)


class Pipeline:
    """Steps in order; see the module's docstring for what happens on a failure or an interrupt."""

    def __init__(self, steps: Sequence[Step]):
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise StepError(f"step id {step.id!r} is used twice")
            unknown = [n for n in step.needs if n not in seen]
            if unknown:
                raise StepError(f"step {step.id!r} needs {', '.join(unknown)}, which no earlier step is")
            seen.add(step.id)
        self.steps: tuple[Step, ...] = tuple(steps)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)

    def run(self, context: Any, log: StepLog | None = None) -> StepLog:
        """Run every step with ``context``; returns the log (also written to its path)."""
        log = log if log is not None else StepLog()
        for i, step in enumerate(self.steps):
            missing = [f"{n} ({log.status(n) or 'not run'})" for n in step.needs if not log.ok(n)]
            if missing:
                log.skip(step.id, "needs " + ", ".join(missing))
                continue
            try:
                log.call(step.id, step.fn, context)
            except BaseException:
                self._after_interrupt(self.steps[i + 1:], context, log)
                raise
        return log

    @staticmethod
    def _after_interrupt(rest: Sequence[Step], context: Any, log: StepLog) -> None:
        for step in rest:
            if step.cleanup and all(log.ok(n) for n in step.needs):
                try:
                    log.call(step.id, step.fn, context)
                except BaseException:  # noqa: BLE001 - a second interrupt: the first one propagates
                    pass
            else:
                log.skip(step.id, "run interrupted")
