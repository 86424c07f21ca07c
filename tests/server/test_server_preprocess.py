"""Server-side preprocessing (encoded image bytes in): the preprocess model and the bytes-in
ensembles, written by the repository writer, run without tritonkit and, served by the real
bundled tritonserver, give what client-side preprocessing gives."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tritonkit.cards import NMSProfile, Preprocess, get_card
from tritonkit.client import preprocess_math
from tritonkit.client.decode import decode_image
from tritonkit.tasks.detect.math import card_detections as postprocess_card
from tritonkit import spec
from tritonkit.spec import CARD_PARAMETER, GEOMETRY_FIELDS
from tritonkit.tasks.detect.math import OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES, unpad_detections
from tritonkit.client.preprocess import preprocess, preprocess_bytes
from tritonkit.client.preprocess_math import ENCODED_INPUT, GEOMETRY_OUTPUT
from tritonkit.model_repository.config import ConfigError, RepoOptions, parse_config
from support.chains import write_chain
from tritonkit.model_repository.ensemble import PREPROCESS_MATH_FILE, write_preprocess_chain
from tritonkit.tasks.detect.task import nms_chain
from tritonkit.model_repository.writer import write_model

from support.onnx_models import tiny_classifier, tiny_segmenter, tiny_yolo_onnx
from support.isolated import IsolatedFailure, run_isolated as _run_isolated

CLS = get_card("demo_shapes")
DET = get_card("demo_shapes_det")
SIZES = [(96, 160), (200, 120), (128, 128), (50, 300), (375, 500)]


def _jpeg(h: int, w: int, seed: int, fmt: str = "JPEG") -> bytes:
    """An encoded photo-like image (smooth gradients plus noise) of ``w`` x ``h``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    img = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _blobs(n: int, seed: int = 0) -> list[bytes]:
    return [_jpeg(h, w, seed + i, "PNG" if i == 2 else "JPEG") for i, (h, w) in enumerate(SIZES[:n])]


def _bytes_batch(blobs: list[bytes]) -> np.ndarray:
    return np.array([[b] for b in blobs], dtype=np.object_)


# -- the repository -------------------------------------------------------------------------

def test_preprocess_chain_configs_and_files(tmp_path, tiny_onnx):
    repo = tmp_path / "repo"
    model = write_model(CLS, tiny_onnx, repo, RepoOptions(target="cpu", max_batch_size=8)).name
    names = write_preprocess_chain(CLS, repo, model)
    assert (names.preprocess, names.ensemble, names.postprocess) == (
        "demo_shapes_preprocess", "demo_shapes_bytes", None)
    version = repo / names.preprocess / "1"
    assert (version / PREPROCESS_MATH_FILE).read_bytes() == Path(preprocess_math.__file__).read_bytes()
    pre = parse_config((repo / names.preprocess / "config.pbtxt").read_text())
    assert json.loads(pre.parameters[CARD_PARAMETER].string_value)["preprocess"]["resize"] == 72  # its one card
    assert not (repo / names.preprocess / "card.json").exists()
    assert (version / "tk_spec.py").read_bytes() == Path(spec.__file__).read_bytes()
    assert pre.backend == "python" and pre.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in pre.input] == [(ENCODED_INPUT, [1])]
    assert [(o.name, list(o.dims)) for o in pre.output] == [("input", [3, 64, 64]), (GEOMETRY_OUTPUT, [6])]
    ens = parse_config((repo / names.ensemble / "config.pbtxt").read_text())
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [names.preprocess, model]
    assert [o.name for o in ens.output] == ["logits", GEOMETRY_OUTPUT]
    assert parse_config((repo / model / "config.pbtxt").read_text()).name == model  # the model is untouched


def test_preprocess_chain_with_nms_feeds_the_server_geometry(tmp_path):
    repo = tmp_path / "repo"
    det = write_model(DET, tiny_yolo_onnx(tmp_path / "det.onnx"), repo,
                      RepoOptions(target="cpu", max_batch_size=4)).name
    with pytest.raises(ConfigError, match="write the postprocess chain first"):
        write_preprocess_chain(DET, repo, det, post=nms_chain(DET, DET.nms("ap")))
    write_chain(DET, repo, det, "ap")
    names = write_preprocess_chain(DET, repo, det, post=nms_chain(DET, DET.nms("ap")))
    assert (names.ensemble, names.postprocess) == (f"{det}_ensemble_ap_bytes", f"{det}_nms_ap")
    ens = parse_config((repo / names.ensemble / "config.pbtxt").read_text())
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [names.preprocess, det, names.postprocess]
    assert dict(steps[2].input_map)["geometry"] == dict(steps[0].output_map)[GEOMETRY_OUTPUT]
    assert [o.name for o in ens.output] == [OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT]


def test_cli_repo_server_preprocess(tmp_path, capsys):
    from tritonkit.cli import main

    out = tmp_path / "repo"
    code = main(["repo", "--model", "demo_shapes_det", "--model-file", str(tiny_yolo_onnx(tmp_path / "det.onnx")),
                 "--out", str(out), "--server-postprocess", "ap", "--server-preprocess", "--preprocess-instances", "2"])
    assert code == 0, capsys.readouterr().err
    for name in ("demo_shapes_det", "demo_shapes_det_nms_ap", "demo_shapes_det_ensemble_ap",
                 "demo_shapes_det_preprocess", "demo_shapes_det_bytes", "demo_shapes_det_ensemble_ap_bytes"):
        assert (out / name / "config.pbtxt").is_file(), name
    assert "demo_shapes_det_ensemble_ap_bytes" in capsys.readouterr().out
    assert parse_config((out / "demo_shapes_det_preprocess" / "config.pbtxt").read_text()).instance_group[0].count == 2


def test_variable_size_cards_get_a_variable_size_preprocess_model(tmp_path):
    """resize_short is in the shared preprocessing: a segmenter's preprocess model returns [3, -1, -1]
    (each request's images padded to its largest, as the client pads a batch)."""
    seg = get_card("demo_seg")
    repo = tmp_path / "repo"
    write_model(seg, tiny_segmenter(tmp_path / "seg.onnx"), repo, RepoOptions(target="cpu", max_batch_size=4))
    names = write_preprocess_chain(seg, repo, seg.name)
    pre = parse_config((repo / names.preprocess / "config.pbtxt").read_text())
    assert [(o.name, list(o.dims)) for o in pre.output] == [("input", [3, -1, -1]), (GEOMETRY_OUTPUT, [6])]


def test_geometry_array_order_is_the_nms_models():
    geo = preprocess_math.Geometry(1, 2, 3.0, 4.0, 5.0, 6.0)
    assert geo.as_array().tolist() == [getattr(geo, f) for f in GEOMETRY_FIELDS]


# -- the backend without tritonkit ----------------------------------------------------------

@pytest.mark.parametrize("card, blocked, package", [(CLS, "PIL", "Pillow"), (DET, "cv2", "opencv-python-headless")],
                         ids=["pillow", "opencv"])
def test_a_preprocess_backend_without_its_image_library_fails_to_load_in_one_line(tmp_path, tiny_onnx, card,
                                                                                     blocked, package):
    """NGC's tritonserver image has neither Pillow nor OpenCV: the model fails initialize() naming
    the package, instead of loading and then failing every request."""
    repo = tmp_path / "repo"
    onnx_path = tiny_onnx if card.task == "classify" else tiny_yolo_onnx(tmp_path / "det.onnx")
    model = write_model(card, onnx_path, repo, RepoOptions(target="cpu", max_batch_size=8)).name
    names = write_preprocess_chain(card, repo, model)
    with pytest.raises(IsolatedFailure, match=rf"{names.preprocess}: the server's python lacks {package} "
                                              rf"\(pip install {package}\)"):
        _run_isolated(tmp_path / "iso", repo / names.preprocess, [], block=(blocked,))


@pytest.mark.parametrize("card", [CLS, DET], ids=["classify", "letterbox"])
def test_preprocess_backend_runs_without_tritonkit(tmp_path, tiny_onnx, card):
    repo = tmp_path / "repo"
    onnx_path = tiny_onnx if card.task == "classify" else tiny_yolo_onnx(tmp_path / "det.onnx")
    model = write_model(card, onnx_path, repo, RepoOptions(target="cpu", max_batch_size=8)).name
    names = write_preprocess_chain(card, repo, model)
    for name in ("model.py", PREPROCESS_MATH_FILE):
        imports = [line for line in (repo / names.preprocess / "1" / name).read_text().splitlines()
                   if line.startswith(("import ", "from "))]
        assert imports and not [line for line in imports if "tritonkit" in line]
    blobs = _blobs(5)
    # fixed-width bytes (np.load without pickles); JPEG and PNG data never end in a NUL byte
    requests = [{ENCODED_INPUT: np.array([[b] for b in blobs[:3]], dtype=np.bytes_)},
                {ENCODED_INPUT: np.array([[b] for b in blobs[3:]], dtype=np.bytes_)}]
    served = _run_isolated(tmp_path / "iso", repo / names.preprocess, requests)
    got = np.concatenate([r[card.input.name] for r in served])
    geometry = np.concatenate([r[GEOMETRY_OUTPUT] for r in served])
    for i, blob in enumerate(blobs):
        x, geo, _ = preprocess_bytes(blob, card.preprocess)
        np.testing.assert_array_equal(got[i], x)  # the very same pixels as the client's
        np.testing.assert_array_equal(geometry[i], geo.as_array())


# -- the real server ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bytes_server(tmp_path_factory, served_repository):
    root = tmp_path_factory.mktemp("bytes")
    repo = root / "repo"
    cls = write_model(CLS, tiny_classifier(root / "cls.onnx"), repo, RepoOptions(target="cpu", max_batch_size=8)).name
    det_card = DET.with_overrides(nms_profiles=(*DET.nms_profiles, NMSProfile("low", 0.05, 0.5)))
    det = write_model(det_card, tiny_yolo_onnx(root / "det.onnx"), repo,
                      RepoOptions(target="cpu", max_batch_size=8)).name
    write_chain(det_card, repo, det, "low")
    names = {"cls": write_preprocess_chain(CLS, repo, cls), "det": write_preprocess_chain(det_card, repo, det),
             "det_nms": write_preprocess_chain(det_card, repo, det, post=nms_chain(det_card, det_card.nms("low")))}
    server = served_repository(repo=repo).server
    return server, names, det_card


def _infer(url: str, model: str, inputs: dict, outputs: list[str]) -> dict:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    req = []
    for name, arr in inputs.items():
        dtype = "BYTES" if arr.dtype == np.object_ else "FP32"
        t = grpc.InferInput(name, list(arr.shape), dtype)
        t.set_data_from_numpy(arr)
        req.append(t)
    result = client.infer(model, req, outputs=[grpc.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def test_bytes_ensemble_equals_client_side_classification(bytes_server):
    server, names, _ = bytes_server
    blobs = _blobs(5)
    client_x = np.stack([preprocess_bytes(b, CLS.preprocess)[0] for b in blobs])
    direct = _infer(server.grpc_url, names["cls"].model, {"input": client_x}, ["logits"])["logits"]
    served = _infer(server.grpc_url, names["cls"].ensemble, {ENCODED_INPUT: _bytes_batch(blobs)},
                    ["logits", GEOMETRY_OUTPUT])
    np.testing.assert_allclose(served["logits"], direct, rtol=0, atol=1e-5)
    assert np.ptp(direct, axis=0).max() > 1e-3  # the five images give different logits
    pre = _infer(server.grpc_url, names["cls"].preprocess, {ENCODED_INPUT: _bytes_batch(blobs)}, ["input"])
    np.testing.assert_array_equal(pre["input"], client_x)  # variable image sizes in one batch


def test_bytes_ensemble_equals_client_side_detection(bytes_server):
    server, names, card = bytes_server
    blobs = _blobs(4, seed=7)
    decoded = [decode_image(b).pil for b in blobs]
    xs, geos = zip(*(preprocess(im, card.preprocess) for im in decoded))
    raw = _infer(server.grpc_url, names["det"].model, {"images": np.stack(xs)}, ["output0"])["output0"]
    plain = _infer(server.grpc_url, names["det"].ensemble, {ENCODED_INPUT: _bytes_batch(blobs)},
                   ["output0", GEOMETRY_OUTPUT])
    np.testing.assert_allclose(plain["output0"], raw, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(plain[GEOMETRY_OUTPUT], np.stack([g.as_array() for g in geos]))
    outs = [OUT_BOXES, OUT_SCORES, OUT_CLASSES, OUT_COUNT]
    served = _infer(server.grpc_url, names["det_nms"].ensemble, {ENCODED_INPUT: _bytes_batch(blobs)}, outs)
    profile = card.nms("low")
    total = 0
    for b, geo in enumerate(geos):
        ours = postprocess_card(card, {"output0": raw[b]}, geo, profile)
        theirs = unpad_detections(served[OUT_BOXES][b], served[OUT_SCORES][b], served[OUT_CLASSES][b],
                                  served[OUT_COUNT][b])
        assert len(theirs) == len(ours)
        np.testing.assert_array_equal(theirs.boxes, ours.boxes)
        np.testing.assert_array_equal(theirs.classes, ours.classes)
        total += len(ours)
    assert total > 0  # some boxes survived NMS


def _http_binary_infer(http_url: str, model: str, blob: bytes, output: str) -> np.ndarray:
    """KServe v2 over plain HTTP, as curl would send it: a JSON header, then the binary tensor
    (a BYTES element is its 4-byte little-endian length and the bytes); the output as JSON."""
    element = len(blob).to_bytes(4, "little") + blob
    header = json.dumps({"inputs": [{"name": ENCODED_INPUT, "shape": [1, 1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(element)}}],
                         "outputs": [{"name": output, "parameters": {"binary_data": False}}]}).encode()
    req = urllib.request.Request(f"http://{http_url}/v2/models/{model}/infer", data=header + element, method="POST",
                                 headers={"Content-Type": "application/octet-stream",
                                          "Inference-Header-Content-Length": str(len(header))})
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.loads(resp.read())
    (out,) = [o for o in body["outputs"] if o["name"] == output]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_any_http_client_can_send_a_jpeg(bytes_server):
    server, names, _ = bytes_server
    tops = []
    for i, (h, w) in enumerate(SIZES):
        blob = _jpeg(h, w, 100 + i)
        logits = _http_binary_infer(server.http_url, names["cls"].ensemble, blob, "logits")
        x, _, _ = preprocess_bytes(blob, CLS.preprocess)
        direct = _infer(server.grpc_url, names["cls"].model, {"input": x[None]}, ["logits"])["logits"]
        np.testing.assert_allclose(logits, direct, rtol=0, atol=1e-5)
        assert int(np.argmax(logits)) == int(np.argmax(direct))
        tops.append(int(np.argmax(logits)))
    assert len(tops) == len(SIZES)


def test_a_broken_image_fails_its_request_only(bytes_server):
    import tritonclient.utils

    server, names, _ = bytes_server
    good = _blobs(1)
    with pytest.raises(tritonclient.utils.InferenceServerException, match="image 1 of the request"):
        _infer(server.grpc_url, names["cls"].ensemble, {ENCODED_INPUT: _bytes_batch(good + [b"not an image"])},
               ["logits"])
    again = _infer(server.grpc_url, names["cls"].ensemble, {ENCODED_INPUT: _bytes_batch(good)}, ["logits"])
    assert again["logits"].shape == (1, 8)
