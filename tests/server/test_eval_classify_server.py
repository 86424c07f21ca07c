"""`tritonkit eval classify` end to end against the real bundled tritonserver (tiny model).

The served top-1/top-5 must equal in-process onnxruntime on the same preprocessed inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from support.classify_data import CARD, make_dataset
from tritonkit.cards import get_card
from tritonkit.report import TIMING_MEASURED


def test_cli_eval_json_is_the_result_file_alone_on_stdout(tiny_server, tmp_path, capsys):
    """--json with the progress bar on: stdout is exactly classification.json (the bar is on stderr)."""
    from tritonkit.cli import main

    expect = make_dataset(tmp_path / "data", n_good=5)
    out = tmp_path / "out"
    assert main(["eval", "classify", "--model", "demo_shapes", "--data", str(tmp_path / "data"),
                 "--url", tiny_server.url("grpc"), "--batch-sizes", "2", "--timing-images", "4",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "classification.json").read_text()) and printed["images"] == expect["good"]
    (row,) = printed["batch_timing"]
    assert 0 < row["run_stream_latency_p50_ms"] <= row["run_stream_latency_p99_ms"] and row["run_stream_img_s"] > 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cli_eval_classify_matches_onnxruntime(tiny_server, tiny_onnx, tmp_path, capsys, protocol):
    from tritonkit.cli import main

    expect = make_dataset(tmp_path / "data", n_good=13, every_kind=True)
    out = tmp_path / "out"
    code = main(["eval", "classify", "--model", "demo_shapes", "--data", str(tmp_path / "data"),
                 "--url", tiny_server.url(protocol), "--protocol", protocol,
                 "--batch-sizes", "4,1", "--timing-images", "6",
                 "--reference-onnx", str(tiny_onnx), "--workers", "2", "--in-flight", "2",
                 "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = json.loads((out / "classification.json").read_text())
    assert res["images"] == expect["good"] and res["protocol"] == protocol
    assert {e["path"] for e in res["errors"]} == expect["errors"] | expect["not_images"]
    assert {n["path"] for n in res["notes"]} == expect["notes"]
    md = (out / "classification.md").read_text()
    for e in res["errors"]:  # every excluded file is listed with its reason, in the report and on screen
        assert e["reason"] and f"| {e['path']} | {e['reason']} |" in md
        assert f"excluded {e['path']}: {e['reason']}" in " ".join(captured.out.split())
    for n in res["notes"]:
        assert f"| {n['path']} | {n['note']} |" in md
    assert res["top1"] == res["reference_top1"] and res["top5"] == res["reference_top5"]
    assert res["max_abs_diff"]["logits"] < 1e-4
    assert [r["batch_size"] for r in res["batch_timing"]] == [4, 1]
    first6 = sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*.*")
                    if p.suffix != ".txt")[:6]
    timed = len([k for k in first6 if k not in expect["errors"]])
    for row in res["batch_timing"]:
        assert row["images"] == timed and row["run_model_ms"] > 0 and row["run_stream_img_s"] > 0
        assert 0 < row["run_stream_latency_p50_ms"] <= row["run_stream_latency_p99_ms"]
    assert res["p_infer_whole"] > 0 and res["p_infer_core"] >= res["p_infer_whole"]
    assert res["p_val_whole"] > 0 and res["p_val_core"] > 0
    assert res["mem"] > 0 and res["mem_source"].startswith("rss of tritonserver process tree")
    assert res["latency"]["count"] == -(-expect["good"] // 4)
    assert set(res["stages"]) == {"decode", "preprocess", "infer", "postprocess"}
    assert "run model bs1 (ms)" in md and "run stream p50 bs4 (ms)" in md and "run stream bs4 (img/s)" in md
    assert "| run stream latency p50 (ms/batch) | run stream latency p99 (ms/batch) | run stream throughput" in md
    assert TIMING_MEASURED in md and "run stream latency p50 / p99 (ms/batch)" in captured.out
    lines = (out / "classification.jsonl").read_text().splitlines()
    assert len(lines) == 1 + expect["good"] + len(expect["errors"])
    # per-image records a person can read: the true class and the top-k names with their scores
    names = CARD.label_names()
    records = [e["record"] for e in map(json.loads, lines[1:]) if "record" in e]
    assert len(records) == expect["good"]
    for r in records:
        assert r["truth"] == names[r["label"]] and r["classes"] == [names[i] for i in r["topk"]]
        assert len(r["scores"]) == len(r["classes"]) == 5 and r["scores"] == sorted(r["scores"], reverse=True)
    wrong = res["images"] - res["correct1"]
    assert res["misclassified_count"] == wrong and len(res["misclassified"]) == min(wrong, 100)
    assert f"## Misclassified images (top-1): {wrong}" in md
    for m in res["misclassified"]:
        assert m["truth"] != m["prediction"] and f"| {m['path']} | {m['truth']} | {m['prediction']} |" in md


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_shared_memory_eval_and_resume(tiny_server, tiny_onnx, tmp_path, protocol):
    """Inputs/outputs through system shared memory give the same results; regions are
    unregistered afterwards; a resumed run that finds everything done reports the same."""
    from tritonkit.evaluate import evaluate
    from tritonkit.tasks.classify.task import ClassificationOptions

    make_dataset(tmp_path / "data", n_good=9)
    opts = ClassificationOptions(model="demo_shapes", data=tmp_path / "data", out=tmp_path / "out",
                                 url=tiny_server.url(protocol), protocol=protocol, shm=True,
                                 batch_sizes=(3,), timing_images=0, reference_onnx=tiny_onnx, progress=False)
    first = evaluate("classify", opts).to_dict()
    assert first["top1"] == first["reference_top1"] and first["max_abs_diff"]["logits"] < 1e-4
    again = evaluate("classify", ClassificationOptions(**{**opts.__dict__, "resume": True})).to_dict()
    assert again["resumed"] == first["images"] + len(first["errors"])
    assert (again["top1"], again["top5"], again["images"]) == (first["top1"], first["top5"], first["images"])

    import tritonclient.grpc as grpcclient

    status = grpcclient.InferenceServerClient(tiny_server.grpc_url).get_system_shared_memory_status(as_json=True)
    assert not status.get("regions")


def test_card_mismatch_and_invalid_request(tiny_server, tmp_path, capsys):
    from tritonkit.cli import main
    from tritonkit.client.infer import ClientOptions, TritonInfer
    from tritonkit.errors import ServerError

    (tmp_path / "data" / "n01440764").mkdir(parents=True)  # an ImageNet wnid folder for the resnet50 card
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(tmp_path / "data" / "n01440764" / "a.JPEG")
    code = main(["eval", "classify", "--model", "resnet50", "--model-name", "demo_shapes",
                 "--data", str(tmp_path / "data"), "--url", tiny_server.grpc_url, "--out", str(tmp_path / "o"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1  # the card the server carries (demo_shapes) disagrees: one line per field
    assert "card 'resnet50' disagrees with the card model 'demo_shapes' is served with" in err[0]
    fields = {line.strip().split(":")[0] for line in err[1:]}
    assert {"input.dims", "preprocess.size", "preprocess.resize", "outputs[0].dims", "num_classes",
            "labels"} <= fields, err
    assert "  preprocess.size: 224 != served 64" in err
    # the transport contract check still names the tensors when no served card is compared
    resnet = get_card("resnet50")
    with pytest.raises(ServerError) as info:
        TritonInfer(resnet, ClientOptions(url=tiny_server.grpc_url, model_name="demo_shapes"), max_batch=1).connect()
    err = str(info.value)
    assert len(err.splitlines()) == 1
    assert "does not match card 'resnet50'" in err and "shape [-1, 3, 64, 64]" in err and "'logits'" in err

    with TritonInfer(CARD, ClientOptions(url=tiny_server.grpc_url, retries=3), max_batch=2) as client:
        with pytest.raises(ServerError, match="request failed"):
            client.infer(np.zeros((1, 3, 32, 32), np.float32))  # wrong dims: INVALID_ARGUMENT
        assert client.retries_done == 0  # never retried


def test_eval_refuses_a_card_that_differs_only_in_preprocessing(tiny_server, tmp_path, capsys):
    """Same tensors and dims as the served model, another normalisation and interpolation: the
    served-card comparison catches what the tensor contract cannot, one line per field."""
    from tritonkit.cli import main

    make_dataset(tmp_path / "data", n_good=3)
    data = CARD.to_dict()
    data["preprocess"] = {**data["preprocess"], "mean": [0.5, 0.5, 0.5], "interpolation": "bicubic"}
    card_file = tmp_path / "other.json"
    card_file.write_text(json.dumps(data))
    code = main(["eval", "classify", "--model", str(card_file), "--data", str(tmp_path / "data"),
                 "--url", tiny_server.grpc_url, "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 3, err
    assert "(2 fields;" in err[0] and "--model-name demo_shapes" in err[0]
    assert err[1].strip() == 'preprocess.interpolation: "bicubic" != served "bilinear"'
    assert err[2].strip().startswith("preprocess.mean: [0.5, 0.5, 0.5] != served [0.")
    assert not (tmp_path / "o" / "classification.json").exists()


def test_eval_uses_the_served_card_without_model(tiny_server, tmp_path, capsys):
    """Only the served name: the card comes from the served config; a name that is neither a
    card nor served ends in one line."""
    from tritonkit.cli import main

    expect = make_dataset(tmp_path / "data", n_good=4)
    code = main(["eval", "classify", "--model-name", "demo_shapes", "--data", str(tmp_path / "data"),
                 "--url", tiny_server.grpc_url, "--out", str(tmp_path / "o"), "--timing-images", "0",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "o" / "classification.json").read_text())
    assert res["model"] == "demo_shapes" and res["served_model"] == "demo_shapes" and res["images"] == expect["good"]
    capsys.readouterr()
    code = main(["eval", "classify", "--model", "not_served", "--data", str(tmp_path / "data"),
                 "--url", tiny_server.grpc_url, "--out", str(tmp_path / "o2"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "unknown model 'not_served'" in err
