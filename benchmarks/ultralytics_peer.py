"""The bench's ultralytics peer: ultralytics' own ``YOLO(onnx).predict`` in a process of its own.

    python -m benchmarks.ultralytics_peer export --yaml yolo11n.yaml --imgsz 640 --out model.onnx
    python -m benchmarks.ultralytics_peer serve --onnx model.onnx --images DIR --imgsz 640

``export``: a model built from ultralytics' YAML with seeded random weights (none can be downloaded;
speed does not depend on the weights' values, and ultralytics' head initialisation keeps random class
scores low, so NMS sees few candidates, as with a trained model on ordinary images), exported to ONNX
with dynamic batch and size. ``serve``: loads the ONNX once with ultralytics (its onnxruntime session),
warms up, then answers each line ``BATCH`` on stdin with one JSON line on stdout: the img/s of
``predict`` over every image file in the folder, ``BATCH`` files per call (decode, letterbox,
inference, NMS, results), and the seconds it took.

It runs apart from the bench because importing ultralytics changes process-wide state (OpenCV's and
torch's thread counts, ``PIL.Image.open``, numpy print options) that the tritonkit side of the bench
must not inherit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("YOLO_AUTOINSTALL", "false")
    env.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics" / "config"))
    return env


def export_random(yaml: str, imgsz: int, out: Path, timeout_s: float = 900.0) -> Path:
    """The ONNX of ``yaml`` with seeded random weights at ``out`` (made in a subprocess, kept)."""
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks.ultralytics_peer", "export", "--yaml", yaml, "--imgsz", str(imgsz),
            "--out", str(out)]
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"ultralytics export of {yaml} failed: {tail[0]}")
    return out


class UltralyticsPeer:
    """``serve`` in its own process; :meth:`measure` asks it for one timed pass."""

    def __init__(self, onnx: Path, images: Path, imgsz: int, log_path: Path):
        self.onnx, self.images, self.imgsz, self.log_path = onnx, images, imgsz, log_path
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout_s: float = 300.0) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        argv = [sys.executable, "-m", "benchmarks.ultralytics_peer", "serve", "--onnx", str(self.onnx), "--images",
                str(self.images), "--imgsz", str(self.imgsz)]
        self.process = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, text=True, bufsize=1)
        ready = self.process.stdout.readline()
        if not ready.startswith("ready"):
            self.stop()
            raise RuntimeError(f"ultralytics peer did not start (see {self.log_path})")
        return f"ultralytics {ready.split(maxsplit=1)[-1].strip()} predicting with {self.onnx.name}"

    def measure(self, batch: int) -> dict:
        """One pass over the images, ``batch`` per predict call: ``{"img_per_s", "seconds", "images"}``."""
        self.process.stdin.write(f"{batch}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"ultralytics peer exited (see {self.log_path})")
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()


# -- the subprocess side ---------------------------------------------------------------------------

def _export(yaml: str, imgsz: int, out: Path) -> None:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    made = Path(YOLO(yaml, task="detect").export(format="onnx", dynamic=True, imgsz=imgsz, device="cpu"))
    os.replace(made, out)


def _serve(onnx: Path, images: Path, imgsz: int) -> None:
    answers, sys.stdout = sys.stdout, sys.stderr  # ultralytics logs to stdout: only answers go there
    import ultralytics
    from ultralytics import YOLO

    files = sorted(str(p) for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    model = YOLO(str(onnx), task="detect")
    # rect=False: every image letterboxed to imgsz x imgsz, the input the served fixed-size model takes
    args = dict(imgsz=imgsz, device="cpu", verbose=False, rect=False, conf=0.25, iou=0.7)
    model.predict(files[:8], batch=8, **args)  # warm-up: session, predictor set-up
    print(f"ready {ultralytics.__version__}", file=answers, flush=True)
    for line in sys.stdin:
        batch = int(line)
        t0 = time.perf_counter()
        count = 0
        for i in range(0, len(files), batch):
            count += len(model.predict(files[i:i + batch], batch=batch, **args))
        seconds = time.perf_counter() - t0
        print(json.dumps({"img_per_s": count / seconds, "seconds": seconds, "images": count}), file=answers,
              flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--yaml", required=True)
    e.add_argument("--imgsz", type=int, required=True)
    e.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("serve")
    s.add_argument("--onnx", type=Path, required=True)
    s.add_argument("--images", type=Path, required=True)
    s.add_argument("--imgsz", type=int, required=True)
    a = p.parse_args(argv)
    if a.cmd == "export":
        _export(a.yaml, a.imgsz, a.out)
    else:
        _serve(a.onnx, a.images, a.imgsz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
