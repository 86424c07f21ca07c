"""The gpu target's server-side preprocessing: an NVIDIA DALI pipeline generated from the card.

:func:`write_dali_model` writes ``<repo>/<name>_dali/1/dali.py`` and a ``backend: "dali"``
config: encoded image bytes in (``image_bytes``, UINT8 ``[-1]`` per sample, the DALI backend's
input for files), the card's model input and ``geometry`` (FP64 [6]) out, decoded on the GPU by
``fn.decoders.image(device="mixed")`` (nvJPEG; hardware JPEG decoder where the GPU has one).
:func:`write_dali_chain` chains it before the model in a ``<name>_bytes`` ensemble, as the python
preprocess model is chained on the cpu target (:mod:`tritonkit.model_repository.ensemble`).

``dali.py`` is the source of :mod:`tritonkit.model_repository.dali_graph` (self-contained: it
imports only ``nvidia.dali``) followed by the card's settings and one ``@autoserialize``
``pipeline_def``. The dali backend serialises it with the server image's own DALI when it loads
the model (dali_backend README, "Autoserialization": without a ``model.dali`` it autoserialises
``<version>/dali.py``, ``src/dali_model.h``), so the pipeline never crosses DALI versions; the
DALI installed here (``tritonkit[dali]``) only checks it. The graph keeps every number on the CPU
(the backend runs DALI's legacy executor; see :mod:`.dali_graph`).

The pipeline follows the card as closely as DALI allows, and is NOT bit-identical to the
client's preprocessing (:mod:`tritonkit.client.preprocess_math`):

* ``resize_crop``: the shorter side to ``resize`` (the longer one rounded as DALI's
  ``resize_shorter`` rounds it; torchvision truncates), antialiased, then
  ``fn.crop_mirror_normalize`` with a centred ``size`` crop (DALI rounds its offset half away from
  zero, torchvision half to even: odd geometries can shift by one pixel; the geometry output
  records DALI's offset). DALI resamples in float and rounds once, PIL rounds to uint8 after each
  pass: pixels differ by at most one grey level on the CPU variant (tests/test_dali_pipeline.py).
* ``resize``: both sides to ``size``, antialiased, then normalised.
* ``letterbox``: the longer side to ``size`` (``mode="not_larger"``'s rounding; ultralytics'
  ``val`` rule takes the ceiling), without antialias as ``cv2.INTER_LINEAR``, then padding to
  ``size`` x ``size`` with ``pad_value`` at ultralytics' offsets.
* decoding: nvJPEG against libjpeg-turbo (Pillow), measured with torchvision's nvJPEG decode on an
  H200 (``scripts/gpu_check.py``; DALI's own decoder was not run): 4:4:4 and greyscale JPEGs decode
  identically; 4:2:0 and 4:2:2 ones differ where the colour changes sharply (chroma upsampling), up
  to 46 grey levels at the demo shapes' edges (mean 2.2 at most), 6 on a smooth photo (mean 0.13).

Checked here without a GPU: the generated ``dali.py`` serialises as the backend's autoserialization
does it (DALI's own discovery of the ``@autoserialize`` function; ``device_id=None`` instead of 0),
its GPU pipeline is defined under the legacy executor's rules, and the same graph on DALI's CPU ops
is compared with the client. Only a GPU can confirm the ``mixed`` decoder and GPU resize at run
time inside the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonkit._lazy import lazy_import, load_module
from tritonkit.cards import ModelCard, Preprocess
from tritonkit.client.preprocess_math import ENCODED_INPUT, FIXED_SIZE_MODES as MODES, GEOMETRY_OUTPUT
from tritonkit.io import atomic_write_text
from tritonkit.model_repository.config import ConfigError, data_type, pb_module
from tritonkit.model_repository.ensemble import (
    ChainTensor, PostprocessChain, PreprocessChain, PreprocessNames, preprocess_ensemble_config, preprocess_names,
    served_max_batch)
from tritonkit.model_repository.writer import write_config_only
from tritonkit.names import safe_child
from tritonkit.spec import GEOMETRY_FIELDS

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import model_config_pb2

_DALI_HINT = "nvidia-dali-cuda120 (pip install tritonkit[dali])"
dali = lazy_import("nvidia.dali", _DALI_HINT)
# the graph (imports nvidia.dali at its top): loaded after `dali`, so a missing DALI is a one-line error
dali_graph = lazy_import("tritonkit.model_repository.dali_graph", _DALI_HINT)

DALI_SUFFIX = "_dali"
DALI_FILE = "dali.py"               # autoserialised by the backend (its fallback model file name)
GRAPH_SOURCE = Path(__file__).with_name("dali_graph.py")
PIPELINE_FUNCTION = "tritonkit_preprocess"
DEVICES = ("gpu", "cpu")
# the DALI model in a bytes-in ensemble (written by write_dali_chain, not by the python writer)
DALI_CHAIN = PreprocessChain(backend_source="", support_files=(), suffix=DALI_SUFFIX,
                             encoded=ChainTensor(name=ENCODED_INPUT, dims=(-1,), dtype="UINT8"))
# the executor Triton's dali backend runs (see dali_graph): the check pipelines are built with it
LEGACY_EXECUTOR = {"exec_pipelined": True, "exec_async": True, "exec_dynamic": False}

_SERVED_TAIL = """

# ---- written by tritonkit for card {card!r}: the card's preprocessing, then the served pipeline.
from nvidia.dali import pipeline_def  # noqa: E402
from nvidia.dali.plugin.triton import autoserialize  # noqa: E402

PARAMS = {params!r}


# device_id=0 as in the dali backend's autoserialization examples (README): the server serialises this
# where it runs, with a GPU, and creates the pipeline on its instance's GPU (daliCreatePipeline's
# device_id). (Older DALI refuses a mixed operator in a pipeline serialised with device_id=None.)
@autoserialize
@pipeline_def(batch_size={batch}, num_threads={threads}, device_id=0, prefetch_queue_depth=1)
def {function}():
    return graph(PARAMS, "gpu")
"""


@dataclass(frozen=True, kw_only=True)
class DaliOptions:
    """``device``: ``gpu`` (the served pipeline: ``mixed`` decoder, GPU ops) or ``cpu`` (the same
    graph on the CPU, to check it without a GPU); ``max_batch_size``: the pipeline's batch;
    ``num_threads``: DALI's CPU threads (decoder host side)."""

    max_batch_size: int
    device: str = "gpu"
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device {self.device!r} not one of {DEVICES}")
        if self.max_batch_size < 1 or self.num_threads < 1:
            raise ConfigError("max_batch_size and num_threads must be >= 1")


@dataclass(frozen=True)
class WrittenDali:
    name: str
    path: Path
    config_path: Path


def graph_params(card: ModelCard) -> dict[str, Any]:
    """The card's settings the graph reads (plain values: they are written into ``dali.py``)."""
    pp: Preprocess = card.preprocess
    if pp.mode not in MODES:
        raise ConfigError(f"card {card.name!r}: preprocess mode {pp.mode!r} has no DALI pipeline "
                          f"(supported: {', '.join(MODES)})")
    return {"mode": pp.mode, "size": int(pp.size), "resize_to": int(pp.resize_to), "interpolation": pp.interpolation,
            "mean": [float(m) for m in pp.mean], "std": [float(s) for s in pp.std], "scale": float(pp.scale),
            "layout": pp.layout, "pad_value": float(pp.pad_value), "dtype": card.input.dtype}


def served_source(card: ModelCard, options: DaliOptions) -> str:
    """The ``dali.py`` of ``card``: the graph module's source, the card's settings, the served pipeline."""
    tail = _SERVED_TAIL.format(card=card.name, params=graph_params(card), batch=options.max_batch_size,
                               threads=options.num_threads, function=PIPELINE_FUNCTION)
    return GRAPH_SOURCE.read_text() + tail


def dali_pipeline(card: ModelCard, options: DaliOptions) -> Any:
    """The pipeline of ``card``'s preprocessing (not built), with the executor the backend uses.
    ``device_id`` is unset (a CPU-only pipeline here; the backend sets its instance's GPU)."""
    params = graph_params(card)
    load_module(dali)                                         # a missing DALI: one line, not a traceback
    pipe = dali.Pipeline(batch_size=options.max_batch_size, num_threads=options.num_threads, device_id=None,
                         prefetch_queue_depth=1, **LEGACY_EXECUTOR)
    with pipe:
        pipe.set_outputs(*dali_graph.graph(params, options.device))
    return pipe


def dali_model_config(card: ModelCard, name: str, max_batch_size: int) -> "model_config_pb2.ModelConfig":
    """``backend: "dali"``: image_bytes (UINT8 [-1]) -> the card's input + geometry, on the GPU."""
    pb = pb_module()
    cfg = pb.ModelConfig(name=name, backend="dali", max_batch_size=max_batch_size)
    cfg.input.append(pb.ModelInput(name=ENCODED_INPUT, data_type=data_type("UINT8"), dims=[-1]))
    cfg.output.append(pb.ModelOutput(name=card.input.name, data_type=data_type(card.input.dtype),
                                     dims=list(card.input.dims)))
    cfg.output.append(pb.ModelOutput(name=GEOMETRY_OUTPUT, data_type=data_type("FP64"), dims=[len(GEOMETRY_FIELDS)]))
    cfg.instance_group.append(pb.ModelInstanceGroup(count=1, kind=pb.ModelInstanceGroup.KIND_GPU))
    cfg.dynamic_batching.max_queue_delay_microseconds = 0
    return cfg


def write_dali_model(card: ModelCard, repo_dir: str | Path, model: str, max_batch_size: int) -> WrittenDali:
    """Write ``<model>_dali`` (the pipeline's ``1/dali.py`` and its config) into ``repo_dir``.
    Needs no DALI here: the server serialises the pipeline when it loads the model."""
    name = model + DALI_SUFFIX
    root = safe_child(repo_dir, name, "model name")
    source = served_source(card, DaliOptions(max_batch_size=max_batch_size))
    (root / "1").mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "1" / DALI_FILE, source)
    config_path = write_config_only(repo_dir, name, dali_model_config(card, name, max_batch_size))
    return WrittenDali(name, root, config_path)


def write_dali_chain(card: ModelCard, repo_dir: str | Path, model: str, *, post: PostprocessChain | None = None,
                     max_batch_size: int | None = None) -> PreprocessNames:
    """The gpu target's bytes-in ensemble: ``<model>_dali`` (:func:`write_dali_model`) and
    ``<model>_bytes`` (or ``<post ensemble>_bytes``) before ``model``, already in ``repo_dir``.
    Clients send each file as UINT8 ``[-1]`` (zero-padded to the longest in a batch)."""
    names = preprocess_names(card, repo_dir, model, post, DALI_CHAIN)
    mbs = served_max_batch(repo_dir, model) if max_batch_size is None else max_batch_size
    write_dali_model(card, repo_dir, model, mbs)
    write_config_only(repo_dir, names.ensemble, preprocess_ensemble_config(card, names, post, mbs, DALI_CHAIN.encoded))
    return names
