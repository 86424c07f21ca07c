"""A GPU check for a host with only CUDA, torch and torchvision (no TensorRT, DALI, Docker or
tritonclient), into one JSON report (``scripts/gpu_check.py`` runs it).

Steps, each recorded ok / failed / skipped with a one-line detail and its measured values:

* ``export_build_fp16`` (needs no GPU): ``demo_shapes`` exported to ONNX (trained weights when
  found, else random with seed 0), then ``build --precision fp16`` as the library runs it: without
  TensorRT it must stop before any work with one line carrying the ``docker run`` of NGC's
  ``tensorrt:<release>-py3`` that builds the plan, which the step records.
* ``gpu_queries``: every GPU as nvidia-smi (name, compute capability, PCI bus id), the CUDA driver
  (``cuda_compute_capability``, the fallback for drivers without ``compute_cap``;
  ``cuda_device_bus_id``, which ``build --gpu N`` checks), NVML (``pynvml``) and torch
  (``get_device_capability``, the device UUID) see it; they must agree.
* ``nvjpeg_decode`` (a proxy, see :data:`PROXIES`): JPEGs (demo shapes and smooth photos; 4:2:0,
  4:2:2, 4:4:4 and greyscale) decoded by nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``)
  and by the client's decode (Pillow here), compared in grey levels.
* ``fp16_agreement`` per demo card (a proxy): the torch model in fp32 and in fp16 on the GPU
  (TF32 off) on generated demo images, compared as the task reads its outputs (top-1, boxes and
  scores, mask pixels). Trained weights are judged against :data:`FP16_LIMITS`; random ones (no
  weights folder) are measured and said to be random.

Without a CUDA device every GPU step is ``skipped`` ("no CUDA device"). :data:`UNVERIFIED` lists
what no step here can confirm. Nothing here prints; nothing needs the network.
"""

from __future__ import annotations

import copy
import io
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritonkit import __version__
from tritonkit._lazy import lazy_import
from tritonkit.build_engines.builder import build_plan
from tritonkit.build_engines.host import bus_key, cuda_compute_capability, cuda_device_bus_id, host_gpus
from tritonkit.build_engines.releases import DEFAULT_RELEASE, container_tensorrt
from tritonkit.build_engines.spec import make_spec
from tritonkit.build_engines.trtexec import container_command
from tritonkit.cards import ModelCard, get_card
from tritonkit.client.decode import decode_image
from tritonkit.client.preprocess import preprocess
from tritonkit.demo.segshapes import SegmentationSetSpec, draw_segmentation_image, segmentation_classes
from tritonkit.demo.shapes import (
    ClassificationSetSpec, DetectionSetSpec, classification_classes, detection_classes, draw_classification_image,
    draw_detection_image)
from tritonkit.demo.train import RESULT_FILE, WEIGHTS_FILE
from tritonkit.errors import ToolMissingError, TritonkitError
from tritonkit.export import build_model, export_model, load_weights
from tritonkit.export.builders import adapted_outputs
from tritonkit.io import atomic_write_json
from tritonkit.steps import FAILED, RUNNING, StepLog, StepRecord

torch = lazy_import("torch")
tv_io = lazy_import("torchvision.io", "torchvision")
pynvml = lazy_import("pynvml", "nvidia-ml-py")
Image = lazy_import("PIL.Image", "pillow")

CHECK_CARDS = ("demo_shapes", "demo_shapes_det", "demo_seg")
NO_CUDA = "no CUDA device"
PROXIES = {
    "nvjpeg_decode": "proxy for DALI's fn.decoders.image(device='mixed') in the served <model>_dali pipeline: "
                     "torchvision's decode_jpeg(device='cuda') is nvJPEG too, but outside DALI and Triton",
    "fp16_agreement": "proxy for a TensorRT fp16 plan: torch fp16 (cuDNN/cuBLAS kernels, no TensorRT fusions or "
                      "tactics) shows whether the model tolerates half precision, not what TensorRT builds",
}
UNVERIFIED = (
    "DALI: no <model>_dali/1/dali.py is loaded by Triton's dali backend here (no DALI, no tritonserver); "
    "tests/test_dali_pipeline.py checks it without a GPU",
    "TensorRT: no plan is built or run (not installed here); build --precision fp16 is checked up to its "
    "one-line error and the docker command it prints",
    "the container: no tritonserver or tensorrt image is pulled or run (no Docker here): the serve image, the "
    "plan-builder and the printed docker commands are not executed",
)
# fp16 vs fp32 limits for trained weights: top-1 / pixel agreement, detector score and box differences
FP16_LIMITS = {"top1_agreement": 0.97, "pixel_agreement": 0.99, "max_score_diff": 0.02, "max_box_diff_px": 1.0}
# nvJPEG vs the client's decode, in grey levels. Measured on an H200 (torch 2.11, torchvision 0.26): 4:4:4
# and greyscale JPEGs decode identically (the IDCT agrees); 4:2:0 and 4:2:2 ones differ where the colour
# changes sharply (chroma upsampling: up to 46 levels at the demo shapes' edges, mean 2.2 at most;
# smooth photos max 6, mean 0.13). Beyond these limits the decode is wrong, not differently upsampled.
NVJPEG_LIMITS = {"full_chroma_max": 1, "subsampled_mean": 3.0}


@dataclass(frozen=True, kw_only=True)
class GpuCheckOptions:
    out: Path                                   # the report file
    work: Path = Path("build/gpu_check")        # exported ONNX and the would-be plan
    demo_weights: Path | None = None            # a folder with the demo's trained models (.cache/demo)
    cards: tuple[str, ...] = CHECK_CARDS
    images: int = 32
    seed: int = 0


@dataclass
class GpuCheckReport:
    host: dict
    steps: list[StepRecord] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)
    proxies: dict[str, str] = field(default_factory=lambda: dict(PROXIES))
    unverified: list[str] = field(default_factory=lambda: list(UNVERIFIED))

    @property
    def failed(self) -> bool:
        return any(s.status == FAILED for s in self.steps)

    def to_dict(self) -> dict:
        return {"schema": 1, "tritonkit_version": __version__, **asdict(self), "failed": self.failed}


@dataclass(frozen=True)
class Outcome:
    """What one step measured: a one-line summary, the values, and whether they pass."""

    summary: str
    data: dict
    ok: bool = True


# ------------------------------------------------------------------------------ host and GPUs

def cuda_available() -> bool:
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except ToolMissingError:
        return False


def _version(module) -> str | None:
    try:
        return str(module.__version__)
    except ToolMissingError:
        return None


def host_info() -> dict:
    cuda = cuda_available()
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": _version(torch),
            "torchvision": _version(lazy_import("torchvision")), "cuda": cuda,
            "torch_cuda": str(torch.version.cuda) if cuda else None,
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []}


def _text(value) -> str:
    """nvidia-ml-py returns bytes or str depending on its version."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _uuid(value) -> str:
    return _text(value).lower().removeprefix("gpu-")


def nvml_gpus() -> list[dict]:
    """Every GPU NVML sees: name, compute capability, PCI bus id, UUID."""
    pynvml.nvmlInit()
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append({"name": _text(pynvml.nvmlDeviceGetName(handle)), "cc": f"{major}.{minor}",
                         "bus": _text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
                         "uuid": _uuid(pynvml.nvmlDeviceGetUUID(handle))})
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _torch_gpu(ordinal: int, nvml: list[dict]) -> dict:
    props = torch.cuda.get_device_properties(ordinal)
    major, minor = torch.cuda.get_device_capability(ordinal)
    uuid = _uuid(getattr(props, "uuid", ""))
    twin = next((g for g in nvml if g["uuid"] == uuid), None)
    return {"ordinal": ordinal, "name": props.name, "cc": f"{major}.{minor}", "uuid": uuid,
            "nvml_bus": twin and twin["bus"], "driver_bus": cuda_device_bus_id(ordinal)}


def gpu_queries() -> Outcome:
    """nvidia-smi, the CUDA driver, NVML and torch on every GPU; compute capabilities and bus ids agree."""
    nvml = nvml_gpus()
    rows = []
    for gpu in host_gpus():
        twin = next((g for g in nvml if bus_key(g["bus"]) == bus_key(gpu.pci_bus_id)), {})
        rows.append({"name": gpu.name, "bus": gpu.pci_bus_id, "nvidia_smi": gpu.compute_capability,
                     "libcuda": cuda_compute_capability(gpu.pci_bus_id) if gpu.pci_bus_id else None,
                     "nvml": twin.get("cc"), "uuid": twin.get("uuid")})
    devices = [_torch_gpu(i, nvml) for i in range(torch.cuda.device_count())]
    problems = [f"{r['bus']}: nvidia-smi {r['nvidia_smi']}, libcuda {r['libcuda']}, NVML {r['nvml']}"
                for r in rows if not r["nvidia_smi"] == r["libcuda"] == r["nvml"]]
    for d in devices:
        smi = next((r for r in rows if r["uuid"] == d["uuid"]), None)
        if smi is None or smi["nvidia_smi"] != d["cc"] or bus_key(d["driver_bus"]) != bus_key(d["nvml_bus"]):
            problems.append(f"CUDA device {d['ordinal']}: torch {d['cc']} (uuid {d['uuid']}), driver bus "
                            f"{d['driver_bus']}, NVML bus {d['nvml_bus']}, nvidia-smi {smi and smi['nvidia_smi']}")
    data = {"gpus": rows, "cuda_devices": devices, "problems": problems}
    if problems:
        return Outcome("GPU queries disagree: " + "; ".join(problems), data, ok=False)
    return Outcome(f"{len(rows)} GPU(s): nvidia-smi, libcuda, NVML and torch agree "
                   f"({', '.join(sorted({r['name'] + ' sm ' + r['nvidia_smi'] for r in rows}))})", data)


# ------------------------------------------------------------------- export and fp16 build

def trained_weights(folder: Path | None, card: ModelCard) -> Path | None:
    """The demo's trained weights for ``card`` under ``folder`` (``<key>/train.json`` naming the card and
    its ``weights.pth``; the newest when several), or None."""
    if folder is None or not Path(folder).is_dir():
        return None
    found = []
    for result in Path(folder).glob(f"*/{RESULT_FILE}"):
        try:
            named = json.loads(result.read_text()).get("card")
        except (OSError, ValueError):
            continue
        weights = result.parent / WEIGHTS_FILE
        if named == card.name and weights.is_file():
            found.append(weights)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def export_build_fp16(card: ModelCard, work: Path, weights: Path | None) -> Outcome:
    """Export ``card`` and ask for its fp16 plan; without TensorRT: one line naming the docker command."""
    source = {"weights": weights} if weights is not None else {"random_weights": True}
    onnx = export_model(card, work / "onnx", **source).onnx_path
    spec = make_spec(card, onnx, "fp16", work / "plans" / f"{card.name}_fp16.plan", max_batch=8)
    command = container_command(spec, DEFAULT_RELEASE, container_tensorrt(DEFAULT_RELEASE).version)
    data = {"onnx": str(onnx), "weights": str(weights) if weights else "random (seed 0)", "docker_command": command}
    try:
        built = build_plan(spec)
    except ToolMissingError as exc:
        message = str(exc)
        data.update(error=message, one_line="\n" not in message, command_in_error=command in message)
        ok = data["one_line"] and data["command_in_error"] and message.startswith("TensorRT is missing here")
        return Outcome(f"no TensorRT: one-line error{' with' if ok else ' WITHOUT'} the docker command", data, ok)
    data.update(plan=str(built.plan), tensorrt=built.sidecar.tensorrt_version)
    return Outcome(f"TensorRT {built.sidecar.tensorrt_version} is installed here: built {built.plan}", data)


# ------------------------------------------------------------------------------ nvJPEG decode

def _smooth_photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 220 / w, yy * 220 / h, 255 - xx * 120 / w - yy * 60 / h], axis=-1)
    return np.clip(base + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)


def sample_jpegs(seed: int = 0) -> dict[str, bytes]:
    """JPEGs of demo shapes and smooth photos at 4:2:0, 4:2:2 and 4:4:4 (PIL's ``subsampling`` 2, 1, 0)
    and in greyscale, named by how they were made."""
    rng = np.random.default_rng(seed)
    images = {f"shape_{kind}": draw_classification_image(rng, kind, ClassificationSetSpec())
              for kind in classification_classes()[:3]}
    images["photo_333x500"] = _smooth_photo(rng, 333, 500)
    jpegs = {}
    for name, rgb in images.items():
        for subsampling, label in ((2, "420"), (1, "422"), (0, "444")):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=90, subsampling=subsampling)
            jpegs[f"{name}_{label}"] = buf.getvalue()
        buf = io.BytesIO()
        Image.fromarray(rgb).convert("L").save(buf, format="JPEG", quality=90)
        jpegs[f"{name}_grey"] = buf.getvalue()
    return jpegs


FULL_CHROMA = ("_444", "_grey")          # sample_jpegs' names without chroma subsampling


def _levels(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(diff.max()), "mean": round(float(diff.mean()), 4), "p99": float(np.percentile(diff, 99)),
            "within_2_levels": round(float((diff <= 2).mean()), 6)}


def nvjpeg_decode(jpegs: dict[str, bytes], device: str = "cuda") -> Outcome:
    """nvJPEG (torchvision on ``device="cuda"``) against the client's decode, per JPEG, in grey levels.
    (``device="cpu"`` runs torchvision's libjpeg decode through the same comparison.)"""
    per_image, bad = {}, []
    for name, data in jpegs.items():
        client = np.asarray(decode_image(data).pil)
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            gpu = tv_io.decode_jpeg(tensor, mode=tv_io.ImageReadMode.RGB, device=device)
        except Exception as exc:  # noqa: BLE001 - recorded per image; the other images are still compared
            bad.append(f"{name}: decode_jpeg failed ({type(exc).__name__}: {str(exc).strip()[:200]})")
            continue
        gpu = gpu.permute(1, 2, 0).cpu().numpy()
        if gpu.shape != client.shape:
            bad.append(f"{name}: nvJPEG {gpu.shape} vs client {client.shape}")
            continue
        per_image[name] = levels = _levels(gpu, client)
        if name.endswith(FULL_CHROMA) and levels["max"] > NVJPEG_LIMITS["full_chroma_max"]:
            bad.append(f"{name}: max {levels['max']} grey levels (no chroma subsampling: the decodes should agree)")
        elif not name.endswith(FULL_CHROMA) and levels["mean"] > NVJPEG_LIMITS["subsampled_mean"]:
            bad.append(f"{name}: mean {levels['mean']} grey levels")
    full = [v for k, v in per_image.items() if k.endswith(FULL_CHROMA)]
    sub = [v for k, v in per_image.items() if not k.endswith(FULL_CHROMA)]
    data = {"client_decoder": "tritonkit.client.decode (Pillow; simplejpeg where installed)",
            "images": per_image, "problems": bad, "limits": NVJPEG_LIMITS}
    worst = {key: max((v[key] for v in sub), default=0) for key in ("max", "mean")}
    summary = (f"{len(per_image)}/{len(jpegs)} JPEGs, nvJPEG vs client: 4:4:4 and grey max "
               f"{max((v['max'] for v in full), default=0)}; 4:2:0 and 4:2:2 max {worst['max']}, "
               f"worst mean {worst['mean']} grey levels")
    return Outcome(summary + (f"; {'; '.join(bad)}" if bad else ""), data, ok=not bad)


# -------------------------------------------------------------------------- fp16 agreement

def demo_inputs(card: ModelCard, n: int, seed: int) -> list[np.ndarray]:
    """``n`` generated demo images of the card's task, preprocessed as the card says (``[1, C, H, W]``
    each; segmentation images keep their own sizes)."""
    rng = np.random.default_rng(seed)
    pp = card.preprocess
    out = []
    for i in range(n):
        if card.task == "classify":
            kinds = classification_classes()
            x, _ = preprocess(draw_classification_image(rng, kinds[i % len(kinds)], ClassificationSetSpec()), pp)
        elif card.task == "detect":
            x, _ = preprocess(draw_detection_image(rng, DetectionSetSpec(), detection_classes())[0], pp)
        else:
            img, _ = draw_segmentation_image(rng, SegmentationSetSpec(), segmentation_classes())
            x, _ = preprocess(img, pp)
        out.append(np.asarray(x, np.float32)[None])
    return out


def _compare(task: str, a: np.ndarray, b: np.ndarray) -> dict:
    """fp32 (``a``) vs fp16 (``b``) outputs as the task reads them."""
    if task == "classify":
        return {"top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()),
                "max_logit_diff": float(np.abs(a - b).max())}
    if task == "detect":                      # [N, cells, 5 + C]: cx, cy, w, h (pixels), objectness, classes
        return {"max_box_diff_px": float(np.abs(a[..., :4] - b[..., :4]).max()),
                "max_score_diff": float(np.abs(a[..., 4:] - b[..., 4:]).max())}
    return {"pixel_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_logit_diff": float(np.abs(a - b).max())}


def _passes(metrics: dict) -> bool:
    return all(metrics[k] >= v if k.endswith("agreement") else metrics[k] <= v
               for k, v in FP16_LIMITS.items() if k in metrics)


def _run(built, card: ModelCard, module, inputs: list[np.ndarray], half: bool) -> list[np.ndarray]:
    """The card's first output for each input (read through the builder's output adapter)."""
    dtype = torch.float16 if half else torch.float32
    device = next(module.parameters()).device
    with torch.no_grad():
        outs = [adapted_outputs(built, module(torch.from_numpy(x).to(device, dtype)), card)[0] for x in inputs]
    return [o.float().cpu().numpy() for o in outs]


def fp16_agreement(card: ModelCard, weights: Path | None, n: int, seed: int, device: str = "cuda") -> Outcome:
    """The card's torch model in fp32 and fp16 on the GPU (TF32 off), on generated demo images.
    (``device="cpu"`` runs the same comparison with torch's CPU kernels.)"""
    built = build_model(card)
    if weights is not None:
        load_weights(built, weights, card)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    module = built.module.eval().to(device)
    inputs = demo_inputs(card, n if card.task != "segment" else max(1, n // 4), seed)
    fp32 = _run(built, card, module, inputs, half=False)
    fp16 = _run(built, card, copy.deepcopy(module).half(), inputs, half=True)
    per = [_compare(card.task, a, b) for a, b in zip(fp32, fp16)]
    keys = per[0].keys()
    metrics = {k: (min if k.endswith("agreement") else max)(p[k] for p in per) for k in keys}
    if card.task != "detect":                # agreement over every sample, not the worst single one
        key = "top1_agreement" if card.task == "classify" else "pixel_agreement"
        metrics[key] = float(np.mean([p[key] for p in per]))
    judged = weights is not None
    data = {"weights": str(weights) if judged else "random (seed 0): measured, not judged", "images": len(inputs),
            "metrics": metrics, "limits": FP16_LIMITS if judged else None}
    ok = _passes(metrics) or not judged
    summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    return Outcome(f"{'trained' if judged else 'random'} weights: {summary}", data, ok)


# ------------------------------------------------------------------------------------ the run

def _record(report: GpuCheckReport, key: str, outcome: Outcome) -> str:
    report.results[key] = outcome.data
    if not outcome.ok:
        raise TritonkitError(outcome.summary)
    return outcome.summary


def _step(report: GpuCheckReport, steps: StepLog, step_id: str, fn: Callable[[], Outcome], *,
          gpu: bool = True, subject: str | None = None) -> None:
    if gpu and not report.host["cuda"]:
        steps.skip(step_id, NO_CUDA, subject)
        return
    key = f"{step_id}[{subject}]" if subject else step_id
    steps.call(step_id, lambda: _record(report, key, fn()), subject=subject)


def run_gpu_check(opts: GpuCheckOptions, on_step: Callable[[StepRecord], None] | None = None) -> GpuCheckReport:
    """Every step (see the module docstring); the report is written to ``opts.out`` and returned."""
    report = GpuCheckReport(host=host_info())

    def event(record: StepRecord) -> None:              # the report is rewritten after every step
        if on_step is not None:
            on_step(record)
        if record.status != RUNNING:
            atomic_write_json(opts.out, report.to_dict())

    steps = StepLog(None, on_event=event, records=report.steps)
    cards = {name: get_card(name) for name in opts.cards}
    cls = get_card("demo_shapes")
    _step(report, steps, "export_build_fp16", gpu=False, subject=cls.name,
          fn=lambda: export_build_fp16(cls, Path(opts.work), trained_weights(opts.demo_weights, cls)))
    _step(report, steps, "gpu_queries", gpu_queries)
    _step(report, steps, "nvjpeg_decode", lambda: nvjpeg_decode(sample_jpegs(opts.seed)))
    for name, card in cards.items():
        _step(report, steps, "fp16_agreement", subject=name,
              fn=lambda card=card: fp16_agreement(card, trained_weights(opts.demo_weights, card), opts.images,
                                                  opts.seed))
    atomic_write_json(opts.out, report.to_dict())
    return report


__all__ = ["GpuCheckOptions", "GpuCheckReport", "Outcome", "run_gpu_check", "cuda_available", "gpu_queries",
           "nvjpeg_decode", "sample_jpegs", "fp16_agreement", "export_build_fp16", "trained_weights", "demo_inputs",
           "PROXIES", "UNVERIFIED", "FP16_LIMITS", "CHECK_CARDS", "NO_CUDA"]
