"""The rest of issue 8's bad-input matrix, beside tests/test_bad_input.py.

tests/test_bad_input.py covers wrong item types, shapes and dtypes, object and
string arrays, None, NaN queries, p outside [0, 1], bad weights, non-sketch
merges and garbage bytes.  This file adds what that matrix left out:

* query arguments other than the value: ``inclusive`` and ``estimator`` of the
  wrong type or value;
* more kinds of items: numpy scalars of non-numeric types, structured arrays,
  pandas objects, Python ints beyond float range, byte buffers;
* weights from generators, nullable pandas arrays, float32 beyond 2**64;
* merges that overflow n, with other sketch libraries' objects, with
  uninitialized sketches, and merge_all's arguments;
* files: truncated golden files of every format version, other formats
  (npy, pickle, gzip, zip, JSON, DataSketches for from_bytes and qsketch for
  from_datasketches), paths and file objects instead of bytes, corrupted
  pickles, every truncation of real DataSketches bytes, bad ``kind`` and
  ``seed``;
* the constructor's other arguments.

Each case checks the exception type, that the message names the problem, and
(through test_bad_input.assert_rejects) that the sketch is byte-for-byte
unchanged and still usable, in every state of test_bad_input.STATES.
"""

import gzip
import io
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import qsketch
from qsketch import KLLSketch, SerializationError
from test_bad_input import STATES, assert_rejects, make

DATA = Path(__file__).resolve().parent / "data"


# ---- query arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("estimator", ["STEP", "", 0, b"step", ["step"]], ids=repr)
def test_bad_estimator(state, estimator):
    s = make(state)
    for method, arg in (("rank", 0.5), ("rank", [0.5]), ("quantile", 0.5), ("quantile", [0.5]), ("cdf", [0.5]),
                        ("pmf", [0.5]), ("quantiles", [0.5])):
        assert_rejects(s, (ValueError, TypeError), lambda s: getattr(s, method)(arg, estimator=estimator),
                       match="estimator")


@pytest.mark.parametrize("estimator", ["STEP", 0])
def test_bad_default_estimator(estimator):
    with pytest.raises(ValueError, match="estimator"):
        KLLSketch(estimator=estimator)


_LOCK_LEAK_CHILD = textwrap.dedent("""
    import faulthandler, sys
    import numpy as np
    import qsketch
    # A hang ends the child after 10 s (with its stack); every call below
    # takes microseconds.
    faulthandler.dump_traceback_later(10, exit=True)
    calls = [
        lambda s: s.rank(2.0, inclusive=None),
        lambda s: s.rank(2.0, inclusive="no"),
        lambda s: s.rank(2.0, inclusive=1.5),
        lambda s: s.quantile(0.5, inclusive=None),
        lambda s: s.quantile(0.5, inclusive="no"),
    ]
    for call in calls:
        s = qsketch.KLLSketch(seed=1)
        s.update([1.0, 2.0, 3.0])
        try:
            call(s)
        except (TypeError, ValueError):
            pass
        assert s.n == 3  # the sketch must still answer: its lock is free
        s.update(4.0)
        assert s.n == 4
    print("ok")
""")


def test_bad_inclusive_with_a_scalar_query_releases_the_lock():
    """A bad `inclusive` with a scalar query once raised after the sketch's
    lock was taken, and the next call blocked forever; it is converted before
    the lock now.  Run in a child process: the bug was a deadlock."""
    proc = subprocess.run([sys.executable, "-c", _LOCK_LEAK_CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize("state", STATES)
def test_bad_inclusive_with_array_queries(state):
    """With array queries (the path that has no lock leak) an odd `inclusive`
    is read by truthiness and the sketch is untouched; an array-valued one is
    refused."""
    s = make(state)
    before = s.to_bytes()
    if not s.is_empty:
        assert np.array_equal(s.rank(np.array([0.5]), inclusive=1), s.rank(np.array([0.5]), inclusive=True))
    assert s.to_bytes() == before
    assert_rejects(s, ValueError, lambda s: s.rank(np.array([0.5]), inclusive=np.array([True, False])))


# ---- items ------------------------------------------------------------------------------------


MORE_BAD_ITEMS = [
    np.datetime64("2020-01-01"),
    np.timedelta64(5, "s"),
    np.str_("1.5"),
    np.bytes_(b"1.5"),
    np.complex128(1 + 0j),
    np.zeros(3, dtype=[("a", "f8")]),  # structured
    np.array([(1.0, 2.0)], dtype=[("a", "f8"), ("b", "f8")]),
    {1: 2.0}.values(),
    iter([1.0, 2.0]),
    [1.0, [2.0]],
    [1.0, None, 3.0],
    np.array([1, "a"], dtype=object),
    [10**400],  # an int beyond float range, inside a list: an object array
]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("values", MORE_BAD_ITEMS, ids=lambda v: type(v).__name__ + ":" + repr(v)[:16])
def test_more_non_numeric_items(state, values):
    s = make(state)
    assert_rejects(s, (TypeError, ValueError), lambda s: s.update(values))


@pytest.mark.parametrize("state", STATES)
def test_int_beyond_float_range(state):
    s = make(state)
    for call in (lambda s: s.update(10**400), lambda s: s.update(-(10**400)),
                 lambda s: s.rank(10**400), lambda s: s.quantile(10**400)):
        assert_rejects(s, (OverflowError, TypeError, ValueError), call)


@pytest.mark.parametrize("state", STATES)
def test_pandas_inputs(state):
    pd = pytest.importorskip("pandas")
    s = make(state)
    assert_rejects(s, TypeError, lambda s: s.update(pd.Series([1.0, None, pd.NA], dtype=object)))
    assert_rejects(s, TypeError, lambda s: s.update(pd.Categorical(["a", "b"])))
    assert_rejects(s, TypeError, lambda s: s.update(pd.Series(pd.to_datetime(["2020-01-01"]))))
    assert_rejects(s, ValueError, lambda s: s.update(pd.DataFrame({"a": [1.0], "b": [2.0]})), match="shape")
    assert_rejects(s, ValueError, lambda s: s.update([1.0, 2.0], weights=pd.array([1, pd.NA], dtype="Int64")),
                   match="weights")
    # the good ones: a float Series (NaN counted), nullable arrays (NA is NaN)
    n, nans = s.n, s.nan_count
    s.update(pd.Series([1.0, np.nan]))
    s.update(pd.array([2.0, pd.NA], dtype="Float64"))
    assert s.n == n + 2 and s.nan_count == nans + 2


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
@pytest.mark.parametrize("state", STATES)
def test_np_matrix_is_two_dimensional(state):
    s = make(state)
    assert_rejects(s, ValueError, lambda s: s.update(np.matrix([1.0, 2.0])), match="shape")


def test_byte_order_and_buffers_that_are_numbers():
    """Not bad input: big-endian arrays and float buffers are read by value."""
    s = KLLSketch(seed=0)
    s.update(np.array([5.0, 6.0], dtype=">f8"))
    s.update(memoryview(np.array([1.0, 2.0])))
    assert s.n == 4 and s.min == 1.0 and s.max == 6.0


def test_byte_buffers_are_refused_like_bytes():
    """update(b"abc") is refused as text; so are a bytearray and a memoryview
    of bytes (numpy would read them as the uint8 numbers 97, 98, 99)."""
    s = KLLSketch(seed=0)
    with pytest.raises(TypeError):
        s.update(bytearray(b"abc"))
    with pytest.raises(TypeError):
        s.update(memoryview(b"abc"))


# ---- weights ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_more_bad_weights(state):
    s = make(state)
    assert_rejects(s, TypeError, lambda s: s.update([1.0, 2.0], weights=(w for w in [1, 2])))
    assert_rejects(s, TypeError, lambda s: s.update([1.0, 2.0], weights={1, 2}))
    assert_rejects(s, ValueError, lambda s: s.update([1.0, 2.0], weights=np.array([1.0, 2.0**70], dtype=np.float32)),
                   match="2\\*\\*64")
    assert_rejects(s, ValueError, lambda s: s.update([1.0, 2.0], weights=np.array([1, -1], dtype=np.int64)),
                   match="weights")
    assert_rejects(s, ValueError, lambda s: s.update(np.ones(3), weights=np.ones(4, dtype=np.uint64)),
                   match="one entry per item")


# ---- merges -------------------------------------------------------------------------------------


def _heavy():
    b = KLLSketch(seed=0)
    b.update([5.0], weights=np.array([2**64 - 2], dtype=np.uint64))
    return b


@pytest.mark.parametrize("state", [s for s in STATES if s != "empty"])  # an empty sketch cannot overflow
def test_merge_overflow_leaves_both_unchanged(state):
    s = make(state)
    heavy = _heavy()
    heavy_bytes = heavy.to_bytes()
    assert_rejects(s, OverflowError, lambda s: s.merge(heavy), match="2\\*\\*64")
    assert_rejects(s, OverflowError, lambda s: s.__iadd__(heavy), match="2\\*\\*64")
    with pytest.raises(OverflowError):
        s + heavy
    with pytest.raises(OverflowError):
        heavy.merge(s)
    assert heavy.to_bytes() == heavy_bytes


@pytest.mark.parametrize("state", STATES)
def test_merge_other_libraries_and_uninitialized(state):
    s = make(state)
    ds = pytest.importorskip("datasketches")
    assert_rejects(s, TypeError, lambda s: s.merge(ds.kll_doubles_sketch(200)), match="KLLSketch")
    assert_rejects(s, TypeError, lambda s: s.merge(qsketch), match="KLLSketch")
    raw = KLLSketch.__new__(KLLSketch)
    assert_rejects(s, RuntimeError, lambda s: s.merge(raw), match="not initialized")


def test_merge_all_arguments():
    a = make("estimation")
    with pytest.raises(TypeError, match="KLLSketch"):
        qsketch.merge_all([a, 1])
    with pytest.raises(ValueError, match="at least one"):
        qsketch.merge_all([])
    before = a.to_bytes()
    with pytest.raises(TypeError):
        qsketch.merge_all([a, "b"])
    assert a.to_bytes() == before


# ---- files and bytes --------------------------------------------------------------------------------


GOLDEN = sorted(DATA.glob("*.qsk"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_truncated_golden_files(path):
    blob = path.read_bytes()
    cuts = sorted({0, 1, 3, 4, 10, 55, 56, 59, 60, len(blob) // 2, len(blob) - 5, len(blob) - 4, len(blob) - 1})
    for cut in cuts:
        if 0 <= cut < len(blob):
            with pytest.raises(SerializationError, match="cannot decode a sketch: .+"):
                KLLSketch.from_bytes(blob[:cut])


def _zip_bytes():
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("sketch.qsk", (DATA / "kll_f64_n10_v2.qsk").read_bytes())
    return buf.getvalue()


OTHER_FORMATS = {
    "npy": lambda: _npy_bytes(),
    "pickle_of_a_sketch": lambda: pickle.dumps(make("exact")),
    "gzip_of_a_sketch": lambda: gzip.compress((DATA / "kll_f64_n10_v2.qsk").read_bytes()),
    "zip_of_a_sketch": _zip_bytes,
    "json": lambda: json.dumps({"k": 200, "items": [1.0, 2.0]}).encode(),
    "datasketches_kll": lambda: make("estimation").to_datasketches(),
    "hex_text_of_a_sketch": lambda: make("exact").to_bytes().hex().encode(),
    "utf16_text": lambda: "QSK sketch".encode("utf-16"),
}


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(10.0))
    return buf.getvalue()


@pytest.mark.parametrize("name", list(OTHER_FORMATS))
def test_from_bytes_other_formats(name):
    with pytest.raises(SerializationError, match="cannot decode a sketch: .+"):
        KLLSketch.from_bytes(OTHER_FORMATS[name]())


@pytest.mark.parametrize("name", [n for n in OTHER_FORMATS if n != "datasketches_kll"] + ["qsketch"])
def test_from_datasketches_other_formats(name):
    blob = make("estimation").to_bytes() if name == "qsketch" else OTHER_FORMATS[name]()
    with pytest.raises(SerializationError, match="cannot decode a DataSketches KLL sketch: .+"):
        KLLSketch.from_datasketches(blob)


def test_qsketch_bytes_given_to_the_datasketches_reader_say_so():
    with pytest.raises(SerializationError, match="from_bytes"):
        KLLSketch.from_datasketches(make("estimation").to_bytes())


@pytest.mark.parametrize("what", ["path_str", "path", "file", "list", "array", "none"])
def test_decoders_want_bytes(what, tmp_path):
    p = tmp_path / "s.qsk"
    p.write_bytes(make("exact").to_bytes())
    arg = {"path_str": str(p), "path": p, "file": None, "list": list(p.read_bytes()),
           "array": np.frombuffer(p.read_bytes(), dtype=np.uint8), "none": None}[what]
    if what == "file":
        with open(p, "rb") as f:
            with pytest.raises(TypeError, match="bytes"):
                KLLSketch.from_bytes(f)
            with pytest.raises(TypeError, match="bytes"):
                KLLSketch.from_datasketches(f)
        return
    with pytest.raises(TypeError, match="bytes"):
        KLLSketch.from_bytes(arg)
    with pytest.raises(TypeError, match="bytes"):
        KLLSketch.from_datasketches(arg)


def test_corrupted_pickle_raises_serialization_error():
    s = make("estimation")
    blob = pickle.dumps(s)
    with pytest.raises(SerializationError):
        pickle.loads(blob.replace(b"QSK", b"QSX"))
    raw = s.to_bytes()
    at = blob.index(raw) + len(raw) // 2  # a byte inside the sketch: the CRC catches it
    bad = bytearray(blob)
    bad[at] ^= 0x01
    with pytest.raises(SerializationError, match="checksum"):
        pickle.loads(bytes(bad))


def test_every_truncation_of_real_datasketches_bytes():
    ds = pytest.importorskip("datasketches")
    rng = np.random.default_rng(1)
    for make_ds in (ds.kll_doubles_sketch, ds.kll_floats_sketch):
        d = make_ds(20)
        for x in rng.normal(size=300):
            d.update(float(x))
        blob = bytes(d.serialize())
        for cut in range(len(blob)):
            try:
                s = KLLSketch.from_datasketches(blob[:cut], seed=0)
            except SerializationError:
                continue
            # a shorter length that happens to read as a floats sketch: must still be valid
            s._check_invariants()


@pytest.mark.parametrize("kind", ["int", "DOUBLE", "f8", 8, b"double"])
def test_bad_kind(kind):
    s = make("estimation")
    blob = s.to_datasketches()
    with pytest.raises(ValueError, match="kind"):
        KLLSketch.from_datasketches(blob, kind=kind)
    before = s.to_bytes()
    with pytest.raises(ValueError, match="kind"):
        s.to_datasketches(kind)
    assert s.to_bytes() == before


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (2**64, ValueError), ("1", TypeError), (1.5, TypeError)])
def test_bad_seed_for_the_datasketches_reader(seed, exc):
    with pytest.raises(exc, match="seed"):
        KLLSketch.from_datasketches(make("estimation").to_datasketches(), seed=seed)


def test_to_datasketches_needs_a_sketch():
    with pytest.raises(TypeError, match="KLLSketch"):
        qsketch.to_datasketches(b"QSK")


# ---- the constructor's other arguments ------------------------------------------------------------


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"nan_policy": "omit"}, ValueError, "nan_policy"),
    ({"nan_policy": None}, (TypeError, ValueError), "nan_policy"),
    ({"nan_policy": "RAISE"}, ValueError, "nan_policy"),
    ({"exact_limit": -1}, ValueError, "exact_limit"),
    ({"exact_limit": 2**20 + 1}, ValueError, "exact_limit"),
    ({"exact_limit": 1.5}, TypeError, "exact_limit"),
    ({"exact_limit": "300"}, TypeError, "exact_limit"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": "7"}, TypeError, "seed"),
    ({"k": 7.5}, TypeError, "k"),
    ({"k": None}, TypeError, "k"),
])
def test_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        KLLSketch(**kwargs)
