"""NGC ``tritonserver:<release>-py3`` releases: which TensorRT, CUDA and minimum GPU each one ships.

Data only, with the source of every value. A value read in NVIDIA's own documentation is
*confirmed*; a value that is only consistent with other documents is *unconfirmed* and every
message that uses it says so (and how to pass the real one: ``--container-trt-version``, or let
``gpu-smoke`` read it from the image).

Sources read for this table:

* Triton release notes ``rel-YY-MM`` ("Driver Requirements": the CUDA build; "GPU Requirements":
  compute capability 7.5 and later for every 25.xx and 26.xx release read). From 22.xx on they no
  longer list the TensorRT version; they point at the Deep Learning Frameworks Support Matrix.
* triton-inference-server/server ``docs/introduction/compatibility.md`` (main, 2026): TensorRT per
  release for the ``-trtllm-python-py3`` images only. Those follow TensorRT-LLM and lag the ``-py3``
  image (25.10-trtllm: 10.11.0.33), so they are a cross-check, never a ``-py3`` value.
* triton-inference-server/server branch ``r26.06``: commits "prepare server for 26.06 (... TRT 11
  QA compat ...)" (#8828) and "TRT 11 strongly-typed cast" (#8836). 26.05 has none. With TensorRT
  11.0 GA on 2026-06-02 (NVIDIA/TensorRT ``CHANGELOG.md``), 26.06 is the first release on
  TensorRT 11; its exact 11.x version is not in anything read, so it is unconfirmed (``None``).
* Same-month tritonserver and tensorrt images have disagreed before (23.05: 8.6.1.2 vs 8.6.1.6,
  triton-inference-server/server#5975): checks compare the plan's recorded TensorRT version,
  never the image tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tritonkit.errors import TritonkitError

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:{release}-py3"
TENSORRT_IMAGE = "nvcr.io/nvidia/tensorrt:{release}-py3"
# NVIDIA's August 2025 Triton security bulletin (CVE-2025-23310/23311/23319/23320/23334): fixed in 25.07.
MIN_PATCHED_RELEASE = "25.07"
DEFAULT_RELEASE = "25.10"
FIRST_TENSORRT_11_RELEASE = "26.06"

_RELEASE_RE = re.compile(r"^\d{2}\.\d{2}$")
# 10.13.3.9, 10.13.3 and pip wheel versions such as 10.14.1.48.post1
VERSION_RE = re.compile(r"^(\d+\.\d+\.\d+(?:\.\d+)?)(?:\.post\d+)?$")
_VERSION_TOKEN = re.compile(r"(\d+\.\d+\.\d+(?:\.\d+)?)")


class CompatError(TritonkitError):
    """A container release, TensorRT version or plan that will not work in the target container."""


@dataclass(frozen=True, kw_only=True)
class ReleaseInfo:
    """One NGC ``tritonserver:<release>-py3`` image.

    ``tensorrt`` is ``None`` where no document read names the exact version; ``confirmed`` names the
    fields read in NVIDIA's documentation (the others are consistent with it, not read in it).
    """

    release: str
    tensorrt_major: int
    tensorrt: str | None = None
    cuda: str | None = None
    min_compute_capability: str = "7.5"
    confirmed: frozenset[str] = frozenset()

    def is_confirmed(self, field: str) -> bool:
        return field in self.confirmed

    def to_dict(self) -> dict:
        return {"release": self.release, "tensorrt_major": self.tensorrt_major, "tensorrt": self.tensorrt,
                "cuda": self.cuda, "min_compute_capability": self.min_compute_capability,
                "confirmed": sorted(self.confirmed)}


_CC = frozenset({"min_compute_capability"})
_CUDA_CC = frozenset({"cuda", "min_compute_capability"})
RELEASES: dict[str, ReleaseInfo] = {r.release: r for r in (
    # rel-25-01: CUDA 12.8.0.038, cc 7.5. TensorRT 10.8.0.43 as issue 11 read it in NVIDIA's 25.01
    # release notes; the 25.01-trtllm row of compatibility.md has the same version.
    ReleaseInfo(release="25.01", tensorrt_major=10, tensorrt="10.8.0.43", cuda="12.8.0.038",
                confirmed=frozenset({"tensorrt", "cuda", "min_compute_capability"})),
    # rel-25-03: CUDA 12.8.1.012, cc 7.5. TensorRT: consistent with the 25.03-trtllm row (10.9.0.34).
    ReleaseInfo(release="25.03", tensorrt_major=10, tensorrt="10.9.0.34", cuda="12.8.1.012", confirmed=_CUDA_CC),
    # rel-25-04: CUDA 12.9.0, cc 7.5. TensorRT not read.
    ReleaseInfo(release="25.04", tensorrt_major=10, cuda="12.9.0", confirmed=_CUDA_CC),
    # rel-25-06: CUDA 12.9.1.010, cc 7.5. TensorRT 10.11.0.33: consistent with compatibility.md
    # (10.11.0.33 ships with CUDA 12.9.1.010 in the 25.09/25.10-trtllm rows), not read for -py3.
    ReleaseInfo(release="25.06", tensorrt_major=10, tensorrt="10.11.0.33", cuda="12.9.1.010", confirmed=_CUDA_CC),
    # rel-25-08: CUDA 13.0.0.044, cc 7.5. TensorRT not read.
    ReleaseInfo(release="25.08", tensorrt_major=10, cuda="13.0.0.044", confirmed=_CUDA_CC),
    # rel-25-10: CUDA 13.0.2.006, cc 7.5. TensorRT 10.13.3.9: consistent with compatibility.md
    # (10.13.3.9 with CUDA 13.0.2.006 in the 25.11-26.02 trtllm rows), not read for -py3.
    ReleaseInfo(release="25.10", tensorrt_major=10, tensorrt="10.13.3.9", cuda="13.0.2.006", confirmed=_CUDA_CC),
    # 25.12: CUDA 13.1.0.036 (25.12-vllm row of compatibility.md), cc 7.5 as issue 11 read it.
    # TensorRT 10.14.1.48: consistent with compatibility.md (with CUDA 13.1.0.036 in the 26.03+ trtllm rows).
    ReleaseInfo(release="25.12", tensorrt_major=10, tensorrt="10.14.1.48", cuda="13.1.0.036", confirmed=_CUDA_CC),
    # rel-26-02: CUDA 13.1.1, cc 7.5. TensorRT 10 (11.0 came out in June 2026); exact version not read.
    ReleaseInfo(release="26.02", tensorrt_major=10, cuda="13.1.1", confirmed=_CUDA_CC),
    # rel-26-04: CUDA 13.2.1, cc 7.5. TensorRT 10 (before 11.0 GA); exact version not read.
    ReleaseInfo(release="26.04", tensorrt_major=10, cuda="13.2.1", confirmed=_CUDA_CC),
    # rel-26-06: CUDA 13.3.0 (its "GPU Requirements" paragraph says 26.05, cc 7.5). TensorRT 11 from the
    # r26.06 branch commits (see the module docstring); exact version not read.
    ReleaseInfo(release="26.06", tensorrt_major=11, cuda="13.3.0", confirmed=_CUDA_CC),
    # rel-26-07: CUDA 13.3.1, cc 7.5. TensorRT 11 (after 26.06); exact version not read.
    ReleaseInfo(release="26.07", tensorrt_major=11, cuda="13.3.1", confirmed=_CUDA_CC),
    # rel-26-08: CUDA 13.4.1, cc 7.5.
    ReleaseInfo(release="26.08", tensorrt_major=11, cuda="13.4.1", confirmed=_CUDA_CC),
    # rel-26-09: CUDA 13.4.1, cc 7.5.
    ReleaseInfo(release="26.09", tensorrt_major=11, cuda="13.4.1", confirmed=_CUDA_CC),
    # rel-26-10: CUDA 13.4.3.001, cc 7.5. The newest release notes read (2026-12-01).
    ReleaseInfo(release="26.10", tensorrt_major=11, cuda="13.4.3.001", confirmed=_CUDA_CC),
)}
# Releases between the rows above (25.02, 25.05, 25.07, 25.09, 25.11, 26.01, 26.03, 26.05) were not read:
# they take --container-trt-version, like any release newer than the table.
del _CC, _CUDA_CC


@dataclass(frozen=True)
class ContainerTensorRT:
    """The TensorRT version of a serving container and where it came from."""

    version: str
    source: str            # "override", "image" or "table"
    confirmed: bool

    @property
    def major(self) -> int:
        return version_tuple(self.version)[0]

    def to_dict(self) -> dict:
        return {"version": self.version, "source": self.source, "confirmed": self.confirmed}

    def describe(self) -> str:
        if self.source == "table" and not self.confirmed:
            return f"TensorRT {self.version} (unconfirmed: tritonkit's table, not read in NVIDIA's release notes)"
        return f"TensorRT {self.version}"


def parse_release(release: str) -> str:
    release = str(release).strip()
    if not _RELEASE_RE.match(release):
        raise CompatError(f"container release {release!r} must look like YY.MM (e.g. {DEFAULT_RELEASE})")
    return release


def is_patched(release: str) -> bool:
    return parse_release(release) >= MIN_PATCHED_RELEASE


def parse_tensorrt_version(text: str) -> str:
    """``10.13.3.9`` / ``10.14.1.48.post1`` -> the numeric part; anything else is an error."""
    m = VERSION_RE.fullmatch(str(text).strip())
    if not m:
        raise CompatError(f"container TensorRT version {text!r} must look like 10.13.3.9")
    return m.group(1)


def version_tuple(version: str) -> tuple[int, ...]:
    m = _VERSION_TOKEN.search(str(version))
    if not m:
        raise CompatError(f"{version!r} is not a TensorRT version")
    return tuple(int(x) for x in m.group(1).split("."))


def tensorrt_major(version: str) -> int:
    """The major of a ``tensorrt.__version__``-like string (``"11.4.0.7"`` -> 11)."""
    return version_tuple(version)[0]


def same_version(a: str, b: str) -> bool:
    """Equal on every component both sides record (a 3-part version matches any build of it)."""
    ta, tb = version_tuple(a), version_tuple(b)
    n = min(len(ta), len(tb))
    return ta[:n] == tb[:n]


def _probe_hint(release: str) -> str:
    return (f"read it with `docker run --rm --entrypoint dpkg-query {TRITON_IMAGE.format(release=release)} "
            f"-W 'libnvinfer[0-9]*'`")


def container_tensorrt(release: str, override: str | None = None) -> ContainerTensorRT:
    """TensorRT of ``tritonserver:<release>-py3``: ``override`` if given, else the table."""
    release = parse_release(release)
    if override:
        return ContainerTensorRT(parse_tensorrt_version(override), "override", True)
    info = RELEASES.get(release)
    if info is None:
        raise CompatError(
            f"container release {release} is not in tritonkit's TensorRT table (known: {', '.join(sorted(RELEASES))}); "
            f"pass its TensorRT version as container_trt_version (--container-trt-version), {_probe_hint(release)}")
    if info.tensorrt is None:
        raise CompatError(
            f"tritonserver {release} ships TensorRT {info.tensorrt_major}.x but its exact version is unconfirmed in "
            f"tritonkit's table; pass it as container_trt_version (--container-trt-version), {_probe_hint(release)}")
    return ContainerTensorRT(info.tensorrt, "table", info.is_confirmed("tensorrt"))


def container_tensorrt_major(release: str, override: str | None = None) -> int:
    """The TensorRT major of a release: known for every row, even where the exact version is not."""
    if override:
        return tensorrt_major(parse_tensorrt_version(override))
    info = RELEASES.get(parse_release(release))
    if info is None:
        return container_tensorrt(release).major          # raises the one-line error
    return info.tensorrt_major


def releases_with_tensorrt(version: str) -> list[str]:
    return sorted(r.release for r in RELEASES.values() if r.tensorrt and same_version(r.tensorrt, version))


__all__ = [
    "RELEASES", "ReleaseInfo", "CompatError", "ContainerTensorRT", "DEFAULT_RELEASE", "MIN_PATCHED_RELEASE",
    "FIRST_TENSORRT_11_RELEASE", "TRITON_IMAGE", "TENSORRT_IMAGE", "parse_release", "is_patched",
    "parse_tensorrt_version", "version_tuple", "tensorrt_major", "same_version", "container_tensorrt",
    "container_tensorrt_major", "releases_with_tensorrt",
]
