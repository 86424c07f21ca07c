"""Hostile names and output folders: no write outside a root, one line and exit 1 for a bad --out."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.errors import TritonkitError
from tritonkit.io import ensure_out_dir
from tritonkit.model_repository.config import RepoOptions
from tritonkit.model_repository import writer
from tritonkit.model_repository.writer import write_config_only, write_model
from tritonkit.names import check_model_name, safe_child

TRAVERSALS = ["./../victim", "..", ".", "../victim", "a/b", "/abs", "a\\b", ".hidden", "x\n", "sp ace", ""]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_like_names_are_refused(name):
    with pytest.raises(TritonkitError, match="--name"):
        check_model_name(name, "--name")


def test_every_builtin_card_name_is_a_valid_model_name():
    from tritonkit.cards import REGISTRY

    assert [check_model_name(c.name) for c in REGISTRY] == REGISTRY.names()


def test_safe_child_refuses_a_symlink_that_leaves_the_root(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    with pytest.raises(TritonkitError, match="outside"):
        safe_child(root, "evil")
    assert safe_child(root, "fine") == root / "fine"


@pytest.mark.parametrize("name", ["./../victim", ".."])
def test_cli_repo_with_a_traversal_name_writes_nothing_outside(tmp_path, tiny_onnx, capsys, name):
    """`tritonkit repo --name ./../victim` once replaced the sibling folder `victim`."""
    work = tmp_path / "work"
    (work / "victim").mkdir(parents=True)
    (work / "victim" / "precious.txt").write_text("keep me")
    before = _tree(tmp_path)
    code = main(["repo", "--model", "demo_shapes", "--model-file", str(tiny_onnx), "--out", str(work / "repo"),
                 "--name", name])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "--name" in err and "not a model name" in err
    assert _tree(tmp_path) == before


def test_writer_refuses_traversal_names_and_symlinked_model_folders(tmp_path, tiny_onnx):
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    outside.mkdir()
    card = get_card("demo_shapes")
    with pytest.raises(TritonkitError, match="model name"):
        write_model(card, tiny_onnx, repo, RepoOptions(name="../victim"))
    repo.mkdir()
    (repo / "linked").symlink_to(outside)
    with pytest.raises(TritonkitError, match="outside"):
        write_model(card, tiny_onnx, repo, RepoOptions(name="linked"))
    with pytest.raises(TritonkitError, match="model name"):
        write_config_only(repo, "..", None)
    assert list(outside.iterdir()) == []
    assert write_model(card, tiny_onnx, repo, RepoOptions(name="ok_name")).path == repo / "ok_name"


def test_cli_validate_refuses_a_path_in_models(tmp_path, capsys):
    assert main(["validate", "--models", "good,../bad", "--out", str(tmp_path / "v")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'../bad'" in err
    assert not (tmp_path / "v").exists()


# ------------------------------------------------------------------------- --out
def _bad_outs(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {"is a file": a_file, "below a file": a_file / "sub", "not creatable": Path("/proc/tritonkit-out")}


def test_ensure_out_dir_names_what_is_wrong(tmp_path):
    for what, path in _bad_outs(tmp_path).items():
        with pytest.raises(TritonkitError, match=str(path).replace("\\", "\\\\")):
            ensure_out_dir(path, "--out")
    made = ensure_out_dir(tmp_path / "new" / "deeper")
    assert made.is_dir() and list(made.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_ensure_out_dir_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(TritonkitError, match="not a writable folder"):
            ensure_out_dir(ro)
    finally:
        ro.chmod(0o700)


STAGES = {
    "eval": ["eval", "classify", "--model", "demo_shapes", "--data", "nowhere"],
    "perf": ["perf", "sweep", "--model", "demo_shapes"],
    "validate": ["validate", "--models", "demo_shapes"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_bad_out_is_one_line_exit_1_for_every_stage(tmp_path, capsys, stage):
    for what, path in _bad_outs(tmp_path).items():
        code = main(STAGES[stage] + ["--out", str(path)])
        err = capsys.readouterr().err.strip()
        assert code == 1, (stage, what)
        assert len(err.splitlines()) == 1 and str(path) in err, (stage, what, err)


def test_disk_full_while_writing_a_report_is_one_line(capsys, monkeypatch):
    """A full disk cannot be produced on this machine without mounting a small filesystem, so the
    stage's run raises the OSError a full disk raises; what is tested is the CLI's handling."""
    import tritonkit.cli.cards as cards_cli

    def full(_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "reports/eval/classification.md")

    monkeypatch.setattr(cards_cli, "run", full)
    assert main(["cards", "resnet50"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "reports/eval/classification.md" in err and "No space left on device" in err


def test_other_os_errors_are_not_swallowed(monkeypatch):
    import tritonkit.cli.cards as cards_cli

    def broken(_args):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(cards_cli, "run", broken)
    with pytest.raises(OSError):
        main(["cards", "resnet50"])


def test_ensure_out_dir_without_create_probes_the_parent(tmp_path):
    target = tmp_path / "not" / "yet"
    assert ensure_out_dir(target, create=False) == target and not (tmp_path / "not").exists()
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    for what, path in _bad_outs(tmp_path).items():
        with pytest.raises(TritonkitError, match="--out"):
            ensure_out_dir(path, "--out", create=False)


def test_out_on_its_own_mount_builds_and_renames_inside_out(tmp_path, tiny_onnx, monkeypatch):
    # A separate mount can't be created here: this mocks one by making os.rename raise EXDEV
    # whenever source and destination are not both inside `repo` (as the kernel would).
    repo = tmp_path / "repo"
    repo.mkdir()
    real_rename = os.rename

    def rename(src, dst, *a, **kw):
        inside = [Path(p).resolve().is_relative_to(repo.resolve()) for p in (src, dst)]
        if inside[0] != inside[1]:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return real_rename(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(writer, "_same_device", lambda a, b: False, raising=False)
    card = get_card("demo_shapes")
    for _ in range(2):  # first write, then a rewrite
        written = write_model(card, tiny_onnx, repo, RepoOptions(name="mounted"))
        assert (written.path / "config.pbtxt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert sorted(p.name for p in repo.iterdir()) == ["mounted"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_out_owned_but_parent_read_only_still_writes(tmp_path, tiny_onnx):
    parent = tmp_path / "locked"
    repo = parent / "repo"
    repo.mkdir(parents=True)
    parent.chmod(0o555)
    try:
        written = write_model(get_card("demo_shapes"), tiny_onnx, repo, RepoOptions(name="owned"))
        assert (written.path / "config.pbtxt").is_file()
        assert sorted(p.name for p in repo.iterdir()) == ["owned"]
    finally:
        parent.chmod(0o755)
