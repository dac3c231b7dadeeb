"""Property-based tests (hypothesis, derandomized: see conftest.py).

Exact mode must agree with the oracle on arbitrary floats (signed zeros,
subnormals, infinities, huge magnitudes, duplicates); merges, copies and
serialization must preserve answers; and a state machine interleaves every
kind of call against the list of all values seen.
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
    values = np.asarray(values, dtype=np.float64)
    qs = queries_for(values)
    assert s.n == values.size
    np.testing.assert_array_equal(s.rank(qs), exact_rank(values, qs, "inclusive"))
    np.testing.assert_array_equal(s.rank(qs, inclusive=False), exact_rank(values, qs, "exclusive"))
    ps = np.asarray(ps, dtype=np.float64)
    np.testing.assert_array_equal(s.quantile(ps), exact_quantile(values, ps, True))
    np.testing.assert_array_equal(s.quantile(ps, inclusive=False), exact_quantile(values, ps, False))


@given(k=ks, data=st.data())
def test_exact_mode_equals_oracle(k, data):
    values = data.draw(st.lists(floats, max_size=k - 1), label="values")
    ps = data.draw(st.lists(probabilities, max_size=20), label="ps")
    s = KLLSketch(k, seed=1)
    s.update(values)
    assert not s.is_estimation_mode
    assert s.n == len(values) and s.num_retained == len(values)
    if values:
        assert s.min == min(values) and s.max == max(values)
        ps = ps + [i / len(values) for i in range(len(values) + 1)]
    assert_exact_answers(s, values, ps)
    s._check_invariants()


@given(k=ks, data=st.data())
def test_exact_mode_scalar_updates_equal_oracle(k, data):
    values = data.draw(st.lists(floats, max_size=k - 1), label="values")
    s = KLLSketch(k, seed=1)
    for v in values:
        s.update(v)
    assert not s.is_estimation_mode
    assert_exact_answers(s, values, [0.0, 0.25, 0.5, 0.75, 1.0])


@given(k=ks, data=st.data())
def test_exact_merge_equals_concatenation(k, data):
    a_vals = data.draw(st.lists(floats, max_size=k - 1), label="a")
    b_vals = data.draw(st.lists(floats, max_size=k - 1 - len(a_vals)), label="b")
    a, b = KLLSketch(k, seed=1), KLLSketch(k, seed=2)
    a.update(a_vals)
    b.update(b_vals)
    both = a_vals + b_vals
    whole = KLLSketch(k, seed=3)
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
)
def test_serialization_round_trip(k, values, nans, policy, seed):
    s = KLLSketch(k, seed=seed, nan_policy=policy)
    s.update(values)
    if policy == "ignore":
        s.update([math.nan] * nans)
    blob = s.to_bytes()
    t = KLLSketch.from_bytes(blob)
    assert t.to_bytes() == blob
    assert t.nan_policy == policy and t.k == k
    assert (t.n, t.nan_count, t.num_retained, t.is_estimation_mode) == (
        s.n, s.nan_count, s.num_retained, s.is_estimation_mode)
    assert repr(t.min) == repr(s.min) and repr(t.max) == repr(s.max)
    qs = queries_for(values)
    ps = np.linspace(0, 1, 23)
    for inclusive in (True, False):
        np.testing.assert_array_equal(t.rank(qs, inclusive=inclusive), s.rank(qs, inclusive=inclusive))
        np.testing.assert_array_equal(t.quantile(ps, inclusive=inclusive), s.quantile(ps, inclusive=inclusive))
    for a, b in zip(t.sorted_view(), s.sorted_view()):
        np.testing.assert_array_equal(a, b)
    t._check_invariants()


@given(k=st.sampled_from([8, 16, 64]), values=st.lists(floats, min_size=1, max_size=800),
       qs=st.lists(floats, min_size=1, max_size=30), seed=st.integers(0, 1000))
def test_rank_monotone(k, values, qs, seed):
    s = KLLSketch(k, seed=seed)
    s.update(values)
    q = np.sort(np.asarray(qs + list(values[:50])))
    for inclusive in (True, False):
        r = s.rank(q, inclusive=inclusive)
        assert np.all(np.diff(r) >= 0)
        assert np.all((r >= 0) & (r <= 1))
        # the same in scalar form, and in unsorted order
        perm = np.random.default_rng(seed).permutation(q.size)
        np.testing.assert_array_equal(s.rank(q[perm], inclusive=inclusive), r[perm])
    assert np.all(s.rank(q, inclusive=False) <= s.rank(q))
    assert s.rank(s.max) == 1.0 and s.rank(s.min, inclusive=False) == 0.0


@given(k=st.sampled_from([8, 16, 64]), values=st.lists(floats, min_size=1, max_size=800),
       ps=st.lists(probabilities, min_size=1, max_size=30), seed=st.integers(0, 1000))
def test_quantile_monotone(k, values, ps, seed):
    s = KLLSketch(k, seed=seed)
    s.update(values)
    p = np.sort(np.asarray(ps + [0.0, 1.0]))
    for inclusive in (True, False):
        q = s.quantile(p, inclusive=inclusive)
        assert np.all(q[1:] >= q[:-1])
        assert q[0] == min(values) and q[-1] == max(values)
        assert np.all((q >= s.min) & (q <= s.max))
        # each answer is one of the values
        assert np.all(np.isin(q, np.asarray(values)))
    assert np.all(s.quantile(p, inclusive=False) >= s.quantile(p))
    # quantile inverts rank on the retained items: rank(quantile(p)) >= p
    inner = p[(p > 0) & (p < 1)]
    if inner.size:
        r = s.rank(s.quantile(inner))
        assert np.all(r >= inner - 1e-12)


@given(values=st.lists(floats, min_size=1, max_size=150), weights=st.data())
def test_weighted_exact_mode(values, weights):
    w = weights.draw(st.lists(st.integers(1, 2**20), min_size=len(values), max_size=len(values)))
    s = KLLSketch(200, seed=0)
    s.update(values, weights=w)
    assert s.n == sum(w)
    s._check_invariants()
    if not s.is_estimation_mode:
        qs = queries_for(values)
        for inclusive in (True, False):
            np.testing.assert_array_equal(
                s.rank(qs, inclusive=inclusive), exact_weighted_rank(values, w, qs, inclusive)
            )
    else:
        qs = queries_for(values)
        err = np.abs(s.rank(qs) - exact_weighted_rank(values, w, qs)).max()
        assert err <= 2 * s.normalized_rank_error()


# ---- the state machine -------------------------------------------------------------

values_st = st.lists(floats, max_size=60)
nan_or_float = st.one_of(floats, st.just(math.nan))


class SketchMachine(RuleBasedStateMachine):
    """One sketch under arbitrary interleavings of updates, merges, copies and
    round trips, checked against the multiset of every value seen.

    A twin sketch receives the same updates and merges but is never copied or
    round-tripped: copies and decoded sketches keep the full state (items,
    layout, random stream), so the twin's bytes must stay identical."""

    @initialize(k=st.sampled_from([8, 16, 64, 200]), seed=st.integers(0, 2**64 - 1))
    def start(self, k, seed):
        self.s = KLLSketch(k, seed=seed)
        self.twin = KLLSketch(k, seed=seed)
        self.values = []
        self.weights = []
        self.nans = 0
        self.k = k

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
          nans=st.integers(0, 2))
    def merge_fresh(self, xs, k, seed, nans):
        other = KLLSketch(k, seed=seed)
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
        assert s.is_empty == (total == 0)
        if not self.values:
            assert math.isnan(s.min) and math.isnan(s.max)
            assert math.isnan(s.rank(0.0))
            return
        assert s.min == min(self.values) and s.max == max(self.values)
        qs = np.concatenate([queries_for(self.values[-40:]), [min(self.values), max(self.values)]])
        exact_in = exact_weighted_rank(self.values, self.weights, qs, True)
        exact_ex = exact_weighted_rank(self.values, self.weights, qs, False)
        r_in, r_ex = s.rank(qs), s.rank(qs, inclusive=False)
        if not s.is_estimation_mode:
            np.testing.assert_array_equal(r_in, exact_in)
            np.testing.assert_array_equal(r_ex, exact_ex)
        else:
            bound = 2 * s.normalized_rank_error()
            err = max(np.abs(r_in - exact_in).max(), np.abs(r_ex - exact_ex).max())
            note(f"max rank error {err} (bound {bound})")
            assert err <= bound
        ps = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
        q = s.quantile(ps)
        assert q[0] == s.min and q[-1] == s.max and np.all(q[1:] >= q[:-1])

    @invariant()
    def twin_identical(self):
        assert self.s.to_bytes() == self.twin.to_bytes()


SketchMachine.TestCase.settings = settings(
    settings.default, stateful_step_count=40, max_examples=max(60, settings.default.max_examples // 2)
)
test_sketch_machine = SketchMachine.TestCase
