"""``run`` and ``compare``: the command line's ``initlab run`` and ``initlab compare`` for Python
(a notebook, a script), returning runs rather than printing paths. (Not imported by ``import
initlab``: it trains, so it imports torch and the training modules.)

    from initlab.api import compare, run

    runs = run("sweep-c", "train.epochs=1")                        # a sweep: its members
    runs = run("kaiming", "init.c=1,2,3", sweep=True)              # a sweep from overrides
    print(compare(runs))                                           # the tables, as text
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from initlab.runs import Run, load_run


def run(config: str | Path, *overrides: str, out: str | Path = "runs", sweep: bool = False,
        threads: int | None = None, data_root: str | None = None) -> list[Run]:
    """Train a config (a file or a starter's name) with ``KEY=VALUE`` overrides, as ``initlab
    run CONFIG KEY=VALUE ...`` does (``sweep``: ``KEY=A,B`` sweeps, as ``-m``); the runs it
    wrote, loaded (one per member of a sweep)."""
    from initlab.experiment import run_experiment
    from initlab.jobs import torch_threads
    from initlab.overrides import command_line_sweep, load

    plain, swept = command_line_sweep(overrides, sweep)
    with torch_threads(threads):
        outcomes = run_experiment(load(config, plain, swept), Path(out), data_root)
    return [load_run(o.path) for o in outcomes]


def compare(runs: Sequence[Run], width: int = 100) -> str:
    """What ``initlab compare`` prints: the config differences and the summaries side by
    side, as plain text."""
    from initlab.browse import compare_tables
    from initlab.progress import TextConsole

    text = io.StringIO()
    console = TextConsole(file=text, width=width, color_system=None)  # text, never markup
    for table in compare_tables(runs):
        console.print(table)
    return text.getvalue()
