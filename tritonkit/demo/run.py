"""`make demo`: the whole pipeline on generated data, served by the local Triton on the CPU.

generate data -> train (cached) -> export ONNX -> INT8 (QDQ) -> model repository (cpu target,
server-side NMS ensemble) -> start the bundled tritonserver -> eval classify / detect through
the server (fp32 and int8, each against the same ONNX in-process) -> short perf sweep ->
validate the deployment -> stop the server -> reports/demo/report.md.

Every step's outcome is kept in ``steps.json`` as it finishes: a step that fails is recorded
with its reason, later steps that do not depend on it still run, and nothing already written
is lost. The run fails (exit 1) when any step failed.
"""

from __future__ import annotations

import json
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tritonkit.build_engines.quantize import quantize_int8
from tritonkit.cards import get_card
from tritonkit.client.voc import IMAGES_DIR
from tritonkit.demo.report import write_demo_report
from tritonkit.demo.segshapes import ensure_segmentation_data, voc_folder
from tritonkit.demo.shapes import ensure_classification_data, ensure_detection_data
from tritonkit.demo.train import train_classifier, train_detector
from tritonkit.demo.train_seg import spec_for_card, train_segmenter
from tritonkit.errors import TritonkitError
from tritonkit.evaluate import evaluate
from tritonkit.model_repository.config import QueuePolicy, RepoOptions
from tritonkit.model_repository.ensemble import write_argmax_chain, write_nms_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.analyzer import ConcurrencyRange, PerfSpec, run_sweep
from tritonkit.perf.stalls import probe
from tritonkit.report import write_json
from tritonkit.serve.local import LocalServer, ServerOptions
from tritonkit.serve.profiles import API_KEY_ENV, local_options
from tritonkit.tasks.classification import ClassificationOptions
from tritonkit.tasks.detection import DetectionOptions
from tritonkit.tasks.segmentation import SegmentationOptions
from tritonkit.validate import ValidateOptions, validate
from tritonkit.validate.options import CHECK_GROUPS, OPT_IN_GROUPS
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
    calib_images: int = 128
    stall_probe_requests: int = 1000
    progress: bool = True


@dataclass
class Step:
    name: str
    status: str = "running"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class StepLog:
    """Steps and their outcome, rewritten to ``path`` after every step."""

    path: Path
    steps: list[Step] = field(default_factory=list)
    log: Callable[[str], None] = print

    @contextmanager
    def step(self, name: str):
        s = Step(name)
        self.steps.append(s)
        self.log(f"[demo] {name} ...")
        t0 = time.perf_counter()
        try:
            yield s
            s.status = "ok"
        except TritonkitError as exc:
            s.status, s.detail = "failed", str(exc).splitlines()[0]
        except Exception as exc:  # keep going; the reason and where it came from are recorded
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            s.status = "failed"
            s.detail = f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})"
        finally:
            s.seconds = round(time.perf_counter() - t0, 2)
            self.log(f"[demo] {name}: {s.status} in {s.seconds:.1f} s" + (f" — {s.detail}" if s.detail else ""))
            self.save()

    def ok(self, name: str) -> bool:
        return any(s.name == name and s.status == "ok" for s in self.steps)

    def skip(self, name: str, why: str) -> None:
        self.steps.append(Step(name, "skipped", 0.0, why))
        self.log(f"[demo] {name}: skipped — {why}")
        self.save()

    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.status == "failed"]

    def save(self) -> None:
        write_json(self.path, {"steps": [s.__dict__ for s in self.steps]})


@dataclass
class DemoState:
    """What the steps produce for later steps (paths and results)."""

    cls_data: Path | None = None
    det_data: Path | None = None
    cls_onnx: Path | None = None
    det_onnx: Path | None = None
    cls_int8: Path | None = None
    det_int8: Path | None = None
    cls_quant: object = None
    det_quant: object = None
    repo: Path | None = None
    served: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)


def _update_json(path: Path, extra: dict) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(extra)
    write_json(path, data)


def _calibration_images(root: Path, limit: int) -> list[Path]:
    """Training images for INT8 calibration (never the val images the accuracy is measured on)."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    step = max(1, len(files) // max(1, limit))
    return files[::step][:limit]


def run_demo(opts: DemoOptions = DemoOptions(), log: Callable[[str], None] = print) -> StepLog:
    out, work = Path(opts.out), Path(opts.work)
    out.mkdir(parents=True, exist_ok=True)
    steps = StepLog(out / "steps.json", log=log)
    st = DemoState(repo=work / "model_repository")
    cls_card, det_card = get_card(CLS_CARD), get_card(DET_CARD)

    with steps.step("generate data"):
        st.cls_data = Path(ensure_classification_data(work / "data" / "shapes_cls", seed=opts.seed))
        if opts.detection:
            st.det_data = Path(ensure_detection_data(work / "data" / "shapes_det", seed=opts.seed))

    try:
        _build(steps, st, opts, cls_card, det_card)
        if not st.served:
            steps.skip("serve + measure", "no model could be put in the repository")
        else:
            _serve_and_measure(steps, st, opts, out)
        segmentation_demo(steps, opts, out)
    finally:  # the report page sums up whatever was done, also after a failure
        with steps.step("report"):
            write_demo_report(out, steps.steps)
    return steps


def _build(steps: StepLog, st: DemoState, opts: DemoOptions, cls_card, det_card) -> None:
    """Train (or reuse), export, quantize, and write the repository."""
    work = Path(opts.work)
    if steps.ok("generate data"):
        with steps.step("train + export classifier"):
            res = train_classifier(st.cls_data, Path(opts.cache))
            st.cls_onnx = Path(res.onnx_path)
            st.results["train_classifier"] = {"val_top1_onnx": res.value, "cached": res.cached}
        if opts.detection:
            with steps.step("train + export detector"):
                res = train_detector(st.det_data, Path(opts.cache))
                st.det_onnx = Path(res.onnx_path)
                st.results["train_detector"] = {"val_map50_onnx": res.value, "cached": res.cached}
        if st.results:
            write_json(Path(opts.out) / "training.json", st.results)

    if opts.int8 and st.cls_onnx:
        with steps.step("int8 quantization (QDQ) classifier"):
            path = work / "onnx" / f"{CLS_INT8}.onnx"
            st.cls_quant = quantize_int8(cls_card, st.cls_onnx, path,
                                         _calibration_images(st.cls_data / "train", opts.calib_images), method="max")
            st.cls_int8 = path  # only once it exists
        if st.det_onnx:
            with steps.step("int8 quantization (QDQ) detector"):
                path = work / "onnx" / f"{DET_INT8}.onnx"
                st.det_quant = quantize_int8(det_card, st.det_onnx, path,
                                             _calibration_images(st.det_data / "train2017", opts.calib_images),
                                             method="max")
                st.det_int8 = path

    with steps.step("model repository (cpu target)"):
        _write_repository(st, cls_card, det_card)


def _serve_and_measure(steps: StepLog, st: DemoState, opts: DemoOptions, out: Path) -> None:
    import os
    import secrets

    # A production-profile deployment (restricted APIs behind a key made for this run, model
    # control none), so the validation at the end holds it to the production checks.
    key = os.environ.get(API_KEY_ENV) or secrets.token_urlsafe(24)
    server = LocalServer(local_options(st.repo, "production", env={API_KEY_ENV: key}),
                         log_path=out / "tritonserver.log")
    with steps.step("start local tritonserver (production profile)"):
        server.start(timeout_s=180)
    if not server.is_alive():
        return
    previous = os.environ.get(API_KEY_ENV)
    os.environ[API_KEY_ENV] = key
    try:
        _measure(steps, st, opts, server, out)
    finally:
        if previous is None:
            os.environ.pop(API_KEY_ENV, None)
        with steps.step("stop local tritonserver"):
            server.stop()


def _write_repository(st: DemoState, cls_card, det_card) -> None:
    from dataclasses import replace

    repo = st.repo
    if repo.is_dir():  # the demo's own build folder: start clean, so no model of an earlier run lingers
        import shutil

        shutil.rmtree(repo)
    # The demo's clients (eval, perf_analyzer) run on the server's own CPUs: idle onnxruntime
    # threads sleep rather than spin, so the clients get those CPUs (see RepoOptions.ort_spinning).
    opts = RepoOptions(target="cpu", max_queue_delay_us=200, ort_spinning=False)
    if st.cls_onnx:
        st.served.append(write_model(cls_card, st.cls_onnx, repo, opts).name)
        # Load shedding: a bounded queue whose waiting requests are rejected after a timeout, so
        # overload is shed cleanly and counted in /metrics (the validation's overload check).
        # It sits on its own copy of the classifier, not on the models whose latency and
        # accuracy are measured: a queue policy made some requests stall ~500 ms on the bundled
        # Triton (see tritonkit.perf.stalls), which the demo's stall probe measures again.
        guarded = replace(opts, name=CLS_GUARDED,
                          queue_policy=QueuePolicy(max_queue_size=GUARD_QUEUE_SIZE, timeout_us=GUARD_TIMEOUT_US))
        st.served.append(write_model(cls_card, st.cls_onnx, repo, guarded).name)
    if st.cls_int8:
        st.served.append(write_model(cls_card, st.cls_int8, repo, replace(opts, name=CLS_INT8)).name)
    if st.det_onnx:
        detector = write_model(det_card, st.det_onnx, repo, opts).name
        st.served.append(detector)
        # one ensemble per NMS profile: `ap` for mAP, `speed` for the run-model / run-stream times
        for profile in ("ap", "speed"):
            names = write_nms_chain(det_card, repo, detector, profile)
            st.served += [names.nms, names.ensemble]
    if st.det_int8:
        st.served.append(write_model(det_card, st.det_int8, repo, replace(opts, name=DET_INT8)).name)


def _measure(steps: StepLog, st: DemoState, opts: DemoOptions, server, out: Path) -> None:
    url = server.grpc_url
    if st.cls_onnx:
        with steps.step("eval classify fp32 through Triton"):
            evaluate("classify", ClassificationOptions(
                model=CLS_CARD, data=st.cls_data / "val", out=out, url=url, batch_sizes=DEMO_BATCH_SIZES,
                reference_onnx=st.cls_onnx, progress=opts.progress))
    if st.cls_int8 and steps.ok("eval classify fp32 through Triton"):
        with steps.step("eval classify int8 through Triton"):
            res = evaluate("classify", ClassificationOptions(
                model=CLS_CARD, model_name=CLS_INT8, data=st.cls_data / "val", out=out / "int8", url=url,
                batch_sizes=(8,), timing_images=0, reference_onnx=st.cls_int8, progress=opts.progress))
            q = st.cls_quant
            _update_json(out / "classification.json", {
                "int8_top1": res.metrics.top1, "int8_top5": res.metrics.top5,
                "int8_reference_top1": res.metrics.reference_top1,
                "fp32_model_mb": round(q.size_mb_fp32, 3), "int8_model_mb": round(q.size_mb_int8, 3),
                "precisions": {"fp32": "CPU, local Triton (python backend, onnxruntime)",
                               "int8": "CPU, local Triton (QDQ ONNX, onnxruntime)",
                               "fp16": "not measured: needs a GPU (TensorRT)"}})
    if st.det_onnx:
        with steps.step("eval detect fp32 through Triton (client + server NMS)"):
            evaluate("detect", DetectionOptions(
                model=DET_CARD, data=st.det_data, out=out, url=url, batch_sizes=DEMO_BATCH_SIZES,
                reference_onnx=st.det_onnx, server_nms=True, progress=opts.progress))
    if st.det_int8 and steps.ok("eval detect fp32 through Triton (client + server NMS)"):
        with steps.step("eval detect int8 through Triton"):
            res = evaluate("detect", DetectionOptions(
                model=DET_CARD, model_name=DET_INT8, data=st.det_data, out=out / "int8", url=url,
                batch_sizes=(8,), timing_images=0, reference_onnx=st.det_int8, progress=opts.progress))
            q = st.det_quant
            _update_json(out / "detection.json", {
                "int8_map50": res.metrics.map50, "int8_map50_95": res.metrics.map50_95,
                "int8_reference_map50": res.metrics.reference_map50,
                "fp32_model_mb": round(q.size_mb_fp32, 3), "int8_model_mb": round(q.size_mb_int8, 3)})
    if opts.perf:
        with steps.step("perf sweep (perf_analyzer)"):
            # Time windows of 1.5 s (hundreds of requests each for this model), stable within 25 % on
            # the average latency: a shared 2-core machine is noisy, and the CSV still has p50..p99.
            spec = PerfSpec(model=CLS_CARD, url=url, concurrency=ConcurrencyRange(1, 4, 1),
                            measurement_mode="time_windows", measurement_interval_ms=1500, stability_pct=25.0,
                            max_trials=8)
            sweep = run_sweep(spec, out / "perf", batch_sizes=DEMO_BATCH_SIZES)
            failed = [p for p in sweep.points if not p.ok]
            if failed:
                raise TritonkitError(f"{len(failed)} perf point(s) failed; see {out / 'perf' / 'sweep.md'}")
    if opts.perf and CLS_GUARDED in st.served:
        with steps.step("queue-policy stall probe"):
            card = get_card(CLS_CARD)
            runs = {name: probe(url, name, card, requests=opts.stall_probe_requests)
                    for name in (CLS_CARD, CLS_GUARDED)}
            write_json(out / "queue_policy.json", {
                "what": "sequential bs-1 requests (one in flight); a stall is slower than 20x the median and 50 ms",
                "models": {CLS_CARD: "dynamic batching, no queue policy",
                           CLS_GUARDED: f"same ONNX, default_queue_policy max_queue_size {GUARD_QUEUE_SIZE}, "
                                        f"timeout {GUARD_TIMEOUT_US / 1000:g} ms REJECT"},
                "results": {k: v.to_dict() for k, v in runs.items()}})
    if opts.validate:
        with steps.step("validate the deployment"):
            models = [m for m in (CLS_CARD, DET_CARD) if m in st.served]
            refs = {CLS_CARD: st.cls_onnx, DET_CARD: st.det_onnx}
            common = dict(url=url, http_url=server.http_url, metrics_url=server.metrics_url, repo=st.repo,
                          server_pid=server.process.pid, load_seconds=5.0, concurrency=4)
            # the measured models: every check but overload (they carry no queue policy) ...
            runs = [validate(ValidateOptions(
                models=tuple(models), checks=tuple(g for g in CHECK_GROUPS if g not in OPT_IN_GROUPS + ("overload",)),
                reference_onnx=tuple((m, str(refs[m])) for m in models if refs.get(m)), **common))]
            # ... and the load-shedding copy: its contract, then overload
            if CLS_GUARDED in st.served:
                runs.append(validate(ValidateOptions(models=(CLS_GUARDED,), checks=("readiness", "contract", "overload"),
                                                     **common)))
            report = ValidationReport.combine(runs)
            report.write(out / "validation")
            report.write_json(out / "validation.json")
            if not report.passed:
                raise TritonkitError(f"validation failed: see {out / 'validation' / 'report.md'}")


SEG_CARD = "demo_seg"
SEG_INT8 = "demo_seg_int8"
SEG_TARGET_MIOU = 0.6


def segmentation_demo(steps: StepLog, opts: DemoOptions, out: Path) -> None:
    """Segmentation end to end, on its own local Triton: the generated VOC-layout set, the
    segmenter trained on the CPU (cached), its int8 QDQ copy (calibrated on train images), a
    repository with the segmenter, its argmax ensemble and the int8 model, then ``eval segment``
    through Triton with the same batches in-process (fp32 and int8) and client- vs server-side
    argmax timing. Writes ``segmentation.json`` (int8 and training figures added) and fails the
    step when the served mIoU differs from the in-process one or is below 0.6."""
    card, work = get_card(SEG_CARD), Path(opts.work)
    with steps.step("segmentation: data, train, int8, serve, eval"):
        data = ensure_segmentation_data(work / "data" / "shapes_seg", seed=opts.seed, progress=opts.progress)
        trained = train_segmenter(data, Path(opts.cache), spec=spec_for_card(card), progress=opts.progress)
        onnx, int8 = Path(trained.onnx_path), work / "onnx" / f"{SEG_INT8}.onnx"
        calib = sorted((voc_folder(data) / IMAGES_DIR).glob("train_*.jpg"))[::4][:opts.calib_images]
        quant = quantize_int8(card, onnx, int8, calib, method="max") if opts.int8 else None
        repo = work / "seg_repository"
        repo_opts = RepoOptions(target="cpu", max_queue_delay_us=200, ort_spinning=False)
        write_model(card, onnx, repo, repo_opts)
        write_argmax_chain(card, repo, SEG_CARD)
        if quant is not None:
            write_model(card, int8, repo, RepoOptions(target="cpu", max_queue_delay_us=200, ort_spinning=False,
                                                      name=SEG_INT8))
        server = LocalServer(ServerOptions(model_repository=repo), log_path=out / "tritonserver_segmentation.log")
        server.start(timeout_s=180)
        try:
            common = dict(model=SEG_CARD, data=data, url=server.grpc_url, progress=opts.progress)
            res = evaluate("segment", SegmentationOptions(out=out, batch_sizes=DEMO_BATCH_SIZES,
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
