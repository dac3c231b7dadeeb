"""Speed: every peer against DataSketches' KLL, timed in the same run.

Each operation is timed for all peers and for the physical limits
interleaved: every repeat times each callable once, back to back, in an
order that alternates between repeats, with the garbage collector off, and
fast calls are looped until one measurement lasts ``min_time``.  Times are
normalized per item (updates), per query or per call, and each peer's
speed-up over ``DS kll_doubles`` is the median over repeats of the ratio of
the two measurements taken back to back, so a shared, noisy machine slows
both sides alike.  (``benchmarks/speed_report.py`` uses the same timer for
the qsketch-only page ``docs/performance.md``.)

The operations go through the adapters of :mod:`qsketch.bench.peers`: what
a user writes with each library.  Slow pure-Python peers get fewer items
(their ``speed_items``); their per-item times remain comparable.

>>> from qsketch.bench import speed
>>> samples = speed.measure({"sum": lambda: sum(range(100))}, repeat=3, min_time=0.001)
>>> len(samples["sum"])
3
>>> speed.fmt_time(0.0025)
'2.50 ms'
"""

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

__all__ = ["measure", "fmt_time", "SpeedConfig", "QUICK", "FULL", "OPS", "run_speed", "BASELINE"]

BASELINE = "DS kll_doubles"


# ---- timing --------------------------------------------------------------------


def time_calls(fn, number, collect=True):
    """Seconds per call of fn(), over ``number`` back-to-back calls, GC off.

    ``collect``: run the garbage collector first (measure() collects once
    for all its calls instead).

    >>> from qsketch.bench.speed import time_calls
    >>> time_calls(lambda: None, 10) >= 0.0
    True
    """
    if collect:
        gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / number


def calibrate(fn, min_time, collect=True):
    """Warm fn up and return how many calls make a measurement of >= min_time.

    >>> from qsketch.bench.speed import calibrate
    >>> calibrate(lambda: None, 0.001) >= 1
    True
    """
    number = 1
    while True:
        total = time_calls(fn, number, collect) * number
        if total >= min_time / 10 or number >= 1 << 20:
            break
        number *= 10
    return max(1, int(math.ceil(min_time * number / max(total, 1e-9))))


def measure(fns, repeat, min_time):
    """Interleave the callables of ``fns`` (name -> fn) ``repeat`` times.

    Each repeat times every callable once, back to back; the order alternates
    between repeats so no callable always runs first.  The garbage collector
    runs once before and stays off throughout.  Returns name -> list of
    seconds per call, one entry per repeat.

    >>> from qsketch.bench.speed import measure
    >>> samples = measure({"a": lambda: None, "b": lambda: sum(range(10))}, repeat=2, min_time=0.001)
    >>> sorted(samples), len(samples["a"])
    (['a', 'b'], 2)
    """
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        numbers = {name: calibrate(fn, min_time, collect=False) for name, fn in fns.items()}
        names = list(fns)
        samples = {name: [] for name in names}
        for r in range(repeat):
            for name in names if r % 2 == 0 else names[::-1]:
                samples[name].append(time_calls(fns[name], numbers[name], collect=False))
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def fmt_time(t):
    """A duration for humans: s, ms, µs or ns.

    >>> from qsketch.bench.speed import fmt_time
    >>> fmt_time(2e-9), fmt_time(3.5e-6), fmt_time(1.5), fmt_time(None)
    ('2 ns', '3.50 µs', '1.500 s', '—')
    """
    if t is None:
        return "—"
    if t >= 1.0:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    if t >= 1e-6:
        return f"{t * 1e6:.2f} µs"
    return f"{t * 1e9:.0f} ns"


# ---- configuration and operations ---------------------------------------------------


@dataclass(frozen=True)
class SpeedConfig:
    """Sizes of the timed workloads."""

    n_batch: int
    n_item: int
    n_micro: int
    micro: int
    n_query_sketch: int
    n_queries: int
    n_parts: int
    part_n: int
    repeat: int
    min_time: float


FULL = SpeedConfig(n_batch=2_000_000, n_item=100_000, n_micro=1_000_000, micro=1024, n_query_sketch=1_000_000,
                   n_queries=10_000, n_parts=100, part_n=10_000, repeat=7, min_time=0.1)
QUICK = SpeedConfig(n_batch=200_000, n_item=20_000, n_micro=100_000, micro=1024, n_query_sketch=100_000,
                    n_queries=2_000, n_parts=100, part_n=1_000, repeat=3, min_time=0.01)


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    unit: str  # what the time is divided by: "item", "query" or "call"


OPS = [
    Op("batch", "Batch update: one numpy array", "item"),
    Op("micro", "Micro-batches of 1,024 items", "item"),
    Op("item", "Per-item update from a Python loop", "item"),
    Op("rank_vec", "rank of an array of queries (random order)", "query"),
    Op("rank_one", "rank of one scalar query", "call"),
    Op("quantile_vec", "quantile of an array of probabilities", "query"),
    Op("quantile_one", "quantile of one scalar probability", "call"),
    Op("merge", "merge 100 sketches into one", "call"),
    Op("serialize", "serialize", "call"),
    Op("deserialize", "deserialize", "call"),
]

LIMITS = {  # physical limits timed with the batch update, on the same array
    "np.sort": lambda x: np.sort(x),
    "np.sum": lambda x: np.sum(x),
    "np.quantile (exact)": lambda x: np.quantile(x, [0.5, 0.9, 0.99, 0.999]),
}


def _cap(peer, n):
    return n if peer.speed_items is None else min(n, peer.speed_items)


def _build_workloads(cfg, peers, params, seed=20240611):
    """{op key: {peer name: (callable, units per call)}} and the limit callables."""
    rng = np.random.default_rng(seed)
    batch = rng.standard_normal(cfg.n_batch)
    items = rng.standard_normal(cfg.n_item).tolist()
    micro = rng.standard_normal(cfg.n_micro)
    base = rng.standard_normal(cfg.n_query_sketch)
    queries = rng.standard_normal(cfg.n_queries)
    probs = rng.random(cfg.n_queries)
    parts = [rng.standard_normal(cfg.part_n) for _ in range(cfg.n_parts)]
    work = {op.key: {} for op in OPS}
    for peer in peers:
        param = params[peer.name]
        new = lambda s=1, peer=peer, param=param: peer.build(param, s)  # noqa: E731

        nb = _cap(peer, cfg.n_batch)
        xb = new().prepare(batch[:nb])

        def batch_update(new=new, xb=xb):
            s = new()
            s.update(xb)
            return s

        work["batch"][peer.name] = (batch_update, nb)

        nm = _cap(peer, cfg.n_micro)
        chunks = [new().prepare(micro[i:i + cfg.micro]) for i in range(0, nm, cfg.micro)]

        def micro_update(new=new, chunks=chunks):
            s = new()
            for c in chunks:
                s.update(c)
            return s

        work["micro"][peer.name] = (micro_update, nm)

        ni = _cap(peer, cfg.n_item)
        its = items[:ni]

        def item_update(new=new, its=its):
            s = new()
            upd = s.update_item
            for v in its:
                upd(v)
            return s.count()  # a read: qsketch hands staged scalar updates to its core here

        work["item"][peer.name] = (item_update, ni)

        sk = new()
        sk.update(sk.prepare(base[:_cap(peer, cfg.n_query_sketch)]))
        nq = cfg.n_queries if peer.speed_queries is None else min(cfg.n_queries, peer.speed_queries)
        qs, ps = queries[:nq], probs[:nq]
        if sk.native_rank:
            side = "inclusive" if "inclusive" in peer.sides else "mid"
            work["rank_vec"][peer.name] = (lambda sk=sk, side=side, qs=qs: sk.rank(qs, side), nq)
            work["rank_one"][peer.name] = (lambda sk=sk: sk.rank_one(0.5), 1)
        work["quantile_vec"][peer.name] = (lambda sk=sk, ps=ps: sk.quantile(ps), nq)
        work["quantile_one"][peer.name] = (lambda sk=sk: sk.quantile_one(0.9), 1)

        shards = []
        for i, part in enumerate(parts):
            s = new(1000 + i)
            s.update(s.prepare(part[:max(1, _cap(peer, cfg.n_parts * cfg.part_n) // cfg.n_parts)]))
            shards.append(s)

        def merge(new=new, shards=shards):
            acc = new(0)
            for s in shards:
                acc.merge(s)
            return acc

        work["merge"][peer.name] = (merge, 1)
        try:
            blob = sk.serialize()
        except NotImplementedError:
            blob = None
        if blob is not None:
            work["serialize"][peer.name] = (sk.serialize, 1)
            work["deserialize"][peer.name] = (lambda sk=sk, blob=blob: sk.deserialize(blob), 1)
    limits = {name: (lambda fn=fn: fn(batch), cfg.n_batch) for name, fn in LIMITS.items()}
    return work, limits


@dataclass
class OpResult:
    """Timings of one operation: per unit (median over repeats) and the speed-up over the baseline."""

    op: Op
    per_unit: Dict[str, float]
    speedup: Dict[str, Optional[float]]
    spread: Dict[str, tuple]
    units: Dict[str, int]


def run_speed(cfg, peers, params, tick=None):
    """Time every operation for every peer; returns (results, limits).

    ``params`` maps peer name to its size parameter.  ``limits`` is the
    :class:`OpResult` of the physical limits (np.sort, np.sum, exact
    np.quantile), timed in the batch repeats.

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.speed import SpeedConfig, run_speed
    >>> tiny = SpeedConfig(n_batch=2048, n_item=100, n_micro=2048, micro=1024, n_query_sketch=2048,
    ...                    n_queries=16, n_parts=4, part_n=64, repeat=1, min_time=0.0001)
    >>> results, limits = run_speed(tiny, [peers.get("qsketch step")], {"qsketch step": 64})
    >>> [r.op.key for r in results][:3], sorted(limits.per_unit)
    (['batch', 'micro', 'item'], ['np.quantile (exact)', 'np.sort', 'np.sum'])
    """
    work, limit_fns = _build_workloads(cfg, peers, params)
    results, limits = [], None
    for op in OPS:
        fns = {name: fn for name, (fn, _) in work[op.key].items()}
        units = {name: u for name, (_, u) in work[op.key].items()}
        if op.key == "batch":
            fns.update({name: fn for name, (fn, _) in limit_fns.items()})
            units.update({name: u for name, (_, u) in limit_fns.items()})
        samples = measure(fns, cfg.repeat, cfg.min_time) if fns else {}
        per = {name: [t / units[name] for t in ts] for name, ts in samples.items()}
        per_unit = {name: statistics.median(ts) for name, ts in per.items()}
        speedup, spread = {}, {}
        for name, ts in per.items():
            if BASELINE in per:
                ratios = [b / t for b, t in zip(per[BASELINE], ts)]
                speedup[name] = statistics.median(ratios)
                spread[name] = (min(ratios), max(ratios))
            else:
                speedup[name] = None
        res = OpResult(op, per_unit, speedup, spread, units)
        if op.key == "batch":
            names = list(limit_fns)
            limits = OpResult(Op("limits", "Physical limits, on the batch array", "item"),
                              {k: per_unit[k] for k in names}, {k: speedup.get(k) for k in names},
                              {k: spread.get(k) for k in names}, {k: units[k] for k in names})
            for k in names:
                for d in (res.per_unit, res.speedup, res.spread, res.units):
                    d.pop(k, None)
        results.append(res)
        if tick:
            tick()
    return results, limits


def speed_params(peers, tuned, targets):
    """Each peer's parameter at the target nearest 4 KB: the speed runs compare equal-size sketches.

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import Tuned
    >>> from qsketch.bench.speed import speed_params
    >>> tuned = {("qsketch step", 1024): Tuned(1024, 16, 1032), ("qsketch step", 4096): Tuned(4096, 170, 4116)}
    >>> speed_params([peers.get("qsketch step")], tuned, (1024, 4096))
    ({'qsketch step': 170}, 4096)
    """
    target = min(targets, key=lambda t: abs(t - 4096))
    return {p.name: tuned[p.name, target].param for p in peers}, target
