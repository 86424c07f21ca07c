"""Detection accuracy and timing through Triton (COCO mAP, run model vs run stream, server NMS).

Reads COCO val2017 (a COCO root with ``val2017/`` and ``annotations/instances_val2017.json``,
or an image folder and an annotations file), checks the annotations and the served model
against the card, then streams every image through decode -> letterbox/resize -> Triton ->
decode + NMS (the card's NMS profile, ``ap`` by default) -> boxes in original pixels, and
scores them with pycocotools' COCOeval over exactly the images evaluated (so a limit of N
gives the mAP of those N images).

Run model = forward + NMS with batches sent one at a time; run stream = decode + preprocess
+ forward + NMS with workers and several requests in flight; both at every batch size over
the timing images, with the timing NMS profile (``speed`` by default, as in the usual YOLO
speed tables). With ``--server-postprocess`` the detections come from the detector -> NMS
ensemble (one NMS chain per profile: ``tritonkit repo --server-postprocess``) and timing is
reported for client-side and server-side NMS side by side.

Writes <out>/detection.json, <out>/detection.md, the COCO results file
<out>/detections_coco.json and a per-image checkpoint <out>/detection.jsonl (resume
continues an interrupted run; each image's record holds its detection count). The report lists
the images with the most errors (ground-truth boxes missed plus confident false detections at
IoU 0.5). With a reference ONNX the same inputs also run through
onnxruntime in this process and reference_map50 / reference_map50_95 are reported.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tritonkit.cards import ModelCard
from tritonkit.client.decode import read_image_bytes
from tritonkit.client.pipeline import TaskAdapter
from tritonkit.client.preprocess import preprocess
from tritonkit.errors import CardError, DatasetError
from tritonkit.report import (
    TIMING_HEADERS, TIMING_MEASURED, fmt, markdown_table, pct, pct_text, stream_markdown, timing_cells)
from tritonkit.served import ChainTensor, PostprocessChain, geometry_input, shipped
from tritonkit.spec import Geometry, NMSProfile
from tritonkit.tasks.base import (
    OMIT_NONE, REFERENCE, DatasetOptions, OpenedData, OptionsError, PredictSettings, Task, TaskMetrics, arg,
    class_names, register_task, to_flat_dict)
from tritonkit.tasks.detect import math as detect_math
from tritonkit.tasks.detect import result as detect_result
from tritonkit.tasks.detect.coco import (
    check_categories, coco_map, detections_to_coco, load_coco_root, read_ultralytics_predictions, write_results)
from tritonkit.tasks.detect.yolo import YoloDataset, load_yolo
from tritonkit.tasks.detect.math import (
    OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES, Detections, box_iou, card_detections, unpad_detections)

COCO_RESULTS = "detections_coco.json"
WORST_SHOWN = 10         # rows of the worst-images table
CONFIDENT_SCORE = 0.25   # a detection at or above this score counts in the per-image figures
MATCH_IOU = 0.5
METRIC_KEYS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")
DESCRIPTION = __doc__  # the CLI help of the task


# ------------------------------------------------------------ the server-side postprocess (NMS)
NMS_BACKEND = Path(__file__).with_name("backend.py")
MATH_FILE = "tk_detect.py"  # this task's math.py as the NMS backend imports it


def nms_chain(card: ModelCard, profile: NMSProfile) -> PostprocessChain:
    """The NMS chain of a detector for one profile: its raw outputs + the optional geometry in,
    padded detections out (``det_boxes``, ``det_scores``, ``det_classes``, ``det_count``). For an
    NMS-free head (``needs_nms`` False: end-to-end exports) the same chain only selects: the rows
    above the profile's score threshold, at most its max detections."""
    m = profile.max_detections
    return PostprocessChain(
        kind="nms", variant=profile.name, backend_source=NMS_BACKEND,
        support_files=shipped((MATH_FILE, detect_math)), parameters=profile.to_parameters(),
        extra_inputs=(geometry_input(),),
        outputs=(ChainTensor(name=OUT_BOXES, dims=(m, 4)), ChainTensor(name=OUT_SCORES, dims=(m,)),
                 ChainTensor(name=OUT_CLASSES, dims=(m,), dtype="INT32"),
                 ChainTensor(name=OUT_COUNT, dims=(1,), dtype="INT32")),
        description=(f"server-side NMS ({profile.name} profile)" if card.postprocess.needs_nms else
                     f"server-side selection: score threshold and max detections ({profile.name} profile), "
                     f"the head is NMS-free"))


# ------------------------------------------------------------------------ the task adapter
@dataclass(frozen=True)
class CocoItem:
    """One COCO image for the run-stream engine (``key`` is its file name)."""

    key: str
    path: Path
    image_id: int

    def read_bytes(self) -> bytes:
        return read_image_bytes(self.path)  # size cap and header check before reading it whole


@dataclass(frozen=True)
class DetectMeta:
    """What postprocess needs of one image: its COCO id and the preprocessing geometry."""

    image_id: int
    geometry: Geometry


def detection_record(image_id: int, dets) -> dict:
    """The per-image record (JSON): boxes x1,y1,x2,y2 in original pixels, scores, class indices."""
    return {"image_id": int(image_id), "count": int(len(dets.scores)),
            "boxes": np.round(np.asarray(dets.boxes, np.float64), 3).tolist(),
            "scores": np.round(np.asarray(dets.scores, np.float64), 6).tolist(),
            "classes": np.asarray(dets.classes).astype(int).tolist()}


def records_to_coco(records: Sequence[Mapping], category_ids: Sequence[int]) -> list[dict]:
    """COCO results entries (bbox x,y,w,h; dataset category ids) from per-image records."""
    out: list[dict] = []
    for r in records:
        dets = Detections.create(np.asarray(r["boxes"], np.float64).reshape(-1, 4), r["scores"], r["classes"])
        out += detections_to_coco(r["image_id"], dets, category_ids)
    return out


@dataclass(frozen=True, eq=False)
class DetectAdapter(TaskAdapter):
    """Detection task for :func:`tritonkit.client.pipeline.run_stream`.

    ``prepare`` = the card's preprocessing (letterbox for YOLO, resize for SSD), keeping the
    geometry; ``postprocess`` = decode + NMS with ``profile`` (raw detector outputs) or just
    unpadding (outputs of the server-side NMS ensemble), then back to original pixels;
    ``summarize`` = COCOeval against ``gt`` (a pycocotools index, not pickled to workers).
    """

    card: ModelCard
    profile: NMSProfile
    category_ids: tuple[int, ...] = ()
    gt: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["gt"] = None  # workers never summarize; the annotation index can be hundreds of MB
        return state

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def prepare(self, item: Any, rgb: np.ndarray) -> tuple[np.ndarray, DetectMeta]:
        x, geometry = preprocess(rgb, self.card.preprocess)
        image_id = int(getattr(item, "image_id", -1))  # -1: a timing-only image without annotations
        return x.astype(self.card.input.numpy_dtype, copy=False), DetectMeta(image_id, geometry)

    def encoded_meta(self, item: Any, geometry: Geometry | None) -> DetectMeta:
        """The meta of ``item`` when the server preprocessed it, with the server's geometry."""
        return DetectMeta(int(getattr(item, "image_id", -1)), geometry)

    def detections(self, outputs: Mapping[str, np.ndarray], geometry) -> Detections:
        """Detections of one image from raw outputs (NMS here) or ensemble outputs (NMS done)."""
        if OUT_COUNT in outputs:
            dets = unpad_detections(outputs[OUT_BOXES], outputs[OUT_SCORES], outputs[OUT_CLASSES], outputs[OUT_COUNT])
            return dets.finite().to_original(geometry)
        return card_detections(self.card, outputs, geometry, self.profile)

    def decode(self, outputs: Mapping[str, np.ndarray]) -> Detections:
        return self.detections(outputs, None)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return class_names(self.card)

    def result(self, outputs: Mapping[str, np.ndarray], meta: DetectMeta) -> detect_result.Detections:
        """One image's detections in original pixels, named by the card's labels."""
        dets = self.detections(outputs, meta.geometry)
        labels = tuple(self.names[int(c)] if 0 <= int(c) < len(self.names) else str(int(c)) for c in dets.classes)
        return detect_result.Detections(dets.boxes, dets.scores, dets.classes, labels)

    def record(self, result: detect_result.Detections, meta: DetectMeta) -> dict:
        return detection_record(meta.image_id, result)

    def summarize(self, records: Sequence[Mapping]) -> dict:
        if self.gt is None:
            raise ValueError("DetectAdapter.summarize needs the ground truth (gt)")
        if not records:
            return {**{k: None for k in METRIC_KEYS}, "detections": 0, "ground_truths": 0}
        metrics = coco_map(self.gt, records_to_coco(records, self.category_ids), [r["image_id"] for r in records])
        return {k: v for k, v in metrics.to_dict().items() if k != "images"}


# ------------------------------------------------------------------ options, metrics, details
@dataclass(frozen=True, kw_only=True)
class DetectionOptions(DatasetOptions):
    """Options of a detection eval: the stream options plus the dataset and the NMS set-up."""

    data: Path | None = field(default=None, metadata=arg(
        "--data", "COCO root with val2017/ and annotations/instances_val2017.json, or a YOLO data.yaml", kind="path"))
    images: Path | None = field(default=None, metadata=arg(
        "--images", "image folder (instead of COCO_ROOT/val2017)", kind="path"))
    annotations: Path | None = field(default=None, metadata=arg(
        "--annotations", "COCO instances JSON (instead of the val2017 one)", kind="path"))
    skip_missing: bool = field(default=False, metadata=arg(
        "--skip-missing", "evaluate the annotated images that are present; missing ones are counted, not an error",
        kind="switch"))
    nms_profile: str = field(default="ap", metadata=arg(
        "--nms-profile", "NMS profile for mAP (ap: conf 0.001 / IoU 0.65)"))
    timing_nms_profile: str | None = field(default=None, metadata=arg(
        "--timing-nms-profile", "NMS profile for run-model/run-stream timing (default: speed, conf 0.25 / IoU 0.45)"))
    limit: int | None = field(default=None, metadata=arg(
        "--limit", "evaluate only the first N images (by image id)", kind="int"))
    ultralytics_reference: Path | None = field(default=None, metadata=arg(
        "--ultralytics-reference", "predictions.json of ultralytics' validator on the same images (yolo val "
        "save_json=True rect=False): rescored here by pycocotools and reported beside tritonkit's mAP", kind="path"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data is None and (self.images is None or self.annotations is None):
            raise OptionsError("give the COCO root with {data} PATH, or {images} DIR and {annotations} FILE")


@dataclass(kw_only=True)
class DetectionMetrics(TaskMetrics):
    """COCO bbox mAP (fractions; None when nothing was evaluated) and the box counts."""

    map50_95: float | None = None
    map50: float | None = None
    map75: float | None = None
    map_small: float | None = None
    map_medium: float | None = None
    map_large: float | None = None
    detections: int = 0
    ground_truths: int = 0
    reference_map50_95: float | None = field(default=None, metadata=REFERENCE)
    reference_map50: float | None = field(default=None, metadata=REFERENCE)
    reference_map75: float | None = field(default=None, metadata=REFERENCE)
    reference_map_small: float | None = field(default=None, metadata=REFERENCE)
    reference_map_medium: float | None = field(default=None, metadata=REFERENCE)
    reference_map_large: float | None = field(default=None, metadata=REFERENCE)


@dataclass(kw_only=True)
class DetectionDetails:
    """Detection's served set-up in the result: where NMS ran, the two profiles, the COCO file."""

    server_nms: bool
    nms_profile: NMSProfile
    timing_nms_profile: NMSProfile
    coco_results: str | None = field(default=None, metadata=OMIT_NONE)
    per_image: dict | None = field(default=None, metadata=OMIT_NONE)   # see image_errors_summary
    ultralytics_reference: dict | None = field(default=None, metadata=OMIT_NONE)  # see ultralytics_reference

    def to_dict(self) -> dict:
        return to_flat_dict(self)


def image_errors(record: Mapping[str, Any], annotations: Sequence[Mapping[str, Any]],
                 category_ids: Sequence[int], conf: float = CONFIDENT_SCORE) -> dict:
    """One image's figures: ground-truth boxes (crowd ones left out), confident detections
    (score >= ``conf``), matched (same category, IoU >= 0.5, greedy by score), missed and false
    positives. Pure."""
    scores = np.asarray(record.get("scores", ()), np.float64)
    keep = scores >= conf
    boxes = np.asarray(record.get("boxes", ()), np.float64).reshape(-1, 4)[keep]
    cats = [category_ids[int(c)] if 0 <= int(c) < len(category_ids) else -1
            for c, k in zip(record.get("classes", ()), keep) if k]
    order = np.argsort(-scores[keep], kind="stable")
    gt = [a for a in annotations if not a.get("iscrowd")]
    gt_boxes = np.asarray([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                           for a in gt], np.float64).reshape(-1, 4)
    iou = box_iou(boxes, gt_boxes) if len(boxes) and len(gt) else np.zeros((len(boxes), len(gt)))
    taken: set[int] = set()
    for i in order:
        candidates = [(iou[i, j], j) for j, a in enumerate(gt)
                      if j not in taken and a["category_id"] == cats[i] and iou[i, j] >= MATCH_IOU]
        if candidates:
            taken.add(max(candidates)[1])
    matched = len(taken)
    return {"ground_truths": len(gt), "detections": int(keep.sum()), "matched": matched,
            "missed": len(gt) - matched, "false_positives": int(keep.sum()) - matched}


def image_errors_summary(records: Sequence[Mapping[str, Any]], coco, category_ids: Sequence[int]) -> dict:
    """Per-image counts over the run and the :data:`WORST_SHOWN` images with the most errors
    (missed + false positives; ties in dataset order)."""
    rows = []
    for r in records:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[int(r["image_id"])])) if coco is not None else []
        rows.append({"path": r.get("key"), "image_id": int(r["image_id"]), **image_errors(r, anns, category_ids)})
    worst = sorted((x for x in rows if x["missed"] + x["false_positives"]),
                   key=lambda x: -(x["missed"] + x["false_positives"]))
    counts = [x["detections"] for x in rows]
    return {"confident_score": CONFIDENT_SCORE, "match_iou": MATCH_IOU, "images": len(rows),
            "images_without_error": len(rows) - len(worst), "mean_detections": float(np.mean(counts)) if counts else None,
            "max_detections": max(counts) if counts else None, "worst": worst[:WORST_SHOWN]}


# ------------------------------------------------------------------------------ helpers
def category_ids_for(card: ModelCard, dataset) -> tuple[tuple[int, ...], list[int]]:
    """The card's class -> category id map and the card categories the dataset lacks."""
    by_name = _ids_by_name(card, dataset)
    if by_name is not None:
        return by_name
    if card.category_ids is not None:
        ids = tuple(card.category_ids)
    elif len(dataset.category_ids) == card.num_classes:
        ids = tuple(dataset.category_ids)  # class i -> the i-th category id in sorted order
    else:
        raise CardError(f"card {card.name!r} has no category_ids and {dataset.annotations_file} has "
                        f"{len(dataset.category_ids)} categories for its {card.num_classes} classes")
    return ids, check_categories(dataset, ids, card.name)


def _ids_by_name(card: ModelCard, dataset) -> tuple[tuple[int, ...], list[int]] | None:
    """Class -> category id by class name: always for a YOLO data.yaml; for a COCO JSON when the
    card has no category ids of its own and the categories carry names (COCO80 cards keep theirs)."""
    yolo = isinstance(dataset, YoloDataset)
    if card.category_ids is not None and not yolo:
        return None
    by_name = {c.get("name"): c["id"] for c in dataset.coco.dataset["categories"]}
    names = card.label_names()
    if not yolo and not set(names) & set(by_name):
        return None
    absent = [n for n in names if n not in by_name]
    if len(absent) == len(names):
        raise DatasetError(f"{dataset.annotations_file}: none of model {card.name!r}'s class names "
                           f"({', '.join(names[:5])}...) is a dataset class")
    unused = iter(range(-1, -len(names) - 1, -1))  # no dataset category: COCOeval ignores them
    return tuple(by_name[n] if n in by_name else next(unused) for n in names), absent


@dataclass(frozen=True)
class _CocoSource:
    dataset: Any                   # tritonkit.tasks.detect.coco.CocoDataset
    category_ids: tuple[int, ...]  # card class index -> dataset category id
    ultralytics: Any = None        # UltralyticsPredictions, when a reference was given


@dataclass(frozen=True)
class UltralyticsPredictions:
    """ultralytics' validator predictions read (and checked) before the stream starts."""

    path: Path
    results: list        # COCO results on the eval's annotations
    unknown: int         # predictions for images the annotations lack


def ultralytics_reference(ref: UltralyticsPredictions, gt: Any, image_ids: Sequence[int]) -> dict:
    """ultralytics' validator predictions rescored by pycocotools on ``gt`` over the images this
    eval evaluated: the same scorer as tritonkit's own mAP."""
    path, unknown = ref.path, ref.unknown
    metrics = coco_map(gt, ref.results, image_ids)
    return {"predictions": str(path), "map50": metrics.map50, "map50_95": metrics.map50_95,
            "detections": metrics.detections, "predictions_for_other_images": unknown}


def _load(options: "DetectionOptions"):
    """A YOLO data.yaml (``--data X.yaml``) or a COCO root / images + annotations."""
    if options.data is not None and options.data.suffix in (".yaml", ".yml"):
        return load_yolo(options.data, limit=options.limit)
    return load_coco_root(options.data, options.images, options.annotations, limit=options.limit,
                          missing="skip" if options.skip_missing else "error")


def _not_in_card(dataset, ids: Sequence[int]) -> list:
    """Names (else ids) of the dataset categories no card class maps to."""
    return [c.get("name", c["id"]) for c in dataset.coco.dataset["categories"] if c["id"] not in set(ids)]


def _timing_profile(card: ModelCard, asked: str | None, fallback: str) -> NMSProfile:
    """The profile asked for, else ``speed`` where the card has it, else ``fallback``."""
    return card.nms(asked or ("speed" if "speed" in {p.name for p in card.nms_profiles} else fallback))


def detection_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of one detection eval (from the dict in detection.json)."""
    bt = result.get("batch_timing") or []
    sizes = sorted({int(r["batch_size"]) for r in bt})
    wheres = [w for w in ("client", "server") if any(r["nms"] == w for r in bt)] or ["client"]
    headers = ["model"] + [f"run model bs{b} (ms)" for b in sizes] + [f"run stream p50 bs{b} (ms)" for b in sizes] \
        + [f"run stream bs{b} (img/s)" for b in sizes] + ["mAP50 (%)", "mAP50-95 (%)"]
    rows = []
    for where in wheres:
        by_bs = {int(r["batch_size"]): r for r in bt if r["nms"] == where}
        rows.append([f"{result.get('model')} ({where} NMS)"]
                    + [by_bs.get(b, {}).get("run_model_ms") for b in sizes]
                    + [by_bs.get(b, {}).get("run_stream_latency_p50_ms") for b in sizes]
                    + [by_bs.get(b, {}).get("run_stream_img_s") for b in sizes]
                    + [pct(result.get("map50")), pct(result.get("map50_95"))])
    prof = result.get("nms_profile") or {}
    parts = [f"# Detection: {result.get('model')}\n\n",
             f"{result.get('images', 0)} images evaluated through Triton ({result.get('protocol', '')} "
             f"{result.get('url', '')}, model `{result.get('served_model')}`), "
             f"{len(result.get('errors', []))} excluded (unreadable, not an image, or a malformed label line); NMS "
             f"{'on the server' if result.get('server_nms') else 'on the client'}, "
             f"profile `{prof.get('name')}` (conf {prof.get('conf_threshold')}, IoU {prof.get('iou_threshold')}, "
             f"max {prof.get('max_detections')}{', multi-label' if prof.get('multi_label') else ''}). "
             f"mAP is measured with the accuracy profile, times with "
             f"`{(result.get('timing_nms_profile') or {}).get('name')}`.\n\n",
             markdown_table(headers, rows)]
    return "".join(parts) + _accuracy_markdown(result) + _worst_markdown(result.get("per_image")) \
        + stream_markdown(result, stages=False) \
        + _timing_markdown(bt) + "".join(f"\n- {note}\n" for note in result.get("timing_notes") or [])


def _accuracy_markdown(result: Mapping[str, Any]) -> str:
    acc = [[name, pct(result.get(key)), pct(result.get(f"reference_{key}"))]
           for name, key in (("mAP50 (%)", "map50"), ("mAP50-95 (%)", "map50_95"), ("mAP75 (%)", "map75"),
                             ("mAP small (%)", "map_small"), ("mAP medium (%)", "map_medium"),
                             ("mAP large (%)", "map_large"))]
    ref = "reference_map50" in result
    return "\n## Accuracy (COCOeval, bbox)\n\n" + markdown_table(
        ["metric", "through Triton"] + (["onnxruntime in-process"] if ref else []),
        [row if ref else row[:2] for row in acc], digits=2) + _ultralytics_markdown(result)


def _ultralytics_markdown(result: Mapping[str, Any]) -> str:
    ultra = result.get("ultralytics_reference")
    if not ultra:
        return ""
    rows = [[name, pct(result.get(key)), pct(ultra.get(key)),
             None if result.get(key) is None or ultra.get(key) is None else pct(result[key] - ultra[key])]
            for name, key in (("mAP50 (%)", "map50"), ("mAP50-95 (%)", "map50_95"))]
    return (f"\nultralytics' validator predictions (`{ultra['predictions']}`, {ultra['detections']} boxes) rescored "
            f"by pycocotools on the same ground truth and images:\n\n"
            + markdown_table(["metric", "tritonkit through Triton", "ultralytics val", "difference (points)"],
                             rows, digits=2))


def _worst_markdown(per_image: Mapping[str, Any] | None) -> str:
    if not per_image:
        return ""
    head = (f"\n## Per image (detections with score >= {per_image['confident_score']:g}, matched at IoU "
            f"{per_image['match_iou']:g})\n\n{per_image['images_without_error']} of {per_image['images']} images "
            f"without a missed box or a false detection; {fmt(per_image['mean_detections'], 2)} detections per "
            f"image on average, at most {per_image['max_detections']}.\n")
    worst = per_image.get("worst") or []
    if not worst:
        return head
    return head + f"\nThe {len(worst)} worst images (missed + false detections):\n\n" + markdown_table(
        ["path", "ground truth", "detections", "matched", "missed", "false detections"],
        [[w["path"], w["ground_truths"], w["detections"], w["matched"], w["missed"], w["false_positives"]]
         for w in worst])


def _timing_markdown(bt: Sequence[Mapping[str, Any]]) -> str:
    if not bt:
        return ""
    return "\n## Run model (forward + NMS) vs run stream (decode + preprocess + forward + NMS)\n\n" + markdown_table(
        ["NMS", "batch size", "images", *TIMING_HEADERS, "client postprocess (ms/img)"],
        [[r["nms"], r["batch_size"], r["images"], *timing_cells(r), r.get("postprocess_ms_per_image")] for r in bt],
        digits=2) + f"\n{TIMING_MEASURED}\n"


# ----------------------------------------------------------------------------- the task
@register_task("detect")
class Detection(Task):
    """COCO bbox mAP through the served detector, NMS on the client or on the server."""

    title = "Detection"
    description = DESCRIPTION
    options_type = DetectionOptions
    metrics_type = DetectionMetrics
    metric_label = "mAP"
    postprocess_label = "nms"
    result_json = "detection.json"
    result_md = "detection.md"
    checkpoint = "detection.jsonl"
    e2e_time_covers = "annotation loading, connect and contract check, the accuracy stream, COCOeval"

    def open_dataset(self, options: DetectionOptions, card: ModelCard) -> OpenedData:
        ds = _load(options)
        ids, absent = category_ids_for(card, ds)
        items = [CocoItem(im.file_name, im.path, im.id) for im in ds.images]
        description = {"images_dir": str(ds.images_dir), "annotations": str(ds.annotations_file),
                       "images": len(items), "skipped_missing": ds.skipped_missing,
                       "card_categories_not_in_dataset": absent,
                       "dataset_categories_not_in_card": _not_in_card(ds, ids),
                       "label_problems": len(getattr(ds, "problems", []))}
        identity = {"nms_profile": options.nms_profile, "images_dir": str(ds.images_dir),
                    "annotations": str(ds.annotations_file), "image_ids": ds.image_ids}
        problems = list(getattr(ds, "problems", []))  # malformed YOLO label lines, skipped
        ultra = None
        if options.ultralytics_reference is not None:  # read now: a bad file fails before the stream runs
            ultra = UltralyticsPredictions(options.ultralytics_reference,
                                           *read_ultralytics_predictions(options.ultralytics_reference, ds.coco))
        return OpenedData(items, problems, description, identity, source=_CocoSource(ds, ids, ultra))

    def server_chains(self, card: ModelCard, variants: Sequence[str] = ()) -> list[PostprocessChain]:
        """One NMS chain per NMS profile (``variants``: profile names; empty: every profile of the card)."""
        return [nms_chain(card, card.nms(v)) for v in variants] or [nms_chain(card, p) for p in card.nms_profiles]

    def eval_chain(self, card: ModelCard, options: DetectionOptions) -> PostprocessChain:
        return nms_chain(card, card.nms(options.nms_profile))

    def timing_chain(self, card: ModelCard, options: DetectionOptions) -> PostprocessChain:
        return nms_chain(card, _timing_profile(card, options.timing_nms_profile, options.nms_profile))

    def details(self, options: DetectionOptions, card: ModelCard) -> "DetectionDetails":
        return DetectionDetails(server_nms=options.server_postprocess, nms_profile=card.nms(options.nms_profile),
                                timing_nms_profile=_timing_profile(card, options.timing_nms_profile,
                                                                   options.nms_profile))

    def adapter(self, options: DetectionOptions, card: ModelCard, data: OpenedData) -> DetectAdapter:
        src: _CocoSource = data.source
        return DetectAdapter(card, card.nms(options.nms_profile), src.category_ids, gt=src.dataset.coco)

    def after_stream(self, run: Any, stream: Any) -> None:
        path = write_results(run.out / COCO_RESULTS, records_to_coco(stream.records, run.adapter.category_ids))
        run.served.details.coco_results = str(path)
        run.served.details.per_image = image_errors_summary(stream.records, run.adapter.gt, run.adapter.category_ids)
        ultra = run.data.source.ultralytics
        if ultra is not None and stream.records:
            run.served.details.ultralytics_reference = ultralytics_reference(
                ultra, run.adapter.gt, [r["image_id"] for r in stream.records])

    def timing_adapter(self, card: ModelCard, options: DetectionOptions | None = None) -> DetectAdapter:
        if options is None:
            return DetectAdapter(card, _timing_profile(card, None, card.nms_profiles[0].name))
        return DetectAdapter(card, _timing_profile(card, options.timing_nms_profile, options.nms_profile))

    def predict_adapter(self, card: ModelCard, settings: PredictSettings) -> DetectAdapter:
        return DetectAdapter(card, _timing_profile(card, settings.nms_profile, card.nms_profiles[0].name))

    def predict_chain(self, card: ModelCard, settings: PredictSettings) -> PostprocessChain:
        """The NMS chain of the profile ``predict`` uses."""
        return nms_chain(card, _timing_profile(card, settings.nms_profile, card.nms_profiles[0].name))

    def timing_row(self, run: Any, where: str, row: Mapping[str, Any], timed: Any) -> dict:
        profile = run.served.details.timing_nms_profile
        return {"nms": where, "nms_profile": profile.name, **row,
                "postprocess_ms_per_image": timed.timing.per_stage()["postprocess"]["ms_per_image"]}

    def markdown(self, result: Mapping[str, Any]) -> str:
        return detection_markdown(result)

    def summary_rows(self, result: Any) -> list[tuple[str, str]]:
        m: DetectionMetrics = result.metrics
        rows = [("mAP50", pct_text(m.map50)), ("mAP50-95", pct_text(m.map50_95))]
        if m.has_reference:
            rows.append(("reference mAP50 (onnxruntime)", pct_text(m.reference_map50)))
        ultra = getattr(result.details, "ultralytics_reference", None)
        if ultra:
            rows += [("ultralytics val mAP50", pct_text(ultra["map50"])),
                     ("ultralytics val mAP50-95", pct_text(ultra["map50_95"]))]
        return rows



__all__ = ["Detection", "DetectionOptions", "DetectionMetrics", "DetectionDetails", "DetectAdapter", "DetectMeta",
           "CocoItem", "detection_record", "records_to_coco", "detection_markdown", "category_ids_for", "nms_chain",
           "COCO_RESULTS", "METRIC_KEYS", "image_errors", "image_errors_summary", "WORST_SHOWN", "CONFIDENT_SCORE"]
