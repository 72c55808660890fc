"""Figure normalized-gradients: why deep normalized MLPs are hard to train -- the weight-gradient
norm per layer at initialization of batch- and layer-normalized ReLU nets of depth 10, 20, 50,
the norm after the activation (the lecture's placement) or before it, against the mean-field
growth rate per layer (``theory.NORMALIZED_RELU_GRADIENT_RATE``; configs/normalized-gradients.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    cfg_value,
    depth_of,
    new_figure,
    over_seeds,
    seed_of,
    stat,
)
from initlab.figures.theory import NORMALIZED_RELU_GRADIENT_RATE
from initlab.palette import DEPTH_COLORS
from initlab.report import Claim, Source, hypothesis, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "normalized-gradients"
DEPTHS = (10, 20, 50)
TOLERANCE = 0.10  # |measured rate / predicted − 1|, fixed by the issue before any run
YANG = ("Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz, “A Mean Field Theory of Batch "
        "Normalization”, ICLR 2019")
RATE_TEXT = "sqrt(π/(π−1)) ≈ 1.21"
# (norm, placement): the predicted rate per layer and whose prediction it is.
PREDICTIONS: dict[tuple[str, str], tuple[float, Source]] = {
    ("batch", "post"): (NORMALIZED_RELU_GRADIENT_RATE, hypothesis(
        f"Yang et al. 2019 derive {RATE_TEXT} per layer for batch norm before the ReLU; we "
        "expect the same after it (the lecture's placement), by a std/RMS argument that is "
        "ours, not theirs: the backward pass divides by the ReLU output's std, the forward "
        "keeps its RMS, std/RMS = sqrt((π−1)/π)")),
    ("layer", "post"): (NORMALIZED_RELU_GRADIENT_RATE, hypothesis(
        "the same std/RMS argument, per example across the features: layer norm after a "
        f"ReLU divides by the std of a ReLU output too, so {RATE_TEXT} per layer")),
    ("batch", "pre"): (NORMALIZED_RELU_GRADIENT_RATE, paper(
        YANG, f"in their placement, batch norm before the ReLU: {RATE_TEXT} per layer (the "
        "pre-activations' batch mean, fed by ReLU outputs, is removed)")),
    ("layer", "pre"): (1.0, hypothesis(
        "layer norm before the ReLU divides a pre-activation whose mean across the features "
        "is ~0, so std = RMS and nothing grows: rate 1 per layer (mean field)")),
}
# What a FAIL or INCONCLUSIVE suggests, from the per-depth rates in the panels' titles.
IF_FAILS = {("layer", "pre"): (
    "the measured rate is below 1 at every depth (the gradients shrink slightly towards the "
    "input), most in the 10-layer net and least in the 50-layer one: the mean field's rate 1 "
    "is a limit of wide, deep nets; the per-depth rates are in the panel's title")}
NORM_LABELS = {"batch": "batch norm", "layer": "layer norm"}
PLACEMENTS = {"post": "after the ReLU (the lecture's)", "pre": "before the ReLU"}


def growth_rate(run: Run) -> float:
    """Geometric mean over the hidden layers of ‖∇W_i‖ / ‖∇W_i+1‖: (g_2 / g_L−1)^(1/(L−3)),
    W_2..W_L−1 being the hidden-to-hidden matrices (W_1 reads the image, W_L writes logits)."""
    g = stat(run, "grad_norm", "init")
    depth = len(g)
    if depth < 4 or np.isnan(g).any() or (g <= 0).any():
        return math.nan
    return float((g[1] / g[depth - 2]) ** (1.0 / (depth - 3)))


def runs_of(inp: FigureInput, norm: str, placement: str, depth: int,
            seed: int | None = None) -> list[Run]:
    """The runs of one net (norm, placement, depth): every draw of its weights, or one seed's."""
    return [r for r in inp.runs(STEM) if cfg_value(r, "model.norm") == norm
            and cfg_value(r, "model.norm_position") == placement and depth_of(r) == depth
            and (seed is None or seed_of(r) == seed)]


def mean_rate(runs: Sequence[Run]) -> float:
    """Geometric mean of the runs' growth rates (NaN if there are none)."""
    rates = [growth_rate(r) for r in runs]
    if not rates or any(math.isnan(r) for r in rates):
        return math.nan
    return float(np.exp(np.mean(np.log(rates))))


def plot(inp: FigureInput) -> MplFigure:
    fig, axes = new_figure(inp, "At initialization, c = 2, width 100: ‖∇W_i ℓ‖ relative to the "
                           "last hidden layer's (thick: the first seed)\ndashed: mean-field "
                           f"growth per layer, {RATE_TEXT} (1 for layer norm before the ReLU)",
                           2, nrows=2, sharey=True)
    for row, placement in enumerate(PLACEMENTS):
        for col, norm in enumerate(NORM_LABELS):
            ax = axes[row][col]
            rate, _ = PREDICTIONS[(norm, placement)]
            rates = []
            for depth in DEPTHS:
                runs = runs_of(inp, norm, placement, depth)
                rates.append(f"{depth}: {mean_rate(runs):.3f}")
                for n, run in enumerate(runs):
                    g = stat(run, "grad_norm", "init")
                    below = len(g) - 2 - np.arange(len(g))  # W_L−1 at 0, W_1 at L − 2
                    ax.plot(below, g / g[len(g) - 2], color=DEPTH_COLORS[depth],
                            linewidth=2 if n == 0 else 0.7, alpha=1 if n == 0 else 0.6,
                            label=f"depth {depth}" if n == 0 else None)
            k = np.arange(-1, max(DEPTHS) - 1)
            ax.plot(k, rate**k, "k--", linewidth=1, label=f"{rate:.3f} per layer")
            ax.set_yscale("log")
            ax.set_xlabel("layers below the last hidden layer (L − 1 − i)")
            ax.set_ylabel("‖∇W_i ℓ‖ / ‖∇W_L−1 ℓ‖")
            ax.set_title(f"{NORM_LABELS[norm]} {PLACEMENTS[placement]}\nmeasured rate by depth "
                         f"(mean of seeds): {', '.join(rates)}", fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=7)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    """Each claim measured on each draw of the weights (a seed) alone, then the mean over the
    draws with its 95% interval, as a trained claim over its seeds (``core.over_seeds``): these
    runs do not train, so ``Figure.evaluate`` does not see their seeds as an axis."""
    seeds = sorted({seed_of(r) for r in inp.runs(STEM)})
    per_seed = [draw_claims(inp, seed) for seed in seeds]
    if len(per_seed) < 2:
        return per_seed[0] if per_seed else draw_claims(inp, None)
    return [over_seeds(list(rows)) for rows in zip(*per_seed, strict=True)]


def draw_claims(inp: FigureInput, seed: int | None) -> list[Claim]:
    """The claims on one draw of the weights (``seed``; None: every run there is)."""
    found = []
    for (norm, placement), (rate, source) in PREDICTIONS.items():
        deviations = [abs(mean_rate(runs_of(inp, norm, placement, d, seed)) / rate - 1.0)
                      for d in DEPTHS]
        worst = math.nan if any(math.isnan(x) for x in deviations) else max(deviations)
        found.append(Claim(
            inp.name, f"{NORM_LABELS[norm]} {PLACEMENTS[placement]}: gradient growth per layer "
            f"towards the input at init (geometric mean over the hidden layers) vs "
            f"{rate:.3f}: largest |measured / predicted − 1| over depths "
            f"{', '.join(map(str, DEPTHS))}, per draw of the weights", worst, "<=", TOLERANCE,
            unit="%", source=source, if_fails=IF_FAILS.get((norm, placement), "")))
    return found


FIGURE = Figure(
    "normalized-gradients",
    "Why the normalized 50-layer nets train badly: at initialization their weight gradients "
    "grow geometrically from the output towards the input, whatever c. The mean-field theory "
    "of batch norm (Yang et al. 2019) explains it: for a ReLU net the backward pass divides "
    "each unit by its standard deviation while the forward pass keeps its RMS, and for ReLU "
    "outputs std/RMS = sqrt((π−1)/π), so each layer multiplies the gradient by about "
    "sqrt(π/(π−1)) ≈ 1.21 — about 1e4 over 49 layers. The panels compare batch and layer norm, "
    "after the ReLU (the lecture's placement) and before it, at depths 10, 20 and 50, against "
    "that rate. With layer norm before the ReLU the mean field predicts no growth at all. Each "
    "claim is measured on each of 5 draws of the weights (seeds) and reported as the mean over "
    "the draws with its 95% t interval.",
    (STEM,), plot, claims,
    headline=(
        "Batch norm before the ReLU makes gradients explode at init by sqrt(π/(π−1)) ≈ 1.21 per"
        " layer (Yang et al. 2019); after the ReLU, and for layer norm, our hypotheses by the "
        "same argument."),
    rows=4,
    order=90,
)
