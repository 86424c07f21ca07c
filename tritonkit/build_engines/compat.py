"""Will this plan load in that container on this GPU? Rules, checked from the plan's sidecar.

Rules, as NVIDIA documents them:

* TensorRT version: a plan deserializes only in the TensorRT version that built it. A plan built
  with ``BuilderFlag.VERSION_COMPATIBLE`` (TensorRT >= 8.6) also runs on *newer* TensorRT, never on an
  older one: within its major, and across exactly two major steps, 8 -> 10 and 10 -> 11 (TensorRT
  11.4.1 Support Matrix, "Engine Portability": "TensorRT 10 version-compatible engines can run with a
  TensorRT 11 runtime, and TensorRT 8 version-compatible engines can run with a TensorRT 10 runtime. No
  other combination across major versions is supported"; the "Version Compatibility" page of 10.16.1
  and 11.1.0 says the same). Triton's TensorRT backend loads such plans only when started with
  ``--backend-config=tensorrt,version-compatible=true`` (the plan embeds a lean runtime that Triton
  executes, so only trusted plans belong there).
* GPU: by default a plan is tied to the GPU it was built on (same compute capability; another
  GPU model of the same capability loads with a warning and can misbehave). With hardware
  compatibility ``ampere+`` it runs on any Ampere-or-newer GPU (compute capability >= 8.0; the
  build GPU must be Ampere+ too); with ``sameComputeCapability`` on any GPU of the same compute
  capability.
* The serving container itself needs a minimum compute capability (its release notes).

The container side comes from :mod:`.releases` (the table, with its sources) or an explicit
TensorRT version (``container_trt``). Repository-wide scans live in
:mod:`tritonkit.model_repository.plans`, host probes in :mod:`.host`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tritonkit.build_engines.flags import INT8_FP32_LAYERS_NOTE, STRONGLY_TYPED_MAJOR
from tritonkit.build_engines.releases import (
    DEFAULT_RELEASE, MIN_PATCHED_RELEASE, RELEASES, TENSORRT_IMAGE, TRITON_IMAGE, CompatError, ContainerTensorRT,
    ReleaseInfo, container_tensorrt, is_patched, parse_release, releases_with_tensorrt, same_version,
    version_tuple)
from tritonkit.build_engines.sidecar import Sidecar, read_sidecar
from tritonkit.cards import ModelCard
from tritonkit.io import sha256_file

VERSION_COMPATIBLE_SERVER_ARG = "--backend-config=tensorrt,version-compatible=true"
# (built major, runtime major) pairs NVIDIA supports for version-compatible plans across a major.
CROSS_MAJOR_VERSION_COMPATIBLE = frozenset({(8, 10), (10, 11)})
MIN_VERSION_COMPATIBLE = (8, 6)


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


@dataclass(frozen=True)
class CompatResult:
    """The verdict for one plan: ``problems`` (it will not load) and ``notes`` (it will, but...)."""

    plan: str
    container_release: str
    container_tensorrt: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    server_args: tuple[str, ...] = ()
    container_note: str = ""        # set when the container's TensorRT is an unconfirmed table value

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        return f"{self.plan}: " + "; ".join(self.problems)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _version_compatible_problem(built: str, trt: str) -> str | None:
    """Why a version-compatible plan from ``built`` cannot run on ``trt`` (None: it can)."""
    b, c = version_tuple(built), version_tuple(trt)
    if b[:2] < MIN_VERSION_COMPATIBLE:
        return f"marked version-compatible but built with TensorRT {built}; version compatibility starts at 8.6"
    if c < b:
        return f"version-compatible plan from TensorRT {built} needs the same or a newer TensorRT, not the older {trt}"
    if b[0] != c[0] and (b[0], c[0]) not in CROSS_MAJOR_VERSION_COMPATIBLE:
        return (f"version-compatible plan from TensorRT {built} cannot run on TensorRT {trt} (a different major "
                "version; NVIDIA supports only 8 -> 10 and 10 -> 11 across a major)")
    return None


def _tensorrt_problems(side: Sidecar, release: str, trt: str) -> tuple[list[str], list[str], list[str]]:
    problems, notes, args = [], [], []
    built = side.tensorrt_version
    if same_version(built, trt):
        if len(version_tuple(built)) != len(version_tuple(trt)):
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
    why = _version_compatible_problem(built, trt)
    if why is not None:
        problems.append(f"{why}; {rebuild}, or {where}")
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


def _precision_notes(side: Sidecar) -> list[str]:
    """int8 plans whose float layers run in FP32 (TensorRT 11 from an FP32 QDQ ONNX): their figures are
    labelled as such (:mod:`.flags`); an int8 plan of 11 that recorded nothing is said to be unknown."""
    if side.precision != "int8":
        return []
    major = version_tuple(side.tensorrt_version)[0]
    if side.int8_float_layers == "fp32":
        return [f"{side.precision_label()}: " + INT8_FP32_LAYERS_NOTE.format(major=major)]
    if side.int8_float_layers is None and major >= STRONGLY_TYPED_MAJOR:
        return [f"{side.precision_label()}: the precision of its layers outside the Q/DQ pairs was not recorded; "
                "TensorRT 11 runs them in the QDQ ONNX's own float type, so compare its int8 figures only with "
                "plans of the same build"]
    return []


def check_plan(sidecar: Sidecar, container_release: str, host_compute_capability=None, *,
               container_trt: str | ContainerTensorRT | None = None, host_gpu_name: str | None = None,
               plan: str = "plan") -> CompatResult:
    """Check one plan (by its sidecar) against a container release and a host GPU. Never raises for
    an incompatibility: the result lists the problems. ``container_trt`` overrides the table."""
    release = parse_release(container_release)
    trt = (container_trt if isinstance(container_trt, ContainerTensorRT)
           else container_tensorrt(release, container_trt))
    info = RELEASES.get(release)
    problems, notes, args = _tensorrt_problems(sidecar, release, trt.version)
    container_note = "" if trt.confirmed else (
        f"tritonserver {release}: {trt.describe()}; pass container_trt_version (--container-trt-version) to check "
        "against the image's real version")
    host_cc = _cc(host_compute_capability) if host_compute_capability is not None else None
    gp, gn = _gpu_problems(sidecar, host_cc, host_gpu_name, info)
    problems += gp
    notes += gn + _precision_notes(sidecar)
    if not is_patched(release):
        notes.append(f"tritonserver {release} predates the security fixes of {MIN_PATCHED_RELEASE}; "
                     f"prefer {DEFAULT_RELEASE} or later")
    return CompatResult(plan, release, trt.version, tuple(problems), tuple(notes), tuple(args), container_note)


def check_onnx_hash(sidecar: Sidecar, onnx: str | Path, plan: str = "plan") -> None:
    """The plan must have been built from this very ONNX file."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise CompatError(f"{onnx}: ONNX file not found")
    digest = sha256_file(onnx)
    if digest != sidecar.onnx_sha256:
        raise CompatError(f"{plan}: built from a different ONNX than {onnx} (sha256 {sidecar.onnx_sha256[:12]}... "
                          f"recorded, file is {digest[:12]}...); rebuild the plan from this ONNX")


def contract_problems(side: Sidecar, input_name: str, dims: tuple[int, ...], max_batch_size: int,
                       model: str | None) -> list[str]:
    problems = []
    if model is not None and side.model != model:
        problems.append(f"built for model {side.model!r}, not {model!r}")
    if side.profile.input_name != input_name:
        problems.append(f"profile input is {side.profile.input_name!r}, the model's input is {input_name!r}")
    if len(side.sample_dims) != len(dims) or any(d != -1 and d != b for b, d in zip(side.sample_dims, dims)):
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
    problems = contract_problems(side, card.input.name, tuple(card.input.dims), mbs, card.name)
    result = replace(result, problems=tuple(problems) + result.problems)
    if not result.ok:
        raise CompatError(result.message())
    return result


def server_args_for(results: list[CompatResult]) -> tuple[str, ...]:
    """Extra tritonserver arguments the checked plans need (deduplicated, in order)."""
    seen: dict[str, None] = {}
    for r in results:
        for a in r.server_args:
            seen.setdefault(a, None)
    return tuple(seen)


__all__ = [
    "RELEASES", "ReleaseInfo", "DEFAULT_RELEASE", "MIN_PATCHED_RELEASE", "CompatError", "CompatResult",
    "VERSION_COMPATIBLE_SERVER_ARG", "CROSS_MAJOR_VERSION_COMPATIBLE", "check_plan", "check_plan_for_card",
    "check_onnx_hash", "contract_problems", "container_tensorrt", "server_args_for", "parse_release", "is_patched",
    "TRITON_IMAGE", "TENSORRT_IMAGE",
]
