"""The validation check groups, each declared once where it is written.

A check module registers its entry point with :func:`check_group`::

    @check_group("readiness", order=10, per_endpoint=True)
    def run(ctx: Context) -> list[CheckResult]: ...

``order`` is the run order (cheap and read-only first, stress last, so a broken deployment
fails fast and the stress checks do not disturb the correctness ones); ``opt_in`` groups run
only when asked for by name (``all`` leaves them out); ``per_endpoint`` groups say whether a
replica serves the right model correctly and run at every endpoint of a multi-endpoint URL,
the others once (see :mod:`tritonkit.validate.runner`).

The options (:mod:`tritonkit.validate.options`), the runner and the CLI read the groups from
here at run time. The check modules are imported with the package (:mod:`tritonkit.validate`
imports the runner, which imports every check module), so the registry is complete before
anything in the package runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from tritonkit.errors import TritonkitError

if TYPE_CHECKING:  # the check modules import this one to register
    from tritonkit.validate.context import Context
    from tritonkit.validate.result import CheckResult

__all__ = ["CheckGroup", "check_group", "check_groups", "group_names", "default_groups", "opt_in_groups",
           "get_group"]


@dataclass(frozen=True)
class CheckGroup:
    """One group of checks: its name, place in the run order, entry point and how it runs."""

    name: str
    order: int
    run: Callable[[Context], list[CheckResult]]
    opt_in: bool = False
    per_endpoint: bool = False


_GROUPS: dict[str, CheckGroup] = {}


def check_group(name: str, order: int, *, opt_in: bool = False,
                per_endpoint: bool = False) -> Callable[[Callable], Callable]:
    """Register the decorated function as the entry point of check group ``name``."""
    def register(run: Callable[[Context], list[CheckResult]]) -> Callable[[Context], list[CheckResult]]:
        taken = next((g for g in _GROUPS.values() if g.order == order and g.name != name), None)
        if name in _GROUPS and _GROUPS[name].run is not run:
            raise TritonkitError(f"check group {name!r} is registered twice")
        if taken is not None:
            raise TritonkitError(f"check groups {taken.name!r} and {name!r} both have order {order}")
        _GROUPS[name] = CheckGroup(name, order, run, opt_in, per_endpoint)
        return run
    return register


def check_groups() -> tuple[CheckGroup, ...]:
    """Every registered group, in run order."""
    return tuple(sorted(_GROUPS.values(), key=lambda g: g.order))


def group_names() -> tuple[str, ...]:
    return tuple(g.name for g in check_groups())


def default_groups() -> tuple[str, ...]:
    """What ``all`` (and no choice) runs: every group that is not opt-in."""
    return tuple(g.name for g in check_groups() if not g.opt_in)


def opt_in_groups() -> tuple[str, ...]:
    return tuple(g.name for g in check_groups() if g.opt_in)


def get_group(name: str) -> CheckGroup:
    try:
        return _GROUPS[name]
    except KeyError:
        raise TritonkitError(f"unknown check group {name!r}; choose from {', '.join(group_names())}") from None
