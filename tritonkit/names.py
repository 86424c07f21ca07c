"""Model names and paths under a root: one check for every command that names or writes a model.

A model name becomes a folder in a model repository (and a file name in an export folder),
so it must be a plain Triton model name: letters, digits, ``_``, ``-`` and ``.``, starting with
a letter, digit or ``_``, at most :data:`MAX_NAME_LENGTH` characters, and never ``.`` or ``..``.
That excludes path separators, leading dots (hidden files, ``..``), spaces and control
characters. :func:`safe_child` then proves that ``root/name``, once every symbolic link is
resolved, is still inside ``root``: a link planted in the repository cannot redirect a write.
"""

from __future__ import annotations

import re
from pathlib import Path

from tritonkit.errors import TritonkitError

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_model_name(name: object, field: str = "name") -> str:
    """``name`` if it is a safe Triton model name, else TritonkitError naming ``field``."""
    if not isinstance(name, str) or not name:
        raise TritonkitError(f"{field} must be a non-empty model name")
    shown = name.encode("unicode_escape").decode("ascii")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise TritonkitError(f"{field} '{shown}' is a path, not a model name (no '/', '\\', '.' or '..')")
    if len(name) > MAX_NAME_LENGTH:
        raise TritonkitError(f"{field} is {len(name)} characters long; at most {MAX_NAME_LENGTH}")
    if not _NAME.fullmatch(name):
        raise TritonkitError(f"{field} '{shown}' is not a valid model name: use letters, digits, '_', '-' and '.', "
                             f"starting with a letter, digit or '_'")
    return name


def safe_child(root: str | Path, name: str, field: str = "name") -> Path:
    """``root/name`` after checking ``name``, proven (symlinks resolved) to stay inside ``root``.

    The returned path is the unresolved ``root/name`` (so callers keep the paths the user
    gave); the check is made on the resolved forms of both.
    """
    check_model_name(name, field)
    root = Path(root)
    child = root / name
    real_root = root.resolve()
    real_child = child.resolve()
    if real_child == real_root or real_root not in real_child.parents:
        raise TritonkitError(f"{field} {name!r}: {child} resolves to {real_child}, outside {real_root}")
    return child


__all__ = ["MAX_NAME_LENGTH", "check_model_name", "safe_child"]
