"""Client decode + preprocessing speed per core: torchvision's reference against tritonkit's.

    taskset -c 0 .venv/bin/python -m benchmarks.preprocess_speed [--card resnet50] [--images 48] [--repeats 5]

Generates photo-like JPEGs (quality 90, 500x375 .. 640x480, a third of them portrait), then
times, one image after another on one thread (torch, OpenCV and BLAS limited to one), the best
of ``--repeats`` interleaved passes over all images:

* ``PIL decode only`` — ``Image.open(...).convert("RGB")``: the floor of the work;
* ``torchvision reference`` — ``pil_loader`` then ``Resize`` -> ``CenterCrop`` -> ``ToTensor``
  -> ``Normalize`` (what published ImageNet accuracies use);
* ``tritonkit exact`` — what ``tritonkit eval`` runs per image (the run-stream engine's
  ``load_item`` with the classification adapter: ``decode_image`` + ``preprocess``; the default,
  equal to the reference within 1e-5), also ``preprocess`` into a preallocated batch buffer;
* ``tritonkit fast`` — ``preprocess_bytes(fast=True)`` (window resampling, JPEG draft);
* ``tritonkit tensor path`` — the card with ``resample="tensor"`` (float resampling);

and the same without the decode (from decoded PIL images). Prints a markdown table with img/s,
ms per image, the speed relative to torchvision and the largest difference from its output.
``make bench`` uses :func:`torchvision_reference`, :func:`eval_path` and :func:`one_pass` for its
``client_preprocess_vs_torchvision`` ratio; :func:`decoder_name` says which JPEG decoder ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
from typing import Callable

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from tritonkit._lazy import lazy_import
from tritonkit.cards import ModelCard, get_card
from tritonkit.client import preprocess_math
from tritonkit.tasks.classify.task import ClassifyAdapter
from tritonkit.client.decode import decode_image
from tritonkit.client.pipeline import load_item
from tritonkit.client.preprocess import preprocess, preprocess_bytes
from tritonkit.report import markdown_table

cv2 = lazy_import("cv2")
torch = lazy_import("torch")
transforms = lazy_import("torchvision.transforms")


def photos(n: int, seed: int = 0) -> list[bytes]:
    """``n`` photo-like JPEGs (smooth content plus noise), quality 90, 500x375 .. 640x480."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = int(rng.integers(500, 641)), int(rng.integers(375, 481))
        if i % 3 == 0:
            w, h = h, w
        base = Image.fromarray(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)).resize((w, h), 3)
        noisy = np.asarray(base).astype(np.int16) + rng.integers(-16, 17, (h, w, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def pil_loader(data: bytes) -> Image.Image:
    """torchvision's ``pil_loader``: the encoded image to an RGB PIL image."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def torchvision_reference(pp) -> Callable:
    """torchvision's eval transform on the PIL path for a card's preprocessing: ``Resize`` ->
    ``CenterCrop`` -> ``ToTensor`` -> ``Normalize`` (what published ImageNet accuracies use)."""
    T = transforms
    mode = T.InterpolationMode.BILINEAR if pp.interpolation == "bilinear" else T.InterpolationMode.BICUBIC
    return T.Compose([T.Resize(pp.resize_to, interpolation=mode), T.CenterCrop(pp.size), T.ToTensor(),
                      T.Normalize(pp.mean, pp.std)])


def decode_preprocess(data: bytes, pp) -> np.ndarray:
    """tritonkit's client path for one encoded image: decode, then the card's preprocessing."""
    return preprocess(decode_image(data).pil, pp)[0]


@dataclasses.dataclass(frozen=True)
class _Photo:
    """A run-stream item held in memory (key, label, bytes)."""

    key: str
    data: bytes
    label: int = 0

    def read_bytes(self) -> bytes:
        return self.data


def eval_path(card: ModelCard) -> Callable[[bytes], np.ndarray]:
    """What ``tritonkit eval`` runs per image of a classification card, as one function of the
    encoded bytes: the run-stream engine's ``load_item`` (read, :func:`decode_image`, the
    classification adapter's ``prepare``, i.e. the card's :func:`preprocess`) -> the model input."""
    adapter = ClassifyAdapter(card)

    def run(data: bytes) -> np.ndarray:
        loaded = load_item(adapter, 0, _Photo("photo", data))
        if loaded.error is not None:
            raise ValueError(loaded.error)
        return loaded.input
    return run


def decoder_name() -> str:
    """The decoder colour JPEGs get on this machine (simplejpeg when installed, else PIL)."""
    sj = preprocess_math._simplejpeg()
    return f"simplejpeg {sj.__version__} (libjpeg-turbo)" if sj is not None else "PIL (simplejpeg not installed)"


def one_pass(fn: Callable, inputs: list, clock: Callable[[], float] = time.perf_counter) -> float:
    """Images per second of ``fn`` over ``inputs``, one after another, timed by ``clock``
    (``time.thread_time``: the calling thread's CPU time, which waiting for a CPU does not add to)."""
    t0 = clock()
    for x in inputs:
        fn(x)
    return len(inputs) / (clock() - t0)


def max_abs_diff(pp, decoded: list, reference: Callable) -> float:
    """The largest difference between tritonkit's preprocessing and ``reference`` over ``decoded``."""
    return max(float(np.abs(preprocess(im, pp)[0] - reference(im).numpy()).max()) for im in decoded)


def best_rates(cases: list[tuple[str, Callable, list]], repeats: int) -> dict[str, float]:
    """Images per second of each case's fastest pass. The passes are interleaved (every case
    once per round, ``repeats`` rounds after a warm-up round), so that load from other
    processes falls on all cases alike."""
    best = {name: float("inf") for name, _, _ in cases}
    for round_ in range(repeats + 1):
        for name, fn, inputs in cases:
            t0 = time.perf_counter()
            for x in inputs:
                fn(x)
            if round_:
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: len(inputs) / best[name] for name, _, inputs in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--card", default="resnet50")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    card = get_card(args.card)
    pp = card.preprocess
    tensor_pp = dataclasses.replace(pp, resample="tensor")
    tv = torchvision_reference(pp)
    data = photos(args.images)
    decoded = [Image.open(io.BytesIO(d)).convert("RGB") for d in data]
    buffer = np.empty((len(data), *card.input.dims), np.float32)
    slot = iter(range(10 ** 9))

    def exact_into_batch(d: bytes) -> None:
        preprocess(decode_image(d).pil, pp, out=buffer[next(slot) % len(data)])

    cases = [
        ("PIL decode only", lambda d: pil_loader(d), data, None),
        ("torchvision reference", lambda d: tv(pil_loader(d)), data, None),
        ("tritonkit exact", eval_path(card), data, pp),
        ("tritonkit exact, into a batch buffer", exact_into_batch, data, pp),
        ("tritonkit fast", lambda d: preprocess_bytes(d, pp, fast=True), data, "fast"),
        ("tritonkit tensor path", lambda d: preprocess(decode_image(d).pil, tensor_pp), data, tensor_pp),
        ("preprocess only: torchvision", tv, decoded, None),
        ("preprocess only: tritonkit exact", lambda im: preprocess(im, pp), decoded, pp),
        ("preprocess only: tritonkit fast", lambda im: preprocess(im, pp, fast=True), decoded, "fast"),
    ]
    refs = [tv(im).numpy() for im in decoded]
    with threadpool_limits(limits=1):
        rates = best_rates([(name, fn, inputs) for name, fn, inputs, _ in cases], args.repeats)
    rows = []
    for name, _, _, which in cases:
        base = None
        if "torchvision" not in name and "decode only" not in name:
            base = rates["preprocess only: torchvision" if name.startswith("preprocess only")
                         else "torchvision reference"]
        diff = None
        if which is not None:
            outs = [preprocess_bytes(d, pp, fast=True)[0] for d in data] if which == "fast" else \
                [preprocess(im, which)[0] for im in decoded]
            diff = f"{max(float(np.abs(o - r).max()) for o, r in zip(outs, refs)):.1e}"
        rows.append([name, rates[name], 1e3 / rates[name], None if base is None else rates[name] / base, diff])
    print(f"card {card.name} ({pp.mode} {pp.resize_to}->{pp.size} {pp.interpolation}), {len(data)} JPEGs q90, "
          f"one thread, best of {args.repeats} interleaved rounds, JPEG decoder: {decoder_name()}\n")
    print(markdown_table(["path", "img/s", "ms/img", "x torchvision", "max abs diff vs torchvision"], rows, digits=3))


if __name__ == "__main__":
    main()
