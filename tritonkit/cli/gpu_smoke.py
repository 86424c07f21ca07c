"""The whole GPU path on a host with an NVIDIA GPU and Docker, into one report.

  tritonkit gpu-smoke --onnx-dir build/onnx --out reports/gpu_smoke               # build, check, print
  tritonkit gpu-smoke --onnx-dir build/onnx --run-docker \\
      --eval-data resnet50=imagenet/val --eval-data demo_shapes=build/demo/shapes_val

Steps: fp16 plans (batch 1..8) for resnet50 and the demo models from <onnx-dir>/<model>.onnx
(with TensorRT's Python API when importable here, else in the plan-builder image), the plan /
container / GPU compatibility check, a gpu-target model repository, the docker serve command
(printed; run with --run-docker), then a short eval and perf sweep against that server.
Writes <out>/gpu_smoke.json. On a host without an NVIDIA GPU it says so and exits 1.
All numbers in the report were measured on the GPU it names; nothing is estimated.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tritonkit.tasks import task_for_card

SMOKE_MODELS = ("resnet50", "demo_shapes", "demo_shapes_det")
SMOKE_MAX_BATCH = 8
CONTAINER_NAME = "tritonkit-gpu-smoke"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx-dir", type=Path, default=Path("build/onnx"), help="folder with <model>.onnx files")
    p.add_argument("--models", default=",".join(SMOKE_MODELS), help="comma-separated card names")
    p.add_argument("--out", type=Path, default=Path("reports/gpu_smoke"), help="report folder")
    p.add_argument("--work", type=Path, default=Path("build/gpu_smoke"), help="plans and repository folder")
    p.add_argument("--container-release", help="tritonserver release (default: tritonkit's pinned one)")
    p.add_argument("--container-trt-version", help="TensorRT of that release, if not in tritonkit's table")
    p.add_argument("--builder", choices=("auto", "python", "docker"), default="auto",
                   help="TensorRT Python API here, or the plan-builder image (auto: Python API if importable)")
    p.add_argument("--run-docker", action="store_true", help="start the server container and run eval + perf")
    p.add_argument("--eval-data", action="append", default=[], metavar="MODEL=PATH",
                   help="dataset for `tritonkit eval` of MODEL (repeatable)")
    p.add_argument("--eval-limit", type=int, default=500, help="images per eval")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the server")


@dataclass
class Step:
    name: str
    model: str | None
    status: str          # ok | failed | skipped
    detail: str = ""
    seconds: float = 0.0


@dataclass
class SmokeReport:
    gpu: dict
    container_release: str
    container_tensorrt: str | None = None
    builder: str | None = None
    precision_note: str = ""
    steps: list[Step] = field(default_factory=list)
    docker_commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)


def require_gpu():
    """The host's first GPU, or a TritonkitError saying there is none (nvidia-smi missing or failing)."""
    from tritonkit.build_engines.compat import host_gpus
    from tritonkit.errors import TritonkitError

    try:
        return host_gpus()[0]
    except TritonkitError as exc:
        raise TritonkitError(f"gpu-smoke needs an NVIDIA GPU and this host has none usable: {exc}") from None


def _step(report: SmokeReport, name: str, model: str | None, fn):
    """Run one step, record ok/failed with the one-line error; return fn's value or None."""
    from tritonkit.errors import TritonkitError

    start = time.perf_counter()
    try:
        value = fn()
    except TritonkitError as exc:
        report.steps.append(Step(name, model, "failed", str(exc), time.perf_counter() - start))
        print(f"[failed] {name} {model or ''}: {exc}")
        return None
    detail = value if isinstance(value, str) else ""
    report.steps.append(Step(name, model, "ok", detail, time.perf_counter() - start))
    print(f"[ok] {name} {model or ''} {detail}".rstrip())
    return value


def choose_builder(wanted: str) -> str:
    from tritonkit.errors import ToolMissingError

    if wanted in ("auto", "python"):
        try:
            import tensorrt  # noqa: F401
            return "python"
        except (ImportError, OSError):
            if wanted == "python":
                raise ToolMissingError("--builder python: the tensorrt package is not importable here") from None
    if shutil.which("docker") is None:
        raise ToolMissingError("neither TensorRT's Python API nor docker is available to build plans")
    return "docker"


def _run(argv: list[str], what: str, timeout_s: float = 3600.0) -> str:
    from tritonkit.errors import TritonkitError

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise TritonkitError(f"{what} failed (exit {proc.returncode}): {tail[-1] if tail else 'no output'}")
    return proc.stdout


def build_one(card, onnx: Path, plan: Path, builder: str, release: str) -> str:
    """fp16 plan, batch 1..SMOKE_MAX_BATCH, with its sidecar."""
    from tritonkit.build_engines.spec import make_spec

    max_batch = min(SMOKE_MAX_BATCH, card.max_batch_size)
    spec = make_spec(card, onnx, "fp16", plan, max_batch=max_batch)
    if builder == "python":
        from tritonkit.build_engines.builder import build_plan

        s = build_plan(spec).sidecar
    else:
        from tritonkit.build_engines.docker import builder_run_argv
        from tritonkit.build_engines.sidecar import read_sidecar
        from tritonkit.errors import TritonkitError

        cwd = Path.cwd().resolve()
        try:
            rel = [str(p.resolve().relative_to(cwd)) for p in (onnx, plan)]
        except ValueError:
            raise TritonkitError(f"{onnx} and {plan} must lie under {cwd}, which the plan builder mounts") from None
        _run(builder_run_argv(["--model", card.name, "--onnx", rel[0], "--precision", "fp16",
                               "--max-batch", str(max_batch), "--plan", rel[1]], cwd, release),
             f"plan-builder container for {card.name}")
        s = read_sidecar(plan)
    return f"{plan} (TensorRT {s.tensorrt_version}, {s.gpu_name} sm {s.compute_capability})"


def eval_argv(card, data: Path, grpc_port: int, out: Path, limit: int) -> list[str]:
    """`tritonkit eval` arguments for one served model (the registered task of the card's task)."""
    return ["eval", task_for_card(card).name, "--model", card.name, "--data", str(data),
            "--url", f"127.0.0.1:{grpc_port}",
            "--batch-sizes", f"1,{min(SMOKE_MAX_BATCH, card.max_batch_size)}", "--limit", str(limit),
            "--out", str(out / "eval" / card.name), "--no-progress"]


def perf_argv(card, grpc_port: int, out: Path) -> list[str]:
    """`tritonkit perf sweep` arguments for one served model (wired to the perf stage's CLI)."""
    return ["perf", "sweep", "--model", card.name, "--url", f"127.0.0.1:{grpc_port}",
            "--batch-sizes", f"1,{min(SMOKE_MAX_BATCH, card.max_batch_size)}", "--concurrency", "1:4",
            "--out", str(out / "perf" / card.name)]


def _cli_stage(argv: list[str]) -> str:
    from tritonkit.cli import main
    from tritonkit.errors import TritonkitError

    code = main(argv)
    if code != 0:
        raise TritonkitError(f"`tritonkit {shlex.join(argv)}` exited {code}")
    return f"tritonkit {argv[0]} {argv[1]}"


def _wait_ready(http_port: int, timeout_s: float) -> str:
    import urllib.error
    import urllib.request

    from tritonkit.errors import ServerError

    url = f"http://127.0.0.1:{http_port}/v2/health/ready"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    logs = subprocess.run(["docker", "logs", "--tail", "5", CONTAINER_NAME], capture_output=True, text=True,
                          check=False)
    tail = (logs.stderr or logs.stdout).strip().splitlines()
    raise ServerError(f"server not ready at {url} after {timeout_s:.0f}s: {tail[-1] if tail else 'no log'}")


def _write_report(report: SmokeReport, out: Path) -> Path:
    from tritonkit.build_engines.sidecar import write_text_atomic

    data = asdict(report)
    data["failed"] = report.failed
    path = out / "gpu_smoke.json"
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def _parse_eval_data(items: list[str]) -> dict[str, Path]:
    from tritonkit.errors import TritonkitError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise TritonkitError(f"--eval-data {item!r} must be MODEL=PATH")
        out[name] = Path(path)
    return out


def run(args: argparse.Namespace) -> int:
    from tritonkit.build_engines import compat
    from tritonkit.build_engines.docker import builder_build_argv, docker_commands
    from tritonkit.cards import get_card
    from tritonkit.model_repository.config import RepoOptions
    from tritonkit.model_repository.writer import write_model

    gpu = require_gpu()                      # exits 1 on a host without an NVIDIA GPU
    eval_data = _parse_eval_data(args.eval_data)
    release = compat.parse_release(args.container_release or compat.DEFAULT_RELEASE)
    cards = [get_card(m.strip()) for m in args.models.split(",") if m.strip()]
    report = SmokeReport(gpu={"name": gpu.name, "compute_capability": gpu.compute_capability},
                         container_release=release,
                         precision_note=f"fp16 plans built and measured on {gpu.name} (sm {gpu.compute_capability})")
    plans_dir, repo = args.work / "plans", args.work / "model_repository"

    trt = _step(report, "container-tensorrt", None, lambda: _container_trt(release, args.container_trt_version, report))
    report.container_tensorrt = trt
    builder = _step(report, "choose-builder", None, lambda: choose_builder(args.builder))
    report.builder = builder
    if builder == "docker":
        _step(report, "build-plan-builder-image", None,
              lambda: _run(builder_build_argv(release), "docker build of the plan builder") and "built")
    plans = {}
    for card in cards:
        onnx, plan = args.onnx_dir / f"{card.name}.onnx", plans_dir / f"{card.name}_fp16.plan"
        if builder and _step(report, "build-fp16-plan", card.name,
                             lambda: build_one(card, onnx, plan, builder, release)):
            plans[card.name] = (card, plan)
    for name, (card, plan) in plans.items():
        _step(report, "compat-check", name, lambda: _compat_line(compat.check_plan_for_card(
            card, plan, release, max_batch_size=min(SMOKE_MAX_BATCH, card.max_batch_size),
            host_cc=gpu.compute_capability, host_gpu_name=gpu.name, container_trt=trt)))
        options = RepoOptions(target="gpu", max_batch_size=min(SMOKE_MAX_BATCH, card.max_batch_size))
        _step(report, "write-repository", name, lambda: str(write_model(card, plan, repo, options).path))
    results = _step(report, "repository-check", None, lambda: compat.check_repository_plans(
        repo, release, gpu.compute_capability, container_trt=trt, host_gpu_name=gpu.name)) if plans else None
    extra = compat.server_args_for(results or [])
    report.docker_commands = docker_commands(repo, release, extra_server_args=extra).lines()
    print("\n".join(report.docker_commands))
    if args.run_docker and plans:
        _serve_and_measure(args, report, release, repo, extra, {n: c for n, (c, _) in plans.items()}, eval_data)
    elif not args.run_docker:
        report.notes.append("server not started (pass --run-docker): no eval or perf numbers in this report")
    path = _write_report(report, args.out)
    print(f"report: {path}")
    return 1 if report.failed else 0


def _container_trt(release: str, override: str | None, report: SmokeReport) -> str:
    """The serving image's TensorRT: the override, else read from the image (docker), else the table."""
    from tritonkit.build_engines import compat
    from tritonkit.errors import TritonkitError

    if override:
        return compat.container_tensorrt(release, override)
    table = compat.RELEASES.get(release)
    if shutil.which("docker"):
        try:
            probed = compat.probe_container_tensorrt(compat.TRITON_IMAGE.format(release=release))
        except TritonkitError as exc:
            report.notes.append(f"could not read TensorRT from the image ({exc}); using tritonkit's table")
        else:
            if table and table.tensorrt != probed:
                report.notes.append(f"tritonkit's table says TensorRT {table.tensorrt} for {release}, "
                                    f"the image has {probed}: using the image's")
            return probed
    return compat.container_tensorrt(release)


def _compat_line(result) -> str:
    return (f"loads in tritonserver {result.container_release} (TensorRT {result.container_tensorrt})"
            + "".join(f"; note: {n}" for n in result.notes))


def _serve_and_measure(args, report: SmokeReport, release: str, repo: Path, extra: tuple[str, ...],
                       cards: dict, eval_data: dict[str, Path]) -> None:
    from tritonkit.build_engines.docker import serve_run_argv

    argv = serve_run_argv(release, repo=repo, http_port=args.http_port, grpc_port=args.grpc_port,
                          extra_server_args=extra)
    argv[2:2] = ["-d", "--name", CONTAINER_NAME]
    started = _step(report, "docker-run", None, lambda: _run(argv, "docker run of tritonserver").strip()[:12])
    if not started:
        return
    try:
        if not _step(report, "server-ready", None, lambda: _wait_ready(args.http_port, args.ready_timeout)):
            return
        for name, card in cards.items():
            if name in eval_data:
                _step(report, "eval", name, lambda: _cli_stage(eval_argv(card, eval_data[name], args.grpc_port,
                                                                         args.out, args.eval_limit)))
            else:
                report.steps.append(Step("eval", name, "skipped", "no --eval-data for this model"))
            _step(report, "perf-sweep", name, lambda: _cli_stage(perf_argv(card, args.grpc_port, args.out)))
    finally:
        subprocess.run(["docker", "stop", CONTAINER_NAME], capture_output=True, check=False)
