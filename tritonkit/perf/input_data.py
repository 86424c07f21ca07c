"""perf_analyzer load from real images: the ``--input-data`` JSON of a dataset's files.

perf_analyzer's "Real Input Data" JSON is ``{"data": [{INPUT: TENSOR}, ...]}``, one entry per
sample (a batch of ``-b N`` takes N entries), each used in turn (round robin). A tensor is written
as ``{"content": {"b64": ...}, "shape": [...]}``: base64 of its little-endian bytes in row-major
order, with its per-sample shape (so a variable-size input needs no ``--shape``). A BYTES
(``TYPE_STRING``) element is a 4-byte little-endian length, then the bytes: the b64 holds both.

* a ``*_bytes`` ensemble (its one input BYTES ``[1]``, :data:`tritonkit.spec.ENCODED_INPUT`)
  gets each image file's bytes as they are: the server decodes and preprocesses, as in production;
* any other model gets each image through the card's preprocessing
  (:func:`tritonkit.client.preprocess.preprocess_bytes`), as the eval sends it: the tensor the
  model reads, in the card's input dtype (a variable-size input at each image's own size, or
  padded to the largest where a batch of several takes them: perf_analyzer batches one shape).

The images come from a folder of images (all of them, recursively), an Ultralytics ``data.yaml``
(its ``val`` images: a folder, a list file or a list of those, against its ``path``), or a COCO
root (its ``val2017/``); :func:`select_subset` picks ``count`` distinct ones spread over the
sorted list (an unreadable one is skipped, named in the description, and the next readable
image taken instead).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard
from tritonkit.client.decode import ImageError, read_image_bytes
from tritonkit.client.items import FileItem, is_image, select_subset
from tritonkit.client.preprocess import preprocess_bytes
from tritonkit.errors import DatasetError
from tritonkit.io import atomic_write_json
from tritonkit.perf.spec import PerfError
from tritonkit.served_model import ServedModel
from tritonkit.tasks.segment.math import stack_padded

yaml = lazy_import("yaml", "pyyaml")

BYTES_TYPE = "TYPE_STRING"      # Triton's config name of the BYTES data type
COCO_IMAGES = "val2017"


@dataclass(frozen=True)
class RealData:
    """What was written: ``path`` (the JSON), how many distinct images, from where, as what."""

    path: Path
    images: int
    source: str
    kind: str                      # "bytes" (encoded files to a *_bytes ensemble) or "tensor"
    input_name: str
    skipped: tuple[str, ...] = field(default=())
    padded: bool = False           # variable-size tensors padded to the largest (batch sizes > 1)
    files: tuple[str, ...] = field(default=())   # the images, in the JSON's order

    @property
    def label(self) -> str:
        """The sweep report's line about its input data."""
        what = "encoded image files (BYTES), decoded by the server" if self.kind == "bytes" \
            else "card-preprocessed tensors"
        padded = ", padded at the bottom/right to the largest (perf_analyzer batches one shape)" if self.padded else ""
        skipped = f"; {len(self.skipped)} unreadable files skipped" if self.skipped else ""
        return f"real data: {self.images} distinct images from {self.source}, sent as {what}{padded}{skipped}"

    def to_dict(self) -> dict:
        return {"path": str(self.path), "images": self.images, "source": self.source, "kind": self.kind,
                "input": self.input_name, "skipped": list(self.skipped), "padded": self.padded, "files": list(self.files),
                "label": self.label}


def _yaml_images(data_yaml: Path) -> list[Path]:
    """The ``val`` images of an Ultralytics data.yaml (``path`` + ``val``: folder, list file, list)."""
    try:
        doc = yaml.safe_load(data_yaml.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{data_yaml}: cannot read it as YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise DatasetError(f"{data_yaml}: YAML is nested too deeply to parse") from None
    if not isinstance(doc, dict) or not doc.get("val"):
        raise DatasetError(f"{data_yaml}: no 'val' entry (an Ultralytics data.yaml names its val images)")
    root = Path(doc.get("path") or data_yaml.parent)
    root = root if root.is_absolute() else data_yaml.parent / root
    entries = doc["val"] if isinstance(doc["val"], list) else [doc["val"]]
    found: list[Path] = []
    for entry in entries:
        where = root / str(entry)
        if where.is_dir():
            found += _folder_images(where)
        elif where.is_file():   # a list file: one image path per line, relative to the root
            found += [p if p.is_absolute() else root / p
                      for p in (Path(line.strip()) for line in where.read_text().splitlines() if line.strip())]
        else:
            raise DatasetError(f"{data_yaml}: val entry {entry!r} is neither a folder nor a list file under {root}")
    return found


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))


def dataset_images(source: Path) -> tuple[list[Path], str]:
    """The image files of ``source`` (a folder, a data.yaml, a COCO root) and what it was."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in (".yaml", ".yml"):
        images, what = _yaml_images(source), f"{source} (val)"
    elif (source / COCO_IMAGES).is_dir():
        images, what = _folder_images(source / COCO_IMAGES), f"{source / COCO_IMAGES}"
    elif source.is_dir():
        images, what = _folder_images(source), str(source)
    else:
        raise DatasetError(f"{source}: not an image folder, a data.yaml or a COCO root (with {COCO_IMAGES}/)")
    if not images:
        raise DatasetError(f"{source}: no image files found")
    return images, what


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def bytes_entry(encoded: bytes) -> dict:
    """One BYTES ``[1]`` element: the 4-byte little-endian length, then the bytes."""
    return {"content": b64(struct.pack("<I", len(encoded)) + encoded), "shape": [1]}


def tensor_entry(x: np.ndarray) -> dict:
    """One tensor: its little-endian row-major bytes and its shape."""
    arr = np.ascontiguousarray(x)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {"content": b64(little.tobytes()), "shape": [int(d) for d in arr.shape]}


@dataclass(frozen=True)
class ServedInput:
    """The one input of a served model perf_analyzer will feed, and the card that shapes it."""

    name: str
    encoded: bool                 # a BYTES input: encoded image files
    card: ModelCard | None


def served_input(url: str, protocol: str, model: str, timeout_s: float = 10.0) -> ServedInput:
    """The served model's single input: BYTES (a ``*_bytes`` ensemble) or a tensor with its card
    (the model's own, or for an ensemble its first step's)."""
    with ServedModel.connect(protocol, url, model, timeout_s=timeout_s) as served:
        served.check_ready(server_ready=False)
        inputs = served.config().get("input", [])
        if len(inputs) != 1:
            raise PerfError(f"model {model!r} has {len(inputs)} inputs; real image data feeds models with one")
        spec = inputs[0]
        if spec.get("data_type") == BYTES_TYPE:
            return ServedInput(spec["name"], True, None)
        card = served.card()
        step = served.first_step() if card is None else None
        card = card or (served.model(step).card() if step else None)
    if card is None:
        raise PerfError(f"model {model!r} carries no tritonkit card: its preprocessing is unknown, so real "
                        "images cannot be made into its input (send its _bytes ensemble, or use random data)")
    return ServedInput(spec["name"], False, card)


def _sample(path: Path, target: ServedInput) -> bytes | np.ndarray:
    """One image as the model takes it: its file's bytes, or the card-preprocessed tensor."""
    encoded = read_image_bytes(path)
    if target.encoded:
        return encoded
    x, _, _ = preprocess_bytes(encoded, target.card.preprocess)
    return x.astype(target.card.input.numpy_dtype, copy=False)


def _read_samples(source: Path, target: ServedInput, count: int) -> tuple[list, list[str], str, list[str]]:
    """``count`` distinct readable images of ``source`` (spread over it; an unreadable one is
    replaced by the next readable image) and their paths, what the source was, the files skipped."""
    paths, what = dataset_images(source)
    items = [FileItem(p.as_posix(), p, 0) for p in paths]
    spread, _ = select_subset(items, count, "stride")
    chosen = {item.key for item in spread}
    samples, used, skipped = [], [], []
    for item in spread + [item for item in sorted(items, key=lambda i: i.key) if item.key not in chosen]:
        if len(samples) == count:
            break
        try:
            samples.append(_sample(item.path, target))
            used.append(item.key)
        except (ImageError, OSError) as exc:
            skipped.append(f"{item.key}: {exc}")
    if not samples:
        raise DatasetError(f"{source}: none of its images could be read ({skipped[0] if skipped else 'none found'})")
    return samples, used, what, skipped


def write_input_data(source: Path, target: ServedInput, count: int, out: Path, *, same_shape: bool = False) -> RealData:
    """``out`` (perf_analyzer's input JSON) from ``count`` distinct images of ``source``.

    ``same_shape``: tensors of different sizes (a variable-size input) are padded at the
    bottom/right to the largest one (as the eval pads a batch of them), because perf_analyzer
    refuses to batch tensors of different shapes; give it for batch sizes above 1."""
    if count < 1:
        raise PerfError(f"the number of distinct images must be >= 1 (got {count})")
    samples, used, what, skipped = _read_samples(source, target, count)
    padded = False
    if target.encoded:
        entries = [{target.name: bytes_entry(data)} for data in samples]
    else:
        if same_shape and len({x.shape for x in samples}) > 1:
            samples, padded = list(stack_padded(samples)), True
        entries = [{target.name: tensor_entry(x)} for x in samples]
    atomic_write_json(out, {"data": entries})
    return RealData(Path(out), len(entries), what, "bytes" if target.encoded else "tensor", target.name,
                    tuple(skipped), padded, tuple(used))


__all__ = ["RealData", "ServedInput", "bytes_entry", "dataset_images", "served_input", "tensor_entry",
           "write_input_data"]
