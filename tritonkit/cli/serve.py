"""Serve a model repository: the bundled local tritonserver (CPU) or NVIDIA's container (GPU).

  tritonkit serve --local --repo model_repository       # 127.0.0.1, until Ctrl-C / SIGTERM
  tritonkit serve --local --profile production               # restricted APIs (key from $TRITONKIT_API_KEY)
  tritonkit serve --docker --repo model_repository      # runs, or prints, the docker command
  tritonkit serve --docker --profile dev --container-release 26.06 --container-trt-version 11.1.0.7

`--docker` publishes on 127.0.0.1 and uses the production profile unless `--profile dev` is given.

`--local` checks its ports are free, waits for readiness (a model that fails to load ends with
the server log tail) and on Ctrl-C or SIGTERM stops the server with SIGTERM, which lets
in-flight requests finish, then ends any python-backend stub left. The server gets SIGTERM
when this command dies, even by kill -9; a stub orphaned by a killed server is reclaimed (with
its shared memory) at the next start.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from tritonkit.build_engines.host import docker_gpus_arg
from tritonkit.errors import TritonkitError
from tritonkit.serve.docker import DEFAULT_PROFILE, RunOptions, serve_docker
from tritonkit.serve.local import LocalServer
from tritonkit.serve.profiles import bind_warnings, local_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true", help="run the bundled tritonserver on this machine (CPU)")
    mode.add_argument("--docker", action="store_true", help="run NVIDIA's tritonserver container (GPU)")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository folder")
    p.add_argument("--host", default="127.0.0.1", help="bind address (local; default loopback only)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, help="metrics port (local default 8002; docker: published only "
                                                    "with the dev profile, and only when given)")
    p.add_argument("--profile", choices=("dev", "production"),
                   help="production: restricted APIs need the key in $TRITONKIT_API_KEY, model control none "
                        "(default: dev for --local, production for --docker)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    p.add_argument("--log", type=Path, help="server log file (default: a temp file)")
    p.add_argument("--container-release", help="docker: NGC tritonserver release (default: the pinned one)")
    p.add_argument("--container-trt-version", help="docker: TensorRT version of that release, if not in tritonkit's "
                                                   "table or unconfirmed there")
    p.add_argument("--gpu", type=int, help="docker: nvidia-smi index of the GPU to serve on (default: all)")
    p.add_argument("--print-only", action="store_true", help="docker: print the command, do not run it")


def _docker(args: argparse.Namespace) -> int:
    options = RunOptions(profile=args.profile or DEFAULT_PROFILE, http_port=args.http_port, grpc_port=args.grpc_port,
                         metrics_port=args.metrics_port, gpus=docker_gpus_arg(args.gpu))
    outcome = serve_docker(args.repo, release=args.container_release, print_only=args.print_only, options=options,
                           container_trt=args.container_trt_version, gpu_index=args.gpu, env=os.environ)
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    if not outcome.ran:
        print(outcome.command)
        return 0
    return outcome.returncode or 0


def run(args: argparse.Namespace) -> int:
    if args.docker:
        return _docker(args)
    profile = args.profile or "dev"
    options = local_options(args.repo, profile, host=args.host,
                            ports=(args.http_port, args.grpc_port, args.metrics_port or 8002), env=os.environ)
    for warning in bind_warnings(profile, args.host):
        print(f"warning: {warning}", file=sys.stderr)
    server = LocalServer(options, log_path=args.log)
    stop = {"signal": None}

    def _on_signal(signum, _frame):
        stop["signal"] = signum

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        server.start(timeout_s=args.timeout)
        for note in server.reclaimed:
            print(f"reclaimed: {note}", file=sys.stderr)
        if server.key_on_command_line:
            print("warning: no C compiler to build the key shim: the API key is on tritonserver's command line, "
                  "readable by every local user (ps, /proc/<pid>/cmdline); install cc or gcc", file=sys.stderr)
        print(f"tritonserver ready: http {server.http_url}  grpc {server.grpc_url}  metrics {server.metrics_url}")
        print(f"log: {server.log_path}   (Ctrl-C or SIGTERM to stop)")
        while stop["signal"] is None:
            if not server.is_alive():
                raise TritonkitError(f"tritonserver exited unexpectedly; log {server.log_path}:\n{server.log_tail()}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        code = server.stop()
        signal.signal(signal.SIGTERM, previous)
    print(f"tritonserver stopped (exit code {code})")
    return 0
