"""qsketch.integrations.dask on a process-based distributed.LocalCluster.

One cluster for the session (2 worker processes, 1 thread each), so every
sketch crosses process boundaries by pickle.  The client is made current only
inside this module's tests; elsewhere Dask keeps its default scheduler.

Answers are checked against numpy on the same data: n, nan_count, min and max
exactly, quantiles by the true rank of the returned value, within twice the
sketch's a priori error (a 99% bound per query, so 2x makes a failure on these
fixed seeds practically impossible, and the seeds are fixed anyway).
"""

import concurrent.futures
import logging
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

import qsketch

dask = pytest.importorskip("dask")  # the [test] extra installs dask[dataframe] and distributed
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

from qsketch.integrations import dask as qdask  # noqa: E402

PS = np.array([0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999])


@pytest.fixture(scope="session")
def cluster_client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(autouse=True)
def on_cluster(cluster_client):
    """Every computation of this module runs on the cluster."""
    with cluster_client.as_current():
        yield cluster_client


@pytest.fixture(scope="module")
def frame():
    g = np.random.default_rng(2024)
    n = 60_000
    pdf = pd.DataFrame({
        "x": g.lognormal(size=n),
        "key": g.integers(0, 6, size=n),
        "tag": g.choice(["a", "b", "c"], size=n),
    })
    pdf.loc[g.choice(n, size=500, replace=False), "x"] = np.nan
    return pdf, dd.from_pandas(pdf, npartitions=8)


def true_rank(sorted_data, values):
    return np.searchsorted(sorted_data, values, side="right") / sorted_data.size


def assert_quantiles_close(sketch, data, ps=PS):
    clean = np.sort(data[~np.isnan(data)])
    got = sketch.quantile(ps)
    eps = sketch.normalized_rank_error()
    err = np.abs(true_rank(clean, got) - ps)
    assert np.all(err <= 2 * eps), (err.max(), eps)


def test_computations_run_in_worker_processes(on_cluster):
    pids = set(on_cluster.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    assert dask.delayed(os.getpid)().compute() in pids


@pytest.mark.parametrize("split_every", [2, 3, False])
def test_sketch_of_a_column_matches_numpy(frame, split_every):
    pdf, ddf = frame
    data = pdf["x"].to_numpy()
    s = qdask.sketch(ddf["x"], seed=1, split_every=split_every)
    s._check_invariants()
    assert s.n == np.count_nonzero(~np.isnan(data)) and s.nan_count == 500
    assert s.min == np.nanmin(data) and s.max == np.nanmax(data)
    assert s.is_estimation_mode
    assert_quantiles_close(s, data)
    q = qdask.approx_quantile(ddf["x"], PS, seed=1, split_every=split_every)
    assert np.array_equal(q, s.quantile(PS))  # same seed, same tree: the same sketch


@pytest.mark.parametrize("split_every", [2, None])
def test_sketch_of_an_array_matches_numpy(split_every):
    g = np.random.default_rng(7)
    x = g.normal(size=(300, 400))
    x[g.random(x.shape) < 0.01] = np.nan
    arr = da.from_array(x, chunks=(100, 80))  # 15 blocks, flattened
    s = qdask.sketch(arr, k=100, seed=3, split_every=split_every)
    assert s.k == 100
    assert s.n == np.count_nonzero(~np.isnan(x)) and s.nan_count == np.count_nonzero(np.isnan(x))
    assert s.min == np.nanmin(x) and s.max == np.nanmax(x)
    assert_quantiles_close(s, x.ravel())


def test_array_generated_on_the_workers():
    x = da.random.default_rng(5).standard_exponential(size=300_000, chunks=50_000)
    s = qdask.sketch(x, seed=2, split_every=4)
    data = x.compute()
    assert s.n == data.size and s.min == data.min() and s.max == data.max()
    assert_quantiles_close(s, data)
    med = qdask.approx_quantile(x, 0.5, seed=2, split_every=4)
    assert isinstance(med, float) and med == s.quantile(0.5)


def test_small_data_is_exact():
    x = np.arange(1.0, 1001.0)
    got = qdask.approx_quantile(da.from_array(x, chunks=100), [0.1, 0.5, 0.9], k=2000, seed=0)
    assert np.array_equal(got, [100.0, 500.0, 900.0])


def test_seeds_make_sketches_reproducible(frame):
    _, ddf = frame
    a = qdask.sketch(ddf["x"], seed=42, split_every=3)
    b = qdask.sketch(ddf["x"], seed=42, split_every=3)
    assert a.to_bytes() == b.to_bytes()
    assert qdask._partition_seeds(42, 4) == qdask._partition_seeds(42, 4)
    assert len(set(qdask._partition_seeds(42, 100))) == 100


def test_integer_and_nullable_columns():
    pdf = pd.DataFrame({
        "i": np.arange(10_000, dtype=np.int64),
        "f": pd.array([1.5, None, 2.5, None] * 2_500, dtype="Float64"),
        "b": np.arange(10_000) % 2 == 0,
    })
    ddf = dd.from_pandas(pdf, npartitions=4)
    si = qdask.sketch(ddf["i"], seed=1)
    assert (si.n, si.min, si.max) == (10_000, 0.0, 9_999.0)
    sf = qdask.sketch(ddf["f"], seed=1)
    assert (sf.n, sf.nan_count, sf.min, sf.max) == (5_000, 5_000, 1.5, 2.5)
    sb = qdask.sketch(ddf["b"], seed=1)
    assert sb.n == 10_000 and sb.rank(0.0) == 0.5


def test_delayed_result_and_nan_policy(frame):
    _, ddf = frame
    lazy = qdask.sketch(ddf["x"], seed=1, compute=False)
    assert dask.is_dask_collection(lazy) and not isinstance(lazy, qsketch.KLLSketch)
    assert lazy.compute().n == qdask.sketch(ddf["x"], seed=1).n
    with pytest.raises(ValueError, match="NaN"):
        qdask.sketch(ddf["x"], seed=1, nan_policy="raise")


@pytest.mark.parametrize("split_every", [2, None])
def test_groupby_aggregation_matches_numpy_per_group(frame, split_every):
    pdf, ddf = frame
    agg = qdask.aggregation(k=200, seed=9)
    res = ddf.groupby(["key", "tag"])["x"].agg(agg, split_every=split_every).compute()
    assert res.dtype == object
    groups = pdf.groupby(["key", "tag"])["x"]
    assert len(res) == groups.ngroups == 18
    for key, values in groups:
        data = values.to_numpy()
        s = res[key]
        assert isinstance(s, qsketch.KLLSketch)
        s._check_invariants()
        assert s.n == np.count_nonzero(~np.isnan(data)) and s.nan_count == np.count_nonzero(np.isnan(data))
        assert s.min == np.nanmin(data) and s.max == np.nanmax(data)
        assert_quantiles_close(s, data)


def test_groupby_aggregation_through_a_shuffle(frame):
    """split_out > 1 moves the intermediate sketches through a shuffle (P2P goes
    through Arrow, "tasks" through pickle): they travel as bytes."""
    pdf, ddf = frame
    counts = pdf.groupby(["key", "tag"])["x"].count()
    res = ddf.groupby(["key", "tag"])["x"].agg(
        qdask.aggregation(seed=2), split_out=3, shuffle_method="p2p"
    ).compute()
    assert len(res) == len(counts)
    for key, count in counts.items():
        assert res[key].n == count
    med = ddf.groupby(["key", "tag"])["x"].agg(
        qdask.aggregation(q=0.5, seed=2), split_out=2, shuffle_method="tasks"
    ).compute()
    assert med.dtype == np.float64 and len(med) == len(counts)
    for key in counts.index:
        assert med[key] == res[key].quantile(0.5)


def test_groupby_aggregation_is_reproducible_and_composable(frame):
    pdf, ddf = frame
    agg = qdask.aggregation(seed=3)
    a = ddf.groupby("key")["x"].agg(agg, split_every=2).compute()
    b = ddf.groupby("key").agg({"x": agg}, split_every=2).compute()["x"]
    assert sorted(a.index) == sorted(b.index) == list(range(6))
    for key in a.index:
        assert a[key].to_bytes() == b[key].to_bytes()
    total = qsketch.merge_all(list(a.values))
    assert total.n == pdf["x"].count()


def test_groupby_quantile_finalizer(frame):
    pdf, ddf = frame
    res = ddf.groupby("tag")["x"].agg(qdask.aggregation(q=0.9, seed=1)).compute()
    assert res.dtype == np.float64
    eps = qsketch.KLLSketch(200).normalized_rank_error()
    for tag, values in pdf.groupby("tag")["x"]:
        clean = np.sort(values.dropna().to_numpy())
        assert abs(true_rank(clean, res[tag]) - 0.9) <= 2 * eps


def test_pickle_round_trip_in_a_process_pool():
    g = np.random.default_rng(11)
    parts = []
    for i in range(6):
        s = qsketch.KLLSketch(128, seed=i)
        s.update(g.normal(loc=i, size=20_000))
        parts.append(s)
    expected = [qsketch.merge_all(parts[:3]).to_bytes(), qsketch.merge_all(parts[3:]).to_bytes()]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs cluster threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        merged = list(pool.map(qsketch.merge_all, [parts[:3], parts[3:]]))
        blobs = list(pool.map(qsketch.to_datasketches, merged))
    assert [m.to_bytes() for m in merged] == expected
    for m, blob in zip(merged, blobs):
        assert qsketch.from_datasketches(blob).n == m.n == 60_000


def test_sketches_travel_through_the_cluster(on_cluster):
    s = qsketch.KLLSketch(seed=1)
    s.update(np.arange(50_000.0))
    fut = on_cluster.submit(qsketch.merge_all, [s, s])
    assert fut.result().to_bytes() == qsketch.merge_all([s, s]).to_bytes()


def test_argument_errors(frame):
    pdf, ddf = frame
    with pytest.raises(TypeError, match="dask Series or dask Array"):
        qdask.sketch(pdf["x"])
    with pytest.raises(TypeError, match="single column"):
        qdask.sketch(ddf)
    with pytest.raises(ValueError, match="split_every"):
        qdask.sketch(ddf["x"], split_every=1)
    with pytest.raises(ValueError, match="k must be"):
        qdask.sketch(ddf["x"], k=4)
    with pytest.raises(ValueError, match="probabilities"):
        qdask.approx_quantile(ddf["x"], 1.5)
    with pytest.raises(ValueError, match="one probability"):
        qdask.aggregation(q=[0.1, 0.2])
    with pytest.raises(TypeError, match="float64"):
        qdask.sketch(ddf["tag"])


def test_import_qsketch_needs_no_dask():
    """In a fresh interpreter (so the cluster's threads never see a missing dask)."""
    code = """
import sys
import qsketch, qsketch.integrations, qsketch.integrations.dask as qdask
assert 'dask' not in sys.modules and 'distributed' not in sys.modules, sorted(sys.modules)
sys.modules['dask'] = None  # as if dask were not installed
for call in (lambda: qdask.sketch(object()), lambda: qdask.aggregation()):
    try:
        call()
    except ImportError as exc:
        assert "qsketch[dask]" in str(exc), exc
    else:
        raise AssertionError("no ImportError")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
