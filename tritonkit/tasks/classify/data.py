"""Classification datasets: ImageNet val in the layouts people actually have, and the demo's.

Layouts (:func:`open_dataset` picks one from what it finds):

* **folders** — ``val/<class>/*.JPEG`` (what ``extract_ILSVRC.sh`` / torchvision's ImageFolder
  expect). For an ImageNet-1k card the folder names are wnids; otherwise they are the card's
  label names (the demo's ``demo_shapes``). A folder that names no known class is an error.
* **flat** — ``val/*.JPEG`` plus a ground-truth file (``--gt``, or ``val.txt`` /
  ``LOC_val_solution.csv`` found beside the images).
* **tar** — the original ``ILSVRC2012_img_val.tar`` read in place: the members are indexed
  once (offset and size, no extraction) and each image is read by seeking into the tar. Its
  MD5 is checked first (``29b22e2961454d5413ddabcf34fc5622`` unless another is given, or skip).
  A truncated tar is refused whether or not the MD5 is checked (the error says how many
  members were read).

Every entry named like an image that is not a readable regular file (a dangling symlink, a
symlink loop, a directory called ``x.JPEG``, a pipe) is counted and listed in
:attr:`Dataset.unreadable`, as bad images are. Items read their bytes through
:func:`tritonkit.client.decode.read_image_bytes`: at most ``max_bytes`` (64 MiB unless given),
header checked before the rest is read.

Ground-truth files (:func:`read_ground_truth`):

* caffe ``val.txt``: ``ILSVRC2012_val_00000001.JPEG 65`` — class index in sorted-wnid order
  (= torchvision's class index, the line order of ``tritonkit/data/imagenet1k_wnids.txt``);
* ``name wnid`` (or ``name label``) lines: ``ILSVRC2012_val_00000001.JPEG n01751748``;
* Kaggle ``LOC_val_solution.csv``: ``ImageId,PredictionString`` (the first wnid is the class).

Class indices are always the card's output indices. Items are sorted by key, so ``--limit``
picks a deterministic subset (see :func:`select_subset`).
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from tritonkit.cards import ModelCard, load_labels
from tritonkit.client.decode import DEFAULT_MAX_BYTES, ImageError, read_image_bytes
from tritonkit.client.items import FileItem, is_image, not_image, scan_folder, unreadable
from tritonkit.errors import DatasetError
from tritonkit.io import file_digest

IMAGENET_VAL_TAR_MD5 = "29b22e2961454d5413ddabcf34fc5622"
GT_CANDIDATES = ("val.txt", "LOC_val_solution.csv", "val_gt.txt")


# --------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class TarItem:
    """A member of an uncompressed tar, read by seeking to its data (no extraction)."""

    key: str
    tar_path: Path
    offset: int
    size: int
    label: int
    max_bytes: int | None = DEFAULT_MAX_BYTES

    def read_bytes(self) -> bytes:
        available = os.stat(self.tar_path).st_size - self.offset
        if available < self.size:
            raise OSError(f"{self.tar_path} ends inside member {self.key} (has {max(available, 0)} of "
                          f"{self.size} bytes)")
        try:
            return read_image_bytes(self.tar_path, offset=self.offset, size=self.size, max_bytes=self.max_bytes)
        except ImageError as exc:
            raise ImageError(f"tar member {self.key}: {exc}") from None


# ---------------------------------------------------------------------------- class map
@dataclass(frozen=True)
class ClassMap:
    """Class names as they appear in folders / ground truth, in the card's output order.

    For ImageNet-1k these are the sorted wnids (``names[i]`` is torchvision's class ``i``);
    ``display`` holds the human-readable labels.
    """

    label_set: str
    names: tuple[str, ...]
    display: tuple[str, ...]

    def index(self, name: str) -> int | None:
        return self._lookup.get(name)

    @cached_property
    def _lookup(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def for_card(cls, card: ModelCard) -> "ClassMap":
        display = tuple(card.label_names())
        if card.labels == "imagenet1k":
            wnids = tuple(imagenet_wnids())
            if len(wnids) != len(display):
                raise DatasetError(f"tritonkit/data/imagenet1k_wnids.txt has {len(wnids)} wnids, "
                                   f"the imagenet1k label set {len(display)}")
            return cls(card.labels, wnids, display)
        return cls(card.labels, display, display)


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in sorted order: line ``i`` is torchvision's class ``i``."""
    wnids = load_labels("imagenet1k_wnids")
    if wnids != sorted(wnids):
        raise DatasetError("tritonkit/data/imagenet1k_wnids.txt is not sorted; class indices would be wrong")
    return wnids


# -------------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class GroundTruth:
    """``{image name: class index}``, keyed by file name and also by stem (Kaggle ids)."""

    path: Path
    labels: dict[str, int]
    format: str

    def entry_for(self, name: str) -> str | None:
        """The ground-truth entry (file name, or stem for Kaggle ids) for an image path."""
        base = PurePosixPath(name).name
        for candidate in (base, PurePosixPath(base).stem):
            if candidate in self.labels:
                return candidate
        return None

    def lookup(self, name: str) -> int | None:
        entry = self.entry_for(name)
        return None if entry is None else self.labels[entry]


def _label_token(token: str, classes: ClassMap, where: str) -> int:
    if token.lstrip("-").isdigit():
        idx = int(token)
        if not 0 <= idx < len(classes):
            raise DatasetError(f"{where}: class index {idx} outside 0..{len(classes) - 1}")
        return idx
    idx = classes.index(token)
    if idx is None:
        raise DatasetError(f"{where}: unknown class {token!r} for label set {classes.label_set!r}")
    return idx


def read_ground_truth(path: str | Path, classes: ClassMap) -> GroundTruth:
    """Parse a ground-truth file (format detected from its content); errors name file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: ground-truth file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: ground-truth file is not text") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ground truth ({exc.strerror or exc})") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    labels: dict[str, int] = {}
    if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        fmt = "kaggle-csv"
        reader = csv.reader(io.StringIO(text))
        next(reader)
        for lineno, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            where = f"{path} line {lineno}"
            if len(row) < 2 or not row[1].split():
                raise DatasetError(f"{where}: expected 'ImageId,PredictionString' with a wnid first, got {row!r}")
            labels[row[0].strip()] = _label_token(row[1].split()[0], classes, where)
    else:
        fmt = "name-label"
        for lineno, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts or line.lstrip().startswith("#"):
                continue
            where = f"{path} line {lineno}"
            if len(parts) != 2:
                hint = (" (this looks like the devkit's ILSVRC2012_validation_ground_truth.txt, whose ids "
                        "need meta.mat; use caffe's val.txt or LOC_val_solution.csv)"
                        if len(parts) == 1 and parts[0].isdigit() else "")
                raise DatasetError(f"{where}: expected '<image> <class index or name>', got {line.strip()!r}{hint}")
            name = parts[0]
            if name in labels:
                raise DatasetError(f"{where}: image {name!r} listed twice")
            labels[name] = _label_token(parts[1], classes, where)
    if not labels:
        raise DatasetError(f"{path}: ground-truth file has no entries")
    return GroundTruth(path, labels, fmt)


# ----------------------------------------------------------------------------- datasets
@dataclass
class Dataset:
    """Items to evaluate plus what was found but cannot be evaluated.

    ``skipped`` holds ``{"path", "reason"}`` for images without ground truth; ``not_images``
    the same for files among the images whose suffix is no image format's (``notes.txt`` in a
    class folder), which are counted and listed, never evaluated; ``missing`` counts
    ground-truth entries with no image; ``subset`` says how ``--limit`` chose the items;
    ``unreadable`` lists entries named like images that are no readable regular file (dangling
    symlink, symlink loop, directory, pipe) with the reason.
    """

    items: list
    layout: str
    root: Path
    classes: ClassMap
    ground_truth: Path | None = None
    skipped: list[dict] = field(default_factory=list)
    missing: int = 0
    subset: str = "all"
    total: int = 0
    not_images: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)

    def describe(self) -> dict:
        return {"layout": self.layout, "root": str(self.root),
                "ground_truth": str(self.ground_truth) if self.ground_truth else None,
                "images_found": self.total, "images_used": len(self.items), "subset": self.subset,
                "without_ground_truth": len(self.skipped), "ground_truth_without_image": self.missing,
                "not_images": len(self.not_images), "unreadable": len(self.unreadable)}

    def excluded(self) -> list[dict]:
        """Every file found but not evaluated, ``{"path", "reason"}``, in path order."""
        return sorted(self.skipped + self.not_images + self.unreadable, key=lambda e: e["path"])


def _is_other_file(p: PurePosixPath | Path, ground_truth: Path | None = None) -> bool:
    """A visible file that is not an image and not a ground-truth file."""
    return (not p.name.startswith(".") and not is_image(Path(p.name)) and p.name not in GT_CANDIDATES
            and (ground_truth is None or p.name != Path(ground_truth).name))


def _folder_items(root: Path, classes: ClassMap,
                  max_bytes: int | None) -> tuple[list[FileItem], list[dict], list[dict]]:
    items, others, bad = [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files, entries, broken = scan_folder(sub)
        bad += [unreadable(f"{sub.name}/{p.name}", why) for p, why in broken]
        if not files:
            continue
        idx = classes.index(sub.name)
        if idx is None:
            known = ", ".join(classes.names[:5]) + (" ..." if len(classes) > 5 else "")
            raise DatasetError(f"{sub}: folder name {sub.name!r} is not a class of label set "
                               f"{classes.label_set!r} (expected one of {known})")
        items += [FileItem(f"{sub.name}/{f.name}", f, idx, max_bytes) for f in files]
        others += [not_image(f"{sub.name}/{f.name}") for f in entries if _is_other_file(f)]
    return items, others, bad


def _find_gt(root: Path) -> Path | None:
    for folder in (root, root.parent):
        for name in GT_CANDIDATES:
            if (folder / name).is_file():
                return folder / name
    return None


def _with_gt(found: list[tuple[str, object]], gt: GroundTruth, make) -> tuple[list, list[dict], int]:
    """Items for the images that have ground truth; the rest skipped; count of unmatched entries."""
    items, skipped, matched = [], [], set()
    for key, src in found:
        entry = gt.entry_for(key)
        if entry is None:
            skipped.append({"path": key, "reason": f"no ground truth in {gt.path}"})
            continue
        matched.add(entry)
        items.append(make(key, src, gt.labels[entry]))
    return items, skipped, len(gt.labels) - len(matched)


def check_md5(path: Path, expected: str) -> None:
    """Raise :class:`DatasetError` naming the file and both digests when they differ."""
    actual = file_digest(path, "md5")
    if actual.lower() != expected.lower():
        raise DatasetError(f"{path}: MD5 {actual} does not match the expected {expected.lower()} "
                           f"(corrupt or a different file; set md5 to None to use it anyway)")


def _member_name(m: tarfile.TarInfo) -> str:
    return m.name[2:] if m.name.startswith("./") else m.name


def _check_tar_complete(tar_path: Path, members: list[tarfile.TarInfo], end: int | None) -> None:
    """Raise :class:`DatasetError` when the tar stops inside a member or before its end-of-archive
    block (tarfile itself just stops listing at a truncation)."""
    size = tar_path.stat().st_size
    for i, m in enumerate(members):
        if m.offset_data + m.size > size:
            raise DatasetError(f"{tar_path}: truncated tar: member {i + 1} ({_member_name(m)!r}) needs "
                               f"{m.offset_data + m.size} bytes, the file has {size}; only {i} complete "
                               f"members were read (re-download or re-create the archive)")
    if end is None:
        return
    with open(tar_path, "rb") as f:
        f.seek(end)
        block = f.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise DatasetError(f"{tar_path}: truncated tar: no end-of-archive block after the {len(members)} "
                           f"members read (re-download or re-create the archive)")


def _tar_members(tar_path: Path) -> tuple[list[tuple[str, tuple[int, int]]], list[dict]]:
    """``(name, (data offset, size))`` of every regular file in the tar, images or not, and the
    members named like images that are no regular file (links, directories) as unreadable."""
    every: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(tar_path, mode="r:") as tf:
            try:
                every.extend(tf)
            except tarfile.ReadError as exc:  # the data ends inside a member
                _check_tar_complete(tar_path, every, None)
                raise DatasetError(f"{tar_path}: truncated tar ({exc}): only {len(every)} members were read "
                                   f"(re-download or re-create the archive)") from None
            end = tf.offset
    except tarfile.ReadError as exc:
        raise DatasetError(f"{tar_path}: not an uncompressed tar archive ({exc}); extract it or "
                           f"pass the uncompressed ILSVRC2012_img_val.tar") from None
    except OSError as exc:
        raise DatasetError(f"{tar_path}: cannot read tar ({exc.strerror or exc})") from None
    _check_tar_complete(tar_path, every, end)
    files = [(_member_name(m), (m.offset_data, m.size)) for m in every if m.isfile()]
    kinds = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.DIRTYPE: "a directory"}
    bad = [unreadable(_member_name(m), f"tar member is {kinds.get(m.type, 'not a regular file')}, not evaluated")
           for m in every if not m.isfile() and is_image(Path(PurePosixPath(_member_name(m)).name))]
    return files, bad


def open_tar(tar_path: str | Path, classes: ClassMap, gt_path: str | Path | None,
             expected_md5: str | None = IMAGENET_VAL_TAR_MD5, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Dataset:
    """Index an uncompressed tar of images (no extraction). Labels from ``gt_path``, or from
    ``<class>/`` folders inside the tar when no ground truth is given. A truncated tar is a
    :class:`DatasetError` saying how many members were read."""
    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise DatasetError(f"{tar_path}: tar file not found")
    if expected_md5:
        check_md5(tar_path, expected_md5)
    listed, bad = _tar_members(tar_path)
    every = sorted(listed)
    members = [(k, src) for k, src in every if is_image(Path(PurePosixPath(k).name))]
    others = [not_image(k) for k, _ in every if _is_other_file(PurePosixPath(k), gt_path)]
    if not members:
        raise DatasetError(f"{tar_path}: no image members in the tar")

    def make(key, src, label):
        return TarItem(key, tar_path, src[0], src[1], label, max_bytes)

    if gt_path is None:
        items = []
        for key, src in members:
            parts = PurePosixPath(key).parts
            idx = classes.index(parts[-2]) if len(parts) >= 2 else None
            if idx is None:
                raise DatasetError(f"{tar_path}: member {key!r} is not in a class folder and no ground-truth "
                                   f"file was given (gt, e.g. val.txt)", fields=("gt",))
            items.append(make(key, src, idx))
        return Dataset(items, "tar", tar_path, classes, total=len(items), not_images=others, unreadable=bad)
    gt = read_ground_truth(gt_path, classes)
    items, skipped, missing = _with_gt(members, gt, make)
    if not items:
        raise DatasetError(f"{gt.path}: no entry matches an image in {tar_path}")
    return Dataset(items, "tar", tar_path, classes, gt.path, skipped, missing, total=len(members), not_images=others,
                   unreadable=bad)


def open_dataset(data: str | Path, card: ModelCard, gt: str | Path | None = None,
                 expected_md5: str | None = IMAGENET_VAL_TAR_MD5,
                 max_bytes: int | None = DEFAULT_MAX_BYTES) -> Dataset:
    """Open ``data`` (a folder or a tar) for ``card``; the layout is detected (module docstring).
    ``max_bytes``: the largest image file read (None: no cap); larger ones are per-file errors."""
    classes = ClassMap.for_card(card)
    root = Path(data)
    if root.is_file() and root.suffix.lower() == ".tar":
        return open_tar(root, classes, gt, expected_md5, max_bytes)
    if not root.exists():
        raise DatasetError(f"{root}: dataset not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: expected a folder of images or an uncompressed .tar")
    flat, _, flat_bad = scan_folder(root)
    if gt is None and not flat:
        items, others, bad = _folder_items(root, classes, max_bytes)
        if items:
            return Dataset(items, "folders", root, classes, total=len(items), not_images=others,
                           unreadable=[unreadable(p.name, why) for p, why in flat_bad] + bad)
    if not flat:
        if gt is not None:
            raise DatasetError(f"{root}: no image files directly in the folder to match the ground truth {gt}")
        raise DatasetError(f"{root}: no images found (expected <class>/*.JPEG folders, or *.JPEG files "
                           f"with a ground-truth file)")
    gt_path = Path(gt) if gt is not None else _find_gt(root)
    if gt_path is None:
        raise DatasetError(f"{root}: images are not in class folders and no ground-truth file was given "
                           f"(gt: val.txt or LOC_val_solution.csv; looked for {', '.join(GT_CANDIDATES)})",
                           fields=("gt",))
    truth = read_ground_truth(gt_path, classes)
    items, skipped, missing = _with_gt([(p.name, p) for p in flat], truth,
                                       lambda key, src, label: FileItem(key, src, label, max_bytes))
    if not items:
        raise DatasetError(f"{truth.path}: no entry matches an image in {root}")
    others = [not_image(p.name) for p in sorted(root.iterdir()) if p.is_file() and _is_other_file(p, truth.path)]
    return Dataset(items, "flat", root, classes, truth.path, skipped, missing, total=len(flat), not_images=others,
                   unreadable=[unreadable(p.name, why) for p, why in flat_bad])
