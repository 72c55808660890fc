"""Figure init-norms: activation and gradient norms per layer at initialization, without
normalization, for c = 1, 2, 3 (configs/init-norms.yaml)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import Figure, FigureInput, by_c, plot_norms_at_init, span, stat
from initlab.report import Claim

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "init-norms"


def plot(inp: FigureInput) -> MplFigure:
    return plot_norms_at_init(inp, STEM, "no normalization")


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    runs = by_c(inp.runs(STEM))
    act = {c: stat(runs.get(c), "act_norm", "init") for c in (1.0, 2.0, 3.0)}
    grad = {c: stat(runs.get(c), "grad_norm", "init") for c in (1.0, 2.0, 3.0)}

    def end_ratio(c: float) -> float:
        return float(act[c][-1] / act[c][0])

    found = [
        Claim(f, "c = 2: ‖Z_50‖ / ‖Z_1‖ at init is within 10×", end_ratio(2.0), "in",
              (0.1, 10.0)),
        Claim(f, "c = 1: ‖Z_50‖ / ‖Z_1‖ at init (activations vanish)", end_ratio(1.0), "<",
              1e-4),
        Claim(f, "c = 3: ‖Z_50‖ / ‖Z_1‖ at init (activations explode)", end_ratio(3.0), ">",
              1e3),
    ]
    for c in (1.0, 2.0, 3.0):
        found.append(Claim(f, f"c = {c:g}: gradient norms at init span (max/min over layers "
                           "1..50): backward and forward factors cancel", span(grad[c]), "<",
                           30.0))
    act_spans = [span(act[c]) for c in (1.0, 2.0, 3.0)]
    widest = math.nan if any(math.isnan(s) for s in act_spans) else max(act_spans)
    found.append(Claim(f, "activation norms at init span (max/min over layers, largest over "
                       "c = 1, 2, 3): beyond the gradients' 30×, up to 1e8", widest, "in",
                       (30.0, 1e8)))
    ratio = grad[3.0] / grad[1.0]
    found.append(Claim(f, "gradient norm c = 3 / c = 1 at init (smallest over layers)",
                       float(np.min(ratio)) if not np.isnan(ratio).any() else math.nan, ">",
                       1e6))
    return found


FIGURE = Figure(
    "init-norms",
    "At initialization without normalization, activation norms vanish (c = 1), stay level "
    "(c = 2) or explode (c = 3) with depth, while gradient norms stay level within each c and "
    "differ by orders of magnitude between c.",
    (STEM,), plot, claims)
