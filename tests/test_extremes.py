"""Scale and extremes: n beyond 2**32 (through weights and through merges),
n near 2**53 and 2**64, subnormals, +-max float, +-inf, -0.0, all-equal
streams, and k at its limits -- each compared with exact numpy answers.

Bounds: ranks of the step estimator within ``3 * normalized_rank_error()``
of the exact rank (the 99% single-query bound is 1x; 3x over a few hundred
queries cannot fail by chance with the fixed seeds used), "linear" and
"learned" within that plus ``interp_slack`` (docs/interpolation.md), the
default "spline" within that plus one more ``normalized_rank_error()`` (its
clip, docs/algorithm.md).  Exact mode must be exact.
"""

import sys
import zlib

import numpy as np
import pytest

from qsketch import KLLSketch
from qsketch._core import ESTIMATORS, MAX_K, MIN_K

DBL_MAX = sys.float_info.max
TINY = 5e-324  # the smallest subnormal


def exact_rank(data, q, weights=None, inclusive=True):
    """Exact normalized ranks of q in data (optionally weighted), in exact integers."""
    data = np.asarray(data, dtype=np.float64)
    order = np.argsort(data, kind="stable")
    xs = data[order]
    w = np.ones(xs.size, dtype=object) if weights is None else np.asarray(weights, dtype=object)[order]
    cum = np.concatenate([[0], np.cumsum(w)])
    total = cum[-1]
    idx = np.searchsorted(xs, np.asarray(q, dtype=np.float64), side="right" if inclusive else "left")
    return np.array([float(cum[i]) / float(total) for i in idx])


def interp_slack(s):
    """qs_kll_interp_slack / n: half an item weight per compacted non-empty level."""
    if not s.is_estimation_mode:
        return 0.0
    levels = s._levels()
    slack = sum((2.0**h - 1) / 2 for h, lv in enumerate(levels) if h >= 1 and lv.size)
    return slack / s.n


def check_against_exact(s, data, weights=None, factor=3.0, queries=None):
    """Every estimator within the bound at the exact quantiles of data; the
    quantiles answered within [min, max], monotone, exact at 0 and 1."""
    data = np.asarray(data, dtype=np.float64)
    q = np.unique(np.quantile(data, np.linspace(0, 1, 201), method="inverted_cdf")) if queries is None else queries
    eps = factor * s.normalized_rank_error()
    for inclusive in (True, False):
        exact = exact_rank(data, q, weights, inclusive)
        for est in ESTIMATORS:
            r = s.rank(q, inclusive=inclusive, estimator=est)
            assert not np.isnan(r).any(), (est, inclusive)
            bound = eps + {"step": 0.0, "spline": s.normalized_rank_error()}.get(est, interp_slack(s))
            if s.is_estimation_mode:
                assert np.abs(r - exact).max() <= bound, (est, inclusive, np.abs(r - exact).max(), bound)
            else:
                np.testing.assert_array_equal(r, exact)
    ps = np.linspace(0, 1, 101)
    for est in ESTIMATORS:
        qs = s.quantile(ps, estimator=est)
        assert qs[0] == data.min() and qs[-1] == data.max()
        assert np.all(qs >= data.min()) and np.all(qs <= data.max()) and np.all(qs[1:] >= qs[:-1])
    # and the 99% bounds cover the truth (widened, as above)
    lo, hi = s.rank_bounds(q)
    exact = exact_rank(data, q, weights)
    extra = (factor - 1) * s.normalized_rank_error()
    assert np.all(lo - extra <= exact) and np.all(exact <= hi + extra)


# ---- n beyond 2**32 ------------------------------------------------------------------------


def test_n_beyond_2_to_32_through_weights():
    """100k distinct values with weights up to 2**20: n about 5e10, in
    estimation mode; ranks against the exact weighted ranks."""
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=100_000)
    w = rng.integers(1, 2**20, size=x.size, dtype=np.uint64)
    s = KLLSketch(200, seed=1)
    for start in range(0, x.size, 10_000):
        s.update(x[start:start + 10_000], weights=w[start:start + 10_000])
    total = int(w.astype(object).sum())
    assert total > 2**32
    assert s.n == total and s.is_estimation_mode
    assert s.min == x.min() and s.max == x.max()
    s._check_invariants()
    check_against_exact(s, x, w)


def test_n_beyond_2_to_32_through_repeated_merges():
    """A 200k-item sketch merged into itself 15 times: n = 2**15 * 2e5 > 2**32,
    and the ranks still those of the original data."""
    x = np.random.default_rng(2).normal(size=200_000)
    s = KLLSketch(200, seed=2)
    s.update(x)
    for _ in range(15):
        s.merge(s)
    assert s.n == 2**15 * x.size > 2**32
    s._check_invariants()
    check_against_exact(s, x)  # the same distribution, 32768 times over
    back = KLLSketch.from_bytes(s.to_bytes())
    assert back.n == s.n and back.to_bytes() == s.to_bytes()


def test_n_beyond_2_to_32_through_many_shards():
    """1000 merges of weighted shards of about 5e6 items each: n about 5e9."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(20, 1000))
    weights = rng.integers(1, 10_000, size=(20, 1000))
    total = KLLSketch(128, seed=3)
    for shard in range(20):
        part = KLLSketch(128, seed=100 + shard)
        part.update(values[shard], weights=weights[shard])
        for _ in range(50):  # the same shard 50 times
            total.merge(part)
    expected_n = 50 * int(weights.sum())
    assert total.n == expected_n > 2**32
    total._check_invariants()
    check_against_exact(total, values.ravel(), weights.ravel())


def test_n_at_2_to_64_minus_1():
    s = KLLSketch(seed=4, exact_limit=0)
    s.update([1.0, 2.0, 3.0], weights=np.array([2**63, 2**62, 2**62 - 1], dtype=np.uint64))
    assert s.n == 2**64 - 1
    for est in ESTIMATORS:
        assert s.rank(1.0, estimator=est) == pytest.approx(0.5, abs=1e-15)
        assert s.rank(2.0, estimator=est) == pytest.approx(0.75, abs=1e-15)
        assert s.quantile(0.5, estimator=est) == 1.0 and s.quantile(0.6, estimator=est) == 2.0
        assert s.quantile(1.0, estimator=est) == 3.0
    with pytest.raises(OverflowError):
        s.update(4.0)
    with pytest.raises(OverflowError):
        s.merge(s)
    assert s.n == 2**64 - 1
    s._check_invariants()
    assert KLLSketch.from_bytes(s.to_bytes()).n == 2**64 - 1


def _big_n_sketch(buckets=128):
    """A valid sketch past 2**53 items: an estimation-mode stream, one heavy
    weighted item, a few more items."""
    s = KLLSketch(k=8, seed=1, exact_limit=0, buckets=buckets)
    s.update(np.random.default_rng(0).random(2000))
    s.update([0.5], weights=[2**60])
    s.update([2.0, 2.5, 3.0])
    return s


def test_n_beyond_2_to_53_step_estimator():
    s = _big_n_sketch()
    assert s.n == 2000 + 2**60 + 3 and s.is_estimation_mode
    s._check_invariants()
    q = np.array([0.2, 0.5, 0.7, 2.2, 2.7, 10.0])
    r = s.rank(q, estimator="step")
    assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) >= 0)
    assert r[1] >= 1 - 2**-50 and r[-1] == 1.0
    assert s.quantile(0.5, estimator="step") == 0.5


@pytest.mark.parametrize("estimator", ["linear", "spline"])
def test_n_beyond_2_to_53_other_estimators(estimator):
    s = _big_n_sketch()
    r = s.rank(np.array([0.2, 0.7, 2.2, 2.7, 10.0]), estimator=estimator)
    assert not np.isnan(r).any() and np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) >= 0)
    assert not np.isnan(s.cdf([0.7, 2.2, 2.7], estimator=estimator)).any()


@pytest.mark.parametrize("estimator,buckets", [("learned", 128), ("spline", 0)])
def test_n_beyond_2_to_53_learned_estimator(estimator, buckets):
    """Beyond 2**53 items the learned model's knots once had equal ranks in
    double precision and a gap divided by zero (NaN answers); a flat model
    now spreads linearly."""
    s = _big_n_sketch(buckets)
    r = s.rank(np.array([0.2, 0.7, 2.2, 2.7, 10.0]), estimator=estimator)
    assert not np.isnan(r).any(), r
    assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) >= 0)
    c = s.cdf([0.7, 2.2, 2.7], estimator=estimator)
    assert not np.isnan(c).any(), c


@pytest.mark.parametrize("atom", [5.0, np.inf])
def test_spline_with_a_heavy_weighted_item(atom):
    """A heavy weighted item (exact, above every compaction) once made the
    layer's split trust its cubic over the compactors (its weight counted as
    sampling spread), misplacing 8% of n; it is a point mass now."""
    s = KLLSketch(32, seed=20, exact_limit=0)
    x = np.random.default_rng(0).random(60_000)
    s.update(x)
    s.update([atom], weights=[2**20])
    assert s.rank(atom, estimator="step") == 1.0
    assert s.rank(np.inf) == 1.0 and s.rank(s.max) == 1.0
    assert s.rank(1.0) == pytest.approx(x.size / s.n, abs=0.01)


# ---- extreme values --------------------------------------------------------------------------


EXTREME_STREAMS = {
    "subnormals": lambda r, n: r.integers(-1000, 1000, size=n) * TINY,
    "subnormals_and_zero": lambda r, n: np.where(r.random(n) < 0.3, 0.0, r.integers(1, 50, size=n) * TINY),
    "max_float": lambda r, n: np.where(r.random(n) < 0.5, -DBL_MAX, DBL_MAX) * r.random(n),
    "max_float_exactly": lambda r, n: r.choice([-DBL_MAX, DBL_MAX, 0.0, 1.0], size=n),
    "infinities": lambda r, n: np.where(r.random(n) < 0.05, np.inf, np.where(r.random(n) < 0.05, -np.inf,
                                                                            r.normal(size=n))),
    "mostly_inf": lambda r, n: np.where(r.random(n) < 0.9, np.inf, r.normal(size=n)),
    "signed_zeros": lambda r, n: r.choice([-0.0, 0.0, 1.0, -1.0], size=n),
    "everything": lambda r, n: r.choice([-np.inf, -DBL_MAX, -1.0, -TINY, -0.0, 0.0, TINY, 2.2250738585072014e-308,
                                         1.0, 1e300, DBL_MAX, np.inf], size=n) * np.where(r.random(n) < 0.5, 1.0,
                                                                                          r.random(n)),
}


@pytest.mark.parametrize("name", list(EXTREME_STREAMS))
@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "default"])
def test_extreme_values_against_numpy(name, exact_limit):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = EXTREME_STREAMS[name](rng, 60_000).astype(np.float64)
    with np.errstate(invalid="ignore"):
        x = np.where(np.isnan(x), 0.0, x)  # inf * 0 in the generators
    s = KLLSketch(64, seed=5, exact_limit=exact_limit)
    s.update(x[:30_000])
    for v in x[30_000:31_000].tolist():
        s.update(v)
    s.update(x[31_000:])
    assert s.n == x.size and s.min == x.min() and s.max == x.max()
    s._check_invariants()
    check_against_exact(s, x)
    # the same after a serialization round trip and a merge of two halves
    back = KLLSketch.from_bytes(s.to_bytes())
    check_against_exact(back, x)
    a, b = KLLSketch(64, seed=6, exact_limit=exact_limit), KLLSketch(64, seed=7, exact_limit=exact_limit)
    a.update(x[::2])
    b.update(x[1::2])
    check_against_exact(a + b, x)


def test_signed_zero_is_one_value():
    for exact_limit in (0, None):
        s = KLLSketch(seed=8, exact_limit=exact_limit)
        s.update([-0.0, 0.0, -0.0, 1.0])
        assert s.rank(0.0) == s.rank(-0.0) == 0.75
        assert s.rank(-0.0, inclusive=False) == 0.0
        assert s.quantile(0.5) == 0.0  # -0.0 == 0.0
        assert s.num_retained == (2 if exact_limit is None else 4)


def _infinite_ends_sketch():
    s = KLLSketch(32, seed=9, exact_limit=0)
    x = np.r_[np.full(1000, -np.inf), np.random.default_rng(9).normal(size=20_000), np.full(1000, np.inf)]
    s.update(x)
    return s, x


def test_infinities_at_the_ends():
    s, x = _infinite_ends_sketch()
    for est in ESTIMATORS:
        assert s.quantile(0.0, estimator=est) == -np.inf and s.quantile(1.0, estimator=est) == np.inf
        assert s.rank(np.inf, estimator=est) == 1.0
        assert s.rank(-np.inf, inclusive=False, estimator=est) == 0.0
        assert abs(s.rank(-np.inf, estimator=est) - 1000 / x.size) <= 3 * s.normalized_rank_error()
        mid = s.quantile(np.linspace(0.1, 0.9, 9), estimator=est)
        assert np.all(np.isfinite(mid))


def test_spline_rank_at_infinite_ends():
    """The layer once kept mass beyond +-inf (counts in the empty intervals
    [-inf, -inf) and (+inf, +inf]); nothing lies beyond them now."""
    s, x = _infinite_ends_sketch()
    assert s.rank(np.inf) == 1.0 and s.rank(s.max) == 1.0
    assert s.rank(-np.inf, inclusive=False) == 0.0


def _all_equal_sketch(value, exact_limit):
    s = KLLSketch(16, seed=10, exact_limit=exact_limit)
    s.update(np.full(200_000, value))
    for v in [value] * 500:
        s.update(v)
    t = KLLSketch(8, seed=11, exact_limit=exact_limit)
    t.update(np.full(3000, value))
    s.merge(t)
    return s


@pytest.mark.parametrize("value", [7.0, 0.0, -0.0, TINY, -DBL_MAX, DBL_MAX, np.inf, -np.inf])
@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "default"])
def test_all_equal_stream(value, exact_limit):
    s = _all_equal_sketch(value, exact_limit)
    assert s.n == 203_500 and s.min == value and s.max == value
    s._check_invariants()
    with np.errstate(over="ignore"):
        below = np.nextafter(value, -np.inf) if np.isfinite(value) or value > 0 else value
    for est in ESTIMATORS:
        assert np.all(s.quantile(np.linspace(0, 1, 21), estimator=est) == value)
        assert s.rank(value, estimator=est) == 1.0
        assert s.rank(value, inclusive=False, estimator=est) == 0.0
        if below != value:
            assert s.rank(below, estimator=est) == 0.0
    lo, hi = s.rank_bounds(value)
    assert lo <= 1.0 <= hi
    if exact_limit is None:
        assert not s.is_estimation_mode and s.num_retained == 1


@pytest.mark.parametrize("value", [7.0, np.inf])
def test_spline_on_an_all_equal_stream(value):
    """In estimation mode the accuracy layer once left counts in the empty
    intervals [min, v) and (v, max] of an all-equal stream (a split's
    estimate put them there); they belong to v, the only value."""
    s = _all_equal_sketch(value, 0)
    assert s.rank(value) == 1.0 and s.rank(value, inclusive=False) == 0.0


# ---- k at its limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [MIN_K, MIN_K + 1, MAX_K - 1, MAX_K])
def test_k_limits_against_numpy(k):
    rng = np.random.default_rng(k)
    n = 100_000 if k >= MAX_K - 1 else 40_000
    x = rng.standard_t(3, size=n)
    s = KLLSketch(k, seed=12, exact_limit=0)
    s.update(x[: n // 2])
    for v in x[n // 2: n // 2 + 2000].tolist():
        s.update(v)
    s.update(x[n // 2 + 2000:])
    assert s.k == k and s.n == n and s.is_estimation_mode
    s._check_invariants()
    if k == MIN_K:
        assert s.num_retained < 200  # a few levels of capacity max(8, 8*(2/3)^d)
    check_against_exact(s, x, factor=3.0 if k > MIN_K + 1 else 2.0)
    assert KLLSketch.from_bytes(s.to_bytes()).to_bytes() == s.to_bytes()


def test_max_k_is_exact_until_it_compacts():
    x = np.random.default_rng(13).normal(size=MAX_K)
    s = KLLSketch(MAX_K, seed=13, exact_limit=0)
    s.update(x)
    assert not s.is_estimation_mode and s.num_retained == MAX_K
    check_against_exact(s, x)
    s.update(0.0)
    assert s.is_estimation_mode


def test_merging_k_extremes_takes_the_smaller():
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=30_000), rng.normal(size=30_000) + 1
    a, b = KLLSketch(MAX_K, seed=14, exact_limit=0), KLLSketch(MIN_K, seed=15, exact_limit=0)
    a.update(x)
    b.update(y)
    a.merge(b)
    assert a.k == MIN_K and a.n == 60_000
    a._check_invariants()
    check_against_exact(a, np.r_[x, y], factor=2.0)


@pytest.mark.parametrize("k", [MIN_K - 1, MAX_K + 1, 0, -1, 2**16, 2**32])
def test_k_beyond_the_limits_is_refused(k):
    with pytest.raises(ValueError):
        KLLSketch(k)
