"""One model on one Triton server: its readiness, metadata, config and the card it carries.

Everything that asks a server about a model goes through :class:`ServedModel`: the run-stream
client's contract check, eval's card resolution, perf's ``--shape`` for variable inputs, the
tune reload check and validation's targets. It is the one place that branches on gRPC vs HTTP
for these calls (gRPC's ``as_json`` rendering wraps the config in ``{"config": ...}``).

* :meth:`ServedModel.metadata`, :meth:`~ServedModel.config` and :meth:`~ServedModel.card` are
  fetched (and the card decoded, :func:`tritonkit.contract.served_card`) at most once per
  object: a run asks several questions of the same model and shares one object for them;
  :meth:`~ServedModel.model` gives the object of another model on the same server (an
  ensemble's first step), shared the same way.
* Readiness is a probe, asked afresh on every call: :meth:`~ServedModel.check_ready` raises
  :class:`ModelUnready` with one line saying what is wrong (unreachable, not live, not ready,
  the model not ready and which models are); :meth:`~ServedModel.alive` never raises.

A fetch that fails raises a one-line :class:`~tritonkit.errors.ServerError` naming the call;
a failed fetch is not remembered (the next call asks again).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from tritonkit.cards import ModelCard
from tritonkit.contract import normalize_config, normalize_metadata, served_card
from tritonkit.errors import ServerError
from tritonkit.triton import DeadlineClient, make_client, transport_errors, translate_errors

__all__ = ["ModelUnready", "ServedModel"]

_UNSET = object()


class ModelUnready(ServerError):
    """No answer from the server, the server not live or not ready, or the model not ready."""


@contextmanager
def _probing(call: str, context: str) -> Iterator[None]:
    """:func:`translate_errors` for a readiness call: the one-line error is a ModelUnready."""
    try:
        with translate_errors(call, context=context):
            yield
    except ModelUnready:
        raise
    except ServerError as exc:
        raise ModelUnready(str(exc)) from None


class _Siblings:
    """The ServedModels that share one client, by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, ServedModel] = {}
        self.lock = threading.Lock()


class ServedModel:
    """The model ``name`` (``version``, "" for the server's choice) behind ``client``.

    ``probe_timeout_s`` bounds the server's live and ready probes (a short bound, so that a
    server that is not there fails fast); every other call has the client's own deadline.
    ``owns_client``: :meth:`close` closes the client too (:meth:`connect` makes such an object)."""

    def __init__(self, client: DeadlineClient, name: str, *, version: str = "",
                 probe_timeout_s: float | None = None, owns_client: bool = False,
                 _siblings: _Siblings | None = None) -> None:
        self.client = client
        self.name = name
        self.version = version or ""
        self.probe_timeout_s = probe_timeout_s
        self._owns_client = owns_client
        self._lock = threading.Lock()
        self._metadata: Any = _UNSET
        self._config: Any = _UNSET
        self._card: Any = _UNSET
        self._siblings = _siblings or _Siblings()
        self._siblings.by_name.setdefault(name, self)

    @classmethod
    def connect(cls, protocol: str, url: str, name: str, *, version: str = "",
                timeout_s: float | None = 10.0) -> "ServedModel":
        """A ServedModel with a client of its own to ``url`` (every call bounded by ``timeout_s``)."""
        return cls(make_client(protocol, url, timeout_s), name, version=version, owns_client=True)

    @property
    def protocol(self) -> str:
        return self.client.protocol

    @property
    def address(self) -> str:
        return getattr(self.client, "address", "") or "?"

    @property
    def where(self) -> str:
        """``grpc 127.0.0.1:8001``: how the server is reached, for messages."""
        return f"{self.protocol} {self.address}"

    def model(self, name: str) -> "ServedModel":
        """Another model on the same server, through the same client; one object per name."""
        with self._siblings.lock:
            found = self._siblings.by_name.get(name)
            if found is None:
                found = ServedModel(self.client, name, probe_timeout_s=self.probe_timeout_s, _siblings=self._siblings)
            return found

    # -- fetched once ------------------------------------------------------------------------
    def metadata(self) -> dict:
        """The model's metadata as the server renders it (gRPC ``as_json``: int64 as strings)."""
        with self._lock:
            if self._metadata is _UNSET:
                with translate_errors("get_model_metadata",
                                      context=f"{self.where}: cannot read the metadata of model {self.name!r}"):
                    self._metadata = dict(self.client.get_model_metadata(self.name, self.version, **self._json()))
            return self._metadata

    def config(self) -> dict:
        """The model's config as JSON (Triton's own rendering, without gRPC's ``config`` wrapper)."""
        with self._lock:
            if self._config is _UNSET:
                with translate_errors("get_model_config",
                                      context=f"{self.where}: cannot read the config of model {self.name!r}"):
                    raw = self.client.get_model_config(self.name, self.version, **self._json())
                self._config = dict(raw.get("config", {})) if self.protocol == "grpc" else dict(raw)
            return self._config

    def card(self) -> ModelCard | None:
        """The card the config carries in its ``tritonkit_card`` parameter (None without one).
        Raises CardError (naming this model) for a parameter that is not a card."""
        config = self.config()
        with self._lock:
            if self._card is _UNSET:
                self._card = served_card(config, f"{self.where} model {self.name!r}")
            return self._card

    def contract(self) -> tuple[dict, dict]:
        """``(metadata, config)`` normalized (:mod:`tritonkit.contract`), fresh dicts on every call."""
        return normalize_metadata(self.metadata()), normalize_config(self.config())

    def first_step(self) -> str | None:
        """The model an ensemble's input goes to first; None for a model that is no ensemble."""
        steps = self.config().get("ensemble_scheduling", {}).get("step", [])
        return str(steps[0].get("model_name")) if steps else None

    def _json(self) -> dict:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def _probe_bound(self) -> dict:
        """A DeadlineClient takes ``client_timeout`` for both protocols."""
        return {"client_timeout": self.probe_timeout_s} if self.probe_timeout_s is not None else {}

    # -- probed on every call ----------------------------------------------------------------

    def live(self) -> bool:
        """Whether the server says it is live; ModelUnready when it does not answer."""
        with _probing("is_server_live", f"Triton server at {self.where} is unreachable"):
            return bool(self.client.is_server_live(**self._probe_bound()))

    def server_ready(self) -> bool:
        """Whether the server says it is ready; ModelUnready when it does not answer."""
        with _probing("is_server_ready", f"Triton server at {self.where} is unreachable"):
            return bool(self.client.is_server_ready(**self._probe_bound()))

    def model_ready(self) -> bool:
        """Whether the server says this model (version) is ready; ModelUnready when it does not answer."""
        with _probing("is_model_ready", f"{self.where}: cannot query model {self.name!r}"):
            return bool(self.client.is_model_ready(self.name, self.version))

    def alive(self) -> bool:
        """:meth:`live`, False instead of an error when the server does not answer."""
        try:
            return self.live()
        except (ServerError, *transport_errors()):
            return False

    def check_ready(self, *, server_ready: bool = True) -> None:
        """Raise :class:`ModelUnready` (one line) unless the server is live (and ready, with
        ``server_ready``) and the model is ready."""
        live = self.live()
        if not live or (server_ready and not self.server_ready()):
            raise ModelUnready(f"Triton server at {self.where} is {'not live' if not live else 'live but not ready'}")
        if not self.model_ready():
            ready_models = self.ready_models()
            listed = f"; ready models: {', '.join(ready_models) or 'none'}" if ready_models is not None else ""
            raise ModelUnready(f"{self.where}: model {self.name!r} is not ready (not in the repository, or failed "
                               f"to load; check the server log){listed}")

    def ready_models(self) -> list[str] | None:
        """The names of the READY models in the repository index; None when it cannot be read
        (a production server restricts it)."""
        try:
            index = self.client.get_model_repository_index(**self._json())
        except transport_errors():
            return None
        models = index.get("models", []) if isinstance(index, dict) else index
        return sorted({m.get("name", "?") for m in models if m.get("state") == "READY"})

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> "ServedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
