"""Figures of saved runs. Reads run directories only; never trains.

- ``layers.png`` (``plot_runs``): per-layer statistics at initialization (dashed) and at the
  end (solid), one panel per metric, plus curves for ``loss`` / ``test_error`` /
  ``train_error`` when asked for.
- ``training.png`` (``plot_training``): the statistics over training -- loss and error curves,
  and for each run layer x step maps of activation norm, gradient norm, update/weight ratio
  and dead units.

Titles say which run, what differs from the defaults, how it was trained and how it ended
(``initlab.describe``); legends name each run by what varies; axis labels come from
``initlab.stats.LAYER_STATS``.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from initlab.describe import run_labels, title_lines
from initlab.errors import UsageError, bounded
from initlab.runs import Run, check_output_parent, is_run_dir
from initlab.stats import LAYER_STATS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Log = Callable[[str], None]

CURVES = {"loss": "loss (cross-entropy)", "test_error": "test error",
          "train_error": "training error"}
METRICS = {**{key: stat.label for key, stat in LAYER_STATS.items()}, **CURVES}
DEFAULT_METRICS = ("act_norm", "grad_norm", "weight_var", "dead_fraction")
COMPARE_METRICS = ("act_norm", "grad_norm", "weight_var", "dead_fraction", "loss", "test_error")
MAP_METRICS = ("act_norm", "grad_norm", "update_ratio", "dead_fraction")
MAX_MAP_RUNS = 4  # layer x step maps for at most this many runs (rows) in training.png
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def use_headless_backend() -> None:
    import matplotlib

    matplotlib.use("Agg")


def layer_values(run: Run, metric: str, phase: str) -> np.ndarray:
    """A per-layer metric at ``init`` or at the end, as plots show it (n·Var(W_i): times each
    layer's fan-in)."""
    return run.plotted(metric)[run.last() if phase == "final" else run.at(phase)]


def fan_in(run: Run) -> np.ndarray:
    """Each layer's fan-in n_in."""
    return run.fan_ins


def run_label(run: Run) -> str:
    """A run's legend entry on its own: its name and how it ended."""
    return run_labels([run])[0]


def check_metrics(metrics: Sequence[str] | None) -> list[str]:
    metrics = list(metrics or DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UsageError(f"--metric: unknown {', '.join(bounded(m, 40) for m in unknown)}; "
                         f"choose from {', '.join(METRICS)}")
    return metrics


def output_paths(out: Path | None, default_dir: Path, force: bool = False
                 ) -> tuple[Path, Path]:
    """Where ``layers.png`` and ``training.png`` go: into ``default_dir`` without ``--out``;
    into ``--out`` when it is a directory (or names none with a suffix); else ``--out`` and
    the same name with ``-training``. Checked before any work: a file the user did not name
    (``NAME-training.png``, or the two figures in a folder that is not a run's) is never
    overwritten without ``force``."""
    if out is None or out.is_dir() or not out.suffix:
        if out is not None and out.exists() and not out.is_dir():
            raise UsageError(f"--out {bounded(str(out))}: is a file without an image suffix; "
                             f"give a name ending in {', '.join(IMAGE_SUFFIXES)} or a directory")
        folder = default_dir if out is None else out
        paths = folder / "layers.png", folder / "training.png"
        unnamed = [] if out is None or is_run_dir(folder) else list(paths)
    elif out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"--out {bounded(str(out))}: expected a file name ending in "
                         f"{', '.join(IMAGE_SUFFIXES)}, or a directory")
    else:
        paths = out, out.with_name(f"{out.stem}-training{out.suffix}")
        unnamed = [paths[1]]
    taken = [p for p in unnamed if os.path.lexists(p)]
    if taken and not force:
        raise UsageError(f"{bounded(str(taken[0]), 200)} exists and was not named by --out; "
                         f"add --force to overwrite it, or choose another --out")
    check_output_parent(paths[0].parent)
    return paths


def drawable(runs: Sequence[Run], log: Log) -> list[Run]:
    """The runs with something to draw; the others are named and skipped."""
    kept = []
    for run in runs:
        if run.records:
            kept.append(run)
        else:
            log(f"skipped {run.path}: no records ({_why_empty(run)})")
    if not kept:
        raise UsageError("nothing to plot: " + "; ".join(
            f"{run.path} has no records ({_why_empty(run)})" for run in runs))
    return kept


def _why_empty(run: Run) -> str:
    if run.status == "diverged":
        return f"diverged at step {run.summary.get('diverged_step')}"
    if run.status == "stopped":
        return "its process ended before the first record"
    return "not started yet" if run.status in ("unknown", "running") else run.status


def plot_runs(runs: Sequence[Run], out: Path, metrics: Sequence[str] | None = None,
              log: Log = lambda message: None) -> Path:
    """``layers.png``: one panel per metric; per-layer statistics against layer i at
    initialization (dashed) and at the end (solid); curves against epochs."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    metrics = check_metrics(metrics)
    runs = drawable(runs, log)
    shown = [m for m in metrics if m in CURVES or any(m in r.layers for r in runs)]
    for m in metrics:
        if m not in shown:
            log(f"{m}: not recorded in these runs; skipped")
    if not shown:
        raise UsageError(f"nothing to plot: none of {', '.join(metrics)} is recorded")
    columns = {1: 1, 2: 2, 3: 3, 4: 2}.get(len(shown), 3)
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows + 1.2),
                             squeeze=False)
    colors = run_colors(len(runs))
    for ax, metric in zip(axes.flat, shown, strict=False):
        if metric in CURVES:
            draw_curve(ax, runs, metric, colors)
        else:
            draw_layers(ax, runs, metric, colors, log)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    finish(fig, runs, colors, out)
    plt.close(fig)
    return out


def run_colors(n: int) -> list:
    import matplotlib.pyplot as plt

    if n <= 10:
        return list(plt.rcParams["axes.prop_cycle"].by_key()["color"])[:n]
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def finish(fig, runs: Sequence[Run], colors: list, out: Path) -> None:
    """Title, one legend for the runs below the panels, and the file."""
    from matplotlib.lines import Line2D

    fig.suptitle("\n".join(title_lines(runs)), fontsize=11)
    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    ncol = 1 if len(runs) <= 3 else min(3, math.ceil(len(runs) / 3))
    fig.legend(handles, run_labels(runs), loc="lower center", ncol=ncol, fontsize=8,
               frameon=False)
    legend_rows = math.ceil(len(runs) / ncol)
    height = fig.get_size_inches()[1]  # room in inches: the legend below, the title above
    fig.tight_layout(rect=(0, min((0.1 + 0.17 * legend_rows) / height, 0.45), 1,
                           1 - 0.5 / height))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None


def axis_label(metric: str, width: int = 38) -> str:
    return "\n".join(textwrap.wrap(METRICS[metric], width))


def x_of_layers(ax: Axes, run: Run, count: int) -> np.ndarray:
    """Layer positions 1..count; a watched run's ticks carry its layer names."""
    positions = np.arange(1, count + 1)
    if run.kind == "watch" and count <= 30:
        names = run.layer_names[:count]
        ax.set_xticks(positions, names, fontsize=7,
                      rotation=90 if max(map(len, names), default=0) > 6 else 0)
    return positions


def draw_layers(ax: Axes, runs: Sequence[Run], metric: str, colors: list, log: Log) -> None:
    stat = LAYER_STATS.get(metric)
    dashed = solid = False
    drawn: list[np.ndarray] = []
    for run, color in zip(runs, colors, strict=True):
        if metric not in run.layers:
            log(f"{run.display_name}: {metric} not recorded; not drawn in its panel")
            continue
        values = run.plotted(metric)
        x = x_of_layers(ax, run, values.shape[1])
        usable = ~np.all(np.isnan(values), axis=1)
        init = np.flatnonzero((run.phase == "init") & usable)
        end = run.last()
        while end >= 0 and not usable[end]:  # e.g. update_ratio: only in 'train' records
            end -= 1
        if len(init):
            ax.plot(x, values[init[-1]], "--", color=color, alpha=0.65, lw=1.2)
            drawn.append(values[init[-1]])
            dashed = True
        if end >= 0 and (not len(init) or end != init[-1]):
            ax.plot(x, values[end], "-", color=color, lw=1.6)
            drawn.append(values[end])
            solid = True
    if not any(np.isfinite(d).any() for d in drawn):  # say so, never an empty panel
        ax.text(0.5, 0.5, f"no finite {metric} recorded", ha="center", va="center",
                transform=ax.transAxes)
    scale_axis(ax, metric, drawn)
    if any(run.kind == "watch" for run in runs):
        ax.set_xlabel("layer")
    else:
        ax.set_xlabel("hidden layer i" if stat and stat.hidden_only else "layer i")
    ax.set_ylabel(axis_label(metric), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if dashed:
        from matplotlib.lines import Line2D

        handles, names = [Line2D([], [], color="gray", ls="--")], ["initialization"]
        if solid:
            handles.append(Line2D([], [], color="gray"))
            names.append(_end_label(runs))
        else:  # e.g. diverged before the first capture after initialization
            names[0] += " (no later record)"
        ax.legend(handles, names, fontsize=7, loc="best")


def _end_label(runs: Sequence[Run]) -> str:
    if all(r.status == "completed" for r in runs):
        return "end of training"
    return "end (last record)"


def scale_axis(ax: Axes, metric: str, drawn: Sequence[np.ndarray]) -> None:
    """Each metric its axis: decades on a log axis; n·Var linear from 0 with room above its
    value (so noise of a few percent looks like that); fractions from 0 to 100%."""
    from matplotlib.ticker import PercentFormatter

    stat = LAYER_STATS.get(metric)
    values = np.concatenate([d[np.isfinite(d)] for d in drawn]) if drawn else np.array([])
    if stat is not None and stat.log_scale and (values > 0).any():
        ax.set_yscale("log")
        plain_log_ticks(ax, values)
    elif stat is not None and stat.per_fan_in:
        top = float(values.max()) if len(values) else 1.0
        ax.set_ylim(0, 1.5 * top if top > 0 else 1.0)
    elif metric == "dead_fraction":
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))


def plain_log_ticks(ax: Axes, values: np.ndarray) -> None:
    """Within one decade, a log axis labels its ticks 2.3 rather than 2.3×10⁰."""
    from matplotlib.ticker import ScalarFormatter

    positive = values[np.isfinite(values) & (values > 0)]
    if len(positive) and positive.max() / positive.min() < 10:
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            formatter = ScalarFormatter()
            formatter.set_scientific(False)
            axis(formatter)


def epochs_axis(run: Run) -> tuple[np.ndarray, str]:
    """x for curves: epochs (step / updates per epoch) for an MLP run, steps for a watched one,
    so that runs of different lengths share an axis."""
    per_epoch = run.steps_per_epoch
    if per_epoch is None:
        return run.step.astype(float), "step"
    return run.step / per_epoch, "epoch"


def draw_curve(ax: Axes, runs: Sequence[Run], metric: str, colors: list) -> None:
    """Loss (log axis): each captured training batch, thin, and each epoch's mean, dotted;
    errors in % (linear, from 0)."""
    from matplotlib.ticker import PercentFormatter

    xlabel = "epoch"
    for run, color in zip(runs, colors, strict=True):
        x, xlabel = epochs_axis(run)
        values = getattr(run, metric)
        if metric == "loss":
            train = (run.phase == "train") & np.isfinite(values)
            ax.plot(x[train], values[train], "-", color=color, lw=0.8, alpha=0.6)
            means = np.isin(run.phase, ("init", "epoch", "final")) & np.isfinite(values)
            ax.plot(x[means], values[means], "o:", color=color, ms=3)
        else:
            keep = np.isfinite(values)
            ax.plot(x[keep], values[keep], "o-", color=color, ms=3)
            if metric == "test_error":  # beside it, each epoch's mean training error
                train = run.train_error
                means = np.isin(run.phase, ("epoch", "final")) & np.isfinite(train)
                ax.plot(x[means], train[means], ":", color=color, lw=1.2)
    if not any(np.isfinite(getattr(r, metric)).any() for r in runs):
        ax.text(0.5, 0.5, f"no {METRICS[metric]} recorded", ha="center", va="center",
                transform=ax.transAxes)
    if metric == "loss":
        if any((r.loss > 0).any() for r in runs):
            ax.set_yscale("log")
            plain_log_ticks(ax, np.concatenate([r.loss for r in runs]))
        ax.set_title("loss: line = captured batches, dots = epoch means", fontsize=8)
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        if metric == "test_error":
            ax.set_title("test error (solid), training error, epoch means (dotted)",
                         fontsize=8)
    ax.set_xlabel(xlabel)
    # A watched run's loss is whatever its user passed to watch.step, not initlab's own.
    label = "loss" if metric == "loss" and any(r.kind == "watch" for r in runs) \
        else METRICS[metric]
    ax.set_ylabel(label, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def draw_update_ratio(ax: Axes, runs: Sequence[Run], colors: list) -> None:
    """The update/weight ratio per captured step: the median over layers, and the spread
    from the smallest to the largest layer's (shaded)."""
    xlabel = "epoch"
    for run, color in zip(runs, colors, strict=True):
        if "update_ratio" not in run.layers:
            continue
        x, xlabel = epochs_axis(run)
        values = run.layers["update_ratio"]
        rows = np.flatnonzero(np.isfinite(values).any(axis=1))
        if not len(rows):
            continue
        low, mid, high = (np.nanpercentile(values[rows], q, axis=1) for q in (0, 50, 100))
        ax.plot(x[rows], mid, "-", color=color, lw=1.4)
        ax.fill_between(x[rows], low, high, color=color, alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_title("update / weight ratio: median over layers, min-max shaded", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(axis_label("update_ratio", 30), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def plot_training(runs: Sequence[Run], out: Path, log: Log = lambda message: None,
                  metrics: Sequence[str] = MAP_METRICS) -> Path:
    """``training.png``: loss and errors against epochs for every run, then for each run (up
    to ``MAX_MAP_RUNS``) a row of layer x step maps of the per-layer statistics, from the
    'train' captures (every ``log.every`` steps; without them, the probe records)."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    runs = drawable(runs, log)
    mapped = runs[:MAX_MAP_RUNS]
    if len(runs) > MAX_MAP_RUNS:
        log(f"{out.name}: layer maps for the first {MAX_MAP_RUNS} of {len(runs)} runs; "
            f"plot one run's directory to see its maps")
    keys = [m for m in metrics if any(m in r.layers for r in mapped)]
    columns = max(len(keys), 3)
    fig = plt.figure(figsize=(4.4 * columns, 3.3 * (1 + len(mapped)) + 1.4))
    grid = fig.add_gridspec(1 + len(mapped), columns)
    colors = run_colors(len(runs))
    draw_curve(fig.add_subplot(grid[0, 0]), runs, "loss", colors)
    draw_curve(fig.add_subplot(grid[0, 1]), runs, "test_error", colors)
    if any("update_ratio" in r.layers for r in runs):
        draw_update_ratio(fig.add_subplot(grid[0, 2]), runs, colors)
    for i, (run, color) in enumerate(zip(mapped, colors, strict=False)):
        source = _map_records(run, log)
        for j, metric in enumerate(keys):
            ax = fig.add_subplot(grid[1 + i, j])
            draw_map(fig, ax, run, metric, source, [r for r in mapped if metric in r.layers])
            if j == 0:
                ax.set_ylabel(f"{run_labels(runs)[i].split(':')[0]}\n\n"
                              f"{'layer' if run.kind == 'watch' else 'layer i'}",
                              fontsize=8, color=color)
    finish(fig, runs, colors, out)
    plt.close(fig)
    return out


def _map_records(run: Run, log: Log) -> np.ndarray:
    train = run.phase == "train"
    if train.any():
        return np.flatnonzero(train)
    log(f"{run.display_name}: no captured training steps; its maps show the probe records "
        f"(initialization and epoch ends)")
    return np.arange(len(run.records))


def draw_map(fig, ax: Axes, run: Run, metric: str, rows: np.ndarray,
             column_runs: Sequence[Run]) -> None:
    """One run's statistic as a layer x epoch map, on one color scale per metric across the
    runs shown (log where the statistic spans decades)."""
    from matplotlib.colors import LogNorm, Normalize

    stat = LAYER_STATS[metric]
    ax.set_title(textwrap.shorten(stat.label, 46, placeholder="…"), fontsize=8)
    if metric not in run.layers or not len(rows):
        why = " (no training step captured)" if stat.after_update else ""
        ax.text(0.5, 0.5, f"not recorded{why}", ha="center", va="center",
                transform=ax.transAxes)
        return
    values = run.plotted(metric)[rows]
    finite = np.isfinite(values)
    if not finite.any():
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center",
                transform=ax.transAxes)
        return
    x, xlabel = epochs_axis(run)
    x = x[rows]
    edges = np.concatenate([[x[0] - _half_gap(run, x, 0)], (x[1:] + x[:-1]) / 2,
                            [x[-1] + _half_gap(run, x, -1)]])
    layer_edges = np.arange(values.shape[1] + 1) + 0.5
    every = np.concatenate([r.plotted(metric)[np.isfinite(r.plotted(metric))]
                            for r in column_runs])
    import matplotlib.pyplot as plt

    # exactly 0 on a log scale (e.g. an update that underflowed): black, below the scale
    cmap = plt.get_cmap("viridis").with_extremes(under="black")
    extend = "neither"
    if stat.log_scale and (every > 0).any():
        positive = every[every > 0]
        low = float(positive.min())
        norm = LogNorm(vmin=low, vmax=float(max(positive.max(), low * 1.0001)))
        if (every[np.isfinite(every)] <= 0).any():
            extend = "min"
        values = np.where(np.isfinite(values) & (values <= 0), low / 2, values)
    else:
        low, high = (0.0, 1.0) if metric == "dead_fraction" else (float(every.min()),
                                                                     float(every.max()))
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1)
    mesh = ax.pcolormesh(edges, layer_edges, np.ma.masked_invalid(values.T), norm=norm,
                         cmap=cmap, shading="flat")
    bar = fig.colorbar(mesh, ax=ax, pad=0.02, extend=extend)
    if extend == "min":
        bar.set_label("black: 0", fontsize=7)
    ax.set_xlabel(xlabel)
    if run.kind == "watch" and values.shape[1] <= 30:
        ax.set_yticks(np.arange(1, values.shape[1] + 1), run.layer_names[: values.shape[1]],
                      fontsize=6)


def _half_gap(run: Run, x: np.ndarray, at: int) -> float:
    """Half a cell's width at the first or last capture: half the gap to its neighbour; a
    lone capture gets half of ``log.every`` (in the axis' unit)."""
    if len(x) >= 2:
        return float((x[1] - x[0]) / 2 if at == 0 else (x[-1] - x[-2]) / 2)
    every = (run.config.get("log") or {}).get("every")
    if isinstance(every, bool) or not isinstance(every, (int, float)) \
            or not 0 < every < math.inf:
        every = 1  # a hand-edited config: one step wide
    return 0.5 * float(every) / (run.steps_per_epoch or 1)


def plot_all(runs: Sequence[Run], layers_out: Path, training_out: Path,
             metrics: Sequence[str] | None = None, log: Log = lambda message: None,
             ) -> list[Path]:
    """Both figures; the paths written."""
    return [plot_runs(runs, layers_out, metrics, log), plot_training(runs, training_out, log)]
