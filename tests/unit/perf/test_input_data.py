"""perf_analyzer --input-data JSON from dataset files, without a server: the three dataset
layouts, the BYTES and tensor encodings (decoded back here), the distinct-image count, unreadable
files, padding. The JSON against the real perf_analyzer is tests/server/test_perf_real_data.py."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tritonkit.cards import get_card
from tritonkit.client.preprocess import preprocess_bytes
from tritonkit.errors import DatasetError
from tritonkit.perf.input_data import ServedInput, bytes_entry, dataset_images, tensor_entry, write_input_data

CARD = get_card("demo_shapes")
SEG = get_card("demo_seg")


def _images(folder: Path, n: int, size=(40, 50)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    out = []
    for i in range(n):
        h, w = size[0] + i, size[1] + 2 * i
        path = folder / f"im{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def _decode(entry: dict, dtype=np.float32) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry["content"]["b64"]), dtype).reshape(entry["shape"])


def test_three_dataset_layouts(tmp_path):
    flat = _images(tmp_path / "folder" / "a", 2) + _images(tmp_path / "folder" / "b", 1)
    (tmp_path / "folder" / "notes.txt").write_text("not an image")
    assert dataset_images(tmp_path / "folder")[0] == sorted(flat)
    coco = _images(tmp_path / "coco" / "val2017", 3)
    _images(tmp_path / "coco" / "train2017", 2)          # not the val images
    assert dataset_images(tmp_path / "coco") == (coco, str(tmp_path / "coco" / "val2017"))
    val = _images(tmp_path / "yolo" / "images" / "val", 2)
    (tmp_path / "yolo" / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a]\n")
    assert dataset_images(tmp_path / "yolo" / "data.yaml")[0] == val
    (tmp_path / "yolo" / "val.txt").write_text("images/val/im01.png\n\n")   # a list file, relative to path
    (tmp_path / "yolo" / "list.yaml").write_text(f"path: {tmp_path / 'yolo'}\nval: [val.txt, images/val]\n")
    assert dataset_images(tmp_path / "yolo" / "list.yaml")[0] == [val[1], *val]


@pytest.mark.parametrize("write, message", [
    (lambda d: None, "not an image folder, a data.yaml or a COCO root"),
    (lambda d: d.mkdir(), "no image files found"),
    (lambda d: (d.parent / "x.yaml").write_text("train: a\n"), "no 'val' entry"),
    (lambda d: (d.parent / "x.yaml").write_text("val: missing\n"), "val entry 'missing' is neither"),
    (lambda d: (d.parent / "x.yaml").write_text("val: [\n"), "cannot read it as YAML"),
])
def test_dataset_errors_are_one_line(tmp_path, write, message):
    target = tmp_path / "data"
    write(target)
    source = tmp_path / "x.yaml" if (tmp_path / "x.yaml").exists() else target
    with pytest.raises(DatasetError, match=message) as info:
        dataset_images(source)
    assert "\n" not in str(info.value)


def test_bytes_entry_is_length_prefixed_little_endian():
    entry = bytes_entry(b"\xff\xd8 jpeg bytes")
    raw = base64.b64decode(entry["content"]["b64"])
    assert raw[:4] == struct.pack("<I", 13) and raw[4:] == b"\xff\xd8 jpeg bytes" and entry["shape"] == [1]


def test_tensor_entry_round_trips_little_endian_bytes():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(_decode(tensor_entry(x)), x)
    big = x.astype(">f4")                                  # a big-endian array is written little-endian
    assert np.array_equal(_decode(tensor_entry(big)), x)
    assert np.array_equal(_decode(tensor_entry(np.asfortranarray(x))), x)  # row-major whatever the layout


def test_tensor_data_is_the_card_preprocessing_of_distinct_images(tmp_path):
    paths = _images(tmp_path / "d", 10)
    (tmp_path / "d" / "im05.png").write_bytes(b"broken")   # picked (0, 2, 5, 7 of 10), skipped, replaced
    real = write_input_data(tmp_path / "d", ServedInput("input", False, CARD), 4, tmp_path / "in.json")
    doc = json.loads((tmp_path / "in.json").read_text())
    assert real.images == 4 == len(doc["data"]) == len(set(real.files))
    assert str(paths[5]) not in real.files and real.skipped[0].startswith(f"{paths[5]}:")
    assert "1 unreadable files skipped" in real.label and "card-preprocessed tensors" in real.label
    for entry, path in zip(doc["data"], real.files):
        expected, _, _ = preprocess_bytes(Path(path).read_bytes(), CARD.preprocess)
        assert entry["input"]["shape"] == [3, 64, 64]
        assert np.array_equal(_decode(entry["input"]), expected.astype(np.float32))


def test_more_images_asked_than_there_are_gives_all(tmp_path):
    _images(tmp_path / "d", 3)
    real = write_input_data(tmp_path / "d", ServedInput("image_bytes", True, None), 50, tmp_path / "in.json")
    assert real.images == 3 and real.kind == "bytes" and "encoded image files (BYTES)" in real.label


def test_variable_sizes_are_padded_only_when_batched(tmp_path):
    _images(tmp_path / "d", 3)                             # 40x50, 41x52, 42x54: different resize_short sizes
    own = write_input_data(tmp_path / "d", ServedInput("input", False, SEG), 3, tmp_path / "own.json")
    shapes = [e["input"]["shape"] for e in json.loads(own.path.read_text())["data"]]
    assert len({tuple(s) for s in shapes}) == 3 and not own.padded
    padded = write_input_data(tmp_path / "d", ServedInput("input", False, SEG), 3, tmp_path / "pad.json",
                              same_shape=True)
    entries = [e["input"] for e in json.loads(padded.path.read_text())["data"]]
    h, w = max(s[1] for s in shapes), max(s[2] for s in shapes)
    assert all(e["shape"] == [3, h, w] for e in entries) and padded.padded and "padded" in padded.label
    first = _decode(entries[0])
    s = shapes[0]
    assert np.array_equal(first[:, :s[1], :s[2]], _decode(json.loads(own.path.read_text())["data"][0]["input"]))
    assert not first[:, s[1]:, :].any() and not first[:, :, s[2]:].any()  # zeros at the bottom/right


def test_deeply_nested_data_yaml_gives_one_line_naming_the_file(tmp_path):
    from tritonkit.perf.input_data import _yaml_images
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError) as info:
        _yaml_images(data_yaml)
    assert str(data_yaml) in str(info.value) and "nested too deeply" in str(info.value)
