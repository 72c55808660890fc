"""Figure small-batch: test error after a fixed data budget against the per-worker batch size b
(one process, so the batch is train.batch_size) for no normalization, batch, group and layer
norm (Wu & He 2018, figure 1, on MNIST; configs/small-batch.yaml).

The recipe expands the config once per b, with the learning rate scaled linearly with the batch;
its members train on one CPU thread each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    CONFIG_DIR,
    REFERENCE_BATCH,
    RISE_PP,
    Figure,
    FigureInput,
    Mode,
    RunSet,
    mean,
    nonempty_lines,
    setup_text,
)
from initlab.palette import norm_color
from initlab.report import Claim, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "small-batch"
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128)
NORM_LABELS = {"none": "none", "batch": "batch norm", "group": "group norm",
               "layer": "layer norm"}
# A step's tensors are tiny (b <= 128 rows of width 100), so intra-op threads only add
# synchronization; on a busy 2-core machine their spinning made this recipe 13x slower (185 s
# against 14 s for --quick, same numbers).
THREADS = 1

WU_HE = paper("Wu & He, “Group Normalization”, ECCV 2018, figure 1", "batch norm's error "
              "rises sharply when the batch per worker is small; group norm, which uses no "
              "batch statistics, is flat in the batch size")

ErrorTable = dict[str, dict[int, list[float]]]  # norm -> batch size -> each seed's test error


def scaled_lr(lr_at_reference: float, batch: int) -> float:
    """The linear scaling rule: the learning rate grows with the batch."""
    return lr_at_reference * batch / REFERENCE_BATCH


def recipe(stem: str, mode: Mode) -> RunSet:
    """The config's sweep (seeds × norms) once per batch size b, with lr = lr(128) · b / 128."""
    source = CONFIG_DIR / f"{stem}.yaml"
    base = mode.load(source)
    configs = [member.config
               for b in BATCH_SIZES
               for member in mode.load(source, (f"name={base.name}-b{b}",
                                                f"train.batch_size={b}",
                                                f"train.lr={scaled_lr(base.base.train.lr, b)!r}")
                                       ).members]
    return RunSet(stem, tuple(configs), threads=THREADS)


def error_table(runs: Sequence[Run]) -> ErrorTable:
    table: ErrorTable = {}
    for run in runs:
        norm, b = run.config["model"]["norm"], run.config["train"]["batch_size"]
        table.setdefault(norm, {}).setdefault(b, []).append(run.final_test_error)
    return table


def mean_error(errors: dict[int, list[float]], b: int) -> float:
    return mean(errors.get(b, []))


def rise_at_smallest(errors: dict[int, list[float]]) -> float:
    """Mean error at the smallest batch minus the lowest mean error over all batches."""
    if not errors:
        return float("nan")
    means = {b: mean_error(errors, b) for b in errors}
    return means[min(means)] - float(np.min(list(means.values())))


def plot(inp: FigureInput) -> MplFigure:
    """Test error against per-worker batch size, one line per normalization (seed means; each
    seed a dot), log-log axes."""
    from initlab.plot import use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    runs = inp.runs(STEM)
    table = error_table(runs)
    reference = max(runs, key=lambda r: r.config["train"]["batch_size"])
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for norm in ("none", "batch", "group", "layer"):
        errors = table.get(norm, {})
        bs = sorted(errors)
        label = NORM_LABELS[norm]
        if norm == "group":
            label += f" ({reference.config['model']['groups']} groups)"
        line, = ax.plot(bs, [100 * mean_error(errors, b) for b in bs], "o-", label=label,
                        color=norm_color(norm))
        for b in bs:
            ax.plot([b] * len(errors[b]), [100 * e for e in errors[b]], ".",
                    color=line.get_color(), alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(BATCH_SIZES), [str(b) for b in BATCH_SIZES])
    ax.set_yticks([5, 10, 20, 50, 100], ["5", "10", "20", "50", "100"])
    ax.set_xlabel("per-worker batch size b (one worker)")
    ax.set_ylabel("test error (%)")
    seeds = max(len(v) for errors in table.values() for v in errors.values())
    ax.set_title(nonempty_lines(inp.banner, f"Test error vs batch size, mean of {seeds} seeds "
                             f"(dots: each seed)", setup_text(reference)), fontsize=8)
    t, d = reference.config["train"], reference.config["data"]
    # Two lines: as one, the note ran past both edges of the 7.5-inch figure.
    fig.text(0.01, 0.01, nonempty_lines(
        f"Every b sees the same {t['epochs']} × {d['train_subset']} examples, in "
        f"{t['epochs']} × {d['train_subset']}/b steps "
        f"({t['epochs'] * d['train_subset'] // t['batch_size']} at b = {t['batch_size']}).",
        "At b = 2 an MLP's batch norm maps each feature's 2 values to exactly ±1 (a conv net's "
        "normalizes over 2·H·W values): an extreme case."), fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))  # the note's two lines below the axes
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    table = error_table(inp.runs(STEM))
    bn, gn = table.get("batch", {}), table.get("group", {})
    smallest = min(BATCH_SIZES)
    return [
        Claim(inp.name, f"BN's test error rises at small batch: error at b = {smallest} minus "
              "its lowest over b", rise_at_smallest(bn), ">=", RISE_PP, "pp",
              WU_HE),
        Claim(inp.name, f"GN's test error stays level at small batch: error at b = {smallest} "
              f"minus its lowest over b", rise_at_smallest(gn), "<=", RISE_PP, "pp", WU_HE),
        Claim(inp.name, f"at b = {smallest}, GN's test error is below BN's: BN − GN",
              mean_error(bn, smallest) - mean_error(gn, smallest), ">=", RISE_PP, "pp",
              WU_HE),
    ]


FIGURE = Figure(
    "small-batch",
    "Test error after the same data budget (2 epochs over 4,096 images, 10 layers × 100) as "
    "the batch size b falls from 128 to 2, for no normalization, batch, group and layer norm "
    "(Wu & He 2018's figure 1, on MNIST). Batch norm estimates each feature's mean and "
    "variance from the b examples of the batch: at b = 2 those estimates are mostly noise, "
    "and Wu & He found its error climbing steeply; group and layer norm normalize within "
    "each example and do not depend on b. At b = 2 this MLP is an extreme case, far beyond "
    "Wu & He's: their convolutional nets normalize each channel over N·H·W values (2 images "
    "× every position of the feature map), while an MLP's batch norm normalizes each feature "
    "over its 2 values only, which then become exactly −1 and +1 whatever the inputs were — "
    "the layer passes on only which of the two examples is larger, and the net collapses "
    "towards chance. The claims' point, that batch norm's error rises as b falls and group "
    "norm's does not, is already visible at b = 4 to 16.",
    (STEM,), plot, claims, recipe=recipe, plots_seeds=True,
    headline=(
        "Batch norm degrades when each worker sees few examples; group and layer norm do not "
        "(Wu & He, 2018). At b = 2 an MLP's batch norm maps each feature's two values to ±1: "
        "far more extreme than Wu & He's conv nets, which normalize over N·H·W values."),
    rows=3,
    seed_cap=10,
    order=170,
)
