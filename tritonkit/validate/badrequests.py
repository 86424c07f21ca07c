"""bad_requests: malformed requests get a clean error each, and the server keeps serving.

Each case must come back as an error status within the request timeout (not a hang, not a
success, not a dropped connection); afterwards the server must still be live and answer a
correct request. Cases: wrong shape, wrong dtype, missing input, unknown input name, a batch
above the served max batch, a payload whose byte size disagrees with its shape (raw HTTP JSON), a
payload carrying more bytes than its shape and declared size (raw HTTP binary), an unknown model.
A model the server does not serve fails the check as not run (an unknown-model answer for every
case would otherwise look clean).
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tritonkit.triton import grpcclient, tritonutils
from tritonkit.validate.context import Context, ModelTarget
from tritonkit.validate.groups import check_group
from tritonkit.validate.requests import infer, seeded_batch
from tritonkit.validate.result import CheckResult, fail, verdict

# gRPC statuses that mean "no clean answer": the client gave up, or the connection broke.
UNCLEAN_STATUSES = ("StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED", "StatusCode.UNAVAILABLE")


@dataclass(frozen=True)
class Answer:
    """How the server answered one bad request."""

    clean_error: bool
    status: str
    message: str
    seconds: float


@dataclass(frozen=True)
class BadCase:
    name: str
    send: Callable[[Context, ModelTarget], Answer]


def _grpc_case(ctx: Context, model: str, inputs: list) -> Answer:
    start = time.perf_counter()
    try:
        ctx.grpc().infer(model, inputs, client_timeout=ctx.options.request_timeout_s)
    except tritonutils.InferenceServerException as exc:
        status = str(exc.status())
        return Answer(status not in UNCLEAN_STATUSES, status, exc.message() or "", time.perf_counter() - start)
    return Answer(False, "OK", "the server accepted it", time.perf_counter() - start)


def _input(name: str, x: np.ndarray, dtype: str):
    inp = grpcclient.InferInput(name, list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return inp


def wrong_shape(ctx: Context, t: ModelTarget) -> Answer:
    card = t.card
    dims = tuple(d + 1 for d in card.input_shape(1)[1:])  # variable H, W: the channels are wrong
    x = np.zeros((1, *dims), dtype=card.input.numpy_dtype)
    return _grpc_case(ctx, t.name, [_input(card.input.name, x, card.input.dtype)])


def wrong_dtype(ctx: Context, t: ModelTarget) -> Answer:
    card = t.card
    other = "INT32" if card.input.dtype != "INT32" else "FP32"
    x = np.zeros(card.input_shape(1), dtype={"INT32": np.int32, "FP32": np.float32}[other])
    return _grpc_case(ctx, t.name, [_input(card.input.name, x, other)])


def missing_input(ctx: Context, t: ModelTarget) -> Answer:
    return _grpc_case(ctx, t.name, [])


def unknown_input(ctx: Context, t: ModelTarget) -> Answer:
    card = t.card
    x = seeded_batch(card, 1, 0)
    return _grpc_case(ctx, t.name, [_input(card.input.name + "_not_an_input", x, card.input.dtype)])


def oversized_batch(ctx: Context, t: ModelTarget) -> Answer:
    card = t.card
    mbs = int(t.config.get("max_batch_size", card.max_batch_size)) or card.max_batch_size
    x = np.zeros(card.input_shape(mbs + 1), dtype=card.input.numpy_dtype)
    return _grpc_case(ctx, t.name, [_input(card.input.name, x, card.input.dtype)])


def unknown_model(ctx: Context, t: ModelTarget) -> Answer:
    card = t.card
    x = seeded_batch(card, 1, 0)
    return _grpc_case(ctx, t.name + "__no_such_model", [_input(card.input.name, x, card.input.dtype)])


def _http_case(ctx: Context, model: str, body: bytes | str, headers: dict[str, str]) -> Answer:
    """POST ``body`` to the model's HTTP infer endpoint; clean = an HTTP error status with an
    ``error`` body (not a success, a hang or a dropped connection)."""
    ep = ctx.endpoints.http
    start = time.perf_counter()
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=ctx.options.request_timeout_s)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(False, type(exc).__name__, str(exc), time.perf_counter() - start)
    finally:
        conn.close()
    seconds = time.perf_counter() - start
    return Answer(400 <= resp.status < 600 and "error" in text, f"HTTP {resp.status}", text[:200], seconds)


def truncated_payload(ctx: Context, t: ModelTarget) -> Answer:
    """HTTP JSON whose data holds fewer elements than its shape (Triton 2.51 answers 400 or 500
    with a JSON error)."""
    card = t.card
    body = json.dumps({"inputs": [{"name": card.input.name, "shape": list(card.input_shape(1)),
                                   "datatype": card.input.dtype, "data": [0, 0, 0]}]})
    return _http_case(ctx, t.name, body, {"Content-Type": "application/json"})


def oversized_payload(ctx: Context, t: ModelTarget) -> Answer:
    """HTTP binary tensor followed by as many extra bytes again: the declared size fits the shape,
    the body is twice that (Triton 2.51: 400 "unexpected additional input data")."""
    card = t.card
    data = np.ascontiguousarray(seeded_batch(card, 1, 0)).tobytes()
    header = json.dumps({"inputs": [{"name": card.input.name, "shape": list(card.input_shape(1)),
                                     "datatype": card.input.dtype,
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    return _http_case(ctx, t.name, header + data + data,
                      {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))})


CASES = (
    BadCase("wrong shape", wrong_shape),
    BadCase("wrong dtype", wrong_dtype),
    BadCase("missing input", missing_input),
    BadCase("unknown input name", unknown_input),
    BadCase("batch above max_batch_size", oversized_batch),
    BadCase("byte size disagrees with shape (HTTP)", truncated_payload),
    BadCase("payload larger than its shape (HTTP)", oversized_payload),
    BadCase("unknown model", unknown_model),
)


def _not_runnable(name: str, target: ModelTarget) -> CheckResult | None:
    """The failed result of a check that cannot run on ``target`` (no card, unreadable config)."""
    if target.card is None:
        return fail(name, target.card_source, target.name)
    if target.config_error:
        return fail(name, f"not run: {target.config_error}", target.name)
    return None


def check_bad_requests(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "bad_requests.errors"
    blocked = _not_runnable(name, target)
    if blocked is not None:
        return blocked
    problems = []
    figures: dict[str, dict] = {}
    for case in CASES:
        try:
            answer = case.send(ctx, target)
        except Exception as exc:
            answer = Answer(False, type(exc).__name__, str(exc), 0.0)
        figures[case.name] = {"status": answer.status, "ms": round(answer.seconds * 1000, 2),
                              "message": answer.message[:160]}
        if not answer.clean_error:
            problems.append(f"{case.name}: {answer.status} {answer.message[:120]}".strip())
    return verdict(name, problems, f"{len(CASES)} malformed requests each got a clean error", target.name,
                   cases=figures)


def check_still_serving(ctx: Context, target: ModelTarget) -> CheckResult:
    name = "bad_requests.still_serving"
    blocked = _not_runnable(name, target)
    if blocked is not None:
        return blocked
    try:
        live = ctx.served(target.name).live()
        out = infer(ctx.grpc(), target.name, target.card, seeded_batch(target.card, 1, 0),
                    ctx.options.request_timeout_s)
    except Exception as exc:
        return fail(name, f"after the bad requests a correct request failed: {exc}", target.name)
    return verdict(name, [] if live else ["server no longer live"],
                   f"a correct request right after was answered ({', '.join(out)})", target.name)


@check_group("bad_requests", 40)
def run(ctx: Context) -> list[CheckResult]:
    results = []
    for t in ctx.targets:
        results += [check_bad_requests(ctx, t), check_still_serving(ctx, t)]
    return results
