"""The demo_shapes classification data the tests share: a class-folder dataset of real files
(good images and every kind of bad one), an in-process onnxruntime model, a stream run."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tritonkit.cards import get_card
from tritonkit.client.pipeline import CallableBackend, EngineOptions, run_stream
from tritonkit.tasks.classify.task import ClassifyAdapter

CARD = get_card("demo_shapes")


def make_dataset(root: Path, n_good: int = 14, seed: int = 0, every_kind: bool = False) -> dict:
    """A demo_shapes class-folder dataset of real files: good JPEG/PNG images plus a zero-byte
    file, a truncated JPEG and a grayscale PNG (evaluated, noted). ``every_kind`` adds a JPEG
    with a corrupt header, a text file named .JPEG (errors), a CMYK JPEG and an RGBA PNG
    (evaluated, noted) and a .txt file (``not_images``: listed by the dataset, never decoded).
    Returns what to expect."""
    rng = np.random.default_rng(seed)
    names = CARD.label_names()
    for i in range(n_good):
        d = root / names[i % len(names)]
        d.mkdir(parents=True, exist_ok=True)
        h, w = 60 + int(rng.integers(0, 60)), 60 + int(rng.integers(0, 60))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"img{i:03d}.jpg", quality=92)
    for name in ("circle", "square", "star"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "circle" / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "square" / "cut.jpg").write_bytes(buf.getvalue()[:700])
    Image.fromarray(rng.integers(0, 256, (70, 90), dtype=np.uint8)).save(root / "star" / "gray.png")
    expect = {"good": n_good + 1, "errors": {"circle/zero.jpg", "square/cut.jpg"}, "notes": {"star/gray.png"}}
    if every_kind:
        full = buf.getvalue()
        dht = full.find(b"\xff\xc4")
        (root / "circle" / "bad_header.jpg").write_bytes(full[:dht + 5] + b"\xff" * 40 + full[dht + 45:])
        (root / "square" / "notes.JPEG").write_text("a text file with an image suffix\n" * 8)
        Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).convert("CMYK").save(
            root / "star" / "cmyk.jpg", quality=92)
        Image.fromarray(rng.integers(0, 256, (90, 70, 4), dtype=np.uint8)).save(root / "circle" / "rgba.png")
        (root / "star" / "zz_readme.txt").write_text("not an image suffix: listed, never decoded\n")
        expect["good"] += 2
        expect["errors"] |= {"circle/bad_header.jpg", "square/notes.JPEG"}
        expect["notes"] |= {"star/cmyk.jpg", "circle/rgba.png"}
        expect["not_images"] = {"star/zz_readme.txt"}
    return expect


class OrtModel:
    """onnxruntime on the tiny ONNX: ``__call__(batch) -> {"logits": ...}``; counts calls and
    can fail after ``fail_after`` calls (an interrupted run) or sleep (to overlap requests)."""

    def __init__(self, onnx_path: Path, fail_after: int | None = None, sleep_s: float = 0.0):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.calls = 0
        self.fail_after = fail_after
        self.sleep_s = sleep_s
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> dict:
        with self._lock:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise RuntimeError("server went away")
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.sleep_s:
                time.sleep(self.sleep_s)
            return {"logits": self.session.run(["logits"], {"input": batch})[0]}
        finally:
            with self._lock:
                self.active -= 1


def run_classify(ds, model, **kw):
    """The stream of ``ds`` through ``model`` (a callable) with the classification adapter."""
    opts = EngineOptions(**{"batch_size": 3, "workers": 2, "in_flight": 2, "progress": False, **kw})
    with CallableBackend(model, workers=4) as backend:
        return run_stream(ds.items, ClassifyAdapter(CARD), backend, opts)
