"""tritonkit: deploy vision models on Triton Inference Server and measure what you got.

The public Python API (documented and versioned as such; everything else is internal):

* ``tritonkit.connect(url, model=None, *, card=None, ...)`` -> :class:`Model` with
  ``predict(x)`` and ``predict_iter(inputs, batch_size=8)``;
* ``await tritonkit.connect_async(...)`` -> :class:`AsyncModel`, the same for asyncio;
* the per-image results :class:`Classification`, :class:`Detections`, :class:`Mask` and
  :class:`Failed` (frozen dataclasses with ``to_dict()`` and ``numpy()``);
* the exceptions :class:`TritonkitError` and its kinds :class:`ServerError`, :class:`CardError`.

Importing the package is cheap: the API's modules load on first use of one of its names, and
heavy libraries (torch, tensorrt, tritonclient, onnxruntime) inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "connect": "tritonkit.predict.model", "Model": "tritonkit.predict.model",
    "connect_async": "tritonkit.predict.aio", "AsyncModel": "tritonkit.predict.aio",
    "Classification": "tritonkit.tasks.classify.result", "Detections": "tritonkit.tasks.detect.result",
    "Mask": "tritonkit.tasks.segment.result", "Failed": "tritonkit.tasks.results",
    "Prediction": "tritonkit.tasks.results",
    "TritonkitError": "tritonkit.errors", "ServerError": "tritonkit.errors", "CardError": "tritonkit.errors",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from tritonkit.errors import CardError, ServerError, TritonkitError
    from tritonkit.predict.aio import AsyncModel, connect_async
    from tritonkit.predict.model import Model, connect
    from tritonkit.tasks.classify.result import Classification
    from tritonkit.tasks.detect.result import Detections
    from tritonkit.tasks.results import Failed, Prediction
    from tritonkit.tasks.segment.result import Mask


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tritonkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = ["__version__", *_PUBLIC]
