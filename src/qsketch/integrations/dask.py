"""Quantile sketches of Dask collections (install with ``pip install "qsketch[dask]"``).

Each partition (dataframe column) or block (array) is sketched where it
lives, and only the sketches, a few kilobytes each, travel to be merged in a
tree.  Everything that crosses processes pickles through the sketch's binary
form, so the functions work on any Dask scheduler, including a process-based
``distributed.LocalCluster`` or a real cluster.

* :func:`sketch`: one :class:`qsketch.KLLSketch` of a dask Series or Array.
* :func:`approx_quantile`: quantiles of a dask Series or Array, in one pass.
* :func:`aggregation`: a ``dask.dataframe.Aggregation`` for
  ``ddf.groupby(keys)[col].agg(...)``, giving a sketch (or a quantile) per
  group.

Randomness is seeded per partition: with a ``seed``, the same data in the same
partitions gives bit-identical sketches on every run and every cluster.

Dask is imported inside the functions, so importing this module, and
``import qsketch``, need only numpy.

Examples
--------
>>> import numpy as np, pandas as pd, dask.dataframe as dd
>>> from qsketch.integrations import dask as qdask
>>> x = np.random.default_rng(0).normal(size=10_000)
>>> ddf = dd.from_pandas(pd.DataFrame({"x": x, "g": np.arange(10_000) % 3}), npartitions=4)
>>> s = qdask.sketch(ddf["x"], seed=1)
>>> s.n
10000
>>> med = qdask.approx_quantile(ddf["x"], 0.5, seed=1)
>>> bool(abs(med - np.median(x)) < 0.05)
True
>>> per_group = ddf.groupby("g")["x"].agg(qdask.aggregation(seed=1)).compute()
>>> sorted(int(sk.n) for sk in per_group)
[3333, 3333, 3334]
"""

import functools
import zlib

import numpy as np

from qsketch import _validate
from qsketch._core import DEFAULT_K, MAX_K, MIN_K, KLLSketch
from qsketch.sketch import merge_all

__all__ = ["sketch", "approx_quantile", "aggregation"]

DEFAULT_SPLIT_EVERY = 8


def _require_dask(dataframe=False):
    """Import dask (and dask.dataframe), or say which extra to install."""
    try:
        import dask  # noqa: F401
        import dask.delayed  # noqa: F401

        if dataframe:
            import dask.dataframe  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "qsketch.integrations.dask needs Dask; install it with: pip install 'qsketch[dask]' "
            f"(dask[dataframe] and distributed) [{exc}]"
        ) from exc
    return dask


# ---- pieces that run on the workers (module-level, so they pickle by name) ----


def _as_float64(part):
    """A partition or block as a flat float64 array; missing values become NaN."""
    to_numpy = getattr(part, "to_numpy", None)
    if to_numpy is not None and not isinstance(part, np.ndarray):  # pandas Series / Index
        if part.dtype == np.float64:
            return to_numpy()  # NaN is already the missing value: no copy
        try:
            return to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"qsketch sketches numbers; cannot convert a column of dtype {part.dtype} to float64: {exc}"
            ) from None
    arr = np.asarray(part)
    return arr.reshape(-1)


def _sketch_part(part, k, seed, nan_policy):
    sk = KLLSketch(k, seed=seed, nan_policy=nan_policy)
    sk.update(_as_float64(part))
    return sk


def _merge_many(*sketches):
    return merge_all(sketches)


def _partition_seeds(seed, count):
    """One 64-bit seed per partition: ``SeedSequence(seed, spawn_key=(i,))``.

    Deterministic given ``seed``; independent streams across partitions.
    With ``seed=None`` the entropy is drawn once from the OS.
    """
    root = np.random.SeedSequence(seed)
    return [
        int(np.random.SeedSequence(root.entropy, spawn_key=(i,)).generate_state(1, np.uint64)[0])
        for i in range(count)
    ]


def _check_split_every(split_every):
    if split_every is None:
        return DEFAULT_SPLIT_EVERY
    if split_every is False:
        return False
    if isinstance(split_every, bool) or not isinstance(split_every, (int, np.integer)) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, False or None; got {split_every!r}")
    return int(split_every)


def _partitions(collection):
    """The partitions (or blocks) of a dask Series or Array as a list of Delayed."""
    dask = _require_dask()
    if not dask.is_dask_collection(collection):
        raise TypeError(
            f"expected a dask Series or dask Array; got {type(collection).__name__} "
            "(for in-memory data use KLLSketch.update)"
        )
    try:
        import dask.dataframe as dd
    except ImportError:  # dask installed without its dataframe extra: arrays still work
        dd = None
    if dd is not None and isinstance(collection, dd.DataFrame):
        raise TypeError("sketch a single column: pass ddf['column'], not a whole DataFrame")
    if dd is not None and isinstance(collection, (dd.Series, dd.Index)):
        return list(collection.to_delayed())
    import dask.array as da

    if isinstance(collection, da.Array):
        return list(np.asarray(collection.to_delayed(), dtype=object).reshape(-1))
    raise TypeError(f"expected a dask Series or dask Array; got {type(collection).__name__}")


def sketch(collection, k=DEFAULT_K, seed=None, split_every=None, *, nan_policy="ignore", compute=True):
    """Sketch a dask Series (a dataframe column) or a dask Array.

    Every partition or block is sketched by the worker that holds it (arrays
    are flattened), then the sketches are merged in a tree, ``split_every`` at
    a time: the same shape as Dask's own reductions.  NaN and missing values
    are skipped and counted in ``nan_count`` (``nan_policy="raise"`` makes a
    partition holding one fail instead).

    Parameters
    ----------
    collection : dask.dataframe.Series or dask.array.Array
        Numbers (any integer, float or bool dtype, nullable pandas dtypes too).
    k : int
        Accuracy parameter of every sketch, as in ``KLLSketch(k)``.
    seed : int or None
        Root seed; partition i gets a seed derived from (seed, i) with
        ``numpy.random.SeedSequence``, so the result is reproducible bit for
        bit for the same data and partitions.  None draws one from the OS.
    split_every : int >= 2, False or None
        Fan-in of the merge tree (None: 8; False: merge all at once).
    nan_policy : {"ignore", "raise"}
    compute : bool
        True returns the merged :class:`qsketch.KLLSketch`; False returns a
        ``dask.delayed`` object to compute later, maybe with other work.

    Examples
    --------
    >>> import dask.array as da
    >>> from qsketch.integrations import dask as qdask
    >>> x = da.arange(1_000_000, chunks=100_000)
    >>> s = qdask.sketch(x, seed=7, split_every=4)
    >>> s.n, s.min, s.max
    (1000000, 0.0, 999999.0)
    >>> abs(s.quantile(0.25) - 250_000) < 0.02 * 1_000_000
    True
    """
    dask = _require_dask()
    k = _validate.check_k(k, MIN_K, MAX_K)
    if seed is not None:
        _validate.check_seed(seed)
    _validate.check_nan_policy(nan_policy)
    fan_in = _check_split_every(split_every)
    parts = _partitions(collection)
    seeds = _partition_seeds(seed, len(parts))
    level = [
        dask.delayed(_sketch_part, pure=True)(p, k, s, nan_policy)
        for p, s in zip(parts, seeds)
    ]
    merge = dask.delayed(_merge_many, pure=True)
    while len(level) > 1:
        step = len(level) if fan_in is False else fan_in
        level = [
            merge(*level[i:i + step]) if len(level[i:i + step]) > 1 else level[i]
            for i in range(0, len(level), step)
        ]
    result = level[0]
    return result.compute() if compute else result


def approx_quantile(collection, q, k=DEFAULT_K, seed=None, split_every=None, *, inclusive=True):
    """Approximate quantiles of a dask Series or Array, in one pass over the data.

    ``q`` is a probability or an array of them, in [0, 1]; the answer is a
    float or an array of that shape, within the sketch's rank error (about
    1.3% of n at 99% confidence for k=200; exact for small data).  The
    quantile definition is :meth:`qsketch.KLLSketch.quantile`'s.  For several
    questions about the same data, build the sketch once with :func:`sketch`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from qsketch.integrations import dask as qdask
    >>> x = da.from_array(np.arange(1, 101, dtype=float), chunks=10)
    >>> qdask.approx_quantile(x, [0.1, 0.5, 0.9], seed=0)   # exact while small
    array([10., 50., 90.])
    """
    probabilities = q if np.ndim(q) == 0 else np.asarray(q)
    _validate.as_probabilities(probabilities)  # fail before any work on the cluster
    sk = sketch(collection, k=k, seed=seed, split_every=split_every)
    return sk.quantile(probabilities, inclusive=inclusive)


# ---- groupby aggregation -------------------------------------------------------


def _group_seed(seed, key, values):
    """A seed for one group's chunk: from (seed, the group key, the chunk's values).

    The chunk step does not know its partition number, so the data stands in
    for it: deterministic for a given seed, data and partitioning, and
    distinct for the pieces of one group in different partitions.
    """
    if seed is None:
        return None
    mix = [seed, zlib.crc32(repr(key).encode()), zlib.crc32(values.tobytes()), values.shape[0]]
    return int(np.random.SeedSequence(mix).generate_state(1, np.uint64)[0])


def _chunk_group(values, k, seed, nan_policy):
    arr = _as_float64(values)
    sk = KLLSketch(k, seed=_group_seed(seed, values.name, arr), nan_policy=nan_policy)
    sk.update(arr)
    return sk.to_bytes()


# Between the steps, a group's sketch travels as its bytes (``to_bytes()``), not
# as a KLLSketch: Dask may move the intermediate frames through a P2P shuffle,
# which converts them to Arrow, and Arrow stores bytes but not Python objects.


def _chunk(grouped, k, seed, nan_policy):
    """Per partition: a sketch per group (an object Series of bytes, indexed by the groups)."""
    return grouped.apply(_chunk_group, k, seed, nan_policy)


def _merge_group(blobs):
    sketches = [KLLSketch.from_bytes(b) for b in blobs]
    return sketches[0].to_bytes() if len(sketches) == 1 else merge_all(sketches).to_bytes()


def _agg(grouped):
    """Merge the sketches of each group (the combine and aggregate steps)."""
    return grouped.apply(_merge_group)


def _finalize_sketch(blobs):
    return blobs.map(KLLSketch.from_bytes).astype(object)


def _finalize_quantile(blobs, q, inclusive):
    return blobs.map(lambda b: KLLSketch.from_bytes(b).quantile(q, inclusive=inclusive)).astype(np.float64)


def aggregation(k=DEFAULT_K, seed=None, *, q=None, inclusive=True, nan_policy="ignore", name=None):
    """A ``dask.dataframe.Aggregation`` that sketches each group.

    Use it as ``ddf.groupby(keys)[column].agg(aggregation())`` (or in a dict
    of aggregations).  Each partition builds one sketch per group (chunk),
    the sketches of a group are merged as the groupby's tree reduction goes
    (``split_every`` of ``.agg`` applies; ``split_out`` and shuffles work too:
    between steps the sketches travel as their bytes, which Arrow can carry),
    and the result holds one :class:`qsketch.KLLSketch` per group, in an
    object column.  With ``q``, a probability, the result is that quantile of
    each group instead (float64).

    Parameters
    ----------
    k : int
        Accuracy parameter of every sketch.
    seed : int or None
        With a seed, each group's sketch in each partition is seeded from
        (seed, group key, the partition's values of that group): the result
        is reproducible for the same data and partitioning.
    q : float or None
        A probability in [0, 1]: finalize each group's sketch into
        ``sketch.quantile(q, inclusive=inclusive)``.
    nan_policy : {"ignore", "raise"}
    name : str or None
        The aggregation's name (Dask keys intermediate results by it); the
        default is derived from the parameters.

    Examples
    --------
    >>> import numpy as np, pandas as pd, dask.dataframe as dd
    >>> from qsketch.integrations import dask as qdask
    >>> pdf = pd.DataFrame({"g": ["a", "b"] * 150, "x": np.arange(300.0)})
    >>> ddf = dd.from_pandas(pdf, npartitions=3)
    >>> sk = ddf.groupby("g")["x"].agg(qdask.aggregation(seed=1)).compute()
    >>> sk["a"].n, sk["a"].min, sk["b"].max
    (150, 0.0, 299.0)
    >>> ddf.groupby("g")["x"].agg(qdask.aggregation(q=0.5, seed=1)).compute().sort_index()
    g
    a    148.0
    b    149.0
    Name: x, dtype: float64
    """
    _require_dask(dataframe=True)
    import dask.dataframe as dd

    k = _validate.check_k(k, MIN_K, MAX_K)
    if seed is not None:
        seed = _validate.check_seed(seed)
    _validate.check_nan_policy(nan_policy)
    if q is not None:
        if np.ndim(q) != 0:
            raise ValueError("aggregation(q=...) takes one probability; use several aggregations for more")
        q = float(_validate.as_probabilities(q))
    if name is None:
        name = f"qsketch_kll_k{k}_s{seed}" + ("" if q is None else f"_q{q!r}_{'i' if inclusive else 'e'}")
    if q is None:
        finalize = _finalize_sketch
    else:
        finalize = functools.partial(_finalize_quantile, q=q, inclusive=bool(inclusive))
    return dd.Aggregation(
        name=name,
        chunk=functools.partial(_chunk, k=k, seed=seed, nan_policy=nan_policy),
        agg=_agg,
        finalize=finalize,
    )
