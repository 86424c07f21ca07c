"""One eval path for every task: ``evaluate(task, options) -> EvalResult``.

The template (:class:`EvalRun`): look the card up and check it belongs to the task, open the
task's dataset, build the run identity, connect to the served model (the task's server-side
postprocess decides which), stream every image for accuracy (checkpointed, resumable; with an
in-process onnxruntime reference when asked), score it, compute the FlagPerf stream metrics,
write the reports, then time run model vs run stream at every batch size (a task hook) and
write the reports again. The accuracy results are on disk before the timing starts, and every
finished image is in the checkpoint.

FlagPerf's validation fields, for every task: ``p_val_whole`` (images over the wall time of the
accuracy stream plus scoring), ``p_val_core`` (images over the compute time of inference plus
metric: the time a request was in flight, the per-image postprocess and the scoring), and
``mem``: on a GPU Triton's ``nv_gpu_memory_used_bytes`` from the server's ``/metrics``, else the
resident memory of the tritonserver process tree (``mem_source`` says which, or why ``mem`` is
None: a server on another host, or no tritonserver found behind the port).

The card comes from ``--model`` and is checked against the card the served config carries
(:func:`resolve_card`); without a card, the served one is used.

Raises :class:`~tritonkit.errors.TritonkitError` subclasses for unusable input (missing
dataset, unknown model, unreachable server, card/server mismatch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tritonkit._lazy import lazy_import
from tritonkit.cards import REGISTRY, ModelCard, get_card
from tritonkit.client.checkpoint import OutputLock
from tritonkit.client.endpoints import endpoints_markdown
from tritonkit.client.infer import ClientOptions, EncodedInfer, TritonInfer
from tritonkit.client.pipeline import (
    CallableBackend, EncodedAdapter, EngineOptions, StreamResult, run_stream, summarize)
from tritonkit.client.timing import batch_timing, flagperf_metrics, run_model_times
from tritonkit.contract import card_differences
from tritonkit.errors import CardError, ServerError, TritonkitError
from tritonkit.host import server_memory
from tritonkit.onnx_contract import check_onnx_against_card
from tritonkit.report import markdown_table, write_json, write_text
from tritonkit.served import bytes_ensemble_name
from tritonkit.served_model import ServedModel
from tritonkit.tasks.base import (
    FLATTEN, OMIT_NONE, Served, StreamOptions, Task, TaskMetrics, get_task, list_tasks, to_flat_dict)

ort = lazy_import("onnxruntime")


@dataclass(kw_only=True)
class EvalResult:
    """One eval run. ``metrics`` (the task's typed metrics) and ``details`` (the task's served
    set-up, e.g. detection's NMS profiles) are flattened into the top level by :meth:`to_dict`,
    which is what ``<task>.json`` holds; the timing fields appear once the timing has run."""

    task: str
    model: str
    served_model: str
    details: Any = field(default=None, metadata=FLATTEN)
    url: str
    protocol: str
    shm: bool
    dataset: dict
    batch_size: int
    batch_sizes: list[int]
    workers: int
    in_flight: int
    pool: str
    published: dict
    images: int
    errors: list[dict]
    notes: list[dict]
    metrics: TaskMetrics = field(metadata=FLATTEN)
    resumed: int
    stream_images: int  # images sent in this call (the stream metrics cover these)
    reference_onnx: str | None = field(default=None, metadata=OMIT_NONE)
    max_abs_diff: dict | None = field(default=None, metadata=OMIT_NONE)
    e2e_time: float
    p_infer_whole: float | None
    p_infer_core: float | None
    latency: dict
    p_val_whole: float | None = None
    p_val_core: float | None = None
    mem: int | None = None
    mem_source: str = ""
    e2e_time_covers: str
    stages: dict
    checkpoint: str
    batch_timing: list[dict] | None = field(default=None, metadata=OMIT_NONE)
    timing_notes: list[str] | None = field(default=None, metadata=OMIT_NONE)
    timing_images: int | None = field(default=None, metadata=OMIT_NONE)
    retries: int | None = field(default=None, metadata=OMIT_NONE)
    run_notes: list[str] | None = field(default=None, metadata=OMIT_NONE)  # resume and lock notes
    preprocess_comparison: list[dict] | None = field(default=None, metadata=OMIT_NONE)
    # several endpoints: each one's share, errors and latency, out/in events, traffic per phase
    endpoints: Any = field(default=None, metadata=OMIT_NONE)

    def to_dict(self) -> dict:
        return to_flat_dict(self)


def reference_backend(card: ModelCard, onnx_path: Path) -> CallableBackend:
    """An in-process onnxruntime backend for the same inputs (CPU provider)."""
    if not Path(onnx_path).is_file():
        raise TritonkitError(f"{onnx_path}: reference ONNX not found")
    check_onnx_against_card(card, Path(onnx_path))
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise TritonkitError(f"{onnx_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
    names = [o.name for o in card.outputs]

    def run(batch):
        return dict(zip(names, session.run(names, {card.input.name: batch})))

    return CallableBackend(run, workers=1)


def validation_throughput(stream: StreamResult, metric_s: float) -> dict:
    """FlagPerf's ``p_val_whole`` (images over the stream's wall time plus the scoring time) and
    ``p_val_core`` (images over inference busy time + per-image postprocess + scoring)."""
    n = stream.timing.images
    whole = stream.wall_s + metric_s
    core = stream.timing.infer_busy_s() + stream.timing.totals.get("postprocess", 0.0) + metric_s
    return {"p_val_whole": n / whole if n and whole > 0 else None,
            "p_val_core": n / core if n and core > 0 else None}


def fetch_served_card(options: StreamOptions, name: str) -> ModelCard | None:
    """The card the served model ``name`` carries in its config (None when it carries none).
    An unreachable server or a model it does not serve raises a one-line ServerError."""
    with ServedModel.connect(options.protocol, options.url, name, timeout_s=options.timeout_s) as served:
        return served.card()


def _given_card(model: str | None) -> ModelCard | None:
    """The card ``--model`` names (a built-in card or a card file); None when it names neither."""
    if model is None or (not model.endswith(".json") and model not in REGISTRY):
        return None
    return get_card(model)


def resolve_card(options: StreamOptions) -> tuple[ModelCard, str]:
    """The card the eval runs with and the served model's name.

    ``model`` a card (built-in name or file): the served model (``model_name``, else the card's
    name) must carry the same card, field for field (:func:`tritonkit.contract.card_differences`),
    or none at all; a different one is refused with one line per differing field. ``model`` a
    served name that is no card, or only ``model_name``: the card the server carries."""
    given = _given_card(options.model)
    name = options.model_name or (given.name if given is not None else options.model)
    if given is None:
        try:
            card = fetch_served_card(options, name)
        except TritonkitError as exc:
            raise CardError(f"unknown model {name!r}: no built-in card or card file of that name, "
                            f"and the server cannot give its card ({exc})") from None
        if card is None:
            raise CardError(f"model {name!r} is served without a tritonkit card; give its card with --model")
        return card, name
    try:
        served = fetch_served_card(options, name)
    except ServerError:
        return given, name  # connecting reports it, with the server's own words
    diff = card_differences(given, served) if served is not None else []
    if diff:
        raise CardError(f"card {given.name!r} disagrees with the card model {name!r} is served with "
                        f"({len(diff)} fields; evaluate with the served card by leaving out --model "
                        f"and giving --model-name {name}):\n  " + "\n  ".join(diff))
    return given, name


def evaluate(task: str | Task, options: StreamOptions) -> EvalResult:
    """Run the whole eval of ``task`` (a registered name or a :class:`Task`); write
    ``<out>/<task.result_json>`` and ``<task.result_md>``; return the result."""
    task = get_task(task) if isinstance(task, str) else task
    if not isinstance(options, task.options_type):
        raise TritonkitError(f"task {task.name!r} takes {task.options_type.__name__}, "
                             f"got {type(options).__name__}")
    return EvalRun(task, options).run()


class EvalRun:
    """The state of one eval; task hooks receive it (``card``, ``options``, ``client``,
    ``served``, ``adapter``, ``out``, ``connect``, ``timing_rows``)."""

    def __init__(self, task: Task, options: StreamOptions) -> None:
        self.t_start = time.perf_counter()
        self.card, served_name = resolve_card(options)
        self.task, self.options = task, replace(options, model_name=served_name)
        if self.card.task not in list_tasks():
            raise CardError(f"model {self.card.name!r} is a {self.card.task} model; no eval task handles those")
        if self.card.task != task.name:
            raise CardError(f"model {self.card.name!r} is a {self.card.task} model; "
                            f"use `tritonkit eval {self.card.task}`")
        self.served: Served = task.served(options, self.card)
        self.data = task.open_dataset(options, self.card)
        self.out = Path(options.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.adapter = task.adapter(options, self.card, self.data)
        if options.server_preprocess:
            self.served = Served(bytes_ensemble_name(self.served.name), self.served.card, EncodedInfer,
                                 self.served.details)
            self.adapter = EncodedAdapter(self.adapter)
        self.checkpoint = self.out / task.checkpoint
        self.client: TritonInfer | None = None
        self.lock_note: str | None = None

    def run(self) -> EvalResult:
        """The whole eval, holding the output folder's lock (a second run on it is refused)."""
        with OutputLock(self.out, "eval") as lock:
            self.lock_note = lock.note
            return self._run()

    def _run(self) -> EvalResult:
        o = self.options
        reference = reference_backend(self.card, o.reference_onnx) if o.reference_onnx else None
        try:
            self.client = self.connect(self.served)
            result = self._accuracy(reference)
            result.endpoints = self.client.endpoints_report()
            self.write(result)
            items = list(self.data.items[:o.timing_images])
            outcome = self.task.timing(self, items)
            result.batch_timing, result.timing_notes = outcome.rows, outcome.notes
            result.timing_images = len(items)
            if o.server_preprocess and items:
                result.preprocess_comparison = self.compare_preprocessing(items)
            result.retries = self.client.retries_done
            result.endpoints = self.client.endpoints_report()
        finally:
            if self.client is not None:
                self.client.close()
            if reference is not None:
                reference.close()
        self.write(result)
        return result

    def connect(self, served: Served) -> TritonInfer:
        """A connected client for ``served`` (closed again if connecting fails)."""
        o = self.options
        client_type = served.client_type or TritonInfer
        client = client_type(served.card, ClientOptions(
            url=o.url, protocol=o.protocol, model_name=served.name, in_flight=o.in_flight,
            timeout_s=o.timeout_s, retries=o.retries, shm=o.shm), max_batch=max(o.batch_sizes))
        try:
            client.connect()
        except BaseException:
            client.close()
            raise
        return client

    def client_for(self, served: Served) -> TritonInfer:
        """The run's client when it calls ``served`` already, else a newly connected one (give it
        back with :meth:`release`)."""
        same = self.client is not None and served.name == self.client.model_name and \
            (served.client_type or TritonInfer) is type(self.client)
        return self.client if same else self.connect(served)

    def release(self, client: TritonInfer) -> None:
        """Close a client from :meth:`client_for` unless it is the run's own."""
        if client is not self.client:
            client.close()

    def identity(self) -> dict:
        ref = self.options.reference_onnx
        return {"task": self.task.name, "card": self.card.to_dict(), "served_model": self.served.name,
                **self.data.identity, "reference_onnx": str(ref) if ref else None}

    def _stream(self, reference) -> StreamResult:
        o = self.options
        bs0 = o.batch_sizes[0]
        engine = EngineOptions(batch_size=bs0, workers=o.workers, in_flight=o.in_flight, pool=o.pool,
                               checkpoint=self.checkpoint, run_identity=self.identity(), resume=o.resume,
                               progress=o.progress, description=f"{self.card.name} bs{bs0}")
        try:
            return run_stream(self.data.items, self.adapter, self.client, engine, reference=reference)
        except ServerError as exc:
            raise ServerError(f"{exc} (finished images are kept in {self.checkpoint}; rerun with --resume)") from None

    def _accuracy(self, reference) -> EvalResult:
        o, card = self.options, self.card
        stream = self._stream(reference)
        t_metric = time.perf_counter()
        metrics = self.task.metrics(summarize(self.adapter, stream), reference is not None)
        self.task.after_stream(self, stream)
        metric_s = time.perf_counter() - t_metric
        memory = server_memory(self.client.options.address)
        return EvalResult(
            task=self.task.name, model=card.name, served_model=self.served.name, details=self.served.details,
            url=self.client.options.address, protocol=o.protocol, shm=o.shm, dataset=self.data.description,
            batch_size=o.batch_sizes[0], batch_sizes=list(o.batch_sizes), workers=o.workers,
            in_flight=o.in_flight, pool=o.pool, published=card.published_metrics(), images=stream.evaluated,
            errors=list(self.data.excluded) + stream.errors, notes=stream.notes, metrics=metrics,
            resumed=stream.resumed, stream_images=stream.timing.images,
            reference_onnx=str(o.reference_onnx) if reference is not None else None,
            max_abs_diff=stream.max_abs_diff if reference is not None else None,
            **flagperf_metrics(stream.timing, time.perf_counter() - self.t_start),
            **validation_throughput(stream, metric_s), mem=memory.bytes, mem_source=memory.source,
            e2e_time_covers=self.task.e2e_time_covers, stages=stream.timing.per_stage(),
            checkpoint=str(self.checkpoint),
            run_notes=stream.run_notes + [n for n in (self.lock_note,) if n] or None)

    def timing_rows(self, items: Sequence, adapter, client, *, label: str = "",
                    submit: Callable | None = None) -> list[tuple[dict, StreamResult]]:
        """Run model and run stream at every batch size over ``items``: one (row, stream) per size.
        ``submit`` (default ``client.submit``) is what run model times for one batch."""
        o = self.options
        out = []
        for bs in o.batch_sizes:
            t_opts = EngineOptions(batch_size=bs, workers=o.workers, in_flight=o.in_flight, pool=o.pool,
                                   progress=o.progress, keep_batches=True,
                                   description=f"{self.card.name} timing bs{bs}{label}")
            timed = run_stream(items, adapter, client, t_opts)
            model_s = run_model_times(submit or client.submit, timed.kept_batches)
            row = batch_timing(bs, model_s, sum(len(b) for b in timed.kept_batches), timed.wall_s,
                               timed.batches, timed.evaluated, timed.timing.batch_latencies_ms())
            out.append((row.to_dict(), timed))
        return out

    def compare_preprocessing(self, items: Sequence) -> list[dict]:
        """Run stream at every batch size with client-side preprocessing (the model the task
        serves, preprocessed tensors sent) and server-side (its ``_bytes`` ensemble, files sent)."""
        plain = self.task.served(self.options, self.card)
        client = self.connect(plain)
        try:
            pairs = [("client", plain.name, r, t) for r, t in
                     self.timing_rows(items, self.adapter.inner, client, label=" (client preprocess)")]
        finally:
            client.close()
        pairs += [("server", self.served.name, r, t) for r, t in
                  self.timing_rows(items, self.adapter, self.client, label=" (server preprocess)")]
        return [{"preprocess": where, "model": name, **row, **_stream_rates(timed)}
                for where, name, row, timed in pairs]

    def write(self, result: EvalResult) -> None:
        data = result.to_dict()
        write_json(self.out / self.task.result_json, data)
        write_text(self.out / self.task.result_md, self.task.markdown(data) + preprocess_markdown(data)
                   + endpoints_markdown(data.get("endpoints")))


def _stream_rates(timed: StreamResult) -> dict:
    """p_infer_whole / p_infer_core of one timing stream and the input bytes sent per image."""
    sent = sum(sum(len(b) for b in x.ravel()) if x.dtype == object else x.nbytes for x in timed.kept_batches)
    images = sum(len(x) for x in timed.kept_batches)
    rates = flagperf_metrics(timed.timing, timed.wall_s)
    return {"p_infer_whole": rates["p_infer_whole"], "p_infer_core": rates["p_infer_core"],
            "wire_bytes_per_image": sent / images if images else None}


def preprocess_markdown(result: dict) -> str:
    """The report's client- vs server-side preprocessing section ("" without one)."""
    rows = result.get("preprocess_comparison")
    if not rows:
        return ""
    return ("\n## Client-side vs server-side preprocessing\n\nRun stream over the same images: client-side "
            "sends preprocessed tensors to the model, server-side sends the encoded files to its `_bytes` "
            "ensemble (decode and preprocessing in the server's preprocess model). Input bytes per image are "
            "the tensor payload on the wire (protocol framing excluded).\n\n" + markdown_table(
                ["preprocess", "model", "batch size", "images", "run stream throughput (img/s)",
                 "p_infer_whole (img/s)", "p_infer_core (img/s)", "input bytes / image"],
                [[r["preprocess"], r["model"], r["batch_size"], r["images"], r["run_stream_img_s"],
                  r["p_infer_whole"], r["p_infer_core"], r["wire_bytes_per_image"]] for r in rows], digits=1))


__all__ = ["EvalResult", "EvalRun", "evaluate", "preprocess_markdown", "reference_backend", "validation_throughput",
           "resolve_card", "fetch_served_card"]
