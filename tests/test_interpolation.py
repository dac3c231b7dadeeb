"""The rank and quantile estimators (csrc/qs_interp.c, qsketch.KLLSketch).

"step" is KLL's step function over the retained items; "linear" and
"learned" (the default) spread the weight of each item of a compacted level
into the gaps next to it.  What they promise (tests/interp_bounds.py):

(a) every rank they give lies in the step interval [exclusive, inclusive]
    widened by the slack (half an item weight per compacted level), so their
    error stays within KLL's bound plus that slack, on any stream; ranks are
    monotone in x, quantiles monotone in p, and quantile inverts rank;
(b) values retained more than once (atoms: ties, discrete scores) keep their
    whole weight: no mass is smeared into the gaps between discrete values;
(c) in the exact low-cardinality mode every estimator is exact;
(d) the estimator is a per-sketch default that a query can override, and it
    survives serialization; bad names and bad exact limits are rejected;
(e) infinities, huge and subnormal values never give NaN.

Fixed seeds throughout: the suite gives the same numbers on every run.
"""

import copy
import math
import pickle

import numpy as np
import pytest

import qsketch
from qsketch import KLLSketch

from interp_bounds import (
    ESTIMATORS,
    INTERPOLATING,
    TOL,
    assert_within_step_interval,
    compacted_level,
    conservative_slack,
    interp_slack,
)
from oracle import exact_quantile, exact_rank, exact_weighted_rank

N = 200_000
SEEDS = range(10)
KS = (64, 200)
BOUND = 2.0  # in units of normalized_rank_error(), as in test_accuracy.py

ADVERSARIAL = ["sorted", "reversed", "zoom_in", "shift", "binary", "scores", "zero_inflated"]
DISCRETE = {"binary", "scores"}  # fed with exact_limit=0: the compactors in estimation mode


def adversarial(name, n=N):
    rng = np.random.default_rng(7000 + ADVERSARIAL.index(name))
    if name == "sorted":
        return np.sort(rng.normal(size=n))
    if name == "reversed":
        return np.sort(rng.normal(size=n))[::-1].copy()
    if name == "zoom_in":  # 1 +- r^i: clusters closing in on 1.0 from both sides, spacing shrinking geometrically
        i = np.arange(n)
        return 1.0 + np.where(i % 2 == 0, 1.0, -1.0) * np.power(0.9999, i // 2)
    if name == "shift":  # uniform, then a narrow cluster inside it from halfway
        h = n // 2
        return np.concatenate([rng.random(h), rng.normal(0.5, 0.001, size=n - h)])
    if name == "binary":
        return (rng.random(n) < 0.3).astype(np.float64)
    if name == "scores":
        return rng.integers(1, 11, size=n).astype(np.float64)
    if name == "zero_inflated":  # 70% exact zeros, the rest lognormal
        return np.where(rng.random(n) < 0.7, 0.0, rng.lognormal(sigma=1.5, size=n))
    raise KeyError(name)


_CACHE = {}


def reference(name):
    if name not in _CACHE:
        data = adversarial(name)
        xs = np.sort(data)
        probes = xs[np.linspace(0, xs.size - 1, 1000).round().astype(int)]
        _CACHE[name] = (data, xs, probes)
    return _CACHE[name]


def between_retained(s, limit=1000):
    """Values strictly between consecutive distinct retained items (half way,
    and just next to each item), at most ``limit`` of them."""
    items = np.unique(s.sorted_view()[0])
    items = items[np.isfinite(items)]
    if items.size < 2:
        return np.empty(0)
    mids = items[:-1] / 2 + items[1:] / 2
    near = np.concatenate([np.nextafter(items[:-1], np.inf), np.nextafter(items[1:], -np.inf)])
    out = np.concatenate([mids, near])
    if out.size > limit:
        out = out[np.linspace(0, out.size - 1, limit).round().astype(int)]
    return out


def quantile_tol(s):
    """quantile() rounds p n to 2**-20 of an item (qs_kll_quantile)."""
    return 2.0**-20 / s.n + TOL


def check_guarantee(s, xs, probes):
    """(a) for one sketch of the sorted stream xs."""
    eps = s.normalized_rank_error()
    slack = interp_slack(s)
    assert 0 < slack <= conservative_slack(s)
    q = np.sort(np.concatenate([probes, between_retained(s), [xs[0] - 1.0, xs[-1] + 1.0]]))
    exact_in = exact_rank(xs, q, "inclusive", presorted=True)
    exact_ex = exact_rank(xs, q, "exclusive", presorted=True)
    step_in = s.rank(q, estimator="step")
    step_ex = s.rank(q, inclusive=False, estimator="step")
    # KLL's bound for the step estimator itself
    assert max(np.abs(step_in - exact_in).max(), np.abs(step_ex - exact_ex).max()) <= BOUND * eps
    ps = np.linspace(0, 1, 1001)
    for est in INTERPOLATING:
        r_in = s.rank(q, estimator=est)
        r_ex = s.rank(q, inclusive=False, estimator=est)
        for r in (r_in, r_ex):
            # within the widened step interval
            assert np.all(r >= step_ex - slack - TOL), (est, (step_ex - slack - r).max())
            assert np.all(r <= step_in + slack + TOL), (est, (r - step_in - slack).max())
            # monotone in x, within [0, 1]
            assert np.all(np.diff(r) >= 0), est
            assert np.all((r >= 0) & (r <= 1))
        assert np.all(r_ex <= r_in)
        # accurate: KLL's bound plus the slack
        err = max(np.abs(r_in - exact_in).max(), np.abs(r_ex - exact_ex).max())
        assert err <= BOUND * eps + slack, f"{est}: rank error {err:.5f} > {BOUND} * {eps:.5f} + {slack:.5f}"
        # quantiles: monotone in p, the exact extremes, accurate
        for inclusive in (True, False):
            qv = s.quantile(ps, inclusive=inclusive, estimator=est)
            assert np.all(np.diff(qv) >= 0), est
            assert qv[0] == xs[0] and qv[-1] == xs[-1]
            lo = exact_rank(xs, qv, "exclusive", presorted=True)
            hi = exact_rank(xs, qv, "inclusive", presorted=True)
            gap = np.maximum(lo - ps, ps - hi).max()
            assert gap <= BOUND * eps + slack, f"{est}: quantile rank gap {gap:.5f}"
        # quantile(rank(x)): p = rank(x) lies in the rank interval of the
        # answer (quantile inverts rank), and the answer is accurate
        inner = (r_in > 0) & (r_in < 1)
        y = s.quantile(r_in[inner], estimator=est)
        tol = quantile_tol(s)
        assert np.all(s.rank(y, estimator=est) >= r_in[inner] - tol), est
        assert np.all(s.rank(y, inclusive=False, estimator=est) <= r_in[inner] + tol), est
        lo = exact_rank(xs, y, "exclusive", presorted=True)
        hi = exact_rank(xs, y, "inclusive", presorted=True)
        assert np.maximum(lo - r_in[inner], r_in[inner] - hi).max() <= BOUND * eps + slack, est


# ---- (a) the guarantee on adversarial streams ----------------------------------------


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("name", ADVERSARIAL)
def test_guarantee_on_adversarial_streams(name, k):
    data, xs, probes = reference(name)
    for seed in SEEDS:
        s = KLLSketch(k, seed=seed, exact_limit=0 if name in DISCRETE else None)
        s.update(data)
        assert s.is_estimation_mode and s.exact_limit == 0
        assert s.n == N and s.min == xs[0] and s.max == xs[-1]
        check_guarantee(s, xs, probes)


def test_guarantee_after_merges():
    """Shards of the zoom-in stream, merged: the slack is still the bound."""
    data, xs, probes = reference("zoom_in")
    for seed in range(3):
        shards = []
        for i, part in enumerate(np.array_split(data, 16)):
            s = KLLSketch(100, seed=seed * 100 + i)
            s.update(part)
            shards.append(s)
        m = qsketch.merge_all(shards)
        check_guarantee(m, xs, probes)


def test_slack_helper_reads_the_compaction_level():
    """The slack counts levels up to the highest compaction only (byte 11 of
    the header): weighted items above it add none."""
    s = KLLSketch(200, seed=1, exact_limit=0)
    s.update(np.random.default_rng(1).normal(size=10_000))
    top = compacted_level(s)
    assert top == len(s._levels()) - 1
    before = interp_slack(s)
    assert before > 0 and before == conservative_slack(s)  # every non-empty level was compacted
    s.update([0.0], weights=[2**40])
    assert top <= compacted_level(s) < 40 and len(s._levels()) == 41 and s._levels()[40].size == 1
    assert interp_slack(s) < 2.0**compacted_level(s) * 10_000 / s.n  # level 40 adds nothing
    assert conservative_slack(s) > 0.49  # it would add (2**40 - 1) / 2 items


# ---- exact point masses above the highest compaction ----------------------------------


@pytest.mark.parametrize("est", INTERPOLATING)
def test_weighted_item_above_the_compactions_is_a_point_mass(est):
    """A weighted update puts an item of weight 2**20 alone at level 20, far
    above the levels the compactions reached: it is an exact item, and every
    estimator must count all of its weight at its value."""
    s = KLLSketch(200, seed=1, exact_limit=0)
    s.update(np.random.default_rng(0).random(10_000))
    s.update([0.5], weights=[2**20])
    assert 1 <= compacted_level(s) < 20
    n = s.n
    below = np.count_nonzero(np.random.default_rng(0).random(10_000) < 0.5)
    # the step estimator: the item's whole weight at its value
    step_jump = s.rank(0.5, estimator="step") - s.rank(0.5, inclusive=False, estimator="step")
    assert step_jump == pytest.approx(2**20 / n, abs=1e-12)
    assert s.rank(s.max, estimator=est) == 1.0
    jump = s.rank(0.5, estimator=est) - s.rank(0.5, inclusive=False, estimator=est)
    assert jump == pytest.approx(2**20 / n, abs=1e-12)
    assert s.rank(0.5, inclusive=False, estimator=est) == pytest.approx(below / n, abs=2 * s.normalized_rank_error())
    assert s.quantile(0.5, estimator=est) == 0.5
    assert_within_step_interval(s, np.linspace(0, 1, 101), est)


@pytest.mark.parametrize("est", INTERPOLATING)
def test_repeated_value_moved_out_of_the_table_keeps_its_weight(est):
    """A value counted 4096 times in the table goes to level 12 when the table
    moves into the compactors; later items compact the low levels only."""
    data = np.concatenate([np.full(4096, 0.5), np.random.default_rng(0).random(10_000)])
    s = KLLSketch(200, seed=1)
    s.update(data)
    assert s.exact_limit == 0 and s.is_estimation_mode
    xs = np.sort(data)
    q = np.array([0.25, 0.5, 0.75, s.max])
    eps = s.normalized_rank_error()
    err = np.abs(s.rank(q, estimator=est) - exact_rank(xs, q, presorted=True)).max()
    assert err <= BOUND * eps + interp_slack(s)
    assert s.rank(s.max, estimator=est) == 1.0


# ---- (b) atoms --------------------------------------------------------------------------


def discrete_stream(name, n=N):
    rng = np.random.default_rng({"binary": 11, "scores": 12, "likert": 13}[name])
    if name == "binary":
        return (rng.random(n) < 0.2).astype(np.float64)
    if name == "scores":
        return rng.integers(1, 11, size=n).astype(np.float64)
    # Likert 1..5, skewed
    return rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], p=[0.05, 0.1, 0.2, 0.4, 0.25], size=n)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("name", ["binary", "scores", "likert"])
def test_atoms_in_estimation_mode(name, k):
    data = discrete_stream(name)
    values = np.unique(data)
    xs = np.sort(data)
    gaps = np.concatenate([
        values[:-1] + (values[1:] - values[:-1]) * f for f in (1e-9, 0.25, 0.5, 0.75, 1 - 1e-9)
    ] + [np.nextafter(values, -np.inf), np.nextafter(values, np.inf), [values[0] - 1.0, values[-1] + 1.0]])
    ps = np.concatenate([np.linspace(0, 1, 2001), np.random.default_rng(k).random(500)])
    for seed in range(5):
        s = KLLSketch(k, seed=seed, exact_limit=0)
        s.update(data)
        assert s.is_estimation_mode
        items = s.sorted_view()[0]
        # every value is retained more than once: an atom
        assert all(np.count_nonzero(items == v) >= 2 for v in values)
        eps = s.normalized_rank_error()
        for est in INTERPOLATING:
            for inclusive in (True, False):
                # between two adjacent values (and at them) the rank is the step rank:
                # no mass smeared into the gaps
                np.testing.assert_allclose(
                    s.rank(gaps, inclusive=inclusive, estimator=est),
                    s.rank(gaps, inclusive=inclusive, estimator="step"), rtol=0, atol=TOL)
                np.testing.assert_allclose(
                    s.rank(values, inclusive=inclusive, estimator=est),
                    s.rank(values, inclusive=inclusive, estimator="step"), rtol=0, atol=TOL)
                # every quantile is one of the values
                qv = s.quantile(ps, inclusive=inclusive, estimator=est)
                assert np.all(np.isin(qv, values)), est
            # inclusive and exclusive ranks differ at each atom by about its frequency
            jump = s.rank(values, estimator=est) - s.rank(values, inclusive=False, estimator=est)
            freq = exact_rank(xs, values, presorted=True) - exact_rank(xs, values, "exclusive", presorted=True)
            assert np.all(jump > 0)
            assert np.abs(jump - freq).max() <= 2 * BOUND * eps
            # the rank is flat across each gap
            mids = values[:-1] / 2 + values[1:] / 2
            np.testing.assert_allclose(
                s.rank(mids, estimator=est), s.rank(values[:-1], estimator=est), rtol=0, atol=TOL)


# ---- (c) exactness in the table ---------------------------------------------------------


def table_stream(name, n=100_000):
    rng = np.random.default_rng({"binary": 21, "scores": 22, "likert": 23}.get(name, 24))
    if name == "binary":
        return (rng.random(n) < 0.4).astype(np.float64)
    if name == "scores":
        return rng.integers(1, 11, size=n).astype(np.float64)
    if name == "likert":
        return rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], p=[0.1, 0.15, 0.2, 0.3, 0.25], size=n)
    if name.startswith("distinct_"):  # that many distinct floats, with ties
        m = int(name.split("_")[1])
        values = rng.normal(size=m) * 10.0
        data = rng.choice(values, size=n)
        data[:m] = values  # every value present
        return data
    raise KeyError(name)


def assert_all_estimators_exact(s, data):
    xs = np.sort(data)
    values, counts = np.unique(xs, return_counts=True)
    q = np.concatenate([
        values, values[:-1] / 2 + values[1:] / 2, np.nextafter(values, -np.inf), np.nextafter(values, np.inf),
        [values[0] - 1.0, values[-1] + 1.0, -np.inf, np.inf],
    ])
    n = xs.size
    cum = np.cumsum(counts)
    ps = np.unique(np.clip(np.concatenate([
        np.linspace(0, 1, 1001), cum / n, (cum - 1) / n, (cum + 1) / n, cum / n - 1e-12, cum / n + 1e-12,
    ]), 0, 1))
    ex_in = exact_rank(xs, q, "inclusive", presorted=True)
    ex_ex = exact_rank(xs, q, "exclusive", presorted=True)
    ex_mid = exact_rank(xs, q, "mid", presorted=True)
    q_in = exact_quantile(xs, ps, True, presorted=True)
    q_ex = exact_quantile(xs, ps, False, presorted=True)
    for est in (None,) + ESTIMATORS:
        r_in = s.rank(q, estimator=est)
        r_ex = s.rank(q, inclusive=False, estimator=est)
        np.testing.assert_array_equal(r_in, ex_in)
        np.testing.assert_array_equal(r_ex, ex_ex)
        np.testing.assert_allclose((r_in + r_ex) / 2, ex_mid, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(s.quantile(ps, estimator=est), q_in)
        np.testing.assert_array_equal(s.quantile(ps, inclusive=False, estimator=est), q_ex)
        assert s.rank(float(values[0]), estimator=est) == ex_in[0]  # the scalar path


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("name", ["binary", "scores", "likert", "distinct_256"])
def test_up_to_256_distinct_values_are_exact(name, k):
    data = table_stream(name)
    s = KLLSketch(k, seed=1)
    s.update(data)
    assert not s.is_estimation_mode and s.exact_limit == (256 if k == 64 else 300)
    assert s.num_retained == np.unique(data).size
    assert interp_slack(s) == 0.0
    assert_all_estimators_exact(s, data)
    lo, hi = s.rank_bounds(np.unique(data))
    np.testing.assert_array_equal(lo, hi)


@pytest.mark.parametrize("distinct", [257, 280, 300])
def test_up_to_the_exact_limit_is_exact(distinct):
    data = table_stream(f"distinct_{distinct}")
    s = KLLSketch(200, seed=1)  # limit 300
    s.update(data)
    assert s.exact_limit == 300 and not s.is_estimation_mode
    assert s.num_retained == distinct
    assert_all_estimators_exact(s, data)


@pytest.mark.parametrize("k,distinct", [(200, 301), (64, 257)])
def test_one_value_past_the_limit_leaves_the_table(k, distinct):
    data = table_stream(f"distinct_{distinct}")
    s = KLLSketch(k, seed=1)
    s.update(data)
    assert s.exact_limit == 0 and s.is_estimation_mode
    xs = np.sort(data)
    assert s.n == data.size and s.min == xs[0] and s.max == xs[-1]
    values = np.unique(xs)
    eps = s.normalized_rank_error()
    for est in ESTIMATORS:
        slack = 0.0 if est == "step" else interp_slack(s)
        err = np.abs(s.rank(values, estimator=est) - exact_rank(xs, values, presorted=True)).max()
        assert err <= BOUND * eps + slack, est


def test_weighted_updates_in_the_table_are_exact():
    rng = np.random.default_rng(5)
    values = rng.integers(0, 40, size=3000).astype(float)
    weights = rng.integers(1, 10**6, size=3000)
    s = KLLSketch(seed=1)
    s.update(values, weights=weights)
    assert not s.is_estimation_mode and s.num_retained == np.unique(values).size
    q = np.arange(-1.0, 41.0, 0.5)
    for est in (None,) + ESTIMATORS:
        for inclusive in (True, False):
            np.testing.assert_array_equal(
                s.rank(q, inclusive=inclusive, estimator=est), exact_weighted_rank(values, weights, q, inclusive))


# ---- (d) choosing the estimator, and the exact limit -----------------------------------


@pytest.fixture(scope="module")
def normal_data():
    return np.random.default_rng(31).normal(size=50_000)


def test_default_estimator():
    assert KLLSketch().estimator == "spline"
    for est in ESTIMATORS:
        assert KLLSketch(estimator=est).estimator == est


@pytest.mark.parametrize("default", ESTIMATORS)
def test_per_sketch_default_and_per_query_override(default, normal_data):
    s = KLLSketch(64, seed=3, estimator=default)
    s.update(normal_data)
    assert s.is_estimation_mode
    q = np.quantile(normal_data, np.linspace(0.01, 0.99, 99))
    ps = np.linspace(0, 1, 101)
    splits = np.linspace(-2, 2, 9)
    # None (or nothing) is the sketch's default
    for call in (lambda **kw: s.rank(q, **kw), lambda **kw: s.rank(q, inclusive=False, **kw),
                 lambda **kw: s.quantile(ps, **kw), lambda **kw: s.quantiles(ps, **kw),
                 lambda **kw: s.cdf(splits, **kw), lambda **kw: s.pmf(splits, **kw)):
        np.testing.assert_array_equal(call(), call(estimator=default))
        np.testing.assert_array_equal(call(estimator=None), call(estimator=default))
    assert s.rank(0.1) == s.rank(0.1, estimator=default)
    assert s.quantile(0.3) == s.quantile(0.3, estimator=default)
    # an override answers with that estimator and leaves the default alone
    answers = {est: s.rank(q, estimator=est) for est in ESTIMATORS}
    assert s.estimator == default
    assert not np.array_equal(answers["step"], answers["linear"])
    assert not np.array_equal(answers["step"], answers["learned"])
    assert not np.array_equal(answers["linear"], answers["learned"])
    # every sketch gives the same answers per estimator, whatever its default
    other = KLLSketch(64, seed=3)
    other.update(normal_data)
    for est in ESTIMATORS:
        np.testing.assert_array_equal(other.rank(q, estimator=est), answers[est])
        np.testing.assert_array_equal(other.quantile(ps, estimator=est), s.quantile(ps, estimator=est))


@pytest.mark.parametrize("est", ESTIMATORS)
def test_estimator_survives_serialization_copies_and_merges(est, normal_data):
    s = KLLSketch(64, seed=3, estimator=est, nan_policy="raise")
    s.update(normal_data)
    q = np.linspace(-2, 2, 41)
    for t in (KLLSketch.from_bytes(s.to_bytes()), pickle.loads(pickle.dumps(s)), s.copy(),
              copy.deepcopy(s)):
        assert t.estimator == est and t.nan_policy == "raise"
        np.testing.assert_array_equal(t.rank(q), s.rank(q))
        assert t.to_bytes() == s.to_bytes()
    # the default is a binding flag (byte 10): sketches differing only in it
    # differ only there and in the checksum
    base = KLLSketch(64, seed=3, nan_policy="raise")
    base.update(normal_data)
    a, b = s.to_bytes(), base.to_bytes()
    assert len(a) == len(b)
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    assert all(i == 10 or i >= len(a) - 4 for i in diff)
    assert (a[10] != b[10]) == (est != "spline")
    # merging keeps the destination's default
    m = KLLSketch(64, seed=4, estimator="linear")
    m.update([1.0, 2.0])
    s2 = s.copy()
    s2.merge(m)
    assert s2.estimator == est
    m.merge(s)
    assert m.estimator == "linear"
    assert (s + m).estimator == est


@pytest.mark.parametrize("bad", ["cubic", "Linear", "STEP", "", " learned", 1, 2.0, b"linear", ["step"]])
def test_invalid_estimator(bad, normal_data):
    with pytest.raises(ValueError, match="estimator"):
        KLLSketch(estimator=bad)
    s = KLLSketch(64, seed=1)
    s.update(normal_data[:5000])
    saved = s.to_bytes()
    for call in (lambda: s.rank(0.0, estimator=bad), lambda: s.rank([0.0, 1.0], estimator=bad),
                 lambda: s.rank(0.0, False, bad), lambda: s.quantile(0.5, estimator=bad),
                 lambda: s.quantile([0.5], estimator=bad), lambda: s.quantiles([0.1], estimator=bad),
                 lambda: s.cdf([0.0], estimator=bad), lambda: s.pmf([0.0], estimator=bad)):
        with pytest.raises(ValueError, match="estimator"):
            call()
    assert s.to_bytes() == saved and s.estimator == "spline"


@pytest.mark.parametrize("limit", [0, 1, 5, 300, 2**20, np.int64(7), np.uint16(9), None])
def test_valid_exact_limit(limit):
    s = KLLSketch(seed=0, exact_limit=limit)
    assert s.exact_limit == (300 if limit is None else int(limit))
    assert type(s.exact_limit) is int


@pytest.mark.parametrize("limit", [-1, -300, 2**20 + 1, 2**32, 2**64, np.int64(-2)])
def test_exact_limit_out_of_range(limit):
    with pytest.raises(ValueError, match="exact_limit"):
        KLLSketch(exact_limit=limit)


@pytest.mark.parametrize("limit", [1.5, 300.0, "300", True, False, [300], b"1", 1j])
def test_exact_limit_wrong_type(limit):
    with pytest.raises(TypeError, match="exact_limit"):
        KLLSketch(exact_limit=limit)


def test_exact_limit_of_a_small_table():
    s = KLLSketch(seed=0, exact_limit=3)
    s.update([1.0, 2.0, 3.0, 3.0, 2.0])
    assert s.exact_limit == 3 and s.num_retained == 3
    s.update(4.0)  # a fourth distinct value
    assert s.exact_limit == 0 and s.n == 6 and not s.is_estimation_mode
    assert_all_estimators_exact(s, np.array([1.0, 2.0, 3.0, 3.0, 2.0, 4.0]))
    s.update(np.arange(100.0, 103.0))
    assert s.exact_limit == 0  # the table does not come back


# ---- (e) infinities, huge and tiny values -----------------------------------------------

BIG = 1.7976931348623157e308


def extreme_stream(name, n=50_000):
    r = np.random.default_rng(41 + len(name))
    if name == "some_inf":
        x = r.normal(size=n)
        x[r.random(n) < 0.01] = np.inf
        x[r.random(n) < 0.01] = -np.inf
        return x
    if name == "mostly_inf":
        return np.where(r.random(n) < 0.9, np.inf, r.normal(size=n))
    if name == "huge":  # +-1e308, +-max double, and ordinary values
        return r.choice([-BIG, -1e308, -1.0, 0.0, 1.0, 1e308, BIG], size=n) * np.where(
            r.random(n) < 0.5, 1.0, r.random(n))
    if name == "spread_huge":
        return r.uniform(-1.0, 1.0, size=n) * 1e308
    if name == "huge_and_inf":
        return np.where(r.random(n) < 0.3, r.normal(size=n),
                        r.choice([-np.inf, -BIG, -1e308, 1e308, BIG, np.inf], size=n))
    if name == "lognormal_and_inf":
        return np.where(r.random(n) < 0.05, np.inf, r.lognormal(sigma=3.0, size=n))
    if name == "subnormal":  # widths that vanish when halved, next to tiny normal numbers
        return np.where(r.random(n) < 0.5, r.integers(-50, 50, size=n) * 5e-324, r.normal(size=n) * 1e-306)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["some_inf", "mostly_inf", "huge", "spread_huge", "huge_and_inf",
                                  "lognormal_and_inf", "subnormal"])
def test_no_nan_from_infinities_and_huge_values(name):
    data = extreme_stream(name)
    xs = np.sort(data)
    finite = xs[np.isfinite(xs)]
    with np.errstate(over="ignore"):  # next to +-max double: +-inf
        near = np.concatenate([np.nextafter(finite[[0, -1]], np.inf), np.nextafter(finite[[0, -1]], -np.inf)])
    probes = np.concatenate([
        [-np.inf, np.inf, -BIG, BIG, -1e308, 1e308, 0.0, -0.0, 1.0, -1.0, 5e-324],
        xs[np.linspace(0, xs.size - 1, 500).round().astype(int)], near,
    ])
    probes = np.sort(probes)
    ps = np.linspace(0, 1, 1001)
    for k in (8, 64, 200):
        for limit in (0, None):
            s = KLLSketch(k, seed=k, exact_limit=limit)
            s.update(data)
            assert s.min == xs[0] and s.max == xs[-1]
            s._check_invariants()
            extra = np.sort(np.concatenate([probes, between_retained(s, 300)]))
            for est in ESTIMATORS:
                for inclusive in (True, False):
                    r = s.rank(extra, inclusive=inclusive, estimator=est)
                    assert not np.isnan(r).any(), (est, k, limit, extra[np.isnan(r)][:5])
                    assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) >= 0), (est, k, limit)
                    for x in (-np.inf, np.inf, BIG, -BIG):
                        assert not math.isnan(s.rank(x, inclusive=inclusive, estimator=est))
                    qv = s.quantile(ps, inclusive=inclusive, estimator=est)
                    assert not np.isnan(qv).any(), (est, k, limit, ps[np.isnan(qv)][:5])
                    assert np.all(qv[1:] >= qv[:-1]) and qv[0] == s.min and qv[-1] == s.max
                if est != "step":
                    assert_within_step_interval(s, extra, est)
