"""Figure trainability: test error after a fixed budget (3 epochs of plain SGD, lr 0.01) over a
grid of initial scales c and depths, without normalization (configs/trainability.yaml): a phase
diagram of which initializations train, with the mean-field lines along which the activations
change by a fixed factor over the depth (``theory.mean_field_decades``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from initlab.figures.core import (
    CHANCE_ERROR,
    Figure,
    FigureInput,
    c_of,
    cfg_value,
    depth_of,
    new_figure,
    seed_of,
)
from initlab.report import Claim, hypothesis, lecture
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "trainability"
# "Trains": test error at most this after the budget: far below chance (90%), well above
# where the plain nets end after many epochs (~5%). Fixed before the runs.
TRAINS = 0.20
CENTRE = 2.0
FAR = (1.0, 3.0)  # at depth 50, c ≤ 1 or c ≥ 3: 4 to 7 decades off level (mean field)
DECADES = 2.0  # the mean-field lines drawn: ‖Z_L‖ / ‖Z_1‖ = 10^±2
BAND = lecture("", "the 50-layer ReLU network trains from W_i ~ N(0, 2/n); far from c = 2 "
               "(the notes' nets of c = 1 and 3) it never trains: its activations vanish or "
               "explode")
OPERATIONAL = hypothesis(f"initlab's operational “trains” for this short budget: test error at "
                         f"most {TRAINS:.0%} after 3 epochs (the lecture's own target, 5%, "
                         "is tested on the same net trained longer: trained-variance)")
NARROWS = hypothesis("mean field: the activations change by (c/2)^((L−1)/2) over L layers, so "
                     "the range of c that keeps that change within a given factor shrinks "
                     "like 1/L")

Grid = dict[int, dict[float, float]]  # depth -> c -> final test error (NaN: diverged)


def grid(runs: Sequence[Run]) -> Grid:
    """Final test error per depth and c, the mean over the seeds there are; NaN where any
    seed diverged."""
    cells: dict[int, dict[float, list[float]]] = {}
    for run in runs:
        error = run.final_test_error if run.summary.get("status") == "completed" else math.nan
        cells.setdefault(depth_of(run), {}).setdefault(round(c_of(run), 6), []).append(error)
    return {d: {c: float(np.mean(errors)) for c, errors in row.items()}
            for d, row in cells.items()}


def trained(errors: dict[float, float]) -> list[float]:
    """The c values that train (test error ≤ TRAINS; a diverged run does not)."""
    return sorted(c for c, e in errors.items() if e <= TRAINS)


def edges(values: Sequence[float]) -> np.ndarray:
    """Cell edges on a log axis: geometric midpoints, and as far again beyond the ends."""
    v = np.log(np.asarray(values, dtype=float))
    mids = (v[1:] + v[:-1]) / 2
    return np.exp(np.concatenate([[2 * v[0] - mids[0]], mids, [2 * v[-1] - mids[-1]]]))


def plot(inp: FigureInput) -> MplFigure:
    import matplotlib as mpl

    runs = inp.runs(STEM)
    table = grid(runs)
    depths = sorted(table)
    cs = sorted({c for errors in table.values() for c in errors})
    lr = cfg_value(runs[0], "train.lr") if runs else "?"
    epochs = cfg_value(runs[0], "train.epochs") if runs else "?"
    seeds = len({seed_of(r) for r in runs})
    # Three short lines: the figure is 8 inches wide, and one long line was cut at both ends.
    fig, axes = new_figure(inp, f"Test error after {epochs} epochs of SGD (lr {lr}), mean of "
                           f"{seeds} seeds\nwidth 100, ReLU, no normalization, W_i ~ N(0, c/n); "
                           f"outlined: trains (≤ {TRAINS:.0%})\ndashed: mean field "
                           f"‖Z_L‖/‖Z_1‖ = 10^±{DECADES:g}; diverged: at this one lr",
                           1, size=(8.0, 4.6))
    ax = axes[0][0]
    errors = np.array([[100 * table[d].get(c, math.nan) for c in cs] for d in depths])
    x_edges, y_edges = edges(cs), edges(depths)
    cmap = mpl.colormaps["viridis_r"].with_extremes(bad="lightgray")
    scale = mpl.colors.LogNorm(vmin=2, vmax=100)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(errors), cmap=cmap,
                         norm=scale)
    fig.colorbar(mesh, ax=ax, label="final test error (%)")
    for i in range(len(depths)):
        for j in range(len(cs)):
            e = errors[i, j]
            centre = (math.sqrt(x_edges[j] * x_edges[j + 1]),
                      math.sqrt(y_edges[i] * y_edges[i + 1]))
            ax.text(*centre, f"diverged\nat lr {lr}" if math.isnan(e) else f"{e:.1f}%",
                    ha="center", va="center", fontsize=8, fontweight="bold",
                    color=text_color(cmap(scale(e)) if not math.isnan(e) else cmap.get_bad()))
            if not math.isnan(e) and e <= 100 * TRAINS:
                ax.add_patch(mpl.patches.Rectangle(
                    (x_edges[j], y_edges[i]), x_edges[j + 1] - x_edges[j],
                    y_edges[i + 1] - y_edges[i], fill=False, edgecolor="red", linewidth=2))
    depth_line = np.geomspace(y_edges[0], y_edges[-1], 200)
    for sign in (1, -1):
        ax.plot(CENTRE * 10 ** (sign * 2 * DECADES / (depth_line - 1)), depth_line, "w--",
                linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xticks(cs, [f"{c:g}" for c in cs])
    ax.set_yticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("c (W_i ~ N(0, c/n))")
    ax.set_ylabel("depth L (Linear layers)")
    return fig


def text_color(rgba: tuple[float, ...]) -> str:
    """Black on a light cell, white on a dark one (by the cell colour's luminance)."""
    red, green, blue = rgba[:3]
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    table = grid(inp.runs(STEM))
    deepest, shallowest = (max(table), min(table)) if table else (50, 5)
    errors = table.get(deepest, {})
    far = [e for c, e in errors.items() if c <= FAR[0] or c >= FAR[1]]
    # A diverged run does not train: it counts as chance.
    far_best = min((CHANCE_ERROR if math.isnan(e) else e) for e in far) if far else math.nan
    counts = [len(trained(table[d])) for d in sorted(table)]
    increases = sum(b > a for a, b in zip(counts, counts[1:], strict=False)) if counts else math.nan
    count_text = "first seed: " + ", ".join(f"{d}: {n}" for d, n in zip(sorted(table), counts,
                                                                 strict=True))
    centre = errors.get(CENTRE, math.nan)
    return [
        Claim(f, f"depth {deepest}, c = {CENTRE:g} trains (test error ≤ {TRAINS:.0%} after the "
              "budget) on most seeds: yes/no per seed", float(centre <= TRAINS), ">", 0.5,
              source=OPERATIONAL, method="exact",
              if_fails="the budget is short for 50 layers rather than c = 2 untrainable: "
              "the same network reaches 5% when trained longer (trained-variance)"),
        Claim(f, f"depth {deepest}: some c ≤ {FAR[0]:g} or c ≥ {FAR[1]:g} trains (test error "
              f"≤ {TRAINS:.0%}; a diverged run does not): yes/no per seed, on few seeds",
              float(far_best <= TRAINS) if not math.isnan(far_best) else math.nan, "<", 0.5,
              source=BAND, method="exact"),
        Claim(f, f"the band narrows with depth: values of c that train at depth {shallowest} "
              f"minus at depth {deepest} (by depth: {count_text})",
              float(counts[0] - counts[-1]) if counts else math.nan, ">=", 1.0,
              source=NARROWS),
        Claim(f, "…and never widens as the depth grows: number of depth steps at which more "
              "values of c train", float(increases), "==", 0.0, source=NARROWS),
    ]


FIGURE = Figure(
    "trainability",
    "A phase diagram of initialization: the plain ReLU network of width 100 at depths 5 to "
    "50, started from W_i ~ N(0, c/n) for c from 1 to 3, trained the same short budget (3 "
    "epochs of SGD at the lecture's lr 0.01; the lecture's 5% needs longer: trained-"
    "variance trains the depth-50 net to it). Each cell is the final test error, the mean "
    "of 5 seeds; red outlines mark the cells that train (≤ 20%). A “diverged” cell diverged"
    " at this one learning rate: the activations at c ≥ 2.5 grow ~(c/2)^25 over 50 layers "
    "and a smaller lr might train it, so it is not proof that no lr does. The mean field "
    "says the activations change by (c/2)^((L−1)/2) over L layers (dashed: a change of 100×"
    " either way), so it predicts that a shallow net tolerates almost any c while a "
    "50-layer one trains only in a narrow band around c = 2, the band narrowing like 1/L — "
    "the reason the lecture's deep network needs the right initial scale.",
    (STEM,), plot, claims, plots_seeds=True,
    headline=(
        "Far from c = 2 the deep net does not train (lecture 9), and the band of trainable c "
        "narrows with depth (mean field: (c/2)^((L−1)/2))."),
    rows=4,
    seed_cap=10,
    order=20,
)
