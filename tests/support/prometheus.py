"""Real Prometheus and promtool for the tests (Debian's ``prometheus`` package: scripts/setup.sh installs it).

* :func:`promtool` runs ``promtool`` (``check rules``, ``test rules``, ``check config``);
  :func:`check_expressions` has promtool parse PromQL expressions (as recording rules of a temp file).
* :class:`Prometheus` starts a Prometheus on 127.0.0.1 only (a free port, a temp TSDB), queries it
  over its HTTP API, and always stops it (context manager; :func:`support.processes.background`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable

import yaml

from tritonkit.serve.local import free_port

from support.processes import background

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
MISSING = "promtool/prometheus not on PATH (scripts/setup.sh installs Debian's prometheus package)"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``promtool ARGS`` (output captured, 120 s at most)."""
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def check_expressions(exprs: Iterable[str], folder: Path) -> subprocess.CompletedProcess:
    """promtool parses each expression (as a recording rule of a rules file written in ``folder``)."""
    rules = [{"record": f"check:expression_{i}:x", "expr": e} for i, e in enumerate(exprs)]
    path = folder / "expressions.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}, width=10_000))
    return promtool("check", "rules", str(path))


class Prometheus:
    """A Prometheus of the configuration file ``config`` on loopback, its TSDB and log in ``folder``."""

    def __init__(self, config: Path, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = Path(config)
        self.port = free_port("127.0.0.1")
        self.log = self.folder / "prometheus.log"
        self.proc: subprocess.Popen | None = None
        self._stack = ExitStack()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [PROMETHEUS, f"--config.file={self.config_path}", f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={self.folder / 'tsdb'}", "--storage.tsdb.retention.time=1h", "--log.level=warn"]

    def __enter__(self) -> "Prometheus":
        self._stack = ExitStack()
        self.proc = self._stack.enter_context(background(self.argv(), self.log, f"{self.url}/-/ready", 60.0))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def api(self, path: str, **params: str) -> dict:
        """GET ``/api/v1/<path>`` with ``params``; the ``data`` of a successful answer (else AssertionError
        with Prometheus' error, e.g. a parse error of the query)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """The instant vector of ``expr`` now: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        return self.api("query", query=expr)["result"]

    def series(self, match: str) -> list[dict]:
        return self.api("series", **{"match[]": match})
