"""Dataset layouts on real files in tmp_path: class folders, flat + ground truth, tar read in place."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tritonkit.cards import get_card, load_labels
from tritonkit.tasks.classify.data import (
    IMAGENET_VAL_TAR_MD5, ClassMap, Dataset, TarItem, imagenet_wnids, open_dataset, open_tar, read_ground_truth)
from tritonkit.client.items import FileItem, limit_dataset, select_subset
from tritonkit.errors import DatasetError

RESNET = get_card("resnet50")
SHAPES = get_card("demo_shapes")
WNIDS = imagenet_wnids()


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


# --------------------------------------------------------------------------- wnid mapping
def test_wnids_are_sorted_unique_and_aligned_with_labels():
    """Sorted wnid order is torchvision's class order: index 0 is tench, 999 toilet tissue."""
    labels = load_labels("imagenet1k")
    assert len(WNIDS) == len(set(WNIDS)) == len(labels) == 1000
    assert WNIDS == sorted(WNIDS)
    cm = ClassMap.for_card(RESNET)
    assert cm.index("n01440764") == 0 and cm.display[0] == "tench"
    assert cm.index("n15075141") == 999 and cm.display[999] == "toilet tissue"
    assert cm.index("tench") is None  # folders and ground truth use wnids, not names


def test_class_map_of_demo_card_uses_label_names_in_card_order():
    cm = ClassMap.for_card(SHAPES)
    assert list(cm.names) == SHAPES.label_names()
    assert [cm.index(n) for n in cm.names] == list(range(SHAPES.num_classes))


# ------------------------------------------------------------------------------- folders
def test_folder_layout_with_wnids(tmp_path):
    for wnid, n in (("n01443537", 2), ("n01440764", 3)):
        (tmp_path / wnid).mkdir()
        for i in range(n):
            (tmp_path / wnid / f"x{i}.JPEG").write_bytes(_jpeg(i))
    (tmp_path / "n01440764" / "README.txt").write_text("not an image suffix: listed, not evaluated")
    (tmp_path / "n01440764" / ".DS_Store").write_bytes(b"hidden: ignored")
    ds = open_dataset(tmp_path, RESNET)
    assert ds.layout == "folders" and len(ds.items) == 5
    assert ds.not_images == [{"path": "n01440764/README.txt",
                              "reason": "not an image file (suffix '.txt'), not evaluated"}]
    assert ds.excluded() == ds.not_images and ds.describe()["not_images"] == 1
    assert [it.key for it in ds.items] == sorted(it.key for it in ds.items)
    labels = {it.key.split("/")[0]: it.label for it in ds.items}
    assert labels == {"n01440764": 0, "n01443537": 1}
    assert ds.items[0].read_bytes() == _jpeg(0)


def test_folder_layout_with_demo_label_names(tmp_path):
    for name in ("triangle", "circle"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(_jpeg(1))
    ds = open_dataset(tmp_path, SHAPES)
    names = SHAPES.label_names()
    assert {it.key: it.label for it in ds.items} == {"circle/a.png": names.index("circle"),
                                                      "triangle/a.png": names.index("triangle")}


def test_unknown_folder_name_is_an_error_naming_it(tmp_path):
    (tmp_path / "circle").mkdir()
    (tmp_path / "circle" / "a.jpg").write_bytes(_jpeg(1))
    (tmp_path / "blob").mkdir()
    (tmp_path / "blob" / "b.jpg").write_bytes(_jpeg(2))
    with pytest.raises(DatasetError, match=r"blob.*not a class of label set 'demo_shapes'"):
        open_dataset(tmp_path, SHAPES)


def test_missing_and_empty_dataset(tmp_path):
    with pytest.raises(DatasetError, match="dataset not found"):
        open_dataset(tmp_path / "nope", RESNET)
    with pytest.raises(DatasetError, match="no images found"):
        open_dataset(tmp_path, RESNET)


# ----------------------------------------------------------------------- ground truth
def test_caffe_val_txt_flat_layout(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    for i in (1, 2, 3):
        (val / _val_name(i)).write_bytes(_jpeg(i))
    (tmp_path / "val.txt").write_text(f"{_val_name(1)} 65\n{_val_name(2)} 970\n{_val_name(3)} 230\n{_val_name(4)} 1\n")
    (val / "synsets.csv").write_text("n01440764,tench\n")
    ds = open_dataset(val, RESNET)  # val.txt found beside the folder
    assert ds.layout == "flat" and ds.ground_truth == tmp_path / "val.txt"
    assert [it.label for it in ds.items] == [65, 970, 230]
    assert ds.missing == 1 and ds.skipped == []
    assert [e["path"] for e in ds.not_images] == ["synsets.csv"]


def test_name_wnid_lines_and_images_without_truth(tmp_path):
    for i in (1, 2):
        (tmp_path / _val_name(i)).write_bytes(_jpeg(i))
    gt = tmp_path / "gt.txt"
    gt.write_text(f"# comment\n{_val_name(1)} n01751748\n")
    ds = open_dataset(tmp_path, RESNET, gt=gt)
    assert [(it.key, it.label) for it in ds.items] == [(_val_name(1), WNIDS.index("n01751748"))]
    assert ds.skipped == [{"path": _val_name(2), "reason": f"no ground truth in {gt}"}]


def test_kaggle_loc_val_solution_csv(tmp_path):
    for i in (7, 8):
        (tmp_path / _val_name(i)).write_bytes(_jpeg(i))
    gt = tmp_path / "LOC_val_solution.csv"
    gt.write_text("ImageId,PredictionString\n"
                  "ILSVRC2012_val_00000008,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
                  "ILSVRC2012_val_00000007,n01440764 1 2 3 4\n")
    ds = open_dataset(tmp_path, RESNET)
    assert {it.key: it.label for it in ds.items} == {_val_name(7): 0, _val_name(8): WNIDS.index("n02119789")}


@pytest.mark.parametrize("text, match", [
    ("a.JPEG 65 extra\n", r"gt.txt line 1: expected '<image> <class index or name>'"),
    ("a.JPEG 65\nb.JPEG 1000\n", r"gt.txt line 2: class index 1000 outside 0..999"),
    ("a.JPEG n99999999\n", r"gt.txt line 1: unknown class 'n99999999'"),
    ("65\n", r"devkit"),
    ("a.JPEG 1\na.JPEG 2\n", r"line 2: image 'a.JPEG' listed twice"),
    ("\n\n", r"no entries"),
])
def test_bad_ground_truth_lines_name_file_and_line(tmp_path, text, match):
    gt = tmp_path / "gt.txt"
    gt.write_text(text)
    with pytest.raises(DatasetError, match=match):
        read_ground_truth(gt, ClassMap.for_card(RESNET))


def test_bad_kaggle_row_names_line(tmp_path):
    gt = tmp_path / "LOC_val_solution.csv"
    gt.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\nILSVRC2012_val_00000002\n")
    with pytest.raises(DatasetError, match=r"LOC_val_solution.csv line 3"):
        read_ground_truth(gt, ClassMap.for_card(RESNET))


def test_flat_images_without_any_ground_truth_file(tmp_path):
    (tmp_path / _val_name(1)).write_bytes(_jpeg(1))
    with pytest.raises(DatasetError, match="no ground-truth file was given"):
        open_dataset(tmp_path, RESNET)
    with pytest.raises(DatasetError, match="ground-truth file not found"):
        open_dataset(tmp_path, RESNET, gt=tmp_path / "missing.txt")


# ------------------------------------------------------------------------------------ tar
def _make_tar(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_tar_read_in_place_with_md5(tmp_path):
    members = {_val_name(i): _jpeg(i) for i in (3, 1, 2)}
    tar = tmp_path / "val.tar"
    digest = _make_tar(tar, {**members, _val_name(9): _jpeg(9), "val.txt": b"in the tar too"})
    gt = tmp_path / "val.txt"
    gt.write_text(f"{_val_name(1)} 5\n{_val_name(2)} 6\n{_val_name(3)} 7\n")
    ds = open_tar(tar, ClassMap.for_card(RESNET), gt, expected_md5=digest)
    assert ds.excluded() == [{"path": _val_name(9), "reason": f"no ground truth in {gt}"}]
    assert ds.layout == "tar" and [it.key for it in ds.items] == [_val_name(1), _val_name(2), _val_name(3)]
    assert [it.label for it in ds.items] == [5, 6, 7]
    for it in ds.items:
        assert isinstance(it, TarItem) and it.read_bytes() == members[it.key]
    assert not any(p.suffix == ".JPEG" for p in tmp_path.iterdir())  # nothing extracted


def test_default_md5_is_imagenet_vals():
    from tritonkit.tasks.classify.task import ClassificationOptions

    assert IMAGENET_VAL_TAR_MD5 == "29b22e2961454d5413ddabcf34fc5622"  # ILSVRC2012_img_val.tar
    assert ClassificationOptions(model="resnet50", tar=Path("x.tar")).md5 == IMAGENET_VAL_TAR_MD5


def test_tar_md5_mismatch_names_file_and_both_digests(tmp_path):
    tar = tmp_path / "ILSVRC2012_img_val.tar"
    digest = _make_tar(tar, {_val_name(1): _jpeg(1)})
    gt = tmp_path / "val.txt"
    gt.write_text(f"{_val_name(1)} 5\n")
    with pytest.raises(DatasetError) as err:
        open_dataset(tar, RESNET, gt=gt)  # default: ImageNet val's digest
    msg = str(err.value)
    assert str(tar) in msg and digest in msg and IMAGENET_VAL_TAR_MD5 in msg
    assert len(open_dataset(tar, RESNET, gt=gt, expected_md5=None).items) == 1  # check skipped


def test_tar_with_class_folders_needs_no_ground_truth(tmp_path):
    tar = tmp_path / "shapes.tar"
    _make_tar(tar, {"./star/a.jpg": _jpeg(1), "./circle/b.jpg": _jpeg(2), "./circle/c.txt": b"x"})
    ds = open_tar(tar, ClassMap.for_card(SHAPES), None, expected_md5=None)
    names = SHAPES.label_names()
    assert {it.key: it.label for it in ds.items} == {"circle/b.jpg": names.index("circle"),
                                                      "star/a.jpg": names.index("star")}
    assert [e["path"] for e in ds.excluded()] == ["circle/c.txt"]


def test_not_a_tar_and_truncated_member(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x1f\x8b" + b"0" * 2000)
    with pytest.raises(DatasetError, match="not an uncompressed tar"):
        open_tar(bad, ClassMap.for_card(RESNET), None, expected_md5=None)
    item = TarItem("x.JPEG", bad, offset=1990, size=100, label=0)
    with pytest.raises(OSError, match="ends inside member"):
        item.read_bytes()


# ---------------------------------------------------------------------------------- limit
def _items(n: int) -> list[FileItem]:
    return [FileItem(f"c{i % 4}/{i:03d}.jpg", Path(f"/nowhere/{i}"), i % 4) for i in range(n)]


def test_limit_stride_spreads_over_classes_and_is_deterministic():
    items = _items(100)
    a, how = select_subset(items, 8, "stride")
    b, _ = select_subset(list(reversed(items)), 8, "stride")
    assert [x.key for x in a] == [x.key for x in b]
    ordered = sorted(it.key for it in items)
    assert [x.key for x in a] == [ordered[(i * 100) // 8] for i in range(8)]
    assert {x.label for x in a} == {0, 1, 2, 3}  # folder-sorted order grouped by class, stride covers all
    assert "every" in how


def test_limit_first_and_no_limit():
    items = _items(10)
    first, how = select_subset(items, 3, "first")
    assert [x.key for x in first] == sorted(it.key for it in items)[:3] and "first 3 of 10" in how
    assert len(select_subset(items, None)[0]) == 10 and len(select_subset(items, 50)[0]) == 10
    with pytest.raises(DatasetError):
        select_subset(items, 0)
    ds = limit_dataset(Dataset(items, "folders", Path("/x"), ClassMap.for_card(SHAPES), total=10), 4)
    assert len(ds.items) == 4 and ds.describe()["images_used"] == 4
