"""ScoreAggregator and GroupStats against exact numpy answers: moments and
their Chan merges in any order, quantiles, pass rates, KS distance, tables."""

import functools
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsketch
from qsketch.eval import GroupStats, KSResult, RecordError, ScoreAggregator, ks_distance

import eval_oracle as oracle


def stats(values, seed=0, how="array"):
    g = GroupStats(qsketch.KLLSketch(seed=seed))
    if how == "array":
        g.add_array(values)
    else:
        for v in values:
            g.add(v)
    return g


# ---- moments and merges -----------------------------------------------------------

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
scores = st.one_of(finite, st.integers(-5, 5).map(float), st.sampled_from([0.0, 1.0]))


def _close(a, b, scale):
    return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)


def _fold_left(parts):
    acc = parts[0].copy()
    for p in parts[1:]:
        acc.merge(p)
    return acc


def _fold_right(parts):
    acc = parts[-1].copy()
    for p in reversed(parts[:-1]):
        acc.merge(p)
    return acc


def _tree(parts):
    level = [p.copy() for p in parts]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            level[i].merge(level[i + 1])
            nxt.append(level[i])
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@given(st.lists(scores, min_size=1, max_size=300), st.lists(st.integers(0, 300), max_size=8),
       st.randoms(use_true_random=False))
@settings(max_examples=60)
def test_shards_merged_in_several_orders_give_same_moments(values, cuts, rnd):
    cuts = sorted({c % (len(values) + 1) for c in cuts} | {0, len(values)})
    shards = [values[a:b] for a, b in zip(cuts, cuts[1:])]
    # Each shard fed a different way: whole arrays, item by item, or both.
    parts = []
    for i, shard in enumerate(shards):
        g = GroupStats(qsketch.KLLSketch(seed=i))
        if i % 3 == 0:
            g.add_array(shard)
        elif i % 3 == 1:
            for v in shard:
                g.add(v)
        else:
            g.add_array(shard[: len(shard) // 2])
            for v in shard[len(shard) // 2:]:
                g.add(v)
        g.unscored, g.nan_count, g.non_numeric = i, 2 * i, 3 * i
        parts.append(g)
    shuffled = parts[:]
    rnd.shuffle(shuffled)
    results = [_fold_left(parts), _fold_right(parts), _tree(parts), _fold_left(shuffled), _tree(shuffled)]
    m = oracle.moments(values)
    scale = max(1.0, float(np.max(np.abs(values))) ** 2 * len(values))
    for r in results:
        assert r.count == m["n"] and r.sketch.n == m["n"]
        assert (r.unscored, r.nan_count, r.non_numeric) == (sum(range(len(parts))),
                                                            2 * sum(range(len(parts))),
                                                            3 * sum(range(len(parts))))
        assert (r.min, r.max) == (m["min"], m["max"])
        assert _close(r.sum, m["sum"], scale ** 0.5)
        assert _close(r.mean, m["mean"], 1.0)
        assert _close(r.m2, m["m2"], scale)
    first = results[0]
    for r in results[1:]:
        assert _close(r.mean, first.mean, 1.0) and _close(r.m2, first.m2, scale)


def test_merge_with_empty_groups_and_self():
    a = stats([1.0, 2.0, 3.0])
    empty = GroupStats(qsketch.KLLSketch(seed=9))
    a.merge(empty)
    assert (a.count, a.mean, a.m2) == (3, 2.0, 2.0)
    empty.merge(a)
    assert (empty.count, empty.mean, empty.m2, empty.min, empty.max) == (3, 2.0, 2.0, 1.0, 3.0)


def test_nan_is_counted_not_aggregated():
    g = stats([1.0, float("nan"), 3.0])
    g.add(float("nan"))
    assert (g.count, g.nan_count, g.mean, g.sketch.n) == (2, 2, 2.0, 2)


def test_variance_and_ci_match_numpy():
    x = np.random.default_rng(3).normal(5.0, 2.0, size=5000)
    g = stats(x)
    assert g.variance == pytest.approx(np.var(x, ddof=1), rel=1e-12)
    lo, hi = g.mean_ci()
    half = 1.959963984540054 * np.std(x, ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, rel=1e-12) and hi == pytest.approx(x.mean() + half, rel=1e-12)
    single = stats([1.0])
    assert math.isnan(single.variance) and all(math.isnan(v) for v in single.mean_ci())


# ---- quantiles, pass rates against exact answers ---------------------------------------


@pytest.mark.parametrize("name, make", [
    ("binary", lambda r: (r.random(5000) < 0.7).astype(float)),
    ("grades", lambda r: r.choice([0.0, 0.5, 1.0], size=3000)),
    ("likert", lambda r: r.integers(1, 6, size=4000).astype(float)),
    ("small continuous", lambda r: r.random(150)),
    ("reward model", lambda r: r.normal(size=20000)),
    ("similarity", lambda r: r.beta(5, 2, size=20000)),
])
def test_group_answers_match_exact(name, make):
    x = make(np.random.default_rng(11))
    for how in ("array", "scalar"):
        g = stats(x, seed=5, how=how)
        oracle.check_group(g, x, quantile_ps=(0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0),
                           thresholds=(-1.0, 0.0, 0.3, 0.5, 0.9, 1.0, 3.0, 10.0), rel=1e-9)


def test_discrete_scores_are_exact_and_continuous_ones_bounded():
    rng = np.random.default_rng(2)
    assert stats((rng.random(10000) < 0.3).astype(float)).is_exact  # few distinct values
    g = stats(rng.normal(size=10000))
    assert not g.is_exact
    assert 0 < g.rank_error() < 0.05


def test_pass_rate_outside_the_range_is_exact():
    g = stats(np.random.default_rng(4).normal(size=10000))
    assert g.pass_rate(g.min) == (1.0, 1.0, 1.0)
    assert g.pass_rate(-100.0) == (1.0, 1.0, 1.0)
    assert g.pass_rate(100.0) == (0.0, 0.0, 0.0)


def test_empty_group_answers_nan():
    g = GroupStats(qsketch.KLLSketch(seed=0))
    assert all(math.isnan(v) for v in g.quantile(0.5) + g.pass_rate(0.5))


# ---- KS distance ---------------------------------------------------------------------


@pytest.mark.parametrize("n_a, n_b", [(50, 80), (150, 150)])
def test_ks_exact_mode_equals_exact_statistic(n_a, n_b):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=n_a), rng.normal(0.3, 1.0, size=n_b)
    r = ks_distance(stats(a, 1), stats(b, 2))
    assert r.exact and r.error_bound == 0.0
    assert r.distance == pytest.approx(oracle.ks(a, b), abs=1e-15)
    assert r.mean_diff == pytest.approx(a.mean() - b.mean())


def test_ks_discrete_scores_exact():
    rng = np.random.default_rng(8)
    a = (rng.random(20000) < 0.6).astype(float)
    b = rng.choice([0.0, 0.5, 1.0], size=30000)
    r = ks_distance(stats(a, 1), stats(b, 2))
    assert r.exact and r.distance == pytest.approx(oracle.ks(a, b), abs=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.1, 1.0])
def test_ks_estimation_mode_within_bound(shift):
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=30000), rng.normal(shift, 1.0, size=20000)
    r = ks_distance(stats(a, 1), stats(b, 2))
    assert not r.exact
    assert r.error_bound == pytest.approx(2 * qsketch.KLLSketch(200).normalized_rank_error(True))
    true = oracle.ks(a, b)
    assert r.low <= true <= r.high


def test_ks_of_raw_sketches_and_empty_groups():
    x = qsketch.KLLSketch(seed=1)
    x.update([1.0, 2.0])
    y = qsketch.KLLSketch(seed=2)
    y.update([1.0, 2.0])
    r = ks_distance(x, y)
    assert isinstance(r, KSResult) and r.distance == 0.0 and math.isnan(r.mean_diff)
    with pytest.raises(ValueError):
        ks_distance(x, qsketch.KLLSketch(seed=3))


# ---- the aggregator ------------------------------------------------------------------


def _records(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        model = ["alpha", "beta", "gamma"][i % 3]
        task = ["sycophancy", "qa"][rng.integers(2)]
        out.append({"model": model, "task": task, "epoch": 1 + i % 2,
                    "scores": {"match": "C" if rng.random() < (0.5 + 0.1 * (i % 3)) else "I",
                               "reward": float(rng.normal(i % 3, 1.0))}})
    return out


def _expected(records):
    exp = {}
    for r in records:
        for metric, v in r["scores"].items():
            x = {"C": 1.0, "I": 0.0}.get(v, v)
            exp.setdefault((r["model"], r["task"], metric), []).append(x)
    return exp


def test_every_group_matches_numpy():
    recs = _records()
    agg = ScoreAggregator(by=("model", "task"), seed=1, quantiles=(0.1, 0.5, 0.9), thresholds=(0.5, 1.0))
    report = agg.add_records(recs)
    assert (report.records, report.skipped) == (len(recs), 0)
    exp = _expected(recs)
    assert agg.groups() == sorted(exp)
    for key, values in exp.items():
        oracle.check_group(agg.group(key), values, thresholds=(0.5, 1.0), rel=1e-9)
    table = agg.summary()
    assert len(table) == len(exp)
    for row in table:
        key = (row["model"], row["task"], row["metric"])
        x = np.asarray(exp[key])
        assert row["n"] == x.size
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert row["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-9)
        half = 1.959963984540054 * np.std(x, ddof=1) / math.sqrt(x.size)
        assert row["mean_ci_low"] == pytest.approx(x.mean() - half, rel=1e-9)
        if row["metric"] == "match":
            assert row["exact"] and row["pass>=0.5"] == float(np.mean(x >= 0.5))
            assert row["q0.5"] == oracle.quantiles(x, [0.5])[0]


def test_batch_forms_agree():
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    recs = _records(900, seed=4)
    flat = [{"model": r["model"], "task": r["task"], "scores.match": r["scores"]["match"],
             "scores.reward": r["scores"]["reward"]} for r in recs]
    numeric = [{**f, "scores.match": 1.0 if f["scores.match"] == "C" else 0.0} for f in flat]
    ref = ScoreAggregator(seed=1)
    for r in recs:
        ref.add(r)
    variants = {
        "list": recs,
        "pandas object column": pd.DataFrame(flat),
        "pandas numeric": pd.DataFrame(numeric),
        "pandas nested rows": pd.DataFrame({"model": [r["model"] for r in recs], "task": [r["task"] for r in recs],
                                            "scores": [r["scores"] for r in recs]}),
        "pyarrow": pa.Table.from_pylist(numeric),
        "pyarrow grades": pa.Table.from_pylist(flat),
    }
    for name, table in variants.items():
        agg = ScoreAggregator(seed=1)
        agg.add_batch(table)
        assert agg.groups() == ref.groups(), name
        for key in ref.groups():
            a, b = agg.group(key), ref.group(key)
            assert (a.count, a.unscored, a.nan_count) == (b.count, b.unscored, b.nan_count), name
            assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.m2 == pytest.approx(b.m2, rel=1e-9), name
            assert a.sketch.n == b.sketch.n


def test_pandas_missing_values_are_unscored():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"model": ["a"] * 4, "acc": pd.array([1, None, 0, 1], dtype="Int64")})
    agg = ScoreAggregator(by=["model"], score="acc", seed=0)
    agg.add_batch(df)
    g = agg.group(("a", "acc"))
    assert (g.count, g.unscored, g.mean) == (3, 1, pytest.approx(2 / 3))


def test_add_batch_is_all_or_nothing():
    agg = ScoreAggregator(by=["model"], score="acc", seed=0)
    with pytest.raises(RecordError, match=r"row 2.*missing field 'model'"):
        agg.add_batch([{"model": "a", "acc": 1}, {"acc": 0}])
    assert len(agg) == 0
    with pytest.raises(TypeError):
        agg.add_batch({"model": "a", "acc": 1})


def test_missing_fields_are_reported_with_locations():
    agg = ScoreAggregator(by=["model", "task"], seed=0)
    report = agg.add_records([
        {"model": "a", "task": "t", "scores": {"s": 1}},
        {"model": "a", "scores": {"s": 1}},
        {"model": "a", "task": "t"},
        {"model": "a", "task": "t", "scores": None, "error": "RuntimeError: boom"},
        {"model": "a", "task": "t", "scores": {}},
        ["not", "a", "record"],
        {"model": "a", "task": "t", "scores": [1, 2]},
    ])
    assert (report.records, report.skipped, agg.skipped_records) == (1, 6, 6)
    messages = [str(e) for e in report.errors]
    assert messages[0] == "<records>:2: missing field 'task'"
    assert "no 'scores' field" in messages[1]
    assert "no scores (sample error: RuntimeError: boom)" in messages[2]
    assert "mapping" in messages[4] and "mapping" in messages[5]


def test_explicit_score_paths_and_names():
    agg = ScoreAggregator(by=["model"], score=["scores.acc", "reward"], seed=0)
    agg.add({"model": "m", "scores": {"acc": True}, "reward": 0.5})
    assert agg.groups() == [("m", "acc"), ("m", "reward")]
    agg2 = ScoreAggregator(by=["model"], score={"correct": "scores.acc"}, seed=0)
    agg2.add({"model": "m", "scores": {"acc": True}})
    assert agg2.groups() == [("m", "correct")]
    with pytest.raises(RecordError, match="missing score field 'scores.acc'"):
        agg.add({"model": "m", "reward": 1})


def test_bad_configuration():
    with pytest.raises(ValueError, match="reserved"):
        ScoreAggregator(by=["metric"])
    with pytest.raises(ValueError):
        ScoreAggregator(by=["a", "a"])
    with pytest.raises(ValueError):
        ScoreAggregator(score=["scores.x", "x"])
    with pytest.raises(ValueError):
        ScoreAggregator(quantiles=[1.5])
    with pytest.raises(TypeError):
        ScoreAggregator(sketch_factory=3)


def test_merge_aggregators_in_any_order_matches_one_pass():
    recs = _records(2400, seed=5)
    shards = [recs[i::4] for i in range(4)]
    whole = ScoreAggregator(seed=3)
    whole.add_records(recs)
    aggs = []
    for i, shard in enumerate(shards):
        a = ScoreAggregator(seed=10 + i)
        a.add_records(shard)
        aggs.append(a)
    for order in itertools.permutations(range(4)):
        total = ScoreAggregator(seed=99)
        for i in order:
            total.merge(aggs[i])
        assert total.groups() == whole.groups()
        for key in whole.groups():
            a, b = total.group(key), whole.group(key)
            assert a.count == b.count and a.sketch.n == b.count
            assert math.isclose(a.mean, b.mean, rel_tol=1e-9) and math.isclose(a.m2, b.m2, rel_tol=1e-9)
    with pytest.raises(ValueError, match="different fields"):
        whole.merge(ScoreAggregator(by=["model"]))


def test_select_group_and_compare():
    agg = ScoreAggregator(seed=1)
    agg.add_records(_records(1500, seed=6))
    assert len(agg.select(model="alpha")) == 4
    assert agg.select({"model": "beta", "task": "qa", "metric": "match"}) == [("beta", "qa", "match")]
    with pytest.raises(KeyError, match="matches 4 groups"):
        agg.group({"model": "alpha"})
    with pytest.raises(KeyError):
        agg.select(nope=1)
    r = agg.compare({"model": "alpha", "task": "qa", "metric": "reward"},
                    ("gamma", "qa", "reward"))
    assert r.key_a == ("alpha", "qa", "reward") and r.distance > 0.5  # means 0 and 2
    pairs = agg.compare_pairs({"model": "alpha"}, {"model": "gamma"})
    assert len(pairs) == 4
    assert {(row["task"], row["metric"]) for row in pairs} == {(t, m) for t in ("qa", "sycophancy")
                                                               for m in ("match", "reward")}
    assert "KS distance" in pairs.to_text()


def test_custom_sketch_factory():
    made = []

    def factory(seed=None):
        s = qsketch.KLLSketch(64, seed=seed)
        made.append(s)
        return s

    agg = ScoreAggregator(by=["m"], score="x", sketch_factory=factory, seed=1)
    agg.add_batch([{"m": 1, "x": float(i)} for i in range(1000)])
    assert agg.group((1, "x")).sketch.k == 64 and made
    agg2 = ScoreAggregator(by=["m"], score="x", sketch_factory=functools.partial(qsketch.KLLSketch, 50), seed=1)
    agg2.add({"m": 1, "x": 1.0})
    assert agg2.group((1, "x")).sketch.k == 50


def test_seeded_aggregators_are_reproducible():
    recs = _records(3000, seed=8)
    a, b = ScoreAggregator(seed=5), ScoreAggregator(seed=5)
    a.add_records(recs)
    b.add_records(recs)
    assert a.to_bytes() == b.to_bytes()


def test_table_renderings():
    agg = ScoreAggregator(by=["model"], score="x", seed=0)
    agg.add_batch([{"model": "a|b", "x": v} for v in (0.0, 1.0, None)])
    t = agg.summary(quantiles=[0.5], thresholds=[0.5])
    assert "unscored" in t.to_text() and "a\\|b" in t.to_markdown()
    assert t.to_csv().splitlines()[0].startswith("model,metric,n,unscored,nan,non_numeric,mean")
    import json

    payload = json.loads(t.to_json())
    assert payload["rows"][0]["n"] == 2 and payload["rows"][0]["unscored"] == 1
    empty = ScoreAggregator(by=["model"], score="x", seed=0)
    empty.add({"model": "z", "x": None})
    row = empty.summary()[0]
    assert row["n"] == 0 and math.isnan(row["mean"])
    json.loads(empty.summary().to_json())  # NaN becomes null
