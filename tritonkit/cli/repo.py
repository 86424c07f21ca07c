"""Write a model into a Triton model repository (config.pbtxt generated from the card).

Targets from one card: `cpu` (python backend running onnxruntime; the bundled local server),
`onnxruntime` (Triton's ORT backend in NVIDIA's container), `gpu` (a TensorRT plan from
`tritonkit build`). Dynamic batching, instance count, warmup and an optional queue policy are
set from flags. Nothing half-written is left: the model folder is assembled aside and moved in.

  tritonkit repo --model resnet50 --model-file build/onnx/resnet50.onnx --target cpu
  tritonkit repo --model resnet50 --model-file build/plans/resnet50_fp16.plan --target gpu \\
      --container-release 25.10
  tritonkit repo --model yolov5s --model-file build/onnx/yolov5s.onnx --server-postprocess ap,speed
  tritonkit repo --model resnet50 --model-file build/onnx/resnet50.onnx --server-preprocess
  tritonkit repo --model deeplabv3_resnet50 --model-file build/onnx/deeplabv3_resnet50.onnx --server-postprocess

--server-postprocess writes the task's server-side postprocess after the model, each as a
postprocess model and an ensemble: detectors one NMS chain per NMS profile (all the card's, or
the profiles named), segmenters the argmax chain (uint8 masks). Classifiers have none.

The default repository is the project's top-level model_repository/ folder (Triton ignores
the README.md beside the model folders).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonkit.cards import ModelCard, get_card
from tritonkit.cli.args import positive_int_list
from tritonkit.errors import TritonkitError
from tritonkit.io import ensure_out_dir
from tritonkit.names import check_model_name
from tritonkit.model_repository.config import TARGETS, QueuePolicy, RepoOptions, effective_max_batch
from tritonkit.model_repository.dali import write_dali_chain
from tritonkit.model_repository.ensemble import PreprocessChain, write_postprocess_chain, write_preprocess_chain
from tritonkit.model_repository.plans import check_plan_file
from tritonkit.model_repository.writer import write_model
from tritonkit.served import PostprocessChain
from tritonkit.serve.docker import host_compute_capability
from tritonkit.tasks.base import task_for_card


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="card name or card .json")
    p.add_argument("--model-file", required=True, type=Path, help=".onnx (cpu, onnxruntime) or .plan (gpu)")
    p.add_argument("--target", default="cpu", choices=TARGETS)
    p.add_argument("--out", type=Path, default=Path("model_repository"), help="repository folder")
    p.add_argument("--name", help="model name in the repository (default: the card's)")
    p.add_argument("--max-batch", type=int, help="max_batch_size (default: the card's)")
    p.add_argument("--preferred", type=positive_int_list, default=(), help="preferred batch sizes, e.g. 4,8")
    p.add_argument("--max-queue-delay-us", type=int, default=100)
    p.add_argument("--no-dynamic-batching", action="store_true")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--intra-op-threads", type=int, default=0, help="cpu target: onnxruntime threads")
    p.add_argument("--no-ort-spinning", action="store_true",
                   help="cpu target: idle onnxruntime threads sleep instead of spin-waiting (when clients "
                        "share the server's CPUs, e.g. an eval on the same host)")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--warmup-max-batch", action="store_true",
                   help="also warm up at the max batch (default: batch 1 only, which stays valid when a tuning "
                        "tool such as Model Analyzer lowers max_batch_size in its config variants)")
    p.add_argument("--queue-size", type=int, help="queue policy: max queued requests (rejected beyond)")
    p.add_argument("--queue-timeout-us", type=int, default=0, help="queue policy: reject after this wait")
    p.add_argument("--server-postprocess", nargs="?", const=(), default=None, metavar="VARIANTS",
                   type=lambda t: tuple(x for x in t.split(",") if x),
                   help="also write the task's server-side postprocess + ensemble models: detectors one NMS chain "
                        "per NMS profile (all, or these, e.g. ap,speed), segmenters the argmax chain")
    p.add_argument("--server-preprocess", action="store_true",
                   help="also write a preprocess model and a <name>_bytes ensemble (and <postprocess ensemble>_bytes "
                        "with --server-postprocess): clients send encoded JPEG/PNG bytes, the server decodes and "
                        "preprocesses with the client's code (gpu target: a DALI pipeline the server's DALI "
                        "serialises)")
    p.add_argument("--preprocess-instances", type=int, default=1,
                   help="--server-preprocess on the cpu/onnxruntime targets: python preprocess model instances "
                        "(each decodes one request at a time)")
    p.add_argument("--container-release", help="gpu target: NGC tritonserver release (e.g. 25.10) to check the plan against")
    p.add_argument("--container-trt-version", help="gpu target: TensorRT version of that release, if not in "
                                                   "tritonkit's table or unconfirmed there")


def options_from_args(args: argparse.Namespace) -> RepoOptions:
    policy = None
    if args.queue_size is not None or args.queue_timeout_us:  # either one makes a policy (timeout alone: unbounded size)
        policy = QueuePolicy(max_queue_size=args.queue_size or 0, timeout_us=args.queue_timeout_us)
    return RepoOptions(
        target=args.target, max_batch_size=args.max_batch, dynamic_batching=not args.no_dynamic_batching,
        preferred_batch_sizes=args.preferred, max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances, warmup=not args.no_warmup, warmup_max_batch=args.warmup_max_batch,
        queue_policy=policy,
        intra_op_threads=args.intra_op_threads, ort_spinning=not args.no_ort_spinning,
        name=args.name)


def run(args: argparse.Namespace) -> int:
    if args.name is not None:
        check_model_name(args.name, "--name")
    card = get_card(args.model)
    options = options_from_args(args)
    chains = _chains(card, args.server_postprocess)
    if args.target == "gpu":
        checked = check_plan_file(card, args.model_file, args.container_release, effective_max_batch(card, options),
                                  host_compute_capability(), container_trt=args.container_trt_version)
        if checked.container_note:
            print(f"note: {checked.container_note}")
    ensure_out_dir(args.out, "--out")
    written = write_model(card, args.model_file, args.out, options)
    print(f"wrote {written.path} ({args.target} target): {written.config_path}")
    for chain in chains:  # the model is written once, above; each chain adds its postprocess model + ensemble
        names = write_postprocess_chain(card, args.out, written.name, chain)
        print(f"wrote {names.postprocess} and {names.ensemble} ({chain.description})")
    if args.server_preprocess:
        chain = None if args.target == "gpu" else PreprocessChain(instances=args.preprocess_instances)
        _write_preprocess(card, args.out, written.name, chains, chain)
    return 0


def _chains(card: ModelCard, variants: tuple[str, ...] | None) -> list[PostprocessChain]:
    """The card's task's server-side postprocess chains asked for (None: not asked)."""
    if variants is None:
        return []
    chains = task_for_card(card).server_chains(card, variants)
    if not chains:
        raise TritonkitError(f"--server-postprocess: a {card.task} model ({card.name}) has no server-side "
                             f"postprocess")
    return chains


def _write_preprocess(card, out: Path, model: str, posts: list[PostprocessChain], chain: PreprocessChain | None) -> None:
    """The python preprocess model ``chain`` (cpu, onnxruntime targets) or, with None, the DALI
    one (gpu), and the bytes-in ensembles (in front of the model and of each postprocess chain)."""
    def write(**post):
        return write_dali_chain(card, out, model, **post) if chain is None else \
            write_preprocess_chain(card, out, model, chain=chain, **post)

    how = "DALI on the GPU" if chain is None else "python backend"
    names = write()
    print(f"wrote {names.preprocess} and {names.ensemble} (server-side preprocessing, {how}: encoded image bytes in)")
    for post in posts:
        names = write(post=post)
        print(f"wrote {names.ensemble} (encoded image bytes in, {post.description})")
