"""File helpers, one of each: atomic writes (text, bytes, JSON) and file digests.

Every write goes to a temporary file in the target's folder, is flushed to disk and then
renamed over the target, so a crash or a full disk never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from tritonkit.errors import TritonkitError

_CHUNK = 8 << 20


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for the project's values: numpy, Paths, ``to_dict()`` objects."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def finite(obj: Any) -> Any:
    """A copy of ``obj`` with NaN/inf floats replaced by ``None`` (strict JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file beside it, fsync, rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def to_json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (NaN/inf -> null; numpy, Path and ``to_dict`` values converted)."""
    plain = json.loads(json.dumps(obj, default=json_default))
    return json.dumps(finite(plain), indent=indent, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON atomically."""
    return atomic_write_text(path, to_json_text(obj))


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = _CHUNK) -> str:
    """Hex digest of a file's bytes, read in chunks (any :mod:`hashlib` algorithm)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    return file_digest(path, "sha256")


def ensure_out_dir(path: str | Path, field: str = "out", create: bool = True) -> Path:
    """Create the output folder ``path`` if needed and prove a file can be written in it.

    One-line :class:`TritonkitError` (naming ``field`` and the path) when ``path`` is a file,
    lies below a file, cannot be created, is read-only, or the disk is full; returns the path.
    With ``create=False`` a missing folder is not made: its nearest existing parent is probed.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TritonkitError(f"{field} {path} is a file, not a folder")
    probe_dir = path
    if not create:
        probe_dir = next((p for p in (path, *path.parents) if p.exists()), Path("."))
        if not probe_dir.is_dir():
            raise TritonkitError(f"{field} {path} is not a writable folder: {probe_dir} is a file")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tritonkit-write-probe.", dir=probe_dir)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise TritonkitError(f"{field} {path} is not a writable folder: {exc.strerror or exc}") from None
    return path


__all__ = ["ensure_out_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "to_json_text", "json_default",
           "finite", "file_digest", "sha256_file"]


MAX_JSON_BYTES = 512 * 1024 * 1024


def load_json_bounded(path: str | Path, what: str = "JSON file", max_bytes: int | None = None) -> Any:
    """Parse a user JSON file with a size cap and no RecursionError escaping.

    Raises ValueError with one line naming the file (callers wrap it in their error type).
    """
    p = Path(path)
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{p}: {what} is {size} bytes, over the {max_bytes}-byte limit")
    text = p.read_text()
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{p}: {what} is nested too deeply to parse") from None
