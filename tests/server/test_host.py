"""tritonkit.host: the one host:port parser, loopback vs this machine, the process behind a port.

The process tests use real sockets and real processes of this machine (a listener opened by the
test, a child process with a known command line, the bundled tritonserver); nothing is mocked.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import pytest

from tritonkit.errors import ServerError
from tritonkit.host import (
    HostPort, find_server_process, format_address, is_loopback, is_this_machine, listening_addresses, memory_sample,
    parse_address, server_flags, server_memory)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8001", HostPort("127.0.0.1", 8001)),
    ("  grpc://host:9/metrics  ", HostPort("host", 9)),
    ("http://host/", HostPort("host", 8001)),
    ("[::1]:8001", HostPort("::1", 8001)),
    ("[::1]", HostPort("::1", 8001)),
    ("::1", HostPort("::1", 8001)),                 # a bare IPv6 literal has no port
    ("fe80::1%eth0", HostPort("fe80::1%eth0", 8001)),
    ("server", HostPort("server", 8001)),
    ("server:65535", HostPort("server", 65535)),
])
def test_parse_address(text, expected):
    assert parse_address(text, 8001) == expected


@pytest.mark.parametrize("text, why", [
    (":8001", "no host"), ("[]:8001", "no host"), ("", "no host"),
    ("a:x", "port 'x' is not a number"), ("[::1]:http", "is not a number"),
    ("a:0", "out of range"), ("a:70000", "out of range"),
    ("a:1,b:2", "one host:port expected"),
])
def test_parse_address_refuses_in_one_line_naming_the_text(text, why):
    with pytest.raises(ServerError, match=why) as err:
        parse_address(text, 8001)
    assert "\n" not in str(err.value) and repr(text.strip()) in str(err.value)


def test_host_port_prints_back_what_parses():
    for hp in (HostPort("::1", 8001), HostPort("10.0.0.5", 1), HostPort("triton.ns.svc", 8000)):
        assert parse_address(str(hp), 1234) == hp
    assert str(HostPort("::1", 8001)) == "[::1]:8001" == format_address("::1", 8001)
    assert str(HostPort("a", 1)) == "a:1"


def test_loopback():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1", "localhost", "LocalHost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.1.2.3", "::ffff:10.0.0.1", "example.com"):
        assert not is_loopback(host), host


def test_this_machine_is_loopback_the_wildcard_its_name_and_its_own_addresses():
    own = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
           if a.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(a.address)]
    for host in ("127.0.0.1", "localhost", "[::1]", "0.0.0.0", "::", socket.gethostname(), *own[:2]):
        assert is_this_machine(host), host
    assert not is_this_machine("192.0.2.1")          # TEST-NET-1: documentation only, never assigned
    assert not is_this_machine("no-such-host.invalid")
    # a loopback bind is not reachable from elsewhere, but the wildcard is: the two questions differ
    assert is_this_machine("0.0.0.0") and not is_loopback("0.0.0.0")


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_the_process_behind_a_port_is_the_listener(listener):
    proc = find_server_process(listener)
    assert proc is not None and proc.pid == os.getpid()
    assert HostPort("127.0.0.1", listener) in listening_addresses(os.getpid())
    sample = memory_sample(os.getpid())
    assert sample.server_bytes > 0
    assert sample.total_bytes >= sample.server_bytes


def test_server_memory_says_why_it_is_not_measured(listener):
    assert "not on this host" in server_memory("192.0.2.1:8001").source
    bad = server_memory("a:x")
    assert bad.bytes is None and bad.source.startswith("not measured: url 'a:x'")
    mine = server_memory(f"127.0.0.1:{listener}")  # a listener that is no tritonserver
    assert mine.bytes is None and f"no local tritonserver process found serving port {listener}" in mine.source


def test_server_flags_read_the_command_line():
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)",
                              "--a=1", "--b", "2", "--c", "--a=3"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"  # running its own command line, not the fork's
        assert server_flags(child.pid) == {"a": "3", "b": "2", "c": "true"}
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert server_flags(child.pid) == {}  # gone
    with pytest.raises(ServerError, match=f"server process {child.pid} is gone"):
        memory_sample(child.pid)


def test_server_memory_of_the_bundled_server(tiny_server):
    """The real tritonserver on this machine: no GPU here, so the resident memory of its process tree."""
    for url in (tiny_server.grpc_url, tiny_server.http_url):
        memory = server_memory(url)
        assert memory.bytes is not None and memory.bytes > 10_000_000, memory.source
        assert memory.source.startswith("rss of tritonserver process tree (pid ")
    proc = find_server_process(int(tiny_server.grpc_url.rsplit(":", 1)[1]))
    assert proc is not None and "tritonserver" in proc.name()
