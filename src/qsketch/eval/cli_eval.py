"""The ``qsketch aggregate``, ``merge``, ``report`` and ``compare`` commands.

    qsketch aggregate --by model,task --score scores.accuracy FILES... -o agg.qsk
    qsketch merge A.qsk B.qsk -o C.qsk
    qsketch report agg.qsk [--format table|json|csv|md] [--plot cdf.png]
    qsketch compare agg.qsk --a model=x --b model=y

Exit status: 0 on success, 1 when the work failed (an unreadable aggregator,
no record ingested, the first bad record under --strict), 2 for bad usage.
"""

import argparse
import os
import sys

__all__ = ["add_eval_commands"]

_LOG_EXTENSIONS = (".eval", ".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq",
                   ".jsonl.gz", ".ndjson.gz", ".csv.gz", ".tsv.gz")
_SHOWN_ERRORS = 20


class _UsageError(Exception):
    pass


def _err(command, message):
    print(f"qsketch {command}: {message}", file=sys.stderr)


def _float_list(text):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _assignment(text):
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return name.strip(), value


def _criteria(items):
    out = {}
    for item in items or []:
        for part in item.split(","):
            if part.strip():
                name, value = _assignment(part)
                out[name] = value
    return out


def _expand(paths):
    """Files named on the command line; directories give their score files."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    low = name.lower()
                    if not low.endswith(_LOG_EXTENSIONS) or name.startswith("."):
                        continue
                    if low.endswith(".json") and (low.startswith("results_") or low in ("logs.json", "listing.json")):
                        continue  # lm-eval aggregates and Inspect's log listings
                    found.append(os.path.join(root, name))
            if not found:
                raise _UsageError(f"{p}: no score files in this directory")
            out.extend(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise _UsageError(f"{p}: no such file or directory")
    return out


def _want_progress(args):
    from qsketch.eval._progress import want_progress

    return want_progress(quiet=args.quiet)


def _load(command, path):
    from qsketch.errors import SerializationError
    from qsketch.eval.aggregator import ScoreAggregator

    try:
        return ScoreAggregator.load(path)
    except FileNotFoundError:
        _err(command, f"{path}: no such file")
    except IsADirectoryError:
        _err(command, f"{path}: is a directory")
    except SerializationError as exc:
        _err(command, f"cannot read the aggregator: {exc}")
    return None


# ---- aggregate ----------------------------------------------------------------


def _run_aggregate(args):
    from qsketch.eval.aggregator import IngestReport, ScoreAggregator
    from qsketch.eval.records import RecordError
    from qsketch.eval.scores import parse_grades

    try:
        files = _expand(args.files)
        grades = parse_grades(args.grades) if args.grades is not None else None
        agg = ScoreAggregator(by=args.by, score=args.score or None, k=args.k, seed=args.seed, grades=grades,
                              quantiles=args.quantiles, thresholds=args.thresholds)
    except (_UsageError, ValueError, TypeError) as exc:
        _err("aggregate", str(exc))
        return 2
    if args.append and os.path.exists(args.output):
        previous = _load("aggregate", args.output)
        if previous is None:
            return 1
        if previous.by != agg.by:
            _err("aggregate", f"--append: {args.output} is grouped by {list(previous.by)}, not {list(agg.by)}")
            return 2
        agg = previous
    defaults = dict(args.set or [])
    report = IngestReport()
    show = _want_progress(args)
    for path in files:
        before = report.skipped
        try:
            agg.add_file(path, format=args.format, strict=args.strict, defaults=defaults, progress=show,
                         inspect_samples=args.inspect_samples, report=report)
        except RecordError as exc:
            _err("aggregate", f"{exc}")
            _err("aggregate", "stopped at the first bad record (--strict); nothing was written")
            return 1
        except (ImportError, ValueError, OSError) as exc:
            _err("aggregate", f"{path}: {exc}")
            return 1
        if report.skipped > before and not args.quiet:
            print(f"{path}: skipped {report.skipped - before} record(s)", file=sys.stderr)
    for exc in report.errors[:_SHOWN_ERRORS]:
        print(f"warning: {exc}", file=sys.stderr)
    if report.skipped > _SHOWN_ERRORS:
        print(f"warning: ... and {report.skipped - _SHOWN_ERRORS} more skipped record(s)", file=sys.stderr)
    if report.records == 0 and not (args.append and len(agg)):
        _err("aggregate", f"no record could be ingested from {len(files)} file(s); nothing was written")
        return 1
    agg.save(args.output)
    if not args.quiet:
        print(f"aggregated {report.records:,} record(s) from {len(files)} file(s) into {len(agg)} group(s)"
              f"; skipped {report.skipped:,} -> {args.output}", file=sys.stderr)
    return 0


def _add_aggregate(sub):
    p = sub.add_parser("aggregate", help="aggregate per-sample eval scores into a .qsk file",
                       description="Read eval score files (JSONL, CSV, Parquet, lm-eval --log_samples, "
                                   "Inspect AI .eval/.json logs; directories are searched) and write "
                                   "one aggregator file.")
    p.add_argument("files", nargs="+", metavar="FILE", help="score files or directories")
    p.add_argument("-o", "--output", required=True, help="the aggregator file to write (.qsk)")
    p.add_argument("--by", default="model,task", help="comma-separated group fields (default model,task)")
    p.add_argument("--score", action="append", metavar="PATH",
                   help="a score field path such as scores.accuracy (repeatable); default: every entry "
                        "of the records' 'scores'")
    p.add_argument("--format", default="auto", choices=["auto", "jsonl", "json", "csv", "tsv", "parquet",
                                                         "lm-eval", "inspect"], help="input format (default: by name)")
    p.add_argument("--set", action="append", type=_assignment, metavar="FIELD=VALUE",
                   help="a value for records that lack FIELD, e.g. --set model=gpt-x (repeatable)")
    p.add_argument("--grades", metavar="G=V,...", help="letter grades, default 'C=1,I=0,P=0.5,N=' "
                                                         "(empty: unscored)")
    p.add_argument("--inspect-samples", choices=["summaries", "full"], default="summaries",
                   help="read Inspect logs from sample summaries (default, cheap) or full samples")
    p.add_argument("--k", type=int, default=200, help="sketch accuracy parameter (default 200)")
    p.add_argument("--seed", type=int, default=None, help="seed of the sketches (reproducible files)")
    p.add_argument("--quantiles", type=_float_list, default=[0.1, 0.5, 0.9],
                   help="default quantiles of reports (default 0.1,0.5,0.9)")
    p.add_argument("--thresholds", type=_float_list, default=[0.5],
                   help="default pass-rate thresholds of reports (default 0.5)")
    p.add_argument("--append", action="store_true", help="merge into the output file if it exists")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed record")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary line")
    p.set_defaults(handler=_run_aggregate)


# ---- merge ----------------------------------------------------------------------


def _run_merge(args):
    total = None
    for path in args.inputs:
        agg = _load("merge", path)
        if agg is None:
            return 1
        if total is None:
            total = agg
            continue
        try:
            total.merge(agg)
        except (ValueError, TypeError) as exc:
            _err("merge", f"{path}: {exc}")
            return 1
    total.save(args.output)
    if not args.quiet:
        print(f"merged {len(args.inputs)} file(s) into {len(total)} group(s) -> {args.output}", file=sys.stderr)
    return 0


def _add_merge(sub):
    p = sub.add_parser("merge", help="merge aggregator files", description="Merge aggregator files "
                       "(grouped by the same fields) into one.")
    p.add_argument("inputs", nargs="+", metavar="FILE")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=_run_merge)


# ---- report ---------------------------------------------------------------------


def _emit(text, output):
    if output:
        with open(output, "w", encoding="utf-8", newline="") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _render(table, fmt, **extra):
    if fmt == "json":
        return table.to_json(**extra)
    if fmt == "csv":
        return table.to_csv()
    if fmt == "md":
        return table.to_markdown()
    return table.to_text()


def _run_report(args):
    agg = _load("report", args.file)
    if agg is None:
        return 1
    where = _criteria(args.where)
    try:
        table = agg.summary(quantiles=args.quantiles, thresholds=args.thresholds, where=where or None)
    except (KeyError, ValueError) as exc:
        _err("report", str(exc).strip("'\""))
        return 2
    _emit(_render(table, args.format, by=list(agg.by), skipped_records=agg.skipped_records), args.output)
    if args.plot:
        from qsketch.eval.plot import plot_cdfs

        try:
            panels = plot_cdfs(agg, args.plot, where=where or None)
        except ImportError as exc:
            _err("report", f"--plot: {exc}")
            return 1
        except ValueError as exc:
            _err("report", f"--plot: {exc}")
            return 1
        print(f"wrote {args.plot} ({panels} panel(s))", file=sys.stderr)
    return 0


def _add_report(sub):
    p = sub.add_parser("report", help="summarize an aggregator file",
                       description="Per group: n, mean with its 95%% CI, quantiles with their rank-error "
                                   "bounds, pass rates at thresholds.")
    p.add_argument("file", help="an aggregator file (.qsk)")
    p.add_argument("--format", choices=["table", "json", "csv", "md"], default="table")
    p.add_argument("--quantiles", type=_float_list, default=None, help="e.g. 0.05,0.5,0.95")
    p.add_argument("--thresholds", type=_float_list, default=None, help="pass-rate thresholds, e.g. 0.5,0.9")
    p.add_argument("--where", action="append", metavar="COLUMN=VALUE", help="only matching groups (repeatable)")
    p.add_argument("--plot", metavar="IMAGE", help="also draw each group's CDF (png, svg, pdf; needs matplotlib)")
    p.add_argument("-o", "--output", help="write the report to a file instead of stdout")
    p.set_defaults(handler=_run_report)


# ---- compare ----------------------------------------------------------------------


def _run_compare(args):
    agg = _load("compare", args.file)
    if agg is None:
        return 1
    a, b = _criteria(args.a), _criteria(args.b)
    if not a or not b:
        _err("compare", "name both sides: --a COLUMN=VALUE --b COLUMN=VALUE")
        return 2
    try:
        table = agg.compare_pairs(a, b)
    except KeyError as exc:
        _err("compare", str(exc).strip("'\""))
        return 2
    if not len(table):
        _err("compare", f"no pair of non-empty groups matches --a {a} and --b {b} "
                        f"(pairs must agree on the other columns: {[c for c in agg.columns if c not in a and c not in b]})")
        return 1
    _emit(_render(table, args.format), args.output)
    return 0


def _add_compare(sub):
    p = sub.add_parser("compare", help="KS distance between groups of an aggregator file",
                       description="Kolmogorov-Smirnov distance (with its error bound from both sketches) "
                                   "and mean difference between the groups selected by --a and --b, paired "
                                   "on the remaining columns.")
    p.add_argument("file", help="an aggregator file (.qsk)")
    p.add_argument("--a", action="append", required=True, metavar="COLUMN=VALUE")
    p.add_argument("--b", action="append", required=True, metavar="COLUMN=VALUE")
    p.add_argument("--format", choices=["table", "json", "csv", "md"], default="table")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.set_defaults(handler=_run_compare)


def add_eval_commands(sub):
    """Add the aggregate, merge, report and compare subcommands."""
    _add_aggregate(sub)
    _add_merge(sub)
    _add_report(sub)
    _add_compare(sub)
