"""Figure regularization: weight decay 0 vs 1e-4, and dropout 0.1, on the lecture's network,
each member trained the same epochs; test error, and the exact change of ‖W‖_F from the
checkpoints (configs/regularization.yaml)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from initlab.figures.core import (
    CONFIG_DIR,
    Figure,
    FigureInput,
    Mode,
    RunSet,
    cfg_value,
    legend_below,
    new_figure,
    read_measure,
    save_measure,
    status_mark,
    unmeasured,
)
from initlab.figures.inference import weight_norms
from initlab.palette import DROPOUT_COLOR, norm_color, sequence_color
from initlab.report import Claim, hypothesis, lecture
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "regularization"
DECAY = lecture("L2 regularization a.k.a. weight decay", "on the lecture's network, weight "
                "decay 1e-4 works slightly better than no weight decay")
SHRINKS = hypothesis("weight decay subtracts lr·λ·W every step, so the weights end smaller "
                     "than without it (true by construction: a check of the implementation)")



def variant_color(run: Run) -> str:
    """Dropout in its palette colour; weight decay 0 as the plain net, 1e-4 darker."""
    if cfg_value(run, "model.dropout"):
        return DROPOUT_COLOR
    return sequence_color(3) if cfg_value(run, "train.weight_decay") else norm_color("none")


def recipe(stem: str, mode: Mode) -> RunSet:
    """The config's sweep without dropout 0.1 together with weight decay 1e-4: no claim reads
    that cell (dropout is compared on its own, in the dropout figure)."""
    experiment = mode.load(CONFIG_DIR / f"{stem}.yaml")
    return RunSet(stem, tuple(m.config for m in experiment.members
                              if not (m.config.model.dropout > 0
                                      and m.config.train.weight_decay > 0)))


def measure(inp: FigureInput, data_root: str | None) -> None:
    for run, target in unmeasured(inp, STEM):
        save_measure(target, weight_norms(run))


def label(run: Run) -> str:
    wd, p = cfg_value(run, "train.weight_decay"), cfg_value(run, "model.dropout")
    return f"weight decay {wd:g}, dropout {p:g}{status_mark(run)}"


def plot(inp: FigureInput) -> MplFigure:
    import matplotlib as mpl

    runs = inp.runs(STEM)
    lr, epochs = cfg_value(runs[0], "train.lr"), cfg_value(runs[0], "train.epochs")
    fig, axes = new_figure(inp, f"Weight decay and dropout (c = 2, SGD lr {lr:g}, every member "
                           f"{epochs} epochs)", 2)
    ax = axes[0][0]
    for run in runs:
        evals = [i for i, p in enumerate(run.phase) if p in ("init", "epoch")]
        ax.plot(run.epoch[evals], 100 * run.test_error[evals], "o-", markersize=3,
                color=variant_color(run),
                label=f"{label(run)}: {run.final_test_error:.2%}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    n_test = cfg_value(runs[0], "data.test_subset") or 10_000
    ax.set_title(f"test error on {n_test:,} test images (final value in the legend)", fontsize=9)
    legend_below(ax, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[0][1]
    for n, run in enumerate(runs):
        m = read_measure(run, inp.name) or {}
        change = 100 * (m.get("weight_norm_final", math.nan) / m.get("weight_norm_init", math.nan)
                        - 1)
        ax.bar(n, change, color=variant_color(run), label=label(run))
        ax.annotate(f"{change:+.2g}%", (n, change), ha="center",
                    va="bottom" if change >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([f"wd {cfg_value(r, 'train.weight_decay'):g}\n"
                        f"dropout {cfg_value(r, 'model.dropout'):g}" for r in runs], fontsize=8)
    ax.set_ylabel("change of ‖W‖_F during training (%)")
    initial = (read_measure(runs[0], inp.name) or {}).get("weight_norm_init", math.nan)
    ax.set_title("‖W‖_F over all 50 weight matrices, exact (from the checkpoints):\n"
                 f"change during training, from {initial:.4g} at init", fontsize=9)
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    runs = inp.runs(STEM)

    def pick(wd: float, p: float) -> Run | None:
        return next((r for r in runs if cfg_value(r, "train.weight_decay") == wd
                     and cfg_value(r, "model.dropout") == p), None)

    def final_error(run: Run | None) -> float:
        return math.nan if run is None else run.final_test_error

    def final_norm(run: Run | None) -> float:
        measured = read_measure(run, inp.name) if run is not None else None
        return (measured or {}).get("weight_norm_final", math.nan)

    base, decayed = pick(0.0, 0.0), pick(1e-4, 0.0)
    epochs = base.summary.get("epochs") if base is not None else "?"
    return [
        Claim(inp.name, f"weight decay 1e-4 lowers the test error (dropout 0, {epochs} epochs "
              "each, same seed): error with − without", final_error(decayed)
              - final_error(base), "<", 0.0, unit="pp", source=DECAY,
              if_fails="this budget cannot resolve the lecture's “slightly better”: after "
              "these epochs the nets are far from trained and the paired differences spread "
              "over ±17 pp between seeds (the last full run), against the fraction of a pp "
              "the statement is about; 1e-4 shrinks ‖W‖_F by a fraction of a percent (the "
              "check below). Resolving 0.5 pp needs nets trained to the lecture's 5% (as "
              "trained-variance trains them), not affordable twice more in the suite"),
        Claim(inp.name, "weight decay 1e-4 shrinks the weights: 1 − final ‖W‖_F with / "
              "without (dropout 0)", 1.0 - final_norm(decayed) / final_norm(base), ">", 0.0,
              source=SHRINKS, check=True),
    ]


FIGURE = Figure(
    "regularization",
    "The lecture's network (c = 2, SGD lr 0.01, 2 epochs) with weight decay 0 or 1e-4, and "
    "with dropout 0.1 after each of the 49 hidden layers. The lecture finds weight decay "
    "1e-4 slightly better than none. Dropout is shown for comparison only: this "
    "50-layer net is not in the regime the lecture's dropout claim is about (an "
    "over-parameterized net that overfits), and 49 dropout layers are expected to drown the "
    "signal rather than regularize — the dropout figure shows both.",
    (STEM,), plot, claims, measure, recipe=recipe,
    headline=(
        "On the lecture's net, weight decay 1e-4 works slightly better than none (lecture)."),
    rows=2,
    seed_cap=10,
    order=130,
)
