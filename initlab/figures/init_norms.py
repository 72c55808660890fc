"""Figure init-norms: activation and gradient norms per layer at initialization, without
normalization, for c = 1, 2, 3 (configs/init-norms.yaml), with five more draws of the weights
(configs/init-norms-seeds.yaml) and what theory predicts: the mean-field line and the
finite-width band of log‖Z_l‖ (``theory.relu_norm_prediction``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    by_c,
    c_color,
    c_label,
    c_of,
    layer_axis,
    layer_shapes,
    median,
    new_figure,
    seed_of,
    span,
    stat,
)
from initlab.figures.theory import relu_norm_prediction
from initlab.report import LECTURE_INIT, Claim, hypothesis, lecture, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "init-norms"
SEEDS_STEM = "init-norms-seeds"
LINEAR_STEM = "init-norms-linear"
LINEAR = lecture("Initialization", "with a linear activation, W_i ~ N(0, 1/n) keeps the "
                 "variance of the activations from layer to layer (the first step of the "
                 "Kaiming derivation; the ReLU then halves it, hence 2/n)", LECTURE_INIT)
ABOUT_ONE = lecture("Initialization", "with c = 2 the gradient norms are about 1 at every "
                    "layer (its plot; “about” read here as within 2× of 1)", LECTURE_INIT)
CS = (1.0, 2.0, 3.0)
BAND_SD = 2.0  # the band: predicted mean of log‖Z_l‖ ± 2 standard deviations
# A Gaussian puts 95.4% of its mass within ±2 s.d.; 90% leaves room for the batch mean of
# ‖Z_l‖ behaving like one example's norm only approximately. Fixed before the runs.
INSIDE_FRACTION = 0.90
HANIN = paper("Hanin & Rolnick, “How to start training”, NeurIPS 2018",
              "at finite width log‖Z_l‖ spreads around the mean field, its variance growing "
              "with depth/width (here exact: Var log r per layer from χ² with Binomial(n, ½) "
              "degrees of freedom)")
VANISH = lecture("Initialization", "with W_i ~ N(0, c/n), c = 2 keeps the activation norms level "
                 "over the 50 layers, c = 1 makes them vanish and c = 3 explode", LECTURE_INIT)
GRADIENTS = lecture("", "the gradient norms stay about level across the layers within each c, "
                    "but differ by orders of magnitude between values of c")


def seed_runs(inp: FigureInput, c: float) -> list[Run]:
    """Every draw of the weights at this c: init-norms' own first."""
    return [r for r in (*inp.runs(STEM), *inp.runs(SEEDS_STEM)) if round(c_of(r), 6) == c]


def band(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean-field ‖Z_l‖, and the band's centre and half-width in log‖Z_l‖, anchored at the
    run's measured ‖Z_1‖ (the probe images' mean norm)."""
    mean_field, means, sds = relu_norm_prediction(c_of(run), layer_shapes(run))
    first = stat(run, "act_norm", "init")[0]
    return first * mean_field, math.log(first) + means, sds


def inside_fraction(runs: Sequence[Run]) -> float:
    """Fraction of (run, hidden layer) points with log‖Z_l‖ within the band (Z_2..Z_L)."""
    inside = []
    for run in runs:
        acts = stat(run, "act_norm", "init")
        if np.isnan(acts).any() or (acts <= 0).any():
            return math.nan
        _, centre, sd = band(run)
        inside += list(np.abs(np.log(acts[1:]) - centre[1:]) <= BAND_SD * sd[1:])
    return float(np.mean(inside)) if inside else math.nan


def plot(inp: FigureInput) -> MplFigure:
    first = inp.runs(STEM)
    seed = seed_of(first[0]) if first else "?"
    more = len({seed_of(r) for r in inp.runs(SEEDS_STEM)})
    fig, axes = new_figure(inp, "At initialization, no normalization: 50 layers of width 100, "
                           f"ReLU, W_i ~ N(0, c/n), MNIST — thick: seed {seed}, thin: {more} "
                           "more seeds;\n"
                           "dashed: mean field E‖Z_l+1‖² = (c/2)‖Z_l‖², band: finite-width mean "
                           f"± {BAND_SD:g} s.d. of log‖Z_l‖", 2)
    act_ax, grad_ax = axes[0]
    for c in CS:
        runs = seed_runs(inp, c)
        if not runs:
            continue
        color = c_color(runs[0])
        layers = np.arange(1, len(stat(runs[0], "act_norm", "init")) + 1)
        mean_field, centre, sd = band(runs[0])
        act_ax.fill_between(layers, np.exp(centre - BAND_SD * sd), np.exp(centre + BAND_SD * sd),
                            color=color, alpha=0.15, linewidth=0)
        act_ax.plot(layers, mean_field, "--", color=color, linewidth=1)
        for n, run in enumerate(runs):
            width, label = (2.2, c_label(run)) if n == 0 else (0.6, None)
            for ax, key in ((act_ax, "act_norm"), (grad_ax, "grad_norm")):
                values = stat(run, key, "init")
                ax.plot(np.arange(1, len(values) + 1), values, color=color, linewidth=width,
                        alpha=1.0 if n == 0 else 0.6, label=label)
    layer_axis(act_ax, "act_norm")
    layer_axis(grad_ax, "grad_norm")
    act_ax.legend(fontsize=8)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    runs = by_c(inp.runs(STEM))
    act = {c: stat(runs.get(c), "act_norm", "init") for c in CS}
    grad = {c: stat(runs.get(c), "grad_norm", "init") for c in CS}

    def end_ratios(c: float) -> np.ndarray:
        """‖Z_50‖ / ‖Z_1‖ of every draw of the weights at c (NaN for none)."""
        ratios = [a[-1] / a[0] for a in (stat(r, "act_norm", "init") for r in seed_runs(inp, c))]
        return np.array(ratios or [math.nan], dtype=float)

    def farthest_from_one(values: np.ndarray) -> float:
        return float(values[np.argmax(np.abs(np.log(values)))]) if not np.isnan(
            values).any() else math.nan

    draws = len(seed_runs(inp, 2.0))
    found = [
        Claim(f, f"c = 2: ‖Z_50‖ / ‖Z_1‖ at init is within 10× (the draw farthest from 1, of "
              f"all {draws} draws of the weights)", farthest_from_one(end_ratios(2.0)), "in",
              (0.1, 10.0), source=VANISH),
        Claim(f, f"c = 1: ‖Z_50‖ / ‖Z_1‖ at init (activations vanish; the largest over all "
              f"{draws} draws)", float(np.max(end_ratios(1.0))), "<", 1e-4, source=VANISH),
        Claim(f, f"c = 3: ‖Z_50‖ / ‖Z_1‖ at init (activations explode; the smallest over all "
              f"{draws} draws)", float(np.min(end_ratios(3.0))), ">", 1e3, source=VANISH),
    ]
    for c in CS:
        spans = [span(stat(r, "grad_norm", "init")) for r in seed_runs(inp, c)]
        found.append(Claim(f, f"c = {c:g}: gradient norms at init span (max/min over layers "
                           f"1..50, the widest of all {len(spans)} draws): backward and forward "
                           "factors cancel", float(np.max(spans)) if spans else math.nan, "<",
                           30.0, source=GRADIENTS))
    act_spans = [span(act[c]) for c in CS]
    widest = math.nan if any(math.isnan(s) for s in act_spans) else max(act_spans)
    found.append(Claim(f, "activation norms at init span (max/min over layers, largest over "
                       "c = 1, 2, 3): beyond the gradients' 30×, up to 1e8", widest, "in",
                       (30.0, 1e8),
                       source=hypothesis("initlab's reading of the lecture's plot, whose axis "
                                         "spans about eight decades"),
                       if_fails="eight decades is the mean-field figure; at width 100 the "
                       "typical c = 1 network ends below the mean field (the band: its centre "
                       "puts ‖Z_50‖/‖Z_1‖ near 8e-9, a span of ~1.2e8), and the measured curves "
                       "lie in that band"))
    found.append(Claim(f, "c = 2: gradient norm at init, median over the 50 layers (“≈ 1”)",
                       median(grad[2.0]), "in", (0.5, 2.0), source=ABOUT_ONE,
                       if_fails="what c = 2 guarantees is that the gradient norms are level "
                       "across the layers (the span rows), not their level: that is set by the "
                       "loss at init and initlab's mean over the batch of 128, and a reading "
                       "of the lecture's plot can be off by a constant factor"))
    linear_runs = inp.runs(LINEAR_STEM) if LINEAR_STEM in inp.paths else []
    linear = linear_runs[0] if linear_runs else None
    linear_act = stat(linear, "act_norm", "init")
    found.append(Claim(f, "linear activation, c = 1: ‖Z_50‖ / ‖Z_1‖ at init is within 10×",
                       float(linear_act[-1] / linear_act[0]), "in", (0.1, 10.0),
                       source=LINEAR))
    ratio = grad[3.0] / grad[1.0]
    found.append(Claim(f, "gradient norm c = 3 / c = 1 at init (smallest over layers)",
                       float(np.min(ratio)) if not np.isnan(ratio).any() else math.nan, ">",
                       1e6, source=GRADIENTS))
    # One row for all c: a ReLU net without bias is positively homogeneous, so a seed's draw
    # at c is its draw at c = 1 scaled by sqrt(c) per layer, and log‖Z_l‖ minus its predicted
    # mean is the same for every c.
    draws = [r for c in CS for r in seed_runs(inp, c)]
    found.append(Claim(f, f"log‖Z_l‖ lies in the finite-width band (mean ± {BAND_SD:g} s.d.): "
                       f"fraction of the points (all {len(draws) // len(CS)} draws of the "
                       "weights, hidden layers Z_2..Z_50; one draw is the same at every c, "
                       "scaled)", inside_fraction(draws), ">=", INSIDE_FRACTION, unit="%",
                       source=HANIN))
    return found


FIGURE = Figure(
    "init-norms",
    "The lecture's 50-layer ReLU network at initialization, without normalization, for three "
    "initial scales c (W_i ~ N(0, c/n)). Left: the norm of each layer's input; right: the "
    "norm of each weight matrix's gradient. Each ReLU layer multiplies the expected squared "
    "norm by c/2 (mean field, dashed), so over 49 layers c = 1 shrinks the activations' norm "
    "by about (1/2)^24.5, c = 2 keeps it level and c = 3 grows it by (3/2)^24.5; the "
    "gradients run the other way through the same matrices, so within one c they stay level. "
    "At width 100 the product of 49 random layer gains also spreads: log‖Z_l‖ has a variance "
    "that grows with depth/width and a mean below the mean-field line (shaded band, mean ± 2 "
    "s.d.; Hanin & Rolnick 2018). For c = 1 the mean field puts ‖Z_50‖/‖Z_1‖ at 1.5e-8 "
    "(with the first layer's 784 → 100), the finite-width centre at 8e-9: the thin curves, "
    "five more draws of the weights, show the spread.",
    (STEM, SEEDS_STEM, LINEAR_STEM), plot, claims,
    headline=(
        "With W_i ~ N(0, c/n) and no normalization, activations vanish for c = 1, stay level "
        "for c = 2 and explode for c = 3, while gradients stay level within each c, about 1 at "
        "c = 2; with a linear activation N(0, 1/n) keeps the variance (lecture). Theory: mean "
        "field E‖Z_{l+1}‖² = (c/2)‖Z_l‖², and at finite width log‖Z_l‖ spreads (Hanin & Rolnick"
        " 2018)."),
    rows=11,
    order=10,
)
