"""The benchmark machinery behind ``qsketch bench``, on tiny inputs.

Adapters against exact answers while the sketches are exact, the equal-bytes
tuner, missing peers, the report files, and the command's arguments.  The
suite itself (its numbers) is not tested here: docs/benchmarks.md is its
output.
"""

import sys

import numpy as np
import pytest

from qsketch.bench import accuracy, command, peers, speed, streams
from qsketch.cli import build_parser

# Roomy parameters: every sketch below holds 60 items without compacting.
ROOMY = {"tdigest (PyPI)": 0.01, "ddsketch": 0.01}


def _roomy(peer):
    return ROOMY.get(peer.name, peer.candidates[len(peer.candidates) // 2])


def _installed(peer):
    try:
        peers._import(peer.requires)
    except ImportError:
        return False
    return True


EXACT_PEERS = [p for p in peers.PEERS if p.exact_small]


@pytest.fixture(scope="module")
def small():
    """60 items: 20 integers three times each, shuffled (float32-representable)."""
    data = np.random.default_rng(3).permutation(np.repeat(np.arange(20.0), 3))
    return data, accuracy.exact_truth(data)


@pytest.mark.parametrize("peer", EXACT_PEERS, ids=lambda p: p.name)
def test_adapters_are_exact_while_the_sketch_is(peer, small):
    if not _installed(peer):
        pytest.skip(f"{peer.requires} is not installed")
    data, truth = small
    sketch = peer.build(_roomy(peer), 1)
    sketch.update(sketch.prepare(data))
    assert sketch.count() == data.size
    errors = accuracy.rank_errors(sketch, truth)
    assert set(errors) == set(peer.sides)
    for side, err in errors.items():
        assert err.max() < 1e-12, (peer.name, side)
    if len(peer.sides) == 3:  # one-sided sketches return a true p-quantile
        assert accuracy.quantile_errors(sketch, truth).max() == 0.0


def test_exact_truth_rules():
    truth = accuracy.exact_truth(np.array([1.0, 2.0, 2.0, 3.0]))
    at_two = truth.probes == 2.0
    assert np.all(truth.ranks["inclusive"][at_two] == 0.75)
    assert np.all(truth.ranks["exclusive"][at_two] == 0.25)
    assert np.all(truth.ranks["mid"][at_two] == 0.5)
    assert truth.probes.size == 1002


def test_one_interpolated_rank_has_no_one_sided_rule():
    peer = peers.get("DS tdigest_double")
    if not _installed(peer):
        pytest.skip("datasketches is not installed")
    sketch = peer.build(100, 0)
    sketch.update(sketch.prepare(np.arange(10.0)))
    assert list(accuracy.rank_errors(sketch, accuracy.exact_truth(np.arange(10.0)))) == ["mid"]
    with pytest.raises(ValueError):
        sketch.rank(np.array([1.0]), "inclusive")


@pytest.mark.parametrize("name", ["qsketch learned", "DS kll_doubles"])
@pytest.mark.parametrize("target", [2048, 4096])
def test_tuner_hits_the_target(name, target):
    peer = peers.get(name)
    if not _installed(peer):
        pytest.skip(f"{peer.requires} is not installed")
    reference = streams.load("normal", n=20_000, seed=99)
    tuned = accuracy.tune(peer, target, reference)
    assert 0.95 * target <= tuned.nbytes <= target  # the largest size within the budget
    sketch = peer.build(tuned.param, 0)
    sketch.update(sketch.prepare(reference))
    assert abs(sketch.nbytes() - target) <= 0.1 * target


def test_missing_peer_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "crick", None)  # import crick now raises ImportError
    run, notes = peers.available(["qsketch step", "crick"])
    assert [p.name for p in run] == ["qsketch step"]
    assert len(notes) == 1 and notes[0].startswith("crick: skipped") and "not installed" in notes[0]


def test_quick_mode_leaves_out_the_slow_peer():
    run, notes = peers.available(["qsketch step", "tdigest (PyPI)"], quick=True)
    assert [p.name for p in run] == ["qsketch step"]
    assert "--quick" in notes[0]


def test_partitions():
    x = np.arange(10.0)
    iid = accuracy.partitions(x, 3, "iid")
    assert sorted(np.concatenate(iid).tolist()) == x.tolist() and len(iid) == 3
    srt = accuracy.partitions(x[::-1], 2, "sorted")
    assert srt[0].max() < srt[1].min()


TINY_SPEED = speed.SpeedConfig(n_batch=4096, n_item=200, n_micro=2048, micro=1024, n_query_sketch=4096,
                               n_queries=64, n_parts=4, part_n=256, repeat=1, min_time=0.0005)


def test_bench_writes_the_report(tmp_path, monkeypatch):
    """A whole run on tiny streams, one per family, with a peer missing."""
    monkeypatch.setitem(sys.modules, "crick", None)
    monkeypatch.setattr(speed, "QUICK", TINY_SPEED)
    out = tmp_path / "report"
    args = build_parser().parse_args([
        "bench", "--quick", "--out", str(out), "--n", "3000", "--sizes", "1",
        "--streams", "diamonds_carat,normal,zoom_in,eval_scores",
        "--peers", "qsketch step,qsketch learned,DS kll_doubles,crick", "--quiet"])
    assert args.handler(args) == 0
    text = (out / "report.md").read_text()
    for family in streams.FAMILIES:
        assert family in text.lower()
    for section in ("## Headline", "## One-sided rules", "## Quantile-side error", "## Merge accuracy",
                    "## Speed", "Physical limits", "np.sort"):
        assert section in text
    assert "crick: skipped" in text
    assert "qsketch bench --quick --n 3000 --sizes 1" in text
    assert "commit" in text
    images = sorted(p.name for p in (out / "img").glob("*.png"))
    pytest.importorskip("matplotlib")
    assert "bench_speed.png" in images
    assert "bench_error_vs_bytes_synthetic.png" in images
    for name in images:
        assert f"img/{name}" in text


def test_bench_arguments():
    parser = build_parser()
    args = parser.parse_args(["bench", "--quick", "--out", "somewhere"])
    assert args.quick and args.out == "somewhere" and args.report_name == "report.md"
    cfg = command.config_for(args)
    assert cfg.mode == "quick" and cfg.accuracy.targets == (1024, 4096)
    assert {streams.STREAMS[s].family for s in cfg.accuracy.streams} == set(streams.FAMILIES)
    full = command.config_for(parser.parse_args(["bench"]))
    assert full.mode == "full" and full.accuracy.targets == (1024, 4096, 16384) and full.accuracy.streams is None
    args = parser.parse_args(["bench", "--sizes", "2,8", "--n", "5000", "--streams", "normal", "--no-speed"])
    cfg = command.config_for(args)
    assert cfg.accuracy.targets == (2048, 8192) and cfg.accuracy.n == 5000 and not cfg.do_speed
    assert cfg.accuracy.merge_streams == ("normal",)
    for bad in (["bench", "--streams", "nope"], ["bench", "--peers", "nope"], ["bench", "--sizes", "x"],
                ["bench", "--n", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_benchmarks_streams_reexports_the_registry():
    pytest.importorskip("benchmarks.streams")
    from benchmarks import streams as old

    assert old.load is streams.load and old.names() == streams.names()
