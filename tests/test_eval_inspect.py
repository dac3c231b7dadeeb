"""End to end with Inspect AI: real ``inspect_ai.eval`` runs, offline.

Two tasks on an in-memory dataset, two mock models (``mockllm/alpha`` and
``mockllm/beta``) whose scripted outputs carry ``usage`` (so no tokenizer is
needed), real scorers (match, includes) and custom ones (letter grades,
dict-valued, float scores with NaN and an error).  The logs are written to a
temporary directory, read back and checked group by group against exact
numpy answers computed here from the same scripts; the qsketch hook, enabled
by its environment variable, must have saved aggregators equal to reading
the logs; the qsketch metric must report exact quantiles.
"""

import math
import os
import re
from importlib.metadata import entry_points

import numpy as np
import pytest

pytest.importorskip("inspect_ai")

from qsketch.cli import main  # noqa: E402
from qsketch.eval import ScoreAggregator, read_records  # noqa: E402

import eval_oracle as oracle  # noqa: E402

N = 16
MODELS = ("alpha", "beta")
ERROR_ID = 13  # the similarity scorer raises for this sample (the other scorers score it)
NAN_ID = 5  # the similarity scorer scores NaN for this one
FAIL_ID = 11  # the solver raises for this one: no scores at all
QUANTILES = (0.25, 0.5, 0.75)


# ---- the scripted models and what the scorers must make of them ------------------------


def completion(model, i, call):
    """What ``model`` answers to question i on its ``call``-th attempt."""
    if call >= 2:  # second epoch of the grading task
        return f"The answer is {2 * i}." if model == "alpha" else f"The answer is {2 * i + 1}."
    if model == "alpha":
        if i % 7 == 0:
            return "I don't know."
        if i % 3 == 0:
            return f"The answer is {2 * i + 1}."
        return f"The answer is {2 * i}."
    if i % 4 == 0:
        return f"It is {2 * i} or {2 * i + 2}, so {2 * i + 2}."
    return f"The answer is {2 * i}."


def _last_number(text):
    found = re.findall(r"\d+", text)
    return int(found[-1]) if found else None


def similarity_value(i, text):
    return ((i * 7919 + len(text) * 31) % 1000) / 1000.0


def grade(i, text):
    if "know" in text:
        return "N"
    last = _last_number(text)
    return "C" if last == 2 * i else "P" if last == 2 * i + 1 else "I"


def expected_scores():
    """{(model, task, metric): [numeric values]} plus NaN and unscored counts."""
    values, nans, unscored = {}, {}, {}
    for m in MODELS:
        model = f"mockllm/{m}"
        for i in range(1, N + 1):
            if i == FAIL_ID:  # every scorer of the task counts it as unscored
                for metric in ("match", "includes", "judge", "similarity"):
                    key = (model, "double", metric)
                    unscored[key] = unscored.get(key, 0) + 1
                continue
            text = completion(m, i, 1)
            row = {"match": float(_last_number(text) == 2 * i), "includes": float(str(2 * i) in text),
                   "judge.length": len(text) / 10, "judge.hedged": float(" or " in text)}
            for metric, v in row.items():
                values.setdefault((model, "double", metric), []).append(v)
            key = (model, "double", "similarity")
            if i == ERROR_ID:
                unscored[key] = unscored.get(key, 0) + 1
            elif i == NAN_ID:
                nans[key] = nans.get(key, 0) + 1
            else:
                values.setdefault(key, []).append(similarity_value(i, text))
        for i in range(1, N + 1):
            for call in (1, 2):
                g = grade(i, completion(m, i, call))
                key = (model, "grading", "graded")
                if g == "N":
                    unscored[key] = unscored.get(key, 0) + 1
                else:
                    values.setdefault(key, []).append({"C": 1.0, "P": 0.5, "I": 0.0}[g])
    return values, nans, unscored


# ---- the Inspect run ------------------------------------------------------------------------


def _scripted(model_name):
    from inspect_ai.model import ModelOutput, ModelUsage

    calls = {}

    def generate(input, tools, tool_choice, config):
        prompt = input[-1].text
        i = int(re.findall(r"\d+", prompt)[-1])
        calls[prompt] = calls.get(prompt, 0) + 1
        out = ModelOutput.from_content(model=model_name, content=completion(model_name, i, calls[prompt]))
        out.usage = ModelUsage(input_tokens=8, output_tokens=6, total_tokens=14)
        return out

    return generate


def _tasks():
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import Score, includes, match, mean, scorer
    from inspect_ai.solver import generate, solver

    @solver
    def flaky():
        async def solve(state, generate):
            if int(state.sample_id) == FAIL_ID:
                raise RuntimeError("sandbox crashed")
            return state
        return solve

    from qsketch.eval.inspect_metric import quantiles

    @scorer(metrics=[mean()])
    def judge():
        async def score(state, target):
            text = state.output.completion
            return Score(value={"length": len(text) / 10, "hedged": " or " in text})
        return score

    @scorer(metrics=[mean(), quantiles(QUANTILES)])
    def similarity():
        async def score(state, target):
            i = int(state.sample_id)
            if i == ERROR_ID:
                raise RuntimeError("similarity service unavailable")
            if i == NAN_ID:
                return Score(value=float("nan"))
            return Score(value=similarity_value(i, state.output.completion))
        return score

    @scorer(metrics=[mean()])
    def graded():
        async def score(state, target):
            return Score(value=grade(int(state.sample_id), state.output.completion))
        return score

    double = Task(name="double",
                  dataset=MemoryDataset([Sample(id=i, input=f"Double {i}.", target=str(2 * i),
                                                metadata={"parity": "odd" if i % 2 else "even"})
                                         for i in range(1, N + 1)]),
                  solver=[flaky(), generate()],
                  scorer=[match(location="end", numeric=True), includes(), judge(), similarity()])
    grading = Task(name="grading",
                   dataset=MemoryDataset([Sample(id=i, input=f"Grade: double {i}.", target=str(2 * i))
                                          for i in range(1, N + 1)]),
                   solver=generate(), scorer=graded(), epochs=2)
    return [double, grading]


@pytest.fixture(scope="module")
def inspect_run(tmp_path_factory):
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    if not any(ep.value == "qsketch.eval._inspect_entry" for ep in entry_points(group="inspect_ai")):
        pytest.fail("the inspect_ai entry point of qsketch is not installed: pip install -e .")
    base = tmp_path_factory.mktemp("inspect")
    log_dir, hook_dir = base / "logs", base / "hook"
    saved = {k: os.environ.get(k) for k in ("QSKETCH_INSPECT_AGG", "QSKETCH_INSPECT_SEED")}
    os.environ["QSKETCH_INSPECT_AGG"] = str(hook_dir / "{task}-{model}-{eval_id}.qsk")
    os.environ["QSKETCH_INSPECT_SEED"] = "1"
    try:
        models = [get_model(f"mockllm/{m}", custom_outputs=_scripted(m)) for m in MODELS]
        logs = inspect_eval(_tasks(), model=models, log_dir=str(log_dir), display="none",
                            fail_on_error=False, max_tasks=2, log_format="eval")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return logs, log_dir, hook_dir


def _aggregate(paths, **kw):
    agg = ScoreAggregator(by=("model", "task"), seed=1)
    for p in paths:
        agg.add_file(p, **kw)
    return agg


def _check_against_expected(agg):
    values, nans, unscored = expected_scores()
    assert agg.groups() == sorted(set(values) | set(nans) | set(unscored))
    for key in agg.groups():
        g = agg.group(key)
        oracle.check_group(g, values.get(key, []), quantile_ps=(0.0, 0.1, 0.5, 0.9, 1.0), thresholds=(0.5, 1.0))
        assert g.is_exact
        assert g.nan_count == nans.get(key, 0) and g.unscored == unscored.get(key, 0) and g.non_numeric == 0
    assert agg.skipped_records == 0


def test_logs_read_back_match_exact_answers(inspect_run):
    logs, log_dir, _ = inspect_run
    assert len(logs) == 4 and all(log.status == "success" for log in logs)
    paths = sorted(log_dir.glob("*.eval"))
    assert len(paths) == 4
    agg = _aggregate(paths)
    _check_against_expected(agg)
    # samples that ended with errors keep their error text in the records
    errors = {rec["id"]: rec["error"] for rec, _ in read_records([p for p in paths if "double" in p.name][0])
              if rec["error"]}
    assert set(errors) == {ERROR_ID, FAIL_ID}
    assert "similarity service unavailable" in errors[ERROR_ID] and "sandbox crashed" in errors[FAIL_ID]
    # without the task's scorer list, a sample without scores is skipped and reported
    strict = ScoreAggregator(by=("model",), seed=1)
    report = strict.add_records([({"model": "m", "scores": None, "error": "boom"}, loc)
                                 for _, loc in list(read_records(paths[0]))[:1]])
    assert report.skipped == 1 and "no scores (sample error: boom)" in str(report.errors[0])


def test_full_samples_and_json_logs_agree(inspect_run, tmp_path):
    from inspect_ai.log import read_eval_log, write_eval_log

    _, log_dir, _ = inspect_run
    paths = sorted(log_dir.glob("*.eval"))
    ref = _aggregate(paths)
    assert _aggregate(paths, inspect_samples="full") == ref
    # .json logs (streamed; the double task's holds a NaN score, which takes
    # the fallback path) give the same aggregates as the .eval logs
    alpha = [p for p in paths if read_eval_log(str(p), header_only=True).eval.model == "mockllm/alpha"]
    json_paths = []
    for p in alpha:
        out = tmp_path / (p.stem + ".json")
        write_eval_log(read_eval_log(str(p)), str(out), format="json")
        json_paths.append(out)
    assert _aggregate(json_paths) == _aggregate(alpha)
    # records carry the sample's fields: group by any of them
    by_parity = ScoreAggregator(by=("model", "metadata.parity"), score="scores.match", seed=1)
    for p in paths:
        if "double" in p.name:
            by_parity.add_file(p)
    values = {}
    for m in MODELS:
        for i in range(1, N + 1):
            if i != ERROR_ID:
                text = completion(m, i, 1)
                values.setdefault((f"mockllm/{m}", "odd" if i % 2 else "even", "match"), []).append(
                    float(_last_number(text) == 2 * i))
    assert by_parity.groups() == sorted(values)
    for key, v in values.items():
        oracle.check_group(by_parity.group(key), v)
    rec, loc = next(iter(read_records(paths[0])))
    assert {"model", "task", "task_id", "run_id", "eval_id", "id", "epoch", "scores", "metadata", "log"} <= set(rec)
    assert str(loc).startswith(str(paths[0]))


def test_hook_saved_the_same_aggregators(inspect_run):
    _, log_dir, hook_dir = inspect_run
    saved = sorted(hook_dir.glob("*.qsk"))
    assert len(saved) == 4, saved
    assert {p.name.split("-")[0] for p in saved} == {"double", "grading"}
    merged = ScoreAggregator(by=("model", "task"), seed=1)
    for p in saved:
        merged.merge(ScoreAggregator.load(p))
    assert merged == _aggregate(sorted(log_dir.glob("*.eval")))
    _check_against_expected(merged)
    # and per task run: each file equals its own log
    hooked = [ScoreAggregator.load(p) for p in saved]
    for log in sorted(log_dir.glob("*.eval")):
        from_log = _aggregate([log])
        assert sum(h == from_log for h in hooked) == 1


def test_quantiles_metric(inspect_run):
    logs, _, _ = inspect_run
    values, _, _ = expected_scores()
    for log in logs:
        if log.eval.task != "double":
            continue
        sim = [s for s in log.results.scores if s.name == "similarity"][0]
        want = oracle.quantiles(values[(log.eval.model, "double", "similarity")], QUANTILES)
        got = [sim.metrics[name].value for name in ("p25", "p50", "p75")]
        assert got == want, (log.eval.model, got, want)
        assert math.isclose(sim.metrics["mean"].value, float(np.mean(values[(log.eval.model, "double", "similarity")])))


def test_cli_on_inspect_logs(inspect_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, log_dir, _ = inspect_run
    out = tmp_path / "agg.qsk"
    assert main(["aggregate", str(log_dir), "-o", str(out), "--seed", "1", "-q"]) == 0
    capsys.readouterr()
    assert ScoreAggregator.load(out) == _aggregate(sorted(log_dir.glob("*.eval")))
    assert main(["report", str(out), "--format", "md", "--plot", str(tmp_path / "cdf.png")]) == 0
    report = capsys.readouterr().out
    assert "| mockllm/alpha | double | match |" in report
    assert (tmp_path / "cdf.png").stat().st_size > 10_000
    assert main(["compare", str(out), "--a", "model=mockllm/alpha", "--b", "model=mockllm/beta"]) == 0
    assert "grading  graded" in capsys.readouterr().out
