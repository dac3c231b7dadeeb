"""Python-level conveniences over the sketch types.

>>> import qsketch
>>> from qsketch.sketch import merge_all
>>> a, b = qsketch.KLLSketch(seed=1), qsketch.KLLSketch(seed=2)
>>> a.update([1.0, 2.0]); b.update([3.0])
>>> merged = merge_all([a, b])
>>> merged.n, merged.max, a.n  # the inputs are unchanged
(3, 3.0, 2)
"""

from qsketch._core import KLLSketch

__all__ = ["merge_all"]


def merge_all(sketches):
    """Merge an iterable of sketches into a new sketch; the inputs are unchanged.

    The result takes the smallest k among the inputs.  Merging is done in a
    balanced binary tree, so no sketch absorbs more than O(log m) merges of
    growing size, and its error matches a tree-shaped reduction on a cluster.

    Raises ValueError on an empty iterable and TypeError on a non-sketch.

    Examples
    --------
    >>> import qsketch
    >>> parts = [qsketch.KLLSketch(seed=i) for i in range(4)]
    >>> for i, p in enumerate(parts):
    ...     p.update([float(i)] * 10)
    >>> total = qsketch.merge_all(parts)
    >>> total.n, total.min, total.max
    (40, 0.0, 3.0)
    """
    level = []
    for s in sketches:
        if not isinstance(s, KLLSketch):
            raise TypeError(f"merge_all() takes KLLSketch objects; got {type(s).__name__}")
        level.append(s)
    if not level:
        raise ValueError("merge_all() needs at least one sketch")
    owned = [False] * len(level)  # copy an input only when it is first written to
    while len(level) > 1:
        nxt, nxt_owned = [], []
        for i in range(0, len(level) - 1, 2):
            acc = level[i] if owned[i] else level[i].copy()
            acc.merge(level[i + 1])
            nxt.append(acc)
            nxt_owned.append(True)
        if len(level) % 2:
            nxt.append(level[-1])
            nxt_owned.append(owned[-1])
        level, owned = nxt, nxt_owned
    return level[0] if owned[0] else level[0].copy()
