"""Builders: a card's ``arch`` name -> a torch module plus an output adapter.

A builder takes the card and returns a :class:`BuiltModel` (or a bare ``nn.Module``, which gets
:func:`tensor_outputs`). Builders are found by exact name first (``timm:gluon_resnet50_v1b``),
then by family (``torchvision:`` handles every ``torchvision:<name>``)::

    @register_builder("mylab:tiny")
    def tiny(card):
        return BuiltModel(TinyNet(card.num_classes), dict_outputs("logits"))

A target may also be given as ``"package.module:function"``, imported on first use, so a package
can register builders without importing torch (the demo registers its archs that way).

The output adapter turns what the module returns into the tuple of tensors the card lists:
torchvision's segmentation models return ``OrderedDict{"out", "aux"}`` and export ``out`` only;
their ``aux_classifier.*`` checkpoint weights are accepted and dropped (``dropped_prefixes``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from tritonkit._lazy import is_available, lazy_import
from tritonkit.cards import ModelCard
from tritonkit.errors import ToolMissingError, TritonkitError

torch = lazy_import("torch")
torchvision = lazy_import("torchvision")
timm = lazy_import("timm")


class ExportError(TritonkitError):
    """The weights or ONNX do not fit the card, or the export failed its checks."""


OutputAdapter = Callable[[Any], tuple]


def tensor_outputs(out) -> tuple:
    """A tensor or a tuple/list of tensors, as a tuple; anything else is an :class:`ExportError`."""
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    for o in outs:
        if isinstance(o, Mapping):
            raise ExportError(f"model returns a dict with keys {list(o)}, not tensors; its builder needs an output "
                              f"adapter that picks the card's outputs (dict_outputs(...))")
        if not hasattr(o, "shape") or not hasattr(o, "dtype"):
            raise ExportError(f"model returns a {type(o).__name__}, not a tensor; its builder needs an output adapter")
    return outs


def dict_outputs(*keys: str) -> OutputAdapter:
    """An adapter taking ``keys`` (in the card's output order) from a dict the model returns."""
    def adapt(out) -> tuple:
        if not isinstance(out, Mapping):
            raise ExportError(f"model returns a {type(out).__name__}, expected a dict with keys {list(keys)}")
        missing = [k for k in keys if k not in out]
        if missing:
            raise ExportError(f"model output has keys {list(out)}, no {missing[0]!r}")
        return tensor_outputs(tuple(out[k] for k in keys))
    return adapt


@dataclass(frozen=True)
class BuiltModel:
    """A freshly built module (random weights, eval mode) and how to read its outputs."""

    module: Any
    adapter: OutputAdapter = tensor_outputs
    dropped_prefixes: tuple[str, ...] = ()   # checkpoint keys accepted and not loaded
    note: str = ""                           # why they are dropped (recorded in the sidecar)


Builder = Callable[[ModelCard], Any]
_BUILDERS: dict[str, Builder | str] = {}


def register_builder(name: str, target: Builder | str | None = None):
    """Register a builder for arch ``name`` (``family:`` for a whole family). With ``target``
    (a callable or ``"module:function"``) registers it; without, returns a decorator."""
    def add(fn: Builder | str):
        if name in _BUILDERS:
            raise ExportError(f"duplicate builder for arch {name!r}")
        _BUILDERS[name] = fn
        return fn
    return add if target is None else add(target)


def builder_names() -> list[str]:
    return sorted(n + "*" if n.endswith(":") else n for n in _BUILDERS)


def _resolve(target: Builder | str) -> Builder:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_builder(arch: str) -> Builder:
    """The builder of ``arch`` (exact name, else its family), or an :class:`ExportError`."""
    target = _BUILDERS.get(arch) or _BUILDERS.get(arch.partition(":")[0] + ":")
    if target is None:
        raise ExportError(f"arch {arch!r} has no builder here (known: {', '.join(builder_names())}); "
                          f"export it with its own tool and pass --onnx FILE")
    return _resolve(target)


def build_model(card: ModelCard) -> BuiltModel:
    """The card's arch, built with random weights (seed 0) in eval mode."""
    torch.manual_seed(0)
    built = get_builder(card.arch)(card)
    if not isinstance(built, BuiltModel):
        built = BuiltModel(built)
    built.module.eval()
    return built


def adapted_outputs(built: BuiltModel, out, card: ModelCard) -> tuple:
    """The module's output through the adapter, errors naming the card."""
    try:
        return built.adapter(out)
    except ExportError as exc:
        raise ExportError(f"card {card.name!r} (arch {card.arch}): {exc}") from None


def export_module(built: BuiltModel):
    """A module whose forward returns the adapted tuple (what the ONNX exporter traces)."""
    class Adapted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = built.module

        def forward(self, x):
            return built.adapter(self.inner(x))

    return Adapted().eval()


# -- the built-in families -------------------------------------------------------------------------

def _torchvision_model(card: ModelCard, name: str) -> BuiltModel:
    segmentation = name in torchvision.models.list_models(module=torchvision.models.segmentation)
    kwargs: dict = {"weights": None, "num_classes": card.num_classes}
    if segmentation:
        kwargs["weights_backbone"] = None  # never a download
    try:
        model = torchvision.models.get_model(name, **kwargs)
    except ValueError:
        raise ExportError(f"card {card.name!r}: arch {card.arch!r} is not a torchvision model") from None
    if segmentation:
        return BuiltModel(model, dict_outputs("out"), dropped_prefixes=("aux_classifier.",), note=_AUX_NOTE)
    return BuiltModel(model)


@register_builder("torchvision:")
def torchvision_builder(card: ModelCard) -> BuiltModel:
    """``torchvision:<name>`` through ``torchvision.models.get_model`` (no weights downloaded)."""
    return _torchvision_model(card, card.arch.partition(":")[2])


_AUX_NOTE = ("aux_classifier.* weights (the training-only auxiliary head) dropped; "
             "the ONNX has the 'out' head only")


@register_builder("tritonkit:deeplabv3_resnet18")
def deeplabv3_resnet18(card: ModelCard) -> BuiltModel:
    """DeepLabV3 on a ResNet-18 backbone (seed 003), which torchvision has no builder for:
    torchvision's ``resnet18`` body up to ``layer4`` (512 channels, output stride 32: ResNet-18's
    basic blocks take no dilation) through ``IntermediateLayerGetter``, torchvision's
    ``DeepLabHead`` (ASPP + 3x3 conv + 1x1 classifier) and ``DeepLabV3``, which upsamples the
    logits to the input size. State dict keys: ``backbone.*`` and ``classifier.*``, as
    torchvision's DeepLabV3 models; ``aux_classifier.*`` weights are accepted and dropped."""
    segmentation = torchvision.models.segmentation
    body = torchvision.models._utils.IntermediateLayerGetter(
        torchvision.models.resnet18(weights=None), return_layers={"layer4": "out"})
    model = segmentation.deeplabv3.DeepLabV3(body, segmentation.deeplabv3.DeepLabHead(512, card.num_classes), None)
    return BuiltModel(model, dict_outputs("out"), dropped_prefixes=("aux_classifier.",), note=_AUX_NOTE)


@register_builder("timm:gluon_resnet50_v1b")
def gluon_resnet50_v1b(card: ModelCard) -> BuiltModel:
    """timm's gluon_resnet50_v1b is the ResNet-50 v1b layout with torchvision's parameter names."""
    return _torchvision_model(card, "resnet50")


@register_builder("timm:")
def timm_builder(card: ModelCard) -> BuiltModel:
    """``timm:<name>`` through ``timm.create_model`` (needs timm installed)."""
    name = card.arch.partition(":")[2]
    if not is_available(timm):
        raise ToolMissingError(f"card {card.name!r}: arch {card.arch!r} needs the timm package "
                               f"(pip install timm), or pass --onnx with an exported model")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=card.num_classes)
    except RuntimeError as exc:
        raise ExportError(f"card {card.name!r}: timm cannot build {name!r} ({exc})") from None
    return BuiltModel(model)


__all__ = ["ExportError", "BuiltModel", "OutputAdapter", "register_builder", "get_builder", "builder_names",
           "build_model", "tensor_outputs", "dict_outputs", "adapted_outputs", "export_module"]
