"""The whole GPU path on a host with an NVIDIA GPU and Docker, as library calls, into one report.

Steps (each recorded ok / failed / skipped with a one-line detail):

1. the serving container's TensorRT: the override, else read from the image, else tritonkit's table
   (unconfirmed table values are said to be so in the report);
2. the builder whose TensorRT equals the serving container's: by default the ``plan-builder`` image of
   the same release (NGC's ``tensorrt:<release>-py3``); this host's ``import tensorrt`` only when its
   version is the container's (a plan loads only in the TensorRT that built it);
3. one plan per model (fp16 on TensorRT 10; on 11, which builds strongly typed, fp32 unless the ONNX
   already is fp16), batch 1..8, with its sidecar;
4. the plan / container / GPU check, a gpu-target repository, the repository-wide check;
5. the docker commands (returned, for printing); with ``run_docker``: the server container through
   :class:`~tritonkit.serve.docker.DockerServer`, a short eval per model that has data, a perf sweep.

Nothing here prints or parses arguments: ``tritonkit.cli.gpu_smoke`` does, and shows the
:class:`SmokeReport`. Every number in the report was measured on the GPU it names.
"""

from __future__ import annotations

import importlib
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from tritonkit.build_engines import compat
from tritonkit.build_engines.builder import build_plan
from tritonkit.build_engines.docker import builder_build_argv, builder_run_argv
from tritonkit.build_engines.host import docker_engine_available, docker_gpus_arg, host_gpus, one_gpu
from tritonkit.build_engines.host import probe_container_tensorrt
from tritonkit.build_engines.releases import (
    RELEASES, TRITON_IMAGE, ContainerTensorRT, container_tensorrt, parse_release, same_version)
from tritonkit.build_engines.sidecar import GpuInfo, read_sidecar
from tritonkit.build_engines.spec import make_spec
from tritonkit.cards import ModelCard, get_card
from tritonkit.errors import ToolMissingError, TritonkitError
from tritonkit.evaluate import evaluate
from tritonkit.io import atomic_write_json
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository.plans import check_repository_plans
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.serve.docker import DockerServer, RunOptions, docker_commands, serve_run_argv
from tritonkit.steps import StepLog, StepRecord
from tritonkit.tasks.base import task_for_card

SMOKE_MODELS = ("resnet50", "demo_shapes", "demo_shapes_det")
SMOKE_MAX_BATCH = 8
CONTAINER_NAME = "tritonkit-gpu-smoke"
BUILDERS = ("auto", "python", "docker")


@dataclass(frozen=True, kw_only=True)
class SmokeOptions:
    onnx_dir: Path = Path("build/onnx")
    models: tuple[str, ...] = SMOKE_MODELS
    out: Path = Path("reports/gpu_smoke")
    work: Path = Path("build/gpu_smoke")
    container_release: str = compat.DEFAULT_RELEASE
    container_trt_version: str | None = None
    builder: str = "auto"
    gpu_index: int | None = None
    run_docker: bool = False
    eval_data: Mapping[str, Path] = field(default_factory=dict)
    eval_limit: int = 500
    run: RunOptions = RunOptions(name=CONTAINER_NAME)
    ready_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.builder not in BUILDERS:
            raise TritonkitError(f"builder {self.builder!r} must be one of {', '.join(BUILDERS)}")
        if not self.models:
            raise TritonkitError("models must name at least one card")
        if self.run.name != CONTAINER_NAME:
            raise TritonkitError(f"run.name must be {CONTAINER_NAME!r} (the container gpu-smoke stops)")
        parse_release(self.container_release)


@dataclass
class SmokeReport:
    gpu: dict
    container_release: str
    container_tensorrt: str | None = None
    builder: str | None = None
    precision: str | None = None
    precision_note: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    docker_commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)

    def to_dict(self) -> dict:
        return {**asdict(self), "failed": self.failed}


OnStep = Callable[[StepRecord], None]


def require_gpu(index: int | None = None) -> GpuInfo:
    """The GPU the smoke runs on, or a TritonkitError saying there is none usable."""
    try:
        return one_gpu(host_gpus(index=index), index)
    except TritonkitError as exc:
        raise TritonkitError(f"gpu-smoke needs an NVIDIA GPU and this host has none usable: {exc}") from None


def host_tensorrt_version() -> str | None:
    """``tensorrt.__version__`` of this interpreter, or None when TensorRT does not import here."""
    try:
        return str(importlib.import_module("tensorrt").__version__)
    except (ImportError, OSError, AttributeError):
        return None


def choose_builder(wanted: str, container_trt: str, host_trt: str | None, docker_available: bool) -> str:
    """``python`` (this host's TensorRT) or ``docker`` (the plan-builder image of the serving release).

    The host is used only when its TensorRT equals the serving container's: a plan loads only in the
    TensorRT version that built it. ``auto`` prefers the plan-builder image.
    """
    host_matches = host_trt is not None and same_version(host_trt, container_trt)
    if wanted == "python":
        if host_trt is None:
            raise ToolMissingError("builder python: the tensorrt package is not importable here")
        if not host_matches:
            raise TritonkitError(f"builder python: this host has TensorRT {host_trt}, the serving container "
                                 f"TensorRT {container_trt}; plans would not load (use builder docker)")
        return "python"
    if docker_available:
        return "docker"
    if wanted == "auto" and host_matches:
        return "python"
    why = (f"this host's TensorRT {host_trt} is not the container's {container_trt}" if host_trt
           else "TensorRT is not importable here")
    raise ToolMissingError(f"no builder with TensorRT {container_trt}: docker is not available for the "
                           f"plan-builder image and {why}")


def resolve_container_trt(release: str, override: str | None, report: SmokeReport, *,
                          docker_available: bool, probe=probe_container_tensorrt) -> ContainerTensorRT:
    """The serving image's TensorRT: the override, else read from the image (docker), else the table."""
    if override:
        return container_tensorrt(release, override)
    if docker_available:
        try:
            probed = ContainerTensorRT(probe(TRITON_IMAGE.format(release=release)), "image", True)
        except TritonkitError as exc:
            report.notes.append(f"could not read TensorRT from the image ({exc}); using tritonkit's table")
        else:
            table = RELEASES.get(release)
            if table and table.tensorrt and not same_version(table.tensorrt, probed.version):
                report.notes.append(f"tritonkit's table says TensorRT {table.tensorrt} for {release}, the image has "
                                    f"{probed.version}: using the image's")
            return probed
    trt = container_tensorrt(release)
    if not trt.confirmed:
        report.notes.append(f"tritonserver {release}: {trt.describe()}")
    return trt


def smoke_precision(container_trt: ContainerTensorRT) -> tuple[str, str]:
    """fp16 on TensorRT 10; fp32 on 11 (strongly typed: fp16 needs an fp16 ONNX made first)."""
    if container_trt.major < 11:
        return "fp16", ""
    return "fp32", (f"TensorRT {container_trt.version} builds strongly typed: plans are fp32 from the fp32 ONNX "
                    "(fp16 needs an fp16 ONNX, e.g. ModelOpt AutoCast)")


def _run_cmd(argv: list[str], what: str, timeout_s: float = 3600.0) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TritonkitError(f"{what} failed to run ({type(exc).__name__})") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise TritonkitError(f"{what} failed (exit {proc.returncode}): {tail[-1] if tail else 'no output'}")
    return proc.stdout


def build_one(card: ModelCard, onnx: Path, plan: Path, precision: str, builder: str, release: str,
              gpu_index: int | None = None) -> str:
    """One plan, batch 1..SMOKE_MAX_BATCH, with its sidecar, by ``builder``."""
    max_batch = min(SMOKE_MAX_BATCH, card.max_batch_size)
    spec = make_spec(card, onnx, precision, plan, max_batch=max_batch)
    if builder == "python":
        side = build_plan(spec, gpu_index=gpu_index).sidecar
    else:
        cwd = Path.cwd().resolve()
        try:
            rel = [str(p.resolve().relative_to(cwd)) for p in (onnx, plan)]
        except ValueError:
            raise TritonkitError(f"{onnx} and {plan} must lie under {cwd}, which the plan builder mounts") from None
        _run_cmd(builder_run_argv(["--model", card.name, "--onnx", rel[0], "--precision", precision,
                                   "--max-batch", str(max_batch), "--plan", rel[1]], cwd, release,
                                  gpus=docker_gpus_arg(gpu_index)),
                 f"plan-builder container for {card.name}")
        side = read_sidecar(plan)
    return f"{plan} (TensorRT {side.tensorrt_version}, {side.gpu_name} sm {side.compute_capability})"


def evaluate_served(card: ModelCard, data: Path, url: str, out: Path, limit: int) -> str:
    """Evaluate a served model with its task's plug-in (the dataset layout is the task's)."""
    task = task_for_card(card)
    batches = (1, min(SMOKE_MAX_BATCH, card.max_batch_size))
    options = task.options_type(model=card.name, data=Path(data), url=url, batch_sizes=batches, limit=limit,
                                out=out / "eval" / card.name, progress=False)
    evaluate(task, options)
    return f"eval {task.name} written to {out / 'eval' / card.name}"


def perf_served(card: ModelCard, url: str, out: Path) -> str:
    """A short perf_analyzer sweep of one served model (batch 1 and max, concurrency 1..4)."""
    batches = (1, min(SMOKE_MAX_BATCH, card.max_batch_size))
    spec = PerfSpec(model=card.name, url=url, protocol="grpc", batch_size=batches[0],
                    concurrency=ConcurrencyRange(1, 4))
    result = run_sweep(spec, out / "perf" / card.name, SweepOptions(batch_sizes=batches, plot=False))
    if not result.rows:
        raise TritonkitError(f"perf sweep of {card.name}: no point finished; see {result.status_json}")
    return f"perf sweep written to {result.markdown}"


def _serve_and_measure(opts: SmokeOptions, steps: StepLog, release: str, repo: Path, extra: tuple[str, ...],
                       cards: dict[str, ModelCard]) -> None:
    run = RunOptions(profile=opts.run.profile, http_port=opts.run.http_port, grpc_port=opts.run.grpc_port,
                     metrics_port=opts.run.metrics_port, gpus=docker_gpus_arg(opts.gpu_index), name=CONTAINER_NAME)
    argv = serve_run_argv(release, repo=repo, options=run, extra_server_args=extra)
    server = DockerServer(argv, name=CONTAINER_NAME, ports=(run.http_port, run.grpc_port, run.metrics_port),
                          image=TRITON_IMAGE.format(release=release))
    if steps.call("docker_run", lambda: server.start(opts.ready_timeout_s) and server.http_url) is None:
        return
    try:
        for name, card in cards.items():
            if name in opts.eval_data:
                steps.call("eval", evaluate_served, card, opts.eval_data[name], server.grpc_url, opts.out,
                           opts.eval_limit, subject=name)
            else:
                steps.skip("eval", "no eval data for this model", subject=name)
            steps.call("perf_sweep", perf_served, card, server.grpc_url, opts.out, subject=name)
    finally:
        server.stop()


def _build_all(opts: SmokeOptions, steps: StepLog, cards: list[ModelCard], builder: str | None, release: str,
               precision: str) -> dict[str, tuple[ModelCard, Path]]:
    plans_dir, plans = opts.work / "plans", {}
    for card in cards:
        onnx, plan = opts.onnx_dir / f"{card.name}.onnx", plans_dir / f"{card.name}_{precision}.plan"
        if builder and steps.call(f"build_{precision}_plan", build_one, card, onnx, plan, precision, builder, release,
                                  opts.gpu_index, subject=card.name):
            plans[card.name] = (card, plan)
    return plans


def _compat_line(result: compat.CompatResult) -> str:
    return (f"loads in tritonserver {result.container_release} (TensorRT {result.container_tensorrt})"
            + "".join(f"; note: {n}" for n in (result.container_note, *result.notes) if n))


def _check_and_write(opts: SmokeOptions, steps: StepLog, plans: dict, release: str, trt: ContainerTensorRT,
                     gpu: GpuInfo, repo: Path) -> tuple[str, ...]:
    for name, (card, plan) in plans.items():
        mbs = min(SMOKE_MAX_BATCH, card.max_batch_size)
        steps.call("compat_check", lambda: _compat_line(compat.check_plan_for_card(
            card, plan, release, max_batch_size=mbs, host_cc=gpu.compute_capability, host_gpu_name=gpu.name,
            container_trt=trt.version)), subject=name)
        steps.call("write_repository",
                   lambda: str(write_model(card, plan, repo, RepoOptions(target="gpu", max_batch_size=mbs)).path),
                   subject=name)
    if not plans:
        return ()
    results = steps.call("repository_check", lambda: check_repository_plans(
        repo, release, gpu.compute_capability, container_trt=trt, host_gpu_name=gpu.name))
    return compat.server_args_for(results or [])


def run_smoke(opts: SmokeOptions, gpu: GpuInfo, *, on_step: OnStep | None = None,
              docker_available: bool | None = None) -> SmokeReport:
    """Run every step for ``opts`` on ``gpu`` (see :func:`require_gpu`); returns the report, also written
    to ``<out>/gpu_smoke.json``."""
    release = parse_release(opts.container_release)
    cards = [get_card(m) for m in opts.models]
    report = SmokeReport(gpu={"name": gpu.name, "compute_capability": gpu.compute_capability}, container_release=release)
    steps = StepLog(opts.out / "steps.json", on_event=on_step, records=report.steps)
    docker = docker_engine_available() if docker_available is None else docker_available
    trt = steps.call("container_tensorrt", lambda: resolve_container_trt(
        release, opts.container_trt_version, report, docker_available=docker))
    report.container_tensorrt = trt.version if trt else None
    builder = trt and steps.call("choose_builder",
                                 lambda: choose_builder(opts.builder, trt.version, host_tensorrt_version(), docker))
    report.builder = builder or None
    precision, note = smoke_precision(trt) if trt else ("fp16", "")
    report.precision = precision
    report.precision_note = f"{precision} plans built and measured on {gpu.name} (sm {gpu.compute_capability})"
    report.notes += [note] if note else []
    if builder == "docker":
        steps.call("build_plan_builder_image",
                   lambda: _run_cmd(builder_build_argv(release), "docker build of the plan builder") and "built")
    plans = _build_all(opts, steps, cards, builder or None, release, precision)
    repo = opts.work / "model_repository"
    extra = _check_and_write(opts, steps, plans, release, trt, gpu, repo) if trt else ()
    run = RunOptions(profile=opts.run.profile, http_port=opts.run.http_port, grpc_port=opts.run.grpc_port,
                     metrics_port=opts.run.metrics_port, gpus=docker_gpus_arg(opts.gpu_index), require_key=False)
    report.docker_commands = docker_commands(repo, release, extra_server_args=extra, options=run).lines()
    if opts.run_docker and plans:
        _serve_and_measure(opts, steps, release, repo, extra, {n: c for n, (c, _) in plans.items()})
    elif not opts.run_docker:
        report.notes.append("server not started (run_docker off): no eval or perf numbers in this report")
    atomic_write_json(opts.out / "gpu_smoke.json", report.to_dict())
    return report


__all__ = ["SmokeOptions", "SmokeReport", "require_gpu", "choose_builder", "resolve_container_trt",
           "host_tensorrt_version", "smoke_precision", "build_one", "evaluate_served", "perf_served", "run_smoke",
           "SMOKE_MODELS", "SMOKE_MAX_BATCH", "CONTAINER_NAME"]
