"""Run the docstring examples of the public API (and the >>> examples of
the Markdown documentation) as doctests.

KLLSketch is a Cython cdef class (binding=True); doctest's finder does not
reliably see its methods, so the docstrings are collected by hand from
dir(KLLSketch) and run with DocTestParser + DocTestRunner.  One test per
docstring that has examples; a failing example fails its test.
"""

import doctest
import inspect
import pathlib

import numpy
import pytest

import qsketch
import qsketch.bench
import qsketch.bench.accuracy
import qsketch.bench.command
import qsketch.bench.peers
import qsketch.bench.report
import qsketch.bench.speed
import qsketch.bench.streams
import qsketch.datasketches_format
import qsketch.errors
import qsketch.eval
import qsketch.integrations.dask
import qsketch.sketch

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doc_of(owner, name):
    attr = inspect.getattr_static(owner, name)
    if isinstance(attr, (classmethod, staticmethod)):
        attr = attr.__func__
    return getattr(attr, "__doc__", None)


def collect():
    docs = {
        "qsketch": qsketch.__doc__,
        "qsketch.sketch": qsketch.sketch.__doc__,
        "qsketch.errors": qsketch.errors.__doc__,
        "qsketch.KLLSketch": qsketch.KLLSketch.__doc__,
        "qsketch.merge_all": qsketch.merge_all.__doc__,
    }
    for name in dir(qsketch.KLLSketch):
        if name.startswith("_"):
            continue
        docs[f"qsketch.KLLSketch.{name}"] = _doc_of(qsketch.KLLSketch, name)
    seen = {id(qsketch.KLLSketch), id(qsketch.merge_all)}
    for name in qsketch.errors.__all__:
        obj = getattr(qsketch.errors, name)
        seen.add(id(obj))
        docs[f"qsketch.errors.{name}"] = obj.__doc__
    for name in qsketch.__all__:  # anything else exported at the top level
        obj = getattr(qsketch, name)
        if callable(obj) and id(obj) not in seen:
            seen.add(id(obj))
            docs[f"qsketch.{name}"] = obj.__doc__
    docs["qsketch.bench"] = qsketch.bench.__doc__
    bench = (qsketch.bench.streams, qsketch.bench.peers, qsketch.bench.accuracy, qsketch.bench.speed,
             qsketch.bench.report, qsketch.bench.command)
    for mod in (qsketch.datasketches_format, qsketch.integrations.dask, *bench):  # public submodules
        docs[mod.__name__] = mod.__doc__
        for name, obj in inspect.getmembers(mod, inspect.isfunction):
            if not name.startswith("_") and obj.__module__ == mod.__name__ and id(obj) not in seen:
                seen.add(id(obj))
                docs[f"{mod.__name__}.{name}"] = obj.__doc__
    docs["qsketch.eval"] = qsketch.eval.__doc__
    for name in qsketch.eval.__all__:  # the eval API: functions, classes and their methods
        obj = getattr(qsketch.eval, name)
        if callable(obj) and id(obj) not in seen:
            seen.add(id(obj))
            docs[f"qsketch.eval.{name}"] = obj.__doc__
            for member, attr in vars(obj).items() if inspect.isclass(obj) else ():
                if not member.startswith("_") and (inspect.isfunction(attr) or isinstance(attr, (property, classmethod, staticmethod))):
                    docs[f"qsketch.eval.{name}.{member}"] = _doc_of(obj, member)
    return docs


DOCS = collect()
PARSER = doctest.DocTestParser()


def has_examples(doc):
    return bool(doc) and bool(PARSER.get_examples(doc))


WITH_EXAMPLES = sorted(name for name, doc in DOCS.items() if has_examples(doc))
WITHOUT_EXAMPLES = sorted(name for name, doc in DOCS.items() if not has_examples(doc))


def test_collection_finds_the_public_api():
    """Guard against a collector that silently finds nothing."""
    must = {
        "qsketch", "qsketch.KLLSketch", "qsketch.merge_all", "qsketch.errors.SerializationError",
        "qsketch.KLLSketch.update", "qsketch.KLLSketch.merge", "qsketch.KLLSketch.copy",
        "qsketch.KLLSketch.rank", "qsketch.KLLSketch.quantile", "qsketch.KLLSketch.quantiles",
        "qsketch.KLLSketch.cdf", "qsketch.KLLSketch.pmf", "qsketch.KLLSketch.rank_bounds",
        "qsketch.KLLSketch.sorted_view", "qsketch.KLLSketch.to_bytes",
        "qsketch.KLLSketch.from_bytes", "qsketch.KLLSketch.normalized_rank_error",
        "qsketch.from_datasketches", "qsketch.to_datasketches", "qsketch.integrations.dask.sketch",
        "qsketch.integrations.dask.approx_quantile", "qsketch.integrations.dask.aggregation",
        "qsketch.eval", "qsketch.eval.ScoreAggregator", "qsketch.eval.ScoreAggregator.summary", "qsketch.eval.read_lm_eval",
    }
    assert must <= set(WITH_EXAMPLES), sorted(must - set(WITH_EXAMPLES))


def test_every_public_member_is_documented():
    for name, doc in DOCS.items():
        assert doc and doc.strip(), f"{name} has no docstring"


def run_examples(name, doc):
    test = PARSER.get_doctest(doc, {"np": numpy, "qsketch": qsketch}, name, f"<{name}>", 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS, verbose=False)
    report = []
    result = runner.run(test, out=report.append, clear_globs=True)
    return result, "".join(report)


# Optional dependencies an example may import: not installed (inspect_ai
# needs Python 3.10), the example is skipped, not failed.
OPTIONAL = ("inspect_ai",)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    for module in OPTIONAL:
        if f"import {module}" in DOCS[name] or f"from {module}" in DOCS[name]:
            pytest.importorskip(module)
    result, report = run_examples(name, DOCS[name])
    assert result.attempted > 0
    assert result.failed == 0, report


def test_harness_detects_a_failing_example():
    bad = """
    >>> import qsketch
    >>> s = qsketch.KLLSketch(seed=0); s.update([1.0, 2.0])
    >>> s.n
    3
    """
    result, report = run_examples("bad", bad)
    assert result.attempted == 3 and result.failed == 1
    assert "Expected" in report


ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKDOWN = sorted(
    str(p.relative_to(ROOT))
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if p.is_file() and has_examples(p.read_text(encoding="utf-8"))
)


@pytest.mark.parametrize("path", MARKDOWN)
def test_markdown_examples(path):
    """The >>> examples of README.md and docs/*.md."""
    result, report = run_examples(path, (ROOT / path).read_text(encoding="utf-8"))
    assert result.attempted > 0
    assert result.failed == 0, report


def test_every_public_docstring_has_an_example():
    """The project's rule: a runnable example on every public function, property and module."""
    assert WITHOUT_EXAMPLES == [], WITHOUT_EXAMPLES
