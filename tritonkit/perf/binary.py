"""Locating NVIDIA's ``perf_analyzer`` binary and the environment it runs in.

:func:`locate_perf_analyzer` finds the binary (an explicit path, else beside this interpreter,
else on PATH), builds its environment (the pip CUDA runtime's ``lib`` folder leading
``LD_LIBRARY_PATH``) and runs ``perf_analyzer --version`` once, so a missing shared library is
a one-line fix instead of a failure at the first point.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tritonkit.errors import ToolMissingError

INSTALL_HINT = ("install it with: pip install 'tritonclient[all]==2.50.0' (ships perf_analyzer) and "
                "apt-get install libb64-0d; it also needs libcudart.so.12 on LD_LIBRARY_PATH "
                "(pip package nvidia-cuda-runtime-cu12, set automatically when installed)")


@dataclass(frozen=True)
class PerfAnalyzer:
    """A perf_analyzer binary that runs on this machine, and the environment to run it in."""

    binary: Path
    env: dict[str, str]


def locate_perf_analyzer(explicit: str | os.PathLike | None = None) -> PerfAnalyzer:
    """:func:`find_perf_analyzer`, its :func:`analyzer_env`, checked with :func:`check_perf_analyzer`."""
    binary = find_perf_analyzer(explicit)
    env = analyzer_env()
    check_perf_analyzer(binary, env)
    return PerfAnalyzer(binary, env)


def cuda_runtime_lib_dir() -> Path | None:
    """The ``lib`` folder of the pip package nvidia-cuda-runtime-cu12 (libcudart.so.12), if installed."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        lib = Path(location) / "lib"
        if lib.is_dir():
            return lib
    return None


def analyzer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for perf_analyzer: LD_LIBRARY_PATH led by the pip CUDA runtime's lib folder."""
    env = dict(os.environ if base is None else base)
    lib = cuda_runtime_lib_dir()
    if lib is not None:
        current = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = str(lib) + (os.pathsep + current if current else "")
    return env


def find_perf_analyzer(explicit: str | os.PathLike | None = None) -> Path:
    """The perf_analyzer binary: ``explicit``, else beside this interpreter, else on PATH.

    Raises :class:`ToolMissingError` naming how to install it when none is found.
    """
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolMissingError(f"perf_analyzer {path} not found or not executable; {INSTALL_HINT}")
        return path
    beside = Path(sys.executable).parent / "perf_analyzer"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    raise ToolMissingError(f"perf_analyzer not found (looked beside {sys.executable} and on PATH); {INSTALL_HINT}")


def check_perf_analyzer(binary: Path, env: dict[str, str]) -> None:
    """Run ``perf_analyzer --version`` once: a missing shared library becomes a one-line fix."""
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, env=env)
    except OSError as exc:
        raise ToolMissingError(f"cannot run {binary}: {exc.strerror or exc}; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise ToolMissingError(f"{binary} --version did not answer in 30 s") from None
    if proc.returncode == 0:
        return
    text = (proc.stderr or "") + (proc.stdout or "")
    if "libb64" in text:
        raise ToolMissingError(f"perf_analyzer needs libb64: apt-get install libb64-0d ({last_line(text)})")
    if "libcudart" in text:
        raise ToolMissingError("perf_analyzer needs libcudart.so.12: pip install nvidia-cuda-runtime-cu12 "
                               f"(its lib folder is put on LD_LIBRARY_PATH automatically) ({last_line(text)})")
    raise ToolMissingError(f"{binary} --version failed with exit code {proc.returncode}: {last_line(text)}")


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output; ``(no output)`` when there is none."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"
