"""Core behaviour of qsketch.KLLSketch: construction, exact mode, input
conversions, weights, copies, merges, pickling, determinism, query shapes and
a basic thread-safety check.  Exact answers come from tests/oracle.py.

Two exact modes: a new sketch counts the distinct values of the stream in its
exact low-cardinality table (while there are at most ``exact_limit`` of them),
and the compactors are exact until their first compaction (tests of that one
pass ``exact_limit=0``).  In both, every estimator gives the exact answer.
Tests of the step function's own semantics pass ``estimator="step"``."""

import copy
import itertools
import math
import pickle
import threading

import numpy as np
import pytest

import qsketch
from qsketch import KLLSketch

from interp_bounds import ESTIMATORS, INTERPOLATING, assert_within_step_interval, interp_slack
from oracle import exact_quantile, exact_rank, exact_weighted_rank

NUMERIC_DTYPES = [
    np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64, np.bool_,
]

P_GRID = np.concatenate([
    [0.0, 1.0, 1e-12, 1 - 1e-12, 0.5, 0.3, 0.7, 0.1, 0.9, 0.25, 0.75, 1 / 3, 2 / 3],
    np.linspace(0, 1, 201),
])


def midpoints(sorted_unique):
    return (sorted_unique[1:] + sorted_unique[:-1]) / 2


def query_points(data):
    u = np.unique(np.asarray(data, dtype=np.float64))
    extra = [u[0] - 1, u[-1] + 1, -np.inf, np.inf] if u.size else [0.0, -np.inf, np.inf]
    return np.concatenate([u, midpoints(u), extra])


def assert_exact(s, data):
    """Every rank (both modes) and quantile (both modes) equals the oracle,
    with the sketch's default estimator and with each one named."""
    data = np.asarray(data, dtype=np.float64)
    assert not s.is_estimation_mode
    assert s.n == data.size
    qs = query_points(data)
    for est in (None,) + ESTIMATORS:
        for inclusive, mode in ((True, "inclusive"), (False, "exclusive")):
            np.testing.assert_array_equal(
                s.rank(qs, inclusive=inclusive, estimator=est), exact_rank(data, qs, mode)
            )
            for q in qs[:50]:  # the scalar path too
                assert s.rank(float(q), inclusive=inclusive, estimator=est) == exact_rank(data, q, mode)
            np.testing.assert_array_equal(
                s.quantile(P_GRID, inclusive=inclusive, estimator=est), exact_quantile(data, P_GRID, inclusive)
            )
            ps = np.arange(data.size + 1) / data.size  # every p = i / n, where rounding matters
            np.testing.assert_array_equal(
                s.quantile(ps, inclusive=inclusive, estimator=est), exact_quantile(data, ps, inclusive)
            )
        # mid-point ranks: the mean of the two conventions
        mid = (s.rank(qs, estimator=est) + s.rank(qs, inclusive=False, estimator=est)) / 2
        np.testing.assert_allclose(mid, exact_rank(data, qs, "mid"), rtol=0, atol=1e-15)
        # numpy's own inverted_cdf agrees in exact mode (away from p * n rounding)
        ps = (np.arange(1, 20) + 0.37) / 20
        np.testing.assert_array_equal(s.quantile(ps, estimator=est), np.quantile(data, ps, method="inverted_cdf"))


# ---- the oracle itself -----------------------------------------------------


def test_oracle_matches_numpy_inverted_cdf(rng):
    data = rng.integers(0, 30, size=97).astype(float)
    ps = rng.random(500)
    np.testing.assert_array_equal(
        exact_quantile(data, ps, True), np.quantile(data, ps, method="inverted_cdf")
    )


def test_oracle_rounds_p_times_n():
    data = np.arange(1.0, 101.0)
    assert 0.07 * 100 == 7.000000000000001 and 0.29 * 100 == 28.999999999999996
    assert exact_quantile(data, 0.07, True) == 7.0
    assert exact_quantile(data, 0.07, False) == 8.0
    assert exact_quantile(data, 0.29, True) == 29.0
    assert exact_quantile(data, 0.29, False) == 30.0
    assert exact_rank(data[:10], 3.0, "mid") == 0.25


# ---- construction ------------------------------------------------------------


def test_constants():
    assert qsketch.MIN_K == 8 and qsketch.MAX_K == 65535 and qsketch.DEFAULT_K == 200
    assert KLLSketch().k == 200


@pytest.mark.parametrize("k", [8, 9, 64, 200, 1000, 65535, np.int32(50), np.uint16(65535)])
def test_valid_k(k):
    s = KLLSketch(k, seed=1)
    assert s.k == int(k) and type(s.k) is int
    s.update(np.arange(300.0))
    s._check_invariants()
    assert s.n == 300


@pytest.mark.parametrize("k", [7, 0, -1, 65536, 2**40])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match="k must be in"):
        KLLSketch(k)


@pytest.mark.parametrize("k", [8.0, "200", None, True, False, [200], 200 + 0j])
def test_k_wrong_type(k):
    with pytest.raises(TypeError, match="k must be an integer"):
        KLLSketch(k)


def test_k_keyword_and_positional():
    assert KLLSketch(k=64).k == 64
    with pytest.raises(TypeError):
        KLLSketch(64, 5)  # seed is keyword-only


@pytest.mark.parametrize("seed", [0, 1, 2**63, 2**64 - 1, np.uint64(2**64 - 1), np.int8(3), None])
def test_valid_seed(seed):
    s = KLLSketch(seed=seed)
    s.update(np.arange(1000.0))
    s._check_invariants()


@pytest.mark.parametrize("seed", [-1, 2**64, np.int64(-5)])
def test_seed_out_of_range(seed):
    with pytest.raises(ValueError, match="seed"):
        KLLSketch(seed=seed)


@pytest.mark.parametrize("seed", [1.0, "1", True, [1], b"1"])
def test_seed_wrong_type(seed):
    with pytest.raises(TypeError, match="seed"):
        KLLSketch(seed=seed)


def test_nan_policy():
    assert KLLSketch().nan_policy == "ignore"
    assert KLLSketch(nan_policy="ignore").nan_policy == "ignore"
    assert KLLSketch(nan_policy="raise").nan_policy == "raise"
    for bad in ["Raise", "omit", "", None, 1]:
        with pytest.raises(ValueError, match="nan_policy"):
            KLLSketch(nan_policy=bad)


def test_nan_policy_ignore_counts_nans():
    s = KLLSketch(seed=0)
    s.update(float("nan"))
    s.update([1.0, np.nan, 2.0])
    s.update(np.array([np.nan, 3.0]), weights=[7, 1])
    assert s.n == 3 and s.nan_count == 9
    assert s.min == 1.0 and s.max == 3.0
    assert_exact(s, [1.0, 2.0, 3.0])
    s._check_invariants()


def test_nan_only_sketch_is_empty():
    s = KLLSketch(seed=0)
    s.update([np.nan] * 5)
    assert s.is_empty and s.n == 0 and s.nan_count == 5
    assert math.isnan(s.min) and math.isnan(s.max) and math.isnan(s.rank(0.0))


# ---- empty and tiny sketches --------------------------------------------------


def test_empty_sketch():
    s = KLLSketch(seed=0)
    assert s.is_empty and s.n == 0 and s.nan_count == 0 and s.num_retained == 0
    assert not s.is_estimation_mode
    assert math.isnan(s.min) and math.isnan(s.max)
    assert math.isnan(s.rank(1.0)) and math.isnan(s.rank(1.0, inclusive=False))
    assert np.isnan(s.rank([1.0, 2.0])).all()
    assert math.isnan(s.quantile(0.5)) and math.isnan(s.quantile(0.0)) and math.isnan(s.quantile(1.0))
    assert np.isnan(s.quantiles([0.1, 0.9])).all()
    assert np.isnan(s.cdf([0.0, 1.0])).all() and s.cdf([0.0]).shape == (2,)
    assert np.isnan(s.pmf([0.0, 1.0])).all() and s.pmf([0.0]).shape == (2,)
    lo, hi = s.rank_bounds(0.0)
    assert math.isnan(lo) and math.isnan(hi)
    items, weights = s.sorted_view()
    assert items.size == 0 and weights.size == 0
    s._check_invariants()


def test_empty_updates_are_noops():
    s = KLLSketch(seed=0)
    before = s.to_bytes()
    s.update([])
    s.update(np.array([]))
    s.update([], weights=[])
    assert s.to_bytes() == before


def test_one_item():
    s = KLLSketch(seed=0)
    s.update(5.0)
    assert s.n == 1 and s.min == 5.0 and s.max == 5.0 and s.num_retained == 1
    assert not s.is_empty
    assert s.rank(5.0) == 1.0 and s.rank(5.0, inclusive=False) == 0.0
    assert s.rank(4.0) == 0.0 and s.rank(6.0, inclusive=False) == 1.0
    for p in (0.0, 1e-9, 0.5, 1.0):
        assert s.quantile(p) == 5.0 and s.quantile(p, inclusive=False) == 5.0
    assert s.rank_bounds(5.0) == (1.0, 1.0)
    np.testing.assert_array_equal(s.cdf([5.0]), [1.0, 1.0])
    np.testing.assert_array_equal(s.cdf([5.0], inclusive=False), [0.0, 1.0])
    assert_exact(s, [5.0])


# ---- exact mode -------------------------------------------------------------------


@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "table"])
@pytest.mark.parametrize("k", [8, 50, 200])
@pytest.mark.parametrize("kind", ["float", "dups", "ints"])
def test_exact_mode_matches_oracle(k, kind, exact_limit, rng):
    """Fewer than k items: exact in the compactors (exact_limit=0, one
    retained item per stream item) and in the table (one per distinct value)."""
    n = k - 1
    if kind == "float":
        data = rng.normal(size=n)
    elif kind == "dups":
        data = rng.choice([-1.5, 0.0, 2.0, 7.25], size=n)
    else:
        data = rng.integers(-5, 6, size=n).astype(float)
    for feed in ("batch", "scalar"):
        s = KLLSketch(k, seed=3, exact_limit=exact_limit)
        if feed == "batch":
            s.update(data)
        else:
            for v in data.tolist():
                s.update(v)
        if exact_limit == 0:
            assert s.exact_limit == 0
            assert s.num_retained == n
        else:
            assert s.exact_limit == max(256, math.ceil(1.5 * k))
            assert s.num_retained == np.unique(data).size
        assert_exact(s, data)
        qs = query_points(data)
        lo, hi = s.rank_bounds(qs)
        np.testing.assert_array_equal(lo, exact_rank(data, qs))
        np.testing.assert_array_equal(hi, exact_rank(data, qs))
        s._check_invariants()


def test_exact_up_to_k_items():
    """The compactors' own exact mode (the table disabled)."""
    k = 64
    data = np.random.default_rng(1).normal(size=k)
    s = KLLSketch(k, seed=1, exact_limit=0)
    s.update(data)
    assert_exact(s, data)  # a full level 0 is still exact
    s.update(0.123)
    assert s.is_estimation_mode  # the next item compacts


def test_default_exact_limit():
    for k in (8, 64, 170):
        assert KLLSketch(k).exact_limit == 256
    assert KLLSketch(171).exact_limit == 257
    assert KLLSketch(200).exact_limit == 300
    assert KLLSketch(1000).exact_limit == 1500
    assert KLLSketch(200, exact_limit=0).exact_limit == 0
    assert KLLSketch(200, exact_limit=7).exact_limit == 7
    assert type(KLLSketch().exact_limit) is int


def test_exact_up_to_exact_limit_distinct_values(rng):
    """The table mode: any number of items over at most exact_limit distinct
    values is exact, and a full table is still exact."""
    k = 64
    values = rng.normal(size=256)
    data = rng.choice(values, size=50_000)
    data[:256] = values  # every value present
    s = KLLSketch(k, seed=1)
    s.update(data)
    assert s.exact_limit == 256 and not s.is_estimation_mode
    assert s.num_retained == 256
    assert_exact(s, data)
    items, weights = s.sorted_view()  # the view is the table: values and counts
    u, c = np.unique(data, return_counts=True)
    np.testing.assert_array_equal(items, u)
    np.testing.assert_array_equal(weights, c)
    lo, hi = s.rank_bounds(values)
    np.testing.assert_array_equal(lo, exact_rank(data, values))
    np.testing.assert_array_equal(hi, exact_rank(data, values))
    s._check_invariants()
    s.update(float(values.max()) + 1.0)  # the 257th distinct value moves the table into the compactors
    assert s.exact_limit == 0
    assert s.n == data.size + 1 and s.min == data.min() and s.max == float(values.max()) + 1.0
    s._check_invariants()
    assert int(s.sorted_view()[1].astype(object).sum()) == s.n


@pytest.mark.parametrize("weighted", [False, True])
def test_table_conversion_keeps_everything_exact_until_a_compaction(weighted, rng):
    """At limit + 1 distinct values the table moves into the compactors as
    weighted items, exactly: n, min, max, and, while nothing was compacted,
    every answer."""
    limit = 40
    values = rng.normal(size=limit + 1)
    counts = rng.integers(1, 50, size=limit + 1)
    s = KLLSketch(200, seed=4, exact_limit=limit)
    if weighted:
        s.update(values[:limit], weights=counts[:limit])
    else:
        s.update(np.repeat(values[:limit], counts[:limit]))
    assert s.exact_limit == limit and s.num_retained == limit
    s.update(values[limit:], weights=counts[limit:])
    data = np.repeat(values, counts)
    assert s.exact_limit == 0
    assert s.n == counts.sum() and s.min == values.min() and s.max == values.max()
    s._check_invariants()
    assert not s.is_estimation_mode  # 41 weighted items fit in the levels
    assert_exact(s, data)
    # later items go to the compactors, and the table never comes back
    more = rng.normal(size=100_000)
    s.update(more)
    assert s.exact_limit == 0 and s.is_estimation_mode
    alld = np.concatenate([data, more])
    qs = np.quantile(alld, np.linspace(0, 1, 101))
    assert np.abs(s.rank(qs, estimator="step") - exact_rank(alld, qs)).max() <= 2 * s.normalized_rank_error()


def test_table_conversion_into_estimation_mode(rng):
    """Converting a big table at the default limit (k=64: 256 values with
    large counts) compacts: the answers are estimates within the bound."""
    values = np.arange(257.0)
    counts = rng.integers(1, 2000, size=257)
    s = KLLSketch(64, seed=2)
    s.update(values[:256], weights=counts[:256])
    assert s.exact_limit == 256 and not s.is_estimation_mode
    s.update(values[256:], weights=counts[256:])
    assert s.exact_limit == 0 and s.is_estimation_mode
    assert s.n == counts.sum() and s.min == 0.0 and s.max == 256.0
    s._check_invariants()
    qs = values + 0.5
    exact = exact_weighted_rank(values, counts, qs)
    eps = s.normalized_rank_error()
    assert np.abs(s.rank(qs, estimator="step") - exact).max() <= 2 * eps
    for est in INTERPOLATING:
        assert np.abs(s.rank(qs, estimator=est) - exact).max() <= 2 * eps + interp_slack(s)
        assert_within_step_interval(s, qs, est)


def test_discrete_stream_is_exact_in_the_table(rng):
    data = rng.integers(1, 11, size=200_000).astype(float)
    for feed in ("batch", "scalar"):
        s = KLLSketch(64, seed=1)
        if feed == "batch":
            s.update(data)
        else:
            for v in data[:20_000].tolist():
                s.update(v)
            s.update(data[20_000:])
        assert s.num_retained == 10 and not s.is_estimation_mode and s.exact_limit == 256
        assert_exact(s, data)


def test_quantile_rounding_of_p_times_n():
    s = KLLSketch(seed=0)
    s.update(np.arange(1.0, 101.0))
    assert s.quantile(0.07) == 7.0  # 0.07 * 100 == 7.000000000000001
    assert s.quantile(0.07, inclusive=False) == 8.0
    assert s.quantile(0.29) == 29.0  # 0.29 * 100 == 28.999999999999996
    assert s.quantile(0.29, inclusive=False) == 30.0
    assert s.quantile(0.071) == 8.0 and s.quantile(0.069) == 7.0


def test_infinities_and_signed_zero():
    data = [-np.inf, -0.0, 0.0, np.inf, 1.0, -1.0, 5e-324, -1.7976931348623157e308]
    s = KLLSketch(seed=0)
    s.update(data)
    assert s.min == -np.inf and s.max == np.inf
    assert_exact(s, data)
    assert s.rank(0.0) == s.rank(-0.0) == 5 / 8


def test_properties_types(rng):
    s = KLLSketch(100, seed=0)
    s.update(rng.normal(size=5000))
    s.update(np.nan)
    for name in ("n", "nan_count", "num_retained", "k"):
        assert type(getattr(s, name)) is int
    assert type(s.min) is float and type(s.max) is float
    assert type(s.is_empty) is bool and type(s.is_estimation_mode) is bool
    assert s.n == 5000 and s.nan_count == 1 and s.k == 100
    assert s.is_estimation_mode
    assert s.num_retained < 5000
    items, weights = s.sorted_view()
    assert items.size == s.num_retained


# ---- input conversions ------------------------------------------------------------


def test_update_from_list_and_tuple():
    expected = [3.0, 1.0, 2.0, 2.0]
    for values in ([3, 1, 2, 2], (3.0, 1.0, 2.0, 2.0), [3, 1.0, True + 1, 2], range(0)):
        s = KLLSketch(seed=0)
        s.update(values)
        if len(values):
            assert_exact(s, expected)
        else:
            assert s.is_empty


def test_update_range():
    s = KLLSketch(seed=0)
    s.update(range(10))
    assert_exact(s, np.arange(10.0))


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_update_numpy_dtypes(dtype, rng):
    if dtype is np.bool_:
        arr = rng.random(100) < 0.3
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=100, dtype=dtype, endpoint=True)
        arr[:2] = [info.min, info.max]
    else:
        arr = rng.normal(scale=100, size=100).astype(dtype)
    expected = arr.astype(np.float64)
    s = KLLSketch(seed=0)
    s.update(arr)
    assert_exact(s, expected)
    assert s.min == expected.min() and s.max == expected.max()
    # numpy scalars of the dtype, one at a time
    t = KLLSketch(seed=0)
    for v in arr:
        t.update(v)
    assert_exact(t, expected)
    # a 0-d array
    u = KLLSketch(seed=0)
    u.update(np.array(arr[5]))
    assert u.n == 1 and u.min == expected[5]


def test_uint64_extremes():
    s = KLLSketch(seed=0)
    s.update(np.array([0, 2**64 - 1, 2**63], dtype=np.uint64))
    assert s.max == float(2**64 - 1) and s.min == 0.0


def test_read_only_and_non_contiguous(rng):
    base = rng.normal(size=300)
    ro = base.copy()
    ro.flags.writeable = False
    s = KLLSketch(seed=0)
    s.update(ro[:150])
    assert_exact(s, base[:150])

    strided = base[::3]
    assert not strided.flags.c_contiguous
    t = KLLSketch(seed=0)
    t.update(strided)
    assert_exact(t, base[::3])

    rev = base[:100][::-1]
    u = KLLSketch(seed=0)
    u.update(rev)
    assert_exact(u, base[:100])

    ro_strided = base.astype(np.float32)[::2]
    ro_strided.flags.writeable = False
    w = KLLSketch(seed=0)
    w.update(ro_strided, weights=np.ones(ro_strided.size, dtype=np.int64)[::-1])
    assert_exact(w, base.astype(np.float32)[::2].astype(np.float64))

    # read-only queries
    q = base[:10].copy()
    q.flags.writeable = False
    np.testing.assert_array_equal(u.rank(q), exact_rank(base[:100], q))


def test_read_only_big_batch_in_estimation_mode(rng):
    data = rng.normal(size=100_000)
    data.flags.writeable = False
    s = KLLSketch(seed=0)
    s.update(data)
    assert s.n == data.size and s.min == data.min() and s.max == data.max()
    np.testing.assert_array_equal(data, np.asarray(data))  # not modified in place
    s._check_invariants()


@pytest.mark.parametrize("density", [1e-4, 0.01, 0.5, 0.999])
def test_batch_with_nans_in_estimation_mode(density):
    """The bulk path skips NaNs inside its chunks and falls back to single
    items when NaNs leave a chunk short: n and nan_count stay exact."""
    r = np.random.default_rng(int(density * 1e4))
    x = r.normal(size=300_000)
    x[r.random(x.size) < density] = np.nan
    x[-5:] = np.nan  # a short last chunk
    s = KLLSketch(64, seed=1)
    s.update(x[:1000])
    s.update(x)
    good = np.concatenate([x[:1000], x])
    nans = int(np.isnan(good).sum())
    good = good[~np.isnan(good)]
    assert s.n == good.size and s.nan_count == nans
    assert s.min == good.min() and s.max == good.max()
    s._check_invariants()
    xs = np.sort(good)
    qs = xs[np.linspace(0, xs.size - 1, 500).astype(int)]
    assert np.abs(s.rank(qs) - exact_rank(xs, qs, presorted=True)).max() <= 2 * s.normalized_rank_error()


def test_batch_input_not_modified(rng):
    data = rng.normal(size=50_000)
    saved = data.copy()
    s = KLLSketch(seed=0)
    s.update(data)
    s.update(data, weights=np.full(data.size, 3))
    np.testing.assert_array_equal(data, saved)


def test_scalar_kinds():
    s = KLLSketch(seed=0)
    for v in (1, 2.5, np.float32(3.5), np.int64(4), np.uint8(5), True, np.bool_(False), np.float16(6)):
        s.update(v)
    assert_exact(s, [1, 2.5, 3.5, 4, 5, 1, 0, 6])


def test_huge_python_int_is_a_float():
    s = KLLSketch(seed=0)
    s.update(2**70)
    s.update([2**63])
    assert s.max == float(2**70) and s.min == float(2**63)


# ---- weights --------------------------------------------------------------------


def test_weights_int_array_exact(rng):
    values = rng.normal(size=40)
    weights = rng.integers(1, 6, size=40)
    s = KLLSketch(seed=0)
    s.update(values, weights=weights)
    assert s.n == weights.sum()
    expanded = np.repeat(values, weights)
    if not s.is_estimation_mode:
        assert_exact(s, expanded)
    qs = query_points(values)
    np.testing.assert_array_equal(
        exact_weighted_rank(values, weights, qs), exact_rank(expanded, qs)
    )  # the weighted oracle agrees with np.repeat
    s._check_invariants()


@pytest.mark.parametrize("wdtype", [np.int8, np.int64, np.uint16, np.uint64, np.float32, np.float64])
def test_weights_dtypes(wdtype):
    values = np.array([3.0, 1.0, 2.0, 2.0, 10.0])
    weights = np.array([1, 2, 3, 4, 5], dtype=wdtype)
    s = KLLSketch(seed=0)
    s.update(values, weights=weights)
    assert s.n == 15 and not s.is_estimation_mode
    assert_exact(s, np.repeat(values, weights.astype(int)))
    s._check_invariants()


def test_weights_from_list_and_scalar():
    s = KLLSketch(seed=0)
    s.update([1.0, 2.0], weights=[3, 4])
    s.update(7.0, weights=5)
    s.update(8.0, weights=np.uint8(2))
    s.update(9.0, weights=[2])
    s.update(np.array(10.0), weights=3.0)
    assert s.n == 3 + 4 + 5 + 2 + 2 + 3
    assert_exact(s, [1.0] * 3 + [2.0] * 4 + [7.0] * 5 + [8.0] * 2 + [9.0] * 2 + [10.0] * 3)


def test_weights_all_ones_same_as_unweighted(rng):
    data = rng.normal(size=20_000)
    a, b = KLLSketch(seed=9), KLLSketch(seed=9)
    a.update(data)
    b.update(data, weights=np.ones(data.size, dtype=np.int64))
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "table"])
def test_large_weights_exact(exact_limit, rng):
    values = rng.normal(size=30)
    weights = rng.integers(1, 2**40, size=30, dtype=np.uint64)
    weights[0] = 2**40
    s = KLLSketch(seed=0, exact_limit=exact_limit)
    s.update(values, weights=weights)
    assert s.n == int(weights.astype(object).sum())
    assert s.min == values.min() and s.max == values.max()
    s._check_invariants()
    items, w = s.sorted_view()
    assert int(w.astype(object).sum()) == s.n
    qs = query_points(values)
    if exact_limit is None:
        assert not s.is_estimation_mode  # 30 distinct values: the table
    if not s.is_estimation_mode:
        for est, inclusive in itertools.product(ESTIMATORS, (True, False)):
            np.testing.assert_array_equal(
                s.rank(qs, inclusive=inclusive, estimator=est), exact_weighted_rank(values, weights, qs, inclusive)
            )
    else:  # weighted items are exact; the compactions of the low levels add KLL's error
        err = np.abs(s.rank(qs, estimator="step") - exact_weighted_rank(values, weights, qs)).max()
        assert err <= 2 * s.normalized_rank_error()


@pytest.mark.parametrize("exact_limit", [0, None])
def test_weight_two_to_the_62(exact_limit):
    s = KLLSketch(seed=0, exact_limit=exact_limit)
    s.update([1.0, 2.0], weights=[2**62, 2**62])
    assert s.n == 2**63
    assert s.rank(1.0) == 0.5 and s.quantile(0.5) == 1.0 and s.quantile(0.75) == 2.0
    s._check_invariants()


@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "table"])
def test_many_weighted_batches_exact_ranks_until_estimation(exact_limit, rng):
    s = KLLSketch(64, seed=5, exact_limit=exact_limit)
    vals, ws = [], []
    for _ in range(50):
        v = rng.integers(0, 20, size=3).astype(float)
        w = rng.integers(1, 1000, size=3)
        s.update(v, weights=w)
        vals.extend(v)
        ws.extend(w)
        s._check_invariants()
        assert s.n == sum(ws)
        qs = np.arange(-1, 21) + 0.5
        exact = exact_weighted_rank(vals, ws, qs)
        if exact_limit is None:
            assert not s.is_estimation_mode  # 20 distinct values: the table
        for est in ESTIMATORS:
            r = s.rank(qs, estimator=est)
            if not s.is_estimation_mode:
                np.testing.assert_array_equal(r, exact)
            else:
                slack = 0.0 if est == "step" else interp_slack(s)
                assert np.abs(r - exact).max() <= 2 * s.normalized_rank_error() + slack
    if exact_limit == 0:
        assert s.is_estimation_mode


def test_weighted_estimation_accuracy(rng):
    values = rng.normal(size=50_000)
    weights = rng.integers(1, 100, size=values.size)
    s = KLLSketch(200, seed=3)
    s.update(values, weights=weights)
    assert s.n == weights.sum() and s.is_estimation_mode
    s._check_invariants()
    qs = np.quantile(values, np.linspace(0, 1, 201))
    exact = exact_weighted_rank(values, weights, qs)
    for est in ESTIMATORS:
        slack = 0.0 if est == "step" else interp_slack(s)
        err = np.abs(s.rank(qs, estimator=est) - exact).max()
        assert err <= 2 * s.normalized_rank_error() + slack, est


# ---- copies -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["copy", "copy.copy", "deepcopy"])
def test_copy_independent(how, rng):
    a = KLLSketch(64, seed=4)
    a.update(rng.normal(size=5000))
    b = {"copy": a.copy, "copy.copy": lambda: copy.copy(a), "deepcopy": lambda: copy.deepcopy(a)}[how]()
    assert b is not a and type(b) is KLLSketch
    assert b.to_bytes() == a.to_bytes()
    saved = a.to_bytes()
    more = rng.normal(size=5000)
    b.update(more)
    assert a.to_bytes() == saved
    a.update(more)  # same random state: the same future
    assert a.to_bytes() == b.to_bytes()
    b._check_invariants()


def test_copy_keeps_nan_policy():
    a = KLLSketch(nan_policy="raise")
    b = a.copy()
    assert b.nan_policy == "raise"
    with pytest.raises(ValueError):
        b.update(np.nan)


def test_deepcopy_in_container(rng):
    a = KLLSketch(seed=1)
    a.update(rng.normal(size=100))
    box = {"s": a, "again": a}
    box2 = copy.deepcopy(box)
    assert box2["s"] is box2["again"]  # the memo is honoured by the caller
    assert box2["s"] is not a and box2["s"].to_bytes() == a.to_bytes()


# ---- merging ----------------------------------------------------------------------


@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "table"])
def test_merge_exact(exact_limit, rng):
    x, y = rng.normal(size=60), rng.normal(size=70)
    a, b = KLLSketch(seed=1, exact_limit=exact_limit), KLLSketch(seed=2, exact_limit=exact_limit)
    a.update(x)
    b.update(y)
    saved_b = b.to_bytes()
    a.merge(b)
    assert b.to_bytes() == saved_b
    assert_exact(a, np.concatenate([x, y]))
    a._check_invariants()


def test_add_and_iadd(rng):
    x, y = rng.normal(size=50), rng.normal(size=50)
    a, b = KLLSketch(seed=1), KLLSketch(seed=2)
    a.update(x)
    b.update(y)
    sa, sb = a.to_bytes(), b.to_bytes()
    c = a + b
    assert a.to_bytes() == sa and b.to_bytes() == sb
    assert_exact(c, np.concatenate([x, y]))
    ident = a
    a += b
    assert a is ident and a.to_bytes() == c.to_bytes()
    assert b.to_bytes() == sb


def test_add_non_sketch():
    a = KLLSketch()
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        1 + a
    with pytest.raises(TypeError):
        a += [1.0]
    with pytest.raises(TypeError):
        a + np.float64(1.0)


def test_merge_different_k(rng):
    data = rng.normal(size=100_000)
    a, b = KLLSketch(200, seed=1), KLLSketch(50, seed=2)
    a.update(data[:50_000])
    b.update(data[50_000:])
    c = a + b
    d = b + a
    for m in (c, d):
        assert m.k == 50 and m.n == data.size
        assert m.min == data.min() and m.max == data.max()
        m._check_invariants()
        qs = np.quantile(data, np.linspace(0, 1, 101))
        assert np.abs(m.rank(qs) - exact_rank(data, qs)).max() <= 2 * m.normalized_rank_error()
    assert m.normalized_rank_error() == KLLSketch(50).normalized_rank_error()


def test_smallest_level_capacity_follows_k_and_survives_merges(rng):
    """A new sketch below k = 64 lets its lowest levels shrink to 2 items
    (m = 2, byte 8 of its bytes; the KLL paper's floor), from k = 64 on to 8
    (DataSketches'): at small k the bytes go to the levels that carry the
    accuracy.  A merged sketch keeps the m of the sketch merged into, its k
    drops to the smaller one, and it goes on compacting within its
    capacities."""
    for k, m in ((8, 2), (63, 2), (64, 8), (200, 8)):
        s = KLLSketch(k, seed=1)
        s.update(rng.normal(size=20_000))
        assert s.to_bytes()[8] == m, k
    small = KLLSketch(8, seed=1, buckets=0)
    small.update(rng.normal(size=100_000))
    assert len(small.to_bytes()) < 900  # 8 items on each of ~14 levels would take more
    data = rng.normal(size=200_000)
    for first, second in ((200, 16), (16, 200)):
        a, b = KLLSketch(first, seed=2), KLLSketch(second, seed=3)
        a.update(data[:100_000])
        b.update(data[100_000:])
        a.merge(b)
        assert a.k == 16 and a.to_bytes()[8] == (8 if first == 200 else 2)
        a.update(rng.normal(size=50_000))  # compactions after the merge
        a._check_invariants()
        assert a.n == 250_000
        t = KLLSketch.from_bytes(a.to_bytes())
        assert t.to_bytes() == a.to_bytes()


def test_merge_empty_smaller_k_lowers_k(rng):
    a = KLLSketch(200, seed=1)
    a.update(rng.normal(size=10_000))
    a.merge(KLLSketch(16))
    assert a.k == 16 and a.n == 10_000
    a._check_invariants()
    e = KLLSketch(200)
    e.merge(KLLSketch(10))
    assert e.k == 10 and e.is_empty


def test_merge_into_empty_and_empty_into(rng):
    data = rng.normal(size=50)
    a = KLLSketch(seed=1)
    a.update(data)
    e = KLLSketch(seed=2)
    e.merge(a)
    assert_exact(e, data)
    a.merge(KLLSketch(seed=3))
    assert a.n == 50 and a.min == data.min()
    assert_exact(a, data)


def test_merge_table_mode_sketches_is_exact(rng):
    """Two streams of discrete scores, each held in its table: the merge adds
    the counts and stays exact, whatever the order."""
    x = rng.integers(1, 6, size=30_000).astype(float)
    y = rng.integers(3, 9, size=50_000).astype(float)
    a, b = KLLSketch(seed=1), KLLSketch(seed=2)
    a.update(x)
    b.update(y)
    saved = b.to_bytes()
    for m in (a + b, b + a, qsketch.merge_all([a, b])):
        assert b.to_bytes() == saved
        assert m.exact_limit == 300 and m.num_retained == 8
        assert_exact(m, np.concatenate([x, y]))
        m._check_invariants()
    a.merge(a)
    assert_exact(a, np.concatenate([x, x]))


def test_merge_tables_past_the_limit(rng):
    """Two tables whose union has more distinct values than the limit: the
    merge moves them into the compactors, exactly (n, min, max, and the
    weights of the view)."""
    x = np.repeat(np.arange(200.0), 10)
    y = np.repeat(np.arange(150.0, 350.0), 7)
    a, b = KLLSketch(seed=1), KLLSketch(seed=2)
    a.update(x)
    b.update(y)
    m = a + b
    assert m.exact_limit == 0
    assert m.n == x.size + y.size and m.min == 0.0 and m.max == 349.0
    m._check_invariants()
    both = np.concatenate([x, y])
    qs = np.arange(-1.0, 351.0) + 0.5
    eps = m.normalized_rank_error()
    assert np.abs(m.rank(qs, estimator="step") - exact_rank(both, qs)).max() <= 2 * eps
    for est in INTERPOLATING:
        assert np.abs(m.rank(qs, estimator=est) - exact_rank(both, qs)).max() <= 2 * eps + interp_slack(m)


@pytest.mark.parametrize("order", ["table_into_compactors", "compactors_into_table"])
def test_merge_table_with_compactors(order, rng):
    scores = rng.integers(1, 11, size=40_000).astype(float)
    cont = rng.normal(5.0, 3.0, size=60_000)
    t = KLLSketch(seed=1)
    t.update(scores)
    c = KLLSketch(seed=2)
    c.update(cont)
    assert t.exact_limit == 300 and c.exact_limit == 0 and c.is_estimation_mode
    m = t + c if order == "compactors_into_table" else c + t
    assert m.exact_limit == 0 and m.is_estimation_mode
    both = np.concatenate([scores, cont])
    assert m.n == both.size and m.min == both.min() and m.max == both.max()
    m._check_invariants()
    qs = np.concatenate([np.arange(0.5, 11.0, 0.5), np.quantile(both, np.linspace(0, 1, 101))])
    eps = m.normalized_rank_error()
    for est in ESTIMATORS:
        slack = 0.0 if est == "step" else interp_slack(m)
        for inclusive, mode in ((True, "inclusive"), (False, "exclusive")):
            err = np.abs(m.rank(qs, inclusive=inclusive, estimator=est) - exact_rank(both, qs, mode)).max()
            assert err <= 2 * eps + slack, (est, inclusive, err)
        assert m.rank(m.max, estimator=est) == 1.0


def test_merge_table_with_exact_compactors_is_exact(rng):
    """A table merged with a sketch whose compactors are still exact: exact."""
    scores = rng.integers(1, 4, size=5000).astype(float)
    few = rng.normal(size=50)
    t = KLLSketch(seed=1)
    t.update(scores)
    c = KLLSketch(seed=2, exact_limit=0)
    c.update(few)
    for m in (t + c, c + t):
        assert not m.is_estimation_mode
        assert_exact(m, np.concatenate([scores, few]))


def test_merge_tables_of_different_limits(rng):
    """A table takes the smaller limit of the two it merges.  Within it the
    merge stays an exact table; past it (here: 280 distinct values against a
    limit of 10, though b brings no new value) the values move into the
    compactors.  Either way the result is a consistent sketch that serializes
    and decodes, with n, min and max exact."""
    small = KLLSketch(200, seed=2, exact_limit=10)
    small.update([1.0, 2.0, 2.0])
    a = KLLSketch(200, seed=1)  # limit 300
    a.update([2.0, 3.0])
    a.merge(small)
    assert a.exact_limit == 10 and a.num_retained == 3
    assert_exact(a, [2.0, 3.0, 1.0, 2.0, 2.0])
    assert KLLSketch.from_bytes(a.to_bytes()).to_bytes() == a.to_bytes()

    big = KLLSketch(200, seed=1)
    data = np.arange(280.0)
    big.update(data)
    big.merge(small)  # values big has already
    big._check_invariants()
    assert big.exact_limit == 0 or big.num_retained <= big.exact_limit
    both = np.concatenate([data, [1.0, 2.0, 2.0]])
    assert big.n == both.size and big.min == 0.0 and big.max == 279.0
    t = KLLSketch.from_bytes(big.to_bytes())
    assert t.to_bytes() == big.to_bytes() and t.exact_limit == big.exact_limit
    qs = np.arange(-1.0, 281.0) + 0.5
    if big.is_estimation_mode:
        assert np.abs(big.rank(qs, estimator="step") - exact_rank(both, qs)).max() <= 2 * big.normalized_rank_error()
    else:
        assert_exact(big, both)


def test_merge_nan_counts():
    a, b = KLLSketch(), KLLSketch()
    a.update([1.0, np.nan])
    b.update([np.nan, np.nan])
    a.merge(b)
    assert a.n == 1 and a.nan_count == 3


@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "table"])
def test_merge_into_itself_doubles(exact_limit, rng):
    data = rng.normal(size=80)
    a = KLLSketch(seed=1, exact_limit=exact_limit)
    a.update(data)
    a.merge(a)
    assert a.n == 160
    assert_exact(a, np.concatenate([data, data]))
    a += a
    assert a.n == 320 and a.min == data.min() and a.max == data.max()
    a._check_invariants()
    big = KLLSketch(seed=2)
    big.update(rng.normal(size=20_000))
    big.merge(big)
    assert big.n == 40_000
    big._check_invariants()


def _parts(rng, m, size=30, exact_limit=None):
    data = [rng.normal(size=size) for _ in range(m)]
    sketches = []
    for i, d in enumerate(data):
        s = KLLSketch(seed=i, exact_limit=exact_limit)
        s.update(d)
        sketches.append(s)
    return data, sketches


@pytest.mark.parametrize("exact_limit", [0, None], ids=["compactors", "table"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 7, 8, 13])
def test_merge_all_shapes(m, exact_limit, rng):
    data, sketches = _parts(rng, m, size=200 // m - 1 if m > 1 else 150, exact_limit=exact_limit)
    saved = [s.to_bytes() for s in sketches]
    total = qsketch.merge_all(sketches)
    assert all(s.to_bytes() == b for s, b in zip(sketches, saved))  # inputs unchanged
    assert all(total is not s for s in sketches)
    allx = np.concatenate(data)
    assert_exact(total, allx)
    total._check_invariants()
    # from a generator too
    total2 = qsketch.merge_all(s for s in sketches)
    assert total2.to_bytes() == total.to_bytes()


def test_merge_all_estimation(rng):
    data = [rng.normal(size=5000) for _ in range(9)]
    sketches = []
    for i, d in enumerate(data):
        s = KLLSketch(100 + i, seed=i)
        s.update(d)
        sketches.append(s)
    total = qsketch.merge_all(sketches)
    allx = np.concatenate(data)
    assert total.k == 100 and total.n == allx.size
    assert total.min == allx.min() and total.max == allx.max()
    total._check_invariants()
    qs = np.quantile(allx, np.linspace(0, 1, 101))
    assert np.abs(total.rank(qs) - exact_rank(allx, qs)).max() <= 2 * total.normalized_rank_error()


def test_merge_all_single_returns_copy(rng):
    s = KLLSketch(seed=1)
    s.update([1.0, 2.0])
    t = qsketch.merge_all([s])
    assert t is not s and t.to_bytes() == s.to_bytes()
    t.update(3.0)
    assert s.n == 2


def test_merge_all_same_object_twice(rng):
    s = KLLSketch(seed=1)
    s.update([1.0, 2.0])
    t = qsketch.merge_all([s, s, s])
    assert t.n == 6 and s.n == 2


def test_merge_all_errors():
    with pytest.raises(ValueError):
        qsketch.merge_all([])
    with pytest.raises(ValueError):
        qsketch.merge_all(iter(()))
    with pytest.raises(TypeError):
        qsketch.merge_all([KLLSketch(), 3])
    with pytest.raises(TypeError):
        qsketch.merge_all([KLLSketch(), None])
    with pytest.raises(TypeError):
        qsketch.merge_all(5)


# ---- pickling and determinism --------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("n", [0, 1, 100, 30_000, "scores"])
def test_pickle_round_trip(protocol, n, rng):
    est = ESTIMATORS[protocol % 3]
    s = KLLSketch(64, seed=11, nan_policy="raise" if n == 1 or n == 30_000 else "ignore", estimator=est)
    if n == "scores":
        s.update(rng.integers(1, 6, size=10_000).astype(float))  # the table
        assert s.exact_limit == 256
    else:
        s.update(rng.normal(size=n))
    p1 = pickle.dumps(s, protocol=protocol)
    assert pickle.dumps(s, protocol=protocol) == p1  # pickling is deterministic
    t = pickle.loads(p1)
    assert type(t) is KLLSketch
    assert t.to_bytes() == s.to_bytes()
    assert t.nan_policy == s.nan_policy and t.k == s.k and t.n == s.n
    assert t.estimator == s.estimator == est and t.exact_limit == s.exact_limit
    assert t.num_retained == s.num_retained and t.is_estimation_mode == s.is_estimation_mode
    assert pickle.dumps(t, protocol=protocol) == p1
    t._check_invariants()
    if s.n:
        ps = np.linspace(0, 1, 51)
        for e in (None,) + ESTIMATORS:
            np.testing.assert_array_equal(t.quantile(ps, estimator=e), s.quantile(ps, estimator=e))


def test_same_seed_same_bytes(rng):
    data = rng.normal(size=100_000)
    extra = rng.normal(size=3000)

    def build(seed):
        s = KLLSketch(100, seed=seed)
        s.update(data)
        for v in extra[:500].tolist():
            s.update(v)
        s.update(extra[500:], weights=np.arange(1, 2501))
        s.merge(s.copy())
        return s

    assert build(7).to_bytes() == build(7).to_bytes()
    a, b = build(7), build(8)
    assert a.is_estimation_mode
    assert a.to_bytes() != b.to_bytes()
    assert a.n == b.n and a.min == b.min and a.max == b.max


def test_different_seeds_differ_in_estimation_mode(rng):
    data = rng.normal(size=5000)
    blobs, views = set(), set()
    for seed in range(10):
        s = KLLSketch(64, seed=seed)
        s.update(data)
        assert s.is_estimation_mode
        blobs.add(s.to_bytes())
        views.add(s.sorted_view()[0].tobytes())
    assert len(blobs) == 10
    assert len(views) == 10  # the coins differ, so the retained items differ


def test_same_seed_exact_mode_seed_irrelevant_for_answers(rng):
    data = rng.normal(size=100)
    a, b = KLLSketch(seed=1), KLLSketch(seed=2)
    a.update(data)
    b.update(data)
    np.testing.assert_array_equal(a.sorted_view()[0], b.sorted_view()[0])


# ---- views and query shapes ----------------------------------------------------


def test_sorted_view(rng):
    for n in (0, 1, 150, 100_000):
        s = KLLSketch(64, seed=2)
        data = rng.normal(size=n)
        s.update(data)
        s.update(rng.normal(size=10), weights=rng.integers(1, 1000, size=10))
        items, weights = s.sorted_view()
        assert items.dtype == np.float64 and weights.dtype == np.uint64
        assert items.shape == weights.shape == (s.num_retained,)
        assert np.all(items[1:] >= items[:-1])
        assert int(weights.astype(object).sum()) == s.n
        assert np.all(weights >= 1)
        assert items[0] >= s.min and items[-1] <= s.max
        # the view is a copy: mutating it does not touch the sketch
        items[:] = 0
        assert np.all(np.diff(s.sorted_view()[0]) >= 0)


def test_sorted_view_weights_are_powers_of_two_without_weights(rng):
    s = KLLSketch(32, seed=2)
    s.update(rng.normal(size=10_000))
    _, w = s.sorted_view()
    assert np.all((w & (w - np.uint64(1))) == 0)


@pytest.mark.parametrize("how", ["named", "default"])
def test_rank_consistent_with_sorted_view(how, rng):
    """The step estimator's rank is the cumulative weight of the sorted view."""
    s = KLLSketch(64, seed=2, estimator="step" if how == "default" else "learned")
    s.update(rng.normal(size=20_000))
    assert s.is_estimation_mode
    est = None if how == "default" else "step"
    items, weights = s.sorted_view()
    qs = np.concatenate([items, midpoints(items), [-10, 10]])
    cum = np.concatenate([[0], np.cumsum(weights)])
    expect = cum[np.searchsorted(items, qs, side="right")] / s.n
    np.testing.assert_array_equal(s.rank(qs, estimator=est), expect)
    expect_ex = cum[np.searchsorted(items, qs, side="left")] / s.n
    np.testing.assert_array_equal(s.rank(qs, inclusive=False, estimator=est), expect_ex)
    # unsorted queries take another code path: same answers
    perm = rng.permutation(qs.size)
    np.testing.assert_array_equal(s.rank(qs[perm], estimator=est), expect[perm])
    np.testing.assert_array_equal(s.rank(qs[perm], inclusive=False, estimator=est), expect_ex[perm])
    # the interpolating estimators stay in that step interval widened by the slack
    for other in INTERPOLATING:
        assert_within_step_interval(s, qs, other)
        r = s.rank(qs, estimator=other)
        np.testing.assert_array_equal(s.rank(qs[perm], estimator=other), r[perm])


@pytest.mark.parametrize("how", ["named", "default"])
def test_quantile_consistent_with_sorted_view(how, rng):
    """The step estimator's quantile is a retained item: the smallest whose
    step rank reaches p."""
    s = KLLSketch(64, seed=2, estimator="step" if how == "default" else "learned")
    s.update(rng.normal(size=20_000))
    assert s.is_estimation_mode
    est = None if how == "default" else "step"
    items, weights = s.sorted_view()
    ps = np.linspace(0, 1, 1001)
    got = s.quantile(ps, estimator=est)
    for p, x in zip(ps[1:-1], got[1:-1]):
        # smallest retained item whose estimated rank reaches p
        i = np.searchsorted(items, x)
        assert items[i] == x
        assert s.rank(x, estimator="step") >= p - 1e-12
        if i > 0:
            assert s.rank(items[i - 1], estimator="step") < p + 1e-12
    assert got[0] == s.min and got[-1] == s.max
    # the interpolating quantiles invert their own rank (p lies in the rank
    # interval [exclusive, inclusive] of quantile(p): equal to both between
    # retained items, inside the point mass of one at it), and fall between
    # retained items where the rank moves continuously
    for other in INTERPOLATING:
        q = s.quantile(ps, estimator=other)
        assert np.all(np.diff(q) >= 0) and q[0] == s.min and q[-1] == s.max
        inner = ps[1:-1]
        assert np.all(s.rank(q[1:-1], estimator=other) >= inner - 1e-9)
        assert np.all(s.rank(q[1:-1], inclusive=False, estimator=other) <= inner + 1e-9)
        assert np.isin(q[1:-1], items).mean() < 0.5


@pytest.mark.parametrize("n", [50, 50_000])
def test_cdf_pmf_consistency(n, rng):
    s = KLLSketch(seed=2)
    data = rng.normal(size=n)
    s.update(data)
    splits = np.linspace(-2, 2, 17)
    for est, inclusive in itertools.product((None,) + ESTIMATORS, (True, False)):
        cdf = s.cdf(splits, inclusive=inclusive, estimator=est)
        pmf = s.pmf(splits, inclusive=inclusive, estimator=est)
        assert cdf.shape == pmf.shape == (splits.size + 1,)
        assert cdf[-1] == 1.0
        assert math.isclose(pmf.sum(), 1.0, rel_tol=0, abs_tol=1e-12)
        np.testing.assert_allclose(np.cumsum(pmf), cdf, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(cdf[:-1], s.rank(splits, inclusive=inclusive, estimator=est))
        assert np.all(pmf >= 0) and np.all(np.diff(cdf) >= 0)
        if n < s.k:
            np.testing.assert_array_equal(
                cdf[:-1], exact_rank(data, splits, "inclusive" if inclusive else "exclusive")
            )
        else:
            exact = exact_rank(data, splits, "inclusive" if inclusive else "exclusive")
            slack = 0.0 if est == "step" else interp_slack(s)
            assert np.abs(cdf[:-1] - exact).max() <= 2 * s.normalized_rank_error(pmf=True) + slack
    # a single split and list input
    assert s.cdf([0.0]).shape == (2,)
    assert s.pmf(np.array([0.0])).shape == (2,)
    assert s.cdf([]).tolist() == [1.0] and s.pmf([]).tolist() == [1.0]


def test_quantile_return_types(rng):
    s = KLLSketch(seed=2)
    s.update(rng.normal(size=100))
    for p in (0.5, 0, 1, np.float64(0.5), np.float32(0.25)):
        r = s.quantile(p)
        assert type(r) is float
    r = s.quantile(np.array(0.5))
    assert isinstance(r, np.ndarray) and r.shape == ()
    for shape in [(3,), (2, 3), (1, 1, 4), (0,)]:
        ps = np.random.default_rng(0).random(shape)
        r = s.quantile(ps)
        assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == np.float64
        np.testing.assert_array_equal(r.reshape(-1), s.quantile(ps.reshape(-1)))
    assert s.quantile([0.5]).shape == (1,)
    assert s.quantiles(0.5).shape == (1,)
    np.testing.assert_array_equal(s.quantiles([0.1, 0.9]), s.quantile([0.1, 0.9]))


def test_rank_return_types(rng):
    s = KLLSketch(seed=2)
    data = rng.normal(size=100)
    s.update(data)
    for x in (0.5, 0, np.float64(0.5), np.int32(1), True):
        assert type(s.rank(x)) is float
    q = rng.normal(size=(4, 5))
    r = s.rank(q)
    assert r.shape == (4, 5) and r.dtype == np.float64
    np.testing.assert_array_equal(r, exact_rank(data, q))
    r3 = s.rank(rng.normal(size=(2, 3, 2)), inclusive=False)
    assert r3.shape == (2, 3, 2)
    assert s.rank([]).shape == (0,)
    assert s.rank([[1.0], [2.0]]).shape == (2, 1)
    lo, hi = s.rank_bounds(q)
    assert lo.shape == hi.shape == (4, 5)


def test_zero_d_array_queries_keep_their_shape(rng):
    """docs/usage.md: every query takes a number (returns a float) or an array
    of any shape (returns an array of that shape) -- a 0-d array included,
    as quantile() already does."""
    s = KLLSketch(seed=2)
    s.update(rng.normal(size=100))
    q = s.quantile(np.array(0.5))
    assert isinstance(q, np.ndarray) and q.shape == ()
    r = s.rank(np.array(0.0))
    assert isinstance(r, np.ndarray) and r.shape == ()
    assert float(r) == s.rank(0.0)


def test_rank_bounds_estimation(rng):
    s = KLLSketch(seed=2)
    data = rng.normal(size=100_000)
    s.update(data)
    qs = np.quantile(data, np.linspace(0, 1, 101))
    r = s.rank(qs, estimator="step")  # the bounds are about the step estimate
    assert np.any(r != s.rank(qs))  # which is not the default (learned) one
    eps = s.normalized_rank_error()
    lo, hi = s.rank_bounds(qs)
    np.testing.assert_allclose(lo, np.clip(r - eps, 0, 1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(hi, np.clip(r + eps, 0, 1), rtol=0, atol=1e-15)
    lo9, hi9 = s.rank_bounds(qs, confidence=0.9)
    lo999, hi999 = s.rank_bounds(qs, confidence=0.999)
    assert np.all(lo999 <= lo) and np.all(lo <= lo9) and np.all(hi9 <= hi) and np.all(hi <= hi999)
    assert np.all(lo999 < lo9 + 1e-15)
    exact = exact_rank(data, qs)
    assert np.all((exact >= lo999 - 1e-12) & (exact <= hi999 + 1e-12))
    a, b = s.rank_bounds(0.0)
    assert type(a) is float and type(b) is float and a <= b
    # the documented rescaling: eps * sqrt(log(2 / delta) / log(200))
    mid = np.abs(qs - np.median(data)) < 0.5  # ranks far from the clipping at 0 and 1
    for conf in (0.5, 0.9, 0.999, 0.999999):
        lo_c, hi_c = s.rank_bounds(qs, confidence=conf)
        want = eps * math.sqrt(math.log(2 / (1 - conf)) / math.log(200))
        np.testing.assert_allclose((hi_c - lo_c)[mid] / 2, want, rtol=1e-12)


def test_rank_bounds_do_not_depend_on_the_default_estimator(rng):
    data = rng.normal(size=100_000)
    qs = np.quantile(data, np.linspace(0, 1, 101))
    bounds = []
    for est in ESTIMATORS:
        s = KLLSketch(seed=2, estimator=est)
        s.update(data)
        bounds.append(s.rank_bounds(qs) + s.rank_bounds(qs, confidence=0.9))
    for b in bounds[1:]:
        for x, y in zip(b, bounds[0]):
            np.testing.assert_array_equal(x, y)


def test_rank_bounds_exact_in_table_mode(rng):
    data = rng.integers(0, 5, size=100_000).astype(float)
    s = KLLSketch(seed=2)
    s.update(data)
    qs = np.array([-1.0, 0.0, 0.5, 2.0, 4.0, 9.0])
    lo, hi = s.rank_bounds(qs, confidence=0.999999)
    np.testing.assert_array_equal(lo, exact_rank(data, qs))
    np.testing.assert_array_equal(hi, exact_rank(data, qs))


def test_normalized_rank_error_values():
    assert KLLSketch(200).normalized_rank_error() == pytest.approx(2.296 / 200**0.9723)
    assert KLLSketch(200).normalized_rank_error(pmf=True) == pytest.approx(2.446 / 200**0.9433)
    errs = [KLLSketch(k).normalized_rank_error() for k in (8, 64, 200, 1000, 65535)]
    assert errs == sorted(errs, reverse=True)


def test_repr(rng):
    s = KLLSketch(64, seed=0)
    assert repr(s).startswith("KLLSketch(k=64, n=0")
    s.update(rng.normal(size=1000))
    r = repr(s)
    assert "k=64" in r and "n=1000" in r and "estimation_mode=True" in r
    assert str(s) == r


def test_uninitialized_object_does_not_crash():
    s = KLLSketch.__new__(KLLSketch)
    assert "uninitialized" in repr(s)
    with pytest.raises(RuntimeError):
        s.update(1.0)
    with pytest.raises(RuntimeError):
        s.rank(1.0)
    with pytest.raises(RuntimeError):
        KLLSketch().merge(s)
    for call in (lambda: s.n, lambda: s.to_bytes(), lambda: s.copy(), lambda: s.quantile(0.5),
                 lambda: s.normalized_rank_error(), lambda: s.sorted_view(), lambda: s.merge(KLLSketch())):
        with pytest.raises(RuntimeError):
            call()


# ---- threads --------------------------------------------------------------------


def test_threads_share_one_sketch():
    s = KLLSketch(200, seed=1)
    n_threads, per_thread, batch, scalars = 4, 200_000, 10_000, 500
    errors = []
    stop = threading.Event()
    datas = [np.random.default_rng(100 + t).normal(size=per_thread) for t in range(n_threads)]
    singles = [np.random.default_rng(200 + t).normal(size=scalars) for t in range(n_threads)]

    def writer(t):
        try:
            d, one = datas[t], singles[t].tolist()
            per_batch = scalars // (per_thread // batch)
            for j, i in enumerate(range(0, per_thread, batch)):
                s.update(d[i:i + batch])
                for v in one[j * per_batch:(j + 1) * per_batch]:
                    s.update(v)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader():
        try:
            while not stop.is_set():
                n = s.n
                r = s.rank(np.linspace(-3, 3, 13))
                assert n == 0 or np.all((r >= 0) & (r <= 1))
                q = s.quantile([0.1, 0.5, 0.9])
                assert np.isnan(q).all() or np.all(np.diff(q) >= 0)
                c = s.copy()
                c._check_invariants()
                KLLSketch.from_bytes(s.to_bytes())._check_invariants()
                s.sorted_view()
                s.rank(0.0)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for th in readers + writers:
        th.start()
    for th in writers:
        th.join(timeout=120)
    stop.set()
    for th in readers:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in writers + readers)
    assert not errors, errors
    assert s.n == n_threads * (per_thread + scalars)
    s._check_invariants()
    alld = np.concatenate(datas + singles)
    assert s.min == alld.min() and s.max == alld.max()
    qs = np.quantile(alld, np.linspace(0, 1, 101))
    assert np.abs(s.rank(qs) - exact_rank(alld, qs)).max() <= 2 * s.normalized_rank_error()


def test_threads_scalar_updates_only():
    """Single-item updates from several threads (the binding may stage them)
    with concurrent readers: nothing is lost or counted twice."""
    s = KLLSketch(64, seed=3)
    per_thread = 30_000
    datas = [np.random.default_rng(300 + t).normal(size=per_thread) for t in range(4)]
    datas[0][::1000] = np.nan
    errors = []
    stop = threading.Event()

    def writer(t):
        try:
            for v in datas[t].tolist():
                s.update(v)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def reader():
        try:
            last = 0
            while not stop.is_set():
                n = s.n
                assert n >= last
                last = n
                s.quantile(0.5)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    ths = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    rd = threading.Thread(target=reader)
    rd.start()
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=120)
    stop.set()
    rd.join(timeout=60)
    assert not errors, errors
    alld = np.concatenate(datas)
    assert s.nan_count == int(np.isnan(alld).sum())
    assert s.n == int((~np.isnan(alld)).sum())
    assert s.min == np.nanmin(alld) and s.max == np.nanmax(alld)
    s._check_invariants()


def test_threads_cross_merge_no_deadlock(rng):
    a, b = KLLSketch(64, seed=1), KLLSketch(64, seed=2)
    a.update(rng.normal(size=1000))
    b.update(rng.normal(size=1000))
    errors = []

    def run(x, y):
        try:
            for _ in range(20):
                x.merge(y)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    t1 = threading.Thread(target=run, args=(a, b))
    t2 = threading.Thread(target=run, args=(b, a))
    t1.start()
    t2.start()
    t1.join(timeout=60)
    t2.join(timeout=60)
    assert not t1.is_alive() and not t2.is_alive(), "deadlock"
    assert not errors, errors
    a._check_invariants()
    b._check_invariants()


def test_threads_separate_sketches_match_serial():
    datas = [np.random.default_rng(t).normal(size=100_000) for t in range(4)]
    serial = []
    for t, d in enumerate(datas):
        s = KLLSketch(seed=t)
        s.update(d)
        serial.append(s.to_bytes())
    out = [None] * 4

    def run(t):
        s = KLLSketch(seed=t)
        s.update(datas[t])
        out[t] = s.to_bytes()

    ths = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    assert out == serial
