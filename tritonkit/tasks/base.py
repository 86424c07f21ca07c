"""The task plug-in interface, its registry, the shared stream options and the typed eval result.

A task (classify, detect, segment ...) is a :class:`Task` subclass registered under its card
task name with :func:`register_task` (in its package's ``task.py``, found by
:func:`tritonkit.tasks.import_task_modules`), in the style of torchvision's ``register_model`` /
``get_model`` / ``list_models``. It declares, as data and small methods:

* ``options_type``: its options dataclass, a :class:`StreamOptions` (or :class:`DatasetOptions`)
  subclass; each field's CLI flag is declared on the field (:func:`arg`), so the CLI builds
  its flags from the dataclass alone;
* ``open_dataset``: items for the run-stream engine, files excluded up front and a description;
* ``adapter``: the :class:`tritonkit.client.pipeline.TaskAdapter` (prepare / postprocess / summarize);
* ``metrics_type`` and :meth:`Task.metrics`: its typed metrics (with ``reference_*`` fields);
* :meth:`Task.server_chains`: its server-side postprocess (a
  :class:`~tritonkit.served.PostprocessChain` per variant, e.g. one NMS chain per NMS profile),
  which ``tritonkit repo --server-postprocess`` writes and ``eval --server-postprocess`` calls;
* ``timing``: run-model / run-stream rows per batch size, for the model and (where the eval uses
  it) its server-side chain; generic, with :meth:`Task.timing_row` for the task's columns;
* ``markdown`` and ``summary_rows``: its report section and the CLI's summary rows;
* :meth:`Task.predict_adapter` and :meth:`Task.predict_chain`: what ``tritonkit.connect(...).predict``
  runs (the eval's per-image code without ground truth; its adapter's ``result`` type lives in the
  task package's ``result.py``) and the server-side postprocess it calls where served;
* :meth:`Task.output_agreement`: how a served output agrees with the in-process reference in
  the task's terms (validation's correctness check): top-1 agreement of ``[N, C]`` scores by
  default, per-pixel argmax agreement for segment.

:func:`tritonkit.evaluate.evaluate` runs any registered task through one template.
"""

from __future__ import annotations

import abc
import string
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.endpoints import parse_url
from tritonkit.client.pipeline import decode_after
from tritonkit.errors import CardError, ServerError, TritonkitError
from tritonkit.served import PostprocessChain, chain_card
from tritonkit.tasks import import_task_modules
from tritonkit.triton import DEFAULT_PORTS, PROTOCOLS

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


ARG_KINDS = ("str", "path", "int", "float", "ints", "choice", "switch", "clear", "off")


@dataclass(frozen=True, kw_only=True)
class ArgSpec:
    """One CLI flag of an options field, as data. ``kind``: ``str``, ``path``, ``int``, ``float``,
    ``ints`` (a comma list of positive integers), ``choice``, ``switch`` (store_true), ``clear``
    (a switch that sets ``field`` to None) or ``off`` (a switch that sets ``field`` to False).
    ``default`` is the field's default unless given (:func:`option_arguments` fills ``field``
    and ``default`` from the dataclass)."""

    flag: str
    help: str
    field: str = ""
    kind: str = "str"
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise TritonkitError(f"ArgSpec {self.flag}: unknown kind {self.kind!r}")

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def sets_value(self) -> bool:
        """Whether the flag takes a value (not a switch)."""
        return self.kind not in ("switch", "clear", "off")


def arg(flag: str, help: str, **kwargs: Any) -> dict:
    """Field metadata declaring the field's CLI flag: ``field(default=..., metadata=arg("--limit",
    "evaluate only N images", kind="int"))``."""
    return {"args": (ArgSpec(flag=flag, help=help, **kwargs),)}


def args(*specs: ArgSpec) -> dict:
    """Field metadata declaring several flags of one field (``--md5`` and ``--no-md5-check``)."""
    return {"args": specs}


def option_arguments(options_type: type) -> tuple[ArgSpec, ...]:
    """Every flag the fields of ``options_type`` declare (:func:`arg`), with ``field`` and (for
    flags that take a value) ``default`` taken from the dataclass, in field order."""
    out = []
    for f in fields(options_type):
        for spec in f.metadata.get("args", ()):
            default = spec.default
            if spec.sets_value and default is None and f.default is not MISSING:
                default = f.default
            out.append(replace(spec, field=f.name, default=default))
    return tuple(out)


def field_flags(options_type: type) -> dict[str, str]:
    """options field -> the flag that sets it (the first one declared)."""
    flags: dict[str, str] = {}
    for spec in option_arguments(options_type):
        flags.setdefault(spec.field, spec.flag)
    return flags


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """The options every eval task shares: which model, which server, how to stream, where to write."""

    model: str | None = field(default=None, metadata=arg(
        "--model", "card name (tritonkit cards) or a card .json file, checked against the card the server carries; "
                   "or the served model's name (its served card is used)"))
    model_name: str | None = field(default=None, metadata=arg(
        "--model-name", "name the model is served under (default: the card's name); alone, the eval uses the card "
                        "the server carries"))
    url: str | None = field(default=None, metadata=arg(
        "--url", "host:port of the server (default 127.0.0.1:8001 grpc / :8000 http); several: a comma list or a "
                 "DNS name with several addresses (a headless Service), requests spread over the ready ones, failed "
                 "ones retried on another"))
    protocol: str = field(default="grpc", metadata=arg("--protocol", "grpc or http", kind="choice", choices=PROTOCOLS))
    shm: bool = field(default=False, metadata=arg("--shm", "send inputs/outputs through system shared memory",
                                                  kind="switch"))
    batch_sizes: tuple[int, ...] = field(default=(1,), metadata=arg(
        "--batch-sizes", "the metric at the first, run-model/run-stream timing at each (default 1)", kind="ints",
        metavar="1,4,8"))
    workers: int = field(default=2, metadata=arg("--workers", "decode+preprocess threads (default 2)", kind="int"))
    in_flight: int = field(default=2, metadata=arg("--in-flight", "requests on the wire at once (default 2)",
                                                   kind="int"))
    pool: str = field(default="thread", metadata=arg(
        "--pool", "decode+preprocess pool kind (threads measured faster here)", kind="choice",
        choices=("thread", "process")))
    timing_images: int = field(default=64, metadata=arg(
        "--timing-images", "images per batch size for timing (default 64)", kind="int"))
    out: Path = field(default=Path("reports/eval"), metadata=arg("--out", "output folder", kind="path"))
    resume: bool = field(default=False, metadata=arg(
        "--resume", "skip images already in the output folder's checkpoint (.jsonl)", kind="switch"))
    reference_onnx: Path | None = field(default=None, metadata=arg(
        "--reference-onnx", "also run the inputs through this ONNX in-process", kind="path"))
    timeout_s: float = field(default=60.0, metadata=arg("--timeout", "per-request deadline in seconds", kind="float"))
    retries: int = field(default=3, metadata=arg("--retries", "retries when the server is unavailable", kind="int"))
    progress: bool = field(default=True, metadata=arg("--no-progress", "no progress bar", kind="off"))
    # send encoded files to the served model's ``<name>_bytes`` ensemble (the server decodes and
    # preprocesses), and compare with client-side preprocessing per batch size
    server_preprocess: bool = field(default=False, metadata=arg(
        "--server-preprocess", "send encoded files to <model>_bytes (tritonkit repo --server-preprocess): the server "
                               "decodes and preprocesses; the report compares it with client-side preprocessing",
        kind="switch"))
    # the results come from the task's server-side postprocess chain (its ensemble), and timing
    # covers client-side and server-side postprocessing
    server_postprocess: bool = field(default=False, metadata=arg(
        "--server-postprocess", "results from the task's server-side postprocess ensemble (tritonkit repo "
                                "--server-postprocess: NMS, argmax ...); timing for client- and server-side "
                                "postprocessing", kind="switch"))
    ensemble_name: str | None = field(default=None, metadata=arg(
        "--ensemble-name", "served name of the postprocess ensemble (with --server-postprocess; default: "
                           "<model>_ensemble_<variant>)"))

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise OptionsError("{protocol} must be one of {known} (got {got})", known=", ".join(PROTOCOLS),
                               got=self.protocol)
        if self.url is None:
            object.__setattr__(self, "url", f"127.0.0.1:{DEFAULT_PORTS[self.protocol]}")
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
        if self.ensemble_name is not None and not self.server_postprocess:
            raise OptionsError("{ensemble_name} names the ensemble {server_postprocess} calls: give both")
        try:
            parse_url(self.url, 0)  # one host:port or a comma list of them (names resolve at connect)
        except ServerError as exc:
            raise OptionsError("{url}: {why}", why=str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class DatasetOptions(StreamOptions):
    """:class:`StreamOptions` plus what every dataset takes: where it is (``data``) and how many
    of its images to evaluate (``limit``). Tasks whose data needs more add their own fields."""

    data: Path | None = field(default=None, metadata=arg("--data", "the dataset (see the task's help)", kind="path"))
    limit: int | None = field(default=None, metadata=arg("--limit", "evaluate only N images", kind="int"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.limit is not None and self.limit < 1:
            raise OptionsError("{limit} must be >= 1 (got {got})", got=self.limit)


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
    """The model the eval calls: its served name, its contract as a card, the client class (None:
    the plain Triton client) and task details for the result."""

    name: str
    card: ModelCard
    client_type: type | None = None
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
class PredictSettings:
    """How an application's client (``tritonkit.connect``) postprocesses: ``nms_profile`` for
    detectors (None: ``speed`` where the card has it, else its first profile, as eval times)."""

    nms_profile: str | None = None


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
    metric_label: ClassVar[str] = "accuracy"     # what the first batch size measures ("mAP" ...)
    result_json: ClassVar[str] = ""
    result_md: ClassVar[str] = ""
    checkpoint: ClassVar[str] = ""
    e2e_time_covers: ClassVar[str] = ""
    postprocess_label: ClassVar[str] = "postprocess"  # the timing rows' key for where it ran ("nms" ...)

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

    @abc.abstractmethod
    def timing_adapter(self, card: ModelCard, options: StreamOptions | None = None) -> Any:
        """An adapter for timing-only streams over images without ground truth (items with
        ``key`` and ``read_bytes()``; a ``label`` of 0 where they have one)."""

    # -- the server-side postprocess
    def server_chains(self, card: ModelCard, variants: Sequence[str] = ()) -> list[PostprocessChain]:
        """The task's server-side postprocess chains for ``card`` (``variants``: which ones, e.g.
        NMS profile names; empty: the task's default set). Default: none."""
        if variants:
            raise CardError(f"task {self.name!r} has no server-side postprocess variants ({', '.join(variants)})")
        return []

    def eval_chain(self, card: ModelCard, options: StreamOptions) -> PostprocessChain:
        """The chain whose ensemble an eval with ``server_postprocess`` calls. Default: the first."""
        chains = self.server_chains(card)
        if not chains:
            raise CardError(f"task {self.name!r} has no server-side postprocess for model {card.name!r}")
        return chains[0]

    def timing_chain(self, card: ModelCard, options: StreamOptions) -> PostprocessChain:
        """The chain timed as server-side postprocessing. Default: :meth:`eval_chain`."""
        return self.eval_chain(card, options)

    def details(self, options: StreamOptions, card: ModelCard) -> Any:
        """The task's served set-up for the result (a dataclass with ``to_dict``), or None."""
        return None

    def served(self, options: StreamOptions, card: ModelCard) -> Served:
        """The model to call: the card's model, or (``server_postprocess``) the ensemble of
        :meth:`eval_chain` with the ensemble's contract."""
        model = options.model_name or card.name
        details = self.details(options, card)
        if not options.server_postprocess:
            return Served(model, card, None, details)
        chain = self.eval_chain(card, options)
        name = options.ensemble_name or chain.names(model).ensemble
        return Served(name, chain_card(card, chain, name), None, details)

    def timing_targets(self, options: StreamOptions, card: ModelCard) -> list[tuple[str, Served]]:
        """``(where, served)`` pairs the timing covers: client-side postprocessing, and with
        ``server_postprocess`` the server-side chain."""
        model = options.model_name or card.name
        targets = [("client", Served(model, card))]
        if options.server_postprocess:
            chain = self.timing_chain(card, options)
            name = chain.names(model).ensemble
            if options.ensemble_name and chain == self.eval_chain(card, options):
                name = options.ensemble_name
            targets.append(("server", Served(name, chain_card(card, chain, name))))
        return targets

    # -- the application's client (tritonkit.connect)
    def predict_adapter(self, card: ModelCard, settings: PredictSettings) -> Any:
        """The adapter ``Model.predict`` runs: the eval's per-image code without ground truth.
        Default: :meth:`timing_adapter`."""
        return self.timing_adapter(card)

    def predict_chain(self, card: ModelCard, settings: PredictSettings) -> PostprocessChain | None:
        """The server-side postprocess ``Model.predict`` calls where its ensemble is served (None:
        none). Default: the first of :meth:`server_chains`."""
        chains = self.server_chains(card)
        return chains[0] if chains else None

    # -- hooks with defaults
    def metrics(self, summary: Mapping[str, Any], has_reference: bool) -> TaskMetrics:
        return self.metrics_type.from_summary(summary, has_reference)

    def after_stream(self, run: Any, stream: Any) -> None:
        """Called once the accuracy stream is scored (e.g. write a results file). Default: nothing."""

    def timing(self, run: Any, items: Sequence[Any]) -> TimingOutcome:
        """Run model vs run stream at every batch size over ``items`` (``run`` is the
        :class:`tritonkit.evaluate.EvalRun`), for every :meth:`timing_targets` entry. A model
        needed only for timing that is not served is a note, not a failure: accuracy is already
        written. Run model is one request then the adapter's decode of each image in it."""
        if not items:
            return TimingOutcome([], [])
        adapter = self.timing_adapter(run.card, run.options)
        rows: list[dict] = []
        notes: list[str] = []
        for where, served in self.timing_targets(run.options, run.card):
            try:
                client = run.client_for(served)
            except ServerError as exc:
                notes.append(f"{where}-side {self.postprocess_label} timing skipped: {exc}")
                continue
            try:
                for row, timed in run.timing_rows(items, adapter, client, label=f" ({where} {self.postprocess_label})",
                                                  submit=decode_after(client, adapter)):
                    rows.append(self.timing_row(run, where, row, timed))
            finally:
                run.release(client)
        return TimingOutcome(rows, notes)

    def timing_row(self, run: Any, where: str, row: Mapping[str, Any], timed: Any) -> dict:
        """One timing row: where the postprocess ran, then the generic columns. Tasks add theirs."""
        return {self.postprocess_label: where, **row}

    def timing_row_label(self, row: Mapping[str, Any]) -> str:
        return f"bs{row['batch_size']} {row.get(self.postprocess_label, 'client')} {self.postprocess_label}:"

    def output_agreement(self, served: np.ndarray, reference: np.ndarray) -> Agreement | None:
        """How a served output agrees with the in-process reference's output in this task's
        terms (None: no such measure for it). Default: :func:`top1_agreement`."""
        return top1_agreement(served, reference)


def class_names(card: ModelCard) -> tuple[str, ...]:
    """The card's class names; the indices as text when its labels cannot be read here."""
    try:
        return tuple(card.label_names())
    except TritonkitError:
        return tuple(str(i) for i in range(card.num_classes))


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


def _registered() -> dict[str, type[Task]]:
    """The registry, after importing every task package's ``task`` module (once)."""
    import_task_modules("task")
    return _TASKS


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_registered())


def get_task(name: str) -> Task:
    """The task registered under ``name`` (a fresh instance)."""
    try:
        return _registered()[name]()
    except KeyError:
        raise CardError(f"unknown task {name!r} (known: {', '.join(sorted(_TASKS))})") from None


def task_for_card(card: ModelCard) -> Task:
    """The task a card's model is evaluated with."""
    return get_task(card.task)
