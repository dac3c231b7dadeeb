#!/usr/bin/env python
"""Time qsketch.KLLSketch against Apache DataSketches' KLL and write a report.

    python benchmarks/speed_report.py                       # print the report
    python benchmarks/speed_report.py --out docs/performance.md
    python benchmarks/speed_report.py --quick               # smoke run, small n

Every operation is timed with time.perf_counter for qsketch and for the peer
(datasketches.kll_doubles_sketch, same k) in the same run, interleaved: each
repeat times qsketch and the peer back to back, alternating which goes first.
The report gives medians over the repeats and the ratio peer / qsketch
(> 1 means qsketch is faster), so slow-downs of a shared, noisy machine hit
both sides alike.  Without datasketches installed, qsketch alone is timed.
"""

import os

# Idle BLAS worker threads only add noise on a 2-core box; nothing here uses BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import qsketch  # noqa: E402
from qsketch.bench.report import cpu_model  # noqa: E402
from qsketch.bench.report import git_commit as report_git_commit  # noqa: E402
from qsketch.bench.speed import fmt_time, measure  # noqa: E402

try:
    from datasketches import kll_doubles_sketch
except ImportError:  # the report then covers qsketch alone
    kll_doubles_sketch = None

K = 200
SEED = 20240611
PLAIN = "plain KLL"  # the extra callable of a row: the same operation with buckets=0
REPO = Path(__file__).resolve().parent.parent

FULL = dict(
    repeat=9,
    min_time=0.2,  # seconds per measurement; fast operations are looped until they take this long
    n_batch=10_000_000,
    n_item=200_000,
    n_micro=1_000_000,
    micro=1024,
    n_query_sketch=1_000_000,
    n_queries=100_000,
    n_parts=100,
    part_n=100_000,
    n_serde=1_000_000,
)
QUICK = dict(
    repeat=3,
    min_time=0.02,
    n_batch=1_000_000,
    n_item=50_000,
    n_micro=200_000,
    micro=1024,
    n_query_sketch=200_000,
    n_queries=20_000,
    n_parts=20,
    part_n=50_000,
    n_serde=200_000,
)

BULK_UPDATE_SUMMARY = """\
## How the bulk update works

(A summary of the comment at the top of `csrc/qs_kll.c`.)  Compacting a sorted
buffer j times, each time keeping the odd or the even positions by a fair coin,
keeps exactly the items at positions r, r + 2^j, r + 2·2^j, ... of the sorted
buffer, with r uniform in [0, 2^j).  So once the sketch is in estimation mode,
`update(array)` does not insert the items one by one: it cuts the batch into
chunks of c items (c a power of two, 1024 to 65536), and from each chunk it
*selects* the S = c / 2^j order statistics at those positions (sample-sort
classification plus multiselect, O(c log S) work, no full sort) and merges them
into level j with weight 2^j.  This has the same distribution as feeding the
chunk to a level-0 buffer of size c and compacting it j times, so the usual
KLL analysis applies: a chunk moves any rank by less than 2^j, with mean zero.
S grows with k (k/4 rounded up to a power of two, within [32, 4096]), and c is
capped at n·S / (16k) so that level j stays four or more levels below the top
levels that dominate the error.  Until the sketch first compacts, and while that
cap is below the minimum chunk, items go through the ordinary per-item path
(append to level 0, sort and halve it when full).  Since the bulk path never
sorts its input, `np.sort` of the same array is the natural yardstick for it:
a batch update should cost less per item than sorting the batch.  (numpy 2
sorts doubles with SIMD kernels where the CPU has them -- x86-simd-sort on
AVX-512 -- and is then several times faster than a portable sort; the
reference line above says which side of it the sketch is on this machine.
The accuracy layer's counting is the part of the default sketch's time that
the plain KLL path does not pay: the second table.)
"""


# ---- the workloads -------------------------------------------------------------


class Case:
    """One row of the report: a qsketch callable and the peer's equivalent."""

    def __init__(self, key, label, qs, peer=None, target=None, items=None, ref=None):
        self.key = key
        self.label = label
        self.qs = qs
        self.peer = peer
        self.target = target  # minimum ratio peer/qsketch, or None (informational)
        self.items = items  # items per call, for ns/item
        self.ref = ref  # extra callables timed in the same repeats: name -> fn
        self.samples = None


def _fmt_n(n):
    """1e7, 2e5, ... for round sizes; 12,345 otherwise."""
    digits = str(n)
    lead = digits.rstrip("0")
    zeros = len(digits) - len(lead)
    if zeros >= 3 and len(lead) == 1:
        return f"{lead}e{zeros}"
    return f"{n:,}"


def build_cases(cfg, have_peer):
    rng = np.random.default_rng(SEED)
    cases = []
    new_qs = lambda seed=1: qsketch.KLLSketch(K, seed=seed)  # noqa: E731
    # The plain KLL sketch, without the accuracy layer, timed in the same
    # repeats as the default one wherever the layer does work (updates, merges,
    # bytes): what the layer costs.
    new_plain = lambda seed=1: qsketch.KLLSketch(K, seed=seed, buckets=0)  # noqa: E731

    # Batch update of one big numpy array, with np.sort as the physical reference.
    x = rng.standard_normal(cfg["n_batch"])
    x_peer = np.array(x, copy=True)  # DataSketches wants a writable float64 array

    def qs_batch(new=new_qs):
        s = new()
        s.update(x)
        return s

    def peer_batch():
        s = kll_doubles_sketch(K)
        s.update(x_peer)
        return s

    cases.append(Case(
        "batch", f"Batch update, {_fmt_n(cfg['n_batch'])} float64 in one numpy array",
        qs_batch, peer_batch if have_peer else None, target=3.0, items=cfg["n_batch"],
        ref={"np.sort": lambda: np.sort(x), PLAIN: lambda: qs_batch(new_plain)},
    ))

    # Per-item update(x) from a Python loop over Python floats.  Ends with a
    # read of n, which makes qsketch flush any scalar updates it staged.
    items = rng.standard_normal(cfg["n_item"]).tolist()

    def qs_items(new=new_qs):
        s = new()
        upd = s.update
        for v in items:
            upd(v)
        return s.n

    def peer_items():
        s = kll_doubles_sketch(K)
        upd = s.update
        for v in items:
            upd(v)
        return s.n

    cases.append(Case(
        "item", f"Per-item `update(x)` from a Python loop, {_fmt_n(cfg['n_item'])} Python floats",
        qs_items, peer_items if have_peer else None, target=1.0, items=cfg["n_item"],
        ref={PLAIN: lambda: qs_items(new_plain)},
    ))

    # Micro-batches: many update(array) calls of `micro` items.
    y = rng.standard_normal(cfg["n_micro"])
    chunks = [y[i:i + cfg["micro"]] for i in range(0, y.size, cfg["micro"])]

    def qs_micro(new=new_qs):
        s = new()
        for c in chunks:
            s.update(c)
        return s

    def peer_micro():
        s = kll_doubles_sketch(K)
        for c in chunks:
            s.update(c)
        return s

    cases.append(Case(
        "micro", f"Micro-batches of {cfg['micro']} items, {_fmt_n(cfg['n_micro'])} items in all",
        qs_micro, peer_micro if have_peer else None, items=cfg["n_micro"],
        ref={PLAIN: lambda: qs_micro(new_plain)},
    ))

    # Queries on a sketch of n_query_sketch items.
    z = rng.standard_normal(cfg["n_query_sketch"])
    qsk = new_qs()
    qsk.update(z)
    psk = None
    if have_peer:
        psk = kll_doubles_sketch(K)
        psk.update(np.array(z, copy=True))
    nq = cfg["n_queries"]
    queries = rng.standard_normal(nq)  # in random order
    queries_list = queries.tolist()
    splits = np.unique(queries)  # get_cdf needs strictly increasing split points
    probs = rng.random(nq)
    probs_list = probs.tolist()

    def peer_rank_loop():
        get_rank = psk.get_rank
        return [get_rank(v, True) for v in queries_list]

    def peer_quantile_loop():
        get_quantile = psk.get_quantile
        return [get_quantile(p, True) for p in probs_list]

    cases.append(Case(
        "rank", f"`rank` of {_fmt_n(nq)} queries (vectorized, step estimator) vs a Python loop over `get_rank`",
        lambda: qsk.rank(queries, estimator="step"), peer_rank_loop if have_peer else None, target=10.0,
        items=nq,
    ))
    cases.append(Case(
        "rank_learned", f"`rank` of {_fmt_n(nq)} queries (default spline estimator) vs the same loop",
        lambda: qsk.rank(queries), peer_rank_loop if have_peer else None, items=nq,
    ))
    cases.append(Case(
        "cdf", f"`cdf` at {_fmt_n(nq)} sorted split points vs DataSketches' `get_cdf`",
        lambda: qsk.cdf(splits), (lambda: psk.get_cdf(splits, True)) if have_peer else None,
        items=splits.size,
    ))
    cases.append(Case(
        "quantile", f"`quantile` of {_fmt_n(nq)} probabilities (vectorized, step estimator) vs a Python loop over `get_quantile`",
        lambda: qsk.quantile(probs, estimator="step"), peer_quantile_loop if have_peer else None,
        target=10.0, items=nq,
    ))
    cases.append(Case(
        "quantile_learned", f"`quantile` of {_fmt_n(nq)} probabilities (default spline estimator) vs the same loop",
        lambda: qsk.quantile(probs), peer_quantile_loop if have_peer else None, items=nq,
    ))
    cases.append(Case(
        "quantiles", f"`quantile` of {_fmt_n(nq)} probabilities vs DataSketches' `get_quantiles`",
        lambda: qsk.quantile(probs), (lambda: psk.get_quantiles(probs, True)) if have_peer else None,
        items=nq,
    ))

    # Merging: only the merges are timed; the parts are built beforehand.
    qs_parts, plain_parts, peer_parts = [], [], []
    for i in range(cfg["n_parts"]):
        part = rng.standard_normal(cfg["part_n"])
        s = new_qs(seed=1000 + i)
        s.update(part)
        qs_parts.append(s)
        s = new_plain(seed=1000 + i)
        s.update(part)
        plain_parts.append(s)
        if have_peer:
            p = kll_doubles_sketch(K)
            p.update(part)
            peer_parts.append(p)

    def qs_merge(new=new_qs, parts=qs_parts):
        acc = new(seed=0)
        for p in parts:
            acc.merge(p)
        return acc

    def peer_merge():
        acc = kll_doubles_sketch(K)
        for p in peer_parts:
            acc.merge(p)
        return acc

    cases.append(Case(
        "merge", f"Merge {cfg['n_parts']} sketches of {_fmt_n(cfg['part_n'])} items each (merges only)",
        qs_merge, peer_merge if have_peer else None, target=1.0,
        ref={PLAIN: lambda: qs_merge(new_plain, plain_parts)},
    ))

    # Serialization of a sketch of n_serde items.
    w = rng.standard_normal(cfg["n_serde"])
    ssk = new_qs()
    ssk.update(w)
    blob = ssk.to_bytes()
    plain_ssk = new_plain()
    plain_ssk.update(w)
    plain_blob = plain_ssk.to_bytes()
    psk2, pblob = None, None
    if have_peer:
        psk2 = kll_doubles_sketch(K)
        psk2.update(np.array(w, copy=True))
        pblob = psk2.serialize()
    cases.append(Case(
        "serialize", f"Serialize a {_fmt_n(cfg['n_serde'])}-item sketch (`to_bytes` vs `serialize`)",
        ssk.to_bytes, psk2.serialize if have_peer else None, ref={PLAIN: plain_ssk.to_bytes},
    ))
    cases.append(Case(
        "deserialize", f"Deserialize a {_fmt_n(cfg['n_serde'])}-item sketch (`from_bytes` vs `deserialize`)",
        lambda: qsketch.KLLSketch.from_bytes(blob),
        (lambda: kll_doubles_sketch.deserialize(pblob)) if have_peer else None,
        ref={PLAIN: lambda: qsketch.KLLSketch.from_bytes(plain_blob)},
    ))

    sanity_check(cases, qsk, psk, queries, probs, splits, ssk, psk2, blob, pblob, cfg)
    return cases


def sanity_check(cases, qsk, psk, queries, probs, splits, ssk, psk2, blob, pblob, cfg):
    """Check once that each pair of callables does comparable work and agrees."""
    by_key = {c.key: c for c in cases}
    eps = 3 * qsk.normalized_rank_error()
    assert by_key["batch"].qs().n == cfg["n_batch"]
    assert by_key["item"].qs() == cfg["n_item"]
    assert by_key["micro"].qs().n == cfg["n_micro"]
    assert by_key["merge"].qs().n == cfg["n_parts"] * cfg["part_n"]
    assert qsketch.KLLSketch.from_bytes(blob).n == ssk.n
    assert qsketch.KLLSketch.from_bytes(blob).buckets == 2 * K
    for key in ("batch", "micro", "merge"):
        assert by_key[key].ref[PLAIN]().buckets == 0
    assert by_key["item"].ref[PLAIN]() == cfg["n_item"]
    assert by_key["deserialize"].ref[PLAIN]().buckets == 0
    if psk is None:
        return
    assert by_key["batch"].peer().n == cfg["n_batch"]
    assert by_key["item"].peer() == cfg["n_item"]
    assert by_key["micro"].peer().n == cfg["n_micro"]
    assert by_key["merge"].peer().n == cfg["n_parts"] * cfg["part_n"]
    assert kll_doubles_sketch.deserialize(pblob).n == psk2.n
    rq = qsk.rank(queries, estimator="step")
    rp = np.asarray(by_key["rank"].peer())
    assert np.max(np.abs(rq - rp)) < eps, "rank: qsketch and DataSketches disagree"
    cq = qsk.cdf(splits)
    cp = np.asarray(psk.get_cdf(splits, True))
    assert cq.shape == cp.shape and np.max(np.abs(cq - cp)) < eps, "cdf: qsketch and DataSketches disagree"
    # compare quantiles through their ranks in the qsketch sketch
    qq = qsk.rank(qsk.quantile(probs, estimator="step"))
    qp = qsk.rank(np.asarray(by_key["quantile"].peer()))
    assert np.max(np.abs(qq - qp)) < 2 * eps, "quantile: qsketch and DataSketches disagree"


# ---- report ----------------------------------------------------------------------


def git_commit():
    return report_git_commit(REPO) or "unknown (not a git checkout)"


def machine_lines():
    ds_version = "not installed"
    if kll_doubles_sketch is not None:
        try:
            ds_version = metadata.version("datasketches")
        except metadata.PackageNotFoundError:
            ds_version = "unknown version"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- Machine: {platform.platform()}, {cpu_model()}, {os.cpu_count()} CPUs ({affinity} usable)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, datasketches {ds_version}, "
        f"qsketch {qsketch.__version__}",
        f"- Commit: `{git_commit()}`",
    ]


def render(cases, cfg, mode, command, have_peer):
    repeat = cfg["repeat"]
    out = []
    out.append("# qsketch performance")
    out.append("")
    out.append(
        "This page is generated by `benchmarks/speed_report.py`.  Each operation is timed with "
        f"`time.perf_counter` for qsketch's default sketch, `KLLSketch({K})` (the KLL compactors plus the "
        f"accuracy layer of {2 * K} bucket boundaries with exact counts), and for the peer, Apache "
        f"DataSketches' `kll_doubles_sketch`, both at k = {K}, in the same run and interleaved: each of the "
        f"{repeat} repeats times qsketch and the peer back to back (alternating which goes first), "
        "with the garbage collector off, and fast operations are looped so that one measurement lasts at "
        f"least {cfg['min_time'] * 1e3:.0f} ms.  The table shows the median time per call over the repeats "
        "and the ratio peer / qsketch (above 1 means qsketch is faster): the median of the per-repeat "
        "ratios, each taken between two back-to-back measurements, so it can differ a little from the "
        "ratio of the two median times.  Next to it are the target from the performance issue and "
        "the smallest and largest per-repeat ratio; a verdict is marked borderline when the target lies "
        "inside that range.  "
        "The machine is shared and noisy (2 cores, other jobs running), so absolute times drift from run "
        "to run by tens of percent; the ratios against a peer measured in the same run, and the medians, "
        "are what to read.  Data are seeded (`numpy.random.default_rng`, standard normal float64); "
        "DataSketches is always queried with `inclusive=True`, qsketch's default."
    )
    out.append("")
    out.append(f"Regenerate with `{command}` (mode: {mode}; `--quick` gives a smoke run with smaller n).  "
               f"Generated {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.")
    out.append("")
    out.extend(machine_lines())
    out.append("")
    peer_name = "DataSketches" if have_peer else "DataSketches (not installed)"
    out.append(f"| Operation | qsketch | {peer_name} | Ratio (peer / qsketch) | Target | Met | "
               "Per-repeat ratios (min–max) |")
    out.append("|---|---:|---:|---:|---|---|---|")
    for c in cases:
        tq = statistics.median(c.samples["qsketch"])
        tp = statistics.median(c.samples["peer"]) if "peer" in c.samples else None
        if tp is not None:
            paired = [p / q for p, q in zip(c.samples["peer"], c.samples["qsketch"])]
            ratio = statistics.median(paired)
            ratio_s = f"{ratio:.2f}×"
            spread = f"{min(paired):.2f}–{max(paired):.2f}"
        else:
            ratio, ratio_s, spread = None, "—", "—"
        if c.target is None:
            target_s, met = "— (informational)", "—"
        else:
            target_s = "no slower (≥ 1×)" if c.target == 1.0 else f"≥ {c.target:g}× faster"
            if ratio is None:
                met = "n/a (no peer)"
            else:
                met = "**yes**" if ratio >= c.target else "**no**"
                if min(paired) < c.target <= max(paired):
                    met += " (borderline)"
        qs_cell = fmt_time(tq)
        if c.items:
            qs_cell += f" ({tq / c.items * 1e9:.1f} ns/item)"
        peer_cell = fmt_time(tp)
        if c.items and tp is not None:
            peer_cell += f" ({tp / c.items * 1e9:.1f} ns/item)"
        out.append(f"| {c.label} | {qs_cell} | {peer_cell} | {ratio_s} | {target_s} | {met} | {spread} |")
    out.append("")
    out.extend(plain_table(cases, have_peer))
    batch = next(c for c in cases if c.key == "batch")
    t_sort = statistics.median(batch.samples["np.sort"])
    t_qs = statistics.median(batch.samples["qsketch"])
    n = batch.items
    sort_ratio = statistics.median(s / q for s, q in zip(batch.samples["np.sort"], batch.samples["qsketch"]))
    line = (f"Reference: `np.sort` of the same {_fmt_n(n)}-item array takes {fmt_time(t_sort)}, "
            f"**{t_sort / n * 1e9:.1f} ns/item**, timed in the same repeats; qsketch's batch update takes "
            f"{t_qs / n * 1e9:.1f} ns/item ({sort_ratio:.2f}× the speed of sorting, median per-repeat ratio)")
    if "peer" in batch.samples:
        t_p = statistics.median(batch.samples["peer"])
        line += f" and DataSketches' {t_p / n * 1e9:.1f} ns/item"
    out.append(line + ".")
    out.append("")
    out.append("Notes on the rows:")
    out.append("")
    out.append("- Per-item updates end with a read of `n`, so qsketch's time includes handing any staged "
               "scalar updates to the core.")
    out.append("- The `get_rank` / `get_quantile` loops iterate over a prebuilt list of Python floats and a "
               "bound method, the cheapest form of a Python loop; `rank` gets the queries in random order.")
    out.append("- `get_cdf` requires strictly increasing split points, so the `cdf` row uses the sorted, "
               "de-duplicated queries for both libraries.")
    out.append("- Merges go into a fresh empty sketch, one part after the other; building the parts is "
               "not timed.  Rows without a target are informational.")
    out.append("")
    out.append(BULK_UPDATE_SUMMARY)
    return "\n".join(out)


def plain_table(cases, have_peer):
    """The rows timed with the plain KLL sketch (buckets=0) as well: what the layer costs."""
    rows = [c for c in cases if c.ref and PLAIN in c.ref]
    out = [f"The same operations with the plain KLL sketch, `KLLSketch({K}, buckets=0)` (no accuracy "
           "layer), timed in the same repeats as the two columns above.  The last column is what the "
           "layer costs: the default sketch's time over the plain one's (median of the per-repeat ratios).",
           "",
           "| Operation | plain KLL | Ratio (DataSketches / plain) | Default / plain |",
           "|---|---:|---:|---:|"]
    for c in rows:
        tp = statistics.median(c.samples[PLAIN])
        cell = fmt_time(tp)
        if c.items:
            cell += f" ({tp / c.items * 1e9:.1f} ns/item)"
        peer = "—"
        if have_peer and "peer" in c.samples:
            peer = f"{statistics.median(p / q for p, q in zip(c.samples['peer'], c.samples[PLAIN])):.2f}×"
        cost = statistics.median(q / p for q, p in zip(c.samples["qsketch"], c.samples[PLAIN]))
        out.append(f"| {c.label} | {cell} | {peer} | {cost:.2f}× |")
    out.append("")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller n (a smoke run)")
    ap.add_argument("--repeat", type=int, help="repeats per operation (default 9, or 3 with --quick)")
    ap.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    args = ap.parse_args(argv)

    cfg = dict(QUICK if args.quick else FULL)
    if args.repeat:
        if args.repeat < 1:
            ap.error("--repeat must be >= 1")
        cfg["repeat"] = args.repeat
    have_peer = kll_doubles_sketch is not None
    if not have_peer:
        print("datasketches is not installed: timing qsketch alone", file=sys.stderr)

    command = "python benchmarks/speed_report.py" + (" --quick" if args.quick else "")
    if args.repeat:
        command += f" --repeat {args.repeat}"
    if args.out:
        try:
            shown = args.out.resolve().relative_to(REPO)
        except ValueError:
            shown = args.out
        command += f" --out {shown}"

    print(f"building workloads ({'quick' if args.quick else 'full'} mode)...", file=sys.stderr)
    cases = build_cases(cfg, have_peer)
    for c in cases:
        fns = {"qsketch": c.qs}
        if c.peer is not None:
            fns["peer"] = c.peer
        fns.update(c.ref or {})
        t0 = time.perf_counter()
        c.samples = measure(fns, cfg["repeat"], cfg["min_time"])
        summary = ", ".join(f"{k} {fmt_time(statistics.median(v))}" for k, v in c.samples.items())
        print(f"  {c.key:<12} {summary}  [{time.perf_counter() - t0:.1f} s]", file=sys.stderr)

    report = render(cases, cfg, "quick" if args.quick else "full", command, have_peer)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
