"""The aggregator file: one versioned, checksummed file per ScoreAggregator.

Layout (all integers little-endian; see docs/eval.md):

    offset  size  field
    0       8     magic b"QSAGG\\r\\n\\x1a" (the CR LF and ^Z catch text-mode
                  mangling)
    8       2     format version (1)
    10      2     flags (0; reserved)
    12      8     body length B
    20      B     body
    20+B    4     CRC-32 (zlib) of every byte before it

    body:   u32 header length H, H bytes of UTF-8 JSON (the configuration:
            by, score, grades, k, seed, quantiles, thresholds, sketch type,
            skipped records, number of groups G), then G group records:
            u32 key length K, K bytes of JSON (the key: a list of scalars),
            the moments (u64 count, nan_count, unscored, non_numeric; f64
            sum, mean, m2, min, max: 72 bytes), u64 sketch length S and S
            bytes of the sketch's own to_bytes() format.

Reading checks the magic, version, flags, every length, the CRC, the JSON,
the key shapes, that no key repeats, and that each sketch decodes and agrees
with its moments; any failure raises :class:`qsketch.SerializationError`
saying what is wrong.
"""

import json
import math
import struct
import zlib

from qsketch._core import KLLSketch
from qsketch.errors import SerializationError

__all__ = ["MAGIC", "VERSION", "register_sketch_type", "sketch_types", "dump_aggregator", "load_aggregator"]

MAGIC = b"QSAGG\r\n\x1a"
VERSION = 1
_PREFIX = struct.Struct("<8sHHQ")  # magic, version, flags, body length
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MOMENTS = struct.Struct("<QQQQddddd")
_CRC = struct.Struct("<I")
_MAX_JSON = 64 * 1024 * 1024

_SKETCH_TYPES = {"KLLSketch": KLLSketch}


def register_sketch_type(cls, name=None):
    """Make a sketch class loadable from aggregator files under ``name``
    (default: the class name).  The class needs ``from_bytes``.

    Examples
    --------
    >>> import qsketch
    >>> from qsketch.eval import register_sketch_type, sketch_types
    >>> register_sketch_type(qsketch.KLLSketch)
    >>> "KLLSketch" in sketch_types()
    True
    """
    if not hasattr(cls, "from_bytes"):
        raise TypeError(f"{cls!r} has no from_bytes(); it cannot be read back from a file")
    _SKETCH_TYPES[name or cls.__name__] = cls


def sketch_types():
    """The registered sketch type names and classes (a copy).

    Examples
    --------
    >>> import qsketch
    >>> from qsketch.eval import sketch_types
    >>> types = sketch_types(); types["KLLSketch"] is qsketch.KLLSketch
    True
    >>> types.clear(); "KLLSketch" in sketch_types()  # a copy: the registry is unchanged
    True
    """
    return dict(_SKETCH_TYPES)


def _type_name(agg):
    for g in agg._groups.values():
        return type(g.sketch).__name__
    return type(agg.sketch_factory(seed=0)).__name__


def dump_aggregator(agg):
    """Encode a ScoreAggregator (use ``ScoreAggregator.to_bytes``)."""
    import qsketch

    type_name = _type_name(agg)
    for g in agg._groups.values():
        if type(g.sketch).__name__ != type_name:
            raise TypeError("all the groups of an aggregator must use one sketch type to be saved")
    keys = agg.groups()
    header = {
        "by": list(agg.by),
        "score": None if agg.score is None else [list(s) for s in agg.score],
        "grades": agg.grades,
        "k": agg.k,
        "seed": agg.seed,
        "quantiles": list(agg.quantiles),
        "thresholds": list(agg.thresholds),
        "sketch_type": type_name,
        "skipped_records": agg.skipped_records,
        "groups": len(keys),
        "writer": f"qsketch {qsketch.__version__}",
    }
    hb = json.dumps(header, allow_nan=False, sort_keys=True).encode("utf-8")
    parts = [_U32.pack(len(hb)), hb]
    for key in keys:
        g = agg._groups[key]
        kb = json.dumps(list(key), allow_nan=False).encode("utf-8")
        sb = g.sketch.to_bytes()
        parts += [_U32.pack(len(kb)), kb,
                  _MOMENTS.pack(g.count, g.nan_count, g.unscored, g.non_numeric,
                                g.sum, g.mean, g.m2, g.min, g.max),
                  _U64.pack(len(sb)), sb]
    body = b"".join(parts)
    head = _PREFIX.pack(MAGIC, VERSION, 0, len(body)) + body
    return head + _CRC.pack(zlib.crc32(head) & 0xFFFFFFFF)


class _Reader:
    def __init__(self, data, start, end):
        self.data, self.pos, self.end = data, start, end

    def take(self, n, what):
        if n > self.end - self.pos:
            raise SerializationError(f"truncated {what}: needs {n} bytes, {self.end - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, st, what):
        return st.unpack(self.take(st.size, what))

    def json(self, what):
        (n,) = self.unpack(_U32, f"{what} length")
        if n > _MAX_JSON:
            raise SerializationError(f"{what} length {n} is implausible")
        raw = self.take(n, what)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerializationError(f"{what} is not valid JSON: {exc}") from None


def _expect(cond, message):
    if not cond:
        raise SerializationError(message)


def _is_scalar(v):
    return v is None or isinstance(v, (str, int, bool)) or (isinstance(v, float) and math.isfinite(v))


def load_aggregator(data, sketch_factory=None):
    """Decode aggregator bytes (use ``ScoreAggregator.from_bytes`` / ``load``)."""
    from qsketch.eval.aggregator import GroupStats, ScoreAggregator

    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes; got {type(data).__name__}")
    data = bytes(data)
    size = len(data)
    minimum = _PREFIX.size + _U32.size + _CRC.size
    if size >= 3 and data[:3] == b"QSK" and data[:len(MAGIC)] != MAGIC:
        raise SerializationError("this is a single sketch (KLLSketch.to_bytes), not an aggregator file")
    if size < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data[:len(MAGIC)]) and size < len(MAGIC):
            raise SerializationError(f"truncated: {size} bytes, an aggregator file has at least {minimum}")
        if data[:5] == MAGIC[:5]:
            raise SerializationError("bad magic bytes: the file was altered in text mode "
                                     "(line endings converted?)")
        raise SerializationError("not a qsketch aggregator file (bad magic bytes)")
    if size < minimum:
        raise SerializationError(f"truncated: {size} bytes, an aggregator file has at least {minimum}")
    _, version, flags, body_len = _PREFIX.unpack_from(data, 0)
    if version == 0 or version > VERSION:
        raise SerializationError(f"format version {version} is not supported (this qsketch reads "
                                 f"version {VERSION}{'; upgrade qsketch' if version > VERSION else ''})")
    _expect(flags == 0, f"unknown flags 0x{flags:04x}")
    expected = _PREFIX.size + body_len + _CRC.size
    if expected != size:
        if size < expected:
            raise SerializationError(f"truncated: the header announces {expected} bytes, the file has {size}")
        raise SerializationError(f"{size - expected} unexpected trailing bytes after the checksum")
    (crc,) = _CRC.unpack_from(data, size - _CRC.size)
    actual = zlib.crc32(data[:size - _CRC.size]) & 0xFFFFFFFF
    _expect(crc == actual, f"checksum mismatch (stored 0x{crc:08x}, computed 0x{actual:08x}): the file is corrupt")

    r = _Reader(data, _PREFIX.size, size - _CRC.size)
    header = r.json("header")
    _expect(isinstance(header, dict), "header is not a JSON object")
    for name, kind in (("by", list), ("grades", dict), ("k", int), ("quantiles", list),
                       ("thresholds", list), ("sketch_type", str), ("skipped_records", int), ("groups", int)):
        _expect(name in header, f"header lacks {name!r}")
        _expect(isinstance(header[name], kind) and not isinstance(header[name], bool),
                f"header field {name!r} has the wrong type")
    by = header["by"]
    _expect(all(isinstance(b, str) and b for b in by), "header 'by' must list field names")
    score = header.get("score")
    _expect(score is None or (isinstance(score, list) and all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in score)),
        "header 'score' is malformed")
    seed = header.get("seed")
    _expect(seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**64),
            "header 'seed' is malformed")
    _expect(header["groups"] >= 0 and header["skipped_records"] >= 0, "negative counts in the header")
    type_name = header["sketch_type"]
    if sketch_factory is None:
        cls = _SKETCH_TYPES.get(type_name)
        if cls is None:
            raise SerializationError(f"unknown sketch type {type_name!r} (register its class with "
                                     f"qsketch.eval.register_sketch_type, or pass sketch_factory=)")
        decode = cls.from_bytes
        k = header["k"]

        def sketch_factory(seed=None, _cls=cls, _k=k):
            return _cls(_k, seed=seed)
    else:
        decode = type(sketch_factory(seed=0)).from_bytes
    try:
        agg = ScoreAggregator(by, None if score is None else [tuple(s) for s in score], k=header["k"],
                              sketch_factory=sketch_factory, seed=seed, grades=header["grades"],
                              quantiles=header["quantiles"], thresholds=header["thresholds"])
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"invalid configuration in the header: {exc}") from None
    agg.skipped_records = header["skipped_records"]

    width = len(by) + 1
    for i in range(header["groups"]):
        what = f"group {i + 1} of {header['groups']}"
        key = r.json(f"{what} key")
        _expect(isinstance(key, list) and len(key) == width and all(_is_scalar(v) for v in key)
                and isinstance(key[-1], str), f"{what}: malformed key {key!r}")
        key = tuple(key)
        _expect(key not in agg._groups, f"{what}: duplicate key {list(key)}")
        count, nan_count, unscored, non_numeric, total, mean, m2, lo, hi = r.unpack(_MOMENTS, f"{what} moments")
        (slen,) = r.unpack(_U64, f"{what} sketch length")
        blob = r.take(slen, f"{what} sketch")
        try:
            sketch = decode(blob)
        except ValueError as exc:
            raise SerializationError(f"{what} {list(key)}: {exc}") from None
        _expect(int(sketch.n) == count, f"{what} {list(key)}: the sketch holds {sketch.n} items, "
                                        f"the moments count {count}")
        if count:
            _expect(all(math.isfinite(v) or math.isinf(v) for v in (lo, hi)) and lo <= hi,
                    f"{what} {list(key)}: min/max are inconsistent")
            _expect(m2 >= 0 or math.isnan(m2), f"{what} {list(key)}: negative sum of squares")
        g = GroupStats(sketch)
        g.count, g.nan_count, g.unscored, g.non_numeric = count, nan_count, unscored, non_numeric
        g.sum, g.mean, g.m2, g.min, g.max = total, mean, m2, lo, hi
        agg._groups[key] = g
    _expect(r.pos == r.end, f"{r.end - r.pos} unexpected bytes after the last group")
    return agg
