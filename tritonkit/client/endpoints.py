"""Several Triton endpoints behind one client: parse, resolve, health, pick, record.

``--url`` may name several servers: a comma list (``10.0.0.5:8001,10.0.0.6:8001``) or a DNS
name that resolves to several addresses, as a Kubernetes headless Service does
(``triton-headless.ns.svc:8001``: one A record per ready pod). :func:`parse_url` splits the text,
:func:`resolve_endpoints` turns each name into addresses (``socket.getaddrinfo``, the port kept;
IPv4 preferred when a name has both families, so ``localhost`` stays one endpoint; a name with
one address is kept as written).

:class:`EndpointPool` holds the endpoints and their state:

* **pick** — the ready endpoint with the fewest requests in flight (ties in turn), avoiding the
  one a retried request just failed on when another is ready. With none ready it still returns
  one (the one tried longest ago), so a request is always attempted and the caller's retry,
  backoff and deadline rules decide when to give up;
* **record** — every attempt's outcome and latency; an attempt that failed because the server
  was unavailable takes its endpoint out at once (passive health);
* **health** — a background thread probes every endpoint at most once per ``probe_interval_s``:
  a ready one that fails its probe is taken out, an out one that passes its admission probe
  (a fresh connection, server and model ready, contract checked) is put back with a new
  *generation* so the caller opens a fresh connection to it. DNS names are resolved again on
  each round: addresses that appear join (after admission), addresses that disappear leave.

:meth:`EndpointPool.report` gives each endpoint's share of the served requests, errors and
latency, the out/in events and the traffic per phase between events (:class:`PoolReport`).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tritonkit.errors import ServerError
from tritonkit.host import format_address, parse_address
from tritonkit.report import markdown_table
from tritonkit.triton import one_line

MIN_PROBE_INTERVAL_S = 0.1
Resolver = Callable[..., list]


class EndpointUnready(ServerError):
    """An endpoint that cannot take requests now (unreachable, not live, not ready, model not ready)."""


# ------------------------------------------------------------------------ parse and resolve
def parse_url(url: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """``"a:8001, grpc://b, [::1]:9001"`` -> ``(("a", 8001), ("b", default_port), ("::1", 9001))``
    (each item by :func:`tritonkit.host.parse_address`)."""
    items = [part for part in str(url).split(",") if part.strip()]
    if not items:
        raise ServerError("url is empty")
    return tuple((a.host, a.port) for a in (parse_address(part, default_port) for part in items))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve_host(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """The addresses ``host:port`` stands for: itself for an IP literal or a name with one
    address; one ``ip:port`` per address (sorted) for a name with several."""
    if _is_ip(host):
        return [format_address(host, port)]
    try:
        infos = resolver(host, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ServerError(f"url: cannot resolve {host!r} ({getattr(exc, 'strerror', None) or exc})") from None
    v4 = {info[4][0] for info in infos if info[0] == socket.AF_INET}
    v6 = {info[4][0].split("%", 1)[0] for info in infos if info[0] == socket.AF_INET6}
    ips = sorted(v4 or v6, key=ipaddress.ip_address)
    if len(ips) <= 1:
        return [format_address(host, port)]
    return [format_address(ip, port) for ip in ips]


def resolve_endpoints(url: str, default_port: int, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """Every address ``url`` names (a comma list and/or DNS names), duplicates dropped, in order."""
    out: list[str] = []
    for host, port in parse_url(url, default_port):
        for address in resolve_host(host, port, resolver):
            if address not in out:
                out.append(address)
    return out


# ------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class EndpointReport:
    """One endpoint over a run: ``share`` is its fraction of the requests served (ok)."""

    address: str
    state: str                 # ready, out, or gone (left the DNS answer)
    requests: int              # attempts sent to it
    ok: int
    errors: int
    images: int                # images in its successful requests
    share: float | None
    latency_ms: dict           # mean, p50, p95, p99, max of its successful requests
    taken_out: int
    rejoined: int
    last_error: str | None


@dataclass(frozen=True)
class PoolReport:
    """Every endpoint, the out/in events (``t_s`` from the pool's start) and the served
    requests per endpoint in each phase between events (the shift of traffic)."""

    endpoints: tuple[EndpointReport, ...]
    events: tuple[dict, ...]
    phases: tuple[dict, ...]
    probe_interval_s: float

    def to_dict(self) -> dict:
        return {"endpoints": [asdict(e) for e in self.endpoints], "events": list(self.events),
                "phases": list(self.phases), "probe_interval_s": self.probe_interval_s}


def _latency(samples: Sequence[float]) -> dict:
    if not samples:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    ms = np.asarray(samples, np.float64) * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"mean": round(float(ms.mean()), 3), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3), "max": round(float(ms.max()), 3)}


def endpoints_markdown(section: Mapping[str, Any] | None) -> str:
    """The report section for a result's ``endpoints`` entry (empty text when there is none)."""
    if not section:
        return ""
    rows = [[e["address"], e["state"], e["ok"], None if e["share"] is None else 100 * e["share"], e["errors"],
             e["latency_ms"]["p50"], e["latency_ms"]["p99"], e["taken_out"], e["rejoined"], e["last_error"]]
            for e in section["endpoints"]]
    parts = ["\n## Endpoints\n\n",
             f"Requests spread over {len(rows)} endpoints (least in flight first); an endpoint that fails "
             f"is taken out and probed every {section['probe_interval_s']:g} s until it is ready again.\n\n",
             markdown_table(["endpoint", "state", "requests served", "share (%)", "failed attempts",
                             "p50 (ms)", "p99 (ms)", "taken out", "rejoined", "last error"], rows, digits=1)]
    if section.get("events"):
        parts += ["\n### Out and back\n\n",
                  markdown_table(["t (s)", "endpoint", "event", "reason"],
                                 [[ev["t_s"], ev["endpoint"], ev["event"], ev["reason"]] for ev in section["events"]])]
    if len(section.get("phases") or ()) > 1:
        names = [e["address"] for e in section["endpoints"]]
        parts += ["\n### Traffic between events\n\n",
                  markdown_table(["from (s)", "to (s)"] + names,
                                 [[p["from_s"], p["to_s"]] + [p["requests"].get(n, 0) for n in names]
                                  for p in section["phases"]])]
    return "".join(parts)


# --------------------------------------------------------------------------------- pool
@dataclass
class _State:
    address: str
    ready: bool = False
    gone: bool = False
    generation: int = 0
    in_flight: int = 0
    requests: int = 0
    ok: int = 0
    errors: int = 0
    images: int = 0
    latencies: list[float] = field(default_factory=list)
    taken_out: int = 0
    rejoined: int = 0
    last_error: str | None = None
    last_pick: float = 0.0


Probe = Callable[[str, bool], None]  # (address, admit) -> None, raises ServerError when not usable


class EndpointPool:
    """Endpoints of one served model; thread-safe. ``probe(address, admit)`` raises
    :class:`EndpointUnready` (or another ServerError, e.g. a contract mismatch) when the endpoint
    must not take requests; ``admit`` asks for the full admission check (fresh connection,
    contract). ``url``/``default_port`` enable DNS re-resolution on every probe round."""

    def __init__(self, addresses: Sequence[str], probe: Probe, *, probe_interval_s: float = 1.0,
                 url: str | None = None, default_port: int = 0, resolver: Resolver = socket.getaddrinfo,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not addresses:
            raise ServerError("url names no endpoint")
        if probe_interval_s < MIN_PROBE_INTERVAL_S:
            raise ServerError(f"probe_interval_s must be >= {MIN_PROBE_INTERVAL_S} (got {probe_interval_s})")
        self._probe, self.probe_interval_s = probe, probe_interval_s
        self._url, self._default_port, self._resolver = url, default_port, resolver
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._states = {a: _State(a) for a in addresses}
        self._events: list[dict] = []
        self._served: list[tuple[float, str]] = []  # (time, endpoint) of every successful request
        self._turn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state -------------------------------------------------------------------------
    @property
    def addresses(self) -> list[str]:
        with self._lock:
            return [a for a, s in self._states.items() if not s.gone]

    def ready(self) -> list[str]:
        with self._lock:
            return [a for a, s in self._states.items() if s.ready and not s.gone]

    def generation(self, address: str) -> int:
        with self._lock:
            return self._states[address].generation

    def _event(self, address: str, event: str, reason: str | None) -> None:  # under the lock
        self._events.append({"t_s": round(self._clock() - self._t0, 3), "endpoint": address, "event": event,
                             "reason": reason})

    def _set_ready(self, address: str, ready: bool, reason: str | None) -> None:
        with self._lock:
            s = self._states.get(address)
            if s is None or s.gone or s.ready == ready:
                return
            s.ready = ready
            if ready:
                s.generation += 1
                if s.taken_out:
                    s.rejoined += 1
                if reason is not None:  # None: admitted at connect, not an event of the run
                    self._event(address, "in" if s.taken_out else "joined", reason)
            else:
                s.taken_out += 1
                s.last_error = reason or s.last_error
                self._event(address, "out", reason)

    def take_out(self, address: str, reason: str) -> None:
        self._set_ready(address, False, reason)

    # -- admission -----------------------------------------------------------------------
    def admit_all(self) -> None:
        """Admit every endpoint once (at connect). A contract mismatch anywhere raises; endpoints
        that are only unready start out; none ready raises one line naming each and why."""
        reasons = {}
        for address in self.addresses:
            reason = self._try_probe(address, True, raise_mismatch=True)
            if reason is None:
                self._set_ready(address, True, None)
            else:
                reasons[address] = reason
        if not self.ready():
            raise ServerError("no endpoint is ready: " + "; ".join(f"{a}: {r}" for a, r in reasons.items()))
        with self._lock:
            for address, reason in reasons.items():  # out from the start
                self._states[address].taken_out += 1
                self._event(address, "out", reason)

    # -- pick and record -----------------------------------------------------------------
    def pick(self, avoid: str | None = None) -> str:
        """The endpoint for the next attempt (see the module docstring); counts it in flight."""
        with self._lock:
            live = [s for s in self._states.values() if not s.gone]
            ready = [s for s in live if s.ready]
            if len(ready) > 1 and avoid is not None:
                ready = [s for s in ready if s.address != avoid] or ready
            if ready:
                self._turn += 1
                order = {s.address: (i - self._turn) % len(ready) for i, s in enumerate(ready)}
                chosen = min(ready, key=lambda s: (s.in_flight, order[s.address]))
            else:
                others = [s for s in live if s.address != avoid] or live
                chosen = min(others, key=lambda s: s.last_pick)
            chosen.in_flight += 1
            chosen.requests += 1
            chosen.last_pick = self._clock()
            return chosen.address

    def record(self, address: str, latency_s: float, images: int, error: str | None = None,
               unavailable: bool = False) -> None:
        """The outcome of one attempt picked with :meth:`pick`. ``unavailable``: the server
        could not be reached or refused for being unavailable: the endpoint is taken out."""
        with self._lock:
            s = self._states[address]
            s.in_flight -= 1
            if error is None:
                s.ok += 1
                s.images += images
                s.latencies.append(latency_s)
                self._served.append((self._clock(), address))
                return
            s.errors += 1
            s.last_error = error
        if unavailable:
            self.take_out(address, error)

    def confirm(self, address: str) -> bool:
        """Probe ``address`` now (after a request failed there for a reason that is not plainly
        'unavailable'): False, and the endpoint taken out, when it is no longer ready — the
        failure was the endpoint's (a draining server answers 'unknown model'), not the request's."""
        reason = self._try_probe(address, False)
        if reason is not None:
            self.take_out(address, reason)
        return reason is None

    def _try_probe(self, address: str, admit: bool, raise_mismatch: bool = False) -> str | None:
        """None when ``address`` passed its probe, else why not (also kept as its last error).
        Any exception counts as a failed probe (an HTTP connection closed mid-answer, say);
        with ``raise_mismatch`` a ServerError other than EndpointUnready (a contract
        mismatch) propagates."""
        try:
            self._probe(address, admit)
            return None
        except EndpointUnready as exc:
            reason = str(exc)
        except ServerError as exc:
            if raise_mismatch:
                raise
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - a probe must never end the pool's thread
            reason = f"{address}: health probe failed: {one_line(exc)}"
        with self._lock:
            self._states[address].last_error = reason
        return reason

    # -- health --------------------------------------------------------------------------
    def start(self) -> "EndpointPool":
        """Start the background probe (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="triton-endpoint-probe", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.probe_interval_s):
            self.probe_round()

    def probe_round(self) -> None:
        """One round: resolve DNS names again, then probe every endpoint once."""
        self._refresh_dns()
        for address in self.addresses:
            if self._stop.is_set():
                return
            with self._lock:
                was_ready = self._states[address].ready
            reason = self._try_probe(address, not was_ready)
            if reason is not None:
                if was_ready:
                    self.take_out(address, reason)
            elif not was_ready:
                self._set_ready(address, True, "ready again" if self._states[address].taken_out else "ready")

    def _refresh_dns(self) -> None:
        if self._url is None:
            return
        try:
            current = resolve_endpoints(self._url, self._default_port, self._resolver)
        except ServerError:
            return  # DNS trouble: keep the endpoints we know
        with self._lock:
            for address, s in self._states.items():
                if address not in current and not s.gone:
                    s.gone, s.ready = True, False
                    self._event(address, "left", "no longer in the DNS answer")
            for address in current:
                s = self._states.get(address)
                if s is None:
                    self._states[address] = _State(address)
                    self._event(address, "found", "new in the DNS answer")
                elif s.gone:
                    s.gone = False
                    self._event(address, "found", "back in the DNS answer")

    # -- report --------------------------------------------------------------------------
    def report(self) -> PoolReport:
        with self._lock:
            states = list(self._states.values())
            events = [dict(e) for e in self._events]
            served = list(self._served)
            total = sum(s.ok for s in states)
            endpoints = tuple(EndpointReport(
                address=s.address, state="gone" if s.gone else ("ready" if s.ready else "out"),
                requests=s.requests, ok=s.ok, errors=s.errors, images=s.images,
                share=round(s.ok / total, 4) if total else None, latency_ms=_latency(s.latencies),
                taken_out=s.taken_out, rejoined=s.rejoined, last_error=s.last_error) for s in states)
            end = self._clock() - self._t0
        return PoolReport(endpoints, tuple(events), tuple(self._phases(served, events, end)), self.probe_interval_s)

    def _phases(self, served: list[tuple[float, str]], events: list[dict], end: float) -> list[dict]:
        cuts = sorted({e["t_s"] for e in events if e["event"] in ("out", "in", "left") and 0 < e["t_s"] < end})
        bounds = [0.0] + cuts + [round(end, 3)]
        phases = [{"from_s": a, "to_s": b, "requests": {}} for a, b in zip(bounds, bounds[1:])]
        for t, address in served:
            rel = round(t - self._t0, 3)  # a request done at an event's time belongs to the phase it ends
            i = next((k for k, p in enumerate(phases) if rel <= p["to_s"]), len(phases) - 1)
            phases[i]["requests"][address] = phases[i]["requests"].get(address, 0) + 1
        return phases


__all__ = ["EndpointPool", "EndpointReport", "EndpointUnready", "PoolReport", "endpoints_markdown",
           "parse_url", "resolve_endpoints", "resolve_host"]
