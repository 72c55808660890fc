"""Figure weights-move-little: how far each weight matrix moves from its initialization over
training to 5% test error, epoch by epoch (the runs of trained-variance)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    TARGET,
    Figure,
    FigureInput,
    c_label,
    c_of,
    layer_axis,
    median,
    new_figure,
    reached_note,
    stat,
    training_setup,
    worst,
)
from initlab.report import Claim, hypothesis, lecture
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "trained-variance"
MOVES_LITTLE = 0.2  # the claim's bound on the relative change
EVERY_LAYER = hypothesis(f"initlab's strict reading of “the weights stay close to their "
                         f"initialization”: every one of the 50 matrices moves less than "
                         f"{MOVES_LITTLE:g} of its norm, the worst included")


def plot(inp: FigureInput) -> MplFigure:
    import matplotlib as mpl

    runs = inp.runs(STEM)
    fig, axes = new_figure(inp, "Relative weight change per layer over training "
                           f"({training_setup(runs[0])}, until {TARGET:.0%} test error)\n"
                           f"{reached_note(runs)}", len(runs), sharey=True)
    cmap = mpl.colormaps["viridis"]
    for ax, run in zip(axes[0], runs, strict=True):
        epochs = [i for i, p in enumerate(run.phase) if p == "epoch"]
        for n, index in enumerate(epochs):
            values = run.layers["weight_rel_change"][index]
            last = n == len(epochs) - 1
            ax.plot(np.arange(1, len(values) + 1), values,
                    color=cmap(n / max(len(epochs) - 1, 1)), linewidth=2.2 if last else 1.0,
                    label=f"epoch {int(run.epoch[index])}" if last or n == 0 else None)
        final = stat(run, "weight_rel_change", "final")
        ax.set_title(f"{c_label(run)}, {run.final_test_error:.1%} test error\n"
                     f"median over layers after training: {median(final):.3g}", fontsize=9)
        ax.axhline(MOVES_LITTLE, color="black", linestyle="--", linewidth=1,
                   label=f"{MOVES_LITTLE:g} (claim)")
        layer_axis(ax, "weight_rel_change")
        ax.legend(fontsize=8, title="colour: epoch", title_fontsize=8)
    return fig


CLOSE = lecture("", "the weights end close to where they started (the nets trained from "
                "c = 1.7, 2, 2.3); implicit regularization: SGD started from a given "
                "initialization ends near it, which restricts the nets it can reach (the bound "
                f"{MOVES_LITTLE:g} on the relative change of all the weights together is "
                "initlab's reading of 'close')")


def whole_change(run: Run) -> float:
    """‖θ − θ⁽⁰⁾‖ / ‖θ⁽⁰⁾‖ over every weight matrix at once, from the per-layer changes and
    initial norms."""
    moved = stat(run, "weight_rel_change", "final") * stat(run, "weight_norm", "init")
    return float(np.sqrt((moved ** 2).sum() / (stat(run, "weight_norm", "init") ** 2).sum()))


def claims(inp: FigureInput) -> list[Claim]:
    found = [Claim(inp.name, f"c = {c_of(r):g}: relative weight change ‖W_i − W_i⁽⁰⁾‖/"
                   "‖W_i⁽⁰⁾‖ after training, worst layer of 50",
                   worst(stat(r, "weight_rel_change", "final")), "<", MOVES_LITTLE,
                   source=EVERY_LAYER, if_fails="most layers move little (the median layer moves "
                   "a few percent, the plot), the first and last do not: the input layer "
                   "sees 784 pixels and the output layer the loss directly, so their "
                   "gradients are largest relative to their weights")
             for r in inp.runs(STEM)]
    found += [Claim(inp.name, f"c = {c_of(r):g}: SGD ends near its initialization: "
                    "‖θ − θ⁽⁰⁾‖/‖θ⁽⁰⁾‖ over all weight matrices together", whole_change(r),
                    "<", MOVES_LITTLE, source=CLOSE)
              for r in inp.runs(STEM)]
    return found


FIGURE = Figure(
    "weights-move-little",
    "For the runs of trained-variance, how far each weight matrix W_i has moved from its "
    "initial value, relative to its initial norm, after every epoch (colour: epoch). The "
    "lecture's point is that this stays small: training ends near the initialization, so "
    "whatever the initial scale did to the activations and gradients stays with the trained "
    "network — which is why the initialization matters so much.",
    (STEM,), plot, claims,
    headline=(
        "Weights move little from their initialization, and SGD ends near its "
        "initialization: implicit regularization (lecture 9)."),
    rows=6,
    seed_cap=10,
    order=50,
)
