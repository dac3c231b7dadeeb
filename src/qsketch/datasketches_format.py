"""Read and write the KLL binary format of Apache DataSketches.

Apache DataSketches (Java, C++, Python) serializes its KLL doubles and floats
sketches in one compact format, shared by every language binding and by the
engines that embed the library: Spark SQL's ``kll_sketch_agg_double`` and
``kll_sketch_agg_float``, Druid, Hive, Pinot.  This module converts between
that format and :class:`qsketch.KLLSketch`, in pure Python (``struct`` and
numpy; the ``datasketches`` package is not needed).

* :func:`from_datasketches` parses DataSketches bytes, checks every field and
  length, and builds a sketch by writing qsketch's own format (docs/format.md)
  and decoding it with :meth:`KLLSketch.from_bytes`, so the decoder's checks
  of the sketch's structure apply as well (sorted levels, weights adding up to
  n, items within [min, max], no NaN).
* :func:`to_datasketches` writes the compact DataSketches form of a sketch.

The two implementations share the compaction scheme (lazy compaction, level
capacities max(8, round(k (2/3)^depth)), an item of level h weighs 2^h), so
the levels, items, n, min and max cross over unchanged, and the ranks of
DataSketches are those of qsketch's step estimator (``rank(x,
estimator="step")``) on both sides.  A qsketch sketch that counts a few
distinct values exactly (its exact low-cardinality mode) is written as
weighted levels: a value counted c times goes to level h for each set bit h
of c, which keeps every rank exact.

The DataSketches format, little-endian (offsets in bytes)::

    0  preamble ints: 2 (empty or one item) or 5 (more items)
    1  serial version: 1 (empty or compact full), 2 (one item), 3 (Java's
       updatable form, not read here)
    2  family id: 15 for KLL
    3  flags: bit 0 empty, bit 1 level zero sorted, bit 2 single item
    4  k (uint16)
    6  m (uint8), the smallest level capacity (8)
    7  unused
    -- one item: the item (float64 or float32) at offset 8, nothing else
    8  n (uint64)
   16  min_k (uint16), the smallest k merged in
   18  number of levels L (uint8)
   19  unused
   20  L level offsets (uint32) into a buffer of capacity C(k, L); the end
       of the top level, C(k, L), is implied; the first offset is the free
       space at the start of the buffer
  ...  min, max, then the C(k, L) - offset[0] retained items, level 0 first

What does not cross over: DataSketches keeps no count of NaN items (they are
dropped on update) and no random-generator state, and qsketch keeps a single k
(the smallest merged in, DataSketches' ``min_k``).  So a sketch read from
DataSketches has ``nan_count == 0`` and ``nan_policy == "ignore"``, takes
``k = min_k``, and draws its future coin flips from ``seed``.

The header does not say what the items are: family 15 also covers the ints,
longs and generic items sketches.  Doubles (8 bytes an item) and floats (4
bytes) are told apart by the length; pass ``kind=`` to insist on one.  Bytes of
an ints (longs) sketch have the layout of a floats (doubles) sketch: unless
``kind`` is given, bytes whose min and max read as subnormal numbers, as small
integers do, are refused as the likely bytes of an integer sketch.

>>> import qsketch
>>> from qsketch.datasketches_format import from_datasketches, to_datasketches
>>> s = qsketch.KLLSketch(k=200, seed=1); s.update([1.0] * 5 + [2.0] * 3 + [float("nan")])
>>> back = from_datasketches(to_datasketches(s), seed=1)  # exact mode: written as weighted levels
>>> back.n, back.nan_count, back.rank(1.0) == s.rank(1.0) == 0.625
(8, 0, True)
"""

import struct
import zlib

import numpy as np

from qsketch import _validate
from qsketch._core import MAX_K, MIN_K, KLLSketch
from qsketch.errors import SerializationError

__all__ = ["from_datasketches", "to_datasketches"]

KLL_FAMILY = 15
# DataSketches' smallest level capacity, the only one its readers accept.  A
# qsketch sketch below k = 64 (whose m is 2) is written with it too: its levels
# fit in that layout's buffer, since no capacity shrinks when m grows.
M = 8
PREAMBLE_INTS_SHORT = 2
PREAMBLE_INTS_FULL = 5
SERIAL_VERSION_EMPTY_FULL = 1
SERIAL_VERSION_SINGLE = 2
SERIAL_VERSION_UPDATABLE = 3
FLAG_EMPTY = 1
FLAG_LEVEL_ZERO_SORTED = 2
FLAG_SINGLE_ITEM = 4
FLAG_DOUBLES_LEGACY = 8  # set by DataSketches Java 3.x on doubles sketches
FLAG_UPDATABLE_LEGACY = 16  # DataSketches Java 3.x: an updatable (non-compact) image
_KNOWN_FLAGS = FLAG_EMPTY | FLAG_LEVEL_ZERO_SORTED | FLAG_SINGLE_ITEM | FLAG_DOUBLES_LEGACY
HEADER_SHORT = 8
HEADER_FULL = 20
MAX_LEVELS = 64  # qsketch's limit; 2**64 items never need more

_KINDS = {"double": (8, "<f8"), "float": (4, "<f4")}

# DataSketches family ids (org.apache.datasketches.common.Family), for messages.
_FAMILIES = {
    1: "Theta (alpha)", 2: "Theta (quick select)", 3: "Theta (compact)", 4: "Theta union",
    5: "Theta intersection", 6: "Theta A-not-B", 7: "HLL", 8: "classic quantiles",
    9: "Tuple", 10: "frequent items", 11: "reservoir", 12: "reservoir union", 13: "VarOpt",
    14: "VarOpt union", 15: "KLL", 16: "CPC", 17: "REQ", 18: "CountMin", 19: "EBPPS",
    20: "t-digest", 21: "Bloom filter",
}

# qsketch format version 1 (docs/format.md)
_QS_HEADER = struct.Struct("<3sBBBHBBBBIQQddQ")
_QS_VERSION = 1
_QS_TYPE_KLL_F64 = 1
_QS_FLAG_LEVEL0_SORTED = 1
_QS_FLAG_ESTIMATION = 2

_POW3 = [3**i for i in range(31)]


def _fail(reason):
    return SerializationError(f"cannot decode a DataSketches KLL sketch: {reason}")


# ---- capacities (the same formula on both sides) ---------------------------


def _cap_aux_aux(k, depth):
    # round(k * (2/3)**depth), in integer arithmetic, depth <= 30
    return (((2 * k) << depth) // _POW3[depth] + 1) >> 1


def _cap_aux(k, depth):
    if depth > 60:
        return 0
    if depth <= 30:
        return _cap_aux_aux(k, depth)
    half = depth // 2
    return _cap_aux_aux(_cap_aux_aux(k, half), depth - half)


def level_capacity(k, num_levels, height, m=M):
    """Nominal capacity of level ``height`` of a sketch with ``num_levels`` levels.

    ``max(m, round(k * (2/3) ** (num_levels - height - 1)))``, computed as
    DataSketches and qsketch's C core compute it.

    >>> from qsketch.datasketches_format import level_capacity
    >>> [level_capacity(200, 3, h) for h in range(3)]
    [89, 133, 200]
    """
    return max(m, _cap_aux(k, num_levels - height - 1))


def total_capacity(k, num_levels, m=M):
    """Sum of the level capacities: the size of DataSketches' item buffer.

    >>> from qsketch.datasketches_format import total_capacity
    >>> total_capacity(200, 1), total_capacity(200, 3)
    (200, 422)
    """
    return sum(level_capacity(k, num_levels, h, m) for h in range(num_levels))


# ---- DataSketches -> qsketch -------------------------------------------------


def _as_buffer(data, what):
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} takes bytes, bytearray or memoryview; got {type(data).__name__}")
    return bytes(data)


def _check_kind(kind, allow_none):
    if kind is None and allow_none:
        return None
    if kind not in _KINDS:
        allowed = "'double', 'float' or None" if allow_none else "'double' or 'float'"
        raise ValueError(f"kind must be {allowed}; got {kind!r}")
    return kind


def _item_size(kind, available, count, flags):
    """Bytes per item: from ``kind``, else from the length of the item area."""
    if kind is not None:
        size = _KINDS[kind][0]
    else:
        if count <= 0 or available % count or available // count not in (4, 8):
            raise _fail(
                f"the length does not fit a doubles or floats sketch ({available} bytes for "
                f"{count} values; truncated, trailing bytes, or another item type)"
            )
        size = available // count
    if flags & FLAG_DOUBLES_LEGACY and size != 8:
        raise _fail("the flags say doubles but the items are not 8 bytes wide")
    need = size * count
    if available < need:
        raise _fail(f"truncated: {need} bytes of items announced, {available} present")
    if available > need:
        raise _fail(f"{available - need} trailing bytes after the sketch")
    return size


def parse(data, kind=None):
    """Decode DataSketches KLL bytes into a plain description, checking every field.

    Returns a dict with ``k`` (the sketch's k), ``min_k``, ``n``,
    ``level0_sorted``, ``min``, ``max``, ``levels`` (a list of float64 arrays,
    level 0 first, each in storage order) and ``kind`` ("double" or "float").
    Raises :class:`qsketch.SerializationError` on anything malformed.

    >>> from qsketch.datasketches_format import parse
    >>> parse(bytes.fromhex("02010f01c8000800"))["n"]   # an empty doubles sketch, k=200
    0
    """
    buf = _as_buffer(data, "parse()")
    kind = _check_kind(kind, allow_none=True)
    size = len(buf)
    if size >= 3 and buf[:3] == b"QSK":
        raise _fail("these are qsketch bytes, not DataSketches bytes: use KLLSketch.from_bytes()")
    if size < HEADER_SHORT:
        raise _fail(f"truncated: {size} bytes, a DataSketches sketch has at least 8")
    pre_ints, ser_ver, family, flags, k, m = struct.unpack_from("<BBBBHB", buf, 0)
    if family != KLL_FAMILY:
        name = _FAMILIES.get(family)
        what = f"a DataSketches {name} sketch" if name else "an unknown sketch family"
        raise _fail(f"wrong family: family id {family} ({what}); only KLL (15) is supported")
    if ser_ver == SERIAL_VERSION_UPDATABLE or flags & FLAG_UPDATABLE_LEGACY:
        raise _fail(
            "the updatable (serial version 3) form is not supported; serialize the sketch "
            "compactly (Java: toByteArray(), C++/Python: serialize())"
        )
    if ser_ver not in (SERIAL_VERSION_EMPTY_FULL, SERIAL_VERSION_SINGLE):
        raise _fail(f"unknown serial version {ser_ver}")
    if flags & ~_KNOWN_FLAGS:
        raise _fail(f"unknown flags set (0x{flags:02x})")
    if m != M:
        raise _fail(f"m = {m} is not supported (qsketch's smallest level capacity is {M})")
    if not MIN_K <= k <= MAX_K:
        raise _fail(f"k = {k} is out of qsketch's range [{MIN_K}, {MAX_K}]")
    empty = bool(flags & FLAG_EMPTY)
    single = bool(flags & FLAG_SINGLE_ITEM)
    sorted0 = bool(flags & FLAG_LEVEL_ZERO_SORTED)
    if empty and single:
        raise _fail("corrupt flags: both empty and single item")
    out = {"k": k, "min_k": k, "level0_sorted": sorted0}

    if empty:
        if pre_ints != PREAMBLE_INTS_SHORT or ser_ver != SERIAL_VERSION_EMPTY_FULL:
            raise _fail("corrupt header: an empty sketch has preamble ints 2 and serial version 1")
        if size > HEADER_SHORT:
            raise _fail(f"{size - HEADER_SHORT} trailing bytes after an empty sketch")
        out.update(n=0, min=float("nan"), max=float("nan"), levels=[np.empty(0)],
                   kind=kind, level0_sorted=True)
        return out

    if single:
        if pre_ints != PREAMBLE_INTS_SHORT or ser_ver != SERIAL_VERSION_SINGLE:
            raise _fail("corrupt header: a one-item sketch has preamble ints 2 and serial version 2")
        isize = _item_size(kind, size - HEADER_SHORT, 1, flags)
        dtype = _KINDS["double" if isize == 8 else "float"][1]
        item = _widen(np.frombuffer(buf, dtype=dtype, count=1, offset=HEADER_SHORT))
        x = float(item[0])
        if kind is None:
            _check_not_integers("double" if isize == 8 else "float", x, x)
        kind = "double" if isize == 8 else "float"
        out.update(n=1, min=x, max=x, levels=[item], kind=kind, level0_sorted=True)
        return out

    if pre_ints != PREAMBLE_INTS_FULL or ser_ver != SERIAL_VERSION_EMPTY_FULL:
        raise _fail("corrupt header: a sketch of more than one item has preamble ints 5 and serial version 1")
    if size < HEADER_FULL:
        raise _fail(f"truncated: {size} bytes, shorter than the 20-byte preamble")
    n, min_k, num_levels = struct.unpack_from("<QHB", buf, 8)
    if n == 0:
        raise _fail("corrupt: n = 0 without the empty flag")
    if not 1 <= num_levels <= MAX_LEVELS:
        raise _fail(f"bad levels: {num_levels} levels (qsketch supports 1 to {MAX_LEVELS})")
    if not MIN_K <= min_k <= k:
        raise _fail(f"min_k = {min_k} is outside [{MIN_K}, k = {k}]")
    levels_end = HEADER_FULL + 4 * num_levels
    if size < levels_end:
        raise _fail(f"truncated: {size} bytes, the level offsets end at byte {levels_end}")
    capacity = total_capacity(k, num_levels)
    offsets = list(struct.unpack_from(f"<{num_levels}I", buf, HEADER_FULL)) + [capacity]
    if offsets[0] > capacity:
        raise _fail(f"bad levels: offset {offsets[0]} beyond the capacity {capacity}")
    if any(offsets[h] > offsets[h + 1] for h in range(num_levels)):
        raise _fail("bad levels: level offsets are not increasing")
    retained = capacity - offsets[0]
    isize = _item_size(kind, size - levels_end, retained + 2, flags)
    found = "double" if isize == 8 else "float"
    values = np.frombuffer(buf, dtype=_KINDS[found][1], count=retained + 2, offset=levels_end)
    values = _widen(values)
    lo, hi = float(values[0]), float(values[1])
    if lo != lo or hi != hi:
        raise _fail("corrupt: min or max is NaN")
    if lo > hi:
        raise _fail("corrupt: min > max")
    if kind is None:
        _check_not_integers(found, lo, hi)
    kind = found
    items = values[2:]
    base = offsets[0]
    levels = [items[offsets[h] - base:offsets[h + 1] - base] for h in range(num_levels)]
    out.update(n=n, min_k=min_k, min=lo, max=hi, levels=levels, kind=kind)
    return out


def _widen(values):
    """float32 or float64 items as float64, silently: a signalling NaN in
    untrusted bytes must not make numpy warn (a RuntimeWarning, an exception
    under -W error), since the NaN is refused with SerializationError anyway."""
    with np.errstate(invalid="ignore"):
        return values.astype(np.float64)


def _check_not_integers(kind, lo, hi):
    """Refuse, unless ``kind`` was given, bytes that look like an integer sketch.

    The ints and longs sketches of DataSketches share the family id and the
    layout; their items read as floats are subnormal numbers (small integers
    are subnormal bit patterns), which a real data set almost never has at
    both ends.
    """
    tiny = np.finfo(np.float64 if kind == "double" else np.float32).tiny
    if 0.0 < max(abs(lo), abs(hi)) < tiny:
        raise _fail(
            f"min and max are subnormal {kind}s: these look like the bytes of a DataSketches "
            f"{'longs' if kind == 'double' else 'ints'} sketch; pass kind='{kind}' to read them anyway"
        )


def _qsketch_bytes(k, n, lo, hi, levels, level0_sorted, estimation, seed):
    """qsketch format version 1 (docs/format.md) for the given structure."""
    sizes = [int(a.shape[0]) for a in levels]
    retained = sum(sizes)
    flags = (_QS_FLAG_LEVEL0_SORTED if level0_sorted else 0) | (_QS_FLAG_ESTIMATION if estimation else 0)
    head = _QS_HEADER.pack(b"QSK", _QS_VERSION, _QS_TYPE_KLL_F64, flags, k, M, len(levels),
                           0, 0, retained, n, 0, lo, hi, seed)
    body = struct.pack(f"<{len(sizes)}I", *sizes)
    items = np.concatenate(levels).astype("<f8").tobytes() if retained else b""
    payload = head + body + items
    return payload + struct.pack("<I", zlib.crc32(payload))


def from_datasketches(data, seed=None, *, kind=None):
    """Build a :class:`KLLSketch` from the bytes of a DataSketches KLL doubles
    or floats sketch.

    Reads what the ``serialize()`` / ``toByteArray()`` of DataSketches' KLL
    doubles and floats sketches write (Java, C++, Python), and what Spark SQL's
    ``kll_sketch_agg_double`` and ``kll_sketch_agg_float`` return.  The result
    holds the same levels and items, n, min and max, so its step-estimator
    ranks (``rank(x, estimator="step")``) are DataSketches' ranks; floats are
    widened to float64 exactly.  Its k is DataSketches' ``min_k`` (the smallest k merged in,
    which governs the error).  DataSketches keeps no NaN count and no random
    state: the sketch has ``nan_count == 0``, ``nan_policy == "ignore"``, and
    its future compactions draw from ``seed`` (None: from the OS).

    Parameters
    ----------
    data : bytes, bytearray or memoryview
    seed : int or None
        Seed of the new sketch's random generator, as in ``KLLSketch(seed=)``.
    kind : {None, "double", "float"}
        The item type.  None tells doubles from floats by the length.

    Raises
    ------
    qsketch.SerializationError
        Truncated or corrupt bytes, another sketch family, Java's updatable
        form, or a sketch qsketch cannot represent (m other than 8, k below 8,
        more than 64 levels).  The message says which.

    Examples
    --------
    >>> import qsketch
    >>> ds_bytes = bytes.fromhex(            # datasketches.kll_doubles_sketch(200),
    ...     "05010f00c80008000300000000000000"   # updated with 3.5, 1.0 and 2.0
    ...     "c8000100c5000000000000000000f03f0000000000000c40"
    ...     "0000000000000040000000000000f03f0000000000000c40")
    >>> s = qsketch.from_datasketches(ds_bytes, seed=1)
    >>> s.n, s.k, s.min, s.max, s.quantile(0.5)
    (3, 200, 1.0, 3.5, 2.0)
    >>> qsketch.to_datasketches(s) == ds_bytes
    True
    >>> qsketch.from_datasketches(b"\\x02\\x03\\x07\\x08" + bytes(4))
    Traceback (most recent call last):
      ...
    qsketch.errors.SerializationError: cannot decode a DataSketches KLL sketch: wrong family: family id 7 (a DataSketches HLL sketch); only KLL (15) is supported
    """
    desc = parse(_as_buffer(data, "from_datasketches()"), kind)
    sd = _validate.check_seed(seed)
    if desc["n"] == 0:
        return KLLSketch(desc["k"], seed=sd)  # exactly what a new sketch of that k is
    levels = desc["levels"]
    # DataSketches reports estimation mode once it has more than one level;
    # it has no weighted updates, so only compaction creates levels.
    estimation = len(levels) > 1
    raw = _qsketch_bytes(desc["min_k"], desc["n"], desc["min"], desc["max"], levels,
                         desc["level0_sorted"], estimation, sd)
    try:
        return KLLSketch.from_bytes(raw)
    except SerializationError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise _fail(f"not a valid sketch: {reason}") from None


# ---- qsketch -> DataSketches -------------------------------------------------


def _weighted_levels(values, counts):
    """Levels holding ``values`` (ascending) with integer ``counts`` exactly.

    A value of count c goes to level h for every set bit h of c (weight 2^h),
    as qsketch's weighted updates do: the ranks are unchanged, nothing random
    happens, and every level comes out sorted.
    """
    counts = np.asarray(counts, dtype=np.uint64)
    values = np.asarray(values, dtype=np.float64)
    top = int(counts.max()).bit_length() if counts.size else 1
    return [values[((counts >> np.uint64(h)) & np.uint64(1)).astype(bool)] for h in range(max(top, 1))]


def _combine_levels(a, b):
    """Level-wise union of two level lists; every level sorted."""
    out = []
    for h in range(max(len(a), len(b))):
        parts = [lv[h] for lv in (a, b) if h < len(lv)]
        out.append(np.sort(np.concatenate(parts)))
    return out


def _read_qsketch(sketch):
    """(k, n, min, max, level0_sorted, levels) of a sketch.

    From one snapshot of its bytes (format version 1, or versions 2 to 4 whose
    exact low-cardinality table of values and counts is turned into weighted
    levels).  Other versions go through the public ``sorted_view()``, which
    gives the same ranks.
    """
    raw = sketch.to_bytes()
    version = raw[3] if len(raw) > 3 else 0
    if raw[:3] != b"QSK" or version not in (1, 2, 3, 4):
        items, weights = sketch.sorted_view()
        levels = _weighted_levels(items, weights) if items.size else [items]
        return sketch.k, sketch.n, sketch.min, sketch.max, True, levels
    (_, _, _, flags, k, _, num_levels, _, _, retained, n, _, lo, hi, _) = _QS_HEADER.unpack_from(raw, 0)
    off = _QS_HEADER.size
    sizes = struct.unpack_from(f"<{num_levels}I", raw, off)
    off += 4 * num_levels
    items = np.frombuffer(raw, dtype="<f8", count=retained, offset=off)
    off += 8 * retained
    bounds = np.cumsum((0,) + sizes)
    levels = [items[bounds[h]:bounds[h + 1]] for h in range(num_levels)]
    sorted0 = bool(flags & _QS_FLAG_LEVEL0_SORTED)
    if version >= 2:
        _, tab_size = struct.unpack_from("<II", raw, off)
        off += 8
        if tab_size:
            values = np.frombuffer(raw, dtype="<f8", count=tab_size, offset=off)
            counts = np.frombuffer(raw, dtype="<u8", count=tab_size, offset=off + 8 * tab_size)
            table = _weighted_levels(values, counts)
            if retained:
                levels, sorted0 = _combine_levels(levels, table), True
            else:
                levels, sorted0 = table, True
    return k, n, lo, hi, sorted0, levels


def _buffer_k(k, num_levels, retained):
    """The smallest k' >= k whose DataSketches buffer holds ``retained`` items.

    A qsketch sketch keeps its items within the buffer of its own k, except
    one read from a DataSketches sketch whose k exceeded its min_k (qsketch
    keeps only the smaller one): then DataSketches gets a larger k, and
    ``min_k`` still carries the k that governs the error.
    """
    if total_capacity(k, num_levels) >= retained:
        return k
    lo, hi = k, MAX_K  # capacity grows with k: bisect
    if total_capacity(hi, num_levels) < retained:
        raise ValueError("to_datasketches(): the sketch holds more items than a DataSketches buffer allows")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if total_capacity(mid, num_levels) >= retained:
            hi = mid
        else:
            lo = mid
    return hi


def to_datasketches(sketch, kind="double"):
    """Serialize a :class:`KLLSketch` in the compact KLL format of Apache
    DataSketches.

    ``kind="double"`` writes a KllDoublesSketch (``datasketches.
    kll_doubles_sketch.deserialize``, Java ``KllDoublesSketch.heapify``, the
    ``*_double`` sketch functions of Spark SQL); ``kind="float"`` a
    KllFloatsSketch, rounding every item, min and max to the nearest float32
    (a monotone rounding, so levels stay sorted and items stay within
    [min, max]; values beyond float32's range become +-inf).  Levels, n, min
    and max are kept; the NaN count, the NaN policy and the random state have
    no place in the format and are dropped.  DataSketches' ``k`` and
    ``min_k`` are the sketch's k (``k`` is raised only in the rare case that
    the retained items exceed its buffer).

    Examples
    --------
    >>> import numpy as np, qsketch
    >>> s = qsketch.KLLSketch(k=200, seed=3)
    >>> s.update(np.arange(1000.0))
    >>> blob = qsketch.to_datasketches(s)
    >>> blob[:4].hex()          # preamble ints 5, serial version 1, KLL family, flags
    '05010f00'
    >>> back = qsketch.from_datasketches(blob, seed=3)
    >>> back.n, back.k, back.min, back.max
    (1000, 200, 0.0, 999.0)
    >>> q = [10.0, 500.0]   # the compactors come back whole (the accuracy layer does not)
    >>> bool(np.all(back.rank(q, estimator="step") == s.rank(q, estimator="step")))
    True
    >>> len(qsketch.to_datasketches(qsketch.KLLSketch(k=200)))   # empty: the 8-byte preamble
    8
    """
    if not isinstance(sketch, KLLSketch):
        raise TypeError(f"to_datasketches() takes a KLLSketch; got {type(sketch).__name__}")
    kind = _check_kind(kind, allow_none=False)
    isize, dtype = _KINDS[kind]
    k, n, lo, hi, sorted0, levels = _read_qsketch(sketch)
    items = np.concatenate(levels) if levels else np.empty(0)
    if n == 0:
        return struct.pack("<BBBBHBB", PREAMBLE_INTS_SHORT, SERIAL_VERSION_EMPTY_FULL, KLL_FAMILY,
                           FLAG_EMPTY, k, M, 0)
    with np.errstate(over="ignore"):
        if n == 1:
            # one item of weight 1: it sits at level 0
            head = struct.pack("<BBBBHBB", PREAMBLE_INTS_SHORT, SERIAL_VERSION_SINGLE, KLL_FAMILY,
                               FLAG_SINGLE_ITEM, k, M, 0)
            return head + items[:1].astype(dtype).tobytes()
        num_levels = len(levels)
        if num_levels > 255:
            raise ValueError("to_datasketches(): more levels than the format can hold")
        retained = len(items)
        ds_k = _buffer_k(k, num_levels, retained)
        capacity = total_capacity(ds_k, num_levels)
        offsets = [capacity - retained]
        for level in levels[:-1]:
            offsets.append(offsets[-1] + len(level))
        head = struct.pack("<BBBBHBBQHBB", PREAMBLE_INTS_FULL, SERIAL_VERSION_EMPTY_FULL, KLL_FAMILY,
                           FLAG_LEVEL_ZERO_SORTED if sorted0 else 0, ds_k, M, 0,
                           n, k, num_levels, 0)
        levels = struct.pack(f"<{num_levels}I", *offsets)
        values = np.concatenate([np.array([lo, hi]), items]).astype(dtype)
        return head + levels + values.tobytes()
