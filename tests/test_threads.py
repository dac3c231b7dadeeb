"""Threads: one sketch shared by many threads, and many sketches in parallel.

The binding's contract (src/qsketch/_core.pyx, docs/reliability.md): every
call on a sketch holds that sketch's lock, batch updates, merges and array
queries release the GIL while they work, scalar updates are staged under the
GIL and flushed under the lock, and a merge takes both locks in a fixed
order.  So whatever the interleaving:

* no update is lost or counted twice (n, nan_count, min and max are exact,
  and exact-mode answers stay exact);
* answers stay within the documented bounds (checked here with wide margins,
  so the tests cannot fail by bad luck whatever the interleaving);
* every snapshot a reader takes is a valid sketch;
* a.merge(b) and b.merge(a) running at once do not deadlock;
* sketches used by separate threads are bit-identical to the same sketches
  built in one thread (no state is shared between sketches).

The interleaving differs from run to run, so nothing here compares results
that depend on it, except through exact counts and wide error bounds.
"""

import pickle
import threading

import numpy as np
import pytest

from qsketch import KLLSketch

THREADS = 8
JOIN_TIMEOUT = 300  # seconds; only a deadlock gets near it


def run_threads(targets):
    """Start every target at once (behind a barrier) and join them; re-raise
    the first exception of any thread."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def wrap(fn, i):
        def body():
            try:
                barrier.wait()
                fn(i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        return body

    threads = [threading.Thread(target=wrap(fn, i), daemon=True) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    if errors:
        raise errors[0]


def max_rank_error(sketch, data, estimator="step", points=199):
    """Largest |estimated - exact| inclusive rank at evenly spaced exact quantiles."""
    data = np.sort(data)
    idx = np.linspace(0, data.size - 1, points).astype(int)
    qs = data[idx]
    exact = np.searchsorted(data, qs, side="right") / data.size
    return float(np.max(np.abs(sketch.rank(qs, estimator=estimator) - exact)))


def thread_streams(seed, sizes):
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=i, scale=1 + i, size=s) for i, s in enumerate(sizes)]


# ---- one shared sketch ------------------------------------------------------------------------


def test_shared_sketch_mixed_updates_lose_nothing():
    """8 threads feed one sketch with batches, scalars (the staged path) and
    weighted items, NaNs among them: counts exact, accuracy within the bound."""
    s = KLLSketch(200, seed=1)
    streams = thread_streams(10, [150_000] * THREADS)
    nan_every = 997

    def work(i):
        x = streams[i]
        rng = np.random.default_rng(100 + i)
        pos = 0
        while pos < x.size:
            mode = rng.integers(0, 3)
            if mode == 0:  # a batch of random length, with NaNs
                m = int(rng.integers(1, 5000))
                chunk = x[pos:pos + m].copy()
                chunk[::nan_every] = np.nan
                s.update(chunk)
                pos += m
            elif mode == 1:  # scalars, staged by the binding
                for v in x[pos:pos + 300].tolist():
                    s.update(v)
                pos += 300
            else:  # weighted, all weights 1 (the weighted code path, same items)
                m = int(rng.integers(1, 2000))
                chunk = x[pos:pos + m]
                s.update(chunk, weights=np.ones(chunk.size, dtype=np.int64))
                pos += m

    # the NaNs put in by mode 0 replace items: reconstruct exactly what went in
    # by re-running each thread's choices serially
    def expected(i):
        x = streams[i]
        rng = np.random.default_rng(100 + i)
        pos, kept, nans = 0, [], 0
        while pos < x.size:
            mode = rng.integers(0, 3)
            if mode == 0:
                m = int(rng.integers(1, 5000))
                chunk = x[pos:pos + m].copy()
                nans += chunk[::nan_every].size
                chunk[::nan_every] = np.nan
                kept.append(chunk[~np.isnan(chunk)])
                pos += m
            elif mode == 1:
                kept.append(x[pos:pos + 300])
                pos += 300
            else:
                m = int(rng.integers(1, 2000))
                kept.append(x[pos:pos + m])
                pos += m
        return np.concatenate(kept), nans

    run_threads([work] * THREADS)
    parts = [expected(i) for i in range(THREADS)]
    data = np.concatenate([p[0] for p in parts])
    assert s.n == data.size
    assert s.nan_count == sum(p[1] for p in parts)
    assert s.min == data.min() and s.max == data.max()
    s._check_invariants()
    eps = s.normalized_rank_error()
    # 3x the 99% single-query bound, over 199 queries: cannot fail by chance
    assert max_rank_error(s, data, "step") <= 3 * eps
    assert max_rank_error(s, data, "learned") <= 3 * eps
    assert max_rank_error(s, data, "spline") <= 4 * eps  # the default: within its clip of the step estimate
    lo, hi = s.rank_bounds(np.quantile(data, [0.01, 0.25, 0.5, 0.75, 0.99]))
    exact = np.searchsorted(np.sort(data), np.quantile(data, [0.01, 0.25, 0.5, 0.75, 0.99]), side="right") / data.size
    assert np.all(lo - 2 * eps <= exact) and np.all(exact <= hi + 2 * eps)


def test_shared_sketch_scalar_updates_are_counted_exactly():
    """Scalar updates from 8 threads on few distinct values (the exact table):
    every count, hence every rank, is exact -- a lost or doubled staged item
    would show."""
    s = KLLSketch(seed=2)
    per_thread = 50_000

    def work(i):
        rng = np.random.default_rng(i)
        for v in rng.integers(0, 10, size=per_thread).tolist():
            s.update(float(v))
            # every few hundred items another call flushes the staged items
            if v == 9 and rng.random() < 0.01:
                _ = s.n

    run_threads([work] * THREADS)
    data = np.concatenate([np.random.default_rng(i).integers(0, 10, size=per_thread) for i in range(THREADS)])
    assert s.n == THREADS * per_thread
    assert not s.is_estimation_mode
    exact = np.array([(data <= v).mean() for v in range(10)])
    np.testing.assert_array_equal(s.rank(np.arange(10.0)), exact)
    assert s.quantiles([0.0, 0.5, 1.0]).tolist() == np.quantile(data, [0.0, 0.5, 1.0],
                                                                  method="inverted_cdf").tolist()


def test_shared_sketch_scalar_updates_in_estimation_mode():
    s = KLLSketch(64, seed=3, exact_limit=0)
    per_thread = 20_000
    streams = thread_streams(4, [per_thread] * THREADS)

    def work(i):
        for v in streams[i].tolist():
            s.update(v)

    run_threads([work] * THREADS)
    data = np.concatenate(streams)
    assert s.n == data.size and s.is_estimation_mode
    assert s.min == data.min() and s.max == data.max()
    s._check_invariants()
    assert max_rank_error(s, data) <= 3 * s.normalized_rank_error()


def test_readers_see_valid_snapshots_while_writers_update():
    """4 writers, 4 readers on one sketch: every answer a reader gets is
    sensible and every snapshot (bytes, copy, pickle) decodes to a valid
    sketch whose n never goes backwards."""
    s = KLLSketch(128, seed=4)
    writers = THREADS // 2
    streams = thread_streams(5, [100_000] * writers)
    done = threading.Event()
    finished = []

    def writer(i):
        x = streams[i]
        for start in range(0, x.size, 2500):
            s.update(x[start:start + 2500])
            for v in x[start:start + 20].tolist():
                s.update(v)
        finished.append(i)
        if len(finished) == writers:
            done.set()

    def reader(i):
        last_n = 0
        rounds = 0
        while not done.is_set() or rounds < 5:
            rounds += 1
            n = s.n
            assert n >= last_n
            last_n = n
            if n == 0:
                continue
            qs = s.quantiles([0.0, 0.1, 0.5, 0.9, 1.0])
            assert np.all(np.diff(qs) >= 0)
            r = s.rank(np.linspace(-10, 10, 41))
            assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) >= 0)
            lo, hi = s.rank_bounds(0.0)
            assert 0.0 <= lo <= hi <= 1.0
            cdf = s.cdf([-1.0, 0.0, 1.0])
            assert np.all(np.diff(cdf) >= 0) and cdf[-1] == 1.0
            snap = (s.to_bytes, s.copy, lambda: pickle.loads(pickle.dumps(s)))[rounds % 3]()
            t = KLLSketch.from_bytes(snap) if isinstance(snap, bytes) else snap
            t._check_invariants()
            assert t.n >= n
            items, weights = s.sorted_view()
            assert np.all(np.diff(items) >= 0)

    run_threads([writer] * writers + [reader] * (THREADS - writers))
    # each writer: 40 batches of 2500 items, each followed by 20 scalar items
    assert s.n == writers * (100_000 + 40 * 20)
    s._check_invariants()


def test_concurrent_merges_into_one_sketch():
    """8 threads each build a sketch and merge it into a shared target, then
    keep updating the target: the result holds every item exactly once."""
    target = KLLSketch(200, seed=6)
    streams = thread_streams(7, [40_000] * THREADS)
    extra = thread_streams(8, [5_000] * THREADS)

    def work(i):
        own = KLLSketch(200, seed=1000 + i)
        own.update(streams[i])
        target.merge(own)
        target.update(extra[i])
        target.merge(KLLSketch(100, seed=i))  # an empty one, of smaller k: lowers k

    run_threads([work] * THREADS)
    data = np.concatenate(streams + extra)
    assert target.n == data.size and target.k == 100
    assert target.min == data.min() and target.max == data.max()
    target._check_invariants()
    assert max_rank_error(target, data) <= 3 * target.normalized_rank_error()


def test_cross_merges_do_not_deadlock():
    """a.merge(b) and b.merge(a) at once, many times: no deadlock, and each
    pair ends in one of the two serial outcomes (merges are atomic)."""
    pairs = THREADS // 2
    rounds = 40
    outcomes = [[] for _ in range(pairs)]

    def work(i):
        pair, side = divmod(i, 2)
        for r in range(rounds):
            a, b = shared[pair][r]
            if side == 0:
                a.merge(b)
            else:
                b.merge(a)

    rng = np.random.default_rng(9)
    shared = []
    for p in range(pairs):
        row = []
        for r in range(rounds):
            a, b = KLLSketch(32, seed=2 * r), KLLSketch(32, seed=2 * r + 1)
            a.update(rng.random(300 + r))
            b.update(rng.random(50 + r) + 1.0)
            row.append((a, b))
        shared.append(row)
    sizes = [[(a.n, b.n) for a, b in row] for row in shared]
    run_threads([work] * (2 * pairs))
    for p in range(pairs):
        for r, (a, b) in enumerate(shared[p]):
            na, nb = sizes[p][r]
            a._check_invariants()
            b._check_invariants()
            outcomes[p].append((a.n, b.n))
            assert (a.n, b.n) in ((na + nb, na + 2 * nb), (2 * na + nb, na + nb))


def test_separate_sketches_in_parallel_are_bit_identical_to_serial():
    """Threads that each own a sketch (batches, scalars, weights, merges,
    queries) produce exactly the bytes the same calls give in one thread:
    no state leaks between sketches."""
    streams = thread_streams(11, [80_000] * THREADS)

    def build(i, out):
        s = KLLSketch(64 + 16 * i, seed=500 + i, estimator=("step", "linear", "learned", "spline")[i % 4])
        x = streams[i]
        s.update(x[:50_000])
        for v in x[50_000:52_000].tolist():
            s.update(v)
        s.update(x[52_000:60_000], weights=np.arange(1, 8_001))
        s.quantile([0.1, 0.5, 0.9])
        other = KLLSketch(48, seed=900 + i)
        other.update(x[60_000:])
        s.merge(other)
        s.rank(x[:100])
        out[i] = s.to_bytes()

    parallel = [None] * THREADS
    run_threads([lambda i: build(i, parallel)] * THREADS)
    serial = [None] * THREADS
    for i in range(THREADS):
        build(i, serial)
    assert parallel == serial


def test_parallel_batches_on_separate_sketches_with_shared_input():
    """Eight threads read the same read-only numpy array (the GIL is released
    while the C core reads it) into their own sketches."""
    x = np.random.default_rng(12).lognormal(size=400_000)
    x.setflags(write=False)
    out = [None] * THREADS

    def work(i):
        s = KLLSketch(200, seed=7)
        for start in range(0, x.size, 100_000):
            s.update(x[start:start + 100_000])
        out[i] = s.to_bytes()

    run_threads([work] * THREADS)
    assert len(set(out)) == 1  # same seed, same calls: the same sketch
    s = KLLSketch.from_bytes(out[0])
    assert s.n == x.size and max_rank_error(s, x) <= 3 * s.normalized_rank_error()


def test_rejected_calls_in_threads_leave_the_shared_sketch_consistent():
    """Threads whose calls are refused (NaN under nan_policy="raise", bad
    weights) interleaved with good updates: only the good ones count."""
    s = KLLSketch(100, seed=13, nan_policy="raise")
    good = thread_streams(14, [20_000] * THREADS)

    def work(i):
        x = good[i]
        for start in range(0, x.size, 1000):
            s.update(x[start:start + 1000])
            with pytest.raises(ValueError):
                s.update(np.r_[x[start:start + 10], np.nan])
            with pytest.raises(ValueError):
                s.update(x[start:start + 3], weights=[1, 0, 1])
            with pytest.raises(ValueError):
                s.update(float("nan"))

    run_threads([work] * THREADS)
    data = np.concatenate(good)
    assert s.n == data.size and s.nan_count == 0
    s._check_invariants()
    assert max_rank_error(s, data) <= 3 * s.normalized_rank_error()
