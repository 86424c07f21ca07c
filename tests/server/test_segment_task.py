"""`eval segment` end to end: the task registration, the adapter in process, the cards and
their export, the argmax chain writer, and the real bundled server (served == in-process,
argmax ensemble == client argmax, bad VOC masks listed and the rest evaluated)."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import pytest

from support.paths import PACKAGE
from tritonkit.cards import get_card
from tritonkit.client.pipeline import CallableBackend, EngineOptions, run_stream, summarize
from tritonkit.tasks.segment.math import ConfusionMatrix, argmax_mask, mask_to_original
from tritonkit.client.preprocess import preprocess
from tritonkit.tasks.segment.voc import IMAGES_DIR, MASKS_DIR, SPLITS_DIR, encode_palette_png, open_voc
from tritonkit.demo.segshapes import SegmentationSetSpec, generate_segmentation_data, voc_folder
from tritonkit.errors import TritonkitError
from tritonkit.export.builders import build_model
from tritonkit.export.weights import load_weights
from tritonkit.model_repository.config import RepoOptions
from support.chains import write_chain
from tritonkit.model_repository.ensemble import write_preprocess_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.tasks.base import get_task, list_tasks
from tritonkit.tasks.segment.math import MASK_OUTPUT
from tritonkit.tasks.segment.task import (
    SegmentAdapter, Segmentation, SegmentationOptions, argmax_chain, segmentation_markdown)

from support.onnx_models import tiny_classifier, tiny_segmenter

CARD = get_card("demo_seg")  # resize_short 64, 5 classes, input "input", output "out"
BAD = {"val_bad_size": "mask size", "val_bad_class": "class ids 9", "val_no_mask": "not found"}


def make_voc(root: Path, val_images: int = 7) -> Path:
    """A generated VOC-layout set plus three listed val ids that cannot be scored."""
    generate_segmentation_data(root, seed=3, spec=SegmentationSetSpec(train_images=1, val_images=val_images),
                               progress=False)
    voc = voc_folder(root)
    image = (voc / IMAGES_DIR / "val_00000.jpg").read_bytes()
    for key in BAD:
        (voc / IMAGES_DIR / f"{key}.jpg").write_bytes(image)
    from PIL import Image
    h, w = np.asarray(Image.open(voc / IMAGES_DIR / "val_00000.jpg")).shape[:2]
    (voc / MASKS_DIR / "val_bad_size.png").write_bytes(encode_palette_png(np.zeros((h + 1, w), np.uint8)))
    wrong = np.zeros((h, w), np.uint8)
    wrong[0, 0] = 9
    (voc / MASKS_DIR / "val_bad_class.png").write_bytes(encode_palette_png(wrong))
    split = voc / SPLITS_DIR / "val.txt"
    split.write_text(split.read_text() + "".join(f"{k}\n" for k in BAD))
    return root


@pytest.fixture(scope="module")
def voc_and_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("segtask")
    return make_voc(root / "voc"), tiny_segmenter(root / "seg.onnx", num_classes=CARD.num_classes)


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_segment_task_is_registered_with_its_cli():
    from tritonkit.cli import main

    assert "segment" in list_tasks() and isinstance(get_task("segment"), Segmentation)
    assert get_card("deeplabv3_resnet18").task == "segment"
    with pytest.raises(TritonkitError, match="with data PATH"):
        SegmentationOptions(model="demo_seg")
    assert main(["eval", "segment", "--model", "demo_seg"]) == 1


def test_adapter_in_process_scores_as_hand_computed(voc_and_onnx):
    """The stream at batch 1 equals a hand-written loop (preprocess, argmax, scale back, confusion);
    at batch 3 the padded batches still give one record per image."""
    root, onnx_path = voc_and_onnx
    ds = open_voc(root, "val", CARD.num_classes)
    assert {e["path"] for e in ds.errors} == set(BAD)
    for e in ds.errors:
        assert BAD[e["path"]] in e["reason"]
    sess = _session(onnx_path)
    adapter = SegmentAdapter(CARD)
    with CallableBackend(lambda x: {"out": sess.run(["out"], {"input": x})[0]}) as backend:
        one = run_stream(ds.items, adapter, backend, EngineOptions(batch_size=1, progress=False))
        three = run_stream(ds.items, adapter, backend, EngineOptions(batch_size=3, progress=False))
    cm = ConfusionMatrix(CARD.num_classes)
    from PIL import Image
    for item in ds.items:
        rgb = np.asarray(Image.open(item.path).convert("RGB"))
        x, geo = preprocess(rgb, CARD.preprocess)
        pred = mask_to_original(argmax_mask(sess.run(["out"], {"input": x[None]})[0])[0], geo)
        cm.update(pred, item.read_mask(CARD.num_classes))
    expect = cm.scores(CARD.label_names())
    got = summarize(adapter, one)
    assert got["miou"] == pytest.approx(expect.miou, abs=1e-12) and 0 < got["miou"] < 1
    assert got["pixel_accuracy"] == pytest.approx(expect.pixel_accuracy, abs=1e-12)
    assert list(got["per_class_iou"]) == CARD.label_names()
    assert three.evaluated == one.evaluated == len(ds.items) and three.batches == -(-len(ds.items) // 3)
    assert summarize(adapter, three)["pixels"] == got["pixels"]


def test_markdown_has_the_per_class_table():
    md = segmentation_markdown({"model": "m", "miou": 0.5, "pixel_accuracy": 0.9, "reference_miou": 0.5,
                                "reference_pixel_accuracy": 0.9, "per_class_iou": {"background": 0.75, "star": None},
                                "reference_per_class_iou": {"background": 0.75, "star": None},
                                "batch_timing": [{"argmax": "server", "batch_size": 2, "images": 4,
                                                  "run_model_ms": 1.0, "run_model_img_s": 2000.0,
                                                  "run_stream_ms": 2.0, "run_stream_img_s": 1000.0,
                                                  "run_stream_latency_p50_ms": 3.0,
                                                  "run_stream_latency_p99_ms": 4.0, "padded_pixels": 0.125}]})
    assert "| background | 75.00 | 75.00 |" in md and "| star | - | - |" in md
    assert "| server | 2 | 4 | 1.00 | 2000.00 | 3.00 | 4.00 | 1000.00 | 12.50 |" in md


def test_dict_output_builder_drops_aux_weights_with_a_note(tmp_path):
    torch = pytest.importorskip("torch")
    card = get_card("deeplabv3_resnet18")
    built = build_model(card)
    state = dict(built.module.state_dict())
    state["aux_classifier.0.weight"] = torch.zeros(4, 4, 3, 3)
    torch.save(state, tmp_path / "w.pth")
    notes = load_weights(built, tmp_path / "w.pth", card)
    assert len(notes) == 1 and "aux_classifier" in notes[0] and "dropped" in notes[0]
    with torch.no_grad():
        out = built.adapter(built.module(torch.zeros(1, 3, 64, 80)))
    assert tuple(out[0].shape) == (1, 21, 64, 80)
    # the whole export: the note lands in the sidecar, the ONNX serves "out" only
    from tritonkit.export import export_model

    small = card.with_overrides(dynamic_shape=CARD.dynamic_shape)  # a small traced size keeps the test short
    res = export_model(small, tmp_path / "onnx", weights=tmp_path / "w.pth")
    sidecar = json.loads(res.sidecar_path.read_text())
    assert any("aux_classifier" in n for n in json.dumps(sidecar).split('"') if "dropped" in n)
    assert [o.name for o in _session(res.onnx_path).get_outputs()] == ["out"]


def test_lraspp_exports_with_dynamic_batch_height_width_and_a_stated_class_dim(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torchvision")
    from tritonkit.export import export_model

    card = get_card("lraspp_mobilenet_v3_large").with_overrides(
        dynamic_shape=get_card("demo_seg").dynamic_shape)  # a small traced size keeps the test short
    res = export_model(card, tmp_path, random_weights=True)
    model = onnx.load(str(res.onnx_path))
    dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
            for v in (model.graph.input[0], model.graph.output[0])]
    assert dims[0][1] == 3 and all(isinstance(d, str) for d in (dims[0][0], *dims[0][2:]))
    assert dims[1][1] == 21 and all(isinstance(d, str) for d in (dims[1][0], *dims[1][2:]))
    out = _session(res.onnx_path).run(["out"], {"input": np.zeros((2, 3, 40, 56), np.float32)})[0]
    assert out.shape == (2, 21, 40, 56)


def test_card_whose_dynamic_dims_contradict_the_onnx_is_one_line_exit_1(tmp_path, capsys):
    from tritonkit.cli import main

    fixed = tiny_classifier(tmp_path / "fixed.onnx")  # input fixed at 3x64x64
    code = main(["repo", "--model", "demo_seg", "--model-file", str(fixed), "--out", str(tmp_path / "repo")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "fixed at 64, card says -1" in err and "Traceback" not in err


def test_argmax_chain_writes_the_ensemble_with_dynamic_dims(tmp_path, voc_and_onnx):
    from tritonkit.model_repository.config import parse_config

    repo = tmp_path / "repo"
    write_model(CARD, voc_and_onnx[1], repo, RepoOptions(target="cpu"))
    names = write_chain(CARD, repo, "demo_seg")
    assert (names.postprocess, names.ensemble) == ("demo_seg_argmax", "demo_seg_ensemble_argmax")
    seg = parse_config((repo / "demo_seg" / "config.pbtxt").read_text())
    ens = parse_config((repo / names.ensemble / "config.pbtxt").read_text())
    assert list(seg.input[0].dims) == [3, -1, -1] and list(seg.output[0].dims) == [5, -1, -1]
    assert list(seg.model_warmup[0].inputs["input"].dims) == [3, 64, 85]
    assert list(ens.input[0].dims) == [3, -1, -1] and ens.output[0].name == MASK_OUTPUT
    assert list(ens.output[0].dims) == [-1, -1]
    classifier = get_card("demo_shapes")
    assert get_task("classify").server_chains(classifier) == []  # the argmax chain is the segment task's


# -- the real server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seg_server(voc_and_onnx, tmp_path_factory, served_repository):
    repo = tmp_path_factory.mktemp("segrepo") / "repo"
    # 2 ms queue delay: concurrent requests of different sizes reach one execute() call
    write_model(CARD, voc_and_onnx[1], repo, RepoOptions(target="cpu", max_queue_delay_us=2000))
    names = write_chain(CARD, repo, "demo_seg")
    # server-side preprocessing: resize_short on the server, in front of the segmenter and of its argmax
    write_preprocess_chain(CARD, repo, "demo_seg")
    write_preprocess_chain(CARD, repo, "demo_seg", post=argmax_chain(CARD))
    assert names.ensemble == "demo_seg_ensemble_argmax"
    server = served_repository(repo=repo).server
    return server


def _eval(server, root, onnx_path, out: Path, *extra: str) -> dict:
    from tritonkit.cli import main

    code = main(["eval", "segment", "--model", "demo_seg", "--data", str(root), "--url", server.url("grpc"),
                 "--batch-sizes", "1,3", "--timing-images", "5", "--reference-onnx", str(onnx_path),
                 "--out", str(out), "--no-progress", *extra])
    assert code == 0
    return json.loads((out / "segmentation.json").read_text())


def test_served_segmentation_equals_in_process_and_lists_bad_masks(seg_server, voc_and_onnx, tmp_path):
    root, onnx_path = voc_and_onnx
    client = _eval(seg_server, root, onnx_path, tmp_path / "client")
    server = _eval(seg_server, root, onnx_path, tmp_path / "server", "--server-postprocess")
    for res in (client, server):
        assert res["images"] == 7 and {e["path"] for e in res["errors"]} == set(BAD)
        assert res["miou"] == res["reference_miou"] and 0 < res["miou"] < 1
        assert res["per_class_iou"] == res["reference_per_class_iou"]
        assert res["pixel_accuracy"] == res["reference_pixel_accuracy"]
        assert res["p_val_whole"] > 0 and res["p_val_core"] > 0
        assert res["mem"] > 0 and res["mem_source"].startswith("rss of tritonserver process tree")
        # server-side argmax is timed beside client-side argmax when the eval uses it
        assert {(r["argmax"], r["batch_size"]) for r in res["batch_timing"]} == {("client", 1), ("client", 3)} | (
            {("server", 1), ("server", 3)} if res is server else set())
        for r in res["batch_timing"]:  # run stream latency per batch beside run stream throughput
            assert 0 < r["run_stream_latency_p50_ms"] <= r["run_stream_latency_p99_ms"] and r["run_stream_img_s"] > 0
    assert client["max_abs_diff"]["out"] < 1e-4
    assert server["served_model"] == "demo_seg_ensemble_argmax" and server["server_argmax"] is True
    # the server's uint8 masks score exactly as the client's argmax of the served logits
    assert server["miou"] == client["miou"] and server["per_class_iou"] == client["per_class_iou"]
    md = (tmp_path / "client" / "segmentation.md").read_text()
    for e in client["errors"]:
        assert f"| {e['path']} | {e['reason']} |" in md
    assert "## IoU per class" in md


@pytest.mark.parametrize("argmax", [False, True], ids=["client-argmax", "server-argmax"])
def test_server_side_preprocessing_of_a_segmenter_scores_as_the_client_side(seg_server, voc_and_onnx, tmp_path,
                                                                             argmax):
    """resize_short on the server (the preprocess model pads each request's images as the client
    pads its batches): the same masks, so the same mIoU, at batch 1 and 3."""
    root, onnx_path = voc_and_onnx
    post = ("--server-postprocess",) if argmax else ()
    client = _eval(seg_server, root, onnx_path, tmp_path / "client", *post)
    server = _eval_bytes(seg_server, root, tmp_path / "server", *post)
    assert server["served_model"] == ("demo_seg_ensemble_argmax_bytes" if argmax else "demo_seg_bytes")
    assert server["images"] == client["images"] == 7 and server["errors"] == client["errors"]
    assert server["miou"] == client["miou"] and server["per_class_iou"] == client["per_class_iou"]
    assert {r["preprocess"] for r in server["preprocess_comparison"]} == {"client", "server"}


def _eval_bytes(server, root, out: Path, *extra: str) -> dict:
    from tritonkit.cli import main

    code = main(["eval", "segment", "--model", "demo_seg", "--data", str(root), "--url", server.url("grpc"),
                 "--batch-sizes", "1,3", "--timing-images", "5", "--server-preprocess", "--out", str(out),
                 "--no-progress", *extra])
    assert code == 0
    return json.loads((out / "segmentation.json").read_text())


def test_served_mask_equals_client_argmax_for_concurrent_sizes(seg_server, voc_and_onnx):
    """Requests of different heights/widths in flight together: the onnxruntime backend runs each
    shape on its own, and the ensemble's mask equals the argmax of the segmenter's logits."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(seg_server.grpc_url)
    rng = np.random.default_rng(0)
    shapes = [(2, 3, 37, 52), (1, 3, 64, 41), (3, 3, 64, 64), (1, 3, 37, 52)]
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    results: dict = {}
    sess = _session(voc_and_onnx[1])

    def store(key, result, error):
        results[key] = (result, error)

    def send(model, output):
        for i, x in enumerate(inputs):
            t = grpc.InferInput("input", list(x.shape), "FP32")
            t.set_data_from_numpy(x)
            client.async_infer(model, [t], functools.partial(store, (model, i)),
                               outputs=[grpc.InferRequestedOutput(output)])

    send("demo_seg", "out")
    send("demo_seg_ensemble_argmax", MASK_OUTPUT)
    deadline = time.time() + 60
    while len(results) < 2 * len(inputs) and time.time() < deadline:
        time.sleep(0.05)
    assert len(results) == 2 * len(inputs) and all(e is None for _, e in results.values())
    for i, x in enumerate(inputs):
        logits = results[("demo_seg", i)][0].as_numpy("out")
        mask = results[("demo_seg_ensemble_argmax", i)][0].as_numpy(MASK_OUTPUT)
        assert logits.shape == (x.shape[0], 5) + x.shape[2:]
        np.testing.assert_allclose(logits, sess.run(["out"], {"input": x})[0], atol=1e-4)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, argmax_mask(logits))



def test_int8_calibration_of_a_dynamic_size_card_is_one_image_per_batch(voc_and_onnx):
    from tritonkit.build_engines.quantize import calibration_batches

    images = sorted((voc_folder(voc_and_onnx[0]) / IMAGES_DIR).glob("val_0000*.jpg"))[:3]
    batches = list(calibration_batches(CARD, images, batch_size=8))
    assert len(batches) == 3 and all(b.shape[0] == 1 and b.shape[1] == 3 and min(b.shape[2:]) == 64
                                     for b in batches)


ORT_RUNNER = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.modules["tritonkit"] = None  # any tritonkit import inside the backend fails here
import numpy as np
import triton_python_backend_utils as pb
import model

m = model.TritonPythonModel()
m.initialize(json.load(open("args.json")))
data = np.load("inputs.npz")
requests = [pb.InferenceRequest([pb.Tensor("input", data[k])]) for k in sorted(data.files)]
out, errors = {}, []
for i, r in enumerate(m.execute(requests)):  # one execute() call with every shape mixed
    if r.error is not None:
        errors.append(r.error.message)
        continue
    out[f"{i:02d}"] = r.output_tensors[0].as_numpy()
np.savez("outputs.npz", **out)
json.dump({"errors": errors}, open("result.json", "w"))
'''


def test_ort_backend_runs_each_input_shape_on_its_own(tmp_path):
    """One execute() call with requests of three H/W sizes (interleaved): each response equals
    onnxruntime on that request alone. Run in a clean subprocess against a stand-in of Triton's
    triton_python_backend_utils (it exists only inside the server's python stub)."""
    import shutil
    import subprocess
    import sys

    from support.backend_stub import PB_UTILS_STUB

    work = tmp_path / "work"
    (work / "1").mkdir(parents=True)
    (work / "triton_python_backend_utils.py").write_text(PB_UTILS_STUB)
    shutil.copy(PACKAGE / "model_repository" / "backends" / "ort_model.py",
                work / "model.py")
    onnx_path = tiny_segmenter(work / "1" / "model.onnx", num_classes=5)
    config = {"parameters": {}, "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}],
              "output": [{"name": "out", "data_type": "TYPE_FP32", "dims": [5, -1, -1]}]}
    (work / "args.json").write_text(json.dumps({"model_config": json.dumps(config), "model_repository": str(work),
                                                "model_version": "1"}))
    (work / "run.py").write_text(ORT_RUNNER)
    rng = np.random.default_rng(0)
    shapes = [(2, 3, 20, 30), (1, 3, 33, 17), (1, 3, 20, 30), (3, 3, 16, 16), (1, 3, 33, 17)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    np.savez(work / "inputs.npz", **{f"{i:02d}": a for i, a in enumerate(arrays)})
    proc = subprocess.run([sys.executable, "-I", "run.py"], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((work / "result.json").read_text())["errors"] == []
    sess = _session(onnx_path)
    with np.load(work / "outputs.npz") as out:
        assert sorted(out.files) == [f"{i:02d}" for i in range(len(arrays))]
        for i, x in enumerate(arrays):
            np.testing.assert_allclose(out[f"{i:02d}"], sess.run(["out"], {"input": x})[0], atol=1e-5)
