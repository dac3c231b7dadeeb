"""The benchmark report: Markdown tables and PNG plots, stamped with the run.

:func:`write_report` turns the results of a run (a :class:`Results`) into
``<out>/<name>`` (Markdown) and ``<out>/img/bench_*.png``: error against
bytes per stream family, error by quantile on a few streams, and speed-ups
over DataSketches' KLL.  Without matplotlib the report is written without
plots and says so.

>>> from qsketch.bench import report
>>> report.fmt_err(0.0), report.fmt_err(0.01234), report.fmt_err(12.345)
('0', '0.012', '12.3')
>>> report.fmt_bytes(4096)
'4 KB'
"""

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from qsketch.bench import streams as streams_mod
from qsketch.bench.accuracy import KB, PROBE_PS, QUANTILE_PS
from qsketch.bench.speed import BASELINE, fmt_time

__all__ = ["Results", "write_report", "git_commit", "environment", "fmt_err", "fmt_bytes", "family_summary"]

FAMILIES = streams_mod.FAMILIES
IMG_PREFIX = "bench_"


# ---- environment -------------------------------------------------------------------


def git_commit(path=None):
    """The short commit of the git checkout holding ``path``, "+dirty" when tracked files changed.

    ``path`` defaults to this file's directory; returns None outside a git
    checkout (an installed package) or without git.

    >>> import tempfile
    >>> from qsketch.bench.report import git_commit
    >>> git_commit(tempfile.mkdtemp()) is None
    True
    """
    where = Path(path if path is not None else Path(__file__).resolve().parent)
    if where.is_file():
        where = where.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    try:  # tracked files only, like `git describe --dirty`
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        dirty = ""
    return head + ("+dirty" if dirty else "")


def cpu_model():
    """The CPU's model name (Linux), else platform.processor().

    >>> from qsketch.bench.report import cpu_model
    >>> isinstance(cpu_model(), str)
    True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def environment():
    """Where and when a run happens: commit (or package version), date, machine, versions.

    >>> from qsketch.bench.report import environment
    >>> sorted(environment())
    ['commit', 'date', 'machine', 'python']
    """
    import qsketch

    commit = git_commit()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "commit": f"`{commit}`" if commit else f"qsketch {qsketch.__version__} (installed package, no git checkout)",
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.platform()}, {cpu_model()}, {os.cpu_count()} CPUs ({usable} usable)",
        "python": f"Python {platform.python_version()}, numpy {np.__version__}, qsketch {qsketch.__version__}",
    }


# ---- formatting ---------------------------------------------------------------------


def fmt_err(x):
    """An error in % of n, to about three significant places.

    >>> from qsketch.bench.report import fmt_err
    >>> fmt_err(0.0), fmt_err(0.00042), fmt_err(0.5), fmt_err(38.74), fmt_err(None)
    ('0', '4.2e-04', '0.500', '38.7', '—')
    """
    if x is None or x != x:
        return "—"
    if x == 0:
        return "0"
    if x < 0.001:
        return f"{x:.1e}"
    if x < 10:
        return f"{x:.3f}"
    return f"{x:.1f}"


def fmt_bytes(b):
    """A byte count: '4 KB' for targets, '4,116 B' otherwise.

    >>> from qsketch.bench.report import fmt_bytes
    >>> fmt_bytes(16384), fmt_bytes(4116)
    ('16 KB', '4,116 B')
    """
    if b % KB == 0:
        return f"{b // KB} KB"
    return f"{b:,} B"


def _pair(mean_max):
    return f"{fmt_err(mean_max[0])} / {fmt_err(mean_max[1])}" if mean_max else "n/a"


# ---- results --------------------------------------------------------------------------


@dataclass
class Results:
    """Everything a run produced, as the report needs it."""

    mode: str
    command: str
    config: object  # AccuracyConfig
    peers: list  # the Peer objects that ran
    notes: List[str]  # peers left out, and why
    tuned: Dict  # (peer name, target) -> Tuned
    cells: List[dict]  # accuracy.run_accuracy
    skipped_streams: List[str]
    merge: List[dict] = field(default_factory=list)
    speed: Optional[list] = None  # speed.run_speed results
    limits: Optional[object] = None
    speed_target: Optional[int] = None
    speed_config: Optional[object] = None
    seconds: Dict[str, float] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)


def _cells(results, target=None, stream=None, peer=None):
    return [c for c in results.cells if (target is None or c["target"] == target)
            and (stream is None or c["stream"] == stream) and (peer is None or c["peer"] == peer)]


def family_summary(cells, side="mid"):
    """(mean of the streams' mean errors, max of their max errors) over ``cells``, or None.

    >>> from qsketch.bench.report import family_summary
    >>> family_summary([{"errors": {"mid": (0.1, 0.5)}}, {"errors": {"mid": (0.3, 0.2)}}])
    (0.2, 0.5)
    >>> family_summary([{"errors": {"mid": (0.1, 0.5)}}], side="inclusive") is None
    True
    """
    vals = [c["errors"][side] for c in cells if side in c["errors"]]
    if not vals:
        return None
    return float(np.mean([v[0] for v in vals])), float(np.max([v[1] for v in vals]))


def _headline(results, target, side="mid"):
    """{peer: {family: (mean, max)}} at ``target``: the table users choose by."""
    out = {}
    for peer in results.peers:
        row = {}
        for family in FAMILIES + ("all",):
            cells = [c for c in _cells(results, target=target, peer=peer.name)
                     if family == "all" or c["family"] == family]
            row[family] = family_summary(cells, side)
        out[peer.name] = row
    return out


def _families_present(results):
    present = {c["family"] for c in results.cells}
    return [f for f in FAMILIES if f in present]


def _main_target(results):
    return min(results.config.targets, key=lambda t: abs(t - 4 * KB))


def _table(header, rows, align=None):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(align or ["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _capped(results):
    """Names of the peers fed fewer items than the others (their ``max_items``)."""
    return {p.name for p in results.peers if p.max_items is not None and p.max_items < results.config.n}


def _label(results, name):
    return f"{name} †" if name in _capped(results) else name


def _footnote(results):
    capped = [p for p in results.peers if p.name in _capped(results)]
    if not capped:
        return []
    return ["† " + "; ".join(f"{p.name} is fed only the first {p.max_items:,} items of each stream (and of "
                             "each merge), so its errors are not comparable with the others' at equal bytes "
                             "and it is left out of the bold"
                             for p in capped) + ".", ""]


def _bold_best(cells_by_peer, key, exclude=()):
    """The peer with the smallest key(value) among non-None values, ``exclude`` aside."""
    best, best_v = None, None
    for peer, v in cells_by_peer.items():
        if v is None or peer in exclude:
            continue
        k = key(v)
        if best_v is None or k < best_v:
            best, best_v = peer, k
    return best


# ---- Markdown ---------------------------------------------------------------------------


def _render(results, plots):
    """The Markdown report of ``results``; ``plots`` maps plot kinds to image paths (see draw_plots)."""
    cfg = results.config
    env = results.env or environment()
    main = _main_target(results)
    families = _families_present(results)
    out = []
    w = out.append
    w("# Benchmarks: qsketch against t-digests and Apache DataSketches")
    w("")
    w(f"Generated by `{results.command}` ({results.mode} mode) on {env['date']}, at commit {env['commit']}.  "
      f"Machine: {env['machine']}; {env['python']}.  Run time {_times(results.seconds)}.")
    w("")
    targets = ", ".join(fmt_bytes(t) for t in cfg.targets)
    w(f"Run: up to n = {cfg.n:,} items per stream (real streams have fewer rows), {cfg.seeds} seed(s) per "
      f"randomized sketch, size targets {targets} (1 KB = 1,024 bytes) tuned on a standard-normal reference "
      f"stream of {cfg.reference_n:,} items; merges of {cfg.shards} shards.  Regenerate with the command above; "
      "`qsketch bench --help` lists the knobs.")
    w("")
    w("**How to read it.**  Rank error is |estimate − exact| in % of n at 1,000 evenly spaced exact quantiles "
      "plus p = 0.001 and 0.999; each cell is *mean / max* over those probes (averaged over seeds).  The main "
      "rule is the mid-rank, (count(< x) + count(≤ x)) / 2n: sketches with inclusive and exclusive answers "
      "give their average, t-digests their single interpolated rank.  The one-sided rules compare each "
      "sketch's inclusive (≤) and exclusive (<) answers with the exact counts; t-digests have none.  Every "
      "sketch's size parameter is tuned so that its serialized form takes about the target bytes on the "
      "reference stream, then fixed: the bytes it actually takes on each stream are listed, since sizes "
      "grow with n and with the data's range for some sketches.  Family rows average the streams' means and "
      "take the largest of their maxes.  Randomized sketches run once per seed (qsketch is seeded; "
      "DataSketches draws its own randomness); deterministic ones (t-digests, ddsketch) run once.  Streams "
      "are generated or read from PyPI data packages; nothing is downloaded.")
    w("")

    # sketches
    w("## Sketches")
    w("")
    rows = []
    for p in results.peers:
        tuned = [f"{p.param}={_fmt_param(results.tuned[p.name, t].param)} ({results.tuned[p.name, t].nbytes:,} B)"
                 for t in cfg.targets]
        sides = "mid, inclusive, exclusive" if len(p.sides) == 3 else "mid only"
        rows.append([p.name, f"{p.requires} {p.version()}", *tuned, p.size_rule or "serialized bytes", sides,
                     p.notes])
    w("\n".join(_table(["sketch", "library", *[f"{fmt_bytes(t)} target" for t in cfg.targets], "size counted as",
                        "rank rules", "notes"], rows)))
    w("")
    if results.notes:
        w("Not in this run:")
        w("")
        for note in results.notes:
            w(f"- {note}")
        w("")

    # headline
    w(f"## Headline: rank error at {fmt_bytes(main)}, by stream family")
    w("")
    w("Mid-rank rule; *mean / max* in % of n; the lowest mean of each column in bold.")
    w("")
    head = _headline(results, main)
    cols = families + ["all"]
    capped = _capped(results)
    best = {f: _bold_best({p: head[p][f] for p in head}, key=lambda v: v[0], exclude=capped) for f in cols}
    rows = []
    for p in results.peers:
        row = [_label(results, p.name)]
        for f in cols:
            cell = _pair(head[p.name][f])
            row.append(f"**{cell}**" if best[f] == p.name else cell)
        rows.append(row)
    w("\n".join(_table(["sketch", *cols], rows)))
    w("")
    out.extend(_footnote(results))
    for name in plots.get("error_vs_bytes", []):
        w(f"![error vs bytes]({name})")
    w("")

    # per target, per family tables
    w("## Rank error per stream (mid-rank rule)")
    w("")
    names = [p.name for p in results.peers]
    labels = [_label(results, n) for n in names]
    out.extend(_footnote(results))
    for target in cfg.targets:
        w(f"### {fmt_bytes(target)}")
        w("")
        for family in families:
            streams = [s for s in _stream_order(results) if streams_mod.STREAMS[s].family == family]
            rows = []
            for s in streams:
                cells = {c["peer"]: c for c in _cells(results, target=target, stream=s)}
                if not cells:
                    continue
                n = max(c["n"] for c in cells.values())
                means = {p: cells[p]["errors"]["mid"] if p in cells else None for p in names}
                b = _bold_best(means, key=lambda v: v[0], exclude=capped)
                rows.append([s, f"{n:,}"] + [(f"**{_pair(means[p])}**" if p == b else _pair(means[p]))
                                             for p in names])
            w(f"{family.capitalize()} streams:")
            w("")
            w("\n".join(_table(["stream", "n", *labels], rows)))
            w("")
        w(f"Bytes each sketch took per stream at the {fmt_bytes(target)} target:")
        w("")
        rows = []
        for s in _stream_order(results):
            cells = {c["peer"]: c for c in _cells(results, target=target, stream=s)}
            if cells:
                rows.append([s] + [f"{cells[p]['bytes']:,}" if p in cells else "—" for p in names])
        w("\n".join(_table(["stream", *labels], rows)))
        w("")

    # one-sided
    w(f"## One-sided rules at {fmt_bytes(main)}")
    w("")
    w("Inclusive: estimate of count(≤ x) / n against the exact count; exclusive: count(< x) / n.  "
      "*mean / max* in % of n per family; n/a: the sketch answers one interpolated rank only.")
    w("")
    rows = []
    for p in results.peers:
        row = [_label(results, p.name)]
        for f in families:
            cells = [c for c in _cells(results, target=main, peer=p.name) if c["family"] == f]
            for side in ("inclusive", "exclusive"):
                row.append(_pair(family_summary(cells, side)))
        rows.append(row)
    w("\n".join(_table(["sketch", *[f"{f} {s}" for f in families for s in ("inclusive", "exclusive")]], rows)))
    w("")

    # quantile side
    w(f"## Quantile-side error at {fmt_bytes(main)}")
    w("")
    w("For each p, how far p lies outside the exact rank interval [count(< q), count(≤ q)] / n of the "
      "sketch's answer q = quantile(p), in % of n (0: q is a correct p-quantile).  Mean over the family's "
      "streams.")
    w("")
    for f in families:
        rows = []
        for p in results.peers:
            cells = [c for c in _cells(results, target=main, peer=p.name) if c["family"] == f]
            rows.append([_label(results, p.name)] + [fmt_err(float(np.mean([c["qerr"][q] for c in cells])))
                                                    if cells else "—"
                                    for q in QUANTILE_PS])
        w(f"{f.capitalize()} streams:")
        w("")
        w("\n".join(_table(["sketch", *[f"p = {q}" for q in QUANTILE_PS]], rows)))
        w("")
    if plots.get("by_quantile"):
        w(f"Rank error by quantile at {fmt_bytes(main)} (mid-rank rule):")
        w("")
        for name in plots["by_quantile"]:
            w(f"![error by quantile]({name})")
        w("")

    # merge
    if results.merge:
        w("## Merge accuracy")
        w("")
        w(f"Each stream cut into {cfg.shards} shards, iid (a random permutation) or sorted (contiguous value "
          "ranges), one sketch per shard, all merged into one empty sketch; mid-rank *mean / max* in % of n, "
          "and the merged sketch's bytes.")
        w("")
        columns = []
        for c in results.merge:
            if (c["stream"], c["partition"]) not in columns:
                columns.append((c["stream"], c["partition"]))
        for target in cfg.merge_targets:
            rows = []
            for p in results.peers:
                row = [_label(results, p.name)]
                for stream, how in columns:
                    c = next((c for c in results.merge if c["stream"] == stream and c["partition"] == how
                              and c["target"] == target and c["peer"] == p.name), None)
                    row.append(f"{_pair(c['errors']['mid'])} ({c['bytes']:,} B)" if c else "—")
                rows.append(row)
            w(f"At the {fmt_bytes(target)} target:")
            w("")
            w("\n".join(_table(["sketch", *[f"{s} {h}" for s, h in columns]], rows)))
            w("")
        out.extend(_footnote(results))

    # speed
    if results.speed:
        sc = results.speed_config
        w("## Speed")
        w("")
        w(f"Each sketch at its {fmt_bytes(results.speed_target)} parameter, through the adapters (what a user "
          "writes with each library).  Time per item (updates), per query (array queries) or per call; in "
          f"brackets the speed-up over `{BASELINE}` (its time divided by the sketch's; above 1 is faster), the "
          "median over repeats of ratios measured back to back.  "
          f"Workloads: batch update of {sc.n_batch:,} items, micro-batches ({sc.n_micro:,} items), "
          f"{sc.n_item:,} per-item updates, {sc.n_queries:,} queries on a sketch of {sc.n_query_sketch:,} items, "
          f"{sc.n_parts} merges of sketches of {sc.part_n:,} items, serialization of that query sketch; "
          f"{sc.repeat} repeats.  Slow pure-Python sketches get fewer items (same per-item measure).  "
          "Ranks are inclusive where the sketch has that rule; DataSketches' array ranks go through "
          "`get_cdf` after sorting and de-duplicating the queries, as arbitrary queries require.  "
          "— : the library has no such operation.")
        w("")
        ops = [r.op for r in results.speed]
        rows = []
        for p in results.peers:
            row = [p.name]
            for r in results.speed:
                t = r.per_unit.get(p.name)
                if t is None:
                    row.append("—")
                else:
                    s = r.speedup.get(p.name)
                    row.append(fmt_time(t) + (f" ({s:.2f}×)" if s is not None else ""))
            rows.append(row)
        w("\n".join(_table(["sketch", *[f"{o.label} (per {o.unit})" for o in ops]], rows)))
        w("")
        if results.limits is not None:
            lim = results.limits
            parts = []
            for name, t in lim.per_unit.items():
                s = lim.speedup.get(name)
                parts.append(f"`{name}` {fmt_time(t)} per item" + (f" ({s:.2f}× {BASELINE}'s batch update)"
                                                                   if s is not None else ""))
            w(f"Physical limits on the same {results.limits.units['np.sort']:,}-item array, timed in the same "
              "repeats as the batch update: " + "; ".join(parts) + ".")
            w("")
        for name in plots.get("speed", []):
            w(f"![speed]({name})")
        w("")

    # streams
    w("## Streams")
    w("")
    rows = []
    ran = set(c["stream"] for c in results.cells)
    for family in FAMILIES:
        for s in streams_mod.names(family):
            st = streams_mod.STREAMS[s]
            rows.append([s, family, st.description, "yes" if s in ran else "no"])
    w("\n".join(_table(["stream", "family", "description", "in this run"], rows)))
    w("")
    if results.skipped_streams:
        w("Streams that could not be loaded: " + "; ".join(results.skipped_streams) + ".")
        w("")
    if plots.get("missing"):
        w(f"Plots: not drawn ({plots['missing']}).")
        w("")
    return "\n".join(out).rstrip() + "\n"


def _times(seconds):
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    return f"{seconds.get('total', 0):.0f} s before plotting ({parts})"


def _fmt_param(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _stream_order(results):
    seen = []
    for c in results.cells:
        if c["stream"] not in seen:
            seen.append(c["stream"])
    return seen


# ---- plots ----------------------------------------------------------------------------------


def smooth_curve(ps, err, width=10):
    """The error curve sorted by p and averaged over windows of ``width`` probes.

    >>> from qsketch.bench.report import smooth_curve
    >>> smooth_curve(np.array([0.3, 0.1, 0.2, 0.4]), np.array([3.0, 1.0, 2.0, 4.0]), width=2)
    (array([0.15, 0.35]), array([1.5, 3.5]))
    """
    order = np.argsort(ps, kind="stable")
    ps, err = np.asarray(ps)[order], np.asarray(err)[order]
    m = ps.size // width * width
    return ps[:m].reshape(-1, width).mean(axis=1), err[:m].reshape(-1, width).mean(axis=1)


def _style(i, name):
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab20").colors
    qs = name.startswith("qsketch")
    return {"color": colors[(2 * i) % 20 if i < 10 else (2 * (i - 10) + 1) % 20], "lw": 2.2 if qs else 1.2,
            "ls": "-" if qs else "--", "marker": "o", "ms": 4}


def _draw_plots(results, img_dir, rel_prefix):
    """Write the PNGs; returns {"error_vs_bytes": [...], "by_quantile": [...], "speed": [...]} paths for Markdown."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {"missing": "matplotlib is not installed; `pip install matplotlib`"}
    os.makedirs(img_dir, exist_ok=True)
    out = {"error_vs_bytes": [], "by_quantile": [], "speed": []}
    names = [p.name for p in results.peers]

    def save(fig, fname, key):
        fig.tight_layout()
        fig.savefig(os.path.join(img_dir, fname), dpi=100)
        plt.close(fig)
        out[key].append(f"{rel_prefix}{fname}")

    for family in _families_present(results):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for i, peer in enumerate(names):
            xs, ys = [], []
            for t in results.config.targets:
                cells = [c for c in _cells(results, target=t, peer=peer) if c["family"] == family]
                if cells:
                    xs.append(np.mean([c["bytes"] for c in cells]))
                    ys.append(max(np.mean([c["errors"]["mid"][0] for c in cells]), 1e-6))
            if xs:
                ax.plot(xs, ys, label=_label(results, peer), **_style(i, peer))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("serialized bytes (mean over the family's streams)")
        ax.set_ylabel("mean rank error, % of n (mid-rank)")
        ax.set_title(f"Error vs bytes: {family} streams")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        save(fig, f"{IMG_PREFIX}error_vs_bytes_{family}.png", "error_vs_bytes")

    main = _main_target(results)
    for stream in results.config.curve_streams:
        cells = [c for c in _cells(results, target=main, stream=stream) if "curve" in c]
        if not cells:
            continue
        fig, ax = plt.subplots(figsize=(9, 4))
        for c in cells:
            style = _style(names.index(c["peer"]), c["peer"])
            style.update(marker=None)
            ps, err = smooth_curve(PROBE_PS, c["curve"])
            ax.plot(ps, np.maximum(err, 1e-6), label=_label(results, c["peer"]), **style)
        ax.set_yscale("log")
        ax.set_xlabel("p (exact quantile probed; mean over windows of 10 probes)")
        ax.set_ylabel("rank error, % of n")
        ax.set_title(f"Error by quantile at {fmt_bytes(main)}: {stream}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        save(fig, f"{IMG_PREFIX}error_by_quantile_{stream}.png", "by_quantile")

    if results.speed and any(r.speedup.get(BASELINE) for r in results.speed):
        ops = [r for r in results.speed if r.per_unit]
        fig, ax = plt.subplots(figsize=(10.5, 1.0 + 0.7 * len(ops)))
        height = 0.8 / max(1, len(names))
        for i, peer in enumerate(names):
            vals = [r.speedup.get(peer) or np.nan for r in ops]
            ax.barh(np.arange(len(ops)) + i * height, vals, height, label=peer, color=_style(i, peer)["color"])
        ax.set_yticks(np.arange(len(ops)) + 0.4)
        ax.set_yticklabels([r.op.label for r in ops], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel(f"speed-up over {BASELINE} (log scale; > 1 is faster)")
        ax.set_title("Speed relative to DataSketches' KLL")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        save(fig, f"{IMG_PREFIX}speed.png", "speed")
    return out


def write_report(results, out_dir, name="report.md", plots=True):
    """Write ``out_dir/name`` and ``out_dir/img/bench_*.png``; returns the Markdown path.

    ``results`` comes from a run: see :func:`qsketch.bench.command.run`,
    which ends with this call.

    >>> import tempfile
    >>> from qsketch.bench.command import QUICK
    >>> from qsketch.bench.report import Results, write_report
    >>> env = dict.fromkeys(["commit", "date", "machine", "python"], "-")
    >>> results = Results(mode="quick", command="qsketch bench --quick", config=QUICK, peers=[], notes=[],
    ...                   tuned={}, cells=[], skipped_streams=[], env=env)
    >>> with tempfile.TemporaryDirectory() as d:  # a run without sketches, to show the layout
    ...     path = write_report(results, d, "bench.md", plots=False)
    ...     path.name, "Plots: not drawn (--no-plots)." in path.read_text(encoding="utf-8")
    ('bench.md', True)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = _draw_plots(results, out_dir / "img", "img/") if plots else {"missing": "--no-plots"}
    text = _render(results, drawn)
    path = out_dir / name
    path.write_text(text, encoding="utf-8")
    return path
