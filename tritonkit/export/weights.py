"""State-dict files: read them (one-line errors naming the file) and load them key by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard
from tritonkit.export.builders import BuiltModel, ExportError

torch = lazy_import("torch")

_WEIGHT_CONTAINERS = ("state_dict", "model_state_dict", "model", "net", "ema")


def _first(items, n: int = 3) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def compare_state_dict(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Problems between a model's parameter shapes and a file's (empty: they match), as phrases."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k])} vs model {tuple(expected[k])}" for k in expected
              if k in found and tuple(found[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys, first {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, first {_first(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, first {shapes[0]}")
    return problems


def unwrap_state_dict(obj: Any) -> Any:
    """The tensor mapping inside common checkpoint containers (``{"state_dict": ...}``,
    ``{"model": ...}``), with a ``module.`` prefix from DataParallel removed."""
    if isinstance(obj, Mapping):
        for key in _WEIGHT_CONTAINERS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                obj = inner
                break
        if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
            obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_state_dict_file(path: str | Path) -> dict:
    """A state dict (name -> tensor) from a ``.pth`` file, with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: weights file not found")
    try:
        obj = torch.serialization.load(path, map_location="cpu", weights_only=True)  # proxy has its own .load
    except Exception as exc:  # torch raises pickle, zip and runtime errors of many kinds here
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if "Unsupported global" in text:
            reason = "it holds pickled objects, not only tensors (save model.state_dict() instead)"
        elif "weights_only" in text or "WeightsUnpickler" in text:
            reason = "corrupt, truncated or not a torch.save file"
        raise ExportError(f"{path}: not a PyTorch state dict file ({reason[:200]})") from None
    sd = unwrap_state_dict(obj)
    if not isinstance(sd, Mapping) or not sd:
        raise ExportError(f"{path}: not a state dict (found {type(obj).__name__}, expected a mapping of "
                          f"parameter names to tensors)")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ExportError(f"{path}: not a state dict ({len(bad)} entries are not name -> tensor, first "
                          f"{_first(bad)})")
    return dict(sd)


def weights_path(card: ModelCard, path: str | Path) -> Path:
    """The state dict file to load: ``path`` itself, or, when it is a folder (where downloaded
    weights are kept), the card's ``weights_file`` in it (the published file the card's reference
    accuracy was measured with)."""
    path = Path(path)
    if not path.is_dir():
        return path
    if not card.weights_file:
        raise ExportError(f"{path}: a folder, and card {card.name!r} names no weights_file to look for in it; "
                          f"give the .pth file itself")
    found = path / card.weights_file
    if not found.is_file():
        raise ExportError(f"{path}: no {card.weights_file} (card {card.name!r}'s weights_file) in this folder")
    return found


def load_weights(built: BuiltModel, path: str | Path, card: ModelCard) -> list[str]:
    """Load a state dict file into ``built.module``, refusing any missing/unexpected key or shape
    change. Keys under the builder's ``dropped_prefixes`` are accepted and not loaded; returns
    notes saying so (empty when nothing was dropped)."""
    sd = load_state_dict_file(path)
    dropped = [k for k in sd if k.startswith(built.dropped_prefixes)] if built.dropped_prefixes else []
    for k in dropped:
        sd.pop(k)
    expected = {k: tuple(v.shape) for k, v in built.module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in sd.items()}
    # BatchNorm's num_batches_tracked is a counter, absent from many published checkpoints.
    for k in [k for k in expected if k.endswith("num_batches_tracked") and k not in found]:
        expected.pop(k)
    problems = compare_state_dict(expected, found)
    if problems:
        raise ExportError(f"{path}: does not match {card.arch} for card {card.name!r}: {'; '.join(problems)}")
    built.module.load_state_dict(sd, strict=False)
    return [f"{len(dropped)} {built.note}"] if dropped else []


__all__ = ["compare_state_dict", "unwrap_state_dict", "load_state_dict_file", "load_weights"]
