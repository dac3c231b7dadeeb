"""The binary format (csrc/qs_serde.c, version 4; versions 1 to 3 are still read):
round trips, the header layout, corruption of every kind (truncation, bit
flips, forged fields with a valid checksum) and the golden files of tests/data
(see make_golden.py).

Version 2 differs from version 1 in two places: byte 11, reserved (0) in
version 1, holds the highest level written by a compaction (0 iff the
estimation flag is clear), and an exact-table section follows the retained
items (u32 limit, u32 size T, T float64 values strictly increasing, T uint64
counts) before the CRC32.  Version 3 adds the accuracy layer's section after
the table (u16 capacity, u16 boundaries B, B float64 boundaries, LEB128
varints: next rebalance, B + 1 open counts, B boundary counts).  Version 4
lets m, the smallest level capacity, be 2 to 8 (new sketches: 2); before, it
was always 8."""

import importlib.util
import json
import math
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest

from qsketch import KLLSketch, SerializationError

from interp_bounds import ESTIMATORS, INTERPOLATING, assert_clipped, assert_within_step_interval
from oracle import exact_quantile, exact_rank

CURRENT_VERSION = 4  # what the writer writes

DATA = pathlib.Path(__file__).resolve().parent / "data"
HEADER = 56


def estimation_sketch(n=50_000, k=64, seed=3):
    s = KLLSketch(k, seed=seed)
    s.update(np.random.default_rng(seed).normal(size=n))
    assert s.is_estimation_mode
    return s


def all_answers(s):
    ps = np.linspace(0, 1, 101)
    items, weights = s.sorted_view()
    qs = np.concatenate([items, [-np.inf, np.inf, 0.0]]) if items.size else np.array([0.0])
    if items.size > 1:
        qs = np.concatenate([qs, items[:-1] / 2 + items[1:] / 2])  # between the items
    out = [
        s.n, s.nan_count, s.k, s.num_retained, s.is_estimation_mode, s.nan_policy,
        s.estimator, s.exact_limit, repr(s.min), repr(s.max), items.tobytes(), weights.tobytes(),
    ]
    for est in (None,) + ESTIMATORS:
        out += [
            s.quantile(ps, estimator=est).tobytes(), s.quantile(ps, inclusive=False, estimator=est).tobytes(),
            s.rank(qs, estimator=est).tobytes(), s.rank(qs, inclusive=False, estimator=est).tobytes(),
        ]
    return tuple(out)


def parse(blob):
    """Decode the documented layout with struct (an independent reader):
    version 2, or version 1 (no table section, byte 11 reserved)."""
    magic, version, typ, flags, k, m, levels, bflags, byte11, retained = struct.unpack_from(
        "<3sBBBHBBBBI", blob, 0
    )
    n, nan_count, mn, mx, rng = struct.unpack_from("<QQddQ", blob, 16)
    sizes = list(struct.unpack_from(f"<{levels}I", blob, HEADER))
    items_at = HEADER + 4 * levels
    items = np.frombuffer(blob, dtype="<f8", count=retained, offset=items_at)
    end = items_at + 8 * retained
    out = dict(
        magic=magic, version=version, type=typ, flags=flags, k=k, m=m, levels=levels,
        binding_flags=bflags, byte11=byte11, retained=retained, n=n, nan_count=nan_count,
        min=mn, max=mx, rng=rng, sizes=sizes, items_at=items_at, items=items,
    )
    if version >= 2:
        limit, size = struct.unpack_from("<II", blob, end)
        out.update(
            compacted=byte11, table_at=end, table_limit=limit, table_size=size,
            table_values=np.frombuffer(blob, dtype="<f8", count=size, offset=end + 8),
            table_counts=np.frombuffer(blob, dtype="<u8", count=size, offset=end + 8 + 8 * size),
        )
        end += 8 + 16 * size
    else:
        out.update(reserved=byte11)
    out.update(buckets_at=end, bucket_cap=0, bucket_m=0, bucket_bytes=0)
    if version >= 3:
        cap, m = struct.unpack_from("<HH", blob, end)
        pos = end + 4
        counts = []
        if cap:
            bounds = np.frombuffer(blob, dtype="<f8", count=m, offset=pos)
            pos += 8 * m
            for _ in range(2 * m + 2):
                value, shift = 0, 0
                while True:
                    byte = blob[pos]
                    pos += 1
                    value |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                counts.append(value)
            out.update(bucket_bounds=bounds, bucket_next=counts[0], bucket_open=counts[1:m + 2],
                       bucket_atoms=counts[m + 2:])
        out.update(bucket_cap=cap, bucket_m=m, bucket_bytes=pos - end)
        end = pos
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    out.update(crc=crc, length=end + 4)
    return out


def recrc(blob):
    """Fix up the checksum after a deliberate edit, so field checks are reached."""
    body = bytes(blob[:-4])
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def sketches():
    out = {"empty": KLLSketch(seed=1)}
    s = KLLSketch(seed=2)
    s.update(7.5)
    out["one"] = s
    s = KLLSketch(seed=3)
    s.update(np.random.default_rng(3).normal(size=150))
    out["exact"] = s
    out["estimation"] = estimation_sketch()
    s = KLLSketch(100, seed=4)
    s.update(np.random.default_rng(4).normal(size=300), weights=np.random.default_rng(5).integers(1, 10**9, size=300))
    out["weighted"] = s
    s = KLLSketch(seed=5, nan_policy="raise")
    s.update([1.0, 2.0, np.inf, -np.inf, -0.0])
    out["nan_raise"] = s
    s = KLLSketch(seed=6)
    s.update([np.nan, 1.0, np.nan])
    out["nans"] = s
    s = KLLSketch(8, seed=7)
    for v in np.random.default_rng(7).normal(size=5000).tolist():
        s.update(v)
    out["k8_items"] = s
    s = KLLSketch(65535, seed=8)
    s.update(np.arange(1000.0))
    out["k_max"] = s  # the table (limit 98303)
    s = KLLSketch(65535, seed=8, exact_limit=0)
    s.update(np.arange(1000.0))
    out["k_max_compactors"] = s
    s = KLLSketch(seed=2**64 - 1)
    s.update(np.random.default_rng(9).normal(size=10_000))
    out["seed_max"] = s
    # the exact table: discrete scores with many items, weighted items, a full table
    s = KLLSketch(seed=10)
    s.update(np.random.default_rng(10).integers(1, 11, size=20_000).astype(float))
    out["table"] = s
    s = KLLSketch(64, seed=11, estimator="step")
    s.update([1.0, 2.0, 4.0, -np.inf], weights=[5, 3, 2, 2**40])
    out["table_weighted"] = s
    s = KLLSketch(64, seed=12, estimator="linear", nan_policy="raise")
    s.update(np.repeat(np.arange(256.0), 3))
    assert s.exact_limit == 256 and s.num_retained == 256
    out["table_full"] = s
    # the compactors with the table disabled: exact, and estimation mode on discrete data
    s = KLLSketch(seed=13, exact_limit=0)
    s.update(np.random.default_rng(13).normal(size=150))
    out["compactors_exact"] = s
    s = KLLSketch(64, seed=14, exact_limit=0, estimator="step")
    s.update(np.random.default_rng(14).integers(1, 6, size=30_000).astype(float))
    out["compactors_discrete"] = s
    # weighted items above the highest compacted level
    s = KLLSketch(seed=15, exact_limit=0)
    s.update(np.random.default_rng(15).normal(size=10_000))
    s.update([0.25, 3.0], weights=[2**20 + 2**21, 2**30])
    out["weighted_above_compaction"] = s
    # a table moved into the compactors
    s = KLLSketch(seed=16, exact_limit=20)
    s.update(np.repeat(np.arange(25.0), 7))
    assert s.exact_limit == 0
    out["table_converted"] = s
    return out


SKETCHES = sketches()


# ---- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("name", SKETCHES)
def test_round_trip(name):
    s = SKETCHES[name]
    blob = s.to_bytes()
    assert isinstance(blob, bytes)
    assert s.to_bytes() == blob  # serializing twice gives the same bytes
    t = KLLSketch.from_bytes(blob)
    assert t.to_bytes() == blob
    assert all_answers(t) == all_answers(s)
    t._check_invariants()
    if name == "nan_raise":
        assert t.nan_policy == "raise"
        with pytest.raises(ValueError):
            t.update(np.nan)
        assert math.copysign(1.0, t.min) == -1.0 and t.min == -np.inf


@pytest.mark.parametrize("name", SKETCHES)
def test_decoded_sketch_continues_like_the_original(name):
    """The PRNG state and the layout survive: the same later calls give the
    same bytes on the original, a copy and a decoded sketch."""
    s = SKETCHES[name].copy()
    t = KLLSketch.from_bytes(s.to_bytes())
    c = s.copy()
    for z in (s, t, c):
        r = np.random.default_rng(99)
        z.update(r.normal(size=30_000))
        for v in r.normal(size=700).tolist():
            z.update(v)
        z.update(r.normal(size=40), weights=r.integers(1, 1000, size=40))
        o = KLLSketch(50, seed=1)
        o.update(r.normal(size=3000))
        z.merge(o)
    assert s.to_bytes() == t.to_bytes() == c.to_bytes()


def test_header_layout():
    s = SKETCHES["estimation"]
    blob = s.to_bytes()
    assert blob[:3] == b"QSK"
    assert blob[3] == CURRENT_VERSION
    h = parse(blob)
    assert h["magic"] == b"QSK" and h["version"] == CURRENT_VERSION and h["type"] == 1
    assert h["flags"] & 2  # estimation mode
    assert h["flags"] & ~3 == 0
    assert h["k"] == s.k and h["m"] == (2 if s.k < 64 else 8)  # a new sketch's smallest level capacity
    assert h["retained"] == s.num_retained == sum(h["sizes"])
    assert h["levels"] == len(s._levels()) and h["sizes"] == [len(a) for a in s._levels()]
    # byte 11: the highest level a compaction wrote into; an unweighted stream
    # only reaches a level by compaction, so it is the top non-empty level
    top = max(h for h, size in enumerate(h["sizes"]) if size)
    assert 1 <= h["compacted"] == top < h["levels"]
    assert h["n"] == s.n and h["nan_count"] == s.nan_count
    assert h["min"] == s.min and h["max"] == s.max
    # no exact table: limit and size 0
    assert h["table_limit"] == 0 == s.exact_limit and h["table_size"] == 0
    assert len(blob) == h["length"] == HEADER + 4 * h["levels"] + 8 * h["retained"] + 8 + h["bucket_bytes"] + 4
    # the accuracy layer: its counts add up to n
    assert h["bucket_cap"] == s.buckets == 2 * s.k and 0 < h["bucket_m"] <= 2 * s.k
    assert sum(h["bucket_open"]) + sum(h["bucket_atoms"]) == s.n
    assert list(h["bucket_bounds"]) == sorted(set(h["bucket_bounds"]))
    assert h["crc"] == zlib.crc32(blob[:-4]) & 0xFFFFFFFF
    np.testing.assert_array_equal(h["items"], np.concatenate(s._levels()))
    # weights of the levels add up to n
    assert sum(size << lvl for lvl, size in enumerate(h["sizes"])) == s.n


def test_header_layout_of_the_exact_table():
    s = SKETCHES["table"]
    blob = s.to_bytes()
    h = parse(blob)
    assert h["version"] == CURRENT_VERSION and h["flags"] & 2 == 0 and h["compacted"] == 0
    # the compactors are empty: one level, no items
    assert h["levels"] == 1 and h["sizes"] == [0] and h["retained"] == 0
    assert h["table_limit"] == s.exact_limit == 300
    assert h["table_size"] == s.num_retained == 10
    data = np.random.default_rng(10).integers(1, 11, size=20_000).astype(float)
    values, counts = np.unique(data, return_counts=True)
    np.testing.assert_array_equal(h["table_values"], values)  # strictly increasing
    np.testing.assert_array_equal(h["table_counts"], counts)
    assert int(h["table_counts"].sum()) == h["n"] == s.n
    assert h["min"] == 1.0 and h["max"] == 10.0
    assert len(blob) == h["length"] == HEADER + 4 + 8 + 16 * 10 + h["bucket_bytes"] + 4
    assert h["crc"] == zlib.crc32(blob[:-4]) & 0xFFFFFFFF
    # weighted items in the table: their counts, whatever their size
    w = parse(SKETCHES["table_weighted"].to_bytes())
    np.testing.assert_array_equal(w["table_values"], [-np.inf, 1.0, 2.0, 4.0])
    np.testing.assert_array_equal(w["table_counts"], [2**40, 5, 3, 2])
    assert w["table_limit"] == 256 and w["retained"] == 0


def test_header_layout_of_the_exact_compactors():
    """exact_limit=0: the compactors hold the items, nothing compacted."""
    s = SKETCHES["compactors_exact"]
    h = parse(s.to_bytes())
    assert h["flags"] & 2 == 0 and h["compacted"] == 0
    assert h["table_limit"] == 0 and h["table_size"] == 0
    assert h["retained"] == 150 == s.num_retained and h["sizes"] == [150]


def test_header_compaction_level_is_not_the_top_level():
    """Weighted items sit above the highest compaction: byte 11 names the
    compaction, not the top level."""
    s = SKETCHES["weighted_above_compaction"]
    h = parse(s.to_bytes())
    assert h["flags"] & 2
    assert h["levels"] == 31 and h["sizes"][30] == 1 and h["sizes"][21] == 1 and h["sizes"][20] == 1
    assert 1 <= h["compacted"] < 20
    assert all(size == 0 for size in h["sizes"][h["compacted"] + 1:20])


def test_header_of_empty_and_flags():
    e = parse(SKETCHES["empty"].to_bytes())
    assert e["n"] == 0 and e["retained"] == 0 and e["levels"] == 1
    assert math.isnan(e["min"]) and math.isnan(e["max"])
    assert e["flags"] & 2 == 0
    assert parse(SKETCHES["nan_raise"].to_bytes())["binding_flags"] & 1
    assert parse(SKETCHES["exact"].to_bytes())["binding_flags"] & 1 == 0
    assert parse(SKETCHES["nans"].to_bytes())["nan_count"] == 2
    assert parse(KLLSketch(seed=123456789).to_bytes())["rng"] == 123456789


# ---- corruption -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["estimation", "table_full"])
def test_every_truncation_fails(name):
    blob = SKETCHES[name].to_bytes()
    for cut in range(len(blob)):
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(blob[:cut])


@pytest.mark.parametrize("name", ["empty", "one", "weighted", "table", "table_weighted", "compactors_exact"])
def test_every_truncation_fails_small(name):
    blob = SKETCHES[name].to_bytes()
    for cut in range(len(blob)):
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(blob[:cut])


def test_truncation_messages():
    blob = SKETCHES["estimation"].to_bytes()
    with pytest.raises(SerializationError, match="short|truncated"):
        KLLSketch.from_bytes(blob[:2])
    with pytest.raises(SerializationError, match="truncated"):
        KLLSketch.from_bytes(blob[:40])
    with pytest.raises(SerializationError, match="truncated"):
        KLLSketch.from_bytes(blob[:-1])


@pytest.mark.parametrize("name", ["estimation", "table"])
def test_random_bit_flips_fail(name):
    blob = SKETCHES[name].to_bytes()
    rng = np.random.default_rng(2024)
    positions = rng.integers(0, len(blob) * 8, size=2000)
    # every bit of the header, the level sizes and the checksum too
    extra = list(range((HEADER + 16) * 8)) + list(range((len(blob) - 4) * 8, len(blob) * 8))
    for bit in list(positions) + extra:
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(bytes(bad))


def test_appended_bytes_fail():
    blob = SKETCHES["exact"].to_bytes()
    for tail in (b"\x00", b"QSK", blob):
        with pytest.raises(SerializationError, match="trailing"):
            KLLSketch.from_bytes(blob + tail)


@pytest.mark.parametrize("version", [0, 5, 255])
def test_wrong_version_fails(version):
    blob = bytearray(SKETCHES["exact"].to_bytes())
    blob[3] = version
    for data in (bytes(blob), recrc(blob)):
        with pytest.raises(SerializationError, match="version"):
            KLLSketch.from_bytes(data)


@pytest.mark.parametrize("name", ["exact", "estimation", "table", "empty"])
def test_version_1_header_on_version_2_bytes_fails(name):
    """Version 1 is a valid version, but it has no table section: a version 2
    body under a version 1 header fails on its length, checksum or not."""
    blob = SKETCHES[name].to_bytes()
    assert blob[3] == CURRENT_VERSION
    bad = bytearray(blob)
    bad[3] = 1
    bad[8] = 8  # version 1's m, so that the length is what fails
    for data in (bytes(bad), recrc(bad)):
        with pytest.raises(SerializationError, match="trailing|truncated|corrupt"):
            KLLSketch.from_bytes(data)


def test_versions_1_and_2_are_valid():
    v2 = SKETCHES["exact"].to_bytes()
    assert KLLSketch.from_bytes(v2).to_bytes() == v2
    v1 = (DATA / "kll_f64_n10_v1.qsk").read_bytes()
    assert v1[3] == 1
    assert KLLSketch.from_bytes(v1).n == 10


def test_bad_magic_and_checksum_messages():
    blob = SKETCHES["exact"].to_bytes()
    with pytest.raises(SerializationError, match="magic"):
        KLLSketch.from_bytes(b"QSX" + blob[3:])
    bad = bytearray(blob)
    bad[-1] ^= 0xFF
    with pytest.raises(SerializationError, match="checksum"):
        KLLSketch.from_bytes(bytes(bad))
    bad = bytearray(blob)
    bad[HEADER + 20] ^= 0x10
    with pytest.raises(SerializationError, match="checksum"):
        KLLSketch.from_bytes(bytes(bad))


def _edit(blob, fmt, offset, value):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, value)
    return recrc(b)


def _table_sketch():
    """A small table: values [1, 2, 4] with counts [5, 3, 2]."""
    s = KLLSketch(seed=0)
    s.update([1.0] * 5 + [2.0] * 3 + [4.0] * 2)
    return s.to_bytes()


def _table_forgeries():
    """Forged exact-table sections (version 2), each with a valid checksum."""
    tab = _table_sketch()
    t = parse(tab)
    assert t["table_size"] == 3 and t["table_limit"] == 300 and t["retained"] == 0
    at = t["table_at"]
    values, counts = at + 8, at + 8 + 24
    est = SKETCHES["estimation"].to_bytes()
    h = parse(est)
    return [
        ("table_values_unsorted", _edit(_edit(tab, "<d", values, 2.0), "<d", values + 8, 1.0), "increasing"),
        ("table_values_equal", _edit(tab, "<d", values + 8, 1.0), "increasing"),
        ("table_value_nan", _edit(tab, "<d", values + 8, float("nan")), "NaN"),
        ("table_value_above_max", _edit(tab, "<d", values + 16, 100.0), "outside"),
        ("table_value_below_min", _edit(tab, "<d", values, -100.0), "outside"),
        ("table_count_zero", _edit(_edit(tab, "<Q", counts + 8, 0), "<Q", 16, 7), "zero"),
        ("table_counts_sum", _edit(tab, "<Q", counts + 8, 4), "add up"),
        ("table_counts_overflow", _edit(tab, "<Q", counts, 2**64 - 1), "overflow|add up"),
        ("table_over_limit", _edit(tab, "<I", at, 2), "limit"),
        ("table_limit_too_large", _edit(tab, "<I", at, 2**20 + 1), "limit"),
        ("table_limit_huge", _edit(tab, "<I", at, 2**32 - 1), "limit"),
        ("table_without_limit", _edit(tab, "<I", at, 0), "limit"),
        # (a wrong table size moves the bucket section: its fields may fail first)
        ("table_size_past_the_end", _edit(tab, "<I", at + 4, 4), "truncated|bucket"),
        ("table_size_huge", _edit(tab, "<I", at + 4, 2**32 - 1), "truncated|bucket"),
        ("table_size_short", _edit(tab, "<I", at + 4, 2), "trailing|bucket"),
        # a table limit next to items in the compactors: both cannot hold the stream
        ("table_and_compactors", _edit(est, "<I", h["table_at"], 300), "table"),
        # a table never coexists with a compaction: the table mode is exact
        ("table_with_estimation_flag",
         _edit(_edit(tab, "<B", 5, t["flags"] | 2), "<B", 11, 1), "estimation|compaction|table"),
    ]


def _small_k_bytes():
    """A sketch of k = 8 in estimation mode: its m is 2."""
    s = KLLSketch(8, seed=5, exact_limit=0)
    s.update(np.arange(1000.0))
    blob = s.to_bytes()
    assert blob[8] == 2
    return blob


def _forgeries():
    """(name, bytes, expected message fragment): a valid checksum over a
    field that is wrong; the decoder must reject each one by its checks."""
    est = SKETCHES["estimation"].to_bytes()
    ex = SKETCHES["exact"].to_bytes()
    emp = SKETCHES["empty"].to_bytes()
    cex = SKETCHES["compactors_exact"].to_bytes()
    v1 = (DATA / "kll_f64_n100000_v1.qsk").read_bytes()
    h = parse(est)
    he = parse(cex)
    item0 = HEADER + 4 * h["levels"]
    top_items = item0 + 8 * sum(h["sizes"][:-1])  # first item of the top level
    out = [
        ("type", _edit(est, "<B", 4, 2), "type"),
        ("flags", _edit(est, "<B", 5, 4), "flags"),
        ("flags_high", _edit(est, "<B", 5, 0x80), "flags"),
        ("k_small", _edit(est, "<H", 6, 7), "k"),
        ("k_zero", _edit(est, "<H", 6, 0), "k"),
        ("m_one", _edit(est, "<B", 8, 1), "m"),
        ("m_zero", _edit(est, "<B", 8, 0), "m"),
        ("m_nine", _edit(est, "<B", 8, 9), "m"),
        # before version 4 m is 8: a small sketch's m = 2 under a version 3 header
        ("m_2_in_version_3", _edit(_small_k_bytes(), "<B", 3, 3), "m"),
        # byte 11 (version 2): the compaction level, consistent with the estimation flag
        ("compaction_level_zero_in_estimation", _edit(est, "<B", 11, 0), "compaction level"),
        ("compaction_level_above_the_levels", _edit(est, "<B", 11, h["levels"] + 1), "compaction level"),
        ("compaction_level_255", _edit(est, "<B", 11, 255), "compaction level"),
        ("compaction_level_without_flag", _edit(cex, "<B", 11, 1), "compaction level"),
        ("estimation_flag_without_level", _edit(cex, "<B", 5, he["flags"] | 2), "compaction level"),
        ("table_compaction_level_without_flag", _edit(_table_sketch(), "<B", 11, 1), "compaction level"),
        # byte 11 of version 1 is reserved: still 0
        ("v1_reserved", _edit(v1, "<B", 11, 1), "reserved"),
        ("v1_reserved_high", _edit(v1, "<B", 11, 0x80), "reserved"),
        ("n_plus", _edit(est, "<Q", 16, h["n"] + 1), "n"),
        ("n_minus", _edit(est, "<Q", 16, h["n"] - 1), "n"),
        ("n_zero", _edit(est, "<Q", 16, 0), ""),
        ("n_huge", _edit(est, "<Q", 16, 2**64 - 1), "n"),
        ("min_nan", _edit(est, "<d", 32, float("nan")), ""),
        ("max_nan", _edit(est, "<d", 40, float("nan")), ""),
        ("min_above_items", _edit(est, "<d", 32, 100.0), "min|max"),
        ("max_below_items", _edit(est, "<d", 40, -100.0), "min|max"),
        ("min_gt_max", _edit(_edit(ex, "<d", 32, 5.0), "<d", 40, 4.0), "min|max"),
        ("empty_with_min", _edit(emp, "<d", 32, 0.0), "empty|min"),
        ("empty_with_max", _edit(emp, "<d", 40, 0.0), "empty|max"),
        ("empty_with_n", _edit(emp, "<Q", 16, 1), ""),
        ("item_nan", _edit(est, "<d", item0, float("nan")), "NaN"),
        ("item_nan_top", _edit(est, "<d", top_items, float("nan")), "NaN"),
        ("item_out_of_range", _edit(est, "<d", top_items, 1e300), "outside|sorted"),
        ("unsorted_top", _edit(est, "<d", top_items, h["items"][-1]), "sorted"),
    ]
    # a level-0-sorted flag over an unsorted level 0 (the compactors' exact mode)
    assert he["flags"] & 1 == 0
    out.append(("level0_sorted_flag", _edit(cex, "<B", 5, he["flags"] | 1), "sorted"))
    # move one item between levels: sizes still add up, the weights do not
    sizes = list(h["sizes"])
    i = next(j for j, v in enumerate(sizes) if v > 0 and j + 1 < len(sizes))
    moved = list(sizes)
    moved[i] -= 1
    moved[i + 1] += 1
    b = bytearray(est)
    struct.pack_into(f"<{len(moved)}I", b, HEADER, *moved)
    out.append(("sizes_moved", recrc(b), ""))
    # level sizes that do not add up to the retained count
    b = bytearray(est)
    struct.pack_into("<I", b, HEADER, sizes[0] + 1)
    out.append(("sizes_sum", recrc(b), "add up"))
    # level counts out of range, with a consistent length (and an empty table section)
    for levels in (0, 65, 255):
        b = bytearray(est[:HEADER])
        b[3] = 2  # a version 2 body: no bucket section
        b[8] = 8  # version 2's m
        b[9] = levels
        b[11] = 0
        struct.pack_into("<I", b, 12, 0)
        b += b"\x00" * (4 * levels) + struct.pack("<II", 0, 0) + b"\x00" * 4
        out.append((f"levels_{levels}", recrc(b), "level"))
    # a sketch whose one item sits at level 63 with n = 2**63, and one at 64 levels
    one = KLLSketch(seed=0, exact_limit=0)
    one.update(1.0)
    for levels, n in ((64, 2**63), (64, 2**63 + 1)):
        b = bytearray(one.to_bytes()[:HEADER])
        b[3] = 2  # a version 2 body: no bucket section
        b[8] = 8  # version 2's m
        b[9] = levels
        struct.pack_into("<I", b, 12, 2)
        struct.pack_into("<Q", b, 16, n)
        struct.pack_into("<dd", b, 32, 1.0, 1.0)
        sizes64 = [0] * levels
        sizes64[levels - 1] = 2  # 2 items of weight 2**63: weights overflow
        b += struct.pack(f"<{levels}I", *sizes64) + struct.pack("<dd", 1.0, 1.0)
        b += struct.pack("<II", 0, 0) + b"\x00" * 4  # no table
        out.append((f"overflow_weights_{n}", recrc(b), "overflow|add up"))
    return out + _table_forgeries()


FORGERIES = _forgeries()


@pytest.mark.parametrize("name,blob,match", FORGERIES, ids=[f[0] for f in FORGERIES])
def test_forged_fields_with_valid_checksum_fail(name, blob, match):
    with pytest.raises(SerializationError, match=match or None):
        KLLSketch.from_bytes(blob)


@pytest.mark.parametrize("compacted", [0, 1, 62], ids=["exact", "compacted_1", "compacted_62"])
def test_forged_but_consistent_sketch_is_usable(compacted):
    """Bytes that pass every check give a sketch that works (no crash): here
    one item of weight 2**62 at level 62 of a 63-level sketch, without a
    compaction, after a compaction of level 0 only (the item is above it: an
    exact point mass), or with level 62 compacted.  Its one value holds all
    the weight, so every estimator must answer it."""
    one = KLLSketch(seed=0, exact_limit=0)
    one.update(1.0)
    levels = 63
    b = bytearray(one.to_bytes()[:HEADER])
    assert b[3] == CURRENT_VERSION
    b[5] = (2 if compacted else 0) | 1
    b[9] = levels
    b[11] = compacted
    struct.pack_into("<I", b, 12, 1)
    struct.pack_into("<Q", b, 16, 2**62)
    sizes = [0] * levels
    sizes[62] = 1
    b += struct.pack(f"<{levels}I", *sizes) + struct.pack("<d", 1.0) + struct.pack("<II", 0, 0)
    b += struct.pack("<HH", 0, 0) + b"\x00" * 4  # no accuracy layer, then the checksum
    blob = recrc(b)
    s = KLLSketch.from_bytes(blob)
    assert s.to_bytes() == blob
    assert s.is_estimation_mode == bool(compacted) and s.exact_limit == 0
    assert s.n == 2**62
    for est in ESTIMATORS:
        assert s.quantile(0.5, estimator=est) == 1.0, est
        assert s.rank(1.0, estimator=est) == 1.0, est
        assert s.rank(1.0, inclusive=False, estimator=est) == 0.0, est
    s._check_invariants()
    s.update(np.arange(10_000.0))
    s._check_invariants()
    assert s.n == 2**62 + 10_000
    qs = np.array([0.5, 1.0, 1.5, 9999.0])
    assert s.rank(1.0, estimator="step") == pytest.approx(1.0, abs=1e-12)
    assert s.rank(0.5, estimator="step") == pytest.approx(0.0, abs=1e-12)
    for est in INTERPOLATING:
        assert_within_step_interval(s, qs, est)
        if compacted != 62:
            # the item is above every compaction (the 10_000 items compacted
            # low levels only): an exact point mass of 2**62 at 1.0
            assert s.rank(1.0, estimator=est) == pytest.approx(1.0, abs=1e-12), est
            assert s.rank(0.5, estimator=est) == pytest.approx(0.0, abs=1e-12), est


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("name", ["table_over_limit", "table_limit_too_large", "table_values_unsorted", "type"])
def test_rejected_bytes_do_not_leak(name):
    """Rejecting bytes frees whatever the decoder allocated: 50_000 rejections
    of one forgery must not grow the resident memory by megabytes."""
    blob = dict((f[0], f[1]) for f in FORGERIES)[name]
    for _ in range(2000):  # warm up the allocator
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(blob)
    before = _rss_bytes()
    for _ in range(50_000):
        try:
            KLLSketch.from_bytes(blob)
        except SerializationError:
            pass
    grown = _rss_bytes() - before
    assert grown < 8 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB"


# ---- golden files ---------------------------------------------------------------------

SIDECAR = json.loads((DATA / "golden_v1.json").read_text())
GOLDEN = sorted(SIDECAR["files"])
# the golden sets of version 2 and later (make_golden.py writes one per version)
SIDECARS = {v: json.loads((DATA / f"golden_v{v}.json").read_text()) for v in range(2, CURRENT_VERSION + 1)
            if (DATA / f"golden_v{v}.json").is_file()}
SIDECAR_V2 = SIDECARS[2]
GOLDEN_V2 = sorted(SIDECAR_V2["files"])
GOLDEN_LATER = [(v, name) for v in sorted(SIDECARS) for name in sorted(SIDECARS[v]["files"])]


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MAKE_GOLDEN = _make_golden()


def _same(got, want):
    if want is None:
        return math.isnan(got)
    return got == want


def _all_same(got, want):
    got = list(got)
    assert len(got) == len(want)
    return all(_same(g, w) for g, w in zip(got, want))


def test_golden_files_present():
    assert GOLDEN == sorted(f"kll_f64_n{n}_v1.qsk" for n in (0, 1, 10, 1000, 100000))
    assert SIDECAR["format_version"] == 1
    assert SIDECAR_V2["format_version"] == 2 and tuple(SIDECAR_V2["estimators"]) == ESTIMATORS
    # every version from 2 on has its set, up to (and from version 3 on,
    # including) the one the writer writes now: a new version must get its files
    assert sorted(SIDECARS) == list(range(2, CURRENT_VERSION + 1))
    for version, sidecar in SIDECARS.items():
        assert sidecar["format_version"] == version
        assert tuple(sidecar["estimators"]) == MAKE_GOLDEN.ESTIMATORS
        assert sorted(sidecar["files"]) == sorted(MAKE_GOLDEN.files_for(version))
        assert {f"kll_f64_n{n}_v{version}.qsk" for n in (0, 1, 10, 1000, 100000)} <= set(sidecar["files"])
        for name in sidecar["files"]:
            assert (DATA / name).is_file()
        # each set covers the exact table, the compactors, and discrete data in both
        entries = sidecar["files"].values()
        assert any(e["exact_limit"] > 0 and e["n"] >= 100_000 for e in entries)
        assert any(e["is_estimation_mode"] and e["recipe"]["data"] == "scores" for e in entries)
        assert any(e["estimator"] != "learned" and e["nan_policy"] == "raise" for e in entries)
        if version >= 3:  # and the accuracy layer: the default, a small one, none
            assert {e["buckets"] for e in entries} >= {0, 16, 400}
            assert any(e["boundaries"] == e["buckets"] == 400 for e in entries)  # a full layer
            assert any(e["boundaries"] > 0 and e["estimator"] == "spline" for e in entries)
    for name in GOLDEN:
        assert (DATA / name).is_file()


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_file(name):
    """The version 1 files still decode, to the answers recorded when they were
    written (by the step estimator, the only one then)."""
    blob = (DATA / name).read_bytes()
    want = SIDECAR["files"][name]
    assert len(blob) == want["size"]
    assert blob[:3] == b"QSK" and blob[3] == 1 and blob[11] == 0
    s = KLLSketch.from_bytes(blob)
    s._check_invariants()
    assert s.n == want["n"] and s.k == want["k"] == SIDECAR["k"]
    assert s.nan_count == want["nan_count"]
    assert s.num_retained == want["num_retained"]
    assert s.is_estimation_mode == want["is_estimation_mode"]
    assert s.exact_limit == 0  # version 1 had no table
    assert s.estimator == "learned" and s.nan_policy == "ignore"  # binding flags 0: the defaults
    assert _same(s.min, want["min"]) and _same(s.max, want["max"])
    p = np.array(want["p"])
    pts = np.array(want["rank_points"])
    assert _all_same(s.quantile(p, estimator="step"), want["quantiles_inclusive"])
    assert _all_same(s.quantile(p, inclusive=False, estimator="step"), want["quantiles_exclusive"])
    assert _all_same(s.rank(pts, estimator="step"), want["ranks_inclusive"])
    assert _all_same(s.rank(pts, inclusive=False, estimator="step"), want["ranks_exclusive"])
    if not s.is_estimation_mode:  # exact: every estimator gives the recorded answers
        for est in (None,) + INTERPOLATING:
            assert _all_same(s.quantile(p, estimator=est), want["quantiles_inclusive"])
            assert _all_same(s.rank(pts, inclusive=False, estimator=est), want["ranks_exclusive"])
    elif s.n:
        for est in INTERPOLATING:  # version 1 did not record the level: every level counts
            assert_within_step_interval(s, np.concatenate([pts, s.sorted_view()[0]]), est)
    # the data behind the file: n, min and max are exact
    n = want["n"]
    data = np.random.default_rng(n).normal(size=n)
    if n:
        assert s.min == data.min() and s.max == data.max()
    if n and not s.is_estimation_mode:
        np.testing.assert_array_equal(s.sorted_view()[0], np.sort(data))


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_v1_file_reencodes_as_the_current_version(name):
    """A decoded version 1 file re-encodes with the current version byte (and
    its m, 8), byte 11 set (version 1 did not record the compaction
    level, so every level that holds items must count as compacted), an
    empty table section and an empty bucket section (no accuracy layer);
    everything else is the same bytes, and the result round-trips."""
    blob = (DATA / name).read_bytes()
    s = KLLSketch.from_bytes(blob)
    out = s.to_bytes()
    assert out != blob
    h1, h2 = parse(blob), parse(out)
    assert h2["version"] == CURRENT_VERSION and h1["version"] == 1 and h2["m"] == h1["m"] == 8
    if s.is_estimation_mode:
        top = max(h for h, size in enumerate(h1["sizes"]) if size)
        assert top <= h2["compacted"] <= h1["levels"]
    else:
        assert h2["compacted"] == 0
    assert h2["table_limit"] == 0 and h2["table_size"] == 0
    assert h2["bucket_cap"] == 0 == s.buckets and h2["bucket_bytes"] == 4
    assert len(out) == len(blob) + 12
    assert out[:3] == blob[:3] and out[4:11] == blob[4:11]
    assert out[12:h2["table_at"]] == blob[12:len(blob) - 4]  # counts, extremes, state, levels, items
    t = KLLSketch.from_bytes(out)
    assert t.to_bytes() == out
    assert all_answers(t) == all_answers(s)


def reencoded(blob, version):
    """What the writer writes for a sketch decoded from golden ``blob`` of
    ``version`` >= 2: the same bytes with the current version byte, after an
    empty bucket section (no accuracy layer) for version 2."""
    out = bytearray(blob[:-4]) + (struct.pack("<HH", 0, 0) if version == 2 else b"")
    out[3] = CURRENT_VERSION
    return recrc(out + b"\x00" * 4)


@pytest.mark.parametrize("version, name", GOLDEN_LATER)
def test_golden_file_of_version_2_or_later(version, name):
    """The files of every version from 2 on decode to their sidecar, with
    every estimator of that version, and re-encode bit for bit as the current
    version (reencoded)."""
    blob = (DATA / name).read_bytes()
    want = SIDECARS[version]["files"][name]
    recipe = want["recipe"]
    assert recipe == MAKE_GOLDEN.files_for(version)[name]
    assert len(blob) == want["size"]
    assert blob[:3] == b"QSK" and blob[3] == version
    assert blob[11] == want["compacted_level"] and (blob[11] != 0) == want["is_estimation_mode"]
    s = KLLSketch.from_bytes(blob)
    s._check_invariants()
    assert s.to_bytes() == reencoded(blob, version)  # bit for bit
    if version == 2:
        assert s.buckets == 0
    else:
        assert blob[8] == want["m"]
        assert s.buckets == want["buckets"]
        layer = s._buckets()
        assert (0 if layer is None else layer[0].size) == want["boundaries"]
        if layer is not None and s.n:  # the layer's answers keep to its clip
            assert_clipped(s, np.concatenate([np.array(want["rank_points"]), layer[0]]))
    assert s.n == want["n"] == recipe["n"] and s.k == want["k"] == recipe["k"]
    assert s.nan_count == want["nan_count"]
    assert s.num_retained == want["num_retained"]
    assert s.is_estimation_mode == want["is_estimation_mode"]
    assert s.exact_limit == want["exact_limit"]
    assert s.estimator == want["estimator"] == recipe["estimator"]
    assert s.nan_policy == want["nan_policy"] == recipe["nan_policy"]
    assert _same(s.min, want["min"]) and _same(s.max, want["max"])
    p = np.array(want["p"])
    pts = np.array(want["rank_points"])
    recorded = MAKE_GOLDEN.ESTIMATORS
    for est in ((None,) if s.estimator in recorded else ()) + recorded:
        rec = want["answers"][est or s.estimator]
        assert _all_same(s.quantile(p, estimator=est), rec["quantiles_inclusive"]), est
        assert _all_same(s.quantile(p, inclusive=False, estimator=est), rec["quantiles_exclusive"]), est
        assert _all_same(s.rank(pts, estimator=est), rec["ranks_inclusive"]), est
        assert _all_same(s.rank(pts, inclusive=False, estimator=est), rec["ranks_exclusive"]), est
    # the data behind the file
    data = MAKE_GOLDEN.data_for(recipe)
    if data.size:
        assert s.min == data.min() and s.max == data.max()
    if s.exact_limit:  # the table: the distinct values with their counts, exactly
        values, counts = np.unique(data, return_counts=True)
        items, weights = s.sorted_view()
        np.testing.assert_array_equal(items, values)
        np.testing.assert_array_equal(weights, counts)
    if not s.is_estimation_mode:  # exact: the answers recorded are the exact ones
        for est in recorded:
            rec = want["answers"][est]
            assert _all_same(exact_rank(data, pts, "inclusive"), rec["ranks_inclusive"])
            assert _all_same(exact_rank(data, pts, "exclusive"), rec["ranks_exclusive"])
            assert _all_same(exact_quantile(data, p, True), rec["quantiles_inclusive"])
            assert _all_same(exact_quantile(data, p, False), rec["quantiles_exclusive"])
    else:
        assert s.exact_limit == 0
        for est in INTERPOLATING:
            assert_within_step_interval(s, np.concatenate([pts, data[:200]]), est)
