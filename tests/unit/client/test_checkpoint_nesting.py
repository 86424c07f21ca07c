"""A checkpoint line nested absurdly deep is a corrupt line (skipped and listed), not a crash."""

from __future__ import annotations

from tritonkit.client.checkpoint import scan_checkpoint


def test_deeply_nested_checkpoint_line_is_skipped_not_a_crash(tmp_path):
    path = tmp_path / "ck.jsonl"
    good = b'{"key": "a.jpg", "record": {"x": 1}}\n'
    path.write_bytes(good + b"[" * 100_000 + b"]" * 100_000 + b"\n" + good.replace(b"a.jpg", b"b.jpg"))
    scan = scan_checkpoint(path)
    assert set(scan.entries) == {"a.jpg", "b.jpg"}
    assert [why for _, why in scan.skipped] == ["is nested too deeply to parse"]
