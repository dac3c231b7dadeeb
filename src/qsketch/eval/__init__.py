"""Aggregation of evaluation score streams: grouped, mergeable, exact where
possible.

:class:`ScoreAggregator` groups per-sample scores (of capability and safety
evals: accuracy, behaviour-matching rates, similarity and reward-model
scores) by fields such as model and task, and keeps per group exact moments
and a quantile sketch.  Aggregators merge across shards and runs and save to
one checksummed file.  Readers cover JSONL, CSV, Parquet, lm-evaluation-
harness ``--log_samples`` files and Inspect AI logs; the ``qsketch``
command wraps it all (``aggregate``, ``merge``, ``report``, ``compare``).
Only numpy is needed; Inspect AI, pyarrow, pandas, tqdm and matplotlib are
used when installed.  See docs/eval.md.

>>> from qsketch.eval import ScoreAggregator
>>> agg = ScoreAggregator(by=["model", "task"], seed=0)
>>> agg.add_batch([
...     {"model": "m1", "task": "qa", "scores": {"match": "C"}},
...     {"model": "m1", "task": "qa", "scores": {"match": "I"}},
...     {"model": "m1", "task": "qa", "scores": {"match": "N"}},
... ])
>>> g = agg.group(("m1", "qa", "match"))
>>> g.count, g.unscored, g.mean
(2, 1, 0.5)
"""

from qsketch.eval.aggregator import (
    DEFAULT_QUANTILES,
    DEFAULT_THRESHOLDS,
    METRIC_COLUMN,
    GroupStats,
    IngestReport,
    KSResult,
    ScoreAggregator,
    ks_distance,
    sketch_is_exact,
)
from qsketch.eval.fileformat import register_sketch_type, sketch_types
from qsketch.eval.records import Location, RecordError, get_field
from qsketch.eval.scores import DEFAULT_GRADES, NonNumericScore, flatten_scores, normalize_score, parse_grades
from qsketch.eval.sources import (
    FORMATS,
    detect_format,
    read_csv,
    read_inspect_log,
    read_json,
    read_jsonl,
    read_lm_eval,
    read_parquet,
    read_records,
)
from qsketch.eval.table import Table

__all__ = [
    "ScoreAggregator",
    "GroupStats",
    "IngestReport",
    "KSResult",
    "ks_distance",
    "sketch_is_exact",
    "Table",
    "Location",
    "RecordError",
    "get_field",
    "NonNumericScore",
    "normalize_score",
    "flatten_scores",
    "parse_grades",
    "read_records",
    "read_jsonl",
    "read_json",
    "read_csv",
    "read_parquet",
    "read_lm_eval",
    "read_inspect_log",
    "detect_format",
    "register_sketch_type",
    "sketch_types",
    "DEFAULT_GRADES",
    "DEFAULT_QUANTILES",
    "DEFAULT_THRESHOLDS",
    "METRIC_COLUMN",
    "FORMATS",
]
