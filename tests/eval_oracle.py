"""Exact answers for the eval tests, computed with numpy from all the scores."""

import numpy as np

from oracle import exact_quantile


def moments(values):
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = x.size
    out = {"n": n, "sum": float(x.sum()) if n else 0.0}
    if n:
        out.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()),
                   m2=float(np.square(x - x.mean()).sum()))
        out["var"] = float(np.var(x, ddof=1)) if n > 1 else float("nan")
    return out


def quantiles(values, ps):
    x = np.sort(np.asarray(values, dtype=np.float64))
    return [exact_quantile(x, p, presorted=True) for p in ps]


def pass_rate(values, t):
    x = np.asarray(values, dtype=np.float64)
    return float(np.mean(x >= t))


def ks(a, b):
    """Exact two-sample KS distance: sup |F_a - F_b| over all points."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    xs = np.union1d(a, b)
    fa = np.searchsorted(a, xs, side="right") / a.size
    fb = np.searchsorted(b, xs, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def check_group(g, values, quantile_ps=(0.1, 0.5, 0.9), thresholds=(0.5,), rel=1e-12):
    """Assert that GroupStats ``g`` matches the exact answers for ``values``
    (the numeric scores, NaN excluded): counts and moments always; quantiles
    and pass rates exactly when the sketch is exact, else within its bounds."""
    import math

    m = moments(values)
    assert g.count == m["n"]
    if not m["n"]:
        return
    assert math.isclose(g.sum, m["sum"], rel_tol=rel, abs_tol=1e-12)
    assert math.isclose(g.mean, m["mean"], rel_tol=rel, abs_tol=1e-12)
    assert math.isclose(g.m2, m["m2"], rel_tol=max(rel, 1e-9), abs_tol=1e-9)
    assert (g.min, g.max) == (m["min"], m["max"])
    if m["n"] > 1:
        assert math.isclose(g.variance, m["var"], rel_tol=max(rel, 1e-9), abs_tol=1e-12)
    exact_q = quantiles(values, quantile_ps)
    for p, want in zip(quantile_ps, exact_q):
        v, lo, hi = g.quantile(p)
        if g.is_exact:
            assert v == lo == hi == want, (p, v, want)
        else:
            assert lo <= want <= hi, (p, lo, want, hi)
    for t in thresholds:
        want = pass_rate(values, t)
        v, lo, hi = g.pass_rate(t)
        if g.is_exact:
            assert v == lo == hi == want, (t, v, want)
        else:
            assert lo - 1e-12 <= want <= hi + 1e-12, (t, lo, want, hi)
