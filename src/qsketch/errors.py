"""Exceptions raised by qsketch.

Every error qsketch raises on purpose is a subclass of a built-in exception,
so ``except ValueError`` keeps working for callers that do not know qsketch.

>>> import qsketch
>>> try:
...     qsketch.KLLSketch.from_bytes(b"junk")
... except ValueError as e:  # a SerializationError, caught as the built-in it extends
...     print(type(e).__name__, isinstance(e, qsketch.QSketchError))
SerializationError True
"""

__all__ = ["QSketchError", "SerializationError"]


class QSketchError(Exception):
    """Base class of the exceptions specific to qsketch.

    Examples
    --------
    >>> import qsketch
    >>> try:
    ...     qsketch.KLLSketch.from_bytes(b"")
    ... except qsketch.QSketchError as e:  # any error qsketch raises on purpose
    ...     print(e)
    cannot decode a sketch: too short to be a qsketch sketch (fewer than 4 bytes)
    """


class SerializationError(QSketchError, ValueError):
    """Bytes that cannot be decoded into a sketch: truncated, corrupt, of
    another format or of a newer format version.

    Examples
    --------
    >>> import qsketch
    >>> try:
    ...     qsketch.KLLSketch.from_bytes(b"not a sketch")
    ... except qsketch.SerializationError as e:
    ...     print(e)
    cannot decode a sketch: not a qsketch sketch (bad magic bytes)
    """
