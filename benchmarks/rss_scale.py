#!/usr/bin/env python3
"""Memory and time of one sketch fed a very long stream.

    python benchmarks/rss_scale.py                  # n = 1e9, batches of 1e6, k = 200
    python benchmarks/rss_scale.py --n 1e7 --k 64 --dist lognormal
    python benchmarks/rss_scale.py --n 1e9 --json out.json

Feeds ``--n`` values from a seeded numpy generator, ``--batch`` at a time
(one reused buffer, ``Generator.standard_normal(out=...)``), into one
``qsketch.KLLSketch`` and reports:

* peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before the first
  update (interpreter, numpy, qsketch and the batch buffer) and at the end,
  and the current RSS (/proc/self/statm) at a few points of the stream: the
  sketch itself must not grow with n (O(k log(n/k)) items, a few kilobytes);
* wall time, split into generating the values and ``update()``, the
  update throughput, and the process's CPU time (on a busy machine the wall
  time overstates the cost; compare the two);
* the sketch's size (retained items, serialized bytes, levels) and its
  accuracy against the exact quantiles of the generating distribution (the
  data is never stored, so the reference is the distribution's CDF at the
  estimated quantiles): the largest |rank error| over 99 quantiles, with the
  step estimator and with the sketch's default one, beside the sketch's own
  99% bound ``normalized_rank_error()``.

No timing is asserted anywhere; this is a measurement.  The numbers recorded
in docs/reliability.md came from this script.
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

import qsketch


def rss_now_mib():
    """Current resident set size, from /proc (Linux); NaN elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


DISTRIBUTIONS = {
    # name: (fill(rng, buf), exact quantile function p -> x, exact cdf x -> p)
    "normal": (lambda rng, buf: rng.standard_normal(out=buf),
               statistics.NormalDist().inv_cdf, statistics.NormalDist().cdf),
    "uniform": (lambda rng, buf: rng.random(out=buf), lambda p: p, lambda x: min(max(x, 0.0), 1.0)),
    "lognormal": (lambda rng, buf: np.exp(rng.standard_normal(out=buf), out=buf),
                  lambda p: math.exp(statistics.NormalDist().inv_cdf(p)),
                  lambda x: statistics.NormalDist().cdf(math.log(x)) if x > 0 else 0.0),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=float, default=1e9, help="values to ingest (default 1e9)")
    ap.add_argument("--batch", type=float, default=1e6, help="values per update() call (default 1e6)")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="seed of the data generator and of the sketch")
    ap.add_argument("--dist", choices=sorted(DISTRIBUTIONS), default="normal")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    n, batch = int(args.n), int(args.batch)
    if n <= 0 or batch <= 0:
        ap.error("--n and --batch must be positive")
    fill, inv_cdf, cdf = DISTRIBUTIONS[args.dist]

    rng = np.random.default_rng(args.seed)
    buf = np.zeros(min(batch, n), dtype=np.float64)
    buf[:] = 1.0  # touch every page: the baseline below includes the buffer
    sketch = qsketch.KLLSketch(args.k, seed=args.seed)
    peak_before = peak_rss_mib()
    rss_before = rss_now_mib()
    checkpoints = []
    next_report = 0
    t_gen = t_upd = 0.0
    done = 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while done < n:
        m = min(batch, n - done)
        chunk = buf[:m]
        a = time.perf_counter()
        fill(rng, chunk)
        b = time.perf_counter()
        sketch.update(chunk)
        c = time.perf_counter()
        t_gen += b - a
        t_upd += c - b
        done += m
        if done >= next_report or done == n:
            point = {"n": done, "rss_mib": round(rss_now_mib(), 1), "elapsed_s": round(c - t0, 1)}
            checkpoints.append(point)
            if not args.quiet:
                print(f"  {done:>14,d} values  rss {point['rss_mib']:8.1f} MiB  {point['elapsed_s']:8.1f} s",
                      flush=True)
            next_report = max(next_report * 4, 10 * batch) if next_report else batch
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0

    ps = np.linspace(0.01, 0.99, 99)
    est = sketch.quantile(ps, estimator="step")
    max_err = max(abs(cdf(float(x)) - p) for x, p in zip(est, ps))
    est_default = sketch.quantile(ps)  # the sketch's default estimator
    max_err_default = max(abs(cdf(float(x)) - p) for x, p in zip(est_default, ps))
    blob = sketch.to_bytes()
    result = {
        "n": n,
        "batch": batch,
        "k": args.k,
        "distribution": args.dist,
        "seed": args.seed,
        "sketch_n": sketch.n,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "generate_s": round(t_gen, 2),
        "update_s": round(t_upd, 2),
        "update_ns_per_item": round(t_upd / n * 1e9, 2),
        "update_items_per_s": round(n / t_upd) if t_upd > 0 else None,
        "peak_rss_before_mib": round(peak_before, 1),
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_end_mib": round(peak_rss_mib(), 1),
        "rss_end_mib": round(rss_now_mib(), 1),
        "batch_buffer_mib": round(buf.nbytes / 2**20, 1),
        "retained_items": sketch.num_retained,
        "levels": len(sketch._levels()),
        "serialized_bytes": len(blob),
        "max_rank_error_step": round(max_err, 6),
        "default_estimator": sketch.estimator,
        "max_rank_error_default": round(max_err_default, 6),
        "normalized_rank_error_99": round(sketch.normalized_rank_error(), 6),
        "checkpoints": checkpoints,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
    assert sketch.n == n, (sketch.n, n)  # nothing lost (not a timing check)

    print(f"qsketch rss_scale: n={n:,} ({args.dist}, seed {args.seed}), batches of {batch:,}, k={args.k}")
    print(f"  peak RSS: {result['peak_rss_before_mib']} MiB before the first update (interpreter, numpy, "
          f"{result['batch_buffer_mib']} MiB batch buffer), {result['peak_rss_end_mib']} MiB at the end")
    print(f"  current RSS: {result['rss_before_mib']} MiB before, {result['rss_end_mib']} MiB after")
    print(f"  time: {result['wall_s']} s wall ({result['cpu_s']} s CPU) = {result['generate_s']} s generating + "
          f"{result['update_s']} s in update() ({result['update_ns_per_item']} ns/item, "
          f"{result['update_items_per_s']:,} items/s, wall clock)")
    print(f"  sketch: {result['retained_items']} retained items in {result['levels']} levels, "
          f"{result['serialized_bytes']} bytes serialized")
    print(f"  accuracy: max |rank error| over 99 quantiles {result['max_rank_error_step']:.5f} (step), "
          f"{result['max_rank_error_default']:.5f} ({sketch.estimator}, the default); "
          f"99% bound {result['normalized_rank_error_99']:.5f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
