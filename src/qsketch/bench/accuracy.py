"""Accuracy at equal serialized bytes: the exact truth, the error metrics, the
size tuner and the runs behind the accuracy half of ``qsketch bench``.

Rank error.  On a stream of n items, the probes are 1,000 evenly spaced exact
quantiles (the items of ranks (i + 0.5) / 1000 · n) plus those of p = 0.001
and 0.999.  The truth of a probe x is its exact mid-rank
(count(< x) + count(<= x)) / 2n and, for the one-sided rules, count(<= x) / n
(inclusive) and count(< x) / n (exclusive); each is compared with the
sketch's corresponding estimate (see :mod:`qsketch.bench.peers` for which
sketches answer which rule).  Errors are |estimate - truth| in % of n,
summarized per stream as the mean and the max over the probes.

Quantile-side error.  For p in 0.5, 0.9, 0.99, 0.999 the sketch's answer
q = quantile(p) is scored by how far p lies outside the exact rank interval
[count(< q) / n, count(<= q) / n] of q, in % of n (0 when q is a correct
p-quantile, whatever the rounding convention).

Equal bytes.  :func:`tune` bisects a peer's size parameter on a reference
stream until its serialized size is as close as it gets to a target
(1, 4 and 16 KB); the parameter is then fixed and each stream reports the
bytes the sketch actually took.

>>> import numpy as np
>>> from qsketch.bench import accuracy, peers
>>> truth = accuracy.exact_truth(np.arange(100.0))
>>> truth.probes.size, float(truth.ranks["mid"][0]), float(truth.ranks["inclusive"][0])
(1002, 0.005, 0.01)
>>> sketch = peers.get("qsketch step").build(200, seed=0)
>>> sketch.update(np.arange(100.0))
>>> float(accuracy.rank_errors(sketch, truth)["mid"].max())
0.0
"""

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from qsketch.bench import streams as streams_mod

__all__ = ["Truth", "Tuned", "AccuracyConfig", "exact_truth", "rank_errors", "quantile_errors", "tune",
           "tune_all", "evaluate", "run_accuracy", "run_merge", "QUANTILE_PS", "PROBE_PS", "KB"]

KB = 1024
QUANTILE_PS = (0.5, 0.9, 0.99, 0.999)
PROBE_PS = np.concatenate([(np.arange(1000) + 0.5) / 1000, [0.001, 0.999]])


@dataclass(frozen=True)
class Truth:
    """Exact answers for one stream: the sorted items, the probes and their exact ranks."""

    sorted: np.ndarray
    ps: np.ndarray  # the probability each probe was taken at
    probes: np.ndarray
    ranks: Dict[str, np.ndarray]  # "mid", "inclusive", "exclusive"

    @property
    def n(self):
        """Items in the stream."""
        return self.sorted.size


def exact_truth(data):
    """The probes of ``data`` and their exact mid, inclusive and exclusive ranks.

    >>> from qsketch.bench.accuracy import exact_truth
    >>> t = exact_truth([4.0, 1.0, 3.0, 2.0])
    >>> t.n, float(t.probes[0]), [float(t.ranks[s][0]) for s in ("exclusive", "mid", "inclusive")]
    (4, 1.0, [0.0, 0.125, 0.25])
    """
    xs = np.sort(np.asarray(data, dtype=np.float64))
    n = xs.size
    probes = xs[np.minimum((PROBE_PS * n).astype(np.int64), n - 1)]
    inc = np.searchsorted(xs, probes, "right") / n
    exc = np.searchsorted(xs, probes, "left") / n
    return Truth(xs, PROBE_PS, probes, {"mid": 0.5 * (inc + exc), "inclusive": inc, "exclusive": exc})


def rank_errors(adapter, truth, sides=None):
    """|estimate - truth| (fractions of n) at every probe, for each rank rule the sketch answers.

    ``sides`` restricts the rules (those the sketch lacks are left out).

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import exact_truth, rank_errors
    >>> s = peers.get("qsketch step").build(200, seed=0); s.update(np.arange(50.0))
    >>> errors = rank_errors(s, exact_truth(np.arange(50.0)))
    >>> sorted(errors), max(float(e.max()) for e in errors.values())
    (['exclusive', 'inclusive', 'mid'], 0.0)
    >>> list(rank_errors(s, exact_truth(np.arange(50.0)), ["mid"]))
    ['mid']
    """
    sides = adapter.sides if sides is None else [s for s in sides if s in adapter.sides]
    return {side: np.abs(adapter.rank(truth.probes, side) - truth.ranks[side]) for side in sides}


def quantile_errors(adapter, truth, ps=QUANTILE_PS):
    """Distance (fraction of n) from each p to the exact rank interval of ``quantile(p)``.

    >>> import numpy as np
    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import exact_truth, quantile_errors
    >>> truth = exact_truth(np.arange(10.0))
    >>> s = peers.get("qsketch step").build(200, seed=0); s.update(np.arange(10.0))
    >>> quantile_errors(s, truth, [0.5, 0.95])
    array([0., 0.])
    """
    ps = np.asarray(ps, dtype=np.float64)
    answers = np.asarray(adapter.quantile(ps), dtype=np.float64)
    lo = np.searchsorted(truth.sorted, answers, "left") / truth.n
    hi = np.searchsorted(truth.sorted, answers, "right") / truth.n
    return np.maximum(np.maximum(lo - ps, ps - hi), 0.0)


@dataclass(frozen=True)
class Tuned:
    """A peer's size parameter for one target, and its size on the reference stream."""

    target: int
    param: object
    nbytes: int


def tune(peer, target, reference, seed=0, window=4):
    """The largest serialized size within ``target`` bytes on ``reference``, over ``peer.candidates``.

    "At equal bytes" must not let one sketch take more than another: every
    peer gets the largest size that fits the budget, not the closest one
    (a closest size may lie over it).  The size grows along the candidates
    only roughly (a KLL sketch's level count steps with its randomness:
    qsketch's k = 365 takes 15,619 bytes on the reference, 366 16,878 and
    368 16,085), so a bisection finds the region and ``window`` candidates
    on each side of its best are then tried too.  When even the smallest
    candidate is over the budget, returns the smallest size seen.

    >>> import numpy as np
    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import tune
    >>> ref = np.random.default_rng(0).normal(size=20_000)
    >>> t = tune(peers.get("qsketch step"), 4096, ref)
    >>> 3896 < t.nbytes <= 4096
    True
    """
    if peer.max_items is not None:
        reference = reference[:peer.max_items]
    cands = peer.candidates
    sizes = {}

    def size_at(i):
        if i not in sizes:
            sketch = peer.build(cands[i], seed)
            sketch.update(sketch.prepare(reference))
            sizes[i] = sketch.nbytes()
        return sizes[i]

    lo, hi, found = 0, len(cands) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if size_at(mid) <= target:
            found = mid
            lo = mid + 1
        else:
            hi = mid - 1
    for i in range(max(0, found - window), min(len(cands), found + window + 1)):
        size_at(i)
    fitting = [i for i in sizes if sizes[i] <= target]
    best = (max(fitting, key=lambda i: (sizes[i], -i)) if fitting
            else min(sizes, key=lambda i: (sizes[i], i)))
    return Tuned(target, cands[best], sizes[best])


def tune_all(peers, targets, reference, tick=None):
    """{(peer name, target): Tuned} for every peer and target; ``tick()`` after each.

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import tune_all
    >>> ref = np.random.default_rng(0).normal(size=5_000)
    >>> list(tune_all([peers.get("qsketch step")], [1024, 2048], ref))
    [('qsketch step', 1024), ('qsketch step', 2048)]
    """
    out = {}
    for peer in peers:
        for target in targets:
            out[peer.name, target] = tune(peer, target, reference)
            if tick:
                tick()
    return out


def _summary(errs):
    """(mean, max) over trials' per-probe errors, in % of n: the mean of the means and of the maxes."""
    errs = np.asarray(errs) * 100.0
    return float(errs.mean(axis=1).mean()), float(errs.max(axis=1).mean())


def evaluate(peer, param, data, truth, seeds, keep_curve=False):
    """Build ``peer`` at ``param`` on ``data`` once per trial and score it against ``truth``.

    Returns a dict: ``bytes`` (mean over trials), ``trials``, ``errors``
    {side: (mean, max) in % of n}, ``qerr`` {p: error in % of n, mean over
    trials}, and ``curve`` (the mid-rank error per probe, mean over trials)
    when ``keep_curve``.

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import evaluate, exact_truth
    >>> data = np.arange(100.0)
    >>> cell = evaluate(peers.get("qsketch step"), 200, data, exact_truth(data), seeds=2)
    >>> cell["trials"], cell["errors"]["mid"], cell["qerr"][0.5]
    (2, (0.0, 0.0), 0.0)
    """
    trials = 1 if peer.deterministic else seeds
    per_side, qerrs, sizes = {}, [], []
    for t in range(trials):
        sketch = peer.build(param, t)
        sketch.update(sketch.prepare(data))
        sizes.append(sketch.nbytes())
        for side, e in rank_errors(sketch, truth).items():
            per_side.setdefault(side, []).append(e)
        qerrs.append(quantile_errors(sketch, truth))
    out = {
        "bytes": int(round(float(np.mean(sizes)))),
        "trials": trials,
        "errors": {side: _summary(e) for side, e in per_side.items()},
        "qerr": dict(zip(QUANTILE_PS, (np.mean(qerrs, axis=0) * 100.0).tolist())),
    }
    if keep_curve:
        out["curve"] = np.mean(per_side["mid"], axis=0) * 100.0
    return out


@dataclass(frozen=True)
class AccuracyConfig:
    """What the accuracy runs cover.  ``targets`` in bytes; ``streams`` None means all."""

    n: int
    seeds: int
    targets: Tuple[int, ...]
    streams: Optional[Sequence[str]]
    reference_n: int
    merge_streams: Sequence[str]
    merge_targets: Tuple[int, ...]
    shards: int = 100
    merge_seeds: int = 1
    curve_streams: Sequence[str] = field(default=("lognormal", "flights_arr_delay", "pareto", "zoom_in"))


def reference_stream(cfg):
    """The stream the sizes are tuned on: standard normal, ``cfg.reference_n`` items.

    >>> from qsketch.bench.accuracy import reference_stream
    >>> from qsketch.bench.command import QUICK
    >>> reference_stream(QUICK).size == QUICK.reference_n
    True
    """
    return streams_mod.load("normal", n=cfg.reference_n, seed=99)


def _with_cap(peer, data, cache):
    """``data`` cut to the peer's ``max_items`` and its truth (cached per length)."""
    if peer.max_items is not None and data.size > peer.max_items:
        data = data[:peer.max_items]
    if data.size not in cache:
        cache[data.size] = exact_truth(data)
    return data, cache[data.size]


def run_accuracy(cfg, peers, tuned, tick=None):
    """Score every peer at every target on every stream.

    Returns (cells, skipped): one dict per (stream, target, peer) with the
    keys of :func:`evaluate` plus ``stream``, ``family``, ``n``, ``peer``,
    ``target``, ``param``; and notes on the streams that could not be loaded.
    ``tick()`` is called after each (stream, target).

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import AccuracyConfig, Tuned, run_accuracy
    >>> cfg = AccuracyConfig(n=2000, seeds=1, targets=(2048,), streams=("normal", "pass_fail"), reference_n=2000,
    ...                      merge_streams=("normal",), merge_targets=(2048,), shards=4)
    >>> tuned = {("qsketch step", 2048): Tuned(2048, 64, 2000)}
    >>> cells, skipped = run_accuracy(cfg, [peers.get("qsketch step")], tuned)
    >>> [(c["stream"], c["family"], c["n"]) for c in cells], skipped
    ([('normal', 'synthetic', 2000), ('pass_fail', 'discrete', 2000)], [])
    """
    names = list(cfg.streams) if cfg.streams is not None else streams_mod.names()
    cells, skipped = [], []
    for name in names:
        try:
            data = streams_mod.load(name, n=cfg.n, seed=0)
        except streams_mod.UnavailableStream as exc:
            skipped.append(f"{name}: {exc}")
            if tick:
                for _ in cfg.targets:
                    tick()
            continue
        cache = {}
        for target in cfg.targets:
            for peer in peers:
                param = tuned[peer.name, target].param
                fed, truth = _with_cap(peer, data, cache)
                start = time.perf_counter()
                cell = evaluate(peer, param, fed, truth, cfg.seeds, keep_curve=name in cfg.curve_streams)
                cell.update(stream=name, family=streams_mod.STREAMS[name].family, n=fed.size,
                            peer=peer.name, target=target, param=param,
                            seconds=time.perf_counter() - start)
                cells.append(cell)
            if tick:
                tick()
    return cells, skipped


def partitions(data, shards, how, seed=0):
    """``data`` cut into ``shards`` parts: "iid" (a random permutation) or "sorted" (value ranges).

    >>> from qsketch.bench.accuracy import partitions
    >>> [p.tolist() for p in partitions(np.array([3.0, 1.0, 2.0, 0.0]), 2, "sorted")]
    [[0.0, 1.0], [2.0, 3.0]]
    """
    if how == "iid":
        data = np.random.default_rng(seed).permutation(data)
    elif how == "sorted":
        data = np.sort(data)
    else:
        raise ValueError(f"partition must be 'iid' or 'sorted', got {how!r}")
    return np.array_split(data, shards)


def run_merge(cfg, peers, tuned, tick=None):
    """Merge accuracy: ``cfg.shards`` sketches over iid and sorted partitions, merged into one.

    One dict per (stream, partition, target, peer): ``errors`` {"mid":
    (mean, max)} in % of n, ``bytes`` of the merged sketch, ``trials``.

    >>> from qsketch.bench import peers
    >>> from qsketch.bench.accuracy import AccuracyConfig, Tuned, run_merge
    >>> cfg = AccuracyConfig(n=2000, seeds=1, targets=(2048,), streams=("normal",), reference_n=2000,
    ...                      merge_streams=("normal",), merge_targets=(2048,), shards=4)
    >>> cells = run_merge(cfg, [peers.get("qsketch step")], {("qsketch step", 2048): Tuned(2048, 64, 2000)})
    >>> [(c["partition"], c["n"]) for c in cells]
    [('iid', 2000), ('sorted', 2000)]
    """
    cells = []
    for name in cfg.merge_streams:
        try:
            data = streams_mod.load(name, n=cfg.n, seed=0)
        except streams_mod.UnavailableStream:
            continue
        cache = {}
        for how in ("iid", "sorted"):
            for target in cfg.merge_targets:
                for peer in peers:
                    param = tuned[peer.name, target].param
                    fed, truth = _with_cap(peer, data, cache)
                    parts = partitions(fed, cfg.shards, how)
                    trials = 1 if peer.deterministic else cfg.merge_seeds
                    errs, sizes = [], []
                    for t in range(trials):
                        acc = peer.build(param, t)
                        for i, part in enumerate(parts):
                            shard = peer.build(param, 1000 * (t + 1) + i)
                            shard.update(shard.prepare(part))
                            acc.merge(shard)
                        errs.append(rank_errors(acc, truth, ["mid"])["mid"])
                        sizes.append(acc.nbytes())
                    cells.append({"stream": name, "partition": how, "target": target, "peer": peer.name,
                                  "n": fed.size, "param": param, "trials": trials,
                                  "bytes": int(round(float(np.mean(sizes)))),
                                  "errors": {"mid": _summary(errs)}})
                if tick:
                    tick()
    return cells
