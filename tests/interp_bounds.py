"""What the interpolating estimators promise (csrc/qs_interp.c, qs_kll.h).

KLL's guarantee is about the step estimator: its rank of x counts every
retained item of level h as 2^h items at its value.  The interpolating
estimators ("linear", "learned") move up to (2^h - 1)/2 of that weight to
either side of each item of a level h that a compaction has written into, so
every rank they give lies within the step interval
[step exclusive rank, step inclusive rank] widened by

    slack = sum over non-empty levels h, 1 <= h <= highest compacted level,
            of (2^h - 1) / 2 items

(normalized by n here).  Items above the highest compacted level were put
there by weighted updates: they are exact point masses and add no slack.
When the sketch is not in estimation mode, or holds the stream in its exact
low-cardinality table, the slack is 0 and every estimator gives the step
answer.  The accuracy layer's "spline" estimator is clipped instead to the
step estimate +- normalized_rank_error() (assert_clipped).
"""

import numpy as np

ESTIMATORS = ("step", "linear", "learned")
INTERPOLATING = ("linear", "learned")

# Float rounding only: the estimators work in doubles, ranks are in [0, 1].
TOL = 1e-12


def compacted_level(s):
    """The highest level written by a compaction: byte 11 of the version 2
    header (0 iff the sketch is not in estimation mode)."""
    blob = s.to_bytes()
    assert blob[3] >= 2, "the helper reads the version 2 header (byte 11 kept since)"
    return blob[11]


def interp_slack(s):
    """The widening of the step interval allowed to the interpolating
    estimators, as a normalized rank (0 when they must equal step)."""
    if s.n == 0 or not s.is_estimation_mode or s.exact_limit:
        return 0.0
    top = compacted_level(s)
    items = sum((2.0**h - 1.0) / 2.0 for h, lv in enumerate(s._levels()) if 1 <= h <= top and lv.size)
    return items / s.n


def conservative_slack(s):
    """The same sum over every non-empty level h >= 1 (an upper bound of
    interp_slack that needs no header byte)."""
    if s.n == 0 or not s.is_estimation_mode or s.exact_limit:
        return 0.0
    return sum((2.0**h - 1.0) / 2.0 for h, lv in enumerate(s._levels()) if h >= 1 and lv.size) / s.n


def assert_within_step_interval(s, qs, estimator, slack=None, tol=TOL):
    """Both the inclusive and the exclusive rank of ``estimator`` at every
    query lie in [step exclusive - slack, step inclusive + slack]."""
    qs = np.asarray(qs, dtype=np.float64)
    if slack is None:
        slack = interp_slack(s)
    st_in = s.rank(qs, estimator="step")
    st_ex = s.rank(qs, inclusive=False, estimator="step")
    for inclusive in (True, False):
        r = s.rank(qs, inclusive=inclusive, estimator=estimator)
        below = st_ex - slack - r
        above = r - st_in - slack
        worst = max(below.max(initial=-1.0), above.max(initial=-1.0))
        if worst > tol:
            i = int(np.argmax(np.maximum(below, above)))
            raise AssertionError(
                f"{estimator} rank (inclusive={inclusive}) of {qs[i]!r} is {r[i]!r}, outside the step "
                f"interval [{st_ex[i]!r}, {st_in[i]!r}] widened by the slack {slack!r} "
                f"(by {worst:.3g})"
            )


def assert_clipped(s, q):
    """Every "spline" answer (the accuracy layer's) lies within the step
    estimate +- eps, both inclusive and exclusive."""
    eps = s.normalized_rank_error()
    for inclusive in (True, False):
        spline = s.rank(q, inclusive=inclusive, estimator="spline")
        step = s.rank(q, inclusive=inclusive, estimator="step")
        assert np.all(np.abs(spline - step) <= eps + 1e-12)
