"""Exact reference answers, computed from the full data with numpy.

These mirror the sketch's definitions so that, in exact mode, the sketch must
agree with them bit for bit.
"""

import math

import numpy as np

_TICKS = 1048576.0  # the C core rounds p * n to the nearest 2**-20 (qs_kll_quantile)


def _sorted(data):
    a = np.sort(np.asarray(data, dtype=np.float64).reshape(-1))
    if np.isnan(a).any():
        raise ValueError("the oracle takes NaN-free data")
    return a


def exact_rank(data, q, mode="inclusive", presorted=False):
    """Normalized rank of each query in ``q`` (any shape) within ``data``.

    mode "inclusive": fraction of items <= q; "exclusive": fraction < q;
    "mid": (count(< q) + count(<= q)) / (2 n).
    """
    a = np.asarray(data, dtype=np.float64) if presorted else _sorted(data)
    n = a.shape[0]
    qa = np.asarray(q, dtype=np.float64)
    if n == 0:
        return np.full(qa.shape, np.nan)
    le = np.searchsorted(a, qa, side="right")
    lt = np.searchsorted(a, qa, side="left")
    if mode == "inclusive":
        out = le / n
    elif mode == "exclusive":
        out = lt / n
    elif mode == "mid":
        out = (le + lt) / (2.0 * n)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return out


def _target(p, n):
    return round(p * n * _TICKS) / _TICKS  # round-half-even, like nearbyint


def exact_quantile(data, p, inclusive=True, presorted=False):
    """The sketch's quantile definition applied to the exact data.

    inclusive: smallest item x with count(<= x) >= ceil(p*n) (numpy's
    method="inverted_cdf"); exclusive: smallest item with count(<= x) > p*n.
    p = 0 gives the minimum and p = 1 the maximum.  ``p`` may be a scalar
    (returns a float) or an array (returns an array of that shape).
    """
    a = np.asarray(data, dtype=np.float64) if presorted else _sorted(data)
    n = a.shape[0]
    pa = np.asarray(p, dtype=np.float64)
    out = np.empty(pa.shape, dtype=np.float64)
    for idx, pi in np.ndenumerate(pa):
        if n == 0:
            out[idx] = np.nan
        elif pi == 0.0:
            out[idx] = a[0]
        elif pi == 1.0:
            out[idx] = a[-1]
        else:
            t = _target(float(pi), n)
            if inclusive:
                need = math.ceil(t)  # count(<= a[i]) >= i + 1, so i = need - 1
                i = max(need - 1, 0)
            else:
                i = math.floor(t)  # count(<= a[i]) > t  <=>  i + 1 > t
            out[idx] = a[min(i, n - 1)]
    if pa.ndim == 0:
        return float(out)
    return out


def exact_weighted_rank(values, weights, q, inclusive=True):
    """Normalized rank of each query within items ``values`` of integer
    ``weights`` (total weight below 2**53, so float64 division is exact)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.uint64).reshape(-1)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.concatenate([[np.uint64(0)], np.cumsum(w, dtype=np.uint64)])
    n = float(cum[-1])
    idx = np.searchsorted(v, np.asarray(q, dtype=np.float64), side="right" if inclusive else "left")
    return cum[idx].astype(np.float64) / n
