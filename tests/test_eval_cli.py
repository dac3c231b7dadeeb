"""The aggregate, merge, report and compare commands, on files in tmp_path."""

import csv
import io
import json
import subprocess
import sys
import types

import numpy as np
import pytest

from qsketch.cli import main
from qsketch.eval import ScoreAggregator

import eval_oracle as oracle


@pytest.fixture
def shards(tmp_path):
    """Three JSONL shards of two models x two tasks, one malformed line, and
    the exact scores per group."""
    rng = np.random.default_rng(21)
    truth = {}
    paths = []
    for s in range(3):
        path = tmp_path / f"shard{s}.jsonl"
        with open(path, "w") as f:
            for i in range(400):
                model, task = ("x", "y")[i % 2], ("qa", "safety")[(i // 2) % 2]
                acc = bool(rng.random() < (0.7 if model == "x" else 0.5))
                sim = float(rng.beta(2 + 3 * (model == "x"), 2))
                truth.setdefault((model, task, "accuracy"), []).append(float(acc))
                truth.setdefault((model, task, "sim"), []).append(sim)
                f.write(json.dumps({"model": model, "task": task, "scores": {"accuracy": acc, "sim": sim}}) + "\n")
                if s == 1 and i == 10:
                    f.write('{"model": "x", "task": \n')
        paths.append(path)
    return tmp_path, paths, truth


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_aggregate_report_and_exact_answers(shards, capsys):
    tmp, paths, truth = shards
    agg_path = tmp / "agg.qsk"
    code, out, err = _run(["aggregate", "--by", "model,task", "--score", "scores.accuracy", "--score", "scores.sim",
                           *paths, "-o", agg_path, "--seed", "1", "--quiet"], capsys)
    assert code == 0, err
    assert f"{paths[1]}:12: invalid JSON" in err and "skipped" not in out
    agg = ScoreAggregator.load(agg_path)
    assert agg.skipped_records == 1
    assert agg.groups() == sorted(truth)
    for key, values in truth.items():
        oracle.check_group(agg.group(key), values)

    code, out, err = _run(["report", agg_path, "--format", "json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["skipped_records"] == 1 and payload["by"] == ["model", "task"]
    for row in payload["rows"]:
        values = np.asarray(truth[(row["model"], row["task"], row["metric"])])
        assert row["n"] == values.size and row["mean"] == pytest.approx(values.mean(), rel=1e-12)

    code, out, _ = _run(["report", agg_path, "--format", "csv", "--quantiles", "0.5", "--thresholds", "0.5,0.9"],
                        capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == len(truth) and "pass>=0.9_high" in rows[0]
    acc = [r for r in rows if r["metric"] == "accuracy"]
    for r in acc:
        values = np.asarray(truth[(r["model"], r["task"], "accuracy")])
        assert float(r["pass>=0.5"]) == float(np.mean(values >= 0.5)) and r["exact"] == "True"

    code, out, _ = _run(["report", agg_path], capsys)
    assert code == 0 and "mean (95% CI)" in out and "1 record(s) were skipped" in out
    code, out, _ = _run(["report", agg_path, "--format", "md", "--where", "model=x", "--where", "metric=sim"],
                        capsys)
    assert code == 0 and out.startswith("| model | task | metric |") and out.count("\n| x |") == 2


def test_strict_stops_at_the_first_bad_line(shards, capsys):
    tmp, paths, _ = shards
    code, _, err = _run(["aggregate", *paths, "-o", tmp / "s.qsk", "--strict", "-q"], capsys)
    assert code == 1
    assert f"{paths[1]}:12: invalid JSON" in err and "nothing was written" in err
    assert not (tmp / "s.qsk").exists()


def test_merge_in_several_orders(shards, capsys):
    tmp, paths, truth = shards
    parts = []
    for i, p in enumerate(paths):
        out = tmp / f"part{i}.qsk"
        assert _run(["aggregate", p, "-o", out, "--seed", str(i), "-q"], capsys)[0] == 0
        parts.append(out)
    merged = []
    for j, order in enumerate([(0, 1, 2), (2, 1, 0), (1, 2, 0)]):
        out = tmp / f"merged{j}.qsk"
        code, _, err = _run(["merge", *[parts[i] for i in order], "-o", out, "-q"], capsys)
        assert code == 0, err
        merged.append(ScoreAggregator.load(out))
    for m in merged:
        assert m.groups() == sorted(truth) and m.skipped_records == 1
        for key, values in truth.items():
            g = m.group(key)
            ref = merged[0].group(key)
            assert g.count == len(values) and (g.unscored, g.nan_count) == (0, 0)
            assert g.mean == pytest.approx(np.mean(values), rel=1e-9)
            assert g.m2 == pytest.approx(ref.m2, rel=1e-9) and g.sum == pytest.approx(ref.sum, rel=1e-12)
    other = tmp / "other.qsk"
    assert _run(["aggregate", paths[0], "-o", other, "--by", "model", "-q"], capsys)[0] == 0
    code, _, err = _run(["merge", parts[0], other, "-o", tmp / "bad.qsk"], capsys)
    assert code == 1 and "different fields" in err


def test_compare(shards, capsys):
    tmp, paths, truth = shards
    agg_path = tmp / "agg.qsk"
    assert _run(["aggregate", *paths, "-o", agg_path, "-q"], capsys)[0] == 0
    code, out, err = _run(["compare", agg_path, "--a", "model=x", "--b", "model=y", "--format", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert len(rows) == 4
    for row in rows:
        a = truth[("x", row["task"], row["metric"])]
        b = truth[("y", row["task"], row["metric"])]
        exact_ks = oracle.ks(a, b)
        if row["exact"]:
            assert row["ks"] == pytest.approx(exact_ks, abs=1e-12) and row["ks_bound"] == 0
        else:
            assert row["ks_low"] <= exact_ks <= row["ks_high"]
        assert row["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b), rel=1e-9)
    code, out, _ = _run(["compare", agg_path, "--a", "model=x,task=qa", "--b", "model=y,task=safety"], capsys)
    assert code == 0 and "KS distance" in out and len(out.strip().splitlines()) == 4
    code, _, err = _run(["compare", agg_path, "--a", "model=x", "--b", "model=nobody"], capsys)
    assert code == 1 and "no pair" in err
    code, _, err = _run(["compare", agg_path, "--a", "colour=x", "--b", "model=y"], capsys)
    assert code == 2 and "unknown column" in err


def test_plot(shards, capsys):
    pytest.importorskip("matplotlib")
    tmp, paths, _ = shards
    agg_path, png = tmp / "agg.qsk", tmp / "cdf.png"
    assert _run(["aggregate", *paths, "-o", agg_path, "-q"], capsys)[0] == 0
    code, _, err = _run(["report", agg_path, "--plot", png, "-o", tmp / "report.md", "--format", "md"], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp / "report.md").read_text().startswith("| model |")


def test_plot_without_matplotlib(shards, capsys, monkeypatch):
    tmp, paths, _ = shards
    agg_path = tmp / "agg.qsk"
    assert _run(["aggregate", paths[0], "-o", agg_path, "-q"], capsys)[0] == 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    code, out, err = _run(["report", agg_path, "--plot", tmp / "x.png"], capsys)
    assert code == 1 and "pip install 'qsketch[plot]'" in err
    assert "mean (95% CI)" in out  # the report itself is still printed


def test_inputs_options_and_errors(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("task,acc\nt,PASS\nt,FAIL\nt,PASS\nt,SKIP\n")
    (data / "results_2024.json").write_text("{}")  # lm-eval aggregates are not sample files
    (data / "notes.txt").write_text("ignored")
    out = tmp_path / "a.qsk"
    code, _, err = _run(["aggregate", data, "-o", out, "--score", "acc", "--set", "model=m1",
                         "--grades", "PASS=1,FAIL=0,SKIP=", "--seed", "3"], capsys)
    assert code == 0, err
    assert "aggregated 4 record(s) from 1 file(s) into 1 group(s); skipped 0" in err
    g = ScoreAggregator.load(out).group(("m1", "t", "acc"))
    assert (g.count, g.unscored, g.mean) == (3, 1, pytest.approx(2 / 3))
    # --append merges into the existing file
    assert _run(["aggregate", data / "a.csv", "-o", out, "--score", "acc", "--set", "model=m1",
                 "--grades", "PASS=1,FAIL=0,SKIP=", "--append", "-q"], capsys)[0] == 0
    assert ScoreAggregator.load(out).group(("m1", "t", "acc")).count == 6

    assert _run(["aggregate", tmp_path / "missing.jsonl", "-o", out], capsys)[0] == 2
    assert _run(["aggregate", data / "a.csv", "-o", out, "--by", "metric"], capsys)[0] == 2
    code, _, err = _run(["aggregate", data / "a.csv", "-o", tmp_path / "none.qsk", "--score", "nope",
                         "--set", "model=m1"], capsys)
    assert code == 1 and "no record could be ingested" in err and "missing score field 'nope'" in err
    bad = tmp_path / "bad.qsk"
    bad.write_bytes(out.read_bytes()[:-3])
    code, _, err = _run(["report", bad], capsys)
    assert code == 1 and "truncated" in err
    assert _run(["report", tmp_path / "absent.qsk"], capsys)[0] == 1
    code, _, err = _run(["report", out, "--where", "colour=red"], capsys)
    assert code == 2 and "unknown column" in err
    with pytest.raises(SystemExit):
        main(["aggregate", str(data / "a.csv")])  # -o is required


def test_command_line_entry_point(shards):
    tmp, paths, truth = shards
    out = tmp / "sub.qsk"
    proc = subprocess.run([sys.executable, "-m", "qsketch", "aggregate", str(paths[0]), "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "qsketch", "report", str(out), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["rows"]) == len(truth)


def test_bad_k_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text('{"model": "m", "task": "t", "scores": {"x": 1}}\n')
    code, _, err = _run(["aggregate", path, "-o", tmp_path / "a.qsk", "--k", "3"], capsys)
    assert code == 2 and "k" in err


def test_progress_bars(tmp_path, monkeypatch):
    from qsketch.eval import _progress

    stream = io.StringIO()
    assert not _progress.want_progress(stream=stream)  # not a terminal
    assert not _progress.want_progress(quiet=True)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the built-in fallback
    clock = iter(range(100))
    monkeypatch.setattr(_progress, "time", types.SimpleNamespace(monotonic=lambda: float(next(clock))))
    bar = _progress.progress(total=2000, desc="scores.jsonl", unit="B", enabled=True, stream=stream)
    bar.update(1000)
    bar.close()
    text = stream.getvalue()
    assert "scores.jsonl:" in text and "50%" in text and text.endswith("\n")
    quiet = _progress.progress(total=10, enabled=False)
    quiet.update(5)
    quiet.close()


def test_import_needs_only_numpy():
    code = ("import sys, qsketch, qsketch.eval, qsketch.cli; "
            "heavy = [m for m in ('pandas', 'pyarrow', 'inspect_ai', 'matplotlib', 'tqdm') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
