"""Validate a running Triton deployment like production would use it; exit 1 if any check fails.

  tritonkit validate --url 127.0.0.1:8001 --models resnet50 --out reports/validation
  tritonkit validate --url 127.0.0.1:8001 --models m1,m2 --checks readiness,contract,correctness \\
      --reference-onnx m1=build/onnx/m1.onnx --out reports/validation
  tritonkit validate --url 127.0.0.1:8001 --models resnet50 --soak 30m --out reports/soak
  tritonkit validate --candidate canary:8001 --stable stable:8001 --models resnet50 \
      --data imagenet/val --limit 200 --out reports/canary

Checks (in this order): readiness, contract, correctness, bad_requests, security, load,
overload; soak is opt-in (--soak). Writes <out>/validation.json and <out>/report.md. A check
that cannot run (perf_analyzer missing, server unreachable, no card) fails with the reason.
The production profile's API key is read from the environment variable named by
--api-key-env (never from the command line).

With --candidate and --stable (a canary gate): one model served by both, compared on the same
sample of the dataset (--data, and --gt / --annotations / --images / --split where the task takes
them; --limit images) for the task's metric (top1, map50_95, miou) and how the two agree image by
image (top-1, detections, masks), then on p99 under the same perf_analyzer load (interleaved
rounds). Prints `promote` or `rollback` with the figures and exits 0 or 1; writes
<out>/canary.json and <out>/canary.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonkit.cli.tables import cli_console, print_json, print_tables
from tritonkit.errors import TritonkitError
from tritonkit.io import ensure_out_dir
from tritonkit.names import check_model_name
from tritonkit.serve.profiles import API_KEY_ENV
from tritonkit.validate import validate
from tritonkit.validate.canary import CanaryOptions, compare
from tritonkit.validate.groups import group_names, opt_in_groups
from tritonkit.validate.options import ValidateOptions, parse_checks, parse_duration, parse_pairs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="127.0.0.1:8001", help="gRPC address of the server")
    p.add_argument("--http-url", help="HTTP address (default: from the local server's flags, else port 8000)")
    p.add_argument("--metrics-url", help="metrics URL (default: from the local server's flags, else port 8002)")
    p.add_argument("--models", help="comma-separated model names (required; one with --candidate/--stable)")
    p.add_argument("--cards", action="append",
                   help="MODEL=CARD (built-in name or .json), repeatable or comma-separated; default: the "
                        "card stored with the model, else the built-in card of that name")
    p.add_argument("--reference-onnx", action="append", help="MODEL=PATH of the ONNX to compare against")
    p.add_argument("--precision", action="append", help="MODEL=fp32|fp16|int8 (tolerances; default from the plan)")
    p.add_argument("--checks", default="all", help=f"all (every group but the opt-in {', '.join(opt_in_groups())}), "
                                                   f"or a comma list of: {', '.join(group_names())}")
    p.add_argument("--slo-p99-ms", type=float, default=200.0, help="load: p99 latency bound (ms)")
    p.add_argument("--load-seconds", type=float, default=10.0, help="load: how long perf_analyzer drives the model")
    p.add_argument("--concurrency", type=int, default=4, help="load and soak: concurrent requests")
    p.add_argument("--overload-requests", type=int, default=0,
                   help="overload: burst size (default: derived from the queue policy)")
    p.add_argument("--samples", type=int, default=8, help="correctness: seeded inputs per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soak", help="opt-in soak duration (e.g. 30m, 90s)")
    p.add_argument("--rss-bound-mb", type=float, default=100.0, help="soak: allowed server RSS growth (MB)")
    p.add_argument("--server-pid", type=int, help="server pid, when --url does not point at this machine")
    p.add_argument("--repo", type=Path, help="model repository folder (default: the local server's)")
    p.add_argument("--container-release", help="NGC release serving TensorRT plans (plan checks)")
    p.add_argument("--container-trt-version", help="TensorRT version of that release, if not in tritonkit's table")
    p.add_argument("--api-key-env", default=API_KEY_ENV,
                   help=f"environment variable holding the restricted-API key (default {API_KEY_ENV})")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    p.add_argument("--out", type=Path, required=True, help="output folder for validation.json and report.md")
    p.add_argument("--json", action="store_true",
                   help="print validation.json (canary: canary.json) on stdout instead of the table")
    _canary_arguments(p)


def _canary_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("canary gate (--candidate and --stable instead of --url)")
    g.add_argument("--candidate", metavar="URL", help="gRPC address of the server with the new version")
    g.add_argument("--stable", metavar="URL", help="gRPC address of the server with the version in production")
    g.add_argument("--data", type=Path, help="the dataset the task reads (an image class folder, COCO root, VOC root)")
    g.add_argument("--gt", type=Path, help="classify: ground-truth file")
    g.add_argument("--annotations", type=Path, help="detect: COCO instances JSON")
    g.add_argument("--images", type=Path, help="detect: image folder")
    g.add_argument("--split", help="segment: the VOC split (default val)")
    g.add_argument("--limit", type=int, default=100, help="images compared (default 100, the task's subset)")
    g.add_argument("--max-metric-drop", type=float, default=0.01,
                   help="rollback when the task's metric falls by more than this (a fraction; default 0.01)")
    g.add_argument("--min-agreement", type=float, default=0.95,
                   help="rollback when the two agree on fewer images/detections/pixels (default 0.95)")
    g.add_argument("--max-p99-ratio", type=float, default=1.25,
                   help="rollback when the candidate's p99 exceeds the stable's by this factor (default 1.25)")
    g.add_argument("--load-rounds", type=int, default=3, help="interleaved perf_analyzer rounds per server (default 3)")


def options_from_args(args: argparse.Namespace):
    models = tuple(check_model_name(m.strip(), "--models") for m in args.models.split(",") if m.strip())
    return ValidateOptions(
        models=models, url=args.url, http_url=args.http_url, metrics_url=args.metrics_url,
        checks=parse_checks(args.checks), cards=parse_pairs(args.cards, "--cards", models),
        reference_onnx=parse_pairs(args.reference_onnx, "--reference-onnx", models),
        precisions=parse_pairs(args.precision, "--precision", models), repo=args.repo,
        container_release=args.container_release, container_trt_version=args.container_trt_version,
        server_pid=args.server_pid, slo_p99_ms=args.slo_p99_ms,
        load_seconds=args.load_seconds, concurrency=args.concurrency,
        soak_seconds=parse_duration(args.soak) if args.soak else 0.0, rss_bound_mb=args.rss_bound_mb,
        samples=args.samples, seed=args.seed, overload_requests=args.overload_requests,
        request_timeout_s=args.timeout, api_key_env=args.api_key_env, out=args.out)


def canary_options_from_args(args: argparse.Namespace) -> CanaryOptions:
    if not (args.candidate and args.stable):
        raise TritonkitError("a canary gate needs both --candidate and --stable")
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if len(models) != 1:
        raise TritonkitError("--candidate/--stable compare one model: give it with --models NAME")
    dataset = tuple((k, getattr(args, k)) for k in ("data", "gt", "annotations", "images", "split")
                    if getattr(args, k) is not None)
    if not dataset:
        raise TritonkitError("--candidate/--stable compare the servers on your dataset: give --data")
    return CanaryOptions(candidate=args.candidate, stable=args.stable, model=check_model_name(models[0], "--models"),
                         dataset=dataset, out=args.out, limit=args.limit, max_metric_drop=args.max_metric_drop,
                         min_agreement=args.min_agreement, max_p99_ratio=args.max_p99_ratio,
                         concurrency=args.concurrency, load_seconds=args.load_seconds, rounds=args.load_rounds,
                         timeout_s=args.timeout)


def run_canary(args: argparse.Namespace) -> int:
    options = canary_options_from_args(args)
    ensure_out_dir(args.out, "--out")
    result = compare(options)
    if args.json:
        print_json(result.to_dict())
        return 0 if result.decision == "promote" else 1
    console = cli_console()
    console.print(result.summary(), markup=False, highlight=False, soft_wrap=True)
    for problem in result.problems:
        console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {args.out / 'canary.md'}  json: {args.out / 'canary.json'}")
    return 0 if result.decision == "promote" else 1


def run(args: argparse.Namespace) -> int:
    if args.candidate or args.stable:
        return run_canary(args)
    if not args.models:
        raise TritonkitError("give the models to validate with --models")
    options = options_from_args(args)
    ensure_out_dir(args.out, "--out")
    report = validate(options)
    if args.json:
        print_json(report.to_dict())
        return 0 if report.passed else 1
    console = cli_console()
    print_tables([report.table()], console)
    console.print(f"report: {args.out / 'report.md'}  json: {args.out / 'validation.json'}")
    return 0 if report.passed else 1
