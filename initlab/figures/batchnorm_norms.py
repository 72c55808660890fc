"""Figure batchnorm-norms: as init-norms, with batch normalization after each hidden activation
(configs/batchnorm-norms.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from initlab.figures.core import Figure, FigureInput, agree_at_init_claim, plot_norms_at_init
from initlab.report import Claim

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "batchnorm-norms"


def plot(inp: FigureInput) -> MplFigure:
    return plot_norms_at_init(inp, STEM, "batch norm")


def claims(inp: FigureInput) -> list[Claim]:
    return [agree_at_init_claim(inp, STEM, "batch")]


FIGURE = Figure(
    "batchnorm-norms",
    "With batch normalization after each hidden activation, activation norms at init are the "
    "same for every c.",
    (STEM,), plot, claims)
