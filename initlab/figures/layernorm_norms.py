"""Figure layernorm-norms: as init-norms, with layer normalization after each hidden activation
(configs/layernorm-norms.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from initlab.figures.core import Figure, FigureInput, agree_at_init_claim, plot_norms_at_init
from initlab.report import Claim

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "layernorm-norms"


def plot(inp: FigureInput) -> MplFigure:
    return plot_norms_at_init(inp, STEM, "layer norm")


def claims(inp: FigureInput) -> list[Claim]:
    return [agree_at_init_claim(inp, STEM, "layer")]


FIGURE = Figure(
    "layernorm-norms",
    "With layer normalization after each hidden activation, activation norms at init are the "
    "same for every c.",
    (STEM,), plot, claims)
