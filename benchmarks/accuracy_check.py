"""Rank error of qsketch's KLL against Apache DataSketches' KLL, same k, same data.

    python benchmarks/accuracy_check.py [N ...] [--seeds 20] [--k 200]

For each n: over several seeds, a normal stream of n items is fed to
qsketch.KLLSketch (one batch, and item by item for n <= 300,000) and to
datasketches.kll_doubles_sketch; the maximum |estimated - exact| inclusive
rank at 1,000 evenly spaced exact quantiles is recorded.  Prints the mean and
the 90th percentile over seeds, in % of n.
"""

import argparse

import numpy as np

import qsketch


def max_rank_error(rank_fn, data_sorted):
    n = data_sorted.size
    probes = data_sorted[np.linspace(0, n - 1, 1000).astype(np.int64)]
    exact = np.searchsorted(data_sorted, probes, side="right") / n
    return float(np.max(np.abs(rank_fn(probes) - exact)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="*", type=int, default=[200_000])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--k", type=int, default=200)
    args = parser.parse_args()
    try:
        import datasketches
    except ImportError:
        datasketches = None
        print("datasketches is not installed: qsketch only")
    for n in args.n:
        rng = np.random.default_rng(5)
        batch, items, peer = [], [], []
        for seed in range(args.seeds):
            x = rng.normal(size=n)
            xs = np.sort(x)
            s = qsketch.KLLSketch(args.k, seed=seed)
            s.update(x)
            batch.append(max_rank_error(s.rank, xs))
            if n <= 300_000:
                s = qsketch.KLLSketch(args.k, seed=seed)
                for v in x.tolist():
                    s.update(v)
                items.append(max_rank_error(s.rank, xs))
            if datasketches is not None:
                d = datasketches.kll_doubles_sketch(args.k)
                d.update(np.array(x, copy=True))
                peer.append(max_rank_error(lambda q: np.array([d.get_rank(v, True) for v in q]), xs))

        def fmt(errors):
            if not errors:
                return "-"
            return f"mean {100 * np.mean(errors):.3f}%  p90 {100 * np.quantile(errors, 0.9):.3f}%"

        print(f"n={n:,} k={args.k}: qsketch batch {fmt(batch)} | qsketch item by item {fmt(items)}"
              f" | DataSketches KLL {fmt(peer)}")


if __name__ == "__main__":
    main()
