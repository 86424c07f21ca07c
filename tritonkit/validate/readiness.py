"""readiness: the server is live and ready, every model under test is READY, plans fit.

The repository index is restricted in the production profile; with the API key it is read
with the key, without one each model's own readiness endpoint (never restricted) is asked
instead and the detail says so.
"""

from __future__ import annotations

from tritonkit.build_engines import compat
from tritonkit.errors import ServerError
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.result import CheckResult, error_text, fail, ok, verdict


def check_live(ctx: Context) -> CheckResult:
    try:
        live = ctx.server().live()
    except ServerError as exc:
        return fail("readiness.live", str(exc))
    except Exception as exc:  # an answer tritonclient could not read
        return fail("readiness.live", f"no server answers at {ctx.endpoints.grpc}: {error_text(exc)}")
    return verdict("readiness.live", [] if live else ["server says it is not live"],
                   f"server at {ctx.endpoints.grpc} is live")


def check_ready(ctx: Context) -> CheckResult:
    try:
        ready = ctx.server().server_ready()
        meta = ctx.grpc().get_server_metadata(as_json=True, client_timeout=ctx.options.request_timeout_s)
    except Exception as exc:
        return fail("readiness.ready", f"server at {ctx.endpoints.grpc} did not answer: {error_text(exc)}")
    version = meta.get("version", "?")
    return verdict("readiness.ready", [] if ready else ["server is live but not ready"],
                   f"server ready (Triton {version})", server_version=version)


def repository_states(ctx: Context) -> tuple[dict[str, tuple[str, str]] | None, str]:
    """``{model: (state, reason)}`` from the repository index, or (None, why not)."""
    try:
        index = ctx.grpc().get_model_repository_index(
            headers=ctx.key_headers("grpc"), as_json=True, client_timeout=ctx.options.request_timeout_s)
    except Exception as exc:
        return None, error_text(exc)
    states: dict[str, tuple[str, str]] = {}
    for m in index.get("models", []):
        states[m.get("name", "?")] = (m.get("state", "UNKNOWN"), m.get("reason", ""))
    return states, ""


def check_models_ready(ctx: Context) -> list[CheckResult]:
    states, why = repository_states(ctx)
    results = []
    for target in ctx.targets:
        name = "readiness.model"
        if states is not None:
            state, reason = states.get(target.name, ("ABSENT", "not in the repository index"))
            problems = [] if state == "READY" else [f"state {state}" + (f": {reason}" if reason else "")]
            results.append(verdict(name, problems, "READY in the repository index", target.name, state=state))
            continue
        try:
            ready = ctx.served(target.name).model_ready()
        except Exception as exc:
            results.append(fail(name, f"readiness unknown: {error_text(exc)}", target.name))
            continue
        note = f"repository index not readable ({why}); per-model readiness endpoint used"
        results.append(verdict(name, [] if ready else [f"not ready ({note})"], f"ready ({note})", target.name))
    return results


def check_plan(ctx: Context, target: ModelTarget) -> CheckResult:
    """A TensorRT plan must fit the server it runs in (sidecar checks from build_engines.compat)."""
    name = "readiness.plan"
    if target.config_error:
        return fail(name, f"not run: {target.config_error}", target.name)
    if target.config.get("platform") != "tensorrt_plan" and target.config.get("backend") != "tensorrt":
        return ok(name, "not applicable: no plans", target.name)
    return plan_compat_result(ctx, target, compat)


def plan_compat_result(ctx: Context, target: ModelTarget, compat) -> CheckResult:
    name = "readiness.plan"
    repo = ctx.endpoints.repo
    if repo is None:
        return fail(name, "plan sidecar not readable: the repository is not on this machine (pass --repo)",
                    target.name)
    if target.card is None:
        return fail(name, target.card_source, target.name)
    release = ctx.options.container_release
    if not release:
        return fail(name, "pass --container-release (the NGC release of the serving container) to check the "
                          "plan's TensorRT version against it", target.name)
    filename = target.config.get("default_model_filename") or "model.plan"
    plan = repo / target.name / target.version / filename
    try:
        result = compat.check_plan_for_card(target.card, plan, release,
                                            max_batch_size=int(target.config.get("max_batch_size", 0)) or None,
                                            container_trt=ctx.options.container_trt_version)
    except Exception as exc:  # CompatError / SidecarError name the plan and the problem
        return fail(name, error_text(exc), target.name)
    notes = "; ".join(getattr(result, "notes", ()))
    return ok(name, f"{plan} fits tritonserver {release}" + (f" ({notes})" if notes else ""), target.name)


@check_group("readiness", 10, per_endpoint=True)
def run(ctx: Context) -> list[CheckResult]:
    live = check_live(ctx)
    if not live.passed:
        return [live]
    results = [live, check_ready(ctx)]
    results += check_models_ready(ctx)
    results += [check_plan(ctx, t) for t in ctx.targets]
    return results
