"""docs/eval.md's walk-through runs as written: the marked files are written
and the marked shell blocks run, in order, in a temporary directory; the
outputs shown in the document must be what the commands print."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("inspect_ai")
pytest.importorskip("matplotlib")

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "eval.md"
MARKER = re.compile(r"<!-- eval-walkthrough: (file (?P<name>\S+)|run) -->\n```\w*\n(?P<body>.*?)```", re.S)
SHOWN = re.compile(r"```text\n(?P<body>.*?)```", re.S)


def test_walkthrough_runs_as_written(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    steps = list(MARKER.finditer(text))
    assert len(steps) >= 4, "the walk-through markers are missing"
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("QSKETCH_INSPECT_AGG", None)
    printed = []
    for step in steps:
        if step.group("name"):
            (tmp_path / step.group("name")).write_text(step.group("body"), encoding="utf-8")
            continue
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", step.group("body")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{step.group('body')}\n{proc.stdout}\n{proc.stderr}"
        printed.append(proc.stdout)
    out = "\n".join(printed)
    for shown in SHOWN.finditer(text):
        for line in shown.group("body").splitlines():
            assert line.rstrip() in out, f"docs/eval.md shows a line the commands do not print:\n{line}"
    assert (tmp_path / "cdf.png").read_bytes()[:4] == b"\x89PNG"
    assert "same report" in out
    assert len(list((tmp_path / "aggs").glob("*.qsk"))) == 2
