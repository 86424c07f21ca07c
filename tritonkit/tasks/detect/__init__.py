"""The detect task: see tritonkit/tasks/__init__.py for what each module of a task package holds."""
