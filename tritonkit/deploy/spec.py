"""What to deploy: the repository's source, the server image, replicas, resources, autoscaling.

A :class:`DeploySpec` is everything ``tritonkit deploy k8s`` needs beyond the model repository
itself (the models, their target and their load cost are read from the repository, see
:mod:`tritonkit.deploy.repository`). Every field is checked here, so the manifests built from a
spec are well formed by construction; the messages name the field.

The repository reaches the pods in one of three ways (:class:`RepositorySource`):

* ``image`` — the serve image (the ``Dockerfile``'s ``serve`` stage) with the repository at
  ``/models``; the image is the server.
* ``pvc`` — an existing PersistentVolumeClaim (ReadOnlyMany or ReadWriteMany, so every replica on
  every node mounts it) holding the repository, mounted read-only at ``/models``.
* ``url`` — an object store Triton reads itself: ``s3://``, ``gs://`` or ``as://``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tritonkit.build_engines.compat import DEFAULT_RELEASE, TRITON_IMAGE
from tritonkit.errors import TritonkitError
from tritonkit.serve.profiles import CONTAINER_REPO, EXIT_TIMEOUT_S

SOURCE_KINDS = ("image", "pvc", "url")
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "as://")
# uid of triton-server, the non-root user of NGC's tritonserver images (profiles.CONTAINER_USER)
TRITON_UID = 1000
# Kubernetes object names: DNS-1035 labels. The longest suffix added is "-headless" (9), and
# Service names may be 63 characters.
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 63 - len("-headless")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


class DeployError(TritonkitError):
    """A deployment request that cannot make valid manifests."""


def check_name(value: str, field: str, max_len: int = 63) -> str:
    """``value`` if it is a DNS-1035 label of at most ``max_len`` characters."""
    if not _NAME.match(value or "") or len(value) > max_len:
        raise DeployError(f"{field} {value!r} must be lower-case letters, digits and '-', start with a letter "
                          f"and be at most {max_len} characters")
    return value


def check_quantity(value: str, field: str) -> str:
    if not _QUANTITY.match(str(value)):
        raise DeployError(f"{field} {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)")
    return str(value)


@dataclass(frozen=True, kw_only=True)
class RepositorySource:
    """Where the pods get the model repository (see the module docstring)."""

    kind: str
    ref: str

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise DeployError(f"source kind {self.kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        if not self.ref or any(c.isspace() for c in self.ref):
            raise DeployError(f"source {self.kind} needs a reference without spaces (got {self.ref!r})")
        if self.kind == "url" and not self.ref.startswith(OBJECT_STORE_SCHEMES):
            raise DeployError(f"source url {self.ref!r} must start with {', '.join(OBJECT_STORE_SCHEMES)}")
        if self.kind == "pvc":
            check_name(self.ref, "source pvc claim name", 253)

    @property
    def model_repository(self) -> str:
        """The ``--model-repository`` the server is started with."""
        return self.ref if self.kind == "url" else CONTAINER_REPO


@dataclass(frozen=True, kw_only=True)
class DeploySpec:
    """One deployment of a model repository (see the module docstring for ``source``)."""

    source: RepositorySource
    name: str = "tritonkit"
    namespace: str = "tritonkit"
    release: str = DEFAULT_RELEASE            # NGC release of the server image (pvc / url sources)
    server_image: str | None = None           # None: the serve image (image source) or NGC's image
    replicas: int = 2
    max_replicas: int | None = None           # None: twice the replicas
    cpu: str | None = None                    # None: the target's default (DEFAULT_RESOURCES)
    memory: str | None = None
    gpus: int = 1                             # nvidia.com/gpu per pod (gpu target)
    queue_target_us: int = 10_000             # HPA target: mean queue time per request, per pod
    exit_timeout_s: int = EXIT_TIMEOUT_S      # in-flight requests drain this long after SIGTERM
    prestop_s: int = 10                       # endpoints drop the pod before SIGTERM reaches Triton
    run_as_user: int = TRITON_UID
    monitoring_namespace: str = "monitoring"  # where Prometheus runs (may scrape the metrics port)
    api_key_secret: str | None = None         # None: "<name>-api-key"
    cloud_credentials_secret: str | None = None  # url source: Secret with Triton's credential JSON
    kserve: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, "name", MAX_NAME)
        check_name(self.namespace, "namespace")
        check_name(self.monitoring_namespace, "monitoring_namespace")
        for field in ("api_key_secret", "cloud_credentials_secret"):
            if getattr(self, field) is not None:
                check_name(getattr(self, field), field, 253)
        if self.cloud_credentials_secret and self.source.kind != "url":
            raise DeployError("cloud_credentials_secret applies only to an object-store (url) source")
        if self.replicas < 1:
            raise DeployError(f"replicas must be >= 1 (got {self.replicas})")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise DeployError(f"max_replicas {self.max_replicas} is below replicas {self.replicas}")
        if self.gpus < 1:
            raise DeployError(f"gpus must be >= 1 (got {self.gpus})")
        if self.queue_target_us < 1 or self.exit_timeout_s < 1 or self.prestop_s < 0:
            raise DeployError("queue_target_us and exit_timeout_s must be >= 1, prestop_s >= 0")
        if self.run_as_user < 1:
            raise DeployError("run_as_user must be a non-root uid (>= 1)")
        for field in ("cpu", "memory"):
            if getattr(self, field) is not None:
                check_quantity(getattr(self, field), field)
        if not re.match(r"^\d{2}\.\d{2}$", self.release):
            raise DeployError(f"release {self.release!r} is not an NGC release like {DEFAULT_RELEASE}")

    @property
    def image(self) -> str:
        """The container image of the server."""
        if self.server_image:
            return self.server_image
        if self.source.kind == "image":
            return self.source.ref
        return TRITON_IMAGE.format(release=self.release)

    @property
    def hpa_max_replicas(self) -> int:
        return self.max_replicas if self.max_replicas is not None else max(2 * self.replicas, self.replicas + 1)

    @property
    def key_secret(self) -> str:
        return self.api_key_secret or f"{self.name}-api-key"

    @property
    def grace_period_s(self) -> int:
        """terminationGracePeriodSeconds: the preStop delay, then Triton's exit timeout, plus 5 s."""
        return self.prestop_s + self.exit_timeout_s + 5

    @property
    def headless_service(self) -> str:
        return f"{self.name}-headless"

    @property
    def headless_dns(self) -> str:
        """The DNS name that resolves to the address of every ready pod."""
        return f"{self.headless_service}.{self.namespace}.svc.cluster.local"
