"""Triton's Prometheus ``/metrics`` text, parsed into samples (no regex over whole lines of
label values: labels are split on the text exposition format's own rules).

The counters used by validation, as Triton 2.51 exposes them (checked against a running
server)::

    nv_inference_request_success{model, version}
    nv_inference_request_failure{model, reason=OTHER|BACKEND|CANCELED|REJECTED, version}
    nv_inference_pending_request_count{model, version}   (gauge)

Older servers have ``nv_inference_request_failure`` without the ``reason`` label; callers
fall back to the unlabelled total.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Mapping

from tritonkit.errors import ServerError

REQUEST_FAILURE = "nv_inference_request_failure"
REQUEST_SUCCESS = "nv_inference_request_success"
PENDING = "nv_inference_pending_request_count"


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",").strip()
        if text[eq + 1] != '"':
            raise ValueError(f"label {key!r} value is not quoted")
        j = eq + 2
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
                value.append({"n": "\n"}.get(text[j], text[j]))
            else:
                value.append(text[j])
            j += 1
        labels[key] = "".join(value)
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return labels


def parse_metrics(text: str) -> list[Sample]:
    """Every sample line of a Prometheus text exposition (comments skipped)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if "{" in line:
                name, rest = line.split("{", 1)
                label_text, value_text = rest.rsplit("}", 1)
                labels = _parse_labels(label_text)
            else:
                name, value_text = line.split(None, 1)
                labels = {}
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue  # a line this parser does not understand is not a metric we use
        samples.append(Sample(name.strip(), labels, value))
    return samples


def fetch_metrics(url: str, timeout_s: float = 5.0) -> list[Sample]:
    """Scrape ``url`` (``http://host:8002/metrics``); ServerError when unreachable."""
    full = url if "://" in url else f"http://{url}"
    if not full.rstrip("/").endswith("/metrics"):
        full = full.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(full, timeout=timeout_s) as r:
            return parse_metrics(r.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"metrics endpoint {full} unreachable ({exc})") from None


def total(samples: list[Sample], name: str, **labels: str) -> float | None:
    """Sum of ``name`` over samples whose labels include ``labels``; None if no sample matched."""
    values = [s.value for s in samples
              if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(values) if values else None


def rejected_count(samples: list[Sample], model: str) -> tuple[float | None, str]:
    """Rejected requests of ``model`` and which series counted them.

    Triton >= 2.49 labels failures with ``reason``; then only ``REJECTED`` counts. Without the
    label the total failure counter is the best available figure.
    """
    labelled = [s for s in samples if s.name == REQUEST_FAILURE and s.labels.get("model") == model]
    if any("reason" in s.labels for s in labelled):
        series = f'{REQUEST_FAILURE}{{reason="REJECTED"}}'
        return total(samples, REQUEST_FAILURE, model=model, reason="REJECTED"), series
    return total(samples, REQUEST_FAILURE, model=model), REQUEST_FAILURE
