"""Speed benchmarks: qsketch.KLLSketch against Apache DataSketches' KLL, k = 200.

Run with

    pytest benchmarks/test_speed.py --benchmark-only

Each group holds one operation: a qsketch case, the DataSketches case
(``datasketches.kll_doubles_sketch``, skipped when the package is missing)
and, where it helps, a reference (``np.sort``) or DataSketches' own vectorized
form.  Compare cases within a group, in one run: the machine is shared and
noisy, so absolute times drift.  ``benchmarks/speed_report.py`` times the same
operations interleaved and reports the ratios against the targets.

Sizes follow the performance issue: 1e7 items for the batch update, 2e5
scalar updates, micro-batches of 1024 (1e6 items), 1e5 queries on a 1e6-item
sketch, 100 merges of 1e5-item sketches, serialization of a 1e6-item sketch.
Scalar rank and quantile calls are timed on the same 1e6-item sketch.  The
batch group holds the physical limits: ``np.sort``, a plain ``np.sum`` and
exact ``np.quantile`` of the same array.  (``qsketch bench`` times every peer,
not only DataSketches' KLL, with its own interleaved timer.)
"""

import numpy as np
import pytest

import qsketch

K = 200
SEED = 20240611

N_BATCH = 10_000_000
N_ITEM = 200_000
N_MICRO = 1_000_000
MICRO = 1024
N_QUERY_SKETCH = 1_000_000
N_QUERIES = 100_000
N_PARTS = 100
PART_N = 100_000
N_SERDE = 1_000_000


def _ds():
    return pytest.importorskip("datasketches")


def _rng(offset):
    return np.random.default_rng(SEED + offset)


# ---- data fixtures (seeded) -----------------------------------------------------


@pytest.fixture(scope="module")
def batch_data():
    return _rng(1).standard_normal(N_BATCH)


@pytest.fixture(scope="module")
def batch_data_ds(batch_data):
    # DataSketches' update takes only writable float64 arrays; copy outside the timing.
    return np.array(batch_data, copy=True)


@pytest.fixture(scope="module")
def item_data():
    return _rng(2).standard_normal(N_ITEM).tolist()


@pytest.fixture(scope="module")
def micro_chunks():
    y = _rng(3).standard_normal(N_MICRO)
    return [y[i:i + MICRO] for i in range(0, N_MICRO, MICRO)]


@pytest.fixture(scope="module")
def query_data():
    return _rng(4).standard_normal(N_QUERY_SKETCH)


@pytest.fixture(scope="module")
def qs_query_sketch(query_data):
    s = qsketch.KLLSketch(K, seed=1)
    s.update(query_data)
    return s


@pytest.fixture(scope="module")
def ds_query_sketch(query_data):
    ds = _ds()
    s = ds.kll_doubles_sketch(K)
    s.update(np.array(query_data, copy=True))
    return s


@pytest.fixture(scope="module")
def queries():
    return _rng(5).standard_normal(N_QUERIES)  # random order


@pytest.fixture(scope="module")
def split_points(queries):
    return np.unique(queries)  # get_cdf needs strictly increasing split points


@pytest.fixture(scope="module")
def probabilities():
    return _rng(6).random(N_QUERIES)


@pytest.fixture(scope="module")
def part_data():
    rng = _rng(7)
    return [rng.standard_normal(PART_N) for _ in range(N_PARTS)]


@pytest.fixture(scope="module")
def qs_parts(part_data):
    parts = []
    for i, d in enumerate(part_data):
        s = qsketch.KLLSketch(K, seed=1000 + i)
        s.update(d)
        parts.append(s)
    return parts


@pytest.fixture(scope="module")
def ds_parts(part_data):
    ds = _ds()
    parts = []
    for d in part_data:
        s = ds.kll_doubles_sketch(K)
        s.update(np.array(d, copy=True))
        parts.append(s)
    return parts


@pytest.fixture(scope="module")
def serde_data():
    return _rng(8).standard_normal(N_SERDE)


@pytest.fixture(scope="module")
def qs_serde_sketch(serde_data):
    s = qsketch.KLLSketch(K, seed=1)
    s.update(serde_data)
    return s


@pytest.fixture(scope="module")
def ds_serde_sketch(serde_data):
    ds = _ds()
    s = ds.kll_doubles_sketch(K)
    s.update(np.array(serde_data, copy=True))
    return s


# ---- batch update of 1e7 items ----------------------------------------------------

BATCH_ROUNDS = 3  # each round takes a fraction of a second; pedantic keeps the suite short


@pytest.mark.benchmark(group="update-batch-1e7")
def test_batch_update_qsketch(benchmark, batch_data):
    def run():
        s = qsketch.KLLSketch(K, seed=1)
        s.update(batch_data)
        return s

    s = benchmark.pedantic(run, rounds=BATCH_ROUNDS, iterations=1, warmup_rounds=0)
    assert s.n == N_BATCH


@pytest.mark.benchmark(group="update-batch-1e7")
def test_batch_update_datasketches(benchmark, batch_data_ds):
    ds = _ds()

    def run():
        s = ds.kll_doubles_sketch(K)
        s.update(batch_data_ds)
        return s

    s = benchmark.pedantic(run, rounds=BATCH_ROUNDS, iterations=1, warmup_rounds=0)
    assert s.n == N_BATCH


@pytest.mark.benchmark(group="update-batch-1e7")
def test_batch_update_reference_np_sort(benchmark, batch_data):
    out = benchmark.pedantic(np.sort, args=(batch_data,), rounds=BATCH_ROUNDS, iterations=1, warmup_rounds=0)
    assert out.shape == batch_data.shape


@pytest.mark.benchmark(group="update-batch-1e7")
def test_batch_update_reference_np_sum(benchmark, batch_data):
    # a plain pass over the array: the memory-bandwidth floor of any batch update
    out = benchmark.pedantic(np.sum, args=(batch_data,), rounds=BATCH_ROUNDS, iterations=1, warmup_rounds=0)
    assert np.isfinite(out)


@pytest.mark.benchmark(group="update-batch-1e7")
def test_batch_update_reference_np_quantile(benchmark, batch_data):
    # exact quantiles (selection, no sketch): what the sketch's answers approximate
    ps = [0.5, 0.9, 0.99, 0.999]
    out = benchmark.pedantic(np.quantile, args=(batch_data, ps), rounds=BATCH_ROUNDS, iterations=1,
                             warmup_rounds=0)
    assert out.shape == (4,)


# ---- per-item updates from a Python loop ------------------------------------------


@pytest.mark.benchmark(group="update-item-2e5")
def test_item_update_qsketch(benchmark, item_data):
    def run():
        s = qsketch.KLLSketch(K, seed=1)
        upd = s.update
        for v in item_data:
            upd(v)
        return s.n  # reading n flushes any staged scalar updates: part of the cost

    assert benchmark(run) == N_ITEM


@pytest.mark.benchmark(group="update-item-2e5")
def test_item_update_datasketches(benchmark, item_data):
    ds = _ds()

    def run():
        s = ds.kll_doubles_sketch(K)
        upd = s.update
        for v in item_data:
            upd(v)
        return s.n

    assert benchmark(run) == N_ITEM


# ---- micro-batches -----------------------------------------------------------------


@pytest.mark.benchmark(group="update-microbatch-1024")
def test_microbatch_update_qsketch(benchmark, micro_chunks):
    def run():
        s = qsketch.KLLSketch(K, seed=1)
        for c in micro_chunks:
            s.update(c)
        return s

    assert benchmark(run).n == N_MICRO


@pytest.mark.benchmark(group="update-microbatch-1024")
def test_microbatch_update_datasketches(benchmark, micro_chunks):
    ds = _ds()

    def run():
        s = ds.kll_doubles_sketch(K)
        for c in micro_chunks:  # views of a writable float64 array: accepted as they are
            s.update(c)
        return s

    assert benchmark(run).n == N_MICRO


# ---- rank queries ------------------------------------------------------------------


@pytest.mark.benchmark(group="rank-1e5")
def test_rank_qsketch_vectorized(benchmark, qs_query_sketch, queries):
    out = benchmark(qs_query_sketch.rank, queries)
    assert out.shape == queries.shape


@pytest.mark.benchmark(group="rank-1e5")
def test_rank_datasketches_loop(benchmark, ds_query_sketch, queries):
    values = queries.tolist()
    get_rank = ds_query_sketch.get_rank

    def run():
        return [get_rank(v, True) for v in values]

    assert len(benchmark(run)) == N_QUERIES


@pytest.mark.benchmark(group="rank-1e5")
def test_cdf_qsketch_sorted(benchmark, qs_query_sketch, split_points):
    out = benchmark(qs_query_sketch.cdf, split_points)
    assert out.shape == (split_points.size + 1,)


@pytest.mark.benchmark(group="rank-1e5")
def test_cdf_datasketches_sorted(benchmark, ds_query_sketch, split_points):
    out = benchmark(ds_query_sketch.get_cdf, split_points, True)
    assert len(out) == split_points.size + 1


# ---- scalar queries ----------------------------------------------------------------


@pytest.mark.benchmark(group="rank-scalar")
def test_rank_scalar_qsketch(benchmark, qs_query_sketch):
    assert 0.0 < benchmark(qs_query_sketch.rank, 0.5) < 1.0


@pytest.mark.benchmark(group="rank-scalar")
def test_rank_scalar_datasketches(benchmark, ds_query_sketch):
    assert 0.0 < benchmark(ds_query_sketch.get_rank, 0.5, True) < 1.0


@pytest.mark.benchmark(group="quantile-scalar")
def test_quantile_scalar_qsketch(benchmark, qs_query_sketch):
    assert benchmark(qs_query_sketch.quantile, 0.9) > 0.0


@pytest.mark.benchmark(group="quantile-scalar")
def test_quantile_scalar_datasketches(benchmark, ds_query_sketch):
    assert benchmark(ds_query_sketch.get_quantile, 0.9, True) > 0.0


# ---- quantile queries --------------------------------------------------------------


@pytest.mark.benchmark(group="quantile-1e5")
def test_quantile_qsketch_vectorized(benchmark, qs_query_sketch, probabilities):
    out = benchmark(qs_query_sketch.quantile, probabilities)
    assert out.shape == probabilities.shape


@pytest.mark.benchmark(group="quantile-1e5")
def test_quantile_datasketches_loop(benchmark, ds_query_sketch, probabilities):
    values = probabilities.tolist()
    get_quantile = ds_query_sketch.get_quantile

    def run():
        return [get_quantile(p, True) for p in values]

    assert len(benchmark(run)) == N_QUERIES


@pytest.mark.benchmark(group="quantile-1e5")
def test_quantile_datasketches_get_quantiles(benchmark, ds_query_sketch, probabilities):
    out = benchmark(ds_query_sketch.get_quantiles, probabilities, True)
    assert len(out) == N_QUERIES


# ---- merging -----------------------------------------------------------------------


@pytest.mark.benchmark(group="merge-100x1e5")
def test_merge_qsketch(benchmark, qs_parts):
    def run():
        acc = qsketch.KLLSketch(K, seed=0)
        for p in qs_parts:
            acc.merge(p)
        return acc

    assert benchmark(run).n == N_PARTS * PART_N


@pytest.mark.benchmark(group="merge-100x1e5")
def test_merge_datasketches(benchmark, ds_parts):
    ds = _ds()

    def run():
        acc = ds.kll_doubles_sketch(K)
        for p in ds_parts:
            acc.merge(p)
        return acc

    assert benchmark(run).n == N_PARTS * PART_N


# ---- serialization -----------------------------------------------------------------


@pytest.mark.benchmark(group="serialize-1e6")
def test_serialize_qsketch(benchmark, qs_serde_sketch):
    assert len(benchmark(qs_serde_sketch.to_bytes)) > 0


@pytest.mark.benchmark(group="serialize-1e6")
def test_serialize_datasketches(benchmark, ds_serde_sketch):
    assert len(benchmark(ds_serde_sketch.serialize)) > 0


@pytest.mark.benchmark(group="deserialize-1e6")
def test_deserialize_qsketch(benchmark, qs_serde_sketch):
    blob = qs_serde_sketch.to_bytes()
    assert benchmark(qsketch.KLLSketch.from_bytes, blob).n == N_SERDE


@pytest.mark.benchmark(group="deserialize-1e6")
def test_deserialize_datasketches(benchmark, ds_serde_sketch):
    ds = _ds()
    blob = ds_serde_sketch.serialize()
    assert benchmark(ds.kll_doubles_sketch.deserialize, blob).n == N_SERDE
