"""Facts about this host and its container images: GPUs (nvidia-smi), a Docker engine, an image's TensorRT.

GPU selection. NVML and ``nvidia-smi`` ignore ``CUDA_VISIBLE_DEVICES`` (a Triton maintainer says so in
triton-inference-server/model_analyzer#552), so a GPU is selected explicitly: queried with
``nvidia-smi -i N`` and given to a container with ``docker run --gpus device=N``. A build in this
process runs on CUDA's device 0, which is nvidia-smi's ``N`` only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID
CUDA_VISIBLE_DEVICES=N`` set before the process starts: :func:`build_device` compares the PCI bus
id nvidia-smi gives for ``N`` with the one the CUDA driver gives for device 0 (``cuDeviceGet`` +
``cuDeviceGetPCIBusId``, ``cuda.h``; the driver applies ``CUDA_VISIBLE_DEVICES``) and refuses a
mismatch, so a sidecar never names a GPU the plan was not built on.

Older drivers. ``--query-gpu=compute_cap`` is not a valid field on R470 drivers, which Triton 25.x
still allows on data-center GPUs (release notes, "Driver Requirements"). Then the name and PCI bus id
are queried and the compute capability is read from the CUDA driver (``cuDeviceGetByPCIBusId`` and
``cuDeviceGetAttribute`` with CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR = 75/76, ``cuda.h``).
That fallback needs ``libcuda.so.1``; it could not be executed here (no driver on this machine).
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from typing import Callable

from tritonkit.build_engines.releases import VERSION_RE
from tritonkit.build_engines.sidecar import GpuInfo
from tritonkit.errors import ToolMissingError, TritonkitError

CC_FIELD = "compute_cap"
QUERY_FIELDS = f"name,{CC_FIELD},pci.bus_id"
_CC_RE = re.compile(r"\d+\.\d+")
# nvidia-smi's "00000000:3B:00.0", the CUDA driver's "0000:3b:00.0": domain:bus:device.function in hex
_BUS_RE = re.compile(r"([0-9A-Fa-f]+):([0-9A-Fa-f]+):([0-9A-Fa-f]+)\.([0-9A-Fa-f]+)")
_CU_CC_MAJOR, _CU_CC_MINOR = 75, 76


def _run(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TritonkitError(f"{argv[0]} failed to run ({type(exc).__name__})") from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else "no output"


def _smi_argv(exe: str, fields: str, index: int | None) -> list[str]:
    argv = [exe, f"--query-gpu={fields}", "--format=csv,noheader"]
    return argv + ["-i", str(index)] if index is not None else argv


def _libcuda():
    """The CUDA driver library, initialised, or None (no driver here)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    return lib if lib.cuInit(0) == 0 else None


def cuda_compute_capability(pci_bus_id: str) -> str | None:
    """The compute capability of the GPU at ``pci_bus_id`` from the CUDA driver, or None."""
    lib = _libcuda()
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    if lib is None or lib.cuDeviceGetByPCIBusId(ctypes.byref(dev), pci_bus_id.encode()) != 0:
        return None
    if (lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_CC_MAJOR, dev) != 0
            or lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_CC_MINOR, dev) != 0):
        return None
    return f"{major.value}.{minor.value}"


def cuda_device_bus_id(ordinal: int = 0) -> str | None:
    """The PCI bus id of this process's CUDA device ``ordinal`` (``CUDA_VISIBLE_DEVICES`` applied), or None."""
    lib = _libcuda()
    dev, buf = ctypes.c_int(), ctypes.create_string_buffer(64)
    if lib is None or lib.cuDeviceGet(ctypes.byref(dev), int(ordinal)) != 0:
        return None
    if lib.cuDeviceGetPCIBusId(buf, len(buf), dev) != 0:
        return None
    return buf.value.decode() or None


def bus_key(bus_id: str | None) -> tuple[int, ...] | None:
    """``domain:bus:device.function`` as numbers, so nvidia-smi's and the driver's spellings compare."""
    m = _BUS_RE.fullmatch(str(bus_id or "").strip())
    return tuple(int(g, 16) for g in m.groups()) if m else None


def host_gpus(nvidia_smi: str = "nvidia-smi", *, index: int | None = None, timeout_s: float = 20.0,
              cc_fallback: Callable[[str], str | None] = cuda_compute_capability) -> list[GpuInfo]:
    """The GPUs ``nvidia-smi`` reports (only GPU ``index`` when given), with name and compute capability.

    ToolMissingError when ``nvidia-smi`` is absent; TritonkitError when it fails (no driver, no GPU,
    a bad index) or when neither it nor the CUDA driver gives a compute capability.
    """
    exe = shutil.which(nvidia_smi)
    if exe is None:
        raise ToolMissingError("nvidia-smi not found: this host has no NVIDIA driver "
                               "(no NVIDIA GPU to build or serve plans)")
    proc = _run(_smi_argv(exe, QUERY_FIELDS, index), timeout_s)
    if proc.returncode == 0:
        return parse_nvidia_smi(proc.stdout)
    if CC_FIELD not in (proc.stdout + proc.stderr):
        raise TritonkitError(f"nvidia-smi failed (exit {proc.returncode}): {_last_line(proc)}")
    # An old driver without the compute_cap field: name + PCI bus id, capability from the CUDA driver.
    proc = _run(_smi_argv(exe, "name,pci.bus_id", index), timeout_s)
    if proc.returncode != 0:
        raise TritonkitError(f"nvidia-smi failed (exit {proc.returncode}): {_last_line(proc)}")
    gpus = []
    for line in proc.stdout.strip().splitlines():
        name, _, bus = line.rpartition(",")
        cc = cc_fallback(bus.strip()) if bus.strip() else None
        if cc is None:
            raise TritonkitError(f"this driver's nvidia-smi has no {CC_FIELD} field and the CUDA driver did not give "
                                 f"the compute capability of {name.strip() or 'the GPU'} ({bus.strip()}); "
                                 "pass the build GPU explicitly")
        gpus.append(GpuInfo(name.strip(), cc, bus.strip()))
    if not gpus:
        raise TritonkitError("nvidia-smi reported no GPU")
    return gpus


def _smi_fields(line: str) -> tuple[str, str, str | None]:
    """``name, compute_cap[, pci.bus_id]`` (a GPU name may hold commas: split from the right)."""
    parts = [p.strip() for p in line.rsplit(",", 2)]
    if len(parts) == 3 and bus_key(parts[2]) is not None:
        return parts[0], parts[1], parts[2]
    name, _, cc = line.rpartition(",")
    return name.strip(), cc.strip(), None


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """``name, compute_cap, pci.bus_id`` lines (``--format=csv,noheader``; the bus id may be absent)
    -> GpuInfo list."""
    gpus = []
    for line in text.strip().splitlines():
        name, cc, bus = _smi_fields(line)
        if name and cc:
            gpus.append(GpuInfo(name, _cc(cc), bus))
    if not gpus:
        raise TritonkitError("nvidia-smi reported no GPU")
    return gpus


def _cc(text: str) -> str:
    if not _CC_RE.fullmatch(text):
        raise TritonkitError(f"nvidia-smi reported compute capability {text!r}, expected a value like 8.6")
    return text


def one_gpu(gpus: list[GpuInfo], index: int | None = None) -> GpuInfo:
    """The GPU a build runs on: the only kind present, or an error saying how to pick one."""
    if len({(g.name, g.compute_capability) for g in gpus}) > 1:
        raise TritonkitError(
            f"this host has different GPUs ({', '.join(g.name for g in gpus)}); pick one with gpu_index (--gpu N): "
            "it is queried with `nvidia-smi -i N` and given to containers with `docker run --gpus device=N`; "
            "a build in this process also needs CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=N set before it "
            "starts (NVML and nvidia-smi ignore CUDA_VISIBLE_DEVICES)")
    return gpus[0]


def build_gpu(index: int | None = None, nvidia_smi: str = "nvidia-smi") -> GpuInfo:
    """Query the build GPU (before any build, so a failed query never costs a finished plan)."""
    return one_gpu(host_gpus(nvidia_smi, index=index), index)


def build_device(gpu: GpuInfo, index: int | None = None,
                 device_bus_id: Callable[[int], str | None] | None = None) -> GpuInfo:
    """``gpu`` with the PCI bus id of the device a build in this process runs on (CUDA device 0).

    With ``index`` (``--gpu N``) that device must be nvidia-smi's GPU ``N``: a one-line error otherwise.
    Without it every GPU of the host is of ``gpu``'s kind (:func:`one_gpu`) and device 0's bus id is
    recorded. Where the CUDA driver cannot be asked, ``gpu`` is returned as queried.
    """
    actual = (device_bus_id or cuda_device_bus_id)(0)
    if actual is None:
        return gpu
    if index is not None and gpu.pci_bus_id and bus_key(actual) != bus_key(gpu.pci_bus_id):
        raise TritonkitError(
            f"--gpu {index} is {gpu.name} at PCI {gpu.pci_bus_id}, but a build in this process runs on CUDA device 0 "
            f"at PCI {actual}; start tritonkit with CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES={index} "
            "(or build in a container with --gpus device=N)")
    return GpuInfo(gpu.name, gpu.compute_capability, actual)


def docker_gpus_arg(index: int | None) -> str:
    """``docker run --gpus`` value: one GPU by nvidia-smi index, or all."""
    return "all" if index is None else f"device={int(index)}"


def docker_engine_available(docker: str = "docker", timeout_s: float = 15.0) -> bool:
    """True when a Docker engine answers (the client alone is not enough)."""
    if shutil.which(docker) is None:
        return False
    try:
        done = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def ensure_image(image: str, docker: str = "docker", runner: Callable[..., subprocess.CompletedProcess] = subprocess.run
                 ) -> bool:
    """Make ``image`` present here before anything with a deadline runs it: ``docker image inspect`` (local),
    else ``docker pull`` with no deadline (a first pull of an NGC image is 10-15 GB; the deadlines of the
    commands that follow are for their own work). True when it pulled; one-line error when the pull fails."""
    try:
        if runner([docker, "image", "inspect", image], capture_output=True, text=True, timeout=60,
                  check=False).returncode == 0:
            return False
        proc = runner([docker, "pull", image], capture_output=True, text=True, timeout=None, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TritonkitError(f"docker could not look up or pull {image} ({type(exc).__name__})") from None
    if proc.returncode != 0:
        raise TritonkitError(f"docker pull {image} failed (exit {proc.returncode}): {_last_line(proc)}")
    return True


def probe_container_tensorrt(image: str, docker: str = "docker", timeout_s: float = 300.0) -> str:
    """The TensorRT version inside a container image, read from its ``libnvinfer<major>`` package.

    The glob covers libnvinfer10 and a TensorRT 11 image's package (its name is not confirmed here).
    The image is pulled first, without a deadline (:func:`ensure_image`); ``timeout_s`` bounds the
    ``docker run`` alone. Needs a Docker engine; raises ToolMissingError without one.
    """
    exe = shutil.which(docker)
    if exe is None:
        raise ToolMissingError(f"{docker} not found: cannot read the TensorRT version of {image}")
    ensure_image(image, exe)
    proc = _run([exe, "run", "--rm", "--entrypoint", "dpkg-query", image, "-W", "-f=${Version}\\n",
                 "libnvinfer[0-9]*"], timeout_s)
    for line in (proc.stdout or "").splitlines():
        version = line.strip().split("-")[0].split("+")[0]
        if proc.returncode == 0 and VERSION_RE.fullmatch(version):
            return VERSION_RE.fullmatch(version).group(1)
    raise TritonkitError(f"could not read the TensorRT version of {image}: {_last_line(proc)}")


__all__ = ["host_gpus", "parse_nvidia_smi", "one_gpu", "build_gpu", "build_device", "bus_key", "cuda_device_bus_id",
           "cuda_compute_capability", "docker_gpus_arg",
           "docker_engine_available", "ensure_image", "probe_container_tensorrt"]
