"""Deploy a model repository to Kubernetes: manifests, offline checks, capacity planning, observability.

* :mod:`~tritonkit.deploy.spec` — :class:`DeploySpec`, :class:`RepositorySource`, :class:`CanarySpec`
* :mod:`~tritonkit.deploy.repository` — the models, target and startup budget read from config.pbtxt
* :mod:`~tritonkit.deploy.manifests` — the Kubernetes objects as dicts
* :mod:`~tritonkit.deploy.checks` — schema validation, the security checks skipped and why
* :mod:`~tritonkit.deploy.capacity` — replicas for a target request rate from a perf sweep
* :mod:`~tritonkit.deploy.writer` — the Kustomize tree, rendered YAML and report on disk
* :mod:`~tritonkit.deploy.queries` — Triton's metrics as PromQL, shared by all of the below
* :mod:`~tritonkit.deploy.dashboard` — the Grafana dashboard (grafana-foundation-sdk)
* :mod:`~tritonkit.deploy.alerts` — recording and alerting rules, their thresholds
* :mod:`~tritonkit.deploy.alert_tests` — the promtool tests written beside the rules
* :mod:`~tritonkit.deploy.observability` — dashboard, rules and Prometheus config on disk
"""

from tritonkit.deploy.capacity import CapacityPlan, CapacityRequest, CapacityRule, load_sweep, plan_capacity
from tritonkit.deploy.checks import KUBERNETES_VERSION, SchemaReport, validate_objects
from tritonkit.deploy.repository import RepositoryInfo, StartupBudget, read_repository, startup_budget
from tritonkit.deploy.spec import CanarySpec, DeployError, DeploySpec, RepositorySource, canary_split
from tritonkit.deploy.writer import DeployResult, Rendered, render, write_deployment

__all__ = ["CapacityPlan", "CapacityRequest", "CapacityRule", "load_sweep", "plan_capacity", "KUBERNETES_VERSION",
           "SchemaReport", "validate_objects", "RepositoryInfo", "StartupBudget", "read_repository",
           "startup_budget", "CanarySpec", "canary_split", "DeployError", "DeploySpec", "RepositorySource", "DeployResult", "Rendered", "render",
           "write_deployment"]
