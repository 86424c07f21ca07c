"""security: the production profile's protections are in force.

* restricted APIs — model-repository, shared-memory, logging and trace refuse requests without
  the key (HTTP 403 / gRPC "restricted") over both protocols, and answer with it.
* model control — a load request carrying the key is refused because model control is
  ``none``. The probe names a model that does not exist, so a server that does allow loading
  only reports "not found" and nothing on it changes.
* bind — the local server listens on loopback addresses only (its sockets, via psutil).
* key exposure — the restricted-API key is not readable in the server's command line
  (``/proc/<pid>/cmdline``, i.e. ``ps`` for every local user). tritonserver takes the key only
  as a flag; ``serve --local`` hides it with a preloaded shim (:mod:`tritonkit.serve.keyshim`),
  a server started any other way (e.g. by hand) shows it, and this check says so.

All probes are read-only. Against a dev-profile server each fails, naming what is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import psutil

from tritonkit.host import is_loopback, listening_addresses
from tritonkit.serve.keyshim import PLACEHOLDER
from tritonkit.triton import tritonutils
from tritonkit.validate.context import Context
from tritonkit.validate.groups import check_group
from tritonkit.validate.hints import SERVE_LOOPBACK, SERVE_PRODUCTION
from tritonkit.validate.result import CheckResult, fail, verdict

PROBE_MODEL = "tritonkit_security_probe_no_such_model"
CONTROL_REFUSED = "not allowed"
RESTRICTION_FLAGS = ("--http-restricted-api=", "--grpc-restricted-protocol=")


@dataclass(frozen=True)
class Probe:
    """One restricted API, asked over one protocol, with or without the key."""

    api: str
    protocol: str
    call: Callable[[object, dict | None], object]


# The same method names exist on tritonclient's HTTP and gRPC clients.
API_CALLS: dict[str, Callable[[object, dict | None], object]] = {
    "model-repository": lambda c, h: c.get_model_repository_index(headers=h),
    "shared-memory": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "logging": lambda c, h: c.get_log_settings(headers=h),
    "trace": lambda c, h: c.get_trace_settings(headers=h),
}


def probes() -> list[Probe]:
    return [Probe(api, protocol, call) for protocol in ("http", "grpc") for api, call in API_CALLS.items()]


@dataclass(frozen=True)
class ProbeAnswer:
    allowed: bool
    message: str


def ask(probe: Probe, client, headers: dict | None) -> ProbeAnswer:
    try:
        probe.call(client, headers)
    except tritonutils.InferenceServerException as exc:
        return ProbeAnswer(False, f"{exc.status()}: {exc.message()}")
    return ProbeAnswer(True, "answered")


def _refused_as_restricted(answer: ProbeAnswer) -> bool:
    return not answer.allowed and "restricted" in answer.message.lower()


def check_restricted_apis(ctx: Context) -> CheckResult:
    name = "security.restricted_apis"
    open_apis, refused_with_key = [], []
    figures: dict[str, dict] = {}
    http = ctx.http()
    try:
        clients = {"http": http, "grpc": ctx.grpc()}
        for probe in probes():
            client = clients[probe.protocol]
            without = ask(probe, client, None)
            with_key = ask(probe, client, ctx.key_headers(probe.protocol)) if ctx.api_key else None
            figures[f"{probe.api} ({probe.protocol})"] = {
                "without_key": "refused" if not without.allowed else "open",
                "with_key": None if with_key is None else ("answered" if with_key.allowed else with_key.message)}
            if not _refused_as_restricted(without):
                open_apis.append(f"{probe.api} ({probe.protocol})")
            elif with_key is not None and not with_key.allowed:
                refused_with_key.append(f"{probe.api} ({probe.protocol}): {with_key.message}")
    except Exception as exc:
        return fail(name, f"probing the restricted APIs failed: {exc}")
    finally:
        http.close()
    problems = []
    if open_apis:
        problems.append(f"open without the key: {', '.join(open_apis)} (start the server with the production "
                        f"profile: --http-restricted-api / --grpc-restricted-protocol)")
    if not ctx.api_key:
        problems.append(f"cannot confirm the key is accepted: ${ctx.options.api_key_env} is not set")
    elif refused_with_key:
        problems.append(f"refused even with the key from ${ctx.options.api_key_env}: {'; '.join(refused_with_key)}")
    return verdict(name, problems, "model-repository, shared-memory, logging and trace refuse requests without "
                                   "the key and answer with it (http and grpc)",
                   hint=SERVE_PRODUCTION if open_apis or not ctx.api_key else None, probes=figures)


def check_model_control(ctx: Context) -> CheckResult:
    name = "security.model_control"

    try:
        ctx.grpc().load_model(PROBE_MODEL, headers=ctx.key_headers("grpc"))
    except tritonutils.InferenceServerException as exc:
        message = exc.message() or ""
        if CONTROL_REFUSED in message.lower():
            return verdict(name, [], f"load refused: model control is none ({message.strip()})")
        if "restricted" in message.lower():
            return fail(name, f"cannot tell the model control mode: the repository API is restricted and "
                              f"${ctx.options.api_key_env} is not set")
        return fail(name, f"model control is open: loading was attempted (server said: {message.strip()}); "
                          f"run with --model-control-mode=none", hint=SERVE_PRODUCTION)
    except Exception as exc:
        return fail(name, f"load probe failed: {exc}")
    return fail(name, f"the server accepted a load request for {PROBE_MODEL!r}: model control is open",
                hint=SERVE_PRODUCTION)


def check_bind(ctx: Context) -> CheckResult:
    name = "security.loopback_bind"
    pid = ctx.endpoints.pid
    if pid is None:
        return fail(name, f"listening sockets not measurable: {ctx.endpoints.pid_note}")
    try:
        addresses = listening_addresses(pid)
    except Exception as exc:
        return fail(name, str(exc))
    exposed = [str(a) for a in addresses if not is_loopback(a.host)]
    return verdict(name, [f"listening beyond loopback: {', '.join(exposed)} (bind 127.0.0.1)"] if exposed else [],
                   f"server pid {pid} listens on loopback only ({', '.join(str(a) for a in addresses)})",
                   hint=SERVE_LOOPBACK if exposed else None,
                   pid=pid, listening=[str(a) for a in addresses])


def exposed_keys(argv: list[str], key: str | None = None) -> list[str]:
    """Restriction flags of ``argv`` whose key is in clear (the flag name only), plus ``"the key"``
    when ``key`` appears anywhere in ``argv``."""
    exposed = []
    for arg in argv:
        flag = next((f for f in RESTRICTION_FLAGS if arg.startswith(f)), None)
        if flag is None:
            continue
        _, _, setting = arg[len(flag):].partition(":")
        value = setting.partition("=")[2]
        if value and value != PLACEHOLDER:
            exposed.append(flag.rstrip("="))
    if key and any(key in arg for arg in argv):
        exposed.append("the key itself")
    return exposed


def check_key_exposure(ctx: Context) -> CheckResult:
    name = "security.key_exposure"
    pid = ctx.endpoints.pid
    if pid is None:
        return fail(name, f"server command line not readable: {ctx.endpoints.pid_note}")
    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error as exc:
        return fail(name, f"server pid {pid} command line not readable: {exc}")
    exposed = exposed_keys(argv, ctx.api_key)
    problems = [f"the API key is readable by every local user in /proc/{pid}/cmdline (ps): "
                f"{', '.join(exposed)}; start the server with tritonkit serve --local --profile production, which "
                f"keeps it off the command line"] if exposed else []
    restricted = any(a.startswith(RESTRICTION_FLAGS) for a in argv)
    return verdict(name, problems, f"server pid {pid}: " + ("the key is not on the command line" if restricted
                                                            else "no restricted-API key on the command line"),
                   hint=SERVE_PRODUCTION if exposed else None,
                   pid=pid, restricted=restricted)


@check_group("security", 50)
def run(ctx: Context) -> list[CheckResult]:
    return [check_restricted_apis(ctx), check_model_control(ctx), check_bind(ctx), check_key_exposure(ctx)]
