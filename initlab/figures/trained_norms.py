"""Figure trained-norms: per-layer norms after training, without normalization (the runs of
trained-variance) and with layer or batch norm (configs/trained-layernorm.yaml,
configs/trained-batchnorm.yaml): which effects of the initial scale c persist."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    agreement,
    c_label,
    layer_axis,
    new_figure,
    plot_layers,
    reached_note,
    span,
    stat,
    training_setup,
)
from initlab.report import Claim, hypothesis, lecture

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

# The norm of each column, and the config stem of its runs.
NORM_STEMS = (("none", "trained-variance"), ("layer", "trained-layernorm"),
              ("batch", "trained-batchnorm"))


def plot(inp: FigureInput) -> MplFigure:
    fig, axes = new_figure(inp, "After training, per layer (solid; dashed: at init): which "
                           "effects of the initial scale c persist", 3, nrows=2,
                           size=(5.2, 3.6), sharey="row")
    for col, (norm, stem) in enumerate(NORM_STEMS):
        runs = inp.runs(stem)
        for row, key in enumerate(("act_norm", "grad_norm")):
            ax = axes[row][col]
            for run in runs:
                plot_layers(ax, run, key, "init", linestyle="--", alpha=0.5)
                plot_layers(ax, run, key, "final",
                            label=f"{c_label(run)}: {run.final_test_error:.1%} test error")
            layer_axis(ax, key)
            if row == 0:
                ax.set_title(f"norm: {norm} — {training_setup(runs[0])}\n"
                             f"{reached_note(runs)}", fontsize=8)
                ax.legend(fontsize=7)
    return fig


SIMILAR = lecture("Normalization", "after training, the activation norms of the nets "
                  "initialized with c = 1.7, 2 and 2.3 become quite similar (the later layers "
                  "a bit larger, the c = 1.7 line a bit lower)")
SIMILAR_WITHIN = 2.0  # "quite similar" next to three decades apart at init; fixed before


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    plain = inp.runs(NORM_STEMS[0][1])
    end = {phase: np.array([stat(r, "act_norm", phase)[-1] for r in plain])
           for phase in ("init", "final")}
    found = [Claim(f, "no normalization: after training, ‖Z_50‖ of c = 1.7, 2.0, 2.3 become "
                   "quite similar: max/min (three decades at init)", span(end["final"]), "<",
                   SIMILAR_WITHIN, source=SIMILAR,
                   if_fails="training to 5% reshapes the activations less than the lecture's "
                   "nets: c's imprint from init persists at layer 50")]
    # Each layer's output is normalized whatever the weights: true by construction, a check.
    agree = hypothesis("normalization removes c from the forward pass exactly at init, and "
                       "keeps each layer's output normalized whatever the weights become")
    for norm, stem in NORM_STEMS[1:]:
        runs = inp.runs(stem)
        found.append(Claim(f, f"{norm} norm: after training, activation norms for c = 1.7, "
                           "2.0, 2.3 agree within 10% at every layer (largest max/min − 1)",
                           agreement([stat(r, "act_norm", "final") for r in runs]), "<", 0.10,
                           unit="%", source=agree, check=True))
    return found


FIGURE = Figure(
    "trained-norms",
    "The per-layer activation and gradient norms after training (solid; dashed: at init) for "
    "c = 1.7, 2, 2.3, without normalization (plain SGD until 5%), with layer norm and with "
    "batch norm (Adam, 2 epochs over 30,000 images; SGD does not train them). Without "
    "normalization the curves are three decades apart at layer 50 at init; lecture 9 says "
    "they end quite similar: training reshapes the activations although the weights move "
    "little (small, coordinated changes over 50 layers compound). The "
    "normalized nets' curves agree across c, as at init; they train far more slowly than the "
    "plain net (normalized-training and normalized-gradients say why).",
    tuple(stem for _, stem in NORM_STEMS), plot, claims,
    headline=(
        "After training, the activation norms of the nets from c = 1.7, 2, 2.3 become quite "
        "similar (lecture 9); with layer or batch norm they agree across c (initlab's "
        "hypotheses)."),
    rows=3,
    seed_cap=10,
    order=120,
)
