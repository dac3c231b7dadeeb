#!/usr/bin/env python3
"""Coverage-guided fuzzing of qsketch's decoders with atheris (libFuzzer for Python).

    pip install atheris
    python tests/fuzz/atheris_decoders.py --target=qsketch -max_total_time=600
    python tests/fuzz/atheris_decoders.py --target=datasketches -max_total_time=600 NEW_CORPUS_DIR

``--target=qsketch`` fuzzes ``KLLSketch.from_bytes`` (the C decoder, reached
through the extension), ``--target=datasketches`` fuzzes
``KLLSketch.from_datasketches`` (pure Python; its code is instrumented, so
atheris follows its branches), with the kind taken from the input's last
byte.  Every other argument goes to libFuzzer (-runs=N, -max_total_time=S,
-seed=N, corpus directories: the first one named receives new inputs).  The
seeds of tests/fuzz/fuzz_common.py and the regression corpus
tests/data/fuzz_corpus/<target>/ are always loaded.

For qsketch bytes a custom mutator recomputes the CRC-32 after libFuzzer's
mutation 7 times in 8, so the checks behind the checksum are reached.

An input that breaks the contract (fuzz_common.ContractViolation, or any
exception other than SerializationError) stops the run and is written as
crash-<sha1> (see -artifact_prefix); copy interesting ones into
tests/data/fuzz_corpus/<target>/, where pytest replays them.
"""

import os
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy  # noqa: F401,E402  (imported first: instrumenting numpy is slow and useless here)

with atheris.instrument_imports(include=["qsketch", "fuzz_common"]):
    import qsketch.datasketches_format  # noqa: F401,E402  (instrumented: coverage of the Python decoder)
    import fuzz_common as fc  # noqa: E402

KINDS = (None, "double", "float", None)


def main():
    target = "qsketch"
    args = []
    for a in sys.argv[1:]:
        if a.startswith("--target="):
            target = a.split("=", 1)[1]
        else:
            args.append(a)
    if target not in ("qsketch", "datasketches"):
        sys.exit("--target must be qsketch or datasketches")

    # seeds: written to a temporary directory libFuzzer reads (after any corpus
    # directory named on the command line, which receives the new inputs)
    seed_dir = tempfile.mkdtemp(prefix=f"qsketch-{target}-seeds-")
    seeds = fc.qsketch_seeds() if target == "qsketch" else fc.datasketches_seeds()
    for i, blob in enumerate(seeds):
        if target == "datasketches":
            blob = blob + bytes([i % 3])  # the last byte picks the kind
        with open(os.path.join(seed_dir, f"seed{i:04d}"), "wb") as f:
            f.write(blob)
    corpus_dirs = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    if not any(f.startswith("-max_len=") for f in flags):
        flags.append(f"-max_len={1 << 16}")

    if target == "qsketch":
        def test_one(data):
            fc.decode_qsketch(data)

        def mutator(data, max_size, seed):
            out = atheris.Mutate(data, max_size)
            if seed % 8:
                out = fc.fix_crc(out)
            return out

        atheris.Setup([sys.argv[0]] + flags + corpus_dirs + [seed_dir], test_one, custom_mutator=mutator)
    else:
        def test_one(data):
            if not data:
                return
            fc.decode_datasketches(data[:-1], KINDS[data[-1] % 4])

        atheris.Setup([sys.argv[0]] + flags + corpus_dirs + [seed_dir], test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
