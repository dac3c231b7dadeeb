"""Shared pieces of the decoder fuzzers: seed inputs, mutations, and the
contract every input is held to.

Used by tests/fuzz/test_fuzz_decoders.py (bounded, seeded runs in the default
pytest run), by tests/fuzz/atheris_decoders.py (coverage-guided runs by hand)
and by the corpus replay (tests/data/fuzz_corpus/).

The contract (docs/reliability.md):

* ``KLLSketch.from_bytes(data)`` either raises :class:`qsketch.SerializationError`
  (a ValueError) or returns a sketch that passes ``_check_invariants()``,
  answers every query sensibly, survives updates and merges with an exact n,
  and re-encodes to bytes that decode to the same bytes;
* ``KLLSketch.from_datasketches(data, kind=...)`` likewise raises only
  SerializationError (never struct.error, IndexError, OverflowError, a numpy
  error or a bare ValueError) or returns such a sketch.

Decoding runs with warnings turned into errors: a decoder that emits a
RuntimeWarning (say, numpy's "invalid value encountered in cast") would raise
it instead of SerializationError in a program that runs with -W error.
"""

import math
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

import qsketch
from qsketch import KLLSketch, SerializationError
from qsketch._core import ESTIMATORS, MAX_K, MIN_K

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
CORPUS = DATA / "fuzz_corpus"
QS_CORPUS = CORPUS / "qsketch"
DS_CORPUS = CORPUS / "datasketches"

MAX_LEN = 1 << 16  # mutated inputs never grow beyond this (the seeds are smaller)



class ContractViolation(AssertionError):
    """An input broke the decoder's contract."""


# ---- seeds -------------------------------------------------------------------------


def seed_sketches():
    """Valid sketches in every state the format can express, by name."""
    rng = np.random.default_rng(8)
    out = {}

    def sk(name, *args, **kwargs):
        s = KLLSketch(*args, **kwargs)
        out[name] = s
        return s

    sk("empty", seed=1)
    sk("empty_no_layer", seed=1, buckets=0)
    sk("empty_k8_nolimit", 8, seed=2, exact_limit=0)
    sk("nan_only", seed=3).update([math.nan, math.nan])
    sk("one_item", seed=4).update(1.5)
    sk("exact_compactors", 16, seed=5, exact_limit=0).update(rng.random(12))
    sk("table", 64, seed=6).update(rng.integers(0, 17, size=3000).astype(float))
    sk("table_weighted", seed=7).update([1.0, 2.0, 3.0], weights=[5, 2**40, 7])
    for k in (8, 50, 200):
        sk(f"estimation_k{k}", k, seed=10 + k, exact_limit=0).update(rng.normal(size=3000))
        sk(f"estimation_k{k}_no_layer", k, seed=10 + k, exact_limit=0, buckets=0).update(rng.normal(size=3000))
    sk("estimation_small_layer", 64, seed=23, exact_limit=0, buckets=3).update(rng.lognormal(size=5000))
    sk("estimation_big_layer", 64, seed=24, exact_limit=0, buckets=2000).update(rng.lognormal(size=20000))
    sk("spline_weighted_atom", 32, seed=25, exact_limit=0).update(np.r_[rng.random(3000), 5.0],
                                                                   weights=np.r_[np.ones(3000, int), 2**20])
    sk("bulk_k32", 32, seed=9, exact_limit=0).update(rng.random(60_000))
    sk("k_max", MAX_K, seed=11, exact_limit=0).update(rng.random(100))
    sk("k_min", MIN_K, seed=12, exact_limit=0).update(np.arange(500.0))
    sk("weighted_high_levels", seed=13, exact_limit=0).update(
        [1.0, 2.0, 3.0, -4.0], weights=np.array([2**40, 3, 2**62 + 5, 7], dtype=np.uint64))
    sk("weight_max", seed=14, exact_limit=0).update([1.0], weights=np.array([2**64 - 1], dtype=np.uint64))
    ext = np.array([np.inf, -np.inf, -0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
                    1.7976931348623157e308, -1.7976931348623157e308, 1.0])
    sk("extremes_k8", 8, seed=15, exact_limit=0).update(ext[rng.integers(0, ext.size, 400)])
    sk("extremes_table", seed=16).update(ext[rng.integers(0, ext.size, 400)])
    sk("all_inf", 8, seed=17, exact_limit=0).update(np.full(100, np.inf))
    sk("all_equal", 20, seed=18, exact_limit=0).update(np.full(5000, 7.0))
    sk("raise_linear", 64, seed=19, nan_policy="raise", estimator="linear").update(rng.random(1000))
    sk("step_estimator", 40, seed=20, estimator="step", exact_limit=0).update(rng.random(700))
    a = sk("merged", 300, seed=21, exact_limit=0)
    a.update(rng.random(2000))
    b = KLLSketch(40, seed=22, exact_limit=0)
    b.update(rng.random(700) + 0.5)
    a.merge(b)
    return out


def _to_v1(blob):
    """The same sketch in format version 1 (header, level sizes, items, CRC:
    no exact table), or None when it holds an exact table."""
    if len(blob) < 60 or blob[3] < 2:
        return None
    levels, retained = blob[9], struct.unpack_from("<I", blob, 12)[0]
    items_end = 56 + 4 * levels + 8 * retained
    if items_end + 8 > len(blob) or struct.unpack_from("<II", blob, items_end) != (0, 0):
        return None
    body = bytearray(blob[:items_end])
    body[3] = 1
    body[8] = 8  # version 1's m (a larger m only enlarges the capacities)
    body[11] = 0
    return fix_crc(bytes(body) + b"\0\0\0\0")


def qsketch_seeds(corpus=True):
    """Seed inputs of KLLSketch.from_bytes: the seed sketches (in the current
    format and, where it can hold them, format 1), the golden files, and
    (corpus=True) the regression corpus, valid or not."""
    seeds = []
    for s in seed_sketches().values():
        blob = s.to_bytes()
        seeds.append(blob)
        v1 = _to_v1(blob)
        if v1:
            seeds.append(v1)
    seeds += [p.read_bytes() for p in sorted(DATA.glob("*.qsk"))]
    if corpus:
        seeds += [p.read_bytes() for p in corpus_files(QS_CORPUS)]
    return seeds


# DataSketches bytes written by datasketches 5.2 (tests/test_datasketches_interop.py)
_DS_GOLDEN = [
    "02010f01c8000800",
    "02020f04c80008000000000000000c40",
    "02020f04c800080000006040",
    "05010f00c80008000300000000000000c8000100c5000000000000000000f03f0000000000000c40"
    "0000000000000040000000000000f03f0000000000000c40",
    "05010f00c80008000300000000000000c8000100c50000000000803f00006040000000400000803f00006040",
]


def datasketches_seeds(corpus=True):
    """Seed inputs of KLLSketch.from_datasketches: conversions of the seed
    sketches (doubles and floats), DataSketches' own bytes, and (corpus=True)
    the regression corpus."""
    seeds = [bytes.fromhex(h) for h in _DS_GOLDEN]
    for s in seed_sketches().values():
        for kind in ("double", "float"):
            seeds.append(s.to_datasketches(kind))
    try:  # the real library, when installed (it is in the [test] extra)
        import datasketches
    except ImportError:
        datasketches = None
    if datasketches is not None:
        rng = np.random.default_rng(9)
        for make in (datasketches.kll_doubles_sketch, datasketches.kll_floats_sketch):
            for k, n in ((8, 40), (200, 5000), (20, 1)):
                d = make(k)
                for x in rng.normal(size=n):
                    d.update(float(x))
                seeds.append(bytes(d.serialize()))
        ints = datasketches.kll_ints_sketch(16)
        for x in range(100):
            ints.update(x)
        seeds.append(bytes(ints.serialize()))  # another item type: must be refused
    if corpus:
        seeds += [p.read_bytes() for p in corpus_files(DS_CORPUS)]
    return seeds


def corpus_files(directory):
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


# ---- mutations ---------------------------------------------------------------------

INTERESTING_INTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 63, 64, 65, 127, 128, 200, 255, 256, 0x7FFF, 0x8000,
                    0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
INTERESTING_DOUBLES = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 1.7976931348623157e308,
                       -1.7976931348623157e308, 2.2250738585072014e-308, 5e-324, -5e-324, 1e300, 3.0]
INTERESTING_FLOATS = [0.0, -0.0, 1.0, math.inf, -math.inf, math.nan, 3.4028234663852886e38, 1e-45, 1.1754943508222875e-38]


def fix_crc(data):
    """Recompute the trailing CRC-32 of qsketch bytes (so the checks behind the
    checksum are reached)."""
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _put(buf, at, fmt, value):
    size = struct.calcsize(fmt)
    if 0 <= at and at + size <= len(buf):
        struct.pack_into(fmt, buf, at, value)


def mutate_once(buf, rnd, pool, fmt):
    """Mutate bytearray ``buf`` in place (or return a new one) with one random
    operation.  ``fmt`` is "qsketch" or "datasketches": it decides where the
    header fields and the items are."""
    op = rnd.randrange(14)
    n = len(buf)
    if op == 0 and n:  # flip a bit
        buf[rnd.randrange(n)] ^= 1 << rnd.randrange(8)
    elif op == 1 and n:  # a random byte
        buf[rnd.randrange(n)] = rnd.randrange(256)
    elif op == 2:  # an interesting integer in a header field
        fields = ([(3, "<B"), (4, "<B"), (5, "<B"), (6, "<H"), (8, "<B"), (9, "<B"), (10, "<B"), (11, "<B"),
                   (12, "<I"), (16, "<Q"), (24, "<Q")] if fmt == "qsketch" else
                  [(0, "<B"), (1, "<B"), (2, "<B"), (3, "<B"), (4, "<H"), (6, "<B"), (8, "<Q"), (16, "<H"),
                   (18, "<B"), (20, "<I"), (24, "<I")])
        at, f = rnd.choice(fields)
        v = rnd.choice(INTERESTING_INTS) + rnd.choice((0, 0, 1, -1))
        _put(buf, at, f, v % (1 << (8 * struct.calcsize(f))))
    elif op == 3:  # an interesting double or float at an item-aligned offset
        start = 32 if fmt == "qsketch" else 8
        width = 8 if fmt == "qsketch" or rnd.random() < 0.5 else 4
        if n >= start + width:
            at = start + width * rnd.randrange((n - start) // width)
            vals = INTERESTING_DOUBLES if width == 8 else INTERESTING_FLOATS
            _put(buf, at, "<d" if width == 8 else "<f", rnd.choice(vals))
    elif op == 4 and n >= 16:  # swap two 8-byte words
        a, b = rnd.randrange(n // 8) * 8, rnd.randrange(n // 8) * 8
        buf[a:a + 8], buf[b:b + 8] = buf[b:b + 8], buf[a:a + 8]
    elif op == 5:  # insert bytes
        k = rnd.randint(1, 16)
        if n + k <= MAX_LEN:
            at = rnd.randrange(n + 1)
            buf[at:at] = bytes(rnd.randrange(256) if rnd.random() < 0.5 else 0 for _ in range(k))
    elif op == 6 and n:  # delete bytes
        at = rnd.randrange(n)
        del buf[at:at + rnd.randint(1, 16)]
    elif op == 7 and n:  # truncate
        del buf[rnd.randrange(n):]
    elif op == 8 and n >= 2:  # copy a chunk over another place
        k = rnd.randint(1, n // 2)
        src, dst = rnd.randrange(n - k + 1), rnd.randrange(n - k + 1)
        buf[dst:dst + k] = buf[src:src + k]
    elif op == 9 and pool:  # splice with another seed
        other = rnd.choice(pool)
        head = rnd.randrange(n + 1)
        buf[head:] = other[rnd.randrange(len(other) + 1):]
        del buf[MAX_LEN:]
    elif op == 10 and fmt == "qsketch" and n >= 60:  # move one item between two level sizes
        levels = buf[9]
        if levels and 56 + 4 * levels <= n:
            a, b = 56 + 4 * rnd.randrange(levels), 56 + 4 * rnd.randrange(levels)
            va = struct.unpack_from("<I", buf, a)[0]
            if va:
                struct.pack_into("<I", buf, a, va - 1)
                struct.pack_into("<I", buf, b, (struct.unpack_from("<I", buf, b)[0] + 1) % 2**32)
    elif op == 10 and fmt == "datasketches" and n >= 24:  # move a level offset
        levels = buf[18]
        if levels and 20 + 4 * levels <= n:
            at = 20 + 4 * rnd.randrange(levels)
            v = struct.unpack_from("<I", buf, at)[0] + rnd.choice((-2, -1, 1, 2))
            struct.pack_into("<I", buf, at, v % 2**32)
    elif op == 11 and n >= 32:  # n: a small step, so the weight check is just missed or just met
        at = 16 if fmt == "qsketch" else 8
        v = struct.unpack_from("<Q", buf, at)[0] + (rnd.randint(-8, 8) << rnd.randrange(64))
        struct.pack_into("<Q", buf, at, v % 2**64)
    elif op == 12 and n >= 16:  # sort or reverse a run of 8-byte items
        a, b = sorted((rnd.randrange(n // 8), rnd.randrange(n // 8)))
        words = [struct.unpack_from("<d", buf, 8 * i)[0] for i in range(a, b + 1)]
        words = sorted(0.0 if w != w else w for w in words)
        if rnd.random() < 0.5:
            words.reverse()
        for i, w in zip(range(a, b + 1), words):
            struct.pack_into("<d", buf, 8 * i, w)
    elif op == 13 and n > 8:  # the level count byte
        at = 9 if fmt == "qsketch" else 18
        if at < n:
            buf[at] = rnd.choice((0, 1, 2, 3, 8, 63, 64, 65, 255, rnd.randrange(256)))
    return buf


def mutate(data, rnd, pool, fmt, rounds=None):
    """1 to 4 stacked mutations; for qsketch bytes the CRC is recomputed 7 times in 8."""
    buf = bytearray(data)
    for _ in range(rounds if rounds is not None else rnd.randint(1, 4)):
        buf = mutate_once(buf, rnd, pool, fmt)
    out = bytes(buf)
    if fmt == "qsketch" and rnd.random() < 0.875:
        out = fix_crc(out)
    return out


# ---- the contract ------------------------------------------------------------------


def _violation(what, data, exc=None):
    head = data[:96].hex()
    msg = f"{what} (input of {len(data)} bytes, starting {head}{'...' if len(data) > 96 else ''})"
    raise ContractViolation(msg) from exc


def decode_qsketch(data):
    """KLLSketch.from_bytes(data) held to its contract: the sketch, or None
    when the bytes were refused with SerializationError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = KLLSketch.from_bytes(data)
    except SerializationError as exc:
        if not str(exc).startswith("cannot decode a sketch: ") or len(str(exc)) <= len("cannot decode a sketch: "):
            _violation(f"SerializationError without a reason: {exc!r}", data, exc)
        return None
    except Exception as exc:  # anything else breaks the contract
        _violation(f"from_bytes raised {type(exc).__name__}: {exc}", data, exc)
    check_sketch(s, data)
    return s


def decode_datasketches(data, kind=None):
    """KLLSketch.from_datasketches(data, kind=kind) held to its contract."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = KLLSketch.from_datasketches(data, seed=0, kind=kind)
    except SerializationError as exc:
        if not str(exc).startswith("cannot decode a DataSketches KLL sketch: "):
            _violation(f"SerializationError without a reason: {exc!r}", data, exc)
        return None
    except Exception as exc:
        _violation(f"from_datasketches(kind={kind!r}) raised {type(exc).__name__}: {exc}", data, exc)
    check_sketch(s, data)
    return s


def check_sketch(s, data=b""):
    """A decoded sketch is valid and fully usable."""
    try:
        s._check_invariants()
    except AssertionError as exc:
        _violation(f"decoded sketch violates its invariants: {exc}", data, exc)
    try:
        _check_usable(s)
    except ContractViolation:
        raise
    except Exception as exc:
        _violation(f"a decoded sketch failed in use: {type(exc).__name__}: {exc}", data, exc)


def _check_usable(s):
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in the checks' own diffs
        _check_usable_(s)


def _check_usable_(s):
    n, lo, hi = s.n, s.min, s.max
    blob = s.to_bytes()
    again = KLLSketch.from_bytes(blob)
    if again.to_bytes() != blob:
        raise ContractViolation("decode(encode(sketch)) encodes to other bytes")
    items, weights = s.sorted_view()
    if int(weights.sum(dtype=np.uint64)) != n and n < 2**64:
        raise ContractViolation(f"sorted_view weights add up to {int(weights.sum())}, n is {n}")
    finite = [v for v in (lo, hi) if math.isfinite(v)]
    q = np.sort(np.r_[items[:: max(1, items.size // 16)], finite, -np.inf, np.inf, 0.0, -0.0, 1.0])
    ps = np.array([0.0, 1e-9, 0.1, 0.5, 0.9, 1 - 1e-9, 1.0])
    for est in ESTIMATORS:
        r = s.rank(q, estimator=est)
        rx = s.rank(q, inclusive=False, estimator=est)
        qs = s.quantile(ps, estimator=est)
        if n == 0:
            if not (np.isnan(r).all() and np.isnan(qs).all()):
                raise ContractViolation(f"an empty sketch answered {r}, {qs}")
            continue
        if not (np.all((r >= 0) & (r <= 1)) and np.all((rx >= 0) & (rx <= 1))):
            raise ContractViolation(f"{est}: ranks outside [0, 1]: {r}, {rx}")
        if np.any(r[1:] < r[:-1] - 1e-12) or np.any(rx > r + 1e-12):
            raise ContractViolation(f"{est}: ranks not monotone at {q}: {r}, {rx}")
        if not (np.all(qs >= lo) and np.all(qs <= hi)) or qs[0] != lo or qs[-1] != hi:
            raise ContractViolation(f"{est}: quantiles {qs} outside [min, max] = [{lo}, {hi}]")
        if np.any(qs[1:] < qs[:-1]):
            raise ContractViolation(f"{est}: quantiles not monotone: {qs}")
    if n:
        lo_b, hi_b = s.rank_bounds(q)
        if not np.all((0 <= lo_b) & (lo_b <= hi_b) & (hi_b <= 1)):
            raise ContractViolation("rank_bounds out of order")
    # merges with itself and with a fresh sketch keep n exact (or refuse an overflow cleanly)
    fresh = KLLSketch(64, seed=99)
    fresh.update(np.linspace(-2.0, 2.0, 500))
    for a, b in ((s.copy(), s), (fresh.copy(), s), (s.copy(), fresh)):
        na, nb = a.n, b.n
        try:
            a.merge(b)
        except OverflowError:
            if a.n != na:
                raise ContractViolation("a refused merge changed n") from None
        else:
            if a.n != na + nb:
                raise ContractViolation(f"merge: n {a.n}, want {na + nb}")
        a._check_invariants()
    # updates: scalars (staged), a batch, weighted items
    c = s.copy()
    before = c.n
    xs = np.r_[np.linspace(-3.0, 3.0, 150), [np.inf, -np.inf, -0.0, 5e-324]]
    try:
        for x in xs[:50].tolist():
            c.update(x)
        c.update(xs[50:])
        c.update([0.25, 0.75], weights=[3, 2**20])
    except OverflowError:
        pass  # n near 2**64: refused cleanly, checked below
    else:
        if c.n != before + xs.size + 3 + 2**20:
            raise ContractViolation(f"updates: n {c.n}, want {before + xs.size + 3 + 2**20}")
    c._check_invariants()
    c.quantile(0.5)
    KLLSketch.from_bytes(c.to_bytes())._check_invariants()
    if s.n != n:
        raise ContractViolation("using copies changed the decoded sketch")


def run_mutations(decode, seeds, fmt, iterations, seed):
    """A seeded mutation loop; returns (executions, accepted)."""
    rnd = random.Random(seed)
    accepted = 0
    for _ in range(iterations):
        data = mutate(rnd.choice(seeds), rnd, seeds, fmt)
        if decode(data) is not None:
            accepted += 1
    return iterations, accepted
