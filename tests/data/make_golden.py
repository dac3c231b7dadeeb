"""Write the golden serialized sketches of the current format version (run by hand).

    cd /work/main && python tests/data/make_golden.py

It writes tests/data/*_v{N}.qsk (the files of ``files_for(N)``) and the
sidecar tests/data/golden_v{N}.json, N being the version the installed
writer writes.  Run it once for each new format version, on purpose: the
files of older versions stay as they are, and tests/test_serde.py checks that
every set still decodes to its sidecar and re-encodes, bit for bit, as the
current version.

Version 1 (frozen).  tests/data/kll_f64_n{0,1,10,1000,100000}_v1.qsk were
written by the version 1 writer: KLLSketch(k=200, seed=42) fed, in one batch,
np.random.default_rng(n).normal(size=n); tests/data/golden_v1.json records
what each decodes to (n, min, max, nan_count, num_retained, k, estimation
mode, quantiles at P = [0, 0.1, 0.5, 0.9, 1] and ranks at RANK_POINTS, both
inclusive and exclusive; NaN is written as null).  There was only the step
estimator then; this script predates it and does not rewrite them.

Versions 2 and later.  For each file the sidecar holds its recipe, its
size, what it decodes to (the fields above, plus exact_limit, the default
estimator, the nan policy and the highest compacted level, byte 11; from
version 3 the accuracy layer's size, from version 4 m), and the quantiles
and ranks of the step, linear and learned estimators.  The files cover the exact
table (small streams, and discrete scores with many items), the compactors in
estimation mode (continuous data, and the same discrete scores with
exact_limit=0, where retained values are atoms), non-default binding flags,
and from version 3 the accuracy layer (the default 2 k boundaries, a small
layer at k = 8, and none).
"""

import json
import math
import pathlib

import numpy as np

import qsketch

HERE = pathlib.Path(__file__).resolve().parent
K = 200
SEED = 42
P = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
NORMAL_POINTS = [-1.0, -0.5, 0.0, 0.25, 1.0]
SCORE_POINTS = [0.5, 1.0, 1.5, 2.0, 5.0, 5.5, 9.0, 10.0, 10.5]


# The estimators whose answers a sidecar records.  Not "spline": the accuracy
# layer's estimator is still being improved, and the layer's state is checked
# instead by re-encoding it bit for bit.
ESTIMATORS = ("step", "linear", "learned")


def files_for(version):
    """name -> recipe of the golden files of format ``version`` (2 or later).

    data: "normal" is default_rng(data_seed).normal(size=n), "scores" is
    default_rng(data_seed).integers(1, 11, size=n) as float64.  From version
    3 a recipe names its ``buckets`` (None: the default, 2 k).
    """
    v = version
    common = dict(k=K, seed=SEED, exact_limit=None, estimator="learned", nan_policy="ignore")
    files = {}
    for n in (0, 1, 10, 1000, 100_000):
        files[f"kll_f64_n{n}_v{v}.qsk"] = dict(data="normal", n=n, data_seed=n, **common,
                                               rank_points=NORMAL_POINTS)
    files[f"kll_f64_scores_n100000_v{v}.qsk"] = dict(data="scores", n=100_000, data_seed=10, **common,
                                                     rank_points=SCORE_POINTS)
    files[f"kll_f64_scores_n100000_limit0_v{v}.qsk"] = dict(common, data="scores", n=100_000, data_seed=10,
                                                            exact_limit=0, rank_points=SCORE_POINTS)
    files[f"kll_f64_n1000_linear_raise_k64_v{v}.qsk"] = dict(common, data="normal", n=1000, data_seed=1000,
                                                             k=64, estimator="linear", nan_policy="raise",
                                                             rank_points=NORMAL_POINTS)
    if v >= 3:
        for recipe in files.values():
            recipe["buckets"] = None
        files[f"kll_f64_n100000_spline_k8_v{v}.qsk"] = dict(common, data="normal", n=100_000, data_seed=7,
                                                            k=8, buckets=16, estimator="spline",
                                                            rank_points=NORMAL_POINTS)
        files[f"kll_f64_n100000_nolayer_v{v}.qsk"] = dict(common, data="normal", n=100_000, data_seed=7,
                                                          buckets=0, rank_points=NORMAL_POINTS)
    return files


def data_for(recipe):
    rng = np.random.default_rng(recipe["data_seed"])
    if recipe["data"] == "normal":
        return rng.normal(size=recipe["n"])
    if recipe["data"] == "scores":
        return rng.integers(1, 11, size=recipe["n"]).astype(np.float64)
    raise KeyError(recipe["data"])


def build(recipe):
    s = qsketch.KLLSketch(k=recipe["k"], seed=recipe["seed"], exact_limit=recipe["exact_limit"],
                          estimator=recipe["estimator"], nan_policy=recipe["nan_policy"],
                          buckets=recipe.get("buckets"))
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


def describe(s, recipe, blob, version):
    out = {
        "recipe": recipe,
        "size": len(blob),
        "n": s.n,
        "k": s.k,
        "m": blob[8],
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
    if version >= 3:
        layer = s._buckets()
        out["buckets"] = s.buckets
        out["boundaries"] = 0 if layer is None else int(layer[0].size)
    return out


def main():
    version = qsketch.KLLSketch().to_bytes()[3]  # what the installed writer writes
    sidecar = {"format_version": version, "estimators": list(ESTIMATORS), "files": {}}
    for name, recipe in files_for(version).items():
        s = build(recipe)
        blob = s.to_bytes()
        assert blob[3] == version
        (HERE / name).write_bytes(blob)
        sidecar["files"][name] = describe(s, recipe, blob, version)
        print(f"wrote {name}: {len(blob)} bytes, n={s.n}, retained={s.num_retained}, "
              f"estimation={s.is_estimation_mode}, exact_limit={s.exact_limit}")
    (HERE / f"golden_v{version}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    print(f"wrote golden_v{version}.json")


if __name__ == "__main__":
    main()
