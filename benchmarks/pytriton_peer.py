"""The bench's peer server: NVIDIA PyTriton serving an ONNX through onnxruntime in a ``@batch`` function.

    python benchmarks/pytriton_peer.py --onnx model.onnx --name demo_shapes_pytriton \\
        --input input --output logits --grpc-port 8101 --http-port 8100 --metrics-port 8102

Run by ``benchmarks/bench.py`` in its own process, with :func:`matching_libpython_env` applied to
that process only. It serves until terminated (SIGTERM / SIGINT).

Why the environment: PyTriton's model proxy runs inside Triton's python-backend stub
(``pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub``), which links
``libpython3.11.so.1.0`` by name. Without help the dynamic loader finds the system's library
(Debian's 3.11.2 here), while the stub imports the standard library of the interpreter that
started PyTriton (3.11.7). 3.11.7's ``multiprocessing/resource_tracker.py`` calls
``self._lock._recursion_count()``, which the C ``_thread.RLock`` of 3.11.2 does not have, so
the proxy dies at model load with ``'_thread.RLock' object has no attribute '_recursion_count'``.
Putting this interpreter's own ``LIBDIR`` first on ``LD_LIBRARY_PATH`` makes the stub load the
libpython that matches the standard library it imports.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from tritonkit._lazy import lazy_import

ort = lazy_import("onnxruntime")
pt_decorators = lazy_import("pytriton.decorators", "nvidia-pytriton")
pt_config = lazy_import("pytriton.model_config", "nvidia-pytriton")
pt_triton = lazy_import("pytriton.triton", "nvidia-pytriton")


def matching_libpython_env(env: Mapping[str, str], libdir: str | None = None,
                           shared: bool | None = None) -> dict[str, str]:
    """``env`` with this interpreter's libpython folder first on ``LD_LIBRARY_PATH`` (when it was
    built shared); unchanged otherwise. ``libdir``/``shared`` default to ``sysconfig``'s values."""
    out = dict(env)
    libdir = sysconfig.get_config_var("LIBDIR") if libdir is None else libdir
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED")) if shared is None else shared
    if not shared or not libdir or not Path(libdir).is_dir():
        return out
    rest = [p for p in out.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    out["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *rest])
    return out


def serve(onnx: Path, name: str, input_name: str, output_name: str, dims: tuple[int, ...], max_batch: int,
          ports: tuple[int, int, int], queue_delay_us: int, log_file: Path | None) -> None:
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1        # as the cpu target's python backend
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    @pt_decorators.batch
    def infer(**inputs):
        return {output_name: session.run([output_name], {input_name: inputs[input_name]})[0]}

    http, grpc, metrics = ports
    config = pt_triton.TritonConfig(http_address="127.0.0.1", http_port=http, grpc_address="127.0.0.1",
                                    grpc_port=grpc, metrics_port=metrics,
                          log_file=str(log_file) if log_file else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # perf_analyzer reads the server statistics, which PyTriton puts behind a token by default; the
    # bundled server it is compared with restricts nothing either (both listen on loopback only)
    security = pt_triton.TritonSecurityConfig(restricted_endpoints=[])
    with pt_triton.Triton(config=config, security_config=security) as triton:
        triton.bind(model_name=name, infer_func=infer,
                    inputs=[pt_config.Tensor(name=input_name, dtype=np.float32, shape=dims)],
                    outputs=[pt_config.Tensor(name=output_name, dtype=np.float32, shape=(-1,))],
                    config=pt_config.ModelConfig(max_batch_size=max_batch, batcher=pt_config.DynamicBatcher(
                        max_queue_delay_microseconds=queue_delay_us)),
                    strict=True)
        triton.run()
        print("pytriton-peer: serving", flush=True)
        stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--dims", required=True, help="input dims without the batch, e.g. 3,64,64")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=100)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--log-file", type=Path)
    a = p.parse_args(argv)
    serve(a.onnx, a.name, a.input, a.output, tuple(int(d) for d in a.dims.split(",")), a.max_batch,
          (a.http_port, a.grpc_port, a.metrics_port), a.queue_delay_us, a.log_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
