"""Offline checks of rendered objects: Kubernetes schemas, and the security checks skipped on purpose.

:func:`validate_objects` checks every object against the OpenAPI schemas of Kubernetes
:data:`KUBERNETES_VERSION`, strictly (an unknown field fails), with the ``kubernetes-validate``
package. Custom resources have no schema there; they are listed as skipped with the reason.

:data:`SKIPPED_SECURITY_CHECKS` are the checkov checks the manifests fail on purpose, each with
its reason. They are written into the objects as checkov's own ``checkov.io/skip<N>`` annotations
(so a scan of the rendered YAML honours them, and the reason travels with the manifest) and
into the written report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from tritonkit._lazy import lazy_import

kv = lazy_import("kubernetes_validate")

KUBERNETES_VERSION = "1.33.0"
CRD_REASONS = {
    "monitoring.coreos.com/v1": "Prometheus Operator custom resource: no schema in kubernetes-validate",
    "serving.kserve.io/v1beta1": "KServe custom resource: no schema in kubernetes-validate",
}
# checkov check id -> (object kinds it concerns, why it is skipped)
SKIPPED_SECURITY_CHECKS = {
    "CKV_K8S_43": (("Deployment",), "the image is pinned by its NGC release tag; NGC's digest for it is not known "
                                    "offline (a server image given as name@sha256:... pins it)"),
    "CKV_K8S_40": (("Deployment",), "runs as uid 1000, the non-root triton-server user NGC's tritonserver image "
                                    "is built for (run_as_user above 10000 passes where the image allows it)"),
}


@dataclass(frozen=True)
class SchemaReport:
    """Which objects were validated against which Kubernetes version, which were skipped, and errors."""

    version: str
    validated: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    errors: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def object_id(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def validate_objects(objects: Iterable[dict], version: str = KUBERNETES_VERSION) -> SchemaReport:
    """Validate each object strictly; custom resources without a schema are skipped, not failed."""
    validated, skipped, errors = [], [], []
    for obj in objects:
        oid = object_id(obj)
        reason = CRD_REASONS.get(obj.get("apiVersion", ""))
        if reason:
            skipped.append((oid, reason))
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            errors.append(f"{oid}: {where}: {exc.message}")
            continue
        except kv.SchemaNotFoundError as exc:
            errors.append(f"{oid}: {exc.message}")
            continue
        validated.append(oid)
    return SchemaReport(version, tuple(validated), tuple(skipped), tuple(errors))


def skip_annotations(kind: str) -> dict[str, str]:
    """checkov's ``checkov.io/skip<N>: <id>=<reason>`` annotations for an object of ``kind``."""
    chosen = [(cid, why) for cid, (kinds, why) in SKIPPED_SECURITY_CHECKS.items() if kind in kinds]
    return {f"checkov.io/skip{i}": f"{cid}={why}" for i, (cid, why) in enumerate(chosen, start=1)}
