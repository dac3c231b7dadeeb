#!/usr/bin/env python3
"""Maintain the fuzz regression corpus, tests/data/fuzz_corpus/.

    python tests/fuzz/make_corpus.py handcrafted
        (re)write the hand-made edge cases (hc-*.bin) of both formats
    python tests/fuzz/make_corpus.py import DIR --format qsketch [--max 40]
    python tests/fuzz/make_corpus.py import DIR --format datasketches --strip-last-byte
        add fuzzer findings: DIR is a fuzzer's output (csrc/tests/build/fuzz_serde
        -k -o DIR, or an atheris corpus directory, whose inputs end in a byte
        that picks the kind: --strip-last-byte).  The inputs are grouped by
        what the decoder does with them (the refusal's reason, or "accepted"
        with the sketch's shape), and the smallest of each group is kept, up to
        --max new files.

Every file of the corpus is replayed by tests/fuzz/test_fuzz_decoders.py
(each must be refused with SerializationError or decode to a valid, usable
sketch) and, for the qsketch format, by ``make -C csrc/tests fuzz`` under ASan
and UBSan.  Files are named <origin>-<what>-<sha1 prefix>.bin; never rename or
delete one without a reason (they are regression tests).
"""

import argparse
import hashlib
import math
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_common as fc  # noqa: E402
from qsketch import KLLSketch, SerializationError  # noqa: E402
from qsketch.datasketches_format import total_capacity  # noqa: E402

NAN = float("nan")


# ---- a plain encoder of qsketch format version 2 (docs/format.md) ------------------------


def encode_v2(k=200, levels=((),), n=None, nan_count=0, lo=None, hi=None, rng=1, sorted0=True,
              estimation=None, compacted=None, user_flags=0, tab_limit=0, table=(), m=8, version=2,
              sketch_type=1, reserved=None):
    """Bytes of a qsketch sketch with exactly these fields (no validity checks:
    that is the point).  Defaults make a valid sketch from the levels."""
    levels = [list(lv) for lv in levels]
    items = [x for lv in levels for x in lv]
    tvals = [v for v, _ in table]
    tcounts = [c for _, c in table]
    if n is None:
        n = sum(len(lv) << h for h, lv in enumerate(levels)) + sum(tcounts)
    every = items + tvals
    finite = [x for x in every if x == x]
    if lo is None:
        lo = min(finite) if finite else NAN
    if hi is None:
        hi = max(finite) if finite else NAN
    if compacted is None:
        compacted = len(levels) - 1 if len(levels) > 1 else 0
    if estimation is None:
        estimation = compacted > 0
    flags = (1 if sorted0 else 0) | (2 if estimation else 0)
    byte11 = compacted if reserved is None else reserved
    head = struct.pack("<3sBBBHBBBBIQQddQ", b"QSK", version, sketch_type, flags, k, m, len(levels) % 256,
                       user_flags, byte11 % 256, len(items) % 2**32, n % 2**64, nan_count, lo, hi, rng)
    body = struct.pack(f"<{len(levels)}I", *[len(lv) for lv in levels])
    body += struct.pack(f"<{len(items)}d", *items)
    if version >= 2:
        body += struct.pack("<II", tab_limit, len(table))
        body += struct.pack(f"<{len(tvals)}d", *tvals) + struct.pack(f"<{len(tcounts)}Q", *tcounts)
    payload = head + body
    return payload + struct.pack("<I", zlib.crc32(payload))


def _big_n_sketch_bytes():
    s = KLLSketch(k=8, seed=1, exact_limit=0)
    s.update(np.random.default_rng(0).random(2000))
    s.update([0.5], weights=[2**60])
    s.update([2.0, 2.5, 3.0])
    return s.to_bytes()


def handcrafted_qsketch():
    sorted_items = [0.5, 1.0, 2.0, 3.0]
    return {
        # accepted: unusual but valid structures
        "levels64-one-item-at-the-top": encode_v2(levels=[[]] * 63 + [[1.0]], compacted=0, estimation=False),
        "levels64-estimation": encode_v2(k=8, levels=[[]] * 62 + [[1.0], [3.0]], compacted=63),
        "k-max-few-items": encode_v2(k=65535, levels=[[3.0, 1.0, 2.0]], sorted0=False),
        "k-min-estimation": encode_v2(k=8, levels=[[5.0], [1.0, 2.0, 3.0], [0.5, 4.0]]),
        "infinite-items": encode_v2(levels=[[-math.inf, 0.0, math.inf], [-math.inf, math.inf]]),
        "subnormal-items": encode_v2(levels=[[5e-324, 1e-323, -5e-324]], sorted0=False),
        "max-float-items": encode_v2(levels=[[-1.7976931348623157e308, 1.7976931348623157e308], [0.0]]),
        "signed-zeros-table": encode_v2(levels=[[]], tab_limit=300, table=[(-1.0, 3), (0.0, 2**40)]),
        "table-at-its-limit": encode_v2(levels=[[]], tab_limit=3, table=[(1.0, 1), (2.0, 2), (3.0, 3)]),
        "n-is-2-to-64-minus-1": encode_v2(levels=[[]], tab_limit=8, table=[(1.0, 2**64 - 1)]),
        "nan-count-only": encode_v2(levels=[[]], nan_count=2**64 - 1, lo=NAN, hi=NAN),
        "unsorted-level0-flag-clear": encode_v2(levels=[[3.0, 1.0, 2.0], sorted_items], sorted0=False),
        "user-flags-all-set": encode_v2(levels=[[1.0, 2.0]], user_flags=255),
        "learned-nan-beyond-2-to-53": _big_n_sketch_bytes(),
        "version1-estimation": _v1(encode_v2(k=8, levels=[[5.0], [1.0, 2.0]])),
        # refused: one broken field each
        "levels65": encode_v2(levels=[[]] * 65),
        "levels0": _edit(encode_v2(levels=[[1.0]]), 9, "<B", 0),
        "weights-overflow": encode_v2(levels=[[]] * 63 + [[1.0, 2.0]], n=0, compacted=0, estimation=False),
        "k7": encode_v2(k=7, levels=[[1.0]]),
        "m4": encode_v2(m=4, levels=[[1.0]]),
        "type2": encode_v2(sketch_type=2, levels=[[1.0]]),
        "version1-reserved-byte": _edit(_v1(encode_v2(levels=[[1.0]])), 11, "<B", 1, crc=True),
        "version-newer": encode_v2(version=9, levels=[[1.0]]),
        "empty-with-min": encode_v2(levels=[[]], n=0, lo=1.0, hi=NAN),
        "nonempty-without-min": encode_v2(levels=[[1.0]], lo=NAN, hi=NAN),
        "min-above-max": encode_v2(levels=[[1.0]], lo=2.0, hi=1.0),
        "nan-item": encode_v2(levels=[[1.0, NAN]], lo=1.0, hi=1.0, sorted0=False),
        "item-below-min": encode_v2(levels=[[0.5, 1.0]], lo=1.0, hi=1.0),
        "unsorted-level1": encode_v2(levels=[[], [2.0, 1.0]]),
        "unsorted-level0-flag-set": encode_v2(levels=[[2.0, 1.0]], sorted0=True),
        "n-off-by-one": encode_v2(levels=[[1.0, 2.0]], n=3),
        "sizes-do-not-add-up": _edit(encode_v2(levels=[[1.0], [2.0]]), 56, "<I", 2, crc=True),
        "retained-2-to-32-minus-1": _edit(encode_v2(levels=[[1.0]]), 12, "<I", 2**32 - 1, crc=True),
        "estimation-flag-without-level": encode_v2(levels=[[1.0], [2.0]], estimation=True, compacted=0),
        "compaction-level-above-levels": encode_v2(levels=[[1.0], [2.0]], compacted=5),
        "table-over-its-limit": encode_v2(levels=[[]], tab_limit=1, table=[(1.0, 1), (2.0, 1)]),
        "table-not-increasing": encode_v2(levels=[[]], tab_limit=8, table=[(2.0, 1), (1.0, 1)]),
        "table-signed-zero-twice": encode_v2(levels=[[]], tab_limit=8, table=[(-0.0, 1), (0.0, 1)]),
        "table-zero-count": encode_v2(levels=[[]], tab_limit=8, table=[(1.0, 0), (2.0, 1)]),
        "table-beside-compactors": encode_v2(levels=[[1.0]], tab_limit=8, table=[(2.0, 1)]),
        "table-without-limit": encode_v2(levels=[[]], tab_limit=0, table=[(2.0, 1)]),
        "table-limit-huge": encode_v2(levels=[[]], tab_limit=2**32 - 1, table=[(2.0, 1)]),
        "table-counts-overflow": encode_v2(levels=[[]], tab_limit=8, table=[(1.0, 2**63), (2.0, 2**63)], n=0),
        "bad-crc": _edit(encode_v2(levels=[[1.0]]), 32, "<d", 0.5, crc=False),
        "trailing-byte": encode_v2(levels=[[1.0]]) + b"\0",
        "truncated-crc": encode_v2(levels=[[1.0]])[:-1],
        "header-only": encode_v2(levels=[[1.0]])[:56],
        "datasketches-bytes": bytes.fromhex("02020f04c80008000000000000000c40"),
    }


def _v1(blob):
    out = fc._to_v1(blob)
    assert out is not None
    return out


def _edit(blob, at, fmt, value, crc=True):
    b = bytearray(blob)
    struct.pack_into(fmt, b, at, value)
    return fc.fix_crc(bytes(b)) if crc else bytes(b)


def _ds_full(k=200, m=8, n=None, min_k=None, levels=((1.0, 2.0),), lo=None, hi=None, flags=0, fmt="<d",
             pre_ints=5, ser_ver=1, family=15, offsets=None, num_levels=None):
    """DataSketches compact bytes (preamble 5) with exactly these fields."""
    levels = [list(lv) for lv in levels]
    items = [x for lv in levels for x in lv]
    L = len(levels) if num_levels is None else num_levels
    cap = total_capacity(k, max(min(L, 64), 1))
    if offsets is None:
        offsets = [cap - len(items)]
        for lv in levels[:-1]:
            offsets.append(offsets[-1] + len(lv))
    if n is None:
        n = sum(len(lv) << h for h, lv in enumerate(levels))
    finite = [x for x in items if x == x]
    lo = min(finite) if lo is None and finite else (NAN if lo is None else lo)
    hi = max(finite) if hi is None and finite else (NAN if hi is None else hi)
    head = struct.pack("<BBBBHBBQHBB", pre_ints, ser_ver, family, flags, k, m, 0, n % 2**64,
                       k if min_k is None else min_k, L % 256, 0)
    head += struct.pack(f"<{len(offsets)}I", *[o % 2**32 for o in offsets])
    w = fmt[-1]
    return head + struct.pack(f"<{len(items) + 2}{w}", lo, hi, *items)


def handcrafted_datasketches():
    ok = _ds_full(levels=[[3.0, 1.0, 2.0]])
    return {
        "floats-signalling-nan-item": _ds_full(levels=[[1.0, 2.0, 3.0]], fmt="<f")[:-4] + struct.pack("<I", 0x7FA00000),
        "doubles-nan-item": _ds_full(levels=[[1.0, NAN, 3.0]], lo=1.0, hi=3.0),
        "doubles-min-above-max": _ds_full(levels=[[1.0, 2.0]], lo=3.0, hi=0.0),
        "doubles-min-nan": _ds_full(levels=[[1.0, 2.0]], lo=NAN, hi=2.0),
        "doubles-estimation-3-levels": _ds_full(k=8, levels=[[9.0], [1.0, 5.0, 7.0], [2.0, 4.0]], flags=0),
        "doubles-infinities": _ds_full(levels=[[-math.inf, 0.0, math.inf]]),
        "floats-three": _ds_full(levels=[[3.0, 1.0, 2.0]], fmt="<f"),
        "ints-lookalike-subnormal-ends": _ds_full(levels=[[5e-324, 1e-323]], lo=5e-324, hi=1e-323),
        "levels65": _ds_full(levels=[[1.0]] + [[]] * 64),
        "levels0": _ds_full(levels=[[1.0]], num_levels=0, offsets=[]),
        "offsets-decreasing": _ds_full(k=8, levels=[[1.0], [2.0, 3.0, 4.0]], offsets=[12, 11]),
        "offset-beyond-capacity": _ds_full(levels=[[1.0]], offsets=[10**6]),
        "offset-2-to-32-minus-1": _ds_full(levels=[[1.0]], offsets=[2**32 - 1]),
        "n-zero-without-empty-flag": _ds_full(levels=[[1.0, 2.0]], n=0),
        "n-off": _ds_full(levels=[[1.0, 2.0]], n=5),
        "n-2-to-64-minus-1": _ds_full(levels=[[1.0, 2.0]], n=2**64 - 1),
        "min-k-above-k": _ds_full(levels=[[1.0, 2.0]], min_k=300),
        "min-k-below-8": _ds_full(levels=[[1.0, 2.0]], min_k=7),
        "k7": _ds_full(k=7, levels=[[1.0, 2.0]]),
        "m4": _ds_full(m=4, levels=[[1.0, 2.0]]),
        "updatable-serial-version-3": _ds_full(levels=[[1.0, 2.0]], ser_ver=3),
        "updatable-legacy-flag": _ds_full(levels=[[1.0, 2.0]], flags=16),
        "unknown-flags": _ds_full(levels=[[1.0, 2.0]], flags=0x40),
        "doubles-legacy-flag-on-floats": _ds_full(levels=[[1.0, 2.0]], flags=8, fmt="<f"),
        "empty-and-single-flags": bytes.fromhex("02020f05c80008000000000000000c40"),
        "empty-with-trailing-bytes": bytes.fromhex("02010f01c8000800") + b"\0" * 8,
        "single-item-preamble-5": bytes.fromhex("05020f04c80008000000000000000c40"),
        "single-nan": bytes.fromhex("02020f04c8000800000000000000f87f"),
        "single-float-inf": bytes.fromhex("02020f04c80008000000807f"),
        "family-hll": bytes([2, 1, 7, 8]) + bytes(4),
        "family-unknown": bytes([2, 1, 99, 8]) + bytes(4),
        "qsketch-bytes": encode_v2(levels=[[1.0]]),
        "trailing-byte": ok + b"\0",
        "odd-length": ok[:-3],
        "preamble-only": ok[:20],
    }


def write_handcrafted():
    for directory, cases in ((fc.QS_CORPUS, handcrafted_qsketch()), (fc.DS_CORPUS, handcrafted_datasketches())):
        directory.mkdir(parents=True, exist_ok=True)
        for name, blob in cases.items():
            (directory / f"hc-{name}.bin").write_bytes(blob)
        print(f"{directory}: {len(cases)} hand-made cases")


# ---- importing fuzzer findings ----------------------------------------------------------------


def outcome(blob, fmt):
    """What the decoder does with blob: a short, stable label."""
    try:
        if fmt == "qsketch":
            s = KLLSketch.from_bytes(blob)
        else:
            s = KLLSketch.from_datasketches(blob, seed=0)
    except SerializationError as exc:
        reason = str(exc).split(": ", 1)[-1]
        reason = re.sub(r"\d+", "N", reason)
        return "refused-" + re.sub(r"[^a-z]+", "-", reason.lower()).strip("-")[:60]
    shape = ("estimation" if s.is_estimation_mode else "exact") + f"-levels{len(s._levels())}"
    if s.n >= 2**53:
        shape += "-bign"
    return "accepted-" + shape


def import_findings(directory, fmt, max_new, strip_last):
    target = fc.QS_CORPUS if fmt == "qsketch" else fc.DS_CORPUS
    target.mkdir(parents=True, exist_ok=True)
    known = {outcome(p.read_bytes(), fmt) for p in fc.corpus_files(target)}
    best = {}
    for p in sorted(Path(directory).iterdir()):
        if not p.is_file():
            continue
        blob = p.read_bytes()
        if strip_last and blob:
            blob = blob[:-1]
        label = outcome(blob, fmt)
        if label not in best or len(blob) < len(best[label]):
            best[label] = blob
    added = 0
    for label, blob in sorted(best.items(), key=lambda kv: (kv[0] in known, len(kv[1]))):
        if added >= max_new:
            break
        if label in known:
            continue
        name = f"fuzz-{label[:70]}-{hashlib.sha1(blob).hexdigest()[:10]}.bin"
        (target / name).write_bytes(blob)
        added += 1
    print(f"{directory}: {len(best)} distinct outcomes, {added} new files in {target}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("handcrafted")
    imp = sub.add_parser("import")
    imp.add_argument("directory")
    imp.add_argument("--format", choices=["qsketch", "datasketches"], required=True)
    imp.add_argument("--max", type=int, default=40)
    imp.add_argument("--strip-last-byte", action="store_true")
    args = ap.parse_args()
    if args.cmd == "handcrafted":
        write_handcrafted()
    else:
        import_findings(args.directory, args.format, args.max, args.strip_last_byte)


if __name__ == "__main__":
    main()
