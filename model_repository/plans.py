"""Checks a TensorRT plan must pass before it goes into a repository.

A plan is tied to the TensorRT version that built it and to the GPU's compute capability;
serving it in another container release or on another GPU is the most reported deployment
failure. The sidecar written by ``tritonkit build`` records both; the checks themselves live in
:mod:`tritonkit.build_engines.compat`.
"""

from __future__ import annotations

from pathlib import Path

from tritonkit.build_engines import compat
from tritonkit.cards import ModelCard
from tritonkit.errors import TritonkitError


def check_plan_file(card: ModelCard, plan: Path, container_release: str | None, max_batch_size: int,
                    host_cc: str | None = None) -> None:
    """Refuse a plan without a sidecar, built for another model or batch range, or incompatible
    with the container release (TensorRT version) or the host GPU (compute capability)."""
    plan = Path(plan)
    if not plan.is_file():
        raise TritonkitError(f"{plan}: plan file not found")
    if container_release is None:
        raise TritonkitError(
            f"{plan}: pass --container-release (the NGC tritonserver release that will serve it, e.g. "
            f"{compat.DEFAULT_RELEASE}) so the plan's TensorRT version can be checked")
    compat.check_plan_for_card(card, plan, container_release, max_batch_size=max_batch_size, host_cc=host_cc)
