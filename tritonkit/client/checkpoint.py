"""Append-only JSONL checkpoint of per-image results, so an interrupted eval can resume.

Layout: the first line is a header ``{"checkpoint": 1, "run": {...}}`` naming the run (model,
task, dataset ...); every further line is ``{"key": <image key>, ...entry}`` where the entry is
``{"record": {...}}`` (optionally with ``"reference"`` and ``"note"``) or ``{"error": reason}``.

Lines are flushed after every batch, so a killed process loses at most the batch in flight.
On resume a half-written last line (the process died mid-write) is dropped and the file is
cut back to its last complete line before appending; a torn or corrupt line elsewhere is
skipped and counted (its image is evaluated again). When a key appears twice the last entry
wins (a recorded error retried on resume is replaced by its new result). A file without the
header line cannot be matched to a run and is refused, as is a checkpoint written for another
run (another model or dataset). Without resume, an existing checkpoint is kept as
``<name>.prev`` rather than overwritten.

:class:`OutputLock` keeps two runs off one output folder: an exclusive ``fcntl.flock`` on a
lock file that names its holder (pid, host, start time); a lock left by a dead process is
taken over with a note.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from tritonkit.errors import TritonkitError
from tritonkit.io import json_default

VERSION = 1
LOCK_NAME = ".tritonkit.lock"


class CheckpointError(TritonkitError):
    """A checkpoint that cannot be resumed (another run's, headerless, or unreadable)."""


class OutputLockError(TritonkitError):
    """The output folder's lock file cannot be created."""


class OutputLockedError(OutputLockError):
    """Another live run holds the output folder's lock."""


def _jsonable(identity: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(identity), default=str))


@dataclass
class CheckpointScan:
    """What a checkpoint file holds: the run identity (None without a header line), the entry
    of every key (last wins), the byte length of the complete lines, and the numbers of the
    complete lines that were skipped as corrupt, each with why."""

    identity: dict | None
    entries: dict[str, dict]
    good_end: int
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _parse_line(raw: bytes) -> tuple[dict | None, str]:
    """One entry line -> ``(object, "")`` or ``(None, why it is not an entry)``."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"is not valid JSON ({getattr(exc, 'msg', None) or exc.reason})"
    except RecursionError:
        return None, "is nested too deeply to parse"
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not ("record" in obj or "error" in obj):
        return None, "is not a checkpoint entry (needs key and record or error)"
    return obj, ""


def scan_checkpoint(path: Path) -> CheckpointScan:
    """Read a checkpoint, skipping (and listing) corrupt lines. Pure read."""
    data = Path(path).read_bytes()
    good_end = data.rfind(b"\n") + 1  # anything after the last newline is a torn write
    scan = CheckpointScan(None, {}, good_end)
    first = True
    for lineno, raw in enumerate(data[:good_end].splitlines(), start=1):
        if not raw.strip():
            continue
        if first:
            first = False
            try:
                head = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                head = None
            if isinstance(head, dict) and "checkpoint" in head:
                scan.identity = head.get("run") or {}
                continue
        obj, why = _parse_line(raw)
        if obj is None:
            scan.skipped.append((lineno, why))
            continue
        key = obj.pop("key")
        scan.entries.pop(key, None)  # last wins, and keeps the order of the latest entries
        scan.entries[key] = obj
    return scan


def read_checkpoint(path: Path) -> tuple[dict | None, dict[str, dict], int]:
    """``(run identity, {key: entry}, byte length of the complete lines)``. Pure, strict read:
    a malformed line other than a torn last line raises :class:`CheckpointError` naming it."""
    scan = scan_checkpoint(path)
    if scan.skipped:
        lineno, why = scan.skipped[0]
        raise CheckpointError(f"{path}: line {lineno} {why}")
    return scan.identity, scan.entries, scan.good_end


class Checkpoint:
    """One run's checkpoint file. ``entries()`` gives what is already done (empty if fresh);
    ``skipped`` lists the corrupt lines skipped on resume (line number, why)."""

    def __init__(self, path: str | Path, identity: Mapping[str, Any], resume: bool):
        self.path = Path(path)
        self.identity = _jsonable(identity)
        self._entries: dict[str, dict] = {}
        self.skipped: list[tuple[int, str]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.is_file():
            scan = self._resumable(scan_checkpoint(self.path))
            self._entries, self.skipped = scan.entries, scan.skipped
            with open(self.path, "r+b") as f:
                f.truncate(scan.good_end)
            self._file = open(self.path, "a", encoding="utf-8")
            if scan.good_end == 0:
                self._write_header()
        else:
            if self.path.exists():
                os.replace(self.path, self.path.with_name(self.path.name + ".prev"))
            self._file = open(self.path, "w", encoding="utf-8")
            self._write_header()

    def _resumable(self, scan: CheckpointScan) -> CheckpointScan:
        """``scan`` when it belongs to this run; a CheckpointError otherwise."""
        if scan.identity is None and scan.good_end > 0:
            raise CheckpointError(f"{self.path}: has no header line naming its run, so it cannot be matched to "
                                  f"this one; use another output folder or run without --resume")
        found = scan.identity
        if found is not None and found != self.identity:
            diff = sorted(k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k))
            raise CheckpointError(
                f"{self.path}: written by another run (differs in {', '.join(diff)}); "
                f"use another output folder or run without --resume")
        return scan

    def _write_header(self) -> None:
        self._file.write(json.dumps({"checkpoint": VERSION, "run": self.identity}) + "\n")
        self._file.flush()

    def entries(self) -> dict[str, dict]:
        return dict(self._entries)

    def append(self, entries: Iterable[tuple[str, Mapping]]) -> None:
        """Write ``(key, entry)`` lines and flush (one write call, so a line is never interleaved)."""
        lines = [json.dumps({"key": key, **entry}, separators=(",", ":"), default=json_default) + "\n"
                 for key, entry in entries]
        if lines:
            self._file.write("".join(lines))
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------ output lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


class OutputLock:
    """An exclusive lock on one output folder (``<folder>/.tritonkit.lock``).

    :meth:`acquire` takes a non-blocking ``fcntl.flock`` and writes the holder (pid, host,
    start time) into the file; when another process holds it, :class:`OutputLockedError` says
    who. The kernel drops a flock when its process dies, so a file still naming a holder whose
    flock is gone was left by a run that died: it is taken over and :attr:`note` says whose it
    was. :meth:`release` empties the file and unlocks (the file stays: removing it would let two
    later runs lock two different files).
    """

    def __init__(self, folder: str | Path, what: str = "run"):
        self.path = Path(folder) / LOCK_NAME
        self.what = what
        self.note: str | None = None
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputLockError(f"{self.path}: cannot create the lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # a file system without flock
                self.note = f"{self.path}: not locked, the file system refuses locks ({exc.strerror})"
                os.close(fd)
                return self
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise OutputLockedError(f"{self.path.parent}: another {self.what} is using this folder "
                                    f"({holder}); wait for it or use another output folder") from None
        previous = os.pread(fd, 4096, 0)
        if previous.strip():
            self.note = _stale_note(previous, self.path)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(raw: bytes) -> dict:
    try:
        info = json.loads(raw.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(raw: bytes) -> str:
    info = _holder(raw)
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"


def _stale_note(raw: bytes, path: Path) -> str:
    info = _holder(raw)
    pid, host = info.get("pid"), info.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and _pid_alive(pid) and pid != os.getpid():
        state = "alive but no longer holding it"
    else:
        state = "no longer running"
    return f"took over the stale lock {path} of {_describe(raw)} ({state})"


__all__ = ["Checkpoint", "CheckpointError", "CheckpointScan", "OutputLock", "OutputLockError", "OutputLockedError",
           "read_checkpoint", "scan_checkpoint", "LOCK_NAME"]
