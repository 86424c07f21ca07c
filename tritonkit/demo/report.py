"""reports/demo/report.md: one page gathering what the demo measured.

It is assembled from the files the stages wrote (classification.json/.md, detection.json/.md,
perf/sweep.md and its plot, validation.json), so the page never shows a number that is not in
a results file beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tritonkit.report import fmt, markdown_table, write_text


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _section_file(path: Path, title: str) -> list[str]:
    if not path.is_file():
        return []
    body = path.read_text().strip().splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    return [f"## {title}", "", *body, ""]


def _accuracy_table(cls: dict | None, det: dict | None) -> list[str]:
    rows = []
    if cls:
        rows.append(["classification (demo_shapes)", "top1", fmt(cls.get("top1"), 4), fmt(cls.get("reference_top1"), 4),
                     fmt(cls.get("int8_top1"), 4), fmt(cls.get("fp32_model_mb"), 3), fmt(cls.get("int8_model_mb"), 3),
                     f"{cls.get('images', '-')} ({len(cls.get('errors', []))} errors)"])
    if det:
        rows.append(["detection (demo_shapes_det)", "mAP@0.5", fmt(det.get("map50"), 4),
                     fmt(det.get("reference_map50"), 4), fmt(det.get("int8_map50"), 4), fmt(det.get("fp32_model_mb"), 3), fmt(det.get("int8_model_mb"), 3),
                     f"{det.get('images', '-')} ({len(det.get('errors', []))} errors)"])
        rows.append(["detection (demo_shapes_det)", "mAP@[.5:.95]", fmt(det.get("map50_95"), 4), "-",
                     fmt(det.get("int8_map50_95"), 4), "", "", ""])
    if not rows:
        return []
    table = markdown_table(["model", "metric", "fp32 through Triton", "fp32 in-process ORT",
                            "int8 (QDQ) through Triton", "fp32 MB", "int8 MB", "images"], rows)
    return ["## Accuracy through the server", "",
            "Measured on the CPU target (bundled tritonserver, python backend running onnxruntime). "
            "fp16 needs a GPU (TensorRT) and is not measured here.", "", table, ""]


def _queue_policy_section(probe: dict | None) -> list[str]:
    if not probe:
        return []
    rows = [[name, probe.get("models", {}).get(name, ""), r["requests"], fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 1),
             fmt(r["max_ms"], 1), r["stalls"], r["errors"]] for name, r in probe.get("results", {}).items()]
    return ["## Queue policy and latency outliers", "",
            "The same classifier with and without a queue policy, " + probe.get("what", "") + ". Where the "
            "queue-policy model stalls, its timeouts reject requests even at concurrency 1; so the measured "
            "models carry no queue policy, and load shedding is validated on the guarded copy.", "",
            markdown_table(["model", "config", "requests", "p50 ms", "p99 ms", "max ms", "stalls", "errors"], rows), ""]


def _validation_section(val: dict | None) -> list[str]:
    if not val:
        return []
    rows = [[c.get("name"), c.get("model") or "(server)", "pass" if c.get("passed") else "FAIL", c.get("detail", "")]
            for c in val.get("checks", [])]
    verdict = "passed" if val.get("passed") else "FAILED"
    return ["## Deployment validation", "", f"Overall: **{verdict}** (details in validation.json).", "",
            markdown_table(["check", "model", "result", "detail"], rows), ""]


def _segmentation_section(seg: dict | None, out: Path) -> list[str]:
    """mIoU fp32 through Triton vs in-process vs int8, FlagPerf fields, then segmentation.md."""
    if not seg:
        return []
    row = [seg.get("model"), fmt(seg.get("miou"), 4), fmt(seg.get("reference_miou"), 4), fmt(seg.get("int8_miou"), 4),
           fmt(seg.get("pixel_accuracy"), 4), fmt(seg.get("p_infer_whole"), 1), fmt(seg.get("p_val_whole"), 1),
           f"{seg.get('images', '-')} ({len(seg.get('errors', []))} errors)"]
    mem = seg.get("mem")
    lines = ["## Segmentation (demo_seg)", "",
             "Generated shapes in VOC layout; masks scaled back to the original size with nearest neighbour, void "
             "ignored. Server memory: " + (f"{mem / 2**20:.0f} MiB ({seg.get('mem_source')})" if mem else
                                          str(seg.get("mem_source") or "-")) + ".", "",
             markdown_table(["model", "mIoU through Triton", "mIoU in-process ORT", "int8 mIoU", "pixel accuracy",
                             "p_infer_whole (img/s)", "p_val_whole (img/s)", "images"], [row]), ""]
    body = _section_file(out / "segmentation.md", "x")
    return lines + [line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in body[2:]]


def write_demo_report(out: Path, steps) -> Path:
    out = Path(out)
    cls, det = _load(out / "classification.json"), _load(out / "detection.json")
    lines = ["# tritonkit demo report", "",
             "Generated data, models trained here on the CPU, served by a real Triton server (the bundled "
             "tritonserver, CPU target). Every figure below comes from the JSON/CSV files in this folder.", ""]
    lines += _accuracy_table(cls, det)
    lines += _section_file(out / "classification.md", "Classification: run model vs run stream")
    lines += _section_file(out / "detection.md", "Detection: run model vs run stream")
    lines += _segmentation_section(_load(out / "segmentation.json"), out)
    lines += _section_file(out / "perf" / "sweep.md", "perf_analyzer sweep (demo_shapes)")
    if (out / "perf" / "latency_throughput.png").is_file():
        lines += ["![latency vs throughput](perf/latency_throughput.png)", ""]
    lines += _queue_policy_section(_load(out / "queue_policy.json"))
    lines += _validation_section(_load(out / "validation.json"))
    lines += ["## Steps", "", markdown_table(["step", "status", "seconds", "detail"],
                                             [[s.name, s.status, f"{s.seconds:.1f}", s.detail] for s in steps]), ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
