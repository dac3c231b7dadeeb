"""An Inspect AI ``@metric`` that reports quantiles of the sample scores.

    from inspect_ai.scorer import accuracy, model_graded_qa, scorer
    from qsketch.eval.inspect_metric import quantiles

    @scorer(metrics=[accuracy(), quantiles([0.1, 0.5, 0.9])])
    def judged(): ...

The metric normalises score values like the aggregator (grades C/I/P, N and
None unscored, booleans, numeric text), sketches them with a KLLSketch and
reports one value per probability, named ``p10``, ``p50``, ``p90``...
(exact while the sketch is exact).  It sees what Inspect hands to metrics:
with several epochs, the epoch-reduced score of each sample.  Importing this
module imports inspect_ai; it is also registered through the ``inspect_ai``
entry point, as ``qsketch/quantiles``.
"""

import math

import numpy as np
from inspect_ai.scorer import Metric, SampleScore, metric

from qsketch._core import KLLSketch
from qsketch.eval.scores import Normalizer

__all__ = ["quantiles", "quantile_label"]


def quantile_label(p):
    """The name of the value reported for probability ``p`` (0.5 -> "p50").

    Examples
    --------
    >>> from qsketch.eval.inspect_metric import quantile_label  # doctest: +SKIP
    >>> quantile_label(0.5), quantile_label(0.999)  # doctest: +SKIP
    ('p50', 'p99.9')
    """
    return f"p{round(float(p) * 100, 6):g}"


@metric
def quantiles(ps=(0.1, 0.5, 0.9), k=200, grades=None) -> Metric:
    """Quantiles of the sample scores, one value per probability in ``ps``.

    Args:
        ps: probabilities in [0, 1].
        k: sketch accuracy parameter.
        grades: letter grades to numbers (default C=1, I=0, P=0.5, N unscored).
    """
    probs = [float(p) for p in ps]
    for p in probs:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"quantile probabilities must lie in [0, 1]; got {p}")
    normalizer = Normalizer(grades)

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        values = []
        for item in scores:
            score = getattr(item, "score", item)
            x = normalizer.convert(getattr(score, "value", None))
            if isinstance(x, float) and not math.isnan(x):
                values.append(x)
        if not values:
            return {quantile_label(p): math.nan for p in probs}
        sketch = KLLSketch(int(k), seed=0)
        sketch.update(np.asarray(values, dtype=np.float64))
        return {quantile_label(p): float(sketch.quantile(p)) for p in probs}

    return compute
