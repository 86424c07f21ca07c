"""What the resume and fault tests share: the classification options, the metrics compared, the
checkpoint's entries (each image exactly once)."""

from __future__ import annotations

import json

from tritonkit.client.checkpoint import read_checkpoint
from tritonkit.evaluate import evaluate
from tritonkit.tasks.classify.task import Classification, ClassificationOptions

METRICS = ("images", "top1", "top5", "correct1", "correct5")
CHECKPOINT = Classification.checkpoint


def evaluate_classification(options: ClassificationOptions) -> dict:
    """The eval's result as written to classification.json."""
    return evaluate("classify", options).to_dict()


def options(data_dir, out, url, **kw) -> ClassificationOptions:
    """Classification options of the resume tests (bs 2, no timing, no progress bar)."""
    return ClassificationOptions(model="demo_shapes", data=data_dir, out=out, url=url, batch_sizes=(2,),
                                 in_flight=2, timing_images=0, progress=False, **kw)


def entries(out) -> dict:
    """Checkpoint entries by key, after asserting every image has exactly one line."""
    _, entries, _ = read_checkpoint(out / CHECKPOINT)
    lines = (out / CHECKPOINT).read_text().splitlines()[1:]
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == len(set(keys)), "an image was counted twice"
    return entries
