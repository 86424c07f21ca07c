"""The bench's measurements: served points (perf_analyzer), in-process onnxruntime, clients, the
PyTriton peer. Each returns figures; :mod:`benchmarks.bench` pairs them into ratios."""

from __future__ import annotations

import cProfile
import os
import pstats
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tritonkit
from benchmarks.pytriton_peer import matching_libpython_env
from tritonkit.cards import ModelCard
from tritonkit.tasks.classify.math import classify_record
from tritonkit.client.decode import decode_image
from tritonkit.client.preprocess import preprocess
from tritonkit.errors import ServerError, TritonkitError
from tritonkit.export import export_model
from tritonkit.perf.ladder import measure_onnxruntime
from tritonkit.perf.results import PerfRow, ServerCounts, parse_server_counts
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.serve.local import free_port
from tritonkit.served_model import ServedModel
from tritonkit.triton import grpcclient, make_client

ROOT = Path(__file__).resolve().parents[1]


def random_weights_onnx(card: ModelCard, cache: Path) -> Path:
    """``<cache>/<card>.onnx``: the card's architecture with random weights (speed does not depend
    on the weights' values), exported and checked once by ``tritonkit.export``, then reused."""
    path = cache / f"{card.name}.onnx"
    if not path.is_file():
        export_model(card, cache, random_weights=True)
    return path


@dataclass(frozen=True, kw_only=True)
class Window:
    """How long one measurement lasts: perf_analyzer windows and the in-process window.

    perf_analyzer's own stability rule is relaxed (100 %: any three windows): the bench judges
    the noise by the spread of its interleaved pairs instead, and a point is never re-measured
    with longer windows (which on a loaded machine made one point take minutes)."""

    served_ms: int = 1500
    in_process_s: float = 1.5
    stability_pct: float = 100.0
    max_trials: int = 6


def served_point(model: str, url: str, batch: int, concurrency: int, out: Path, window: Window,
                 request_count: int | None = None) -> tuple[PerfRow, ServerCounts | None]:
    """perf_analyzer at one batch size and concurrency (gRPC, random input): its row and the
    server's counts (images per model execution). Windows of ``window.served_ms``, or of
    ``request_count`` requests each (for a model slow enough that a time window holds few)."""
    mode = {"measurement_mode": "count_windows", "measurement_request_count": request_count} if request_count else {}
    spec = PerfSpec(model=model, url=url, batch_size=batch, concurrency=ConcurrencyRange(concurrency, concurrency),
                    measurement_interval_ms=window.served_ms, stability_pct=window.stability_pct,
                    max_trials=window.max_trials, **mode)
    sweep = run_sweep(spec, out, SweepOptions(plot=False, unstable_retries=0))
    if not sweep.rows:
        raise TritonkitError(f"perf_analyzer measured nothing for {model} at {url}: "
                             f"{sweep.points[0].error if sweep.points else 'no point'}")
    point = next((p for p in sweep.points if p.ok), None)
    counts = None
    if point is not None and point.log_path is not None and point.log_path.is_file():
        counts = parse_server_counts(point.log_path.read_text(errors="replace"))
    return sweep.rows[0], counts


def in_process(onnx: Path, card: ModelCard, batch: int, session, window: Window) -> float:
    """img/s of onnxruntime called back to back in this process, one window."""
    return measure_onnxruntime(onnx, card, batch, window_s=window.in_process_s, stability_pct=100.0, max_windows=1,
                               session=session).img_per_s


def split_text(row: PerfRow) -> str:
    """perf_analyzer's latency split of one row, in ms per request and shares."""
    s = row.split
    parts = [("client send", s.client_send_us), ("network + server send/recv", s.network_us),
             ("server queue", s.server_queue_us), ("compute input", s.compute_input_us),
             ("compute infer", s.compute_infer_us), ("compute output", s.compute_output_us),
             ("client recv", s.client_recv_us)]
    total = sum(v for _, v in parts) or 1.0
    return ", ".join(f"{name} {v / 1000:.2f} ms ({v / total:.0%})" for name, v in parts)


def stages_text(stages: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in stages.items() if v is not None)


def sequential_client(items, card: ModelCard, url: str, model: str) -> dict:
    """The plain client (the shape of Triton's image_client.py): for each image decode, preprocess,
    one synchronous gRPC infer (batch 1), softmax top-5, then the next. img/s and ms per stage."""
    client = make_client("grpc", url)
    stages = {"decode": 0.0, "preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
    out_name = card.outputs[0].name

    def one(item) -> None:
        t0 = time.perf_counter()
        rgb = decode_image(item.read_bytes()).image
        t1 = time.perf_counter()
        x, _ = preprocess(rgb, card.preprocess)
        x = np.ascontiguousarray(x[None].astype(card.input.numpy_dtype, copy=False))
        t2 = time.perf_counter()
        inp = grpcclient.InferInput(card.input.name, list(x.shape), card.input.dtype)
        inp.set_data_from_numpy(x)
        logits = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput(out_name)]).as_numpy(out_name)
        t3 = time.perf_counter()
        classify_record(logits[0], item.label)
        t4 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("preprocess", t1, t2), ("infer", t2, t3), ("postprocess", t3, t4)):
            stages[k] += b - a

    try:
        for item in items[:4]:  # warm-up, not timed
            one(item)
        stages = dict.fromkeys(stages, 0.0)
        t0 = time.perf_counter()
        for item in items:
            one(item)
        wall = time.perf_counter() - t0
    finally:
        client.close()
    n = len(items)
    return {"img_per_s": n / wall, "images": n, "wall_s": wall,
            "stages_ms_per_image": {k: v / n * 1e3 for k, v in stages.items()}}


def hand_written_predict(datas: list[bytes], card: ModelCard, url: str, model: str) -> float:
    """img/s of the classifier call an application would write by hand with tritonclient, batch 1,
    one thread: decode (the eval's decoder), the card's preprocessing on the decoded PIL image
    (as the eval runs it), one synchronous gRPC infer, softmax top-k named by the card's labels."""
    client = grpcclient.InferenceServerClient(url)
    names, out_name = card.label_names(), card.outputs[0].name

    def one(data: bytes) -> list:
        x, _ = preprocess(decode_image(data).pil, card.preprocess)
        x = np.ascontiguousarray(x[None].astype(card.input.numpy_dtype, copy=False))
        inp = grpcclient.InferInput(card.input.name, list(x.shape), card.input.dtype)
        inp.set_data_from_numpy(x)
        logits = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput(out_name)]).as_numpy(out_name)
        found = classify_record(logits[0], -1, card.postprocess.top_k)
        return [(names[i], s) for i, s in zip(found["topk"], found["scores"])]

    try:
        return _images_per_s(one, datas)
    finally:
        client.close()


def api_predict(datas: list[bytes], url: str, model: str) -> float:
    """img/s of ``tritonkit.connect(url).predict(data)``, one image per call, one thread."""
    with tritonkit.connect(f"grpc://{url}/{model}") as m:
        return _images_per_s(m.predict, datas)


def _images_per_s(one, datas: list[bytes], warm_up: int = 4) -> float:
    for data in datas[:warm_up]:  # not timed
        one(data)
    t0 = time.perf_counter()
    for data in datas:
        one(data)
    return len(datas) / (time.perf_counter() - t0)


def profile_client(items, card: ModelCard, top: int = 6) -> list[dict]:
    """cProfile of decode + preprocess, one image after another: the functions with the most
    cumulative time, as shares of the total (where a client's CPU time goes)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for item in items:
        preprocess(decode_image(item.read_bytes()).image, card.preprocess)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(v[2] for v in stats.values()) or 1.0  # own times add up to the profiled time
    rows = sorted(((v[3], f"{Path(k[0]).name}:{k[2]}", v[2]) for k, v in stats.items()), reverse=True)[:top]
    return [{"function": name, "cumulative_share": cum / total, "own_share": own / total} for cum, name, own in rows]


class PyTritonPeer:
    """NVIDIA PyTriton serving ``onnx`` through onnxruntime in a ``@batch`` function, in its own
    process (``benchmarks/pytriton_peer.py``) with :func:`matching_libpython_env` applied to it."""

    def __init__(self, onnx: Path, card: ModelCard, name: str, log_path: Path, max_batch: int = 8,
                 queue_delay_us: int = 100):
        self.onnx, self.card, self.name, self.log_path = onnx, card, name, log_path
        self.max_batch, self.queue_delay_us = max_batch, queue_delay_us
        self.ports = (free_port(), free_port(), free_port())
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    def argv(self) -> list[str]:
        http, grpc, metrics = self.ports
        return [sys.executable, "-m", "benchmarks.pytriton_peer", "--onnx", str(self.onnx), "--name", self.name,
                "--input", self.card.input.name, "--output", self.card.outputs[0].name,
                "--dims", ",".join(str(d) for d in self.card.input.dims), "--max-batch", str(self.max_batch),
                "--queue-delay-us", str(self.queue_delay_us), "--http-port", str(http), "--grpc-port", str(grpc),
                "--metrics-port", str(metrics)]

    def start(self, timeout_s: float = 180.0) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env=matching_libpython_env(os.environ), start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonkitError(f"PyTriton exited ({self.process.returncode}): {self.error_line()}")
            if self._ready():
                self.warm_up()
                return f"PyTriton serving {self.name} at {self.grpc_url}"
            time.sleep(1.0)
        self.stop()
        raise TritonkitError(f"PyTriton not ready after {timeout_s:.0f} s: {self.error_line()}")

    def _ready(self) -> bool:
        try:
            with ServedModel.connect("grpc", self.grpc_url, self.name, timeout_s=5.0) as served:
                return served.model_ready()
        except ServerError:  # not listening yet
            return False

    def warm_up(self, requests: int = 32) -> None:
        """A few requests first, so PyTriton's first-call set-up is not inside a measured window."""
        card = self.card
        x = np.zeros(card.input_shape(1), card.input.numpy_dtype)
        client = make_client("grpc", self.grpc_url)
        try:
            for _ in range(requests):
                inp = grpcclient.InferInput(card.input.name, list(x.shape), card.input.dtype)
                inp.set_data_from_numpy(x)
                client.infer(self.name, [inp])
        finally:
            client.close()

    def error_line(self) -> str:
        """The last line of the peer's log naming an error (else its last line)."""
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        errors = [ln for ln in lines if "Error" in ln and "NVML" not in ln]
        return (errors or lines or ["empty log"])[-1][:300]

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
