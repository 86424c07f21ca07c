"""The tasks (classify, detect, segment ...): one package each under ``tritonkit/tasks/<task>/``.

A task package holds everything of its task:

* ``math.py`` — numpy only: its postprocess variants (registered with
  :func:`tritonkit.spec.postprocess_variant`, each carrying its decoder) and the rest of its math.
  The repository writer ships it to python backends, so client and server run the same code.
* its dataset readers (``data.py``, ``coco.py``, ``voc.py`` ...);
* ``task.py`` — the plug-in: a :class:`tritonkit.tasks.base.Task` registered with
  :func:`tritonkit.tasks.base.register_task` (options, dataset, stream adapter, metrics, report,
  server-side postprocess chain);
* ``backend.py`` — its server-side postprocess model, if any (self-contained python backend).

Adding a task is adding one such package: :func:`import_task_modules` finds the packages here,
the card layer imports every ``math`` module (so cards can name the task and its variants) and
the task registry every ``task`` module. This package's own import stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType


def task_packages() -> list[str]:
    """The task packages under ``tritonkit/tasks`` (sorted names)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def import_task_modules(module: str) -> list[ModuleType]:
    """Import ``tritonkit.tasks.<task>.<module>`` of every task package that has one."""
    out = []
    for package in task_packages():
        name = f"{__name__}.{package}.{module}"
        if importlib.util.find_spec(name) is not None:
            out.append(importlib.import_module(name))
    return out


__all__ = ["import_task_modules", "task_packages"]
