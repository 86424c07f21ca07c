"""Detection accuracy and timing through Triton (COCO mAP, run model vs run stream, server NMS).

Reads COCO val2017 (``--data COCO_ROOT`` with ``val2017/`` and
``annotations/instances_val2017.json``, or ``--images DIR --annotations FILE``), checks the
annotations and the served model against the card, then streams every image through decode
-> letterbox/resize -> Triton -> decode + NMS (the card's ``--nms-profile``, ``ap`` by default)
-> boxes in original pixels, and scores them with pycocotools' COCOeval over exactly the
images evaluated (so ``--limit N`` gives the mAP of those N images).

Run model = forward + NMS with batches sent one at a time; run stream = decode + preprocess
+ forward + NMS with workers and several requests in flight; both at every batch size over
--timing-images images, with the ``--timing-nms-profile`` (``speed`` by default, as in the
usual YOLO speed tables). With --server-nms the detections come from the detector -> NMS
ensemble (``tritonkit.model_repository.ensemble``) and timing is reported for client-side and
server-side NMS side by side.

Writes <out>/detection.json, <out>/detection.md, the COCO results file
<out>/detections_coco.json and a per-image checkpoint <out>/detection.jsonl (--resume
continues an interrupted run). With --reference-onnx the same inputs also run through
onnxruntime in this process and reference_map50 / reference_map50_95 are reported.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tritonkit.cli.args import add_stream_arguments, stream_options
from tritonkit.client.decode import read_image_bytes
from tritonkit.client.infer import TritonInfer, contract_mismatches
from tritonkit.errors import CardError, ServerError, TritonkitError

RESULT_JSON = "detection.json"
RESULT_MD = "detection.md"
CHECKPOINT = "detection.jsonl"
COCO_RESULTS = "detections_coco.json"
METRIC_KEYS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")


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
    geometry: Any  # tritonkit.client.preprocess.Geometry


def detection_record(image_id: int, dets) -> dict:
    """The per-image record (JSON): boxes x1,y1,x2,y2 in original pixels, scores, class indices."""
    return {"image_id": int(image_id),
            "boxes": np.round(np.asarray(dets.boxes, np.float64), 3).tolist(),
            "scores": np.round(np.asarray(dets.scores, np.float64), 6).tolist(),
            "classes": np.asarray(dets.classes).astype(int).tolist()}


def records_to_coco(records: Sequence[Mapping], category_ids: Sequence[int]) -> list[dict]:
    """COCO results entries (bbox x,y,w,h; dataset category ids) from per-image records."""
    from tritonkit.client.coco import detections_to_coco
    from tritonkit.client.detection import Detections

    out: list[dict] = []
    for r in records:
        dets = Detections.create(np.asarray(r["boxes"], np.float64).reshape(-1, 4), r["scores"], r["classes"])
        out += detections_to_coco(r["image_id"], dets, category_ids)
    return out


@dataclass(frozen=True, eq=False)
class DetectAdapter:
    """Detection task for :func:`tritonkit.client.pipeline.run_stream`.

    ``prepare`` = the card's preprocessing (letterbox for YOLO, resize for SSD), keeping the
    geometry; ``postprocess`` = decode + NMS with ``profile`` (raw detector outputs) or just
    unpadding (outputs of the server-side NMS ensemble), then back to original pixels;
    ``summarize`` = COCOeval against ``gt`` (a pycocotools index, not pickled to workers).
    """

    card: Any
    profile: Any
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
        from tritonkit.client.preprocess import preprocess

        x, geometry = preprocess(rgb, self.card.preprocess)
        return x.astype(self.card.input.numpy_dtype, copy=False), DetectMeta(int(item.image_id), geometry)

    def detections(self, outputs: Mapping[str, np.ndarray], geometry):
        """Detections of one image from raw outputs (NMS here) or ensemble outputs (NMS done)."""
        from tritonkit.client.detection import postprocess_card, to_original, unpad_detections
        from tritonkit.model_repository.ensemble import OUT_BOXES, OUT_CLASSES, OUT_COUNT, OUT_SCORES

        if OUT_COUNT in outputs:
            dets = unpad_detections(outputs[OUT_BOXES], outputs[OUT_SCORES], outputs[OUT_CLASSES], outputs[OUT_COUNT])
            return to_original(dets, geometry)
        return postprocess_card(self.card, outputs, geometry, self.profile)

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: DetectMeta) -> dict:
        return detection_record(meta.image_id, self.detections(outputs, meta.geometry))

    def summarize(self, records: Sequence[Mapping]) -> dict:
        from tritonkit.client.coco import coco_map

        if self.gt is None:
            raise ValueError("DetectAdapter.summarize needs the ground truth (gt)")
        if not records:
            return {**{k: None for k in METRIC_KEYS}, "detections": 0, "ground_truths": 0}
        metrics = coco_map(self.gt, records_to_coco(records, self.category_ids), [r["image_id"] for r in records])
        return {k: v for k, v in metrics.to_dict().items() if k != "images"}


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class DetectEvalOptions:
    """Everything ``tritonkit eval detect`` takes, for callers that skip the CLI (demo, bench)."""

    model: str
    data: Path | None = None
    images: Path | None = None
    annotations: Path | None = None
    out: Path = Path("reports/eval")
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    model_name: str | None = None
    nms_profile: str = "ap"
    timing_nms_profile: str | None = None   # None -> "speed" if the card has it, else nms_profile
    server_nms: bool = False
    ensemble_name: str | None = None        # None -> <model>_ensemble_<profile>
    shm: bool = False
    batch_sizes: tuple[int, ...] = (1,)
    workers: int = 2
    in_flight: int = 2
    pool: str = "thread"
    limit: int | None = None
    skip_missing: bool = False
    timing_images: int = 64
    resume: bool = False
    reference_onnx: Path | None = None
    timeout_s: float = 60.0
    retries: int = 3
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise TritonkitError(f"--batch-sizes must be positive integers (got {list(self.batch_sizes)})")
        if self.data is None and (self.images is None or self.annotations is None):
            raise TritonkitError("give the COCO root with --data PATH, or --images DIR and --annotations FILE")
        if self.timing_images < 0:
            raise TritonkitError("--timing-images must be >= 0")
        if self.workers < 1 or self.in_flight < 1:
            raise TritonkitError("--workers and --in-flight must be >= 1")


# ------------------------------------------------------------------------------ helpers
def _category_ids(card, dataset) -> tuple[tuple[int, ...], list[int]]:
    """The card's class -> category id map and the card categories the dataset lacks."""
    from tritonkit.client.coco import check_categories

    if card.category_ids is not None:
        ids = tuple(card.category_ids)
    elif len(dataset.category_ids) == card.num_classes:
        ids = tuple(dataset.category_ids)  # class i -> the i-th category id in sorted order
    else:
        raise CardError(f"card {card.name!r} has no category_ids and {dataset.annotations_file} has "
                        f"{len(dataset.category_ids)} categories for its {card.num_classes} classes")
    return ids, check_categories(dataset, ids, card.name)


class EnsembleInfer(TritonInfer):
    """:class:`TritonInfer` for a detection ensemble: its optional ``geometry`` input is not one
    the client has to send (this client maps boxes back with its own geometry)."""

    def check_contract(self, batch_size: int) -> None:
        from tritonkit.model_repository.ensemble import GEOMETRY_INPUT

        meta, cfg = self.served_model()
        meta["inputs"].pop(GEOMETRY_INPUT, None)
        problems = contract_mismatches(self.card, meta, cfg, batch_size)
        if problems:
            raise ServerError(f"model {self.model_name!r} at {self.options.address} does not match card "
                              f"{self.card.name!r}: " + "; ".join(problems))


def _client(card, model_name: str, options: DetectEvalOptions, ensemble: bool) -> TritonInfer:
    """A connected client for the detector, or for the ensemble."""
    from tritonkit.client.infer import ClientOptions

    client_options = ClientOptions(url=options.url, protocol=options.protocol, model_name=model_name,
                                   in_flight=options.in_flight, timeout_s=options.timeout_s,
                                   retries=options.retries, shm=options.shm)
    cls = EnsembleInfer if ensemble else TritonInfer
    client = cls(card, client_options, max_batch=max(options.batch_sizes))
    try:
        client.connect()
    except BaseException:
        client.close()
        raise
    return client


def forward_nms(backend, adapter: DetectAdapter) -> Callable[[np.ndarray], Future]:
    """``submit``-like callable for run-model timing: one request, then NMS of every image in it
    (detection's run model is forward + NMS; with server NMS the request already includes it)."""
    def submit(batch: np.ndarray) -> Future:
        outputs = backend.submit(batch).result()
        for i in range(len(batch)):
            adapter.detections({k: v[i] for k, v in outputs.items()}, None)
        done: Future = Future()
        done.set_result(None)
        return done
    return submit


def _timing_rows(items, adapter: DetectAdapter, client, options: DetectEvalOptions, nms_where: str,
                 label: str) -> list[dict]:
    from tritonkit.client.pipeline import EngineOptions, run_stream
    from tritonkit.client.timing import batch_timing, run_model_times

    rows = []
    for bs in options.batch_sizes:
        t_opts = EngineOptions(batch_size=bs, workers=options.workers, in_flight=options.in_flight,
                               pool=options.pool, progress=options.progress, keep_batches=True,
                               description=f"{label} timing bs{bs} ({nms_where} NMS)")
        timed = run_stream(items, adapter, client, t_opts)
        model_s = run_model_times(forward_nms(client, adapter), timed.kept_batches)
        row = batch_timing(bs, model_s, sum(len(b) for b in timed.kept_batches), timed.wall_s,
                           timed.batches, timed.evaluated).to_dict()
        rows.append({"nms": nms_where, "nms_profile": adapter.profile.name, **row,
                     "postprocess_ms_per_image": timed.timing.per_stage()["postprocess"]["ms_per_image"]})
    return rows


# ----------------------------------------------------------------------------- the eval
def evaluate_detection(options: DetectEvalOptions) -> dict:
    """Run the whole detection eval; write the JSON/markdown reports; return the results dict.

    Raises :class:`~tritonkit.errors.TritonkitError` subclasses for unusable input (dataset,
    card, unreachable server, card/server mismatch). Accuracy results are written before the
    timing sweep starts, and every finished image is in the checkpoint.
    """
    from tritonkit.cards import get_card
    from tritonkit.client.classify_task import reference_backend
    from tritonkit.client.coco import load_coco_root, write_results
    from tritonkit.client.pipeline import EngineOptions, run_stream, summarize
    from tritonkit.client.timing import flagperf_metrics
    from tritonkit.model_repository.ensemble import EnsembleNames, ensemble_card

    t_start = time.perf_counter()
    card = get_card(options.model)
    if card.task != "detect":
        raise CardError(f"model {card.name!r} is a {card.task} model; use `tritonkit eval {card.task}`")
    profile = card.nms(options.nms_profile)
    timing_profile = card.nms(options.timing_nms_profile or (
        "speed" if "speed" in {p.name for p in card.nms_profiles} else options.nms_profile))
    dataset = load_coco_root(options.data, options.images, options.annotations, limit=options.limit,
                             missing="skip" if options.skip_missing else "error")
    category_ids, absent_categories = _category_ids(card, dataset)
    items = [CocoItem(im.file_name, im.path, im.id) for im in dataset.images]
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    detector = options.model_name or card.name
    served = (options.ensemble_name or EnsembleNames.for_detector(detector, profile.name).ensemble) \
        if options.server_nms else detector
    adapter = DetectAdapter(card, profile, category_ids, gt=dataset.coco)
    identity = {"task": "detect", "card": card.to_dict(), "served_model": served, "nms_profile": profile.name,
                "images_dir": str(dataset.images_dir), "annotations": str(dataset.annotations_file),
                "image_ids": dataset.image_ids,
                "reference_onnx": str(options.reference_onnx) if options.reference_onnx else None}
    checkpoint = out / CHECKPOINT
    result: dict = {
        "task": "detect", "model": card.name, "served_model": served, "server_nms": options.server_nms,
        "url": options.url, "protocol": options.protocol, "shm": options.shm,
        "dataset": {"images_dir": str(dataset.images_dir), "annotations": str(dataset.annotations_file),
                    "images": len(items), "skipped_missing": dataset.skipped_missing,
                    "card_categories_not_in_dataset": absent_categories},
        "nms_profile": _profile_dict(profile), "timing_nms_profile": _profile_dict(timing_profile),
        "batch_size": options.batch_sizes[0], "batch_sizes": list(options.batch_sizes),
        "workers": options.workers, "in_flight": options.in_flight, "pool": options.pool,
        "published": dict(card.reference),
    }
    serve_card = ensemble_card(card, served, profile) if options.server_nms else card
    reference = reference_backend(card, options.reference_onnx) if options.reference_onnx else None
    client = _client(serve_card, served, options, ensemble=options.server_nms)
    try:
        engine = EngineOptions(batch_size=options.batch_sizes[0], workers=options.workers,
                               in_flight=options.in_flight, pool=options.pool, checkpoint=checkpoint,
                               run_identity=identity, resume=options.resume, progress=options.progress,
                               description=f"{card.name} bs{options.batch_sizes[0]}")
        try:
            stream = run_stream(items, adapter, client, engine, reference=reference)
        except ServerError as exc:
            raise ServerError(f"{exc} (finished images are kept in {checkpoint}; rerun with --resume)") from None
        metrics = summarize(adapter, stream)
        results_path = write_results(out / COCO_RESULTS, records_to_coco(stream.records, category_ids))
        result.update({"images": stream.evaluated, "errors": stream.errors, "notes": stream.notes,
                       **{k: metrics.get(k) for k in (*METRIC_KEYS, "detections", "ground_truths")},
                       "resumed": stream.resumed, "coco_results": str(results_path),
                       "stream_images": stream.timing.images})  # images sent in this call (timing covers these)
        if reference is not None:
            result.update({"reference_onnx": str(options.reference_onnx),
                           **{f"reference_{k}": metrics.get(f"reference_{k}") for k in METRIC_KEYS},
                           "max_abs_diff": stream.max_abs_diff})
        result.update(flagperf_metrics(stream.timing, time.perf_counter() - t_start))
        result["e2e_time_covers"] = "annotation loading, connect and contract check, the accuracy stream, COCOeval"
        result["stages"] = stream.timing.per_stage()
        result["checkpoint"] = str(checkpoint)
        _write(out, result)
        result["batch_timing"], result["timing_notes"] = _timing(items[:options.timing_images], card,
                                                                 timing_profile, client, options, detector)
        result["timing_images"] = min(len(items), options.timing_images)
        result["retries"] = client.retries_done
    finally:
        client.close()
        if reference is not None:
            reference.close()
    _write(out, result)
    return result


def _timing(items, card, timing_profile, main_client, options: DetectEvalOptions, detector: str):
    """Run-model / run-stream rows for client-side NMS and, with --server-nms, server-side NMS.

    A model needed only for timing that is not served is a note, not a failure: the accuracy
    results are already written.
    """
    from tritonkit.model_repository.ensemble import EnsembleNames, ensemble_card

    if not items:
        return [], []
    adapter = DetectAdapter(card, timing_profile)
    rows, notes = [], []
    wanted = [("client", detector, card, False)]
    if options.server_nms:
        name = EnsembleNames.for_detector(detector, timing_profile.name).ensemble
        if options.ensemble_name and timing_profile.name == options.nms_profile:
            name = options.ensemble_name
        wanted.append(("server", name, ensemble_card(card, name, timing_profile), True))
    for where, name, serve_card, is_ensemble in wanted:
        same = (is_ensemble == options.server_nms and name == main_client.model_name)
        try:
            client = main_client if same else _client(serve_card, name, options, ensemble=is_ensemble)
        except ServerError as exc:
            notes.append(f"{where}-side NMS timing skipped: {exc}")
            continue
        try:
            rows += _timing_rows(items, adapter, client, options, where, card.name)
        finally:
            if client is not main_client:
                client.close()
    return rows, notes


def _profile_dict(p) -> dict:
    return {"name": p.name, "conf_threshold": p.conf_threshold, "iou_threshold": p.iou_threshold,
            "max_detections": p.max_detections, "class_agnostic": p.class_agnostic,
            "multi_label": p.multi_label}


def _write(out: Path, result: dict) -> None:
    from tritonkit.report import write_json, write_text

    write_json(out / RESULT_JSON, result)
    write_text(out / RESULT_MD, detection_markdown(result))


def _pct(x):
    return None if x is None else 100.0 * x


def detection_markdown(result: Mapping[str, Any]) -> str:
    """The markdown report of one ``tritonkit eval detect`` run."""
    from tritonkit.report import markdown_table

    bt = result.get("batch_timing") or []
    sizes = sorted({int(r["batch_size"]) for r in bt})
    wheres = [w for w in ("client", "server") if any(r["nms"] == w for r in bt)] or ["client"]
    headers = ["model"] + [f"run model bs{b} (ms)" for b in sizes] + [f"run stream bs{b} (ms)" for b in sizes] \
        + ["mAP50 (%)", "mAP50-95 (%)"]
    rows = []
    for where in wheres:
        by_bs = {int(r["batch_size"]): r for r in bt if r["nms"] == where}
        rows.append([f"{result.get('model')} ({where} NMS)"]
                    + [by_bs.get(b, {}).get("run_model_ms") for b in sizes]
                    + [by_bs.get(b, {}).get("run_stream_ms") for b in sizes]
                    + [_pct(result.get("map50")), _pct(result.get("map50_95"))])
    prof = result.get("nms_profile") or {}
    parts = [f"# Detection: {result.get('model')}\n\n",
             f"{result.get('images', 0)} images evaluated through Triton ({result.get('protocol', '')} "
             f"{result.get('url', '')}, model `{result.get('served_model')}`), "
             f"{len(result.get('errors', []))} excluded (unreadable or not an image); NMS {'on the server' if result.get('server_nms') else 'on the client'}, "
             f"profile `{prof.get('name')}` (conf {prof.get('conf_threshold')}, IoU {prof.get('iou_threshold')}, "
             f"max {prof.get('max_detections')}{', multi-label' if prof.get('multi_label') else ''}). mAP is measured with the accuracy profile, times with "
             f"`{(result.get('timing_nms_profile') or {}).get('name')}`.\n\n",
             markdown_table(headers, rows)]
    acc = [[name, _pct(result.get(key)), _pct(result.get(f"reference_{key}"))]
           for name, key in (("mAP50 (%)", "map50"), ("mAP50-95 (%)", "map50_95"), ("mAP75 (%)", "map75"),
                             ("mAP small (%)", "map_small"), ("mAP medium (%)", "map_medium"),
                             ("mAP large (%)", "map_large"))]
    ref = "reference_map50" in result
    parts += ["\n## Accuracy (COCOeval, bbox)\n\n",
              markdown_table(["metric", "through Triton"] + (["onnxruntime in-process"] if ref else []),
                             [row if ref else row[:2] for row in acc], digits=2)]
    lat = result.get("latency") or {}
    parts += ["\n## Stream metrics (accuracy run)\n\n",
              markdown_table(["e2e_time (s)", "p_infer_whole (img/s)", "p_infer_core (img/s)",
                              "latency mean (ms)", "p50", "p90", "p99"],
                             [[result.get("e2e_time"), result.get("p_infer_whole"), result.get("p_infer_core"),
                               lat.get("mean"), lat.get("p50"), lat.get("p90"), lat.get("p99")]])]
    if bt:
        parts += ["\n## Run model (forward + NMS) vs run stream (decode + preprocess + forward + NMS)\n\n",
                  markdown_table(["NMS", "batch size", "images", "run model (ms/batch)", "run model (img/s)",
                                  "run stream (ms/batch)", "run stream (img/s)", "client postprocess (ms/img)"],
                                 [[r["nms"], r["batch_size"], r["images"], r["run_model_ms"], r["run_model_img_s"],
                                   r["run_stream_ms"], r["run_stream_img_s"], r.get("postprocess_ms_per_image")]
                                  for r in bt], digits=2)]
    for note in result.get("timing_notes") or []:
        parts.append(f"\n- {note}\n")
    return "".join(parts)


# ------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="card name (tritonkit cards) or a card .json file")
    p.add_argument("--model-name", help="name the detector is served under (default: the card's name)")
    p.add_argument("--data", type=Path, help="COCO root with val2017/ and annotations/instances_val2017.json")
    p.add_argument("--images", type=Path, help="image folder (instead of COCO_ROOT/val2017)")
    p.add_argument("--annotations", type=Path, help="COCO instances JSON (instead of the val2017 one)")
    p.add_argument("--skip-missing", action="store_true",
                   help="evaluate the annotated images that are present; missing ones are counted, not an error")
    p.add_argument("--nms-profile", default="ap", help="NMS profile for mAP (ap: conf 0.001 / IoU 0.65)")
    p.add_argument("--timing-nms-profile",
                   help="NMS profile for run-model/run-stream timing (default: speed, conf 0.25 / IoU 0.45)")
    p.add_argument("--server-nms", action="store_true",
                   help="detections from the <model>_ensemble_<profile> ensemble (NMS on the server); "
                        "timing for client- and server-side NMS")
    p.add_argument("--ensemble-name", help="served name of the detection ensemble (with --server-nms)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (by image id)")
    add_stream_arguments(p, "detection.jsonl", "mAP")


def options_from_args(args: argparse.Namespace) -> DetectEvalOptions:
    return DetectEvalOptions(
        model=args.model, data=args.data, images=args.images, annotations=args.annotations,
        model_name=args.model_name, nms_profile=args.nms_profile, timing_nms_profile=args.timing_nms_profile,
        server_nms=args.server_nms, ensemble_name=args.ensemble_name, limit=args.limit,
        skip_missing=args.skip_missing, **stream_options(args))


def run(args: argparse.Namespace) -> int:
    result = evaluate_detection(options_from_args(args))
    _print_summary(result, Path(args.out))
    return 0


def _print_summary(result: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    table = Table(title=f"{result['model']}: {result.get('images', 0)} images")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mAP50", pct(result.get("map50")))
    table.add_row("mAP50-95", pct(result.get("map50_95")))
    if "reference_map50" in result:
        table.add_row("reference mAP50 (onnxruntime)", pct(result.get("reference_map50")))
    table.add_row("errors", str(len(result.get("errors", []))))
    for key in ("p_infer_whole", "p_infer_core"):
        if result.get(key) is not None:
            table.add_row(f"{key} (img/s)", f"{result[key]:.1f}")
    for row in result.get("batch_timing", []):
        if row.get("run_model_ms") is not None and row.get("run_stream_ms") is not None:
            table.add_row(f"bs{row['batch_size']} {row['nms']} NMS: run model / run stream (ms)",
                          f"{row['run_model_ms']:.1f} / {row['run_stream_ms']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"wrote {out / RESULT_JSON} and {out / RESULT_MD}")


__all__ = ["CocoItem", "DetectMeta", "DetectAdapter", "DetectEvalOptions", "EnsembleInfer", "evaluate_detection",
           "detection_record", "records_to_coco", "forward_nms", "detection_markdown", "add_arguments", "run"]
