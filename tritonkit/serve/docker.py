"""The GPU target: NVIDIA's tritonserver container serving a model repository.

Two ways to run it, both from one NGC release (``Dockerfile`` at the repository root):

* the ``serve`` image (``tritonserver:<release>-py3`` with the repository copied in, run as the
  image's non-root ``triton-server`` user);
* the stock ``tritonserver:<release>-py3`` image with the repository mounted read-only.

Both publish on the host's loopback only (127.0.0.1) and default to the production profile
(:mod:`.profiles`: restricted APIs behind the key in ``$TRITONKIT_API_KEY``, model control none,
metrics not published); ``profile="dev"`` is the explicit opt-out, whose metrics port is published
only when one is given.

Before anything runs, every TensorRT plan in the repository is checked against the container
release (TensorRT version) and the host GPU (compute capability) — a plan built elsewhere is the
most reported reason a model fails to load. :class:`DockerServer` runs the container detached with
the start / wait_ready / stop interface of :class:`~tritonkit.serve.local.LocalServer`.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

from tritonkit.build_engines.compat import server_args_for
from tritonkit.build_engines.docker import builder_build_argv, builder_run_argv
from tritonkit.build_engines.host import docker_engine_available, docker_gpus_arg, ensure_image, host_gpus
from tritonkit.build_engines.releases import (
    DEFAULT_RELEASE, MIN_PATCHED_RELEASE, TRITON_IMAGE, ContainerTensorRT, is_patched, parse_release)
from tritonkit.errors import ServerError, TritonkitError
from tritonkit.model_repository.plans import check_repository_plans
from tritonkit.serve.metrics import metrics_flags
from tritonkit.serve.profiles import (
    API_KEY_ENV, EXIT_TIMEOUT_S, PROFILES, api_key_from, docker_args, restricted_flags)

SERVE_TARGET = "serve"
DEFAULT_PROFILE = "production"
# The serving command of the `serve` image (its CMD): static model set, strict readiness.
SERVER_ARGS = ("tritonserver", "--model-repository=/models", "--model-control-mode=none",
               "--strict-readiness=true", "--exit-on-error=true", "--disable-auto-complete-config", *metrics_flags())


def serve_tag(release: str) -> str:
    return f"tritonkit-serve:{parse_release(release)}"


def _in_context(path: Path, context: Path) -> str:
    try:
        return path.resolve().relative_to(context.resolve()).as_posix()
    except ValueError:
        raise TritonkitError(f"{path}: the model repository must lie inside the docker build context "
                             f"{context} to be copied into the image (or serve it mounted instead)") from None


def serve_build_argv(repo: str | Path, release: str = DEFAULT_RELEASE, context: str | Path = ".") -> list[str]:
    rel = _in_context(Path(repo), Path(context))
    return ["docker", "build", "--target", SERVE_TARGET, "--build-arg", f"TRITON_RELEASE={parse_release(release)}",
            "--build-arg", f"MODEL_REPOSITORY={rel}", "-t", serve_tag(release), str(context)]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How the server container runs: profile, loopback ports, GPUs, detached name."""

    profile: str = DEFAULT_PROFILE
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int | None = None          # dev only; None: not published
    gpus: str = "all"
    name: str | None = None                  # set: run detached (-d) under this name
    require_key: bool = True                 # False: a command only printed, the key is checked when it runs

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise TritonkitError(f"profile {self.profile!r} must be one of {', '.join(PROFILES)}")

    def detach_options(self) -> list[str]:
        return ["-d", "--name", self.name] if self.name else []


def production_command(flags: list[str]) -> list[str]:
    """The serve image's production command: a container shell only expands the API key into the
    restricted-API flags (constant text), and every other flag reaches tritonserver as an
    argument of its own (``"$@"``), never parsed by the shell."""
    keyed = " ".join(f'"{f}"' for f in restricted_flags(f"${{{API_KEY_ENV}}}"))
    return ["sh", "-c", f'exec tritonserver "$@" {keyed}', "tritonserver", *flags]


def _image_run_argv(release: str, opts: RunOptions, extra: tuple[str, ...], env) -> list[str]:
    """The ``serve`` image, published on loopback; production passes its flags through a container shell."""
    published = ["-p", f"127.0.0.1:{opts.http_port}:8000", "-p", f"127.0.0.1:{opts.grpc_port}:8001"]
    if opts.profile == "dev" and opts.metrics_port is not None:
        published += ["-p", f"127.0.0.1:{opts.metrics_port}:8002"]
    if opts.profile == "production":
        if opts.require_key:
            api_key_from(env)                                       # one-line error without a key
        command = production_command([*SERVER_ARGS[1:], f"--exit-timeout-secs={EXIT_TIMEOUT_S}", *extra])
        return ["docker", "run", *opts.detach_options(), "--rm", "--gpus", opts.gpus, *published, "-e", API_KEY_ENV,
                serve_tag(release), *command]
    command = [*SERVER_ARGS, *extra] if extra else []
    return ["docker", "run", *opts.detach_options(), "--rm", "--gpus", opts.gpus, *published, serve_tag(release),
            *command]


def serve_run_argv(release: str = DEFAULT_RELEASE, *, repo: str | Path | None = None,
                   options: RunOptions = RunOptions(), extra_server_args: tuple[str, ...] = (),
                   env: Mapping[str, str] | None = None) -> list[str]:
    """``docker run`` of the server: the ``serve`` image, or (``repo`` given) the stock image with the
    repository mounted read-only, with the options and server flags of ``options.profile``."""
    release = parse_release(release)
    if repo is None:
        return _image_run_argv(release, options, tuple(extra_server_args), env)
    args = docker_args(options.profile, Path(repo), (options.http_port, options.grpc_port, options.metrics_port),
                       env=env, gpus=options.gpus, extra_flags=tuple(extra_server_args),
                       require_key=options.require_key)
    return ["docker", "run", *options.detach_options(), *args.docker_options, TRITON_IMAGE.format(release=release),
            *args.server_command]


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

    def to_dict(self) -> dict:
        return asdict(self)


def _shell_user(line: str) -> str:
    return line.replace("'$(id -u):$(id -g)'", '"$(id -u):$(id -g)"')


def docker_commands(repo: str | Path = "model_repository", release: str = DEFAULT_RELEASE, *,
                    build_args: list[str] | None = None, context: str | Path = ".",
                    extra_server_args: tuple[str, ...] = (), options: RunOptions | None = None) -> DockerCommands:
    """Every docker command of the GPU path for ``repo`` and ``release`` (printed, so the API key is
    not required now: the production lines pass it by name from the environment they run in).

    A repository outside the build ``context`` cannot be copied into the serve image: the image
    lines then say so and only the mounted form applies.
    """
    release = parse_release(release)
    opts = options or RunOptions(require_key=False)
    args = build_args or ["--model", "resnet50", "--onnx", "build/onnx/resnet50.onnx", "--precision", "fp16",
                          "--max-batch", "8", "--out", "build/plans"]
    try:
        build_serve = shlex.join(serve_build_argv(repo, release, context))
        run_serve = shlex.join(serve_run_argv(release, options=opts, extra_server_args=extra_server_args))
    except TritonkitError:
        build_serve = f"# {repo} lies outside the build context {context}: no serve image, use the mounted form"
        run_serve = "# (no serve image)"
    return DockerCommands(
        release=release,
        build_plan_builder=shlex.join(builder_build_argv(release, context)),
        build_plans=_shell_user(shlex.join(builder_run_argv(args, context, release, gpus=opts.gpus,
                                                            user="$(id -u):$(id -g)"))),
        build_serve_image=build_serve,
        run_serve_image=run_serve,
        run_mounted=shlex.join(serve_run_argv(release, repo=repo, options=opts, extra_server_args=extra_server_args)),
    )


def host_compute_capability(gpu_index: int | None = None) -> str | None:
    """The (selected) GPU's compute capability from nvidia-smi, or None when there is no GPU here."""
    try:
        gpus = host_gpus(index=gpu_index)
    except TritonkitError:
        return None
    return gpus[0].compute_capability if gpus else None


@dataclass(frozen=True)
class DockerServe:
    """What ``serve --docker`` did: the command, whether it ran, its exit code, and notes to show."""

    command: str
    ran: bool
    returncode: int | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def docker_serve_argv(repo: Path, release: str | None = None, *, options: RunOptions = RunOptions(),
                      host_cc: str | None = None, container_trt: str | ContainerTensorRT | None = None,
                      env=None) -> tuple[list[str], tuple[str, ...]]:
    """Check the repository's plans, then the ``docker run`` argv (mounted form) and the check's notes."""
    repo = Path(repo)
    if not repo.is_dir():
        raise TritonkitError(f"model repository {repo} does not exist")
    release = parse_release(release or DEFAULT_RELEASE)
    results = check_repository_plans(repo, release, host_cc, container_trt=container_trt)
    notes = tuple(dict.fromkeys(n for r in results for n in (r.container_note, *r.notes) if n))
    argv = serve_run_argv(release, repo=repo, options=options, extra_server_args=server_args_for(results), env=env)
    return argv, notes


def serve_docker(repo: Path, release: str | None = None, *, print_only: bool = False,
                 options: RunOptions = RunOptions(), container_trt: str | None = None,
                 gpu_index: int | None = None, env=None) -> DockerServe:
    """Run the container in the foreground (exit code passed back), or only form the command where
    asked or where no Docker engine answers."""
    release = parse_release(release or DEFAULT_RELEASE)
    notes = [] if is_patched(release) else [
        f"tritonserver {release} predates the security fixes of {MIN_PATCHED_RELEASE}; prefer {DEFAULT_RELEASE} or later"]
    argv, check_notes = docker_serve_argv(repo, release, options=options, host_cc=host_compute_capability(gpu_index),
                                          container_trt=container_trt, env=env)
    notes += check_notes
    command = shlex.join(argv)
    if print_only:
        return DockerServe(command, False, None, tuple(notes))
    if not docker_engine_available():
        return DockerServe(command, False, None, (*notes, "no Docker engine answers on this machine; run the "
                                                          "command on the GPU host"))
    return DockerServe(command, True, subprocess.run(argv, check=False).returncode, tuple(notes))


Runner = Callable[..., subprocess.CompletedProcess]


class DockerServer:
    """A tritonserver container, detached, with the interface of :class:`~tritonkit.serve.local.LocalServer`.

    ``argv`` is a ``docker run`` command formed with ``RunOptions(name=...)`` (so it runs detached
    under that name). ``runner`` runs docker commands (``subprocess.run`` by default). ``image`` (the
    one ``argv`` runs) is pulled first when absent, without a deadline
    (:func:`~tritonkit.build_engines.host.ensure_image`): ``start``'s deadlines then bound the
    container's start and the server's readiness, not a first 10-15 GB pull.
    """

    def __init__(self, argv: list[str], *, name: str, host: str = "127.0.0.1",
                 ports: tuple[int, int, int | None] = (8000, 8001, None), docker: str = "docker",
                 runner: Runner = subprocess.run, exit_timeout_s: int = EXIT_TIMEOUT_S, image: str | None = None):
        if "--name" not in argv or argv[argv.index("--name") + 1] != name:
            raise TritonkitError(f"docker run command must name its container {name!r} (RunOptions(name=...))")
        if image is not None and image not in argv:
            raise TritonkitError(f"image {image!r} is not the one the docker run command runs")
        self.argv, self.name, self.ports, self.image = list(argv), name, ports, image
        self.host, self.exit_timeout_s = host, exit_timeout_s
        self._docker, self._run, self.container_id = docker, runner, None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports[0]}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports[1]}"

    @property
    def metrics_url(self) -> str | None:
        return f"http://{self.host}:{self.ports[2]}/metrics" if self.ports[2] else None

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    def _docker_cmd(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        try:
            return self._run([self._docker, *args], capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"docker {args[0]} failed to run ({type(exc).__name__})") from None

    def start(self, timeout_s: float = 300.0) -> "DockerServer":
        if self.container_id is not None:
            raise ServerError("server already started")
        if self.image is not None:
            ensure_image(self.image, self._docker, self._run)
        try:
            proc = self._run(self.argv, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"docker run failed to run ({type(exc).__name__})") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise ServerError(f"docker run of {self.name} failed (exit {proc.returncode}): "
                              f"{tail[-1] if tail else 'no output'}")
        self.container_id = (proc.stdout or "").strip()[:12] or self.name
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def is_alive(self) -> bool:
        if self.container_id is None:
            return False
        proc = self._docker_cmd("inspect", "-f", "{{.State.Running}}", self.name, timeout_s=30)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout_s: float, poll_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if not self.is_alive():
                raise ServerError(f"tritonserver container {self.name} exited while starting: {self.log_tail(5)}")
            if time.monotonic() > deadline:
                raise ServerError(f"tritonserver container {self.name} not ready at {self.http_url} after "
                                  f"{timeout_s:.0f} s: {self.log_tail(5)}")
            time.sleep(poll_s)

    def log_tail(self, lines: int = 30) -> str:
        proc = self._docker_cmd("logs", "--tail", str(lines), self.name, timeout_s=30)
        text = (proc.stdout or "") + (proc.stderr or "")
        return text.strip().replace("\n", " | ") or "(no log)"

    def stop(self, timeout_s: float | None = None) -> int | None:
        """``docker stop`` (SIGTERM, so Triton drains; SIGKILL after the exit timeout + grace)."""
        if self.container_id is None:
            return None
        self.container_id = None
        wait = int(timeout_s if timeout_s is not None else self.exit_timeout_s + 10)
        return self._docker_cmd("stop", "-t", str(wait), self.name, timeout_s=wait + 30).returncode

    def __enter__(self) -> "DockerServer":
        return self.start() if self.container_id is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["SERVE_TARGET", "SERVER_ARGS", "DEFAULT_PROFILE", "RunOptions", "DockerCommands", "DockerServe",
           "DockerServer", "serve_tag", "serve_build_argv", "serve_run_argv", "docker_commands", "docker_serve_argv",
           "serve_docker", "host_compute_capability", "docker_gpus_arg"]
