"""Per-object masks as COCO run-length encodings (pycocotools' ``mask.encode``) for result JSON."""

from __future__ import annotations

import numpy as np

from tritonkit._lazy import lazy_import

mask_utils = lazy_import("pycocotools.mask")


def encode_masks(masks: np.ndarray) -> list[dict[str, object]]:
    """COCO RLEs (``{"size": [h, w], "counts": str}``) of binary ``[N,H,W]`` masks, JSON-ready."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]
