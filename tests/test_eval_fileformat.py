"""The aggregator file: round trips, and every kind of damage detected."""

import json
import math
import struct
import zlib

import numpy as np
import pytest

import qsketch
from qsketch import SerializationError
from qsketch.eval import ScoreAggregator, register_sketch_type, sketch_types
from qsketch.eval import fileformat as ff


def _agg():
    rng = np.random.default_rng(1)
    agg = ScoreAggregator(by=("model", "task"), seed=7, grades={"C": 1, "I": 0, "P": 0.5, "N": None, "X": 0.25},
                          quantiles=(0.25, 0.5), thresholds=(0.5, 0.8))
    recs = []
    for i in range(3000):
        recs.append({"model": f"m{i % 3}", "task": i % 2, "scores": {
            "acc": "C" if rng.random() < 0.6 else "I", "rm": float(rng.normal()),
            "judge": {"a": float(rng.random()), "b": None if i % 7 == 0 else 1}}})
    recs.append({"model": "m0", "task": None, "scores": {"nanny": float("nan"), "ppl": [1.5, 10]}})
    agg.add_records(recs + [{"model": "bad"}])
    return agg


def test_round_trip(tmp_path):
    agg = _agg()
    path = tmp_path / "agg.qsk"
    agg.save(path)
    back = ScoreAggregator.load(path)
    assert back == agg
    assert back.by == agg.by and back.score == agg.score and back.grades == agg.grades
    assert back.quantiles == agg.quantiles and back.thresholds == agg.thresholds
    assert back.seed == 7 and back.k == 200 and back.skipped_records == 1
    for key in agg.groups():
        a, b = agg.group(key), back.group(key)
        for field in ("count", "nan_count", "unscored", "non_numeric", "sum", "mean", "m2"):
            assert getattr(a, field) == getattr(b, field)
        assert a.sketch.to_bytes() == b.sketch.to_bytes()
    assert back.summary().to_json() == agg.summary().to_json()
    assert back.to_bytes() == agg.to_bytes()
    # Loaded aggregators keep working: new groups get sketches of the same k.
    back.add({"model": "new", "task": 1, "scores": {"acc": 1}})
    assert back.group(("new", 1, "acc")).sketch.k == 200


def test_empty_aggregator_round_trip():
    agg = ScoreAggregator(by=["model"], score="x")
    back = ScoreAggregator.from_bytes(agg.to_bytes())
    assert len(back) == 0 and back.by == ("model",) and back.score == (("x", "x"),) and back.seed is None


def test_layout_of_the_prefix():
    data = _agg().to_bytes()
    magic, version, flags, body = struct.unpack_from("<8sHHQ", data)
    assert (magic, version, flags) == (b"QSAGG\r\n\x1a", 1, 0)
    assert len(data) == 20 + body + 4
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    (hlen,) = struct.unpack_from("<I", data, 20)
    header = json.loads(data[24:24 + hlen])
    assert header["sketch_type"] == "KLLSketch" and header["by"] == ["model", "task"]


def test_every_truncation_is_detected():
    data = _agg().to_bytes()
    for n in list(range(0, 64)) + list(range(64, len(data), 97)) + [len(data) - 1]:
        with pytest.raises(SerializationError):
            ScoreAggregator.from_bytes(data[:n])


def test_byte_flips_are_detected():
    data = _agg().to_bytes()
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.integers(0, len(data), size=300).tolist()) | {0, 8, 10, 12, 20, len(data) - 1})
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(SerializationError):
            ScoreAggregator.from_bytes(bytes(bad))


def test_trailing_bytes_and_foreign_data():
    data = _agg().to_bytes()
    with pytest.raises(SerializationError, match="trailing"):
        ScoreAggregator.from_bytes(data + b"\0")
    with pytest.raises(SerializationError, match="single sketch"):
        ScoreAggregator.from_bytes(qsketch.KLLSketch(seed=1).to_bytes())
    with pytest.raises(SerializationError, match="bad magic"):
        ScoreAggregator.from_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(SerializationError, match="text mode"):
        ScoreAggregator.from_bytes(data.replace(b"\r\n", b"\n", 1))
    with pytest.raises(TypeError):
        ScoreAggregator.from_bytes("text")


def _reseal(prefix_and_body):
    """Recompute the length and CRC, so that only the payload is wrong."""
    body = prefix_and_body[20:]
    head = struct.pack("<8sHHQ", ff.MAGIC, 1, 0, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def _build(header, groups):
    hb = json.dumps(header).encode()
    parts = [struct.pack("<I", len(hb)), hb]
    for key, moments, blob in groups:
        kb = json.dumps(key).encode()
        parts += [struct.pack("<I", len(kb)), kb, struct.pack("<QQQQddddd", *moments),
                  struct.pack("<Q", len(blob)), blob]
    return _reseal(bytes(20) + b"".join(parts))


HEADER = {"by": ["model"], "score": None, "grades": {"C": 1.0}, "k": 200, "seed": 1, "quantiles": [0.5],
          "thresholds": [0.5], "sketch_type": "KLLSketch", "skipped_records": 0, "groups": 1}


def _sketch(values):
    s = qsketch.KLLSketch(seed=1)
    s.update(values)
    return s.to_bytes()


def test_a_valid_handmade_file_loads():
    blob = _sketch([1.0, 2.0])
    agg = ScoreAggregator.from_bytes(_build(HEADER, [(["m", "acc"], (2, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), blob)]))
    assert agg.group(("m", "acc")).mean == 1.5


@pytest.mark.parametrize("header, groups, message", [
    ({**HEADER, "by": "model"}, None, "wrong type"),
    ({k: v for k, v in HEADER.items() if k != "k"}, None, "lacks 'k'"),
    ({**HEADER, "sketch_type": "TDigest"}, None, "unknown sketch type"),
    ({**HEADER, "groups": 2}, None, "truncated"),
    ({**HEADER, "groups": 0}, None, "unexpected bytes"),
    ({**HEADER, "seed": -1}, None, "seed"),
    ({**HEADER, "by": ["metric"]}, None, "invalid configuration"),
    (HEADER, [(["m"], (2, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), None)], "malformed key"),
    (HEADER, [(["m", 3], (2, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), None)], "malformed key"),
    (HEADER, [(["m", "acc"], (3, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), None)], "holds 2 items"),
    (HEADER, [(["m", "acc"], (2, 0, 0, 0, 3.0, 1.5, 0.5, 2.0, 1.0), None)], "min/max"),
    (HEADER, [(["m", "acc"], (2, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), b"QSK junk")], "cannot decode a sketch"),
])
def test_inconsistent_payloads_are_rejected(header, groups, message):
    blob = _sketch([1.0, 2.0])
    if groups is None:
        groups = [(["m", "acc"], (2, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), blob)]
    groups = [(k, m, blob if b is None else b) for k, m, b in groups]
    with pytest.raises(SerializationError, match=message):
        ScoreAggregator.from_bytes(_build(header, groups))


def test_duplicate_keys_and_bad_json_rejected():
    blob = _sketch([1.0, 2.0])
    g = (["m", "acc"], (2, 0, 0, 0, 3.0, 1.5, 0.5, 1.0, 2.0), blob)
    with pytest.raises(SerializationError, match="duplicate key"):
        ScoreAggregator.from_bytes(_build({**HEADER, "groups": 2}, [g, g]))
    raw = _build(HEADER, [g])
    hlen = struct.unpack_from("<I", raw, 20)[0]
    broken = raw[:24] + b"[" + raw[25:24 + hlen] + raw[24 + hlen:-4]
    with pytest.raises(SerializationError, match="not valid JSON"):
        ScoreAggregator.from_bytes(_reseal(broken))


def test_newer_version_and_flags_rejected():
    data = bytearray(_agg().to_bytes())
    for offset, value, message in ((8, 2, "version 2 is not supported"), (10, 1, "unknown flags")):
        bad = bytearray(data)
        struct.pack_into("<H", bad, offset, value)
        struct.pack_into("<I", bad, len(bad) - 4, zlib.crc32(bytes(bad[:-4])))
        with pytest.raises(SerializationError, match=message):
            ScoreAggregator.from_bytes(bytes(bad))


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.qsk"
    path.write_bytes(b"garbage")
    with pytest.raises(SerializationError, match="bad.qsk"):
        ScoreAggregator.load(path)


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "a.qsk"
    agg = _agg()
    agg.save(path)
    agg.add({"model": "x", "task": 0, "scores": {"acc": 1}})
    agg.save(path)
    assert ScoreAggregator.load(path) == agg
    assert [p.name for p in tmp_path.iterdir()] == ["a.qsk"]


def test_sketch_type_registry():
    class Tagged(qsketch.KLLSketch):
        pass

    register_sketch_type(Tagged)
    assert sketch_types()["Tagged"] is Tagged
    with pytest.raises(TypeError):
        register_sketch_type(object)
    data = _agg().to_bytes()
    agg = ScoreAggregator.from_bytes(data, sketch_factory=lambda seed=None: qsketch.KLLSketch(100, seed=seed))
    agg.add({"model": "q", "task": 0, "scores": {"acc": 1}})
    assert agg.group(("q", 0, "acc")).sketch.k == 100
    assert not math.isnan(agg.group(("m0", 0, "rm")).mean)
