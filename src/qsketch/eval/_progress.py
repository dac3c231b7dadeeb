"""Progress bars: tqdm when it is installed, else a minimal one on stderr.

Both are off unless asked for, and the command asks only when stderr is a
terminal and --quiet is not given.
"""

import sys
import time


class _NoProgress:
    def update(self, n=1):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _SimpleProgress(_NoProgress):
    """A one-line progress display redrawn at most 5 times a second."""

    def __init__(self, total, desc, unit, stream):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.done = 0
        self.start = self.last = time.monotonic()
        self.drawn = False

    def _human(self, n):
        if self.unit == "B":
            for suffix in ("B", "kB", "MB", "GB", "TB"):
                if n < 1000 or suffix == "TB":
                    return f"{n:.0f}{suffix}" if suffix == "B" else f"{n:.1f}{suffix}"
                n /= 1000.0
        return f"{n:,.0f} {self.unit}"

    def _draw(self, final=False):
        elapsed = time.monotonic() - self.start
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 20)
            text = f"\r{self.desc}: {frac:4.0%} |{bar:<20}| {self._human(self.done)}/{self._human(self.total)} [{elapsed:.0f}s]"
        else:
            text = f"\r{self.desc}: {self._human(self.done)} [{elapsed:.0f}s]"
        self.stream.write(text + ("\n" if final else ""))
        self.stream.flush()
        self.drawn = True

    def update(self, n=1):
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.last = now
            self._draw()

    def close(self):
        if self.drawn:
            self._draw(final=True)


def progress(total=None, desc="", unit="it", enabled=False, stream=None):
    """A progress bar with ``update(n)`` and ``close()``; a no-op unless enabled."""
    if not enabled:
        return _NoProgress()
    stream = stream if stream is not None else sys.stderr
    try:
        from tqdm import tqdm
    except ImportError:
        return _SimpleProgress(total, desc, unit, stream)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", file=stream, leave=False,
                dynamic_ncols=True)


def want_progress(quiet=False, stream=None):
    """Whether to show progress: not quiet, and the stream is a terminal."""
    if quiet:
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
