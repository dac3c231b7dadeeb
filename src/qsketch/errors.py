"""Exceptions raised by qsketch.

Every error qsketch raises on purpose is a subclass of a built-in exception,
so ``except ValueError`` keeps working for callers that do not know qsketch.
"""

__all__ = ["QSketchError", "SerializationError"]


class QSketchError(Exception):
    """Base class of the exceptions specific to qsketch."""


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
