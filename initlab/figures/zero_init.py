"""Figure zero-init: with every W_i = 0 every weight gradient is exactly zero at every step, and
only the output bias learns (configs/zero-init.yaml, which records every step)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    layer_axis,
    legend_below,
    new_figure,
    read_measure,
    save_measure,
    status_mark,
    training_setup,
    unmeasured,
)
from initlab.figures.inference import zero_init_weights
from initlab.palette import norm_color
from initlab.report import LECTURE_INIT, Claim, lecture
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "zero-init"
LOSS_BAND = 0.05  # "near log 10": within this of it
ZERO = lecture("Initialization", "initializing every weight to 0 is a bad choice: every hidden "
               "activation is 0, so every weight gradient is 0 and the weights never move",
               LECTURE_INIT)


def measure(inp: FigureInput, data_root: str | None) -> None:
    for run, target in unmeasured(inp, STEM):
        save_measure(target, zero_init_weights(run, data_root))


def train_records(run: Run) -> list[int]:
    return [i for i, p in enumerate(run.phase) if p == "train"]


def plot(inp: FigureInput) -> MplFigure:
    run = inp.runs(STEM)[0]
    measured = read_measure(run, inp.name) or {}
    fig, axes = new_figure(inp, f"W = 0 ({training_setup(run)}): every weight gradient is "
                           "exactly zero, only the output bias learns", 3)
    ax = axes[0][0]
    steps = train_records(run)
    ax.plot(run.step[steps], run.loss[steps], color=norm_color("none"), linewidth=0.8,
            label=f"training loss (every step){status_mark(run)}")
    ax.axhline(math.log(10), color="black", linestyle="--", linewidth=1, label="log 10")
    if "label_entropy" in measured:
        ax.axhline(measured["label_entropy"], color="black", linestyle=":",
                   label="entropy of the class frequencies")
    ax.set_ylim(math.log(10) - LOSS_BAND, math.log(10) + LOSS_BAND)  # the claim's band
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (batch)")
    ax.set_title(f"test error stays at {run.final_test_error:.1%}", fontsize=9)
    legend_below(ax, fontsize=8)
    ax.grid(True, alpha=0.3)
    ax = axes[0][1]
    grads = run.layers["grad_norm"]
    peak = np.nanmax(grads, axis=0) if len(grads) else np.full(1, np.nan)
    ax.plot(np.arange(1, len(peak) + 1), peak, "o-", markersize=3, color="black",
            label=f"max over {len(grads)} records (every step)")
    ax.set_ylim(-1, 1)
    layer_axis(ax, "grad_norm", log=False)  # exactly zero: nothing to show on a log axis
    ax.set_title(f"largest ‖∇W_i ℓ‖ over all steps and layers: {np.nanmax(peak):g}", fontsize=9)
    legend_below(ax, fontsize=8)
    ax = axes[0][2]
    if measured:
        classes = np.arange(len(measured["class_frequencies"]))
        ax.bar(classes - 0.2, measured["class_frequencies"], 0.4, color="lightgray",
               edgecolor="black", label="class frequency (train)")
        ax.bar(classes + 0.2, measured["output_bias_softmax"], 0.4, color="dimgray",
               label="softmax(output bias) after training")
        ax.set_title(f"largest |W_i| entry after training: {measured['max_abs_weight']:g}",
                     fontsize=9)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_xticks(range(10))
    legend_below(ax, fontsize=8)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    """Checks, all four: with W = 0 each follows from the math (every hidden activation is 0),
    so they test initlab's implementation, not the lecture's statement."""
    f = inp.name
    run = inp.runs(STEM)[0]
    steps = run.summary.get("steps")
    recorded = len(train_records(run))
    grads = run.layers["grad_norm"]
    # "at every step" only holds if every step was recorded (log.every: 1).
    peak = float(np.max(grads)) if recorded == steps and not np.isnan(grads).any() else math.nan
    measured = read_measure(run, f) or {}
    tests = run.test_error[~np.isnan(run.test_error)]
    return [
        Claim(f, f"W = 0: largest weight-gradient norm over all {recorded} of {steps} steps and "
              "all 50 layers (exactly zero)", peak, "==", 0.0, source=ZERO, check=True),
        Claim(f, "W = 0: largest |W_i| entry after training (weights never move)",
              measured.get("max_abs_weight", math.nan), "==", 0.0, source=ZERO, check=True),
        Claim(f, "W = 0: test error stays ≥ 80% (lowest over all evaluations)",
              float(tests.min()) if tests.size else math.nan, ">=", 0.8, unit="%",
              source=ZERO, check=True),
        Claim(f, "W = 0: |final training loss − log 10| (stays near log 10)",
              abs(float(run.loss[run.last()]) - math.log(10)) if len(run.records) else math.nan,
              "<", LOSS_BAND, source=ZERO, check=True),
    ]


FIGURE = Figure(
    "zero-init",
    "All weights start at exactly 0. Every hidden activation is then relu(0) = 0, so the "
    "gradient of every weight matrix, which multiplies the layer's input by the gradient at its "
    "output, is exactly 0 at every step (middle): only the output layer's bias can learn, and "
    "it learns the class frequencies (right). The loss stays near log 10 (left), the loss of "
    "a uniform guess: symmetry is never broken.",
    (STEM,), plot, claims, measure,
    headline=(
        "W = 0: every weight gradient is zero, only the output bias learns (lecture)."),
    rows=4,
    order=30,
)
