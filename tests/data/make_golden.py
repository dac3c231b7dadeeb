"""Write the golden serialized sketches of format version 1 (run by hand).

    cd /work/main && python tests/data/make_golden.py

Writes tests/data/kll_f64_n{0,1,10,1000,100000}_v1.qsk: KLLSketch(k=200,
seed=42) fed, in one batch, np.random.default_rng(n).normal(size=n); and
tests/data/golden_v1.json, a sidecar with what each file must decode to (n,
min, max, nan_count, num_retained, k, estimation mode, quantiles at
P = [0, 0.1, 0.5, 0.9, 1] and ranks at RANK_POINTS, both inclusive and
exclusive; NaN is written as null).

tests/test_serde.py checks that every file still decodes to its sidecar and
that re-encoding reproduces the file bit for bit, so readers of old bytes
keep working.  Only regenerate the files on purpose (a new format version
gets new files; the v1 files stay as they are).
"""

import json
import math
import pathlib

import numpy as np

import qsketch

HERE = pathlib.Path(__file__).resolve().parent
SIZES = (0, 1, 10, 1000, 100_000)
P = [0.0, 0.1, 0.5, 0.9, 1.0]
RANK_POINTS = [-1.0, -0.5, 0.0, 0.25, 1.0]
K = 200
SEED = 42


def file_name(n):
    return f"kll_f64_n{n}_v1.qsk"


def build(n):
    s = qsketch.KLLSketch(k=K, seed=SEED)
    s.update(np.random.default_rng(n).normal(size=n))
    return s


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x


def describe(s):
    return {
        "n": s.n,
        "k": s.k,
        "nan_count": s.nan_count,
        "num_retained": s.num_retained,
        "is_estimation_mode": s.is_estimation_mode,
        "min": _num(s.min),
        "max": _num(s.max),
        "p": P,
        "quantiles_inclusive": [_num(v) for v in s.quantile(np.array(P))],
        "quantiles_exclusive": [_num(v) for v in s.quantile(np.array(P), inclusive=False)],
        "rank_points": RANK_POINTS,
        "ranks_inclusive": [_num(v) for v in s.rank(np.array(RANK_POINTS))],
        "ranks_exclusive": [_num(v) for v in s.rank(np.array(RANK_POINTS), inclusive=False)],
    }


def main():
    sidecar = {"format_version": 1, "k": K, "seed": SEED, "files": {}}
    for n in SIZES:
        s = build(n)
        blob = s.to_bytes()
        (HERE / file_name(n)).write_bytes(blob)
        entry = describe(s)
        entry["size"] = len(blob)
        sidecar["files"][file_name(n)] = entry
        print(f"wrote {file_name(n)}: {len(blob)} bytes, n={s.n}, retained={s.num_retained}")
    (HERE / "golden_v1.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    print("wrote golden_v1.json")


if __name__ == "__main__":
    main()
