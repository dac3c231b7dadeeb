"""Records, their locations, field paths, and the error that names both."""

from collections.abc import Mapping

from qsketch.errors import QSketchError

__all__ = ["Location", "RecordError", "get_field", "MISSING"]


class _Missing:
    __slots__ = ()

    def __repr__(self):
        return "MISSING"


#: Returned by :func:`get_field` (with ``default=MISSING``) for absent fields.
MISSING = _Missing()


class Location:
    """Where a record came from: a file and a line (or an item such as a
    row or an Inspect sample).

    Examples
    --------
    >>> from qsketch.eval import Location
    >>> str(Location("scores.jsonl", line=12))
    'scores.jsonl:12'
    >>> str(Location("run.eval", item="sample id=3 epoch=1"))
    'run.eval (sample id=3 epoch=1)'
    """

    __slots__ = ("path", "line", "item")

    def __init__(self, path, line=None, item=None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.item = item

    def __str__(self):
        text = self.path if self.path is not None else "<records>"
        if self.line is not None:
            text = f"{text}:{self.line}"
        if self.item is not None:
            text = f"{text} ({self.item})"
        return text

    def __repr__(self):
        return f"Location({str(self)!r})"

    def __eq__(self, other):
        if not isinstance(other, Location):
            return NotImplemented
        return (self.path, self.line, self.item) == (other.path, other.line, other.item)

    def __hash__(self):
        return hash((self.path, self.line, self.item))


class RecordError(QSketchError, ValueError):
    """A record that cannot be ingested: malformed input, a missing field, a
    sample without scores.  ``str(error)`` starts with the location (file and
    line) when it is known.

    Examples
    --------
    >>> from qsketch.eval import Location, RecordError
    >>> e = RecordError("missing field 'model'", Location("a.jsonl", line=3))
    >>> str(e), e.reason, e.location.line
    ("a.jsonl:3: missing field 'model'", "missing field 'model'", 3)
    """

    def __init__(self, reason, location=None):
        self.reason = reason
        self.location = location
        super().__init__(f"{location}: {reason}" if location is not None else reason)

    def at(self, location):
        """The same error, located (a no-op when already located).

        Examples
        --------
        >>> from qsketch.eval import Location, RecordError
        >>> e = RecordError("missing field 'model'").at(Location("a.jsonl", line=3))
        >>> str(e)
        "a.jsonl:3: missing field 'model'"
        >>> e.at(Location("b.jsonl", line=1)) is e  # already located: kept as it is
        True
        """
        if self.location is not None or location is None:
            return self
        return RecordError(self.reason, location)


def get_field(record, path, default=MISSING):
    """The value at a field path such as ``"scores.accuracy"``.

    A literal key wins (CSV columns named ``scores.accuracy``); otherwise the
    path walks nested mappings one dot-separated part at a time, trying the
    longest literal key first at each level, so keys that hold dots work too.
    Returns ``default`` when the field is absent.

    Examples
    --------
    >>> from qsketch.eval import get_field
    >>> rec = {"model": "m", "scores": {"accuracy": 1, "f1.macro": 0.5}}
    >>> get_field(rec, "scores.accuracy"), get_field(rec, "scores.f1.macro")
    (1, 0.5)
    >>> get_field(rec, "scores.bleu", default=None) is None
    True
    """
    if not isinstance(record, Mapping):
        return default
    if path in record:
        return record[path]
    start = 0
    while True:
        dot = path.find(".", start)
        if dot < 0:
            return default
        head = path[:dot]
        if head in record:
            sub = record[head]
            if isinstance(sub, Mapping):
                found = get_field(sub, path[dot + 1:], MISSING)
                if found is not MISSING:
                    return found
        start = dot + 1
