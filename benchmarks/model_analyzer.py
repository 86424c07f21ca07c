"""NVIDIA Model Analyzer on a tritonkit repository, run as a user runs it.

``model-analyzer profile`` (triton-model-analyzer 1.58) with a config file: local launch of the
bundled tritonserver (the binary in the nvidia-pytriton wheel, with tritonkit's python-backend
folder), CPU only (``cpu_only`` per model, no DCGM), on loopback ports, perf_analyzer from the
tritonclient wheel, and a bounded search. Model Analyzer copies the repository's model into one
folder per config variant (changing ``max_batch_size``, ``instance_group`` and dynamic batching)
and loads each into the server; a variant whose load fails is logged and skipped.

It runs in a venv of its own (``scripts/setup.sh`` puts it in ``$VENV/model-analyzer``): its pins
(numpy 2, a newer tritonclient) conflict with the project's. Used by the bench's
``tune_vs_model_analyzer`` ratio and by tests/server/test_model_analyzer.py; from the shell::

    .venv/bin/python -m benchmarks.model_analyzer --repo model_repository --model demo_shapes --out reports/ma
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tritonkit.errors import TritonkitError
from tritonkit.perf.binary import analyzer_env, locate_perf_analyzer
from tritonkit.serve.local import free_port, server_paths

MODEL_ANALYZER_ENV = "MODEL_ANALYZER"      # path of the model-analyzer executable, if not in the venv
VERSION = "1.58.0"
RESULTS_CSV = "results/metrics-model-inference.csv"


def locate_model_analyzer() -> Path | None:
    """``$MODEL_ANALYZER``, else ``<venv>/model-analyzer/bin/model-analyzer`` (scripts/setup.sh), else PATH."""
    for candidate in (os.environ.get(MODEL_ANALYZER_ENV), Path(sys.prefix) / "model-analyzer" / "bin" / "model-analyzer",
                      shutil.which("model-analyzer")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True, kw_only=True)
class Search:
    """The run-config search: ``mode`` quick or brute, bounded by concurrency, instances and the
    model batch size; ``sweep`` the concurrency sweep of the best configs (for MA's reports)."""

    mode: str = "quick"
    max_concurrency: int = 2
    max_instances: int = 1
    max_batch: int = 2
    sweep: bool = False


@dataclass
class Profile:
    """What a run left: its exit code, log, every measured row of its results CSV, the variants
    whose load failed (the log's lines), and its output repository (one folder per variant)."""

    returncode: int
    log: Path
    output_repo: Path
    rows: list[dict] = field(default_factory=list)
    load_failures: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> list[str]:
        """The variants measured (each loaded into the server), in the CSV's order."""
        return list(dict.fromkeys(r["Model Config Path"] for r in self.rows))

    @property
    def pick(self) -> dict | None:
        """Model Analyzer's pick: its row of the highest throughput (its default objective)."""
        return max(self.rows, key=lambda r: float(r["Throughput (infer/sec)"])) if self.rows else None

    def pick_folder(self) -> Path:
        if self.pick is None:
            raise TritonkitError(f"Model Analyzer measured no config; see {self.log}")
        return self.output_repo / self.pick["Model Config Path"]


def profile_config(repo: Path, model: str, work: Path, search: Search = Search()) -> dict:
    """The ``model-analyzer profile -f`` config: local launch of the bundled server on free loopback ports."""
    paths = server_paths()
    http, grpc, metrics = free_port(), free_port(), free_port()
    return {
        "model_repository": str(repo), "output_model_repository_path": str(work / "output_repo"),
        "override_output_model_repository": True, "checkpoint_directory": str(work / "checkpoints"),
        "export_path": str(work / "export"),
        "triton_launch_mode": "local", "triton_server_path": str(paths.binary),
        "triton_output_path": str(work / "tritonserver.log"),
        "triton_server_flags": {"backend-directory": str(paths.backend_dir)},
        # the python backend's models import this environment's numpy and onnxruntime (as LocalServer runs it)
        "triton_server_environment": {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        "triton_http_endpoint": f"127.0.0.1:{http}", "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics", "client_protocol": "grpc",
        "perf_analyzer_path": str(locate_perf_analyzer().binary),
        "run_config_search_mode": search.mode, "run_config_search_max_concurrency": search.max_concurrency,
        "run_config_search_max_instance_count": search.max_instances,
        "run_config_search_max_model_batch_size": search.max_batch,
        # the summary step exports the results CSV read back here; the detailed reports are skipped
        "concurrency_sweep_disable": not search.sweep, "skip_detailed_reports": True,
        "profile_models": {model: {"cpu_only": True}},
    }


def run_profile(binary: Path, repo: Path, model: str, work: Path, search: Search = Search(),
                timeout_s: float = 900.0) -> Profile:
    """``model-analyzer profile`` on ``repo``'s ``model``; everything it writes goes under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "export").mkdir(exist_ok=True)
    config = profile_config(repo, model, work, search)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = work / "model-analyzer.log"
    with open(log, "w") as out:
        try:  # perf_analyzer (run by Model Analyzer) needs the pip CUDA runtime on LD_LIBRARY_PATH
            proc = subprocess.run([str(binary), "profile", "-f", str(work / "config.yaml")], stdout=out,
                                  stderr=subprocess.STDOUT, env=analyzer_env(), cwd=work, timeout=timeout_s)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\n(killed after {timeout_s:g} s)\n")
    return read_profile(work, code)


def read_profile(work: Path, returncode: int = 0) -> Profile:
    """What a run under ``work`` left (its config, log and results CSV)."""
    config = yaml.safe_load((work / "config.yaml").read_text())
    log = work / "model-analyzer.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    failures = [line.split("] ", 1)[-1][:300] for line in text.splitlines() if "load failed" in line]
    results = Path(config["export_path"]) / RESULTS_CSV
    rows = list(csv.DictReader(results.open())) if results.is_file() else []
    return Profile(returncode, log, Path(config["output_model_repository_path"]), rows, failures)


def main(argv: list[str] | None = None) -> int:
    """Profile one model of a repository; print what loaded, what failed and the pick. Exit 1 when a
    variant failed to load or nothing was measured."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_analyzer", description=main.__doc__)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", choices=("quick", "brute"), default="quick")
    p.add_argument("--max-concurrency", type=int, default=Search.max_concurrency)
    p.add_argument("--max-instances", type=int, default=Search.max_instances)
    p.add_argument("--max-batch", type=int, default=Search.max_batch)
    args = p.parse_args(argv)
    binary = locate_model_analyzer()
    if binary is None:
        print(f"model-analyzer not found: run scripts/setup.sh (.venv/model-analyzer) or set ${MODEL_ANALYZER_ENV}",
              file=sys.stderr)
        return 1
    search = Search(mode=args.mode, max_concurrency=args.max_concurrency, max_instances=args.max_instances,
                    max_batch=args.max_batch)
    profile = run_profile(binary, args.repo.resolve(), args.model, args.out.resolve(), search)
    for row in profile.rows:
        print(f"{row['Model Config Path']}: max batch {row['Max Batch Size']}, instances {row['Instance Group']}, "
              f"concurrency {row['Concurrency']}: {row['Throughput (infer/sec)']} infer/s, p99 {row['p99 Latency (ms)']} ms")
    for failure in profile.load_failures:
        print(f"load failed: {failure}")
    if profile.pick:
        print(f"pick: {profile.pick['Model Config Path']} ({profile.pick_folder()})")
    print(f"log: {profile.log}")
    return 0 if profile.rows and not profile.load_failures and profile.returncode == 0 else 1


__all__ = ["MODEL_ANALYZER_ENV", "Profile", "Search", "VERSION", "locate_model_analyzer", "profile_config",
           "read_profile", "run_profile", "main"]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
