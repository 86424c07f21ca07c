"""The docker commands of the GPU path, in one place (README, ``serve --docker``, ``gpu-smoke``).

Two images from the same NGC release (``Dockerfile`` at the repository root):

* ``plan-builder`` — ``nvcr.io/nvidia/tensorrt:<release>-py3`` with tritonkit installed. A TensorRT
  build needs the GPU it targets and ``docker build`` gets no GPU, so plans are built by *running*
  this image with ``--gpus all`` on the ONNX files, which writes plan + sidecar.
* ``serve`` — ``nvcr.io/nvidia/tritonserver:<release>-py3`` with the model repository copied in,
  running as the image's non-root ``triton-server`` user, publishing only 8000 (HTTP) and 8001
  (gRPC); metrics (8002) stay inside the container network unless asked for.

Or, without building an image, the stock tritonserver image with the repository mounted read-only.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from tritonkit.build_engines.compat import DEFAULT_RELEASE, TRITON_IMAGE, parse_release
from tritonkit.errors import TritonkitError

SERVE_TARGET = "serve"
BUILDER_TARGET = "plan-builder"
CONTAINER_REPO = "/models"
CONTAINER_WORK = "/work"
# The serving command of the `serve` image (its CMD): static model set, strict readiness.
SERVER_ARGS = ("tritonserver", "--model-repository=/models", "--model-control-mode=none",
               "--strict-readiness=true", "--exit-on-error=true", "--disable-auto-complete-config")


def serve_tag(release: str) -> str:
    return f"tritonkit-serve:{parse_release(release)}"


def builder_tag(release: str) -> str:
    return f"tritonkit-plan-builder:{parse_release(release)}"


def _in_context(path: Path, context: Path) -> str:
    try:
        return path.resolve().relative_to(context.resolve()).as_posix()
    except ValueError:
        raise TritonkitError(f"{path}: the model repository must lie inside the docker build context "
                             f"{context} to be copied into the image (or serve it mounted instead)") from None


def builder_build_argv(release: str = DEFAULT_RELEASE, context: str | Path = ".") -> list[str]:
    return ["docker", "build", "--target", BUILDER_TARGET, "--build-arg", f"TRITON_RELEASE={parse_release(release)}",
            "-t", builder_tag(release), str(context)]


def serve_build_argv(repo: str | Path, release: str = DEFAULT_RELEASE, context: str | Path = ".") -> list[str]:
    rel = _in_context(Path(repo), Path(context))
    return ["docker", "build", "--target", SERVE_TARGET, "--build-arg", f"TRITON_RELEASE={parse_release(release)}",
            "--build-arg", f"MODEL_REPOSITORY={rel}", "-t", serve_tag(release), str(context)]


def builder_run_argv(build_args: list[str], workdir: str | Path = ".", release: str = DEFAULT_RELEASE,
                     gpus: str = "all", user: str | None = None) -> list[str]:
    """``docker run`` of the plan builder on ``workdir`` (mounted at /work; paths in ``build_args`` are
    relative to it). Runs as the calling user so the plans belong to them."""
    if user is None:
        user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else "1000:1000"
    return ["docker", "run", "--rm", "--gpus", gpus, "--user", user,
            "-v", f"{Path(workdir).resolve()}:{CONTAINER_WORK}", "-w", CONTAINER_WORK,
            builder_tag(release), "build", *build_args]


def serve_run_argv(release: str = DEFAULT_RELEASE, *, repo: str | Path | None = None, http_port: int = 8000,
                   grpc_port: int = 8001, metrics_port: int | None = None, gpus: str = "all",
                   extra_server_args: tuple[str, ...] = (), profile: str = "dev", env=None) -> list[str]:
    """``docker run`` of the server: the ``serve`` image, or (``repo`` given) the stock image with the
    repository mounted read-only, with the options and server flags of the serving ``profile``
    (:func:`tritonkit.serve.profiles.docker_args`: loopback ports, non-root, drain on stop)."""
    if repo is not None:
        from tritonkit.serve.profiles import docker_args

        args = docker_args(profile, Path(repo), (http_port, grpc_port, metrics_port or 8002), env=env, gpus=gpus,
                           extra_flags=tuple(extra_server_args))
        return ["docker", "run", *args.docker_options, TRITON_IMAGE.format(release=parse_release(release)),
                *args.server_command]
    argv = ["docker", "run", "--rm", "--gpus", gpus, "-p", f"{http_port}:8000", "-p", f"{grpc_port}:8001"]
    if metrics_port is not None:
        argv += ["-p", f"{metrics_port}:8002"]
    argv.append(serve_tag(release))
    if extra_server_args:
        argv += [*SERVER_ARGS, *extra_server_args]
    return argv


@dataclass(frozen=True)
class DockerCommands:
    """Shell lines for the GPU path, printable as they are."""

    release: str
    build_plan_builder: str
    build_plans: str
    build_serve_image: str
    run_serve_image: str
    run_mounted: str

    def lines(self) -> list[str]:
        return [f"# tritonserver {self.release} (TensorRT plans must be built for this release)",
                self.build_plan_builder, self.build_plans, self.build_serve_image, self.run_serve_image,
                "# or, without building an image:", self.run_mounted]


def docker_commands(repo: str | Path = "build/model_repository", release: str = DEFAULT_RELEASE, *,
                    build_args: list[str] | None = None, context: str | Path = ".",
                    extra_server_args: tuple[str, ...] = ()) -> DockerCommands:
    """Every docker command of the GPU path for ``repo`` and ``release``.

    A repository outside the build ``context`` cannot be copied into the serve image: the image
    lines then say so and only the mounted form applies.
    """
    release = parse_release(release)
    args = build_args or ["--model", "resnet50", "--onnx", "build/onnx/resnet50.onnx", "--precision", "fp16",
                          "--max-batch", "8", "--out", "build/plans"]
    try:
        build_serve = shlex.join(serve_build_argv(repo, release, context))
        run_serve = shlex.join(serve_run_argv(release, extra_server_args=extra_server_args))
    except TritonkitError:
        build_serve = f"# {repo} lies outside the build context {context}: no serve image, use the mounted form"
        run_serve = "# (no serve image)"
    return DockerCommands(
        release=release,
        build_plan_builder=shlex.join(builder_build_argv(release, context)),
        build_plans=shlex.join(builder_run_argv(args, context, release, user="$(id -u):$(id -g)")).replace(
            "'$(id -u):$(id -g)'", '"$(id -u):$(id -g)"'),
        build_serve_image=build_serve,
        run_serve_image=run_serve,
        run_mounted=shlex.join(serve_run_argv(release, repo=repo, extra_server_args=extra_server_args)),
    )
