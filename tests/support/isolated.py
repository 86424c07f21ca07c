"""Run a python-backend model folder the way NGC's tritonserver image would: in a separate
interpreter started with ``-I -S`` whose ``sys.path`` holds only numpy's site-packages and a stub
of ``triton_python_backend_utils`` (the module the Triton python backend provides; it cannot run
here outside the server), and where ``import tritonkit`` is blocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from support.backend_stub import PB_UTILS_STUB
from tritonkit.model_repository.config import config_to_json, parse_config

RUNNER = '''
import importlib.abc, importlib.util, json, os, sys

BLOCKED = ["tritonkit", *filter(None, os.environ.get("TK_BLOCK", "").split(","))]

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is not installed in this interpreter")
        return None

sys.meta_path.insert(0, Block())
model_py, model_dir, config_file, requests_file, out_file = sys.argv[1:6]
import numpy as np
try:
    import tritonkit  # noqa: F401
    raise SystemExit("tritonkit importable: the isolation is broken")
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("model", model_py)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.TritonPythonModel()
model.initialize({"model_config": open(config_file).read(), "model_repository": model_dir,
                  "model_version": "1"})
data = np.load(requests_file)
n = int(data["n"])
requests = [{k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{i}/")} for i in range(n)]
responses = model.execute(requests)
arrays = {}
for i, r in enumerate(responses):
    if r.error is not None:
        raise SystemExit(f"request {i}: {r.error.msg}")
    for t in r.output_tensors:
        arrays[f"{i}/{t.name()}"] = t.as_numpy()
np.savez(out_file, **arrays)
print("tritonkit" in sys.modules)
'''


class IsolatedFailure(AssertionError):
    """The isolated interpreter failed (its stderr is the message)."""


def run_isolated(tmp_path: Path, model_dir: Path, requests: list[dict], *,
                 block: tuple[str, ...] = ()) -> list[dict]:
    """initialize() + execute() of ``model_dir``/1/model.py in a tritonkit-free interpreter (where
    the modules ``block`` names cannot be imported either); a failure raises ``IsolatedFailure``
    with the interpreter's stderr."""
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir(parents=True, exist_ok=True)
    (stub_dir / "triton_python_backend_utils.py").write_text(PB_UTILS_STUB)
    (tmp_path / "runner.py").write_text(RUNNER)
    config = config_to_json(parse_config((model_dir / "config.pbtxt").read_text()))
    (tmp_path / "config.json").write_text(json.dumps(config))
    flat = {f"{i}/{k}": v for i, r in enumerate(requests) for k, v in r.items()}
    np.savez(tmp_path / "requests.npz", n=len(requests), **flat)
    site = str(Path(np.__file__).parent.parent)  # numpy's (and onnxruntime's) site-packages, no .pth files
    code = f"import sys; sys.path[:0] = [{str(stub_dir)!r}, {site!r}]; " \
           f"sys.argv = ['runner'] + sys.argv[1:]; exec(open({str(tmp_path / 'runner.py')!r}).read())"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(model_dir / "1" / "model.py"), str(model_dir),
         str(tmp_path / "config.json"), str(tmp_path / "requests.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={"TK_BLOCK": ",".join(block)})
    if proc.returncode != 0:
        raise IsolatedFailure(proc.stderr[-2000:] + proc.stdout[-500:])
    assert proc.stdout.strip().splitlines()[-1] == "False"  # nothing imported tritonkit
    out = np.load(tmp_path / "out.npz")
    return [{k.split("/", 1)[1]: out[k] for k in out.files if k.startswith(f"{i}/")} for i in range(len(requests))]
