"""Figure trained-variance: the lecture's network trained with SGD until 5% test error for
c = 1.7, 2, 2.3; its per-layer norms and n·Var(W_i) at init and after training
(configs/trained-variance.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    TARGET,
    Figure,
    FigureInput,
    c_label,
    c_of,
    epochs_note,
    layer_axis,
    median,
    new_figure,
    plot_layers,
    reached_note,
    stat,
    training_setup,
)
from initlab.report import Claim

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "trained-variance"


def plot(inp: FigureInput) -> MplFigure:
    runs = inp.runs(STEM)
    fig, axes = new_figure(inp, f"Trained with {training_setup(runs[0])} until {TARGET:.0%} "
                           f"test error — dashed: init, solid: trained\n{reached_note(runs)}", 3)
    for ax, key in zip(axes[0], ("act_norm", "grad_norm", "weight_var"), strict=True):
        for run in runs:
            plot_layers(ax, run, key, "init", linestyle="--", alpha=0.8)
            plot_layers(ax, run, key, "final", label=c_label(run))
        layer_axis(ax, key)
    axes[0][0].legend(fontsize=8)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    runs = inp.runs(STEM)
    found = [Claim(inp.name, f"c = {c_of(run):g} reaches {TARGET:.0%} test error "
                   f"({training_setup(run)}; {epochs_note(run)})", run.final_test_error, "<=",
                   TARGET, unit="%")
             for run in runs]
    for run in runs:
        init, final = stat(run, "weight_var", "init"), stat(run, "weight_var", "final")
        found.append(Claim(inp.name, f"c = {c_of(run):g}: n·Var(W_i) after training vs at "
                           "init, |ratio − 1| at the median layer",
                           median(np.abs(final / init - 1.0)), "<", 0.05, unit="%"))
    return found


FIGURE = Figure(
    "trained-variance",
    "Trained with SGD to 5% test error, c = 1.7, 2.0, 2.3 all train; the norms keep the shape "
    "they had at init, and n·Var(W_i) barely changes.",
    (STEM,), plot, claims)
