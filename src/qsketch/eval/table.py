"""A small table type for reports: rows of dicts with an ordered set of
columns, rendered as text, Markdown, CSV or JSON, or handed to pandas."""

import csv
import io
import json
import math

__all__ = ["Table"]


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class Table:
    """Rows (dicts) under ordered columns; ``display`` optionally maps a
    column to a shorter rendering used by :meth:`to_text` and
    :meth:`to_markdown` (the data, CSV and JSON keep every column).

    Examples
    --------
    >>> from qsketch.eval import Table
    >>> t = Table(["model", "mean"], [{"model": "a", "mean": 0.5}, {"model": "b", "mean": 0.25}])
    >>> print(t.to_text())
    model  mean
    -----  ----
    a      0.5
    b      0.25
    >>> t.to_csv().splitlines()
    ['model,mean', 'a,0.5', 'b,0.25']
    >>> len(t), t[1]["model"], t.column("mean")
    (2, 'b', [0.5, 0.25])
    """

    def __init__(self, columns, rows, display=None, notes=None):
        self.columns = list(columns)
        self.rows = [dict(r) for r in rows]
        self.display = display  # optional (header list, row -> list of str)
        self.notes = list(notes or [])

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __repr__(self):
        return f"Table({len(self.rows)} rows x {len(self.columns)} columns)"

    def __str__(self):
        return self.to_text()

    def column(self, name):
        """The values of one column, as a list.

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> Table(["x"], [{"x": 1}, {"x": 2}]).column("x")
        [1, 2]
        """
        return [r.get(name) for r in self.rows]

    def _cells(self):
        if self.display is not None:
            header, render = self.display
            return list(header), [list(render(r)) for r in self.rows]
        return list(self.columns), [[_fmt(r.get(c)) for c in self.columns] for r in self.rows]

    def to_text(self):
        """An aligned plain-text table (with the notes below it).

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> print(Table(["a"], [{"a": 1.0}], notes=["one row"]).to_text())
        a
        -
        1
        <BLANKLINE>
        one row
        """
        header, cells = self._cells()
        widths = [len(h) for h in header]
        for row in cells:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        for row in cells:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        return "\n".join(lines)

    def to_markdown(self):
        """A GitHub-flavoured Markdown table.

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> print(Table(["a", "b"], [{"a": 1, "b": "x|y"}]).to_markdown())
        | a | b |
        | --- | --- |
        | 1 | x\\|y |
        """
        header, cells = self._cells()

        def esc(text):
            return text.replace("|", "\\|")

        lines = ["| " + " | ".join(esc(h) for h in header) + " |",
                 "| " + " | ".join("---" for _ in header) + " |"]
        for row in cells:
            lines.append("| " + " | ".join(esc(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        return "\n".join(lines)

    def to_csv(self):
        """CSV with every column (NaN written as ``nan``, None as empty).

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> Table(["a", "ok"], [{"a": float("nan"), "ok": True}]).to_csv()
        'a,ok\\r\\nnan,True\\r\\n'
        """
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        for r in self.rows:
            writer.writerow(["" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                             for c in self.columns])
        return buf.getvalue()

    def to_records(self):
        """The rows as a list of dicts (copies), columns in order.

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> Table(["a"], [{"a": 1}]).to_records()
        [{'a': 1}]
        """
        return [{c: r.get(c) for c in self.columns} for r in self.rows]

    def to_json(self, **extra):
        """JSON text: ``{"columns": [...], "rows": [...], **extra}``; NaN
        becomes null and infinities the strings "inf" / "-inf".

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> Table(["a"], [{"a": float("nan")}]).to_json()
        '{"columns": ["a"], "rows": [{"a": null}]}'
        """
        payload = {"columns": self.columns,
                   "rows": [{c: _json_value(r.get(c)) for c in self.columns} for r in self.rows]}
        payload.update(extra)
        return json.dumps(payload, allow_nan=False)

    def to_pandas(self):
        """A pandas DataFrame of every column (needs pandas).

        Examples
        --------
        >>> from qsketch.eval import Table
        >>> Table(["a"], [{"a": 1}]).to_pandas().shape  # doctest: +SKIP
        (1, 1)
        """
        import pandas as pd

        return pd.DataFrame(self.to_records(), columns=self.columns)
