"""One way to import heavy third-party libraries lazily (as Polygraphy's ``mod.lazy_import``).

Project modules import each other at top level. Only heavy third-party libraries (torch,
tensorrt, tritonclient, onnxruntime, onnx, pycocotools, cv2, matplotlib) wait until first use,
so that ``tritonkit --help`` and the pure-numpy modules stay light::

    >>> from tritonkit._lazy import lazy_import

    ort = lazy_import("onnxruntime")          # nothing imported yet
    session = ort.InferenceSession(path)      # imported here, on first attribute access

A missing library raises :class:`~tritonkit.errors.ToolMissingError` naming the package and
how to install it, instead of a bare ``ModuleNotFoundError`` deep in a stage.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

from tritonkit.errors import ToolMissingError

# import name -> the pip requirement that provides it (for the error message)
_PIP_NAMES = {
    "torch": "torch", "torchvision": "torchvision", "tensorrt": "tensorrt", "onnx": "onnx",
    "onnxruntime": "onnxruntime", "cv2": "opencv-python-headless", "pycocotools": "pycocotools",
    "matplotlib": "matplotlib", "tritonclient": "tritonclient[all]", "modelopt": "nvidia-modelopt",
    "nvidia.dali": "nvidia-dali-cuda120", "kubernetes_validate": "kubernetes-validate",
}


class LazyModule:
    """A stand-in that imports ``name`` on first attribute access."""

    def __init__(self, name: str, install_hint: str | None = None) -> None:
        self._name = name
        self._hint = install_hint
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def _tk_load(self) -> ModuleType:
        if self._module is None:
            with self._lock:
                if self._module is None:
                    try:
                        self._module = importlib.import_module(self._name)
                    except ModuleNotFoundError as exc:
                        top = self._name.split(".")[0]
                        if exc.name is not None and exc.name.split(".")[0] != top:
                            raise  # a dependency of the library is missing: keep the real error
                        pip = self._hint or _PIP_NAMES.get(self._name) or _PIP_NAMES.get(top, top)
                        raise ToolMissingError(
                            f"python package {self._name!r} is not installed (pip install {pip})") from None
        return self._module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr not in ("__version__", "__file__", "__path__"):
            raise AttributeError(attr)
        return getattr(self._tk_load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_import(name: str, install_hint: str | None = None) -> Any:
    """A module proxy for ``name`` imported on first use (see the module docstring)."""
    return LazyModule(name, install_hint)


def load_module(module: Any) -> ModuleType:
    """The real module behind a :func:`lazy_import` proxy (imports it now)."""
    return module._tk_load() if isinstance(module, LazyModule) else module


def is_available(module: Any) -> bool:
    """True when a :func:`lazy_import` proxy's module can be imported (imports it)."""
    try:
        module._tk_load()
    except ToolMissingError:
        return False
    return True


__all__ = ["LazyModule", "is_available", "lazy_import", "load_module"]
