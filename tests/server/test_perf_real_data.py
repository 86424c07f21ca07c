"""perf sweep --data: real images as perf_analyzer's load, against the real bundled tritonserver and
the real perf_analyzer. perf_analyzer's own output validation proves what it sent: the
expected outputs are computed here from the image files (tritonkit's preprocessing, onnxruntime),
independently of the JSON, and perf_analyzer compares the server's answers with them; the same
expectations in another order fail. The classifier is tests/support/canary_models.py's colour
classifier (a distinct answer per colour)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.client.preprocess import preprocess_bytes
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.ensemble import write_preprocess_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.binary import locate_perf_analyzer
from tritonkit.perf.input_data import tensor_entry
from tritonkit.triton import make_client
from tritonkit.validate.stats import model_counters

from support import readme
from support.canary_models import CARD, colour_classifier, colour_dataset
from support.onnx_models import tiny_segmenter

SEG = get_card("demo_seg")
QUICK = ["--concurrency", "1", "--interval", "500", "--stability", "100", "--no-plot"]


@pytest.fixture(scope="module")
def served(served_repository, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    onnx = colour_classifier(root / "colour.onnx")
    seg = tiny_segmenter(root / "seg.onnx")

    def write(repo: Path) -> None:
        write_model(CARD, onnx, repo, RepoOptions(target="cpu"))
        write_preprocess_chain(CARD, repo, CARD.name)          # demo_shapes_bytes: encoded files in
        write_model(SEG, seg, repo, RepoOptions(target="cpu"))

    server = served_repository(write, name="real").server
    return server, onnx, colour_dataset(root / "colours", per_class=2)


def _logits(onnx: Path, files: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": preprocess_bytes(Path(f).read_bytes(), CARD.preprocess)[0][None]})[0][0]
            for f in files]


def _validated(server, model: str, data_json: Path, expected: list[np.ndarray], shift: int) -> subprocess.CompletedProcess:
    """perf_analyzer at batch 1 on ``data_json`` with ``expected`` (rotated by ``shift``) as its
    validation data: it fails when a response differs from the expectation of its entry."""
    doc = json.loads(data_json.read_text())
    doc["validation_data"] = [{"logits": tensor_entry(expected[(i + shift) % len(expected)])}
                              for i in range(len(expected))]
    checked = data_json.with_name(f"validated_{shift}.json")
    checked.write_text(json.dumps(doc))
    pa = locate_perf_analyzer()
    argv = [str(pa.binary), "-m", model, "-u", server.grpc_url, "-i", "grpc", "-b", "1", "--concurrency-range", "1",
            "--request-count", "20", "--input-data", str(checked)]
    return subprocess.run(argv, capture_output=True, text=True, env=pa.env, timeout=120)


def test_tensor_load_is_the_card_preprocessed_images(served, tmp_path):
    server, onnx, data = served
    out = tmp_path / "sweep"
    assert main(["perf", "sweep", "--model", CARD.name, "--url", server.grpc_url, "--data", str(data),
                 "--data-images", "6", "--batch-sizes", "1,2", "--out", str(out), *QUICK]) == 0
    status = json.loads((out / "points.json").read_text())
    assert [p["status"] for p in status["points"]] == ["ok", "ok"]
    assert status["input_data"]["label"].startswith(f"real data: 6 distinct images from {data}, sent as "
                                                    "card-preprocessed tensors")
    assert "input data real data: 6 distinct images" in (out / "sweep.md").read_text()
    files = _files(out)
    assert len(set(files)) == 6 and len({Path(f).parent.name for f in files}) == 6  # spread over the classes
    expected = _logits(onnx, files)
    assert _validated(server, CARD.name, out / "input_data.json", expected, 0).returncode == 0
    wrong = _validated(server, CARD.name, out / "input_data.json", expected, 1)
    assert wrong.returncode != 0 and "doesn't match expected output" in wrong.stdout + wrong.stderr


def _files(out: Path) -> list[str]:
    """The images of the sweep's input data, in the JSON's order (the sweep's points.json lists them)."""
    return json.loads((out / "points.json").read_text())["input_data"]["files"]


def test_bytes_ensemble_load_is_the_encoded_files(served, tmp_path):
    """The server decodes every file it is sent (random bytes would fail to decode), and at batch
    1 perf_analyzer's validation shows each request carried its image."""
    server, onnx, data = served
    yaml_file = tmp_path / "data.yaml"   # an Ultralytics data.yaml naming the val images
    yaml_file.write_text(f"path: {data.parent}\nval: {data.name}\nnames:\n  0: a\n")
    out = tmp_path / "sweep"
    client = make_client("grpc", server.grpc_url)
    before = model_counters(client, f"{CARD.name}_preprocess")
    assert main(["perf", "sweep", "--model", f"{CARD.name}_bytes", "--url", server.grpc_url, "--data", str(yaml_file),
                 "--data-images", "4", "--batch-sizes", "1,4", "--out", str(out), *QUICK]) == 0
    after = model_counters(client, f"{CARD.name}_preprocess")
    assert after.inferences > before.inferences and after.failures == before.failures
    doc = json.loads((out / "input_data.json").read_text())
    files = _files(out)
    for entry, path in zip(doc["data"], files):  # a 4-byte little-endian length, then the file
        raw = base64.b64decode(entry["image_bytes"]["content"]["b64"])
        assert raw[4:] == Path(path).read_bytes() and int.from_bytes(raw[:4], "little") == len(raw) - 4
    assert "sent as encoded image files (BYTES)" in json.loads((out / "points.json").read_text())["input_data"]["label"]
    expected = _logits(onnx, files)
    assert _validated(server, f"{CARD.name}_bytes", out / "input_data.json", expected, 0).returncode == 0
    assert _validated(server, f"{CARD.name}_bytes", out / "input_data.json", expected, 1).returncode != 0


def test_variable_size_inputs_are_padded_to_batch(served, tmp_path):
    """A segmenter's inputs have each image's own size; perf_analyzer batches one shape, so for
    batch sizes above 1 they are padded to the largest (and the report says so)."""
    server, _, data = served
    out = tmp_path / "sweep"
    assert main(["perf", "sweep", "--model", SEG.name, "--url", server.grpc_url, "--data", str(data),
                 "--data-images", "4", "--batch-sizes", "1,2", "--out", str(out), *QUICK]) == 0
    shapes = {tuple(e["input"]["shape"]) for e in json.loads((out / "input_data.json").read_text())["data"]}
    assert len(shapes) == 1
    assert "padded at the bottom/right" in json.loads((out / "points.json").read_text())["input_data"]["label"]
    assert main(["perf", "sweep", "--model", SEG.name, "--url", server.grpc_url, "--data", str(data),
                 "--data-images", "4", "--batch-sizes", "1", "--out", str(tmp_path / "one"), *QUICK]) == 0
    own = [tuple(e["input"]["shape"]) for e in json.loads((tmp_path / "one" / "input_data.json").read_text())["data"]]
    assert len(set(own)) > 1   # at batch 1 each image keeps its own size (the images' sizes differ)


def test_random_data_stays_the_default(served, tmp_path, capsys):
    server, _, data = served
    out = tmp_path / "sweep"
    assert main(["perf", "sweep", "--model", CARD.name, "--url", server.grpc_url, "--batch-sizes", "1",
                 "--out", str(out), *QUICK]) == 0
    assert json.loads((out / "points.json").read_text())["input_data"] == "random"
    assert not (out / "input_data.json").exists()
    assert main(["perf", "sweep", "--model", CARD.name, "--url", server.grpc_url, "--data", str(data),
                 "--input-data", "zero", "--out", str(out)]) == 1
    assert "give --data (real images) or --input-data, not both" in capsys.readouterr().err


def test_the_readme_real_data_command_runs(served, tmp_path):
    """README, Operating it / Load from real images: the sweep as written (paths mapped here,
    shorter windows appended)."""
    server, _, data = served
    (argv,) = readme.commands("### Load from real images", "tritonkit perf")
    argv = readme.substituted(argv, {"data/val": str(data), "reports/perf-real": str(tmp_path / "real")})
    assert main(argv[1:] + ["--url", server.grpc_url, "--interval", "500", "--stability", "100", "--no-plot"]) == 0
    status = json.loads((tmp_path / "real" / "points.json").read_text())
    assert len(status["points"]) == 4 and all(p["status"] == "ok" for p in status["points"])
    assert status["input_data"]["kind"] == "bytes" and status["input_data"]["images"] == 16
