"""Figure feature-drift: the 15th, 50th and 85th percentiles over the batch of one fixed hidden
unit's nonlinearity input (unit 0 of the last hidden layer) over training, without
normalization, with batch norm and with layer norm (after Ioffe & Szegedy 2015, figure 1): the
runs of normalized-training, each normalization at its best learning rate there.

Where the norm sits decides what this shows. Ioffe & Szegedy normalize before the nonlinearity
(z -> relu(BN(zW + b))): the nonlinearity's input is then the normalized value itself, and
their figure shows how batch norm holds its distribution still. In the lecture's placement
(z -> BN(relu(zW + b))) the nonlinearity's input zW + b is not normalized, only the layer's
input z is. The top row shows Ioffe & Szegedy's placement, whose claim it is; the bottom row the
lecture's, for comparison.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import Figure, FigureInput, new_figure
from initlab.figures.normalized_training import STEM, STYLES, best_runs, lr_text, recipe
from initlab.report import Claim, Source, hypothesis, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

PERCENTILES = ("unit_input_p15", "unit_input_p50", "unit_input_p85")
PROBE_PHASES = ("init", "epoch", "final")  # records on the fixed probe batch
ROWS = (("pre", "normalization before the ReLU (Ioffe & Szegedy's placement)"),
        ("post", "normalization after the ReLU (the lecture's placement)"))
CLAIMS: dict[tuple[str, str], Source] = {
    ("batch", "pre"): paper("Ioffe & Szegedy, “Batch Normalization”, ICML 2015, figure 1",
                            "with batch norm the distribution of a unit's nonlinearity input "
                            "stays more stable over training than without (here true by "
                            "construction: that input is the batch-normalized value)"),
    ("layer", "pre"): hypothesis("layer norm also standardizes the nonlinearity's input (per "
                                 "example, not per unit), so we expect less drift than "
                                 "without normalization"),
    ("batch", "post"): hypothesis("in the lecture's placement the unit's inputs are "
                                  "normalized, though not the unit's input itself; we expect "
                                  "less drift than without normalization"),
}


def drift(run: Run | None) -> float:
    """How far the median of the unit's input moves over training, in units of its initial
    15-85 percentile spread: max over the probe records (the same 512 images each time) of
    |p50(t) − p50(init)| / (p85(init) − p15(init)), at the last hidden layer."""
    if run is None:
        return math.nan
    try:
        p15, p50, p85 = (run.layers[key][:, -1] for key in PERCENTILES)
        start = run.at("init")
    except KeyError:
        return math.nan
    probes = np.isin(run.phase, PROBE_PHASES)
    spread = p85[start] - p15[start]
    moved = np.abs(p50[probes] - p50[start])
    if not spread > 0 or np.isnan(moved).any():
        return math.nan
    return float(moved.max() / spread)


def plot(inp: FigureInput) -> MplFigure:
    runs = best_runs(inp)
    fig, axes = new_figure(inp, "Unit 0 of the last hidden layer (49): its nonlinearity's "
                           "input over training, percentiles 15 / 50 / 85 over the batch\n"
                           "lines: each training batch (every 20 steps); dots: the fixed probe "
                           "batch at init and after each epoch", 3, nrows=2, size=(4.6, 3.4),
                           sharey="row")
    for row, (placement, row_title) in enumerate(ROWS):
        for col, norm in enumerate(("none", "batch", "layer")):
            ax = axes[row][col]
            if norm == "none" and row > 0:  # the plain net has no placement: shown once
                ax.axis("off")
                ax.text(0.5, 0.5, "no normalization:\nthe panel above", ha="center",
                        va="center", transform=ax.transAxes, fontsize=9, color="gray")
                continue
            variant = (norm, "post" if norm == "none" else placement)
            run = runs.get(variant)
            name, color, _ = STYLES[variant]
            ax.set_title(f"{name} ({lr_text(run)})\ndrift of the median: {drift(run):.3g} "
                         "× its initial 15-85 spread" if run is not None else name, fontsize=8)
            ax.set_xlabel("step")
            first = col == (1 if row > 0 else 0)  # the row's first drawn panel
            ax.set_ylabel(f"{row_title}\nunit input" if first else "unit input", fontsize=8)
            # The row shares its y axis with a blank first panel: label this one's ticks.
            ax.tick_params(labelleft=True)
            ax.grid(True, alpha=0.3)
            if run is None:
                continue
            train = run.phase == "train"
            probes = np.isin(run.phase, PROBE_PHASES)
            for key, width in zip(PERCENTILES, (0.8, 1.6, 0.8), strict=True):
                values = run.layers[key][:, -1]
                ax.plot(run.step[train], values[train], color=color, linewidth=width)
                ax.plot(run.step[probes], values[probes], "o", color="black", markersize=3)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    runs = best_runs(inp)
    plain = drift(runs.get(("none", "post")))
    found = []
    for (norm, placement), source in CLAIMS.items():
        run = runs.get((norm, placement))
        name = STYLES[(norm, placement)][0]
        found.append(Claim(
            inp.name, f"{name}, at its best learning rate: drift of unit 0's median input at "
            "the last hidden layer (in units of its initial 15-85 spread), relative to no "
            "normalization's at its best", drift(run) / plain, "<", 1.0, source=source,
            check=(norm, placement) == ("batch", "pre")))
    return found


FIGURE = Figure(
    "feature-drift",
    "Ioffe & Szegedy motivated batch norm with the picture of one unit's input distribution "
    "drifting while the layers below it learn (their figure 1; the same picture is on a slide "
    "of the Group Norm video, not in the lecture). Here: the 15th, 50th and 85th percentiles "
    "over the batch of one fixed unit's nonlinearity input in the last hidden layer of the "
    "50-layer net, over one epoch of Adam on 30,000 images, the first seed (the runs of "
    "normalized-training, each normalization at its best learning rate). Top row: "
    "normalization before the ReLU, Ioffe & Szegedy's placement, where the unit's input is "
    "the normalized value; bottom row: after the ReLU, the "
    "lecture's placement, where only the layer's input is normalized. The drift number is how "
    "far the median moves, on the same 512 probe images, in units of its initial spread.",
    (STEM,), plot, claims, recipe=recipe,
    headline=(
        "Batch norm keeps a unit's input distribution stable over training (Ioffe & Szegedy "
        "2015, figure 1; the same picture is in the Group Norm video, not the lecture)."),
    rows=3,
    seed_cap=10,
    order=110,
)
