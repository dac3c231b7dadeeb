"""The benchmark streams: a re-export of :mod:`qsketch.bench.streams`.

The registry moved into the package so that ``qsketch bench`` runs from an
installed qsketch; scripts that import ``benchmarks.streams`` keep working.

>>> from benchmarks import streams
>>> streams.load("normal", n=10, seed=1).shape
(10,)
"""

from qsketch.bench.streams import *  # noqa: F401,F403
from qsketch.bench.streams import __all__  # noqa: F401
