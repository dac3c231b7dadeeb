"""Readers: JSONL, JSON, CSV/TSV, Parquet and lm-evaluation-harness samples,
with malformed input reported by file and line."""

import gzip
import json

import numpy as np
import pytest

from qsketch.eval import (
    Location,
    RecordError,
    ScoreAggregator,
    detect_format,
    read_csv,
    read_jsonl,
    read_lm_eval,
    read_records,
)

import eval_oracle as oracle


def _collect(items):
    errors = []
    records = list(items(errors.append))
    return records, errors


# ---- JSONL ----------------------------------------------------------------------


def test_jsonl_malformed_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"model": "a", "scores": {"acc": 1}}\n'
        "\n"
        '{"model": "a", "scores": {"acc": 0}\n'
        "[1, 2]\n"
        '{"model": "b", "scores": {"acc": 1}}\n'
        '{"model": "b", "scor',
        encoding="utf-8")
    records, errors = _collect(lambda cb: read_jsonl(path, on_error=cb))
    assert [loc.line for _, loc in records] == [1, 5]
    assert [e.location.line for e in errors] == [3, 4, 6]
    assert str(errors[0]).startswith(f"{path}:3: invalid JSON")
    assert "expected a JSON object, got list" in str(errors[1])
    assert "incomplete (file truncated?)" in str(errors[2])
    with pytest.raises(RecordError, match=r"s.jsonl:3: invalid JSON"):
        list(read_jsonl(path))


def test_jsonl_non_utf8_and_gzip(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe{"a": 2}\n')
    records, errors = _collect(lambda cb: read_jsonl(path, on_error=cb))
    assert len(records) == 1 and "UTF-8" in errors[0].reason
    gz = tmp_path / "s.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write('{"model": "a", "scores": {"x": 0.5}}\n' * 3)
    assert detect_format(gz) == "jsonl"
    assert [r["scores"]["x"] for r, _ in read_records(gz)] == [0.5] * 3


def test_aggregator_add_file_lenient_and_strict(tmp_path):
    path = tmp_path / "s.jsonl"
    rng = np.random.default_rng(0)
    values = {"a": [], "b": []}
    with open(path, "w") as f:
        for i in range(500):
            m = "ab"[i % 2]
            v = float(rng.random())
            values[m].append(v)
            f.write(json.dumps({"model": m, "scores": {"sim": v}}) + "\n")
            if i == 100:
                f.write("not json\n")
            if i == 200:
                f.write(json.dumps({"scores": {"sim": 1}}) + "\n")
    agg = ScoreAggregator(by=["model"], seed=0)
    report = agg.add_file(path)
    assert (report.records, report.skipped) == (500, 2)
    assert [e.location.line for e in report.errors] == [102, 203]
    assert "missing field 'model'" in str(report.errors[1])
    for m in "ab":
        oracle.check_group(agg.group((m, "sim")), values[m])
    with pytest.raises(RecordError, match=r"s.jsonl:102: invalid JSON"):
        ScoreAggregator(by=["model"], seed=0).add_file(path, strict=True)
    fixed = path.with_name("fixed.jsonl")
    fixed.write_text("".join(line for line in path.read_text().splitlines(True) if line != "not json\n"))
    with pytest.raises(RecordError, match=r"fixed.jsonl:202: missing field 'model'"):
        ScoreAggregator(by=["model"], seed=0).add_file(fixed, strict=True)


def test_defaults_fill_missing_fields(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"scores": {"acc": 1}}\n{"model": "own", "scores": {"acc": 0}}\n')
    agg = ScoreAggregator(by=["model"], seed=0)
    agg.add_file(path, defaults={"model": "m0"})
    assert agg.groups() == [("m0", "acc"), ("own", "acc")]


def test_json_array(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"model": "a", "scores": {"x": 1}}, 3, {"model": "a", "scores": {"x": 0}}]))
    assert detect_format(path) == "json"
    records, errors = _collect(lambda cb: read_records(path, on_error=cb))
    assert len(records) == 2 and str(errors[0]).endswith("(record 2): expected a JSON object, got int")


# ---- CSV ------------------------------------------------------------------------------


def test_csv_rows_fields_and_line_numbers(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "\ufeffmodel,task,scores.accuracy,scores.judge\n"
        "m1,qa,1,0.5\n"
        "m1,qa,0,\n"
        'm1,"multi\nline task",1,0.25\n'
        "m1,qa,1\n"
        "m2,qa,true,C\n"
        "m2,qa,x,y,z\n",
        encoding="utf-8")
    records, errors = _collect(lambda cb: read_csv(path, on_error=cb))
    assert [loc.line for _, loc in records] == [2, 3, 5, 7]
    assert records[0][0]["scores"] == {"accuracy": "1", "judge": "0.5"}
    assert records[0][0]["scores.accuracy"] == "1"  # the flat name works too
    assert [(e.location.line, e.reason) for e in errors] == [
        (6, "expected 4 fields (the header has 4), found 3"),
        (8, "expected 4 fields (the header has 4), found 5")]
    agg = ScoreAggregator(by=["model", "task"], seed=0)
    report = agg.add_file(path)
    assert (report.records, report.skipped) == (4, 2)
    g = agg.group(("m1", "qa", "judge"))
    assert (g.count, g.unscored, g.mean) == (1, 1, 0.5)
    assert agg.group(("m2", "qa", "accuracy")).mean == 1.0
    assert agg.group(("m2", "qa", "judge")).mean == 1.0  # grade C
    with pytest.raises(RecordError, match=r"s.csv:6: expected 4 fields"):
        ScoreAggregator(by=["model", "task"], seed=0).add_file(path, strict=True)


def test_tsv_and_explicit_score_path(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("model\treward\nm\t0.5\nm\t1.5\n")
    agg = ScoreAggregator(by=["model"], score="reward", seed=0)
    agg.add_file(path)
    assert agg.group(("m", "reward")).mean == 1.0


def test_csv_duplicate_header(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,a\n1,2\n")
    records, errors = _collect(lambda cb: read_csv(path, on_error=cb))
    assert not records and "duplicate column names ['a']" in str(errors[0])


# ---- Parquet -----------------------------------------------------------------------------


def test_parquet_flat_and_nested(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(1)
    acc = (rng.random(3000) < 0.4).astype(float)
    sim = rng.random(3000)
    models = np.where(np.arange(3000) % 2 == 0, "x", "y")
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"model": models, "scores.acc": acc, "scores.sim": sim}), flat, row_group_size=700)
    nested = tmp_path / "nested.pq"
    pq.write_table(pa.Table.from_pylist([{"model": m, "scores": {"acc": a, "sim": s}}
                                         for m, a, s in zip(models, acc, sim)]), nested)
    for path in (flat, nested):
        assert detect_format(path) == "parquet"
        agg = ScoreAggregator(by=["model"], seed=0)
        report = agg.add_file(path)
        assert report.records == 3000
        for m in "xy":
            oracle.check_group(agg.group((m, "acc")), acc[models == m])
            oracle.check_group(agg.group((m, "sim")), sim[models == m])
    locs = [loc for _, loc in read_records(flat)]
    assert str(locs[1500]) == f"{flat} (row 1501)"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(flat.read_bytes()[:200])
    records, errors = _collect(lambda cb: read_records(broken, on_error=cb))
    assert not records and "cannot read the Parquet file" in str(errors[0])


# ---- lm-evaluation-harness --log_samples -------------------------------------------------


def _lm_line(doc_id, metrics, filt="none", **values):
    line = {
        "doc_id": doc_id,
        "doc": {"question": f"q{doc_id}", "choices": ["a", "b"], "answer": 0},
        "target": "0",
        "arguments": {"gen_args_0": {"arg_0": "Q: ...", "arg_1": " a"}},
        "resps": [[["-1.2", "False"]]],
        "filtered_resps": [["-1.2", "False"]],
        "filter": filt,
        "metrics": metrics,
        "doc_hash": "d" * 8, "prompt_hash": "p" * 8, "target_hash": "t" * 8,
    }
    line.update(values)
    return line


@pytest.fixture
def lm_eval_dir(tmp_path):
    rng = np.random.default_rng(3)
    date = "2024-05-13T12-00-00.123456"
    model_dir = tmp_path / "out" / "EleutherAI__pythia-160m"
    model_dir.mkdir(parents=True)
    (model_dir / f"results_{date}.json").write_text(json.dumps(
        {"results": {}, "model_name": "EleutherAI/pythia-160m", "config": {"model": "hf"}}))
    truth = {}
    with open(model_dir / f"samples_arc_easy_{date}.jsonl", "w") as f:
        for i in range(400):
            acc, acc_norm = float(rng.random() < 0.6), float(rng.random() < 0.65)
            truth.setdefault("acc", []).append(acc)
            truth.setdefault("acc_norm", []).append(acc_norm)
            f.write(json.dumps(_lm_line(i, ["acc", "acc_norm"], acc=acc, acc_norm=acc_norm)) + "\n")
        f.write('{"doc_id": 400, "metrics": ["acc"]}\n')  # listed but absent
        f.write('{"doc_id": 401, "acc": 1.0}\n')  # no metrics list
        f.write("{truncated\n")
    with open(model_dir / f"samples_gsm8k_cot_{date}.jsonl", "w") as f:
        for i in range(300):
            for filt in ("strict-match", "flexible-extract"):
                v = float(rng.random() < (0.3 if filt == "strict-match" else 0.4))
                truth.setdefault(f"exact_match,{filt}", []).append(v)
                f.write(json.dumps(_lm_line(i, ["exact_match"], filt=filt, exact_match=v)) + "\n")
    other_dir = tmp_path / "out" / "local-model"
    other_dir.mkdir()
    with open(other_dir / f"samples_wikitext_{date}.jsonl", "w") as f:
        for i in range(50):
            f.write(json.dumps(_lm_line(i, ["word_perplexity", "byte_perplexity", "bits_per_byte"],
                                        word_perplexity=[-120.5, 80], byte_perplexity=[-120.5, 400],
                                        bits_per_byte=[-120.5, 400])) + "\n")
    return tmp_path / "out", truth, date


def test_lm_eval_samples(lm_eval_dir):
    out, truth, date = lm_eval_dir
    arc = out / "EleutherAI__pythia-160m" / f"samples_arc_easy_{date}.jsonl"
    assert detect_format(arc) == "lm-eval"
    records, errors = _collect(lambda cb: read_lm_eval(arc, on_error=cb))
    assert len(records) == 400
    rec, loc = records[0]
    assert (rec["model"], rec["task"], loc.line) == ("EleutherAI/pythia-160m", "arc_easy", 1)
    assert set(rec["scores"]) == {"acc", "acc_norm"}
    assert [(e.location.line, e.reason.split(" (")[0]) for e in errors] == [
        (401, "metric(s) ['acc'] listed in 'metrics' but absent from the line"),
        (402, "no 'metrics' list of names"),
        (403, "invalid JSON")]

    agg = ScoreAggregator(by=("model", "task"), seed=0)
    files = sorted(out.rglob("samples_*.jsonl"))
    for path in files:
        agg.add_file(path)
    assert agg.skipped_records == 3
    for metric in ("acc", "acc_norm"):
        oracle.check_group(agg.group(("EleutherAI/pythia-160m", "arc_easy", metric)), truth[metric])
    for metric in ("exact_match,strict-match", "exact_match,flexible-extract"):
        oracle.check_group(agg.group(("EleutherAI/pythia-160m", "gsm8k_cot", metric)), truth[metric])
    # perplexity pairs: skipped and counted, never silently dropped
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        g = agg.group(("local-model", "wikitext", metric))
        assert (g.count, g.non_numeric) == (0, 50)
    row = [r for r in agg.summary() if r["task"] == "wikitext"][0]
    assert row["n"] == 0 and row["non_numeric"] == 50


def test_lm_eval_by_filter_field(lm_eval_dir):
    out, truth, date = lm_eval_dir
    path = out / "EleutherAI__pythia-160m" / f"samples_gsm8k_cot_{date}.jsonl"
    agg = ScoreAggregator(by=("task", "filter"), score={"em": "exact_match"}, seed=0)
    agg.add_file(path)
    oracle.check_group(agg.group(("gsm8k_cot", "strict-match", "em")), truth["exact_match,strict-match"])


def test_detect_format():
    assert detect_format("x/run.eval") == "inspect"
    assert detect_format("x/scores.csv") == "csv"
    assert detect_format("x/scores.TSV") == "tsv"
    assert detect_format("x/scores.pq") == "parquet"
    assert detect_format("x/samples_mmlu_abstract_algebra_2024-01-01T00-00-00.000001.jsonl") == "lm-eval"
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format("x/scores.txt")
    with pytest.raises(ValueError, match="unknown format"):
        list(read_records(__file__, format="xml"))


def test_location_formatting():
    assert str(Location("a.jsonl", line=3)) == "a.jsonl:3"
    assert str(Location(None, line=3)) == "<records>:3"
    assert str(Location("a.parquet", item="row 5")) == "a.parquet (row 5)"
    assert Location("a", 1) == Location("a", 1) and len({Location("a", 1), Location("a", 1)}) == 1
