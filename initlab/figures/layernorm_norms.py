"""Figure layernorm-norms: as init-norms, with layer normalization after each hidden activation
(configs/layernorm-norms.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from initlab.figures.core import Figure, FigureInput, agree_at_init_claim, plot_norms_at_init
from initlab.report import Claim, lecture

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "layernorm-norms"


def plot(inp: FigureInput) -> MplFigure:
    return plot_norms_at_init(inp, STEM, "layer norm")


def claims(inp: FigureInput) -> list[Claim]:
    return [agree_at_init_claim(inp, STEM, "layer", lecture(
        "Layer normalization", "normalizing each layer's activations (to mean 0, variance 1 "
        "per example) fixes their norms at every layer, whatever the initial scale c"))]


FIGURE = Figure(
    "layernorm-norms",
    "As init-norms, with layer normalization after each hidden ReLU (the lecture's placement: "
    "z → LN(relu(zW + b))). Each example's activation vector is rescaled to mean 0 and "
    "variance 1 at every layer, so the activation norms no longer depend on c: the three "
    "curves coincide. The gradients tell another story: they grow by orders of magnitude "
    "from the output towards the input, whatever c — normalized-gradients says why.",
    (STEM,), plot, claims,
    headline=(
        "Layer norm fixes the activation norms at every layer, whatever c (lecture)."),
    rows=1,
    order=60,
)
