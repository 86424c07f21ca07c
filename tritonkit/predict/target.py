"""What ``tritonkit.connect`` resolves once: the URL, the card, the model to call, the client.

* :func:`parse_target` — ``grpc://host:port/model`` (``http://``, a comma list of endpoints
  ``grpc://a:8001,b:8001/model``, or ``host:port`` with ``model=``) -> protocol, endpoints, name;
* :func:`plan` — reads the served model's card from the server (as eval does, through
  :class:`~tritonkit.served_model.ServedModel`), checks a given card against it field for field,
  picks the task's adapter (:meth:`tritonkit.tasks.base.Task.predict_adapter`) and the model to
  call: the task's server-side postprocess ensemble where it is served (NMS, argmax), the
  ``_bytes`` ensemble in front of it with server-side preprocessing;
* :func:`open_client` — the one :class:`~tritonkit.client.infer.TritonInfer` that sends every
  request (deadlines, retries, endpoint failover as eval has them), its contract checked once.

Every error is a one-line :class:`~tritonkit.errors.TritonkitError` naming the model and endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonkit.cards import REGISTRY, ModelCard, get_card
from tritonkit.client.endpoints import resolve_endpoints
from tritonkit.client.infer import ClientOptions, EncodedInfer, TritonInfer
from tritonkit.client.pipeline import EncodedAdapter, TaskAdapter
from tritonkit.contract import card_differences
from tritonkit.errors import CardError, ServerError, TritonkitError
from tritonkit.served import bytes_ensemble_name, chain_card
from tritonkit.served_model import ServedModel
from tritonkit.tasks.base import PredictSettings, Task, task_for_card
from tritonkit.triton import DEFAULT_PORTS, PROTOCOLS, make_client


@dataclass(frozen=True)
class ConnectOptions:
    """How :func:`tritonkit.connect` talks to the server. ``server_postprocess``: None uses the
    task's server-side postprocess ensemble where it is served, True requires it, False never;
    ``server_preprocess`` sends encoded files to the ``<model>_bytes`` ensemble."""

    nms_profile: str | None = None
    server_preprocess: bool = False
    server_postprocess: bool | None = None
    timeout_s: float = 60.0
    retries: int = 3
    in_flight: int = 2
    workers: int = 2

    def __post_init__(self) -> None:
        if self.in_flight < 1 or self.workers < 1:
            raise TritonkitError(f"in_flight and workers must be >= 1 (got {self.in_flight}, {self.workers})",
                                 fields=("in_flight", "workers"))
        if self.timeout_s <= 0 or self.retries < 0:
            raise TritonkitError("timeout_s must be > 0 and retries >= 0", fields=("timeout_s", "retries"))


@dataclass(frozen=True)
class Target:
    """Where the model is: ``protocol``, ``url`` (one ``host:port`` or a comma list) and ``model``."""

    protocol: str
    url: str
    model: str

    def where(self, model: str | None = None) -> str:
        return f"model {model or self.model!r} at {self.protocol}://{self.url}"


def parse_target(url: str, model: str | None = None, protocol: str | None = None) -> Target:
    """``grpc://127.0.0.1:8001/resnet50`` -> Target("grpc", "127.0.0.1:8001", "resnet50"). Without a
    scheme the protocol is ``protocol`` (default grpc); ``model`` names the model where the URL
    does not (both: they must agree)."""
    scheme, sep, rest = str(url).strip().partition("://")
    if not sep:
        scheme, rest = protocol or "grpc", str(url).strip()
    scheme = scheme.lower()
    if scheme not in PROTOCOLS:
        raise ServerError(f"url {url!r}: scheme {scheme!r} not one of {', '.join(PROTOCOLS)}")
    if protocol is not None and protocol != scheme:
        raise ServerError(f"url {url!r} is {scheme}, protocol says {protocol}")
    hosts, _, name = rest.partition("/")
    name = name.strip("/")
    if model and name and model != name:
        raise ServerError(f"url {url!r} names model {name!r}, model= says {model!r}")
    name = model or name
    if not name:
        raise ServerError(f"url {url!r} names no model: give {scheme}://host:port/<model> or model=")
    if not hosts.strip(", "):
        raise ServerError(f"url {url!r} names no server (host:port)")
    return Target(scheme, hosts, name)


@dataclass(frozen=True)
class Plan:
    """What one connection calls: the model's ``card`` and ``task``, the ``adapter`` predict runs,
    the served model it calls (``called``, with ``called_card``, its contract) and that model's
    max batch size; ``postprocess`` says where postprocessing runs (for ``Model.describe``)."""

    target: Target
    card: ModelCard
    task: Task
    adapter: TaskAdapter
    called: str
    called_card: ModelCard
    max_batch: int
    postprocess: str
    preprocess: str

    @property
    def client_type(self) -> type[TritonInfer]:
        return EncodedInfer if self.adapter.encoded else TritonInfer


def _given_card(card: ModelCard | str | Path | None) -> ModelCard | None:
    if card is None or isinstance(card, ModelCard):
        return card
    text = str(card)
    if text in REGISTRY or text.endswith(".json"):
        return get_card(text)
    raise CardError(f"card {text!r}: no built-in card or card .json file of that name")


def _first_served(target: Target, timeout_s: float) -> ServedModel:
    """A ServedModel at the first endpoint that answers with the model ready (the others are
    tried in turn); one line naming the model and every endpoint tried when none does."""
    addresses = resolve_endpoints(target.url, DEFAULT_PORTS[target.protocol])
    problems = []
    for address in addresses:
        served = ServedModel(make_client(target.protocol, address, timeout_s), target.model,
                             probe_timeout_s=min(timeout_s, 10.0), owns_client=True)
        try:
            served.check_ready()
            return served
        except ServerError as exc:
            served.close()
            problems.append(str(exc))
    raise ServerError(f"cannot reach {target.where()}: " + "; ".join(problems))


def _served_card(served: ServedModel, given: ModelCard | None, target: Target) -> ModelCard:
    carried = served.card()
    if given is None:
        if carried is None:
            raise CardError(f"{target.where()} is served without a tritonkit card; pass its card (card=...)")
        return carried
    diff = card_differences(given, carried) if carried is not None else []
    if diff:
        raise CardError(f"card {given.name!r} disagrees with the card {target.where()} is served with "
                        f"({len(diff)} fields: {'; '.join(diff)}); leave card= out to use the served one")
    return given


def _ready(served: ServedModel, name: str) -> bool:
    try:
        return served.model(name).model_ready()
    except ServerError:
        return False


def _max_batch(served: ServedModel, name: str) -> int:
    return max(1, int(served.model(name).config().get("max_batch_size", 0) or 0))


def plan(target: Target, card: ModelCard | str | Path | None, options: ConnectOptions) -> Plan:
    """Read the served card and pick what to call (module docstring); raises one line on failure."""
    given = _given_card(card)
    with _first_served(target, options.timeout_s) as served:
        model_card = _served_card(served, given, target)
        task = task_for_card(model_card)
        settings = PredictSettings(nms_profile=options.nms_profile)
        adapter = task.predict_adapter(model_card, settings)
        called, called_card, postprocess = _postprocess_target(served, task, model_card, settings, options, target)
        preprocess = "client"
        if options.server_preprocess:
            called, preprocess = bytes_ensemble_name(called), "server"
            if not _ready(served, called):
                raise ServerError(f"server_preprocess: {target.where(called)} is not ready (write it with "
                                  f"tritonkit repo --server-preprocess)")
            adapter = EncodedAdapter(adapter)
        return Plan(target, model_card, task, adapter, called, called_card, _max_batch(served, called),
                    postprocess, preprocess)


def _postprocess_target(served: ServedModel, task: Task, card: ModelCard, settings: PredictSettings,
                        options: ConnectOptions, target: Target) -> tuple[str, ModelCard, str]:
    """``(model to call, its contract, where postprocessing runs)``."""
    chain = task.predict_chain(card, settings) if options.server_postprocess is not False else None
    if chain is not None:
        name = chain.names(target.model).ensemble
        if _ready(served, name):
            return name, chain_card(card, chain, name), f"server ({chain.description or chain.kind})"
        if options.server_postprocess:
            raise ServerError(f"server_postprocess: {target.where(name)} is not ready (write it with "
                              f"tritonkit repo --server-postprocess)")
    elif options.server_postprocess:
        raise ServerError(f"server_postprocess: task {task.name!r} of {target.where()} has no server-side postprocess")
    return target.model, card, "client"


def open_client(p: Plan, options: ConnectOptions) -> TritonInfer:
    """The connected client of ``p``: live/ready checked, the contract checked once at the served
    max batch size, several endpoints through the eval's endpoint pool."""
    client = p.client_type(p.called_card, ClientOptions(
        url=p.target.url, protocol=p.target.protocol, model_name=p.called, in_flight=options.in_flight,
        timeout_s=options.timeout_s, retries=options.retries), max_batch=p.max_batch)
    try:
        return client.connect()
    except BaseException:
        client.close()
        raise


def describe(p: Plan) -> dict[str, Any]:
    """What a connection calls, as data (``Model.describe``)."""
    return {"model": p.target.model, "card": p.card.name, "task": p.card.task, "url": p.target.url,
            "protocol": p.target.protocol, "called": p.called, "max_batch": p.max_batch,
            "preprocess": p.preprocess, "postprocess": p.postprocess}


class PlanView:
    """What a connected model (sync or async) says about itself, read from its :class:`Plan`."""

    plan: Plan

    @property
    def card(self) -> ModelCard:
        return self.plan.card

    @property
    def task(self) -> str:
        return self.plan.card.task

    @property
    def max_batch(self) -> int:
        return self.plan.max_batch

    def describe(self) -> dict:
        """The model, card, endpoints, the model called and where pre-/postprocessing run."""
        return describe(self.plan)


__all__ = ["ConnectOptions", "Plan", "PlanView", "Target", "describe", "open_client", "parse_target", "plan"]
