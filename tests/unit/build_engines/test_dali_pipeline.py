"""The gpu target's DALI preprocessing: generated from the card without a GPU, autoserialised as the
Triton dali backend does it, defined under the executor the backend runs, and the same graph run
on DALI's CPU ops close to the client's preprocessing.

What is checked here with the installed DALI (no GPU): the generated ``1/dali.py`` serialises in a
fresh interpreter by the command dali_backend's ``model_provider.h`` runs (DALI's own discovery of
the ``@autoserialize`` function, called with ``device_id=None`` for want of a GPU); its GPU pipeline (``mixed`` decoder, GPU resize) is *defined* with the
legacy executor's flags (``exec_dynamic=False``, pipelined, async: what ``daliCreatePipeline``
gives the backend), where DALI refuses any GPU->CPU edge at definition time; the CPU variant is
built and run under that executor; the resized sides computed on the CPU are the ones DALI's own
``resize_shorter`` / ``not_larger`` produce.

What only a GPU can confirm (not run here): that the backend *builds and runs* the pipeline
(``Pipeline::Build`` needs a CUDA device: without one DALI stops at "requires a CUDA-capable
GPU"), nvJPEG's decode (libjpeg-turbo here) and the GPU resize kernels' pixels. The server
image's DALI also serialises the file there, not this one.

Tolerances, in grey levels (0..255) after undoing the normalisation, and why: DALI resamples in
float and rounds once, PIL rounds to uint8 between its horizontal and vertical passes, so the
classification crop differs by at most 1 level; for the letterbox DALI's linear filter is not
OpenCV's ``INTER_LINEAR`` (different sampling of the source when shrinking), which moves sharp
edges by several levels (8 measured on these images), so the letterbox is bounded at 12 levels
at any pixel and 0.5 on average, and its padding and geometry are checked exactly.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import io
import subprocess
import sys
from pathlib import Path
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

import nvidia.dali as dali  # noqa: E402
import nvidia.dali.fn as fn  # noqa: E402
import nvidia.dali.types as types  # noqa: E402

from tritonkit.model_repository.dali import (  # noqa: E402
    DALI_FILE, LEGACY_EXECUTOR, PIPELINE_FUNCTION, DaliOptions, dali_pipeline, graph_params, write_dali_chain,
    write_dali_model)
from tritonkit.model_repository.dali_graph import stages  # noqa: E402

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


# The command dali_backend runs to autoserialise <version>/dali.py (src/model_provider/model_provider.h,
# GenerateAutoserializeCmd), with this interpreter as its python3 and one change: invoke_autoserialize
# calls the pipeline function as it is (device_id=0, the server has a GPU); here, without one, the
# function DALI's own discovery finds is called with device_id=None.
AUTOSERIALIZE = """
import importlib, sys
from nvidia.dali._utils.autoserialize import _discover_autoserialize
spec = importlib.util.spec_from_file_location('autoserialize_mod', sys.argv[1])
head_module = importlib.util.module_from_spec(spec)
sys.modules['autoserialize_mod'] = head_module
spec.loader.exec_module(head_module)
(pipeline,) = _discover_autoserialize(head_module, visited=[])
pipeline(device_id=None).serialize(filename=sys.argv[2])
"""


def _load_served(path: Path):
    spec = importlib.util.spec_from_file_location(f"served_{path.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_served_dali_py_autoserialises_as_the_backend_does(tmp_path):
    written = write_dali_model(DET, tmp_path, "det", max_batch_size=8)
    assert written.name == "det_dali"
    served = tmp_path / "det_dali" / "1" / DALI_FILE
    assert not (tmp_path / "det_dali" / "1" / "model.dali").exists()     # nothing serialised by this DALI
    target = tmp_path / "serialised.dali"
    proc = subprocess.run([sys.executable, "-c", AUTOSERIALIZE, str(served), str(target)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blob = target.read_bytes()
    assert b"decoders__Image" in blob and b"mixed" in blob                 # the GPU decoder
    assert b"PeekImageShape" in blob and b"CropMirrorNormalize" in blob and b"Resize" in blob
    # the backend's own validity check (DaliPipeline::ValidateDaliPipeline -> daliIsDeserializable == 0)
    libdali = ctypes.CDLL(str(Path(dali.__file__).with_name("libdali.so")))
    assert libdali.daliIsDeserializable(ctypes.c_char_p(blob), len(blob)) == 0
    assert libdali.daliIsDeserializable(ctypes.c_char_p(b"not a pipeline"), 14) == 1
    cfg = parse_config((tmp_path / "det_dali" / "config.pbtxt").read_text())
    assert cfg.backend == "dali" and cfg.max_batch_size == 8 and not cfg.default_model_filename
    assert [(i.name, list(i.dims)) for i in cfg.input] == [(ENCODED_INPUT, [-1])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("images", [3, 128, 128]), (GEOMETRY_OUTPUT, [6])]


def test_served_dali_py_imports_nothing_but_dali(tmp_path):
    """The server has DALI and no tritonkit: the file may import nvidia.dali only."""
    write_dali_model(CLS, tmp_path, "cls", max_batch_size=4)
    tree = ast.parse((tmp_path / "cls_dali" / "1" / DALI_FILE).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported and all(m.startswith("nvidia.dali") for m in imported), imported


@pytest.mark.parametrize("card", [CLS, DET, get_card("resnet50")], ids=lambda c: c.name)
def test_gpu_pipeline_is_defined_under_the_backends_legacy_executor(card, tmp_path):
    """The served pipeline function, called with the flags daliCreatePipeline gives the backend:
    DALI refuses a GPU->CPU edge while the graph is defined (nvidia/dali/data_node.py, _check_gpu2cpu)."""
    write_dali_model(card, tmp_path, card.name, max_batch_size=4)
    served = _load_served(tmp_path / f"{card.name}_dali" / "1" / DALI_FILE)
    assert getattr(served, PIPELINE_FUNCTION)(**LEGACY_EXECUTOR).device_id == 0      # as served
    pipe = getattr(served, PIPELINE_FUNCTION)(device_id=None, **LEGACY_EXECUTOR)      # no GPU here to serialise on
    assert pipe.exec_dynamic is False and pipe.exec_async and pipe.exec_pipelined
    assert b"mixed" in pipe.serialize()
    assert dali_pipeline(card, DaliOptions(max_batch_size=4, device="gpu")).exec_dynamic is False


def test_the_legacy_executor_check_catches_a_gpu_shape_read():
    """Guards the test above: the shape of the mixed decoder's output, read on the CPU (what the graph
    did before), is refused under the same flags."""
    pipe = dali.Pipeline(batch_size=2, num_threads=1, device_id=None, **LEGACY_EXECUTOR)
    with pytest.raises(RuntimeError, match="GPU to CPU"):
        with pipe:
            encoded = fn.external_source(name=ENCODED_INPUT, dtype=types.UINT8, device="cpu")
            decoded = fn.decoders.image(encoded, device="mixed")
            pipe.set_outputs(decoded, decoded.shape())


# odd and extreme aspect ratios: where the rounding of the longer side matters
ROUNDING_SIZES = [(97, 211), (211, 97), (333, 500), (500, 333), (71, 640), (255, 257), (1, 7), (128, 129)]


@pytest.mark.parametrize("card", [CLS, DET], ids=lambda c: c.name)
def test_sides_computed_on_the_cpu_are_dalis_own(card):
    """The sides the graph computes (and passes to fn.resize(size=...)) equal the output shape of DALI's
    own resize_shorter (resize_crop) or size + mode="not_larger" (letterbox) on the same images."""
    params = graph_params(card)
    blobs = [_photo(h, w, i) for i, (h, w) in enumerate(ROUNDING_SIZES)]
    pipe = dali.Pipeline(batch_size=len(blobs), num_threads=1, device_id=None, prefetch_queue_depth=1,
                         **LEGACY_EXECUTOR)
    with pipe:
        nodes = stages(params, "cpu")
        decoded = fn.decoders.image(fn.external_source(name="ref", dtype=types.UINT8), output_type=types.RGB)
        if params["mode"] == "resize_crop":
            reference = fn.resize(decoded, resize_shorter=params["resize_to"], antialias=True)
        else:
            reference = fn.resize(decoded, size=(params["size"],) * 2, mode="not_larger", antialias=False)
        pipe.set_outputs(nodes["sides"], nodes["resized"].shape(), reference.shape())
    pipe.build()
    arrays = [np.frombuffer(b, np.uint8) for b in blobs]
    pipe.feed_input(ENCODED_INPUT, arrays)
    pipe.feed_input("ref", arrays)
    sides, resized, reference = (o.as_array() for o in pipe.run())
    np.testing.assert_array_equal(resized[:, :2], reference[:, :2])
    np.testing.assert_array_equal(sides, reference[:, :2])


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
