"""Figure norm-spread: how much the examples' activation norms ‖Z_i‖ differ from each other
(their coefficient of variation over the fixed probe batch, ``act_norm_cv``), per layer, at
initialization and after training, without normalization, with layer norm and with batch norm
(the c = 2 runs of init-norms, layernorm-norms, batchnorm-norms; trained-variance,
trained-layernorm, trained-batchnorm). No runs of its own."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    by_c,
    layer_axis,
    new_figure,
    stat,
    training_setup,
)
from initlab.palette import norm_color
from initlab.report import Claim, lecture
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

KEY = "act_norm_cv"
C = 2.0
# (norm, label, colour, stem at init, stem after training)
NORMS = (("none", "no normalization", norm_color("none"), "init-norms", "trained-variance"),
         ("layer", "layer norm", norm_color("layer"), "layernorm-norms", "trained-layernorm"),
         ("batch", "batch norm", norm_color("batch"), "batchnorm-norms", "trained-batchnorm"))
# Layer norm gives every example's normalized vector the same norm up to its eps (1e-5 against
# a variance of order 0.1-1 here: a relative difference ~1e-5); 1e-3 leaves room for rounding.
ERASED = 1e-3
# "Keeps the relative scale": at least half the spread the input images have (Z_1) at every
# hidden layer. Fixed before the runs.
KEPT = 0.5
ERASES = lecture("Layer normalization", "layer norm forces every example's activation vector "
                 "to the same norm, erasing the relative scale of different examples, which "
                 "can be a useful feature; batch norm normalizes columns (features) instead and "
                 "keeps it")


def run_at(inp: FigureInput, stem: str) -> Run | None:
    return by_c(inp.runs(stem)).get(C)


def hidden_spread(run: Run | None, phase: str) -> np.ndarray:
    """The spread at the hidden layers' outputs Z_2..Z_L (Z_1 is the input image)."""
    return stat(run, KEY, phase)[1:] if run is not None else np.full(1, math.nan)


def input_spread(run: Run | None) -> float:
    return float(stat(run, KEY, "init")[0]) if run is not None else math.nan


def plot(inp: FigureInput) -> MplFigure:
    fig, axes = new_figure(inp, f"Spread of the examples' norms ‖Z_i‖ over the probe batch (512 "
                           f"training images), c = {C:g}: std / mean at each layer", 2,
                           sharey=True)
    for ax, phase, title in ((axes[0][0], "init", "at initialization"),
                             (axes[0][1], "final", "after training (each net's test error "
                                                   "in the legend)")):
        for _, label, color, init_stem, final_stem in NORMS:
            run = run_at(inp, init_stem if phase == "init" else final_stem)
            if run is None:
                continue
            values = stat(run, KEY, phase)
            setup = "" if phase == "init" else (f" ({training_setup(run)}): "
                                                 f"{run.final_test_error:.1%} test error")
            ax.plot(np.arange(1, len(values) + 1), values, color=color, linewidth=2,
                    label=f"{label}{setup}")
        ax.set_title(title, fontsize=9)
        layer_axis(ax, KEY)
        ax.set_ylabel("std / mean of ‖Z_i‖₂ over the batch")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.legend(fontsize=8)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    runs = {norm: (run_at(inp, init_stem), run_at(inp, final_stem))
            for norm, _, _, init_stem, final_stem in NORMS}
    found = [Claim(f, "layer norm at init: largest spread of the examples' ‖Z_i‖ (std/mean over "
                   "the probe batch) over the hidden layers Z_2..Z_50",
                   float(np.max(hidden_spread(runs["layer"][0], "init"))), "<", ERASED,
                   source=ERASES, check=True)]
    for norm, label in (("batch", "batch norm"), ("none", "no normalization")):
        init = runs[norm][0]
        found.append(Claim(f, f"{label} at init keeps the examples' relative scale: smallest "
                           "spread over the hidden layers / the input images' spread "
                           f"({input_spread(init):.3g})",
                           float(np.min(hidden_spread(init, "init"))) / input_spread(init),
                           ">=", KEPT, source=ERASES, check=True))
    others = [float(np.min(hidden_spread(runs[n][1], "final"))) for n in ("batch", "none")]
    found.append(Claim(f, "after training, layer norm's largest spread over the hidden layers "
                       "relative to the smallest of batch norm's and no normalization's: below "
                       "1 (layer norm's own gains and shifts, trained with it, bring little "
                       "back)", float(np.max(hidden_spread(runs["layer"][1], "final")))
                       / min(others), "<", 1.0, source=ERASES))
    return found


FIGURE = Figure(
    "norm-spread",
    "How much the norms of different examples' activation vectors differ (standard deviation "
    "over mean across a fixed batch of 512 training images), layer by layer, at init and "
    "after training. MNIST digits differ in ink, so the input images' norms spread (layer 1). "
    "Layer norm rescales every example's vector to the same norm at every hidden layer: the "
    "spread drops to zero, and the network can no longer use how large one example's "
    "activations are relative to another's. Batch norm rescales each feature across the "
    "batch instead, and like the plain network keeps that relative scale. This is the "
    "lecture's explanation of why layer norm makes fully connected nets hard to train.",
    ("init-norms", "layernorm-norms", "batchnorm-norms", "trained-variance",
     "trained-layernorm", "trained-batchnorm"), plot, claims,
    headline=(
        "Layer norm gives every example the same activation norm, erasing their relative scale;"
        " batch norm keeps it (lecture)."),
    rows=4,
    seed_cap=10,
    order=80,
)
