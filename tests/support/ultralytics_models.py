"""Tiny Ultralytics YOLO models trained here on generated shapes, and ultralytics' own preprocessing,
as test fixtures and references.

No weights can be downloaded: every model is built from ultralytics' YAML, trained on CPU with a fixed
seed on a small generated dataset in ultralytics' YOLO layout, validated with ultralytics' validator
and exported to ONNX (``dynamic=True``). Results are cached under ``.cache/ultralytics/<name>-<key>/``
in the repository root (``TRITONKIT_ULTRALYTICS_CACHE`` overrides the root); the key hashes the recipe,
the generator and training code below and the ultralytics and torch versions, so a second run reuses
them and any change retrains.

Everything that imports ultralytics runs in a subprocess (this file run as a script with
``ULTRALYTICS_PYTHON``, default the running interpreter): importing ultralytics changes process-wide
state that the tests in the pytest process must not inherit: numpy print options, OpenCV's thread
count, environment variables, and ``PIL.Image.open`` itself (``ultralytics/utils/patches.py``
replaces it; a file PIL cannot identify then goes through ``check_requirements("pi-heif")`` and
fails with ``ModuleNotFoundError: pi_heif`` instead of PIL's error).

Public API (the pytest process side):

* :data:`RECIPES` / :func:`tiny_model` -> :class:`TinyModel` (ONNX, weights, dataset, ultralytics'
  metrics, timings), built once and cached.
* :func:`write_shapes_dataset` -> a YOLO-layout dataset (detect boxes, segment polygons, classify
  folders) of coloured shapes on noisy backgrounds.
* :func:`ultralytics_letterbox` -> the exact model inputs ultralytics would build for images, by the
  validator's rule (``load_image`` + ``LetterBox(scaleup=False)``) or the predictor's
  (``LetterBox(auto=False)``).
* :func:`export_variant` -> another ONNX export of a fixture (e.g. ``nms=True``), cached beside it.
* :func:`ultralytics_val` -> ultralytics' validator metrics and its ``predictions.json``
  (``save_json=True, rect=False``) on any model and dataset, to rescore with pycocotools.
* :func:`ultralytics_nms` -> ultralytics' own ``non_max_suppression`` (``ultralytics.utils.nms``) on raw
  model outputs, the reference of the client decode + NMS.
* :func:`ultralytics_predict` -> ultralytics' predictor (``YOLO(model).predict``) on image files: a local
  model file, or a served model through its Triton client (``grpc://host:port/<model>``).
* :data:`FAST_TIER`: the recipes meant for the default test tier (the others are for slow tests).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASS_NAMES = ("square", "circle", "triangle")
# Each class has its own hue (RGB), jittered per shape, on grey backgrounds: a detector trained for a
# few CPU seconds learns them, while the shapes still differ in geometry for the masks.
CLASS_COLOURS = ((230, 60, 50), (60, 200, 70), (60, 90, 230))
# What the build subprocess may take (train + val + export of the biggest default-tier recipe is
# ~1 minute on 2 idle cores; the slow tier trains longer).
BUILD_TIMEOUT_S = 1800
REFERENCE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Recipe:
    """How one fixture model is made: ultralytics model YAML (with ``scale`` as its compound scale
    when given), the generated dataset, the training arguments and the ONNX exports (label ->
    extra ``export`` arguments; all exports are ``format="onnx", dynamic=True``, the first is the
    fixture's main ``onnx``)."""

    task: str  # detect | segment | classify
    model_yaml: str  # an ultralytics YAML name (e.g. yolo11n.yaml), resolved by ultralytics
    imgsz: int
    epochs: int
    n_train: int
    n_val: int
    seed: int = 0
    # compound scale [depth, width, max_channels] replacing the YAML's scale; () keeps the YAML's
    scale: tuple[float, ...] = ()
    batch: int = 8
    train_args: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, dict[str, Any]] = field(default_factory=lambda: {"default": {}})
    # extra arguments of the val that gives TinyModel.metrics (nms=False: the NMS-free head)
    val_args: dict[str, Any] = field(default_factory=dict)
    slow: bool = False


# Width 1/8 and depth 1/3 of the n scale; optimizer steps every batch (nbs = batch: with ultralytics'
# nbs=64 a 96-image epoch would step the optimizer once or twice); no mosaic (it shrinks the shapes
# at this size). Measured on 2 cores: ~25-35 s of training per detector, mAP50 > 0.9.
_SCALE = (0.33, 0.125, 256)
_TRAIN = {"nbs": 8, "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.004}
_FAST = dict(imgsz=96, epochs=15, n_train=96, n_val=24, scale=_SCALE, train_args=_TRAIN)
RECIPES: dict[str, Recipe] = {
    # YOLO11 anchor-free head: output0 [N, 4+C, A]. ultralytics' embedded-NMS export ([N, 300, 6]):
    # export_variant(model, "nms", nms=True) (~15 s more, so not built by default).
    "detect": Recipe("detect", "yolo11n.yaml", **_FAST),
    # output0 [N, 4+C+32, A], output1 [N, 32, H/4, W/4]
    "segment": Recipe("segment", "yolo11n-seg.yaml", **_FAST),
    "classify": Recipe("classify", "yolo11n-cls.yaml", imgsz=64, epochs=15, n_train=60, n_val=30, scale=_SCALE,
                       train_args={"nbs": 8, "optimizer": "AdamW", "lr0": 0.004, "auto_augment": None,
                                   "erasing": 0.0}),
    # YOLO26: in ultralytics 8.4 the NMS-free head is opt-in everywhere with nms=False (export, val,
    # predict); the default (nms=None) uses the one-to-many head + NMS, and its ONNX export is the
    # anchor-free [N, 4+C, A] head. nms=False export: output0 [N, K, 6] (x1, y1, x2, y2, score, class),
    # K = min(max_det, anchors at the export imgsz) baked into the graph (189 at imgsz 96).
    # metrics: ultralytics' val with nms=False (the NMS-free head, as the main export).
    "end2end": Recipe("detect", "yolo26n.yaml", exports={"end2end": {"nms": False}, "default": {}},
                      val_args={"nms": False}, **_FAST),
    "yolov10": Recipe("detect", "yolov10n.yaml", exports={"end2end": {"nms": False}, "default": {}},
                      val_args={"nms": False}, slow=True, **_FAST),
    # A detector closer to a real one for the slow tier: the full n scale at imgsz 160 on 240 images.
    "detect_large": Recipe("detect", "yolo11n.yaml", imgsz=160, epochs=20, n_train=240, n_val=48, batch=16,
                           train_args={"nbs": 16, "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.002},
                           exports={"default": {}}, slow=True),
}
FAST_TIER = tuple(name for name, recipe in RECIPES.items() if not recipe.slow)


@dataclass(frozen=True)
class TinyModel:
    """One built fixture: ``onnx`` (the main export), ``exports`` (label -> ONNX), ``weights``
    (best.pt), ``data`` (data.yaml, or the classify root), ``metrics`` (ultralytics' val of best.pt,
    ``rect=False``: ``map50``, ``map50_95``, for segment also ``mask_map50``/``mask_map50_95``;
    classify ``top1``/``top5``), ``timings`` (seconds: dataset, train, val, export), ``names``
    (class names by id), ``imgsz``, ``recipe``."""

    name: str
    task: str
    dir: Path
    onnx: Path
    exports: dict[str, Path]
    weights: Path
    data: Path
    names: tuple[str, ...]
    imgsz: int
    metrics: dict[str, float]
    timings: dict[str, float]
    recipe: dict[str, Any]

    @classmethod
    def from_dir(cls, name: str, root: Path) -> "TinyModel":
        info = json.loads((root / "result.json").read_text())
        exports = {label: root / rel for label, rel in info["exports"].items()}
        return cls(name=name, task=info["task"], dir=root, onnx=next(iter(exports.values())), exports=exports,
                   weights=root / info["weights"], data=root / info["data"], names=tuple(info["names"]),
                   imgsz=int(info["imgsz"]), metrics=info["metrics"], timings=info["timings"],
                   recipe=info["recipe"])


# ------------------------------------------------------------------------------------------ cache
def cache_root() -> Path:
    return Path(os.environ.get("TRITONKIT_ULTRALYTICS_CACHE", REPO_ROOT / ".cache" / "ultralytics"))


def ultralytics_python() -> str:
    """The interpreter that has ultralytics (``ULTRALYTICS_PYTHON``, else this one)."""
    return os.environ.get("ULTRALYTICS_PYTHON", sys.executable)


def ultralytics_available() -> bool:
    """Whether :func:`ultralytics_python` can import ultralytics (without importing it here)."""
    probe = subprocess.run([ultralytics_python(), "-c", "import importlib.util, sys; "
                            "sys.exit(importlib.util.find_spec('ultralytics') is None)"],
                           capture_output=True, check=False)
    return probe.returncode == 0


@functools.lru_cache(maxsize=None)
def _versions() -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({p: m.version(p) for p in ('ultralytics', 'torch', 'onnx')}))")
    out = subprocess.run([ultralytics_python(), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cache_key(recipe: Recipe) -> str:
    """Hash of the recipe, the code that generates data and trains, and the library versions."""
    code = "".join(inspect.getsource(f) for f in (_draw_shape, _place_shapes, write_shapes_dataset,
                                                    _write_model_yaml, _build, _train_args, _export))
    blob = json.dumps({"recipe": asdict(recipe), "code": code, "versions": _versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tiny_model(name: str, *, recipe: Recipe | None = None) -> TinyModel:
    """The fixture model ``name`` (a :data:`RECIPES` key, or any name with an explicit ``recipe``),
    built in a subprocess on first use and cached; concurrent callers wait on a file lock."""
    recipe = recipe or RECIPES[name]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{cache_key(recipe)}"
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "result.json").is_file():
            _build_in_subprocess(name, recipe, final)
        model = TinyModel.from_dir(name, final)
        _point_data_yaml_at(model.data)
    return model


def export_variant(model: TinyModel, label: str, **export_args: Any) -> Path:
    """Another ONNX export of ``model``'s weights (``format="onnx", dynamic=True, imgsz`` plus
    ``export_args``, e.g. ``nms=True``), made in a subprocess on first use and kept beside the
    model's other exports as ``onnx/<label>.onnx`` (``label`` must name the arguments: they are not
    part of the file name)."""
    path = model.dir / "onnx" / f"{label}.onnx"
    with open(model.dir.parent / f".{model.dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            spec = {"weights": str(model.weights), "task": model.task, "imgsz": model.imgsz, "out": str(path),
                    "args": export_args}
            cmd = [ultralytics_python(), str(Path(__file__).resolve()), "export", "--spec", json.dumps(spec)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_ultralytics_env(model.dir.parent),
                                  timeout=BUILD_TIMEOUT_S, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"ultralytics export {label!r} of {model.name!r} failed:\n"
                                   f"{(proc.stdout + proc.stderr)[-4000:]}")
    return path


def _point_data_yaml_at(data: Path) -> None:
    """A data.yaml's ``path`` is absolute (ultralytics resolves a relative one against its own datasets
    folder): after the build folder is renamed into the cache, or the cache moved, point it here."""
    if data.suffix != ".yaml":
        return
    lines = data.read_text().splitlines(keepends=True)
    want = f"path: {data.parent}\n"
    if lines[0] != want:
        data.write_text(want + "".join(lines[1:]))


def _build_in_subprocess(name: str, recipe: Recipe, final: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    log = work / "build.log"
    cmd = [ultralytics_python(), str(Path(__file__).resolve()), "build", "--out", str(work),
           "--recipe", json.dumps(asdict(recipe))]
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=_ultralytics_env(final.parent),
                              timeout=BUILD_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"building the ultralytics fixture {name!r} failed (log {log}):\n{tail}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)


def _ultralytics_env(root: Path) -> dict[str, str]:
    """No network use, no auto-install, settings kept in the cache, not the user's home."""
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(root / "config"),
               PYTHONHASHSEED="0")
    return env


# ---------------------------------------------------------------------------------------- dataset
def _draw_shape(img: np.ndarray, cls: int, cx: float, cy: float, r: float, angle: float,
                colour: tuple[int, int, int]) -> np.ndarray:
    """Fill shape ``cls`` (0 square, 1 circle as a 24-gon, 2 triangle) into ``img``; returns its
    polygon (float, pixels): the label is this very polygon, so the mask is exact."""
    import cv2

    sides = {0: 4, 1: 24, 2: 3}[cls]
    t = angle + np.arange(sides) * (2 * np.pi / sides)
    poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    h, w = img.shape[:2]
    poly[:, 0] = poly[:, 0].clip(0, w - 1)
    poly[:, 1] = poly[:, 1].clip(0, h - 1)
    cv2.fillPoly(img, [np.round(poly).astype(np.int32)], colour, lineType=cv2.LINE_8)
    return poly


def _place_shapes(rng: np.random.Generator, w: int, h: int, count: int) -> list[tuple[float, float, float]]:
    """Up to ``count`` non-overlapping circles (cx, cy, r) that fit in the image."""
    placed: list[tuple[float, float, float]] = []
    short = min(w, h)
    for _ in range(count * 20):
        if len(placed) == count:
            break
        r = rng.uniform(0.12, 0.28) * short
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        if all(math.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
            placed.append((cx, cy, r))
    return placed


def write_shapes_dataset(root: Path, task: str, *, n_train: int, n_val: int, seed: int = 0,
                         size_range: tuple[int, int] = (72, 200)) -> Path:
    """Coloured squares, circles and triangles on noisy backgrounds, in ultralytics' layout.

    detect/segment: ``root/images/{train,val}/*.png``, ``root/labels/{train,val}/*.txt`` with one
    ``class cx cy w h`` (detect) or ``class x1 y1 x2 y2 ...`` (segment) line per shape, normalised;
    returns ``root/data.yaml`` (``path``, ``train``, ``val``, ``names``). Image sizes are random in
    ``size_range`` (odd aspect ratios on purpose); one val image in eight has no label file (no
    objects). classify: ``root/{train,val}/<class>/*.png`` with one shape each; returns ``root``.
    """
    import cv2

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            w, h = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            base = int(rng.integers(40, 160))
            img = np.clip(base + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
            empty = task != "classify" and split == "val" and i % 8 == 7
            count = 1 if task == "classify" else (0 if empty else int(rng.integers(1, 4)))
            lines, cls_of_image = [], int(rng.integers(0, len(CLASS_NAMES)))
            for cx, cy, r in _place_shapes(rng, w, h, count):
                cls = cls_of_image if task == "classify" else int(rng.integers(0, len(CLASS_NAMES)))
                colour = tuple(int(c) for c in np.clip(np.array(CLASS_COLOURS[cls]) + rng.integers(-25, 26, size=3),
                                                       0, 255))
                poly = _draw_shape(img, cls, cx, cy, r, float(rng.uniform(0, 2 * np.pi)), colour)
                if task == "segment":
                    coords = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly)
                    lines.append(f"{cls} {coords}")
                else:
                    (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
                    lines.append(f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                                 f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
            stem = f"{split}_{i:04d}"
            if task == "classify":
                out = root / split / CLASS_NAMES[cls_of_image] / f"{stem}.png"
            else:
                out = root / "images" / split / f"{stem}.png"
                if not empty:
                    label = root / "labels" / split / f"{stem}.txt"
                    label.parent.mkdir(parents=True, exist_ok=True)
                    label.write_text("".join(line + "\n" for line in lines))
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), img[:, :, ::-1])  # img is RGB; cv2 writes BGR
    if task == "classify":
        return root
    data = root / "data.yaml"
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASS_NAMES))
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return data


# ------------------------------------------------------------------------- build (subprocess side)
def _write_model_yaml(recipe: Recipe, out: Path) -> str:
    """The model YAML to train: ultralytics' own, or a copy with ``recipe.scale`` as its scale
    (named like the original so ultralytics guesses the same scale letter and task)."""
    if not recipe.scale:
        return recipe.model_yaml
    from ultralytics.nn.tasks import yaml_model_load
    from ultralytics.utils import YAML

    cfg = yaml_model_load(recipe.model_yaml)
    letter = cfg.pop("scale")
    cfg.pop("yaml_file", None)
    cfg["scales"] = {letter: list(recipe.scale)}
    path = out / recipe.model_yaml
    YAML.save(path, cfg)
    return str(path)


def _train_args(recipe: Recipe, data: Path, out: Path) -> dict[str, Any]:
    args = dict(data=str(data), imgsz=recipe.imgsz, epochs=recipe.epochs, batch=recipe.batch, seed=recipe.seed,
                deterministic=True, device="cpu", workers=0, plots=False, val=False, project=str(out),
                name="train", exist_ok=True, warmup_epochs=1, close_mosaic=max(1, recipe.epochs // 4),
                verbose=False)
    args.update(recipe.train_args)
    return args


def _export(weights: Path, task: str, imgsz: int, path: Path, args: dict[str, Any]) -> Path:
    from ultralytics import YOLO

    made = Path(YOLO(str(weights), task=task).export(format="onnx", dynamic=True, imgsz=imgsz, device="cpu",
                                                      **args))
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(made, path)
    return path


def _metrics(task: str, m: Any) -> dict[str, float]:
    if task == "classify":
        return {"top1": float(m.top1), "top5": float(m.top5)}
    out = {"map50": float(m.box.map50), "map50_95": float(m.box.map)}
    if task == "segment":
        out.update(mask_map50=float(m.seg.map50), mask_map50_95=float(m.seg.map))
    return out


def _build(recipe: Recipe, out: Path) -> dict[str, Any]:
    """Generate the dataset, train, validate (ultralytics' val, ``rect=False``) and export ONNX."""
    from ultralytics import YOLO

    t0 = time.perf_counter()
    data = write_shapes_dataset(out / "data", recipe.task, n_train=recipe.n_train, n_val=recipe.n_val,
                                seed=recipe.seed)
    t1 = time.perf_counter()
    model = YOLO(_write_model_yaml(recipe, out), task=recipe.task)
    model.train(**_train_args(recipe, data, out))
    t2 = time.perf_counter()
    best = out / "train" / "weights" / "best.pt"
    trained = YOLO(str(best), task=recipe.task)
    metrics = _metrics(recipe.task, trained.val(data=str(data), imgsz=recipe.imgsz, batch=recipe.batch,
                                                device="cpu", rect=False, plots=False, verbose=False,
                                                project=str(out), name="val", exist_ok=True,
                                                **recipe.val_args))
    t3 = time.perf_counter()
    exports = {label: _export(best, recipe.task, recipe.imgsz, out / "onnx" / f"{label}.onnx", extra)
               for label, extra in recipe.exports.items()}
    t4 = time.perf_counter()
    return {"task": recipe.task, "exports": {k: str(v.relative_to(out)) for k, v in exports.items()},
            "weights": str(best.relative_to(out)),
            "data": str(data.relative_to(out)), "names": list(trained.names.values()), "imgsz": recipe.imgsz,
            "metrics": metrics, "recipe": asdict(recipe),
            "timings": {"dataset_s": t1 - t0, "train_s": t2 - t1, "val_s": t3 - t2, "export_s": t4 - t3}}


def _run_reference(what: str, *argv: str) -> None:
    """This file's ``argv`` command run with ultralytics' interpreter; a failure raises with its stderr."""
    cmd = [ultralytics_python(), str(Path(__file__).resolve()), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_ultralytics_env(cache_root()),
                          timeout=REFERENCE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ultralytics {what} failed:\n{proc.stderr[-4000:]}")


# -------------------------------------------------------------------- ultralytics' preprocessing

def ultralytics_letterbox(images: Sequence[np.ndarray], size: int, rule: str = "val") -> list[np.ndarray]:
    """The HWC RGB uint8 model inputs ultralytics builds from RGB uint8 images (H x W x 3).

    ``val``: the validator's path run for real: the images are written as lossless PNGs and read
    back through ``build_yolo_dataset(mode="val", rect=False)`` (``BaseDataset.load_image`` then
    ``LetterBox(new_shape=size, scaleup=False)``, ``YOLODataset.build_transforms``).
    ``predict``: ``LetterBox(size, auto=False, stride=32)`` as ``BasePredictor.pre_transform``
    builds it for a fixed-size model (``auto`` is only set for ``.pt`` and dynamic exports).
    Runs ultralytics in a subprocess (see the module docstring).
    """
    if rule not in ("val", "predict"):
        raise ValueError(f"rule must be 'val' or 'predict', not {rule!r}")
    for img in images:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected HxWx3 uint8 RGB images, got {img.dtype} {img.shape}")
    with tempfile.TemporaryDirectory(prefix="ultralytics-ref-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, *images)
        _run_reference("letterbox reference", "letterbox", "--rule", rule, "--size", str(size),
                       "--src", str(src), "--dst", str(dst))
        with np.load(dst) as out:
            return [out[f"arr_{i}"] for i in range(len(images))]


def ultralytics_val(model: Path, data: Path, *, task: str, imgsz: int, out: Path, **args: Any) -> dict[str, Any]:
    """ultralytics' validator on ``model`` (.pt or .onnx) and ``data`` (data.yaml, or the classify
    root), run in a subprocess with ``rect=False, save_json=True, device="cpu", plots=False`` unless
    ``args`` say otherwise. Returns ``metrics`` (as :class:`TinyModel`'s) and ``predictions``: the
    ``predictions.json`` ultralytics wrote (COCO results: ``image_id`` = the file stem, an int when
    numeric; ``file_name``; ``category_id`` = class + 1 outside COCO; ``bbox`` [x, y, w, h] in
    original pixels; ``segmentation`` RLE for segment), or None when it wrote none (classify, or no
    prediction at all)."""
    out.mkdir(parents=True, exist_ok=True)
    spec = {"model": str(model), "data": str(data), "task": task, "imgsz": imgsz, "out": str(out), "args": args}
    cmd = [ultralytics_python(), str(Path(__file__).resolve()), "val", "--spec", json.dumps(spec)]
    with open(out / "val.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_ultralytics_env(cache_root()),
                              timeout=BUILD_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ultralytics val failed (log {out / 'val.log'}):\n"
                           f"{(out / 'val.log').read_text(errors='replace')[-4000:]}")
    result = json.loads((out / "val.json").read_text())
    result["predictions"] = Path(result["predictions"]) if result["predictions"] else None
    return result


def ultralytics_nms(outputs: np.ndarray, **args: Any) -> list[np.ndarray]:
    """``ultralytics.utils.nms.non_max_suppression(torch.from_numpy(outputs), **args)`` in a subprocess
    (``conf_thres``, ``iou_thres``, ``multi_label``, ``max_det``, ``end2end``, ... as ultralytics names
    them): one ``[k, 6]`` float32 array per image (``x1, y1, x2, y2, score, class`` in input pixels), in
    ultralytics' order."""
    with tempfile.TemporaryDirectory(prefix="ultralytics-nms-") as tmp:
        src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npz"
        np.save(src, np.asarray(outputs, np.float32))
        _run_reference("non_max_suppression", "nms", "--src", str(src), "--dst", str(dst),
                       "--args", json.dumps(args))
        with np.load(dst) as out:
            return [out[f"arr_{i}"] for i in range(len(outputs))]


def ultralytics_predict(model: str, images: Sequence[Path], *, task: str, imgsz: int, **args: Any) -> dict[str, Any]:
    """``YOLO(model, task=task).predict(image, imgsz=imgsz, **args)`` per image, in a subprocess.
    ``model``: a model file, or ``grpc://host:port/<served model>`` / ``http://...`` (ultralytics'
    Triton client). Returns ``names`` (the model's class names by id, as its predictor saw them) and
    ``results``: per image ``boxes`` (x1, y1, x2, y2 in original pixels), ``scores``, ``classes``."""
    spec = {"model": model, "images": [str(p) for p in images], "task": task, "imgsz": imgsz, "args": args}
    cmd = [ultralytics_python(), str(Path(__file__).resolve()), "predict", "--spec", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_ultralytics_env(cache_root()),
                          timeout=REFERENCE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ultralytics predict on {model} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _predict(spec: dict[str, Any]) -> dict[str, Any]:
    from ultralytics import YOLO

    model = YOLO(spec["model"], task=spec["task"])
    results, names = [], {}
    for image in spec["images"]:
        r = model.predict(image, imgsz=spec["imgsz"], device="cpu", verbose=False, **spec["args"])[0]
        names = {str(k): v for k, v in r.names.items()}
        results.append({"boxes": r.boxes.xyxy.numpy().tolist(), "scores": r.boxes.conf.numpy().tolist(),
                        "classes": r.boxes.cls.numpy().astype(int).tolist()})
    return {"names": names, "results": results}


def _nms(src: Path, dst: Path, args: dict[str, Any]) -> None:
    import torch
    import torchvision  # noqa: F401  (ultralytics uses torchvision's NMS when it is imported)
    from ultralytics.utils.nms import non_max_suppression

    out = non_max_suppression(torch.from_numpy(np.load(src)), **args)
    np.savez(dst, *[o.numpy().astype(np.float32) for o in out])


def _val(spec: dict[str, Any]) -> dict[str, Any]:
    from ultralytics import YOLO

    args = dict(rect=False, save_json=spec["task"] != "classify", device="cpu", plots=False, batch=8, verbose=False)
    args.update(spec["args"])
    model = YOLO(spec["model"], task=spec["task"])
    metrics = model.val(data=spec["data"], imgsz=spec["imgsz"], project=spec["out"], name="val", exist_ok=True,
                        **args)
    predictions = Path(metrics.save_dir) / "predictions.json"
    return {"metrics": _metrics(spec["task"], metrics), "save_dir": str(metrics.save_dir),
            "predictions": str(predictions) if predictions.is_file() else None}


def _letterbox_predict(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    from ultralytics.data.augment import LetterBox

    box = LetterBox(size, auto=False, stride=32)
    return [np.ascontiguousarray(box(image=img[:, :, ::-1])[:, :, ::-1]) for img in images]


def _letterbox_val(images: list[np.ndarray], size: int, work: Path) -> list[np.ndarray]:
    """The validator's dataset (``build_yolo_dataset(mode="val")``, ``rect=False``) reading the images
    as PNG files. Its label check drops images with a side under 10 pixels
    (``verify_image_label``), so the dataset is built on one valid image and then pointed at the
    given files: ``load_image``, ``LetterBox`` and ``Format`` run unchanged on each."""
    import copy

    import cv2
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset

    for split in ("images", "labels"):
        (work / split).mkdir(parents=True)
    cv2.imwrite(str(work / "images" / "seed.png"), np.full((32, 32, 3), 128, np.uint8))
    (work / "labels" / "seed.txt").write_text("")
    cfg = get_cfg(overrides={"imgsz": size, "task": "detect", "rect": False, "mode": "val"})
    dataset = build_yolo_dataset(cfg, str(work / "images"), 1, {"names": {0: "object"}, "nc": 1, "channels": 3},
                                 mode="val", stride=32)
    files = []
    for i, img in enumerate(images):
        files.append(str(work / "images" / f"{i:05d}.png"))
        cv2.imwrite(files[-1], img[:, :, ::-1])
    template = dataset.labels[0]
    dataset.labels = [dict(copy.deepcopy(template), im_file=f, shape=img.shape[:2]) for f, img in zip(files, images)]
    dataset.im_files, dataset.ims = files, [None] * len(files)
    dataset.npy_files = [Path(f).with_suffix(".npy") for f in files]
    dataset.im_hw0, dataset.im_hw = [None] * len(files), [None] * len(files)
    # dataset[i]["img"] is the CHW RGB uint8 tensor the validator divides by 255
    return [dataset[i]["img"].numpy().transpose(1, 2, 0).copy() for i in range(len(files))]


# ------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--recipe", required=True, help="Recipe fields as JSON")
    export = sub.add_parser("export")
    export.add_argument("--spec", required=True, help="weights, task, imgsz, out, args as JSON")
    val = sub.add_parser("val")
    val.add_argument("--spec", required=True, help="model, data, task, imgsz, out, args as JSON")
    box = sub.add_parser("letterbox")
    box.add_argument("--rule", required=True)
    box.add_argument("--size", type=int, required=True)
    box.add_argument("--src", type=Path, required=True)
    box.add_argument("--dst", type=Path, required=True)
    nms = sub.add_parser("nms")
    nms.add_argument("--src", type=Path, required=True)
    nms.add_argument("--dst", type=Path, required=True)
    nms.add_argument("--args", required=True, help="non_max_suppression keyword arguments as JSON")
    predict = sub.add_parser("predict")
    predict.add_argument("--spec", required=True, help="model, images, task, imgsz, args as JSON")
    args = parser.parse_args(argv)
    if args.cmd == "predict":
        print(json.dumps(_predict(json.loads(args.spec))))
        return 0
    if args.cmd == "nms":
        _nms(args.src, args.dst, json.loads(args.args))
        return 0
    if args.cmd == "build":
        fields = json.loads(args.recipe)
        fields["scale"] = tuple(fields.get("scale", ()))
        result = _build(Recipe(**fields), args.out)
        (args.out / "result.json").write_text(json.dumps(result, indent=2))
        return 0
    if args.cmd == "export":
        spec = json.loads(args.spec)
        _export(Path(spec["weights"]), spec["task"], spec["imgsz"], Path(spec["out"]), spec["args"])
        return 0
    if args.cmd == "val":
        spec = json.loads(args.spec)
        (Path(spec["out"]) / "val.json").write_text(json.dumps(_val(spec), indent=2))
        return 0
    with np.load(args.src) as src:
        images = [src[f"arr_{i}"] for i in range(len(src.files))]
    if args.rule == "predict":
        out = _letterbox_predict(images, args.size)
    else:
        with tempfile.TemporaryDirectory(prefix="ultralytics-val-") as tmp:
            out = _letterbox_val(images, args.size, Path(tmp))
    np.savez(args.dst, *out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
