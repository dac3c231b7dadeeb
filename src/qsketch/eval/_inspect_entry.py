"""Target of the ``inspect_ai`` entry point: importing it registers the
qsketch hook and metric with Inspect AI."""

from qsketch.eval import inspect_hook, inspect_metric  # noqa: F401  (registration on import)
