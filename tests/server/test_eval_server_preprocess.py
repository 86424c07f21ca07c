"""`tritonkit eval <task> --server-preprocess`: encoded files to the `_bytes` ensembles of the
real bundled tritonserver give the client-side results, and the report compares both modes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.tasks.classify.math import SoftmaxTopK
from tritonkit.client.preprocess_math import ImageError, check_encoded
from tritonkit.evaluate import evaluate, preprocess_markdown
from tritonkit.model_repository.config import RepoOptions
from tritonkit.tasks.detect.task import nms_chain
from support.chains import write_chain
from tritonkit.model_repository.ensemble import write_preprocess_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.tasks.base import OptionsError
from tritonkit.tasks.classify.task import ClassificationOptions
from tritonkit.tasks.detect.task import DetectionOptions

from support.onnx_models import constant_yolo_onnx
from support.coco_data import constant_rows as _constant_rows, make_dataset as make_coco
from support.classify_data import make_dataset  # noqa: E402

DET = get_card("demo_shapes_det")


def test_options_refuse_what_encoded_files_cannot_do(tmp_path):
    with pytest.raises(OptionsError, match="server_preprocess sends encoded files"):
        ClassificationOptions(model="demo_shapes", data=tmp_path, server_preprocess=True, shm=True)
    with pytest.raises(OptionsError, match="reference_onnx"):
        ClassificationOptions(model="demo_shapes", data=tmp_path, server_preprocess=True, reference_onnx=tmp_path)


def test_check_encoded_catches_truncation_without_decoding():
    import io

    from PIL import Image

    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(buf, fmt)
        assert check_encoded(buf.getvalue()) == (50, 40)
        with pytest.raises(ImageError, match=f"truncated {fmt}"):
            check_encoded(buf.getvalue()[:-100])
    with pytest.raises(ImageError, match="not an image"):
        check_encoded(b"hello world, not an image")


def test_encoded_adapter_sends_the_file_and_pickles():
    import io
    import pickle

    from PIL import Image

    from tritonkit.tasks.classify.task import ClassifyAdapter
    from tritonkit.client.pipeline import EncodedAdapter

    adapter = pickle.loads(pickle.dumps(EncodedAdapter(ClassifyAdapter(get_card("demo_shapes").with_overrides(postprocess=SoftmaxTopK(top_k=3))))))
    assert adapter.k == 3 and adapter.encoded  # the task's attributes are the wrapped adapter's
    item = SimpleNamespace(label=2, key="x")
    with pytest.raises(ImageError, match="corrupt PNG"):
        adapter.prepare(item, b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    buf = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buf, "PNG")
    x, meta = adapter.prepare(item, buf.getvalue())
    assert x.dtype == object and x.shape == (1,) and x[0] == buf.getvalue() and meta is item
    logits = np.arange(8, dtype=np.float32)
    record = adapter.postprocess({"logits": logits, "geometry": np.array([20, 30, 1, 1, 0, 0], np.float64)}, meta)
    assert record["label"] == 2 and record["topk"] == [7, 6, 5]


def test_preprocess_markdown_lists_both_modes():
    rows = [{"preprocess": w, "model": m, "batch_size": 4, "images": 8, "run_stream_img_s": 100.0,
             "p_infer_whole": 90.0, "p_infer_core": 300.0, "wire_bytes_per_image": b}
            for w, m, b in (("client", "m", 49152.0), ("server", "m_bytes", 3000.0))]
    md = preprocess_markdown({"preprocess_comparison": rows})
    assert "| client | m | 4 | 8 | 100.0 | 90.0 | 300.0 | 49152.0 |" in md
    assert "| server | m_bytes | 4 | 8 | 100.0 | 90.0 | 300.0 | 3000.0 |" in md
    assert preprocess_markdown({}) == ""


@pytest.fixture(scope="module")
def bytes_repo_server(tmp_path_factory, tiny_onnx, served_repository):
    root = tmp_path_factory.mktemp("eval_bytes")
    repo = root / "repo"
    cls = get_card("demo_shapes")
    write_model(cls, tiny_onnx, repo, RepoOptions(target="cpu", max_queue_delay_us=2000))
    write_preprocess_chain(cls, repo, cls.name)
    coco = make_coco(root / "coco")
    det = write_model(DET, constant_yolo_onnx(root / "const.onnx", _constant_rows()), repo,
                      RepoOptions(target="cpu", max_batch_size=4)).name
    write_chain(DET, repo, det, "ap")
    write_preprocess_chain(DET, repo, det)
    write_preprocess_chain(DET, repo, det, post=nms_chain(DET, DET.nms("ap")))
    server = served_repository(repo=repo).server
    return server, coco


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_eval_classify_server_preprocess_equals_client_side(bytes_repo_server, tmp_path, protocol):
    server, _ = bytes_repo_server
    expect = make_dataset(tmp_path / "data", n_good=9)
    common = dict(model="demo_shapes", data=tmp_path / "data", url=server.url(protocol), protocol=protocol,
                  batch_sizes=(4, 1), timing_images=6, progress=False)
    client = evaluate("classify", ClassificationOptions(**common, out=tmp_path / "client")).to_dict()
    served = evaluate("classify", ClassificationOptions(**common, out=tmp_path / "server",
                                                        server_preprocess=True)).to_dict()
    assert served["served_model"] == "demo_shapes_bytes" and client["served_model"] == "demo_shapes"
    assert served["images"] == client["images"] == expect["good"]
    assert {e["path"] for e in served["errors"]} == expect["errors"]  # the truncated JPEG is caught client-side
    assert (served["top1"], served["top5"]) == (client["top1"], client["top5"])
    ours = [json.loads(line) for line in (tmp_path / "client" / "classification.jsonl").read_text().splitlines()[1:]]
    theirs = [json.loads(line) for line in (tmp_path / "server" / "classification.jsonl").read_text().splitlines()[1:]]
    by_key = {e["key"]: e for e in ours}
    for entry in theirs:
        if "record" in entry:
            mine = by_key[entry["key"]]["record"]
            assert entry["record"]["topk"] == mine["topk"]
            np.testing.assert_allclose(entry["record"]["scores"], mine["scores"], atol=2e-6)
    rows = served["preprocess_comparison"]
    assert {(r["preprocess"], r["batch_size"]) for r in rows} == {(w, b) for w in ("client", "server") for b in (4, 1)}
    by_mode = {(r["preprocess"], r["batch_size"]): r for r in rows}
    for bs in (4, 1):
        assert by_mode[("client", bs)]["wire_bytes_per_image"] == 3 * 64 * 64 * 4
        assert 0 < by_mode[("server", bs)]["wire_bytes_per_image"] < 3 * 64 * 64 * 4
        for mode in ("client", "server"):
            r = by_mode[(mode, bs)]
            assert r["run_stream_img_s"] > 0 and r["p_infer_core"] >= r["p_infer_whole"] > 0
    assert "## Client-side vs server-side preprocessing" in (tmp_path / "server" / "classification.md").read_text()


@pytest.mark.parametrize("server_nms", [False, True])
def test_eval_detect_server_preprocess_uses_the_server_geometry(bytes_repo_server, tmp_path, server_nms):
    server, coco = bytes_repo_server
    result = evaluate("detect", DetectionOptions(
        model="demo_shapes_det", data=coco, url=server.grpc_url, server_postprocess=server_nms, server_preprocess=True,
        batch_sizes=(2,), timing_images=3, out=tmp_path / "out", progress=False)).to_dict()
    assert result["served_model"] == ("demo_shapes_det_ensemble_ap_bytes" if server_nms else "demo_shapes_det_bytes")
    assert result["images"] == 3 and [e["path"] for e in result["errors"]] == ["broken.jpg"]
    # boxes mapped back with the server's geometry (raw outputs) or by the server (NMS ensemble)
    assert result["map50"] == pytest.approx(1.0) and result["map50_95"] == pytest.approx(1.0)
    assert {r["preprocess"] for r in result["preprocess_comparison"]} == {"client", "server"}
