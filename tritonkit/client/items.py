"""Dataset items for the run-stream engine: image files, folder scans, deterministic subsets.

An item (:class:`tritonkit.client.pipeline.Item`) has a ``key`` and ``read_bytes()``;
:class:`FileItem` is the file one. The scans list what a folder holds (images, other files,
entries named like images that cannot be read: dangling symlinks, loops, directories, pipes), so
every task's dataset reader reports them the same way; :func:`select_subset` /
:func:`limit_dataset` pick the images a ``--limit`` evaluates.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from tritonkit.client.decode import DEFAULT_MAX_BYTES, read_image_bytes
from tritonkit.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
LIMIT_MODES = ("stride", "first")


@dataclass(frozen=True)
class FileItem:
    """An image file. ``key`` is its path relative to the dataset root (posix)."""

    key: str
    path: Path
    label: int
    max_bytes: int | None = DEFAULT_MAX_BYTES

    def read_bytes(self) -> bytes:
        return read_image_bytes(self.path, max_bytes=self.max_bytes)


def is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def not_image(key: str) -> dict:
    suffix = PurePosixPath(key).suffix
    return {"path": key, "reason": f"not an image file (suffix {suffix or 'none'!r}), not evaluated"}


def entry_problem(p: Path) -> str | None:
    """Why a directory entry cannot be read as a file (None: it is a regular file, or a symlink
    to one): a dangling symlink, a symlink loop, a directory, a device or pipe."""
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop, not evaluated"
        if p.is_symlink():
            return f"dangling symlink (target {os.readlink(p)!r} does not exist), not evaluated"
        return f"cannot stat: {exc.strerror or exc}, not evaluated"
    if stat.S_ISDIR(st.st_mode):
        return "a directory, not an image file, not evaluated"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (device, pipe or socket), not evaluated"
    return None


def scan_folder(folder: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """``(images, other regular files, unreadable image-named entries with their reason)`` of a
    folder, each sorted; hidden entries are left out."""
    images, others, bad = [], [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        problem = entry_problem(p)
        if problem is None:
            (images if is_image(p) else others).append(p)
        elif is_image(p):
            bad.append((p, problem))
    return images, others, bad


def unreadable(key: str, reason: str) -> dict:
    return {"path": key, "reason": reason}


def select_subset(items: Sequence, limit: int | None, mode: str = "stride") -> tuple[list, str]:
    """A deterministic subset of ``limit`` items of the key-sorted list, and how it was chosen.

    ``stride``: every k-th item (indices ``floor(i * n / limit)``), which in the folder layout
    spreads the subset over all classes; ``first``: the first ``limit`` items.
    """
    if mode not in LIMIT_MODES:
        raise DatasetError(f"limit mode {mode!r} not one of {LIMIT_MODES}")
    ordered = sorted(items, key=lambda it: it.key)
    n = len(ordered)
    if limit is None or limit >= n:
        return ordered, f"all {n} images"
    if limit < 1:
        raise DatasetError(f"limit must be >= 1 (got {limit})", fields=("limit",))
    if mode == "first":
        return ordered[:limit], f"first {limit} of {n} images in sorted order"
    picked = [ordered[(i * n) // limit] for i in range(limit)]
    return picked, f"{limit} of {n} images, evenly spaced (one every ~{n / limit:.1f}) in sorted order"


def limit_dataset(ds: Any, limit: int | None, mode: str = "stride") -> Any:
    """``ds`` (a dataset with ``items`` and ``subset``) keeping :func:`select_subset`'s items."""
    items, how = select_subset(ds.items, limit, mode)
    ds.items = items
    ds.subset = how
    return ds


__all__ = ["IMAGE_SUFFIXES", "LIMIT_MODES", "FileItem", "entry_problem", "is_image", "limit_dataset", "not_image",
           "scan_folder", "select_subset", "unreadable"]
