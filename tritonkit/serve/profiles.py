"""Serving profiles: `dev` (everything open on loopback) and `production` (hardened).

The production profile follows what Triton's own QA holds a deployment to: the model-repository,
shared-memory, logging and trace APIs answer only requests carrying the API key
(``--http-restricted-api`` / ``--grpc-restricted-protocol``), model control is ``none`` (no
loading or unloading over the network), readiness is strict, and the metrics port stays on the
bind address. The key comes from the environment, never from a flag or a file in the repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from tritonkit.errors import TritonkitError
from tritonkit.serve.local import ServerOptions

API_KEY_ENV = "TRITONKIT_API_KEY"
API_KEY_HEADER = "tritonkit-api-key"
MIN_KEY_LENGTH = 16


def local_options(repo: Path, profile: str, *, host: str = "127.0.0.1", ports: tuple[int, int, int] = (0, 0, 0),
                  env: Mapping[str, str] | None = None) -> ServerOptions:
    http, grpc, metrics = ports
    common = dict(model_repository=Path(repo), host=host, http_port=http, grpc_port=grpc, metrics_port=metrics)
    if profile == "dev":
        return ServerOptions(**common)
    if profile != "production":
        raise TritonkitError(f"unknown profile {profile!r} (dev or production)")
    key = (env or {}).get(API_KEY_ENV, "")
    if len(key) < MIN_KEY_LENGTH:
        raise TritonkitError(f"the production profile needs an API key of at least {MIN_KEY_LENGTH} characters "
                             f"in ${API_KEY_ENV}")
    return ServerOptions(**common, model_control_mode="none", strict_readiness=True,
                         restricted_key=API_KEY_HEADER, restricted_value=key)
