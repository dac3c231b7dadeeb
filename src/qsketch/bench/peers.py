"""One interface for every sketch in the comparison: qsketch and its peers.

A :class:`Peer` describes a sketch: its library, the parameter that sets its
size (``k``, a compression, a relative accuracy), the values that parameter
may take, and how to build an empty sketch behind the common
:class:`Adapter` interface (``update``, ``rank``, ``quantile``, ``merge``,
``serialize``, ``nbytes``).  :data:`PEERS` lists them all; :func:`available`
keeps the ones whose library is installed and says why the others were
left out, so the suite runs (with fewer columns) without the optional peers.

Ranks come in three rules (``side``): ``"inclusive"`` estimates
count(<= x) / n, ``"exclusive"`` count(< x) / n, and ``"mid"`` the mid-rank
(count(< x) + count(<= x)) / 2n.  Sketches with both one-sided answers
(qsketch, DataSketches' KLL, REQ and classic quantiles) give their average as
the mid-rank; t-digests answer a single interpolated rank, used as their
mid-rank, and have no one-sided answer (their ``sides`` is ``("mid",)``).

>>> import numpy as np
>>> from qsketch.bench import peers
>>> peer = peers.get("qsketch learned")
>>> sketch = peer.build(200, seed=1)
>>> sketch.update(np.arange(10.0))
>>> sketch.rank(np.array([4.0]), "mid"), sketch.rank(np.array([4.0]), "inclusive")
(array([0.45]), array([0.5]))
>>> sketch.nbytes() > 0
True

Adding a sketch takes one entry in :data:`PEERS`.  A qsketch sketch with the
KLLSketch interface (``update``, ``rank(x, inclusive)``, ``quantile``,
``merge``, ``to_bytes``, ``from_bytes``), a new class or KLLSketch with other
options, needs one line::

    qsketch_peer("qsketch Sketch", lambda k, seed: qsketch.Sketch(k, seed=seed)),
    qsketch_peer("qsketch spline", lambda k, seed: qsketch.KLLSketch(k, seed=seed, estimator="spline"),
                 "spline"),
"""

import contextlib
import importlib
import io
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Adapter", "Peer", "PEERS", "SIDES", "available", "get", "names", "QSketchAdapter", "qsketch_peer"]

SIDES = ("mid", "inclusive", "exclusive")


def _import(module):
    """Import ``module`` by name (a single place for tests to fail imports)."""
    return importlib.import_module(module)


def _ranks_from_sides(inclusive_fn, exclusive_fn, q, side):
    if side == "inclusive":
        return inclusive_fn(q)
    if side == "exclusive":
        return exclusive_fn(q)
    if side == "mid":
        return 0.5 * (inclusive_fn(q) + exclusive_fn(q))
    raise ValueError(f"side must be one of {SIDES}, got {side!r}")


def weighted_ranks(values, weights, q, side):
    """Ranks of ``q`` among weighted points ``values`` (any order).

    >>> from qsketch.bench.peers import weighted_ranks
    >>> weighted_ranks(np.array([1.0, 2.0]), np.array([1.0, 3.0]), np.array([2.0]), "mid")
    array([0.625])
    """
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(weights, dtype=np.float64)[order])])
    total = cum[-1]
    q = np.asarray(q, dtype=np.float64)
    return _ranks_from_sides(lambda x: cum[np.searchsorted(v, x, "right")] / total,
                             lambda x: cum[np.searchsorted(v, x, "left")] / total, q, side)


class Adapter:
    """A sketch behind the common interface; subclasses wrap one library each.

    ``rank(q, side)`` and ``quantile(p)`` take and return float64 arrays;
    ``rank_one`` and ``quantile_one`` are the library's scalar calls, as a
    user would write them (the speed section times both forms).
    ``serialize`` raises NotImplementedError for a library without a
    serialization; ``nbytes`` is then a documented size rule.
    """

    sides: Tuple[str, ...] = SIDES
    native_rank = True  # the library answers rank queries itself

    def __init__(self, sketch):
        self.sketch = sketch

    def prepare(self, x):
        """The batch ``x`` in the form the library's update takes (done outside timings)."""
        return x

    def update(self, x):
        """Add a float64 array (after ``prepare``)."""
        raise NotImplementedError

    def update_item(self, v):
        """Add one Python float."""
        raise NotImplementedError

    def count(self):
        """Items seen (a read of the sketch's count)."""
        raise NotImplementedError

    def rank(self, q, side="mid"):
        """Estimated ranks of the array ``q`` under rule ``side`` (one of ``self.sides``)."""
        raise NotImplementedError

    def rank_one(self, x):
        """The library's scalar rank call (inclusive where it has that rule)."""
        side = "inclusive" if "inclusive" in self.sides else "mid"
        return float(self.rank(np.array([x]), side)[0])

    def quantile(self, p):
        """Estimated quantiles at the array of probabilities ``p``."""
        raise NotImplementedError

    def quantile_one(self, p):
        """The library's scalar quantile call."""
        return float(self.quantile(np.array([p]))[0])

    def merge(self, other):
        """Merge ``other`` (an adapter of the same peer) into this one."""
        raise NotImplementedError

    def serialize(self):
        """The library's serialized form (bytes); NotImplementedError if it has none."""
        raise NotImplementedError

    def deserialize(self, blob):
        """A new adapter holding the sketch serialized in ``blob``."""
        raise NotImplementedError

    def nbytes(self):
        """The size counted for equal-bytes comparisons: serialized length, or the peer's size rule."""
        return len(self.serialize())


class QSketchAdapter(Adapter):
    """Any qsketch sketch with the KLLSketch interface; ``estimator`` picks the query estimator."""

    def __init__(self, sketch, estimator=None):
        super().__init__(sketch)
        self.estimator = estimator
        # Pass the estimator per call only when it is not the sketch's default:
        # the keyword adds a few hundred nanoseconds to every scalar query.
        default = getattr(sketch, "estimator", None)
        self._kw = {} if estimator is None or estimator == default else {"estimator": estimator}
        if not self._kw:  # the sketch's own bound methods: no adapter overhead on scalar calls
            self.rank_one, self.quantile_one = sketch.rank, sketch.quantile
        self.update_item = sketch.update

    def update(self, x):
        self.sketch.update(x)

    def count(self):
        return self.sketch.n

    def rank(self, q, side="mid"):
        s, kw = self.sketch, self._kw
        return _ranks_from_sides(lambda x: s.rank(x, True, **kw), lambda x: s.rank(x, False, **kw), q, side)

    def rank_one(self, x):
        return self.sketch.rank(x, **self._kw)

    def quantile(self, p):
        return self.sketch.quantile(p, **self._kw)

    def quantile_one(self, p):
        return self.sketch.quantile(p, **self._kw)

    def merge(self, other):
        self.sketch.merge(other.sketch)

    def serialize(self):
        return self.sketch.to_bytes()

    def deserialize(self, blob):
        return QSketchAdapter(type(self.sketch).from_bytes(blob), self.estimator)


class DataSketchesAdapter(Adapter):
    """DataSketches' quantile sketches: KLL, REQ, classic quantiles (both rank rules).

    Their Python ``update`` takes only writable arrays of the sketch's own
    dtype, so ``prepare`` copies; their ``get_rank`` defaults to exclusive,
    so every call passes ``inclusive`` explicitly.  Vectorized ranks go
    through ``get_cdf``, which wants strictly increasing split points.
    """

    def __init__(self, sketch, dtype):
        super().__init__(sketch)
        self.dtype = dtype
        self.update_item = sketch.update
        get_rank, get_quantile = sketch.get_rank, sketch.get_quantile
        if hasattr(sketch, "get_quantiles"):  # the one-sided sketches: inclusive, as in qsketch
            # positional: a keyword argument costs about 0.35 µs per call in these bindings
            self.rank_one = lambda x: get_rank(x, True)
            self.quantile_one = lambda p: get_quantile(p, True)
        else:
            self.rank_one, self.quantile_one = get_rank, get_quantile

    def prepare(self, x):
        return np.array(x, dtype=self.dtype, copy=True)

    def update(self, x):
        if x.dtype != self.dtype or not x.flags.writeable:
            x = self.prepare(x)
        self.sketch.update(x)

    def count(self):
        return self.sketch.n

    def _cdf(self, q, inclusive):
        u, inverse = np.unique(np.asarray(q, dtype=self.dtype), return_inverse=True)
        return np.asarray(self.sketch.get_cdf(u, inclusive), dtype=np.float64)[:-1][inverse]

    def rank(self, q, side="mid"):
        return _ranks_from_sides(lambda x: self._cdf(x, True), lambda x: self._cdf(x, False), q, side)

    def quantile(self, p):
        return np.asarray(self.sketch.get_quantiles(np.asarray(p, dtype=np.float64), True), dtype=np.float64)

    def merge(self, other):
        self.sketch.merge(other.sketch)

    def serialize(self):
        return self.sketch.serialize()

    def deserialize(self, blob):
        return type(self)(type(self.sketch).deserialize(blob), self.dtype)


class DataSketchesTDigestAdapter(DataSketchesAdapter):
    """DataSketches' ``tdigest_double``: one interpolated rank, no inclusive flag."""

    sides = ("mid",)

    def count(self):
        return int(self.sketch.get_total_weight())

    def rank(self, q, side="mid"):
        _check_side(self, side)
        u, inverse = np.unique(np.asarray(q, dtype=np.float64), return_inverse=True)
        return np.asarray(self.sketch.get_cdf(u), dtype=np.float64)[:-1][inverse]

    def quantile(self, p):
        get = self.sketch.get_quantile
        return np.array([get(v) for v in np.asarray(p, dtype=np.float64).tolist()])


def _check_side(adapter, side):
    if side not in adapter.sides:
        raise ValueError(f"{type(adapter).__name__} answers only {adapter.sides} ranks, not {side!r}")


class DigestAdapter(Adapter):
    """A t-digest library with scalar and vectorized cdf and quantile calls.

    ``methods`` names each library's calls: ``update`` (an array), ``add``
    (one item), ``count``, ``cdf`` and ``quantile`` (scalars), ``cdf_vec``
    and ``quantile_vec`` (arrays).  The library's bound methods are used
    directly, so the speed section times no adapter overhead.
    """

    sides = ("mid",)
    methods: dict = {}

    def __init__(self, sketch):
        super().__init__(sketch)
        m = self.methods
        self.update = getattr(sketch, m["update"])
        self.update_item = getattr(sketch, m["add"])
        self.rank_one = getattr(sketch, m["cdf"])
        self.quantile_one = getattr(sketch, m["quantile"])
        self._cdf_vec = getattr(sketch, m["cdf_vec"])
        self._quantile_vec = getattr(sketch, m["quantile_vec"])

    def count(self):
        value = getattr(self.sketch, self.methods["count"])
        return value() if callable(value) else value

    def rank(self, q, side="mid"):
        _check_side(self, side)
        return np.asarray(self._cdf_vec(np.asarray(q, dtype=np.float64)), dtype=np.float64)

    def quantile(self, p):
        return np.asarray(self._quantile_vec(np.asarray(p, dtype=np.float64)), dtype=np.float64)


class FastDigestAdapter(DigestAdapter):
    """fastdigest.TDigest (Rust); parameter ``max_centroids``."""

    methods = dict(update="batch_update", add="update", count="n_values", cdf="cdf", quantile="quantile",
                   cdf_vec="cdf_vec", quantile_vec="quantile_vec")

    def merge(self, other):
        self.sketch.merge_inplace(other.sketch)

    def serialize(self):
        return self.sketch.to_bytes()

    def deserialize(self, blob):
        return FastDigestAdapter(type(self.sketch).from_bytes(blob))


class CrickAdapter(DigestAdapter):
    """crick.TDigest (Cython); parameter ``compression``.  Serialized with pickle (its ``__reduce__``)."""

    methods = dict(update="update", add="add", count="size", cdf="cdf", quantile="quantile",
                   cdf_vec="cdf", quantile_vec="quantile")

    def merge(self, other):
        self.sketch.merge(other.sketch)

    def serialize(self):
        return pickle.dumps(self.sketch, protocol=pickle.HIGHEST_PROTOCOL)

    def deserialize(self, blob):
        return CrickAdapter(pickle.loads(blob))


class PyTDigestAdapter(DigestAdapter):
    """pytdigest.TDigest (C via ctypes); parameter ``compression``.

    It has no serialization of its own; its documented route is the centroid
    array (``get_centroids`` / ``of_centroids``), so that array's bytes, 16
    per centroid, are its size.
    """

    methods = dict(update="update", add="update", count="weight", cdf="cdf", quantile="inverse_cdf",
                   cdf_vec="cdf", quantile_vec="inverse_cdf")

    def merge(self, other):
        self.sketch += other.sketch

    def serialize(self):
        return np.ascontiguousarray(self.sketch.get_centroids(), dtype=np.float64).tobytes()

    def deserialize(self, blob):
        centroids = np.frombuffer(blob, dtype=np.float64).reshape(-1, 2)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a warning for large digests
            return PyTDigestAdapter(type(self.sketch).of_centroids(centroids, self.sketch.compression))


class TDigestPyPIAdapter(Adapter):
    """tdigest (PyPI, pure Python); parameter ``delta`` (smaller is larger).

    No binary serialization (only ``to_dict``): size rule 16 bytes per
    centroid (a float64 mean and a count).
    """

    sides = ("mid",)

    def update(self, x):
        self.sketch.batch_update(x.tolist())

    def update_item(self, v):
        self.sketch.update(v)

    def count(self):
        return self.sketch.n

    def rank(self, q, side="mid"):
        _check_side(self, side)
        cdf = self.sketch.cdf
        return np.array([cdf(v) for v in np.asarray(q, dtype=np.float64).tolist()], dtype=np.float64)

    def rank_one(self, x):
        return self.sketch.cdf(x)

    def quantile(self, p):
        pct = self.sketch.percentile
        return np.array([pct(100.0 * v) for v in np.asarray(p, dtype=np.float64).tolist()], dtype=np.float64)

    def quantile_one(self, p):
        return self.sketch.percentile(100.0 * p)

    def merge(self, other):
        self.sketch = self.sketch + other.sketch

    def nbytes(self):
        return 16 * len(self.sketch)


DDSKETCH_HEADER_BYTES = 32


class DDSketchAdapter(Adapter):
    """ddsketch (Datadog, pure Python): ``LogCollapsingLowestDenseDDSketch``.

    Parameter: the relative accuracy (smaller is larger), with the library's
    default bin limit (2048 bins per sign).  It answers quantiles only; ranks
    here are those of its bins' representative values weighted by their
    counts, computed from the sketch's stores (so both one-sided rules
    exist).  It is serialized by protobuf, an extra dependency, so its size
    is a rule: 8 bytes per bin between each store's lowest and highest
    non-empty key, plus 32 bytes (mapping, zero count).  Updates are a Python
    loop over ``add``.
    """

    native_rank = False

    def update(self, x):
        add = self.sketch.add
        for v in x.tolist():
            add(v)

    def update_item(self, v):
        self.sketch.add(v)

    def count(self):
        return self.sketch.count

    def _points(self):
        sk = self.sketch
        mapping = sk._mapping
        values, weights = [], []
        for sign, store in ((1.0, sk._store), (-1.0, sk._negative_store)):
            for i, count in enumerate(store.bins):
                if count > 0:
                    values.append(sign * mapping.value(i + store.offset))
                    weights.append(count)
        if sk._zero_count > 0:
            values.append(0.0)
            weights.append(sk._zero_count)
        return np.array(values), np.array(weights)

    def rank(self, q, side="mid"):
        values, weights = self._points()
        return weighted_ranks(values, weights, q, side)

    def quantile(self, p):
        get = self.sketch.get_quantile_value
        return np.array([get(v) for v in np.asarray(p, dtype=np.float64).tolist()], dtype=np.float64)

    def quantile_one(self, p):
        return self.sketch.get_quantile_value(p)

    def merge(self, other):
        self.sketch.merge(other.sketch)

    def nbytes(self):
        total = DDSKETCH_HEADER_BYTES
        for store in (self.sketch._store, self.sketch._negative_store):
            if store.count > 0:
                total += 8 * (store.max_key - store.min_key + 1)
        return total


@dataclass(frozen=True)
class Peer:
    """A sketch in the comparison.

    ``candidates`` are the values of the size parameter ``param``, in order of
    increasing serialized size (the equal-bytes tuner bisects over them);
    ``build(value, seed)`` returns an empty :class:`Adapter`.
    ``size_rule`` is None when ``nbytes`` is the serialized length, else how
    the size is counted.  ``seeded``: the seed is honoured (else the sketch
    is deterministic or draws its own randomness); ``deterministic``: the
    same input gives the same sketch, so one trial suffices.
    ``max_items`` caps the items fed in the accuracy runs, ``speed_items``
    and ``speed_queries`` the items and array queries of the speed runs
    (slow peers);
    ``quick`` is False for peers left out of ``--quick``.  ``exact_small``:
    exact (mid-rank) on a few dozen items, checked by the tests.
    """

    name: str
    requires: str
    param: str
    candidates: Sequence[Any]
    build: Callable[[Any, int], Adapter]
    size_rule: Optional[str] = None
    seeded: bool = False
    deterministic: bool = False
    max_items: Optional[int] = None
    speed_items: Optional[int] = None
    speed_queries: Optional[int] = None
    quick: bool = True
    exact_small: bool = False
    notes: str = ""
    sides: Tuple[str, ...] = field(default=SIDES)

    def version(self):
        """The installed version of the peer's library, or "?"."""
        from importlib import metadata

        try:
            return metadata.version(self.requires)
        except metadata.PackageNotFoundError:  # pragma: no cover
            return "?"


def qsketch_peer(name, make, estimator=None, notes=""):
    """A :class:`Peer` for a qsketch sketch: ``make(k, seed)`` returns an empty sketch.

    The sketch needs the KLLSketch interface; ``estimator`` (if given) is
    passed to every query.  The size parameter is ``k``.

    >>> import qsketch
    >>> from qsketch.bench.peers import qsketch_peer
    >>> peer = qsketch_peer("qsketch k", lambda k, seed: qsketch.KLLSketch(k, seed=seed))
    >>> peer.build(64, 0).nbytes() > 0
    True
    """
    import qsketch

    return Peer(name, "qsketch", "k", range(qsketch.MIN_K, 4097),
                lambda k, seed: QSketchAdapter(make(k, seed), estimator),
                seeded=True, exact_small=True, notes=notes)


def _layer_options():
    """KLLSketch options that turn the accuracy layer off (``buckets=0``), or None when this
    qsketch has no accuracy layer."""
    import qsketch

    try:
        qsketch.KLLSketch(qsketch.MIN_K, buckets=0)
    except TypeError:
        return None
    return {"buckets": 0}


def _kll(estimator):
    """KLLSketch with one estimator, as the plain KLL sketch (the accuracy layer off where it exists)."""
    import qsketch

    options = _layer_options() or {}
    shown = "".join(f", {k}={v}" for k, v in options.items())
    return qsketch_peer(f"qsketch {estimator}",
                        lambda k, seed: qsketch.KLLSketch(k, seed=seed, estimator=estimator, **options), estimator,
                        notes=f'`KLLSketch(k, estimator="{estimator}"{shown})`')


def _kll_default():
    """KLLSketch with its defaults: the accuracy layer and its estimator."""
    import qsketch

    estimator = qsketch.KLLSketch(qsketch.MIN_K).estimator
    return qsketch_peer("qsketch default", lambda k, seed: qsketch.KLLSketch(k, seed=seed),
                        notes=f'`KLLSketch(k)`: the defaults, estimator "{estimator}" over the accuracy layer')


def _ds(cls_name, param, candidates, dtype, notes, adapter=DataSketchesAdapter, **kw):
    def build(value, seed):
        ds = _import("datasketches")
        return adapter(getattr(ds, cls_name)(int(value)), dtype)

    return Peer(f"DS {cls_name.replace('_sketch', '')}", "datasketches", param, candidates, build,
                notes=notes, **kw)


def _fastdigest(value, seed):
    return FastDigestAdapter(_import("fastdigest").TDigest(max_centroids=int(value)))


def _crick(value, seed):
    return CrickAdapter(_import("crick").TDigest(float(value)))


def _pytdigest(value, seed):
    return PyTDigestAdapter(_import("pytdigest").TDigest(int(value)))


def _tdigest_pypi(value, seed):
    return TDigestPyPIAdapter(_import("tdigest").TDigest(delta=float(value)))


def _ddsketch(value, seed):
    return DDSketchAdapter(_import("ddsketch").LogCollapsingLowestDenseDDSketch(relative_accuracy=float(value)))


_T = ("mid",)

PEERS: List[Peer] = [
    *([_kll_default()] if _layer_options() is not None else []),
    _kll("step"),
    _kll("linear"),
    _kll("learned"),
    _ds("kll_doubles_sketch", "k", range(8, 4097), np.float64, "float64 items", exact_small=True),
    _ds("kll_floats_sketch", "k", range(8, 4097), np.float32,
        "stores float32: items (and queries) are rounded to float32", exact_small=True),
    # REQ's k must be even; datasketches 5.2 keeps it in 8 bits (k = 256 acts as k = 0), so k < 256.
    _ds("req_floats_sketch", "k", range(4, 256, 2), np.float32,
        "high-rank-accuracy mode (its default); float32 items; k < 256", exact_small=True),
    _ds("quantiles_doubles_sketch", "k", [2 ** i for i in range(1, 16)], np.float64,
        "classic quantiles sketch; k is a power of two, so sizes are coarse", exact_small=True),
    _ds("tdigest_double", "k", range(10, 5001), np.float64, "t-digest; one interpolated rank",
        adapter=DataSketchesTDigestAdapter, deterministic=True, exact_small=True, sides=_T),
    Peer("fastdigest", "fastdigest", "max_centroids", range(4, 5001), _fastdigest, deterministic=True,
         sides=_T, notes="t-digest (Rust)"),
    Peer("crick", "crick", "compression", range(10, 5001), _crick, deterministic=True, sides=_T,
         notes="t-digest (Cython); serialized with pickle"),
    Peer("pytdigest", "pytdigest", "compression", range(10, 5001), _pytdigest, deterministic=True,
         size_rule="16 B per centroid (its centroid array)", exact_small=True, sides=_T,
         notes="t-digest (C)"),
    Peer("tdigest (PyPI)", "tdigest", "delta", np.geomspace(1.0, 1e-4, 400).tolist(), _tdigest_pypi,
         size_rule="16 B per centroid", deterministic=True, max_items=50_000, speed_items=5_000, speed_queries=200,
         quick=False, exact_small=True, sides=_T,
         notes="pure-Python t-digest: fed the first 50,000 items of each stream, full mode only"),
    Peer("ddsketch", "ddsketch", "relative_accuracy", np.geomspace(0.5, 1e-4, 400).tolist(), _ddsketch,
         size_rule="8 B per bin in each store's key span + 32 B", deterministic=True, speed_items=50_000,
         quick=False, notes="pure Python (full mode only); relative-value-error sketch, ranks from its bins"),
]


def names():
    """Names of all peers, in report order.

    >>> from qsketch.bench.peers import names
    >>> "qsketch step" in names(), "DS kll_doubles" in names()
    (True, True)
    """
    return [p.name for p in PEERS]


def get(name):
    """The :class:`Peer` called ``name`` (KeyError if none).

    >>> from qsketch.bench.peers import get
    >>> get("DS kll_doubles").param
    'k'
    """
    for p in PEERS:
        if p.name == name:
            return p
    raise KeyError(name)


def available(selection=None, quick=False):
    """The peers to run and notes on the ones left out.

    ``selection`` is a list of names (default: all); ``quick`` drops peers
    marked ``quick=False``.  A peer whose library does not import is skipped
    with a note, never an error.

    >>> from qsketch.bench.peers import available
    >>> run, notes = available(["qsketch step"])
    >>> [p.name for p in run], notes
    (['qsketch step'], [])
    """
    chosen = PEERS if selection is None else [get(n) for n in selection]
    run, notes = [], []
    for peer in chosen:
        if quick and not peer.quick:
            notes.append(f"{peer.name}: not run in --quick mode ({peer.notes})")
            continue
        try:
            _import(peer.requires)
        except ImportError as exc:
            notes.append(f"{peer.name}: skipped, `{peer.requires}` is not installed ({exc.__class__.__name__}); "
                         f'`pip install "qsketch[bench]"` brings it')
            continue
        run.append(peer)
    return run, notes
