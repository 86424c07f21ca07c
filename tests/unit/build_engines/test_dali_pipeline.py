"""The gpu target's DALI preprocessing: generated and serialised from the card without a GPU,
and the same graph run on DALI's CPU ops close to the client's preprocessing.

Not run here: the served pipeline itself (``fn.decoders.image(device="mixed")``, nvJPEG and GPU
resize need an NVIDIA GPU and the tritonserver DALI backend). The CPU variant differs from it
only in where each op runs (and in the decoder: libjpeg-turbo here, nvJPEG there).

Tolerances, in grey levels (0..255) after undoing the normalisation, and why: DALI resamples in
float and rounds once, PIL rounds to uint8 between its horizontal and vertical passes, so the
classification crop differs by at most 1 level; for the letterbox DALI's linear filter is not
OpenCV's ``INTER_LINEAR`` (different sampling of the source when shrinking), which moves sharp
edges by several levels (8 measured on these images), so the letterbox is bounded at 12 levels
at any pixel and 0.5 on average, and its padding and geometry are checked exactly.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from tritonkit.cards import Preprocess, get_card
from tritonkit.client.preprocess import preprocess_bytes
from tritonkit.client.preprocess_math import ENCODED_INPUT, GEOMETRY_OUTPUT
from tritonkit.model_repository.config import ConfigError, RepoOptions, parse_config
from tritonkit.tasks.detect.task import nms_chain
from support.chains import write_chain
from tritonkit.model_repository.writer import write_model

pytest.importorskip("nvidia.dali", reason="nvidia-dali-cuda120 is an optional extra (pip install tritonkit[dali], "
                                          "~420 MB wheel): not installed")

from tritonkit.model_repository.dali import (  # noqa: E402
    DALI_FILE, DaliOptions, dali_pipeline, write_dali_chain, write_dali_model)

CLS = get_card("demo_shapes")
DET = get_card("demo_shapes_det")
# sizes whose resized sides DALI and the client round alike (the geometry must then agree exactly)
SIZES = [(96, 160), (200, 120), (375, 500), (128, 128), (64, 256)]


def _photo(h: int, w: int, seed: int) -> bytes:
    """A smooth photo-like JPEG (gradients, a disc and mild noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 3) ** 2) * 80.0
    base = np.stack([xx * 200 / w + disc, yy * 200 / h, 255 - disc - xx * 100 / w], axis=-1)
    img = np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _run_cpu(card, blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    pipe = dali_pipeline(card, DaliOptions(max_batch_size=len(blobs), device="cpu", num_threads=1))
    pipe.build()
    pipe.feed_input(ENCODED_INPUT, [np.frombuffer(b, np.uint8) for b in blobs])
    image, geometry = pipe.run()
    return image.as_array(), geometry.as_array()


def _grey_levels(diff: np.ndarray, card) -> np.ndarray:
    std = np.asarray(card.preprocess.std)[:, None, None] / card.preprocess.scale
    return np.abs(diff) * std


def test_gpu_pipeline_serialises_into_a_dali_model(tmp_path):
    written = write_dali_model(DET, tmp_path, "det", max_batch_size=8)
    assert written.name == "det_dali"
    blob = (tmp_path / "det_dali" / "1" / DALI_FILE).read_bytes()
    assert len(blob) > 1000 and b"decoders__Image" in blob and b"mixed" in blob  # the GPU decoder
    assert b"CropMirrorNormalize" in blob and b"Resize" in blob
    cfg = parse_config((tmp_path / "det_dali" / "config.pbtxt").read_text())
    assert cfg.backend == "dali" and cfg.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in cfg.input] == [(ENCODED_INPUT, [-1])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("images", [3, 128, 128]), (GEOMETRY_OUTPUT, [6])]


def test_gpu_bytes_ensemble_chains_dali_detector_and_nms(tmp_path):
    """The gpu target's repository (a dummy plan: no TensorRT here) with its DALI bytes-in ensembles."""
    plan = tmp_path / "det.plan"
    plan.write_bytes(b"not a real plan")
    repo = tmp_path / "repo"
    det = write_model(DET, plan, repo, RepoOptions(target="gpu", max_batch_size=8)).name
    write_chain(DET, repo, det, "ap")
    plain = write_dali_chain(DET, repo, det)
    nms = write_dali_chain(DET, repo, det, post=nms_chain(DET, DET.nms("ap")))
    assert (plain.preprocess, plain.ensemble) == (f"{det}_dali", f"{det}_bytes")
    assert nms.ensemble == f"{det}_ensemble_ap_bytes"
    dali_input = parse_config((repo / plain.preprocess / "config.pbtxt").read_text()).input[0]
    for names, steps in ((plain, [plain.preprocess, det]), (nms, [plain.preprocess, det, f"{det}_nms_ap"])):
        cfg = parse_config((repo / names.ensemble / "config.pbtxt").read_text())
        assert [(i.name, list(i.dims), i.data_type) for i in cfg.input] == [
            (ENCODED_INPUT, [-1], dali_input.data_type)]
        assert [s.model_name for s in cfg.ensemble_scheduling.step] == steps
    assert (repo / plain.preprocess / "1" / DALI_FILE).is_file()


def test_cpu_variant_is_close_to_client_classification():
    blobs = [_photo(h, w, i) for i, (h, w) in enumerate(SIZES)]
    image, geometry = _run_cpu(CLS, blobs)
    for i, blob in enumerate(blobs):
        x, geo, _ = preprocess_bytes(blob, CLS.preprocess)
        levels = _grey_levels(image[i] - x, CLS)
        assert levels.max() <= 1.0 + 1e-3, (SIZES[i], levels.max())
        assert levels.mean() < 0.5
        np.testing.assert_allclose(geometry[i], geo.as_array(), rtol=1e-6)


def test_cpu_variant_is_close_to_client_letterbox():
    blobs = [_photo(h, w, 10 + i) for i, (h, w) in enumerate(SIZES)]
    image, geometry = _run_cpu(DET, blobs)
    pp = DET.preprocess
    pad = (pp.pad_value * pp.scale - np.asarray(pp.mean)) / np.asarray(pp.std)
    for i, blob in enumerate(blobs):
        x, geo, _ = preprocess_bytes(blob, DET.preprocess)
        np.testing.assert_allclose(geometry[i], geo.as_array(), rtol=1e-6)  # sides, scales, pads
        is_pad = np.isclose(x, pad[:, None, None]).all(axis=0)
        # the image is where the client put it
        assert (np.isclose(image[i], pad[:, None, None]).all(axis=0) == is_pad).all()
        levels = _grey_levels(image[i] - x, DET)
        assert levels.max() <= 12.0 and levels.mean() < 0.5, (SIZES[i], levels.max(), levels.mean())


def test_variable_size_cards_have_no_pipeline():
    seg = SimpleNamespace(name="seg", preprocess=Preprocess(mode="resize_short", size=64, resize=64))
    with pytest.raises(ConfigError, match="resize_short"):
        dali_pipeline(seg, DaliOptions(max_batch_size=2))
