"""The records a run directory's stats.jsonl holds, built one way for ``initlab run``
(train.py) and ``initlab.watch`` (watching.py), and the one rule that says a record diverged.

A record is one line: ``step``, ``epoch``, ``phase``, ``loss``, ``train_error``,
``test_error`` (None where not measured or not finite: JSON has no NaN), then one list per
per-layer statistic of ``stats.LAYER_STATS`` that was measured, in registry order (None where a
value is undefined, or where a layer has none). ``RunLog`` holds a run's records on their way
to its ``RunWriter``; the trainer keeps one per member, a watch one for its run.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from initlab.runs import RunWriter, clean_number
from initlab.stats import LAYER_KEYS, LAYER_STATS

SCALAR_KEYS = ("loss", "train_error", "test_error")
# A record with any of these not finite means its run diverged (a statistic whose value may be
# merely undefined, e.g. the relative change of a zero init, is not among them).
DIVERGING_KEYS = tuple(key for key, stat in LAYER_STATS.items() if stat.diverges)

Scalars = Mapping[str, float | None]
LayerValues = Mapping[str, Sequence[float | None]]


def build_record(step: int, epoch: int | None, phase: str, scalars: Scalars,
                 layers: LayerValues) -> dict[str, Any]:
    """One line of stats.jsonl from host values: ``scalars`` by ``SCALAR_KEYS`` (missing ones
    are None), ``layers`` by statistic key (one value per layer, None for none); statistics
    are written in ``LAYER_STATS`` order, those not in ``layers`` left out."""
    record: dict[str, Any] = {"step": step, "epoch": epoch, "phase": phase}
    for key in SCALAR_KEYS:
        value = scalars.get(key)
        record[key] = None if value is None else clean_number(value)
    for key in LAYER_KEYS:
        if key in layers:
            record[key] = [None if v is None else clean_number(v) for v in layers[key]]
    return record


def diverged(scalars: Scalars, layers: LayerValues, unjudged: Collection[str] = ()) -> bool:
    """Whether a record's host values say its run diverged: a loss that is not finite, or a
    value of a ``DIVERGING_KEYS`` statistic that is not (None: no value, not a divergence).
    ``unjudged``: statistics whose values in this record may overflow harmlessly (initlab.watch's
    gradient as backward left it, which GradScaler may have scaled)."""
    loss = scalars.get("loss")
    if loss is not None and not math.isfinite(loss):
        return True
    return any(v is not None and not math.isfinite(v)
               for key in DIVERGING_KEYS if key not in unjudged for v in layers.get(key, ()))


class RunLog:
    """One run directory's records on their way to its writer: ``add`` builds a record and
    notes the first step whose record diverged; ``flush`` appends them to stats.jsonl and
    rewrites summary.json."""

    def __init__(self, writer: RunWriter):
        self.writer = writer
        self.pending: list[dict[str, Any]] = []  # records not yet on disk
        self.diverged_at: int | None = None  # the first step a record said diverged

    def add(self, step: int, epoch: int | None, phase: str, scalars: Scalars,
            layers: LayerValues, unjudged: Collection[str] = ()) -> dict[str, Any]:
        record = build_record(step, epoch, phase, scalars, layers)
        if diverged(scalars, layers, unjudged):
            self.diverged_at = step if self.diverged_at is None else min(step, self.diverged_at)
        self.pending.append(record)
        return record

    def keep_before(self, step: int) -> None:
        """Drop the pending records from ``step`` on (a run that diverged there)."""
        self.pending = [r for r in self.pending if r["step"] < step]

    def flush(self, summary: dict[str, Any] | None = None) -> None:
        """Append the pending records, then (given one) rewrite summary.json. Raises
        ``RunWriteError`` (the records stay pending) when the directory cannot be written."""
        self.writer.append_stats(self.pending)
        self.pending = []
        if summary is not None:
            self.writer.write_summary(summary)
