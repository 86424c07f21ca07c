"""Will this plan load in that container on this GPU? Checked from the plan's sidecar.

Rules, as NVIDIA documents them (TensorRT Developer Guide, "Version Compatibility" and
"Hardware Compatibility"; TensorRT support matrix, "Features for Platforms and Software"):

* TensorRT version: a plan deserializes only in the TensorRT version that built it. A plan built
  with ``BuilderFlag.VERSION_COMPATIBLE`` (TensorRT >= 8.6) also runs on *newer* TensorRT of the
  same major version, never on an older one; Triton's TensorRT backend loads such plans only when
  started with ``--backend-config=tensorrt,version-compatible=true`` (the plan embeds a lean
  runtime that Triton executes, so only trusted plans belong there).
* GPU: by default a plan is tied to the GPU it was built on (same compute capability; another
  GPU model of the same capability loads with a warning and can misbehave). With hardware
  compatibility ``ampere+`` it runs on any Ampere-or-newer GPU (compute capability >= 8.0; the
  build GPU must be Ampere+ too; not on Jetson/DRIVE); with ``sameComputeCapability`` on any GPU of
  the same compute capability.
* The serving container itself needs a minimum compute capability (its release notes).

The container side comes from :data:`RELEASES` (below) or, for a release not listed, from an
explicit TensorRT version (``--container-trt-version``, or :func:`probe_container_tensorrt`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from tritonkit.build_engines.sidecar import GpuInfo, Sidecar, read_sidecar, sidecar_path
from tritonkit.build_engines.spec import sha256_file
from tritonkit.cards import ModelCard
from tritonkit.errors import ToolMissingError, TritonkitError

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:{release}-py3"
TENSORRT_IMAGE = "nvcr.io/nvidia/tensorrt:{release}-py3"
VERSION_COMPATIBLE_SERVER_ARG = "--backend-config=tensorrt,version-compatible=true"


@dataclass(frozen=True)
class ReleaseInfo:
    """One NGC ``tritonserver:<release>-py3`` image: its TensorRT, CUDA and minimum GPU."""

    release: str
    tensorrt: str
    cuda: str
    min_compute_capability: str


# TensorRT in nvcr.io/nvidia/tritonserver:<release>-py3. Only releases whose TensorRT we could tie
# to NVIDIA's documentation are listed:
#  * Deep Learning Frameworks Support Matrix (TensorRT per container release) -- the source of the
#    values: https://docs.nvidia.com/deeplearning/frameworks/support-matrix/index.html
#  * Triton release notes, "Driver Requirements" (CUDA build) and "GPU Requirements" (minimum
#    compute capability): https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-YY-MM.html
#    (TensorRT 10.x itself supports compute capability 7.5 and later).
#  * Triton "Release Compatibility Matrix" lists only the *-trtllm-python-py3 images, whose TensorRT
#    follows TensorRT-LLM and lags the -py3 image of the same month (25.10-trtllm: 10.11.0.33, 25.10-py3:
#    10.13.3.9); its (CUDA build, TensorRT) pairs are a cross-check only, never a month's value:
#    https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/compatibility.html
# Same-month tritonserver and tensorrt images have disagreed before (23.05: 8.6.1.2 vs 8.6.1.6,
# triton-inference-server/server#5975), which is why the check compares the plan's recorded
# TensorRT version, never the image tag.
RELEASES: dict[str, ReleaseInfo] = {r.release: r for r in (
    ReleaseInfo("25.01", "10.8.0.43", "12.8.0.038", "7.5"),
    ReleaseInfo("25.03", "10.9.0.34", "12.8.1.012", "7.5"),
    ReleaseInfo("25.06", "10.11.0.33", "12.9.1.010", "7.5"),
    ReleaseInfo("25.10", "10.13.3.9", "13.0.2.006", "7.5"),
    ReleaseInfo("25.12", "10.14.1.48", "13.1.0.036", "7.5"),
)}
# NVIDIA's August 2025 Triton security bulletin (CVE-2025-23310/23311/23319/23320/23334): fixed in 25.07.
MIN_PATCHED_RELEASE = "25.07"
DEFAULT_RELEASE = "25.10"

_RELEASE_RE = re.compile(r"^\d{2}\.\d{2}$")
_VERSION_TOKEN = re.compile(r"(\d+\.\d+\.\d+(?:\.\d+)?)")


class CompatError(TritonkitError):
    """A plan will not load in the target container or on the target GPU."""


def parse_release(release: str) -> str:
    release = str(release).strip()
    if not _RELEASE_RE.match(release):
        raise CompatError(f"container release {release!r} must look like YY.MM (e.g. {DEFAULT_RELEASE})")
    return release


def is_patched(release: str) -> bool:
    return parse_release(release) >= MIN_PATCHED_RELEASE


def container_tensorrt(release: str, override: str | None = None) -> str:
    """TensorRT version of ``tritonserver:<release>-py3``: ``override`` if given, else the table."""
    release = parse_release(release)
    if override:
        if not _VERSION_TOKEN.fullmatch(override.strip()):
            raise CompatError(f"container TensorRT version {override!r} must look like 10.13.3.9")
        return override.strip()
    info = RELEASES.get(release)
    if info is None:
        raise CompatError(
            f"container release {release} is not in tritonkit's TensorRT table (known: {', '.join(sorted(RELEASES))}); "
            f"pass its TensorRT version (--container-trt-version), e.g. read with "
            f"`docker run --rm --entrypoint dpkg-query {TRITON_IMAGE.format(release=release)} -W libnvinfer10`")
    return info.tensorrt


def _vtuple(version: str) -> tuple[int, ...]:
    m = _VERSION_TOKEN.search(str(version))
    if not m:
        raise CompatError(f"{version!r} is not a TensorRT version")
    return tuple(int(x) for x in m.group(1).split("."))


def _same_version(a: str, b: str) -> bool:
    """Equal on every component both sides record (a 3-part version matches any build of it)."""
    ta, tb = _vtuple(a), _vtuple(b)
    n = min(len(ta), len(tb))
    return ta[:n] == tb[:n]


def _cc(value) -> str:
    """``8.6`` / ``"8.6"`` / ``(8, 6)`` -> ``"8.6"``."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}.{int(value[1])}"
    text = str(value).strip()
    if not re.fullmatch(r"\d+\.\d+", text):
        raise CompatError(f"compute capability {value!r} must look like 8.6")
    return text


def _cc_tuple(cc: str) -> tuple[int, int]:
    major, minor = cc.split(".")
    return int(major), int(minor)


def releases_with_tensorrt(version: str) -> list[str]:
    return sorted(r.release for r in RELEASES.values() if _same_version(r.tensorrt, version))


@dataclass(frozen=True)
class CompatResult:
    """The verdict for one plan: ``problems`` (it will not load) and ``notes`` (it will, but...)."""

    plan: str
    container_release: str
    container_tensorrt: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    server_args: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        return f"{self.plan}: " + "; ".join(self.problems)


def _tensorrt_problems(side: Sidecar, release: str, trt: str) -> tuple[list[str], list[str], list[str]]:
    problems, notes, args = [], [], []
    built = side.tensorrt_version
    if _same_version(built, trt):
        if len(_vtuple(built)) != len(_vtuple(trt)):
            notes.append(f"TensorRT compared on the components both sides record ({built} vs {trt})")
        if side.version_compatible:
            # Any version-compatible plan carries host code the runtime must be allowed to run.
            notes.append(f"version-compatible plan: start tritonserver with {VERSION_COMPATIBLE_SERVER_ARG}")
            args.append(VERSION_COMPATIBLE_SERVER_ARG)
        return problems, notes, args
    other = releases_with_tensorrt(built)
    where = (f"serve it with tritonserver {', '.join(other)}" if other
             else f"serve it with a tritonserver release that ships TensorRT {built}")
    rebuild = (f"rebuild it in {TENSORRT_IMAGE.format(release=release)} (TensorRT must be {trt}) "
               "or inside the serving container")
    if not side.version_compatible:
        problems.append(f"built with TensorRT {built} but tritonserver {release} ships TensorRT {trt}, and a plan "
                        f"only deserializes in the TensorRT version that built it; {rebuild}, or {where}")
        return problems, notes, args
    b, c = _vtuple(built), _vtuple(trt)
    if b[:2] < (8, 6):
        problems.append(f"marked version-compatible but built with TensorRT {built}; version compatibility "
                        f"starts at 8.6; {rebuild}")
    elif b[0] != c[0]:
        problems.append(f"version-compatible plan from TensorRT {built} cannot be relied on in TensorRT {trt} "
                        f"(a different major version); {rebuild}")
    elif c < b:
        problems.append(f"version-compatible plan from TensorRT {built} needs the same or a newer TensorRT, "
                        f"tritonserver {release} ships the older {trt}; {rebuild}, or {where}")
    else:
        notes.append(f"version-compatible plan (TensorRT {built}) on TensorRT {trt}: start tritonserver with "
                     f"{VERSION_COMPATIBLE_SERVER_ARG} (it runs the plan's embedded lean runtime; trusted plans only)")
        args.append(VERSION_COMPATIBLE_SERVER_ARG)
    return problems, notes, args


def _gpu_problems(side: Sidecar, host_cc: str | None, host_gpu_name: str | None,
                  info: ReleaseInfo | None) -> tuple[list[str], list[str]]:
    problems, notes = [], []
    if host_cc is None:
        notes.append("host GPU compute capability unknown (no nvidia-smi here); GPU compatibility not checked")
        return problems, notes
    built, host = side.compute_capability, host_cc
    if info is not None and _cc_tuple(host) < _cc_tuple(info.min_compute_capability):
        problems.append(f"host GPU compute capability {host} is below the {info.min_compute_capability} that "
                        f"tritonserver {info.release} supports; use an older release or a newer GPU")
    rebuild = "rebuild the plan on the serving GPU"
    if side.hardware_compat == "ampere+":
        if _cc_tuple(built) < (8, 0):
            problems.append(f"marked ampere+ but built on compute capability {built}; hardware compatibility "
                            f"needs an Ampere or newer build GPU (>= 8.0); {rebuild}")
        if _cc_tuple(host) < (8, 0):
            problems.append(f"ampere+ plans run on Ampere or newer GPUs (compute capability >= 8.0), the host GPU "
                            f"is {host}; {rebuild}")
        return problems, notes
    if built != host:
        advice = (f"{rebuild}, or build with --hardware-compat ampere+ (Ampere or newer on both sides)"
                  if side.hardware_compat == "none" else rebuild)
        problems.append(f"built for compute capability {built} ({side.gpu_name}) but the host GPU is {host}"
                        f"{' (' + host_gpu_name + ')' if host_gpu_name else ''}; a plan only loads on the GPU "
                        f"architecture it was built for; {advice}")
    elif side.hardware_compat == "none" and host_gpu_name and host_gpu_name != side.gpu_name:
        notes.append(f"built on {side.gpu_name}, serving on {host_gpu_name} (same compute capability {host}): "
                     "TensorRT loads it with a warning; rebuild on this GPU for reliable performance")
    return problems, notes


def check_plan(sidecar: Sidecar, container_release: str, host_compute_capability=None, *,
               container_trt: str | None = None, host_gpu_name: str | None = None,
               plan: str = "plan") -> CompatResult:
    """Check one plan (by its sidecar) against a container release and a host GPU. Never raises for
    an incompatibility: the result lists the problems."""
    release = parse_release(container_release)
    trt = container_tensorrt(release, container_trt)
    info = RELEASES.get(release)
    problems, notes, args = _tensorrt_problems(sidecar, release, trt)
    host_cc = _cc(host_compute_capability) if host_compute_capability is not None else None
    gp, gn = _gpu_problems(sidecar, host_cc, host_gpu_name, info)
    problems += gp
    notes += gn
    if not is_patched(release):
        notes.append(f"tritonserver {release} predates the security fixes of {MIN_PATCHED_RELEASE}; "
                     f"prefer {DEFAULT_RELEASE} or later")
    return CompatResult(plan, release, trt, tuple(problems), tuple(notes), tuple(args))


def check_onnx_hash(sidecar: Sidecar, onnx: str | Path, plan: str = "plan") -> None:
    """The plan must have been built from this very ONNX file."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise CompatError(f"{onnx}: ONNX file not found")
    digest = sha256_file(onnx)
    if digest != sidecar.onnx_sha256:
        raise CompatError(f"{plan}: built from a different ONNX than {onnx} (sha256 {sidecar.onnx_sha256[:12]}... "
                          f"recorded, file is {digest[:12]}...); rebuild the plan from this ONNX")


def _contract_problems(side: Sidecar, input_name: str, dims: tuple[int, ...], max_batch_size: int,
                       model: str | None) -> list[str]:
    problems = []
    if model is not None and side.model != model:
        problems.append(f"built for model {side.model!r}, not {model!r}")
    if side.profile.input_name != input_name:
        problems.append(f"profile input is {side.profile.input_name!r}, the model's input is {input_name!r}")
    if tuple(side.sample_dims) != tuple(dims):
        problems.append(f"built for per-sample dims {side.sample_dims}, the model's are {tuple(dims)}")
    if max_batch_size > 0:
        if side.max_batch < max_batch_size:
            problems.append(f"profile max batch is {side.max_batch} but max_batch_size is {max_batch_size}; "
                            f"rebuild with --max-batch {max_batch_size} or serve with max_batch_size "
                            f"{side.max_batch}")
        if side.min_batch > 1:
            problems.append(f"profile min batch is {side.min_batch}; Triton sends batches from 1 up, so "
                            "rebuild with --min-batch 1")
    return problems


def check_plan_for_card(card: ModelCard, plan: str | Path, container_release: str, *,
                        max_batch_size: int | None = None, host_cc=None, host_gpu_name: str | None = None,
                        container_trt: str | None = None, onnx: str | Path | None = None) -> CompatResult:
    """All checks for one plan about to be served as ``card``; raises :class:`CompatError` on any problem.

    ``max_batch_size`` is what the config will say (default: the card's). A plan without a
    sidecar, or (with ``onnx``) built from another ONNX, is an error.
    """
    plan = Path(plan)
    side = read_sidecar(plan)
    if onnx is not None:
        check_onnx_hash(side, onnx, str(plan))
    mbs = card.max_batch_size if max_batch_size is None else max_batch_size
    result = check_plan(side, container_release, host_cc, container_trt=container_trt,
                        host_gpu_name=host_gpu_name, plan=str(plan))
    problems = _contract_problems(side, card.input.name, tuple(card.input.dims), mbs, card.name)
    result = CompatResult(result.plan, result.container_release, result.container_tensorrt,
                          tuple(problems) + result.problems, result.notes, result.server_args)
    if not result.ok:
        raise CompatError(result.message())
    return result


def _repo_plan_models(repo: Path):
    """(model name, config, plan path) for every TensorRT model in a repository."""
    from tritonkit.model_repository.config import parse_config

    for cfg_path in sorted(repo.glob("*/config.pbtxt")):
        cfg = parse_config(cfg_path.read_text(), str(cfg_path))
        if cfg.platform != "tensorrt_plan" and cfg.backend != "tensorrt":
            continue
        filename = cfg.default_model_filename or "model.plan"
        plans = sorted(p for p in cfg_path.parent.glob(f"*/{filename}") if p.parent.name.isdigit())
        if not plans:
            raise CompatError(f"{cfg_path.parent}: TensorRT model without a <version>/{filename}")
        for plan in plans:
            yield cfg.name or cfg_path.parent.name, cfg, plan


def check_repository_plans(repo_dir: str | Path, container_release: str, host_cc=None, *,
                           container_trt: str | None = None, host_gpu_name: str | None = None,
                           onnx_files: Mapping[str, str | Path] | None = None) -> list[CompatResult]:
    """Check every TensorRT plan in a model repository before it is served.

    Each plan needs its ``model.plan.json`` sidecar; its profile must cover the config's
    ``max_batch_size`` and input; its TensorRT and GPU must suit ``container_release`` and the host
    (``host_cc``; ``None`` skips the GPU check with a note). ``onnx_files`` maps model names to the
    ONNX each plan should have been built from. Raises :class:`CompatError` naming every failing
    plan; returns the results (notes, extra server arguments) when all pass.
    """
    repo = Path(repo_dir)
    if not repo.is_dir():
        raise CompatError(f"{repo}: model repository not found")
    results, failures = [], []
    for name, cfg, plan in _repo_plan_models(repo):
        try:
            side = read_sidecar(plan)
            if onnx_files and name in onnx_files:
                check_onnx_hash(side, onnx_files[name], str(plan))
        except TritonkitError as exc:
            failures.append(str(exc))
            continue
        res = check_plan(side, container_release, host_cc, container_trt=container_trt,
                         host_gpu_name=host_gpu_name, plan=str(plan))
        contract = []
        if len(cfg.input) != 1:
            contract.append(f"config has {len(cfg.input)} inputs; tritonkit plans have one")
        else:
            contract = _contract_problems(side, cfg.input[0].name, tuple(cfg.input[0].dims), cfg.max_batch_size, None)
        res = CompatResult(res.plan, res.container_release, res.container_tensorrt,
                           tuple(contract) + res.problems, res.notes, res.server_args)
        (results if res.ok else failures).append(res if res.ok else res.message())
    if failures:
        raise CompatError(f"{len(failures)} plan(s) in {repo} will not load in tritonserver "
                          f"{parse_release(container_release)}: " + " | ".join(failures))
    return results


def server_args_for(results: list[CompatResult]) -> tuple[str, ...]:
    """Extra tritonserver arguments the checked plans need (deduplicated, in order)."""
    seen: dict[str, None] = {}
    for r in results:
        for a in r.server_args:
            seen.setdefault(a, None)
    return tuple(seen)


# --- host and container facts --------------------------------------------------------------

def host_gpus(nvidia_smi: str = "nvidia-smi", timeout_s: float = 20.0) -> list[GpuInfo]:
    """The GPUs ``nvidia-smi`` reports (name and compute capability).

    ToolMissingError when ``nvidia-smi`` is absent; TritonkitError when it fails (no driver, no GPU).
    """
    exe = shutil.which(nvidia_smi)
    if exe is None:
        raise ToolMissingError("nvidia-smi not found: this host has no NVIDIA driver "
                               "(no NVIDIA GPU to build or serve plans)")
    try:
        proc = subprocess.run([exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TritonkitError(f"nvidia-smi failed to run ({type(exc).__name__})") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise TritonkitError(f"nvidia-smi failed (exit {proc.returncode}): {last[-1] if last else 'no output'}")
    return parse_nvidia_smi(proc.stdout)


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        name, _, cc = line.rpartition(",")
        if name.strip() and cc.strip():
            gpus.append(GpuInfo(name.strip(), _cc(cc.strip())))
    if not gpus:
        raise TritonkitError("nvidia-smi reported no GPU")
    return gpus


def probe_container_tensorrt(image: str, docker: str = "docker", timeout_s: float = 300.0) -> str:
    """The TensorRT version inside a container image, read from its ``libnvinfer10`` package.

    Needs a Docker engine; raises ToolMissingError without one.
    """
    exe = shutil.which(docker)
    if exe is None:
        raise ToolMissingError(f"{docker} not found: cannot read the TensorRT version of {image}")
    cmd = [exe, "run", "--rm", "--entrypoint", "dpkg-query", image, "-W", "-f=${Version}\\n", "libnvinfer10"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TritonkitError(f"docker run {image} failed ({type(exc).__name__})") from None
    m = _VERSION_TOKEN.search(proc.stdout or "")
    if proc.returncode != 0 or not m:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise TritonkitError(f"could not read the TensorRT version of {image}: {tail[-1] if tail else 'no output'}")
    return m.group(1)


__all__ = [
    "RELEASES", "ReleaseInfo", "DEFAULT_RELEASE", "MIN_PATCHED_RELEASE", "CompatError", "CompatResult",
    "check_plan", "check_plan_for_card", "check_repository_plans", "check_onnx_hash", "container_tensorrt",
    "host_gpus", "parse_nvidia_smi", "probe_container_tensorrt", "server_args_for", "sidecar_path",
    "parse_release", "is_patched", "TRITON_IMAGE", "TENSORRT_IMAGE",
]
