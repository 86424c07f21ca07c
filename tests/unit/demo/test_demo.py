"""The embedded demo: generated shapes sets, grid target assignment, the step log, the report,
and (slow) CPU training of the classifier with its cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritonkit.demo import shapes
from tritonkit.demo.shapes import (
    ClassificationSetSpec,
    DetectionSetSpec,
    classification_classes,
    detection_classes,
    ensure_classification_data,
    ensure_detection_data,
    read_manifest,
    shape_mask,
    shape_polygons,
    tree_digest,
)
from tritonkit.errors import DatasetError, TritonkitError
from support.paths import ROOT

REPO = ROOT

# Tiny sets: 8 classes x (1 train + 1 val) images of 16-24 px; 2 + 3 detection images.
TINY_CLS = ClassificationSetSpec(train_per_class=1, val_per_class=1, min_side=16, max_side=24)
TINY_DET = DetectionSetSpec(train_images=2, val_images=3, min_side=64, max_side=96, max_objects=4)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _stats(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _decode_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path}: not a decodable image"
    return img[..., ::-1]


# -- classification set ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cls_set(tmp_path_factory) -> Path:
    return ensure_classification_data(tmp_path_factory.mktemp("cls") / "shapes", seed=3, spec=TINY_CLS,
                                      progress=False)


def test_classification_layout_and_manifest(cls_set):
    classes = [line.strip() for line in (REPO / "tritonkit/data/demo_shapes.txt").read_text().splitlines()
               if line.strip()]
    assert classification_classes() == classes
    assert sorted(p.name for p in cls_set.iterdir() if p.is_dir()) == ["train", "val"]
    per_split = {"train": TINY_CLS.train_per_class, "val": TINY_CLS.val_per_class}
    listed = []
    for split, count in per_split.items():
        assert sorted(p.name for p in (cls_set / split).iterdir()) == sorted(classes)
        for name in classes:
            images = sorted((cls_set / split / name).glob("*.JPEG"))
            assert len(images) == count
            for f in images:
                img = _decode_rgb(f)
                h, w = img.shape[:2]
                assert TINY_CLS.min_side <= min(h, w) and max(h, w) <= TINY_CLS.max_side
                assert h != w and max(h, w) / min(h, w) <= TINY_CLS.max_aspect + 1e-9
                listed.append(f.relative_to(cls_set).as_posix())

    m = read_manifest(cls_set)
    assert m is not None
    assert m["kind"] == shapes.CLASSIFICATION_KIND
    assert m["seed"] == 3 and m["classes"] == classes
    assert m["key"] == shapes.spec_key(shapes.CLASSIFICATION_KIND, 3, TINY_CLS)
    assert sorted(m["files"]) == sorted(listed)
    assert m["data_sha256"] == tree_digest(cls_set, m["files"])
    # no temporary sibling is left behind
    assert [p.name for p in cls_set.parent.iterdir()] == [cls_set.name]


def test_classification_deterministic_per_seed(tmp_path, cls_set):
    same = ensure_classification_data(tmp_path / "same", seed=3, spec=TINY_CLS, progress=False)
    other = ensure_classification_data(tmp_path / "other", seed=4, spec=TINY_CLS, progress=False)
    a, b, c = _files(cls_set), _files(same), _files(other)
    assert a == b
    assert read_manifest(same)["data_sha256"] == read_manifest(cls_set)["data_sha256"]
    assert sorted(c) == sorted(a)  # same names ...
    images = [k for k in a if k.endswith(".JPEG")]
    assert all(a[k] != c[k] for k in images)  # ... other pictures
    assert read_manifest(other)["data_sha256"] != read_manifest(cls_set)["data_sha256"]
    assert read_manifest(other)["key"] != read_manifest(cls_set)["key"]


def test_classification_cache_reuse_and_regeneration(tmp_path):
    root = tmp_path / "set"
    ensure_classification_data(root, seed=0, spec=TINY_CLS, progress=False)
    before, content = _stats(root), _files(root)
    root_ino = root.stat().st_ino

    # up to date: nothing rewritten
    assert ensure_classification_data(root, seed=0, spec=TINY_CLS, progress=False) == root
    assert _stats(root) == before and root.stat().st_ino == root_ino

    # a deleted file: regenerated, to the same bytes
    victim = root / read_manifest(root)["files"][5]
    victim.unlink()
    ensure_classification_data(root, seed=0, spec=TINY_CLS, progress=False)
    assert victim.is_file()
    assert _files(root) == content
    assert _stats(root) != before

    # a changed spec: regenerated (new key, different JPEG bytes)
    mid = _stats(root)
    changed = ClassificationSetSpec(train_per_class=1, val_per_class=1, min_side=16, max_side=24, jpeg_quality=60)
    ensure_classification_data(root, seed=0, spec=changed, progress=False)
    m = read_manifest(root)
    assert m["key"] == shapes.spec_key(shapes.CLASSIFICATION_KIND, 0, changed) != shapes.spec_key(
        shapes.CLASSIFICATION_KIND, 0, TINY_CLS)
    assert m["spec"]["jpeg_quality"] == 60
    assert _stats(root) != mid
    new = _files(root)
    assert any(new[k] != content[k] for k in new if k.endswith(".JPEG"))

    # a changed seed: regenerated
    ensure_classification_data(root, seed=1, spec=changed, progress=False)
    assert read_manifest(root)["seed"] == 1
    assert _files(root) != new


def test_classification_refuses_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="refusing"):
        ensure_classification_data(root, spec=TINY_CLS, progress=False)
    assert (root / "precious.txt").read_text() == "keep me"


def test_spec_validation():
    with pytest.raises(DatasetError):
        ClassificationSetSpec(train_per_class=0)
    with pytest.raises(DatasetError):
        ClassificationSetSpec(min_side=30, max_side=20)
    with pytest.raises(DatasetError):
        DetectionSetSpec(min_objects=3, max_objects=2)
    with pytest.raises(DatasetError):
        DetectionSetSpec(max_radius=0.5)


# -- detection set --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def det_set(tmp_path_factory) -> Path:
    return ensure_detection_data(tmp_path_factory.mktemp("det") / "shapes_det", seed=5, spec=TINY_DET,
                                 progress=False)


def _redraw(monkeypatch, seed: int, split_i: int, index: int, spec: DetectionSetSpec):
    """Redraw one detection image from its random stream, recording each shape drawn."""
    drawn = []
    real = shapes.shape_window

    def recording(kind, height, width, cx, cy, radius, angle):
        drawn.append((kind, height, width, cx, cy, radius, angle))
        return real(kind, height, width, cx, cy, radius, angle)

    monkeypatch.setattr(shapes, "shape_window", recording)
    try:
        img, objects = shapes.draw_detection_image(shapes._rng(seed, 10 + split_i, index), spec, detection_classes())
    finally:
        monkeypatch.setattr(shapes, "shape_window", real)
    return img, objects, drawn


def test_detection_coco_matches_drawn_shapes(det_set, monkeypatch):
    from pycocotools.coco import COCO

    classes = detection_classes()
    m = read_manifest(det_set)
    assert m["kind"] == shapes.DETECTION_KIND and m["data_sha256"] == tree_digest(det_set, m["files"])
    total_objects = 0
    for split_i, (split, count) in enumerate(zip(shapes.DETECTION_SPLITS, (TINY_DET.train_images, TINY_DET.val_images))):
        coco = COCO(str(det_set / "annotations" / f"instances_{split}.json"))
        assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == classes
        assert sorted(coco.cats) == [1, 2, 3, 4]
        ids = sorted(coco.getImgIds())
        assert ids == list(range(1, count + 1))
        on_disk = sorted(p.name for p in (det_set / split).iterdir())
        assert on_disk == sorted(coco.imgs[i]["file_name"] for i in ids)
        ann_ids = [a["id"] for a in coco.dataset["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
        for image_id in ids:
            info = coco.imgs[image_id]
            img = _decode_rgb(det_set / split / info["file_name"])
            H, W = img.shape[:2]
            assert (info["height"], info["width"]) == (H, W)
            assert TINY_DET.min_side <= min(H, W) and max(H, W) <= TINY_DET.max_side
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            assert 1 <= len(anns) <= TINY_DET.max_objects
            total_objects += len(anns)

            redrawn, objects, drawn = _redraw(monkeypatch, 5, split_i, image_id - 1, TINY_DET)
            assert redrawn.shape == img.shape
            # the file is the redrawn picture, encoded
            jpeg = (det_set / split / info["file_name"]).read_bytes()
            assert shapes._encode_jpeg(redrawn, TINY_DET.jpeg_quality) == jpeg
            assert len(drawn) == len(anns)
            masks = []
            for ann, (kind, h, w, cx, cy, radius, angle) in zip(anns, drawn):
                x, y, bw, bh = ann["bbox"]
                assert ann["iscrowd"] == 0 and ann["image_id"] == image_id
                assert bw > 0 and bh > 0
                assert 0 <= x and 0 <= y and x + bw <= W and y + bh <= H
                assert classes[ann["category_id"] - 1] == kind
                # the box is the tight box of the drawn shape's half-covered pixels, area their count
                on = shape_mask(kind, H, W, cx, cy, radius, angle) >= 0.5
                ys, xs = np.nonzero(on)
                assert [x, y, bw, bh] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
                assert ann["area"] == on.sum()
                masks.append(on)
            # objects never overlap
            for i in range(len(masks)):
                for j in range(i + 1, len(masks)):
                    assert not (masks[i] & masks[j]).any()
    assert total_objects >= TINY_DET.train_images + TINY_DET.val_images


def test_detection_deterministic(tmp_path, det_set):
    again = ensure_detection_data(tmp_path / "again", seed=5, spec=TINY_DET, progress=False)
    assert _files(again) == _files(det_set)
    other = ensure_detection_data(tmp_path / "other", seed=6, spec=TINY_DET, progress=False)
    assert read_manifest(other)["data_sha256"] != read_manifest(det_set)["data_sha256"]
    before = _stats(again)
    ensure_detection_data(again, seed=5, spec=TINY_DET, progress=False)
    assert _stats(again) == before
    (again / "annotations" / "instances_val2017.json").unlink()
    ensure_detection_data(again, seed=5, spec=TINY_DET, progress=False)
    assert _files(again) == _files(det_set)


# -- shapes ---------------------------------------------------------------------------------------

def _shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_shape_polygons_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown shape"):
        shape_polygons("blob", 10, 10, 5, 0.0)
    with pytest.raises(ValueError):
        shape_mask("pentagon", 20, 20, 10, 10, 5, 0.0)


@pytest.mark.parametrize("kind", classification_classes())
def test_shape_mask_each_kind(kind):
    H, W, cx, cy, r, angle = 80, 100, 47.3, 38.6, 20.0, 0.7
    mask = shape_mask(kind, H, W, cx, cy, r, angle)
    assert mask.shape == (H, W) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert (mask >= 0.5).sum() > 0
    ys, xs = np.nonzero(mask > 0)
    # nothing outside the circumscribed square (one pixel of anti-aliasing slack)
    assert xs.min() >= np.floor(cx - r) - 1 and xs.max() <= np.ceil(cx + r) + 1
    assert ys.min() >= np.floor(cy - r) - 1 and ys.max() <= np.ceil(cy + r) + 1
    # coverage is the polygon area (within the rasterisation's edge bias), centred on (cx, cy)
    polys = shape_polygons(kind, cx, cy, r, angle)
    area = _shoelace(polys[0]) - sum(_shoelace(p) for p in polys[1:])
    assert mask.sum() == pytest.approx(area, rel=0.05)
    gy, gx = np.mgrid[:H, :W]
    assert (mask * gx).sum() / mask.sum() == pytest.approx(cx, abs=0.2)
    assert (mask * gy).sum() / mask.sum() == pytest.approx(cy, abs=0.2)
    centre = mask[int(round(cy)), int(round(cx))]
    if kind == "ring":
        assert centre == 0.0 and len(polys) == 2
    else:
        assert centre == 1.0 and len(polys) == 1


def test_shape_mask_clipped_at_image_edge():
    mask = shape_mask("square", 30, 40, 2.0, 28.0, 12.0, 0.3)
    assert mask.shape == (30, 40)
    full = shape_mask("square", 60, 60, 30.0, 30.0, 12.0, 0.3)
    assert 0 < mask.sum() < full.sum()
    # a shape entirely outside the image covers nothing
    assert shape_mask("circle", 20, 20, -50.0, -50.0, 5.0, 0.0).sum() == 0.0


# -- grid targets ---------------------------------------------------------------------------------

def _assign(boxes, classes, grid=4, stride=10):
    from tritonkit.demo.train import assign_grid_targets

    return assign_grid_targets([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
                               [np.asarray(c, np.int64) for c in classes], grid, stride)


def test_assign_grid_targets_center_and_two_neighbours():
    box = [10, 20, 18, 28]  # center (14, 24): cell x=1, y=2, left and upper halves of it
    pos, tb, tc = _assign([[box]], [[3]])
    assert pos.shape == (1, 16) and tb.shape == (1, 16, 4) and tc.shape == (1, 16)
    assert set(np.nonzero(pos[0])[0]) == {2 * 4 + 1, 2 * 4 + 0, 1 * 4 + 1}
    for cell in (9, 8, 5):
        assert tb[0, cell].tolist() == box and tc[0, cell] == 3
    assert (tb[0, ~pos[0]] == 0).all() and (tc[0, ~pos[0]] == -1).all()

    # right and lower halves: the neighbours on the other side
    pos, _, _ = _assign([[[26, 6, 32, 12]]], [[0]])  # center (29, 9): cell x=2, y=0
    assert set(np.nonzero(pos[0])[0]) == {0 * 4 + 2, 0 * 4 + 3, 1 * 4 + 2}


def test_assign_grid_targets_conflict_goes_to_closer_center():
    a, b = [10, 20, 18, 28], [18, 20, 26, 28]  # centers (14, 24) and (22, 24); both want cell 9
    for order in ((0, 1), (1, 0)):
        boxes = [[a, b][i] for i in order]
        cls = [[1, 2][i] for i in order]
        pos, tb, tc = _assign([boxes], [cls])
        assert set(np.nonzero(pos[0])[0]) == {5, 8, 9, 10, 6}
        assert tc[0, 9] == 1 and tb[0, 9].tolist() == a  # a is 1.4 px from cell 9's center, b 7.1
        assert tc[0, 10] == 2 and tc[0, 6] == 2 and tb[0, 10].tolist() == b
        assert tc[0, 5] == 1 and tc[0, 8] == 1


def test_assign_grid_targets_edges_clipped_and_batches_independent():
    corner, far = [0, 0, 6, 6], [34, 34, 40, 40]  # centers (3, 3) and (37, 37)
    pos, tb, tc = _assign([[corner, far], np.zeros((0, 4)), [[50, 10, 60, 18]]], [[0, 1], [], [2]])
    assert pos.shape == (3, 16)
    assert set(np.nonzero(pos[0])[0]) == {0, 15}  # the neighbours fall off the grid
    assert tc[0, 0] == 0 and tc[0, 15] == 1
    assert not pos[1].any() and (tc[1] == -1).all() and (tb[1] == 0).all()
    # a center beyond the right edge is clipped into the last column; its row neighbour is above
    assert set(np.nonzero(pos[2])[0]) == {1 * 4 + 3, 0 * 4 + 3}


# -- report ---------------------------------------------------------------------------------------

def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def test_demo_report_shows_the_figures_of_the_files(tmp_path):
    from tritonkit.demo.report import write_demo_report
    from tritonkit.demo.run import CLS_CARD, CLS_GUARDED
    from tritonkit.steps import StepRecord as Step
    from tritonkit.perf.stalls import summarize

    out = tmp_path / "demo"
    _write(out / "classification.json", {"top1": 0.8125, "reference_top1": 0.84375, "int8_top1": 0.796875,
                                         "fp32_model_mb": 1.23456, "int8_model_mb": 0.34567, "images": 400,
                                         "errors": ["a", "b"]})
    _write(out / "detection.json", {"map50": 0.61237, "reference_map50": 0.62345, "int8_map50": 0.5912,
                                    "map50_95": 0.41234, "int8_map50_95": 0.39871, "images": 300, "errors": []})
    _write(out / "validation.json", {"passed": False, "checks": [
        {"name": "readiness.server", "model": None, "passed": True, "detail": "ready in 0.2 s"},
        {"name": "correctness.reference", "model": "demo_shapes", "passed": False, "detail": "max abs diff 0.5"}]})
    lat_plain = [1.0 + 0.01 * (i % 7) for i in range(200)]
    lat_guarded = lat_plain[:-3] + [512.3, 498.0, 505.5]
    runs = {CLS_CARD: summarize(CLS_CARD, lat_plain), CLS_GUARDED: summarize(CLS_GUARDED, lat_guarded, ["timeout"])}
    _write(out / "queue_policy.json", {
        "what": "sequential bs-1 requests (one in flight)",
        "models": {CLS_CARD: "dynamic batching, no queue policy", CLS_GUARDED: "queue policy 100 ms REJECT"},
        "results": {k: v.to_dict() for k, v in runs.items()}})
    _write(out / "classification.md", "# Classification results\n\nrun model vs run stream body line\n")
    _write(out / "perf" / "sweep.md", "# Sweep\n\n| concurrency | infer/s |\n| --- | --- |\n| 1 | 987.6 |\n")
    steps = [Step("generate_data", "ok", 1.234, ""), Step("validate_deployment", "failed", 2.5, "validation failed")]

    path = write_demo_report(out, steps)
    assert path == out / "report.md"
    text = path.read_text()
    for figure in ("0.8125", "0.8438", "0.7969", "1.235", "0.346", "400 (2 errors)",
                   "0.6124", "0.6234", "0.5912", "0.4123", "0.3987", "300 (0 errors)"):
        assert figure in text, figure
    # the queue-policy table: a row per model with its config and the probe's figures
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| demo_shapes")}
    assert "no queue policy" in rows[CLS_CARD] and "100 ms REJECT" in rows[CLS_GUARDED]
    g = runs[CLS_GUARDED]
    assert g.stalls == 3 and f"{g.max_ms:.1f}" in rows[CLS_GUARDED] and f"{g.p50_ms:.2f}" in rows[CLS_GUARDED]
    assert "| 3 | 1 |" in rows[CLS_GUARDED].replace("  ", " ")
    # validation: overall verdict and each check with its model
    assert "**FAILED**" in text
    assert any("readiness.server" in line and "(server)" in line and "pass" in line for line in text.splitlines())
    assert any("correctness.reference" in line and "demo_shapes" in line and "FAIL" in line
               for line in text.splitlines())
    # markdown sections copied without their own title; steps listed
    assert "run model vs run stream body line" in text and "# Classification results" not in text
    assert "987.6" in text and "latency_throughput.png" not in text
    assert any("generate_data" in line and "ok" in line and "1.2" in line for line in text.splitlines())
    assert any("validate_deployment" in line and "failed" in line and "validation failed" in line
               for line in text.splitlines())


def test_demo_report_with_missing_or_partial_files(tmp_path):
    from tritonkit.demo.report import write_demo_report
    from tritonkit.steps import StepRecord as Step

    empty = tmp_path / "empty"
    empty.mkdir()
    text = write_demo_report(empty, []).read_text()
    assert text.startswith("# tritonkit demo report") and "## Steps" in text
    for absent in ("Accuracy", "Queue policy", "Deployment validation", "perf_analyzer"):
        assert absent not in text

    partial = tmp_path / "partial"
    _write(partial / "classification.json", {"top1": 0.5})
    _write(partial / "validation.json", "{not json")
    (partial / "perf").mkdir()
    (partial / "perf" / "latency_throughput.png").write_bytes(b"\x89PNG")
    text = write_demo_report(partial, [Step("report", "ok", 0.0)]).read_text()
    assert "0.5000" in text and "detection (demo_shapes_det)" not in text
    assert "Deployment validation" not in text
    assert "perf/latency_throughput.png" in text


# -- training (slow) ------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_classifier_exports_measures_and_caches(tmp_path):
    import onnx
    import onnxruntime as ort

    from tritonkit.client.decode import decode_file
    from tritonkit.client.preprocess import preprocess
    from tritonkit.cards import get_card
    from tritonkit.demo.train import ClassifierConfig, train_classifier

    spec = ClassificationSetSpec(train_per_class=4, val_per_class=3, min_side=40, max_side=60)
    data = ensure_classification_data(tmp_path / "data", seed=0, spec=spec, progress=False)
    config = ClassifierConfig(epochs=2, batch_size=16, threads=1)
    cache = tmp_path / "cache"
    res = train_classifier(data, cache, config, progress=False)

    assert not res.cached and res.metric == "val_top1" and res.epochs == 2 and len(res.history) == 2
    assert res.train_images == 8 * 4 and res.val_images == 8 * 3
    assert res.onnx_path.is_file() and res.onnx_path.is_relative_to(cache)
    assert res.sidecar_path.is_file() and res.weights_path.is_file()

    model = onnx.load(str(res.onnx_path))
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value

    # the reported top-1 is what onnxruntime gives on the val split
    card = get_card("demo_shapes")
    classes = classification_classes()
    xs, ys = [], []
    for ci, name in enumerate(classes):
        for f in sorted((data / "val" / name).glob("*.JPEG")):
            xs.append(preprocess(decode_file(f).image, card.preprocess)[0])
            ys.append(ci)
    sess = ort.InferenceSession(str(res.onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: np.stack(xs)})[0]
    assert logits.shape == (len(ys), 8)
    expected = float((logits.argmax(axis=1) == np.asarray(ys)).mean())
    assert res.value == pytest.approx(expected, abs=1e-9)
    assert res.val_top1 == res.value and res.val_map50 is None
    # batch 1 gives the same logits as the batch (dynamic axis really works)
    one = sess.run(None, {sess.get_inputs()[0].name: np.stack(xs[:1])})[0]
    np.testing.assert_allclose(one[0], logits[0], rtol=1e-4, atol=1e-4)

    again = train_classifier(data, cache, config, progress=False)
    assert again.cached is True
    assert again.value == res.value and again.onnx_path == res.onnx_path and again.history == res.history


# -- the demo's pipeline ----------------------------------------------------------------------------

def test_demo_goes_on_after_a_failed_step_and_still_writes_its_report(tmp_path, monkeypatch):
    """The data generator is replaced by one that fails (no training, no server here): the steps
    that need it are skipped, the others run, and steps.json and report.md are written."""
    import tritonkit.demo.run as demo_run

    def broken(*args, **kwargs):
        raise TritonkitError("disk full")

    monkeypatch.setattr(demo_run, "ensure_classification_data", broken)
    seen = []
    opts = demo_run.DemoOptions(out=tmp_path / "out", work=tmp_path / "work", cache=tmp_path / "cache",
                                detection=False, int8=False, perf=False, validate=False, segmentation=False)
    log = demo_run.run_demo(opts, on_step=lambda r: seen.append((r.id, r.status)))
    status = {r.id: (r.status, r.detail) for r in log.records}
    assert list(status) == list(demo_run.STEPS.ids)
    assert status["generate_data"] == ("failed", "disk full")
    assert status["generate_detection_data"] == ("skipped", "detection off")
    assert status["train_classifier"] == ("skipped", "needs generate_data (failed)")
    assert status["write_repository"] == ("failed", "no model could be put in the repository")
    assert status["start_server"][0] == "skipped" and status["eval_classify_fp32"][0] == "skipped"
    assert status["report"][0] == "ok" and (tmp_path / "out" / "report.md").is_file()
    disk = json.loads((tmp_path / "out" / "steps.json").read_text())
    assert disk["failed"] and [s["id"] for s in disk["steps"]] == list(demo_run.STEPS.ids)
    assert [i for i, s in seen if s == "running"] == ["generate_data", "generate_detection_data", "write_repository",
                                                      "segmentation", "report"]
    assert status["segmentation"] == ("skipped", "segmentation off")
