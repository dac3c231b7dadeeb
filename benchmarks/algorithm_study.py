"""The accuracy layer, measured: the tables and plots of docs/algorithm.md.

    python benchmarks/algorithm_study.py                  # full study, rewrites docs/algorithm.md (~5 min)
    python benchmarks/algorithm_study.py --quick          # smoke run: n=2e5, 1 seed, 10 streams; prints only
    python benchmarks/algorithm_study.py --quick --out /tmp/algorithm.md

What is compared, at equal serialized bytes (budgets 1, 4 and 16 KB):

- qsketch with the accuracy layer: ``KLLSketch(k)``, its defaults (2 k
  bucket boundaries, estimator "spline"), k tuned to the budget; the same sketch answered
  with the "step" estimator (classic KLL over the same compactors);
- KLL-only: ``KLLSketch(k, buckets=0, estimator="learned")`` (the layer off;
  "learned" was the default before it), k tuned separately;
- Apache DataSketches ``kll_floats_sketch`` and ``kll_doubles_sketch`` (k);
- t-digests: crick ``TDigest(compression)`` and fastdigest
  ``TDigest(max_centroids)``.

Each size parameter is tuned once, on the reference stream (normal, 1e6
items, seed 0), to the largest size within the budget (never over it):
``len(to_bytes())``, ``len(serialize())``, fastdigest's ``len(to_bytes())``,
and for crick 16 bytes per centroid (``16 * len(t.centroids())``: its only
serialization is pickle).  Every stream then reports the bytes each sketch
actually took.

Error: |estimate - exact mid-rank| in % of n (qsketch.bench.accuracy's
metric, as in benchmarks/interpolation_study.py) at 1,000 evenly spaced exact quantiles
plus p = 0.001 and 0.999; each cell is the mean over seeds of the mean and
of the max over the probes.  Sketches with both one-sided ranks (qsketch,
DataSketches) answer the average of their inclusive and exclusive ranks;
t-digests their interpolated cdf.  Also measured: merging 100 shards (iid and
sorted partitions) at the 4 KB configuration against one sketch of the whole
stream, and batch-update speed of the layer against the KLL-only path.

The script writes the section between ``<!-- results:begin -->`` and
``<!-- results:end -->`` of the output page (creating the page if needed)
and the plots docs/img/algorithm_<family>.png, stamped with date, commit and
machine.  It measures the installed qsketch: rebuild after changing csrc/.
"""

import argparse
import gc
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import qsketch  # noqa: E402
from benchmarks import streams  # noqa: E402
from qsketch.bench import peers  # noqa: E402
from qsketch.bench.accuracy import exact_truth, partitions, rank_errors, tune  # noqa: E402
from qsketch.bench.report import environment, fmt_err as fmt, git_commit  # noqa: E402

KB = 1024
BUDGETS = (1 * KB, 4 * KB, 16 * KB)
MERGE_BUDGET = 4 * KB
BUCKETS_PER_K = 2  # qsketch's default: buckets=None means 2 k
SHARDS = 100
FAMILIES = ("real", "synthetic", "adversarial", "discrete")
QUICK_STREAMS = ("flights_arr_delay", "diamonds_price", "normal", "lognormal", "pareto", "sorted",
                 "zoom_in", "log_uniform_squared", "likert", "zero_inflated")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# Table columns, in order: (key, heading).  "spline" and "step" are one sketch.
COLUMNS = (("spline", "qsketch spline"), ("step", "qsketch step"), ("kll", "KLL-only"),
           ("ds_floats", "DS kll_floats"), ("ds_doubles", "DS kll_doubles"), ("crick", "crick"),
           ("fastdigest", "fastdigest"))
TDIGESTS = ("crick", "fastdigest")
# Batch-ingest timings: the default sketch and the 4 KB one, each against KLL alone at its k.
SPEED_CONFIGS = (("KLLSketch(k=200)", dict(k=200)),
                 ("KLLSketch(k=200, buckets=0)", dict(k=200, buckets=0)),
                 ("KLLSketch(k=80)", dict(k=80)),
                 ("KLLSketch(k=80, buckets=0)", dict(k=80, buckets=0)))


def buckets_for(k):
    """The layer's boundaries for compactor parameter k: qsketch's default, 2 k."""
    return min(int(round(BUCKETS_PER_K * k)), 65535)


def layered(k, seed):
    """qsketch with the accuracy layer (the study's configuration at parameter k)."""
    return qsketch.KLLSketch(int(k), seed=seed, buckets=buckets_for(k), estimator="spline")


class CrickCentroids(peers.CrickAdapter):
    """crick.TDigest sized at 16 bytes per centroid (a float64 mean and weight), not by pickle."""

    def nbytes(self):
        return 16 * len(self.sketch.centroids())


def methods():
    """{key: Peer} of the sketches tuned to each budget ("step" shares the "spline" sketch)."""
    import crick

    return {
        "spline": peers.Peer("qsketch", "qsketch", "k", range(qsketch.MIN_K, 2049),
                             lambda k, seed: peers.QSketchAdapter(layered(k, seed), "spline"), seeded=True),
        "kll": peers.Peer("KLL-only", "qsketch", "k", range(qsketch.MIN_K, 4097),
                          lambda k, seed: peers.QSketchAdapter(
                              qsketch.KLLSketch(int(k), seed=seed, buckets=0, estimator="learned"), "learned"),
                          seeded=True),
        "ds_floats": peers.get("DS kll_floats"),
        "ds_doubles": peers.get("DS kll_doubles"),
        "crick": peers.Peer("crick", "crick", "compression", range(10, 5001),
                            lambda c, seed: CrickCentroids(crick.TDigest(float(c))), deterministic=True,
                            size_rule="16 B per centroid"),
        "fastdigest": peers.get("fastdigest"),
    }


def tune_all(meths, reference):
    """{(key, budget): Tuned}: each method's parameter at each budget, on the reference stream."""
    return {(key, b): tune(peer, b, reference) for key, peer in meths.items() for b in BUDGETS}


def summarize(errs):
    """(mean, max) in % of n over per-trial probe errors: the mean over trials of each."""
    errs = np.asarray(errs) * 100.0
    return float(errs.mean(axis=1).mean()), float(errs.max(axis=1).mean())


def mid_error(adapter, truth):
    """|estimated - exact mid-rank| at every probe, as a fraction of n."""
    return rank_errors(adapter, truth, ["mid"])["mid"]


def measure_stream(data, meths, tuned, seeds):
    """{budget: {column: {"err": (mean, max), "bytes": int}}} and {budget: whether qsketch stayed exact}."""
    truth = exact_truth(data)
    out, exact = {}, {}
    for budget in BUDGETS:
        cells, exact[budget] = {}, True
        for key, peer in meths.items():
            param = tuned[key, budget].param
            errs, steps, sizes = [], [], []
            for t in range(1 if peer.deterministic else seeds):
                sk = peer.build(param, t)
                sk.update(sk.prepare(data))
                errs.append(mid_error(sk, truth))
                sizes.append(sk.nbytes())
                if key == "spline":
                    steps.append(mid_error(peers.QSketchAdapter(sk.sketch, "step"), truth))
                    exact[budget] = exact[budget] and not sk.sketch.is_estimation_mode
            size = int(round(float(np.mean(sizes))))
            cells[key] = {"err": summarize(errs), "bytes": size}
            if steps:
                cells["step"] = {"err": summarize(steps), "bytes": size}
        out[budget] = cells
    return out, exact


def merge_errors(data, k, seeds):
    """{partition: (mean, max, merged bytes)} for SHARDS layered sketches merged with a.merge(b)."""
    truth = exact_truth(data)
    out = {}
    for how in ("iid", "sorted"):
        parts = partitions(data, SHARDS, how)
        errs, sizes = [], []
        for t in range(seeds):
            acc = layered(k, 1000 * (t + 1))
            acc.update(parts[0])
            for i, part in enumerate(parts[1:], 1):
                shard = layered(k, 1000 * (t + 1) + i)
                shard.update(part)
                acc.merge(shard)
            errs.append(mid_error(peers.QSketchAdapter(acc, "spline"), truth))
            sizes.append(len(acc.to_bytes()))
        out[how] = summarize(errs) + (int(round(float(np.mean(sizes)))),)
    return out


def speed(n, repeats):
    """{label: [ns/item per repeat]}: CPU time of one batch update of n normal doubles.

    CPU time of this (single-threaded) process, not wall time: the machines
    this runs on are shared, and other jobs' load inflates wall time by tens
    of percent at random.  Configurations are interleaved, alternating order.
    """
    x = np.random.default_rng(0).normal(size=n)
    times = {label: [] for label, _ in SPEED_CONFIGS}
    gc.disable()
    try:
        for r in range(repeats):
            order = SPEED_CONFIGS if r % 2 == 0 else SPEED_CONFIGS[::-1]
            for label, cfg in order:
                s = qsketch.KLLSketch(seed=r, **cfg)
                start = time.process_time()
                s.update(x)
                times[label].append((time.process_time() - start) * 1e9 / n)
    finally:
        gc.enable()
    return times


# ---- the report --------------------------------------------------------------------------------


def cell(err):
    return f"{fmt(err[0])} / {fmt(err[1])}"


def ratio(a, b):
    return "-" if b <= 0 else f"{a / b:.2f}"


def family_rows(rows, family):
    return [r for r in rows if r["family"] == family]


def best_tdigest(r, budget, which):
    """The t-digest with the smaller error (which: 0 mean, 1 max) on row r, and that error."""
    return min(((key, r["cells"][budget][key]["err"][which]) for key in TDIGESTS), key=lambda kv: kv[1])


def budget_table(rows, budget):
    lines = ["| stream | n | " + " | ".join(h for _, h in COLUMNS) + " | bytes: qsketch / KLL / DSf / DSd / crick / fd |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for family in FAMILIES:
        fam = family_rows(rows, family)
        if not fam:
            continue
        lines.append(f"| **{family}** |" + " |" * (len(COLUMNS) + 2))
        for r in fam:
            c = r["cells"][budget]
            sizes = " / ".join(f"{c[k]['bytes']:,}" for k in ("spline", "kll", "ds_floats", "ds_doubles",
                                                              "crick", "fastdigest"))
            name = r["stream"] + (" (exact)" if r["exact"][budget] else "")
            lines.append(f"| {name} | {r['n']:,} | " + " | ".join(cell(c[k]["err"]) for k, _ in COLUMNS)
                         + f" | {sizes} |")
    return lines


def summary_table(rows):
    """Per budget and family: qsketch spline's error against the best t-digest's, and wins."""
    lines = ["| budget | family | streams | qsketch spline mean / max | best t-digest mean / max "
             "| ratio of averages, mean / max | median ratio per stream, mean / max "
             "| streams where qsketch is at least as accurate (mean, max) |",
             "|---|---|---|---|---|---|---|---|"]
    for budget in BUDGETS:
        for family in FAMILIES:
            fam = family_rows(rows, family)
            if not fam:
                continue
            qs = [[r["cells"][budget]["spline"]["err"][w] for r in fam] for w in (0, 1)]
            td = [[best_tdigest(r, budget, w)[1] for r in fam] for w in (0, 1)]
            per_stream = [np.median([q / t for q, t, r in zip(qs[w], td[w], fam) if not r["exact"][budget] and t > 0]
                                    or [np.nan]) for w in (0, 1)]
            wins = [sum(q <= t for q, t in zip(qs[w], td[w])) for w in (0, 1)]
            avg = [(np.mean(qs[w]), np.mean(td[w])) for w in (0, 1)]
            lines.append(f"| {budget // KB} KB | {family} | {len(fam)} | {fmt(avg[0][0])} / {fmt(avg[1][0])} "
                         f"| {fmt(avg[0][1])} / {fmt(avg[1][1])} | {ratio(*avg[0])} / {ratio(*avg[1])} "
                         f"| {per_stream[0]:.2f} / {per_stream[1]:.2f} | {wins[0]}, {wins[1]} of {len(fam)} |")
    return lines


def adversarial_table(rows):
    lines = ["| stream | " + " | ".join(f"{b // KB} KB: qsketch spline / DS kll_floats (ratio)" for b in BUDGETS)
             + " |", "|---" * (len(BUDGETS) + 1) + "|"]
    for r in family_rows(rows, "adversarial"):
        cells = []
        for b in BUDGETS:
            q, f = r["cells"][b]["spline"]["err"][1], r["cells"][b]["ds_floats"]["err"][1]
            cells.append(f"{fmt(q)} / {fmt(f)} ({ratio(q, f)})")
        lines.append(f"| {r['stream']} | " + " | ".join(cells) + " |")
    return lines


def losses(rows, budget):
    """Streams where qsketch spline's error exceeds the best t-digest's, and by how much."""
    out = []
    for r in rows:
        parts = []
        for w, what in ((0, "mean"), (1, "max")):
            q = r["cells"][budget]["spline"]["err"][w]
            key, td = best_tdigest(r, budget, w)
            if q > td:
                parts.append(f"{what} {q / td:.2f}x {key}" if td > 0 else f"{what} {fmt(q)} vs 0 ({key})")
        if parts:
            out.append(f"{r['stream']} ({', '.join(parts)})")
    return out


def merge_table(rows, merges):
    lines = ["| stream | n | single mean / max | 100 shards iid mean / max | ratio mean / max "
             "| 100 shards sorted mean / max | ratio mean / max | merged bytes iid / sorted |",
             "|---|---|---|---|---|---|---|---|"]
    for family in FAMILIES:
        for r in family_rows(rows, family):
            if r["stream"] not in merges:
                continue
            single = r["cells"][MERGE_BUDGET]["spline"]["err"]
            m = merges[r["stream"]]
            cells = []
            for how in ("iid", "sorted"):
                e = m[how]
                cells += [f"{fmt(e[0])} / {fmt(e[1])}", f"{ratio(e[0], single[0])} / {ratio(e[1], single[1])}"]
            name = r["stream"] + (" (exact)" if r["exact"][MERGE_BUDGET] else "")
            lines.append(f"| {name} | {r['n']:,} | {cell(single)} | " + " | ".join(cells)
                         + f" | {m['iid'][2]:,} / {m['sorted'][2]:,} |")
    return lines


def merge_ratios(rows, merges, how, which):
    """merged / single error (which: 0 mean, 1 max) per stream with a non-zero single error."""
    out = []
    for r in rows:
        single = r["cells"][MERGE_BUDGET]["spline"]["err"][which]
        if r["stream"] in merges and single > 0:
            out.append(merges[r["stream"]][how][which] / single)
    return out


def merge_summary(rows, merges):
    """Per family (and all streams): the median over streams of merged / single error."""
    lines = ["| streams | iid: mean / max | sorted: mean / max |", "|---|---|---|"]
    for family in FAMILIES + ("all",):
        fam = rows if family == "all" else family_rows(rows, family)
        med = [np.median(merge_ratios(fam, merges, how, w) or [np.nan]) for how in ("iid", "sorted")
               for w in (0, 1)]
        lines.append(f"| {family} | {med[0]:.2f} / {med[1]:.2f} | {med[2]:.2f} / {med[3]:.2f} |")
    return lines


def speed_table(times):
    """ns/item per configuration, and its ratio to the KLL-only path at the same k, paired per repeat."""
    lines = ["| configuration | CPU ns/item (median) | min - max | ratio to the same k with `buckets=0`: of "
             "medians / median of per-repeat ratios |", "|---|---|---|---|"]
    configs = dict(SPEED_CONFIGS)
    for label, cfg in SPEED_CONFIGS:
        t = np.asarray(times[label])
        base_label = f"KLLSketch(k={cfg['k']}, buckets=0)"
        base = np.asarray(times[base_label]) if base_label in configs else t
        lines.append(f"| `{label}` | {np.median(t):.1f} | {t.min():.1f} - {t.max():.1f} "
                     f"| {np.median(t) / np.median(base):.2f} / {np.median(t / base):.2f} |")
    return lines


def plot_families(rows, plot_dir):
    """docs/img/algorithm_<family>.png: mean and max error vs actual bytes, one line per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    files = []
    for family in FAMILIES:
        fam = family_rows(rows, family)
        if not fam:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for which, ax in enumerate(axes):
            for key, heading in COLUMNS:
                xs = [np.mean([r["cells"][b][key]["bytes"] for r in fam]) for b in BUDGETS]
                ys = [np.mean([r["cells"][b][key]["err"][which] for r in fam]) for b in BUDGETS]
                style = "-" if key in ("spline", "step") else "--"
                ax.plot(xs, [y if y > 0 else np.nan for y in ys], style, marker="o", label=heading, lw=1.4)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("serialized bytes (mean over the family's streams)")
            ax.set_ylabel(f"{'mean' if which == 0 else 'max'} rank error, % of n")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{family} streams ({len(fam)}): rank error vs bytes, averaged over streams")
        fig.tight_layout()
        fname = os.path.join(plot_dir, f"algorithm_{family}.png")
        fig.savefig(fname, dpi=110)
        plt.close(fig)
        files.append((fname, family))
    return files


def report(args, meths, rows, tuned, merges, times, skipped, plots, out_path, seconds):
    """The generated section of the page (Markdown)."""
    meths_param = {key: peer.param for key, peer in meths.items()}
    env = environment()
    stamp = (f"Generated {env['date']} by `{args.command}` ({seconds / 60:.0f} min) at commit "
             f"`{git_commit(ROOT) or 'unknown'}` "
             f"on {env['machine']}; {env['python']}, datasketches {peers.get('DS kll_doubles').version()}, "
             f"crick {peers.get('crick').version()}, fastdigest {peers.get('fastdigest').version()}.")
    L = [stamp, "",
         f"Streams: n = {args.n:,} items for the synthetic, adversarial and discrete streams (real streams are "
         f"their own size); seeds 0..{args.seeds - 1} for the randomized sketches (qsketch, DataSketches, "
         "whose own randomness is not seedable: repeated runs), one run for the deterministic t-digests. "
         "Errors in % of n, *mean / max* over the 1,002 probes, averaged over the seeds. "
         "\"(exact)\": qsketch stayed in an exact mode at that size (error 0 by construction; its exact table "
         "may take more than the budget).", "",
         "### Parameters at equal bytes", "",
         "Tuned on the reference stream (normal, 1,000,000 items, seed 0); bytes on that stream in brackets. "
         "qsketch: `KLLSketch(k)`, its defaults: buckets = 2 k, estimator \"spline\" (\"step\" is the same sketch "
         "queried with `estimator=\"step\"`); KLL-only: `KLLSketch(k, buckets=0, estimator=\"learned\")`; "
         "crick counted at 16 bytes per centroid. Ranks: qsketch and DataSketches answer the average of their "
         "inclusive and exclusive ranks (DataSketches through `get_cdf`, the vectorized `get_rank`, on writable "
         "copies of the data); kll_floats stores float32 and is given the probes as they are, so it rounds "
         "items and probes to float32; crick answers `cdf(array)`, fastdigest `cdf_vec(array)`.", "",
         "| budget | " + " | ".join(h for k, h in COLUMNS if k != "step") + " |",
         "|---" * len(COLUMNS) + "|"]
    for b in BUDGETS:
        cells = []
        for key, _ in COLUMNS:
            if key == "step":
                continue
            t = tuned[key, b]
            param = f"buckets={buckets_for(t.param)}, " if key == "spline" else ""
            cells.append(f"{meths_param[key]}={t.param}, {param}({t.nbytes:,} B)".replace(", (", " ("))
        L.append(f"| {b // KB} KB | " + " | ".join(cells) + " |")
    L += ["", "### Summary: qsketch spline against the best t-digest", "",
          "Per budget and family: the family's average of qsketch spline's mean and max errors, the same "
          "for the better of crick and fastdigest on each stream, the ratio of those averages (< 1: qsketch "
          "is more accurate; a t-digest's failure on one stream dominates it), the median over the family's "
          "non-exact streams of the per-stream ratio (the typical case), and on how many streams qsketch is "
          "at least as accurate.", ""]
    L += summary_table(rows)
    for b in BUDGETS:
        lost = losses(rows, b)
        L += ["", f"At {b // KB} KB qsketch spline is less accurate than the best t-digest on: "
              + ("; ".join(lost) if lost else "no stream") + "."]
    L += ["", "### Adversarial streams: max error against DS kll_floats", ""]
    L += adversarial_table(rows)
    L += ["", f"### Merging {SHARDS} shards ({MERGE_BUDGET // KB} KB configuration)", "",
          f"Each stream cut into {SHARDS} shards, iid (a random permutation) or sorted (the sorted stream cut "
          f"into contiguous value ranges); each shard a `KLLSketch(k={tuned['spline', MERGE_BUDGET].param}, "
          f"buckets={buckets_for(tuned['spline', MERGE_BUDGET].param)}, estimator=\"spline\")` with its own "
          "seed, merged with `a.merge(b)` in a loop; compared with the single sketch of the 4 KB table. "
          "The median over the (non-exact) streams of merged / single error:", ""]
    L += merge_summary(rows, merges)
    L += [""]
    L += merge_table(rows, merges)
    L += ["", "### Speed", "",
          f"Batch ingest of {args.speed_n:,} standard-normal doubles in one `update(array)` call: CPU time of "
          f"the process (the machine is shared; wall time swings with other jobs), a fresh sketch per repeat, "
          f"{args.repeats} repeats with the configurations interleaved, garbage collector off. "
          "Issue constraint: the layer at most 1.5x the KLL-only path.", ""]
    L += speed_table(times)
    for b in BUDGETS:
        L += ["", f"### {b // KB} KB", ""]
        L += budget_table(rows, b)
    if skipped:
        L += ["", "Skipped: " + "; ".join(skipped)]
    if plots:
        L += ["", "### Plots", ""]
        base = os.path.dirname(os.path.abspath(out_path)) if out_path else ROOT
        for fname, family in plots:
            L.append(f"![{family}: error vs bytes]({os.path.relpath(fname, base)})")
            L.append("")
    return "\n".join(L).rstrip() + "\n"


def write_section(path, text):
    """Replace the text between the markers of ``path`` (create the page with them if needed)."""
    if os.path.exists(path):
        with open(path) as f:
            current = f.read()
    else:
        current = f"# The accuracy layer\n\n{BEGIN}\n{END}\n"
    if BEGIN not in current or END not in current:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section to rewrite")
    head, rest = current.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n=2e5, 1 seed, 10 streams, short speed run")
    parser.add_argument("--out", default=None,
                        help="page to rewrite (default: docs/algorithm.md; --quick: print only)")
    parser.add_argument("--plots", default=None, help="plot directory (default: img/ beside --out)")
    args = parser.parse_args()
    args.n = 200_000 if args.quick else 1_000_000
    args.seeds = 1 if args.quick else 3
    args.speed_n = 2_000_000 if args.quick else 10_000_000
    args.repeats = 3 if args.quick else 5
    out = args.out or (None if args.quick else os.path.join(ROOT, "docs", "algorithm.md"))
    args.command = "python benchmarks/algorithm_study.py" + (" --quick" if args.quick else "") + \
        (f" --out {args.out}" if args.out else "")
    start = time.perf_counter()

    meths = methods()
    tuned = tune_all(meths, streams.load("normal", n=1_000_000, seed=0))
    for (key, b), t in sorted(tuned.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"tuned {key:12s} {b:6d} B: {t.param} ({t.nbytes} B)", flush=True)

    rows, merges, skipped = [], {}, []
    k_merge = tuned["spline", MERGE_BUDGET].param
    for name in (QUICK_STREAMS if args.quick else streams.names()):
        try:
            data = streams.load(name, n=args.n, seed=0)
        except streams.UnavailableStream as exc:
            skipped.append(f"{name}: {exc}")
            continue
        t0 = time.perf_counter()
        cells, exact = measure_stream(data, meths, tuned, args.seeds)
        rows.append({"stream": name, "family": streams.STREAMS[name].family, "n": data.size,
                     "exact": exact, "cells": cells})
        merges[name] = merge_errors(data, k_merge, args.seeds)
        c = cells[MERGE_BUDGET]
        print(f"{name:28s} {time.perf_counter() - t0:5.1f}s  4KB " +
              " ".join(f"{k}={c[k]['err'][0]:.4f}/{c[k]['err'][1]:.3f}" for k, _ in COLUMNS) +
              f"  merge iid/sorted max {merges[name]['iid'][1]:.3f}/{merges[name]['sorted'][1]:.3f}", flush=True)

    times = speed(args.speed_n, args.repeats)
    for label, t in times.items():
        print(f"speed {label}: {np.median(t):.1f} ns/item", flush=True)

    plots = []
    if out:
        plots = plot_families(rows, args.plots or os.path.join(os.path.dirname(os.path.abspath(out)), "img"))
    text = report(args, meths, rows, tuned, merges, times, skipped, plots, out, time.perf_counter() - start)
    if out:
        write_section(out, text)
        print(f"wrote {out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
