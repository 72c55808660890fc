"""Figure trained-norms: per-layer norms after training, without normalization (the runs of
trained-variance) and with layer or batch norm (configs/trained-layernorm.yaml,
configs/trained-batchnorm.yaml): which effects of the initial scale c persist."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    TARGET,
    Figure,
    FigureInput,
    agreement,
    c_label,
    c_of,
    epochs_note,
    layer_axis,
    new_figure,
    plot_layers,
    reached_note,
    span,
    stat,
    training_setup,
)
from initlab.report import Claim, hypothesis

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


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    plain = inp.runs(NORM_STEMS[0][1])
    end = {phase: np.array([stat(r, "act_norm", phase)[-1] for r in plain])
           for phase in ("init", "final")}
    found = [Claim(f, "no normalization: after training, ‖Z_50‖ still differs across "
                   f"c = 1.7, 2.0, 2.3 (max/min; at init {span(end['init']):.3g})",
                   span(end["final"]), ">", 10.0,
                   source=hypothesis("the weights keep their variance (trained-variance), so "
                                     "we expected the activation norms to keep c's imprint"),
                   if_fails="training rebalances the activation norms although n·Var(W_i) "
                   "barely moves: small, coordinated changes over 50 layers compound, and the "
                   "first and last layers move most (weights-move-little)")]
    agree = hypothesis("normalization removes c from the forward pass exactly at init; we "
                       "expected training to keep it so")
    reaches = hypothesis("our guess that a normalized 50-layer net trains to the plain net's "
                         "5% within 5 epochs with Adam; the lecture expects the opposite for "
                         "layer norm (see normalized-training)")
    for norm, stem in NORM_STEMS[1:]:
        runs = inp.runs(stem)
        found.append(Claim(f, f"{norm} norm: after training, activation norms for c = 1.7, "
                           "2.0, 2.3 agree within 10% at every layer (largest max/min − 1)",
                           agreement([stat(r, "act_norm", "final") for r in runs]), "<", 0.10,
                           unit="%", source=agree))
        found += [Claim(f, f"{norm} norm, c = 2 reaches {TARGET:.0%} test error "
                        f"({training_setup(run)}; {epochs_note(run)})", run.final_test_error,
                        "<=", TARGET, unit="%", source=reaches,
                        if_fails="5 epochs are far too few for these nets: at init their "
                        "gradients grow ~1e4× towards the input (normalized-gradients), and "
                        "the lecture itself expects layer norm to be hard to train "
                        "(normalized-training)")
                  for run in runs if round(c_of(run), 6) == 2.0]
    return found


FIGURE = Figure(
    "trained-norms",
    "The per-layer activation and gradient norms after training (solid; dashed: at init) for "
    "c = 1.7, 2, 2.3, without normalization (plain SGD until 5%), with layer norm and with "
    "batch norm (Adam, 5 epochs; SGD does not train them). Without normalization the curves "
    "are three decades apart at layer 50 at init; the first claim says how far apart they "
    "end, which tells whether training reshapes the activations although the weights move "
    "little. The "
    "normalized nets' curves agree across c, as at init; they train far more slowly than the "
    "plain net (normalized-training and normalized-gradients say why).",
    tuple(stem for _, stem in NORM_STEMS), plot, claims,
    headline=(
        "Which effects of the initial scale persist after training? (initlab's hypotheses)"),
    order=120,
)
