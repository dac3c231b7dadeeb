"""CDF plots of an aggregator's groups (needs matplotlib: ``qsketch[plot]``)."""

import math

import numpy as np

__all__ = ["plot_cdfs"]


def _import_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'qsketch[plot]'") from None
    return Figure, FigureCanvasAgg


def plot_cdfs(agg, path, where=None, max_panels=12):
    """Draw each group's CDF, from its sketch, into an image file (PNG, SVG
    or PDF by the extension): one panel per metric, one line per group.
    Exact sketches draw the empirical CDF itself; estimated ones are dashed.
    Returns the number of panels drawn.

    Examples
    --------
    >>> import os, tempfile
    >>> from qsketch.eval import ScoreAggregator
    >>> from qsketch.eval.plot import plot_cdfs
    >>> agg = ScoreAggregator(by=["model"], score="acc", seed=0)
    >>> agg.add_batch([{"model": "a", "acc": 1}, {"model": "b", "acc": 0.5}])
    >>> plot_cdfs(agg, os.path.join(tempfile.mkdtemp(), "cdf.png"))  # doctest: +SKIP
    1
    """
    Figure, FigureCanvasAgg = _import_matplotlib()
    keys = agg.groups() if where is None else agg.select(where)
    keys = [k for k in keys if agg.group(k).count > 0]
    if not keys:
        raise ValueError("no group with numeric scores to plot")
    metrics = []
    for k in keys:
        if k[-1] not in metrics:
            metrics.append(k[-1])
    metrics = metrics[:max_panels]
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for k in keys:
            if k[-1] != metric:
                continue
            g = agg.group(k)
            x, f = g.cdf_points()
            xs = np.concatenate([[x[0]], x])
            fs = np.concatenate([[0.0], f])
            label = ", ".join(str(v) for v in k[:-1]) or "all"
            label += f" (n={g.count})"
            ax.step(xs, fs, where="post", label=label, linestyle="-" if g.is_exact else "--")
        ax.set_title(metric)
        ax.set_xlabel("score")
        ax.set_ylabel("fraction <= score")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    fig.suptitle("CDF of each group's scores (solid: exact; dashed: sketch estimate)", fontsize="medium")
    fig.savefig(path, dpi=110)
    return len(metrics)
