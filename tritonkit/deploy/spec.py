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

import math
import re
from dataclasses import dataclass, replace

from tritonkit.build_engines.compat import DEFAULT_RELEASE, TRITON_IMAGE
from tritonkit.build_engines.releases import CompatError, parse_tensorrt_version
from tritonkit.errors import TritonkitError
from tritonkit.serve.profiles import CONTAINER_REPO, EXIT_TIMEOUT_S

SOURCE_KINDS = ("image", "pvc", "url")
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "as://")
# The CLI flag that sets each source kind's reference (named in errors).
SOURCE_FIELDS = {"image": "image", "pvc": "pvc", "url": "model_url"}
# uid of triton-server, the non-root user of NGC's tritonserver images (profiles.CONTAINER_USER)
TRITON_UID = 1000
INT32_MAX = 2**31 - 1          # Kubernetes' int32 fields (replicas, ports, seconds)
# Every value that reaches a manifest is checked whole (``fullmatch``: ``$`` with ``match`` would
# let a trailing newline through). None of these patterns admits whitespace, quotes, ``$``, ``\``,
# backticks or shell operators, so no value can be read as more than one argument or expanded by
# Kubernetes' ``$(VAR)`` substitution.
# Kubernetes object names: DNS-1035 labels. The longest suffix added is "-headless" (9), and
# Service names may be 63 characters.
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_NAME = 63 - len("-headless")
# Kubernetes quantities (resource.Quantity): a decimal number with a binary or decimal SI suffix.
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_RELEASE = re.compile(r"[0-9]{2}\.[0-9]{2}")
# Container image references, as the distribution/reference grammar defines them:
# [registry[:port]/]path[:tag][@digest]
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"(?:{_DOMAIN}(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
                    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
MAX_IMAGE = 255 + 1 + 128 + 1 + 200
# Object-store repositories: the scheme, then URL characters that need no quoting anywhere.
_OBJECT_URL = re.compile(r"(?:s3|gs|as)://[A-Za-z0-9][A-Za-z0-9._~:@%+=,/-]*")
MAX_URL = 2048


class DeployError(TritonkitError):
    """A deployment request that cannot make valid manifests."""


def _shown(value) -> str:
    """``value`` for a one-line message: its repr (newlines escaped), cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(value: str, field: str, max_len: int = 63) -> str:
    """``value`` if it is a DNS-1035 label of at most ``max_len`` characters."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > max_len:
        raise DeployError(f"{field} {_shown(value)} must be lower-case letters, digits and '-', start with a letter "
                          f"and be at most {max_len} characters", fields=(field,))
    return value


def check_quantity(value: str, field: str) -> str:
    """``value`` if it is a Kubernetes quantity (``4``, ``500m``, ``16Gi``)."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise DeployError(f"{field} {_shown(value)} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)", fields=(field,))
    return value


def check_image(value: str, field: str) -> str:
    """``value`` if it is a container image reference (``registry[:port]/path[:tag][@digest]``)."""
    if not isinstance(value, str) or len(value) > MAX_IMAGE or not _IMAGE.fullmatch(value):
        raise DeployError(f"{field} {_shown(value)} is not a container image reference "
                          "(registry/path:tag or registry/path@sha256:..., no spaces or shell characters)",
                          fields=(field,))
    return value


def check_object_url(value: str, field: str) -> str:
    """``value`` if it is an ``s3://``, ``gs://`` or ``as://`` URL of plain URL characters."""
    if not isinstance(value, str) or not value.startswith(OBJECT_STORE_SCHEMES):
        raise DeployError(f"{field} {_shown(value)} must start with {', '.join(OBJECT_STORE_SCHEMES)}", fields=(field,))
    if len(value) > MAX_URL or not _OBJECT_URL.fullmatch(value):
        raise DeployError(f"{field} {_shown(value)} may hold only letters, digits and . _ ~ : @ % + = , / - after "
                          "the scheme (no spaces, quotes, $, backticks or shell operators)", fields=(field,))
    return value


def check_int(value: int, field: str, low: int, high: int = INT32_MAX) -> int:
    """``value`` if it is an integer in [low, high] (a bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DeployError(f"{field} must be an integer in [{low}, {high}] (got {_shown(value)})", fields=(field,))
    return value


@dataclass(frozen=True, kw_only=True)
class RepositorySource:
    """Where the pods get the model repository (see the module docstring)."""

    kind: str
    ref: str

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise DeployError(f"source kind {self.kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        field = SOURCE_FIELDS[self.kind]
        if self.kind == "url":
            check_object_url(self.ref, field)
        elif self.kind == "image":
            check_image(self.ref, field)
        else:
            check_name(self.ref, field, 253)

    @property
    def model_repository(self) -> str:
        """The ``--model-repository`` the server is started with."""
        return self.ref if self.kind == "url" else CONTAINER_REPO


CANARY_SUFFIX = "-canary"
STABLE_SUFFIX = "-stable"


@dataclass(frozen=True, kw_only=True)
class CanarySpec:
    """A second repository served beside the stable one for ``percent`` of the traffic.

    Without KServe the canary is a second Deployment behind the same client Service, so the
    traffic splits by ready pods: :func:`canary_split` gives the replicas and the share they get.
    With KServe it is the InferenceService's ``canaryTrafficPercent`` (a per-request split).
    ``server_image``: the canary's server image for a pvc / url source (default: the stable's).
    """

    source: RepositorySource
    percent: int = 10
    server_image: str | None = None

    def __post_init__(self) -> None:
        check_int(self.percent, "canary_percent", 1, 99)
        if self.server_image is not None:
            check_image(self.server_image, "canary_server_image")


def canary_split(stable_replicas: int, percent: int) -> tuple[int, float]:
    """``(canary replicas, share of the traffic they get)`` beside ``stable_replicas`` pods that
    share one Service: the replica count nearest ``percent`` of all pods, at least one. A Service
    spreads connections over its ready pods, so the share is ``canary / (stable + canary)`` and
    moves in steps of one pod."""
    check_int(stable_replicas, "replicas", 1)
    check_int(percent, "canary_percent", 1, 99)
    canary = max(1, math.floor(stable_replicas * percent / (100 - percent) + 0.5))
    return canary, canary / (stable_replicas + canary)


@dataclass(frozen=True, kw_only=True)
class DeploySpec:
    """One deployment of a model repository (see the module docstring for ``source``)."""

    source: RepositorySource
    name: str = "tritonkit"
    namespace: str = "tritonkit"
    release: str = DEFAULT_RELEASE            # NGC release of the server image (the serve image's base)
    container_trt_version: str | None = None  # TensorRT of that release, where tritonkit's table lacks it
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
    canary: CanarySpec | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "name", MAX_NAME)
        check_name(self.namespace, "namespace")
        check_name(self.monitoring_namespace, "monitoring_namespace")
        for field in ("api_key_secret", "cloud_credentials_secret"):
            if getattr(self, field) is not None:
                check_name(getattr(self, field), field, 253)
        if self.cloud_credentials_secret and self.source.kind != "url":
            raise DeployError("cloud_credentials_secret applies only to an object-store (url) source",
                              fields=("cloud_credentials_secret",))
        if self.server_image is not None:
            check_image(self.server_image, "server_image")
        if not isinstance(self.release, str) or not _RELEASE.fullmatch(self.release):
            raise DeployError(f"release {_shown(self.release)} is not an NGC release like {DEFAULT_RELEASE}",
                              fields=("release",))
        if self.container_trt_version is not None:
            try:
                parse_tensorrt_version(self.container_trt_version)
            except CompatError:
                raise DeployError(f"container_trt_version {_shown(self.container_trt_version)} is not a TensorRT "
                                  "version like 10.13.3.9", fields=("container_trt_version",)) from None
        for field in ("cpu", "memory"):
            if getattr(self, field) is not None:
                check_quantity(getattr(self, field), field)
        self._check_numbers()

    def _check_numbers(self) -> None:
        check_int(self.replicas, "replicas", 1)
        if self.max_replicas is not None and check_int(self.max_replicas, "max_replicas", 1) < self.replicas:
            raise DeployError(f"max_replicas {self.max_replicas} is below replicas {self.replicas}",
                              fields=("max_replicas", "replicas"))
        check_int(self.gpus, "gpus", 1, 64)
        check_int(self.queue_target_us, "queue_target_us", 1)
        check_int(self.exit_timeout_s, "exit_timeout_s", 1, 86_400)
        check_int(self.prestop_s, "prestop_s", 0, 3_600)
        check_int(self.run_as_user, "run_as_user", 1)   # non-root

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
    def canary_name(self) -> str:
        """The canary's Deployment and Service (the stable pods' own Service: :attr:`stable_name`)."""
        return f"{self.name}{CANARY_SUFFIX}"

    @property
    def stable_name(self) -> str:
        return f"{self.name}{STABLE_SUFFIX}"

    def canary_spec(self) -> "DeploySpec":
        """What the canary pods run: this spec with the canary's source, server image and replica
        count (:func:`canary_split`); same name, namespace, secrets and resources."""
        if self.canary is None:
            raise DeployError("no canary in this deployment", fields=("canary",))
        c = self.canary
        replicas, _ = canary_split(self.replicas, c.percent)
        image = c.server_image or (self.server_image if c.source.kind != "image" else None)
        return replace(self, source=c.source, server_image=image, replicas=replicas, max_replicas=None,
                       cloud_credentials_secret=self.cloud_credentials_secret if c.source.kind == "url" else None,
                       canary=None)

    @property
    def headless_service(self) -> str:
        return f"{self.name}-headless"

    @property
    def headless_dns(self) -> str:
        """The DNS name that resolves to the address of every ready pod."""
        return f"{self.headless_service}.{self.namespace}.svc.cluster.local"
