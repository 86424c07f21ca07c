"""The local CPU target: the tritonserver binary bundled in the ``nvidia-pytriton`` wheel.

:class:`LocalServer` starts it on 127.0.0.1 (free ports unless given), waits for readiness
with a timeout, raises :class:`~tritonkit.errors.ServerError` with the tail of the server log
when a model fails to load, and stops it with SIGTERM (Triton drains in-flight requests up to
``exit_timeout_s``), then SIGKILL if it hangs, and ends what is left of its process tree
(python-backend stubs). Before a start it reclaims stubs orphaned by a killed server and checks
that the ports it was given are free (one line naming the busy port). Started from the main
thread, the server gets SIGTERM when its parent dies, even by SIGKILL (see
:mod:`tritonkit.serve.reaper`).

The python backend runs models in the ``python3`` first on PATH, so the server is started
with this interpreter's ``bin`` folder first: models then import this environment's numpy
and onnxruntime (numpy < 2 is required by the bundled backend).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tritonkit.errors import ServerError, ToolMissingError
from tritonkit.serve import keyshim, reaper
from tritonkit.serve.metrics import metrics_flags


class Ports(NamedTuple):
    """A server's HTTP, gRPC and metrics ports (0: pick a free one)."""

    http: int
    grpc: int
    metrics: int | None

MODEL_CONTROL_MODES = ("none", "explicit", "poll")
DEFAULT_RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
_LOAD_FAILED = re.compile(r"failed to load '([^']+)' version \d+: (.*?)(?:\\n|\"|$)", re.MULTILINE)


@dataclass(frozen=True)
class ServerPaths:
    binary: Path
    backend_dir: Path
    cache_dir: Path | None = None


def _pytriton_root() -> Path:
    try:
        import pytriton  # noqa: F401  (only its files are used)
    except ImportError:
        raise ToolMissingError(
            "the bundled tritonserver needs the nvidia-pytriton wheel: pip install nvidia-pytriton==0.7.0") from None
    import pytriton

    root = Path(pytriton.__file__).parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ToolMissingError(f"{root}/bin/tritonserver not found in the nvidia-pytriton wheel")
    return root


def server_paths(cache_dir: Path | None = None) -> ServerPaths:
    """The tritonserver binary and a backend folder with the python backend and its stub.

    The wheel keeps the python-backend stub per Python version; Triton looks for it beside
    ``libtriton_python.so``, so a backend folder of symbolic links is assembled once in a cache
    directory (links, not copies: the stub finds its CUDA runtime through an ``$ORIGIN`` rpath).
    """
    root = _pytriton_root()
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / py / "triton_python_backend_stub"
    if not stub.is_file():
        raise ToolMissingError(f"no python backend stub for Python {py} in {root}/python_backend_stubs")
    key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    base = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tritonkit"
    backend_dir = base / f"backends-{key}-py{py}"
    python_dir = backend_dir / "python"
    wanted = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": stub,
    }
    if not all((python_dir / n).resolve() == src.resolve() for n, src in wanted.items()):
        python_dir.mkdir(parents=True, exist_ok=True)
        for name, src in wanted.items():
            tmp = python_dir / f".{name}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(src.resolve())
            tmp.replace(python_dir / name)
    return ServerPaths(root / "bin" / "tritonserver", backend_dir, base)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """ServerError naming the first of ``{label: port}`` (0 = any) that cannot be bound on ``host``."""
    for label, port in ports.items():
        if not port:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # as a server binds: a port in TIME_WAIT is free, one with a listener is not
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise ServerError(f"{label} port {port} on {host} is already in use ({exc.strerror}); "
                                  f"stop what holds it or choose another {label} port") from None


@dataclass(frozen=True)
class ServerOptions:
    """How to run the local server. Ports of 0 are picked free at start."""

    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    model_control_mode: str = "none"
    load_models: tuple[str, ...] = ()
    strict_readiness: bool = True
    exit_timeout_s: int = 30
    log_verbose: int = 0
    # Production profile: restricted endpoints need this header key/value (see tritonkit.serve.profiles).
    restricted_key: str | None = None
    restricted_value: str | None = None
    restricted_apis: tuple[str, ...] = DEFAULT_RESTRICTED_APIS
    # Metrics bind address (None: ``host``). Triton cannot put /metrics behind the key.
    metrics_host: str | None = None
    python_shm_bytes: int = 64 * 1024 * 1024
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.model_control_mode not in MODEL_CONTROL_MODES:
            raise ServerError(f"model control mode {self.model_control_mode!r} not one of {MODEL_CONTROL_MODES}")


def server_argv(paths: ServerPaths, opts: ServerOptions, ports: Ports,
                key_placeholder: str | None = None) -> list[str]:
    """The tritonserver command line for ``opts`` (http, grpc, metrics ports given); with
    ``key_placeholder`` it stands where the restricted-API key goes (see :mod:`tritonkit.serve.keyshim`)."""
    http, grpc, metrics = ports
    argv = [
        str(paths.binary),
        f"--model-repository={opts.model_repository}",
        f"--backend-directory={paths.backend_dir}",
        f"--http-address={opts.host}", f"--http-port={http}",
        f"--grpc-address={opts.host}", f"--grpc-port={grpc}",
        f"--metrics-address={opts.metrics_host or opts.host}", f"--metrics-port={metrics}",
        f"--model-control-mode={opts.model_control_mode}",
        f"--strict-readiness={'true' if opts.strict_readiness else 'false'}",
        f"--exit-timeout-secs={opts.exit_timeout_s}",
        f"--log-verbose={opts.log_verbose}",
        f"--backend-config=python,shm-default-byte-size={opts.python_shm_bytes}",
        "--backend-config=python,shm-growth-byte-size=16777216",
        *metrics_flags(),
    ]
    argv += [f"--load-model={m}" for m in opts.load_models]
    if opts.restricted_key:
        value = key_placeholder or opts.restricted_value or ""
        apis = ",".join(opts.restricted_apis)
        argv += [
            f"--http-restricted-api={apis}:{opts.restricted_key}={value}",
            f"--grpc-restricted-protocol={apis}:{opts.restricted_key}={value}",
        ]
    argv += list(opts.extra_args)
    return argv


class LocalServer:
    """A running bundled tritonserver. Use as a context manager or call start()/stop()."""

    def __init__(self, options: ServerOptions, log_path: Path | None = None, cache_dir: Path | None = None):
        self.options = options
        self._cache_dir = cache_dir
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self.ports = Ports(0, 0, 0)
        self.reclaimed: list[str] = []  # notes on orphans of an earlier, killed server cleaned at start
        self.key_on_command_line = False  # True when no key shim could be built (the key shows in ps)
        self._tree: list = []  # the server's descendants (stubs), refreshed once ready

    # -- addresses --------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.options.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.ports.grpc}"

    @property
    def metrics_host(self) -> str:
        return self.options.metrics_host or self.options.host

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_host}:{self.ports.metrics}/metrics"

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    # -- lifecycle --------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> "LocalServer":
        if self.process is not None:
            raise ServerError("server already started")
        repo = Path(self.options.model_repository)
        if not repo.is_dir():
            raise ServerError(f"model repository {repo} does not exist")
        paths = server_paths(self._cache_dir)
        o = self.options
        self.reclaimed = reaper.reclaim_orphans()
        check_ports_free(o.host, {"http": o.http_port, "grpc": o.grpc_port})
        check_ports_free(self.metrics_host, {"metrics": o.metrics_port})
        self.ports = Ports(o.http_port or free_port(o.host), o.grpc_port or free_port(o.host),
                           o.metrics_port or free_port(self.metrics_host))
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        argv, shim = self._argv_and_env(paths, env)
        # PR_SET_PDEATHSIG follows the forking thread: only a main-thread start may tie the server to it.
        preexec = reaper.parent_death_preexec() if threading.current_thread() is threading.main_thread() else None
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, preexec_fn=preexec)
        finally:
            log.close()
        try:
            self.wait_ready(timeout_s)
            if shim is not None and not keyshim.is_mapped(self.process.pid, shim):
                raise ServerError(f"the key shim {shim} was not loaded into tritonserver; not serving")
        except BaseException:
            self.stop()
            raise
        self._tree = reaper.descendants(self.process.pid)
        return self

    def _argv_and_env(self, paths: ServerPaths, env: dict) -> tuple[list[str], Path | None]:
        """The command line, with the key replaced by the shim's placeholder when there is a key and
        a shim; fills ``env`` for the shim. Returns (argv, the shim library or None)."""
        o = self.options
        shim = keyshim.shim_library(paths.cache_dir or Path(tempfile.gettempdir())) if o.restricted_value else None
        self.key_on_command_line = bool(o.restricted_value) and shim is None
        if shim is None:
            return server_argv(paths, o, self.ports), None
        env[keyshim.VALUE_ENV] = o.restricted_value
        env["LD_PRELOAD"] = " ".join(p for p in (str(shim), env.get("LD_PRELOAD", "")) if p)
        return server_argv(paths, o, self.ports, key_placeholder=keyshim.PLACEHOLDER), shim

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while True:
            code = self.process.poll() if self.process else None
            if code is not None:
                failures = self.load_failures()
                what = ("could not load " + "; ".join(failures)) if failures else f"exited with code {code}"
                raise ServerError(f"tritonserver {what} (while starting); log {self.log_path}, last lines:\n"
                                  f"{self.log_tail(15)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    # Ready only if the answer came from *this* process (with a port already taken,
                    # another server would answer while ours fails to bind and exits), and only once
                    # its gRPC port listens too: clients may use either as soon as start() returns.
                    if r.status == 200 and self._listens_on(self.ports.http) and self._listens_on(self.ports.grpc):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"tritonserver not ready after {timeout_s:.0f} s; "
                                  f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.25)

    def _listens_on(self, port: int) -> bool:
        import psutil

        try:
            conns = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except (psutil.Error, AttributeError):
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM (Triton drains in-flight requests), SIGKILL after the exit timeout + grace."""
        if self.process is None:
            return None
        proc, self.process = self.process, None
        tree = (reaper.descendants(proc.pid) or self._tree) if proc.poll() is None else self._tree
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s if timeout_s is not None else self.options.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reaper.stop_tree(proc.pid, tree)
        return proc.returncode

    def kill(self) -> None:
        """Kill abruptly (for fault tests): no drain; the stubs go too."""
        if self.process is not None and self.process.poll() is None:
            tree = reaper.descendants(self.process.pid) or self._tree
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            reaper.stop_tree(self.process.pid, tree)
        self.process = None

    def load_failures(self) -> list[str]:
        """``"model: reason"`` for every model the log says failed to load."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [f"{m.group(1)}: {m.group(2)}" for m in _LOAD_FAILED.finditer(text)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "LocalServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
