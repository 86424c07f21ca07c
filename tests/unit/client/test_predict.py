"""The public client's parts that need no server: the URL, the inputs, the result types, the
package's lazy exports, and the batch steps with an in-process model (onnxruntime)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import tritonkit
from support.classify_data import CARD
from tritonkit.client.pipeline import load_item
from tritonkit.errors import ServerError
from tritonkit.predict.batches import chunks, finish, load, request, split
from tritonkit.predict.inputs import BytesItem, ImageItem, InvalidItem, to_item
from tritonkit.predict.target import parse_target
from tritonkit.tasks.classify.task import ClassifyAdapter


def test_parse_target_reads_scheme_endpoints_and_model():
    t = parse_target("grpc://127.0.0.1:8001/resnet50")
    assert (t.protocol, t.url, t.model) == ("grpc", "127.0.0.1:8001", "resnet50")
    t = parse_target("http://a:8000,b:8000/m/")
    assert (t.protocol, t.url, t.model) == ("http", "a:8000,b:8000", "m")
    t = parse_target("127.0.0.1:8000", "m", protocol="http")
    assert (t.protocol, t.url, t.model) == ("http", "127.0.0.1:8000", "m")
    assert parse_target("grpc://h:1/m", "m").model == "m"
    for bad, why in (("grpc://h:1", "names no model"), ("ftp://h:1/m", "scheme 'ftp'"),
                     ("grpc:///m", "names no server")):
        with pytest.raises(ServerError, match=why):
            parse_target(bad)
    with pytest.raises(ServerError, match="model= says 'n'"):
        parse_target("grpc://h:1/m", "n")
    with pytest.raises(ServerError, match="protocol says http"):
        parse_target("grpc://h:1/m", protocol="http")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_inputs_become_items_the_engine_loads_alike(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(_png(rgb))
    adapter = ClassifyAdapter(CARD)
    inputs = [tmp_path / "a.png", str(tmp_path / "a.png"), _png(rgb), Image.fromarray(rgb), rgb]
    items = [to_item(x, i) for i, x in enumerate(inputs)]
    assert [type(it).__name__ for it in items] == ["FileItem", "FileItem", "BytesItem", "ImageItem", "ImageItem"]
    loaded = [load_item(adapter, i, it) for i, it in enumerate(items)]
    assert all(ld.error is None for ld in loaded)
    for ld in loaded[1:]:
        assert np.array_equal(ld.input, loaded[0].input) and ld.meta == -1
    # a gray array is converted (noted), a PNG made of an in-memory image decodes to the same pixels
    gray = load_item(adapter, 0, ImageItem("g", rgb[..., 0]))
    assert gray.error is None and "converted" in gray.note
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(ImageItem("k", rgb).read_bytes()))), rgb)


@pytest.mark.parametrize("value, why", [
    (np.zeros((8, 8, 3), np.float32), "uint8"), (np.zeros((8, 8, 2), np.uint8), "[H, W, 3]"),
    (np.zeros((0, 8, 3), np.uint8), "empty array"), (b"", "empty file"), (b"hello", "cannot identify|not an image"),
    (3.5, "cannot predict on a float")])
def test_bad_inputs_are_that_items_error(value, why):
    ld = load_item(ClassifyAdapter(CARD), 0, to_item(value, 4))
    assert ld.error is not None and ld.input is None
    assert __import__("re").search(why, ld.error), ld.error


def test_result_types_serialize_and_give_numpy_views():
    c = tritonkit.Classification(top=(("circle", 0.75), ("star", 0.25)), classes=(0, 2), source="x.jpg")
    assert c.label == "circle" and c.score == 0.75
    assert c.to_dict() == {"top": [["circle", 0.75], ["star", 0.25]], "classes": [0, 2], "source": "x.jpg"}
    assert np.asarray(c).tolist() == [[0.0, 0.75], [2.0, 0.25]]
    d = tritonkit.Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32),
                             np.array([3]), ("star",))
    assert len(d) == 1 and d.to_dict()["boxes"] == [[1.0, 2.0, 3.0, 4.0]] and d.to_dict()["labels"] == ["star"]
    assert np.asarray(d).tolist() == [[1, 2, 3, 4, 0.5, 3]]
    m = tritonkit.Mask(np.array([[0, 2], [2, 2]], np.uint8), ("bg", "a", "b"))
    assert m.present == ("bg", "b") and np.asarray(m).shape == (2, 2) and m.to_dict()["classes"] == [[0, 2], [2, 2]]
    f = tritonkit.Failed("<input 3>", "empty file (0 bytes)")
    assert not f.ok and c.ok and f.to_dict() == {"source": "<input 3>", "reason": "empty file (0 bytes)"}
    with pytest.raises(Exception):
        c.top = ()  # frozen


def test_importing_the_package_stays_cheap_and_exports_the_api():
    code = ("import sys, tritonkit; assert 'tritonkit.predict' not in sys.modules; "
            "assert 'numpy' not in sys.modules; tritonkit.connect; assert 'tritonkit.predict' in sys.modules; "
            "assert 'tritonclient' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in tritonkit.__all__:
        assert getattr(tritonkit, name) is not None
    assert issubclass(tritonkit.ServerError, tritonkit.TritonkitError)
    with pytest.raises(AttributeError):
        tritonkit.no_such_name


def test_batch_steps_with_an_in_process_model(tiny_onnx, tmp_path):
    """load -> request -> outputs -> finish with onnxruntime in place of the server: one result per
    input in order, a bad image a Failed in its place, an image whose output is not finite too."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    adapter = ClassifyAdapter(CARD)
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    items = [to_item(x, i) for i, x in enumerate([rgb, b"junk", rgb[::-1].copy(), rgb])]
    assert [len(c) for c in chunks(iter(items), 3)] == [3, 1]
    batch = load(adapter, items, None)
    sent = batch.ok
    assert [ld.index for ld in sent] == [0, 2, 3]
    logits = session.run(None, {"input": request(adapter, sent)})[0]
    logits[2] = np.nan  # the last image's output is broken
    results = finish(adapter, batch, split({"logits": logits}, sent))
    assert [type(r).__name__ for r in results] == ["Classification", "Failed", "Classification", "Failed"]
    assert results[0].source == "<input 0>" and "not finite" in results[3].reason
    assert results[0].classes == tuple(adapter.postprocess({"logits": logits[0]}, -1)["topk"])
    assert isinstance(items[1], BytesItem) and not isinstance(items[0], InvalidItem)
