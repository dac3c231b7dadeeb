"""The accuracy layer's fast paths give the answers of the slow ones.

The layer counts every item exactly once its interval exists; how an update
reaches the count (one search per item, a block of searches, the classes of
a classified or partitioned chunk) must not change a single count.  Merges
join intervals down to the layer's capacity and must keep every count.  Each
test checks against exact counts of the data, never against timings:

- while the compactors are exact, every split is exact, so the layer's counts
  are the data's exact counts between its boundaries, whatever the path;
- on discrete data whose every value is a boundary, no interval can be split
  again, so each later update adds exactly its own counts to the boundaries.
"""

import zlib

import numpy as np
import pytest

from qsketch import KLLSketch


def exact_layer(x, bounds):
    """The open and boundary counts of the items x (NaN left out) cut at bounds."""
    x = np.sort(x[~np.isnan(x)])
    lt = np.searchsorted(x, bounds, side="left")
    le = np.searchsorted(x, bounds, side="right")
    open_ = np.concatenate([lt, [x.size]]) - np.concatenate([[0], le])
    return open_.astype(np.uint64), (le - lt).astype(np.uint64)


def feed(sketch, x, how, rng):
    if how == "batch":
        sketch.update(x)
    elif how == "micro":
        i = 0
        while i < x.size:  # uneven micro-batches, some below and some above a block
            size = int(rng.integers(1, 3000))
            sketch.update(x[i:i + size])
            i += size
    else:  # scalars, staged by the binding
        for v in x.tolist():
            sketch.update(v)


def with_nans(x, rng, rate=0.03):
    x = x.copy()
    x[rng.random(x.size) < rate] = np.nan
    return x


@pytest.mark.parametrize("how", ["batch", "micro", "scalars"])
@pytest.mark.parametrize("data", ["normal", "integers"])
def test_layer_is_exact_while_the_compactors_are(how, data):
    """A large k keeps the compactors exact: the layer must hold exact counts
    (the per-item path counts its blocks in runs between NaNs)."""
    rng = np.random.default_rng(11)
    n = 6000
    x = rng.normal(size=n) if data == "normal" else rng.integers(0, 40, n).astype(float)
    x = with_nans(x, rng)
    s = KLLSketch(8000, seed=3, exact_limit=0)
    feed(s, x, how, rng)
    assert not s.is_estimation_mode
    s._check_invariants()
    bounds, open_, atom = s._buckets()
    assert bounds.size > 10
    want_open, want_atom = exact_layer(x, bounds)
    np.testing.assert_array_equal(open_, want_open)
    np.testing.assert_array_equal(atom, want_atom)


def discrete_sketch(k, rng, values=50):
    """A sketch of discrete data in estimation mode whose every value is a boundary."""
    s = KLLSketch(k, seed=5, exact_limit=0)
    s.update(rng.integers(0, values, 300_000).astype(float))
    assert s.is_estimation_mode
    bounds, _, _ = s._buckets()
    assert np.array_equal(bounds, np.arange(values, dtype=float))
    return s


@pytest.mark.parametrize("k", [64, 200, 2000])
@pytest.mark.parametrize("how,n", [("batch", 1_000_000), ("batch", 30_000), ("micro", 200_000),
                                   ("scalars", 30_000)])
def test_counts_of_every_update_path_are_exact(k, how, n):
    """Chunks of every size (classified at 16,384 items and more, partitioned by
    the multiselect below that, with k = 2000 taking every fourth of its 512
    targets as a splitter), blocks of single items and staged scalars each add
    exactly their items' counts."""
    rng = np.random.default_rng(k + n)
    s = discrete_sketch(k, rng)
    bounds, open0, atom0 = s._buckets()
    x = with_nans(rng.integers(0, 50, n).astype(float), rng, rate=0.001)
    feed(s, x, how, rng)
    s._check_invariants()
    bounds1, open1, atom1 = s._buckets()
    np.testing.assert_array_equal(bounds1, bounds)
    np.testing.assert_array_equal(open1, open0)
    _, want_atom = exact_layer(x, bounds)
    np.testing.assert_array_equal(atom1 - atom0, want_atom)


def test_merge_of_layers_with_the_same_boundaries_adds_the_counts():
    """Nothing to re-cut, nothing to join: the merged layer is the sum."""
    rng = np.random.default_rng(21)
    a, b = discrete_sketch(200, rng), discrete_sketch(200, rng)
    ba, oa, aa = a._buckets()
    _, ob, ab = b._buckets()
    a.merge(b)
    a._check_invariants()
    bm, om, am = a._buckets()
    np.testing.assert_array_equal(bm, ba)
    np.testing.assert_array_equal(om, oa + ob)
    np.testing.assert_array_equal(am, aa + ab)


@pytest.mark.parametrize("order", ["iid", "sorted"])
@pytest.mark.parametrize("buckets", [None, 7, 1])
def test_merging_many_layers_keeps_every_count(order, buckets):
    """100 shards, joined down to the smaller capacity at every merge: the
    layer adds up to n, keeps its invariants, and keeps only boundaries that
    one of the shards had."""
    rng = np.random.default_rng(31)
    x = rng.lognormal(size=200_000)
    if order == "sorted":
        x = np.sort(x)
    acc = KLLSketch(200, seed=1)
    seen = set()
    for i, part in enumerate(np.array_split(x, 100)):
        p = KLLSketch(200, seed=100 + i, buckets=buckets if i == 50 else None)
        p.update(part)
        seen.update(p._buckets()[0].tolist())
        acc.merge(p)
        acc._check_invariants()
    bounds, open_, atom = acc._buckets()
    assert acc.n == x.size and int(open_.sum() + atom.sum()) == x.size
    assert acc.buckets == (buckets or 400) and 0 < bounds.size <= acc.buckets
    assert set(bounds.tolist()) <= seen


@pytest.mark.parametrize("kind", ["empty", "table", "layer", "plain", "weighted_table"])
def test_bytes_round_trip_bit_for_bit(kind):
    rng = np.random.default_rng(41)
    s = KLLSketch(200, seed=2, buckets=0 if kind == "plain" else None)
    if kind == "table":
        s.update(rng.integers(0, 30, 1000).astype(float))
    elif kind == "weighted_table":
        s.update(np.arange(20.0), weights=np.arange(1, 21))
    elif kind in ("layer", "plain"):
        s.update(with_nans(rng.normal(size=100_000), rng))
    blob = s.to_bytes()
    assert zlib.crc32(blob[:-4]) == int.from_bytes(blob[-4:], "little")
    t = KLLSketch.from_bytes(blob)
    t._check_invariants()
    assert t.to_bytes() == blob
    if kind != "empty":
        np.testing.assert_array_equal(t.quantile([0.1, 0.5, 0.9]), s.quantile([0.1, 0.5, 0.9]))
