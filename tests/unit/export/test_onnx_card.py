"""`cards --from-onnx` on real ultralytics exports (tiny fixture models): the printed card loads and
`export --onnx` adopts the file with it; bad files are one line naming the file and field."""

from __future__ import annotations

import json
import shutil

import pytest

from tritonkit.cli import main
from tests.support.ultralytics_models import tiny_model


def _draft(tmp_path, capsys, fixture: str, name: str):
    onnx_file = tmp_path / f"{fixture}.onnx"
    shutil.copy(tiny_model(fixture).onnx, onnx_file)
    assert main(["cards", "--from-onnx", str(onnx_file), "--name", name]) == 0
    card_file = tmp_path / "card.json"
    card_file.write_text(capsys.readouterr().out)
    return onnx_file, card_file


@pytest.mark.parametrize("fixture, kind", [("detect", "yolo_anchor_free"), ("end2end", "yolo_end2end")])
def test_from_onnx_card_loads_and_export_adopts_the_file(tmp_path, capsys, fixture, kind):
    model = tiny_model(fixture)
    onnx_file, card_file = _draft(tmp_path, capsys, fixture, "mine")
    card = json.loads(card_file.read_text())
    assert card["num_classes"] == len(model.names) and card["preprocess"]["size"] == model.imgsz
    assert (tmp_path / f"{fixture}.names.txt").read_text().split() == list(model.names)
    assert card["postprocess"]["kind"] == kind
    assert [p["conf_threshold"] for p in card["nms_profiles"]] == [0.25, 0.001]
    assert main(["cards", str(card_file)]) == 0
    assert main(["export", "--model", str(card_file), "--onnx", str(onnx_file), "--out", str(tmp_path / "out")]) == 0


def test_names_disagreeing_with_the_output_channels_is_one_line(tmp_path, capsys):
    import onnx
    onnx_file = tmp_path / "m.onnx"
    m = onnx.load(str(tiny_model("detect").onnx))
    for p in m.metadata_props:
        if p.key == "names":
            p.value = "{0: 'a'}"
    onnx.save(m, str(onnx_file))
    assert main(["cards", "--from-onnx", str(onnx_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(onnx_file) in err and "names" in err and "\n" not in err


def test_unreadable_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.onnx"
    bad.write_text("not onnx")
    assert main(["cards", "--from-onnx", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "\n" not in err


def test_without_metadata_the_graph_and_the_fields_to_set_are_one_line(tmp_path, capsys):
    import onnx
    onnx_file = tmp_path / "m.onnx"
    m = onnx.load(str(tiny_model("detect").onnx))
    del m.metadata_props[:]
    onnx.save(m, str(onnx_file))
    assert main(["cards", "--from-onnx", str(onnx_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(onnx_file) in err and "input images" in err and "output output0" in err and "num_classes" in err
    assert "\n" not in err
