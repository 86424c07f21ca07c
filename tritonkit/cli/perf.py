"""Measure served models with perf_analyzer: sweeps, the overhead ladder, config tuning.

  tritonkit perf sweep --model demo_shapes --url 127.0.0.1:8001 --batch-sizes 1,4,8 --concurrency 1:4 --out reports/perf
  tritonkit perf sweep --model resnet50_bytes --data coco --data-images 32 --batch-sizes 1,8 --out reports/perf
  tritonkit perf ladder --model resnet50 --onnx resnet50.onnx --batch-size 8 --out reports/ladder
  tritonkit perf tune --model demo_shapes --onnx demo.onnx --p99-ms 20 --delays 0,100,500,2000 --preferred 4,8 \\
      --instances 1,2 --out reports/tune [--write-back model_repository]

sweep: one perf_analyzer run per (batch size, concurrency) point against a running server;
every point's CSV is kept as it finishes, failed points are reported with perf_analyzer's
stderr, and the merged table (sweep.csv / sweep.md) and a latency-vs-throughput plot are
written to --out. perf_analyzer measures one server at a time: a --url naming several endpoints
(a comma list, or a DNS name with several addresses such as a headless Service) runs one whole
sweep per endpoint, one after another, each into --out/<host_port>/, plus endpoints.md comparing
them (each endpoint's sweep.csv is one replica's capacity for `tritonkit deploy capacity`).
With --data (an image folder, an Ultralytics data.yaml or a COCO root) the load is real images:
--data-images distinct files written to --out/input_data.json for perf_analyzer's --input-data,
as the encoded files for a *_bytes ensemble (the server decodes them) and as card-preprocessed
tensors for any other model; the report says so. Without it perf_analyzer sends random data.
ladder: in-process onnxruntime vs Triton over gRPC, HTTP and system shared memory vs the full
run stream, side by side (starts the bundled server itself unless --url is given); on a GPU
host with trtexec, --plan adds the TensorRT engine alone as the first rung and the limit.
tune: dynamic-batching delay x preferred batch sizes x instances on the bundled server
(explicit model control, one reload per variant); best throughput under the p99 bound.
A variable-size input (a segmenter's [3, -1, -1], or its argmax ensemble's) is measured at the
card's dynamic_shape opt size (sweep: the card embedded in the served config), or at --shape-hw
H,W; perf_analyzer gets it as --shape and every report records it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from tritonkit.cards import get_card
from tritonkit.cli.args import int_list, positive_int_list
from tritonkit.cli.tables import cli_console, json_flag, show_tables
from tritonkit.errors import ServerError, TritonkitError
from tritonkit.io import ensure_out_dir
from tritonkit.model_repository.config import RepoOptions
from tritonkit.perf.endpoints import endpoint_addresses, endpoint_rows, run_endpoint_sweeps
from tritonkit.perf.input_data import RealData, served_input, write_input_data
from tritonkit.perf.ladder import LadderOptions, folder_items, run_ladder
from tritonkit.perf.results import sweep_tables
from tritonkit.perf.spec import ConcurrencyRange, PerfSpec, card_input_shapes, served_input_shapes
from tritonkit.perf.sweep import SweepOptions, SweepProgress, minimum_point_seconds, run_sweep
from tritonkit.perf.tune import TuneGrid, TuneOptions, parse_preferred, run_tune
from tritonkit.triton import DEFAULT_PORTS

INPUT_DATA_FILE = "input_data.json"


def _hw(text: str) -> tuple[int, int]:
    values = int_list(text)
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH with positive integers like 64,85, got {text!r}")
    return values[0], values[1]


def _shape_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape-hw", type=_hw, metavar="H,W",
                   help="height,width of a variable-size input (default: the card's dynamic_shape opt size)")


def _measurement_args(p: argparse.ArgumentParser, interval_ms: int) -> None:
    g = p.add_argument_group("measurement (perf_analyzer)")
    g.add_argument("--measurement-mode", choices=("time_windows", "count_windows"), default="time_windows")
    g.add_argument("--interval", type=int, default=interval_ms, metavar="MS",
                   help=f"time window length in ms (time_windows; default {interval_ms})")
    g.add_argument("--request-count", type=int, default=50, metavar="N",
                   help="minimum requests per window (count_windows; default 50)")
    g.add_argument("--stability", type=float, default=10.0, metavar="PCT",
                   help="windows must agree within this percentage (default 10)")
    g.add_argument("--max-trials", type=int, default=10, help="windows before giving up on stability (default 10)")
    g.add_argument("--percentile", type=int, metavar="P", help="stabilise on this latency percentile (default: average)")
    g.add_argument("--perf-analyzer", type=Path, metavar="PATH", help="the perf_analyzer binary (default: found)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="perf_command", metavar="ACTION", required=True)

    s = sub.add_parser("sweep", help="perf_analyzer over batch sizes x concurrency against a running server",
                       description="perf_analyzer over batch sizes x concurrency against a running server.")
    s.add_argument("--model", required=True, help="served model name")
    s.add_argument("--url", help="server address host:port (default 127.0.0.1:8001 for grpc, :8000 for http); "
                                 "several (comma list or a DNS name with several addresses): one sweep each")
    s.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    s.add_argument("--batch-sizes", type=positive_int_list, default=(1,), metavar="1,4,8")
    s.add_argument("--concurrency", default="1:4", metavar="START:END[:STEP]")
    s.add_argument("--shm", choices=("none", "system", "cuda"), default="none", help="shared memory for tensors")
    s.add_argument("--input-data", default="random", help="random, zero, or a perf_analyzer JSON/folder")
    s.add_argument("--data", type=Path, metavar="DIR|DATA.yaml|COCO_ROOT",
                   help="real images as the load: an image folder, an Ultralytics data.yaml (its val images) or a "
                        "COCO root (val2017/); encoded files for *_bytes ensembles, card-preprocessed tensors otherwise")
    s.add_argument("--data-images", type=int, default=16, metavar="N",
                   help="distinct images of --data in the load (default 16; perf_analyzer cycles through them)")
    s.add_argument("--async", dest="async_mode", action="store_true", help="perf_analyzer --async")
    s.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds per point before it is killed")
    s.add_argument("--stop-on-error", action="store_true", help="stop at the first failed point")
    s.add_argument("--no-plot", action="store_true")
    s.add_argument("--out", type=Path, default=Path("reports/perf"))
    json_flag(s)
    _shape_arg(s)
    _measurement_args(s, 5000)

    lad = sub.add_parser("ladder", help="in-process onnxruntime vs Triton gRPC/HTTP/shm vs the run stream",
                         description="The overhead ladder, side by side in one run.")
    lad.add_argument("--model", required=True, help="model card name (or card .json)")
    lad.add_argument("--onnx", type=Path, required=True, help="the ONNX the server serves")
    lad.add_argument("--batch-size", type=int, default=8)
    lad.add_argument("--concurrency", type=int, default=2, help="requests in flight for every served rung")
    lad.add_argument("--url", help="gRPC address of a running server (default: start the bundled one)")
    lad.add_argument("--http-url", help="HTTP address of that server (HTTP rung skipped without it)")
    lad.add_argument("--served-name", help="served model name (default: the card's)")
    lad.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    lad.add_argument("--images", type=Path, help="image folder for the run-stream rung (default: synthetic JPEGs)")
    lad.add_argument("--stream-images", type=int, default=128)
    lad.add_argument("--plan", type=Path, help="TensorRT plan of the same model: the trtexec rung (GPU hosts)")
    lad.add_argument("--trtexec", metavar="PATH", help="the trtexec binary (default: on PATH)")
    lad.add_argument("--out", type=Path, default=Path("reports/ladder"))
    json_flag(lad)
    _shape_arg(lad)
    _measurement_args(lad, 3000)

    t = sub.add_parser("tune", help="dynamic batching delay x preferred sizes x instances, best under a p99 bound",
                       description="Config sweep on the bundled server (explicit model control).")
    t.add_argument("--model", required=True, help="model card name (or card .json)")
    t.add_argument("--onnx", type=Path, required=True)
    t.add_argument("--p99-ms", type=float, required=True, help="p99 latency bound per request (ms)")
    t.add_argument("--delays", type=int_list, default=(0, 100, 500, 2000), metavar="US,...",
                   help="max queue delays in microseconds")
    t.add_argument("--preferred", default="4,8",
                   help="preferred batch size variants: 4,8 = two variants; 4+8 = one with both; none")
    t.add_argument("--instances", type=positive_int_list, default=(1, 2))
    t.add_argument("--batch-size", type=int, default=1, help="batch per request of the load")
    t.add_argument("--concurrency", type=int, default=8, help="requests in flight of the load")
    t.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads per instance")
    t.add_argument("--write-back", type=Path, metavar="REPO", help="write the best config (and model) into REPO")
    t.add_argument("--out", type=Path, default=Path("reports/tune"))
    json_flag(t)
    _shape_arg(t)
    _measurement_args(t, 2000)


def _spec(args: argparse.Namespace, model: str, url: str, protocol: str, batch_size: int, concurrency):
    return PerfSpec(model=model, url=url, protocol=protocol, batch_size=batch_size, concurrency=concurrency,
                    measurement_mode=args.measurement_mode, measurement_interval_ms=args.interval,
                    measurement_request_count=args.request_count, stability_pct=args.stability,
                    percentile=args.percentile, max_trials=args.max_trials,
                    shared_memory=getattr(args, "shm", "none"), input_data=getattr(args, "input_data", "random"),
                    async_mode=getattr(args, "async_mode", False), timeout_s=getattr(args, "timeout", 300.0))


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def run(args: argparse.Namespace) -> int:
    ensure_out_dir(args.out, "--out", create=False)  # each action makes it once it has something to write
    return {"sweep": _sweep, "ladder": _ladder, "tune": _tune}[args.perf_command](args)


def _sweep(args: argparse.Namespace) -> int:
    console = cli_console(stderr=args.json)  # --json: stdout holds only the JSON
    url = args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"
    spec = _spec(args, args.model, url, args.protocol, args.batch_sizes[0], ConcurrencyRange.parse(args.concurrency))
    real = _real_data(args, spec) if args.data is not None else None
    if real is not None:  # every entry carries its shape: no --shape
        spec = replace(spec, input_data=str(real.path))
        console.print(real.label, highlight=False)
    else:
        spec = replace(spec, input_shapes=_served_shapes(spec, args.shape_hw))

    points = len(args.batch_sizes) * len(spec.concurrency.levels())
    floor = points * minimum_point_seconds(spec)
    console.print(f"{points} points ({len(args.batch_sizes)} batch sizes x {len(spec.concurrency.levels())} "
                  f"concurrency levels)" + (f", at least {_duration(floor)} (3 windows of {args.interval} ms "
                                            f"each, more while a point is not stable)" if floor else ""),
                  highlight=False)

    def show(progress: SweepProgress) -> None:
        point = progress.point
        where = f"[{progress.done}/{progress.total}] bs {point.batch_size:>3} c {point.concurrency:>3}:"
        if point.ok:
            r = point.rows[0]
            what = f"{r.img_per_s:,.1f} img/s, p99 {r.p99_us / 1000:.2f} ms  ({point.seconds:.1f} s)"
        else:
            what = f"[red]{point.status}[/red] ({point.error_kind}) {point.error}"
        if point.retries:
            what += f" [yellow]measured {point.attempts} times ({', '.join(point.retried_for)})[/yellow]"
        left = f"  {progress.left} left, about {_duration(progress.eta_s)} to go" if progress.left else ""
        console.print(where, what + left, markup=True, highlight=False)

    options = SweepOptions(batch_sizes=args.batch_sizes, binary=args.perf_analyzer, stop_on_error=args.stop_on_error,
                           on_progress=show, plot=not args.no_plot, real_data=real)
    if len(endpoint_addresses(spec)) > 1:
        return _sweep_endpoints(spec, args.out, options, console, args.json)
    result = run_sweep(spec, args.out, options)
    retried = [p for p in result.points if p.retries]
    if retried:
        console.print(f"{len(retried)} of {len(result.points)} points were measured again with longer windows "
                      f"({sum(p.retries for p in retried)} retries; listed in {result.markdown})", highlight=False)
    tables = sweep_tables(result.rows)
    show_tables(tables if args.json else tables[:2], console, args.json)  # the per-point detail is in sweep.md
    console.print(f"wrote {result.merged_csv}, {result.markdown}, {result.status_json}"
                  + (f", {result.plot}" if result.plot else ""))
    if result.stopped_reason:
        console.print(f"sweep stopped: {result.stopped_reason}", highlight=False)
    if not result.rows:
        raise TritonkitError(f"no point finished; see {result.status_json}")
    return 1 if result.failed else 0


def _real_data(args: argparse.Namespace, spec: PerfSpec) -> RealData:
    """--out/input_data.json from --data-images images of --data, shaped for the served model (the
    first endpoint that answers; every endpoint serves the same model)."""
    if args.input_data != "random":
        raise TritonkitError("give --data (real images) or --input-data, not both")
    if args.shape_hw is not None:
        raise TritonkitError("--shape-hw sets the size of random data; with --data each image has its own")
    target = served_input(endpoint_addresses(spec)[0], spec.protocol, spec.model)
    ensure_out_dir(args.out, "--out")
    return write_input_data(args.data, target, args.data_images, args.out / INPUT_DATA_FILE,
                            same_shape=max(args.batch_sizes) > 1)


def _served_shapes(spec: PerfSpec, shape_hw) -> tuple:
    """--shape for the served model's variable dims, from the first endpoint that answers (every
    endpoint serves the same model); () when none answers (each sweep then reports it)."""
    addresses = endpoint_addresses(spec)
    for address in addresses:
        try:
            return served_input_shapes(address, spec.protocol, spec.model, shape_hw)
        except ServerError:
            if len(addresses) == 1:
                raise
    return ()


def _sweep_endpoints(spec: PerfSpec, out: Path, options: SweepOptions, console, as_json: bool) -> int:
    """One sweep per endpoint (perf_analyzer takes one server), then the comparison (``as_json``:
    the comparison's JSON file on stdout)."""
    addresses = endpoint_addresses(spec)
    console.print(f"perf measures one server at a time: {len(addresses)} endpoints ({', '.join(addresses)}), "
                  f"so {len(addresses)} sweeps run one after another, each into its own folder under {out}",
                  highlight=False)
    sweeps = run_endpoint_sweeps(spec, out, options, on_endpoint=lambda address, folder: console.print(
        f"endpoint {address} -> {folder}", highlight=False))
    for r in endpoint_rows(sweeps):
        what = (f"bs {r.batch_size}: best {r.best_img_per_s:,.1f} img/s at c {r.concurrency}, p99 {r.p99_ms:.2f} ms"
                if r.best_img_per_s is not None else
                f"bs {r.batch_size}: no point finished" if r.batch_size is not None else "not measured")
        console.print(f"{r.endpoint} {what}" + (f"; {r.note}" if r.note else ""), markup=False, highlight=False)
    console.print(f"wrote {sweeps.markdown} and {sweeps.summary_json}")
    if as_json and sweeps.summary_json is not None:
        print(Path(sweeps.summary_json).read_text(encoding="utf-8"), end="")
    if not any(result.rows for result in sweeps.results.values()):
        raise TritonkitError(f"no point finished on any endpoint; see {sweeps.markdown}")
    failed = sweeps.unreachable or any(result.failed for result in sweeps.results.values())
    return 1 if failed else 0


def _ladder(args: argparse.Namespace) -> int:
    console = cli_console(stderr=args.json)  # --json: stdout holds only the JSON
    card = get_card(args.model)
    if not args.onnx.is_file():
        raise TritonkitError(f"{args.onnx}: ONNX file not found")
    if args.plan is not None and not args.plan.is_file():
        raise TritonkitError(f"{args.plan}: TensorRT plan not found")
    items = tuple(folder_items(args.images, args.stream_images)) if args.images else ()
    options = LadderOptions(card=card, onnx=args.onnx, grpc_url=args.url, http_url=args.http_url,
                            served_name=args.served_name, batch_size=args.batch_size, concurrency=args.concurrency,
                            measurement_interval_ms=args.interval, stability_pct=args.stability,
                            max_trials=args.max_trials, intra_op_threads=args.threads,
                            stream_images=args.stream_images, images=items, plan=args.plan,
                            trtexec=args.trtexec, shape_hw=args.shape_hw)
    if args.url is None:
        console.print("starting the bundled tritonserver ...")

    def show(rung) -> None:
        value = f"{rung.img_per_s:,.1f} img/s" if rung.img_per_s is not None else rung.note
        console.print(f"{rung.name}: {value}", highlight=False)

    result = run_ladder(options, args.out, on_rung=show)
    show_tables([result.table()], console, args.json)
    console.print(f"wrote {args.out / 'ladder.md'} and {args.out / 'ladder.json'}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    console = cli_console(stderr=args.json)  # --json: stdout holds only the JSON
    card = get_card(args.model)
    grid = TuneGrid(tuple(args.delays), parse_preferred(args.preferred), tuple(args.instances))
    measure = _spec(args, card.name, "127.0.0.1:8001", "grpc", args.batch_size,
                    ConcurrencyRange(args.concurrency, args.concurrency))
    measure = replace(measure, input_shapes=card_input_shapes(card, args.shape_hw))

    def show(point) -> None:
        r = point.row
        what = f"{r.img_per_s:,.1f} img/s, p99 {r.p99_us / 1000:.2f} ms" if r else f"failed: {point.error}"
        console.print(f"{point.variant.label}: {what}", highlight=False)

    options = TuneOptions(card=card, onnx=args.onnx, p99_bound_ms=args.p99_ms, grid=grid, measure=measure,
                          base_options=RepoOptions(target="cpu", intra_op_threads=args.threads),
                          write_back=args.write_back)
    result = run_tune(options, args.out, on_point=show)
    show_tables([result.table()], console, args.json)
    if result.best is None:
        console.print(f"no variant met p99 <= {args.p99_ms:g} ms; every point is in {args.out / 'tune.md'}")
        return 1
    console.print(f"best: {result.best.variant.label} ({result.best.row.img_per_s:,.1f} img/s); "
                  f"config in {args.out / 'best_config.pbtxt'}"
                  + (f"; written to {result.written_back}" if result.written_back else ""), highlight=False)
    return 0
