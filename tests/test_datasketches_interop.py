"""The DataSketches KLL binary format: qsketch.from_datasketches / to_datasketches.

Checked both ways against the ``datasketches`` package (Apache DataSketches'
Python binding over its C++ core, the same bytes as Java and Spark SQL):
empty, one item, exact mode and estimation mode, doubles and floats; same n,
min, max and retained items, equal ranks, byte-identical round trips.  Golden
bytes written by datasketches 5.2 are pinned below, so the decoder is also
checked against a fixed reference.  Malformed input of every kind raises
SerializationError with a reason.

Ranks are compared through the step function of the retained items
(``step_rank``), DataSketches' own estimator, whatever estimator a qsketch
sketch uses by default.
"""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsketch
from qsketch import datasketches_format as dsf

datasketches = pytest.importorskip("datasketches")  # in the [test] extra; never skipped in CI

KINDS = {"double": datasketches.kll_doubles_sketch, "float": datasketches.kll_floats_sketch}
F32 = {"double": np.float64, "float": np.float32}

# ---- golden bytes, written by datasketches 5.2.0 ---------------------------------

GOLDEN_EMPTY_K200 = bytes.fromhex("02010f01c8000800")  # doubles and floats alike
GOLDEN_ONE_DOUBLE = bytes.fromhex("02020f04c80008000000000000000c40")  # 3.5
GOLDEN_ONE_FLOAT = bytes.fromhex("02020f04c800080000006040")  # 3.5
GOLDEN_THREE_DOUBLES = bytes.fromhex(  # updates 3.5, 1.0, 2.0
    "05010f00c80008000300000000000000c8000100c5000000000000000000f03f0000000000000c40"
    "0000000000000040000000000000f03f0000000000000c40"
)
GOLDEN_THREE_FLOATS = bytes.fromhex(
    "05010f00c80008000300000000000000c8000100c50000000000803f00006040000000400000803f00006040"
)
# k=8, updates 1.0, 2.0, ..., 40.0: estimation mode, levels [40, 39], [21, 23, ..., 37],
# [3, 7, 11, 15, 19].
GOLDEN_FORTY_DOUBLES = bytes.fromhex(
    "05010f0008000800280000000000000008000300080000000a00000013000000000000000000f03f"
    "0000000000004440000000000000444000000000008043400000000000003540000000000000374000"
    "000000000039400000000000003b400000000000003d400000000000003f400000000000804040000000"
    "00008041400000000000804240000000000000084000000000000" "01c4000000000000026400000000000"
    "002e400000000000003340"
)
GOLDEN_FORTY_FLOATS = bytes.fromhex(
    "05010f0008000800280000000000000008000300080000000a000000130000000000803f0000204200"
    "0020420000" "1c420000a8410000b8410000c8410000d8410000e8410000f8410000044200000c420000"
    "1442000040400000e040000030410000704100009841"
)
FORTY_LEVELS = [[40.0, 39.0], [21.0, 23.0, 25.0, 27.0, 29.0, 31.0, 33.0, 35.0, 37.0],
                [3.0, 7.0, 11.0, 15.0, 19.0]]

GOLDEN = [
    # name, bytes, kind, n, k, min, max, levels
    ("empty", GOLDEN_EMPTY_K200, None, 0, 200, None, None, [[]]),
    ("one double", GOLDEN_ONE_DOUBLE, "double", 1, 200, 3.5, 3.5, [[3.5]]),
    ("one float", GOLDEN_ONE_FLOAT, "float", 1, 200, 3.5, 3.5, [[3.5]]),
    ("three doubles", GOLDEN_THREE_DOUBLES, "double", 3, 200, 1.0, 3.5, [[2.0, 1.0, 3.5]]),
    ("three floats", GOLDEN_THREE_FLOATS, "float", 3, 200, 1.0, 3.5, [[2.0, 1.0, 3.5]]),
    ("forty doubles", GOLDEN_FORTY_DOUBLES, "double", 40, 8, 1.0, 40.0, FORTY_LEVELS),
    ("forty floats", GOLDEN_FORTY_FLOATS, "float", 40, 8, 1.0, 40.0, FORTY_LEVELS),
]


def step_rank(sketch, x):
    """Inclusive rank of each x by the step function of the retained items."""
    items, weights = sketch.sorted_view()
    cum = np.concatenate([[0.0], np.cumsum(weights.astype(np.float64))])
    return cum[np.searchsorted(items, np.asarray(x, dtype=np.float64), side="right")] / sketch.n


def ds_ranks(ds_sketch, xs):
    return np.array([ds_sketch.get_rank(float(x), True) for x in xs])


def sorted_items(ds_sketch):
    return np.sort(np.array([item for item, _ in ds_sketch], dtype=np.float64))


def assert_same_summary(qs, ds, kind="double"):
    assert qs.n == ds.n
    assert qs.num_retained == ds.num_retained
    if ds.n:
        assert qs.min == ds.get_min_value() and qs.max == ds.get_max_value()
        assert np.array_equal(np.sort(qs.sorted_view()[0]), sorted_items(ds))


# ---- golden bytes --------------------------------------------------------------


@pytest.mark.parametrize("name,blob,kind,n,k,lo,hi,levels", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_bytes_decode_and_reencode_bit_for_bit(name, blob, kind, n, k, lo, hi, levels):
    s = qsketch.from_datasketches(blob, seed=1)
    s._check_invariants()
    assert (s.n, s.k, s.nan_count, s.nan_policy) == (n, k, 0, "ignore")
    if n:
        assert (s.min, s.max) == (lo, hi)
        assert [list(lv) for lv in s._levels()] == levels
        assert s.is_estimation_mode == (len(levels) > 1)
    else:
        assert s.is_empty and np.isnan(s.min)
    assert qsketch.to_datasketches(s, kind or "double") == blob
    # and the reference library reads what we wrote
    back = KINDS[kind or "double"].deserialize(qsketch.to_datasketches(s, kind or "double"))
    assert back.n == n and back.k == k


def test_golden_bytes_are_what_the_installed_datasketches_writes():
    """Exact-mode bytes do not depend on DataSketches' randomness: regenerate them."""
    for kind, golden in (("double", GOLDEN_THREE_DOUBLES), ("float", GOLDEN_THREE_FLOATS)):
        t = KINDS[kind](200)
        for x in (3.5, 1.0, 2.0):
            t.update(x)
        assert t.serialize() == golden
    assert KINDS["double"](200).serialize() == GOLDEN_EMPTY_K200


def test_golden_forty_ranks_match_datasketches():
    for kind, blob in (("double", GOLDEN_FORTY_DOUBLES), ("float", GOLDEN_FORTY_FLOATS)):
        ds = KINDS[kind].deserialize(blob)
        s = qsketch.from_datasketches(blob)
        xs = np.arange(0.0, 42.0, 0.5)
        assert np.array_equal(step_rank(s, xs), ds_ranks(ds, xs))
        assert_same_summary(s, ds)


# ---- both directions against the live library -------------------------------------


@pytest.mark.parametrize("kind", ["double", "float"])
@pytest.mark.parametrize("k", [200, 16])
def test_empty_both_ways(kind, k):
    blob = KINDS[kind](k).serialize()
    s = qsketch.from_datasketches(blob, seed=5)
    assert s.is_empty and s.k == k and s.n == 0 and s.nan_count == 0
    assert s.to_bytes() == qsketch.KLLSketch(k, seed=5).to_bytes()  # a fresh sketch, exactly
    out = qsketch.to_datasketches(qsketch.KLLSketch(k, seed=1), kind)
    assert out == blob
    only_nan = qsketch.KLLSketch(k, seed=1)
    only_nan.update([float("nan")] * 3)  # DataSketches has no NaN count: an empty sketch
    assert qsketch.to_datasketches(only_nan, kind) == blob
    ds = KINDS[kind].deserialize(out)
    assert ds.is_empty() and ds.k == k


@pytest.mark.parametrize("kind", ["double", "float"])
@pytest.mark.parametrize("x", [3.5, -0.0, 1e-3, float("inf"), -1e30])
def test_one_item_both_ways(kind, x):
    t = KINDS[kind](200)
    t.update(x)
    blob = t.serialize()
    s = qsketch.from_datasketches(blob)
    assert s.n == 1 and s.min == s.max == float(F32[kind](x))
    assert qsketch.to_datasketches(s, kind) == blob
    q = qsketch.KLLSketch(seed=2)
    q.update(x)
    out = qsketch.to_datasketches(q, kind)
    assert len(out) == 8 + (8 if kind == "double" else 4)
    ds = KINDS[kind].deserialize(out)
    assert ds.n == 1 and ds.get_min_value() == float(F32[kind](x))


@pytest.mark.parametrize("kind", ["double", "float"])
def test_exact_mode_both_ways(kind, rng):
    data = rng.normal(size=150).astype(F32[kind])
    t = KINDS[kind](200)
    t.update(data)
    blob = t.serialize()
    s = qsketch.from_datasketches(blob, seed=3)
    assert not s.is_estimation_mode
    assert_same_summary(s, t)
    xs = np.concatenate([data, rng.normal(size=50)])
    truth = np.searchsorted(np.sort(data.astype(np.float64)), xs, side="right") / data.size
    assert np.array_equal(s.rank(xs), truth)  # exact mode: every estimator is exact
    assert np.array_equal(ds_ranks(t, xs), truth)
    assert qsketch.to_datasketches(s, kind) == blob

    q = qsketch.KLLSketch(200, seed=4)
    q.update(data)
    ds = KINDS[kind].deserialize(qsketch.to_datasketches(q, kind))
    assert ds.n == 150 and not ds.is_estimation_mode() and ds.num_retained == 150
    assert np.array_equal(ds_ranks(ds, xs), truth)


@pytest.mark.parametrize("kind", ["double", "float"])
@pytest.mark.parametrize("k,n", [(8, 5_000), (200, 200_000), (1000, 50_000)])
def test_estimation_mode_datasketches_to_qsketch(kind, k, n, rng):
    t = KINDS[kind](k)
    t.update(rng.lognormal(size=n).astype(F32[kind]))
    assert t.is_estimation_mode()
    blob = t.serialize()
    s = qsketch.from_datasketches(blob, seed=9)
    s._check_invariants()
    assert s.k == k and s.is_estimation_mode
    assert_same_summary(s, t)
    xs = np.concatenate([rng.lognormal(size=200), np.sort(s.sorted_view()[0])[::7]])
    # DataSketches' floats sketch rounds each query to float32 before comparing:
    # ask only float32 values, or a query within half an ulp of an item flips
    xs = xs.astype(F32[kind]).astype(np.float64)
    assert np.array_equal(step_rank(s, xs), ds_ranks(t, xs))
    assert np.array_equal(s.rank(xs, estimator="step"), ds_ranks(t, xs))
    assert abs(s.normalized_rank_error() - t.normalized_rank_error(False)) < 1e-12
    assert qsketch.to_datasketches(s, kind) == blob  # bit for bit


@pytest.mark.parametrize("kind", ["double", "float"])
@pytest.mark.parametrize("k,n", [(8, 5_000), (200, 200_000)])
def test_estimation_mode_qsketch_to_datasketches(kind, k, n, rng):
    q = qsketch.KLLSketch(k, seed=11)
    q.update(rng.normal(size=n))
    assert q.is_estimation_mode
    out = qsketch.to_datasketches(q, kind)
    ds = KINDS[kind].deserialize(out)
    assert ds.n == n and ds.k == k and ds.is_estimation_mode()
    assert ds.num_retained == q.num_retained
    back = qsketch.from_datasketches(out, seed=11)
    xs = rng.normal(size=300).astype(F32[kind]).astype(np.float64)  # see above: float32 queries
    assert np.array_equal(step_rank(back, xs), ds_ranks(ds, xs))
    if kind == "double":
        assert (ds.get_min_value(), ds.get_max_value()) == (q.min, q.max)
        assert [list(a) for a in back._levels()] == [list(a) for a in q._levels()]
        assert np.array_equal(step_rank(q, xs), ds_ranks(ds, xs))
        assert qsketch.to_datasketches(back) == out


def test_merged_sketches_of_different_k_keep_min_k(rng):
    """DataSketches keeps k and min_k; qsketch keeps one k, the smaller."""
    a, b = datasketches.kll_doubles_sketch(400), datasketches.kll_doubles_sketch(100)
    a.update(rng.normal(size=50_000))
    b.update(rng.normal(size=30_000))
    a.merge(b)
    s = qsketch.from_datasketches(a.serialize(), seed=1)
    assert s.k == 100 and s.n == 80_000
    assert abs(s.normalized_rank_error() - a.normalized_rank_error(False)) < 1e-12
    xs = rng.normal(size=200)
    assert np.array_equal(step_rank(s, xs), ds_ranks(a, xs))
    out = qsketch.to_datasketches(s)
    desc = dsf.parse(out)
    assert desc["min_k"] == 100 and desc["k"] >= 100  # k grows only as the buffer needs
    ds = datasketches.kll_doubles_sketch.deserialize(out)
    assert np.array_equal(ds_ranks(ds, xs), ds_ranks(a, xs))
    # the sketch goes on: its over-full levels compact at the next updates
    s.update(rng.normal(size=100_000))
    s._check_invariants()
    assert s.n == 180_000
    assert datasketches.kll_doubles_sketch.deserialize(qsketch.to_datasketches(s)).n == 180_000


def test_low_cardinality_and_weighted_sketches_convert_exactly(rng):
    """Repeated values (qsketch may count them exactly) and weighted updates
    become DataSketches levels by the binary digits of the counts: same ranks."""
    data = rng.integers(0, 40, size=20_000).astype(np.float64)
    q = qsketch.KLLSketch(seed=3)
    q.update(data)
    w = qsketch.KLLSketch(seed=4)
    w.update([1.0, 2.0, 3.0], weights=[1000, 7, 123456])
    for sk, xs in ((q, np.arange(-1.0, 41.0)), (w, [0.0, 1.0, 1.5, 2.0, 3.0])):
        ds = datasketches.kll_doubles_sketch.deserialize(qsketch.to_datasketches(sk))
        assert ds.n == sk.n and ds.get_min_value() == sk.min and ds.get_max_value() == sk.max
        assert np.array_equal(ds_ranks(ds, xs), step_rank(sk, xs))
    truth = np.searchsorted(np.sort(data), np.arange(-1.0, 41.0), side="right") / data.size
    assert np.array_equal(step_rank(q, np.arange(-1.0, 41.0)), truth)


def test_float_conversion_rounds_consistently():
    """Doubles become the nearest float32 (a monotone rounding): min, max and
    the items move together, out-of-range values become +-inf."""
    values = np.array([1e300, -1e300, 1e-300, 0.1, 1 / 3, 16777217.0, -0.0, 2.5, 3.4e38, 3.5e38])
    q = qsketch.KLLSketch(seed=1)
    q.update(values)
    out = qsketch.to_datasketches(q, "float")
    ds = datasketches.kll_floats_sketch.deserialize(out)
    assert ds.n == values.size
    with np.errstate(over="ignore"):
        f32 = values.astype(np.float32).astype(np.float64)
    assert ds.get_min_value() == -np.inf and ds.get_max_value() == np.inf
    back = qsketch.from_datasketches(out)
    back._check_invariants()
    assert back.min == f32.min() and back.max == f32.max()
    assert np.array_equal(back.sorted_view()[0], np.sort(f32))
    assert np.array_equal(sorted_items(ds), np.sort(f32))


def test_float_conversion_of_an_estimation_sketch(rng):
    q = qsketch.KLLSketch(50, seed=1)
    q.update(rng.normal(size=20_000) * np.pi)
    out = qsketch.to_datasketches(q, "float")
    ds = datasketches.kll_floats_sketch.deserialize(out)
    back = qsketch.from_datasketches(out)
    back._check_invariants()
    assert back.min == float(np.float32(q.min)) and back.max == float(np.float32(q.max))
    items, _ = q.sorted_view()
    assert np.array_equal(back.sorted_view()[0], np.sort(items.astype(np.float32).astype(np.float64)))
    xs = rng.normal(size=100).astype(np.float32)
    assert np.array_equal(step_rank(back, xs), ds_ranks(ds, xs))


def test_seeded_conversion_is_deterministic(rng):
    blob = qsketch.to_datasketches(_sketch_of(rng.normal(size=10_000), k=64, seed=1))
    more = rng.normal(size=50_000)
    a, b = qsketch.from_datasketches(blob, seed=7), qsketch.from_datasketches(blob, 7)
    a.update(more)
    b.update(more)
    assert a.to_bytes() == b.to_bytes()


def test_pickles_and_bytes_buffers(rng):
    import pickle

    blob = qsketch.to_datasketches(_sketch_of(rng.normal(size=5_000), k=64, seed=1))
    for buf in (blob, bytearray(blob), memoryview(blob)):
        assert qsketch.from_datasketches(buf, seed=1).n == 5_000
    s = qsketch.from_datasketches(blob, seed=1)
    assert pickle.loads(pickle.dumps(s)).to_bytes() == s.to_bytes()


def _sketch_of(data, k=200, seed=0):
    s = qsketch.KLLSketch(k, seed=seed)
    s.update(data)
    return s


# ---- malformed input ---------------------------------------------------------------


def _patch(blob, offset, fmt, value):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def _swap_items(blob, i, j, size=8, start=32):
    b = bytearray(blob)
    a0, b0 = start + i * size, start + j * size
    b[a0:a0 + size], b[b0:b0 + size] = blob[b0:b0 + size], blob[a0:a0 + size]
    return bytes(b)


G = GOLDEN_FORTY_DOUBLES  # 20-byte preamble, 3 levels (ends at 32), min, max, 16 items
CORRUPT = [
    ("preamble ints", _patch(G, 0, "<B", 2), "preamble ints"),
    ("serial version 9", _patch(G, 1, "<B", 9), "unknown serial version 9"),
    ("updatable form", _patch(G, 1, "<B", 3), "updatable"),
    ("java 3 updatable flag", _patch(G, 3, "<B", 16), "updatable"),
    ("family hll", _patch(G, 2, "<B", 7), "wrong family: family id 7 (a DataSketches HLL sketch)"),
    ("family unknown", _patch(G, 2, "<B", 99), "wrong family: family id 99 (an unknown"),
    ("unknown flags", _patch(G, 3, "<B", 0x40), "unknown flags"),
    ("empty and single", _patch(G, 3, "<B", 5), "both empty and single"),
    ("k too small", _patch(G, 4, "<H", 4), "k = 4 is out of"),
    ("m", _patch(G, 6, "<B", 4), "m = 4 is not supported"),
    ("n zero", _patch(G, 8, "<Q", 0), "n = 0"),
    ("n mismatch", _patch(G, 8, "<Q", 41), "weights do not add up"),
    ("min_k above k", _patch(G, 16, "<H", 9), "min_k = 9"),
    ("min_k too small", _patch(G, 16, "<H", 4), "min_k = 4"),
    ("no levels", _patch(G, 18, "<B", 0), "bad levels"),
    ("too many levels", _patch(G, 18, "<B", 65), "bad levels"),
    ("offsets decrease", _patch(G, 24, "<I", 30), "not increasing"),
    ("offset beyond capacity", _patch(G, 20, "<I", 999), "beyond the capacity"),
    ("min > max", _swap_items(G, 0, 1, start=32), "min > max"),
    ("nan min", _patch(G, 32, "<d", float("nan")), "NaN"),
    ("nan item", _patch(G, 48, "<d", float("nan")), "NaN"),
    ("item above max", _patch(G, 48, "<d", 100.0), "outside [min, max]"),
    ("level 1 unsorted", _swap_items(G, 4, 5, start=32), "not sorted"),
    ("trailing bytes", G + b"\x00" * 8, "trailing"),
    ("half the items", G[:32 + 72], "not a valid sketch"),  # read as floats: garbage, refused
    ("empty with trailing bytes", GOLDEN_EMPTY_K200 + b"\x00", "trailing bytes after an empty"),
    ("single nan", _patch(GOLDEN_ONE_DOUBLE, 8, "<d", float("nan")), "NaN"),
    ("single wrong version", _patch(GOLDEN_ONE_DOUBLE, 1, "<B", 1), "one-item sketch"),
    ("too short", G[:5], "truncated: 5 bytes"),
    ("qsketch bytes", _sketch_of([1.0, 2.0]).to_bytes(), "KLLSketch.from_bytes"),
]


@pytest.mark.parametrize("name,blob,reason", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_bytes_raise_with_a_reason(name, blob, reason):
    with pytest.raises(qsketch.SerializationError, match="cannot decode a DataSketches KLL sketch") as exc:
        qsketch.from_datasketches(blob)
    assert reason in str(exc.value)
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("blob", [GOLDEN_FORTY_DOUBLES, GOLDEN_THREE_FLOATS, GOLDEN_ONE_DOUBLE])
@pytest.mark.parametrize("kind", [None, "double", "float"])
def test_every_truncation_is_rejected(blob, kind):
    for cut in range(len(blob)):
        if blob is GOLDEN_ONE_DOUBLE and cut == 12 and kind != "double":
            # the one ambiguity of the format: 4 bytes of a one-item sketch are a float
            assert qsketch.from_datasketches(blob[:cut], kind=kind).n == 1
            continue
        with pytest.raises(qsketch.SerializationError):
            qsketch.from_datasketches(blob[:cut], kind=kind)


def test_kind_must_match_the_item_width():
    with pytest.raises(qsketch.SerializationError, match="trailing"):
        qsketch.from_datasketches(GOLDEN_FORTY_DOUBLES, kind="float")
    with pytest.raises(qsketch.SerializationError, match="truncated"):
        qsketch.from_datasketches(GOLDEN_FORTY_FLOATS, kind="double")
    assert qsketch.from_datasketches(GOLDEN_FORTY_FLOATS, kind="float").n == 40


def test_java3_doubles_flag_is_accepted_for_doubles_only():
    assert qsketch.from_datasketches(_patch(GOLDEN_FORTY_DOUBLES, 3, "<B", 8)).n == 40
    with pytest.raises(qsketch.SerializationError, match="flags say doubles"):
        qsketch.from_datasketches(_patch(GOLDEN_FORTY_FLOATS, 3, "<B", 8))


def _other_family_sketches():
    ds = datasketches
    hll = ds.hll_sketch(12)
    hll.update(1)
    cpc = ds.cpc_sketch(11)
    cpc.update(1)
    theta = ds.update_theta_sketch()
    theta.update(1)
    fi = ds.frequent_strings_sketch(6)
    fi.update("a")
    req = ds.req_floats_sketch(12)
    quant = ds.quantiles_doubles_sketch(128)
    for x in (1.0, 2.0):
        req.update(x)
        quant.update(x)
    return [
        ("hll", hll.serialize_compact(), "HLL"),
        ("cpc", cpc.serialize(), "CPC"),
        ("theta", theta.compact().serialize(), "Theta"),
        ("frequent items", fi.serialize(), "frequent items"),
        ("req", req.serialize(), "REQ"),
        ("classic quantiles", quant.serialize(), "classic quantiles"),
    ]


def test_other_sketch_families_are_rejected():
    for name, blob, family in _other_family_sketches():
        with pytest.raises(qsketch.SerializationError, match="wrong family") as exc:
            qsketch.from_datasketches(blob)
        assert family in str(exc.value), name


def test_kll_items_and_ints_sketches_are_rejected():
    items = datasketches.kll_items_sketch(200)
    for w in ("apple", "kiwi", "banana"):
        items.update(w)
    with pytest.raises(qsketch.SerializationError, match="does not fit a doubles or floats"):
        qsketch.from_datasketches(items.serialize(datasketches.PyStringsSerDe()))
    ints = datasketches.kll_ints_sketch(200)
    ints.update(np.arange(1, 6))
    with pytest.raises(qsketch.SerializationError, match="ints sketch"):
        qsketch.from_datasketches(ints.serialize())
    # read as floats on purpose: allowed, and structurally valid
    assert qsketch.from_datasketches(ints.serialize(), kind="float").n == 5


def test_argument_errors():
    with pytest.raises(TypeError):
        qsketch.from_datasketches("05010f00")
    with pytest.raises(TypeError):
        qsketch.from_datasketches(None)
    with pytest.raises(ValueError, match="kind"):
        qsketch.from_datasketches(GOLDEN_ONE_DOUBLE, kind="int")
    with pytest.raises(ValueError, match="kind"):
        qsketch.to_datasketches(qsketch.KLLSketch(), "doubles")
    with pytest.raises(TypeError):
        qsketch.to_datasketches(GOLDEN_ONE_DOUBLE)
    with pytest.raises(ValueError, match="seed"):
        qsketch.from_datasketches(GOLDEN_ONE_DOUBLE, seed=-1)


def test_capacities_match_datasketches():
    """The level capacities (and so the buffer a DataSketches reader rebuilds)."""
    for k in (8, 9, 100, 200, 1000, 65535):
        t = datasketches.kll_doubles_sketch(k)
        summary = t.to_string()
        assert f"Capacity items : {dsf.total_capacity(k, 1)}" in summary
    t = datasketches.kll_doubles_sketch(200)
    t.update(np.arange(100_000.0))
    levels = t.to_string(True, False).split("### KLL sketch levels:")[1]
    rows = [line.split(":")[1].split(",") for line in levels.splitlines() if line.strip()[:1].isdigit()]
    num_levels = len(rows)
    assert [int(r[0]) for r in rows] == [dsf.level_capacity(200, num_levels, h) for h in range(num_levels)]


# ---- properties --------------------------------------------------------------------


@st.composite
def streams(draw):
    n = draw(st.integers(0, 3000))
    seed = draw(st.integers(0, 2**32 - 1))
    style = draw(st.sampled_from(["normal", "few distinct", "integers", "wide"]))
    g = np.random.default_rng(seed)
    if style == "normal":
        data = g.normal(size=n)
    elif style == "few distinct":
        data = g.integers(0, 5, size=n).astype(np.float64)
    elif style == "integers":
        data = g.integers(-1000, 1000, size=n).astype(np.float64)
    else:
        data = g.standard_cauchy(size=n) * 1e200
    return data, draw(st.integers(8, 300)), seed


@settings(deadline=None)
@given(streams(), st.sampled_from(["double", "float"]))
def test_property_qsketch_to_datasketches_and_back(stream, kind):
    data, k, seed = stream
    q = qsketch.KLLSketch(k, seed=seed)
    q.update(data)
    out = qsketch.to_datasketches(q, kind)
    ds = KINDS[kind].deserialize(out)
    assert ds.n == q.n
    back = qsketch.from_datasketches(out, seed=seed)
    back._check_invariants()
    assert back.n == q.n and back.k == q.k
    with np.errstate(over="ignore"):
        xs = np.concatenate([data[:50], [0.0, 1.0]]).astype(F32[kind])
    if q.n:
        with np.errstate(over="ignore"):
            assert back.min == float(F32[kind](q.min)) and back.max == float(F32[kind](q.max))
        assert np.array_equal(step_rank(back, xs), ds_ranks(ds, xs))
        if kind == "double":
            assert np.array_equal(step_rank(back, xs), step_rank(q, xs))
    assert qsketch.to_datasketches(back, kind) == out


@settings(deadline=None)
@given(streams(), st.sampled_from(["double", "float"]))
def test_property_datasketches_to_qsketch_and_back(stream, kind):
    data, k, _ = stream
    t = KINDS[kind](k)
    with np.errstate(over="ignore"):  # wide values overflow float32 to +-inf, as in DataSketches
        t.update(data.astype(F32[kind]))
    blob = t.serialize()
    s = qsketch.from_datasketches(blob)
    s._check_invariants()
    assert s.n == t.n and s.num_retained == t.num_retained
    if t.n:
        with np.errstate(over="ignore"):
            xs = data[:50].astype(F32[kind])
        assert np.array_equal(step_rank(s, xs), ds_ranks(t, xs))
    assert qsketch.to_datasketches(s, kind) == blob
