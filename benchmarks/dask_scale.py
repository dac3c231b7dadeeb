"""qsketch on Dask at scale: 1e8 values on a 2-worker process LocalCluster.

Compares, on the same persisted dask Series (generated on the workers, kept in
their memory, so no timing includes data generation or transfer):

* ``qsketch.integrations.dask.sketch`` (a KLL sketch per partition, merged in
  a tree) and then the quantiles from the sketch;
* ``dask.dataframe.Series.quantile`` (Dask's own approximate quantiles: per
  partition percentiles, merged);
* ``Series.count()``, a pass that reads every value once: the floor of any
  one-pass method.

Accuracy is the worst normalized rank error over the probabilities: for each
estimate v of quantile p, |count(x <= v) / n - p|, the counts computed exactly
on the cluster.

Run (takes a few minutes at the default size)::

    python benchmarks/dask_scale.py                 # n = 1e8, 100 partitions
    python benchmarks/dask_scale.py --n 1e7 --repeats 2

Requirements: the ``dask`` extra (``pip install -e ".[dask]"``).
"""

import argparse
import logging
import os
import platform
import time

import numpy as np

PS = [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]


def make_partition(i, size, seed):
    import pandas as pd

    rng = np.random.default_rng([seed, i])
    return pd.Series(rng.lognormal(mean=0.0, sigma=1.5, size=size), name="x")


def timed(fn, repeats):
    """Best wall time of ``fn(r)`` over r = 0 .. repeats-1, and the last result.

    Each repeat must build a graph of its own (``fresh(series, r)``): the
    scheduler would otherwise hand back results it still holds from the
    previous repeat under the same keys.
    """
    best, result = float("inf"), None
    for r in range(repeats):
        t0 = time.perf_counter()
        result = fn(r)
        best = min(best, time.perf_counter() - t0)
    return best, result


def fresh(series, r):
    """The same data under new task keys (a rename is free with copy-on-write)."""
    return series.rename(f"x{r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=1e8, help="number of values (default 1e8)")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import dask
    import dask.dataframe as dd
    import distributed

    from qsketch.integrations import dask as qdask

    n_per = int(args.n) // args.partitions
    n = n_per * args.partitions
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    try:
        series = dd.from_map(make_partition, range(args.partitions), size=n_per, seed=args.seed,
                             meta=make_partition(0, 0, 0))
        t0 = time.perf_counter()
        series = series.persist()
        distributed.wait(series)
        t_gen = time.perf_counter() - t0

        t_count, count = timed(lambda r: fresh(series, r).count().compute(), args.repeats)
        assert count == n

        def run_qsketch(r):
            sk = qdask.sketch(fresh(series, r), k=args.k, seed=args.seed)
            return sk, sk.quantile(np.array(PS))

        t_qs, (sk, q_qs) = timed(run_qsketch, args.repeats)
        assert sk.n == n
        t_dask, q_dask = timed(lambda r: fresh(series, r).quantile(PS).compute().to_numpy(), args.repeats)

        # exact ranks of every estimate, counted on the cluster in one pass
        estimates = list(q_qs) + list(q_dask)
        counts = dask.compute(*[(series <= v).sum() for v in estimates])
        ranks = np.array(counts, dtype=np.float64) / n
        err_qs = np.abs(ranks[: len(PS)] - PS)
        err_dask = np.abs(ranks[len(PS):] - PS)
    finally:
        client.close()
        cluster.close()

    print(f"# qsketch on Dask: n = {n:,} values, {args.partitions} partitions, "
          f"2 worker processes x 1 thread, k = {args.k}")
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"dask {dask.__version__}; best of {args.repeats}")
    print(f"# data generated and persisted on the workers in {t_gen:.1f} s (not in the timings below)")
    print()
    print("| method | wall time | values/s | max rank error | mean rank error |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| `Series.count()` (one read of every value) | {t_count:.2f} s | {n / t_count:.3g} | | |")
    print(f"| `qsketch.integrations.dask.sketch` + quantiles | {t_qs:.2f} s | {n / t_qs:.3g} | "
          f"{err_qs.max():.2e} | {err_qs.mean():.2e} |")
    print(f"| `dask.dataframe.Series.quantile` | {t_dask:.2f} s | {n / t_dask:.3g} | "
          f"{err_dask.max():.2e} | {err_dask.mean():.2e} |")
    print()
    print(f"qsketch a priori bound (99% per query): {sk.normalized_rank_error():.2e}; "
          f"sketch: {sk.num_retained} items, {len(sk.to_bytes())} bytes")
    print()
    print("| p | qsketch | rank error | dask | rank error |")
    print("| --- | --- | --- | --- | --- |")
    for p, a, ea, b, eb in zip(PS, q_qs, err_qs, q_dask, err_dask):
        print(f"| {p} | {a:.6g} | {ea:.1e} | {b:.6g} | {eb:.1e} |")


if __name__ == "__main__":
    main()
