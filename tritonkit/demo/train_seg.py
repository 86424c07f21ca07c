"""Train the embedded demo's segmenter on the CPU, export it, and measure it on the val set.

The model (:func:`build_segmenter`, arch ``demo:shapes_segnet``) is a small fully convolutional
net: three stride-2 conv stages to 1/8, two dilated convs (a receptive field of ~120 pixels,
enough to tell a whole shape's class), the 1/8 features upsampled to 1/2 and fused with the 1/2
stem features, a 1x1 classifier and a bilinear upsampling to the input size. It works on any
input size (dynamic H and W), as the ``resize_short`` preprocessing needs.

Inputs come from the project's own preprocessing (:func:`tritonkit.client.preprocess.
preprocess` with ``resize_short``: shorter side to ``spec.size``, no crop), so what is served later is
exactly what was trained on. Training takes random ``size x size`` crops of the resized images
(flips and quarter turns: every shape class is closed under them), with cross-entropy that
ignores void (255) pixels; the targets are the masks resized with nearest neighbour as PIL does.
The val mIoU is measured on the exported ONNX through onnxruntime, one image at its own size at a
time, with the predicted mask scaled back to the original image size, as ``eval segment`` scores.

Export: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter needs no onnxscript),
dynamic batch, height and width on the input and the output.

Cached like the other demo models (:mod:`tritonkit.demo.train`): ``cache_dir/<name>-<key>/``,
the key hashing the data digest, the training config and the model spec.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tritonkit._lazy import lazy_import
from tritonkit.client.preprocess import preprocess
from tritonkit.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from tritonkit.tasks.segment.math import ConfusionMatrix, SegmentationScores, argmax_mask, mask_to_original
from tritonkit.tasks.segment.voc import open_voc
from tritonkit.demo.segshapes import LABELS, SEGMENTATION_SPLITS, segmentation_classes
from tritonkit.demo.train import (
    DEFAULT_CACHE, WEIGHTS_FILE, TrainResult, _cached, _data_digest, _decode, _onnx_session, _progress,
    _save_result, _save_weights, _Threads, cache_key)
from tritonkit.cards import ModelCard
from tritonkit.errors import CardError, TritonkitError
from tritonkit.export import ExportError
from tritonkit.io import atomic_write_json, sha256_file

torch = lazy_import("torch")
onnx = lazy_import("onnx")
Image = lazy_import("PIL.Image")

SEGMENTER_ARCH = "demo:shapes_segnet"
SEG_TRAIN_VERSION = 2


@dataclass(frozen=True, kw_only=True)
class SegmenterSpec:
    """What the trained segmenter is: names, classes, ``resize_short`` preprocessing, width, in
    the cache key. The served contract is the ``demo_seg`` card: :func:`spec_for_card` takes
    every field the card has from it (the defaults here equal that card)."""

    name: str = "demo_seg"
    arch: str = SEGMENTER_ARCH
    labels: str = LABELS
    num_classes: int = 5
    size: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_name: str = "input"
    output_name: str = "out"
    width: int = 16
    opset: int = 17
    version: int = SEG_TRAIN_VERSION

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= 255:
            raise CardError(f"segmenter spec: num_classes must be in [2, 255] (got {self.num_classes})")
        if self.size < 16 or self.width < 1:
            raise CardError(f"segmenter spec: size must be >= 16 and width >= 1 (got {self.size}, {self.width})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class SegmenterConfig:
    epochs: int = 15
    batch_size: int = 32
    lr: float = 6e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    target_miou: float = 0.60
    max_train_images: int | None = None  # a prefix of the train split (tests)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1:
            raise TritonkitError("segmenter config: epochs, batch_size and threads must be >= 1")
        if self.max_train_images is not None and self.max_train_images < 1:
            raise TritonkitError("segmenter config: max_train_images must be >= 1")


# -- model ------------------------------------------------------------------------------------------

@functools.cache
def _segnet_class():
    nn, F = torch.nn, torch.nn.functional

    def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class ShapesSegNet(nn.Module):
        """``[N, 3, H, W] -> [N, C, H, W]`` logits for any H, W."""

        def __init__(self, num_classes: int, width: int):
            super().__init__()
            w = width
            self.stem = nn.Sequential(conv(3, w, 2), conv(w, w))                       # 1/2
            self.deep = nn.Sequential(conv(w, 2 * w, 2), conv(2 * w, 2 * w),           # 1/4
                                      conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w, dilation=2),  # 1/8
                                      conv(4 * w, 4 * w, dilation=4))
            self.fuse = conv(5 * w, 2 * w)
            self.head = nn.Conv2d(2 * w, num_classes, 1)

        def forward(self, x):
            s2 = self.stem(x)
            up = F.interpolate(self.deep(s2), size=s2.shape[-2:], mode="bilinear", align_corners=False)
            y = self.head(self.fuse(torch.cat([up, s2], dim=1)))
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return ShapesSegNet


def build_segmenter(spec: SegmenterSpec):
    """A fresh (randomly initialized) ``demo:shapes_segnet``."""
    return _segnet_class()(spec.num_classes, spec.width)


def spec_for_card(card: ModelCard, **overrides) -> SegmenterSpec:
    """The training spec of a ``demo:shapes_segnet`` card (``demo_seg``): names, labels, classes,
    the ``resize_short`` size, mean and std from the card; ``overrides`` for the rest (width ...)."""
    if card.arch != SEGMENTER_ARCH or card.task != "segment" or card.preprocess.mode != "resize_short":
        raise CardError(f"card {card.name!r} is not a {SEGMENTER_ARCH} segmenter with resize_short preprocessing")
    pp = card.preprocess
    fields = dict(name=card.name, arch=card.arch, labels=card.labels, num_classes=card.num_classes, size=pp.size,
                  mean=tuple(pp.mean), std=tuple(pp.std), input_name=card.input.name,
                  output_name=card.outputs[0].name)
    return SegmenterSpec(**{**fields, **overrides})


def build_for_card(card: ModelCard):
    """The export builder of ``demo:shapes_segnet`` (registered by :mod:`tritonkit.demo`)."""
    return build_segmenter(spec_for_card(card))


# -- data -------------------------------------------------------------------------------------------

@dataclass
class SegmentationSplit:
    """Preprocessed images (each ``[3, h, w]``), masks at model-input size (training targets),
    original masks and the geometry of each image (scoring)."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    masks: list[np.ndarray]
    geometries: list = field(default_factory=list)


def load_segmentation_split(root: Path, split: str, spec: SegmenterSpec, limit: int | None = None) -> SegmentationSplit:
    ds = open_voc(root, split, spec.num_classes)
    out = SegmentationSplit([], [], [])
    for item in ds.items[:limit]:
        rgb = _decode(item.path)
        x, geo = preprocess(rgb, Preprocess("resize_short", spec.size, mean=spec.mean, std=spec.std))
        mask = item.read_mask(spec.num_classes, rgb.shape[:2])
        input_h, input_w = geo.input_hw
        small = Image.fromarray(mask).resize((input_w, input_h), Image.Resampling.NEAREST)
        out.inputs.append(x)
        out.targets.append(np.asarray(small, np.int64))
        out.masks.append(mask)
        out.geometries.append(geo)
    return out


def random_crops(split: SegmentationSplit, idx: np.ndarray, size: int, rng: np.random.Generator):
    """A ``[B, 3, size, size]`` batch and ``[B, size, size]`` targets: a random crop of each
    image (its shorter side is ``size``), flipped and turned at random."""
    xs, ys = [], []
    for i in idx:
        x, y = split.inputs[i], split.targets[i]
        top = int(rng.integers(0, x.shape[1] - size + 1))
        left = int(rng.integers(0, x.shape[2] - size + 1))
        x, y = x[:, top:top + size, left:left + size], y[top:top + size, left:left + size]
        k = int(rng.integers(0, 4))
        x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
        if rng.integers(0, 2):
            x, y = x[:, :, ::-1], y[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return np.stack(xs), np.stack(ys)


# -- export and evaluation --------------------------------------------------------------------------

def _fix_class_dim(path: Path, spec: SegmenterSpec) -> None:
    """The tracer leaves the output's class dimension symbolic (behind a Resize of dynamic size):
    state it, so the served model's output is ``[batch, C, height, width]``."""
    model = onnx.load_model(str(path))  # LazyModule.load shadows onnx.load
    (out,) = model.graph.output
    out.type.tensor_type.shape.dim[1].dim_value = spec.num_classes
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))


def export_segmenter(model, spec: SegmenterSpec, out_dir: Path) -> tuple[Path, Path]:
    """``<out_dir>/<name>.onnx`` with dynamic batch, height and width, checked against torch on
    another size than the traced one; plus its sidecar ``<name>.json`` (with ``onnx_sha256``)."""
    onnx_path = out_dir / f"{spec.name}.onnx"
    tmp = out_dir / f".{spec.name}.onnx.tmp"
    names = (spec.input_name, spec.output_name)
    axes = {0: "batch", 2: "height", 3: "width"}
    model.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (torch.zeros(2, 3, spec.size, spec.size + 8),), str(tmp),
                          input_names=[names[0]], output_names=[names[1]], dynamic_axes={n: axes for n in names},
                          opset_version=spec.opset, do_constant_folding=True, dynamo=False)
    _fix_class_dim(tmp, spec)
    probe = np.random.default_rng(0).standard_normal((3, 3, spec.size + 5, spec.size - 3)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(probe)).numpy()
    got = _onnx_session(tmp).run([spec.output_name], {spec.input_name: probe})[0]
    diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
    if diff > 1e-3:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{onnx_path}: onnxruntime disagrees with torch on a {probe.shape} input "
                          f"(shape {got.shape} vs {ref.shape}, max |diff| {diff})")
    tmp.replace(onnx_path)
    sidecar = atomic_write_json(out_dir / f"{spec.name}.json", {
        "card": spec.name, "spec": spec.to_dict(), "onnx_sha256": sha256_file(onnx_path), "opset": spec.opset,
        "dynamic_axes": {n: axes for n in names}, "verify": {"runtime": "onnxruntime", "max_abs_diff": diff}})
    return onnx_path, sidecar


def evaluate_segmenter(onnx_path: Path, split: SegmentationSplit, spec: SegmenterSpec) -> SegmentationScores:
    """Scores of an exported segmenter: each image at its own size through onnxruntime, argmax,
    mask scaled back to the original size, confusion against the original mask."""
    sess = _onnx_session(onnx_path)
    cm = ConfusionMatrix(spec.num_classes)
    for x, mask, geo in zip(split.inputs, split.masks, split.geometries):
        logits = sess.run([spec.output_name], {spec.input_name: x[None]})[0]
        cm.update(mask_to_original(argmax_mask(logits)[0], geo), mask)
    return cm.scores(segmentation_classes())


# -- training ---------------------------------------------------------------------------------------

def _fit(model, train: SegmentationSplit, spec: SegmenterSpec, config: SegmenterConfig, progress: bool) -> list[float]:
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = -(-len(train.inputs) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * per_epoch,
                                                pct_start=0.2)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    history: list[float] = []
    with _progress(progress) as bar:
        task = bar.add_task(f"training {spec.name}", total=config.epochs, info="")
        for _ in range(config.epochs):
            model.train()
            order = rng.permutation(len(train.inputs))
            total = 0.0
            for s in range(0, len(order), config.batch_size):
                x, y = random_crops(train, order[s:s + config.batch_size], spec.size, rng)
                loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(x)
            history.append(total / len(train.inputs))
            bar.update(task, advance=1, info=f"loss {history[-1]:.3f}")
    return history


def train_segmenter(data_root: str | Path, cache_dir: str | Path = DEFAULT_CACHE,
                    config: SegmenterConfig = SegmenterConfig(), spec: SegmenterSpec = SegmenterSpec(),
                    progress: bool = True) -> TrainResult:
    """Train (or reuse from the cache) the demo segmenter on a :mod:`tritonkit.demo.segshapes`
    set; export it; val mIoU of the ONNX (``metric`` ``val_miou``; ``history``: train loss per
    epoch)."""
    data_root = Path(data_root)
    classes = segmentation_classes()
    if len(classes) != spec.num_classes:
        raise CardError(f"segmenter spec: num_classes {spec.num_classes} != the {len(classes)} classes of "
                         f"label set {spec.labels!r}")
    entry = Path(cache_dir) / f"{spec.name}-{cache_key(_data_digest(data_root), config, spec)}"
    hit = _cached(entry)
    if hit is not None:
        return hit
    entry.mkdir(parents=True, exist_ok=True)
    with _Threads(config.threads):
        train = load_segmentation_split(data_root, SEGMENTATION_SPLITS[0], spec, config.max_train_images)
        val = load_segmentation_split(data_root, SEGMENTATION_SPLITS[1], spec)
        torch.manual_seed(config.seed)
        model = build_segmenter(spec)
        start = time.perf_counter()
        history = _fit(model, train, spec, config, progress)
        seconds = time.perf_counter() - start
        weights = entry / WEIGHTS_FILE
        _save_weights(model, weights)
        onnx_path, sidecar = export_segmenter(model, spec, entry)
    scores = evaluate_segmenter(onnx_path, val, spec)
    result = TrainResult(spec.name, onnx_path, sidecar, weights, "val_miou", scores.miou, config.target_miou,
                         config.epochs, round(seconds, 1), len(train.inputs), len(val.inputs), history=tuple(history))
    _save_result(entry, result)
    return result


__all__ = ["SegmenterSpec", "SegmenterConfig", "spec_for_card", "build_for_card", "SegmentationSplit", "build_segmenter", "load_segmentation_split",
           "random_crops", "export_segmenter", "evaluate_segmenter", "train_segmenter", "SEGMENTER_ARCH"]
