"""The server process behind a URL, when it runs on this machine: pid, flags, sockets, RSS.

Only ``psutil`` is used. A remote server has no pid here; callers report what they could not
measure instead of guessing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from tritonkit.errors import ServerError


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def split_url(url: str, default_port: int) -> HostPort:
    """``host:port`` / ``http://host:port/path`` / ``[::1]:8001`` -> HostPort."""
    text = url.split("://", 1)[-1].split("/", 1)[0]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        return HostPort(host or "127.0.0.1", int(port) if port else default_port)
    except ValueError:
        raise ServerError(f"URL {url!r}: port {port!r} is not a number") from None


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address == "localhost"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine (loopback, or one of its own addresses)."""
    if host in ("localhost", "") or is_loopback(host):
        return True
    import psutil

    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    own = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    return bool(resolved & own)


def find_listening_pid(port: int) -> int | None:
    """The pid listening on TCP ``port`` on this machine, or None."""
    import psutil

    try:
        conns = psutil.net_connections("tcp")
    except psutil.AccessDenied:
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


def listening_addresses(pid: int) -> list[HostPort]:
    """Every TCP address ``pid`` listens on."""
    import psutil

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
    import psutil

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
    import psutil

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
