"""Argument types and flag groups shared by several subcommands (not a subcommand itself)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Sequence

from tritonkit.errors import TritonkitError
from tritonkit.tasks import ArgSpec
from tritonkit.triton import DEFAULT_PORTS


def first_line(doc: str | None) -> str:
    """The first line of a docstring (a subcommand's one-line help); ``""`` for none."""
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def chosen_parsers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """``parser`` and the subcommand parsers ``args`` went through below it."""
    chain = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            chain += chosen_parsers(action.choices[getattr(args, action.dest)], args)
    return chain


def flag_message(exc: TritonkitError, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The error's message with every option field it names (``exc.fields``) shown as the flag
    that sets it in this command line (``limit`` -> ``--limit``)."""
    text = str(exc)
    flags: dict[str, str] = {}
    for p in chosen_parsers(parser, args):
        for action in p._actions:
            if action.option_strings and action.dest not in flags:
                flags[action.dest] = max(action.option_strings, key=len)
    for field in exc.fields:
        if field in flags:
            text = re.sub(rf"(?<![\w/.-]){re.escape(field)}(?![\w/.-])", flags[field], text)
    return text


def int_list(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> ``(1, 4, 8)``; argparse reports anything else as a usage error."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,8, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """An integer >= 1; argparse reports anything else as a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    values = int_list(text)
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_stream_arguments(p: argparse.ArgumentParser, checkpoint: str, metric: str) -> None:
    """The run-stream flags every ``eval`` task takes (server, batching, workers, resume ...)."""
    p.add_argument("--url", help="host:port of the server (default 127.0.0.1:8001 grpc / :8000 http); several: "
                                 "a comma list or a DNS name with several addresses (a headless Service), "
                                 "requests spread over the ready ones, failed ones retried on another")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--shm", action="store_true", help="send inputs/outputs through system shared memory")
    p.add_argument("--batch-sizes", type=positive_int_list, default=(1,), metavar="1,4,8",
                   help=f"{metric} at the first, run-model/run-stream timing at each (default 1)")
    p.add_argument("--workers", type=int, default=2, help="decode+preprocess threads (default 2)")
    p.add_argument("--in-flight", type=int, default=2, help="requests on the wire at once (default 2)")
    p.add_argument("--pool", choices=("thread", "process"), default="thread",
                   help="decode+preprocess pool kind (threads measured faster here)")
    p.add_argument("--timing-images", type=int, default=64, help="images per batch size for timing (default 64)")
    p.add_argument("--out", type=Path, default=Path("reports/eval"), help="output folder")
    p.add_argument("--resume", action="store_true", help=f"skip images already in <out>/{checkpoint}")
    p.add_argument("--reference-onnx", type=Path, help="also run the inputs through this ONNX in-process")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request deadline in seconds")
    p.add_argument("--retries", type=int, default=3, help="retries when the server is unavailable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--server-preprocess", action="store_true",
                   help="send encoded files to <model>_bytes (tritonkit repo --server-preprocess): the server "
                        "decodes and preprocesses; the report compares it with client-side preprocessing")


def stream_options(args: argparse.Namespace) -> dict:
    """The keyword arguments :func:`add_stream_arguments` flags map to in the eval option classes."""
    url = args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"
    return dict(url=url, protocol=args.protocol, shm=args.shm, batch_sizes=tuple(args.batch_sizes),
                workers=args.workers, in_flight=args.in_flight, pool=args.pool, timing_images=args.timing_images,
                out=args.out, resume=args.resume, reference_onnx=args.reference_onnx, timeout_s=args.timeout,
                retries=args.retries, progress=not args.no_progress, server_preprocess=args.server_preprocess)


# options field -> the flag that sets it (the common eval fields; tasks declare their own in ArgSpecs)
STREAM_FLAGS = {
    "model": "--model", "model_name": "--model-name", "url": "--url", "protocol": "--protocol", "shm": "--shm",
    "batch_sizes": "--batch-sizes", "workers": "--workers", "in_flight": "--in-flight", "pool": "--pool",
    "timing_images": "--timing-images", "out": "--out", "resume": "--resume", "reference_onnx": "--reference-onnx",
    "timeout_s": "--timeout", "retries": "--retries", "progress": "--no-progress",
    "server_preprocess": "--server-preprocess",
}

_KINDS = {"str": {}, "path": {"type": Path}, "int": {"type": int}, "choice": {}, "switch": {"action": "store_true"},
          "clear": {"action": "store_true"}}


def add_spec_arguments(p: argparse.ArgumentParser, specs: Sequence[ArgSpec]) -> None:
    """argparse arguments from a task's :class:`~tritonkit.tasks.ArgSpec` declarations."""
    for spec in specs:
        kwargs = dict(_KINDS[spec.kind], help=spec.help)
        if spec.kind not in ("switch", "clear"):
            kwargs["default"] = spec.default
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.metavar:
            kwargs["metavar"] = spec.metavar
        p.add_argument(spec.flag, dest=spec.dest, **kwargs)


def spec_options(args: argparse.Namespace, specs: Sequence[ArgSpec]) -> dict:
    """The option fields the ``specs`` flags set (a ``clear`` switch that is on sets its field to None)."""
    out: dict = {}
    for spec in specs:
        value = getattr(args, spec.dest)
        if spec.kind == "clear":
            if value:
                out[spec.field] = None
        elif spec.field not in out:
            out[spec.field] = value
    return out


def field_flags(specs: Sequence[ArgSpec]) -> dict[str, str]:
    """options field -> flag, for the common stream fields and the task's own."""
    flags = dict(STREAM_FLAGS)
    for spec in specs:
        if spec.kind != "clear":
            flags.setdefault(spec.field, spec.flag)
    return flags
