"""Semantic segmentation accuracy and timing through Triton (mIoU, pixel accuracy, server argmax).

Reads a PASCAL VOC2012-layout set (``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,
ImageSets/Segmentation/<split>.txt}``; the folder holding VOCdevkit, VOCdevkit itself or
VOC2012), checks the layout, every mask and the served model against the card, then streams
every image through decode -> resize_short (shorter side to the card's size, no crop, as
torchvision's reference) -> Triton -> argmax (on the client, or on the server through the
``<model>_ensemble_argmax`` ensemble, which returns a uint8 mask: ``--server-postprocess``) -> the mask scaled back to the
original size with nearest neighbour -> a per-image confusion matrix against the VOC mask (255 =
void, ignored). mIoU (per class and mean) and pixel accuracy are computed from the summed
matrices, as torchvision's reference ``ConfusionMatrix``.

A listed image without its mask, a mask of another size than its image, a mask that is not a
palette image or that holds class ids outside the card's classes (other than 255) is an error:
counted and listed with the reason, the rest evaluated.

Variable-size inputs: images of one batch are padded at the bottom/right to the batch's largest
height and width (:func:`tritonkit.tasks.segment.math.stack_padded`, torchvision's reference
``cat_list``), one request per batch, and each predicted mask is cropped back to its own size
before it is scaled to the original. At batch size 1 (the default, and torchvision's reference
eval) nothing is padded and the numbers are the reference ones; at larger batches a
convolutional model sees the padding near the bottom/right edges, so masks there can differ
slightly. The alternative (one request per image size) would make "batch size" mean nothing
for a set whose sizes all differ. Run model (forward + argmax, batches sent one at a time) and
run stream (decode + preprocess + forward + argmax + scale back, several requests in flight)
are therefore timed on the padded batches the stream really sends: the padding is part of the
cost of batching variable-size images, and ``padded_pixels`` in each timing row says how much.
Both are timed with client argmax and, where the ensemble is served, with server argmax.

Writes <out>/segmentation.json, <out>/segmentation.md and a per-image checkpoint
<out>/segmentation.jsonl (resume continues an interrupted run). With a reference ONNX the same
batches also run through onnxruntime in this process and reference_miou /
reference_pixel_accuracy are reported beside the served numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.items import limit_dataset
from tritonkit.client.pipeline import TaskAdapter
from tritonkit.client.preprocess import preprocess, resize_short_size
from tritonkit.report import (
    TIMING_HEADERS, TIMING_MEASURED, files_markdown, markdown_table, pct, stream_markdown, timing_cells)
from tritonkit.served import ChainTensor, PostprocessChain, shipped
from tritonkit.spec import Geometry
from tritonkit.tasks.base import (
    REFERENCE, Agreement, DatasetOptions, OpenedData, OptionsError, Task, TaskMetrics, arg, class_names,
    register_task, to_flat_dict)
from tritonkit.tasks.segment import math as segment_math
from tritonkit.tasks.segment.math import (
    MASK_OUTPUT, ConfusionMatrix, confusion, confusion_from_entries, confusion_to_entries, mask_to_original,
    stack_padded)
from tritonkit.tasks.segment.result import Mask
from tritonkit.tasks.segment.voc import open_voc

DESCRIPTION = __doc__  # the CLI help of the task


def class_map(values: np.ndarray) -> np.ndarray | None:
    """``[N, H, W]`` class ids of a segmenter output: a mask as is (integers), ``[N, C, H, W]``
    logits through argmax over C; None for anything else."""
    a = np.asarray(values)
    if a.dtype.kind in "iub" and a.ndim == 3:
        return a.astype(np.int64)
    if a.dtype.kind == "f" and a.ndim == 4:
        return np.argmax(a, axis=1)
    return None


def pixel_agreement(served: np.ndarray, reference: np.ndarray) -> Agreement | None:
    """The fraction of pixels whose class the served output and the reference agree on (0 when
    their class maps differ in shape); ``labels`` when the served output is a mask. None when
    either is not a segmenter output."""
    a, b = class_map(served), class_map(reference)
    if a is None or b is None:
        return None
    value = float(np.mean(a == b)) if a.shape == b.shape else 0.0
    return Agreement("pixel_agreement", value, labels=np.asarray(served).dtype.kind in "iub")


# ---------------------------------------------------------- the server-side postprocess (argmax)
ARGMAX_BACKEND = Path(__file__).with_name("backend.py")
MATH_FILE = "tk_segment.py"  # this task's math.py as the argmax backend imports it


def argmax_chain(card: ModelCard) -> PostprocessChain:
    """The argmax chain of a segmenter: its logits ``[C, H, W]`` in, the uint8 ``mask`` ``[H, W]`` out."""
    return PostprocessChain(
        kind="argmax", backend_source=ARGMAX_BACKEND, support_files=shipped((MATH_FILE, segment_math)),
        parameters=(("input_name", card.outputs[0].name), ("output_name", MASK_OUTPUT), ("class_axis", "1")),
        outputs=(ChainTensor(name=MASK_OUTPUT, dims=(-1, -1), dtype="UINT8"),),
        description="server-side argmax (uint8 mask)")


# ------------------------------------------------------------------------ the task adapter
@dataclass(frozen=True)
class SegmentMeta:
    """What postprocess needs of one image: the resize geometry and (scoring) the checked mask."""

    geometry: Geometry
    mask: np.ndarray | None = field(default=None, repr=False)


def image_mask(outputs: Mapping[str, np.ndarray], card: ModelCard) -> np.ndarray:
    """One image's ``[H', W']`` class map: the server's uint8 mask, else the card's postprocess
    (argmax) of the logits."""
    if MASK_OUTPUT in outputs:
        return np.asarray(outputs[MASK_OUTPUT])
    return card.postprocess.mask(outputs[card.outputs[0].name])


@dataclass(frozen=True, eq=False)
class SegmentAdapter(TaskAdapter):
    """Segmentation task for :func:`tritonkit.client.pipeline.run_stream`.

    ``prepare`` = resize_short preprocessing (keeping the geometry) and, with ``score``, the
    image's checked VOC mask (a bad mask raises there, so it becomes that file's error);
    ``collate`` = :func:`stack_padded` (module docstring); ``postprocess`` = argmax (or the
    server's mask) -> crop the padding -> nearest-neighbour scale-back -> the image's confusion
    matrix as non-zero ``[gt, pred, count]`` cells; ``summarize`` = mIoU and pixel accuracy of
    the summed matrices.
    """

    card: ModelCard
    score: bool = True

    def prepare(self, item: Any, image: Any) -> tuple[np.ndarray, SegmentMeta]:
        x, geometry = preprocess(image, self.card.preprocess)
        mask = item.read_mask(self.card.num_classes, (geometry.orig_h, geometry.orig_w)) if self.score else None
        return x.astype(self.card.input.numpy_dtype, copy=False), SegmentMeta(geometry, mask)

    def encoded_meta(self, item: Any, geometry: Geometry | None) -> SegmentMeta:
        """The meta of ``item`` when the server preprocessed it, with the server's geometry."""
        if geometry is None:
            raise ValueError("the server returned no geometry: masks cannot be scaled back")
        mask = item.read_mask(self.card.num_classes, (geometry.orig_h, geometry.orig_w)) if self.score else None
        return SegmentMeta(geometry, mask)

    def collate(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return stack_padded(inputs)

    def decode(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return image_mask(outputs, self.card)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return class_names(self.card)

    def result(self, outputs: Mapping[str, np.ndarray], meta: SegmentMeta) -> Mask:
        """One image's class map at its original size (argmax or the server's mask, padding cropped,
        nearest-neighbour scale-back)."""
        return Mask(mask_to_original(image_mask(outputs, self.card), meta.geometry), self.names)

    def record(self, result: Mask, meta: SegmentMeta) -> dict:
        pred = result.classes
        record = {"height": int(pred.shape[0]), "width": int(pred.shape[1])}
        if meta.mask is not None:
            conf = confusion(pred, meta.mask, self.card.num_classes)
            record["confusion"] = confusion_to_entries(conf)
        return record

    def summarize(self, records: Sequence[Mapping]) -> dict:
        cm = ConfusionMatrix(self.card.num_classes)
        for r in records:
            cm.add(confusion_from_entries(r.get("confusion", ()), self.card.num_classes))
        scores = cm.scores(self.card.label_names())
        d = scores.to_dict()
        scored = bool(records) and scores.pixels > 0
        return {"miou": d["miou"] if scored else None, "pixel_accuracy": d["pixel_accuracy"] if scored else None,
                "per_class_iou": scores.per_class(), "classes_scored": scores.classes_scored,
                "pixels": scores.pixels}


# ------------------------------------------------------------------ options, metrics, details
@dataclass(frozen=True, kw_only=True)
class SegmentationOptions(DatasetOptions):
    """Options of a segmentation eval: the stream options plus the VOC set."""

    data: Path | None = field(default=None, metadata=arg(
        "--data", "VOC root: the folder holding VOCdevkit/VOC2012 (or VOCdevkit, or VOC2012 itself)", kind="path"))
    split: str = field(default="val", metadata=arg("--split", "ImageSets/Segmentation/<split>.txt (default val)"))
    limit: int | None = field(default=None, metadata=arg("--limit", "evaluate only N images of the split", kind="int"))
    limit_mode: str = field(default="first", metadata=arg(
        "--limit-mode", "which N images: the first N, or every k-th spread over the split", kind="choice",
        choices=("first", "stride")))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data is None:
            raise OptionsError("give the VOC root with {data} PATH (the folder holding VOCdevkit)")


@dataclass(kw_only=True)
class SegmentationMetrics(TaskMetrics):
    """mIoU, pixel accuracy (fractions; None when nothing was scored) and IoU per class name
    (None for a class absent from both ground truth and predictions, left out of the mean)."""

    miou: float | None = None
    pixel_accuracy: float | None = None
    per_class_iou: dict = field(default_factory=dict)
    classes_scored: int = 0
    pixels: int = 0
    reference_miou: float | None = field(default=None, metadata=REFERENCE)
    reference_pixel_accuracy: float | None = field(default=None, metadata=REFERENCE)
    reference_per_class_iou: dict | None = field(default=None, metadata=REFERENCE)


@dataclass(kw_only=True)
class SegmentationDetails:
    """Segmentation's served set-up in the result: where the argmax ran."""

    server_argmax: bool

    def to_dict(self) -> dict:
        return to_flat_dict(self)


# ------------------------------------------------------------------------------ helpers
def _padding(batches: Sequence[np.ndarray], pixels: Sequence[int]) -> float | None:
    """Fraction of the sent input pixels that were padding (``pixels``: each image's own H*W)."""
    sent = sum(int(np.prod(b.shape[-2:])) * b.shape[0] for b in batches)
    return None if not sent else round(1.0 - sum(pixels) / sent, 4)


def _iou_text(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def segmentation_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of one segmentation eval (from the dict in segmentation.json)."""
    ref = "reference_miou" in result
    parts = [f"# Segmentation: {result.get('model')}\n\n",
             f"{result.get('images', 0)} images evaluated through Triton ({result.get('protocol', '')} "
             f"{result.get('url', '')}, model `{result.get('served_model')}`), "
             f"{len(result.get('errors', []))} excluded (no mask, bad mask, unreadable image); argmax "
             f"{'on the server' if result.get('server_argmax') else 'on the client'}; masks scaled back to the "
             f"original size with nearest neighbour, void (255) ignored.\n\n",
             markdown_table(["metric", "through Triton"] + (["onnxruntime in-process"] if ref else []),
                            [["mIoU (%)", pct(result.get("miou"))] + ([pct(result.get("reference_miou"))] if ref else []),
                             ["pixel accuracy (%)", pct(result.get("pixel_accuracy"))]
                             + ([pct(result.get("reference_pixel_accuracy"))] if ref else [])], digits=2)]
    per_class = result.get("per_class_iou") or {}
    ref_class = result.get("reference_per_class_iou") or {}
    if per_class:
        parts += ["\n## IoU per class\n\n", markdown_table(
            ["class", "IoU (%)"] + (["onnxruntime (%)"] if ref else []),
            [[name, pct(iou)] + ([pct(ref_class.get(name))] if ref else []) for name, iou in per_class.items()])]
    published = result.get("published") or {}
    if published:
        parts += ["\n## Published\n\n", markdown_table(["metric", "value (%)"],
                                                        [[k, pct(v)] for k, v in published.items()])]
    parts.append(stream_markdown(result, stages=False))
    bt = result.get("batch_timing") or []
    if bt:
        parts += ["\n## Run model (forward + argmax) vs run stream (decode + preprocess + forward + argmax + "
                  "scale back)\n\n", markdown_table(
                      ["argmax", "batch size", "images", *TIMING_HEADERS, "padded pixels (%)"],
                      [[r["argmax"], r["batch_size"], r["images"], *timing_cells(r), pct(r.get("padded_pixels"))]
                       for r in bt]), f"\n{TIMING_MEASURED}\n"]
    parts += [f"\n- {note}\n" for note in result.get("timing_notes") or []]
    return "".join(parts)


# ----------------------------------------------------------------------------- the task
@register_task("segment")
class Segmentation(Task):
    """VOC-style mIoU and pixel accuracy through the served segmenter, argmax on either side."""

    title = "Segmentation"
    description = DESCRIPTION
    options_type = SegmentationOptions
    metrics_type = SegmentationMetrics
    metric_label = "mIoU"
    postprocess_label = "argmax"
    result_json = "segmentation.json"
    result_md = "segmentation.md"
    checkpoint = "segmentation.jsonl"
    e2e_time_covers = "layout and mask checks, connect and contract check, the accuracy stream, scoring"

    def open_dataset(self, options: SegmentationOptions, card: ModelCard) -> OpenedData:
        ds = limit_dataset(open_voc(options.data, options.split, card.num_classes), options.limit,
                           options.limit_mode)
        identity = {"data": str(ds.root), "split": ds.split, "subset": ds.subset,
                    "ids": [it.key for it in ds.items]}
        return OpenedData(ds.items, ds.excluded(), ds.describe(), identity, source=ds)

    def server_chains(self, card: ModelCard, variants: Sequence[str] = ()) -> list[PostprocessChain]:
        """The argmax chain (no variants)."""
        super().server_chains(card, variants)  # refuses variants
        return [argmax_chain(card)]

    def details(self, options: SegmentationOptions, card: ModelCard) -> "SegmentationDetails":
        return SegmentationDetails(server_argmax=options.server_postprocess)

    def adapter(self, options: SegmentationOptions, card: ModelCard, data: OpenedData) -> SegmentAdapter:
        return SegmentAdapter(card)

    def timing_adapter(self, card: ModelCard, options: SegmentationOptions | None = None) -> SegmentAdapter:
        return SegmentAdapter(card, score=False)

    def output_agreement(self, served: np.ndarray, reference: np.ndarray) -> Agreement | None:
        """Per-pixel argmax agreement. ``[N, C, H, W]`` logits: class maps of both compared; a
        served class map (the argmax ensemble's ``[N, H, W]`` mask) against the reference's class
        map (the argmax of its logits, or its own mask), pixel for pixel."""
        return pixel_agreement(served, reference)

    def timing_row(self, run: Any, where: str, row: Mapping[str, Any], timed: Any) -> dict:
        return {"argmax": where, **row,
                "padded_pixels": _padding(timed.kept_batches, _input_pixels(run.card, timed.records))}

    def markdown(self, result: Mapping[str, Any]) -> str:
        return segmentation_markdown(result) + files_markdown(result.get("errors"), result.get("notes"))

    def summary_rows(self, result: Any) -> list[tuple[str, str]]:
        m: SegmentationMetrics = result.metrics
        rows = [("mIoU", _iou_text(m.miou)), ("pixel accuracy", _iou_text(m.pixel_accuracy))]
        if m.has_reference:
            rows += [("reference mIoU (onnxruntime)", _iou_text(m.reference_miou)),
                     ("reference pixel accuracy (onnxruntime)", _iou_text(m.reference_pixel_accuracy))]
        return rows



def _input_pixels(card: ModelCard, records: Sequence[Mapping]) -> list[int]:
    """Each timed image's model-input pixels (its resize_short size), from its original size."""
    sizes = [resize_short_size(r["height"], r["width"], card.preprocess.size) for r in records]
    return [h * w for h, w in sizes]


__all__ = ["Segmentation", "SegmentationOptions", "SegmentationMetrics", "SegmentationDetails", "SegmentAdapter",
           "SegmentMeta", "argmax_chain", "image_mask", "segmentation_markdown", "pixel_agreement", "class_map"]
