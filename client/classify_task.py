"""Classification accuracy and timing through Triton (top1/top5, run model vs run stream).

Reads ImageNet val (``val/<wnid>/*.JPEG``; flat ``val/*.JPEG`` + ``val.txt`` or
``LOC_val_solution.csv``; or ``ILSVRC2012_img_val.tar`` read in place, MD5-checked) or the
demo's folders, checks the served model against the card, then streams every image through
decode -> preprocess -> Triton -> softmax top-k. Accuracy is computed over all images at the
first batch size; run-model and run-stream times at every batch size over --timing-images
images. Writes <out>/classification.json, <out>/classification.md and a per-image checkpoint
<out>/classification.jsonl (--resume continues an interrupted run).

With --reference-onnx the same preprocessed batches also run through onnxruntime in this
process and reference_top1/reference_top5 are reported beside the served numbers.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from tritonkit.cli.args import add_stream_arguments, stream_options
from tritonkit.errors import CardError, ServerError, TritonkitError

from tritonkit.client.datasets import IMAGENET_VAL_TAR_MD5  # noqa: E402  (light: stdlib only)
RESULT_JSON = "classification.json"
RESULT_MD = "classification.md"
CHECKPOINT = "classification.jsonl"
SHOWN_ERRORS = 20  # excluded files printed by the CLI summary (the reports list all of them)


@dataclass(frozen=True)
class ClassifyEvalOptions:
    """Everything ``tritonkit eval classify`` takes, for callers that skip the CLI (demo, perf)."""

    model: str
    data: Path | None = None
    out: Path = Path("reports/eval")
    gt: Path | None = None
    tar: Path | None = None
    md5: str | None = IMAGENET_VAL_TAR_MD5
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    model_name: str | None = None
    shm: bool = False
    batch_sizes: tuple[int, ...] = (1,)
    workers: int = 2
    in_flight: int = 2
    pool: str = "thread"
    limit: int | None = None
    limit_mode: str = "stride"
    timing_images: int = 64
    resume: bool = False
    reference_onnx: Path | None = None
    timeout_s: float = 60.0
    retries: int = 3
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise TritonkitError(f"--batch-sizes must be positive integers (got {list(self.batch_sizes)})")
        if self.data is None and self.tar is None:
            raise TritonkitError("give the dataset with --data PATH (folder or .tar) or --tar FILE")
        if self.timing_images < 0:
            raise TritonkitError("--timing-images must be >= 0")
        if self.workers < 1 or self.in_flight < 1:
            raise TritonkitError(f"--workers and --in-flight must be >= 1 (got {self.workers}, {self.in_flight})")


def reference_backend(card, onnx_path: Path):
    """An in-process onnxruntime backend for the same inputs (CPU provider)."""
    from tritonkit.client.pipeline import CallableBackend
    from tritonkit.model_repository.writer import check_onnx_against_card

    if not Path(onnx_path).is_file():
        raise TritonkitError(f"{onnx_path}: reference ONNX not found")
    check_onnx_against_card(card, Path(onnx_path))
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise TritonkitError(f"{onnx_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
    names = [o.name for o in card.outputs]

    def run(batch):
        return dict(zip(names, session.run(names, {card.input.name: batch})))

    return CallableBackend(run, workers=1)


def _open_data(options: ClassifyEvalOptions, card):
    from tritonkit.client.datasets import ClassMap, limit_dataset, open_dataset, open_tar

    if options.tar is not None:
        ds = open_tar(options.tar, ClassMap.for_card(card), options.gt, options.md5)
    else:
        ds = open_dataset(options.data, card, options.gt, options.md5)
    return limit_dataset(ds, options.limit, options.limit_mode)


def evaluate_classification(options: ClassifyEvalOptions) -> dict:
    """Run the whole classification eval; write the JSON/markdown reports; return the results dict.

    Raises :class:`~tritonkit.errors.TritonkitError` subclasses for unusable input (missing
    dataset, unknown model, unreachable server, card/server mismatch). The accuracy results
    are written before the timing sweep starts, and every finished image is in the checkpoint.
    """
    from tritonkit.cards import get_card
    from tritonkit.client.classify import ClassifyAdapter
    from tritonkit.client.infer import ClientOptions, TritonInfer
    from tritonkit.client.pipeline import EngineOptions, run_stream, summarize
    from tritonkit.client.timing import batch_timing, flagperf_metrics, run_model_times
    from tritonkit.report import classification_markdown, write_json, write_text

    t_start = time.perf_counter()
    card = get_card(options.model)
    if card.task != "classify":
        raise CardError(f"model {card.name!r} is a {card.task} model; use `tritonkit eval {card.task}`")
    dataset = _open_data(options, card)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    adapter = ClassifyAdapter(card)
    bs0 = options.batch_sizes[0]
    client_options = ClientOptions(url=options.url, protocol=options.protocol, model_name=options.model_name,
                                   in_flight=options.in_flight, timeout_s=options.timeout_s,
                                   retries=options.retries, shm=options.shm)
    reference = reference_backend(card, options.reference_onnx) if options.reference_onnx else None
    identity = {"task": "classify", "card": card.to_dict(), "served_model": options.model_name or card.name,
                "data": str(dataset.root), "ground_truth": str(dataset.ground_truth) if dataset.ground_truth else None,
                "subset": dataset.subset, "reference_onnx": str(options.reference_onnx) if options.reference_onnx else None}
    checkpoint = out / CHECKPOINT

    result: dict = {
        "task": "classify", "model": card.name, "served_model": options.model_name or card.name,
        "url": client_options.address, "protocol": options.protocol, "shm": options.shm,
        "dataset": dataset.describe(), "batch_size": bs0, "batch_sizes": list(options.batch_sizes),
        "workers": options.workers, "in_flight": options.in_flight, "pool": options.pool,
        "published": card.published_metrics(),
    }
    client = TritonInfer(card, client_options, max_batch=max(options.batch_sizes))
    try:
        client.connect()
        engine = EngineOptions(batch_size=bs0, workers=options.workers, in_flight=options.in_flight,
                               pool=options.pool, checkpoint=checkpoint, run_identity=identity,
                               resume=options.resume, progress=options.progress,
                               description=f"{card.name} bs{bs0}")
        try:
            stream = run_stream(dataset.items, adapter, client, engine, reference=reference)
        except ServerError as exc:
            raise ServerError(f"{exc} (finished images are kept in {checkpoint}; rerun with --resume)") from None
        metrics = summarize(adapter, stream)
        result.update({
            "images": stream.evaluated,
            "errors": dataset.excluded() + stream.errors,
            "notes": stream.notes,
            **{k: metrics.get(k) for k in ("top1", "top5", "correct1", "correct5")},
            "resumed": stream.resumed,
            "stream_images": stream.timing.images,  # images sent in this call (timing covers these)
        })
        if reference is not None:
            result.update({"reference_onnx": str(options.reference_onnx),
                           "reference_top1": metrics.get("reference_top1"),
                           "reference_top5": metrics.get("reference_top5"),
                           "max_abs_diff": stream.max_abs_diff})
        result.update(flagperf_metrics(stream.timing, time.perf_counter() - t_start))
        result["e2e_time_covers"] = "dataset indexing, connect and contract check, the accuracy stream"
        result["stages"] = stream.timing.per_stage()
        result["checkpoint"] = str(checkpoint)
        _write(out, result, write_json, write_text, classification_markdown)

        rows = []
        timing_items = dataset.items[:options.timing_images]
        if timing_items:
            for bs in options.batch_sizes:
                t_opts = EngineOptions(batch_size=bs, workers=options.workers, in_flight=options.in_flight,
                                       pool=options.pool, progress=options.progress, keep_batches=True,
                                       description=f"{card.name} timing bs{bs}")
                timed = run_stream(timing_items, adapter, client, t_opts)
                model_s = run_model_times(client.submit, timed.kept_batches)
                rows.append(batch_timing(bs, model_s, sum(len(b) for b in timed.kept_batches), timed.wall_s,
                                         timed.batches, timed.evaluated).to_dict())
        result["timing_images"] = len(timing_items)
        result["batch_timing"] = rows
        result["retries"] = client.retries_done
    finally:
        client.close()
        if reference is not None:
            reference.close()
    _write(out, result, write_json, write_text, classification_markdown)
    return result


def _write(out: Path, result: dict, write_json, write_text, markdown) -> None:
    write_json(out / RESULT_JSON, result)
    write_text(out / RESULT_MD, markdown(result) + files_markdown(result))


def files_markdown(result: dict) -> str:
    """The report's list of every excluded file (path and reason) and every converted one."""
    from tritonkit.report import markdown_table

    parts = []
    errors, notes = result.get("errors") or [], result.get("notes") or []
    if errors:
        parts += [f"\n## Excluded files ({len(errors)}, not evaluated)\n",
                  markdown_table(["path", "reason"], [[e["path"], e["reason"]] for e in errors])]
    if notes:
        parts += [f"\n## Converted files ({len(notes)}, evaluated)\n",
                  markdown_table(["path", "note"], [[n["path"], n["note"]] for n in notes])]
    return "".join(parts)


# ------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="card name (tritonkit cards) or a card .json file")
    p.add_argument("--model-name", help="name the model is served under (default: the card's name)")
    p.add_argument("--data", type=Path, help="val folder (<class>/*.JPEG or flat *.JPEG) or an uncompressed .tar")
    p.add_argument("--gt", type=Path, help="ground truth: caffe val.txt, 'name wnid' lines or LOC_val_solution.csv")
    p.add_argument("--tar", type=Path, help="ILSVRC2012_img_val.tar, read in place (needs --gt)")
    p.add_argument("--md5", default=IMAGENET_VAL_TAR_MD5, help="expected MD5 of the tar (default: ImageNet val's)")
    p.add_argument("--no-md5-check", action="store_true", help="skip the tar MD5 check")
    p.add_argument("--limit", type=int, help="evaluate only N images (deterministic subset)")
    p.add_argument("--limit-mode", choices=("stride", "first"), default="stride",
                   help="stride: every k-th image in sorted order (spreads over classes); first: the first N")
    add_stream_arguments(p, "classification.jsonl", "accuracy")


def options_from_args(args: argparse.Namespace) -> ClassifyEvalOptions:
    return ClassifyEvalOptions(
        model=args.model, data=args.data, gt=args.gt, tar=args.tar, md5=None if args.no_md5_check else args.md5,
        model_name=args.model_name, limit=args.limit, limit_mode=args.limit_mode, **stream_options(args))


def run(args: argparse.Namespace) -> int:
    result = evaluate_classification(options_from_args(args))
    _print_summary(result, Path(args.out))
    return 0


def _print_summary(result: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result['model']}: {result.get('images', 0)} images")
    table.add_column("metric")
    table.add_column("value", justify="right")

    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    table.add_row("top1", pct(result.get("top1")))
    table.add_row("top5", pct(result.get("top5")))
    if "reference_top1" in result:
        table.add_row("reference top1 (onnxruntime)", pct(result.get("reference_top1")))
        table.add_row("reference top5 (onnxruntime)", pct(result.get("reference_top5")))
    table.add_row("errors / converted", f"{len(result.get('errors', []))} / {len(result.get('notes', []))}")
    for key in ("p_infer_whole", "p_infer_core"):
        if result.get(key) is not None:
            table.add_row(f"{key} (img/s)", f"{result[key]:.1f}")
    for row in result.get("batch_timing", []):
        if row.get("run_model_ms") is not None and row.get("run_stream_ms") is not None:
            table.add_row(f"bs{row['batch_size']} run model / run stream (ms)",
                          f"{row['run_model_ms']:.1f} / {row['run_stream_ms']:.1f}")
    console.print(table)
    errors = result.get("errors", [])
    for e in errors[:SHOWN_ERRORS]:
        console.print(f"excluded {e['path']}: {e['reason']}", markup=False, highlight=False, soft_wrap=True)
    if len(errors) > SHOWN_ERRORS:
        console.print(f"... and {len(errors) - SHOWN_ERRORS} more excluded files (all listed in the reports)")
    console.print(f"wrote {out / RESULT_JSON} and {out / RESULT_MD}")
