"""Read a model repository for deployment: the models, the target, and how long loading takes.

Every ``<repo>/<model>/config.pbtxt`` is parsed through Triton's protobuf schema
(:func:`tritonkit.model_repository.config.parse_config`). From the configs:

* the models served (names as Triton will load them),
* the deployment target: ``gpu`` when any model runs on a GPU (a TensorRT plan, or an instance
  group of kind GPU), otherwise ``cpu``,
* the startup budget of :func:`startup_budget`, which sizes the startupProbe.

:func:`check_plans` then runs the repository plan check that ``repo`` and ``serve --docker`` run
(:func:`tritonkit.model_repository.plans.check_repository_plans`) against the server's release:
a plan that will not load there is refused, and the flags the plans need (version-compatible
plans: ``--backend-config=tensorrt,version-compatible=true``) go to the server.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tritonkit._lazy import lazy_import
from tritonkit.build_engines.compat import server_args_for
from tritonkit.build_engines.sidecar import read_sidecar
from tritonkit.deploy.spec import DeployError
from tritonkit.model_repository.config import parse_config
from tritonkit.model_repository.plans import check_repository_plans, repository_plans

pb = lazy_import("tritonclient.grpc.model_config_pb2")

GPU_PLATFORMS = ("tensorrt_plan",)
# Startup budget (seconds). Assumptions, stated in the written report: the server process and its
# backends start in SERVER_START_S; model files are read at READ_BYTES_PER_S from the source
# (an object store is read over the network and copied to /tmp first); each model instance
# costs INSTANCE_LOAD_S (a CUDA context and plan deserialisation, or a python stub and an
# onnxruntime session); each warmup request WARMUP_S per instance. The sum is doubled and never
# below MIN_STARTUP_S, so a slow node does not get the pod killed during a normal start.
SERVER_START_S = 30.0
READ_BYTES_PER_S = {"image": 200e6, "pvc": 100e6, "url": 25e6}
INSTANCE_LOAD_S = {"gpu": 10.0, "cpu": 5.0, "auto": 10.0, "none": 0.0}
WARMUP_S = 2.0
SAFETY = 2.0
MIN_STARTUP_S = 120
PROBE_PERIOD_S = 10
# What a python-backend model.py may import from NGC's tritonserver image without adding packages.
IMAGE_PROVIDES = frozenset({"numpy", "triton_python_backend_utils"})
_IMPORT = re.compile(r"^(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


@dataclass(frozen=True)
class ServedModel:
    """One model of the repository, as its config.pbtxt describes it."""

    name: str
    platform: str          # config platform, or the backend ("python", "onnxruntime" ...)
    device: str            # "gpu", "cpu", "auto" (Triton picks) or "none" (ensembles)
    instances: int
    max_batch_size: int
    warmups: int
    bytes: int
    python_imports: tuple[str, ...] = ()   # python backend: what model.py imports beyond the image


@dataclass(frozen=True)
class RepositoryInfo:
    path: Path
    models: tuple[ServedModel, ...]
    server_args: tuple[str, ...] = ()      # tritonserver flags the models need (from the plan check)

    @property
    def target(self) -> str:
        return "gpu" if any(m.device == "gpu" for m in self.models) else "cpu"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def total_bytes(self) -> int:
        return sum(m.bytes for m in self.models)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "target": self.target, "total_bytes": self.total_bytes,
                "models": [asdict(m) for m in self.models], "server_args": list(self.server_args)}


def _device(cfg, platform: str) -> str:
    if platform == "ensemble":
        return "none"
    kinds = {g.kind for g in cfg.instance_group}
    if platform in GPU_PLATFORMS or pb.ModelInstanceGroup.KIND_GPU in kinds:
        return "gpu"
    if kinds and kinds <= {pb.ModelInstanceGroup.KIND_CPU}:
        return "cpu"
    return "cpu" if platform == "python" and not kinds else "auto"


def python_imports(folder: Path) -> tuple[str, ...]:
    """Top-level modules the python files of the model's version folders import that NGC's image
    lacks (read as text); the modules shipped beside ``model.py`` (``tk_*.py``) are the model's own."""
    names, shipped = set(), set()
    for version in {p.parent for p in folder.glob("*/model.py")}:
        sources = list(version.glob("*.py"))
        shipped.update(p.stem for p in sources)
        for source in sources:
            names.update(_IMPORT.findall(source.read_text(errors="replace")))
    return tuple(sorted(n for n in names if n not in sys.stdlib_module_names and n not in IMAGE_PROVIDES
                        and n not in shipped and n != "__future__"))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def read_model(folder: Path) -> ServedModel:
    """One model folder's config.pbtxt (parsed with protobuf) and the size of its files."""
    config = folder / "config.pbtxt"
    cfg = parse_config(config.read_text(), source=str(config))
    name = cfg.name or folder.name
    if name != folder.name:
        raise DeployError(f"{config}: name {name!r} differs from its folder {folder.name!r} (Triton will not load it)")
    platform = cfg.platform or cfg.backend or "?"
    instances = sum(max(g.count, 1) for g in cfg.instance_group) or 1
    return ServedModel(name=name, platform=platform, device=_device(cfg, platform),
                       instances=0 if platform == "ensemble" else instances, max_batch_size=cfg.max_batch_size,
                       warmups=len(cfg.model_warmup), bytes=_folder_bytes(folder),
                       python_imports=python_imports(folder) if platform == "python" else ())


def read_repository(path: str | Path) -> RepositoryInfo:
    """Every model under ``path`` (a folder of ``<model>/config.pbtxt``), sorted by name."""
    repo = Path(path)
    if not repo.is_dir():
        raise DeployError(f"{repo}: model repository not found")
    folders = sorted(p.parent for p in repo.glob("*/config.pbtxt"))
    if not folders:
        raise DeployError(f"{repo}: no <model>/config.pbtxt in the model repository")
    return RepositoryInfo(repo, tuple(read_model(f) for f in folders))


def check_plans(info: RepositoryInfo, release: str, container_trt: str | None = None) -> tuple[RepositoryInfo, list[str]]:
    """Every TensorRT plan of ``info`` checked against tritonserver ``release`` (its TensorRT from
    the release table, or ``container_trt``): raises a one-line error naming each plan that will not
    load there. Returns ``info`` with the server flags the plans need, and notes for the report
    (the cluster's GPUs are unknown here, so each plan's GPU is stated for the user to match)."""
    results = check_repository_plans(info.path, release, None, container_trt=container_trt)
    if not results:
        return info, []
    notes = [n for r in results for n in (r.container_note, *r.notes) if n]
    for name, _, plan in repository_plans(info.path):
        side = read_sidecar(plan)
        where = {"ampere+": "any GPU of compute capability >= 8.0",
                 "same-cc": f"GPUs of compute capability {side.compute_capability}"}.get(
            side.hardware_compat, f"{side.gpu_name} GPUs (compute capability {side.compute_capability})")
        notes.append(f"{name}: TensorRT {side.tensorrt_version} plan for {where}; schedule the pods on such "
                     "nodes (a nodeSelector on the GPU product label)")
    return replace(info, server_args=server_args_for(results)), list(dict.fromkeys(notes))


@dataclass(frozen=True)
class StartupBudget:
    """How long a pod may take to become ready, and the startupProbe that allows it."""

    estimate_s: float      # the unpadded estimate
    budget_s: int          # what the probe allows
    period_s: int
    failure_threshold: int
    rule: str

    def to_dict(self) -> dict:
        return asdict(self)


def startup_budget(info: RepositoryInfo, source_kind: str) -> StartupBudget:
    """The startup budget of ``info`` loaded from a ``source_kind`` source (see the constants)."""
    if source_kind not in READ_BYTES_PER_S:
        raise DeployError(f"source kind {source_kind!r} is not one of {', '.join(READ_BYTES_PER_S)}")
    read_s = info.total_bytes / READ_BYTES_PER_S[source_kind]
    load_s = sum(m.instances * INSTANCE_LOAD_S[m.device] for m in info.models)
    warm_s = sum(m.instances * m.warmups * WARMUP_S for m in info.models)
    estimate = SERVER_START_S + read_s + load_s + warm_s
    budget = max(MIN_STARTUP_S, math.ceil(SAFETY * estimate))
    threshold = math.ceil(budget / PROBE_PERIOD_S)
    rule = (f"{SAFETY:g} x ({SERVER_START_S:g} s server start + {info.total_bytes / 1e6:.1f} MB at "
            f"{READ_BYTES_PER_S[source_kind] / 1e6:g} MB/s from the {source_kind} source + "
            f"{load_s:g} s for model instances + {warm_s:g} s of warmup), at least {MIN_STARTUP_S} s")
    return StartupBudget(round(estimate, 1), threshold * PROBE_PERIOD_S, PROBE_PERIOD_S, threshold, rule)
