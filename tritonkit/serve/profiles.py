"""Serving profiles: `dev` (everything open on loopback) and `production` (hardened).

The production profile follows what Triton's own QA holds a deployment to: the model-repository,
shared-memory, logging and trace APIs answer only requests carrying the API key
(``--http-restricted-api`` / ``--grpc-restricted-protocol``), model control is ``none`` (no
loading or unloading over the network), readiness is strict, in-flight requests get an exit
timeout to drain on SIGTERM, and the metrics port is not published. The key comes from the
environment, never from a flag or a file in the repo.

Clients send the key as the HTTP header ``tritonkit-api-key``; over gRPC Triton expects the
same name with its ``triton-grpc-protocol-`` prefix (see :func:`key_headers`).

For NVIDIA's container, :func:`docker_args` gives the ``docker run`` options and the
server command: ports published on the host's loopback only (metrics not at all), the key
passed by name (``-e TRITONKIT_API_KEY``, so its value is in neither the docker command line
nor the printed command) and expanded by a shell inside the container.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from tritonkit.errors import TritonkitError
from tritonkit.host import is_loopback
from tritonkit.serve.local import Ports, ServerOptions
from tritonkit.serve.metrics import metrics_flags

API_KEY_ENV = "TRITONKIT_API_KEY"
API_KEY_HEADER = "tritonkit-api-key"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
MIN_KEY_LENGTH = 16
PROFILES = ("dev", "production")
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
EXIT_TIMEOUT_S = 30
LOOPBACK = "127.0.0.1"
CONTAINER_REPO = "/models"
CONTAINER_USER = "triton-server"  # the non-root user of NVIDIA's tritonserver images
# Triton parses "header=value" inside a comma-separated flag, and the container shell expands
# it: keep the key to URL-safe characters (what ``secrets.token_urlsafe`` produces).
_KEY_CHARS = re.compile(r"^[A-Za-z0-9._~+/-]+$")


def api_key_from(env: Mapping[str, str] | None = None, name: str = API_KEY_ENV) -> str:
    """The production API key from ``env`` (default: the process environment), checked for length."""
    key = (os.environ if env is None else env).get(name, "")
    if len(key) < MIN_KEY_LENGTH:
        raise TritonkitError(f"the production profile needs an API key of at least {MIN_KEY_LENGTH} characters "
                             f"in ${name}")
    if not _KEY_CHARS.match(key):
        raise TritonkitError(f"${name} may hold only letters, digits and . _ ~ + / - "
                             f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key


def key_headers(protocol: str, key: str, header: str = API_KEY_HEADER) -> dict[str, str]:
    """Request headers that unlock the restricted APIs for ``protocol`` (``http`` or ``grpc``)."""
    name = GRPC_HEADER_PREFIX + header if protocol == "grpc" else header
    return {name: key}


def restricted_flags(key_expr: str, header: str = API_KEY_HEADER) -> list[str]:
    """The two tritonserver flags restricting :data:`RESTRICTED_APIS` to ``header=key_expr``."""
    apis = ",".join(RESTRICTED_APIS)
    return [f"--http-restricted-api={apis}:{header}={key_expr}",
            f"--grpc-restricted-protocol={apis}:{header}={key_expr}"]


def local_options(repo: Path, profile: str, *, host: str = "127.0.0.1", ports: Ports = Ports(0, 0, 0),
                  env: Mapping[str, str] | None = None) -> ServerOptions:
    """ServerOptions for the bundled server. ``env`` defaults to the process environment."""
    http, grpc, metrics = ports
    common = dict(model_repository=Path(repo), host=host, http_port=http, grpc_port=grpc, metrics_port=metrics)
    if profile == "dev":
        return ServerOptions(**common)
    if profile != "production":
        raise TritonkitError(f"unknown profile {profile!r} (dev or production)")
    key = api_key_from(env)
    return ServerOptions(**common, model_control_mode="none", strict_readiness=True, exit_timeout_s=EXIT_TIMEOUT_S,
                         restricted_key=API_KEY_HEADER, restricted_value=key, restricted_apis=RESTRICTED_APIS,
                         metrics_host=LOOPBACK)


def bind_warnings(profile: str, host: str) -> list[str]:
    """Warnings for serving ``profile`` on ``host`` (the CLI prints them; none on loopback)."""
    if is_loopback(host):
        return []
    if profile == "production":
        return [f"production profile bound to {host}, beyond loopback: inference, health, metadata, model-config "
                f"and statistics answer anyone who can reach it without the key (Triton has no authentication for "
                f"them); put it behind an authenticating proxy or firewall. /metrics stays on {LOOPBACK}."]
    return [f"dev profile bound to {host}, beyond loopback: every API, model control and /metrics included, "
            f"is open to anyone who can reach it; use --profile production or bind 127.0.0.1"]


@dataclass(frozen=True)
class DockerArgs:
    """``docker run [docker_options] IMAGE [server_command]`` for one profile."""

    docker_options: tuple[str, ...]
    server_command: tuple[str, ...]


def _server_flags(profile: str, extra: tuple[str, ...] = ()) -> list[str]:
    flags = [f"--model-repository={CONTAINER_REPO}", "--strict-readiness=true",
             f"--exit-timeout-secs={EXIT_TIMEOUT_S}", *metrics_flags()]
    if profile == "production":
        flags += ["--model-control-mode=none"] + restricted_flags(f"${{{API_KEY_ENV}}}")
    return flags + list(extra)


def docker_args(profile: str, repo: Path, ports: Ports = Ports(8000, 8001, 8002), *,
                env: Mapping[str, str] | None = None, gpus: str = "all",
                extra_flags: tuple[str, ...] = (), require_key: bool = True) -> DockerArgs:
    """Docker options and server command for ``profile``; ``extra_flags`` go to tritonserver.

    Ports are published on the host's loopback only. ``docker stop`` waits for the exit timeout
    plus a margin, so SIGTERM drains in-flight requests before the kill.

    dev: a metrics port of ``None`` is not published.
    production: the metrics port is not published (scrape it from a sidecar on the container
    network), and the key must be set in the environment of the ``docker`` command; it is checked
    here (unless ``require_key`` is False: a command only printed) and passed by name (``-e TRITONKIT_API_KEY``), then expanded by a shell inside the
    container, so its value is in neither the docker command line nor the printed command.
    """
    if profile not in PROFILES:
        raise TritonkitError(f"unknown profile {profile!r} (dev or production)")
    http, grpc, metrics = ports
    published = ["-p", f"127.0.0.1:{http}:8000", "-p", f"127.0.0.1:{grpc}:8001"]
    if profile == "dev":
        published += ["-p", f"127.0.0.1:{metrics}:8002"] if metrics is not None else []
    else:
        if require_key:
            api_key_from(env)
        published += ["-e", API_KEY_ENV]
    options = ("--rm", f"--gpus={gpus}", "--user", CONTAINER_USER, "--shm-size=1g", "--ulimit", "memlock=-1",
               "--stop-timeout", str(EXIT_TIMEOUT_S + 10), *published,
               "-v", f"{Path(repo).resolve()}:{CONTAINER_REPO}:ro")
    flags = _server_flags(profile, tuple(extra_flags))
    if profile == "production":
        return DockerArgs(options, ("sh", "-c", "exec tritonserver " + " ".join(f'"{flag}"' for flag in flags)))
    return DockerArgs(options, ("tritonserver", *flags))
