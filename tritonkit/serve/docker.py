"""The GPU target: NVIDIA's tritonserver container serving a model repository.

Before anything runs, every TensorRT plan in the repository is checked against the container
release (TensorRT version) and the host GPU (compute capability) — a plan built elsewhere is
the most reported reason a model fails to load. Then the pinned ``docker run --gpus all``
command is run, or printed where no Docker engine answers (so it can be run on the GPU host).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from tritonkit.errors import TritonkitError
from tritonkit.serve.local import Ports


def docker_engine_available(docker: str = "docker", timeout_s: float = 15.0) -> bool:
    """True when a Docker engine answers (the client alone is not enough)."""
    if shutil.which(docker) is None:
        return False
    try:
        done = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def host_compute_capability() -> str | None:
    """The first GPU's compute capability from nvidia-smi, or None when there is no GPU here."""
    from tritonkit.build_engines.compat import host_gpus

    try:
        gpus = host_gpus()
    except TritonkitError:
        return None
    return gpus[0].compute_capability if gpus else None


def docker_serve_argv(repo: Path, release: str | None = None, *, profile: str = "dev",
                      ports: Ports = Ports(8000, 8001, 8002), host_cc: str | None = None,
                      env=None) -> list[str]:
    """Check the repository's plans, then build the ``docker run`` argv for ``profile``."""
    from tritonkit.build_engines import compat
    from tritonkit.build_engines.docker import serve_run_argv

    repo = Path(repo)
    if not repo.is_dir():
        raise TritonkitError(f"model repository {repo} does not exist")
    release = compat.parse_release(release or compat.DEFAULT_RELEASE)
    results = compat.check_repository_plans(repo, release, host_cc)
    http, grpc, metrics = ports
    return serve_run_argv(release, repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          extra_server_args=compat.server_args_for(results), profile=profile, env=env)


def serve_docker(repo: Path, release: str | None = None, *, print_only: bool = False, profile: str = "dev",
                 ports: Ports = Ports(8000, 8001, 8002)) -> int:
    """Run the container (exit code passed through), or print the command where Docker cannot run it."""
    from tritonkit.build_engines import compat

    release = compat.parse_release(release or compat.DEFAULT_RELEASE)
    if not compat.is_patched(release):
        print(f"warning: tritonserver {release} predates the security fixes of {compat.MIN_PATCHED_RELEASE}; "
              f"prefer {compat.DEFAULT_RELEASE} or later")
    argv = docker_serve_argv(repo, release, profile=profile, ports=ports, host_cc=host_compute_capability())
    command = shlex.join(argv)
    if print_only:
        print(command)
        return 0
    if not docker_engine_available():
        print("no Docker engine answers on this machine; run this on the GPU host:")
        print(command)
        return 0
    return subprocess.run(argv).returncode
