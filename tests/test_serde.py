"""The binary format (csrc/qs_serde.c, version 1): round trips, the header
layout, corruption of every kind (truncation, bit flips, forged fields with a
valid checksum) and the golden files of tests/data (see make_golden.py)."""

import json
import math
import pathlib
import struct
import zlib

import numpy as np
import pytest

from qsketch import KLLSketch, SerializationError

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
    return (
        s.n, s.nan_count, s.k, s.num_retained, s.is_estimation_mode, s.nan_policy,
        repr(s.min), repr(s.max),
        s.quantile(ps).tobytes(), s.quantile(ps, inclusive=False).tobytes(),
        s.rank(qs).tobytes(), s.rank(qs, inclusive=False).tobytes(),
        items.tobytes(), weights.tobytes(),
    )


def parse(blob):
    """Decode the documented layout with struct (an independent reader)."""
    magic, version, typ, flags, k, m, levels, bflags, reserved, retained = struct.unpack_from(
        "<3sBBBHBBBBI", blob, 0
    )
    n, nan_count, mn, mx, rng = struct.unpack_from("<QQddQ", blob, 16)
    sizes = list(struct.unpack_from(f"<{levels}I", blob, HEADER))
    items = np.frombuffer(blob, dtype="<f8", count=retained, offset=HEADER + 4 * levels)
    (crc,) = struct.unpack_from("<I", blob, len(blob) - 4)
    return dict(
        magic=magic, version=version, type=typ, flags=flags, k=k, m=m, levels=levels,
        binding_flags=bflags, reserved=reserved, retained=retained, n=n, nan_count=nan_count,
        min=mn, max=mx, rng=rng, sizes=sizes, items=items, crc=crc,
    )


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
    out["k_max"] = s
    s = KLLSketch(seed=2**64 - 1)
    s.update(np.random.default_rng(9).normal(size=10_000))
    out["seed_max"] = s
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
    assert blob[3] == 1
    h = parse(blob)
    assert h["magic"] == b"QSK" and h["version"] == 1 and h["type"] == 1
    assert h["flags"] & 2  # estimation mode
    assert h["flags"] & ~3 == 0
    assert h["k"] == s.k and h["m"] == 8 and h["reserved"] == 0
    assert h["retained"] == s.num_retained == sum(h["sizes"])
    assert h["levels"] == len(s._levels()) and h["sizes"] == [len(a) for a in s._levels()]
    assert h["n"] == s.n and h["nan_count"] == s.nan_count
    assert h["min"] == s.min and h["max"] == s.max
    assert len(blob) == HEADER + 4 * h["levels"] + 8 * h["retained"] + 4
    assert h["crc"] == zlib.crc32(blob[:-4]) & 0xFFFFFFFF
    np.testing.assert_array_equal(h["items"], np.concatenate(s._levels()))
    # weights of the levels add up to n
    assert sum(size << lvl for lvl, size in enumerate(h["sizes"])) == s.n


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


def test_every_truncation_fails():
    blob = SKETCHES["estimation"].to_bytes()
    for cut in range(len(blob)):
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(blob[:cut])


@pytest.mark.parametrize("name", ["empty", "one", "weighted"])
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


def test_random_bit_flips_fail():
    blob = SKETCHES["estimation"].to_bytes()
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


@pytest.mark.parametrize("version", [0, 2, 3, 255])
def test_wrong_version_fails(version):
    blob = bytearray(SKETCHES["exact"].to_bytes())
    blob[3] = version
    for data in (bytes(blob), recrc(blob)):
        with pytest.raises(SerializationError, match="version"):
            KLLSketch.from_bytes(data)


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


def _forgeries():
    """(name, bytes, expected message fragment): a valid checksum over a
    field that is wrong; the decoder must reject each one by its checks."""
    est = SKETCHES["estimation"].to_bytes()
    ex = SKETCHES["exact"].to_bytes()
    emp = SKETCHES["empty"].to_bytes()
    h = parse(est)
    he = parse(ex)
    item0 = HEADER + 4 * h["levels"]
    top_items = item0 + 8 * sum(h["sizes"][:-1])  # first item of the top level
    out = [
        ("type", _edit(est, "<B", 4, 2), "type"),
        ("flags", _edit(est, "<B", 5, 4), "flags"),
        ("flags_high", _edit(est, "<B", 5, 0x80), "flags"),
        ("k_small", _edit(est, "<H", 6, 7), "k"),
        ("k_zero", _edit(est, "<H", 6, 0), "k"),
        ("m", _edit(est, "<B", 8, 4), "m"),
        ("m_zero", _edit(est, "<B", 8, 0), "m"),
        ("reserved", _edit(est, "<B", 11, 1), "reserved"),
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
    # a level-0-sorted flag over an unsorted level 0
    if he["flags"] & 1 == 0:
        out.append(("level0_sorted_flag", _edit(ex, "<B", 5, he["flags"] | 1), "sorted"))
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
    # level counts out of range, with a consistent length
    for levels in (0, 65, 255):
        b = bytearray(est[:HEADER])
        b[9] = levels
        struct.pack_into("<I", b, 12, 0)
        b += b"\x00" * (4 * levels) + b"\x00" * 4
        out.append((f"levels_{levels}", recrc(b), "level"))
    # a sketch whose one item sits at level 63 with n = 2**63, and one at 64 levels
    one = KLLSketch(seed=0)
    one.update(1.0)
    for levels, n in ((64, 2**63), (64, 2**63 + 1)):
        b = bytearray(one.to_bytes()[:HEADER])
        b[9] = levels
        struct.pack_into("<I", b, 12, 2)
        struct.pack_into("<Q", b, 16, n)
        struct.pack_into("<dd", b, 32, 1.0, 1.0)
        sizes64 = [0] * levels
        sizes64[levels - 1] = 2  # 2 items of weight 2**63: weights overflow
        b += struct.pack(f"<{levels}I", *sizes64) + struct.pack("<dd", 1.0, 1.0) + b"\x00" * 4
        out.append((f"overflow_weights_{n}", recrc(b), "overflow|add up"))
    return out


FORGERIES = _forgeries()


@pytest.mark.parametrize("name,blob,match", FORGERIES, ids=[f[0] for f in FORGERIES])
def test_forged_fields_with_valid_checksum_fail(name, blob, match):
    with pytest.raises(SerializationError, match=match or None):
        KLLSketch.from_bytes(blob)


def test_forged_but_consistent_sketch_is_usable():
    """Bytes that pass every check give a sketch that works (no crash): here
    one item of weight 2**62 at level 62 of a 63-level sketch."""
    one = KLLSketch(seed=0)
    one.update(1.0)
    levels = 63
    b = bytearray(one.to_bytes()[:HEADER])
    b[5] = 2 | 1
    b[9] = levels
    struct.pack_into("<I", b, 12, 1)
    struct.pack_into("<Q", b, 16, 2**62)
    sizes = [0] * levels
    sizes[62] = 1
    b += struct.pack(f"<{levels}I", *sizes) + struct.pack("<d", 1.0) + b"\x00" * 4
    s = KLLSketch.from_bytes(recrc(b))
    assert s.n == 2**62 and s.quantile(0.5) == 1.0 and s.rank(1.0) == 1.0
    s._check_invariants()
    s.update(np.arange(10_000.0))
    s._check_invariants()
    assert s.n == 2**62 + 10_000


# ---- golden files ---------------------------------------------------------------------

SIDECAR = json.loads((DATA / "golden_v1.json").read_text())
GOLDEN = sorted(SIDECAR["files"])


def _same(got, want):
    if want is None:
        return math.isnan(got)
    return got == want


def test_golden_files_present():
    assert GOLDEN == sorted(f"kll_f64_n{n}_v1.qsk" for n in (0, 1, 10, 1000, 100000))
    for name in GOLDEN:
        assert (DATA / name).is_file()


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_file(name):
    blob = (DATA / name).read_bytes()
    want = SIDECAR["files"][name]
    assert len(blob) == want["size"]
    assert blob[:3] == b"QSK" and blob[3] == 1
    s = KLLSketch.from_bytes(blob)
    s._check_invariants()
    assert s.to_bytes() == blob  # bit for bit
    assert s.n == want["n"] and s.k == want["k"] == SIDECAR["k"]
    assert s.nan_count == want["nan_count"]
    assert s.num_retained == want["num_retained"]
    assert s.is_estimation_mode == want["is_estimation_mode"]
    assert _same(s.min, want["min"]) and _same(s.max, want["max"])
    p = np.array(want["p"])
    for got, w in zip(s.quantile(p), want["quantiles_inclusive"]):
        assert _same(got, w)
    for got, w in zip(s.quantile(p, inclusive=False), want["quantiles_exclusive"]):
        assert _same(got, w)
    pts = np.array(want["rank_points"])
    for got, w in zip(s.rank(pts), want["ranks_inclusive"]):
        assert _same(got, w)
    for got, w in zip(s.rank(pts, inclusive=False), want["ranks_exclusive"]):
        assert _same(got, w)
    # the data behind the file: n, min and max are exact
    n = want["n"]
    data = np.random.default_rng(n).normal(size=n)
    if n:
        assert s.min == data.min() and s.max == data.max()
    if n and not s.is_estimation_mode:
        np.testing.assert_array_equal(s.sorted_view()[0], np.sort(data))
