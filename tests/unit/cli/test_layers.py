"""The layers contract: imports go one way down, no package cycles, CLI-only argparse/printing.

Checked on the source with the standard library's AST (no import of the modules themselves),
so a forbidden import or a cycle fails here the moment it is written, before anything runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.paths import ROOT

# source folder -> the package it is installed as (one source root, no remapping)
SOURCES = {"tritonkit": "tritonkit"}
# python backends run inside tritonserver, not in the package: the generic ones, and each task's
SERVER_BACKENDS = sorted([*(ROOT / "tritonkit" / "model_repository" / "backends").glob("*.py"),
                          *(ROOT / "tritonkit" / "tasks").glob("*/backend.py")])

# Layers, bottom (0) to top. A module may import only modules of its own layer or below. The
# most specific matching entry decides a module's layer: an exact name, then a pattern with
# ``*`` for one dotted part (``tritonkit.tasks.*.math``: every task's math), then a prefix.
LAYERS = {
    # the spec that crosses the server boundary, cards, each task's numpy math, one-helper-per-job modules
    "tritonkit.errors": 0, "tritonkit._lazy": 0, "tritonkit.io": 0, "tritonkit.names": 0, "tritonkit.report": 0,
    "tritonkit.data": 0, "tritonkit.spec": 0, "tritonkit.cards": 0, "tritonkit.served": 0, "tritonkit.tasks": 0,
    "tritonkit.tasks.*": 0, "tritonkit.tasks.*.math": 0, "tritonkit.tasks.*.result": 0,
    # the Triton transport and the run-stream runtime; each task's dataset readers
    "tritonkit.onnx_contract": 1, "tritonkit.client": 1, "tritonkit.triton": 1, "tritonkit.contract": 1,
    "tritonkit.host": 1, "tritonkit.served_model": 1, "tritonkit.tasks.*.data": 1, "tritonkit.tasks.*.coco": 1, "tritonkit.tasks.*.voc": 1, "tritonkit.tasks.*.yolo": 1,
    # the task plug-ins; the application's client (tritonkit.connect) on the transport and the plug-ins
    "tritonkit.tasks.base": 2, "tritonkit.tasks.*.task": 2, "tritonkit.predict": 2,
    # stages, each on its own layer: a stage imports only the stages below it
    "tritonkit.export": 3, "tritonkit.build_engines": 4, "tritonkit.model_repository": 5, "tritonkit.serve": 6,
    "tritonkit.evaluate": 7, "tritonkit.perf": 8, "tritonkit.validate": 9, "tritonkit.deploy": 10,
    # orchestrators built on the stages
    "tritonkit.steps": 11, "tritonkit.demo": 12, "tritonkit.smoke": 12, "tritonkit.gpu_check": 12,
    # the command line
    "tritonkit.cli": 13, "tritonkit.__main__": 13,
}
CLI_LAYER = LAYERS["tritonkit.cli"]
CLI_ONLY = ("argparse",)  # imported only under tritonkit.cli


def _module_files() -> dict[str, Path]:
    files = {}
    for folder, package in SOURCES.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if path in SERVER_BACKENDS or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            files[".".join([package, *parts])] = path
    return files


MODULES = _module_files()


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
                found.extend((f"{child.module}.{a.name}", child.lineno, in_function) for a in child.names
                             if f"{child.module}.{a.name}" in MODULES)
            visit(child, inner)

    visit(tree, False)
    return found


def _type_checking_lines(path: Path) -> set[int]:
    tree = ast.parse(path.read_text())
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                if hasattr(sub, "lineno"):
                    lines.add(sub.lineno)
    return lines


def _matches(module: str, key: str) -> tuple[int, int] | None:
    """How specifically ``key`` names ``module``: (2, parts) exact, (1, parts) a pattern of the
    same length, (0, parts) a prefix; None when it does not."""
    parts, keys = module.split("."), key.split(".")
    if module == key:
        return (2, len(keys))
    if "*" in key:
        if len(parts) == len(keys) and all(k in ("*", p) for k, p in zip(keys, parts)):
            return (1, len(keys))
        return None
    return (0, len(keys)) if module.startswith(key + ".") else None


def layer_of(module: str) -> int | None:
    if module == "tritonkit":  # the package itself: its version string
        return 0
    best = None
    for key, rank in LAYERS.items():
        score = _matches(module, key)
        if score is not None and (best is None or score > best[0]):
            best = (score, rank)
    return None if best is None else best[1]


def package_of(module: str) -> str:
    """The unit the cycle check works on: the module's LAYERS entry (a pattern's instance, e.g.
    ``tritonkit.tasks.detect.math``), so a task package whose math sits below the cards and whose
    plug-in sits above them is two units, not one cycle."""
    best = None
    for key in LAYERS:
        score = _matches(module, key)
        if score is not None and (best is None or score > best[0]):
            best = (score, key)
    if best is None:
        return ".".join(module.split(".")[:2])
    key = best[1]
    return ".".join(module.split(".")[:len(key.split("."))]) if "*" in key else key


def project_edges() -> list[tuple[str, str, int, bool]]:
    edges = []
    for module, path in MODULES.items():
        skip = _type_checking_lines(path)
        for target, line, local in _imports(path):
            if target.startswith("tritonkit") and line not in skip:
                edges.append((module, target, line, local))
    return edges


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def test_every_project_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"modules without a layer in LAYERS: {missing}"


def test_imports_go_one_way_down():
    upward = [f"{src} (line {line}) imports {dst}" for src, dst, line, _ in project_edges()
              if layer_of(dst) is not None and layer_of(src) is not None and layer_of(dst) > layer_of(src)]
    assert not upward, "imports going up a layer:\n" + "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for src, dst, _, _ in project_edges():
        a, b = package_of(src), package_of(dst)
        if a != b:
            graph.setdefault(a, set()).add(b)
    assert not find_cycles(graph), f"package import cycles: {find_cycles(graph)}"


def test_project_modules_are_imported_at_top_level():
    local = [f"{src} (line {line}) imports {dst} inside a function" for src, dst, line, is_local in project_edges()
             if is_local]
    assert not local, "\n".join(local)


def test_argparse_lives_only_in_the_cli():
    bad = [f"{m} (line {line})" for m, path in MODULES.items() if layer_of(m) != CLI_LAYER
           for target, line, _ in _imports(path) if target.split(".")[0] in CLI_ONLY]
    assert not bad, f"argparse outside tritonkit.cli: {bad}"


def test_server_backends_import_no_tritonkit():
    bad = [f"{path.relative_to(ROOT)} (line {line}) imports {target}" for path in SERVER_BACKENDS
           for target, line, _ in _imports(path) if target.split(".")[0] == "tritonkit"]
    assert not bad, f"server-side backends must be self-contained (NGC's image has no tritonkit): {bad}"


def test_the_checker_catches_a_cycle_and_an_upward_import():
    """The checks above must be able to fail: feed them a graph with a cycle and an upward edge."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("tritonkit.cards.detection") < layer_of("tritonkit.cli.repo")
    assert layer_of("tritonkit.tasks.segment.voc") < layer_of("tritonkit.model_repository.writer")
    assert layer_of("tritonkit.tasks.detect.math") == 0 < layer_of("tritonkit.tasks.detect.task")
    assert layer_of("tritonkit.tasks.pose.math") == 0  # a new task's math lands on the bottom layer too
    assert layer_of("tritonkit.perf.sweep") > layer_of("tritonkit.model_repository.config")
    with pytest.raises(AssertionError):
        assert not find_cycles({"x": {"y"}, "y": {"x"}})
