"""Write a model's server-side postprocess chains the way ``tritonkit repo --server-postprocess``
does: the task's chains (:meth:`tritonkit.tasks.base.Task.server_chains`) after the model."""

from __future__ import annotations

from pathlib import Path

from tritonkit.cards import ModelCard
from tritonkit.model_repository.config import RepoOptions, effective_max_batch
from tritonkit.model_repository.ensemble import write_postprocess_chain
from tritonkit.model_repository.writer import write_model
from tritonkit.served import ChainNames
from tritonkit.tasks.base import task_for_card


def write_chains(card: ModelCard, repo: Path, model: str, variants: tuple[str, ...] = (),
                 max_batch_size: int | None = None) -> list[ChainNames]:
    """The chains ``variants`` (empty: the task's default set) after ``model`` already in ``repo``."""
    return [write_postprocess_chain(card, repo, model, chain, max_batch_size)
            for chain in task_for_card(card).server_chains(card, variants)]


def write_chain(card: ModelCard, repo: Path, model: str, variant: str | None = None,
                max_batch_size: int | None = None) -> ChainNames:
    """One chain: the variant named (an NMS profile), or the task's only one."""
    names = write_chains(card, repo, model, (variant,) if variant else (), max_batch_size)
    assert len(names) == 1, f"{card.name}: {len(names)} chains for variant {variant!r}"
    return names[0]


def write_model_and_chain(card: ModelCard, model_file: Path, repo: Path, variant: str | None = None,
                          options: RepoOptions = RepoOptions()) -> ChainNames:
    """The model (:func:`write_model`) then one chain after it."""
    model = write_model(card, model_file, repo, options).name
    return write_chain(card, repo, model, variant, effective_max_batch(card, options))
