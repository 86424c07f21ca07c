"""NVIDIA Model Analyzer (triton-model-analyzer 1.58, its own venv from scripts/setup.sh) takes a
tritonkit repository as it is: ``model-analyzer profile``, quick search, local launch of the
bundled tritonserver, CPU only, loopback (benchmarks/model_analyzer.py builds the config).

Its variants copy the repository's config and change ``max_batch_size`` (here to 1 and 2; the
card's is 64). With a warmup at the max batch, every such variant failed to load ("failed to run
warmup sample 'zeros_bs64': batch size 64 ... max allowed is 1", seen with the user's brute search
and again here: the slow test below). tritonkit now warms up at batch 1 only by default.

The quick search here is bounded (concurrency <= 2, 1 instance, max batch <= 2, no concurrency
sweep, no reports): about a minute on 2 loaded cores, so it is in the default tier; the
before/after contrast (a second Model Analyzer run) is in the slow tier.
"""

from __future__ import annotations

import pytest

from benchmarks import model_analyzer
from benchmarks.model_analyzer import Search, locate_model_analyzer, read_profile, run_profile
from tritonkit.cards import get_card
from tritonkit.cli import main
from tritonkit.model_repository.config import RepoOptions, parse_config
from tritonkit.model_repository.writer import write_model

from support import readme

pytestmark = pytest.mark.skipif(locate_model_analyzer() is None,
                                reason="Model Analyzer not installed (scripts/setup.sh puts it in .venv/model-analyzer)")
CARD = get_card("demo_shapes")   # max_batch_size 64
TINY = Search(mode="quick", max_concurrency=2, max_instances=1, max_batch=2)


def _profile(tmp_path, tiny_onnx, **repo_options):
    repo = tmp_path / "repo"
    write_model(CARD, tiny_onnx, repo, RepoOptions(target="cpu", **repo_options))
    return run_profile(locate_model_analyzer(), repo, CARD.name, tmp_path / "ma", TINY, timeout_s=600)


def _tail(profile) -> str:
    return "\n".join(profile.log.read_text(errors="replace").splitlines()[-25:])


def test_quick_search_loads_every_variant_of_a_tritonkit_repository(tmp_path, tiny_onnx):
    """README, Operating it / Model Analyzer: its two commands as written (paths mapped here)."""
    repo_cmd, ma_cmd = readme.commands("### Model Analyzer")
    values = {"demo_shapes.onnx": str(tiny_onnx), "model_repository": str(tmp_path / "repo"),
              "reports/ma": str(tmp_path / "ma")}
    assert main(readme.substituted(repo_cmd, values)[1:]) == 0
    assert ma_cmd[:3] == [".venv/bin/python", "-m", "benchmarks.model_analyzer"]
    code = model_analyzer.main(readme.substituted(ma_cmd, values)[3:])
    profile = read_profile(tmp_path / "ma")
    assert code == 0, _tail(profile)
    assert profile.load_failures == []
    measured = {r["Model Config Path"]: int(r["Max Batch Size"]) for r in profile.rows}
    # Model Analyzer's variants with a smaller max batch than the repository's loaded and were measured
    assert {1, 2} <= set(measured.values()) and 64 in measured.values(), measured
    for folder in profile.loaded:
        cfg = parse_config((profile.output_repo / folder / "config.pbtxt").read_text())
        assert all(w.batch_size <= cfg.max_batch_size for w in cfg.model_warmup)
        assert cfg.parameters["tritonkit_card"].string_value  # the variant keeps the card tritonkit wrote
    assert profile.pick is not None and profile.pick_folder().is_dir()


@pytest.mark.slow
def test_a_warmup_at_the_max_batch_fails_the_smaller_variants(tmp_path, tiny_onnx):
    """The failure the default avoids, with Model Analyzer itself (repo --warmup-max-batch)."""
    profile = _profile(tmp_path, tiny_onnx, warmup_max_batch=True)
    assert profile.load_failures, _tail(profile)
    assert {int(r["Max Batch Size"]) for r in profile.rows} == {64}   # only the repository's own config ran
    # Model Analyzer reports the failed load as the server's answer, or as the connection the server
    # dropped while failing it; the server's own log names the warmup either way
    server_log = (tmp_path / "ma" / "tritonserver.log").read_text(errors="replace")
    assert "failed to run warmup sample 'zeros_bs64'" in server_log
