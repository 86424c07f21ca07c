"""Server-side argmax python backend (the segment task's backend.py and the files shipped beside it).

Triton's ``triton_python_backend_utils`` exists only inside the server's python stub, so the unit
tests run the backend in a clean subprocess (``python -I``, tritonkit made unimportable) against a
small stand-in of that module, and compare with the client-side argmax. The server test runs it
in the real bundled tritonserver.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.paths import PACKAGE
from support.backend_stub import PB_UTILS_STUB
from tritonkit.tasks.segment.math import argmax_mask
from tritonkit.cards import get_card
from tritonkit.model_repository.config import config_to_text
from tritonkit.tasks.segment.task import argmax_chain

from support.onnx_models import tiny_segmenter

BACKEND = PACKAGE / "tasks" / "segment" / "backend.py"
SHIPPED = argmax_chain(get_card("demo_seg")).support_files  # tk_spec.py, tk_segment.py


def _ship(folder: Path) -> None:
    """The backend and the files shipped beside it, as the repository writer writes them."""
    shutil.copy(BACKEND, folder / "model.py")
    for extra in SHIPPED:
        shutil.copy(extra.source, folder / extra.name)


RUNNER = '''
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
sys.modules["tritonkit"] = None  # any tritonkit import inside the backend fails here
import numpy as np
import triton_python_backend_utils as pb
import model

spec = json.load(open("spec.json"))
m = model.TritonPythonModel()
m.initialize({"model_config": json.dumps(spec["config"])})
data = np.load("inputs.npz")
requests = [pb.InferenceRequest([pb.Tensor(spec["input_name"], data[k])]) for k in sorted(data.files)]
requests.append(pb.InferenceRequest([pb.Tensor("unexpected", data[sorted(data.files)[0]])]))
out, errors = {}, []
for i, r in enumerate(m.execute(requests)):
    if r.error is not None:
        errors.append(r.error.message)
        continue
    (t,) = r.output_tensors
    out[f"{i:02d}"] = t.as_numpy()
    assert t.name() == spec["output_name"], t.name()
np.savez("outputs.npz", **out)
json.dump({"errors": errors, "tritonkit_loaded": any(k.startswith("tritonkit") and sys.modules[k] is not None
                                                       for k in sys.modules)}, open("result.json", "w"))
'''


def _run_backend(tmp_path: Path, config: dict, input_name: str, output_name: str,
                 arrays: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "triton_python_backend_utils.py").write_text(PB_UTILS_STUB)
    _ship(work)
    (work / "run.py").write_text(RUNNER)
    (work / "spec.json").write_text(json.dumps({"config": config, "input_name": input_name,
                                                 "output_name": output_name}))
    np.savez(work / "inputs.npz", **{f"{i:02d}": a for i, a in enumerate(arrays)})
    # -I: isolated (no PYTHONPATH, no user site); -S is not used, numpy comes from site-packages
    proc = subprocess.run([sys.executable, "-I", "run.py"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(work / "outputs.npz") as out:
        masks = [out[k] for k in sorted(out.files)]
    return masks, json.loads((work / "result.json").read_text())


def _config(max_batch_size: int = 8, **params) -> dict:
    return {"name": "seg_argmax", "backend": "python", "max_batch_size": max_batch_size,
            "input": [{"name": "out", "data_type": "TYPE_FP32", "dims": [5, -1, -1]}],
            "output": [{"name": "mask", "data_type": "TYPE_UINT8", "dims": [-1, -1]}],
            "parameters": {k: {"string_value": v} for k, v in params.items()}}


def test_backend_equals_client_argmax_per_request_size(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 5, 13, 21)).astype(np.float32),
              rng.standard_normal((3, 5, 40, 7)).astype(np.float32),
              np.round(rng.standard_normal((1, 5, 9, 9)), 0).astype(np.float16)]  # many ties
    masks, result = _run_backend(tmp_path, _config(), "out", "mask", arrays)
    assert not result["tritonkit_loaded"]
    assert len(masks) == 3
    for logits, mask in zip(arrays, masks):
        assert mask.dtype == np.uint8 and mask.shape == (logits.shape[0],) + logits.shape[2:]
        np.testing.assert_array_equal(mask, argmax_mask(logits))
    # the request without the logits gets its own error; the others were answered
    assert len(result["errors"]) == 1 and "input 'out' missing" in result["errors"][0]


def test_backend_names_from_parameters_and_unbatched_models(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((4, 6, 8)).astype(np.float32)]
    cfg = _config(max_batch_size=0, input_name="logits", output_name="classes")
    masks, result = _run_backend(tmp_path, cfg, "logits", "classes", arrays)
    assert masks[0].shape == (6, 8)
    np.testing.assert_array_equal(masks[0], argmax_mask(arrays[0]))


def test_backend_refuses_too_many_classes(tmp_path):
    masks, result = _run_backend(tmp_path, _config(), "out", "mask", [np.zeros((1, 256, 2, 2), np.float32)])
    assert masks == []
    assert len(result["errors"]) == 2 and "do not fit a uint8 mask" in result["errors"][0]


def test_backend_imports_no_tritonkit_module():
    tree = ast.parse(BACKEND.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    # the standard library, Triton's module and the files shipped beside it (tk_spec, tk_segment)
    assert imported <= {"json", "os", "sys", "numpy", "triton_python_backend_utils", *(
        f.name.removesuffix(".py") for f in SHIPPED)}, imported
    assert not any(name.startswith("tritonkit") for name in imported)


# -- the real server: segmenter -> argmax ensemble ---------------------------------------------------

def _repository(root: Path, num_classes: int) -> Path:
    """segmenter (the CPU target's onnxruntime python model) -> argmax_mask, and the ensemble of
    both, configs written through protobuf here (the repository chain writer is not under test)."""
    from tritonclient.grpc import model_config_pb2 as pb


    repo = root / "repo"
    fp32, u8 = pb.TYPE_FP32, pb.TYPE_UINT8
    models = {
        "seg": pb.ModelConfig(name="seg", backend="python", max_batch_size=4,
                              input=[pb.ModelInput(name="input", data_type=fp32, dims=[3, -1, -1])],
                              output=[pb.ModelOutput(name="out", data_type=fp32, dims=[num_classes, -1, -1])]),
        "seg_argmax": pb.ModelConfig(name="seg_argmax", backend="python", max_batch_size=4,
                                     input=[pb.ModelInput(name="logits", data_type=fp32, dims=[num_classes, -1, -1])],
                                     output=[pb.ModelOutput(name="mask", data_type=u8, dims=[-1, -1])]),
        "seg_mask": pb.ModelConfig(name="seg_mask", platform="ensemble", max_batch_size=4,
                                   input=[pb.ModelInput(name="input", data_type=fp32, dims=[3, -1, -1])],
                                   output=[pb.ModelOutput(name="mask", data_type=u8, dims=[-1, -1])]),
    }
    models["seg_argmax"].parameters["input_name"].string_value = "logits"
    steps = models["seg_mask"].ensemble_scheduling.step
    steps.append(pb.ModelEnsembling.Step(model_name="seg", model_version=-1, input_map={"input": "input"},
                                         output_map={"out": "raw_logits"}))
    steps.append(pb.ModelEnsembling.Step(model_name="seg_argmax", model_version=-1,
                                         input_map={"logits": "raw_logits"}, output_map={"mask": "mask"}))
    for name, cfg in models.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config_to_text(cfg))
    shutil.copy(PACKAGE / "model_repository" / "backends" / "ort_model.py", repo / "seg" / "1" / "model.py")
    _ship(repo / "seg_argmax" / "1")
    tiny_segmenter(repo / "seg" / "1" / "model.onnx", num_classes=num_classes)
    return repo


def test_served_argmax_ensemble_equals_client_argmax(tmp_path, start_server):
    import tritonclient.grpc as grpc

    num_classes = 5
    server = start_server(_repository(tmp_path, num_classes))
    client = grpc.InferenceServerClient(server.grpc_url)
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 37, 52), (1, 3, 64, 41)]:  # batch, height and width change per request
        x = rng.standard_normal(shape).astype(np.float32)

        def infer(model, output):
            t = grpc.InferInput("input", list(x.shape), "FP32")
            t.set_data_from_numpy(x)
            return client.infer(model, [t], outputs=[grpc.InferRequestedOutput(output)]).as_numpy(output)

        logits = infer("seg", "out")
        mask = infer("seg_mask", "mask")
        assert logits.shape == (shape[0], num_classes) + shape[2:]
        assert mask.dtype == np.uint8 and mask.shape == (shape[0],) + shape[2:]
        np.testing.assert_array_equal(mask, argmax_mask(logits))
        assert len(np.unique(mask)) > 1
