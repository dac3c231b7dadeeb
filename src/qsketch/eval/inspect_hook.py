"""An Inspect AI hook that streams scores into an aggregator as samples
finish and saves it when the task ends.

Installed with ``pip install 'qsketch[inspect]'``, it is registered through
the ``inspect_ai`` entry-point group (Inspect imports it at start-up) and
stays off until the environment variable ``QSKETCH_INSPECT_AGG`` is set:

* ``QSKETCH_INSPECT_AGG``: a directory (one ``<task>_<eval_id>.qsk`` per task
  run) or a file-name template with ``{task}``, ``{model}``, ``{eval_id}``,
  ``{run_id}``, ``{task_id}`` placeholders (``/`` in values becomes ``_``);
* ``QSKETCH_INSPECT_BY``: the group fields (default ``model,task``; any
  field of the records of :func:`qsketch.eval.read_inspect_log`, such as
  ``epoch`` or ``metadata.category``);
* ``QSKETCH_INSPECT_K`` and ``QSKETCH_INSPECT_SEED``: sketch k and seed.

The saved aggregator equals the one ``qsketch aggregate`` builds from the
task's log (its records lack only the ``log`` field, the log's path): a
sample that ends with an error counts as unscored for each scorer that left
no score, and records that cannot be ingested (a missing ``by`` field) are
logged as warnings and counted in the file's skipped records.  A template
without placeholders names one file, rewritten by every task of the run.
Importing this module imports inspect_ai.
"""

import logging
import os
import re

from inspect_ai.hooks import Hooks, SampleEnd, TaskEnd, TaskStart, hooks

from qsketch.eval.aggregator import ScoreAggregator
from qsketch.eval.records import RecordError
from qsketch.eval.sources import _sample_location, inspect_header_fields, inspect_record, inspect_scorer_names

__all__ = ["QSketchHooks", "ENV_OUTPUT", "ENV_BY", "ENV_K", "ENV_SEED", "output_path"]

ENV_OUTPUT = "QSKETCH_INSPECT_AGG"
ENV_BY = "QSKETCH_INSPECT_BY"
ENV_K = "QSKETCH_INSPECT_K"
ENV_SEED = "QSKETCH_INSPECT_SEED"

logger = logging.getLogger(__name__)


def _safe(value):
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", str(value))


def output_path(setting, fields):
    """Where a task's aggregator goes, from the ``QSKETCH_INSPECT_AGG``
    value: a directory, or a template with placeholders."""
    safe = {name: _safe(value) for name, value in fields.items()}
    if "{" in setting:
        return setting.format(**safe)
    if setting.endswith(".qsk"):
        return setting
    return os.path.join(setting, f"{safe['task']}_{safe['eval_id']}.qsk")


class _TaskState:
    __slots__ = ("aggregator", "base", "fields", "scorers")

    def __init__(self, aggregator, base, fields, scorers):
        self.aggregator, self.base, self.fields, self.scorers = aggregator, base, fields, scorers


@hooks(name="qsketch_aggregate", description="Streams sample scores into a qsketch ScoreAggregator "
                                             f"(enabled by {ENV_OUTPUT}).")
class QSketchHooks(Hooks):
    """Aggregates each task's sample scores and saves them at task end."""

    def __init__(self):
        self._tasks = {}

    def enabled(self):
        return bool(os.environ.get(ENV_OUTPUT))

    def _new_aggregator(self):
        by = os.environ.get(ENV_BY) or "model,task"
        k = int(os.environ.get(ENV_K) or 200)
        seed = os.environ.get(ENV_SEED)
        return ScoreAggregator(by=by, k=k, seed=int(seed) if seed else None)

    async def on_task_start(self, data: TaskStart) -> None:
        spec = data.spec
        base = inspect_header_fields(spec)
        fields = {"task": spec.task, "model": spec.model, "eval_id": data.eval_id, "run_id": data.run_id,
                  "task_id": getattr(spec, "task_id", "")}
        self._tasks[data.eval_id] = _TaskState(self._new_aggregator(), base, fields, inspect_scorer_names(spec))

    async def on_sample_end(self, data: SampleEnd) -> None:
        state = self._tasks.get(data.eval_id)
        if state is None:
            return
        sample = data.sample
        record = inspect_record(state.base, sample, state.scorers)
        try:
            state.aggregator.add(record)
        except RecordError as exc:
            state.aggregator.skipped_records += 1
            logger.warning("qsketch: %s", exc.at(_sample_location(state.fields["task"], sample)))

    async def on_task_end(self, data: TaskEnd) -> None:
        state = self._tasks.pop(data.eval_id, None)
        setting = os.environ.get(ENV_OUTPUT)
        if state is None or not setting:
            return
        path = output_path(setting, state.fields)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        state.aggregator.save(path)
        logger.info("qsketch: saved %d group(s) to %s", len(state.aggregator), path)
