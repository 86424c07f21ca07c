"""Two versions of a ``demo_shapes`` classifier whose accuracy is known exactly, and their data set.

The data set has one solid colour per class: class k is the corner of the RGB cube whose bits
are k's (red = bit 2, green = bit 1, blue = bit 0), with a little noise. The classifier averages
each channel and scores class k by how well the channel signs match k's bits (a Gemm with
+-1 weights on the normalised means), so it gets every image right. The "worse" version is the
same graph with two pairs of weight rows swapped: classes 0<->1 and 2<->3 are then always
confused, so its top-1 is exactly 50 % and it agrees with the first on exactly half the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tritonkit.cards import get_card

from support.onnx_models import _save as save_graph

CARD = get_card("demo_shapes")  # input [3, 64, 64] (resize_crop, ImageNet normalisation), 8 logits
SWAPPED = ((0, 1), (2, 3))


def colour_weights(swap: bool = False) -> np.ndarray:
    """``[8, 3]``: row k is +1 where class k's colour has the channel on, -1 where off."""
    bits = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], np.float32)
    w = 2 * bits - 1
    if swap:
        for a, b in SWAPPED:
            w[[a, b]] = w[[b, a]]
    return w


def colour_classifier(path: Path, *, swap: bool = False) -> Path:
    """``input [N,3,64,64] -> logits [N,8]``: global average pool -> flatten -> Gemm (:func:`colour_weights`)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(colour_weights(swap), "w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "colour_classifier",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])], inits)
    return save_graph(graph, path)


def colour_dataset(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    """``root/<class name>/imgNN.png``: ``per_class`` noisy solid-colour images of each class."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CARD.label_names()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([(k >> 2) & 1, (k >> 1) & 1, k & 1], np.int16) * 215 + 20
        for i in range(per_class):
            h, w = 64 + int(rng.integers(0, 40)), 64 + int(rng.integers(0, 40))
            noisy = np.clip(colour + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(folder / f"img{i:02d}.png")
    return root
