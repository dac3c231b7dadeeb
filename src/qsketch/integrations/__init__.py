"""Integrations of qsketch with distributed engines.

Each integration is a submodule that imports its engine lazily, so ``import
qsketch`` needs only numpy:

* :mod:`qsketch.integrations.dask`: sketches of dask arrays and dataframe
  columns, tree-reduced, and a groupby aggregation (extra ``qsketch[dask]``).

Spark and Ray need no module: see docs/scale.md (Spark SQL exchanges
DataSketches KLL bytes, read and written by :func:`qsketch.from_datasketches`
and :func:`qsketch.to_datasketches`; Ray moves sketches by pickle or bytes).
"""
