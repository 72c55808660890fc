"""Figure weight-standardization: at a large batch, group norm against batch norm, each with and
without weight standardization, over seeds (Wu & He 2018; Qiao et al. 2019;
configs/weight-standardization.yaml).

Every claim compares two nets seed by seed (a seed fixes the weights' draw and the data order,
so the pair differs only in its normalization) and reports the mean difference with its 95% t
interval over the seeds: PASS only if the whole interval is on the claim's side of 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from initlab.figures.core import Figure, FigureInput, new_figure, setup_text
from initlab.intervals import t_interval
from initlab.report import Claim, Source, paper
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

STEM = "weight-standardization"
# (model.norm, model.weight_norm) of each net, in the order the figure shows them.
NETS = (("batch", "none"), ("batch", "standardize"), ("group", "none"),
        ("group", "standardize"))
LABELS = {("batch", "none"): "BN", ("batch", "standardize"): "BN + WS",
          ("group", "none"): "GN", ("group", "standardize"): "GN + WS"}
# The differences the claims read: (net, minus net), seed by seed.
GN_GAP = (("group", "none"), ("batch", "none"))
WS_ON_GN = (("group", "standardize"), ("group", "none"))
GN_WS_GAP = (("group", "standardize"), ("batch", "none"))

WU_HE = paper("Wu & He, “Group Normalization”, ECCV 2018, table 1 (ResNet-50 on ImageNet, 32 "
              "images per GPU)", "at a batch large enough for batch norm, group norm is "
              "slightly worse: 24.1% against 23.6% top-1 error (the Group Norm video: GN is "
              "usually slightly worse than BN at large batch)")
QIAO = paper("Qiao et al., “Micro-Batch Training with Batch-Channel Normalization and Weight "
             "Standardization”, 2019", "standardizing each output unit's weights over its "
             "fan-in lowers group norm's error, and group norm with weight standardization "
             "matches or outperforms batch norm trained with large batches")

ErrorTable = dict[tuple[str, str], dict[int, float]]  # net -> seed -> final test error


def net_of(run: Run) -> tuple[str, str]:
    model = run.config["model"]
    return model["norm"], model.get("weight_norm", "none")  # older runs: no weight norm


def error_table(runs: Sequence[Run]) -> ErrorTable:
    table: ErrorTable = {}
    for run in runs:
        table.setdefault(net_of(run), {})[run.config["train"]["seed"]] = run.final_test_error
    return table


def paired(table: ErrorTable, nets: tuple[tuple[str, str], tuple[str, str]]) -> list[float]:
    """Each seed's error of the first net minus the second's (the seeds both have)."""
    first, second = table.get(nets[0], {}), table.get(nets[1], {})
    return [first[s] - second[s] for s in sorted(first.keys() & second.keys())]


def difference_claim(inp: FigureInput, table: ErrorTable, text: str,
                     nets: tuple[tuple[str, str], tuple[str, str]], op: str,
                     source: Source) -> Claim:
    """One seed's difference (the figure's claims are evaluated seed by seed; the report
    gives their mean over the seeds and its 95% t interval: ``Figure.evaluate``)."""
    differences = paired(table, nets)
    value = sum(differences) / len(differences) if differences else math.nan
    return Claim(inp.name, text, value, op, 0.0, "pp", source)


def plot(inp: FigureInput) -> MplFigure:
    """Left: each net's test error per seed (dots) and mean with its 95% interval. Right: the
    claims' seed-by-seed differences, with theirs."""
    runs = inp.runs(STEM)
    table = error_table(runs)
    seeds = max((len(errors) for errors in table.values()), default=0)
    fig, left, right = _figure(inp, seeds)
    for x, net in enumerate(NETS):
        errors = [100 * e for e in table.get(net, {}).values()]
        left.plot([x] * len(errors), errors, ".", color="tab:gray", alpha=0.6)
        centre, low, high = t_interval(errors)
        left.errorbar([x], [centre], yerr=[[centre - low], [high - centre]], fmt="o",
                      color="black", capsize=4)
    left.set_xticks(range(len(NETS)), [LABELS[n] for n in NETS])
    left.set_ylabel("final test error (%)")
    left.grid(True, axis="y", alpha=0.3)
    if runs:
        left.set_title(setup_text(runs[0]), fontsize=7)
    pairs = (GN_GAP, WS_ON_GN, GN_WS_GAP)
    for x, nets in enumerate(pairs):
        diffs = [100 * d for d in paired(table, nets)]
        right.plot([x] * len(diffs), diffs, ".", color="tab:gray", alpha=0.6)
        centre, low, high = t_interval(diffs)
        right.errorbar([x], [centre], yerr=[[centre - low], [high - centre]], fmt="o",
                       color="black", capsize=4)
    right.axhline(0.0, color="black", lw=0.8)
    right.set_xticks(range(len(pairs)),
                     [f"{LABELS[a]} − {LABELS[b]}" for a, b in pairs], fontsize=8)
    right.set_ylabel("test error difference, same seed (pp)")
    right.set_title("mean and 95% t interval over seeds; dots: each seed", fontsize=8)
    right.grid(True, axis="y", alpha=0.3)
    return fig


def _figure(inp: FigureInput, seeds: int) -> tuple[MplFigure, Axes, Axes]:
    fig, axes = new_figure(inp, f"Batch 128: batch vs group norm (before each ReLU), with and "
                                f"without weight standardization ({seeds} seeds)", ncols=2)
    return fig, axes[0, 0], axes[0, 1]


def claims(inp: FigureInput) -> list[Claim]:
    table = error_table(inp.runs(STEM))
    return [
        difference_claim(inp, table, "at b = 128, GN's test error is above BN's: GN − BN, "
                         "same seed, mean over seeds", GN_GAP, ">", WU_HE),
        difference_claim(inp, table, "weight standardization lowers GN's test error: "
                         "(GN + WS) − GN, same seed", WS_ON_GN, "<", QIAO),
        difference_claim(inp, table, "GN with weight standardization is no worse than BN: "
                         "(GN + WS) − BN, same seed", GN_WS_GAP, "<=", QIAO),
    ]


FIGURE = Figure(
    "weight-standardization",
    "At a batch large enough for batch norm (128, on the 10-layer net of small-batch, the norm "
    "before each ReLU), is group norm slightly worse than batch norm, as Wu & He found on "
    "ImageNet, and does standardizing each unit's weights over its fan-in (Qiao et al. 2019) "
    "close the gap? Group norm normalizes within each example, so it cannot use the batch's "
    "statistics, which act as a regularizer and, Qiao et al. argue, smooth the loss landscape; "
    "weight standardization gives the layer before it part of that smoothing. Each seed trains "
    "all four nets from the same weights' draw on the same batches, so the claims compare them "
    "seed by seed: a claim PASSes only when the 95% interval of the mean difference is wholly "
    "on its side of 0, FAILs when it is wholly on the other, and is INCONCLUSIVE otherwise.",
    (STEM,), plot, claims, plots_seeds=True,
    headline=(
        "At a batch large enough for batch norm, group norm is slightly worse (Wu & He 2018; "
        "the Group Norm video), and weight standardization closes the gap (Qiao et al. 2019)."),
    rows=3,
    seed_cap=16,
    order=175,
)
