"""Bad input at every public entry point: the right exception, a useful
message, and nothing half-applied (the sketch's bytes are unchanged)."""

import decimal
import fractions
import math

import numpy as np
import pytest

import qsketch
from qsketch import KLLSketch, SerializationError

NAN = float("nan")


def make(state, policy="ignore"):
    s = KLLSketch(64, seed=5, nan_policy=policy, exact_limit=0 if state == "exact_compactors" else None)
    if state in ("exact", "exact_compactors"):  # the exact table; the compactors before any compaction
        s.update([3.0, 1.0, 2.0])
    elif state == "table":  # many items, few distinct values: the exact table
        s.update(np.random.default_rng(3).integers(1, 6, size=20_000).astype(float))
        assert s.exact_limit and not s.is_estimation_mode
    elif state == "estimation":
        s.update(np.random.default_rng(1).normal(size=20_000))
        assert s.is_estimation_mode
    elif state == "pending":  # scalar updates that the binding may still be staging
        for v in np.random.default_rng(2).normal(size=700).tolist():
            s.update(v)
    return s


STATES = ["empty", "exact", "exact_compactors", "table", "estimation", "pending"]


def assert_rejects(s, exc, call, match=None):
    """call(s) raises exc and leaves the sketch exactly as it was."""
    before = s.to_bytes()
    n, nan_count = s.n, s.nan_count
    with pytest.raises(exc, match=match):
        call(s)
    assert s.to_bytes() == before
    assert s.n == n and s.nan_count == nan_count
    s._check_invariants()
    # still fully usable afterwards
    s.update(0.5)
    assert s.n == n + 1


# ---- update: values --------------------------------------------------------------

BAD_VALUE_TYPES = [
    "abc",
    "1.5",
    ["a", "b"],
    [1.0, "2"],
    np.array(["1", "2"]),
    b"abc",
    None,
    [None, 1.0],
    {"a": 1},
    {1.0, 2.0},
    1 + 2j,
    [1j, 2.0],
    np.array([1 + 1j]),
    np.array([1.0, 2.0], dtype=object),
    np.array(1.0, dtype=object),
    decimal.Decimal("1.5"),
    [fractions.Fraction(1, 3)],
    np.array(["2020-01-01"], dtype="datetime64[D]"),
    np.array([1], dtype="timedelta64[s]"),
    [[1.0], [2.0, 3.0]],  # ragged
    object(),
    (x for x in [1.0, 2.0]),
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("values", BAD_VALUE_TYPES, ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_update_rejects_non_numeric(state, values):
    s = make(state)
    assert_rejects(s, TypeError, lambda s: s.update(values))


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("values", BAD_VALUE_TYPES[:8], ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_weighted_update_rejects_non_numeric(state, values):
    s = make(state)
    assert_rejects(s, TypeError, lambda s: s.update(values, weights=[1, 1]))


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("shape", [(2, 3), (1, 1), (3, 1), (1, 2, 2), (0, 2)])
def test_update_rejects_multidimensional(state, shape):
    s = make(state)
    arr = np.ones(shape)
    assert_rejects(s, ValueError, lambda s: s.update(arr), match="shape")
    if arr.size:  # an empty nested list is just []
        assert_rejects(s, ValueError, lambda s: s.update(arr.tolist()), match="shape")


# ---- update: weights --------------------------------------------------------------


BAD_WEIGHTS_VALUE = [
    ([-1, 1], "weights"),
    ([0, 1], "weights"),
    (np.array([1, 0], dtype=np.uint8), "weights"),
    (np.array([-5, 2], dtype=np.int8), "weights"),
    ([1.5, 1.0], "whole"),
    ([1.0, 0.5], "whole"),
    ([NAN, 1.0], "NaN|finite"),
    ([np.inf, 1.0], "finite"),
    ([-np.inf, 1.0], "finite"),
    ([1.0, -2.0], "weights"),
    ([float(2**64), 1.0], "2\\*\\*64"),
    ([1e300, 1.0], "2\\*\\*64"),
    ([1, 2, 3], "one entry per item"),
    ([1], "one entry per item"),
    ([], "one entry per item"),
    (5, "one entry per item"),  # no broadcasting of a scalar weight
    (np.ones((2, 1)), "one entry per item"),
    (np.ones((1, 2)), "one entry per item"),
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("weights,match", BAD_WEIGHTS_VALUE, ids=lambda v: repr(v)[:24])
def test_bad_weight_values(state, weights, match):
    s = make(state)
    assert_rejects(s, ValueError, lambda s: s.update([1.0, 2.0], weights=weights), match=match)


BAD_WEIGHTS_TYPE = [
    [True, True],
    np.array([True, False]),
    True,
    ["a", "b"],
    "12",
    [None, 1],
    {"a": 1},
    [1 + 0j, 1],
    np.array([1, 1], dtype=object),
    [2**64, 1],  # beyond uint64: numpy makes an object array
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("weights", BAD_WEIGHTS_TYPE, ids=lambda v: repr(v)[:24])
def test_bad_weight_types(state, weights):
    s = make(state)
    assert_rejects(s, TypeError, lambda s: s.update([1.0, 2.0], weights=weights))


@pytest.mark.parametrize("state", STATES)
def test_bad_weight_scalar_item(state):
    s = make(state)
    assert_rejects(s, ValueError, lambda s: s.update(1.0, weights=0))
    assert_rejects(s, ValueError, lambda s: s.update(1.0, weights=-3))
    assert_rejects(s, ValueError, lambda s: s.update(1.0, weights=2.5))
    assert_rejects(s, ValueError, lambda s: s.update(1.0, weights=[1, 2]))
    assert_rejects(s, TypeError, lambda s: s.update(1.0, weights=True))
    assert_rejects(s, ValueError, lambda s: s.update([], weights=[1]))


def test_one_bad_weight_in_a_long_batch_rejects_all():
    s = make("estimation")
    w = np.ones(100_000, dtype=np.int64)
    w[-1] = 0
    x = np.arange(100_000.0)
    assert_rejects(s, ValueError, lambda s: s.update(x, weights=w))
    w[-1] = 1
    w[50_000] = -7
    assert_rejects(s, ValueError, lambda s: s.update(x, weights=w))


@pytest.mark.parametrize("state", ["empty", "exact", "estimation"])
def test_weight_total_overflow(state):
    s = make(state)
    n = s.n
    big = np.array([2**63, 2**63], dtype=np.uint64)
    assert_rejects(s, OverflowError, lambda s: s.update([1.0, 2.0], weights=big))
    s2 = make(state)
    s2.update([1.0], weights=np.array([2**64 - 1 - n - 1], dtype=np.uint64))
    # one more item is fine, two are not
    assert_rejects(s2, OverflowError, lambda s: s.update([1.0, 2.0]))


def test_overflow_of_n_by_scalar_update_is_reported_at_the_call():
    """Adding to a sketch whose total weight is already 2**64 - 1 must fail in
    update() itself and leave a usable sketch, as the batch path does."""
    s = KLLSketch(seed=0)
    s.update([1.0], weights=np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(OverflowError):
        s.update([2.0])  # the batch path rejects it
    assert s.n == 2**64 - 1
    with pytest.raises(OverflowError):
        s.update(2.0)  # and so must the scalar path
    # the sketch is still usable: nothing is left half-applied
    assert s.n == 2**64 - 1
    assert s.max == 1.0
    KLLSketch.from_bytes(s.to_bytes())
    s._check_invariants()


def test_nan_count_near_limit_does_not_block_ordinary_items():
    """nan_count at its limit only forbids more NaNs: non-NaN items still add
    to n (the scalar path of the core already behaves so)."""
    s = KLLSketch(seed=0)
    s.update([NAN], weights=np.array([2**64 - 1], dtype=np.uint64))
    assert s.nan_count == 2**64 - 1 and s.n == 0
    s.update([1.0, 2.0])
    assert s.n == 2 and s.nan_count == 2**64 - 1


# ---- nan_policy="raise" --------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.update(NAN),
        lambda s: s.update(np.float64("nan")),
        lambda s: s.update(np.float32("nan")),
        lambda s: s.update(np.array(NAN)),
        lambda s: s.update([NAN]),
        lambda s: s.update([1.0, 2.0, NAN]),
        lambda s: s.update(np.r_[np.arange(100_000.0), NAN]),
        lambda s: s.update(np.r_[NAN, np.arange(100_000.0)]),
        lambda s: s.update(np.array([1.0, NAN], dtype=np.float16)),
        lambda s: s.update([1.0, NAN], weights=[1, 1]),
        lambda s: s.update([1.0, NAN], weights=[5, 7]),
        lambda s: s.update(NAN, weights=3),
        lambda s: s.update(np.r_[np.arange(10_000.0), NAN], weights=np.full(10_001, 2)),
    ],
    ids=lambda c: "",
)
def test_nan_policy_raise(state, call):
    s = make(state, policy="raise")
    assert_rejects(s, ValueError, call, match="NaN")
    assert s.nan_count == 0


def test_nan_policy_raise_message():
    s = KLLSketch(nan_policy="raise")
    with pytest.raises(ValueError, match="nan_policy"):
        s.update(NAN)


def test_nan_policy_raise_accepts_infinities():
    s = KLLSketch(nan_policy="raise")
    s.update([np.inf, -np.inf, 0.0])
    s.update(np.inf)
    assert s.n == 4 and s.max == np.inf and s.min == -np.inf


# ---- queries ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.rank(NAN),
        lambda s: s.rank(np.float32("nan")),
        lambda s: s.rank(NAN, inclusive=False),
        lambda s: s.rank([1.0, NAN]),
        lambda s: s.rank(np.array([[0.0, NAN]])),
        lambda s: s.rank_bounds(NAN),
        lambda s: s.rank_bounds([0.0, NAN]),
        lambda s: s.cdf([NAN]),
        lambda s: s.cdf([0.0, NAN]),
        lambda s: s.pmf([NAN, 1.0]),
        lambda s: s.pmf([NAN], inclusive=False),
    ],
    ids=lambda c: "",
)
def test_nan_queries(state, call):
    s = make(state)
    assert_rejects(s, ValueError, call, match="NaN")


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.rank("a"),
        lambda s: s.rank(None),
        lambda s: s.rank([1.0, "a"]),
        lambda s: s.rank(1j),
        lambda s: s.rank({"x": 1}),
        lambda s: s.quantile("0.5"),
        lambda s: s.quantile(None),
        lambda s: s.quantile([0.5, None]),
        lambda s: s.quantiles(["a"]),
        lambda s: s.cdf("abc"),
        lambda s: s.cdf([None]),
        lambda s: s.pmf([1j]),
        lambda s: s.rank_bounds("a"),
        lambda s: s.rank_bounds(0.0, confidence="0.9"),
        lambda s: s.rank_bounds(0.0, confidence=None),
        lambda s: s.rank_bounds(0.0, confidence=True),
    ],
    ids=lambda c: "",
)
def test_query_wrong_types(state, call):
    s = make(state)
    assert_rejects(s, TypeError, call)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "p", [-0.1, 1.1, -1e-300, 1 + 1e-15, NAN, np.inf, -np.inf, [0.5, 2.0], [NAN, 0.5], np.array([[0.1, -3]])],
    ids=repr,
)
def test_quantile_out_of_range(state, p):
    s = make(state)
    assert_rejects(s, ValueError, lambda s: s.quantile(p), match="probabilit")
    assert_rejects(s, ValueError, lambda s: s.quantile(p, inclusive=False), match="probabilit")
    assert_rejects(s, ValueError, lambda s: s.quantiles(p), match="probabilit")


def test_quantile_edges_accepted():
    s = make("exact")
    assert s.quantile(-0.0) == 1.0 and s.quantile(0) == 1.0 and s.quantile(1) == 3.0
    assert s.quantile(np.float32(1.0)) == 3.0


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    "splits,match",
    [
        ([2.0, 1.0], "increasing"),
        ([1.0, 1.0], "increasing"),
        ([0.0, 1.0, 1.0, 2.0], "increasing"),
        ([0.0, -0.0], "increasing"),
        ([np.inf, np.inf], "increasing"),
        (np.arange(10.0)[::-1], "increasing"),
        (np.ones((2, 2)), "1-D"),
        (np.array([[1.0, 2.0]]), "1-D"),
        (np.array(1.0), "1-D"),
        (1.0, "1-D"),
        ([NAN], "NaN"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_bad_splits(state, splits, match):
    s = make(state)
    assert_rejects(s, ValueError, lambda s: s.cdf(splits), match=match)
    assert_rejects(s, ValueError, lambda s: s.pmf(splits), match=match)
    assert_rejects(s, ValueError, lambda s: s.cdf(splits, inclusive=False), match=match)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("confidence", [0, 0.0, 1, 1.0, -0.5, 1.5, NAN, np.inf, -np.inf])
def test_bad_confidence(state, confidence):
    s = make(state)
    assert_rejects(s, ValueError, lambda s: s.rank_bounds(0.0, confidence=confidence), match="confidence")


def test_good_confidence_types():
    s = make("estimation")
    for c in (0.5, np.float32(0.9), np.float64(0.999), 1e-9, 1 - 1e-12):
        lo, hi = s.rank_bounds(0.0, confidence=c)
        assert 0.0 <= lo <= hi <= 1.0


# ---- merge and serialization ----------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("other", [None, 1, 1.0, "s", [KLLSketch()], b"QSK", object()], ids=repr)
def test_merge_non_sketch(state, other):
    s = make(state)
    assert_rejects(s, TypeError, lambda s: s.merge(other), match="KLLSketch")


@pytest.mark.parametrize("state", STATES)
def test_merge_serialized_bytes_is_a_type_error(state):
    s = make(state)
    blob = make("exact").to_bytes()
    assert_rejects(s, TypeError, lambda s: s.merge(blob))


@pytest.mark.parametrize("data", ["QSK", "", 1, None, [1, 2], 3.5, np.zeros(60, dtype=np.uint8)], ids=repr)
def test_from_bytes_wrong_type(data):
    with pytest.raises(TypeError):
        KLLSketch.from_bytes(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"Q", b"QSK", b"QSK\x01", b"not a sketch", b"\x00" * 100, b"QSK\x01" + b"\x00" * 200, bytes(range(256))],
    ids=repr,
)
def test_from_bytes_garbage(data):
    with pytest.raises(SerializationError) as info:
        KLLSketch.from_bytes(data)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, qsketch.QSketchError)
    assert str(info.value).startswith("cannot decode a sketch: ")
    with pytest.raises(SerializationError):
        KLLSketch.from_bytes(bytearray(data))
    with pytest.raises(SerializationError):
        KLLSketch.from_bytes(memoryview(data))


def test_from_bytes_accepts_buffer_types():
    s = make("estimation")
    b = s.to_bytes()
    for data in (b, bytearray(b), memoryview(b), memoryview(bytearray(b))):
        assert KLLSketch.from_bytes(data).to_bytes() == b
    # a non-contiguous memoryview is copied, not misread
    doubled = bytes(x for c in b for x in (c, 0))
    mv = memoryview(doubled)[::2]
    assert KLLSketch.from_bytes(mv).to_bytes() == b


def test_errors_hierarchy():
    assert issubclass(SerializationError, ValueError)
    assert issubclass(SerializationError, qsketch.QSketchError)
    assert issubclass(qsketch.QSketchError, Exception)


def test_every_call_leaves_sketch_usable_after_errors():
    """A long sequence of rejected calls, then the sketch is still exact."""
    s = KLLSketch(seed=0)
    data = []
    for i in range(50):
        for bad in (lambda: s.update("x"), lambda: s.update([1.0], weights=[0]),
                    lambda: s.quantile(2.0), lambda: s.rank(NAN), lambda: s.cdf([1.0, 0.0])):
            with pytest.raises((TypeError, ValueError)):
                bad()
        s.update(float(i))
        data.append(float(i))
    assert s.n == 50 and s.rank(24.0) == 0.5
    assert not math.isnan(s.quantile(0.5))
