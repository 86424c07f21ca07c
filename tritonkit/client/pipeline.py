"""The run-stream engine: decode -> prepare -> batch -> infer (several in flight) -> postprocess.

One engine serves every task. A task plugs in through two small protocols:

* an **item** (:class:`Item`): ``key`` (unique, stable string: a relative path or a tar
  member name; the checkpoint is keyed by it) and ``read_bytes()`` (the encoded image);
* a **task adapter** (:class:`TaskAdapter`):

  - ``prepare(item, image) -> (input_array, meta)``: one decoded RGB image (a PIL image, as
    :func:`tritonkit.client.decode.decode_image` gives it; ``np.asarray(image)`` is its RGB
    uint8 HWC array) -> one per-sample model input (no batch axis) and whatever
    ``postprocess`` needs later (label, geometry ...). Runs in the worker pool, so the adapter
    and ``meta`` must pickle.
  - ``result(outputs, meta) -> result``: ``outputs`` maps each output name to that one image's
    array (batch axis removed); the result is the task's typed per-image result in original-image
    coordinates (:mod:`tritonkit.tasks.results`). This is what ``Model.predict`` returns, and
  - ``record(result, meta) -> record``: the eval's JSON-serializable per-image record built from
    that result (plus scoring against the ground truth in ``meta``), so what eval measures and
    what an application gets come from one function;
  - ``postprocess(outputs, meta) -> record``: ``record(result(outputs, meta), meta)`` (an
    adapter without a typed result may override it instead).
  - ``summarize(records) -> dict``: metrics over all records (top1/top5, mAP ...).
  - ``encoded_meta(item, geometry) -> meta``: the meta of an item the *server* preprocessed
    (its encoded file was sent; ``geometry`` is the server's, None when it returns none).
  - ``decode(outputs)``: the task's postprocess of one image's outputs without scoring (what
    "run model" times after the forward pass).
  - ``collate(inputs) -> batch``: how one batch's per-sample inputs become the request array
    (default ``np.stack``; a task with variable-size inputs pads them, e.g.
    :func:`tritonkit.tasks.segment.math.stack_padded`).

An inference **backend** (:class:`InferBackend`) has ``submit(batch) -> Future`` resolving to
``{output name: array with batch axis}``: :class:`tritonkit.client.infer.TritonInfer` for the
server, :class:`CallableBackend` around any function (in-process onnxruntime for the reference
run and for tests).

:func:`run_stream` drives it all: a bounded prefetch of decode+prepare in a worker pool,
batches of ``batch_size`` (the last may be smaller), at most ``in_flight`` requests on the wire,
postprocess as responses arrive, a rich progress bar, per-stage timing. Bad images never stop
the run: any exception while reading, decoding or preparing one item (``MemoryError``,
``cv2.error`` ... included) lands in ``errors`` with path and reason; converted images (grayscale, CMYK,
RGBA ...) are evaluated and listed in ``notes``. Every finished image is appended to a JSONL
checkpoint (:mod:`tritonkit.client.checkpoint`) so ``resume=True`` skips what is done (recorded
errors are tried again: a repaired file is evaluated). A transient read error (EIO, EAGAIN ...)
is retried a few times before it becomes the file's error.

Adding an eval task: register a :class:`tritonkit.tasks.Task` (its options, dataset, this
adapter, metrics and report) with ``tritonkit.tasks.register_task``; ``tritonkit.evaluate``
runs it and ``tritonkit eval`` gets a subcommand for it. ``tritonkit.tasks.classify``
is the worked example.
"""

from __future__ import annotations

import abc
import collections
import errno
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from tritonkit.client.checkpoint import Checkpoint
from tritonkit.client.decode import ImageError, decode_image
from tritonkit.client.preprocess_math import GEOMETRY_OUTPUT, DecodeResult, check_encoded
from tritonkit.client.timing import StageTimes
from tritonkit.spec import Geometry

POOLS = ("thread", "process")


@runtime_checkable
class Item(Protocol):
    """One dataset image: a unique ``key`` and a way to read its encoded bytes."""

    key: str

    def read_bytes(self) -> bytes: ...


@runtime_checkable
class DecodedItem(Item, Protocol):
    """An item already in memory as an image (an application's PIL image or array):
    ``decoded()`` gives it as :func:`decode_image` would, so nothing is encoded and decoded again.
    ``read_bytes()`` still gives an encoded file (server-side preprocessing sends one)."""

    def decoded(self) -> DecodeResult: ...


class TaskAdapter(abc.ABC):
    """What a task (classify, detect ...) plugs into the engine. See the module docstring."""

    encoded: ClassVar[bool] = False  # True: ``prepare`` takes the encoded file (server-side preprocessing)

    @abc.abstractmethod
    def prepare(self, item: Any, image: Any) -> tuple[np.ndarray, Any]: ...

    def result(self, outputs: Mapping[str, np.ndarray], meta: Any) -> Any:
        """One image's typed result in original-image coordinates."""
        raise NotImplementedError(f"{type(self).__name__} gives no typed per-image result")

    def record(self, result: Any, meta: Any) -> dict:
        """The eval's per-image record of ``result`` (JSON)."""
        raise NotImplementedError(f"{type(self).__name__} builds no record from a result")

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any) -> dict:
        return self.record(self.result(outputs, meta), meta)

    @abc.abstractmethod
    def summarize(self, records: Sequence[dict]) -> dict: ...

    @abc.abstractmethod
    def encoded_meta(self, item: Any, geometry: Geometry | None) -> Any: ...

    @abc.abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray]) -> Any: ...

    def collate(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(inputs, axis=0)


@runtime_checkable
class InferBackend(Protocol):
    """Sends one batch; the future resolves to ``{output name: array with batch axis}``."""

    def submit(self, batch: np.ndarray) -> "Future[dict[str, np.ndarray]]": ...


class CallableBackend:
    """An :class:`InferBackend` around ``fn(batch) -> {name: array}`` run in a small thread pool.

    Used for the in-process onnxruntime reference and for tests (a real model, no server).
    """

    def __init__(self, fn: Callable[[np.ndarray], Mapping[str, np.ndarray]], workers: int = 1):
        self._fn = fn
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="infer")

    def submit(self, batch: np.ndarray) -> "Future[dict[str, np.ndarray]]":
        return self._pool.submit(lambda: {k: np.asarray(v) for k, v in self._fn(batch).items()})

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "CallableBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class EngineOptions:
    """How :func:`run_stream` runs. ``workers`` decode+prepare in parallel; ``in_flight``
    bounds the requests on the wire; ``prefetch`` bounds prepared images held in memory
    (0 -> ``batch_size * (in_flight + 1) + workers``)."""

    batch_size: int = 1
    workers: int = 2
    in_flight: int = 2
    pool: str = "thread"
    prefetch: int = 0
    checkpoint: Path | None = None
    run_identity: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = False
    progress: bool = True
    description: str = "eval"
    keep_batches: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1 or self.in_flight < 1:
            raise ValueError("batch_size, workers and in_flight must be >= 1")
        if self.pool not in POOLS:
            raise ValueError(f"pool {self.pool!r} not one of {POOLS}")

    @property
    def prefetch_items(self) -> int:
        return self.prefetch or self.batch_size * (self.in_flight + 1) + self.workers


@dataclass
class StreamResult:
    """What one :func:`run_stream` call produced.

    ``records`` are in dataset order, one per evaluated image (``key`` added); ``errors`` and
    ``notes`` are ``{"path", "reason"}`` / ``{"path", "note"}``; ``reference_records`` holds
    the reference backend's records (same order) when one was given. ``resumed`` counts images
    with an entry in the checkpoint; ``timing`` covers only the images processed in this call;
    ``run_notes`` says what resuming dropped or skipped (entries of files gone, corrupt lines).
    """

    records: list[dict]
    errors: list[dict]
    notes: list[dict]
    timing: StageTimes
    wall_s: float
    images: int
    batches: int
    resumed: int = 0
    reference_records: list[dict] | None = None
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    kept_batches: list[np.ndarray] = field(default_factory=list)
    run_notes: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> int:
        return len(self.records)


@dataclass
class _Loaded:
    """One item after decode + prepare in a worker (picklable for the process pool)."""

    index: int
    key: str
    input: np.ndarray | None
    meta: Any
    error: str | None
    note: str | None
    decode_s: float
    prepare_s: float
    started: float = 0.0   # perf_counter when reading it began (a batch's latency starts at its first)


TRANSIENT_READ_ERRNOS = frozenset({errno.EIO, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ETIMEDOUT})
READ_ATTEMPTS = 3


def _read_bytes(item: Item) -> bytes:
    """``item.read_bytes()``, tried again (up to :data:`READ_ATTEMPTS` in all, short backoff) when
    it fails with a transient error (EIO, EAGAIN, EINTR, ETIMEDOUT); the last failure propagates
    with the number of attempts added to its reason."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return item.read_bytes()
        except ImageError:
            raise
        except OSError as exc:
            if exc.errno not in TRANSIENT_READ_ERRNOS:
                raise
            if attempt == READ_ATTEMPTS - 1:
                raise OSError(exc.errno, f"{exc.strerror or exc} ({READ_ATTEMPTS} attempts)") from None
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def load_item(adapter: TaskAdapter, index: int, item: Item) -> _Loaded:
    """Read, decode and prepare one item; any failure becomes ``error`` (never raises)."""
    t0 = time.perf_counter()
    loaded = _load_item(adapter, index, item, t0)
    loaded.started = t0
    return loaded


def _load_item(adapter: TaskAdapter, index: int, item: Item, t0: float) -> _Loaded:
    if not adapter.encoded and isinstance(item, DecodedItem):
        return _prepare_decoded(adapter, index, item, item.decoded(), t0)
    try:
        data = _read_bytes(item)
    except ImageError as exc:  # refused before reading it whole: too large, not an image
        return _Loaded(index, item.key, None, None, str(exc), None, time.perf_counter() - t0, 0.0)
    except OSError as exc:
        return _Loaded(index, item.key, None, None, f"cannot read: {exc.strerror or exc}", None,
                       time.perf_counter() - t0, 0.0)
    except Exception as exc:  # noqa: BLE001 - one file must never end the run (MemoryError included)
        return _Loaded(index, item.key, None, None, f"cannot read: {type(exc).__name__}: {exc}", None,
                       time.perf_counter() - t0, 0.0)
    if adapter.encoded:  # server-side preprocessing: the file is the input
        return _prepare_encoded(adapter, index, item, data, t0)
    decoded = decode_image(data)
    del data
    return _prepare_decoded(adapter, index, item, decoded, t0)


def _prepare_decoded(adapter: TaskAdapter, index: int, item: Item, decoded: DecodeResult, t0: float) -> _Loaded:
    t1 = time.perf_counter()
    if not decoded.ok:
        return _Loaded(index, item.key, None, None, decoded.reason, None, t1 - t0, 0.0)
    try:
        x, meta = adapter.prepare(item, decoded.pil)
    except Exception as exc:  # noqa: BLE001 - too small for the crop, cv2.error, MemoryError ...
        detail = str(exc) if isinstance(exc, (ValueError, ArithmeticError)) else f"{type(exc).__name__}: {exc}"
        return _Loaded(index, item.key, None, None, f"preprocess failed: {detail}", decoded.note, t1 - t0,
                       time.perf_counter() - t1)
    return _Loaded(index, item.key, x, meta, None, decoded.note, t1 - t0, time.perf_counter() - t1)


def _prepare_encoded(adapter: TaskAdapter, index: int, item: Item, data: bytes, t0: float) -> _Loaded:
    t1 = time.perf_counter()
    try:
        x, meta = adapter.prepare(item, data)
    except Exception as exc:  # noqa: BLE001 - one file must never end the run
        return _Loaded(index, item.key, None, None, f"preprocess failed: {exc}", None, t1 - t0,
                       time.perf_counter() - t1)
    return _Loaded(index, item.key, x, meta, None, None, t1 - t0, time.perf_counter() - t1)


@dataclass(frozen=True)
class EncodedAdapter(TaskAdapter):
    """Server-side preprocessing around a task's adapter: ``prepare`` sends the encoded file
    (an object array ``[1]`` holding its bytes, after :func:`check_encoded`; the engine skips
    decoding; damage inside the compressed data fails the batch's request on the server), ``postprocess`` is
    the task's, with the meta the task builds from the item and the server's ``geometry``
    output (``inner.encoded_meta(item, geometry)``; geometry None when the server returns none,
    e.g. after server-side NMS, which already mapped boxes to the original image)."""

    inner: TaskAdapter
    encoded: ClassVar[bool] = True

    def prepare(self, item: Any, data: bytes) -> tuple[np.ndarray, Any]:
        check_encoded(data)  # a file that is no image is this file's error, not its batch's
        blob = np.empty(1, dtype=object)
        blob[0] = data
        return blob, item

    def _unpacked(self, outputs: Mapping[str, np.ndarray], item: Any) -> tuple[dict, Any]:
        """The model's outputs without the server's geometry, and the inner adapter's meta."""
        geometry = outputs.get(GEOMETRY_OUTPUT)
        geo = None if geometry is None else Geometry.from_array(geometry)
        rest = {k: v for k, v in outputs.items() if k != GEOMETRY_OUTPUT}
        return rest, self.inner.encoded_meta(item, geo)

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any) -> dict:
        return self.inner.postprocess(*self._unpacked(outputs, meta))

    def result(self, outputs: Mapping[str, np.ndarray], meta: Any) -> Any:
        return self.inner.result(*self._unpacked(outputs, meta))

    def summarize(self, records: Sequence[dict]) -> dict:
        return self.inner.summarize(records)

    def encoded_meta(self, item: Any, geometry: Geometry | None) -> Any:
        return self.inner.encoded_meta(item, geometry)

    def decode(self, outputs: Mapping[str, np.ndarray]) -> Any:
        return self.inner.decode({k: v for k, v in outputs.items() if k != GEOMETRY_OUTPUT})

    def collate(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(inputs, axis=0)

    def __getattr__(self, name: str) -> Any:
        """The task adapter's other attributes (its task reads them, e.g. ``category_ids``)."""
        if name.startswith("__") or name == "inner":  # unpickling looks some up before inner is set
            raise AttributeError(name)
        return getattr(self.inner, name)


def _limit_blas() -> object:
    """Single-threaded BLAS for this process while the stream runs (a context manager).

    The workers already run one image each in parallel; numpy's OpenBLAS would start its own
    threads inside every resampling product on top of them and oversubscribe the CPUs. Measured
    on the 2-core host with the small classifier served locally (96 JPEGs of 500x375, 2 workers,
    bs 8, 2 in flight): 131 img/s with BLAS threads left to OpenBLAS, 289 img/s limited to one
    (and onnxruntime's threads not spinning in the server). A no-op without threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a pinned dependency
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _make_pool(options: EngineOptions) -> Executor:
    # Measured on the 2-core CPU host (240 JPEGs of 500x375, resnet50 preprocessing, no server):
    #   BLAS threads default: thread pool 2 workers  99 img/s, process pool (spawn) 2 workers  86 img/s
    #   OPENBLAS_NUM_THREADS=1:                      127 img/s,                             138 img/s
    # PIL's decode and numpy's resampling release the GIL, so threads keep up with processes
    # while sparing the spawn start-up (~0.5 s per run), pickling each 600 KB input back to the
    # parent, and the `if __name__ == "__main__"` guard processes demand of calling scripts.
    # Threads are the default; the process pool stays available for Python-heavy adapters.
    if options.pool == "process":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # threadpool_limits applies when created, so a worker process keeps the limit for life
        return ProcessPoolExecutor(options.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_limit_blas)
    return ThreadPoolExecutor(options.workers, thread_name_prefix="decode")


def _split(outputs: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {name: arr[i] for name, arr in outputs.items()}


class _NoProgress:
    """Stands in for a rich Progress when the bar is off (prints nothing at all)."""

    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, *args, **kwargs) -> None:
        return None


def _progress(options: EngineOptions, total: int):
    if not options.progress:
        return _NoProgress(), 0
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    # on stderr: stdout holds the command's results (a table, or the JSON of --json)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        transient=False, console=Console(stderr=True))
    task = progress.add_task(options.description, total=total, rate="")
    return progress, task


@dataclass
class _Batch:
    """A batch on the wire: its images, the server future and (optionally) the reference one."""

    loaded: list[_Loaded]
    future: Future
    reference: Future | None
    sent: float
    done: threading.Event = field(default_factory=threading.Event)
    finished: float = 0.0


def run_stream(items: Sequence[Item], adapter: TaskAdapter, backend: InferBackend,
               options: EngineOptions = EngineOptions(), reference: InferBackend | None = None) -> StreamResult:
    """Run ``items`` through decode, ``adapter.prepare``, ``backend`` and ``adapter.postprocess``.

    Raises only for problems that make the whole run meaningless (a server error that
    persists after the backend's retries, a checkpoint from another run); everything computed
    before that is already in the checkpoint.

    On resume, records in the checkpoint are kept; recorded errors are tried again (a file
    repaired since, or a transient read error, is evaluated; one that fails the same way keeps
    its line); entries of files no longer in ``items`` are dropped and corrupt checkpoint lines
    skipped, each with a line in ``StreamResult.run_notes``.
    """
    return _StreamRun(items, adapter, backend, options, reference).run()


class _StreamRun:
    """The state of one :func:`run_stream` call and its steps."""

    def __init__(self, items: Sequence[Item], adapter: TaskAdapter, backend: InferBackend,
                 options: EngineOptions, reference: InferBackend | None) -> None:
        self.items, self.adapter, self.backend = items, adapter, backend
        self.options, self.reference = options, reference
        self.timing = StageTimes()
        self.records: dict[str, dict] = {}
        self.ref_records: dict[str, dict] = {}
        self.errors: dict[str, dict] = {}
        self.notes: dict[str, dict] = {}
        self.run_notes: list[str] = []
        self.retrying: dict[str, str] = {}  # key -> the error recorded for it, tried again now
        self.max_diff: dict[str, float] = {}
        self.kept: list[np.ndarray] = []
        self.batches_sent = 0
        self.processed = 0
        self.window: collections.deque[_Batch] = collections.deque()
        self.pending: collections.deque[Future] = collections.deque()
        self.checkpoint = Checkpoint(options.checkpoint, options.run_identity, options.resume) \
            if options.checkpoint else None
        self.todo, self.resumed = self._restore()
        self.progress, self.task = _progress(options, len(items))
        self.t_start = time.perf_counter()

    # -- resume -------------------------------------------------------------------------
    def _restore(self) -> tuple[list[tuple[int, Item]], int]:
        """Take over the checkpoint's entries; ``(items still to run, items it had entries for)``."""
        if self.checkpoint is None:
            return list(enumerate(self.items)), 0
        done = self.checkpoint.entries()
        keys = {it.key for it in self.items}
        for lineno, why in self.checkpoint.skipped:
            self.run_notes.append(f"{self.checkpoint.path}: line {lineno} {why}; skipped (its image runs again)")
        for key, entry in done.items():
            if key not in keys:
                self.run_notes.append(f"{key!r} is in the checkpoint but no longer in the dataset; its entry is dropped")
            elif "error" in entry:
                self.retrying[key] = entry["error"]
            else:
                self._absorb(key, entry)
        todo = [(i, it) for i, it in enumerate(self.items) if it.key not in done or it.key in self.retrying]
        return todo, sum(1 for it in self.items if it.key in done)

    # -- the stream ---------------------------------------------------------------------
    def run(self) -> StreamResult:
        pool = _make_pool(self.options)
        try:
            with self.progress, _limit_blas():
                self.progress.update(self.task, completed=self.resumed - len(self.retrying))
                self._stream(pool)
        except BaseException:
            self._salvage()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self.checkpoint:
                self.checkpoint.close()
        return self._result(time.perf_counter() - self.t_start)

    def _stream(self, pool: Executor) -> None:
        source = iter(self.todo)
        current: list[_Loaded] = []
        self._refill(pool, source)
        while self.pending:
            ld: _Loaded = self.pending.popleft().result()
            self._refill(pool, source)
            self.timing.add("decode", ld.decode_s, 1)
            if ld.error is not None:
                self._record_error(ld)
                continue
            self.timing.add("preprocess", ld.prepare_s, 1)
            current.append(ld)
            if len(current) == self.options.batch_size:
                self._submit_batch(current)
                current = []
            while self.window and self.window[0].done.is_set():  # responses already here, no waiting
                self._finish_batch(self.window.popleft())
        if current:
            self._submit_batch(current)
        while self.window:
            b = self.window.popleft()
            b.done.wait()
            self._finish_batch(b)

    def _refill(self, pool: Executor, source: Iterator[tuple[int, Item]]) -> None:
        while len(self.pending) < self.options.prefetch_items:
            nxt = next(source, None)
            if nxt is None:
                return
            self.pending.append(pool.submit(load_item, self.adapter, nxt[0], nxt[1]))

    def _record_error(self, ld: _Loaded) -> None:
        entry = {"error": ld.error}
        self._absorb(ld.key, entry)
        if self.checkpoint and self.retrying.get(ld.key) != ld.error:  # the same error keeps its line
            self.checkpoint.append([(ld.key, entry)])
        self.processed += 1
        self.progress.update(self.task, advance=1)

    def _submit_batch(self, batch_loaded: list[_Loaded]) -> None:
        while len(self.window) >= self.options.in_flight:
            b = self.window.popleft()
            b.done.wait()
            self._finish_batch(b)
        x = np.ascontiguousarray(self.adapter.collate([ld.input for ld in batch_loaded]))
        if self.options.keep_batches:
            self.kept.append(x)
        sent = time.perf_counter()
        fut = self.backend.submit(x)
        b = _Batch(batch_loaded, fut, self.reference.submit(x) if self.reference is not None else None, sent)

        def on_done(_f: Future, b: _Batch = b) -> None:
            b.finished = time.perf_counter()
            b.done.set()

        fut.add_done_callback(on_done)
        self.window.append(b)
        self.batches_sent += 1

    def _finish_batch(self, b: _Batch) -> None:
        outputs = b.future.result()  # a persistent server error propagates from here
        self.timing.add_request(b.sent, b.finished, len(b.loaded))
        ref_outputs = b.reference.result() if b.reference is not None else None
        if ref_outputs is not None:
            self._compare(outputs, ref_outputs)
        entries = []
        t0 = time.perf_counter()
        for i, ld in enumerate(b.loaded):
            entry = {"record": self.adapter.postprocess(_split(outputs, i), ld.meta)}
            if ref_outputs is not None:
                entry["reference"] = self.adapter.postprocess(_split(ref_outputs, i), ld.meta)
            if ld.note:
                entry["note"] = ld.note
            entries.append((ld.key, entry))
        t1 = time.perf_counter()
        self.timing.add("postprocess", t1 - t0, len(b.loaded))
        self.timing.add_batch(min(ld.started for ld in b.loaded), t1, len(b.loaded))
        for key, entry in entries:
            self._absorb(key, entry)
        if self.checkpoint:
            self.checkpoint.append(entries)
        self.processed += len(b.loaded)
        elapsed = time.perf_counter() - self.t_start
        rate = f"{self.processed / elapsed:.1f} img/s, {(b.finished - b.sent) * 1e3:.0f} ms/req" if elapsed > 0 else ""
        self.progress.update(self.task, advance=len(b.loaded), rate=rate)

    def _compare(self, outputs: Mapping[str, np.ndarray], ref_outputs: Mapping[str, np.ndarray]) -> None:
        for name, arr in outputs.items():
            if name in ref_outputs:
                diff = float(np.max(np.abs(np.asarray(arr, np.float64) - np.asarray(ref_outputs[name], np.float64)),
                                    initial=0.0))
                self.max_diff[name] = max(self.max_diff.get(name, 0.0), diff)

    def _salvage(self) -> None:
        """After a failure: keep (postprocess and checkpoint) every batch whose response already
        arrived successfully, so a resumed run does not redo it."""
        for b in list(self.window):
            if b.done.is_set() and b.future.exception() is None and (
                    b.reference is None or (b.reference.done() and b.reference.exception() is None)):
                try:
                    self._finish_batch(b)
                except Exception:  # noqa: BLE001 - salvage is best effort; the original error is raised
                    break
        self.window.clear()

    def _absorb(self, key: str, entry: Mapping) -> None:
        _absorb_entry(key, entry, self.records, self.ref_records, self.errors, self.notes)

    def _result(self, wall: float) -> StreamResult:
        self.timing.wall_s = wall
        order = {it.key: i for i, it in enumerate(self.items)}
        by_order = sorted(self.records, key=order.__getitem__)
        with_reference = self.reference is not None or self.ref_records
        return StreamResult(
            records=[{"key": k, **self.records[k]} for k in by_order],
            errors=sorted(self.errors.values(), key=lambda e: order.get(e["path"], -1)),
            notes=sorted(self.notes.values(), key=lambda e: order.get(e["path"], -1)),
            timing=self.timing, wall_s=wall, images=len(self.items), batches=self.batches_sent,
            resumed=self.resumed,
            reference_records=[{"key": k, **self.ref_records[k]} for k in by_order] if with_reference else None,
            max_abs_diff=self.max_diff, kept_batches=self.kept, run_notes=self.run_notes)


def _absorb_entry(key: str, entry: Mapping, records: dict, ref_records: dict, errors: dict, notes: dict) -> None:
    if "error" in entry:
        errors[key] = {"path": key, "reason": entry["error"]}
    else:
        records[key] = entry["record"]
        if "reference" in entry:
            ref_records[key] = entry["reference"]
    if entry.get("note"):
        notes[key] = {"path": key, "note": entry["note"]}


def decode_after(backend: InferBackend, adapter: TaskAdapter) -> Callable[[np.ndarray], Future]:
    """A ``submit``-like callable for run-model timing: one request, then ``adapter.decode`` of
    every image in its response (run model = forward + the task's postprocess)."""
    def submit(batch: np.ndarray) -> Future:
        outputs = backend.submit(batch).result()
        for i in range(len(batch)):
            adapter.decode(_split(outputs, i))
        done: Future = Future()
        done.set_result(None)
        return done
    return submit


def summarize(adapter: TaskAdapter, result: StreamResult) -> dict:
    """The adapter's metrics, plus ``reference_<metric>`` from the reference records if any."""
    out = dict(adapter.summarize(result.records))
    if result.reference_records is not None:
        for k, v in adapter.summarize(result.reference_records).items():
            out[f"reference_{k}"] = v
    return out


__all__ = ["Item", "DecodedItem", "TaskAdapter", "InferBackend", "CallableBackend", "EncodedAdapter", "EngineOptions",
           "StreamResult", "run_stream", "summarize", "decode_after", "load_item", "POOLS"]


