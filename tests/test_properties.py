"""Property-based tests (hypothesis, derandomized: see conftest.py).

Exact mode must agree with the oracle on arbitrary floats (signed zeros,
subnormals, infinities, huge magnitudes, duplicates), with every estimator,
both in the exact low-cardinality table (the default) and in the compactors
(exact_limit=0); merges, copies and serialization must preserve answers; and a
state machine interleaves every kind of call against the list of all values
seen.  In estimation mode the step estimator keeps KLL's bound and the
interpolating ones the bound plus their slack (tests/interp_bounds.py).
"""

import math

import numpy as np
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import qsketch
from qsketch import KLLSketch

from interp_bounds import ESTIMATORS, assert_within_step_interval, interp_slack
from oracle import exact_quantile, exact_rank, exact_weighted_rank

SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
           -1.7976931348623157e308, math.inf, -math.inf, 1.0, -1.0, 0.5]

floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=True, allow_subnormal=True),
    st.sampled_from(SPECIAL),
    st.integers(-5, 5).map(float),  # duplicates
)
probabilities = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 1.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1e-300, 1 - 1e-16]),
)
ks = st.sampled_from([8, 9, 16, 64, 200])
exact_limits = st.sampled_from([None, 0, 1, 3])
estimators = st.sampled_from(ESTIMATORS)


def queries_for(values):
    v = np.asarray(values, dtype=np.float64)
    extra = np.array([0.0, -0.0, math.inf, -math.inf, 1.0, -1.0, 1e300, -1e300])
    if v.size:
        u = np.unique(v)
        with np.errstate(over="ignore", invalid="ignore"):
            mids = (u[1:] + u[:-1]) / 2
        mids = mids[~np.isnan(mids)]
        with np.errstate(over="ignore"):
            nxt = np.concatenate([np.nextafter(u, -np.inf), np.nextafter(u, np.inf)])
        extra = np.concatenate([extra, u, mids, nxt])
    return extra


def assert_exact_answers(s, values, ps):
    """Every estimator (and the sketch's default) gives the oracle's answers."""
    values = np.asarray(values, dtype=np.float64)
    qs = queries_for(values)
    assert s.n == values.size
    ps = np.asarray(ps, dtype=np.float64)
    for est in (None,) + ESTIMATORS:
        np.testing.assert_array_equal(s.rank(qs, estimator=est), exact_rank(values, qs, "inclusive"))
        np.testing.assert_array_equal(
            s.rank(qs, inclusive=False, estimator=est), exact_rank(values, qs, "exclusive"))
        np.testing.assert_array_equal(s.quantile(ps, estimator=est), exact_quantile(values, ps, True))
        np.testing.assert_array_equal(
            s.quantile(ps, inclusive=False, estimator=est), exact_quantile(values, ps, False))


def distinct(values):
    """How many distinct values (0.0 and -0.0 are one value)."""
    return np.unique(np.asarray(values, dtype=np.float64)).size


@given(k=ks, table=st.booleans(), data=st.data())
def test_exact_mode_equals_oracle(k, table, data):
    values = data.draw(st.lists(floats, max_size=k - 1), label="values")
    ps = data.draw(st.lists(probabilities, max_size=20), label="ps")
    s = KLLSketch(k, seed=1, exact_limit=None if table else 0)
    s.update(values)
    assert not s.is_estimation_mode
    assert s.n == len(values)
    if table:  # the table: one entry per distinct value
        assert s.exact_limit == max(256, math.ceil(1.5 * k))
        assert s.num_retained == distinct(values)
    else:  # the compactors before any compaction: every item
        assert s.exact_limit == 0
        assert s.num_retained == len(values)
    if values:
        assert s.min == min(values) and s.max == max(values)
        ps = ps + [i / len(values) for i in range(len(values) + 1)]
    assert_exact_answers(s, values, ps)
    s._check_invariants()


@given(k=ks, exact_limit=st.sampled_from([None, 0]), data=st.data())
def test_exact_mode_scalar_updates_equal_oracle(k, exact_limit, data):
    values = data.draw(st.lists(floats, max_size=k - 1), label="values")
    s = KLLSketch(k, seed=1, exact_limit=exact_limit)
    for v in values:
        s.update(v)
    assert not s.is_estimation_mode
    assert_exact_answers(s, values, [0.0, 0.25, 0.5, 0.75, 1.0])


@given(k=ks, exact_limit=st.sampled_from([None, 0]), data=st.data())
def test_exact_merge_equals_concatenation(k, exact_limit, data):
    a_vals = data.draw(st.lists(floats, max_size=k - 1), label="a")
    b_vals = data.draw(st.lists(floats, max_size=k - 1 - len(a_vals)), label="b")
    a, b = KLLSketch(k, seed=1, exact_limit=exact_limit), KLLSketch(k, seed=2, exact_limit=exact_limit)
    a.update(a_vals)
    b.update(b_vals)
    both = a_vals + b_vals
    whole = KLLSketch(k, seed=3, exact_limit=exact_limit)
    whole.update(both)
    for m in (a + b, b + a, qsketch.merge_all([a, b])):
        assert not m.is_estimation_mode
        assert m.n == len(both)
        qs = queries_for(both)
        np.testing.assert_array_equal(m.rank(qs), whole.rank(qs))
        np.testing.assert_array_equal(m.rank(qs, inclusive=False), whole.rank(qs, inclusive=False))
        np.testing.assert_array_equal(m.sorted_view()[0], whole.sorted_view()[0])
        if both:
            assert m.min == min(both) and m.max == max(both)
        assert_exact_answers(m, both, [0.0, 0.5, 1.0, 0.3])
        m._check_invariants()


@given(
    k=st.sampled_from([8, 16, 64]),
    values=st.lists(floats, max_size=600),
    nans=st.integers(0, 3),
    policy=st.sampled_from(["ignore", "raise"]),
    seed=st.integers(0, 2**64 - 1),
    estimator=estimators,
    exact_limit=exact_limits,
)
def test_serialization_round_trip(k, values, nans, policy, seed, estimator, exact_limit):
    s = KLLSketch(k, seed=seed, nan_policy=policy, estimator=estimator, exact_limit=exact_limit)
    s.update(values)
    if policy == "ignore":
        s.update([math.nan] * nans)
    blob = s.to_bytes()
    t = KLLSketch.from_bytes(blob)
    assert t.to_bytes() == blob
    assert t.nan_policy == policy and t.k == k
    assert t.estimator == estimator and t.exact_limit == s.exact_limit
    assert (t.n, t.nan_count, t.num_retained, t.is_estimation_mode) == (
        s.n, s.nan_count, s.num_retained, s.is_estimation_mode)
    assert repr(t.min) == repr(s.min) and repr(t.max) == repr(s.max)
    qs = queries_for(values)
    ps = np.linspace(0, 1, 23)
    for est, inclusive in ((e, i) for e in (None,) + ESTIMATORS for i in (True, False)):
        np.testing.assert_array_equal(t.rank(qs, inclusive=inclusive, estimator=est),
                                      s.rank(qs, inclusive=inclusive, estimator=est))
        np.testing.assert_array_equal(t.quantile(ps, inclusive=inclusive, estimator=est),
                                      s.quantile(ps, inclusive=inclusive, estimator=est))
    for a, b in zip(t.sorted_view(), s.sorted_view()):
        np.testing.assert_array_equal(a, b)
    t._check_invariants()


@given(k=st.sampled_from([8, 16, 64]), values=st.lists(floats, min_size=1, max_size=800),
       qs=st.lists(floats, min_size=1, max_size=30), seed=st.integers(0, 1000),
       exact_limit=exact_limits)
def test_rank_monotone(k, values, qs, seed, exact_limit):
    s = KLLSketch(k, seed=seed, exact_limit=exact_limit)
    s.update(values)
    q = np.sort(np.asarray(qs + list(values[:50])))
    for est in ESTIMATORS:
        for inclusive in (True, False):
            r = s.rank(q, inclusive=inclusive, estimator=est)
            assert np.all(np.diff(r) >= 0)
            assert np.all((r >= 0) & (r <= 1))
            # the same in scalar form, and in unsorted order
            perm = np.random.default_rng(seed).permutation(q.size)
            np.testing.assert_array_equal(s.rank(q[perm], inclusive=inclusive, estimator=est), r[perm])
            assert s.rank(float(q[0]), inclusive=inclusive, estimator=est) == r[0]
        assert np.all(s.rank(q, inclusive=False, estimator=est) <= s.rank(q, estimator=est))
        assert s.rank(s.max, estimator=est) == 1.0 and s.rank(s.min, inclusive=False, estimator=est) == 0.0
        if est != "step":
            assert_within_step_interval(s, q, est)


@given(k=st.sampled_from([8, 16, 64]), values=st.lists(floats, min_size=1, max_size=800),
       ps=st.lists(probabilities, min_size=1, max_size=30), seed=st.integers(0, 1000),
       exact_limit=exact_limits)
def test_quantile_monotone(k, values, ps, seed, exact_limit):
    s = KLLSketch(k, seed=seed, exact_limit=exact_limit)
    s.update(values)
    p = np.sort(np.asarray(ps + [0.0, 1.0]))
    inner = p[(p > 0) & (p < 1)]
    for est in ESTIMATORS:
        for inclusive in (True, False):
            q = s.quantile(p, inclusive=inclusive, estimator=est)
            assert np.all(q[1:] >= q[:-1])
            assert q[0] == min(values) and q[-1] == max(values)
            assert np.all((q >= s.min) & (q <= s.max))
            if est == "step" or not s.is_estimation_mode:
                # each answer is one of the values (a retained item)
                assert np.all(np.isin(q, np.asarray(values)))
        assert np.all(s.quantile(p, inclusive=False, estimator=est) >= s.quantile(p, estimator=est))
        # quantile inverts rank: rank(quantile(p)) >= p (and for the
        # interpolating estimators the exclusive rank does not pass p).  The
        # target p n is rounded to 2**-20 of an item, as documented: that
        # much rank may be missing between the retained items.
        if inner.size:
            q = s.quantile(inner, estimator=est)
            tol = 1e-12 if est == "step" else 2.0**-20 / s.n + 1e-12
            assert np.all(s.rank(q, estimator=est) >= inner - tol)
            if est != "step":
                assert np.all(s.rank(q, inclusive=False, estimator=est) <= inner + tol)


@given(values=st.lists(floats, min_size=1, max_size=150), weights=st.data(),
       exact_limit=st.sampled_from([None, 0]))
def test_weighted_exact_mode(values, weights, exact_limit):
    w = weights.draw(st.lists(st.integers(1, 2**20), min_size=len(values), max_size=len(values)))
    s = KLLSketch(200, seed=0, exact_limit=exact_limit)
    s.update(values, weights=w)
    assert s.n == sum(w)
    s._check_invariants()
    if exact_limit is None:
        assert not s.is_estimation_mode  # at most 150 distinct values: the table
    qs = queries_for(values)
    for est in ESTIMATORS:
        if not s.is_estimation_mode:
            for inclusive in (True, False):
                np.testing.assert_array_equal(
                    s.rank(qs, inclusive=inclusive, estimator=est), exact_weighted_rank(values, w, qs, inclusive)
                )
        else:
            slack = 0.0 if est == "step" else interp_slack(s)
            err = np.abs(s.rank(qs, estimator=est) - exact_weighted_rank(values, w, qs)).max()
            assert err <= 2 * s.normalized_rank_error() + slack


# ---- the state machine -------------------------------------------------------------

values_st = st.lists(floats, max_size=60)
nan_or_float = st.one_of(floats, st.just(math.nan))


class SketchMachine(RuleBasedStateMachine):
    """One sketch under arbitrary interleavings of updates, merges, copies and
    round trips, checked against the multiset of every value seen.

    A twin sketch receives the same updates and merges but is never copied or
    round-tripped: copies and decoded sketches keep the full state (items,
    layout, table, random stream), so the twin's bytes must stay identical.

    The sketch starts with the default exact table, a small one, or none, and
    with any default estimator; merged-in sketches have tables too."""

    @initialize(k=st.sampled_from([8, 16, 64, 200]), seed=st.integers(0, 2**64 - 1),
                exact_limit=st.sampled_from([None, 0, 5, 40]), estimator=estimators)
    def start(self, k, seed, exact_limit, estimator):
        self.s = KLLSketch(k, seed=seed, exact_limit=exact_limit, estimator=estimator)
        self.twin = KLLSketch(k, seed=seed, exact_limit=exact_limit, estimator=estimator)
        self.values = []
        self.weights = []
        self.nans = 0
        self.k = k
        self.estimator = estimator

    def _both(self, f):
        f(self.s)
        f(self.twin)

    def _record(self, vals, ws=None):
        ws = [1] * len(vals) if ws is None else list(ws)
        for v, w in zip(vals, ws):
            if math.isnan(v):
                self.nans += w
            else:
                self.values.append(v)
                self.weights.append(w)

    @rule(x=nan_or_float)
    def update_scalar(self, x):
        self._both(lambda s: s.update(x))
        self._record([x])

    @rule(xs=st.lists(floats, min_size=1, max_size=10), reps=st.integers(1, 30))
    def update_scalars(self, xs, reps):
        xs = (xs * reps)[:200]
        for x in xs:
            self.s.update(x)
            self.twin.update(x)
        self._record(xs)

    @rule(xs=values_st, with_nan=st.booleans())
    def update_batch(self, xs, with_nan):
        if with_nan:
            xs = xs + [math.nan]
        arr = np.array(xs, dtype=np.float64)
        self._both(lambda s: s.update(arr))
        self._record(xs)

    @rule(x=floats, n=st.integers(1000, 5000))
    def update_big_batch(self, x, n):
        arr = np.linspace(-1, 1, n) * (1.0 if math.isinf(x) else abs(x) + 1.0)
        self._both(lambda s: s.update(arr))
        self._record(arr.tolist())

    @rule(data=st.data())
    def update_weighted(self, data):
        xs = data.draw(st.lists(nan_or_float, min_size=1, max_size=20))
        ws = data.draw(st.lists(st.integers(1, 1000), min_size=len(xs), max_size=len(xs)))
        self._both(lambda s: s.update(xs, weights=ws))
        self._record(xs, ws)

    @rule(xs=values_st, k=st.sampled_from([8, 16, 64, 200, 400]), seed=st.integers(0, 100),
          nans=st.integers(0, 2), exact_limit=st.sampled_from([None, 0, 5]))
    def merge_fresh(self, xs, k, seed, nans, exact_limit):
        other = KLLSketch(k, seed=seed, exact_limit=exact_limit)
        other.update(xs)
        other.update([math.nan] * nans)
        saved = other.to_bytes()
        self._both(lambda s: s.merge(other))
        assert other.to_bytes() == saved
        self._record(xs + [math.nan] * nans)
        self.k = min(self.k, k)

    @precondition(lambda self: len(self.values) < 20_000)
    @rule()
    def merge_self(self):
        self._both(lambda s: s.merge(s))
        self.values = self.values * 2
        self.weights = self.weights * 2
        self.nans *= 2

    @rule()
    def copy(self):
        self.s = self.s.copy()

    @rule()
    def round_trip(self):
        blob = self.s.to_bytes()
        self.s = KLLSketch.from_bytes(blob)
        assert self.s.to_bytes() == blob

    @invariant()
    def matches_reference(self):
        s = self.s
        s._check_invariants()
        total = sum(self.weights)
        assert s.n == total
        assert s.nan_count == self.nans
        assert s.k == self.k
        assert s.estimator == self.estimator
        assert s.is_empty == (total == 0)
        if not self.values:
            assert math.isnan(s.min) and math.isnan(s.max)
            assert math.isnan(s.rank(0.0))
            return
        assert s.min == min(self.values) and s.max == max(self.values)
        if s.exact_limit:  # the table: exact, one entry per distinct value
            assert not s.is_estimation_mode
            assert s.num_retained == distinct(self.values) <= s.exact_limit
        qs = np.concatenate([queries_for(self.values[-40:]), [min(self.values), max(self.values)]])
        exact_in = exact_weighted_rank(self.values, self.weights, qs, True)
        exact_ex = exact_weighted_rank(self.values, self.weights, qs, False)
        slack = interp_slack(s)
        for est in (None,) + ESTIMATORS:
            r_in, r_ex = s.rank(qs, estimator=est), s.rank(qs, inclusive=False, estimator=est)
            if not s.is_estimation_mode:
                np.testing.assert_array_equal(r_in, exact_in)
                np.testing.assert_array_equal(r_ex, exact_ex)
            else:
                # KLL's bound is about the step estimator; the others add their slack
                step = (est or self.estimator) == "step"
                bound = 2 * s.normalized_rank_error() + (0.0 if step else slack)
                err = max(np.abs(r_in - exact_in).max(), np.abs(r_ex - exact_ex).max())
                note(f"{est or self.estimator}: max rank error {err} (bound {bound}, slack {slack})")
                assert err <= bound
                if not step:
                    assert_within_step_interval(s, qs, est, slack)
            ps = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
            q = s.quantile(ps, estimator=est)
            assert q[0] == s.min and q[-1] == s.max and np.all(q[1:] >= q[:-1])

    @invariant()
    def twin_identical(self):
        assert self.s.to_bytes() == self.twin.to_bytes()


SketchMachine.TestCase.settings = settings(
    settings.default, stateful_step_count=40, max_examples=max(60, settings.default.max_examples // 2)
)
test_sketch_machine = SketchMachine.TestCase
