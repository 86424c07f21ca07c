"""Classification accuracy and timing through Triton (top1/top5, run model vs run stream).

Reads ImageNet val (``val/<wnid>/*.JPEG``; flat ``val/*.JPEG`` + ``val.txt`` or
``LOC_val_solution.csv``; or ``ILSVRC2012_img_val.tar`` read in place, MD5-checked) or the
demo's folders, checks the served model against the card, then streams every image through
decode -> preprocess -> Triton -> softmax top-k. Accuracy is computed over all images at the
first batch size; run-model and run-stream times at every batch size over the timing images.
Writes <out>/classification.json, <out>/classification.md and a per-image checkpoint
<out>/classification.jsonl (resume continues an interrupted run; each image's record holds its
true class and the top-k class names with their scores). The report lists the misclassified
images (path, truth, prediction).

With a reference ONNX the same preprocessed batches also run through onnxruntime in this
process and reference_top1/reference_top5 are reported beside the served numbers.
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
from tritonkit.client.preprocess import preprocess
from tritonkit.report import (
    TIMING_HEADERS, TIMING_MEASURED, files_markdown, markdown_table, pct, pct_text, stream_markdown, timing_cells)
from tritonkit.spec import Geometry
from tritonkit.tasks.base import (
    REFERENCE, ArgSpec, DatasetOptions, OpenedData, OptionsError, Task, TaskMetrics, arg, args, class_names,
    register_task)
from tritonkit.tasks.classify.data import IMAGENET_VAL_TAR_MD5, ClassMap, open_dataset, open_tar
from tritonkit.tasks.classify.math import accuracy, topk
from tritonkit.tasks.classify import result as classify_result

MISCLASSIFIED_SHOWN = 100  # rows of the misclassified table (every image is in the checkpoint)


DESCRIPTION = __doc__  # the CLI help of the task


@dataclass(frozen=True, kw_only=True)
class ClassificationOptions(DatasetOptions):
    """Options of a classification eval: the stream options plus the dataset."""

    data: Path | None = field(default=None, metadata=arg(
        "--data", "val folder (<class>/*.JPEG or flat *.JPEG) or an uncompressed .tar", kind="path"))
    gt: Path | None = field(default=None, metadata=arg(
        "--gt", "ground truth: caffe val.txt, 'name wnid' lines or LOC_val_solution.csv", kind="path"))
    tar: Path | None = field(default=None, metadata=arg(
        "--tar", "ILSVRC2012_img_val.tar, read in place (needs --gt)", kind="path"))
    md5: str | None = field(default=IMAGENET_VAL_TAR_MD5, metadata=args(
        ArgSpec(flag="--md5", help="expected MD5 of the tar (default: ImageNet val's)"),
        ArgSpec(flag="--no-md5-check", kind="clear", help="skip the tar MD5 check")))
    limit: int | None = field(default=None, metadata=arg(
        "--limit", "evaluate only N images (deterministic subset)", kind="int"))
    limit_mode: str = field(default="stride", metadata=arg(
        "--limit-mode", "stride: every k-th image in sorted order (spreads over classes); first: the first N",
        kind="choice", choices=("stride", "first")))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data is None and self.tar is None:
            raise OptionsError("give the dataset with {data} PATH (folder or .tar) or {tar} FILE")


@dataclass(frozen=True)
class ClassifyAdapter(TaskAdapter):
    """Classification for the run-stream engine: card preprocessing, the card's softmax top-k,
    accuracy. ``prepare`` takes the item's ``label`` (class index; -1 for an image without one,
    as an application's); the first card output holds the logits."""

    card: ModelCard

    @property
    def k(self) -> int:
        return self.card.postprocess.top_k

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return class_names(self.card)

    def name(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else str(index)

    def prepare(self, item: Any, image: Any) -> tuple[np.ndarray, int]:
        """``image``: the decoded RGB PIL image (or an RGB uint8 HWC array)."""
        x, _ = preprocess(image, self.card.preprocess)
        return x.astype(self.card.input.numpy_dtype, copy=False), int(getattr(item, "label", -1))

    def encoded_meta(self, item: Any, geometry: Geometry | None) -> int:
        """The meta of ``item`` when the server preprocessed it (server-side preprocessing)."""
        return int(getattr(item, "label", -1))

    def result(self, outputs: Mapping[str, np.ndarray], meta: int) -> classify_result.Classification:
        """The card's top-k of one image's logits (non-finite logits raise :class:`NonFiniteOutput`)."""
        found = self.card.postprocess.record(outputs[self.card.outputs[0].name], meta)
        top = tuple((self.name(i), s) for i, s in zip(found["topk"], found["scores"]))
        return classify_result.Classification(top=top, classes=tuple(found["topk"]))

    def record(self, result: classify_result.Classification, meta: int) -> dict:
        return {"label": int(meta), "topk": list(result.classes), "scores": list(result.scores)}

    def decode(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return topk(outputs[self.card.outputs[0].name].reshape(-1), self.k)

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> dict:
        """top1 and top5 (None when the card keeps fewer than 5 classes per image)."""
        found = accuracy(records, 5 if self.k >= 5 else self.k)
        return found if self.k >= 5 else {**found, "top5": None, "correct5": 0}


@dataclass(kw_only=True)
class ClassificationMetrics(TaskMetrics):
    """Top-1/top-5 accuracy (fractions; None when nothing was evaluated) and hit counts."""

    top1: float | None = None
    top5: float | None = None
    correct1: int = 0
    correct5: int = 0
    reference_top1: float | None = field(default=None, metadata=REFERENCE)
    reference_top5: float | None = field(default=None, metadata=REFERENCE)


@dataclass(frozen=True)
class NamedClassifyAdapter(ClassifyAdapter):
    """:class:`ClassifyAdapter` whose per-image records also name the classes: ``truth`` (the
    true class's name) and ``classes`` (the names of ``topk``, beside their ``scores``)."""

    def record(self, result: classify_result.Classification, meta: int) -> dict:
        return {**super().record(result, meta), "truth": self.name(int(meta)), "classes": [n for n, _ in result.top]}


@dataclass(kw_only=True)
class ClassificationDetails:
    """The misclassified images (top-1 wrong) of the accuracy run, for the report: the first
    :data:`MISCLASSIFIED_SHOWN` in dataset order and the total."""

    misclassified: list[dict] = field(default_factory=list)
    misclassified_count: int = 0

    def to_dict(self) -> dict:
        return {"misclassified": list(self.misclassified), "misclassified_count": self.misclassified_count}


def misclassified(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> ClassificationDetails:
    """Images whose top-1 class is not the true one: path, truth, prediction and its score."""
    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    wrong = [r for r in records if r.get("topk") and int(r["topk"][0]) != int(r["label"])]
    rows = [{"path": r.get("key"), "truth": name(int(r["label"])), "prediction": name(int(r["topk"][0])),
             "score": (r.get("scores") or [None])[0]} for r in wrong[:MISCLASSIFIED_SHOWN]]
    return ClassificationDetails(misclassified=rows, misclassified_count=len(wrong))


def misclassified_markdown(result: Mapping[str, Any]) -> str:
    rows = result.get("misclassified")
    if rows is None:
        return ""
    total = int(result.get("misclassified_count", len(rows)))
    head = f"\n## Misclassified images (top-1): {total}\n\n"
    if not rows:
        return head + "None.\n"
    more = (f"\nThe first {len(rows)} are shown; every image's top-k classes and scores are in "
            f"`{Classification.checkpoint}`.\n") if total > len(rows) else ""
    return head + markdown_table(["path", "truth", "prediction", "score"],
                                 [[r["path"], r["truth"], r["prediction"], r["score"]] for r in rows],
                                 digits=3) + more


def classification_rows(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for classification results (each the dict written to classification.json).

    Columns: model, then per batch size seen ``run model bs{N} (ms)``, then ``run stream p50
    bs{N} (ms)`` (run stream latency per batch), then ``run stream bs{N} (img/s)`` (run stream
    throughput), then top1 / top5 in percent.
    """
    sizes = sorted({int(r["batch_size"]) for res in results for r in res.get("batch_timing") or []})
    headers = ["model"] + [f"run model bs{b} (ms)" for b in sizes] + [f"run stream p50 bs{b} (ms)" for b in sizes] \
        + [f"run stream bs{b} (img/s)" for b in sizes] + ["top1 (%)", "top5 (%)"]
    rows = []
    for res in results:
        by_bs = {int(r["batch_size"]): r for r in res.get("batch_timing") or []}
        rows.append([res.get("model")]
                    + [by_bs.get(b, {}).get("run_model_ms") for b in sizes]
                    + [by_bs.get(b, {}).get("run_stream_latency_p50_ms") for b in sizes]
                    + [by_bs.get(b, {}).get("run_stream_img_s") for b in sizes]
                    + [pct(res.get("top1")), pct(res.get("top5"))])
    return headers, rows


def classification_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of one classification eval (from the dict in classification.json)."""
    headers, rows = classification_rows([result])
    parts = [f"# Classification: {result.get('model')}\n\n",
             f"{result.get('images', 0)} images evaluated through Triton ({result.get('protocol', '')} "
             f"{result.get('url', '')}), {len(result.get('errors', []))} excluded (unreadable or not an image), "
             f"{len(result.get('notes', []))} converted to RGB.\n\n",
             markdown_table(headers, rows)]
    acc = [["top1 (%)", pct(result.get("top1")), pct(result.get("reference_top1"))],
           ["top5 (%)", pct(result.get("top5")), pct(result.get("reference_top5"))]]
    if "reference_top1" in result:
        parts += ["\n## Served vs in-process onnxruntime\n\n",
                  markdown_table(["metric", "through Triton", "onnxruntime in-process"], acc, digits=3)]
    parts.append(misclassified_markdown(result))
    parts.append(stream_markdown(result))
    bt = result.get("batch_timing") or []
    if bt:
        parts += ["\n## Run model vs run stream\n\n",
                  markdown_table(["batch size", "images", *TIMING_HEADERS],
                                 [[r["batch_size"], r["images"], *timing_cells(r)] for r in bt]),
                  f"\n{TIMING_MEASURED}\n"]
    return "".join(parts)


@register_task("classify")
class Classification(Task):
    """ImageNet-style top-1/top-5 through the served classifier."""

    title = "Classification"
    description = DESCRIPTION
    options_type = ClassificationOptions
    metrics_type = ClassificationMetrics
    metric_label = "accuracy"
    result_json = "classification.json"
    result_md = "classification.md"
    checkpoint = "classification.jsonl"
    e2e_time_covers = "dataset indexing, connect and contract check, the accuracy stream"

    def open_dataset(self, options: ClassificationOptions, card: ModelCard) -> OpenedData:
        if options.tar is not None:
            ds = open_tar(options.tar, ClassMap.for_card(card), options.gt, options.md5)
        else:
            ds = open_dataset(options.data, card, options.gt, options.md5)
        ds = limit_dataset(ds, options.limit, options.limit_mode)
        identity = {"data": str(ds.root), "ground_truth": str(ds.ground_truth) if ds.ground_truth else None,
                    "subset": ds.subset}
        return OpenedData(ds.items, ds.excluded(), ds.describe(), identity, source=ds)

    def details(self, options: ClassificationOptions, card: ModelCard) -> ClassificationDetails:
        return ClassificationDetails()

    def adapter(self, options: ClassificationOptions, card: ModelCard, data: OpenedData) -> ClassifyAdapter:
        return NamedClassifyAdapter(card)

    def after_stream(self, run: Any, stream: Any) -> None:
        found = misclassified(stream.records, run.adapter.names)
        run.served.details.misclassified = found.misclassified
        run.served.details.misclassified_count = found.misclassified_count

    def timing_adapter(self, card: ModelCard, options: ClassificationOptions | None = None) -> ClassifyAdapter:
        return ClassifyAdapter(card)

    def markdown(self, result: Mapping[str, Any]) -> str:
        return classification_markdown(result) + files_markdown(result.get("errors"), result.get("notes"))

    def timing_row_label(self, row: Mapping[str, Any]) -> str:
        return f"bs{row['batch_size']}"

    def summary_rows(self, result: Any) -> list[tuple[str, str]]:
        m: ClassificationMetrics = result.metrics
        rows = [("top1", pct_text(m.top1)), ("top5", pct_text(m.top5))]
        if m.has_reference:
            rows += [("reference top1 (onnxruntime)", pct_text(m.reference_top1)),
                     ("reference top5 (onnxruntime)", pct_text(m.reference_top5))]
        return rows


__all__ = ["Classification", "ClassificationOptions", "ClassificationMetrics", "ClassificationDetails",
           "ClassifyAdapter", "NamedClassifyAdapter", "classification_rows", "classification_markdown", "misclassified",
           "misclassified_markdown", "class_names"]
