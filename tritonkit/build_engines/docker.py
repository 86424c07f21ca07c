"""Docker commands of the build side: the ``plan-builder`` image (``Dockerfile`` at the repository root).

``plan-builder`` is ``nvcr.io/nvidia/tensorrt:<release>-py3`` with tritonkit installed. A TensorRT
build needs the GPU it targets and ``docker build`` gets no GPU, so plans are built by *running*
this image on the ONNX files (``--gpus all``, or ``--gpus device=N`` for one GPU), which writes plan +
sidecar. The serving side (the ``serve`` image, the stock tritonserver image) is in
:mod:`tritonkit.serve.docker`, which builds on this module; nothing here imports the serve package.
"""

from __future__ import annotations

import os
from pathlib import Path

from tritonkit.build_engines.releases import DEFAULT_RELEASE, parse_release

BUILDER_TARGET = "plan-builder"
CONTAINER_WORK = "/work"


def builder_tag(release: str) -> str:
    return f"tritonkit-plan-builder:{parse_release(release)}"


def builder_build_argv(release: str = DEFAULT_RELEASE, context: str | Path = ".") -> list[str]:
    return ["docker", "build", "--target", BUILDER_TARGET, "--build-arg", f"TRITON_RELEASE={parse_release(release)}",
            "-t", builder_tag(release), str(context)]


def builder_run_argv(build_args: list[str], workdir: str | Path = ".", release: str = DEFAULT_RELEASE,
                     gpus: str = "all", user: str | None = None) -> list[str]:
    """``docker run`` of the plan builder on ``workdir`` (mounted at /work; paths in ``build_args`` are
    relative to it). Runs as the calling user so the plans belong to them."""
    if user is None:
        user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else "1000:1000"
    return ["docker", "run", "--rm", "--gpus", gpus, "--user", user,
            "-v", f"{Path(workdir).resolve()}:{CONTAINER_WORK}", "-w", CONTAINER_WORK,
            builder_tag(release), "build", *build_args]


def builder_tensorrt_argv(release: str = DEFAULT_RELEASE) -> list[str]:
    """``docker run`` printing the plan-builder image's ``tensorrt.__version__`` (the image must exist)."""
    return ["docker", "run", "--rm", "--entrypoint", "python3", builder_tag(release), "-c",
            "import tensorrt; print(tensorrt.__version__)"]


__all__ = ["BUILDER_TARGET", "CONTAINER_WORK", "builder_tag", "builder_build_argv", "builder_run_argv",
           "builder_tensorrt_argv"]
