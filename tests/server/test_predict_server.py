"""``tritonkit.connect(url).predict(images)`` against the real bundled tritonserver.

What an application gets must be what eval measured: for every image of small generated data
sets (classification folders, a COCO layout, a VOC layout), ``predict`` equals the eval's
per-image record of the same image, bit for bit (top-k classes and scores; boxes, scores and
classes; the mask's size and its confusion against the ground truth), with client-side and
server-side postprocessing and preprocessing. One server serves the three tasks' models.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tritonkit
from support.chains import write_chain
from support.classify_data import make_dataset as make_classify
from support.coco_data import constant_rows, make_dataset as make_coco
from support.onnx_models import constant_yolo_onnx, tiny_segmenter
from tritonkit.cards import get_card
from tritonkit.evaluate import evaluate
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.ensemble import write_preprocess_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.tasks.classify.task import ClassificationOptions
from tritonkit.tasks.detect.task import DetectionOptions, detection_record, nms_chain
from tritonkit.tasks.segment.math import confusion, confusion_to_entries
from tritonkit.tasks.segment.task import SegmentationOptions
from tritonkit.tasks.segment.voc import open_voc
from tritonkit.demo.segshapes import SegmentationSetSpec, generate_segmentation_data

CLS, DET, SEG = get_card("demo_shapes"), get_card("demo_shapes_det"), get_card("demo_seg")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_onnx, served_repository):
    """Data sets and one server: the classifier (+ its _bytes ensemble), the detector (+ NMS
    ensembles of both profiles), the segmenter (+ its argmax ensemble)."""
    root = tmp_path_factory.mktemp("predict")
    repo = root / "repo"
    write_model(CLS, tiny_onnx, repo, RepoOptions(target="cpu", max_queue_delay_us=2000))
    write_preprocess_chain(CLS, repo, CLS.name)
    det_onnx = constant_yolo_onnx(root / "const.onnx", constant_rows())
    write_model(DET, det_onnx, repo, RepoOptions(target="cpu", max_batch_size=4))
    for profile in ("ap", "speed"):
        write_chain(DET, repo, DET.name, profile, 4)
    seg_onnx = tiny_segmenter(root / "seg.onnx", num_classes=SEG.num_classes)
    write_model(SEG, seg_onnx, repo, RepoOptions(target="cpu"))
    write_chain(SEG, repo, SEG.name)
    generate_segmentation_data(root / "voc", seed=3, spec=SegmentationSetSpec(train_images=1, val_images=5),
                               progress=False)
    make_classify(root / "cls", n_good=10, every_kind=True)
    server = served_repository(repo=repo).server
    return {"server": server, "cls": root / "cls", "coco": make_coco(root / "coco"), "voc": root / "voc"}


def _url(world, model: str, protocol: str = "grpc") -> str:
    return f"{protocol}://{world['server'].url(protocol)}/{model}"


def _records(path: Path) -> dict[str, dict]:
    entries = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return {e["key"]: e for e in entries}


# -- the eval's per-image records, bit for bit -------------------------------------------------

@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classify_predict_equals_the_eval_records(world, tmp_path, protocol):
    url = world["server"].url(protocol)
    evaluate("classify", ClassificationOptions(model="demo_shapes", data=world["cls"], url=url, protocol=protocol,
                                               batch_sizes=(4,), timing_images=0, out=tmp_path, progress=False))
    records = _records(tmp_path / "classification.jsonl")
    files = sorted(p for p in world["cls"].rglob("*") if p.is_file() and p.suffix != ".txt")
    keys = [p.relative_to(world["cls"]).as_posix() for p in files]
    assert set(keys) == set(records)
    with tritonkit.connect(_url(world, "demo_shapes", protocol)) as m:
        results = m.predict([str(p) for p in files])
        one = m.predict(str(files[0]))
    assert len(results) == len(files)
    names = CLS.label_names()
    for key, result in zip(keys, results):
        entry = records[key]
        if "error" in entry:
            assert not result.ok and result.reason == entry["error"], key
            continue
        rec = entry["record"]
        assert result.ok and list(result.classes) == rec["topk"] and list(result.scores) == rec["scores"], key
        assert [label for label, _ in result.top] == [names[i] for i in rec["topk"]] == rec["classes"]
        assert result.to_dict()["classes"] == rec["topk"] and np.asarray(result).shape == (len(rec["topk"]), 2)
    assert one.to_dict() == results[0].to_dict()


@pytest.mark.parametrize("server_nms", [False, True])
def test_detect_predict_equals_the_eval_records(world, tmp_path, server_nms):
    evaluate("detect", DetectionOptions(model="demo_shapes_det", data=world["coco"], url=world["server"].url("grpc"),
                                        server_postprocess=server_nms, batch_sizes=(2,), timing_images=0,
                                        out=tmp_path, progress=False))
    records = _records(tmp_path / "detection.jsonl")
    images = sorted((world["coco"] / "val2017").iterdir())
    with tritonkit.connect(_url(world, "demo_shapes_det"), nms_profile="ap", server_postprocess=server_nms) as m:
        assert m.describe()["called"] == ("demo_shapes_det_ensemble_ap" if server_nms else "demo_shapes_det")
        results = list(m.predict_iter([str(p) for p in images], batch_size=3))
    assert len(results) == len(images) == len(records)
    for path, result in zip(images, results):
        entry = records[path.name]
        if "error" in entry:
            assert not result.ok and result.source == str(path) and result.reason == entry["error"]
            continue
        rec = entry["record"]
        assert detection_record(rec["image_id"], result) == rec, path.name
        assert result.labels == tuple(DET.label_names()[c] for c in rec["classes"])
        assert np.asarray(result).shape == (rec["count"], 6)


def test_segment_predict_equals_the_eval_records(world, tmp_path):
    evaluate("segment", SegmentationOptions(model="demo_seg", data=world["voc"], url=world["server"].url("grpc"),
                                            batch_sizes=(1,), timing_images=0, out=tmp_path, progress=False))
    records = _records(tmp_path / "segmentation.jsonl")
    ds = open_voc(world["voc"], "val", SEG.num_classes)
    with tritonkit.connect(_url(world, "demo_seg")) as client, \
            tritonkit.connect(_url(world, "demo_seg"), server_postprocess=True) as server:
        assert server.describe()["called"] == "demo_seg_ensemble_argmax"
        paths = [str(it.path) for it in ds.items]
        got = {"client": client.predict(paths, batch_size=1), "server": [server.predict(p) for p in paths]}
    for item, mine, theirs in zip(ds.items, got["client"], got["server"]):
        rec = records[item.key]["record"]
        truth = item.read_mask(SEG.num_classes, mine.classes.shape)
        assert (rec["height"], rec["width"]) == mine.classes.shape
        assert confusion_to_entries(confusion(mine.classes, truth, SEG.num_classes)) == rec["confusion"]
        assert np.array_equal(mine.classes, theirs.classes) and mine.labels == tuple(SEG.label_names())


# -- inputs, batching, bad images, asyncio ----------------------------------------------------

def test_every_input_kind_gives_the_same_result(world):
    path = sorted(world["cls"].rglob("img*.jpg"))[0]
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    array = np.asarray(Image.open(path).convert("RGB"))
    with tritonkit.connect(world["server"].url("grpc"), "demo_shapes", card="demo_shapes") as m:
        by_path, by_bytes, by_pil, by_array = m.predict([path, data, pil, array])
        bad = m.predict([b"not an image", np.zeros((4, 4), np.float32), 42, str(path)])
    assert by_path.top == by_bytes.top == by_pil.top == by_array.top
    assert [r.ok for r in bad] == [False, False, False, True]
    assert "not an image" in bad[0].reason and "uint8" in bad[1].reason and "int" in bad[2].reason
    assert bad[3].top == by_path.top and bad[0].source == "<input 0>"


def test_server_preprocess_sends_files_and_agrees(world):
    images = sorted(p for p in world["cls"].rglob("img*.jpg"))
    with tritonkit.connect(_url(world, "demo_shapes")) as plain, \
            tritonkit.connect(_url(world, "demo_shapes"), server_preprocess=True) as server:
        assert server.describe()["called"] == "demo_shapes_bytes"
        ours = plain.predict([str(p) for p in images])
        theirs = server.predict([str(p) for p in images] + [b"not an image"])
    assert [r.classes[0] for r in ours] == [r.classes[0] for r in theirs[:-1]]
    assert not theirs[-1].ok


def test_async_client_gives_what_the_sync_one_gives(world):
    paths = [str(p) for p in sorted(world["cls"].rglob("*")) if p.is_file() and p.suffix != ".txt"]
    with tritonkit.connect(_url(world, "demo_shapes")) as m:
        expected = [r.to_dict() for r in m.predict(paths)]

    async def run(protocol: str):
        async with await tritonkit.connect_async(_url(world, "demo_shapes", protocol)) as m:
            listed = await m.predict(paths)
            streamed = [r async for r in m.predict_iter(paths, batch_size=3)]
            one = await m.predict(paths[0])
            return listed, streamed, one

    for protocol in ("grpc", "http"):
        listed, streamed, one = asyncio.run(run(protocol))
        assert [r.to_dict() for r in listed] == [r.to_dict() for r in streamed] == expected
        assert one.to_dict() == expected[0]


def test_errors_are_one_line_naming_model_and_endpoint(world):
    url = world["server"].url("grpc")
    with pytest.raises(tritonkit.ServerError) as unknown:
        tritonkit.connect(f"grpc://{url}/no_such_model")
    assert "'no_such_model'" in str(unknown.value) and url in str(unknown.value)
    assert "\n" not in str(unknown.value)
    with pytest.raises(tritonkit.CardError, match="disagrees"):
        tritonkit.connect(_url(world, "demo_shapes"), card="resnet50")
    with pytest.raises(tritonkit.ServerError, match="no server-side postprocess"):
        tritonkit.connect(_url(world, "demo_shapes"), server_postprocess=True)
    with pytest.raises(tritonkit.ServerError) as down:
        tritonkit.connect("grpc://127.0.0.1:9/demo_shapes", timeout_s=2)
    assert "'demo_shapes'" in str(down.value) and "127.0.0.1:9" in str(down.value)


def test_failover_to_the_endpoint_that_answers(world):
    """A comma list with a dead endpoint first: connect and predict go to the live one."""
    path = str(next(iter(sorted(world["cls"].rglob("img*.jpg")))))
    url = world["server"].url("grpc")
    with tritonkit.connect(f"grpc://127.0.0.1:9,{url}/demo_shapes", timeout_s=5) as m:
        results = m.predict([path] * 6)
    assert all(r.ok for r in results) and len({r.top for r in results}) == 1

    async def run():  # asyncio: requests take turns over the endpoints; the dead one's are retried on the other
        async with await tritonkit.connect_async(f"grpc://127.0.0.1:9,{url}/demo_shapes", timeout_s=5) as m:
            return [await m.predict(path) for _ in range(4)]

    assert [r.top for r in asyncio.run(run())] == [results[0].top] * 4


# -- the README's snippets, run as written ------------------------------------------------------

def test_readme_snippets_run_against_the_local_server(world, tmp_path, monkeypatch, capsys):
    """Every snippet of "Call it from your application", with the README's models and address
    replaced by the test's (the classifier, detector and segmenter served here)."""
    from support.readme import code_blocks

    server = world["server"]
    names = {"127.0.0.1:8001": server.url("grpc"), "127.0.0.1:8000": server.url("http"), "/resnet50": "/demo_shapes",
             "/yolov5s": "/demo_shapes_det", "/deeplabv3_resnet50": "/demo_seg", '"a:8001,b:8001': '"'}
    jpg = sorted(world["cls"].rglob("img*.jpg"))[0].read_bytes()
    coco = sorted((world["coco"] / "val2017").glob("*.png"))[0].read_bytes()
    for name, data in (("cat.jpg", jpg), ("dog.jpg", jpg), ("street1.jpg", coco), ("street2.jpg", b"broken"),
                       ("street.jpg", jpg), ("notes.txt", b"a text file")):
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    blocks = code_blocks("## Call it from your application")
    assert len(blocks) == 4
    printed = []
    for block in blocks:
        for old, new in names.items():
            block = block.replace(old, new)
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # our own README's code
        printed.append(capsys.readouterr().out)
    labels = CLS.label_names()
    assert any(label in printed[0] for label in labels)                      # classification top-3
    assert "street1.jpg" in printed[1] and "street2.jpg" in printed[1] and "not an image" in printed[1]
    assert any(label in printed[1] for label in DET.label_names())
    assert "(" in printed[2] and any(label in printed[2] for label in SEG.label_names())
    assert printed[3].count("(") == 2 and any(label in printed[3] for label in labels)  # 2 of 3 images ok


def test_predict_iter_reads_its_inputs_lazily(world):
    """Bounded memory: when the first result comes out, at most in_flight + 1 batches were read."""
    path = str(sorted(world["cls"].rglob("img*.jpg"))[0])
    pulled = []

    def inputs():
        for i in range(40):
            pulled.append(i)
            yield path

    with tritonkit.connect(_url(world, "demo_shapes"), in_flight=2) as m:
        stream = m.predict_iter(inputs(), batch_size=4)
        first = next(stream)
        assert first.ok and len(pulled) <= 4 * 3
        rest = list(stream)
    assert len(rest) == 39 and len(pulled) == 40 and all(r.top == first.top for r in rest)
