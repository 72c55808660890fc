"""Figure layernorm-norms: as init-norms, with layer normalization after each hidden activation
(configs/layernorm-norms.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    agree_at_init_claim,
    agreement,
    c_of,
    plot_norms_at_init,
    span,
    stat,
)
from initlab.report import Claim, lecture

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "layernorm-norms"
PLAIN_STEM = "init-norms"  # the earlier plots: the same net without normalization


def plot(inp: FigureInput) -> MplFigure:
    return plot_norms_at_init(inp, STEM, "layer norm")


# Fixed before any run of these rows, with init-norms' readings: "level" across the layers is
# a span under 30× (its gradient rows), "nearly the same" across c within 2× (its "about 1").
LEVEL_SPAN = 30.0
SAME_WITHIN = 1.0  # largest max/min − 1 across c at any layer: within 2×
NO_EXPLODING = lecture("", "with layer norm, the exploding and vanishing gradients disappear")
SAME_CURVES = lecture("", "with layer norm, the gradient curves are nearly the same whatever "
                      "the initialization")
DIFFER_MORE = lecture("", "with layer norm, the gradient norms differ more across the layers "
                      "than in the earlier plots (without normalization)")


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    grads = {round(c_of(r), 6): stat(r, "grad_norm", "init") for r in inp.runs(STEM)}
    plain = {round(c_of(r), 6): stat(r, "grad_norm", "init") for r in inp.runs(PLAIN_STEM)}
    ln_span = span(grads.get(2.0, np.full(1, np.nan)))
    return [
        agree_at_init_claim(inp, STEM, "layer", lecture(
            "Layer normalization", "normalizing each layer's activations (to mean 0, variance "
            "1 per example) fixes their norms at every layer, whatever the initial scale c")),
        Claim(f, "layer norm, c = 2: gradient norms at init level across the layers (max/min "
              f"over layers 1..50 under init-norms' {LEVEL_SPAN:g}×): no exploding or "
              "vanishing gradients", ln_span, "<", LEVEL_SPAN, source=NO_EXPLODING,
              if_fails="what layer norm removes is the dependence on c (the next row and the "
              "check above), not the growth across the layers: ~1.21× per layer towards the "
              "input after the ReLU (normalized-gradients)"),
        Claim(f, "layer norm: gradient norms at init for c = 1, 2, 3 within 2× at every layer "
              "(largest max/min − 1)", agreement(list(grads.values())), "<", SAME_WITHIN,
              unit="%", source=SAME_CURVES),
        Claim(f, "layer norm vs none, c = 2: span of the gradient norms over the layers at "
              "init, layer norm / no normalization (init-norms)",
              ln_span / span(plain.get(2.0, np.full(1, np.nan))), ">", 1.0, source=DIFFER_MORE),
    ]


FIGURE = Figure(
    "layernorm-norms",
    "As init-norms, with layer normalization after each hidden ReLU (the lecture's placement: "
    "z → LN(relu(zW + b))). Each example's activation vector is rescaled to mean 0 and "
    "variance 1 at every layer, so the activation norms no longer depend on c: the three "
    "curves coincide. The gradients tell another story: they grow by orders of magnitude "
    "from the output towards the input, whatever c — normalized-gradients says why.",
    (STEM, PLAIN_STEM), plot, claims,
    headline=(
        "Layer norm fixes the activation norms at every layer, whatever c; its three "
        "statements on the gradients (lecture 9), measured at init."),
    rows=4,
    order=60,
)
