"""Eval tasks as plug-ins: the :class:`Task` interface and its registry.

``register_task(name)`` registers a :class:`Task` subclass (a duplicate name is an error),
``get_task(name)`` returns it, ``list_tasks()`` lists them; the built-in ones are
``classify`` (:mod:`tritonkit.tasks.classification`), ``detect``
(:mod:`tritonkit.tasks.detection`) and ``segment`` (:mod:`tritonkit.tasks.segmentation`). See :mod:`tritonkit.tasks.base` for the interface.
"""

from tritonkit.tasks.base import (
    FLATTEN, OMIT_NONE, REFERENCE, Agreement, ArgSpec, OpenedData, OptionsError, Served, StreamOptions,
    Task, TaskMetrics, TimingOutcome, get_task, has_labels, list_tasks, register_task, task_for_card, to_flat_dict)
from tritonkit.tasks import classification, detection, segmentation  # noqa: E402,F401  (the built-in registrations)

__all__ = ["FLATTEN", "OMIT_NONE", "REFERENCE", "Agreement", "ArgSpec", "OpenedData", "OptionsError",
           "Served", "StreamOptions", "Task", "TaskMetrics", "TimingOutcome", "get_task", "has_labels",
           "list_tasks", "register_task", "task_for_card", "to_flat_dict"]
