"""Argument types and flag groups shared by several subcommands (not a subcommand itself)."""

from __future__ import annotations

import argparse
from pathlib import Path


def int_list(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> ``(1, 4, 8)``; argparse reports anything else as a usage error."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,8, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def positive_int_list(text: str) -> tuple[int, ...]:
    values = int_list(text)
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_stream_arguments(p: argparse.ArgumentParser, checkpoint: str, metric: str) -> None:
    """The run-stream flags every ``eval`` task takes (server, batching, workers, resume ...)."""
    p.add_argument("--url", help="host:port of the server (default 127.0.0.1:8001 grpc / :8000 http)")
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


def stream_options(args: argparse.Namespace) -> dict:
    """The keyword arguments :func:`add_stream_arguments` flags map to in the eval option classes."""
    url = args.url or ("127.0.0.1:8001" if args.protocol == "grpc" else "127.0.0.1:8000")
    return dict(url=url, protocol=args.protocol, shm=args.shm, batch_sizes=tuple(args.batch_sizes),
                workers=args.workers, in_flight=args.in_flight, pool=args.pool, timing_images=args.timing_images,
                out=args.out, resume=args.resume, reference_onnx=args.reference_onnx, timeout_s=args.timeout,
                retries=args.retries, progress=not args.no_progress)
