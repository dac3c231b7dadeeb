"""``qsketch bench``: run the comparison and write the report.

    qsketch bench --quick --out bench-report     # under 2 minutes on 2 cores
    qsketch bench --out bench-report             # everything (30-40 minutes on 2 cores)
    qsketch bench --out docs --report-name benchmarks.md   # docs/benchmarks.md

Stages: tune every sketch's size parameter to the byte targets on a
reference stream, measure rank and quantile errors on every stream, merge
accuracy over 100 shards, then speed.  Progress goes to stderr (a bar when
it is a terminal).  Writes ``<out>/<report-name>`` and ``<out>/img/*.png``.

>>> from qsketch.bench.command import build_parser, config_for
>>> args = build_parser().parse_args(["--quick", "--out", "somewhere"])
>>> args.quick, args.out, args.report_name
(True, 'somewhere', 'report.md')
>>> config_for(args).accuracy.targets
(1024, 4096)
"""

import argparse
import sys
import time
from dataclasses import dataclass, replace

from qsketch.bench import accuracy, peers as peers_mod, speed, streams as streams_mod
from qsketch.bench.accuracy import KB, AccuracyConfig

__all__ = ["add_bench_command", "build_parser", "config_for", "run", "QUICK_STREAMS"]

# Every family, fewer streams: what --quick covers.
QUICK_STREAMS = (
    "flights_arr_delay", "flights_arr_delay_shuffled", "diamonds_price", "movielens_rating",
    "normal", "lognormal", "pareto", "mixture",
    "sorted", "zoom_in", "nested_clusters", "log_uniform_squared", "shift",
    "pass_fail", "zero_inflated", "eval_scores",
)

QUICK = AccuracyConfig(n=200_000, seeds=1, targets=(1 * KB, 4 * KB), streams=QUICK_STREAMS, reference_n=100_000,
                       merge_streams=("normal",), merge_targets=(4 * KB,), merge_seeds=1)
FULL = AccuracyConfig(n=1_000_000, seeds=3, targets=(1 * KB, 4 * KB, 16 * KB), streams=None,
                      reference_n=1_000_000, merge_streams=("normal", "lognormal", "flights_arr_delay"),
                      merge_targets=(1 * KB, 4 * KB, 16 * KB), merge_seeds=2)


@dataclass(frozen=True)
class RunConfig:
    mode: str
    accuracy: AccuracyConfig
    speed: speed.SpeedConfig
    do_merge: bool
    do_speed: bool


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _list_of(valid, what):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in valid]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or '(none)'}; "
                                             f"choose from: {', '.join(valid)}")
        return items
    return parse


def _sizes(text):
    try:
        sizes = tuple(sorted({int(float(t) * KB) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are kilobytes separated by commas, got {text!r}") from None
    if not sizes or sizes[0] <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def add_arguments(parser):
    """Add the ``qsketch bench`` options to ``parser``; returns it.

    >>> import argparse
    >>> from qsketch.bench.command import add_arguments
    >>> add_arguments(argparse.ArgumentParser()).parse_args(["--quick", "--sizes", "4"]).sizes
    (4096,)
    """
    parser.add_argument("--quick", action="store_true",
                        help="16 streams, n = 2e5, 1 and 4 KB, one seed, small speed runs, no pure-Python peers "
                             "(under 2 minutes)")
    parser.add_argument("--out", default="bench-report", help="directory for the report (default bench-report)")
    parser.add_argument("--report-name", default="report.md", help="file name of the Markdown report")
    parser.add_argument("--n", type=_positive_int, help="items per stream (default 1e6, quick 2e5)")
    parser.add_argument("--seeds", type=_positive_int, help="trials per randomized sketch (default 3, quick 1)")
    parser.add_argument("--sizes", type=_sizes, help="byte targets in KB, e.g. 1,4,16 (default; quick 1,4)")
    parser.add_argument("--streams", type=_list_of(streams_mod.names(), "stream"),
                        help="comma-separated stream names (default: all; quick: a few per family)")
    parser.add_argument("--peers", type=_list_of(peers_mod.names(), "sketch"),
                        help="comma-separated sketch names (default: all installed)")
    parser.add_argument("--no-merge", action="store_true", help="skip the merge accuracy runs")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed runs")
    parser.add_argument("--no-plots", action="store_true", help="write the Markdown only")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


DESCRIPTION = ("Compare qsketch with t-digests and Apache DataSketches on real, synthetic, adversarial and "
               "discrete streams: rank and quantile error at equal serialized bytes, merge accuracy, speed. "
               "Writes <out>/<report-name> (Markdown) and <out>/img/*.png.")


def _epilog():
    return ("streams: " + ", ".join(streams_mod.names()) + ".  sketches: "
            + ", ".join(peers_mod.names()) + ".")


def build_parser():
    """A standalone parser with the ``qsketch bench`` options (the CLI adds them to its subparser).

    >>> from qsketch.bench.command import build_parser
    >>> build_parser().parse_args([]).out
    'bench-report'
    """
    return add_arguments(argparse.ArgumentParser(prog="qsketch bench", description=DESCRIPTION, epilog=_epilog()))


def config_for(args):
    """The :class:`RunConfig` that ``args`` asks for.

    >>> from qsketch.bench.command import build_parser, config_for
    >>> cfg = config_for(build_parser().parse_args(["--n", "5000", "--no-speed"]))
    >>> cfg.mode, cfg.accuracy.n, cfg.accuracy.reference_n, cfg.do_speed
    ('full', 5000, 5000, False)
    """
    acc = QUICK if args.quick else FULL
    changes = {}
    if args.n:
        changes["n"] = args.n
        changes["reference_n"] = min(acc.reference_n, args.n)
    if args.seeds:
        changes["seeds"] = args.seeds
    if args.sizes:
        changes["targets"] = args.sizes
        kept = tuple(t for t in acc.merge_targets if t in args.sizes)
        changes["merge_targets"] = kept or (args.sizes[len(args.sizes) // 2],)
    if args.streams:
        changes["streams"] = tuple(args.streams)
        changes["merge_streams"] = tuple(s for s in acc.merge_streams if s in args.streams) or (args.streams[0],)
    acc = replace(acc, **changes)
    return RunConfig("quick" if args.quick else "full", acc, speed.QUICK if args.quick else speed.FULL,
                     do_merge=not args.no_merge, do_speed=not args.no_speed)


def command_line(args):
    """The command that reproduces this run, for the report.

    >>> from qsketch.bench.command import build_parser, command_line
    >>> command_line(build_parser().parse_args(["--quick", "--sizes", "1,4", "--out", "r"]))
    'qsketch bench --quick --sizes 1,4 --out r'
    """
    parts = ["qsketch bench"]
    if args.quick:
        parts.append("--quick")
    for opt in ("n", "seeds"):
        if getattr(args, opt):
            parts.append(f"--{opt} {getattr(args, opt)}")
    if args.sizes:
        parts.append("--sizes " + ",".join(f"{t / KB:g}" for t in args.sizes))
    if args.streams:
        parts.append("--streams " + ",".join(args.streams))
    if args.peers:
        parts.append("--peers '" + ",".join(args.peers) + "'")
    for flag in ("no_merge", "no_speed", "no_plots"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    parts.append(f"--out {args.out}")
    if args.report_name != "report.md":
        parts.append(f"--report-name {args.report_name}")
    return " ".join(parts)


class _Stage:
    """A progress bar (when wanted) plus a one-line summary on stderr."""

    def __init__(self, name, total, quiet):
        from qsketch.eval._progress import progress, want_progress

        self.name, self.quiet = name, quiet
        self.bar = progress(total=total, desc=name, unit="step", enabled=want_progress(quiet))
        self.start = time.perf_counter()

    def tick(self):
        self.bar.update(1)

    def done(self):
        self.bar.close()
        elapsed = time.perf_counter() - self.start
        if not self.quiet:
            print(f"qsketch bench: {self.name} done in {elapsed:.1f} s", file=sys.stderr, flush=True)
        return elapsed


def run(args, out=sys.stdout):
    """Run the suite that ``args`` describes and write the report; returns the report's path.

    >>> import io, tempfile
    >>> from qsketch.bench.command import build_parser, run
    >>> args = build_parser().parse_args(["--n", "2000", "--sizes", "2", "--streams", "normal",
    ...                                   "--peers", "qsketch step", "--no-speed", "--no-merge",
    ...                                   "--no-plots", "--quiet", "--out", tempfile.mkdtemp()])
    >>> path = run(args, out=io.StringIO())
    >>> path.name, "## Headline" in path.read_text()
    ('report.md', True)
    """
    from qsketch.bench import report

    cfg = config_for(args)
    acc = cfg.accuracy
    env = report.environment()  # at the start: the commit the run began on
    t0 = time.perf_counter()
    peers, notes = peers_mod.available(args.peers, quick=args.quick)
    seconds = {}
    if not args.quiet:
        print(f"qsketch bench ({cfg.mode}): {len(peers)} sketches, "
              f"{len(acc.streams) if acc.streams else len(streams_mod.names())} streams, n up to {acc.n:,}, "
              f"targets {', '.join(report.fmt_bytes(t) for t in acc.targets)}", file=sys.stderr, flush=True)
        for note in notes:
            print(f"  {note}", file=sys.stderr)

    stage = _Stage("tuning sizes", len(peers) * len(acc.targets), args.quiet)
    tuned = accuracy.tune_all(peers, acc.targets, accuracy.reference_stream(acc), stage.tick)
    seconds["tuning"] = stage.done()

    n_streams = len(acc.streams) if acc.streams is not None else len(streams_mod.names())
    stage = _Stage("accuracy", n_streams * len(acc.targets), args.quiet)
    cells, skipped = accuracy.run_accuracy(acc, peers, tuned, stage.tick)
    seconds["accuracy"] = stage.done()

    merge = []
    if cfg.do_merge:
        merge_tuned = tuned
        missing = [t for t in acc.merge_targets if t not in acc.targets]
        if missing:
            merge_tuned = dict(tuned, **accuracy.tune_all(peers, missing, accuracy.reference_stream(acc)))
        stage = _Stage("merge accuracy", len(acc.merge_streams) * 2 * len(acc.merge_targets), args.quiet)
        merge = accuracy.run_merge(acc, peers, merge_tuned, stage.tick)
        seconds["merge"] = stage.done()

    speed_results = limits = speed_target = None
    if cfg.do_speed:
        params, speed_target = speed.speed_params(peers, tuned, acc.targets)
        stage = _Stage("speed", len(speed.OPS), args.quiet)
        speed_results, limits = speed.run_speed(cfg.speed, peers, params, stage.tick)
        seconds["speed"] = stage.done()
        if not any(p.name == speed.BASELINE for p in peers):
            notes.append(f"speed-ups are not given: {speed.BASELINE} did not run")

    seconds["total"] = time.perf_counter() - t0
    results = report.Results(mode=cfg.mode, command=command_line(args), config=acc, peers=peers, notes=notes,
                             tuned=tuned, cells=cells, skipped_streams=skipped, merge=merge,
                             speed=speed_results, limits=limits, speed_target=speed_target,
                             speed_config=cfg.speed, seconds=seconds, env=env)
    path = report.write_report(results, args.out, args.report_name, plots=not args.no_plots)
    seconds["total"] = time.perf_counter() - t0
    print(f"wrote {path} ({seconds['total']:.0f} s)", file=out)
    return path


def _run_command(args):
    run(args)
    return 0


def add_bench_command(sub):
    """Add ``qsketch bench`` to the CLI's subparsers.

    >>> import argparse
    >>> from qsketch.bench.command import add_bench_command
    >>> parser = argparse.ArgumentParser()
    >>> add_bench_command(parser.add_subparsers())
    >>> parser.parse_args(["bench", "--quick"]).quick
    True
    """
    parser = sub.add_parser("bench", help="compare qsketch with t-digests and DataSketches: error, space, speed",
                            description=DESCRIPTION, epilog=_epilog())
    add_arguments(parser)
    parser.set_defaults(handler=_run_command)
