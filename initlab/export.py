"""Runs in other tools' formats: CSV files (a spreadsheet, pandas) and TensorBoard event files
(``tensorboard --logdir DIR``), from saved runs (``initlab export``) or while training
(``initlab run --tensorboard``, through ``TensorBoardRunWriter``).

TensorBoard's own writer (``torch.utils.tensorboard``) needs the ``tensorboard`` package, an
optional extra: ``pip install 'initlab[tensorboard]'``.

What a run becomes in TensorBoard (step = the training step):
- ``loss/batch``, ``error/batch``: each captured training batch ('train' records);
- ``loss/epoch``, ``error/train_epoch``: each epoch's means; ``error/test``: the test set;
- ``<stat>/<layer>``: each per-layer statistic of the captured training batches, one scalar per
  layer for a net of at most ``ALL_LAYERS_UP_TO`` layers, else for five of them (the first, the
  quartiles, the last), so that the scalar list stays short (``n_weight_var`` is n·Var(W_i), as
  the plots show it); ``probe/<stat>/<layer>``: the same measured on the fixed probe batch at
  initialization and epoch ends. ``all_layers`` (``initlab export --all-layers``): a scalar for
  every layer, and the Custom Scalars tab groups them, one chart per statistic and block of
  ``LAYERS_PER_CHART`` layers (``act_norm: layers 1-10``), each layer a line;
- histograms ``<stat>`` and ``probe/<stat>``: the distribution of a statistic over all the
  layers at each capture (initlab records per-layer summaries, not every unit's value, so these
  are histograms over layers, not over units); every layer's value is in the CSV export;
- an HParams summary: the run's config (every key) and how it ended (``status``: completed,
  or "diverged at step N"), so TensorBoard's HParams tab compares sweep members by their
  settings, against ``error/test`` and ``loss/epoch``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from initlab.errors import UsageError
from initlab.runs import (
    FINISHED,
    Run,
    RunWriter,
    atomic_output,
    output_folder,
    read_run_config,
    refuse_unsafe_folder,
    refuse_unsafe_target,
)
from initlab.stats import LAYER_STATS

FORMATS = ("csv", "tensorboard")
EVENTS_PREFIX = "events.out.tfevents."
PROBE_PHASES = ("init", "epoch", "final")
ALL_LAYERS_UP_TO = 8  # a deeper net gets per-layer scalars for five layers (its histograms: all)
LAYERS_PER_CHART = 10  # with every layer's scalars: lines per Custom Scalars chart
HPARAM_METRICS = ("error/test", "loss/epoch")


def scalar_layers(count: int, all_layers: bool = False) -> set[int]:
    """Which layers (1-based) get per-layer scalars in TensorBoard."""
    if count <= ALL_LAYERS_UP_TO or all_layers:
        return set(range(1, count + 1))
    return {1, round(count / 4), round(count / 2), round(3 * count / 4), count}


def outcome_text(summary: dict[str, Any]) -> str:
    """``completed``, ``diverged at step N``, ``interrupted`` ... as everywhere else."""
    if summary.get("status") == "diverged":
        return f"diverged at step {summary.get('diverged_step')}"
    return str(summary.get("status") or "unknown")


def add_hparams(writer: Any, config: dict[str, Any], summary: dict[str, Any]) -> None:
    """The run's settings and outcome as an HParams session in the run's own event file (no
    extra folder: TensorBoard reads its metrics from the run's scalars)."""
    from torch.utils.tensorboard.summary import hparams

    values: dict[str, Any] = {}
    for section, entries in config.items():
        items = entries.items() if isinstance(entries, dict) else [("", entries)]
        for key, value in items:
            name = f"{section}.{key}" if key else section
            if isinstance(value, bool | int | float | str):
                values[name] = value
            elif value is None:
                values[name] = "none"
    values["status"] = outcome_text(summary)
    for part in hparams(values, dict.fromkeys(HPARAM_METRICS, math.nan)):
        writer.file_writer.add_summary(part)


def require_tensorboard(what: str) -> None:
    """A clear message, not an ImportError, when the optional package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(f"{what} needs the tensorboard package: pip install "
                         f"'initlab[tensorboard]' (or pip install tensorboard)")


def export_name(run: Run) -> Path:
    """A run's place in an export: ``sweep/member`` or its name."""
    return Path(run.sweep, run.name) if run.sweep else Path(run.name)


CSV_FILES = ("records.csv", "layers.csv")


def check_targets(folders: Sequence[Path], to: str, force: bool, out: Path) -> None:
    """Before anything is written: each run's folder can be made, and files an earlier export
    (or the user) left there are overwritten only with ``force``."""
    for folder in folders:
        for parent in (folder, *folder.parents):
            if os.path.lexists(parent) and not parent.is_dir():
                raise UsageError(f"cannot export into {folder}: {parent} is a file")
            if parent.is_dir():
                break
        refuse_unsafe_folder(folder, out)  # a link among them, or a FIFO
        for name in CSV_FILES if to == "csv" else ():
            refuse_unsafe_target(folder / name)
        if force or not folder.is_dir():
            continue
        taken = ([folder / name for name in CSV_FILES if os.path.lexists(folder / name)]
                 if to == "csv" else sorted(folder.glob(EVENTS_PREFIX + "*")))
        if taken:
            raise UsageError(f"{taken[0]} exists; add --force to overwrite it (and the "
                             f"other files an export writes there), or choose another --out")


def export_runs(runs: Sequence[Run], to: str, out: Path, force: bool = False,
                all_layers: bool = False) -> list[Path]:
    """Write each run under ``out/<name>/`` in format ``to``; the files or folders written.
    Files already there are overwritten only with ``force``. ``all_layers``: TensorBoard
    scalars for every layer, grouped in charts (the module's docstring)."""
    if to not in FORMATS:
        raise UsageError(f"--to: expected one of {', '.join(FORMATS)}, got {to[:80]!r}")
    if to == "tensorboard":
        require_tensorboard("--to tensorboard")
    names = [export_name(run) for run in runs]
    twice = sorted({str(n) for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"two runs would be exported to the same place: {', '.join(twice)}")
    check_targets([out / name for name in names], to, force, out)
    written = []
    for run, name in zip(runs, names, strict=True):
        target = out / name
        try:
            output_folder(target, out)
            written += (write_csv(run, target) if to == "csv"
                        else [write_tensorboard(run, target, all_layers)])
        except OSError as err:
            raise UsageError(f"cannot write into {target}: {err.strerror or err}") from None
    return written


# --- CSV ---------------------------------------------------------------------------------------


def write_csv(run: Run, folder: Path) -> list[Path]:
    """``records.csv`` (one row per record: step, epoch, phase, loss, errors) and
    ``layers.csv`` (one row per record and layer, every per-layer statistic a column); empty
    cells where a value is undefined."""
    paths = []
    for name, per_layer in zip(CSV_FILES, (False, True), strict=True):
        table = run.table(per_layer)
        path = folder / name
        with atomic_output(path) as raw:
            f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(f)
            writer.writerow(list(table))
            for row in zip(*table.values(), strict=True):
                writer.writerow([_cell(v) for v in row])
            f.flush()
            f.detach()  # atomic_output closes the file once it is on disk
        paths.append(path)
    return paths


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


# --- TensorBoard -------------------------------------------------------------------------------


def write_tensorboard(run: Run, folder: Path, all_layers: bool = False) -> Path:
    """One run's event file in ``folder`` (replacing event files an earlier export left there).
    Wall times are spread over the run's recorded duration (records carry steps, not times)."""
    from torch.utils.tensorboard import SummaryWriter

    for old in folder.glob(EVENTS_PREFIX + "*"):
        old.unlink()  # a link is removed, never followed
    # TensorBoard's writer names its own new file (host, time, pid) in a folder checked by
    # output_folder: the one writer outside initlab.runs (tests/test_writes.py).
    writer = SummaryWriter(log_dir=str(folder))
    start, seconds, steps = _timeline(run)
    for record in run.records:
        walltime = None if start is None else start + seconds * record["step"] / max(steps, 1)
        add_record(writer, record, run.layer_names, run.fan_ins, walltime, all_layers)
    if all_layers:
        add_layer_charts(writer, run)
    add_hparams(writer, run.config, run.summary)
    writer.close()
    return folder


def _timeline(run: Run) -> tuple[float | None, float, int]:
    import datetime

    try:
        start = datetime.datetime.fromisoformat(str(run.summary["started_at"])).timestamp()
    except (KeyError, ValueError):
        return None, 0.0, 0
    return start, float(run.summary.get("wall_seconds") or 0), int(run.summary.get("steps") or 0)


def add_record(writer: Any, record: dict[str, Any], layer_names: Sequence[str],
               fan_ins: np.ndarray, walltime: float | None = None,
               all_layers: bool = False) -> None:
    """One stats.jsonl record as scalars and histograms (see the module's docstring)."""
    step = int(record["step"])
    train = record["phase"] == "train"

    def scalar(tag: str, value: Any) -> None:
        if value is not None and math.isfinite(value):
            writer.add_scalar(tag, value, step, walltime=walltime)

    if train:
        scalar("loss/batch", record.get("loss"))
        scalar("error/batch", record.get("train_error"))
    else:
        scalar("loss/epoch", record.get("loss"))
        if record["phase"] != "init":
            scalar("error/train_epoch", record.get("train_error"))
    scalar("error/test", record.get("test_error"))
    prefix = "" if train else "probe/"
    for key, stat in LAYER_STATS.items():
        values = record.get(key)
        if not isinstance(values, list):
            continue
        shown = np.array([math.nan if v is None else v for v in values], dtype=float)
        tag = stat_tag(key)
        if stat.per_fan_in:
            shown = shown * fan_ins[: len(shown)]
        chosen = scalar_layers(len(layer_names), all_layers)
        for i, (name, value) in enumerate(zip(layer_names, shown, strict=False)):
            if i + 1 in chosen:
                scalar(f"{prefix}{tag}/{name}", float(value))
        finite = shown[np.isfinite(shown)]
        if len(finite):
            writer.add_histogram(f"{prefix}{tag}", finite, step, walltime=walltime)


def stat_tag(key: str) -> str:
    return f"n_{key}" if LAYER_STATS[key].per_fan_in else key


def add_layer_charts(writer: Any, run: Run) -> None:
    """The Custom Scalars layout of every layer's scalars: per statistic (and its probe
    measurement), one chart per block of ``LAYERS_PER_CHART`` layers, a line per layer."""
    import re

    names = run.layer_names
    blocks = [range(i, min(i + LAYERS_PER_CHART, len(names)))
              for i in range(0, len(names), LAYERS_PER_CHART)]
    layout: dict[str, dict[str, list]] = {}
    for prefix, phases in (("", ("train",)), ("probe/", PROBE_PHASES)):
        for key in LAYER_STATS:
            if key not in run.layers or not np.isin(run.phase, phases).any():
                continue
            tag = f"{prefix}{stat_tag(key)}"
            charts = {}
            for block in blocks:
                title = (f"{tag}: layers {names[block[0]]}-{names[block[-1]]}" if len(block) > 1
                         else f"{tag}: layer {names[block[0]]}")
                pattern = "|".join(re.escape(names[i]) for i in block)
                charts[title] = ["Multiline", [f"^{re.escape(tag)}/({pattern})$"]]
            layout[tag] = charts
    if layout:
        writer.add_custom_scalars(layout)


class TensorBoardRunWriter(RunWriter):
    """A run directory that also gets TensorBoard event files, written as records are
    appended (``initlab run --tensorboard``): ``tensorboard --logdir runs`` shows the run
    while it trains. A resumed run drops the events past its checkpoint, as its records."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._events: Any = None
        self._layers: tuple[list[str], np.ndarray] | None = None

    def _writer(self, first_step: int) -> Any:
        if self._events is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resume rewrites the steps after its checkpoint; TensorBoard then
            # hides the events an interrupted run wrote past it.
            self._events = SummaryWriter(log_dir=str(self.path), purge_step=first_step or None)
        return self._events

    def _layer_info(self) -> tuple[list[str], np.ndarray]:
        if self._layers is None:
            config = read_run_config(self.path)
            shape = Run(self.path, config, {}, [])
            self._layers = (shape.layer_names, shape.fan_ins)
        return self._layers

    def append_stats(self, records: list[dict[str, Any]]) -> None:
        super().append_stats(records)
        if not records:
            return
        writer = self._writer(int(records[0]["step"]))
        names, fan_ins = self._layer_info()
        for record in records:
            add_record(writer, record, names, fan_ins)
        writer.flush()

    def write_summary(self, summary: dict[str, Any]) -> None:
        super().write_summary(summary)
        if summary.get("status") in (*FINISHED, "interrupted") and self._events is not None:
            add_hparams(self._events, read_run_config(self.path), summary)
            self._events.close()
            self._events = None


def tensorboard_writer(path: Path) -> RunWriter:
    """The writer factory of ``initlab run --tensorboard``."""
    return TensorBoardRunWriter(path)
