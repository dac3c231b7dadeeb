"""The benchmark suite behind ``qsketch bench``: error, space and speed of
qsketch against t-digests and Apache DataSketches.

- :mod:`qsketch.bench.streams`: the streams (real, synthetic, adversarial, discrete).
- :mod:`qsketch.bench.peers`: one adapter interface over qsketch and its peers.
- :mod:`qsketch.bench.accuracy`: exact truth, error metrics, equal-bytes tuning, merge accuracy.
- :mod:`qsketch.bench.speed`: interleaved timings, ratios to DataSketches' KLL.
- :mod:`qsketch.bench.report`: the Markdown report and its plots.
- :mod:`qsketch.bench.command`: the ``qsketch bench`` command.

The optional peers come with ``pip install "qsketch[bench]"``; any that is
missing is skipped with a note in the report.  Importing this package loads
only numpy.

>>> from qsketch.bench import streams, peers
>>> "normal" in streams.names("synthetic"), "DS kll_doubles" in peers.names()
(True, True)
"""
