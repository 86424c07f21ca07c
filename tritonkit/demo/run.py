"""`make demo`: the whole pipeline on generated data, served by the local Triton on the CPU.

generate data -> train (cached) -> export ONNX -> INT8 (QDQ) -> model repository (cpu target,
server-side NMS ensemble) -> start the bundled tritonserver -> eval classify / detect through
the server (fp32 and int8, each against the same ONNX in-process) -> short perf sweep ->
validate the deployment -> stop the server -> reports/demo/report.md.

Each step is one function of a :class:`DemoRun` and one line in :data:`STEPS` (a
:class:`tritonkit.steps.Pipeline`): its id, the function, the steps it needs. Every step's
outcome is kept in ``steps.json`` as it finishes: a step that fails is recorded with its
reason, the steps that need it are skipped, the others still run, and nothing already written
is lost. The run fails (exit 1) when any step failed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tritonkit.build_engines.quantize import quantize_int8
from tritonkit.cards import ModelCard, get_card
from tritonkit.tasks.segment.voc import IMAGES_DIR
from tritonkit.demo.report import write_demo_report
from tritonkit.demo.segshapes import ensure_segmentation_data, voc_folder
from tritonkit.demo.shapes import ensure_classification_data, ensure_detection_data
from tritonkit.demo.train import train_classifier, train_detector
from tritonkit.demo.train_seg import spec_for_card, train_segmenter
from tritonkit.errors import TritonkitError
from tritonkit.evaluate import evaluate
from tritonkit.io import atomic_write_json
from tritonkit.model_repository.config import QueuePolicy, RepoOptions
from tritonkit.model_repository.ensemble import write_postprocess_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
from tritonkit.perf.stalls import probe
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.serve.local import LocalServer, ServerOptions
from tritonkit.serve.profiles import API_KEY_ENV, local_options
from tritonkit.steps import Pipeline, Step, StepLog, StepRecord, StepSkipped
from tritonkit.tasks.classify.task import ClassificationOptions
from tritonkit.tasks.detect.task import DetectionOptions
from tritonkit.tasks.segment.task import SegmentationOptions
from tritonkit.tasks.base import task_for_card
from tritonkit.validate import ValidateOptions, validate
from tritonkit.validate.groups import default_groups
from tritonkit.validate.report import ValidationReport

CLS_CARD = "demo_shapes"
DET_CARD = "demo_shapes_det"
CLS_INT8 = "demo_shapes_int8"
# The classifier again, behind a queue policy, for the overload check (see _write_repository).
CLS_GUARDED = "demo_shapes_guarded"
GUARD_QUEUE_SIZE = 64
GUARD_TIMEOUT_US = 100_000
DET_INT8 = "demo_shapes_det_int8"
DEMO_BATCH_SIZES = (1, 4, 8)
SEG_CARD = "demo_seg"
SEG_INT8 = "demo_seg_int8"
SEG_TARGET_MIOU = 0.6


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("reports/demo")
    work: Path = Path("build/demo")
    cache: Path = Path(".cache/demo")
    seed: int = 0
    int8: bool = True
    perf: bool = True
    validate: bool = True
    detection: bool = True
    segmentation: bool = True
    calib_images: int = 128
    stall_probe_requests: int = 1000
    progress: bool = True


@dataclass
class DemoRun:
    """One demo run: its options, and what the steps produce for later steps (paths, results)."""

    opts: DemoOptions
    log: StepLog
    cls_card: ModelCard = field(default_factory=lambda: get_card(CLS_CARD))
    det_card: ModelCard = field(default_factory=lambda: get_card(DET_CARD))
    cls_data: Path | None = None
    det_data: Path | None = None
    cls_onnx: Path | None = None
    det_onnx: Path | None = None
    cls_int8: Path | None = None
    det_int8: Path | None = None
    cls_quant: object = None
    det_quant: object = None
    served: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    server: LocalServer | None = None
    previous_key: str | None = None

    @property
    def out(self) -> Path:
        return Path(self.opts.out)

    @property
    def work(self) -> Path:
        return Path(self.opts.work)

    @property
    def repo(self) -> Path:
        return self.work / "model_repository"

    @property
    def url(self) -> str:
        return self.server.grpc_url


def _update_json(path: Path, extra: dict) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(extra)
    atomic_write_json(path, data)


def _calibration_images(root: Path, limit: int) -> list[Path]:
    """Training images for INT8 calibration (never the val images the accuracy is measured on)."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    step = max(1, len(files) // max(1, limit))
    return files[::step][:limit]


def _require(flag: bool, why: str) -> None:
    if not flag:
        raise StepSkipped(why)


# -- build ------------------------------------------------------------------------------------------

def generate_data(run: DemoRun) -> None:
    run.cls_data = Path(ensure_classification_data(run.work / "data" / "shapes_cls", seed=run.opts.seed))


def generate_detection_data(run: DemoRun) -> None:
    _require(run.opts.detection, "detection off")
    run.det_data = Path(ensure_detection_data(run.work / "data" / "shapes_det", seed=run.opts.seed))


def train_export_classifier(run: DemoRun) -> None:
    res = train_classifier(run.cls_data, Path(run.opts.cache))
    run.cls_onnx = Path(res.onnx_path)
    run.results["train_classifier"] = {"val_top1_onnx": res.value, "cached": res.cached}
    atomic_write_json(run.out / "training.json", run.results)


def train_export_detector(run: DemoRun) -> None:
    res = train_detector(run.det_data, Path(run.opts.cache))
    run.det_onnx = Path(res.onnx_path)
    run.results["train_detector"] = {"val_map50_onnx": res.value, "cached": res.cached}
    atomic_write_json(run.out / "training.json", run.results)


def quantize_classifier(run: DemoRun) -> None:
    _require(run.opts.int8, "int8 off")
    path = run.work / "onnx" / f"{CLS_INT8}.onnx"
    run.cls_quant = quantize_int8(run.cls_card, run.cls_onnx, path,
                                  _calibration_images(run.cls_data / "train", run.opts.calib_images), method="max")
    run.cls_int8 = path  # only once it exists


def quantize_detector(run: DemoRun) -> None:
    _require(run.opts.int8, "int8 off")
    path = run.work / "onnx" / f"{DET_INT8}.onnx"
    run.det_quant = quantize_int8(run.det_card, run.det_onnx, path,
                                  _calibration_images(run.det_data / "train2017", run.opts.calib_images), method="max")
    run.det_int8 = path


def write_repository(run: DemoRun) -> str:
    """The cpu-target repository of every model built so far (none of an earlier run lingers)."""
    repo, cls_card, det_card = run.repo, run.cls_card, run.det_card
    if repo.is_dir():  # the demo's own build folder: start clean
        shutil.rmtree(repo)
    # The demo's clients (eval, perf_analyzer) run on the server's own CPUs: idle onnxruntime
    # threads sleep rather than spin, so the clients get those CPUs (see RepoOptions.ort_spinning).
    opts = RepoOptions(target="cpu", max_queue_delay_us=200, ort_spinning=False)
    if run.cls_onnx:
        run.served.append(write_model(cls_card, run.cls_onnx, repo, opts).name)
        # Load shedding: a bounded queue whose waiting requests are rejected after a timeout, so
        # overload is shed cleanly and counted in /metrics (the validation's overload check).
        # It sits on its own copy of the classifier, not on the models whose latency and
        # accuracy are measured: a queue policy made some requests stall ~500 ms on the bundled
        # Triton (see tritonkit.perf.stalls), which the demo's stall probe measures again.
        guarded = replace(opts, name=CLS_GUARDED,
                          queue_policy=QueuePolicy(max_queue_size=GUARD_QUEUE_SIZE, timeout_us=GUARD_TIMEOUT_US))
        run.served.append(write_model(cls_card, run.cls_onnx, repo, guarded).name)
    if run.cls_int8:
        run.served.append(write_model(cls_card, run.cls_int8, repo, replace(opts, name=CLS_INT8)).name)
    if run.det_onnx:
        detector = write_model(det_card, run.det_onnx, repo, opts).name
        run.served.append(detector)
        # one ensemble per NMS profile: `ap` for mAP, `speed` for the run-model / run-stream times
        for chain in task_for_card(det_card).server_chains(det_card, ("ap", "speed")):
            names = write_postprocess_chain(det_card, repo, detector, chain)
            run.served += [names.postprocess, names.ensemble]
    if run.det_int8:
        run.served.append(write_model(det_card, run.det_int8, repo, replace(opts, name=DET_INT8)).name)
    if not run.served:
        raise TritonkitError("no model could be put in the repository")
    return f"{len(run.served)} models in {repo}"


# -- serve and measure ------------------------------------------------------------------------------

def start_server(run: DemoRun) -> None:
    """A production-profile deployment (restricted APIs behind a key made for this run, model
    control none), so the validation at the end holds it to the production checks."""
    key = os.environ.get(API_KEY_ENV) or secrets.token_urlsafe(24)
    run.server = LocalServer(local_options(run.repo, "production", env={API_KEY_ENV: key}),
                             log_path=run.out / "tritonserver.log")
    run.server.start(timeout_s=180)
    if not run.server.is_alive():
        run.server.stop()
        raise TritonkitError(f"tritonserver exited after start; see {run.out / 'tritonserver.log'}")
    run.previous_key = os.environ.get(API_KEY_ENV)
    os.environ[API_KEY_ENV] = key   # the clients below (eval, perf, validate) send it


def stop_server(run: DemoRun) -> None:
    if run.previous_key is None:
        os.environ.pop(API_KEY_ENV, None)
    else:
        os.environ[API_KEY_ENV] = run.previous_key
    run.server.stop()


def eval_classify_fp32(run: DemoRun) -> None:
    evaluate("classify", ClassificationOptions(
        model=CLS_CARD, data=run.cls_data / "val", out=run.out, url=run.url, batch_sizes=DEMO_BATCH_SIZES,
        reference_onnx=run.cls_onnx, progress=run.opts.progress))


def eval_classify_int8(run: DemoRun) -> None:
    res = evaluate("classify", ClassificationOptions(
        model=CLS_CARD, model_name=CLS_INT8, data=run.cls_data / "val", out=run.out / "int8", url=run.url,
        batch_sizes=(8,), timing_images=0, reference_onnx=run.cls_int8, progress=run.opts.progress))
    q = run.cls_quant
    _update_json(run.out / "classification.json", {
        "int8_top1": res.metrics.top1, "int8_top5": res.metrics.top5,
        "int8_reference_top1": res.metrics.reference_top1,
        "fp32_model_mb": round(q.size_mb_fp32, 3), "int8_model_mb": round(q.size_mb_int8, 3),
        "precisions": {"fp32": "CPU, local Triton (python backend, onnxruntime)",
                       "int8": "CPU, local Triton (QDQ ONNX, onnxruntime)",
                       "fp16": "not measured: needs a GPU (TensorRT)"}})


def eval_detect_fp32(run: DemoRun) -> None:
    """Client-side decoding, server-side NMS (the ``ap`` ensemble)."""
    evaluate("detect", DetectionOptions(
        model=DET_CARD, data=run.det_data, out=run.out, url=run.url, batch_sizes=DEMO_BATCH_SIZES,
        reference_onnx=run.det_onnx, server_postprocess=True, progress=run.opts.progress))


def eval_detect_int8(run: DemoRun) -> None:
    res = evaluate("detect", DetectionOptions(
        model=DET_CARD, model_name=DET_INT8, data=run.det_data, out=run.out / "int8", url=run.url,
        batch_sizes=(8,), timing_images=0, reference_onnx=run.det_int8, progress=run.opts.progress))
    q = run.det_quant
    _update_json(run.out / "detection.json", {
        "int8_map50": res.metrics.map50, "int8_map50_95": res.metrics.map50_95,
        "int8_reference_map50": res.metrics.reference_map50,
        "fp32_model_mb": round(q.size_mb_fp32, 3), "int8_model_mb": round(q.size_mb_int8, 3)})


def perf_sweep(run: DemoRun) -> None:
    _require(run.opts.perf, "perf off")
    # Time windows of 1.5 s (hundreds of requests each for this model), stable within 25 % on
    # the average latency: a shared 2-core machine is noisy, and the CSV still has p50..p99.
    spec = PerfSpec(model=CLS_CARD, url=run.url, concurrency=ConcurrencyRange(1, 4, 1),
                    measurement_mode="time_windows", measurement_interval_ms=1500, stability_pct=25.0, max_trials=8)
    sweep = run_sweep(spec, run.out / "perf", SweepOptions(batch_sizes=DEMO_BATCH_SIZES))
    failed = [p for p in sweep.points if not p.ok]
    if failed:
        raise TritonkitError(f"{len(failed)} perf point(s) failed; see {run.out / 'perf' / 'sweep.md'}")


def stall_probe(run: DemoRun) -> None:
    """Sequential requests to the classifier with and without a queue policy (queue_policy.json)."""
    _require(run.opts.perf, "perf off")
    _require(CLS_GUARDED in run.served, f"{CLS_GUARDED} not served")
    runs = {name: probe(run.url, name, run.cls_card, requests=run.opts.stall_probe_requests)
            for name in (CLS_CARD, CLS_GUARDED)}
    atomic_write_json(run.out / "queue_policy.json", {
        "what": "sequential bs-1 requests (one in flight); a stall is slower than 20x the median and 50 ms",
        "models": {CLS_CARD: "dynamic batching, no queue policy",
                   CLS_GUARDED: f"same ONNX, default_queue_policy max_queue_size {GUARD_QUEUE_SIZE}, "
                                f"timeout {GUARD_TIMEOUT_US / 1000:g} ms REJECT"},
        "results": {k: v.to_dict() for k, v in runs.items()}})


def validate_deployment(run: DemoRun) -> None:
    _require(run.opts.validate, "validate off")
    server = run.server
    models = [m for m in (CLS_CARD, DET_CARD) if m in run.served]
    refs = {CLS_CARD: run.cls_onnx, DET_CARD: run.det_onnx}
    common = dict(url=run.url, http_url=server.http_url, metrics_url=server.metrics_url, repo=run.repo,
                  server_pid=server.process.pid, load_seconds=5.0, concurrency=4)
    # the measured models: every check but overload (they carry no queue policy) ...
    runs = [validate(ValidateOptions(
        models=tuple(models), checks=tuple(g for g in default_groups() if g != "overload"),
        reference_onnx=tuple((m, str(refs[m])) for m in models if refs.get(m)), **common))]
    # ... and the load-shedding copy: its contract, then overload
    if CLS_GUARDED in run.served:
        runs.append(validate(ValidateOptions(models=(CLS_GUARDED,), checks=("readiness", "contract", "overload"),
                                             **common)))
    report = ValidationReport.combine(runs)
    report.write(run.out / "validation")
    report.write_json(run.out / "validation.json")
    if not report.passed:
        raise TritonkitError(f"validation failed: see {run.out / 'validation' / 'report.md'}")


def segmentation(run: DemoRun) -> str:
    """Segmentation end to end, on its own local Triton: the generated VOC-layout set, the
    segmenter trained on the CPU (cached), its int8 QDQ copy (calibrated on train images), a
    repository with the segmenter, its argmax ensemble and the int8 model, then ``eval segment``
    through Triton with the same batches in-process (fp32 and int8) and client- vs server-side
    argmax timing. Writes ``segmentation.json`` (int8 and training figures added) and fails
    when the served mIoU differs from the in-process one or is below 0.6."""
    _require(run.opts.segmentation, "segmentation off")
    opts, out, card, work = run.opts, run.out, get_card(SEG_CARD), run.work
    data = ensure_segmentation_data(work / "data" / "shapes_seg", seed=opts.seed, progress=opts.progress)
    trained = train_segmenter(data, Path(opts.cache), spec=spec_for_card(card), progress=opts.progress)
    onnx, int8 = Path(trained.onnx_path), work / "onnx" / f"{SEG_INT8}.onnx"
    calib = sorted((voc_folder(data) / IMAGES_DIR).glob("train_*.jpg"))[::4][:opts.calib_images]
    quant = quantize_int8(card, onnx, int8, calib, method="max") if opts.int8 else None
    repo = _segmentation_repository(card, onnx, int8 if quant is not None else None, work / "seg_repository")
    server = LocalServer(ServerOptions(model_repository=repo), log_path=out / "tritonserver_segmentation.log")
    server.start(timeout_s=180)
    try:
        common = dict(model=SEG_CARD, data=data, url=server.grpc_url, progress=opts.progress)
        res = evaluate("segment", SegmentationOptions(out=out, batch_sizes=DEMO_BATCH_SIZES, server_postprocess=True,
                                                      reference_onnx=onnx, **common))
        extra = {"train": {"val_miou_onnx": trained.value, "cached": trained.cached, "epochs": trained.epochs}}
        if quant is not None:
            q = evaluate("segment", SegmentationOptions(out=out / "int8", model_name=SEG_INT8, batch_sizes=(1,),
                                                        timing_images=0, reference_onnx=int8, **common))
            extra.update(int8_miou=q.metrics.miou, int8_reference_miou=q.metrics.reference_miou,
                         int8_pixel_accuracy=q.metrics.pixel_accuracy,
                         fp32_model_mb=round(quant.size_mb_fp32, 3), int8_model_mb=round(quant.size_mb_int8, 3))
        else:
            extra.update(int8_miou=None, int8_note="int8 skipped (--no-int8)")
    finally:
        server.stop()
    _update_json(out / "segmentation.json", extra)
    m = res.metrics
    if m.miou is None or m.miou != m.reference_miou or m.miou < SEG_TARGET_MIOU:
        raise TritonkitError(f"segmentation mIoU {m.miou} through Triton vs {m.reference_miou} in-process "
                             f"(must be equal and >= {SEG_TARGET_MIOU})")
    return f"mIoU {m.miou:.4f} through Triton = in-process, int8 {extra.get('int8_miou')}"


def _segmentation_repository(card: ModelCard, onnx: Path, int8: Path | None, repo: Path) -> Path:
    """The segmenter, its argmax ensemble and (when quantized) its int8 copy, cpu target."""
    repo_opts = RepoOptions(target="cpu", max_queue_delay_us=200, ort_spinning=False)
    write_model(card, onnx, repo, repo_opts)
    for chain in task_for_card(card).server_chains(card):
        write_postprocess_chain(card, repo, SEG_CARD, chain)
    if int8 is not None:
        write_model(card, int8, repo, replace(repo_opts, name=SEG_INT8))
    return repo


def report(run: DemoRun) -> str:
    """reports/demo/report.md from whatever was done, also after failures."""
    return str(write_demo_report(run.out, run.log.records))


# One line per step: id, function, the steps it needs. A step is skipped when one it needs did
# not succeed; the cleanup steps also run after an interrupt.
STEPS = Pipeline([
    Step("generate_data", generate_data),
    Step("generate_detection_data", generate_detection_data),
    Step("train_classifier", train_export_classifier, needs=("generate_data",)),
    Step("train_detector", train_export_detector, needs=("generate_detection_data",)),
    Step("quantize_classifier", quantize_classifier, needs=("train_classifier",)),
    Step("quantize_detector", quantize_detector, needs=("train_detector",)),
    Step("write_repository", write_repository),
    Step("start_server", start_server, needs=("write_repository",)),
    Step("eval_classify_fp32", eval_classify_fp32, needs=("start_server", "train_classifier")),
    Step("eval_classify_int8", eval_classify_int8, needs=("eval_classify_fp32", "quantize_classifier")),
    Step("eval_detect_fp32", eval_detect_fp32, needs=("start_server", "train_detector")),
    Step("eval_detect_int8", eval_detect_int8, needs=("eval_detect_fp32", "quantize_detector")),
    Step("perf_sweep", perf_sweep, needs=("start_server", "train_classifier")),
    Step("stall_probe", stall_probe, needs=("start_server", "train_classifier")),
    Step("validate_deployment", validate_deployment, needs=("start_server",)),
    Step("stop_server", stop_server, needs=("start_server",), cleanup=True),
    Step("segmentation", segmentation),
    Step("report", report, cleanup=True),
])


def run_demo(opts: DemoOptions = DemoOptions(), on_step: Callable[[StepRecord], None] | None = None) -> StepLog:
    """Run :data:`STEPS`; the log is also in ``<out>/steps.json``."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    log = StepLog(out / "steps.json", on_event=on_step)
    return STEPS.run(DemoRun(opts, log), log)
