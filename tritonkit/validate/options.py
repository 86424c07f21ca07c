"""What `tritonkit validate` is asked to do, as one frozen object."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tritonkit.errors import TritonkitError
from tritonkit.serve.profiles import API_KEY_ENV, API_KEY_HEADER
from tritonkit.validate.groups import default_groups, group_names, opt_in_groups

PRECISIONS = ("fp32", "fp16", "int8")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


@dataclass(frozen=True)
class ValidateOptions:
    """A validation run against a running Triton server (local or remote).

    ``checks`` are check group names (:mod:`tritonkit.validate.groups`; default: every group
    that is not opt-in; ``soak_seconds`` > 0 opts the soak in). ``cards``/``reference_onnx``/
    ``precisions`` are ``(model, value)`` pairs. Per-model cards default to the card the
    repository writer stored with the model (see :mod:`tritonkit.validate.context`); the
    reference ONNX defaults to the served ONNX when the repository is on this machine.
    """

    models: tuple[str, ...]
    url: str = "127.0.0.1:8001"
    http_url: str | None = None
    metrics_url: str | None = None
    checks: tuple[str, ...] = field(default_factory=default_groups)
    cards: tuple[tuple[str, str], ...] = ()
    reference_onnx: tuple[tuple[str, str], ...] = ()
    precisions: tuple[tuple[str, str], ...] = ()
    repo: Path | None = None
    container_release: str | None = None
    container_trt_version: str | None = None     # TensorRT of that release when not in the table
    server_pid: int | None = None
    slo_p99_ms: float = 200.0
    load_seconds: float = 10.0
    concurrency: int = 4
    soak_seconds: float = 0.0
    rss_bound_mb: float = 100.0
    samples: int = 8
    seed: int = 0
    overload_requests: int = 0            # 0 -> derived from the queue policy
    request_timeout_s: float = 30.0
    api_key_env: str = API_KEY_ENV
    api_key_header: str = API_KEY_HEADER
    out: Path | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise TritonkitError("validate needs at least one model (--models)")
        unknown = [c for c in self.checks if c not in group_names()]
        if unknown:
            raise TritonkitError(f"unknown checks {unknown}; choose from {', '.join(group_names())} or 'all'")
        for label, pairs in (("--cards", self.cards), ("--reference-onnx", self.reference_onnx),
                             ("--precision", self.precisions)):
            stray = [m for m, _ in pairs if m not in self.models]
            if stray:
                raise TritonkitError(f"{label} names models not in --models: {', '.join(stray)}")
        bad = [p for _, p in self.precisions if p not in PRECISIONS]
        if bad:
            raise TritonkitError(f"--precision {bad} not one of {', '.join(PRECISIONS)}")
        if self.concurrency < 1 or self.samples < 1:
            raise TritonkitError("concurrency and samples must be >= 1")
        if self.load_seconds <= 0 or self.slo_p99_ms <= 0 or self.request_timeout_s <= 0:
            raise TritonkitError("load seconds, SLO and request timeout must be positive")
        if self.soak_seconds < 0 or self.rss_bound_mb <= 0:
            raise TritonkitError("soak seconds must be >= 0 and the RSS bound positive")
        if "," in self.url:
            self.check_several_endpoints()

    def check_several_endpoints(self) -> None:
        """With several endpoints each one's HTTP and metrics addresses come from its own host:
        a single --http-url, --metrics-url or --server-pid cannot name them all."""
        given = [label for label, value in (("--http-url", self.http_url), ("--metrics-url", self.metrics_url),
                                            ("--server-pid", self.server_pid)) if value is not None]
        if given:
            raise TritonkitError(f"{', '.join(given)} name one server; --url names several endpoints "
                                 f"(validate one endpoint at a time to give them)")

    def value_for(self, pairs: tuple[tuple[str, str], ...], model: str) -> str | None:
        return dict(pairs).get(model)

    def groups(self) -> tuple[str, ...]:
        """The requested check groups in run order; ``soak_seconds`` > 0 opts the soak in."""
        wanted = set(self.checks) | ({"soak"} if self.soak_seconds > 0 else set())
        return tuple(g for g in group_names() if g in wanted)

    def not_requested(self) -> tuple[str, ...]:
        """The opt-in groups this run leaves out (the report names them)."""
        return tuple(g for g in opt_in_groups() if g not in self.groups())


def parse_checks(text: str) -> tuple[str, ...]:
    """``all`` or a comma list; ``all`` excludes the opt-in groups (the soak runs when --soak is given)."""
    names = [t.strip().replace("-", "_") for t in text.split(",") if t.strip()]
    if not names or names == ["all"]:
        return default_groups()
    unknown = [n for n in names if n not in group_names()]
    if unknown:
        raise TritonkitError(f"unknown checks {unknown}; choose from {', '.join(group_names())} or 'all'")
    return tuple(g for g in group_names() if g in names)


def parse_duration(text: str) -> float:
    """``30m`` / ``90s`` / ``1.5h`` / ``500ms`` / ``45`` (seconds) -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise TritonkitError(f"duration {text!r}: use a number with s, m, h or ms (e.g. 30m)")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]


def parse_pairs(items: list[str] | tuple[str, ...] | None, flag: str, models: tuple[str, ...] = ()) \
        -> tuple[tuple[str, str], ...]:
    """``m1=x,m2=y`` (repeatable). With exactly one model a bare value means that model."""
    pairs: list[tuple[str, str]] = []
    for item in items or ():
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" in part:
                model, value = part.split("=", 1)
            elif len(models) == 1:
                model, value = models[0], part
            else:
                raise TritonkitError(f"{flag} {part!r}: write MODEL=VALUE")
            if not model.strip() or not value.strip():
                raise TritonkitError(f"{flag} {part!r}: write MODEL=VALUE")
            pairs.append((model.strip(), value.strip()))
    names = [m for m, _ in pairs]
    dupes = sorted({m for m in names if names.count(m) > 1})
    if dupes:
        raise TritonkitError(f"{flag} gives {', '.join(dupes)} more than once")
    return tuple(pairs)
