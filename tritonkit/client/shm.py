"""Lifecycle of the client's system shared-memory regions (``--shm``): named, tracked, cleaned.

* Names: every region of one client starts with :func:`region_tag`, ``tk<owner pid>_<random>``,
  so a region tells which process made it.
* Tracking: :data:`REGISTRY` holds the clean-up of each live set of regions (a callable that
  unregisters them from the server and unlinks them, idempotent). While it holds any, SIGTERM
  and SIGINT run every clean-up first, then do what they did before (the default SIGTERM still
  ends the process with the same status; SIGINT still raises KeyboardInterrupt).
* Reclaim: ``kill -9`` leaves regions no handler could clean. :func:`reclaim_stale` (called
  when a client sets up shared memory) unlinks ``/dev/shm/tk<pid>_*`` files whose owner pid is
  gone and unregisters such regions from the server.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from pathlib import Path
from typing import Callable

import psutil

SHM_DIR = Path("/dev/shm")
_OWNED = re.compile(r"tk(\d+)_[0-9a-f]+_.*")
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def region_tag(pid: int | None = None) -> str:
    """The name prefix of one client's regions: ``tk<pid>_<8 hex>``."""
    return f"tk{os.getpid() if pid is None else pid}_{uuid.uuid4().hex[:8]}"


def owner_pid(name: str) -> int | None:
    """The pid encoded in a region name made by :func:`region_tag`, else None."""
    m = _OWNED.fullmatch(name.lstrip("/"))
    return int(m.group(1)) if m else None


def _owner_gone(name: str) -> bool:
    pid = owner_pid(name)
    return pid is not None and pid != os.getpid() and not psutil.pid_exists(pid)


class Registry:
    """Clean-ups of live shared-memory regions, run on SIGTERM/SIGINT (see the module docstring)."""

    def __init__(self) -> None:
        self._cleanups: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._previous: dict[int, object] = {}

    def track(self, cleanup: Callable[[], object]) -> None:
        """Remember ``cleanup`` (idempotent; a ``weakref.finalize`` fits) and install the handlers."""
        with self._lock:
            self._cleanups = [c for c in self._cleanups if getattr(c, "alive", True)] + [cleanup]
        self._install()

    def cleanup_all(self) -> int:
        """Run every remembered clean-up once; returns how many ran."""
        with self._lock:
            pending, self._cleanups = self._cleanups, []
        for cleanup in pending:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - the others must still run
                pass
        return len(pending)

    def _install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return  # installed already, or not installable (signal handlers belong to the main thread)
        for sig in HANDLED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        self.cleanup_all()
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # end as the signal would have, same exit status


REGISTRY = Registry()


def reclaim_local(shm_dir: Path = SHM_DIR) -> list[str]:
    """Unlink this user's ``tk<pid>_*`` regions whose owner pid is gone; returns their names."""
    removed = []
    try:
        entries = list(shm_dir.iterdir())
    except OSError:
        return removed
    uid = os.getuid()
    for path in entries:
        try:
            if _owner_gone(path.name) and path.stat().st_uid == uid:
                path.unlink()
                removed.append(path.name)
        except OSError:
            continue
    return removed


def reclaim_server(client) -> list[str]:
    """Unregister from the server the ``tk<pid>_*`` regions whose owner pid is gone (best effort:
    a server that refuses the status call, e.g. restricted without the key, is left alone)."""
    try:
        try:
            status = client.get_system_shared_memory_status(as_json=True)
        except TypeError:  # the HTTP client answers JSON without being asked
            status = client.get_system_shared_memory_status()
    except Exception:  # noqa: BLE001
        return []
    regions = status.get("regions", status) if isinstance(status, dict) else status
    names = regions.keys() if isinstance(regions, dict) else [r.get("name", "") for r in regions or []]
    removed = []
    for name in names:
        if _owner_gone(name):
            try:
                client.unregister_system_shared_memory(name)
                removed.append(name)
            except Exception:  # noqa: BLE001
                continue
    return removed


def reclaim_stale(client=None, shm_dir: Path = SHM_DIR) -> list[str]:
    """Regions left by dead clients: unregistered from ``client``'s server, unlinked here."""
    return sorted(set(reclaim_server(client) if client is not None else []) | set(reclaim_local(shm_dir)))


__all__ = ["REGISTRY", "Registry", "region_tag", "owner_pid", "reclaim_stale", "reclaim_local", "reclaim_server"]
