"""Rank error of qsketch's estimators against Apache DataSketches' KLL, at equal bytes.

    python benchmarks/interpolation_study.py [--quick] [--out docs/interpolation.md]

For every stream of benchmarks/streams.py: qsketch.KLLSketch(k=200) answers
with each estimator ("step", "linear", "learned"), and DataSketches'
kll_doubles_sketch and kll_floats_sketch answer with k tuned so that their
serialized size matches qsketch's on a reference stream (normal, 1e6 items).
Error = |estimate - exact mid-rank| in % of n, the mid-rank of x being
(count(< x) + count(<= x)) / 2n for the truth and the average of the
exclusive and inclusive estimates for a sketch, at 1,000 evenly spaced exact
quantiles plus p = 0.001 and 0.999.  Each cell is the mean over trials (seeds)
of the mean or the max over those probes.  Writes a Markdown report and PNG
plots, stamped with the commit.
"""

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qsketch  # noqa: E402
from benchmarks import streams  # noqa: E402

ESTIMATORS = ("step", "linear", "learned")
K = 200


def _version(package):
    from importlib.metadata import version

    return version(package)


def git_stamp():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def probes_and_truth(data):
    xs = np.sort(data)
    n = xs.size
    ps = np.concatenate([(np.arange(1000) + 0.5) / 1000, [0.001, 0.999]])
    probes = xs[np.minimum((ps * n).astype(np.int64), n - 1)]
    truth = (np.searchsorted(xs, probes, "left") + np.searchsorted(xs, probes, "right")) / (2.0 * n)
    return probes, truth, ps


def qsketch_errors(data, probes, truth, seed):
    s = qsketch.KLLSketch(K, seed=seed)
    s.update(data)
    out = {}
    for est in ESTIMATORS:
        mid = 0.5 * (s.rank(probes, True, est) + s.rank(probes, False, est))
        out[est] = np.abs(mid - truth)
    return out, len(s.to_bytes()), s.is_estimation_mode


def ds_errors(kind, k, data, probes, truth):
    import datasketches

    sk = datasketches.kll_doubles_sketch(k) if kind == "doubles" else datasketches.kll_floats_sketch(k)
    sk.update(np.array(data, dtype=np.float64 if kind == "doubles" else np.float32, copy=True))
    inc = np.array([sk.get_rank(float(x), True) for x in probes])
    exc = np.array([sk.get_rank(float(x), False) for x in probes])
    return np.abs(0.5 * (inc + exc) - truth), len(sk.serialize())


def tune_ds_k(kind, target_bytes, reference):
    """The DataSketches k whose serialized size on `reference` is closest to target_bytes."""
    import datasketches

    make = datasketches.kll_doubles_sketch if kind == "doubles" else datasketches.kll_floats_sketch
    dtype = np.float64 if kind == "doubles" else np.float32
    best = None
    lo, hi = 8, 4000
    while lo <= hi:
        mid = (lo + hi) // 2
        sk = make(mid)
        sk.update(np.array(reference, dtype=dtype, copy=True))
        size = len(sk.serialize())
        if best is None or abs(size - target_bytes) < abs(best[1] - target_bytes):
            best = (mid, size)
        if size < target_bytes:
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def run(n, trials, quick):
    try:
        import datasketches  # noqa: F401
        have_ds = True
    except ImportError:
        have_ds = False
    reference = streams.load("normal", n=1_000_000 if not quick else 200_000, seed=99)
    ref_sketch = qsketch.KLLSketch(K, seed=1)
    ref_sketch.update(reference)
    target = len(ref_sketch.to_bytes())
    ds_k = {}
    if have_ds:
        for kind in ("doubles", "floats"):
            ds_k[kind] = tune_ds_k(kind, target, reference)
    rows, curves, skipped = [], {}, []
    for name in streams.names():
        try:
            data = streams.load(name, n=n, seed=0)
        except streams.UnavailableStream as exc:
            skipped.append(f"{name}: {exc}")
            continue
        probes, truth, ps = probes_and_truth(data)
        acc = {key: [] for key in ESTIMATORS + ("ds_doubles", "ds_floats")}
        size = {}
        exact = True
        start = time.perf_counter()
        for t in range(trials):
            errs, nbytes, estimating = qsketch_errors(data, probes, truth, seed=t)
            size["qsketch"] = nbytes
            exact = exact and not estimating
            for est in ESTIMATORS:
                acc[est].append(errs[est])
            if have_ds:
                for kind in ("doubles", "floats"):
                    e, b = ds_errors(kind, ds_k[kind][0], data, probes, truth)
                    acc["ds_" + kind].append(e)
                    size["ds_" + kind] = b
        row = {"stream": name, "family": streams.STREAMS[name].family, "n": data.size,
               "exact": exact, "bytes": size, "seconds": time.perf_counter() - start}
        for key, errs in acc.items():
            if errs:
                errs = np.array(errs) * 100.0
                row[key] = (errs.mean(axis=1).mean(), errs.max(axis=1).mean())
                curves.setdefault(name, {})[key] = (ps, errs.mean(axis=0))
        rows.append(row)
        print(f"{name:28s} " + " ".join(f"{k}={row[k][0]:.4f}/{row[k][1]:.3f}" for k in acc if k in row),
              flush=True)
    return rows, curves, skipped, target, ds_k, have_ds


def fmt(x):
    return "0" if x == 0 else f"{x:.4f}"


def write_report(path, rows, curves, skipped, target, ds_k, have_ds, args, plot_dir):
    lines = []
    lines.append("# Interpolation: measured accuracy\n")
    lines.append(f"Generated by `python benchmarks/interpolation_study.py{' --quick' if args.quick else ''} "
                 f"--out {args.out}` at commit `{git_stamp()}` on {platform.platform()}, "
                 f"numpy {np.__version__}, qsketch {qsketch.__version__}"
                 + (f", datasketches {_version('datasketches')}" if have_ds else "") + ".\n")
    lines.append(f"qsketch: `KLLSketch(k={K})`, {args.trials} seeds per stream. "
                 f"Reference size: {target:,} bytes (normal stream, 1e6 items).")
    if have_ds:
        lines.append(f" DataSketches at equal bytes on the reference: kll_doubles k={ds_k['doubles'][0]} "
                     f"({ds_k['doubles'][1]:,} B), kll_floats k={ds_k['floats'][0]} ({ds_k['floats'][1]:,} B); "
                     "their k is fixed across streams and their actual bytes are listed per stream.")
    lines.append("\n\nError: |estimate - exact mid-rank| in % of n at 1,000 evenly spaced exact quantiles "
                 "plus p = 0.001 and 0.999; each cell is *mean / max* over the probes, averaged over "
                 "the seeds (DataSketches' own randomness is not seedable). `learned/step` is the ratio "
                 "of mean errors.\n")
    keys = list(ESTIMATORS) + (["ds_doubles", "ds_floats"] if have_ds else [])
    header = "| stream | n | bytes (qs / ds doubles / ds floats) | " + " | ".join(keys) + " | learned/step |"
    for family in ("real", "synthetic", "adversarial", "discrete"):
        fam_rows = [r for r in rows if r["family"] == family]
        if not fam_rows:
            continue
        lines.append(f"\n## {family.capitalize()} streams\n")
        lines.append(header)
        lines.append("|" + "---|" * (len(keys) + 4))
        for r in fam_rows:
            b = r["bytes"]
            bytes_cell = " / ".join(f"{b[k]:,}" for k in ("qsketch", "ds_doubles", "ds_floats") if k in b)
            cells = [f"{fmt(r[k][0])} / {fmt(r[k][1])}" for k in keys]
            ratio = r["learned"][0] / r["step"][0] if r["step"][0] > 0 else float("nan")
            name = r["stream"] + (" (exact)" if r["exact"] else "")
            lines.append(f"| {name} | {r['n']:,} | {bytes_cell} | " + " | ".join(cells)
                         + f" | {'-' if ratio != ratio else f'{ratio:.2f}'} |")
    if skipped:
        lines.append("\nSkipped: " + "; ".join(skipped) + "\n")
    if plot_dir:
        lines.append("\n## Plots\n")
        for fname, title in plot_files(plot_dir, rows, curves, keys):
            rel = os.path.relpath(fname, os.path.dirname(os.path.abspath(path)))
            lines.append(f"![{title}]({rel})\n")
    text = "\n".join(lines) + "\n"
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if os.path.exists(path):
        with open(path) as f:
            current = f.read()
        if begin in current and end in current:  # rewrite only the generated section
            head, rest = current.split(begin, 1)
            tail = rest.split(end, 1)[1]
            text = head + begin + "\n" + text.replace("# Interpolation: measured accuracy\n", "### Results\n") + end + tail
    with open(path, "w") as f:
        f.write(text)


def plot_files(plot_dir, rows, curves, keys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    out = []
    names = [r["stream"] for r in rows if not r["exact"]]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        vals = [next(r for r in rows if r["stream"] == nm)[key][0] for nm in names]
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=key)
    ax.set_xticks(np.arange(len(names)) + 0.4)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("mean rank error, % of n")
    ax.set_title(f"Mean rank error by stream (k={K}, equal bytes)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fname = os.path.join(plot_dir, "interpolation_mean_error.png")
    fig.savefig(fname, dpi=110)
    plt.close(fig)
    out.append((fname, "mean rank error by stream"))
    for nm in ("lognormal", "flights_arr_delay", "pareto"):
        if nm not in curves:
            continue
        fig, ax = plt.subplots(figsize=(8, 4))
        for key in keys:
            ps, err = curves[nm][key]
            order = np.argsort(ps)
            ax.plot(ps[order], err[order], label=key, lw=1)
        ax.set_xlabel("p (exact quantile probed)")
        ax.set_ylabel("rank error, % of n (mean over seeds)")
        ax.set_title(f"Error by quantile: {nm}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fname = os.path.join(plot_dir, f"interpolation_by_quantile_{nm}.png")
        fig.savefig(fname, dpi=110)
        plt.close(fig)
        out.append((fname, f"error by quantile, {nm}"))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller n and fewer seeds")
    parser.add_argument("--out", default=None, help="write the Markdown report here")
    parser.add_argument("--plots", default=None, help="directory for PNG plots (default: next to --out)")
    parser.add_argument("--trials", type=int, default=None)
    args = parser.parse_args()
    n = 200_000 if args.quick else 1_000_000
    args.trials = args.trials or (2 if args.quick else 5)
    rows, curves, skipped, target, ds_k, have_ds = run(n, args.trials, args.quick)
    if args.out:
        plot_dir = args.plots or os.path.join(os.path.dirname(os.path.abspath(args.out)), "img")
        write_report(args.out, rows, curves, skipped, target, ds_k, have_ds, args, plot_dir)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
