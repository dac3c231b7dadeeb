"""Readers of evaluation score files.  Each yields ``(record, Location)``
pairs, one record (a dict) per sample, and reports every line it cannot read
with its file and line number.

Formats:

* ``jsonl``: one JSON object per line (``.jsonl``, ``.ndjson``, also gzipped);
* ``json``: a JSON array of objects;
* ``csv`` / ``tsv``: a header row, then one record per row;
* ``parquet``: needs pyarrow (``pip install 'qsketch[eval]'``);
* ``lm-eval``: lm-evaluation-harness ``--log_samples`` files
  (``samples_<task>_<date>.jsonl``): the values of the keys listed in each
  line's ``metrics`` become ``scores`` (named ``metric,filter`` unless the
  filter is ``none``), ``task`` comes from the file name and ``model`` from
  the ``results_<date>.json`` beside it (else the directory name);
* ``inspect``: Inspect AI logs (``.eval`` and ``.json``), read sample by
  sample: from the sample summaries by default (cheap), or from the full
  samples.

In CSV and Parquet, dotted column names (``scores.accuracy``) are also
nested (``{"scores": {"accuracy": ...}}``), so field paths work alike in
every format.

A malformed line is handed to ``on_error`` (a callable taking a
:class:`RecordError`) and reading goes on; without ``on_error`` the error is
raised.
"""

import csv
import gzip
import io
import json
import os
import re

from qsketch.eval._progress import progress as _progress
from qsketch.eval.records import Location, RecordError

__all__ = [
    "FORMATS",
    "detect_format",
    "read_records",
    "read_jsonl",
    "read_json",
    "read_csv",
    "read_parquet",
    "read_lm_eval",
    "read_inspect_log",
]

FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet", "lm-eval", "inspect")

_LM_EVAL_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[^_]*)\.jsonl(\.gz)?$")


def _raise_or_report(on_error, error):
    if on_error is None:
        raise error
    on_error(error)


def _strip_gz(name):
    return name[:-3] if name.endswith(".gz") else name


def _open_binary(path):
    if os.fspath(path).endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _peek_json_object(path):
    """The first non-blank line of a JSON lines file, parsed (None if not an object)."""
    try:
        with _open_binary(path) as f:
            for raw in f:
                if raw.strip():
                    obj = json.loads(raw)
                    return obj if isinstance(obj, dict) else None
    except (OSError, ValueError, EOFError):
        return None
    return None


def detect_format(path):
    """The format of a file, from its name (and, for ``.json`` and
    ``.jsonl``, its first bytes).

    Examples
    --------
    >>> from qsketch.eval import detect_format
    >>> detect_format("run/2024-05-01_task_abc.eval"), detect_format("scores.csv")
    ('inspect', 'csv')
    >>> detect_format("out/org__model/samples_hellaswag_2024-05-01T10-00-00.123456.jsonl")
    'lm-eval'
    """
    p = os.fspath(path)
    name = _strip_gz(os.path.basename(p).lower())
    if name.endswith(".eval"):
        return "inspect"
    if name.endswith((".jsonl", ".ndjson")):
        if _LM_EVAL_NAME.match(os.path.basename(p)) or name.startswith("samples_"):
            return "lm-eval"
        first = _peek_json_object(p) if os.path.exists(p) else None
        if first is not None and "doc_id" in first and isinstance(first.get("metrics"), list):
            return "lm-eval"
        return "jsonl"
    if name.endswith(".json"):
        if os.path.exists(p):
            with _open_binary(p) as f:
                head = f.read(4096).lstrip()
            if head.startswith(b"["):
                return "json"
        return "inspect"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise ValueError(f"cannot tell the format of {p} from its name; name it with format= "
                     f"(--format), one of {', '.join(FORMATS[1:])}")


def read_records(path, format="auto", *, on_error=None, defaults=None, progress=False,
                 inspect_samples="summaries"):
    """Read a file of per-sample scores: yields ``(record, Location)``.

    ``defaults`` (a dict) fills top-level fields a record lacks (for
    example ``{"model": "m"}`` for files that do not name their model).
    ``progress`` shows a progress bar on stderr.  ``inspect_samples`` is
    ``"summaries"`` (default, cheap) or ``"full"`` for Inspect logs.

    Examples
    --------
    >>> import os, tempfile
    >>> from qsketch.eval import read_records
    >>> path = os.path.join(tempfile.mkdtemp(), "s.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("model,scores.acc\\nm,1\\nm,0\\n")
    >>> [(rec["scores"]["acc"], str(loc)) for rec, loc in read_records(path)]  # doctest: +ELLIPSIS
    [('1', '...s.csv:2'), ('0', '...s.csv:3')]
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p}")
    fmt = detect_format(p) if format == "auto" else format
    if fmt == "jsonl":
        it = read_jsonl(p, on_error=on_error, progress=progress)
    elif fmt == "json":
        it = read_json(p, on_error=on_error, progress=progress)
    elif fmt in ("csv", "tsv"):
        it = read_csv(p, on_error=on_error, progress=progress, delimiter="\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        it = read_parquet(p, on_error=on_error, progress=progress)
    elif fmt == "lm-eval":
        it = read_lm_eval(p, on_error=on_error, progress=progress)
    else:
        it = read_inspect_log(p, on_error=on_error, progress=progress, samples=inspect_samples)
    if not defaults:
        return it
    return _with_defaults(it, dict(defaults))


def _with_defaults(items, defaults):
    for record, location in items:
        for key, value in defaults.items():
            record.setdefault(key, value)
        yield record, location


# ---- JSON lines -------------------------------------------------------------


def _json_lines(path, on_error, progress):
    """``(object, Location)`` of each non-blank line; malformed lines reported."""
    total = None if path.endswith(".gz") else os.path.getsize(path)
    bar = _progress(total, os.path.basename(path), "B", enabled=progress)
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                bar.update(len(raw))
                if not raw.strip():
                    continue
                loc = Location(path, line=lineno)
                try:
                    obj = json.loads(raw)
                except ValueError as exc:
                    why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"invalid JSON ({exc})"
                    if not raw.endswith(b"\n"):
                        why += "; the last line is incomplete (file truncated?)"
                    _raise_or_report(on_error, RecordError(why, loc))
                    continue
                if not isinstance(obj, dict):
                    _raise_or_report(on_error, RecordError(
                        f"expected a JSON object, got {type(obj).__name__}", loc))
                    continue
                yield obj, loc
    except (OSError, EOFError) as exc:  # e.g. a truncated gzip stream
        _raise_or_report(on_error, RecordError(f"cannot read the file: {exc}", Location(path)))
    finally:
        bar.close()


def read_jsonl(path, *, on_error=None, progress=False):
    """JSON lines: one object per line; blank lines are ignored.

    Examples
    --------
    >>> import os, tempfile
    >>> from qsketch.eval import read_jsonl
    >>> path = os.path.join(tempfile.mkdtemp(), "s.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"model": "m", "acc": 1}\\n[1, 2]\\n')
    >>> errors = []
    >>> [rec for rec, _ in read_jsonl(path, on_error=errors.append)]
    [{'model': 'm', 'acc': 1}]
    >>> errors[0].location.line, errors[0].reason
    (2, 'expected a JSON object, got list')
    """
    return _json_lines(os.fspath(path), on_error, progress)


def read_json(path, *, on_error=None, progress=False):
    """A JSON array of objects (read whole; use JSON lines for big files).

    Examples
    --------
    >>> import json, os, tempfile
    >>> from qsketch.eval import read_json
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with open(os.path.join(d, "s.json"), "w") as f:
    ...         _ = f.write(json.dumps([{"model": "m", "acc": 1}, 7]))
    ...     errors = []
    ...     records = [(rec, loc.item) for rec, loc in read_json(f.name, on_error=errors.append)]
    >>> records, errors[0].location.item, errors[0].reason
    ([({'model': 'm', 'acc': 1}, 'record 1')], 'record 2', 'expected a JSON object, got int')
    """
    p = os.fspath(path)
    with _open_binary(p) as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        _raise_or_report(on_error, RecordError(f"invalid JSON ({exc})", Location(p)))
        return
    if not isinstance(data, list):
        _raise_or_report(on_error, RecordError("expected a JSON array of objects", Location(p)))
        return
    for i, obj in enumerate(data, 1):
        loc = Location(p, item=f"record {i}")
        if not isinstance(obj, dict):
            _raise_or_report(on_error, RecordError(f"expected a JSON object, got {type(obj).__name__}", loc))
            continue
        yield obj, loc


# ---- CSV --------------------------------------------------------------------


def _nest(flat):
    """Also expose dotted names as nested dicts: {"a.b": 1} -> {"a.b": 1, "a": {"b": 1}}."""
    out = dict(flat)
    for name, value in flat.items():
        if not isinstance(name, str) or "." not in name:
            continue
        parts = name.split(".")
        node = out
        ok = True
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                ok = False
                break
            node = nxt
        if ok and parts[-1] not in node:
            node[parts[-1]] = value
    return out


class _CountingText(io.TextIOBase):
    """Wraps a binary file for csv, counting the bytes read for progress."""

    def __init__(self, raw, bar):
        self._text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        self._bar = bar

    def readable(self):
        return True

    def __iter__(self):
        return self

    def __next__(self):
        line = self._text.readline()
        if not line:
            raise StopIteration
        self._bar.update(len(line))
        return line


def read_csv(path, *, on_error=None, progress=False, delimiter=","):
    """CSV (or TSV) with a header row; cells are text, so scores are parsed
    by the normaliser ("1", "0.5", "true", "C"); empty cells are unscored.

    Examples
    --------
    >>> import os, tempfile
    >>> from qsketch.eval import read_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "s.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("model,acc\\nm,1\\nm,0,extra\\n")
    >>> errors = []
    >>> [rec["acc"] for rec, _ in read_csv(path, on_error=errors.append)]
    ['1']
    >>> str(errors[0]).split(":", 1)[1]
    '3: expected 2 fields (the header has 2), found 3'
    """
    p = os.fspath(path)
    bar = _progress(None if p.endswith(".gz") else os.path.getsize(p), os.path.basename(p), "B",
                    enabled=progress)
    try:
        with _open_binary(p) as raw:
            text = _CountingText(raw, bar)
            reader = csv.reader(text, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                _raise_or_report(on_error, RecordError(f"cannot read the header row: {exc}", Location(p, line=1)))
                return
            names = [h.strip() for h in header]
            if len(set(names)) != len(names):
                dup = sorted({n for n in names if names.count(n) > 1})
                _raise_or_report(on_error, RecordError(f"duplicate column names {dup}", Location(p, line=1)))
                return
            width = len(names)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError) as exc:
                    _raise_or_report(on_error, RecordError(f"malformed CSV: {exc}", Location(p, line=reader.line_num)))
                    continue
                loc = Location(p, line=reader.line_num)
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    _raise_or_report(on_error, RecordError(
                        f"expected {width} fields (the header has {width}), found {len(row)}", loc))
                    continue
                yield _nest(dict(zip(names, row))), loc
    finally:
        bar.close()


# ---- Parquet ----------------------------------------------------------------


def read_parquet(path, *, on_error=None, progress=False, batch_size=65536):
    """Parquet, row by row in batches (needs pyarrow).

    Examples
    --------
    >>> import os, tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq  # doctest: +SKIP
    >>> from qsketch.eval import read_parquet
    >>> path = os.path.join(tempfile.mkdtemp(), "s.parquet")
    >>> pq.write_table(pa.table({"model": ["m"], "acc": [1.0]}), path)  # doctest: +SKIP
    >>> [rec for rec, _ in read_parquet(path)]  # doctest: +SKIP
    [{'model': 'm', 'acc': 1.0}]
    """
    p = os.fspath(path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet needs pyarrow: pip install 'qsketch[eval]'") from None
    try:
        pf = pq.ParquetFile(p)
        total = pf.metadata.num_rows
        batches = pf.iter_batches(batch_size=batch_size)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        _raise_or_report(on_error, RecordError(f"cannot read the Parquet file: {exc}", Location(p)))
        return
    bar = _progress(total, os.path.basename(p), "rows", enabled=progress)
    row = 0
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception as exc:
                _raise_or_report(on_error, RecordError(
                    f"cannot read the Parquet file after row {row}: {exc}", Location(p)))
                return
            for rec in batch.to_pylist():
                row += 1
                yield _nest(rec), Location(p, item=f"row {row}")
            bar.update(batch.num_rows)
    finally:
        bar.close()


# ---- lm-evaluation-harness --------------------------------------------------


def _lm_eval_task_and_date(path):
    name = os.path.basename(path)
    m = _LM_EVAL_NAME.match(name)
    if m:
        return m.group("task"), m.group("date")
    stem = _strip_gz(name)
    for ext in (".jsonl", ".ndjson"):
        if stem.endswith(ext):
            stem = stem[:-len(ext)]
    if stem.startswith("samples_") and "_" in stem[8:]:
        return stem[8:stem.rfind("_")], stem[stem.rfind("_") + 1:]
    return stem, None


def _lm_eval_model(path, date):
    directory = os.path.dirname(os.path.abspath(path))
    if date is not None:
        results = os.path.join(directory, f"results_{date}.json")
        if os.path.exists(results):
            try:
                with open(results, "rb") as f:
                    data = json.load(f)
                name = data.get("model_name")
                if isinstance(name, str) and name:
                    return name
                args = (data.get("config") or {}).get("model_args")
                if isinstance(args, str):
                    for part in args.split(","):
                        key, _, value = part.partition("=")
                        if key.strip() in ("pretrained", "model", "model_name") and value.strip():
                            return value.strip()
            except (OSError, ValueError, AttributeError):
                pass
    return os.path.basename(directory)


def read_lm_eval(path, *, on_error=None, progress=False, task=None, model=None):
    """lm-evaluation-harness ``--log_samples`` JSONL.

    Each line's ``metrics`` list names its metric keys; their values go
    into ``scores`` (``name,filter`` when the line's filter is not
    ``none``).  Non-numeric values (perplexity pairs) are kept there and
    counted as non-numeric by the aggregator.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from qsketch.eval import read_lm_eval
    >>> d = os.path.join(tempfile.mkdtemp(), "org__model"); os.mkdir(d)
    >>> path = os.path.join(d, "samples_arc_easy_2024-05-01T10-00-00.5.jsonl")
    >>> line = {"doc_id": 0, "filter": "none", "metrics": ["acc", "acc_norm"], "acc": 1.0, "acc_norm": 0.0}
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps(line) + "\\n")
    >>> rec, loc = next(read_lm_eval(path))
    >>> rec["model"], rec["task"], rec["scores"], loc.line
    ('org__model', 'arc_easy', {'acc': 1.0, 'acc_norm': 0.0}, 1)
    """
    p = os.fspath(path)
    file_task, date = _lm_eval_task_and_date(p)
    task = task if task is not None else file_task
    model = model if model is not None else _lm_eval_model(p, date)
    for obj, loc in _json_lines(p, on_error, progress):
        metrics = obj.get("metrics")
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            _raise_or_report(on_error, RecordError(
                "no 'metrics' list of names (not an lm-eval --log_samples line)", loc))
            continue
        missing = [m for m in metrics if m not in obj]
        if missing:
            _raise_or_report(on_error, RecordError(
                f"metric(s) {missing} listed in 'metrics' but absent from the line", loc))
            continue
        filt = obj.get("filter")
        suffix = "" if filt in (None, "", "none") else f",{filt}"
        rec = dict(obj)
        rec["scores"] = {f"{m}{suffix}": obj[m] for m in metrics}
        rec.setdefault("task", task)
        rec.setdefault("model", model)
        yield rec, loc


# ---- Inspect AI ---------------------------------------------------------------


def _import_inspect():
    try:
        import inspect_ai.log as ilog
    except ImportError:
        raise ImportError("reading Inspect AI logs needs inspect_ai: pip install 'qsketch[inspect]'") from None
    return ilog


def inspect_header_fields(spec, location=None):
    """The per-log fields of Inspect records, from an ``EvalSpec``."""
    fields = {
        "model": spec.model,
        "task": spec.task,
        "task_id": getattr(spec, "task_id", None),
        "task_version": getattr(spec, "task_version", None),
        "run_id": getattr(spec, "run_id", None),
        "eval_id": getattr(spec, "eval_id", None),
        "created": getattr(spec, "created", None),
        "tags": list(getattr(spec, "tags", None) or []),
        "task_args": dict(getattr(spec, "task_args", None) or {}),
    }
    if location is not None:
        fields["log"] = str(location)
    return fields


def inspect_scorer_names(spec):
    """The score keys the task's scorers write (unqualified registry names)."""
    names = []
    for scorer in getattr(spec, "scorers", None) or []:
        name = getattr(scorer, "name", None)
        if isinstance(name, str) and name:
            name = name.rsplit("/", 1)[-1]
            if name not in names:
                names.append(name)
    return tuple(names)


def _error_text(error):
    if error is None:
        return None
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        return error.get("message") or str(error)
    return getattr(error, "message", None) or str(error)


def inspect_record(base, sample, scorers=()):
    """One record from an Inspect sample or sample summary (objects or the
    raw JSON dicts), with the log's fields ``base``.

    When the sample ended with an error, the scorers (``scorers``: their
    score keys) that left no score get None, so that they are counted as
    unscored rather than silently missing."""
    rec = dict(base)
    get = sample.get if isinstance(sample, dict) else (lambda name, default=None: getattr(sample, name, default))
    rec["id"] = get("id")
    rec["epoch"] = get("epoch")
    error = _error_text(get("error"))
    scores = get("scores")
    if scores is None:
        rec["scores"] = {name: None for name in scorers} if (error and scorers) else None
    else:
        rec["scores"] = {name: (s.get("value") if isinstance(s, dict) else getattr(s, "value", None))
                         for name, s in scores.items()}
        if error:
            for name in scorers:
                rec["scores"].setdefault(name, None)
    rec["metadata"] = dict(get("metadata") or {})
    rec["error"] = error
    limit = get("limit")
    rec["limit"] = limit if (limit is None or isinstance(limit, str)) else (
        limit.get("type") if isinstance(limit, dict) else getattr(limit, "type", str(limit)))
    return rec


def _sample_location(path, sample):
    get = sample.get if isinstance(sample, dict) else (lambda name, default=None: getattr(sample, name, default))
    return Location(path, item=f"sample id={get('id')} epoch={get('epoch')}")


def _json_log_samples(path):
    """Stream the samples of a ``.json`` Inspect log as raw dicts (ijson)."""
    import ijson

    with open(path, "rb") as f:
        yield from ijson.items(f, "samples.item", use_float=True)


def read_inspect_log(path, *, on_error=None, progress=False, samples="summaries"):
    """An Inspect AI log (``.eval`` or ``.json``), sample by sample.

    Each record holds the log's ``model``, ``task``, ``task_id``,
    ``run_id``, ``eval_id``, ``created``, ``tags``, ``task_args`` and
    ``log`` (the path), and the sample's ``id``, ``epoch``, ``scores``
    (scorer name to score value), ``metadata``, ``error`` and ``limit``.
    A sample that ended with an error gets None (unscored) for each of the
    task's scorers that left no score.

    ``samples="summaries"`` (default) reads the sample summaries, which
    carry every score value and are far cheaper than full samples;
    ``"full"`` reads the full samples one at a time.  ``.json`` logs are
    streamed with ijson (bundled with inspect_ai) either way.

    Examples
    --------
    >>> import os, tempfile
    >>> from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSample, EvalSpec, write_eval_log
    >>> from inspect_ai.scorer import Score
    >>> from qsketch.eval import read_inspect_log
    >>> spec = EvalSpec(created="2024-05-01T00:00:00", task="qa", dataset=EvalDataset(), model="mockllm/m",
    ...                 config=EvalConfig())
    >>> samples = [EvalSample(id=i, epoch=1, input="q", target="a", scores={"match": Score(value=v)})
    ...            for i, v in [(1, "C"), (2, "I")]]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "run.eval")
    ...     _ = write_eval_log(EvalLog(eval=spec, samples=samples), path)
    ...     rows = [(r["model"], r["task"], r["id"], r["scores"]) for r, _ in read_inspect_log(path)]
    >>> rows
    [('mockllm/m', 'qa', 1, {'match': 'C'}), ('mockllm/m', 'qa', 2, {'match': 'I'})]
    """
    if samples not in ("summaries", "full"):
        raise ValueError(f"samples must be 'summaries' or 'full'; got {samples!r}")
    ilog = _import_inspect()
    p = os.fspath(path)
    try:
        header = ilog.read_eval_log(p, header_only=True)
    except Exception as exc:  # corrupt zip, bad JSON, unsupported version, ...
        _raise_or_report(on_error, RecordError(f"cannot read the Inspect log: {exc}", Location(p)))
        return
    base = inspect_header_fields(header.eval, p)
    scorers = inspect_scorer_names(header.eval)
    is_json = p.lower().endswith(".json")
    total = None
    if header.eval.dataset is not None and getattr(header.eval.dataset, "samples", None):
        epochs = getattr(header.eval.config, "epochs", None) or 1
        total = header.eval.dataset.samples * epochs
    bar = _progress(total, os.path.basename(p), "samples", enabled=progress)
    try:
        if is_json:
            yield from _read_json_log(p, ilog, base, scorers, on_error, bar)
            return
        try:
            if samples == "summaries":
                items = ilog.read_eval_log_sample_summaries(p)
            else:
                items = ilog.read_eval_log_samples(p, all_samples_required=False,
                                                   exclude_fields={"events", "messages", "store", "attachments"})
            for sample in items:
                bar.update(1)
                yield inspect_record(base, sample, scorers), _sample_location(p, sample)
        except Exception as exc:
            _raise_or_report(on_error, RecordError(f"cannot read the samples of the Inspect log: {exc}",
                                                   Location(p)))
    finally:
        bar.close()


def _read_json_log(p, ilog, base, scorers, on_error, bar):
    done = 0
    try:
        for raw in _json_log_samples(p):
            done += 1
            bar.update(1)
            yield inspect_record(base, raw, scorers), _sample_location(p, raw)
        return
    except Exception as exc:
        # ijson rejects the NaN / Infinity constants Inspect may write; only
        # then load the log with Inspect's own reader, skipping what was read.
        text = str(exc)
        if "NaN" not in text and "Infinity" not in text and "invalid char" not in text \
                and "Unexpected symbol" not in text:
            _raise_or_report(on_error, RecordError(f"cannot read the samples of the Inspect log: {exc}",
                                                   Location(p)))
            return
    try:
        for i, sample in enumerate(ilog.read_eval_log_samples(p, all_samples_required=False)):
            if i < done:
                continue
            bar.update(1)
            yield inspect_record(base, sample, scorers), _sample_location(p, sample)
    except Exception as exc:
        _raise_or_report(on_error, RecordError(f"cannot read the samples of the Inspect log: {exc}",
                                               Location(p)))
