"""Write the golden serialized sketches of format version 2 (run by hand).

    cd /work/main && python tests/data/make_golden.py

Version 1 (frozen).  tests/data/kll_f64_n{0,1,10,1000,100000}_v1.qsk were
written by the version 1 writer: KLLSketch(k=200, seed=42) fed, in one batch,
np.random.default_rng(n).normal(size=n); tests/data/golden_v1.json records
what each decodes to (n, min, max, nan_count, num_retained, k, estimation
mode, quantiles at P = [0, 0.1, 0.5, 0.9, 1] and ranks at RANK_POINTS, both
inclusive and exclusive; NaN is written as null).  There was only the step
estimator then.  The current writer writes version 2, so this script cannot
and does not rewrite them: they stay as they are, and tests/test_serde.py
checks that they still decode to their sidecar.

Version 2.  This script writes tests/data/*_v2.qsk (the FILES below) and the
sidecar tests/data/golden_v2.json: for each file its recipe, its size, what
it decodes to (the fields above, plus exact_limit, the default estimator, the
nan policy and the highest compacted level, byte 11), and the quantiles and
ranks of every estimator ("step", "linear", "learned").  The files cover the
exact table (small streams, and discrete scores with many items), the
compactors in estimation mode (continuous data, and the same discrete scores
with exact_limit=0, where retained values are atoms), and non-default binding
flags.  tests/test_serde.py checks that every file decodes to its sidecar and
re-encodes bit for bit.  Only regenerate them on purpose (a new format
version gets new files; these then stay as they are).
"""

import json
import math
import pathlib

import numpy as np

import qsketch

HERE = pathlib.Path(__file__).resolve().parent
FORMAT_VERSION = 2
K = 200
SEED = 42
P = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
ESTIMATORS = ("step", "linear", "learned")
NORMAL_POINTS = [-1.0, -0.5, 0.0, 0.25, 1.0]
SCORE_POINTS = [0.5, 1.0, 1.5, 2.0, 5.0, 5.5, 9.0, 10.0, 10.5]

# name -> recipe.  data: "normal" is default_rng(data_seed).normal(size=n),
# "scores" is default_rng(data_seed).integers(1, 11, size=n) as float64.
FILES = {}
for _n in (0, 1, 10, 1000, 100_000):
    FILES[f"kll_f64_n{_n}_v2.qsk"] = dict(data="normal", n=_n, data_seed=_n, k=K, seed=SEED,
                                          exact_limit=None, estimator="learned", nan_policy="ignore",
                                          rank_points=NORMAL_POINTS)
FILES["kll_f64_scores_n100000_v2.qsk"] = dict(data="scores", n=100_000, data_seed=10, k=K, seed=SEED,
                                              exact_limit=None, estimator="learned", nan_policy="ignore",
                                              rank_points=SCORE_POINTS)
FILES["kll_f64_scores_n100000_limit0_v2.qsk"] = dict(data="scores", n=100_000, data_seed=10, k=K, seed=SEED,
                                                     exact_limit=0, estimator="learned", nan_policy="ignore",
                                                     rank_points=SCORE_POINTS)
FILES["kll_f64_n1000_linear_raise_k64_v2.qsk"] = dict(data="normal", n=1000, data_seed=1000, k=64, seed=SEED,
                                                      exact_limit=None, estimator="linear", nan_policy="raise",
                                                      rank_points=NORMAL_POINTS)


def data_for(recipe):
    rng = np.random.default_rng(recipe["data_seed"])
    if recipe["data"] == "normal":
        return rng.normal(size=recipe["n"])
    if recipe["data"] == "scores":
        return rng.integers(1, 11, size=recipe["n"]).astype(np.float64)
    raise KeyError(recipe["data"])


def build(recipe):
    s = qsketch.KLLSketch(k=recipe["k"], seed=recipe["seed"], exact_limit=recipe["exact_limit"],
                          estimator=recipe["estimator"], nan_policy=recipe["nan_policy"])
    s.update(data_for(recipe))
    return s


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x


def answers(s, estimator, rank_points):
    p = np.array(P)
    pts = np.array(rank_points)
    return {
        "quantiles_inclusive": [_num(v) for v in s.quantile(p, estimator=estimator)],
        "quantiles_exclusive": [_num(v) for v in s.quantile(p, inclusive=False, estimator=estimator)],
        "ranks_inclusive": [_num(v) for v in s.rank(pts, estimator=estimator)],
        "ranks_exclusive": [_num(v) for v in s.rank(pts, inclusive=False, estimator=estimator)],
    }


def describe(s, recipe, blob):
    return {
        "recipe": recipe,
        "size": len(blob),
        "n": s.n,
        "k": s.k,
        "nan_count": s.nan_count,
        "num_retained": s.num_retained,
        "is_estimation_mode": s.is_estimation_mode,
        "exact_limit": s.exact_limit,
        "estimator": s.estimator,
        "nan_policy": s.nan_policy,
        "compacted_level": blob[11],
        "min": _num(s.min),
        "max": _num(s.max),
        "p": P,
        "rank_points": recipe["rank_points"],
        "answers": {est: answers(s, est, recipe["rank_points"]) for est in ESTIMATORS},
    }


def main():
    sidecar = {"format_version": FORMAT_VERSION, "estimators": list(ESTIMATORS), "files": {}}
    for name, recipe in FILES.items():
        s = build(recipe)
        blob = s.to_bytes()
        assert blob[3] == FORMAT_VERSION
        (HERE / name).write_bytes(blob)
        sidecar["files"][name] = describe(s, recipe, blob)
        print(f"wrote {name}: {len(blob)} bytes, n={s.n}, retained={s.num_retained}, "
              f"estimation={s.is_estimation_mode}, exact_limit={s.exact_limit}")
    (HERE / "golden_v2.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    print("wrote golden_v2.json")


if __name__ == "__main__":
    main()
