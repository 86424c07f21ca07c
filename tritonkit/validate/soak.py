"""soak (opt-in, ``--soak 30m``): sustained traffic with zero errors and bounded memory.

``--concurrency`` threads send seeded requests to every model under test, round robin, for the
whole period; every ``SHM_EVERY``-th request of a thread goes through system shared memory
(create a region, register it, infer from it, unregister, destroy), the cycle that leaks when
a server mishandles region bookkeeping.

Memory: RSS of the server process plus its children (the python-backend stubs), via psutil,
sampled every second. Growth is the last sample minus the first sample after a warm-up (10% of
the period, at least 2 s), against ``--rss-bound-mb`` (default 100 MB: the bar Triton's own
``qa/L0_memory_growth`` holds the server to). Needs the server's pid: found by its listening
port when it runs here, or ``--server-pid``; otherwise the memory result fails as not
measurable remotely. Shared memory likewise needs the server on this machine.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from tritonkit.host import MemorySample, memory_sample
from tritonkit.triton import (
    infer, make_client, make_inputs, one_line, requested_outputs, seeded_batch, shm_module, tritonutils)
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.result import CheckResult, fail, verdict

SHM_EVERY = 10
SAMPLE_INTERVAL_S = 1.0
MB = 1024 * 1024
# Triton releases a region a request used only after the response has gone out; unregistering
# right after the client got the response can be refused with "currently in use". That is the
# documented behaviour, so the unregister is retried for up to this long before it counts as
# an error (the retries are reported).
UNREGISTER_RETRY_S = 2.0
IN_USE = "currently in use"


@dataclass
class Tally:
    """Counts shared by the soak threads (guarded by ``lock``)."""

    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    shm_cycles: int = 0
    shm_errors: int = 0
    unregister_retries: int = 0
    first_shm_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def retried(self) -> None:
        with self.lock:
            self.unregister_retries += 1

    def record(self, error: str | None, shm: bool) -> None:
        with self.lock:
            self.requests += 1
            self.shm_cycles += shm and error is None
            if error is not None:
                self.errors += 1
                self.first_error = self.first_error or error
                if shm:
                    self.shm_errors += 1
                    self.first_shm_error = self.first_shm_error or error


def unregister(ctx: Context, client, region: str, tally: Tally) -> None:
    """Unregister ``region``, retrying while the server still holds it for a finished request."""
    deadline = time.monotonic() + UNREGISTER_RETRY_S
    while True:
        try:
            client.unregister_system_shared_memory(region, headers=ctx.key_headers("grpc"))
            return
        except tritonutils.InferenceServerException as exc:
            if IN_USE not in (exc.message() or "") or time.monotonic() > deadline:
                raise
            tally.retried()
            time.sleep(0.01)


def shm_cycle(ctx: Context, client, target: ModelTarget, tag: str, seed: int, tally: Tally) -> None:
    """One request through a freshly registered system shared-memory region, then cleaned up."""
    shm = shm_module()  # ToolMissingError with the install hint when it cannot be imported
    card = target.card
    x = seeded_batch(card, 1, seed)
    region = f"tritonkit_soak_{tag}"
    handle = shm.create_shared_memory_region(region, f"/{region}", x.nbytes)
    registered = False
    try:
        shm.set_shared_memory_region(handle, [x])
        client.register_system_shared_memory(region, f"/{region}", x.nbytes, headers=ctx.key_headers("grpc"))
        registered = True
        inputs = make_inputs(card, x)
        inputs[0].set_shared_memory(region, x.nbytes)
        client.infer(target.name, inputs, outputs=requested_outputs(card),
                     client_timeout=ctx.options.request_timeout_s)
    finally:
        try:
            if registered:
                unregister(ctx, client, region, tally)
        finally:
            shm.destroy_shared_memory_region(handle)


def worker(ctx: Context, index: int, stop: threading.Event, tally: Tally) -> None:
    client = make_client("grpc", str(ctx.endpoints.grpc))
    use_shm = ctx.endpoints.local
    targets = [t for t in ctx.targets if t.card is not None]
    i = 0
    try:
        while not stop.is_set():
            target = targets[i % len(targets)]
            through_shm = use_shm and i % SHM_EVERY == SHM_EVERY - 1
            try:
                if through_shm:
                    shm_cycle(ctx, client, target, f"{os.getpid()}_{index}_{i}", i, tally)
                else:
                    infer(client, target.name, target.card, seeded_batch(target.card, 1, i),
                          ctx.options.request_timeout_s)
                error = None
            except Exception as exc:
                error = f"{target.name}: {one_line(exc)}"
            tally.record(error, through_shm)
            i += 1
    finally:
        client.close()


@dataclass
class MemoryTrace:
    samples: list[tuple[float, MemorySample]] = field(default_factory=list)
    error: str | None = None


def sample_memory(pid: int, stop: threading.Event, trace: MemoryTrace) -> None:
    start = time.monotonic()
    while True:
        try:
            trace.samples.append((time.monotonic() - start, memory_sample(pid)))
        except Exception as exc:
            trace.error = str(exc)
            return
        if stop.wait(SAMPLE_INTERVAL_S):
            try:
                trace.samples.append((time.monotonic() - start, memory_sample(pid)))
            except Exception as exc:
                trace.error = str(exc)
            return


def errors_result(ctx: Context, tally: Tally, seconds: float) -> CheckResult:
    problems = []
    if tally.errors:
        problems.append(f"{tally.errors} of {tally.requests} requests failed (first: {tally.first_error})")
    if tally.requests == 0:
        problems.append("no request completed during the soak")
    return verdict("soak.errors", problems, f"{tally.requests} requests over {seconds:.0f} s, zero errors",
                   requests=tally.requests, errors=tally.errors, seconds=seconds,
                   requests_per_s=tally.requests / seconds if seconds else 0.0)


def shm_result(ctx: Context, tally: Tally) -> CheckResult:
    name = "soak.shared_memory"
    if not ctx.endpoints.local:
        return fail(name, "system shared-memory cycles need the server on this machine; not run remotely")
    problems = []
    if tally.shm_errors:
        problems.append(f"{tally.shm_errors} shared-memory cycles failed (first: {tally.first_shm_error})")
    if tally.shm_cycles == 0 and not tally.shm_errors:
        problems.append("no shared-memory cycle completed (soak too short?)")
    retries = f" ({tally.unregister_retries} unregister retries while the server still held a region)" \
        if tally.unregister_retries else ""
    return verdict(name, problems, f"{tally.shm_cycles} register/infer/unregister cycles, all clean{retries}",
                   cycles=tally.shm_cycles, errors=tally.shm_errors, unregister_retries=tally.unregister_retries)


def rss_result(ctx: Context, trace: MemoryTrace, seconds: float) -> CheckResult:
    name = "soak.rss_growth"
    bound = ctx.options.rss_bound_mb
    if ctx.endpoints.pid is None:
        return fail(name, f"server RSS not measurable: {ctx.endpoints.pid_note}")
    if trace.error:
        return fail(name, f"RSS sampling stopped: {trace.error}")
    warmup = max(2.0, 0.1 * seconds)
    steady = [s for t, s in trace.samples if t >= warmup]
    if len(steady) < 2:
        return fail(name, f"too few RSS samples after the {warmup:.0f} s warm-up (soak too short)")
    first, last = steady[0], steady[-1]
    growth = (last.total_bytes - first.total_bytes) / MB
    peak = (max(s.total_bytes for s in steady) - first.total_bytes) / MB
    figures = {"pid": ctx.endpoints.pid, "baseline_mb": first.total_bytes / MB, "final_mb": last.total_bytes / MB,
               "growth_mb": growth, "peak_growth_mb": peak, "server_growth_mb":
               (last.server_bytes - first.server_bytes) / MB, "bound_mb": bound, "samples": len(steady)}
    problems = [f"RSS grew {growth:.1f} MB > {bound:g} MB over the soak"] if growth > bound else []
    return verdict(name, problems, f"RSS (server + backend stubs) grew {growth:.1f} MB <= {bound:g} MB",
                   **figures)


def check_soak(ctx: Context) -> list[CheckResult]:
    seconds = ctx.options.soak_seconds
    if seconds <= 0:
        return [fail("soak.errors", "soak requested without a duration: pass --soak (e.g. 30m)")]
    if not any(t.card is not None for t in ctx.targets):
        return [fail("soak.errors", "no model with a usable card to send requests to")]
    tally, trace = Tally(), MemoryTrace()
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(ctx, i, stop, tally), daemon=True)
               for i in range(ctx.options.concurrency)]
    if ctx.endpoints.pid is not None:
        threads.append(threading.Thread(target=sample_memory, args=(ctx.endpoints.pid, stop, trace), daemon=True))
    start = time.monotonic()
    for t in threads:
        t.start()
    try:
        stop.wait(seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=ctx.options.request_timeout_s + 10)
    elapsed = time.monotonic() - start
    return [errors_result(ctx, tally, elapsed), shm_result(ctx, tally), rss_result(ctx, trace, elapsed)]


@check_group("soak", 80, opt_in=True)
def run(ctx: Context) -> list[CheckResult]:
    return check_soak(ctx)
