"""Score normalisation: numbers, booleans, grades, text, dicts, unscored."""

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from qsketch.eval import (
    DEFAULT_GRADES,
    NonNumericScore,
    ScoreAggregator,
    flatten_scores,
    normalize_score,
    parse_grades,
)


@pytest.mark.parametrize("value, expected", [
    (True, 1.0), (False, 0.0), (np.bool_(True), 1.0),
    (0, 0.0), (7, 7.0), (-3, -3.0), (np.int64(5), 5.0), (np.uint8(200), 200.0),
    (0.25, 0.25), (np.float32(0.5), 0.5), (float("inf"), math.inf), (Fraction(1, 4), 0.25), (Decimal("0.5"), 0.5),
    ("C", 1.0), ("I", 0.0), ("P", 0.5),
    ("0.75", 0.75), (" 3 ", 3.0), ("1e-3", 0.001), ("-2", -2.0),
    ("true", 1.0), ("False", 0.0), ("YES", 1.0), ("no", 0.0),
])
def test_numeric_values(value, expected):
    assert normalize_score(value) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "N"])
def test_unscored(value):
    assert normalize_score(value) is None


def test_nan_stays_nan():
    assert math.isnan(normalize_score(float("nan")))
    assert math.isnan(normalize_score("nan"))


@pytest.mark.parametrize("value", [[1.5, 10], (0.1, 2), "hello", "C+", object(), 10**400, {"a": 1}])
def test_non_numeric(value):
    with pytest.raises(NonNumericScore):
        normalize_score(value)


def test_custom_grades():
    grades = {"A": 1, "B": 0.5, "F": 0, "X": None}
    assert normalize_score("A", grades) == 1.0
    assert normalize_score("B", grades) == 0.5
    assert normalize_score("X", grades) is None
    with pytest.raises(NonNumericScore):  # Inspect's grades are replaced, not extended
        normalize_score("C", grades)
    # N counted as 0 instead of unscored, like Inspect's own value_to_float
    assert normalize_score("N", {**DEFAULT_GRADES, "N": 0}) == 0.0


def test_bad_grades():
    with pytest.raises(TypeError):
        normalize_score("A", {"A": "one"})
    with pytest.raises(ValueError):
        normalize_score("A", {"A": float("nan")})
    with pytest.raises(ValueError):
        parse_grades("C")
    with pytest.raises(ValueError):
        parse_grades("C=high")
    assert parse_grades("C=1, I=0 ,N=none") == {"C": 1.0, "I": 0.0, "N": None}


def test_flatten_nested_dicts():
    assert flatten_scores("s", {"a": 1, "b": {"c": "C", "d": {"e": None}}}) == [
        ("s.a", 1), ("s.b.c", "C"), ("s.b.d.e", None)]
    assert flatten_scores("s", [1, 2]) == [("s", [1, 2])]


def test_aggregator_counts_every_kind_of_value():
    agg = ScoreAggregator(by=["model"], seed=0)
    values = [1, 0.5, True, "C", "I", "P", "N", None, "", float("nan"), [1.0, 2.0], "free text", "0.25"]
    for v in values:
        agg.add({"model": "m", "scores": {"s": v}})
    g = agg.group(("m", "s"))
    numeric = [1.0, 0.5, 1.0, 1.0, 0.0, 0.5, 0.25]
    assert g.count == len(numeric)
    assert g.unscored == 3
    assert g.nan_count == 1
    assert g.non_numeric == 2
    assert g.samples == len(values)
    assert g.sum == pytest.approx(sum(numeric))
    row = agg.summary()[0]
    assert (row["n"], row["unscored"], row["nan"], row["non_numeric"]) == (7, 3, 1, 2)


def test_dict_scores_become_series():
    agg = ScoreAggregator(by=["model"], seed=0)
    agg.add({"model": "m", "scores": {"judge": {"helpful": 0.8, "harmless": "C"}, "match": "I"}})
    agg.add({"model": "m", "scores": {"judge": {"helpful": 0.4, "harmless": "N"}, "match": "C"}})
    assert agg.groups() == [("m", "judge.harmless"), ("m", "judge.helpful"), ("m", "match")]
    assert agg.group(("m", "judge.helpful")).mean == pytest.approx(0.6)
    assert agg.group(("m", "judge.harmless")).unscored == 1


def test_grades_configurable_in_aggregator():
    agg = ScoreAggregator(by=["m"], score="g", grades={"PASS": 1, "FAIL": 0, "SKIP": None}, seed=0)
    agg.add_batch([{"m": 1, "g": v} for v in ["PASS", "FAIL", "PASS", "SKIP"]])
    g = agg.group((1, "g"))
    assert (g.count, g.unscored, g.mean) == (3, 1, pytest.approx(2 / 3))
