"""The ``qsketch`` command.

``qsketch demo`` builds sketches on generated streams and prints their answers
beside numpy's exact ones, with the measured rank error against the a priori
bound.
"""

import argparse
import sys
import time

import numpy as np

from qsketch._core import DEFAULT_K, MAX_K, MIN_K, KLLSketch
from qsketch.bench.command import add_bench_command
from qsketch.eval.cli_eval import add_eval_commands

DEMO_PROBABILITIES = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def demo_streams(n, rng):
    """Named streams for the demo: smooth, heavy-tailed, ordered and discrete."""
    return {
        "normal": rng.normal(size=n),
        "lognormal(sigma=2)": rng.lognormal(sigma=2.0, size=n),
        "sorted ascending": np.sort(rng.uniform(size=n)),
        "integer scores 1..10": rng.integers(1, 11, size=n).astype(np.float64),
    }


def _max_rank_error(sketch, data_sorted):
    """Largest |estimated - exact| inclusive rank over 1,000 evenly spaced exact quantiles."""
    n = data_sorted.size
    probes = data_sorted[np.linspace(0, n - 1, 1000).astype(np.int64)]
    exact = np.searchsorted(data_sorted, probes, side="right") / n
    return float(np.max(np.abs(sketch.rank(probes) - exact)))


def run_demo(n, k, seed, out=sys.stdout):
    rng = np.random.default_rng(seed)
    print(f"qsketch demo: n={n:,} items per stream, k={k}, seed={seed}", file=out)
    print(f"a priori rank error bound (99% per query): {KLLSketch(k).normalized_rank_error():.4%}", file=out)
    for name, data in demo_streams(n, rng).items():
        sketch = KLLSketch(k, seed=seed)
        start = time.perf_counter()
        sketch.update(data)
        elapsed = time.perf_counter() - start
        data_sorted = np.sort(data)
        exact = np.quantile(data_sorted, DEMO_PROBABILITIES, method="inverted_cdf")
        approx = sketch.quantiles(DEMO_PROBABILITIES)
        print(f"\n{name}: {sketch.num_retained} items retained of {sketch.n:,} "
              f"({len(sketch.to_bytes()):,} bytes), update {elapsed / n * 1e9:.1f} ns/item", file=out)
        print(f"  {'p':>7} {'sketch':>14} {'exact':>14}", file=out)
        for p, a, e in zip(DEMO_PROBABILITIES, approx, exact):
            print(f"  {p:>7} {a:>14.6g} {e:>14.6g}", file=out)
        err = _max_rank_error(sketch, data_sorted)
        print(f"  max rank error {err:.4%} (bound {sketch.normalized_rank_error():.4%})", file=out)
    return 0


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _run_demo_command(args):
    if not MIN_K <= args.k <= MAX_K:
        print(f"qsketch demo: --k must be in [{MIN_K}, {MAX_K}], got {args.k}", file=sys.stderr)
        return 2
    return run_demo(args.n, args.k, args.seed)


def add_demo_command(sub):
    demo = sub.add_parser("demo", help="sketch generated streams and compare with numpy's exact answers")
    demo.add_argument("--n", type=_positive_int, default=1_000_000, help="items per stream (default 1e6)")
    demo.add_argument("--k", type=int, default=DEFAULT_K, help=f"sketch k in [{MIN_K}, {MAX_K}]")
    demo.add_argument("--seed", type=int, default=1, help="seed of the data and the sketches")
    demo.set_defaults(handler=_run_demo_command)


# Each command lives with its feature: a function that adds its subparser and
# sets `handler`, a callable taking the parsed arguments and returning the
# exit status.  Listed here in the order of `qsketch --help`.
COMMANDS = [add_demo_command, add_eval_commands, add_bench_command]


def build_parser():
    parser = argparse.ArgumentParser(prog="qsketch", description="Streaming quantile sketches.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def main(argv=None):
    """Entry point of the ``qsketch`` command; returns the exit status.

    Examples
    --------
    >>> from qsketch.cli import main
    >>> main(["demo", "--n", "1000", "--k", "5"])
    2
    """
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
