"""Figure weight-decay-bn: the interaction of normalization and regularization -- with batch
norm a layer's output does not depend on the scale of its weights, so weight decay shrinks
‖W_i‖ without limiting what the layer computes, and the effective step ‖ΔW_i‖/‖W_i‖ grows
(configs/weight-decay-bn.yaml: batch norm before the ReLU, where W_i sets only a direction)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    cfg_value,
    log_axis_plain_labels,
    new_figure,
    status_mark,
)
from initlab.palette import sequence_color
from initlab.report import Claim, lecture, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "weight-decay-bn"
# The factor within which the effective step's growth must match 1/‖W‖² (scale invariance),
# fixed before the runs: the gradient's size on the unit sphere differs between trajectories.
INVARIANCE_FACTOR = 2.0
SMOOTH = 10  # train records (200 steps) in the effective step's running mean
LAARHOVEN = ("van Laarhoven, “L2 Regularization versus Batch and Weight Normalization”, "
             "arXiv:1706.05350, 2017")


def decay(run: Run) -> float:
    return float(cfg_value(run, "train.weight_decay") or 0.0)


def normalized_layers(values: np.ndarray) -> np.ndarray:
    """The columns of the Linear layers followed by a norm (all but the output layer)."""
    return values[..., :-1]


def effective_steps(run: Run) -> np.ndarray:
    """Per train record and normalized layer, the update's part that turns W_i: with batch norm
    before the ReLU the gradient is orthogonal to W_i, so ‖ΔW_i‖² = lr²‖∇W_i‖² + (lr λ)²‖W_i‖²
    and the turning part of ‖ΔW_i‖/‖W_i‖ is sqrt(ratio² − (lr λ)²)."""
    lr = float(cfg_value(run, "train.lr"))
    ratios = normalized_layers(run.layers["update_ratio"][run.phase == "train"])
    return np.sqrt(np.clip(ratios**2 - (lr * decay(run)) ** 2, 0.0, None))


def last_epoch(run: Run) -> np.ndarray:
    """Mask over the train records of the last epoch trained."""
    epochs = run.epoch[run.phase == "train"]
    return epochs == np.nanmax(epochs) if len(epochs) else np.zeros(0, dtype=bool)


def window_means(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Per normalized layer, over the last epoch's train records: mean ‖W_i‖ and mean
    effective step."""
    mask = last_epoch(run)
    if not mask.any():
        return np.full(1, math.nan), np.full(1, math.nan)
    norms = normalized_layers(run.layers["weight_norm"][run.phase == "train"])[mask]
    return norms.mean(axis=0), effective_steps(run)[mask].mean(axis=0)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over the last ``window`` values (fewer at the start): a curve to read by eye."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    ends = np.arange(1, len(values) + 1)
    return (sums[ends] - sums[ends - counts]) / counts


def pick(runs: Sequence[Run], largest: bool) -> Run | None:
    ordered = sorted(runs, key=decay)
    return (ordered[-1] if largest else ordered[0]) if ordered else None


def plot(inp: FigureInput) -> MplFigure:
    runs = sorted(inp.runs(STEM), key=decay)
    setup = ""
    if runs:
        r = runs[0]
        setup = (f"{r.depth} layers × {cfg_value(r, 'model.width')}, batch norm before the "
                 f"ReLU, SGD lr {cfg_value(r, 'train.lr'):g}, {cfg_value(r, 'train.epochs')} "
                 "epochs")
    fig, axes = new_figure(inp, f"Weight decay with batch norm ({setup}): medians over the "
                           "normalized layers, every 20 steps", 3, size=(4.8, 4.0))
    for n, run in enumerate(runs):
        color = sequence_color(n + 1)  # the weight decays, light to dark
        label = f"weight decay {decay(run):g}{status_mark(run)}"
        train = run.phase == "train"
        weights = run.phase != "final"  # every record holds the weights it saw
        norms = np.median(normalized_layers(run.layers["weight_norm"][weights]), axis=1)
        axes[0][0].plot(run.step[weights], norms, color=color, label=label)
        steps = np.median(effective_steps(run), axis=1)
        axes[0][1].plot(run.step[train], steps, color=color, linewidth=0.5, alpha=0.5)
        axes[0][1].plot(run.step[train], running_mean(steps, SMOOTH), color=color, linewidth=2,
                        label=label)
        evals = np.isin(run.phase, ("init", "epoch"))
        axes[0][2].plot(run.epoch[evals], 100 * run.test_error[evals], "o-", color=color,
                        markersize=3, label=f"{label}: {run.final_test_error:.2%}")
    axes[0][0].set_ylabel("‖W_i‖_F (median over layers)")
    axes[0][1].set_ylabel("effective step: turning part of ‖ΔW_i‖/‖W_i‖\n"
                          f"(thin: every 20 steps; thick: mean of {SMOOTH})")
    axes[0][1].set_yscale("log")
    axes[0][2].set_ylabel("test error (%)")
    log_axis_plain_labels(axes[0][2])
    axes[0][2].set_xlabel("epoch")
    for ax in axes[0][:2]:
        ax.set_xlabel("step")
    for ax in axes[0]:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    runs = inp.runs(STEM)
    plain, decayed = pick(runs, False), pick(runs, True)
    if plain is None or decayed is None or decay(plain) == decay(decayed):
        norm_ratio = step_ratio = invariance = math.nan
        lam = math.nan
    else:
        (w0, s0), (w1, s1) = window_means(plain), window_means(decayed)
        # Claims about every normalized layer: each as good as its worst layer.
        norm_ratio = float(np.max(w1 / w0))
        step_ratio = float(np.min(s1 / s0))
        invariance = float(np.median((s1 / s0) / (w0 / w1) ** 2))
        lam = decay(decayed)
    return [
        Claim(f, f"batch norm, weight decay {lam:g} vs 0: ‖W_i‖ over the last epoch, with / "
              "without (worst normalized layer: the largest): the weights shrink", norm_ratio,
              "<", 1.0, source=lecture("Regularization", "the magnitude of the weights is "
                                       "a very bad proxy for complexity, especially with "
                                       "normalization layers (the mechanism: with "
                                       "normalization, L2 decay shrinks the weights without "
                                       "changing what the layer computes, van Laarhoven "
                                       "2017)")),
        Claim(f, "…and the effective step grows: turning part of ‖ΔW_i‖/‖W_i‖ over the last "
              "epoch, with / without (worst layer: the smallest)", step_ratio, ">", 1.0,
              source=paper(LAARHOVEN, "for a scale-invariant layer the effective learning "
                           "rate is lr/‖W‖², so weight decay raises it")),
        Claim(f, "…as scale invariance predicts: (effective step with / without) ÷ (‖W_i‖ "
              "without / with)² (median over layers)", invariance, "in",
              (1 / INVARIANCE_FACTOR, INVARIANCE_FACTOR),
              source=paper(LAARHOVEN, "the gradient of a scale-invariant layer scales as "
                           "1/‖W‖, its relative step as 1/‖W‖²")),
    ]


FIGURE = Figure(
    "weight-decay-bn",
    "The lecture closes on how optimization, initialization, normalization and "
    "regularization interact. One example: batch norm makes a layer's output invariant to the "
    "scale of its weights, so weight decay can no longer limit what the layer computes. It "
    "only shrinks ‖W_i‖ (left), and since the gradient of a scale-invariant layer scales as "
    "1/‖W_i‖, the step relative to the weights grows as 1/‖W_i‖² (middle; van Laarhoven "
    "2017): under batch norm, weight decay acts as a larger learning rate, not as a capacity "
    "limit. A 10-layer net with batch norm before the ReLU (where the invariance is exact) "
    "trained with SGD at three weight decays; right: test error.",
    (STEM,), plot, claims,
    headline=(
        "With batch norm, weight decay no longer limits capacity but raises the effective step "
        "(the closing slide; van Laarhoven 2017)."),
    rows=3,
    seed_cap=10,
    order=150,
)
