"""The GPU check (scripts/gpu_check.py, tritonkit.gpu_check) as far as a machine without a GPU allows.

* The script runs in a fresh interpreter whose imports of tritonclient, pycocotools, simplejpeg,
  tensorrt and nvidia.dali fail as for packages not installed (``None`` in ``sys.modules``: the GPU
  host it is written for has none of them)
  and whose CUDA is hidden (``CUDA_VISIBLE_DEVICES=""``): it must write the report with its one
  GPU-free step run and every GPU step skipped, and exit 0.
* The GPU steps' code runs here on stand-ins: ``gpu_queries`` against a fake nvidia-smi (a script),
  a fake ``pynvml`` module, the CUDA-driver probes replaced by functions and torch.cuda's queries
  patched (no GPU, no NVML, no libcuda here); ``nvjpeg_decode`` and ``fp16_agreement`` with
  ``device="cpu"`` (torchvision's libjpeg decode, torch's CPU half kernels), which runs the same
  comparisons but measures nothing about a GPU. The GPU numbers come only from running the script
  on one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from support.paths import ROOT
from tritonkit import gpu_check
from tritonkit.cards import get_card

BLOCKED = ("tritonclient", "pycocotools", "simplejpeg", "tensorrt", "nvidia.dali")
# A None entry in sys.modules makes `import x` raise ModuleNotFoundError and importlib.util.find_spec("x")
# return None, as for a package that is not installed (libraries probe with find_spec, e.g. torch._dynamo).
BLOCKING_RUN = """
import runpy, sys
for name in {blocked!r}:
    sys.modules[name] = None
sys.argv = [{script!r}, *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_script_without_gpu_and_without_the_missing_packages_writes_the_report(tmp_path):
    script = str(ROOT / "scripts" / "gpu_check.py")
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", BLOCKING_RUN.format(blocked=BLOCKED, script=script),
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    steps = {(s["id"], s["subject"]): s for s in report["steps"]}
    export = steps[("export_build_fp16", "demo_shapes")]
    assert export["status"] == "ok", export
    built = report["results"]["export_build_fp16[demo_shapes]"]
    assert built["one_line"] and built["command_in_error"] and "nvcr.io/nvidia/tensorrt:" in built["docker_command"]
    gpu_steps = [s for key, s in steps.items() if key[0] != "export_build_fp16"]
    assert {(s["id"], s["subject"]) for s in gpu_steps} == {
        ("gpu_queries", None), ("nvjpeg_decode", None), *(("fp16_agreement", c) for c in gpu_check.CHECK_CARDS)}
    assert all(s["status"] == "skipped" and s["detail"] == gpu_check.NO_CUDA for s in gpu_steps)
    assert set(report["proxies"]) == {"nvjpeg_decode", "fp16_agreement"}
    assert [u.split(":")[0] for u in report["unverified"]] == ["DALI", "TensorRT", "the container"]
    assert report["host"]["cuda"] is False and report["failed"] is False
    assert "no CUDA device" in proc.stdout and f"report: {out}" in proc.stdout


def test_the_blocking_hook_does_block(tmp_path):
    """Guards the test above: a script importing a blocked package fails under the same hook."""
    probe = tmp_path / "probe.py"
    probe.write_text("import tritonclient.grpc\n")
    proc = subprocess.run([sys.executable, "-c", BLOCKING_RUN.format(blocked=BLOCKED, script=str(probe))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "ModuleNotFoundError: No module named 'tritonclient.grpc'" in proc.stderr


# ----------------------------------------------------------------- the GPU steps on stand-ins

def _fake_pynvml(gpus: list[dict]) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.nvmlInit = module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: len(gpus)
    module.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    module.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=h["bus"].encode())
    module.nvmlDeviceGetCudaComputeCapability = lambda h: tuple(int(x) for x in h["cc"].split("."))
    module.nvmlDeviceGetName = lambda h: h["name"]
    module.nvmlDeviceGetUUID = lambda h: "GPU-" + h["uuid"]
    return module


GPUS = [{"name": "NVIDIA H100 80GB HBM3", "cc": "9.0", "bus": "00000000:17:00.0", "uuid": "aaaa-0001"},
        {"name": "NVIDIA L4", "cc": "8.9", "bus": "00000000:3B:00.0", "uuid": "bbbb-0002"}]


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """Two GPUs as nvidia-smi, NVML, the CUDA driver and torch report them; CUDA ordinal 0 is the L4."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f"echo '{g['name']}, {g['cc']}, {g['bus']}'\n" for g in GPUS))
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(GPUS))
    order = [GPUS[1], GPUS[0]]                                   # CUDA's ordinals: fastest first, say
    driver = {"cc": {g["bus"].lower(): g["cc"] for g in GPUS}, "bus": [g["bus"].lower()[4:] for g in order]}
    monkeypatch.setattr(gpu_check, "cuda_compute_capability", lambda bus: driver["cc"][bus.lower()])
    monkeypatch.setattr(gpu_check, "cuda_device_bus_id", lambda i: driver["bus"][i])
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(name=order[i]["name"], uuid=order[i]["uuid"]))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: tuple(int(x) for x in order[i]["cc"].split(".")))
    return driver


def test_gpu_queries_agree_across_nvidia_smi_libcuda_nvml_and_torch(fake_gpus):
    outcome = gpu_check.gpu_queries()
    assert outcome.ok, outcome.summary
    assert [(r["bus"], r["nvidia_smi"], r["libcuda"], r["nvml"]) for r in outcome.data["gpus"]] == [
        ("00000000:17:00.0", "9.0", "9.0", "9.0"), ("00000000:3B:00.0", "8.9", "8.9", "8.9")]
    assert [(d["ordinal"], d["cc"], d["nvml_bus"]) for d in outcome.data["cuda_devices"]] == [
        (0, "8.9", "00000000:3B:00.0"), (1, "9.0", "00000000:17:00.0")]


def test_gpu_queries_catch_a_wrong_driver_answer(fake_gpus, monkeypatch):
    """The driver's bus id for CUDA device 0 (what build --gpu N checks) must be the GPU torch calls 0."""
    monkeypatch.setattr(gpu_check, "cuda_device_bus_id", lambda i: ["0000:17:00.0", "0000:17:00.0"][i])
    outcome = gpu_check.gpu_queries()
    assert not outcome.ok and "CUDA device 0: torch 8.9" in outcome.summary
    fake_gpus["cc"]["00000000:3b:00.0"] = "8.6"
    assert "libcuda 8.6" in gpu_check.gpu_queries().summary


def test_jpeg_comparison_on_the_cpu_decoder(monkeypatch):
    """torchvision's CPU decode (libjpeg-turbo, as Pillow's) through the nvJPEG step's comparison; a
    client decode 4 grey levels brighter is caught."""
    from PIL import Image

    jpegs = gpu_check.sample_jpegs()
    assert {name.rsplit("_", 1)[1] for name in jpegs} == {"420", "422", "444", "grey"}
    outcome = gpu_check.nvjpeg_decode(jpegs, device="cpu")
    assert outcome.ok and set(outcome.data["images"]) == set(jpegs)
    assert all(v["mean"] <= 1.0 for v in outcome.data["images"].values()), outcome.data["images"]
    real = gpu_check.decode_image

    def brighter(data):
        decoded = real(data)
        img = np.clip(np.asarray(decoded.pil).astype(np.int16) + 4, 0, 255).astype(np.uint8)
        return types.SimpleNamespace(pil=Image.fromarray(img))

    monkeypatch.setattr(gpu_check, "decode_image", brighter)
    shifted = gpu_check.nvjpeg_decode({k: jpegs[k] for k in ("photo_333x500_444", "photo_333x500_420")},
                                      device="cpu")
    assert not shifted.ok and "photo_333x500_444: max 4 grey levels" in shifted.summary
    assert "photo_333x500_420: mean 3.99" in shifted.summary                 # (clipped at 255)


@pytest.mark.parametrize("name", gpu_check.CHECK_CARDS)
def test_fp16_comparison_on_torch_cpu_kernels(name):
    card = get_card(name)
    outcome = gpu_check.fp16_agreement(card, None, n=4, seed=0, device="cpu")
    metrics = outcome.data["metrics"]
    assert outcome.ok and outcome.data["limits"] is None and "random" in outcome.summary   # random: not judged
    expected = {"classify": {"top1_agreement", "max_logit_diff"}, "detect": {"max_box_diff_px", "max_score_diff"},
                "segment": {"pixel_agreement", "max_logit_diff"}}[card.task]
    assert set(metrics) == expected and all(np.isfinite(v) for v in metrics.values())


def test_fp16_limits_judge_trained_weights(tmp_path):
    """Trained weights are judged: the demo_shapes weights found in a cache folder, and a too-strict
    limit makes the step fail."""
    import torch

    card = get_card("demo_shapes")
    entry = tmp_path / "cache" / "abc123"
    entry.mkdir(parents=True)
    torch.save(gpu_check.build_model(card).module.state_dict(), entry / "weights.pth")
    (entry / "train.json").write_text(json.dumps({"card": "demo_shapes"}))
    weights = gpu_check.trained_weights(tmp_path / "cache", card)
    assert weights == entry / "weights.pth"
    assert gpu_check.trained_weights(tmp_path / "cache", get_card("demo_seg")) is None
    judged = gpu_check.fp16_agreement(card, weights, n=4, seed=0, device="cpu")
    assert judged.data["limits"] == gpu_check.FP16_LIMITS and "trained weights" in judged.summary
    strict = dict(gpu_check.FP16_LIMITS, top1_agreement=1.01)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpu_check, "FP16_LIMITS", strict)
        assert not gpu_check.fp16_agreement(card, weights, n=4, seed=0, device="cpu").ok
