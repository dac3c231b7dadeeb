"""Score normalisation: every per-sample score becomes a float, "unscored",
or "non-numeric", and dict-valued scores become one series per key.

The rules, in order (see :func:`normalize_score`):

* ``None`` and the empty string are unscored;
* ``bool`` (and numpy bools) give 1.0 / 0.0; other real numbers their float
  value (NaN stays NaN: the aggregator counts it apart);
* strings: the letter grades (by default Inspect AI's ``C`` = 1, ``I`` = 0,
  ``P`` = 0.5, ``N`` = unscored; configurable), then ``true/false/yes/no``
  in any case, then numeric text such as ``"0.75"`` (CSV cells);
* anything else (lists, perplexity pairs, other text) is non-numeric: it is
  skipped and counted, never silently dropped.

Dict-valued scores (Inspect scorers that return several values) are
flattened into ``name.key`` series by :func:`flatten_scores`.
"""

import math
import numbers
from decimal import Decimal

import numpy as np

from qsketch.errors import QSketchError

__all__ = [
    "DEFAULT_GRADES",
    "NonNumericScore",
    "normalize_score",
    "flatten_scores",
    "parse_grades",
]

#: Inspect AI's letter grades (CORRECT, INCORRECT, PARTIAL, NOANSWER); None
#: means "unscored".
DEFAULT_GRADES = {"C": 1.0, "I": 0.0, "P": 0.5, "N": None}

_BOOL_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}

# Sentinels used on the hot path (normalize() returns one of these or a float).
UNSCORED = object()
NON_NUMERIC = object()


class NonNumericScore(QSketchError, ValueError):
    """A score value that is neither a number nor a known grade.

    Examples
    --------
    >>> from qsketch.eval import normalize_score, NonNumericScore
    >>> try:
    ...     normalize_score([2.5, 10])
    ... except NonNumericScore as e:
    ...     print(e)
    non-numeric score [2.5, 10] (list)
    """


def _check_grades(grades):
    if grades is None:
        return dict(DEFAULT_GRADES)
    out = {}
    for key, value in dict(grades).items():
        if not isinstance(key, str):
            raise TypeError(f"grade names must be strings; got {key!r}")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"grade {key!r} must map to a number or None; got {value!r}")
            value = float(value)
            if math.isnan(value):
                raise ValueError(f"grade {key!r} must not map to NaN (use None for unscored)")
        out[key] = value
    return out


def parse_grades(text):
    """Parse a grade mapping written as ``"C=1,I=0,P=0.5,N="`` (empty: unscored).

    Examples
    --------
    >>> from qsketch.eval import parse_grades
    >>> parse_grades("C=1,I=0,P=0.5,N=")
    {'C': 1.0, 'I': 0.0, 'P': 0.5, 'N': None}
    >>> parse_grades("PASS=1,FAIL=0")
    {'PASS': 1.0, 'FAIL': 0.0}
    """
    grades = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"grades are written NAME=VALUE (empty VALUE: unscored); got {part!r}")
        value = value.strip()
        if value == "" or value.lower() in ("none", "unscored"):
            grades[name.strip()] = None
        else:
            try:
                grades[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"grade {name.strip()!r}: {value!r} is not a number") from None
    return _check_grades(grades)


def _describe(value):
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


class Normalizer:
    """The fast normaliser used by the aggregator: ``convert(value)`` returns
    a float, UNSCORED or NON_NUMERIC (never raises)."""

    __slots__ = ("grades",)

    def __init__(self, grades=None):
        self.grades = _check_grades(grades)

    def convert(self, value):
        cls = type(value)
        if cls is float:
            return value
        if cls is bool:
            return 1.0 if value else 0.0
        if cls is int:
            try:
                return float(value)
            except OverflowError:
                return NON_NUMERIC
        if value is None:
            return UNSCORED
        if cls is str:
            return self._convert_str(value)
        if isinstance(value, (bool, np.bool_)):
            return 1.0 if value else 0.0
        if isinstance(value, (numbers.Real, Decimal)):  # numpy scalars, Fraction, Decimal, ...
            try:
                return float(value)
            except (OverflowError, ValueError, TypeError):
                return NON_NUMERIC
        if isinstance(value, str):
            return self._convert_str(str(value))
        if _is_missing(value):
            return UNSCORED
        return NON_NUMERIC

    def _convert_str(self, text):
        grades = self.grades
        if text in grades:
            g = grades[text]
            return UNSCORED if g is None else g
        stripped = text.strip()
        if stripped == "":
            return UNSCORED
        if stripped in grades:
            g = grades[stripped]
            return UNSCORED if g is None else g
        low = stripped.lower()
        if low in _BOOL_WORDS:
            return _BOOL_WORDS[low]
        try:
            return float(stripped)
        except ValueError:
            return NON_NUMERIC


def _is_missing(value):
    """pandas.NA / NaT-like "missing" markers, without importing pandas."""
    name = type(value).__name__
    return name in ("NAType", "NaTType")


def normalize_score(value, grades=None):
    """Convert one score value to a float, or None when it is unscored.

    Raises :class:`NonNumericScore` for values that are not scores (lists,
    perplexity pairs, free text).  Dict values are not scores either: flatten
    them first with :func:`flatten_scores`.

    Examples
    --------
    >>> from qsketch.eval import normalize_score
    >>> normalize_score(True), normalize_score(3), normalize_score("C"), normalize_score("P")
    (1.0, 3.0, 1.0, 0.5)
    >>> normalize_score("N") is None, normalize_score(None) is None
    (True, True)
    >>> normalize_score("0.25"), normalize_score("yes")
    (0.25, 1.0)
    >>> normalize_score("A", grades={"A": 1, "B": 0.5, "F": 0})
    1.0
    """
    if isinstance(value, dict):
        raise NonNumericScore(f"non-numeric score {_describe(value)}: flatten dict-valued scores with flatten_scores()")
    out = Normalizer(grades).convert(value)
    if out is UNSCORED:
        return None
    if out is NON_NUMERIC:
        raise NonNumericScore(f"non-numeric score {_describe(value)}")
    return out


def flatten_scores(name, value, out=None):
    """Flatten a possibly dict-valued score into ``[(series_name, value), ...]``.

    A dict ``{"a": 1, "b": {"c": 0}}`` under ``name`` gives the series
    ``name.a`` and ``name.b.c``; any other value gives ``[(name, value)]``.

    Examples
    --------
    >>> from qsketch.eval import flatten_scores
    >>> flatten_scores("match", "C")
    [('match', 'C')]
    >>> flatten_scores("judge", {"helpful": 0.8, "harmless": {"strict": 1}})
    [('judge.helpful', 0.8), ('judge.harmless.strict', 1)]
    """
    if out is None:
        out = []
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten_scores(f"{name}.{key}", sub, out)
    else:
        out.append((name, value))
    return out
