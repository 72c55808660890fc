"""Browsing runs: ``initlab ls`` (a table of the runs in a directory) and ``initlab compare``
(config differences and summaries side by side). Reads run directories only."""

from __future__ import annotations

import datetime
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from initlab.describe import (
    differences_from_defaults,
    flat_config,
    format_value,
    plural,
    settings_text,
    training_text,
    varying,
)
from initlab.errors import UsageError, bounded, printable
from initlab.progress import TextConsole
from initlab.runs import Run, command_path, find_runs, load_run, nested_run_dirs
from initlab.wording import how_it_ended, percent

Log = Callable[[str], None]


def error_text(run: Run) -> str:
    """The final test error, or what stands in for it ("—" for a diverged run, whose status
    says where it diverged)."""
    err = run.final_test_error
    return "—" if math.isnan(err) else percent(err)


def status_text(run: Run) -> str:
    if run.status == "stopped":  # its writer died (kill -9): it is not running
        return f"stopped at step {run.reached} (its process ended)"
    if run.status == "running":  # a process holds its lock: it is being written now
        return f"running (step {run.reached} so far)"
    return how_it_ended(run.summary)


def started_text(started: float) -> str:
    """``12-02 01:08``: the day and time (the year is in summary.json), short for 80 columns."""
    return datetime.datetime.fromtimestamp(started).strftime("%m-%d %H:%M") if started else ""


LIST_COLUMNS = (("run", "left"), ("status", "left"), ("epochs", "right"), ("test err", "right"),
                ("started", "left"), ("differs from the defaults", "left"))


LIST_WIDTH = 100  # `initlab ls` is never wider, in a wide terminal, a pipe or a file


def list_table(directory: Path, log: Log, width: int | None = None) -> RenderableType:
    """One row per run (a sweep: one per member), oldest first. Narrower than the table
    (``width``, e.g. an 80-column terminal; at most ``LIST_WIDTH``), each run is a line of its
    status, epochs, test error and start, and an indented line of what differs from the
    defaults (a line still too long folds)."""
    width = LIST_WIDTH if width is None else min(width, LIST_WIDTH)
    table = _list_table(directory, log)
    if TextConsole(width=10_000).measure(table).maximum <= width:
        return table
    rows = [[str(cell) for cell in cells] for cells in zip(
        *(column.cells for column in table.columns), strict=True)]
    heads = [name for name, _ in LIST_COLUMNS[:-1]]
    sizes = [max(len(x) for x in [head, *(row[i] for row in rows)])
             for i, head in enumerate(heads)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(size) if LIST_COLUMNS[i][1] == "right" else cell.ljust(size)
                         for i, (cell, size) in enumerate(zip(cells, sizes, strict=False)))

    lines = [f"runs in {directory}", line(heads).rstrip(), "    (differs from the defaults)"]
    for row in rows:
        lines += textwrap.wrap(line(row[:-1]).rstrip(), width=max(width, 20),
                               subsequent_indent="  ", replace_whitespace=False,
                               drop_whitespace=False) or [""]
        lines += textwrap.wrap(row[-1], width=max(width, 20), initial_indent="    ",
                               subsequent_indent="    ") if row[-1] else []
    return Text(printable("\n".join(lines)))  # a name or value never moves the cursor


def _list_table(directory: Path, log: Log) -> Table:
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory of runs" if not directory.exists()
                         else f"{directory}: is a file, expected a directory of runs")
    entries = find_runs(directory)
    # No box and the long column last: a run is one line wherever it fits, at 80 columns too.
    table = Table(title=f"runs in {directory}", title_justify="left", show_lines=False,
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column, justify in LIST_COLUMNS:
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for entry in entries:
        for member in entry.members:
            name = f"{entry.path.name}/{member.name}" if entry.is_sweep else member.name
            name = bounded(name, 300)  # a newline in a name must not look like two runs
            try:
                run = load_run(member, records=False)
            except UsageError as err:
                table.add_row(name, "unreadable", "", "", "", bounded(str(err), 100))
                continue
            differs = (settings_text(differences_from_defaults(run)) if run.kind == "mlp"
                       else f"watched: {training_text(run)}")
            table.add_row(name, status_text(run), str(run.summary.get("epochs", "")),
                          error_text(run), started_text(entry.started), differs)
    if not entries:
        log(f"no runs in {directory} (train one: initlab run configs/kaiming.yaml)")
    for path, count in nested_run_dirs(directory):
        log(f"also {plural(count, 'run')} in {bounded(str(path), 300)}: "
            f"initlab ls {command_path(path)}")
    return table


SUMMARY_ROWS = (
    ("status", lambda r: status_text(r)),
    ("epochs", lambda r: str(r.summary.get("epochs", ""))),
    ("steps", lambda r: str(r.summary.get("steps", ""))),
    ("final test error", error_text),
    ("target reached at epoch", lambda r: format_value(r.summary.get("reached_target_epoch"))),
    ("wall time", lambda r: f"{float(r.summary.get('wall_seconds') or 0):.1f} s"),
    ("device, threads", lambda r: f"{r.summary.get('device')}, " + (
        plural(r.summary["threads"], "thread") if type(r.summary.get("threads")) is int
        else f"{r.summary.get('threads')} threads")),
    ("trained together with", lambda r: plural(r.members - 1, "other member")),
    ("initlab", lambda r: f"{r.summary.get('initlab_version') or '?'} "
                          f"({str(r.summary.get('git_commit') or 'no git commit')[:10]})"),
    ("torch", lambda r: str(r.summary.get("torch_version") or "?")),
    ("started", lambda r: str(r.summary.get("started_at") or "?")),
)


def compare_tables(runs: Sequence[Run]) -> list[Table]:
    """What differs between the runs' configs (and what they share that is not a default),
    then their summaries, one column per run."""
    names = [r.display_name for r in runs]
    keys = varying(runs)
    config = Table(title="config: what differs between them", title_justify="left")
    config.add_column("key")
    for name in names:
        config.add_column(bounded(name, 40), overflow="fold")
    flats = [flat_config(r.config) for r in runs]
    for key in keys:
        config.add_row(key, *(format_value(flat.get(key, "—")) for flat in flats))
    if not keys:
        config.add_row("(nothing: the same config)", *("" for _ in runs))
    shared = {k: v for k, v in differences_from_defaults(runs[0]).items() if k not in keys}
    if shared:
        config.caption = f"shared, not the defaults: {settings_text(shared)}"
        config.caption_justify = "left"
    summary = Table(title="summary", title_justify="left")
    summary.add_column("")
    for name in names:
        summary.add_column(bounded(name, 40), overflow="fold")
    for label, value in SUMMARY_ROWS:
        summary.add_row(label, *(value(r) for r in runs))
    return [config, summary]

