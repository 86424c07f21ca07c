"""The JSON sidecar written beside every plan: ``model.plan`` -> ``model.plan.json``.

A serialized TensorRT engine is only loadable by the TensorRT version that built it (unless
built version-compatible) and on the GPU architecture it was built for (unless built
hardware-compatible). Neither is readable from the plan without TensorRT, so the build records
them here, together with what the plan was built from (ONNX sha256, profile, precision, flags).
:mod:`tritonkit.build_engines.compat` checks a plan against a serving container with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tritonkit import __version__
from tritonkit.build_engines.spec import HARDWARE_COMPAT, PRECISIONS, BuildSpec
from tritonkit.errors import TritonkitError

SCHEMA = 1
BUILDERS = ("tensorrt-python", "trtexec")
INT8_FLOAT_LAYERS_FLAG = "int8_float_layers"      # an int8 build's build-flag entry (flags.PrecisionFlags.int8_record)
_CC_RE = re.compile(r"^\d+\.\d+$")
# major.minor.patch[.build], with the ".postN" of pip wheel versions (``tensorrt.__version__`` of the
# PyPI wheel reads e.g. 10.14.1.48.post1): what compat.py can compare (10.13.2 and 10.13.3 plans do not
# mix, so a bare "10.13" is refused here rather than written into a sidecar every later check rejects).
_VERSION_RE = re.compile(r"^\d+(\.\d+){2,3}(\.post\d+)?$")


class SidecarError(TritonkitError):
    """A plan's sidecar is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` names it, with its compute capability (``"8.6"``) and, where known,
    its PCI bus id (where it sits, not what it is: two GpuInfo of the same kind compare equal)."""

    name: str
    compute_capability: str
    pci_bus_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not _CC_RE.match(self.compute_capability):
            raise SidecarError(f"compute capability {self.compute_capability!r} must look like '8.6'")


@dataclass(frozen=True)
class PlanProfile:
    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class Sidecar:
    model: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: PlanProfile
    onnx_sha256: str
    onnx_file: str
    build_flags: tuple[str, ...]
    version_compatible: bool
    hardware_compat: str
    tritonkit_version: str
    built_at: str
    builder: str
    schema: int = SCHEMA
    gpu_bus_id: str | None = None          # PCI bus id of the build GPU (older sidecars: unknown)

    @property
    def max_batch(self) -> int:
        return self.profile.max[0]

    @property
    def min_batch(self) -> int:
        return self.profile.min[0]

    @property
    def sample_dims(self) -> tuple[int, ...]:
        return tuple(self.profile.max[1:])

    @property
    def int8_float_layers(self) -> str | None:
        """int8: the precision its layers outside the Q/DQ pairs run in (``fp16``/``fp32``), as the build
        recorded it (``int8_float_layers=...`` in ``build_flags``; None when not recorded)."""
        for flag in self.build_flags:
            key, _, value = flag.partition("=")
            if key == INT8_FLOAT_LAYERS_FLAG:
                return value
        return None

    def precision_label(self) -> str:
        """The precision as figures measured with this plan are labelled: int8 names its TensorRT major
        and its float layers, since TensorRT 10 and 11 int8 builds differ there (:mod:`.flags`)."""
        if self.precision != "int8":
            return self.precision
        major = self.tensorrt_version.split(".")[0]
        return f"int8 (TensorRT {major}, float layers {self.int8_float_layers or 'not recorded'})"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = {"input": self.profile.input_name, "min": list(self.profile.min),
                        "opt": list(self.profile.opt), "max": list(self.profile.max)}
        d["build_flags"] = list(self.build_flags)
        return d


def sidecar_path(plan: str | Path) -> Path:
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def make_sidecar(spec: BuildSpec, onnx_sha256: str, tensorrt_version: str, gpu: GpuInfo, builder: str,
                 build_flags: tuple[str, ...] | None = None, built_at: datetime | None = None) -> Sidecar:
    prof = spec.profile()
    when = (built_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    side = Sidecar(
        model=spec.model, tensorrt_version=tensorrt_version, gpu_name=gpu.name,
        compute_capability=gpu.compute_capability, precision=spec.precision,
        profile=PlanProfile(prof.input_name, prof.min, prof.opt, prof.max), onnx_sha256=onnx_sha256,
        onnx_file=spec.onnx.name, build_flags=tuple(build_flags if build_flags is not None else spec.flag_summary()),
        version_compatible=spec.version_compatible, hardware_compat=spec.hardware_compat,
        tritonkit_version=__version__, built_at=when.isoformat(timespec="seconds"), builder=builder,
        gpu_bus_id=gpu.pci_bus_id)
    _validate(side, "<new sidecar>")
    return side


def check_tensorrt_version(version: str, source: str = "<new sidecar>") -> str:
    """``version`` if a sidecar can record it (see ``_VERSION_RE``), else a SidecarError naming the field."""
    if not _VERSION_RE.match(str(version)):
        raise SidecarError(f"{source}: field 'tensorrt_version' {version!r} is not a version like 10.13.3.9")
    return str(version)


def _validate(s: Sidecar, source: str) -> None:
    def bad(field: str, why: str) -> SidecarError:
        return SidecarError(f"{source}: field {field!r} {why}")

    if s.schema != SCHEMA:
        raise bad("schema", f"is {s.schema}, this tritonkit reads schema {SCHEMA}")
    check_tensorrt_version(s.tensorrt_version, source)
    if not _CC_RE.match(s.compute_capability):
        raise bad("compute_capability", f"{s.compute_capability!r} is not like '8.6'")
    if s.precision not in PRECISIONS:
        raise bad("precision", f"{s.precision!r} not one of {PRECISIONS}")
    if s.hardware_compat not in HARDWARE_COMPAT:
        raise bad("hardware_compat", f"{s.hardware_compat!r} not one of {tuple(HARDWARE_COMPAT)}")
    if s.builder not in BUILDERS:
        raise bad("builder", f"{s.builder!r} not one of {BUILDERS}")
    if not re.fullmatch(r"[0-9a-f]{64}", s.onnx_sha256):
        raise bad("onnx_sha256", "is not a sha256 hex digest")
    p = s.profile
    if not (len(p.min) == len(p.opt) == len(p.max) >= 2):
        raise bad("profile", "needs min/opt/max shapes of the same rank (batch first)")
    spatial = 2 if len(p.min) >= 4 else 0  # [batch, C, H, W]: H and W may range (dynamic-size models)
    end = len(p.min) - spatial
    if p.min[1:end] != p.max[1:end] or p.opt[1:end] != p.max[1:end] or not all(
            a <= b <= c for a, b, c in zip(p.min[end:], p.opt[end:], p.max[end:])):
        raise bad("profile", "min/opt/max may differ only in the batch axis and (dynamic-size models) in H and W, "
                             "with min <= opt <= max")
    if not 1 <= p.min[0] <= p.opt[0] <= p.max[0]:
        raise bad("profile", f"batch must satisfy 1 <= min <= opt <= max (got {p.min[0]}/{p.opt[0]}/{p.max[0]})")


def sidecar_from_dict(data: dict, source: str) -> Sidecar:
    try:
        prof = data["profile"]
        side = Sidecar(
            model=str(data["model"]), tensorrt_version=str(data["tensorrt_version"]),
            gpu_name=str(data["gpu_name"]), compute_capability=str(data["compute_capability"]),
            precision=str(data["precision"]),
            profile=PlanProfile(str(prof["input"]), tuple(int(x) for x in prof["min"]),
                                tuple(int(x) for x in prof["opt"]), tuple(int(x) for x in prof["max"])),
            onnx_sha256=str(data["onnx_sha256"]), onnx_file=str(data["onnx_file"]),
            build_flags=tuple(str(x) for x in data["build_flags"]),
            version_compatible=bool(data["version_compatible"]), hardware_compat=str(data["hardware_compat"]),
            tritonkit_version=str(data["tritonkit_version"]), built_at=str(data["built_at"]),
            builder=str(data["builder"]), schema=int(data.get("schema", 0)),
            gpu_bus_id=str(data["gpu_bus_id"]) if data.get("gpu_bus_id") else None)
    except KeyError as exc:
        raise SidecarError(f"{source}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise SidecarError(f"{source}: malformed field ({exc})") from None
    _validate(side, source)
    return side


def read_sidecar(plan: str | Path) -> Sidecar:
    """The sidecar of ``plan`` (or a ``.plan.json`` path given directly); clear errors otherwise."""
    plan = Path(plan)
    path = plan if plan.name.endswith(".plan.json") else sidecar_path(plan)
    if not path.is_file():
        raise SidecarError(
            f"{plan}: no sidecar {path.name} beside the plan, so its TensorRT version and GPU are unknown; "
            "build it with `tritonkit build` (or record a trtexec-built plan with `tritonkit build --adopt-plan`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SidecarError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{path}: expected a JSON object")
    return sidecar_from_dict(data, str(path))


def sidecar_text(side: Sidecar) -> str:
    return json.dumps(side.to_dict(), indent=2) + "\n"
