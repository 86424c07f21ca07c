"""Config sweep: dynamic-batching delay x preferred batch sizes x instance count, best under a p99 bound.

For every variant the model's config is written through :mod:`tritonkit.model_repository`
(the same writer ``tritonkit repo`` uses), the bundled server — started once, with
``--model-control-mode=explicit`` — reloads it (``load_model`` re-reads the config; the
served config is read back and checked, so a point is never measured on a stale config), and
perf_analyzer measures it at the given batch size and concurrency. Every point stays in the
report, failed ones with their reason. The best is the highest throughput whose p99 latency
is within the bound; with ``write_back`` its config (and model) is written into that
repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from tritonkit.cards import ModelCard
from tritonkit.errors import TritonkitError
from tritonkit.model_repository.config import RepoOptions, config_to_text, model_config
from tritonkit.model_repository.writer import write_model
from tritonkit.perf.results import PerfRow, TextTable, write_markdown
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec, card_input_shapes
from tritonkit.perf.sweep import SweepOptions, run_sweep
from tritonkit.report import write_json, write_text
from tritonkit.serve.local import LocalServer, ServerOptions
from tritonkit.served_model import ServedModel
from tritonkit.triton import make_client, translate_errors


@dataclass(frozen=True)
class Variant:
    """One serving configuration to try."""

    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    instances: int

    @property
    def label(self) -> str:
        pref = "+".join(map(str, self.preferred_batch_sizes)) or "none"
        return f"delay{self.max_queue_delay_us}_pref{pref}_inst{self.instances}"

    def repo_options(self, base):
        """``base`` (a ``RepoOptions``) with this variant's batching and instances."""
        return replace(base, dynamic_batching=True, max_queue_delay_us=self.max_queue_delay_us,
                       preferred_batch_sizes=self.preferred_batch_sizes, instances=self.instances)


@dataclass(frozen=True)
class TuneGrid:
    delays_us: tuple[int, ...] = (0, 100, 500, 2000)
    preferred: tuple[tuple[int, ...], ...] = ((4,), (8,))
    instances: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        if not self.delays_us or not self.preferred or not self.instances:
            raise TritonkitError("the tune grid needs at least one delay, preferred setting and instance count")
        if any(d < 0 for d in self.delays_us) or any(i < 1 for i in self.instances):
            raise TritonkitError("delays must be >= 0 µs and instance counts >= 1")

    def variants(self) -> list[Variant]:
        return [Variant(d, p, i) for i in self.instances for p in self.preferred for d in self.delays_us]


def parse_preferred(text: str) -> tuple[tuple[int, ...], ...]:
    """``"4,8"`` -> two variants (4) and (8); ``"4+8"`` -> one variant with both; ``none`` -> no preferred sizes."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() == "none":
            out.append(())
            continue
        try:
            sizes = tuple(int(x) for x in part.split("+"))
        except ValueError:
            raise TritonkitError(f"preferred {text!r}: expected sizes like 4,8 or 4+8 or none",
                                 fields=("preferred",)) from None
        if any(s < 1 for s in sizes):
            raise TritonkitError(f"preferred {text!r}: sizes must be >= 1", fields=("preferred",))
        out.append(sizes)
    if not out:
        raise TritonkitError("preferred needs at least one entry", fields=("preferred",))
    return tuple(out)


@dataclass
class TunePoint:
    variant: Variant
    row: PerfRow | None = None
    error: str | None = None
    within_bound: bool = False


@dataclass
class TuneResult:
    card: ModelCard
    p99_bound_ms: float
    points: list[TunePoint] = field(default_factory=list)
    best: TunePoint | None = None
    written_back: Path | None = None
    out_dir: Path | None = None

    def table(self) -> TextTable:
        rows = []
        for p in self.points:
            v, r = p.variant, p.row
            mark = "best" if p is self.best else ("yes" if p.within_bound else ("no" if r else "—"))
            rows.append((v.label, str(v.max_queue_delay_us), "+".join(map(str, v.preferred_batch_sizes)) or "none",
                         str(v.instances), f"{r.img_per_s:,.1f}" if r else "—", f"{r.p50_us / 1000:.2f}" if r else "—",
                         f"{r.p99_us / 1000:.2f}" if r else "—",
                         f"{r.split.server_queue_us / 1000:.2f}" if r else "—", mark, p.error or ""))
        return TextTable(f"config sweep: {self.card.name}, p99 bound {self.p99_bound_ms:g} ms",
                         ("variant", "delay µs", "preferred", "instances", "img/s", "p50 ms", "p99 ms", "queue ms",
                          "within bound", "error"), tuple(rows),
                         note="best = highest img/s with p99 within the bound; every point measured with perf_analyzer.")

    def to_json(self) -> dict:
        def point(p: TunePoint) -> dict:
            v = p.variant
            return {"label": v.label, "max_queue_delay_us": v.max_queue_delay_us,
                    "preferred_batch_sizes": list(v.preferred_batch_sizes), "instances": v.instances,
                    "img_per_s": p.row.img_per_s if p.row else None, "p50_ms": p.row.p50_us / 1000 if p.row else None,
                    "p99_ms": p.row.p99_us / 1000 if p.row else None, "within_bound": p.within_bound,
                    "error": p.error}
        return {"model": self.card.name, "p99_bound_ms": self.p99_bound_ms, "points": [point(p) for p in self.points],
                "best": point(self.best) if self.best else None,
                "written_back": str(self.written_back) if self.written_back else None}


def pick_best(points: Sequence[TunePoint], p99_bound_ms: float) -> TunePoint | None:
    """Mark points within the bound; return the one with the highest throughput (or None)."""
    for p in points:
        p.within_bound = p.row is not None and p.row.p99_us / 1000.0 <= p99_bound_ms
    ok = [p for p in points if p.within_bound]
    return max(ok, key=lambda p: p.row.img_per_s) if ok else None


def _reload(client, name: str, variant: Variant, timeout_s: float) -> None:
    """Load the rewritten config and check the server now serves it."""
    with translate_errors("load_model", context="reload failed"):
        client.load_model(name, client_timeout=timeout_s)
    cfg = ServedModel(client, name).config()  # read afresh after every reload
    db = cfg.get("dynamic_batching", {})
    served = (int(db.get("max_queue_delay_microseconds", 0)),
              tuple(int(x) for x in db.get("preferred_batch_size", [])),
              sum(int(g.get("count", 1)) for g in cfg.get("instance_group", [])))
    wanted = (variant.max_queue_delay_us, variant.preferred_batch_sizes, variant.instances)
    if not variant.preferred_batch_sizes and served[1] == (int(cfg.get("max_batch_size", 0)),):
        served = (served[0], (), served[2])  # Triton fills an empty preferred list with max_batch_size
    if served != wanted:
        raise TritonkitError(f"server serves delay/preferred/instances {served}, expected {wanted}")


@dataclass(frozen=True, kw_only=True)
class TuneOptions:
    """One config sweep: ``card`` served from ``onnx``, every variant of ``grid``, the best
    under ``p99_bound_ms``.

    ``measure`` is the perf_analyzer spec per point (its model/url are filled in; default
    batch 1, concurrency 8, time windows of 2 s); ``base_options`` the ``RepoOptions`` the
    variants start from (default: the cpu target); ``write_back`` a repository to write the
    best config (and model) into; ``server_timeout_s`` bounds the server start and each reload.
    """

    card: ModelCard
    onnx: Path
    p99_bound_ms: float
    grid: TuneGrid = TuneGrid()
    measure: PerfSpec | None = None
    base_options: RepoOptions = RepoOptions(target="cpu")
    write_back: Path | None = None
    server_timeout_s: float = 180.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "onnx", Path(self.onnx))
        if self.p99_bound_ms <= 0:
            raise TritonkitError("p99_bound_ms must be positive", fields=("p99_bound_ms",))
        if self.base_options.target != "cpu":
            raise TritonkitError("tune runs on the bundled CPU server: use the cpu target")

    @property
    def model(self) -> str:
        """The served model's name."""
        return self.base_options.name or self.card.name

    def repo_options(self, variant: Variant) -> RepoOptions:
        return variant.repo_options(self.base_options)

    def spec(self, grpc_url: str) -> PerfSpec:
        """The perf_analyzer spec of every point, against the bundled server at ``grpc_url``."""
        spec = replace(self.measure or PerfSpec(model=self.model, concurrency=ConcurrencyRange(8, 8),
                                                measurement_interval_ms=2000),
                       model=self.model, url=grpc_url, protocol="grpc")
        if not spec.input_shapes:  # a variable-size input is measured at the card's opt size
            spec = replace(spec, input_shapes=card_input_shapes(self.card))
        return spec


def run_tune(options: TuneOptions, out_dir: str | os.PathLike,
             on_point: Callable[[TunePoint], None] | None = None) -> TuneResult:
    """Try every variant of ``options.grid`` on the bundled server; see the module docstring.
    ``on_point`` is called with each point once it is measured (or failed)."""
    o = options
    out = Path(out_dir)
    repo = out / "repo"
    variants = o.grid.variants()
    write_model(o.card, o.onnx, repo, o.repo_options(variants[0]))  # checks the ONNX against the card first
    result = TuneResult(o.card, o.p99_bound_ms, out_dir=out)
    server = LocalServer(ServerOptions(model_repository=repo, model_control_mode="explicit", load_models=(o.model,)),
                         log_path=out / "tritonserver.log")
    with server.start(timeout_s=o.server_timeout_s):
        client = make_client("grpc", server.grpc_url, o.server_timeout_s)
        try:
            for variant in variants:
                result.points.append(_measure_variant(o, variant, client, o.spec(server.grpc_url), out))
                _save(result)
                if on_point is not None:
                    on_point(result.points[-1])
        finally:
            client.close()
            _save(result)
    if result.best is not None:
        best = o.repo_options(result.best.variant)
        write_text(out / "best_config.pbtxt", config_to_text(model_config(o.card, best)))
        if o.write_back is not None:
            result.written_back = write_model(o.card, o.onnx, o.write_back, best).config_path
            _save(result)
    return result


def _measure_variant(o: TuneOptions, variant: Variant, client, spec: PerfSpec, out: Path) -> TunePoint:
    """Write the variant's config, reload it, measure it; a failure is kept as the point's error."""
    point = TunePoint(variant)
    try:
        write_model(o.card, o.onnx, out / "repo", o.repo_options(variant))
        _reload(client, o.model, variant, o.server_timeout_s)
        sweep = run_sweep(spec, out / "points" / variant.label, SweepOptions(plot=False))
        if sweep.rows:
            point.row = max(sweep.rows, key=lambda r: r.img_per_s)
        else:
            point.error = sweep.points[0].error if sweep.points else "no measurement"
    except TritonkitError as exc:
        point.error = str(exc)
    return point


def _save(result: TuneResult) -> None:
    """tune.json, tune.csv and tune.md of the points so far, the best picked again."""
    out = result.out_dir
    result.best = pick_best(result.points, result.p99_bound_ms)
    write_json(out / "tune.json", result.to_json())
    write_text(out / "tune.csv", result.table().csv_text())
    write_markdown(out / "tune.md", [result.table()], title=f"config sweep: {result.card.name}")
