"""The endpoint pool without a server: parsing, DNS resolution, picking, health, the report.

A Kubernetes headless Service (one DNS A record per ready pod) cannot run here: the resolver is
a function returning the ``getaddrinfo`` tuples such a Service's name gives. The probe is a
plain function whose answer the test sets, standing in for a server's ready check (the real
probe runs against real servers in test_endpoints_faults.py).
"""

from __future__ import annotations

import socket

import pytest

from tritonkit.client.endpoints import (EndpointPool, EndpointUnready, endpoints_markdown, parse_url,
                                        resolve_endpoints, resolve_host)
from tritonkit.errors import ServerError
from tritonkit.tasks.base import OptionsError
from tritonkit.tasks.classify.task import ClassificationOptions


def headless(answers: dict[str, list[str]]):
    """A resolver giving ``answers[name]`` as getaddrinfo would (IPv6 when the address has ':')."""
    def resolve(host, port, family=0, type_=0, *rest):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port) if ":" not in ip else (ip, port, 0, 0)) for ip in answers[host]]
    return resolve


def test_parse_url_takes_a_comma_list_schemes_ipv6_and_default_ports():
    assert parse_url("grpc://a:9001, b ,[::1]:9002,http://c:1/", 8001) == (
        ("a", 9001), ("b", 8001), ("::1", 9002), ("c", 1))
    for bad, why in (("a:x", "not a number"), ("a:70000", "out of range"), (" , ", "empty"), (":8001", "no host")):
        with pytest.raises(ServerError, match=why):
            parse_url(bad, 8001)


def test_a_headless_service_name_becomes_one_endpoint_per_pod_with_the_port_kept():
    resolver = headless({"triton-headless.ns.svc": ["10.0.0.7", "10.0.0.5", "10.0.0.5", "fd00::1"],
                         "one.ns.svc": ["10.0.1.1"], "v6only": ["fd00::2", "fd00::1"]})
    # IPv4 preferred when a name has both; sorted; duplicates dropped
    assert resolve_host("triton-headless.ns.svc", 8001, resolver) == ["10.0.0.5:8001", "10.0.0.7:8001"]
    assert resolve_host("one.ns.svc", 8001, resolver) == ["one.ns.svc:8001"]  # one address: the name as written
    assert resolve_host("v6only", 8001, resolver) == ["[fd00::1]:8001", "[fd00::2]:8001"]
    assert resolve_endpoints("triton-headless.ns.svc:9001,10.0.0.5:9001", 8001, resolver) == [
        "10.0.0.5:9001", "10.0.0.7:9001"]
    with pytest.raises(ServerError, match="cannot resolve 'missing'"):
        resolve_endpoints("missing:8001", 8001, resolver)


def test_real_resolution_keeps_localhost_one_endpoint():
    assert resolve_endpoints("localhost:8001", 8001) == ["localhost:8001"]


class Probe:
    """Stands in for the server's ready check: ``down`` addresses raise EndpointUnready."""

    def __init__(self, down=(), mismatch=()):
        self.down, self.mismatch, self.calls = set(down), set(mismatch), []

    def __call__(self, address: str, admit: bool) -> None:
        self.calls.append((address, admit))
        if address in self.down:
            raise EndpointUnready(f"Triton server at grpc {address} is unreachable")
        if admit and address in self.mismatch:
            raise ServerError(f"model at {address} does not match card")


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_pick_spreads_over_ready_endpoints_by_fewest_in_flight():
    pool = EndpointPool(["a:1", "b:1", "c:1"], Probe())
    pool.admit_all()
    first = [pool.pick() for _ in range(3)]
    assert sorted(first) == ["a:1", "b:1", "c:1"]  # one each before any gets a second
    pool.record("b:1", 0.01, 1)
    assert pool.pick() == "b:1"  # the only one with nothing in flight
    for address in first:
        if address != "b:1":
            pool.record(address, 0.01, 1)
    pool.record("b:1", 0.01, 1)
    picks = [pool.pick() for _ in range(30)]
    assert {a: picks.count(a) for a in "a:1 b:1 c:1".split()} == {"a:1": 10, "b:1": 10, "c:1": 10}


def test_a_retry_avoids_the_endpoint_that_failed_when_another_is_ready():
    pool = EndpointPool(["a:1", "b:1"], Probe())
    pool.admit_all()
    assert all(pool.pick(avoid="a:1") == "b:1" for _ in range(5))


def test_an_unavailable_endpoint_is_taken_out_then_put_back_by_the_probe_with_a_new_generation():
    probe, clock = Probe(), Clock()
    pool = EndpointPool(["a:1", "b:1"], probe, clock=clock)
    pool.admit_all()
    address = pool.pick()
    other = "b:1" if address == "a:1" else "a:1"
    generation = pool.generation(address)
    clock.t += 1
    pool.record(address, 0.02, 2, error="connection refused", unavailable=True)
    assert pool.ready() == [other]
    assert all(pool.pick() == other for _ in range(4))
    probe.down.add(address)
    pool.probe_round()
    assert pool.ready() == [other]  # still down: stays out
    probe.down.clear()
    clock.t += 1
    pool.probe_round()
    assert sorted(pool.ready()) == ["a:1", "b:1"]
    assert (address, True) in probe.calls  # put back only through the admission probe
    assert pool.generation(address) == generation + 1 and pool.generation(other) == 1
    report = pool.report()
    events = [(e["endpoint"], e["event"]) for e in report.events]
    assert events == [(address, "out"), (address, "in")]
    by = {e.address: e for e in report.endpoints}
    assert by[address].taken_out == 1 and by[address].rejoined == 1 and by[address].errors == 1
    assert by[address].last_error.endswith("is unreachable")  # the last failed probe's reason


def test_a_ready_endpoint_failing_its_probe_is_taken_out_and_confirm_checks_at_once():
    probe = Probe()
    pool = EndpointPool(["a:1", "b:1"], probe)
    pool.admit_all()
    probe.down.add("a:1")
    pool.probe_round()
    assert pool.ready() == ["b:1"]
    assert pool.confirm("b:1") is True
    probe.down.add("b:1")
    assert pool.confirm("b:1") is False and pool.ready() == []
    assert pool.pick() in ("a:1", "b:1")  # none ready: a request is still attempted somewhere


def test_admission_starts_unready_endpoints_out_and_refuses_a_contract_mismatch_or_none_ready():
    pool = EndpointPool(["a:1", "b:1"], Probe(down={"b:1"}))
    pool.admit_all()
    assert pool.ready() == ["a:1"] and pool.report().events[0]["event"] == "out"
    with pytest.raises(ServerError, match="does not match card"):
        EndpointPool(["a:1", "b:1"], Probe(mismatch={"b:1"})).admit_all()
    with pytest.raises(ServerError, match=r"no endpoint is ready: a:1: .*unreachable; b:1: .*unreachable"):
        EndpointPool(["a:1", "b:1"], Probe(down={"a:1", "b:1"})).admit_all()


def test_a_probe_that_raises_anything_counts_as_a_failed_probe():
    def probe(address, admit):
        if address == "b:1" and not admit:
            raise RuntimeError("connection closed.")

    pool = EndpointPool(["a:1", "b:1"], probe)
    pool.admit_all()
    pool.probe_round()
    assert pool.ready() == ["a:1"]
    assert "health probe failed: connection closed." in pool.report().endpoints[1].last_error


def test_dns_changes_add_and_remove_endpoints():
    answers = {"svc": ["10.0.0.1", "10.0.0.2"]}
    pool = EndpointPool(resolve_endpoints("svc:8001", 8001, headless(answers)), Probe(), url="svc:8001",
                        default_port=8001, resolver=headless(answers))
    pool.admit_all()
    answers["svc"] = ["10.0.0.2", "10.0.0.3"]  # a rolling update replaced a pod
    pool.probe_round()
    assert pool.addresses == ["10.0.0.2:8001", "10.0.0.3:8001"]
    assert sorted(pool.ready()) == ["10.0.0.2:8001", "10.0.0.3:8001"]
    states = {e.address: e.state for e in pool.report().endpoints}
    assert states == {"10.0.0.1:8001": "gone", "10.0.0.2:8001": "ready", "10.0.0.3:8001": "ready"}


def test_the_report_gives_shares_latency_and_the_traffic_per_phase():
    clock = Clock()
    pool = EndpointPool(["a:1", "b:1"], Probe(), clock=clock)
    pool.admit_all()
    for latency in (0.010, 0.020):
        for _ in range(2):
            address = pool.pick()
            clock.t += 0.5
            pool.record(address, latency, 4)
    pool.take_out("a:1", "connection refused")
    for _ in range(4):
        assert pool.pick() == "b:1"
        clock.t += 0.5
        pool.record("b:1", 0.030, 4)
    report = pool.report().to_dict()
    by = {e["address"]: e for e in report["endpoints"]}
    assert by["a:1"]["ok"] == 2 and by["b:1"]["ok"] == 6
    assert by["a:1"]["share"] == 0.25 and by["b:1"]["share"] == 0.75 and by["b:1"]["images"] == 24
    assert by["a:1"]["latency_ms"]["mean"] == pytest.approx(15.0) and by["b:1"]["latency_ms"]["max"] == 30.0
    assert [p["requests"] for p in report["phases"]] == [{"a:1": 2, "b:1": 2}, {"b:1": 4}]
    md = endpoints_markdown(report)
    assert "## Endpoints" in md and "| a:1 | out | 2 | 25.0 |" in md and "Traffic between events" in md
    assert endpoints_markdown(None) == ""


def test_stream_options_refuse_a_malformed_url_list_naming_the_field():
    with pytest.raises(OptionsError, match=r"^url: url 'b:x': port 'x' is not a number"):
        ClassificationOptions(model="demo_shapes", data="x", url="a:8001,b:x")
    assert ClassificationOptions(model="demo_shapes", data="x", url="a:8001,b:8001").url == "a:8001,b:8001"
