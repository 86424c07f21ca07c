"""Production-like validation of a running Triton deployment (``tritonkit validate``).

A battery of small checks, each a function returning :class:`CheckResult`: readiness, contract
(served model vs card), correctness (vs onnxruntime, NaN/Inf, concurrency invariance), bad
requests, security (production profile), load (perf_analyzer vs SLO), overload (queue policy
sheds load cleanly) and an opt-in soak (errors, shared-memory cycles, RSS growth).

:mod:`tritonkit.validate.canary` is the canary gate: a candidate server against the stable one on
the same images and load, ``promote`` or ``rollback``.
"""

from tritonkit.validate.groups import check_group, group_names
from tritonkit.validate.options import ValidateOptions, parse_checks, parse_duration
from tritonkit.validate.report import ValidationReport
from tritonkit.validate.result import CheckResult
from tritonkit.validate.runner import validate

__all__ = ["validate", "ValidateOptions", "ValidationReport", "CheckResult", "check_group", "group_names",
           "parse_checks", "parse_duration"]
