"""Train the embedded demo's models on the CPU, export them, and measure them on the val sets.

Both models learn from inputs made by the project's own preprocessing
(:func:`tritonkit.client.preprocess.preprocess` with the card's ``Preprocess``), so what is
served and evaluated later is exactly what was trained on. Both are exported with
:func:`tritonkit.export.export_model` (dynamic batch) and measured on the exported ONNX through
onnxruntime, the way the served model computes:

* classifier (card ``demo_shapes``): val top-1 of the argmax of the logits;
* detector (card ``demo_shapes_det``): COCO mAP@0.5 from pycocotools after the project's YOLO
  decode + NMS (:func:`tritonkit.tasks.detect.math.card_detections`, the card's ``ap`` profile)
  mapped back to original pixels, exactly as ``tritonkit eval detect`` does.

Detector training targets: every ground-truth box is given to the grid cell holding its center
and to the two nearer neighbouring cells (horizontal, vertical), as YOLOv5 does; a cell wanted by
two boxes goes to the box whose center is closer (:func:`assign_grid_targets`). Losses: GIoU on
the decoded boxes of assigned cells (``torchvision.ops.generalized_box_iou_loss``), BCE of
objectness on every cell, BCE of class scores on assigned cells.

Results are cached under ``cache_dir/<card>-<key>/`` where the key hashes the data set's
digest (from its manifest), the training config and the card, so a second ``make demo`` reuses
the trained model; anything else retrains.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard, get_card
from tritonkit.tasks.detect.coco import coco_map, detections_to_coco, load_coco
from tritonkit.client.decode import decode_file
from tritonkit.tasks.detect.math import card_detections
from tritonkit.client.preprocess import preprocess
from tritonkit.demo.shapes import DETECTION_SPLITS, read_manifest
from tritonkit.errors import DatasetError
from tritonkit.export import export_model, read_export_sidecar
from tritonkit.io import atomic_write_bytes, atomic_write_json, sha256_file

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")
tv_ops = lazy_import("torchvision.ops")
ort = lazy_import("onnxruntime")
# the demo's torch models: importing that module imports torch, so it waits for first use too
models = lazy_import("tritonkit.demo.models")

TRAIN_VERSION = 1
DEFAULT_CACHE = Path(".cache/demo")
RESULT_FILE = "train.json"
WEIGHTS_FILE = "weights.pth"


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 6e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    target_top1: float = 0.90


@dataclass(frozen=True)
class DetectorConfig:
    epochs: int = 24
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 1e-4
    box_gain: float = 5.0
    obj_gain: float = 1.0
    cls_gain: float = 1.0
    seed: int = 0
    threads: int = 2
    target_map50: float = 0.60


@dataclass(frozen=True)
class TrainResult:
    """One trained and exported demo model and its val metric (``val_top1`` or ``val_map50``)."""

    card: str
    onnx_path: Path
    sidecar_path: Path
    weights_path: Path
    metric: str
    value: float
    target: float
    epochs: int
    train_seconds: float
    train_images: int
    val_images: int
    cached: bool = False
    history: tuple[float, ...] = field(default=(), repr=False)

    @property
    def passed(self) -> bool:
        return self.value >= self.target

    @property
    def val_top1(self) -> float | None:
        return self.value if self.metric == "val_top1" else None

    @property
    def val_map50(self) -> float | None:
        return self.value if self.metric == "val_map50" else None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("onnx_path", "sidecar_path", "weights_path"):
            d[k] = str(d[k])
        d["history"] = list(self.history)
        return d


# -- pure helpers ---------------------------------------------------------------------------------

def cache_key(data_digest: str, config, card: ModelCard) -> str:
    """Hash of what determines a trained model: data, config, card, training code version."""
    blob = json.dumps({"version": TRAIN_VERSION, "data": data_digest, "config": asdict(config),
                       "card": card.to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def assign_grid_targets(boxes: list[np.ndarray], classes: list[np.ndarray], grid: int,
                        stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of a batch on a ``grid x grid`` map (cells row-major).

    ``boxes[i]`` is image i's ``[K, 4]`` x1, y1, x2, y2 in input pixels, ``classes[i]`` its
    ``[K]`` class indices. Returns ``positive [B, G*G]`` (bool), ``target_boxes [B, G*G, 4]``
    (xyxy, zero where not positive) and ``target_classes [B, G*G]`` (-1 where not positive).
    """
    n = len(boxes)
    cells = grid * grid
    positive = np.zeros((n, cells), bool)
    tboxes = np.zeros((n, cells, 4), np.float32)
    tcls = np.full((n, cells), -1, np.int64)
    best = np.full((n, cells), np.inf)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        for box, cls in zip(b, np.asarray(c).reshape(-1)):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            gx = int(np.clip(cx // stride, 0, grid - 1))
            gy = int(np.clip(cy // stride, 0, grid - 1))
            fx, fy = cx / stride - gx, cy / stride - gy
            nx = gx - 1 if fx < 0.5 else gx + 1
            ny = gy - 1 if fy < 0.5 else gy + 1
            for x, y in ((gx, gy), (nx, gy), (gx, ny)):
                if not (0 <= x < grid and 0 <= y < grid):
                    continue
                cell = y * grid + x
                dist = np.hypot(cx - (x + 0.5) * stride, cy - (y + 0.5) * stride)
                if dist < best[i, cell]:
                    best[i, cell] = dist
                    positive[i, cell] = True
                    tboxes[i, cell] = box
                    tcls[i, cell] = int(cls)
    return positive, tboxes, tcls


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


# -- data -----------------------------------------------------------------------------------------

def _decode(path: Path) -> np.ndarray:
    res = decode_file(path)
    if not res.ok:
        raise DatasetError(f"{path}: {res.reason}")
    return res.image


def load_classification_split(root: Path, split: str, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed inputs ``[N, C, H, W]`` float32 and labels (indices into the card's labels)."""
    names = card.label_names()
    xs, ys = [], []
    folder = root / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: split folder not found")
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in names:
            raise DatasetError(f"{sub}: {sub.name!r} is not a class of card {card.name!r}")
        for f in sorted(sub.glob("*.JPEG")):
            xs.append(preprocess(_decode(f), card.preprocess)[0])
            ys.append(names.index(sub.name))
    if not xs:
        raise DatasetError(f"{folder}: no images")
    return np.stack(xs), np.asarray(ys, np.int64)


@dataclass
class DetectionSplit:
    """Preprocessed detection images plus their boxes in model-input pixels (xyxy)."""

    inputs: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]


def load_detection_split(root: Path, split: str, card: ModelCard) -> DetectionSplit:
    ann_path = root / "annotations" / f"instances_{split}.json"
    try:
        doc = json.loads(ann_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{ann_path}: cannot read annotations ({exc})") from None
    cat_to_class = {c: i for i, c in enumerate(card.category_ids or range(1, card.num_classes + 1))}
    per_image: dict[int, list] = {}
    for a in doc["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    inputs, boxes, classes = [], [], []
    for im in sorted(doc["images"], key=lambda im: im["id"]):
        x, geo = preprocess(_decode(root / split / im["file_name"]), card.preprocess)
        anns = per_image.get(im["id"], [])
        xywh = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]] * geo.scale_x + geo.pad_x
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]] * geo.scale_y + geo.pad_y
        inputs.append(x)
        boxes.append(xyxy)
        classes.append(np.asarray([cat_to_class[a["category_id"]] for a in anns], np.int64))
    return DetectionSplit(np.stack(inputs), boxes, classes)


# -- cache ----------------------------------------------------------------------------------------

def _data_digest(root: Path) -> str:
    m = read_manifest(root)
    if not m or "data_sha256" not in m:
        raise DatasetError(f"{root}: no generated-data manifest (run ensure_classification_data / "
                           f"ensure_detection_data first)")
    return m["data_sha256"]


def _cached(entry: Path) -> TrainResult | None:

    try:
        d = json.loads((entry / RESULT_FILE).read_text())
        result = TrainResult(**{**d, "onnx_path": Path(d["onnx_path"]), "sidecar_path": Path(d["sidecar_path"]),
                                "weights_path": Path(d["weights_path"]), "history": tuple(d.get("history", ())),
                                "cached": True})
    except (OSError, json.JSONDecodeError, TypeError, KeyError):
        return None
    if not result.onnx_path.is_file() or not result.sidecar_path.is_file():
        return None
    if read_export_sidecar(result.sidecar_path).get("onnx_sha256") != sha256_file(result.onnx_path):
        return None
    return result


def _save_result(entry: Path, result: TrainResult) -> None:
    atomic_write_json(entry / RESULT_FILE, result.to_dict())


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"), disable=not enabled)


class _Threads:
    """torch's intra-op thread count set for a block and restored after it."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def _save_weights(model, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def _onnx_session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# -- classifier -----------------------------------------------------------------------------------

def _augment_cls(x, gen):
    """Random flips and quarter turns of a batch (every shape class is closed under them)."""
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=gen)):
        x = torch.flip(x, dims=(3,))
    return x


def train_classifier(data_root: str | Path, cache_dir: str | Path = DEFAULT_CACHE,
                     config: ClassifierConfig = ClassifierConfig(), card: ModelCard | None = None,
                     progress: bool = True) -> TrainResult:
    """Train (or reuse from the cache) the ``demo_shapes`` classifier; export it; val top-1 of the ONNX."""
    card = card or get_card("demo_shapes")
    data_root = Path(data_root)
    entry = Path(cache_dir) / f"{card.name}-{cache_key(_data_digest(data_root), config, card)}"
    hit = _cached(entry)
    if hit is not None:
        return hit
    entry.mkdir(parents=True, exist_ok=True)
    with _Threads(config.threads):
        x_train, y_train = load_classification_split(data_root, "train", card)
        x_val, y_val = load_classification_split(data_root, "val", card)
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        model = models.build(card.arch, card.num_classes, card.preprocess.size)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.epochs * -(-len(x_train) // config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.2)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
        history: list[float] = []
        start = time.perf_counter()
        with _progress(progress) as bar:
            task = bar.add_task(f"training {card.name}", total=config.epochs, info="")
            for epoch in range(config.epochs):
                model.train()
                order = torch.randperm(len(xt), generator=gen)
                total = 0.0
                for s in range(0, len(order), config.batch_size):
                    idx = order[s:s + config.batch_size]
                    loss = loss_fn(model(_augment_cls(xt[idx], gen)), yt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx)
                model.eval()
                with torch.no_grad():
                    acc = top1(torch.cat([model(torch.from_numpy(x_val[s:s + 256]))
                                          for s in range(0, len(x_val), 256)]).numpy(), y_val)
                history.append(acc)
                bar.update(task, advance=1, info=f"loss {total / len(xt):.3f}  val top1 {acc:.3f}")
        seconds = time.perf_counter() - start
        weights = entry / WEIGHTS_FILE
        _save_weights(model, weights)
        exported = export_model(card, entry, weights=weights)
    sess = _onnx_session(exported.onnx_path)
    logits = np.concatenate([sess.run([card.outputs[0].name], {card.input.name: x_val[s:s + 64]})[0]
                             for s in range(0, len(x_val), 64)])
    result = TrainResult(card.name, exported.onnx_path, exported.sidecar_path, weights, "val_top1",
                         top1(logits, y_val), config.target_top1, config.epochs, round(seconds, 1),
                         len(x_train), len(x_val), history=tuple(history))
    _save_result(entry, result)
    return result


# -- detector -------------------------------------------------------------------------------------

def _flip_batch(x, boxes: list[np.ndarray], flip: np.ndarray, width: int):
    """Mirror the selected images of a batch and their boxes (xyxy) horizontally."""
    sel = torch.from_numpy(flip)
    x = x.clone()
    x[sel] = torch.flip(x[sel], dims=(3,))
    out = []
    for b, f in zip(boxes, flip):
        if f:
            b = b.copy()
            b[:, [0, 2]] = width - b[:, [2, 0]]
        out.append(b)
    return x, out


def detector_loss(model, raw, positive, tboxes, tcls, config: DetectorConfig):
    """``(total, parts)``: GIoU box loss and class BCE on assigned cells, objectness BCE on all."""
    pos = torch.from_numpy(positive)
    obj_target = pos.float()
    obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target)
    if pos.any():
        pred = tv_ops.box_convert(model.decode_boxes(raw)[pos], "cxcywh", "xyxy")
        box = tv_ops.generalized_box_iou_loss(pred, torch.from_numpy(tboxes)[pos], reduction="mean")
        onehot = F.one_hot(torch.from_numpy(tcls)[pos], model.num_classes).float()
        cls = F.binary_cross_entropy_with_logits(raw[..., 5:][pos], onehot)
    else:
        box = cls = raw.sum() * 0.0
    total = config.box_gain * box + config.obj_gain * obj * 10.0 + config.cls_gain * cls
    return total, (float(box), float(obj), float(cls))


def evaluate_detector(onnx_path: Path, data_root: Path, card: ModelCard, split: str = DETECTION_SPLITS[1]):
    """COCO metrics of an exported detector on a generated split, through the project's
    preprocess, YOLO postprocess (``ap`` NMS profile) and pycocotools."""
    ds = load_coco(data_root / split, data_root / "annotations" / f"instances_{split}.json")
    sess = _onnx_session(onnx_path)
    profile = card.nms("ap")
    results: list[dict] = []
    for s in range(0, len(ds.images), 32):
        chunk = ds.images[s:s + 32]
        pre = [preprocess(_decode(im.path), card.preprocess) for im in chunk]
        out = sess.run([card.outputs[0].name], {card.input.name: np.stack([p[0] for p in pre])})[0]
        for im, (_, geo), o in zip(chunk, pre, out):
            results += detections_to_coco(im.id, card_detections(card, {card.outputs[0].name: o}, geo, profile),
                                          card.category_ids)
    return coco_map(ds.coco, results, ds.image_ids)


def train_detector(data_root: str | Path, cache_dir: str | Path = DEFAULT_CACHE,
                   config: DetectorConfig = DetectorConfig(), card: ModelCard | None = None,
                   progress: bool = True) -> TrainResult:
    """Train (or reuse from the cache) the ``demo_shapes_det`` detector; export it; val mAP@0.5
    of the ONNX through the project's YOLO postprocess and pycocotools."""
    card = card or get_card("demo_shapes_det")
    data_root = Path(data_root)
    entry = Path(cache_dir) / f"{card.name}-{cache_key(_data_digest(data_root), config, card)}"
    hit = _cached(entry)
    if hit is not None:
        return hit
    entry.mkdir(parents=True, exist_ok=True)
    with _Threads(config.threads):
        train = load_detection_split(data_root, DETECTION_SPLITS[0], card)
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        flips = np.random.default_rng(config.seed)
        model = models.build(card.arch, card.num_classes, card.preprocess.size)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.epochs * -(-len(train.inputs) // config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
        xt = torch.from_numpy(train.inputs)
        size = card.preprocess.size
        history: list[float] = []
        start = time.perf_counter()
        with _progress(progress) as bar:
            task = bar.add_task(f"training {card.name}", total=config.epochs, info="")
            for epoch in range(config.epochs):
                model.train()
                order = torch.randperm(len(xt), generator=gen).numpy()
                sums = np.zeros(4)
                for s in range(0, len(order), config.batch_size):
                    idx = order[s:s + config.batch_size]
                    x, boxes = _flip_batch(xt[idx], [train.boxes[i] for i in idx],
                                           flips.random(len(idx)) < 0.5, size)
                    positive, tboxes, tcls = assign_grid_targets(boxes, [train.classes[i] for i in idx],
                                                                 model.grid_size, model.stride)
                    loss, parts = detector_loss(model, model.raw(x), positive, tboxes, tcls, config)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    sums += np.array([float(loss.detach()), *parts]) * len(idx)
                m = sums / len(xt)
                history.append(float(m[0]))
                bar.update(task, advance=1, info=f"loss {m[0]:.3f} (box {m[1]:.3f} obj {m[2]:.4f} cls {m[3]:.3f})")
        seconds = time.perf_counter() - start
        weights = entry / WEIGHTS_FILE
        _save_weights(model, weights)
        exported = export_model(card, entry, weights=weights)
    metrics = evaluate_detector(exported.onnx_path, data_root, card)
    result = TrainResult(card.name, exported.onnx_path, exported.sidecar_path, weights, "val_map50",
                         float(metrics.map50 or 0.0), config.target_map50, config.epochs, round(seconds, 1),
                         len(train.inputs), metrics.images, history=tuple(history))
    _save_result(entry, result)
    return result


__all__ = ["ClassifierConfig", "DetectorConfig", "TrainResult", "train_classifier", "train_detector",
           "assign_grid_targets", "cache_key", "top1", "load_classification_split", "load_detection_split",
           "evaluate_detector", "detector_loss", "DEFAULT_CACHE"]
