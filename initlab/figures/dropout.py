"""Figure dropout: dropout where the lecture's claim applies -- an over-parameterized net that
overfits a few thousand images (configs/dropout-overfit.yaml), with and without dropout and
batch norm -- and why it cannot help the lecture's 50-layer net (the dropout member of
configs/regularization.yaml): the signal-to-noise ratio of each layer's input under dropout,
measured against the first-order prediction (``theory.dropout_noise_to_signal``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from initlab.figures.core import (
    Figure,
    FigureInput,
    Mode,
    RunSet,
    cfg_value,
    config_runs,
    log_axis_plain_labels,
    mean,
    measure_path,
    new_figure,
    outcome_error,
    read_measure,
    save_measure,
    seed_of,
    unmeasured,
)
from initlab.figures.inference import dropout_noise, error_rates
from initlab.figures.regularization import STEM as DEEP_STEM
from initlab.figures.regularization import recipe as deep_recipe
from initlab.figures.theory import dropout_noise_to_signal
from initlab.palette import DROPOUT_COLOR, norm_color
from initlab.report import Claim, hypothesis, lecture, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "dropout-overfit"
# Each variant of the shallow net: (norm, dropout) -> label, colour.
# Batch norm in its palette colour, dropout in its own; both together: batch norm's, darker.
VARIANTS = {("none", 0.0): ("no regularization", norm_color("none")),
            ("none", 0.5): ("dropout 0.5", DROPOUT_COLOR),
            ("batch", 0.0): ("batch norm", norm_color("batch")),
            ("batch", 0.5): ("batch norm + dropout 0.5", "darkred")}
PLAIN, DROPOUT, BN_DROPOUT = ("none", 0.0), ("none", 0.5), ("batch", 0.5)
# "Lowers the test error": by at least 0.5 pp, about two binomial standard errors of the
# difference of two 2-seed means near 5% error on 10,000 test images
# (2 · sqrt(2 · 0.05 · 0.95 / 10,000 / 2) = 0.44 pp). Fixed before the runs; now each seed's
# paired difference, its mean over the seeds with a 95% t interval deciding the verdict.
LOWER_PP = 0.005
FITS = 0.01  # "training error ~0": at most 1% of the training images wrong (eval mode)
STALLS = 0.5  # the 50-layer net with dropout "stalls": more than half the test images wrong
SNR_FACTOR = 2.0  # measured SNR within this factor of the first-order prediction
SNR_IMAGES, SNR_DRAWS, SNR_SEED = 256, 16, 0  # training images, mask draws, their seed
DROPOUT_WORKS = paper("Srivastava et al., “Dropout: A Simple Way to Prevent Neural Networks "
                      "from Overfitting”, JMLR 2014", "dropout lowers the test error of "
                      "networks that overfit, MNIST among them")
TAKEAWAY = lecture("Interaction of optimization, initialization, normalization, "
                   "regularization", "batch norm and dropout are the techniques that work in "
                   "practice; weight decay can often be skipped")
UNBIASED = lecture("Dropout", "dropout keeps each activation "
                   "with probability 1 − p and rescales it by 1/(1 − p), so that its expected "
                   "value is the activation itself: a noisy but unbiased estimate of the "
                   "network without dropout, as SGD's minibatch gradient is of the full one")
UNBIASED_WITHIN = 0.01  # |mean mask − 1|: 10 standard errors of a million draws at p = 0.5
COMPOUNDS = hypothesis("each dropout layer multiplies the activations' second moment by "
                       "1/(1−p), the excess being noise; to first order the noise-to-signal "
                       "ratio after l layers is (1−p)^−l − 1, ≈ 173 after 49 layers of p = 0.1")


def measure(inp: FigureInput, data_root: str | None) -> None:
    for run, target in unmeasured(inp, STEM):
        save_measure(target, error_rates(run, data_root))
    for run in deep_runs(inp):  # every seed's: the claims are evaluated seed by seed
        if not measure_path(run.path, inp.name).exists():
            save_measure(measure_path(run.path, inp.name),
                         dropout_noise(run, data_root, SNR_IMAGES, SNR_DRAWS, SNR_SEED))


def variant_of(run: Run) -> tuple[str, float]:
    return str(cfg_value(run, "model.norm")), float(cfg_value(run, "model.dropout"))


def variant_runs(inp: FigureInput, variant: tuple[str, float]) -> list[Run]:
    return [r for r in inp.runs(STEM) if variant_of(r) == variant]


def measured(inp: FigureInput, variant: tuple[str, float], key: str) -> list[float]:
    """Each seed's train_error or test_error (evaluation mode, from the checkpoint)."""
    values = [(read_measure(r, inp.name) or {}).get(key, math.nan)
              for r in variant_runs(inp, variant)]
    return [float(v) for v in values]


def deep_runs(inp: FigureInput) -> list[Run]:
    """The lecture's 50-layer net with dropout and no weight decay, each seed's."""
    return [r for r in inp.runs(DEEP_STEM) if float(cfg_value(r, "model.dropout")) > 0
            and not cfg_value(r, "train.weight_decay")]


def deep_run(inp: FigureInput) -> Run | None:
    """The first seed's of ``deep_runs``."""
    return next(iter(deep_runs(inp)), None)


def snr(noise: dict[str, Any], which: str) -> np.ndarray:
    """Signal / noise power of Z_2..Z_L (``init`` or ``final``)."""
    signal = np.asarray(noise.get(f"{which}_signal", [math.nan]), dtype=float)[1:]
    power = np.asarray(noise.get(f"{which}_noise", [math.nan]), dtype=float)[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return signal / power


def predicted_snr(p: float, layers: int) -> np.ndarray:
    """At Z_2..Z_L: after 1..L−1 dropout layers."""
    return 1.0 / np.asarray(dropout_noise_to_signal(p, np.arange(1, layers)))


def plot(inp: FigureInput) -> MplFigure:
    seeds = len({seed_of(r) for r in inp.runs(STEM)})
    fig, axes = new_figure(inp, "Dropout where it applies (3 layers × 512 on 4,096 MNIST images, "
                           f"SGD momentum 0.9, {seeds} seeds) and where it does not (the "
                           "lecture's 50 layers × 100, dropout 0.1)", 3, size=(5.0, 4.2))
    ax = axes[0][0]
    for variant, (label, color) in VARIANTS.items():
        runs = variant_runs(inp, variant)
        if not runs:
            continue
        epochs_idx = [[i for i, p in enumerate(r.phase) if p in ("init", "epoch")]
                      for r in runs]
        length = min(len(e) for e in epochs_idx)
        epoch = runs[0].epoch[epochs_idx[0][:length]]
        test = np.mean([r.test_error[e[:length]] for r, e in zip(runs, epochs_idx,
                                                                  strict=True)], axis=0)
        train = np.mean([r.train_error[e[:length]] for r, e in zip(runs, epochs_idx,
                                                                   strict=True)], axis=0)
        ax.plot(epoch, 100 * test, color=color, label=f"{label}: test")
        ax.plot(epoch[1:], 100 * train[1:], ":", color=color)
    log_axis_plain_labels(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%), seed mean")
    ax.set_title("solid: test error; dotted: training batches (dropout on)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[0][1]
    for n, (variant, (_, color)) in enumerate(VARIANTS.items()):
        for offset, key, hatch in ((-0.2, "train_error", "//"), (0.2, "test_error", None)):
            values = measured(inp, variant, key)
            ax.bar(n + offset, 100 * mean(values), 0.38, color=color, hatch=hatch,
                   alpha=0.8, edgecolor="black", linewidth=0.5)
            # A bar's top as a line: a zero-height bar (no training error) stays visible.
            ax.plot([n + offset - 0.19, n + offset + 0.19], [100 * mean(values)] * 2,
                    color=color, linewidth=2.5, solid_capstyle="butt")
            ax.plot([n + offset] * len(values), [100 * v for v in values], "k.")
            # Above the highest seed's dot: the dots never cover the value.
            top = max([mean(values), *values]) if values else mean(values)
            ax.annotate(f"{100 * mean(values):.2f}", (n + offset, 100 * top),
                        xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks(range(len(VARIANTS)), [label.replace(" + ", "\n+ ") for label, _ in
                                         VARIANTS.values()], fontsize=7)
    ax.set_ylabel("error (%) in evaluation mode")
    ax.set_title("after training, evaluation mode (dots: seeds)\nhatched: training images, "
                 "plain: test images", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[0][2]
    deep = deep_run(inp)
    noise = (read_measure(deep, inp.name) or {}) if deep is not None else {}
    if deep is not None:
        p = float(cfg_value(deep, "model.dropout"))
        layers = np.arange(2, deep.depth + 1)
        ax.plot(layers, predicted_snr(p, deep.depth), "k--",
                label=f"first order: 1 / ((1−p)^−(i−1) − 1), p = {p:g}")
        ax.plot(layers, snr(noise, "init"), color=DROPOUT_COLOR, label="measured at init")
        ax.plot(layers, snr(noise, "final"), color=DROPOUT_COLOR, alpha=0.5,
                label=f"measured after training ({deep.final_test_error:.0%} test error)")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("layer i (input Z_i, after i − 1 dropout layers)")
    ax.set_ylabel("signal / noise power of Z_i")
    ax.set_title(f"50 layers: ‖Z_i‖² without dropout / E‖Z_i(dropout) − Z_i‖²\n"
                 f"{SNR_IMAGES} training images, {SNR_DRAWS} draws of the masks", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    test = {v: mean(measured(inp, v, "test_error")) for v in VARIANTS}
    train = mean(measured(inp, PLAIN, "train_error"))
    runs = variant_runs(inp, PLAIN)
    images = (read_measure(runs[0], f) or {}).get("train_images", "?") if runs else "?"
    epochs = cfg_value(runs[0], "train.epochs") if runs else "?"
    deep = deep_run(inp)
    noise = (read_measure(deep, f) or {}) if deep is not None else {}
    p = float(cfg_value(deep, "model.dropout")) if deep is not None else math.nan
    depth = deep.depth if deep is not None else 50
    last = predicted_snr(p, depth)[-1] if deep is not None else math.nan
    return [
        Claim(f, f"the shallow wide net overfits: training error without dropout or batch norm "
              f"after {epochs} epochs, evaluation mode, all {images} training images", train,
              "<=", FITS, unit="%",
              source=hypothesis("the regime the lecture's claim is about: a net large enough "
                                "to fit its training set")),
        Claim(f, "dropout 0.5 lowers its test error: no regularization − dropout, same seed",
              test[PLAIN] - test[DROPOUT], ">=",
              LOWER_PP, unit="pp", source=DROPOUT_WORKS),
        Claim(f, "batch norm + dropout lower it too: no regularization − batch norm + dropout, "
              "same seed", test[PLAIN] - test[BN_DROPOUT], ">=",
              LOWER_PP, unit="pp", source=TAKEAWAY),
        Claim(f, f"the lecture's 50-layer net with dropout {p:g} after each of its {depth - 1} "
              "hidden layers stalls: final test error (regularization, weight decay 0; a diverged "
              "run counts as chance)",
              outcome_error(deep) if deep is not None else math.nan, ">=", STALLS,
              unit="%", source=COMPOUNDS),
        Claim(f, f"why: signal/noise power of the last hidden layer's output (Z_{depth}) at "
              f"init, measured / first-order prediction ({last:.3g})",
              float(snr(noise, "init")[-1] / last) if noise else math.nan, "in",
              (1 / SNR_FACTOR, SNR_FACTOR), source=COMPOUNDS),
        Claim(f, f"after training with dropout, the noise still dominates Z_{depth}: its "
              "signal/noise power", float(snr(noise, "final")[-1]) if noise else math.nan,
              "<", 1.0, source=COMPOUNDS),
        *[Claim(f, f"dropout {q:g} is unbiased: |mean of initlab's dropout multipliers over "
                f"{MASK_DRAWS:,} draws − 1|", mask_bias(q, seed_of(runs[0]) if runs else 0),
                "<", UNBIASED_WITHIN, source=UNBIASED, check=True)  # by construction
          for q in (0.1, 0.5)],
    ]


MASK_DRAWS = 1_000_000


def mask_bias(p: float, seed: int) -> float:
    """|E[mask] − 1| estimated from the masks the training step draws (StackedMLP's own
    dropout_masks) with the dropout generator of a member of this ``seed``: one draw per seed
    of the runs, so the rows' interval is over real draws."""
    from initlab.config import ModelConfig
    from initlab.model import StackedMLP

    width, depth = 100, 11
    model = StackedMLP(ModelConfig(depth=depth, width=width), 1)
    model.set_dropout([p], [seed])
    masks = model.dropout_masks(MASK_DRAWS // (width * (depth - 1)))
    return abs(float(masks.double().mean()) - 1.0)


def recipe(stem: str, mode: Mode) -> RunSet:
    """The 50-layer net's runs as the regularization figure trains them; the shallow net's
    as its config sweeps them."""
    return deep_recipe(stem, mode) if stem == DEEP_STEM else config_runs(stem, mode)


FIGURE = Figure(
    "dropout",
    "The lecture calls dropout one of the two effective techniques (with batch norm); the "
    "regularization figure's 50-layer net says otherwise, because it is not the regime the "
    "claim is about. Left and middle: a net that can memorize its data — two hidden layers "
    "of 512 units trained to ~0 training error on 4,096 images — with and without dropout 0.5 "
    "and batch norm; a gap between training and test error is what dropout can close. Right: "
    "why dropout after each of 49 layers stops the deep net instead. Each dropout layer "
    "multiplies the activations' second moment by 1/(1−p) and the excess is noise; compounded "
    "over 49 layers of p = 0.1 the noise power is ~170 times the signal's (dashed), which is "
    "what the measured signal-to-noise ratio of each layer's input shows.",
    (STEM, DEEP_STEM), plot, claims, measure, recipe=recipe, plots_seeds=True,
    headline=(
        "Dropout lowers the test error of a net that overfits (Srivastava et al. 2014); with "
        "batch norm it is what works in practice (lecture); dropout is an unbiased stochastic "
        "approximation, E[mask/(1−p)] = 1 (lecture)."),
    rows=8,
    seed_cap=10,
    order=140,
)
