"""Client system shared memory (--shm) cleans up after itself: SIGTERM/SIGINT, and kill -9 reclaimed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tritonkit.client import shm as shm_lifecycle

SHM = Path("/dev/shm")

CLIENT = textwrap.dedent("""
    import sys, time
    from tritonkit.cards import get_card
    from tritonkit.client.infer import ClientOptions, TritonInfer
    client = TritonInfer(get_card("demo_shapes"), ClientOptions(url=sys.argv[1], shm=True, in_flight=2), max_batch=2)
    client.connect()
    print("connected", flush=True)
    time.sleep(120)
""")


def _local_regions(pid: int) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"tk{pid}_*"))


def _server_regions(url: str, pid: int) -> list[str]:
    import tritonclient.grpc as grpcclient

    status = grpcclient.InferenceServerClient(url).get_system_shared_memory_status(as_json=True)
    return sorted(n for n in status.get("regions", {}) if n.startswith(f"tk{pid}_"))


def _start_client(url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = proc.stdout.readline()
    if "connected" not in line:
        proc.kill()
        raise AssertionError(f"client did not connect: {line}{proc.stdout.read()}")
    return proc


def test_region_names_carry_the_owner_pid():
    tag = shm_lifecycle.region_tag(1234)
    assert shm_lifecycle.owner_pid(f"/{tag}_0_in_input") == 1234
    assert shm_lifecycle.owner_pid("triton_python_backend_shm_region_x") is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unregisters_and_unlinks_the_regions(tiny_server, sig):
    """SIGTERM (or SIGINT) of a client using --shm once left 8 /dev/shm regions and 8 registrations."""
    proc = _start_client(tiny_server.grpc_url)
    try:
        assert len(_local_regions(proc.pid)) == 4 and len(_server_regions(tiny_server.grpc_url, proc.pid)) == 4
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (-sig, 128 + sig, 1)  # SIGINT: KeyboardInterrupt traceback, exit 1
    assert _local_regions(proc.pid) == []
    assert _server_regions(tiny_server.grpc_url, proc.pid) == []


def test_regions_of_a_killed_client_are_reclaimed_by_the_next(tiny_server):
    from tritonkit.cards import get_card
    from tritonkit.client.infer import ClientOptions, TritonInfer

    proc = _start_client(tiny_server.grpc_url)
    proc.kill()
    proc.wait()
    assert len(_local_regions(proc.pid)) == 4 and len(_server_regions(tiny_server.grpc_url, proc.pid)) == 4
    with TritonInfer(get_card("demo_shapes"), ClientOptions(url=tiny_server.grpc_url, shm=True)) as client:
        assert _local_regions(proc.pid) == [] and _server_regions(tiny_server.grpc_url, proc.pid) == []
        assert len(_local_regions(os.getpid())) == 4  # its own, live
        out = client.infer(__import__("numpy").zeros((1, 3, 64, 64), "float32"))
        assert out["logits"].shape == (1, 8)
    assert _local_regions(os.getpid()) == []


def test_reclaim_leaves_live_owners_and_foreign_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = [f"tk{dead.pid}_deadbeef_0_in_x", f"tk{os.getpid()}_cafebabe_0_in_x", "other_region", "tk12x_y"]
    for n in names:
        (tmp_path / n).write_bytes(b"\0")
    assert shm_lifecycle.reclaim_local(tmp_path) == [names[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
