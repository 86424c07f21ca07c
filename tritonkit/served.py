"""What a model repository serves by name: server-side chains, their model names and contracts.

A task's server-side postprocess (detection NMS, segmentation argmax ...) is a
:class:`PostprocessChain`: a python-backend model after the served model, and an ensemble joining
the two. The task declares it (:meth:`tritonkit.tasks.base.Task.server_chains`), the repository
writer (:mod:`tritonkit.model_repository.ensemble`) writes it, and eval calls its ensemble with
the contract :func:`chain_card` gives. Names follow one rule (:meth:`PostprocessChain.names`);
the bytes-in ensemble in front of any served model ``X`` is ``X_bytes`` (:func:`bytes_ensemble_name`).

A chain's backend is self-contained: the files it imports are shipped beside its ``model.py``
(:func:`shipped`), :mod:`tritonkit.spec` always among them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from tritonkit import spec
from tritonkit.cards import ModelCard
from tritonkit.errors import ConfigError
from tritonkit.spec import CARD_PARAMETER, ENCODED_INPUT, GEOMETRY_FIELDS, GEOMETRY_TENSOR, TensorSpec

SPEC_FILE = "tk_spec.py"  # tritonkit/spec.py as the shipped modules import it


@dataclass(frozen=True, kw_only=True)
class ChainTensor:
    """An input or output of a chain model (``dtype`` a Triton name such as FP64)."""

    name: str
    dims: tuple[int, ...]
    dtype: str = "FP32"
    optional: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.dims:
            raise ConfigError(f"chain tensor {self.name!r}: name and dims are required")


@dataclass(frozen=True, kw_only=True)
class SupportFile:
    """A file copied into a python-backend model's version folder (``name``) from ``source``."""

    name: str
    source: Path


def shipped(*modules: tuple[str, ModuleType]) -> tuple[SupportFile, ...]:
    """The support files that ship ``modules`` (``(file name, module)`` pairs) and the spec module
    they import (as :data:`SPEC_FILE`), so a backend imports them without tritonkit."""
    files = [SupportFile(name=SPEC_FILE, source=Path(spec.__file__))]
    files += [SupportFile(name=name, source=Path(module.__file__)) for name, module in modules]
    return tuple(files)


@dataclass(frozen=True)
class ChainNames:
    """Model names of one postprocess chain: the served model, the postprocess model, the ensemble."""

    model: str
    postprocess: str
    ensemble: str


@dataclass(frozen=True, kw_only=True)
class PostprocessChain:
    """A python-backend postprocess after a served model, and the ensemble joining them.

    The postprocess model takes every card output (by the card's names) plus ``extra_inputs``
    (also ensemble inputs, passed straight through; an optional ``geometry`` is fed by a
    preprocess chain in front) and returns ``outputs``. ``backend_source``: its ``model.py``;
    ``parameters``: its config parameters (beside the card it carries). Names:
    ``<model>_<kind>_<variant>`` and ``<model>_ensemble_<variant>`` (``variant`` empty:
    ``<model>_<kind>`` and ``<model>_ensemble_<kind>``).
    """

    kind: str
    variant: str = ""
    backend_source: Path
    support_files: tuple[SupportFile, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    extra_inputs: tuple[ChainTensor, ...] = ()
    outputs: tuple[ChainTensor, ...]
    instances: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if not self.kind or not self.outputs:
            raise ConfigError("a postprocess chain needs a kind and at least one output")
        if self.instances < 1:
            raise ConfigError(f"instances must be >= 1 (got {self.instances})")

    def names(self, model: str) -> ChainNames:
        if self.variant:
            return ChainNames(model, f"{model}_{self.kind}_{self.variant}", f"{model}_ensemble_{self.variant}")
        return ChainNames(model, f"{model}_{self.kind}", f"{model}_ensemble_{self.kind}")

    def with_instances(self, instances: int) -> "PostprocessChain":
        return replace(self, instances=instances)


def geometry_input() -> ChainTensor:
    """The optional FP64 ``geometry`` input of a postprocess chain that maps results back to the
    original image (fed by a preprocess chain in front, or sent by the client)."""
    return ChainTensor(name=GEOMETRY_TENSOR, dims=(len(GEOMETRY_FIELDS),), dtype="FP64", optional=True)


def chain_card(card: ModelCard, chain: PostprocessChain, name: str) -> ModelCard:
    """The served contract of ``chain``'s ensemble as a card: the model's input, the chain's
    outputs (optional extra inputs are not part of it), so clients check and call it like any model."""
    outputs = tuple(TensorSpec(t.name, t.dims, t.dtype) for t in chain.outputs)
    what = chain.description or f"server-side {chain.kind}"
    return card.with_overrides(name=name, outputs=outputs,
                               description=f"{card.name} + {what}" + (f" ({chain.variant})" if chain.variant else ""))


def bytes_ensemble_name(served: str) -> str:
    """The bytes-in ensemble in front of the model or ensemble ``served``: ``<served>_bytes``."""
    return f"{served}_bytes"


__all__ = ["CARD_PARAMETER", "ENCODED_INPUT", "GEOMETRY_TENSOR", "SPEC_FILE", "ChainNames", "ChainTensor",
           "PostprocessChain", "SupportFile", "bytes_ensemble_name", "chain_card", "geometry_input", "shipped"]
