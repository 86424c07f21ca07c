"""The bundled server's process tree and python-backend shared memory: tie, stop, reclaim.

* :func:`parent_death_preexec` ties tritonserver's life to the process that starts it: the
  child asks the kernel (``prctl(PR_SET_PDEATHSIG)``, Linux) for SIGTERM when its parent
  dies, so ``kill -9`` of ``tritonkit serve --local`` still stops the server, which in turn
  stops its python-backend stubs. The kernel ties the signal to the *thread* that forked, so
  it is only set when the server is started from the main thread.
* :func:`stop_tree` ends what is left of a stopped server's process group and unlinks the
  shared-memory regions of stubs that had to be killed.
* :func:`reclaim_orphans` runs before each start: a python-backend stub whose tritonserver is
  gone (the server was killed with SIGKILL; the stub ignores SIGTERM and keeps a 64 MB region
  in ``/dev/shm``) is killed, and its region, mapped by no process any more, is unlinked; so is
  any python-backend region no tritonserver or stub maps and nobody modified for a minute
  (both server and stub killed).

A stub is recognised by its command line, which names its region and its server's pid::

    triton_python_backend_stub MODEL.py triton_python_backend_shm_region_<uuid> SIZE GROWTH SERVER_PID ...
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

STUB_NAME = "triton_python_backend_stub"
SERVER_NAME = "tritonserver"
REGION_PREFIX = "triton_python_backend_shm_region_"
SHM_DIR = Path("/dev/shm")
PR_SET_PDEATHSIG = 1
# A region file is created and mapped in one step by tritonserver; one left unmapped this long is garbage.
STALE_AFTER_S = 60.0


def parent_death_preexec(sig: int = signal.SIGTERM):
    """A ``preexec_fn`` asking for ``sig`` when the parent dies (None off Linux or without libc)."""
    if not os.path.exists("/proc/self"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here, before the fork
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass(frozen=True)
class Stub:
    pid: int
    server_pid: int | None
    region: str | None


def as_stub(proc: psutil.Process) -> Stub | None:
    """The stub ``proc`` describes, or None when it is not a python-backend stub."""
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return None
    if not argv or Path(argv[0]).name != STUB_NAME:
        return None
    region = argv[2] if len(argv) > 2 and argv[2].startswith(REGION_PREFIX) else None
    server = int(argv[5]) if len(argv) > 5 and argv[5].isdigit() else None
    return Stub(proc.pid, server, region)


def _is_orphan(proc: psutil.Process, stub: Stub) -> bool:
    try:
        return stub.server_pid is None or proc.ppid() != stub.server_pid or not psutil.pid_exists(stub.server_pid)
    except psutil.Error:
        return False


def mapped_regions() -> set[str] | None:
    """Names of ``/dev/shm`` files mapped by a tritonserver or a stub (only they map python-backend
    regions); None when the maps of one of them cannot be read."""
    names: set[str] = set()
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in (SERVER_NAME, STUB_NAME):
            continue
        try:
            with open(f"/proc/{proc.pid}/maps", encoding="utf-8", errors="replace") as f:
                for line in f:
                    idx = line.find(f"{SHM_DIR}/")
                    if idx >= 0:
                        names.add(line[idx + len(str(SHM_DIR)) + 1:].strip().removesuffix(" (deleted)"))
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            return None
    return names


def unlink_unmapped(regions: list[str]) -> list[str]:
    """Unlink each python-backend region of ``regions`` that exists and no process maps."""
    wanted = [r for r in regions if r and r.startswith(REGION_PREFIX) and "/" not in r and (SHM_DIR / r).exists()]
    if not wanted:
        return []
    mapped = mapped_regions()
    if mapped is None:
        return []
    removed = []
    for region in wanted:
        if region not in mapped:
            try:
                (SHM_DIR / region).unlink()
                removed.append(region)
            except OSError:
                pass
    return removed


def _kill_and_wait(procs: list[psutil.Process], timeout_s: float = 5.0) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout_s)


def stale_regions(min_age_s: float = STALE_AFTER_S, shm_dir: Path = SHM_DIR) -> list[str]:
    """This user's python-backend region files not modified for ``min_age_s`` (candidates only:
    :func:`unlink_unmapped` still spares any a process maps)."""
    now, uid, found = time.time(), os.getuid(), []
    try:
        entries = list(shm_dir.iterdir())
    except OSError:
        return found
    for path in entries:
        try:
            st = path.stat()
        except OSError:
            continue
        if path.name.startswith(REGION_PREFIX) and st.st_uid == uid and now - st.st_mtime > min_age_s:
            found.append(path.name)
    return found


def reclaim_orphans() -> list[str]:
    """Kill this user's orphaned python-backend stubs and unlink their regions, and regions no
    process maps any more (stub and server both killed); one note each."""
    uid = os.getuid()
    orphans: list[tuple[psutil.Process, Stub]] = []
    for proc in psutil.process_iter():
        try:
            if proc.name() != STUB_NAME or proc.uids().real != uid:
                continue
        except psutil.Error:
            continue
        stub = as_stub(proc)
        if stub is not None and _is_orphan(proc, stub):
            orphans.append((proc, stub))
    _kill_and_wait([p for p, _ in orphans])
    removed = set(unlink_unmapped([s.region for _, s in orphans if s.region] + stale_regions()))
    notes = [f"killed orphaned python-backend stub pid {s.pid} (its tritonserver {s.server_pid} is gone)"
             + (f" and removed /dev/shm/{s.region}" if s.region in removed else "") for _, s in orphans]
    named = {s.region for _, s in orphans}
    return notes + [f"removed /dev/shm/{r} (no process maps it)" for r in sorted(removed - named)]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_tree(pgid: int, known: list[psutil.Process]) -> list[str]:
    """After the server ``pgid`` exited: SIGKILL its group and ``known`` descendants still alive,
    then unlink the regions of the stubs among them. Returns the regions removed."""
    alive = [p for p in known if p.is_running()]
    stubs = [s for s in (as_stub(p) for p in alive) if s is not None]
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _kill_and_wait(alive)
    return unlink_unmapped([s.region for s in stubs if s.region])


__all__ = ["parent_death_preexec", "reclaim_orphans", "stop_tree", "descendants", "as_stub", "Stub",
           "mapped_regions", "unlink_unmapped", "STUB_NAME", "REGION_PREFIX"]
