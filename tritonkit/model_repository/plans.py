"""Checks a TensorRT plan must pass before it goes into a repository, and before a repository is served.

A plan is tied to the TensorRT version that built it and to the GPU's compute capability;
serving it in another container release or on another GPU is the most reported deployment
failure. The sidecar written by ``tritonkit build`` records both. The per-plan rules live in
:mod:`tritonkit.build_engines.compat`; this module applies them to one plan file and to every
plan of a repository (the repository layer depends on the engines layer, never the reverse).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator, Mapping

from tritonkit.build_engines import compat
from tritonkit.build_engines.compat import CompatError, CompatResult
from tritonkit.build_engines.releases import ContainerTensorRT
from tritonkit.build_engines.sidecar import read_sidecar
from tritonkit.cards import ModelCard
from tritonkit.errors import TritonkitError
from tritonkit.model_repository.config import parse_config


def check_plan_file(card: ModelCard, plan: Path, container_release: str | None, max_batch_size: int,
                    host_cc: str | None = None, *, container_trt: str | None = None) -> CompatResult:
    """Refuse a plan without a sidecar, built for another model or batch range, or incompatible
    with the container release (TensorRT version; ``container_trt`` overrides the table) or the
    host GPU (compute capability)."""
    plan = Path(plan)
    if not plan.is_file():
        raise TritonkitError(f"{plan}: plan file not found")
    if container_release is None:
        raise TritonkitError(
            f"{plan}: container_release is needed (the NGC tritonserver release that will serve it, e.g. "
            f"{compat.DEFAULT_RELEASE}) so the plan's TensorRT version can be checked", fields=("container_release",))
    return compat.check_plan_for_card(card, plan, container_release, max_batch_size=max_batch_size,
                                      host_cc=host_cc, container_trt=container_trt)


def repository_plans(repo: Path) -> Iterator[tuple[str, object, Path]]:
    """(model name, parsed config, plan path) for every TensorRT model in a repository."""
    for cfg_path in sorted(Path(repo).glob("*/config.pbtxt")):
        cfg = parse_config(cfg_path.read_text(), str(cfg_path))
        if cfg.platform != "tensorrt_plan" and cfg.backend != "tensorrt":
            continue
        filename = cfg.default_model_filename or "model.plan"
        plans = sorted(p for p in cfg_path.parent.glob(f"*/{filename}") if p.parent.name.isdigit())
        if not plans:
            raise CompatError(f"{cfg_path.parent}: TensorRT model without a <version>/{filename}")
        for plan in plans:
            yield cfg.name or cfg_path.parent.name, cfg, plan


def _check_one(name: str, cfg, plan: Path, release: str, host_cc, trt: ContainerTensorRT,
               host_gpu_name: str | None, onnx_files: Mapping[str, str | Path] | None) -> CompatResult:
    side = read_sidecar(plan)
    if onnx_files and name in onnx_files:
        compat.check_onnx_hash(side, onnx_files[name], str(plan))
    res = compat.check_plan(side, release, host_cc, container_trt=trt, host_gpu_name=host_gpu_name, plan=str(plan))
    if len(cfg.input) != 1:
        contract = [f"config has {len(cfg.input)} inputs; tritonkit plans have one"]
    else:
        contract = compat.contract_problems(side, cfg.input[0].name, tuple(cfg.input[0].dims), cfg.max_batch_size,
                                            None)
    return replace(res, problems=tuple(contract) + res.problems)


def check_repository_plans(repo_dir: str | Path, container_release: str, host_cc=None, *,
                           container_trt: str | ContainerTensorRT | None = None, host_gpu_name: str | None = None,
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
    release = compat.parse_release(container_release)
    plans = list(repository_plans(repo))
    if not plans:
        return []
    trt = (container_trt if isinstance(container_trt, ContainerTensorRT)
           else compat.container_tensorrt(release, container_trt))
    results, failures = [], []
    for name, cfg, plan in plans:
        try:
            res = _check_one(name, cfg, plan, release, host_cc, trt, host_gpu_name, onnx_files)
        except TritonkitError as exc:
            failures.append(str(exc))
            continue
        (results if res.ok else failures).append(res if res.ok else res.message())
    if failures:
        raise CompatError(f"{len(failures)} plan(s) in {repo} will not load in tritonserver {release}: "
                          + " | ".join(failures))
    return results


__all__ = ["check_plan_file", "check_repository_plans", "repository_plans"]
