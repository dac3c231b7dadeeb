from typing import Iterable

from qsketch._core import KLLSketch

def merge_all(sketches: Iterable[KLLSketch]) -> KLLSketch: ...
