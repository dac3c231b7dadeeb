"""qsketch: streaming quantile sketches with a native core.

>>> import numpy as np, qsketch
>>> s = qsketch.KLLSketch(k=200, seed=7)
>>> s.update(np.arange(100.0))
>>> s.quantile(0.5), s.rank(49.0)
(49.0, 0.5)
"""

from qsketch._core import DEFAULT_K, MAX_K, MIN_K, KLLSketch
from qsketch.errors import QSketchError, SerializationError
from qsketch.sketch import merge_all
from qsketch.datasketches_format import from_datasketches, to_datasketches

__version__ = "0.1.0"

__all__ = [
    "KLLSketch",
    "merge_all",
    "from_datasketches",
    "to_datasketches",
    "QSketchError",
    "SerializationError",
    "DEFAULT_K",
    "MIN_K",
    "MAX_K",
    "__version__",
]
