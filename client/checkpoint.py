"""Append-only JSONL checkpoint of per-image results, so an interrupted eval can resume.

Layout: the first line is a header ``{"checkpoint": 1, "run": {...}}`` naming the run (model,
task, dataset ...); every further line is ``{"key": <image key>, ...entry}`` where the entry is
``{"record": {...}}`` (optionally with ``"reference"`` and ``"note"``) or ``{"error": reason}``.

Lines are flushed after every batch, so a killed process loses at most the batch in flight.
On resume a half-written last line (the process died mid-write) is dropped and the file is
cut back to its last complete line before appending; a key seen twice keeps its first entry,
so a resumed run ends with exactly one entry per image. Resuming a checkpoint written for
another run (another model or dataset) is refused. Without resume, an existing checkpoint is
kept as ``<name>.prev`` rather than overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from tritonkit.errors import TritonkitError

VERSION = 1


class CheckpointError(TritonkitError):
    """A checkpoint that cannot be resumed (another run's, or unreadable)."""


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays in records become plain JSON numbers/lists."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _jsonable(identity: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(identity), default=str))


def read_checkpoint(path: Path) -> tuple[dict | None, dict[str, dict], int]:
    """``(run identity, {key: entry}, byte length of the complete lines)``. Pure read.

    Malformed lines other than a torn last line raise :class:`CheckpointError` naming the line.
    """
    data = Path(path).read_bytes()
    good_end = data.rfind(b"\n") + 1  # anything after the last newline is a torn write
    identity: dict | None = None
    entries: dict[str, dict] = {}
    for lineno, raw in enumerate(data[:good_end].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
        if lineno == 1 and isinstance(obj, dict) and "checkpoint" in obj:
            identity = obj.get("run") or {}
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not (
                "record" in obj or "error" in obj):
            raise CheckpointError(f"{path}: line {lineno} is not a checkpoint entry (needs key and record or error)")
        key = obj.pop("key")
        entries.setdefault(key, obj)
    return identity, entries, good_end


class Checkpoint:
    """One run's checkpoint file. ``entries()`` gives what is already done (empty if fresh)."""

    def __init__(self, path: str | Path, identity: Mapping[str, Any], resume: bool):
        self.path = Path(path)
        self.identity = _jsonable(identity)
        self._entries: dict[str, dict] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.is_file():
            found, self._entries, good_end = read_checkpoint(self.path)
            if found is not None and found != self.identity:
                diff = sorted(k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k))
                raise CheckpointError(
                    f"{self.path}: written by another run (differs in {', '.join(diff)}); "
                    f"use another output folder or run without --resume")
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
            self._file = open(self.path, "a", encoding="utf-8")
            if found is None and good_end == 0:
                self._write_header()
        else:
            if self.path.exists():
                os.replace(self.path, self.path.with_name(self.path.name + ".prev"))
            self._file = open(self.path, "w", encoding="utf-8")
            self._write_header()

    def _write_header(self) -> None:
        self._file.write(json.dumps({"checkpoint": VERSION, "run": self.identity}) + "\n")
        self._file.flush()

    def entries(self) -> dict[str, dict]:
        return dict(self._entries)

    def append(self, entries: Iterable[tuple[str, Mapping]]) -> None:
        """Write ``(key, entry)`` lines and flush (one write call, so a line is never interleaved)."""
        lines = [json.dumps({"key": key, **entry}, separators=(",", ":"), default=_json_default) + "\n" for key, entry in entries]
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
