"""Grouped, mergeable aggregation of per-sample evaluation scores.

Per group (the values of the ``by`` fields plus the score series' name, the
``metric`` column), a :class:`GroupStats` keeps exact moments (count, sum,
mean and the sum of squared deviations merged with Chan et al.'s pairwise
formulas, min, max, and the counts of NaN, unscored and non-numeric values)
and a quantile sketch for ranks, quantiles, pass rates and CDFs.
"""

import functools
import json
import math
import zlib
from collections.abc import Mapping

import numpy as np

from qsketch._core import DEFAULT_K, KLLSketch
from qsketch.eval.records import MISSING, Location, RecordError, get_field
from qsketch.eval.scores import NON_NUMERIC, UNSCORED, Normalizer, flatten_scores
from qsketch.eval.table import Table

__all__ = [
    "ScoreAggregator",
    "GroupStats",
    "IngestReport",
    "KSResult",
    "ks_distance",
    "sketch_is_exact",
    "METRIC_COLUMN",
    "DEFAULT_QUANTILES",
    "DEFAULT_THRESHOLDS",
]

#: The column that names the score series of a group.
METRIC_COLUMN = "metric"
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)
DEFAULT_THRESHOLDS = (0.5,)
Z95 = 1.959963984540054  # two-sided 95% normal quantile
_MAX_KEPT_ERRORS = 100


def sketch_is_exact(sketch):
    """True when every answer of ``sketch`` is exact (nothing compacted yet).

    Sketches that say so through an ``is_exact`` attribute are believed;
    otherwise exact means ``not sketch.is_estimation_mode``.

    Examples
    --------
    >>> import qsketch
    >>> from qsketch.eval import sketch_is_exact
    >>> s = qsketch.KLLSketch(seed=1); s.update([0.0, 1.0, 1.0])
    >>> sketch_is_exact(s)
    True
    """
    flag = getattr(sketch, "is_exact", None)
    if isinstance(flag, bool):
        return flag
    return not sketch.is_estimation_mode


def _rank_error(sketch, pmf=False):
    return 0.0 if sketch_is_exact(sketch) else float(sketch.normalized_rank_error(pmf))


def _step_rank(sketch, x):
    """Inclusive ranks of the sketch's step-function CDF (its retained items
    and weights), also when the sketch's default estimator interpolates."""
    try:
        return np.asarray(sketch.rank(x, estimator="step"), dtype=np.float64)
    except TypeError:  # a sketch without estimators answers with its step CDF
        return np.asarray(sketch.rank(x), dtype=np.float64)


class GroupStats:
    """Exact moments and a quantile sketch of one group's scores.

    ``count`` numeric values (NaN excluded) with their ``sum``, ``mean``,
    ``m2`` (sum of squared deviations from the mean), ``min`` and ``max``;
    ``nan_count`` NaN scores, ``unscored`` unscored samples (None, empty,
    grade ``N``), ``non_numeric`` values that are not scores (lists,
    perplexity pairs, text).  Moments merge with Chan et al.'s formulas, so
    any grouping of shards gives the same result up to rounding.

    Examples
    --------
    >>> import qsketch
    >>> from qsketch.eval import GroupStats
    >>> g = GroupStats(qsketch.KLLSketch(seed=1))
    >>> g.add_array([1.0, 0.0, 1.0, float("nan")]); g.add(1.0)
    >>> g.count, g.nan_count, g.mean, round(g.variance, 4)
    (4, 1, 0.75, 0.25)
    >>> h = GroupStats(qsketch.KLLSketch(seed=2)); h.add_array([0.0, 0.0])
    >>> g.merge(h); g.count, g.mean, g.pass_rate(0.5)
    (6, 0.5, (0.5, 0.5, 0.5))
    """

    __slots__ = ("count", "nan_count", "unscored", "non_numeric", "sum", "mean", "m2",
                 "min", "max", "sketch")

    def __init__(self, sketch):
        self.sketch = sketch
        self.count = 0
        self.nan_count = 0
        self.unscored = 0
        self.non_numeric = 0
        self.sum = 0.0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.nan
        self.max = math.nan

    # ---- updates -----------------------------------------------------------

    def add(self, x):
        """Add one numeric score (NaN is counted in ``nan_count``).

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add(2.0); g.add(4.0)
        >>> g.count, g.mean, g.min, g.max
        (2, 3.0, 2.0, 4.0)
        """
        x = float(x)
        if x != x:
            self.nan_count += 1
            return
        n = self.count + 1
        self.count = n
        d = x - self.mean
        self.mean += d / n
        self.m2 += d * (x - self.mean)
        self.sum += x
        if n == 1:
            self.min = self.max = x
        elif x < self.min:
            self.min = x
        elif x > self.max:
            self.max = x
        self.sketch.update(x)

    def add_array(self, values):
        """Add a batch of numeric scores (NaN entries counted in ``nan_count``).

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([1, 2, 3, 4])
        >>> g.count, g.sum, g.mean, g.variance
        (4, 10.0, 2.5, 1.6666666666666667)
        """
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            return
        nan = np.isnan(arr)
        nn = int(nan.sum())
        if nn:
            self.nan_count += nn
            arr = arr[~nan]
            if arr.size == 0:
                return
        nb = int(arr.size)
        mb = float(arr.mean())
        m2b = float(np.square(arr - mb).sum()) if nb > 1 else 0.0
        self._combine(nb, mb, m2b, float(arr.sum()), float(arr.min()), float(arr.max()))
        self.sketch.update(arr)

    def _combine(self, nb, mb, m2b, sb, lo, hi):
        na = self.count
        if na == 0:
            self.count, self.mean, self.m2, self.sum, self.min, self.max = nb, mb, m2b, sb, lo, hi
            return
        n = na + nb
        d = mb - self.mean
        self.mean = self.mean + d * (nb / n)
        self.m2 = self.m2 + m2b + d * d * (na * nb / n)
        self.sum += sb
        self.count = n
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def merge(self, other):
        """Absorb ``other`` (unchanged): Chan's pairwise update of the moments,
        exact sums of the counts, and a sketch merge.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> a = GroupStats(qsketch.KLLSketch(seed=1)); a.add_array([1.0, 2.0])
        >>> b = GroupStats(qsketch.KLLSketch(seed=2)); b.add_array([3.0, 4.0]); b.unscored = 2
        >>> a.merge(b); a.count, a.mean, a.m2, a.unscored
        (4, 2.5, 5.0, 2)
        """
        if not isinstance(other, GroupStats):
            raise TypeError(f"merge() takes a GroupStats; got {type(other).__name__}")
        if other.count:
            self._combine(other.count, other.mean, other.m2, other.sum, other.min, other.max)
        self.nan_count += other.nan_count
        self.unscored += other.unscored
        self.non_numeric += other.non_numeric
        try:
            self.sketch.merge(other.sketch)
        except TypeError as exc:
            raise TypeError(f"cannot merge sketches of types {type(self.sketch).__name__} and "
                            f"{type(other.sketch).__name__}: {exc}") from None

    def copy(self):
        """An independent copy (the sketch is copied too).

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> a = GroupStats(qsketch.KLLSketch(seed=1)); a.add(1.0)
        >>> b = a.copy(); b.add(3.0)
        >>> a.count, b.count
        (1, 2)
        """
        out = GroupStats(self.sketch.copy())
        for name in GroupStats.__slots__:
            if name != "sketch":
                setattr(out, name, getattr(self, name))
        return out

    # ---- moments -----------------------------------------------------------

    @property
    def samples(self):
        """Every sample seen: numeric, NaN, unscored and non-numeric.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([1.0, 0.0, float("nan")]); g.unscored = 2
        >>> g.samples, g.count
        (5, 2)
        """
        return self.count + self.nan_count + self.unscored + self.non_numeric

    @property
    def variance(self):
        """Sample variance (``ddof=1``); NaN below two values.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add(2.0)
        >>> g.variance
        nan
        >>> g.add_array([4.0, 6.0]); g.variance
        4.0
        """
        return self.m2 / (self.count - 1) if self.count > 1 else math.nan

    @property
    def sd(self):
        """Sample standard deviation (``ddof=1``); NaN below two values.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([2, 4, 4, 4, 5, 5, 7, 9])
        >>> round(g.sd, 4), round(g.variance, 4)
        (2.1381, 4.5714)
        """
        v = self.variance
        return math.sqrt(v) if v == v and v >= 0 else (0.0 if v == v else math.nan)

    def mean_ci(self, z=Z95):
        """Normal-approximation confidence interval of the mean:
        ``mean -+ z * sd / sqrt(n)`` (z = 1.96: 95%); NaN below two values.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([0, 1] * 50)
        >>> [round(v, 4) for v in g.mean_ci()]
        [0.4015, 0.5985]
        """
        if self.count < 2:
            return (math.nan, math.nan)
        half = z * self.sd / math.sqrt(self.count)
        m = self.display_mean
        return (m - half, m + half)

    @property
    def display_mean(self):
        """The mean as reported: ``sum / count`` (correctly rounded for integer
        and 0/1 scores, whose sum is exact), or NaN without numeric scores.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([1.0] * 9 + [0.0])
        >>> g.display_mean
        0.9
        """
        if not self.count:
            return math.nan
        m = self.sum / self.count
        return m if math.isfinite(m) else self.mean

    # ---- sketch queries ----------------------------------------------------

    @property
    def is_exact(self):
        """True when the sketch's answers (quantiles, pass rates) are exact.

        Examples
        --------
        >>> import numpy as np, qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(k=200, seed=1)); g.add_array(np.arange(100.0))
        >>> g.is_exact
        True
        >>> g.add_array(np.arange(100_000.0)); g.is_exact  # the sketch has compacted
        False
        """
        return sketch_is_exact(self.sketch)

    def rank_error(self, pmf=False):
        """The sketch's normalized rank error at ~99% confidence (0 when exact).

        Examples
        --------
        >>> import numpy as np, qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(k=200, seed=1)); g.add_array(np.arange(100.0))
        >>> g.rank_error()
        0.0
        >>> g.add_array(np.arange(100_000.0)); round(g.rank_error(), 4), round(g.rank_error(pmf=True), 4)
        (0.0133, 0.0165)
        """
        return _rank_error(self.sketch, pmf)

    def quantile(self, p):
        """``(value, low, high)``: the sketch's p-quantile and the values at
        ranks ``p -+ eps`` (eps the rank error, clipped to [0, 1]), which
        bracket the true quantile with ~99% confidence.  Exact sketches give
        ``low == value == high``.  NaN for an empty group.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array(range(1, 101))
        >>> g.quantile(0.9)
        (90.0, 90.0, 90.0)
        """
        if self.count == 0:
            return (math.nan, math.nan, math.nan)
        p = float(p)
        sk = self.sketch
        value = float(sk.quantile(p))
        eps = self.rank_error()
        if eps == 0.0:
            return (value, value, value)
        lo = float(sk.quantile(max(0.0, p - eps)))
        hi = float(sk.quantile(min(1.0, p + eps)))
        return (value, min(lo, value), max(hi, value))

    def pass_rate(self, threshold):
        """``(rate, low, high)``: the fraction of numeric scores >= threshold,
        ``1 - rank(threshold, inclusive=False)``, and its bounds (rate -+ the
        rank error, clipped to [0, 1]).  Exact (equal bounds) when the
        sketch is exact, and whenever the threshold lies at or below the
        minimum or above the maximum.  NaN for an empty group.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([0, 0.5, 1, 1])
        >>> g.pass_rate(0.5), g.pass_rate(1.0), g.pass_rate(2.0)
        ((0.75, 0.75, 0.75), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0))
        """
        if self.count == 0:
            return (math.nan, math.nan, math.nan)
        t = float(threshold)
        if t <= self.min:
            return (1.0, 1.0, 1.0)
        if t > self.max:
            return (0.0, 0.0, 0.0)
        below = float(self.sketch.rank(t, inclusive=False))
        eps = self.rank_error()
        if eps == 0.0:
            # Exact sketch: rank = count(< t) / n, so recover the integer count
            # and divide once, as numpy's mean(x >= t) does.
            n = self.count
            rate = (n - round(below * n)) / n
            return (rate, rate, rate)
        rate = min(1.0, max(0.0, 1.0 - below))
        return (rate, max(0.0, rate - eps), min(1.0, rate + eps))

    def cdf_points(self):
        """``(x, F(x))`` steps of the sketch's CDF at its retained items
        (inclusive ranks): the ECDF itself while the sketch is exact.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import GroupStats
        >>> g = GroupStats(qsketch.KLLSketch(seed=1)); g.add_array([1, 1, 2, 4])
        >>> g.cdf_points()
        (array([1., 2., 4.]), array([0.5 , 0.75, 1.  ]))
        """
        if self.count == 0:
            return np.empty(0), np.empty(0)
        items, _ = self.sketch.sorted_view()
        items = np.unique(np.asarray(items, dtype=np.float64))
        return items, _step_rank(self.sketch, items)

    def __repr__(self):
        return (f"GroupStats(count={self.count}, mean={self.display_mean:.6g}, "
                f"nan={self.nan_count}, unscored={self.unscored}, non_numeric={self.non_numeric})")


class KSResult:
    """The two-sample Kolmogorov-Smirnov distance between two groups.

    ``distance`` is sup |F_a(x) - F_b(x)| of the two sketches' step-function
    CDFs (their retained items and weights), both evaluated at the union of
    their retained items, where every jump of either lies; ``error_bound`` the sum of the two sketches'
    whole-CDF rank errors at ~99% confidence each (0 for exact sketches),
    so the true distance lies in ``[low, high]``.  Also the difference of the
    means with its normal-approximation 95% interval.

    Examples
    --------
    >>> import qsketch
    >>> from qsketch.eval import GroupStats, ks_distance
    >>> a = GroupStats(qsketch.KLLSketch(seed=1)); a.add_array([1, 2, 3, 4])
    >>> b = GroupStats(qsketch.KLLSketch(seed=2)); b.add_array([3, 4, 5, 6])
    >>> r = ks_distance(a, b)
    >>> r.distance, r.error_bound, r.exact, r.mean_diff
    (0.5, 0.0, True, -2.0)
    """

    __slots__ = ("distance", "error_bound", "n_a", "n_b", "exact", "mean_diff", "mean_diff_ci",
                 "key_a", "key_b")

    def __init__(self, distance, error_bound, n_a, n_b, mean_diff, mean_diff_ci, key_a=None, key_b=None):
        self.distance = distance
        self.error_bound = error_bound
        self.n_a = n_a
        self.n_b = n_b
        self.exact = error_bound == 0.0
        self.mean_diff = mean_diff
        self.mean_diff_ci = mean_diff_ci
        self.key_a = key_a
        self.key_b = key_b

    @property
    def low(self):
        """Lower end of the interval that holds the true distance.

        Examples
        --------
        >>> from qsketch.eval import KSResult
        >>> KSResult(0.25, 0.125, 1000, 1000, 0.0, (0.0, 0.0)).low
        0.125
        >>> KSResult(0.0625, 0.125, 1000, 1000, 0.0, (0.0, 0.0)).low  # clipped at 0
        0.0
        """
        return max(0.0, self.distance - self.error_bound)

    @property
    def high(self):
        """Upper end of the interval that holds the true distance.

        Examples
        --------
        >>> from qsketch.eval import KSResult
        >>> KSResult(0.25, 0.125, 1000, 1000, 0.0, (0.0, 0.0)).high
        0.375
        >>> KSResult(0.9375, 0.125, 1000, 1000, 0.0, (0.0, 0.0)).high  # clipped at 1
        1.0
        """
        return min(1.0, self.distance + self.error_bound)

    def as_dict(self):
        """The result as a flat dict.

        Examples
        --------
        >>> from qsketch.eval import KSResult
        >>> sorted(KSResult(0.25, 0.0, 10, 12, 0.1, (0.0, 0.2)).as_dict())[:4]
        ['exact', 'ks', 'ks_bound', 'ks_high']
        """
        lo, hi = self.mean_diff_ci
        return {"n_a": self.n_a, "n_b": self.n_b, "ks": self.distance, "ks_bound": self.error_bound,
                "ks_low": self.low, "ks_high": self.high, "exact": self.exact,
                "mean_diff": self.mean_diff, "mean_diff_ci_low": lo, "mean_diff_ci_high": hi}

    def __repr__(self):
        return (f"KSResult(distance={self.distance:.6g}, error_bound={self.error_bound:.6g}, "
                f"n_a={self.n_a}, n_b={self.n_b})")


def ks_distance(a, b):
    """Kolmogorov-Smirnov distance between two groups (or two sketches), with
    its error bound: see :class:`KSResult`.

    Examples
    --------
    >>> import qsketch
    >>> from qsketch.eval import ks_distance
    >>> x = qsketch.KLLSketch(seed=1); x.update([0, 0, 1, 1])
    >>> y = qsketch.KLLSketch(seed=2); y.update([0, 1, 1, 1])
    >>> ks_distance(x, y).distance
    0.25
    """
    ga = a if isinstance(a, GroupStats) else None
    gb = b if isinstance(b, GroupStats) else None
    sa = ga.sketch if ga is not None else a
    sb = gb.sketch if gb is not None else b
    na, nb = int(sa.n), int(sb.n)
    if na == 0 or nb == 0:
        raise ValueError(f"the KS distance needs two non-empty groups; got n={na} and n={nb}")
    xa, _ = sa.sorted_view()
    xb, _ = sb.sorted_view()
    xs = np.union1d(np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64))
    ra = _step_rank(sa, xs)
    rb = _step_rank(sb, xs)
    distance = float(np.max(np.abs(ra - rb))) if xs.size else 0.0
    bound = _rank_error(sa, pmf=True) + _rank_error(sb, pmf=True)
    if ga is not None and gb is not None:
        diff = ga.display_mean - gb.display_mean
        if ga.count > 1 and gb.count > 1:
            se = math.sqrt(ga.variance / ga.count + gb.variance / gb.count)
            ci = (diff - Z95 * se, diff + Z95 * se)
        else:
            ci = (math.nan, math.nan)
    else:
        diff, ci = math.nan, (math.nan, math.nan)
    return KSResult(distance, bound, na, nb, diff, ci)


class IngestReport:
    """What an ingestion did: ``records`` ingested, ``skipped`` records (each
    with an error that names its file and line), the first errors kept in
    ``errors``.

    Examples
    --------
    >>> from qsketch.eval import ScoreAggregator
    >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
    >>> report = agg.add_records([{"model": "a", "acc": 1}, {"acc": 0}])
    >>> report.records, report.skipped, str(report.errors[0])
    (1, 1, "<records>:2: missing field 'model'")
    """

    def __init__(self):
        self.records = 0
        self.skipped = 0
        self.errors = []

    def record_error(self, error):
        """Count a skipped record and keep its error (the first 100).

        Examples
        --------
        >>> from qsketch.eval import IngestReport, Location, RecordError
        >>> report = IngestReport()
        >>> for line in range(1, 151):
        ...     report.record_error(RecordError("invalid JSON", Location("s.jsonl", line=line)))
        >>> report.skipped, len(report.errors), str(report.errors[-1])
        (150, 100, 's.jsonl:100: invalid JSON')
        """
        self.skipped += 1
        if len(self.errors) < _MAX_KEPT_ERRORS:
            self.errors.append(error)

    def update(self, other):
        """Add another report's counts and errors to this one.

        Examples
        --------
        >>> from qsketch.eval import IngestReport, Location, RecordError
        >>> a, b = IngestReport(), IngestReport()
        >>> a.records, b.records = 3, 2
        >>> b.record_error(RecordError("missing field 'model'", Location("b.csv", line=4)))
        >>> a.update(b); a.records, a.skipped, [str(e) for e in a.errors]
        (5, 1, ["b.csv:4: missing field 'model'"])
        """
        self.records += other.records
        self.skipped += other.skipped
        room = _MAX_KEPT_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])

    def __repr__(self):
        return f"IngestReport(records={self.records}, skipped={self.skipped})"


def _key_value(value):
    """A group-key component: a JSON scalar (other values become text)."""
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _key_value(value.item())
    if isinstance(value, (str, int)):
        return str(value) if isinstance(value, str) else int(value)
    if isinstance(value, float):
        return _key_value(float(value))
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _sort_key(key):
    return tuple((0, "") if v is None else (1, v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (2, str(v)) for v in key)


def _score_spec(score):
    """Normalise ``score``: None, or a tuple of (series name, field path)."""
    if score is None:
        return None
    if isinstance(score, str):
        items = [score]
    elif isinstance(score, Mapping):
        items = list(score.items())
    else:
        items = list(score)
    spec = []
    for item in items:
        if isinstance(item, str):
            name = item[len("scores."):] if item.startswith("scores.") and len(item) > 7 else item
            spec.append((name, item))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(s, str) for s in item):
            spec.append((item[0], item[1]))
        else:
            raise TypeError(f"score must be a field path, a list of paths or a {{name: path}} mapping; got {item!r}")
    if not spec:
        raise ValueError("score names no field")
    names = [n for n, _ in spec]
    if len(set(names)) != len(names):
        raise ValueError(f"score series names must be distinct; got {names}")
    return tuple(spec)


def _by_spec(by):
    if isinstance(by, str):
        by = [b for b in by.split(",") if b.strip()] if "," in by else [by]
    by = tuple(str(b).strip() for b in by)
    if any(not b for b in by):
        raise ValueError("by fields must be non-empty field paths")
    if len(set(by)) != len(by):
        raise ValueError(f"by fields must be distinct; got {list(by)}")
    if METRIC_COLUMN in by:
        raise ValueError(f"{METRIC_COLUMN!r} is reserved for the score series' name; rename that field")
    return by


def _check_probs(ps, what):
    out = tuple(float(p) for p in ps)
    for p in out:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{what} must lie in [0, 1]; got {p}")
    return out


def _check_thresholds(ts):
    out = tuple(float(t) for t in ts)
    if any(t != t for t in out):
        raise ValueError("thresholds must not be NaN")
    return out


def _label(x):
    return f"{x:g}"


def _fmt_num(x, digits=4):
    if x != x:
        return "nan"
    return f"{x:.{digits}g}"


class ScoreAggregator:
    """Grouped, mergeable aggregation of per-sample evaluation scores.

    Parameters
    ----------
    by : sequence of str or str
        Field paths whose values name a group (``"model,task"`` also works).
        Each group is further split by score series: the ``metric`` column.
    score : None, str, sequence of str, or {name: path}
        Which fields hold scores.  None (the default): every entry of the
        record's ``scores`` mapping, named by its key.  A path such as
        ``"scores.accuracy"`` makes the series ``accuracy`` (a leading
        ``scores.`` is dropped from the name); a mapping names series
        explicitly.  Dict-valued scores become ``name.key`` series.
    k : int
        Accuracy parameter of the default sketch (``KLLSketch(k)``).
    sketch_factory : callable, optional
        Builds a group's sketch, called as ``sketch_factory(seed=...)``;
        default ``KLLSketch(k, seed=...)``.  Any class with KLLSketch's
        update/merge/rank/quantile/sorted_view/to_bytes API fits.
    seed : int or None
        Seed from which each group's sketch seed is derived (with the group
        key), for reproducible sketches.  None: seeds from the OS.
    grades : dict, optional
        Letter grades to numbers (None: unscored); default Inspect AI's
        ``{"C": 1, "I": 0, "P": 0.5, "N": None}``.
    quantiles, thresholds : sequences of float
        Defaults of :meth:`summary`: quantiles to report, and thresholds t
        of the pass rates (fraction of scores >= t).

    Records are mappings (parsed JSON lines, CSV rows, Inspect samples).
    Not thread-safe: give each thread its own aggregator and merge them.

    Examples
    --------
    >>> from qsketch.eval import ScoreAggregator
    >>> agg = ScoreAggregator(by=["model"], score="scores.acc", seed=0)
    >>> agg.add({"model": "a", "scores": {"acc": 1}})
    >>> agg.add_batch([{"model": "a", "scores": {"acc": 0}}, {"model": "b", "scores": {"acc": "C"}}])
    >>> agg.groups()
    [('a', 'acc'), ('b', 'acc')]
    >>> g = agg.group(("a", "acc")); g.count, g.mean
    (2, 0.5)
    >>> row = agg.summary()[0]
    >>> row["model"], row["n"], row["mean"], row["q0.5"], row["pass>=0.5"], row["exact"]
    ('a', 2, 0.5, 0.0, 0.5, True)
    """

    def __init__(self, by=("model", "task"), score=None, *, k=DEFAULT_K, sketch_factory=None, seed=None,
                 grades=None, quantiles=DEFAULT_QUANTILES, thresholds=DEFAULT_THRESHOLDS):
        self.by = _by_spec(by)
        self.score = _score_spec(score)
        self.k = int(k)
        if sketch_factory is None:
            KLLSketch(self.k, seed=0)  # a bad k fails here, not at the first record
            sketch_factory = functools.partial(KLLSketch, self.k)
        elif not callable(sketch_factory):
            raise TypeError("sketch_factory must be callable (called as sketch_factory(seed=...))")
        self.sketch_factory = sketch_factory
        if seed is not None:
            seed = int(seed)
            if not 0 <= seed < 2**64:
                raise ValueError(f"seed must lie in [0, 2**64); got {seed}")
        self.seed = seed
        self._normalizer = Normalizer(grades)
        self.quantiles = _check_probs(quantiles, "quantiles")
        self.thresholds = _check_thresholds(thresholds)
        self.skipped_records = 0
        self._groups = {}

    # ---- configuration -----------------------------------------------------

    @property
    def grades(self):
        """The grade mapping in use (a copy).

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> ScoreAggregator(seed=0).grades
        {'C': 1.0, 'I': 0.0, 'P': 0.5, 'N': None}
        >>> ScoreAggregator(grades={"A": 1, "F": 0}, seed=0).grades
        {'A': 1.0, 'F': 0.0}
        """
        return dict(self._normalizer.grades)

    @property
    def columns(self):
        """The group-key columns: the ``by`` fields, then ``metric``.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> ScoreAggregator(by="model,task", seed=0).columns
        ('model', 'task', 'metric')
        """
        return self.by + (METRIC_COLUMN,)

    def _new_sketch(self, key):
        if self.seed is None:
            return self.sketch_factory(seed=None)
        h = zlib.crc32(json.dumps(list(key), default=str).encode("utf-8"))
        return self.sketch_factory(seed=(self.seed + h * 0x9E3779B97F4A7C15) % 2**64)

    def _group_for(self, key):
        g = self._groups.get(key)
        if g is None:
            g = GroupStats(self._new_sketch(key))
            self._groups[key] = g
        return g

    def empty_like(self):
        """A new, empty aggregator with this one's configuration.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> a = ScoreAggregator(by=["model"], score="acc", seed=1)
        >>> b = a.empty_like(); b.by, b.score, len(b)
        (('model',), (('acc', 'acc'),), 0)
        """
        out = ScoreAggregator(self.by, self.score, k=self.k, sketch_factory=self.sketch_factory,
                              seed=self.seed, grades=self._normalizer.grades,
                              quantiles=self.quantiles, thresholds=self.thresholds)
        return out

    # ---- ingestion ---------------------------------------------------------

    def _key_of(self, record):
        values = []
        for path in self.by:
            v = get_field(record, path)
            if v is MISSING:
                raise RecordError(f"missing field {path!r}")
            values.append(_key_value(v))
        return tuple(values)

    def _series_of(self, record):
        if not isinstance(record, Mapping):
            raise RecordError(f"a record must be a mapping (JSON object); got {type(record).__name__}")
        pairs = []
        if self.score is None:
            scores = get_field(record, "scores")
            if scores is MISSING:
                raise RecordError("no 'scores' field (name the score fields with score=... / --score)")
            if scores is None or (isinstance(scores, Mapping) and not scores):
                err = get_field(record, "error", None)
                why = f" (sample error: {_short(err)})" if err else ""
                raise RecordError(f"the record has no scores{why}")
            if not isinstance(scores, Mapping):
                raise RecordError(f"'scores' must be a mapping of name to value; got {type(scores).__name__}")
            for name, value in scores.items():
                flatten_scores(str(name), value, pairs)
        else:
            for name, path in self.score:
                v = get_field(record, path)
                if v is MISSING:
                    raise RecordError(f"missing score field {path!r}")
                flatten_scores(name, v, pairs)
        return pairs

    def _prepare(self, record):
        key = self._key_of(record) if isinstance(record, Mapping) else None
        pairs = self._series_of(record)
        conv = self._normalizer.convert
        return key, [(name, conv(value)) for name, value in pairs]

    def _apply(self, key, converted):
        for name, x in converted:
            g = self._group_for(key + (name,))
            if x is UNSCORED:
                g.unscored += 1
            elif x is NON_NUMERIC:
                g.non_numeric += 1
            else:
                g.add(x)

    def add(self, record):
        """Add one record (a mapping).  Raises :class:`RecordError` (and adds
        nothing) when a ``by`` field or a score field is missing.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model", "task"], seed=0)
        >>> agg.add({"model": "m", "task": "t", "scores": {"match": "C", "judge": {"a": 0.5, "b": [1, 2]}}})
        >>> [(k[-1], g.count, g.non_numeric) for k, g in agg.items()]
        [('judge.a', 1, 0), ('judge.b', 0, 1), ('match', 1, 0)]
        """
        key, converted = self._prepare(record)
        self._apply(key, converted)

    def add_records(self, records, *, strict=False, report=None):
        """Add an iterable of records, or of ``(record, Location)`` pairs
        (what :func:`qsketch.eval.read_records` yields).

        A record that cannot be ingested is skipped and its error (with its
        location) kept in the returned :class:`IngestReport`, unless
        ``strict``: then the first such error is raised.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator, RecordError
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
        >>> agg.add_records([{"model": "a", "acc": 1}, {"model": "a"}]).skipped
        1
        >>> try:
        ...     agg.add_records([{"model": "a"}], strict=True)
        ... except RecordError as e:
        ...     print(e)
        <records>:1: missing score field 'acc'
        """
        if report is None:
            report = IngestReport()
        for i, item in enumerate(records, 1):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Location):
                record, location = item
            else:
                record, location = item, Location(None, line=i)
            try:
                key, converted = self._prepare(record)
            except RecordError as exc:
                exc = exc.at(location)
                if strict:
                    raise exc from None
                self.skipped_records += 1
                report.record_error(exc)
                continue
            self._apply(key, converted)
            report.records += 1
        return report

    def add_file(self, path, *, format="auto", strict=False, defaults=None, progress=False,
                 inspect_samples="summaries", report=None):
        """Read one file (JSONL, CSV, Parquet, lm-eval samples, Inspect log;
        see :func:`qsketch.eval.read_records`) into the aggregator.

        Malformed lines and records with missing fields are skipped and
        reported with their file and line; ``strict=True`` raises the first.

        Examples
        --------
        >>> import json, os, tempfile
        >>> from qsketch.eval import ScoreAggregator
        >>> path = os.path.join(tempfile.mkdtemp(), "scores.jsonl")
        >>> with open(path, "w") as f:
        ...     _ = f.write(json.dumps({"model": "a", "scores": {"acc": 1}}) + "\\n{broken\\n")
        >>> agg = ScoreAggregator(by=["model"], seed=0)
        >>> report = agg.add_file(path)
        >>> report.records, report.skipped, report.errors[0].location.line
        (1, 1, 2)
        """
        from qsketch.eval.sources import read_records

        if report is None:
            report = IngestReport()

        def on_error(exc):
            if strict:
                raise exc
            self.skipped_records += 1
            report.record_error(exc)

        items = read_records(path, format=format, on_error=on_error, defaults=defaults,
                             progress=progress, inspect_samples=inspect_samples)
        return self.add_records(items, strict=strict, report=report)

    def add_batch(self, table):
        """Add a batch of records: a list of dicts, a pandas DataFrame or a
        pyarrow Table.  All or nothing: a bad row raises
        :class:`RecordError` naming the row, and nothing is added.

        Columns that are plain numbers are aggregated in vectorized form;
        columns may be named by flat paths (``scores.accuracy``); with the
        default ``score=None`` every ``scores.<name>`` column is a series.

        Examples
        --------
        >>> import pandas as pd  # doctest: +SKIP
        >>> from qsketch.eval import ScoreAggregator
        >>> df = pd.DataFrame({"model": ["a", "a", "b"], "scores.acc": [1.0, 0.0, 1.0]})  # doctest: +SKIP
        >>> agg = ScoreAggregator(by=["model"], seed=0); agg.add_batch(df)  # doctest: +SKIP
        >>> agg.group(("a", "acc")).mean  # doctest: +SKIP
        0.5
        """
        columns = _table_columns(table, self)
        if columns is None:
            self._add_rows(_table_rows(table))
        else:
            self._add_columns(*columns)

    def _add_rows(self, rows):
        prepared = []
        for i, record in enumerate(rows, 1):
            try:
                prepared.append(self._prepare(record))
            except RecordError as exc:
                raise exc.at(Location(None, item=f"row {i}")) from None
        for key, converted in prepared:
            self._apply(key, converted)

    def _add_columns(self, by_columns, score_columns, nrows):
        keys = list(zip(*[[_key_value(v) for v in col] for col in by_columns])) if by_columns else [()] * nrows
        index = {}
        for i, key in enumerate(keys):
            index.setdefault(key, []).append(i)
        for name, (values, status) in score_columns:
            for key, rows in index.items():
                idx = np.asarray(rows, dtype=np.intp)
                st = status[idx]
                g = self._group_for(key + (name,))
                ok = st == 0
                g.add_array(values[idx][ok])
                g.unscored += int(np.count_nonzero(st == 1))
                g.non_numeric += int(np.count_nonzero(st == 2))

    # ---- groups ------------------------------------------------------------

    def __len__(self):
        return len(self._groups)

    def __contains__(self, key):
        return tuple(key) in self._groups

    def groups(self):
        """The group keys, ``(*by values, metric)`` tuples, sorted (None first,
        then numbers in numeric order, then text).

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["epoch"], score="acc", seed=0)
        >>> agg.add_batch([{"epoch": e, "acc": 1} for e in (10, 2, None)])
        >>> agg.groups()
        [(None, 'acc'), (2, 'acc'), (10, 'acc')]
        """
        return sorted(self._groups, key=_sort_key)

    def items(self):
        """``(key, GroupStats)`` pairs in key order.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
        >>> agg.add_batch([{"model": m, "acc": v} for m, v in [("b", 1), ("a", 0), ("a", 1)]])
        >>> [(key, g.count, g.mean) for key, g in agg.items()]
        [(('a', 'acc'), 2, 0.5), (('b', 'acc'), 1, 1.0)]
        """
        return [(k, self._groups[k]) for k in self.groups()]

    def select(self, where=None, **criteria):
        """Keys of the groups whose columns match every criterion (values
        compared as text), e.g. ``select(model="gpt", metric="match")``.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model", "epoch"], score="acc", seed=0)
        >>> agg.add_batch([{"model": "a", "epoch": 1, "acc": 1}, {"model": "a", "epoch": 2, "acc": 0}])
        >>> agg.select(epoch="2")
        [('a', 2, 'acc')]
        """
        crit = dict(where or {})
        crit.update(criteria)
        cols = self.columns
        for c in crit:
            if c not in cols:
                raise KeyError(f"unknown column {c!r}; the columns are {list(cols)}")
        pos = [(cols.index(c), str(v)) for c, v in crit.items()]
        return [k for k in self.groups() if all(_text(k[i]) == v for i, v in pos)]

    def _resolve(self, key):
        if isinstance(key, Mapping):
            found = self.select(key)
            if len(found) != 1:
                raise KeyError(f"{dict(key)} matches {len(found)} groups; name exactly one "
                               f"(columns {list(self.columns)})" + (f": {found[:5]}" if found else ""))
            return found[0]
        key = tuple(key)
        if key not in self._groups:
            raise KeyError(f"no group {key}")
        return key

    def group(self, key):
        """The :class:`GroupStats` of a key tuple, or of a mapping of column
        to value that matches exactly one group.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model", "task"], score="acc", seed=0)
        >>> agg.add_batch([{"model": "a", "task": "t", "acc": 1}, {"model": "b", "task": "t", "acc": 0}])
        >>> agg.group(("a", "t", "acc")).mean, agg.group({"model": "b"}).mean
        (1.0, 0.0)
        """
        return self._groups[self._resolve(key)]

    def __getitem__(self, key):
        return self.group(key)

    # ---- merging -----------------------------------------------------------

    def merge(self, other):
        """Absorb another aggregator (unchanged) with the same ``by`` fields.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> a = ScoreAggregator(by=["m"], score="x", seed=1); a.add_batch([{"m": 1, "x": 1.0}])
        >>> b = ScoreAggregator(by=["m"], score="x", seed=2); b.add_batch([{"m": 1, "x": 3.0}, {"m": 2, "x": 0}])
        >>> a.merge(b); [(k, g.count, g.mean) for k, g in a.items()]
        [((1, 'x'), 2, 2.0), ((2, 'x'), 1, 0.0)]
        """
        if not isinstance(other, ScoreAggregator):
            raise TypeError(f"merge() takes a ScoreAggregator; got {type(other).__name__}")
        if other.by != self.by:
            raise ValueError(f"cannot merge aggregators grouped by different fields: {list(self.by)} "
                             f"and {list(other.by)}")
        if other is self:
            other = self.copy()
        for key, g in other._groups.items():
            mine = self._groups.get(key)
            if mine is None:
                self._groups[key] = g.copy()
            else:
                mine.merge(g)
        self.skipped_records += other.skipped_records

    def copy(self):
        """An independent copy.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> a = ScoreAggregator(by=["model"], score="acc", seed=0); a.add({"model": "x", "acc": 1})
        >>> b = a.copy(); b.add({"model": "x", "acc": 0})
        >>> a.group(("x", "acc")).count, b.group(("x", "acc")).count, b.by
        (1, 2, ('model',))
        """
        out = self.empty_like()
        out._groups = {k: g.copy() for k, g in self._groups.items()}
        out.skipped_records = self.skipped_records
        return out

    def __eq__(self, other):
        """Same configuration of groups, counts, exact moments (to rounding)
        and the same sketch contents."""
        if not isinstance(other, ScoreAggregator):
            return NotImplemented
        return self.by == other.by and _groups_equal(self, other)

    __hash__ = None

    # ---- persistence -------------------------------------------------------

    def to_bytes(self):
        """The aggregator file's bytes (see docs/eval.md).

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0); agg.add({"model": "a", "acc": 1})
        >>> data = agg.to_bytes()
        >>> data[:5], ScoreAggregator.from_bytes(data) == agg
        (b'QSAGG', True)
        """
        from qsketch.eval.fileformat import dump_aggregator

        return dump_aggregator(self)

    @classmethod
    def from_bytes(cls, data, *, sketch_factory=None):
        """Decode :meth:`to_bytes` output; raises
        :class:`qsketch.SerializationError` with the reason.

        Examples
        --------
        >>> import qsketch
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0); agg.add({"model": "a", "acc": 1})
        >>> ScoreAggregator.from_bytes(agg.to_bytes()).group(("a", "acc")).mean
        1.0
        >>> try:
        ...     ScoreAggregator.from_bytes(agg.to_bytes()[:-1])
        ... except qsketch.SerializationError as e:
        ...     print(e)  # doctest: +ELLIPSIS
        truncated: the header announces ... bytes, the file has ...
        """
        from qsketch.eval.fileformat import load_aggregator

        return load_aggregator(data, sketch_factory=sketch_factory)

    def save(self, path):
        """Write the aggregator to ``path`` (one versioned, checksummed file,
        replaced atomically).

        Examples
        --------
        >>> import os, tempfile
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
        >>> agg.add_batch([{"model": "a", "acc": 1}, {"model": "a", "acc": 0}])
        >>> path = os.path.join(tempfile.mkdtemp(), "agg.qsk")
        >>> agg.save(path)
        >>> back = ScoreAggregator.load(path)
        >>> back == agg, back.group(("a", "acc")).mean
        (True, 0.5)
        """
        import os
        import tempfile

        data = self.to_bytes()
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".qsk-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path, *, sketch_factory=None):
        """Read a file written by :meth:`save`; every length, field and the
        CRC32 are checked: a bad file raises :class:`qsketch.SerializationError`.

        Examples
        --------
        >>> import os, tempfile
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0); agg.add({"model": "a", "acc": 1})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     agg.save(os.path.join(d, "agg.qsk"))
        ...     back = ScoreAggregator.load(os.path.join(d, "agg.qsk"))
        >>> back == agg, back.groups()
        (True, [('a', 'acc')])
        """
        with open(path, "rb") as f:
            data = f.read()
        try:
            return cls.from_bytes(data, sketch_factory=sketch_factory)
        except ValueError as exc:
            from qsketch.errors import SerializationError

            if isinstance(exc, SerializationError):
                raise SerializationError(f"{path}: {exc}") from None
            raise

    # ---- reports -----------------------------------------------------------

    def summary(self, quantiles=None, thresholds=None, where=None):
        """One row per group: n, mean with its 95% CI, sd, min, max,
        quantiles with their bounds, pass rates with their bounds.

        Columns: the ``by`` fields, ``metric``, ``n`` (numeric scores),
        ``unscored``, ``nan``, ``non_numeric``, ``mean``, ``mean_ci_low``,
        ``mean_ci_high`` (normal approximation, mean -+ 1.96 sd/sqrt(n)),
        ``sd``, ``min``, ``max``, ``exact`` (sketch answers exact),
        ``rank_error`` (per query, ~99%), then ``q<p>``, ``q<p>_low``,
        ``q<p>_high`` per quantile and ``pass>=<t>``, ``pass>=<t>_low``,
        ``pass>=<t>_high`` per threshold.  ``where`` filters groups as
        :meth:`select` does.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
        >>> agg.add_batch([{"model": "a", "acc": v} for v in [1, 1, 0, 1]])
        >>> t = agg.summary(quantiles=[0.5], thresholds=[1.0])
        >>> r = t[0]; r["n"], r["mean"], r["q0.5"], r["pass>=1"], r["exact"]
        (4, 0.75, 1.0, 0.75, True)
        >>> print(t.to_text())  # doctest: +NORMALIZE_WHITESPACE
        model  metric  n  mean (95% CI)      q0.5  pass>=1  exact
        -----  ------  -  -----------------  ----  -------  -----
        a      acc     4  0.75 [0.26, 1.24]  1     0.75     yes
        """
        qs = self.quantiles if quantiles is None else _check_probs(quantiles, "quantiles")
        ts = self.thresholds if thresholds is None else _check_thresholds(thresholds)
        keys = self.groups() if where is None else self.select(where)
        columns = list(self.columns) + ["n", "unscored", "nan", "non_numeric", "mean", "mean_ci_low",
                                        "mean_ci_high", "sd", "min", "max", "exact", "rank_error"]
        for p in qs:
            columns += [f"q{_label(p)}", f"q{_label(p)}_low", f"q{_label(p)}_high"]
        for t in ts:
            columns += [f"pass>={_label(t)}", f"pass>={_label(t)}_low", f"pass>={_label(t)}_high"]
        rows = []
        for key in keys:
            g = self._groups[key]
            row = dict(zip(self.columns, key))
            lo, hi = g.mean_ci()
            row.update(n=g.count, unscored=g.unscored, nan=g.nan_count, non_numeric=g.non_numeric,
                       mean=g.display_mean, mean_ci_low=lo, mean_ci_high=hi, sd=g.sd,
                       min=g.min, max=g.max, exact=g.is_exact if g.count else True,
                       rank_error=g.rank_error() if g.count else 0.0)
            for p in qs:
                v, vl, vh = g.quantile(p)
                row[f"q{_label(p)}"], row[f"q{_label(p)}_low"], row[f"q{_label(p)}_high"] = v, vl, vh
            for t in ts:
                v, vl, vh = g.pass_rate(t)
                row[f"pass>={_label(t)}"], row[f"pass>={_label(t)}_low"], row[f"pass>={_label(t)}_high"] = v, vl, vh
            rows.append(row)
        display = _summary_display(self.columns, qs, ts, rows)
        notes = []
        if self.skipped_records:
            notes.append(f"{self.skipped_records} record(s) were skipped while ingesting (malformed or "
                         f"missing fields).")
        if any(not r["exact"] for r in rows):
            notes.append("Brackets: mean 95% CI (normal approximation); quantile and pass-rate bounds from "
                         "the sketch's rank error (~99% per value).")
        return Table(columns, rows, display=display, notes=notes)

    def compare(self, a, b):
        """KS distance (with its error bound) and mean difference between two
        groups, each named by a key tuple or a mapping that matches one group.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
        >>> agg.add_batch([{"model": m, "acc": v} for m, v in [("x", 1), ("x", 1), ("y", 0), ("y", 1)]])
        >>> r = agg.compare({"model": "x"}, {"model": "y"})
        >>> r.distance, r.error_bound, r.mean_diff
        (0.5, 0.0, 0.5)
        """
        ka, kb = self._resolve(a), self._resolve(b)
        result = ks_distance(self._groups[ka], self._groups[kb])
        result.key_a, result.key_b = ka, kb
        return result

    def compare_pairs(self, a, b):
        """Compare every pair of groups selected by the mappings ``a`` and
        ``b`` that agree on all the other columns (e.g. ``a={"model": "x"}``,
        ``b={"model": "y"}`` pairs the two models task by task and metric by
        metric).  Returns a :class:`Table`.

        Examples
        --------
        >>> from qsketch.eval import ScoreAggregator
        >>> agg = ScoreAggregator(by=["model", "task"], score="acc", seed=0)
        >>> agg.add_batch([{"model": m, "task": t, "acc": v}
        ...                for m, t, v in [("x", "t1", 1), ("y", "t1", 0), ("x", "t2", 1), ("y", "t2", 1)]])
        >>> t = agg.compare_pairs({"model": "x"}, {"model": "y"})
        >>> [(r["task"], r["ks"]) for r in t]
        [('t1', 1.0), ('t2', 0.0)]
        """
        a, b = dict(a), dict(b)
        cols = self.columns
        named = set(a) | set(b)
        for c in named:
            if c not in cols:
                raise KeyError(f"unknown column {c!r}; the columns are {list(cols)}")
        rest = [c for c in cols if c not in named]
        rest_pos = [cols.index(c) for c in rest]
        b_index = {}
        for kb in self.select(b):
            b_index.setdefault(tuple(kb[i] for i in rest_pos), []).append(kb)
        rows = []
        for ka in self.select(a):
            for kb in b_index.get(tuple(ka[i] for i in rest_pos), []):
                if ka == kb:
                    continue
                ga, gb = self._groups[ka], self._groups[kb]
                if ga.count == 0 or gb.count == 0:
                    continue
                r = ks_distance(ga, gb)
                row = {c: ka[cols.index(c)] for c in rest}
                row["a"] = ", ".join(f"{c}={_text(ka[cols.index(c)])}" for c in cols if c in named)
                row["b"] = ", ".join(f"{c}={_text(kb[cols.index(c)])}" for c in cols if c in named)
                row.update(r.as_dict())
                rows.append(row)
        columns = rest + ["a", "b", "n_a", "n_b", "ks", "ks_bound", "ks_low", "ks_high", "exact",
                          "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high"]
        return Table(columns, rows, display=_compare_display(rest, rows))

    def __repr__(self):
        return f"ScoreAggregator(by={list(self.by)}, groups={len(self._groups)})"


def _text(v):
    return "" if v is None else str(v)


def _short(text, limit=200):
    text = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _with_bounds(v, lo, hi, exact):
    if exact or (lo == v == hi) or v != v:
        return _fmt_num(v)
    return f"{_fmt_num(v)} [{_fmt_num(lo)}, {_fmt_num(hi)}]"


def _summary_display(key_cols, qs, ts, rows):
    extra = [c for c in ("unscored", "nan", "non_numeric") if any(r[c] for r in rows)]
    header = list(key_cols) + ["n"] + extra + ["mean (95% CI)"]
    header += [f"q{_label(p)}" for p in qs] + [f"pass>={_label(t)}" for t in ts] + ["exact"]

    def render(r):
        cells = [_text(r[c]) for c in key_cols] + [str(r["n"])] + [str(r[c]) for c in extra]
        if r["n"] >= 2:
            cells.append(f"{_fmt_num(r['mean'])} [{_fmt_num(r['mean_ci_low'])}, {_fmt_num(r['mean_ci_high'])}]")
        else:
            cells.append(_fmt_num(r["mean"]))
        for p in qs:
            c = f"q{_label(p)}"
            cells.append(_with_bounds(r[c], r[c + "_low"], r[c + "_high"], r["exact"]))
        for t in ts:
            c = f"pass>={_label(t)}"
            cells.append(_with_bounds(r[c], r[c + "_low"], r[c + "_high"], r["exact"]))
        cells.append("yes" if r["exact"] else "no")
        return cells

    return header, render


def _compare_display(rest, rows):
    header = list(rest) + ["a", "b", "n_a", "n_b", "KS distance", "mean diff (95% CI)"]

    def render(r):
        cells = [_text(r[c]) for c in rest] + [r["a"], r["b"], str(r["n_a"]), str(r["n_b"])]
        if r["exact"]:
            cells.append(f"{_fmt_num(r['ks'])} (exact)")
        else:
            cells.append(f"{_fmt_num(r['ks'])} +- {_fmt_num(r['ks_bound'], 3)}")
        lo, hi = r["mean_diff_ci_low"], r["mean_diff_ci_high"]
        cells.append(f"{_fmt_num(r['mean_diff'])} [{_fmt_num(lo, 3)}, {_fmt_num(hi, 3)}]")
        return cells

    return header, render


def _groups_equal(a, b, rtol=1e-9):
    if set(a._groups) != set(b._groups):
        return False
    for key, ga in a._groups.items():
        gb = b._groups[key]
        if (ga.count, ga.nan_count, ga.unscored, ga.non_numeric) != (gb.count, gb.nan_count, gb.unscored,
                                                                     gb.non_numeric):
            return False
        if ga.count:
            for x, y in ((ga.sum, gb.sum), (ga.mean, gb.mean), (ga.m2, gb.m2), (ga.min, gb.min), (ga.max, gb.max)):
                if not (x == y or math.isclose(x, y, rel_tol=rtol, abs_tol=1e-12)):
                    return False
        ia, wa = ga.sketch.sorted_view()
        ib, wb = gb.sketch.sorted_view()
        if ga.sketch.n != gb.sketch.n or not (np.array_equal(ia, ib) and np.array_equal(wa, wb)):
            return False
    return True


# ---- tables (pandas, pyarrow) --------------------------------------------------

_OK, _UNSCORED, _NON_NUMERIC = 0, 1, 2


def _table_rows(table):
    if isinstance(table, Mapping):
        raise TypeError("add_batch() takes a list of records, a pandas DataFrame or a pyarrow Table; "
                        "use add() for one record")
    mod = type(table).__module__
    if mod.startswith("pandas"):
        return table.to_dict("records")
    if mod.startswith("pyarrow"):
        return table.to_pylist()
    return table


def _table_columns(table, agg):
    """Columns for the vectorized path, or None for the row path."""
    mod = type(table).__module__
    if mod.startswith("pandas") and hasattr(table, "columns"):
        names = [str(c) for c in table.columns]
        if len(set(names)) != len(names):
            return None

        def get(name):
            return table[name]

        nrows = len(table)
    elif mod.startswith("pyarrow") and hasattr(table, "column_names"):
        names = list(table.column_names)

        def get(name):
            return table.column(name)

        nrows = table.num_rows
    else:
        return None
    present = set(names)
    for path in agg.by:
        if path not in present:
            return None
    if agg.score is None:
        spec = [(n[len("scores."):], n) for n in names if n.startswith("scores.") and len(n) > 7]
        if not spec:
            return None
    else:
        spec = list(agg.score)
        if any(path not in present for _, path in spec):
            return None
    by_columns = [_column_list(get(p)) for p in agg.by]
    score_columns = []
    for name, path in spec:
        converted = _convert_column(get(path), agg._normalizer)
        if converted is None:
            return None
        score_columns.append((name, converted))
    return by_columns, score_columns, nrows


def _column_list(col):
    if hasattr(col, "to_pylist"):
        return col.to_pylist()
    if hasattr(col, "tolist"):
        return col.tolist()
    return list(col)


def _convert_column(col, normalizer):
    """``(float64 values, int8 status)`` of a score column, or None when it
    holds dicts (flattened by the row path)."""
    if hasattr(col, "to_pylist") and hasattr(col, "is_null"):  # pyarrow
        import pyarrow.types as pat

        if pat.is_integer(col.type) or pat.is_floating(col.type) or pat.is_boolean(col.type):
            nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            values = np.asarray(col.cast("float64").fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
            status = np.where(nulls, _UNSCORED, _OK).astype(np.int8)
            return values, status
        return _convert_objects(col.to_pylist(), normalizer)
    dtype = getattr(col, "dtype", None)
    if dtype is not None and isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        values = np.asarray(col, dtype=np.float64)
        return values, np.zeros(values.shape[0], dtype=np.int8)
    if hasattr(col, "isna") and hasattr(col, "to_numpy") and dtype is not None and \
            str(dtype) in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                           "Float32", "Float64", "boolean"):
        nulls = np.asarray(col.isna(), dtype=bool)
        values = np.asarray(col.to_numpy(dtype=np.float64, na_value=0.0), dtype=np.float64)
        return values, np.where(nulls, _UNSCORED, _OK).astype(np.int8)
    return _convert_objects(_column_list(col), normalizer)


def _convert_objects(values, normalizer):
    n = len(values)
    out = np.zeros(n, dtype=np.float64)
    status = np.zeros(n, dtype=np.int8)
    conv = normalizer.convert
    for i, v in enumerate(values):
        if isinstance(v, Mapping):
            return None
        x = conv(v)
        if x is UNSCORED:
            status[i] = _UNSCORED
        elif x is NON_NUMERIC:
            status[i] = _NON_NUMERIC
        else:
            out[i] = x
    return out, status
