"""Hostile input on generated files: no single file may end a run or exhaust memory.

Extreme aspect ratios, oversized and disguised files, truncated tars, broken directory
entries, bad COCO annotations, and a bounded mutation fuzz of decode + preprocess. Nothing is
mocked except where said: one adapter raises ``MemoryError`` / ``cv2.error`` on purpose (those
cannot be produced on demand), and ``open`` is wrapped to count the bytes read.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from tritonkit.cards import get_card
from tritonkit.client import decode as decode_module
from tritonkit.tasks.classify.task import ClassifyAdapter
from tritonkit.tasks.detect.coco import load_coco
from tritonkit.tasks.classify.data import ClassMap, open_dataset, open_tar
from tritonkit.client.items import FileItem
from tritonkit.client.decode import ImageError, decode_file, decode_image, read_image_bytes
from tritonkit.client.pipeline import CallableBackend, EngineOptions, load_item, run_stream
from tritonkit.client.preprocess import preprocess, preprocess_bytes, sample_shape
from tritonkit.errors import DatasetError

SHAPES = get_card("demo_shapes")
CARDS = ("resnet50", "gluon_resnet50_v1b", "yolov5s", "ssd_resnet18", "demo_shapes", "demo_shapes_det")


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _extreme_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {"tall_1x20000.png": _encode(np.zeros((20000, 1, 3), np.uint8), "PNG"),
            "wide_20000x1.png": _encode(np.zeros((1, 20000, 3), np.uint8), "PNG"),
            "wide_20000x20.jpg": _encode(rng.integers(0, 256, (20, 20000, 3), dtype=np.uint8), "JPEG", quality=90),
            "tall_20x20000.jpg": _encode(rng.integers(0, 256, (20000, 20, 3), dtype=np.uint8), "JPEG", quality=90),
            "one_pixel.png": _encode(np.full((1, 1, 3), 9, np.uint8), "PNG")}


# -- 6: extreme aspect ratios ---------------------------------------------------------------

@pytest.mark.parametrize("card_name", CARDS)
@pytest.mark.parametrize("resample", ["pil", "tensor"])
def test_extreme_aspect_ratios_give_the_input_shape_or_a_per_file_error(card_name, resample):
    """Before: the tensor path built a 26.8 GiB matrix for 1x20000 and letterbox gave cv2 a
    0-pixel side. Now every such file gives the card's input or an ImageError."""
    import dataclasses

    card = get_card(card_name)
    pp = dataclasses.replace(card.preprocess, resample=resample)
    for name, data in _extreme_files().items():
        assert len(data) < 1_000_000, name  # small files: the danger is the geometry, not the bytes
        try:
            x, geo, _ = preprocess_bytes(data, pp)
        except ImageError as exc:
            assert str(exc), name
            continue
        assert x.shape == sample_shape(pp) == card.input.dims, name
        assert np.isfinite(x).all() and geo.scale_x > 0 and geo.scale_y > 0, name


def test_extreme_png_is_small_on_disk_and_evaluated_in_a_run(tmp_path, tiny_onnx):
    """The 1x20000 PNG (a few hundred bytes) and friends go through the whole run stream."""
    import onnxruntime as ort

    root = tmp_path / "data"
    names = SHAPES.label_names()
    for i, (name, data) in enumerate(_extreme_files().items()):
        folder = root / names[i % len(names)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    ds = open_dataset(root, SHAPES)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    with CallableBackend(lambda b: {"logits": session.run(["logits"], {"input": b})[0]}) as backend:
        result = run_stream(ds.items, ClassifyAdapter(SHAPES), backend,
                            EngineOptions(batch_size=2, workers=2, progress=False))
    assert result.evaluated + len(result.errors) == len(ds.items) == 5
    assert result.evaluated == 5  # resize_crop handles every one of them


class _Exploding(ClassifyAdapter):
    """An adapter whose prepare raises what real preprocessing raised before (a MemoryError
    from a huge matrix, a cv2.error from a 0-pixel side) for the files named so."""

    def __init__(self):
        super().__init__(SHAPES)
        object.__setattr__(self, "inner", ClassifyAdapter(SHAPES))

    def prepare(self, item, image):
        import cv2

        if "memory" in item.key:
            raise MemoryError("Unable to allocate 26.8 GiB for an array")
        if "cv2" in item.key:
            raise cv2.error("OpenCV(4.11) resize.cpp: error: (-215:Assertion failed) !dsize.empty()")
        if "runtime" in item.key:
            raise RuntimeError("anything else")
        return self.inner.prepare(item, image)

    def postprocess(self, outputs, meta):
        return self.inner.postprocess(outputs, meta)

    def summarize(self, records):
        return self.inner.summarize(records)


def test_any_exception_while_loading_one_item_is_its_error_and_the_run_goes_on(tmp_path, tiny_onnx):
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    folder = tmp_path / "data" / SHAPES.label_names()[0]
    folder.mkdir(parents=True)
    for name in ("a.jpg", "memory.jpg", "b.jpg", "cv2.jpg", "runtime.jpg", "c.jpg"):
        (folder / name).write_bytes(_encode(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8), "JPEG"))
    ds = open_dataset(tmp_path / "data", SHAPES)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    with CallableBackend(lambda b: {"logits": session.run(["logits"], {"input": b})[0]}) as backend:
        result = run_stream(ds.items, _Exploding(), backend, EngineOptions(batch_size=2, progress=False))
    errors = {Path(e["path"]).name: e["reason"] for e in result.errors}
    assert set(errors) == {"memory.jpg", "cv2.jpg", "runtime.jpg"}
    assert "MemoryError" in errors["memory.jpg"] and "error" in errors["cv2.jpg"]
    assert "RuntimeError: anything else" in errors["runtime.jpg"]
    assert result.evaluated == 3


def test_a_read_that_raises_anything_is_that_items_error():
    class Broken:
        key = "x.jpg"

        def read_bytes(self):
            raise MemoryError("read")

    loaded = load_item(ClassifyAdapter(SHAPES), 0, Broken())
    assert loaded.input is None and "MemoryError" in loaded.error


# -- 7: size cap and header sniffing ----------------------------------------------------------

class _CountingOpen:
    """Wraps ``open`` in the decode module to count the bytes read (the only thing replaced)."""

    def __init__(self):
        self.read = 0

    def __call__(self, *args, **kwargs):
        f = open(*args, **kwargs)
        counter = self
        real_read = f.read

        class Wrapped:
            def __enter__(self):
                f.__enter__()
                return self

            def __exit__(self, *exc):
                return f.__exit__(*exc)

            def read(self, n=-1):
                data = real_read(n)
                counter.read += len(data)
                return data

            def __getattr__(self, name):
                return getattr(f, name)

        return Wrapped()


def test_a_5_gib_sparse_jpeg_is_refused_from_its_size_without_reading_it(tmp_path):
    big = tmp_path / "huge.JPEG"
    with open(big, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(5 << 30)  # sparse: no disk used
    counting = _CountingOpen()
    with mock.patch.object(decode_module, "open", counting, create=True):
        with pytest.raises(ImageError, match=r"5\.0 GiB \(5368709120 bytes\), over the 64\.0 MiB") as err:
            FileItem("huge.JPEG", big, 0).read_bytes()
        result = decode_file(big)
    assert counting.read == 0
    assert not result.ok and "5368709120 bytes" in result.reason and "refused" in str(err.value)


def test_a_text_file_named_jpeg_is_refused_from_its_header(tmp_path):
    fake = tmp_path / "notes.JPEG"
    fake.write_bytes(b"<!DOCTYPE html>" + b"x" * (8 << 20))
    counting = _CountingOpen()
    with mock.patch.object(decode_module, "open", counting, create=True):
        with pytest.raises(ImageError, match="not an image"):
            read_image_bytes(fake)
    assert counting.read <= 64


def test_the_size_cap_is_configurable_on_the_dataset(tmp_path):
    folder = tmp_path / SHAPES.label_names()[0]
    folder.mkdir()
    data = _encode(np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8), "JPEG")
    (folder / "a.jpg").write_bytes(data)
    assert open_dataset(tmp_path, SHAPES).items[0].read_bytes() == data
    item = open_dataset(tmp_path, SHAPES, max_bytes=1000).items[0]
    with pytest.raises(ImageError, match=f"{len(data)} bytes"):
        item.read_bytes()
    assert not decode_image(data, max_bytes=1000).ok
    assert decode_image(data, max_bytes=None).ok


def test_a_header_announcing_too_many_pixels_is_refused_before_decoding():
    data = _encode(np.zeros((300, 400, 3), np.uint8), "PNG")
    r = decode_image(data, max_pixels=100_000)
    assert not r.ok and "400x300 = 120000 pixels" in r.reason
    assert decode_image(data, max_pixels=120_000).ok


# -- 14: truncated tar ------------------------------------------------------------------------

def _tar(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    names = SHAPES.label_names()
    with tarfile.open(path, "w") as tf:
        for i in range(n):
            data = _encode(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "JPEG")
            info = tarfile.TarInfo(f"{names[i % len(names)]}/img{i:02d}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_a_truncated_tar_is_refused_with_the_number_of_members_read(tmp_path):
    tar = tmp_path / "val.tar"
    _tar(tar, 14)
    classes = ClassMap.for_card(SHAPES)
    assert len(open_tar(tar, classes, None, expected_md5=None).items) == 14
    with tarfile.open(tar) as tf:
        members = tf.getmembers()
    cut = members[9].offset_data + members[9].size // 2  # inside the 10th member's data
    data = tar.read_bytes()
    tar.write_bytes(data[:cut])
    with pytest.raises(DatasetError, match=r"truncated tar: member 10 .* only 9 complete members were read"):
        open_tar(tar, classes, None, expected_md5=None)
    # cut exactly after a member: no end-of-archive block
    tar.write_bytes(data[:members[9].offset])
    with pytest.raises(DatasetError, match="truncated tar: no end-of-archive block after the 9 members"):
        open_dataset(tar, SHAPES, expected_md5=None)


# -- 15: broken entries in folder and flat layouts --------------------------------------------

def _broken_entries(folder: Path) -> set[str]:
    (folder / "dangling.JPEG").symlink_to(folder / "nowhere.JPEG")
    (folder / "loop_a.JPEG").symlink_to(folder / "loop_b.JPEG")
    (folder / "loop_b.JPEG").symlink_to(folder / "loop_a.JPEG")
    (folder / "dir.JPEG").mkdir()
    os.mkfifo(folder / "pipe.JPEG")
    return {"dangling.JPEG", "loop_a.JPEG", "loop_b.JPEG", "dir.JPEG", "pipe.JPEG"}


def test_broken_entries_are_counted_and_listed_in_the_folder_layout(tmp_path):
    folder = tmp_path / SHAPES.label_names()[0]
    folder.mkdir()
    (folder / "good.jpg").write_bytes(_encode(np.zeros((70, 70, 3), np.uint8), "JPEG"))
    bad = _broken_entries(folder)
    (tmp_path / "root_dangling.jpg").symlink_to(tmp_path / "gone.jpg")  # beside the class folders
    ds = open_dataset(tmp_path, SHAPES)
    assert [it.key for it in ds.items] == [f"{folder.name}/good.jpg"]
    listed = {Path(e["path"]).name: e["reason"] for e in ds.excluded()}
    assert set(listed) == bad | {"root_dangling.jpg"} and ds.describe()["unreadable"] == 6
    assert "dangling symlink" in listed["dangling.JPEG"] and "symlink loop" in listed["loop_a.JPEG"]
    assert "directory" in listed["dir.JPEG"] and "not a regular file" in listed["pipe.JPEG"]


def test_broken_entries_are_counted_and_listed_in_the_flat_layout(tmp_path):
    (tmp_path / "ILSVRC2012_val_00000001.JPEG").write_bytes(_encode(np.zeros((70, 70, 3), np.uint8), "JPEG"))
    bad = _broken_entries(tmp_path)
    gt = tmp_path / "val.txt"
    gt.write_text("ILSVRC2012_val_00000001.JPEG 3\n")
    ds = open_dataset(tmp_path, get_card("resnet50"))
    assert len(ds.items) == 1 and ds.layout == "flat"
    assert {e["path"] for e in ds.unreadable} == bad
    assert {e["path"] for e in ds.excluded()} >= bad


# -- 13: COCO annotations ---------------------------------------------------------------------

def _coco(tmp_path: Path, images: list[dict], anns: list[dict]) -> tuple[Path, Path]:
    img_dir = tmp_path / "val2017"
    img_dir.mkdir(exist_ok=True)
    for im in images:
        (img_dir / im["file_name"]).write_bytes(_encode(np.zeros((20, 20, 3), np.uint8), "JPEG"))
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))
    return img_dir, ann


def test_coco_duplicate_file_names_are_an_error_naming_the_image_ids(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 7, "file_name": "b.jpg"}, {"id": 9, "file_name": "b.jpg"}]
    anns = [{"image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5]}, {"image_id": 9, "category_id": 1, "bbox": [2, 2, 5, 5]}]
    with pytest.raises(DatasetError, match=r"listed by more than one image \(first: 'b.jpg' for image ids 7, 9\)"):
        load_coco(*_coco(tmp_path, images, anns))


@pytest.mark.parametrize("bbox", [[1, 1, float("nan"), 5], [1, float("inf"), 5, 5], [1, 1, -2, 5], [1, 1, 5]])
def test_coco_non_finite_or_negative_bbox_is_an_error_naming_the_image_id(tmp_path, bbox):
    images = [{"id": 3, "file_name": "a.jpg"}, {"id": 4, "file_name": "b.jpg"}]
    anns = [{"image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]}, {"image_id": 4, "category_id": 1, "bbox": bbox}]
    with pytest.raises(DatasetError, match=r"first #1: image id 4"):
        load_coco(*_coco(tmp_path, images, anns))


# -- fuzz -------------------------------------------------------------------------------------

def _seeds(rng) -> list[bytes]:
    def img(h, w, c=3):
        return rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)

    out = [_encode(img(90, 120), "JPEG", quality=90), _encode(img(70, 50), "PNG"), _encode(img(40, 60, 1), "PNG"),
           _encode(img(33, 44), "BMP"), _encode(img(30, 30), "GIF"), _encode(img(48, 40), "TIFF"),
           _encode(img(50, 64), "WEBP"), _encode(np.dstack([img(40, 40), img(40, 40, 1)]), "PNG"),
           _encode(img(64, 80), "JPEG", progressive=True)]
    cmyk = io.BytesIO()
    Image.fromarray(img(40, 40)).convert("CMYK").save(cmyk, "JPEG")
    return out + [cmyk.getvalue()]


def _mutate(data: bytes, rng) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # flip bits
        for _ in range(int(rng.integers(1, 8))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncate
        b = b[:int(rng.integers(0, len(b)))]
    elif kind == 2:  # overwrite a run with random bytes
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 32))
        b[i:i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 3:  # header sizes: large, small or zero 16/32-bit fields in the first 64 bytes
        i = int(rng.integers(0, min(64, len(b) - 4)))
        b[i:i + 4] = bytes(rng.choice([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x01\x4e\x20",
                                      b"\x4e\x20\x00\x01", b"\x00\x00\x00\x01"]))
    elif kind == 4:  # insert random bytes
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # duplicate a chunk
        i = int(rng.integers(0, len(b)))
        b[i:i] = b[max(0, i - 200):i]
    return bytes(b)


def test_mutation_fuzz_of_decode_and_preprocess_only_gives_inputs_or_per_file_errors():
    """Fixed seed, bounded to 20 s: every mutated file decodes and preprocesses to the card's
    input shape for each preprocessing kind, or is an error result / ImageError. Anything else
    (MemoryError, cv2.error, a crash) fails the test and names the mutation."""
    import dataclasses

    rng = np.random.default_rng(1234)
    seeds = _seeds(rng)
    pps = [get_card("resnet50").preprocess, get_card("yolov5s").preprocess, get_card("ssd_resnet18").preprocess,
           dataclasses.replace(get_card("demo_shapes").preprocess, resample="tensor")]
    deadline = time.monotonic() + 20.0
    tried = decoded = 0
    while time.monotonic() < deadline and tried < 3000:
        data = _mutate(seeds[tried % len(seeds)], rng)
        tried += 1
        for pp in pps:
            try:
                x, _, res = preprocess_bytes(data, pp, max_pixels=1 << 22)
            except ImageError:
                continue
            except Exception as exc:  # noqa: BLE001 - reported with the input that caused it
                pytest.fail(f"mutation {tried} raised {type(exc).__name__}: {exc} (first bytes {data[:16].hex()})")
            assert x.shape == sample_shape(pp) and x.dtype == np.float32
            decoded += res.ok
    assert tried >= 50 and decoded > 0, (tried, decoded)
    print(f"fuzz: {tried} mutated files, {decoded} preprocessed inputs")
