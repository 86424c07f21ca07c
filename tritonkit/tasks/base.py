"""The task plug-in interface, its registry, the shared stream options and the typed eval result.

A task (classify, detect, segment ...) is a :class:`Task` subclass registered under its card
task name with :func:`register_task`, in the style of torchvision's ``register_model`` /
``get_model`` / ``list_models``. It declares, as data and small methods:

* ``options_type``: its options dataclass, a :class:`StreamOptions` subclass adding the
  task's own fields (dataset paths, NMS profile ...);
* ``arguments``: its own CLI flags as :class:`ArgSpec` data (the CLI turns them into argparse
  arguments; the common stream flags are the CLI's own);
* ``open_dataset``: items for the run-stream engine, files excluded up front and a description;
* ``adapter``: the :class:`tritonkit.client.pipeline.TaskAdapter` (prepare / postprocess / summarize);
* ``metrics_type`` and :meth:`Task.metrics`: its typed metrics (with ``reference_*`` fields);
* ``served``: the server-side postprocess, if any (the model actually called and its contract);
* ``timing``: run-model / run-stream rows per batch size (a hook; the default is generic);
* ``markdown`` and ``summary_rows``: its report section and the CLI's summary rows;
* :meth:`Task.output_agreement`: how a served output agrees with the in-process reference in
  the task's terms (validation's correctness check): top-1 agreement of ``[N, C]`` scores by
  default (classify; detect as well), per-pixel argmax agreement for segment.

:func:`tritonkit.evaluate.evaluate` runs any registered task through one template.
"""

from __future__ import annotations

import abc
import string
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.endpoints import parse_url
from tritonkit.errors import CardError, ServerError, TritonkitError

FLATTEN = {"flatten": True}      # field metadata: the field's dict is merged into its parent's
OMIT_NONE = {"omit_none": True}  # field metadata: the key is left out while the value is None
REFERENCE = {"reference": True}  # field metadata: a reference_* metric, present only with a reference


class OptionsError(TritonkitError):
    """An invalid option value. ``template`` names the fields as ``{field}`` placeholders, so the
    library message names fields and the CLI can name its flags instead (:meth:`render`)."""

    def __init__(self, template: str, **values: Any) -> None:
        self.template = template
        self.values = values
        super().__init__(self.render({}))

    def render(self, names: Mapping[str, str]) -> str:
        """The message with each ``{field}`` replaced by ``names[field]`` (default: the field name)."""
        mapping = {name: names.get(name, name) for _, name, _, _ in string.Formatter().parse(self.template) if name}
        return self.template.format_map({**mapping, **self.values})


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """The options every eval task shares: which model, which server, how to stream, where to write."""

    model: str | None = None       # a card (name or file), or a served model's name; None: the served card
    model_name: str | None = None  # the served model's name (default: the card's)
    out: Path = Path("reports/eval")
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    shm: bool = False
    batch_sizes: tuple[int, ...] = (1,)
    workers: int = 2
    in_flight: int = 2
    pool: str = "thread"
    timing_images: int = 64
    resume: bool = False
    reference_onnx: Path | None = None
    timeout_s: float = 60.0
    retries: int = 3
    progress: bool = True
    # send encoded files to the served model's ``<name>_bytes`` ensemble (the server decodes and
    # preprocesses), and compare with client-side preprocessing per batch size
    server_preprocess: bool = False

    def __post_init__(self) -> None:
        if not self.model and not self.model_name:
            raise OptionsError("give {model} (a card, or a served model's name) or {model_name}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise OptionsError("{batch_sizes} must be positive integers (got {got})", got=list(self.batch_sizes))
        if self.timing_images < 0:
            raise OptionsError("{timing_images} must be >= 0")
        if self.workers < 1 or self.in_flight < 1:
            raise OptionsError("{workers} and {in_flight} must be >= 1 (got {w}, {f})",
                               w=self.workers, f=self.in_flight)
        if self.server_preprocess and (self.shm or self.reference_onnx is not None):
            raise OptionsError("{server_preprocess} sends encoded files: it takes neither {shm} nor {reference_onnx}")
        try:
            parse_url(self.url, 0)  # one host:port or a comma list of them (names resolve at connect)
        except ServerError as exc:
            raise OptionsError("{url}: {why}", why=str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class ArgSpec:
    """One task-specific CLI flag, as data. ``kind``: ``str``, ``path``, ``int``, ``choice``,
    ``switch`` (store_true) or ``clear`` (a switch that sets ``field`` to None)."""

    flag: str
    field: str
    help: str
    kind: str = "str"
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("str", "path", "int", "choice", "switch", "clear"):
            raise TritonkitError(f"ArgSpec {self.flag}: unknown kind {self.kind!r}")

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class OpenedData:
    """A task's dataset, ready to stream: ``items`` (each with ``key`` and ``read_bytes()``),
    ``excluded`` files found but not evaluable (``{"path", "reason"}``), ``description`` (the
    result's ``dataset`` entry) and ``identity`` (what a checkpoint must agree on to be resumed)."""

    items: Sequence[Any]
    excluded: list[dict]
    description: dict
    identity: dict
    source: Any = field(default=None, repr=False)  # the task's own dataset object (annotations ...)


@dataclass(frozen=True)
class Served:
    """The model the eval calls: its served name, its contract as a card, whether a server-side
    postprocess sits behind it, the client class, and task details for the result."""

    name: str
    card: ModelCard
    client_type: type
    details: Any = None


def to_flat_dict(obj: Any) -> dict:
    """The one serialization rule for results: dataclass fields in order, ``FLATTEN`` fields
    merged into the parent, ``OMIT_NONE`` fields left out while None, nested values through
    their ``to_dict()``, other nested dataclasses through ``dataclasses.asdict``."""
    out: dict = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("omit_none") and value is None:
            continue
        if f.metadata.get("flatten"):
            out.update(value.to_dict() if value is not None else {})
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


@dataclass(kw_only=True)
class TaskMetrics:
    """Base of a task's metrics. Fields marked ``REFERENCE`` (``reference_<metric>``) come from
    the in-process reference run and are serialized only when there was one."""

    has_reference: bool = field(default=False, repr=False)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], has_reference: bool) -> "TaskMetrics":
        """From :func:`tritonkit.client.pipeline.summarize`'s dict (missing keys -> defaults)."""
        names = {f.name for f in fields(cls) if f.init and f.name != "has_reference"}
        return cls(has_reference=has_reference, **{k: summary[k] for k in names if k in summary})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "has_reference"
                and (self.has_reference or not f.metadata.get("reference"))}


@dataclass(frozen=True)
class Agreement:
    """How often a served output picks what the reference picks: ``metric`` names the measure
    (``top1_agreement``, ``pixel_agreement``), ``value`` is a fraction in [0, 1]. ``labels``: the
    served output holds class ids (a mask), so agreement, not a numeric error, judges it."""

    metric: str
    value: float
    labels: bool = False


def top1_agreement(served: np.ndarray, reference: np.ndarray) -> Agreement | None:
    """Top-1 agreement of ``[N, C]`` scores (C > 1); None for other outputs or differing shapes."""
    a, b = np.asarray(served), np.asarray(reference)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] < 2:
        return None
    return Agreement("top1_agreement", float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))))


@dataclass(frozen=True)
class TimingOutcome:
    """What a task's timing hook measured: ``rows`` (one dict per batch size and variant) and
    ``notes`` (None for tasks that never skip a variant; a list otherwise)."""

    rows: list[dict]
    notes: list[str] | None = None


class Task(abc.ABC):
    """One eval task. Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""                    # "Classification", used in reports
    description: ClassVar[str] = ""              # the CLI's help text (first line: the short help)
    options_type: ClassVar[type[StreamOptions]] = StreamOptions
    metrics_type: ClassVar[type[TaskMetrics]] = TaskMetrics
    arguments: ClassVar[tuple[ArgSpec, ...]] = ()
    metric_label: ClassVar[str] = "accuracy"     # what the first batch size measures ("mAP" ...)
    result_json: ClassVar[str] = ""
    result_md: ClassVar[str] = ""
    checkpoint: ClassVar[str] = ""
    e2e_time_covers: ClassVar[str] = ""
    has_labels: ClassVar[bool] = False           # served with a Triton labels file on output 0

    # -- what every task implements
    @abc.abstractmethod
    def open_dataset(self, options: StreamOptions, card: ModelCard) -> OpenedData: ...

    @abc.abstractmethod
    def adapter(self, options: StreamOptions, card: ModelCard, data: OpenedData) -> Any: ...

    @abc.abstractmethod
    def markdown(self, result: Mapping[str, Any]) -> str:
        """The markdown report from the result's dict (as written to ``result_json``)."""

    @abc.abstractmethod
    def summary_rows(self, result: Any) -> list[tuple[str, str]]:
        """(label, value) rows of the task's metrics for the CLI summary of an EvalResult."""

    # -- hooks with defaults
    def served(self, options: StreamOptions, card: ModelCard, client_type: type) -> Served:
        """The model to call. Default: the card's model itself (no server-side postprocess)."""
        return Served(options.model_name or card.name, card, client_type)

    def metrics(self, summary: Mapping[str, Any], has_reference: bool) -> TaskMetrics:
        return self.metrics_type.from_summary(summary, has_reference)

    def after_stream(self, run: Any, stream: Any) -> None:
        """Called once the accuracy stream is scored (e.g. write a results file). Default: nothing."""

    def timing(self, run: Any, items: Sequence[Any]) -> TimingOutcome:
        """Run model vs run stream at every batch size over ``items`` (``run`` is the
        :class:`tritonkit.evaluate.EvalRun`). Default: the accuracy client and adapter."""
        if not items:
            return TimingOutcome([])
        return TimingOutcome([row for row, _ in run.timing_rows(items, run.adapter, run.client)])

    @abc.abstractmethod
    def timing_adapter(self, card: ModelCard) -> Any:
        """An adapter for timing-only streams over images without ground truth (items with
        ``key`` and ``read_bytes()``; a ``label`` of 0 where they have one)."""

    def timing_row_label(self, row: Mapping[str, Any]) -> str:
        return f"bs{row['batch_size']}"

    def output_agreement(self, served: np.ndarray, reference: np.ndarray) -> Agreement | None:
        """How a served output agrees with the in-process reference's output in this task's
        terms (None: no such measure for it). Default: :func:`top1_agreement`."""
        return top1_agreement(served, reference)


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    """Class decorator: register a :class:`Task` subclass under ``name`` (a card task name).
    A second registration of the same name is an error."""
    def wrap(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TritonkitError(f"register_task({name!r}): {cls!r} is not a Task subclass")
        if name in _TASKS:
            raise TritonkitError(f"task {name!r} is already registered ({_TASKS[name].__qualname__})")
        cls.name = name
        _TASKS[name] = cls
        return cls
    return wrap


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """The task registered under ``name`` (a fresh instance)."""
    try:
        return _TASKS[name]()
    except KeyError:
        raise CardError(f"unknown task {name!r} (known: {', '.join(sorted(_TASKS))})") from None


def task_for_card(card: ModelCard) -> Task:
    """The task a card's model is evaluated with."""
    return get_task(card.task)


def has_labels(card: ModelCard) -> bool:
    """Whether the card's model is served with a labels file (classifiers); False for a card
    whose task has no registered plug-in."""
    cls = _TASKS.get(card.task)
    return bool(cls and cls.has_labels)
