"""Hosts and the server process behind an address: parsing, locality, the process, its memory.

* :func:`parse_address` — the one ``host:port`` parser (a scheme and a path are dropped, an
  IPv6 literal takes brackets when it has a port: ``[::1]:8001``); :class:`HostPort` prints
  itself back in that form (:func:`format_address`).
* :func:`is_loopback` — whether an address is a loopback one (``127.0.0.0/8``, ``::1``, an
  IPv4-mapped loopback, ``localhost``): is a server bound there reachable from elsewhere?
* :func:`is_this_machine` — whether a host names this machine (loopback, the wildcard, this
  host's name or one of its interface addresses): can its server process be looked at here?
* :func:`find_server_process` — the local server process behind a TCP port;
  :func:`server_flags`, :func:`listening_addresses`, :func:`memory_sample` read it.
* :func:`server_memory` — what the server behind an address uses: Triton's
  ``nv_gpu_memory_used_bytes`` from its ``/metrics`` on a GPU, else the resident memory of its
  process tree; never raises, says why when it cannot measure.

Only ``psutil`` and the standard library are used. A remote server has no process here;
callers report what they could not measure instead of guessing.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from tritonkit.errors import ServerError
from tritonkit.triton import DEFAULT_PORTS

__all__ = ["HostPort", "parse_address", "format_address", "is_loopback", "is_this_machine", "find_server_process",
           "server_flags", "listening_addresses", "MemorySample", "memory_sample", "ServerMemory", "server_memory"]

WILDCARDS = ("0.0.0.0", "::")
DEFAULT_METRICS_PORT = 8002


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def format_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, default_port: int) -> HostPort:
    """``host:port``, ``grpc://host:port/path``, ``[::1]:8001``, ``host`` or a bare IPv6 literal
    (``::1``) -> :class:`HostPort` (``default_port`` when none is given).

    Raises a one-line :class:`ServerError` for no host, a port that is not a number or out of
    range, or more than one address (a comma list: see :func:`tritonkit.client.endpoints.parse_url`).
    """
    given = str(text).strip()
    rest = given.split("://", 1)[-1].split("/", 1)[0]
    if "," in rest:
        raise ServerError(f"url {given!r}: one host:port expected")
    if rest.startswith("["):  # [v6]:port
        host, _, after = rest[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:  # a name, an IPv4 address or a bare IPv6 literal, without a port
        host, port_text = rest, ""
    if not host:
        raise ServerError(f"url {given!r}: no host")
    if not port_text:
        return HostPort(host, default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise ServerError(f"url {given!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ServerError(f"url {given!r}: port {port} out of range")
    return HostPort(host, port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address (brackets and an IPv6 zone dropped, IPv4-mapped unwrapped); None for a name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, ``::ffff:127.0.0.1``) or ``localhost``.
    The wildcard (``0.0.0.0``, ``::``) is not: a server bound there answers every interface."""
    ip = _ip(host)
    return ip.is_loopback if ip is not None else host.strip("[]").lower() == "localhost"


def is_this_machine(host: str) -> bool:
    """Whether ``host`` names this machine: a loopback address, the wildcard, this host's name,
    or a name or address that resolves to one of this machine's interface addresses."""
    name = host.strip("[]")
    if is_loopback(name) or name in WILDCARDS or name == socket.gethostname():
        return True
    try:
        resolved = {info[4][0].split("%", 1)[0] for info in socket.getaddrinfo(name, None)}
    except (OSError, UnicodeError):
        return False
    if any(is_loopback(address) for address in resolved):
        return True
    own = {a.address.split("%", 1)[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    return bool(resolved & own)


# -- the server process ------------------------------------------------------------------------

def find_server_process(port: int) -> psutil.Process | None:
    """The local process serving TCP ``port``, or None: a tritonserver whose command line names
    the port (``--grpc-port=``/``--http-port=``), else the process listening on it — its
    tritonserver ancestor when it has one (a server started by a wrapper)."""
    flags = (f"--grpc-port={port}", f"--http-port={port}")
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and "tritonserver" in Path(cmd[0]).name and any(a in flags for a in cmd):
            return proc
    try:
        conns = psutil.net_connections("tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for pid in sorted({c.pid for c in conns if c.pid and c.status == psutil.CONN_LISTEN and c.laddr
                       and c.laddr.port == port}):
        try:
            listener = psutil.Process(pid)
            return next((p for p in [listener, *listener.parents()] if "tritonserver" in p.name()), listener)
        except psutil.Error:
            continue
    return None


def listening_addresses(pid: int) -> list[HostPort]:
    """Every TCP address ``pid`` listens on."""
    try:
        conns = psutil.Process(pid).net_connections("tcp")
    except psutil.NoSuchProcess:
        raise ServerError(f"server process {pid} is gone") from None
    except psutil.AccessDenied:
        raise ServerError(f"no permission to read the sockets of process {pid}") from None
    return sorted({HostPort(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN},
                  key=lambda hp: hp.port)


def server_flags(pid: int) -> dict[str, str]:
    """``--name=value`` flags of the server command line (the last one wins)."""
    try:
        argv = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}
    flags: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = arg[2:], argv[i + 1]
        else:
            key, value = arg[2:], "true"
        flags[key] = value
    return flags


@dataclass(frozen=True)
class MemorySample:
    """RSS of the server process and of its children (python-backend stubs), in bytes."""

    server_bytes: int
    children_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.server_bytes + self.children_bytes


def memory_sample(pid: int) -> MemorySample:
    """The RSS of process ``pid`` and of its children (a child that exits meanwhile is skipped)."""
    try:
        proc = psutil.Process(pid)
        server = proc.memory_info().rss
        children = 0
        for child in proc.children(recursive=True):
            try:
                children += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        raise ServerError(f"server process {pid} is gone") from None
    return MemorySample(server, children)


# -- the server's memory -----------------------------------------------------------------------

@dataclass(frozen=True)
class ServerMemory:
    """Bytes the server uses (None: not measured) and where the number comes from, or why not."""

    bytes: int | None
    source: str


def server_memory(address: str, default_port: int = DEFAULT_PORTS["grpc"]) -> ServerMemory:
    """The memory of the server at ``address``: Triton's ``nv_gpu_memory_used_bytes`` (summed over
    GPUs) from its /metrics when it reports one, else the RSS of its process tree. None, with
    the reason in ``source``, for a server on another host or with no process found here."""
    try:
        where = parse_address(address, default_port)
    except ServerError as exc:
        return ServerMemory(None, f"not measured: {exc}")
    if not is_this_machine(where.host):
        return ServerMemory(None, f"not measured: the server at {address} is not on this host")
    proc = find_server_process(where.port)
    if proc is None or "tritonserver" not in _name(proc):
        return ServerMemory(None, f"not measured: no local tritonserver process found serving port {where.port} "
                                  f"(in a container, or started by another user)")
    gpu = _gpu_memory_used(proc)
    if gpu is not None:
        return ServerMemory(gpu, "nv_gpu_memory_used_bytes from Triton /metrics (all GPUs)")
    try:
        sample = memory_sample(proc.pid)
        processes = 1 + len(proc.children(recursive=True))
    except (ServerError, psutil.Error):
        return ServerMemory(None, f"not measured: tritonserver pid {proc.pid} is gone")
    return ServerMemory(sample.total_bytes, f"rss of tritonserver process tree (pid {proc.pid}, {processes} "
                                            f"processes, summed)")


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _gpu_memory_used(proc: psutil.Process) -> int | None:
    """``nv_gpu_memory_used_bytes`` summed over GPUs from the server's /metrics (None without)."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return None
    if any(a in ("--allow-metrics=false", "--allow-gpu-metrics=false") for a in cmd):
        return None
    ports = [a.split("=", 1)[1] for a in cmd if a.startswith("--metrics-port=")]
    url = f"http://127.0.0.1:{ports[-1] if ports else DEFAULT_METRICS_PORT}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:  # noqa: S310 - a local http URL
            text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("nv_gpu_memory_used_bytes")]
    return int(sum(values)) if values else None
