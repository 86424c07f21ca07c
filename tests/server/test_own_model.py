"""The README's "Your own model" walk-through, run as written against the real bundled server.

A card file kept in the repository (examples/cards/color_classifier.json: (x - 127) / 128,
bicubic, its own label file) -> the torch export call the README gives
(examples/color_classifier.py) -> `tritonkit export --onnx` -> `tritonkit repo` with the
production recipe's queue policy -> `tritonkit serve --local --profile production` -> `tritonkit
eval classify` with the card file, with the served name, and with a card that disagrees ->
`tritonkit validate` with the production recipe's flags, which must pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tritonkit.cli import main
from tritonkit.serve.local import free_port
from support.paths import ROOT

CARD = ROOT / "examples" / "cards" / "color_classifier.json"
COLORS = {"red": (200, 40, 40), "green": (40, 190, 50), "blue": (30, 50, 210)}
KEY = "own-model-test-key-0123456789abcdef"


def make_colour_images(root: Path, per_class: int = 4) -> int:
    """Noisy photographs of one colour, various sizes, in class folders named by the card's labels."""
    rng = np.random.default_rng(0)
    for name, rgb in COLORS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = int(rng.integers(70, 160)), int(rng.integers(70, 160))
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i}.jpg", quality=90)
    return per_class * len(COLORS)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def _wait_ready(http_port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"server not ready after {timeout_s:.0f} s: {log.read_text()[-2000:]}")


@pytest.fixture
def served_own_model(tmp_path):
    """Steps 2-5 of the README: export, adopt, repository, production server (stopped after)."""
    onnx = tmp_path / "color_classifier.onnx"
    subprocess.run([sys.executable, str(ROOT / "examples" / "color_classifier.py"), str(onnx)], check=True,
                   capture_output=True, timeout=300)
    assert main(["export", "--model", str(CARD), "--onnx", str(onnx), "--out", str(tmp_path / "onnx")]) == 0
    sidecar = json.loads((tmp_path / "onnx" / "color_classifier.json").read_text())
    assert sidecar["arch"] is None  # adopted, not built here: no architecture claimed
    assert main(["repo", "--model", str(CARD), "--model-file", str(tmp_path / "onnx" / "color_classifier.onnx"),
                 "--target", "cpu", "--no-ort-spinning", "--queue-timeout-us", "1000000",
                 "--out", str(tmp_path / "repo")]) == 0
    assert (tmp_path / "repo" / "color_classifier" / "labels.txt").read_text().split() == list(COLORS)
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "serve.log"
    env = {**os.environ, "TRITONKIT_API_KEY": KEY}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tritonkit", "serve", "--local", "--repo",
                                 str(tmp_path / "repo"), "--profile", "production", "--http-port", str(ports[0]),
                                 "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(ports[0], proc, log)
        yield tmp_path, f"127.0.0.1:{ports[1]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_readme_own_model_workflow_passes_end_to_end(served_own_model, capsys, monkeypatch):
    tmp_path, url = served_own_model
    images = make_colour_images(tmp_path / "photos")

    # eval with the card file: the served card is the same, so it runs; every colour is right
    code, err = _cli(["eval", "classify", "--model", str(CARD), "--data", str(tmp_path / "photos"), "--url", url,
                      "--batch-sizes", "4,1", "--timing-images", "4", "--reference-onnx",
                      str(tmp_path / "onnx" / "color_classifier.onnx"), "--out", str(tmp_path / "eval"),
                      "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "eval" / "classification.json").read_text())
    assert res["images"] == images and res["top1"] == 1.0 and res["reference_top1"] == 1.0
    assert res["misclassified_count"] == 0 and "Misclassified images (top-1): 0" in \
        (tmp_path / "eval" / "classification.md").read_text()
    first = json.loads((tmp_path / "eval" / "classification.jsonl").read_text().splitlines()[1])["record"]
    assert first["classes"][0] == first["truth"] and set(first["classes"]) == set(COLORS)

    # the served name alone: the card comes from the server
    code, err = _cli(["eval", "classify", "--model", "color_classifier", "--data", str(tmp_path / "photos"),
                      "--url", url, "--timing-images", "0", "--out", str(tmp_path / "eval_served"),
                      "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "eval_served" / "classification.json").read_text())["top1"] == 1.0

    # a card with ImageNet normalisation and bilinear resize: refused, one line per field
    wrong = json.loads(CARD.read_text())
    wrong["preprocess"].update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], scale=1 / 255,
                               interpolation="bilinear")
    wrong["labels"] = str(CARD.parent / wrong["labels"])
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    code, err = _cli(["eval", "classify", "--model", str(tmp_path / "wrong.json"), "--data",
                      str(tmp_path / "photos"), "--url", url, "--out", str(tmp_path / "eval_wrong")], capsys)
    lines = err.splitlines()
    assert code == 1 and "disagrees with the card model 'color_classifier' is served with (4 fields" in lines[0]
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "preprocess.interpolation", "preprocess.mean", "preprocess.scale", "preprocess.std"]

    # the production recipe's validation passes (restricted APIs, queue policy, load, overload)
    monkeypatch.setenv("TRITONKIT_API_KEY", KEY)
    code, err = _cli(["validate", "--url", url, "--models", "color_classifier", "--slo-p99-ms", "1000",
                      "--concurrency", "4", "--load-seconds", "5", "--out", str(tmp_path / "validation")], capsys)
    report = json.loads((tmp_path / "validation" / "validation.json").read_text())
    failed = [(c["name"], c["detail"]) for c in report["checks"] if not c["passed"]]
    assert code == 0 and report["passed"], failed
    groups = {c["name"].split(".")[0] for c in report["checks"]}
    assert {"readiness", "contract", "correctness", "bad_requests", "security", "load", "overload"} <= groups
