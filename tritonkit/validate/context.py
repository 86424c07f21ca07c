"""Where the server is and what each model under test is: endpoints, cards, references.

Resolution, each step recorded so the report says where a value came from:

* endpoints — gRPC from ``--url``; HTTP and metrics from the flags, else from the server's own
  command line when it runs on this machine (its pid found by the listening gRPC port), else
  Triton's default ports on the same host.
* card per model — ``--cards``; else a ``tritonkit_card`` parameter in the served config
  (remote-readable); else ``<repo>/<model>/card.json`` written by the repository writer (the
  repository path from ``--repo`` or the local server's ``--model-repository``); else a
  built-in card of the model's name.
* reference ONNX — ``--reference-onnx``; else the served ``model.onnx`` when the repository is
  on this machine.
* precision — ``--precision``; else the plan sidecar's ``precision``; else the card option
  ``precision``; else fp32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.cards import ModelCard, TensorSpec, get_card, load_card_file
from tritonkit.client.endpoints import resolve_endpoints as resolve_addresses
from tritonkit.contract import CARD_PARAMETER
from tritonkit.errors import ServerError, TritonkitError
from tritonkit.host import (
    DEFAULT_METRICS_PORT, HostPort, find_server_process, format_address, is_this_machine, parse_address, server_flags)
from tritonkit.serve.profiles import key_headers
from tritonkit.served_model import ServedModel
from tritonkit.triton import DEFAULT_PORTS, make_client
from tritonkit.validate.options import PRECISIONS, ValidateOptions



@dataclass(frozen=True)
class Endpoints:
    grpc: HostPort
    http: HostPort
    metrics_url: str
    local: bool
    pid: int | None
    pid_note: str
    repo: Path | None


def endpoint_addresses(options: ValidateOptions) -> list[str]:
    """The gRPC endpoints ``--url`` names: a comma list, or a DNS name with several addresses
    (a headless Service); one entry for a single server."""
    if "," not in options.url:
        try:
            found = resolve_addresses(options.url, DEFAULT_PORTS["grpc"])
        except TritonkitError:
            return [options.url]  # an unresolvable name: the readiness check reports it
        return found if len(found) > 1 else [options.url]
    return resolve_addresses(options.url, DEFAULT_PORTS["grpc"])


def resolve_endpoints(options: ValidateOptions) -> Endpoints:
    grpc = parse_address(options.url, DEFAULT_PORTS["grpc"])
    local = is_this_machine(grpc.host)
    pid, note = options.server_pid, "--server-pid"
    if pid is None and local:
        process = find_server_process(grpc.port)
        pid = process.pid if process is not None else None
        note = f"listening on port {grpc.port}" if pid else f"no local process listens on port {grpc.port}"
    elif pid is None:
        note = f"server {grpc.host} is remote (pass --server-pid on the server host)"
    flags = server_flags(pid) if pid else {}
    http = parse_address(options.http_url, DEFAULT_PORTS["http"]) if options.http_url else HostPort(
        grpc.host, int(flags.get("http-port", DEFAULT_PORTS["http"])))
    metrics = options.metrics_url or \
        f"http://{format_address(grpc.host, int(flags.get('metrics-port', DEFAULT_METRICS_PORT)))}/metrics"
    repo = options.repo
    if repo is None and flags.get("model-repository"):
        repo = Path(flags["model-repository"])
    return Endpoints(grpc=grpc, http=http, metrics_url=metrics, local=local, pid=pid, pid_note=note, repo=repo)


@dataclass(frozen=True)
class ModelTarget:
    """One model under test and everything resolved about it."""

    name: str
    card: ModelCard | None
    card_source: str
    config: dict = field(default_factory=dict)
    config_error: str | None = None
    reference_onnx: Path | None = None
    reference_source: str = ""
    precision: str = "fp32"
    precision_source: str = "default"

    @property
    def version(self) -> str:
        versions = self.config.get("version_policy", {}).get("specific", {}).get("versions", [])
        return str(versions[-1]) if versions else "1"


def served_config(served: ServedModel) -> tuple[dict, str | None]:
    """The model's config as JSON (Triton's own rendering), or ({}, why not)."""
    try:
        return served.config(), None
    except ServerError as exc:
        return {}, str(exc)


def resolve_card(served: ServedModel, options: ValidateOptions, repo: Path | None) -> tuple[ModelCard | None, str]:
    model = served.name
    given = options.value_for(options.cards, model)
    try:
        if given:
            return get_card(given), f"--cards {given}"
        config, why = served_config(served)
        embedded = served.card() if why is None else None
        if embedded is not None:
            return embedded, f"config parameter {CARD_PARAMETER}"
        if repo is not None and (repo / model / "card.json").is_file():
            path = repo / model / "card.json"
            return load_card_file(path), str(path)
        return get_card(model), f"built-in card {model!r}"
    except (TritonkitError, ValueError) as exc:
        return None, f"no usable card for {model!r}: {exc}"


def _version_dir(repo: Path | None, model: str, config: dict) -> Path | None:
    if repo is None:
        return None
    versions = config.get("version_policy", {}).get("specific", {}).get("versions", [])
    candidates = [repo / model / str(v) for v in versions] or sorted(
        (p for p in (repo / model).glob("[0-9]*") if p.is_dir()), key=lambda p: int(p.name))
    existing = [p for p in candidates if p.is_dir()]
    return existing[-1] if existing else None


def resolve_reference(model: str, options: ValidateOptions, config: dict, repo: Path | None) -> tuple[Path | None, str]:
    given = options.value_for(options.reference_onnx, model)
    if given:
        path = Path(given)
        return (path, f"--reference-onnx {path}") if path.is_file() else (None, f"--reference-onnx {path} not found")
    vdir = _version_dir(repo, model, config)
    if vdir is not None:
        name = config.get("parameters", {}).get("onnx_file", {}).get("string_value") or "model.onnx"
        if (vdir / name).is_file():
            return vdir / name, f"served ONNX {vdir / name}"
    return None, "no reference ONNX: pass --reference-onnx MODEL=PATH"


def resolve_precision(model: str, options: ValidateOptions, card: ModelCard | None, config: dict,
                      repo: Path | None) -> tuple[str, str]:
    given = options.value_for(options.precisions, model)
    if given:
        return given, "--precision"
    vdir = _version_dir(repo, model, config)
    plan_name = config.get("default_model_filename") or "model.plan"
    sidecar = vdir / f"{plan_name}.json" if vdir else None
    if sidecar is not None and sidecar.is_file():
        try:
            value = str(json.loads(sidecar.read_text()).get("precision", "")).lower()
        except (OSError, json.JSONDecodeError):
            value = ""
        if value in PRECISIONS:
            return value, str(sidecar)
    option = (card.precision or "") if card else ""
    if option in PRECISIONS:
        return option, "card precision"
    return "fp32", "default"


def ensemble_card(model: str, config: dict, step_card: ModelCard) -> ModelCard:
    """An ensemble's contract as a card: its first step's card (the input and preprocessing it
    takes) with the ensemble's own name and outputs (a segmenter's argmax ensemble: a uint8 mask)."""
    outputs = tuple(TensorSpec(str(o["name"]), tuple(int(d) for d in o.get("dims", [])),
                               str(o.get("data_type", "TYPE_FP32")).removeprefix("TYPE_"))
                    for o in config.get("output", []))
    return step_card.with_overrides(name=model, outputs=outputs or step_card.outputs,
                                    description=f"ensemble {model} after {step_card.name}")


def resolve_ensemble(served: ServedModel, options: ValidateOptions, config: dict, repo: Path | None,
                     step: str) -> tuple[ModelCard | None, str, Path | None, str]:
    """Card and reference ONNX of an ensemble without its own card: from its first step's model."""
    step_served = served.model(step)
    step_config, why = served_config(step_served)
    if why:
        return None, why, None, why
    step_card, step_source = resolve_card(step_served, options, repo)
    if step_card is None:
        return None, step_source, None, step_source
    try:
        card = ensemble_card(served.name, config, step_card)
    except (TritonkitError, KeyError, TypeError, ValueError) as exc:
        return None, f"ensemble {served.name!r}: no card from its step {step!r}: {exc}", None, ""
    reference, reference_source = resolve_reference(step, options, step_config, repo)
    return card, f"ensemble of {step!r} ({step_source})", reference, reference_source


def resolve_target(served: ServedModel, options: ValidateOptions, repo: Path | None) -> ModelTarget:
    model = served.name
    config, config_error = served_config(served)
    card, card_source = resolve_card(served, options, repo)
    reference, reference_source = resolve_reference(model, options, config, repo)
    step = served.first_step() if config_error is None else None
    if step is not None and (card is None or reference is None):
        step_card, step_card_source, step_ref, step_ref_source = resolve_ensemble(served, options, config, repo, step)
        if card is None and step_card is not None:
            card, card_source = step_card, step_card_source
        if reference is None and step_ref is not None:
            reference, reference_source = step_ref, step_ref_source
    precision, precision_source = resolve_precision(model, options, card, config, repo)
    return ModelTarget(name=model, card=card, card_source=card_source, config=config, config_error=config_error,
                       reference_onnx=reference, reference_source=reference_source, precision=precision,
                       precision_source=precision_source)


@dataclass
class Context:
    """Shared by every check of one run: options, endpoints, key, targets, one gRPC client and
    one :class:`ServedModel` per model (each model's config and metadata fetched once)."""

    options: ValidateOptions
    endpoints: Endpoints
    api_key: str | None
    targets: tuple[ModelTarget, ...] = ()
    _grpc: Any = field(default=None, repr=False)
    _served: ServedModel | None = field(default=None, repr=False)

    @classmethod
    def create(cls, options: ValidateOptions) -> "Context":
        key = os.environ.get(options.api_key_env) or None
        return cls(options, resolve_endpoints(options), key)

    def grpc(self):
        if self._grpc is None:
            self._grpc = make_client("grpc", str(self.endpoints.grpc), self.options.request_timeout_s)
        return self._grpc

    def served(self, model: str) -> ServedModel:
        """``model`` on the server under test, through the one gRPC client."""
        if self._served is None:
            self._served = ServedModel(self.grpc(), model)
        return self._served.model(model)

    def server(self) -> ServedModel:
        """The server, for its own probes (live, ready): through the first model under test."""
        return self.served(self.options.models[0])

    def http(self):
        return make_client("http", str(self.endpoints.http), self.options.request_timeout_s)

    def key_headers(self, protocol: str) -> dict[str, str] | None:
        """Headers carrying the API key for restricted endpoints (None when no key is set).

        Triton matches gRPC restricted-protocol headers with a ``triton-grpc-protocol-`` prefix.
        """
        if not self.api_key:
            return None
        return key_headers(protocol, self.api_key, self.options.api_key_header)

    def close(self) -> None:
        if self._grpc is not None:
            self._grpc.close()
            self._grpc = None
            self._served = None
