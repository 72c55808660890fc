"""Figure batchnorm-norms: as init-norms, with batch normalization after each hidden activation
(configs/batchnorm-norms.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from initlab.figures.core import Figure, FigureInput, agree_at_init_claim, plot_norms_at_init
from initlab.report import Claim, lecture

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "batchnorm-norms"


def plot(inp: FigureInput) -> MplFigure:
    return plot_norms_at_init(inp, STEM, "batch norm")


def claims(inp: FigureInput) -> list[Claim]:
    return [agree_at_init_claim(inp, STEM, "batch", lecture(
        "Batch normalization", "normalizing each feature over the minibatch also fixes the "
        "activations' scale at every layer, whatever c"))]


FIGURE = Figure(
    "batchnorm-norms",
    "As init-norms, with batch normalization after each hidden ReLU: each feature (column) is "
    "rescaled to mean 0 and variance 1 over the batch (here the fixed probe batch of 512 "
    "training images), so again the activation norms do not depend on c. The gradients grow "
    "towards the input as with layer norm (see normalized-gradients).",
    (STEM,), plot, claims,
    headline=(
        "So does batch norm (lecture)."),
    rows=1,
    order=70,
)
