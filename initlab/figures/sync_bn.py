"""Figure sync-bn: batch norm when each of 4 workers sees 4 examples, against synchronized batch
norm (statistics over all 16) and group norm (none): test error and wall time per epoch
(configs/sync-bn.yaml). Its runs train the way a user trains them, through ``initlab run
--nproc 4 --split batches``: 4 gloo processes on this machine, one CPU thread each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    CONFIG_DIR,
    RISE_PP,
    Figure,
    FigureInput,
    Launch,
    Mode,
    RunSet,
    mean,
    nonempty_lines,
    setup_text,
)
from initlab.palette import norm_color
from initlab.report import GROUP_NORM_VIDEO, SHARED, Claim, lecture, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "sync-bn"
WORKERS = 4
SLOWER = 1.1  # "at a communication cost": at least 10% more time per epoch, fixed beforehand
SYNC = paper("Peng et al., “MegDet: A Large Mini-Batch Object Detector”, CVPR 2018 "
             "(cross-GPU batch norm)", "computing the batch statistics over every worker's "
             "examples restores batch norm when each worker holds only a few")
COST = lecture("", "synchronizing the batch statistics across workers is slow (an all-reduce "
               "per normalized layer and step); group norm needs none", GROUP_NORM_VIDEO)


def recipe(stem: str, mode: Mode) -> RunSet:
    """The config's members, trained by one launch of WORKERS processes splitting every batch."""
    source = CONFIG_DIR / f"{stem}.yaml"
    settings = mode.settings(source)
    configs = tuple(member.config for member in mode.load(source).members)
    # The file this mode reads (seeds shifted by --seed-offset): the launch trains from it.
    return RunSet(stem, configs, launch=Launch(WORKERS, mode.source(source), settings))


@dataclass
class Row:
    """One normalization: each seed's test error and wall seconds per epoch (a group's members
    share one wall clock)."""

    errors: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def error(self) -> float:
        return mean(self.errors)

    @property
    def epoch_seconds(self) -> float:
        return mean(self.seconds)


def table(runs: Sequence[Run]) -> dict[str, Row]:
    """norm -> its row."""
    rows: dict[str, Row] = {}
    for run in runs:
        row = rows.setdefault(run.config["model"]["norm"], Row())
        row.errors.append(run.final_test_error)
        epochs = run.summary.get("epochs") or float("nan")
        row.seconds.append(run.summary.get("wall_seconds", float("nan")) / epochs)
    return rows


def plot(inp: FigureInput) -> MplFigure:
    """Two panels over BN, SyncBN, GN: test error (bars: seed mean; dots: seeds) and wall
    seconds per epoch."""
    from initlab.plot import use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    runs = inp.runs(STEM)
    rows = table(runs)
    per_worker = runs[0].config["train"]["batch_size"] // WORKERS
    norms = [n for n in ("batch", "syncbatch", "group") if n in rows]
    labels = [{"batch": f"BN\n(per worker, {per_worker})",
               "syncbatch": f"SyncBN\n(all {per_worker * WORKERS})",
               "group": f"GN\n({runs[0].config['model']['groups']} groups)"}[n] for n in norms]
    fig, (err_ax, time_ax) = plt.subplots(1, 2, figsize=(9, 4.8))
    x = np.arange(len(norms))
    colors = [norm_color(n) for n in norms]
    err_ax.bar(x, [100 * rows[n].error for n in norms], color=colors, alpha=0.7)
    for i, n in enumerate(norms):
        err_ax.plot([i] * len(rows[n].errors), [100 * e for e in rows[n].errors], "k.")
    err_ax.set_ylabel("test error (%)")
    err_ax.set_title("test error (bars: seed mean, dots: seeds)", fontsize=9)
    seconds = [rows[n].epoch_seconds for n in norms]
    bars = time_ax.bar(x, seconds, color=colors, alpha=0.7)
    time_ax.bar_label(bars, [f"{v:.1f} s" for v in seconds], fontsize=8)
    time_ax.set_ylabel("wall seconds per epoch (incl. test-set evaluations)")
    time_ax.set_title(f"time per epoch: {WORKERS} gloo processes on one machine", fontsize=9)
    for ax in (err_ax, time_ax):
        ax.set_xticks(x, labels)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(nonempty_lines(inp.banner, setup_text(runs[0], per_worker=per_worker)),
                 fontsize=8)
    fig.tight_layout()
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    rows = table(inp.runs(STEM))
    bn, sync, gn = (rows.get(n, Row()) for n in ("batch", "syncbatch", "group"))
    return [
        Claim(inp.name, "synchronizing the batch statistics fixes BN at 4 per worker: "
              "test error BN − SyncBN", bn.error - sync.error, ">=", RISE_PP, "pp", SYNC),
        # The seeds of one norm train as one group: they share its wall clock.
        Claim(inp.name, "at a communication cost: wall time per epoch SyncBN / BN",
              sync.epoch_seconds / bn.epoch_seconds, ">=", SLOWER, source=COST,
              method=SHARED),
        Claim(inp.name, "GN needs no batch statistics: test error BN − GN at 4 per worker",
              bn.error - gn.error, ">=", RISE_PP, "pp",
              paper("Wu & He, “Group Normalization”, ECCV 2018", "group norm is "
                    "independent of the batch, so a small per-worker batch does not hurt it")),
        Claim(inp.name, "nor any communication: wall time per epoch GN / SyncBN",
              gn.epoch_seconds / sync.epoch_seconds, "<", 1.0, source=COST, method=SHARED),
    ]


FIGURE = Figure(
    "sync-bn",
    "Four worker processes each see 4 examples of every batch of 16 (10 layers × 100, 1 "
    "epoch over 4,096 images). Plain batch norm normalizes over each worker's 4 examples; "
    "synchronized batch norm all-reduces the batch statistics over the 16, which should "
    "restore it at the price of communication in every step (right: time per epoch); group "
    "norm needs no batch statistics, so neither problem should arise.",
    (STEM,), plot, claims, recipe=recipe, plots_seeds=True,
    headline=(
        "Synchronizing batch statistics across workers fixes BN, at a communication cost."),
    rows=4,
    seed_cap=10,
    order=180,
)
