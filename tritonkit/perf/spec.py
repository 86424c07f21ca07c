"""What one perf_analyzer measurement is: :class:`PerfSpec` and the command line it becomes.

A :class:`PerfSpec` is everything one measurement needs (model, server, protocol, batch size,
concurrency range, how to stabilise, shared memory, input data, timeout); :meth:`PerfSpec.argv`
turns it into the exact command line. Every flag here is checked against this binary's usage
text (``perf_analyzer`` from ``tritonclient[all]==2.50.0``). A model with variable input dims
needs ``--shape``: :func:`card_input_shapes` from a card, :func:`served_input_shapes` from the
served model's config and the card it carries.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from tritonkit.cards import ModelCard
from tritonkit.errors import CardError, TritonkitError
from tritonkit.served_model import ServedModel
from tritonkit.triton import PROTOCOLS, input_shape

MEASUREMENT_MODES = ("time_windows", "count_windows")
SHARED_MEMORY = ("none", "system", "cuda")


class PerfError(TritonkitError):
    """A perf spec or sweep that cannot run as asked."""


@dataclass(frozen=True)
class ConcurrencyRange:
    """perf_analyzer's ``--concurrency-range start:end:step`` (end inclusive)."""

    start: int
    end: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.start < 1 or self.end < self.start or self.step < 1:
            raise PerfError(f"concurrency range {self.start}:{self.end}:{self.step} needs 1 <= start <= end, step >= 1")

    @classmethod
    def parse(cls, text: str) -> "ConcurrencyRange":
        """``"4"``, ``"1:4"`` or ``"1:8:2"``."""
        parts = str(text).strip().split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise PerfError(f"concurrency {text!r}: expected START[:END[:STEP]] with integers") from None
        if not 1 <= len(values) <= 3:
            raise PerfError(f"concurrency {text!r}: expected START[:END[:STEP]]")
        start = values[0]
        end = values[1] if len(values) > 1 else start
        step = values[2] if len(values) > 2 else 1
        return cls(start, end, step)

    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.end + 1, self.step))

    def __str__(self) -> str:
        return f"{self.start}:{self.end}:{self.step}"


@dataclass(frozen=True)
class InputShape:
    """perf_analyzer's ``--shape NAME:D1,D2,...`` for an input with variable dims (batch excluded)."""

    name: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                                 for d in self.dims):
            raise PerfError(f"input shape {self.name!r}: dims must be positive integers (got {list(self.dims)})")

    def __str__(self) -> str:
        return f"{self.name}:{','.join(map(str, self.dims))}"


def card_input_shapes(card: ModelCard, shape_hw: tuple[int, int] | None = None) -> tuple[InputShape, ...]:
    """The ``--shape`` a card's model needs: none for fixed dims; for variable H and W (``-1``)
    the card's ``dynamic_shape.opt`` or ``shape_hw`` (height, width)."""
    if -1 not in card.input.dims:
        return ()
    return (InputShape(card.input.name, input_shape(card, 1, shape_hw)[1:]),)


def served_input_shapes(url: str, protocol: str, model: str, shape_hw: tuple[int, int] | None = None,
                        timeout_s: float = 10.0) -> tuple[InputShape, ...]:
    """The ``--shape`` a served model needs, from its config: none when every input dim is fixed;
    else variable H and W at ``shape_hw``, or at the ``dynamic_shape.opt`` of the card embedded
    in the model's config (an ensemble: in its first step's model's config)."""
    with ServedModel.connect(protocol, url, model, timeout_s=timeout_s) as served:
        served.check_ready(server_ready=False)
        variable = [i for i in served.config().get("input", []) if -1 in [int(d) for d in i.get("dims", [])]]
        if not variable:
            return ()
        step = served.first_step()
        card = _card_or_none(served) or (_card_or_none(served.model(step)) if step else None)
    hw = shape_hw or (card.dynamic_shape.opt if card is not None and card.dynamic_shape is not None else None)
    if hw is None:
        raise PerfError(f"model {model!r} has variable input dims and no card with a dynamic_shape in its "
                        f"config: give shape_hw (height, width)")
    shapes = []
    for spec in variable:
        spatial = iter(hw)
        shapes.append(InputShape(spec["name"], tuple(next(spatial, 1) if int(d) == -1 else int(d)
                                                     for d in spec["dims"])))
    return tuple(shapes)


def _card_or_none(served: ServedModel) -> ModelCard | None:
    """The card in the served config; None without one or when it does not parse."""
    try:
        return served.card()
    except CardError:
        return None


@dataclass(frozen=True)
class PerfSpec:
    """One perf_analyzer run. Field names follow the flags they become (see :meth:`argv`)."""

    model: str
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    batch_size: int = 1
    concurrency: ConcurrencyRange = ConcurrencyRange(1, 1)
    measurement_mode: str = "time_windows"
    measurement_interval_ms: int = 5000
    measurement_request_count: int = 50
    stability_pct: float = 10.0
    percentile: int | None = None
    shared_memory: str = "none"
    output_shared_memory_bytes: int | None = None
    max_trials: int = 10
    input_data: str = "random"
    async_mode: bool = False
    model_version: str | None = None
    verbose_csv: bool = True
    timeout_s: float = 300.0
    input_shapes: tuple[InputShape, ...] = ()   # --shape for inputs with variable dims
    request_count: int | None = None  # one measurement of exactly this many requests, no stability criterion

    def __post_init__(self) -> None:
        if not self.model:
            raise PerfError("model name must not be empty")
        if self.protocol not in PROTOCOLS:
            raise PerfError(f"protocol {self.protocol!r} not one of {', '.join(PROTOCOLS)}")
        if self.measurement_mode not in MEASUREMENT_MODES:
            raise PerfError(f"measurement mode {self.measurement_mode!r} not one of {', '.join(MEASUREMENT_MODES)}")
        if self.shared_memory not in SHARED_MEMORY:
            raise PerfError(f"shared memory {self.shared_memory!r} not one of {', '.join(SHARED_MEMORY)}")
        if self.batch_size < 1:
            raise PerfError(f"batch size must be >= 1 (got {self.batch_size})")
        if self.measurement_interval_ms < 1 or self.measurement_request_count < 1:
            raise PerfError("measurement interval and request count must be >= 1")
        if not 0 < self.stability_pct <= 100:
            raise PerfError(f"stability percentage must lie in (0, 100] (got {self.stability_pct})")
        if self.percentile is not None and not 1 <= self.percentile <= 99:
            raise PerfError(f"percentile must lie in 1..99 (got {self.percentile})")
        if self.max_trials < 1:
            raise PerfError(f"max trials must be >= 1 (got {self.max_trials})")
        if self.output_shared_memory_bytes is not None and self.output_shared_memory_bytes < 1:
            raise PerfError("output shared memory size must be positive")
        if self.timeout_s <= 0:
            raise PerfError("timeout must be positive")
        if self.request_count is not None and self.request_count < 1:
            raise PerfError(f"request count must be >= 1 (got {self.request_count})")

    def at(self, batch_size: int, concurrency: int) -> "PerfSpec":
        """This spec for a single point."""
        return replace(self, batch_size=batch_size, concurrency=ConcurrencyRange(concurrency, concurrency))

    def _measurement_flags(self) -> list[str]:
        if self.request_count is not None:  # a fixed load: perf_analyzer measures once, never "unstable"
            return ["--request-count", str(self.request_count)]
        flags = ["--measurement-mode", self.measurement_mode]
        if self.measurement_mode == "time_windows":
            flags += ["--measurement-interval", str(self.measurement_interval_ms)]
        else:
            flags += ["--measurement-request-count", str(self.measurement_request_count)]
        return flags + ["-s", f"{self.stability_pct:g}", "--max-trials", str(self.max_trials)]

    def argv(self, binary: str | os.PathLike, csv_path: str | os.PathLike) -> list[str]:
        """The exact perf_analyzer command line that writes its report to ``csv_path``."""
        argv = [str(binary), "-m", self.model]
        if self.model_version is not None:
            argv += ["-x", str(self.model_version)]
        argv += ["-u", self.url, "-i", self.protocol, "-b", str(self.batch_size),
                 "--concurrency-range", str(self.concurrency)]
        argv += self._measurement_flags()
        if self.percentile is not None:
            argv += ["--percentile", str(self.percentile)]
        argv += ["--input-data", self.input_data, "--shared-memory", self.shared_memory]
        if self.output_shared_memory_bytes is not None:
            argv += ["--output-shared-memory-size", str(self.output_shared_memory_bytes)]
        for shape in self.input_shapes:
            argv += ["--shape", str(shape)]
        if self.async_mode:
            argv.append("--async")
        argv += ["-f", str(csv_path)]
        if self.verbose_csv:
            argv.append("--verbose-csv")
        return argv

    def to_dict(self) -> dict:
        """Every field, JSON-ready (the concurrency range and input shapes as their flag text)."""
        d = asdict(self)
        d["concurrency"] = str(self.concurrency)
        d["input_shapes"] = [str(shape) for shape in self.input_shapes]
        return d
