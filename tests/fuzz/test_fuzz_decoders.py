"""Bounded, seeded fuzzing of the two decoders, in the default pytest run.

* ``KLLSketch.from_bytes`` (qsketch's own format, decoded in C by
  csrc/qs_serde.c) and ``KLLSketch.from_datasketches`` (pure Python,
  src/qsketch/datasketches_format.py) get mutated valid sketches: every input
  must either raise SerializationError with a reason, or decode to a sketch
  that passes its invariants, answers queries, takes updates and merges with
  an exact n and round-trips (tests/fuzz/fuzz_common.py has the contract).
* The regression corpus (tests/data/fuzz_corpus/) is replayed file by file.
* Every strict prefix of a valid qsketch encoding is refused.

The loops are deterministic (fixed seeds, fixed counts), so a failure
reproduces on the next run; the message shows the offending bytes.  Longer,
coverage-guided runs: ``python tests/fuzz/atheris_decoders.py`` (atheris) and
``make -C csrc/tests fuzz FUZZ_SECONDS=600`` (the C decoder under ASan and
UBSan).  See docs/reliability.md.
"""

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_common as fc
from qsketch import KLLSketch, SerializationError

# Executions per seeded loop; QSKETCH_FUZZ_SCALE multiplies them for longer runs.
SCALE = float(os.environ.get("QSKETCH_FUZZ_SCALE", "1"))
QS_ITER = int(10000 * SCALE)
DS_ITER = int(6000 * SCALE)


@pytest.fixture(scope="module")
def qs_seeds():
    return fc.qsketch_seeds()


@pytest.fixture(scope="module")
def ds_seeds():
    return fc.datasketches_seeds()


@pytest.fixture(scope="module")
def qs_valid_seeds():
    return fc.qsketch_seeds(corpus=False)


def test_seeds_are_valid(qs_valid_seeds):
    """The fuzzers start from inputs that decode (a fuzzer that only sees
    refused inputs never reaches the checks behind the header)."""
    assert len(qs_valid_seeds) >= 30
    for blob in qs_valid_seeds:
        assert fc.decode_qsketch(blob) is not None, blob[:64].hex()
    ds = fc.datasketches_seeds(corpus=False)
    assert len(ds) >= 40
    refused = sum(fc.decode_datasketches(blob) is None for blob in ds)
    assert refused <= 1  # only the ints sketch of the real library, when installed


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_from_bytes(qs_seeds, seed):
    execs, accepted = fc.run_mutations(fc.decode_qsketch, qs_seeds, "qsketch", QS_ITER // 2, seed)
    # with the CRC recomputed, a fair share of the mutants is accepted: the
    # structural checks, not only the checksum, are exercised
    assert 0.02 * execs < accepted < execs


@pytest.mark.parametrize("kind", [None, "double", "float"])
def test_fuzz_from_datasketches(ds_seeds, kind):
    def decode(data):
        return fc.decode_datasketches(data, kind)

    execs, accepted = fc.run_mutations(decode, ds_seeds, "datasketches", DS_ITER // 3, 11)
    assert accepted < execs
    if kind is None:
        assert accepted > 0.02 * execs


def test_fuzz_from_bytes_raw_crc(qs_valid_seeds):
    """Bit flips without a recomputed checksum: the CRC (or an earlier length
    check) refuses every one."""
    import random

    rnd = random.Random(5)
    for _ in range(int(600 * SCALE)):
        src = rnd.choice(qs_valid_seeds)
        buf = bytearray(src)
        at = rnd.randrange(len(buf) - 4)  # anything but the CRC itself
        buf[at] ^= 1 << rnd.randrange(8)
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(bytes(buf))


# hypothesis drives the choices here, so a failure shrinks to few mutations
_mutation = st.tuples(st.integers(0, 13), st.integers(0, 2**32 - 1))


@settings(max_examples=int(150 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 10_000), fmt=st.sampled_from(["qsketch", "datasketches"]),
       ops=st.lists(_mutation, min_size=1, max_size=6), crc=st.booleans())
def test_fuzz_hypothesis(qs_seeds, ds_seeds, which, fmt, ops, crc):
    import random

    seeds = qs_seeds if fmt == "qsketch" else ds_seeds
    buf = bytearray(seeds[which % len(seeds)])
    for op, r in ops:
        rnd = random.Random(r)
        rnd.randrange = _forced(rnd.randrange, op)
        buf = fc.mutate_once(buf, rnd, seeds, fmt)
    data = bytes(buf)
    if fmt == "qsketch":
        fc.decode_qsketch(fc.fix_crc(data) if crc else data)
    else:
        fc.decode_datasketches(data, None)
        fc.decode_datasketches(data, "float" if crc else "double")


def _forced(randrange, op):
    """randrange whose first call (the choice of mutation) returns ``op``."""
    state = {"first": True}

    def rr(*args):
        if state["first"]:
            state["first"] = False
            return op
        return randrange(*args)

    return rr


def test_every_prefix_is_refused(qs_valid_seeds):
    """Truncation at any byte gives SerializationError, never a sketch."""
    for blob in qs_valid_seeds[:12]:
        for cut in range(len(blob)):
            with pytest.raises(SerializationError):
                KLLSketch.from_bytes(blob[:cut])
        # and one trailing byte too many
        with pytest.raises(SerializationError):
            KLLSketch.from_bytes(blob + b"\0")


def test_every_prefix_of_datasketches_bytes(ds_seeds):
    """Any truncation: SerializationError or (when the shorter length happens
    to fit a floats sketch) a valid sketch, never another exception."""
    for blob in ds_seeds[:20]:
        for cut in range(len(blob)):
            for kind in (None, "double", "float"):
                fc.decode_datasketches(blob[:cut], kind)


# ---- the regression corpus ------------------------------------------------------------

QS_FILES = fc.corpus_files(fc.QS_CORPUS)
DS_FILES = fc.corpus_files(fc.DS_CORPUS)


def test_corpus_is_present():
    assert len(QS_FILES) >= 20 and len(DS_FILES) >= 10


@pytest.mark.parametrize("path", QS_FILES, ids=lambda p: p.name)
def test_corpus_qsketch(path):
    data = path.read_bytes()
    fc.decode_qsketch(data)
    fc.decode_qsketch(fc.fix_crc(data))


@pytest.mark.parametrize("path", DS_FILES, ids=lambda p: p.name)
def test_corpus_datasketches(path):
    data = path.read_bytes()
    for kind in (None, "double", "float"):
        fc.decode_datasketches(data, kind)


def test_crafted_layer_with_counts_below_min():
    """A fuzzer find: a layer whose first boundary equals min but whose open
    interval below it holds items (none can).  The decoder refuses it now."""
    data = (fc.QS_CORPUS / "fuzz-refused-layer-counts-below-min-51e6429458.bin").read_bytes()
    with pytest.raises(SerializationError, match="beyond min or max"):
        KLLSketch.from_bytes(data)


# ---- atheris, when installed (not in the [test] extra) -----------------------------------


def test_atheris_smoke(tmp_path):
    """A short coverage-guided run of tests/fuzz/atheris_decoders.py."""
    pytest.importorskip("atheris")
    harness = os.path.join(os.path.dirname(__file__), "atheris_decoders.py")
    for target in ("qsketch", "datasketches"):
        proc = subprocess.run(
            [sys.executable, harness, f"--target={target}", "-runs=3000", "-seed=1",
             f"-artifact_prefix={tmp_path}/"],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
