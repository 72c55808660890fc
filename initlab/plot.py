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
from typing import TYPE_CHECKING, Any

import numpy as np

from initlab import palette
from initlab.describe import flat_config, run_labels, title_lines, varying
from initlab.errors import UsageError, bounded
from initlab.runs import (
    Run,
    atomic_output,
    check_output_parent,
    is_run_dir,
    output_folder,
    refuse_unsafe_target,
)
from initlab.stats import LAYER_STATS
from initlab.wording import how_it_ended

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
FRACTIONS = ("dead_fraction", "saturated_fraction")  # shown in %, from 0 to 100
BEYOND = "beyond the axis (after a divergence)"  # how values recorded after one are marked
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def use_headless_backend() -> None:
    """Draw into files; and titles, legends and labels are text: a run named ``a$\\foo$`` is
    never read as mathtext (issue 32: user text is never markup; labels use Unicode)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False


def layer_values(run: Run, metric: str, phase: str) -> np.ndarray:
    """A per-layer metric at ``init`` or at the end, as plots show it (n·Var(W_i): times each
    layer's fan-in)."""
    return run.plotted(metric)[run.last() if phase == "final" else run.at(phase)]


def run_label(run: Run) -> str:
    """A run's legend entry on its own: its name and how it ended."""
    return run_labels([run])[0]


def check_metrics(metrics: Sequence[str] | None) -> list[str] | None:
    """The metrics asked for, checked; None when none were (each figure picks its defaults
    for its runs: ``for_runs``)."""
    if not metrics:
        return None
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UsageError(f"--metric: unknown {', '.join(bounded(m, 40) for m in unknown)}; "
                         f"choose from {', '.join(METRICS)}")
    return metrics


def for_runs(metrics: Sequence[str], runs: Sequence[Run]) -> list[str]:
    """Default panels for these runs: a tanh net's failure mode is saturation, not dead
    units (a tanh output is never exactly 0), so ``dead_fraction`` becomes
    ``saturated_fraction`` for tanh runs (both when ReLU and tanh runs are drawn together)."""
    activations = {(r.config.get("model") or {}).get("activation") for r in runs
                   if r.kind == "mlp"}
    saturation = "tanh" in activations and any("saturated_fraction" in r.layers for r in runs)
    chosen: list[str] = []
    for metric in metrics:
        if metric == "dead_fraction" and saturation:
            choices = ["saturated_fraction"] if activations == {"tanh"} else [metric,
                                                                              "saturated_fraction"]
        else:
            choices = [metric]
        chosen += [m for m in choices if m not in chosen]
    return chosen


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
    for path in paths:  # a link, FIFO or folder there (a received run folder): refused now
        refuse_unsafe_target(path)
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
    if run.status == "stopped":
        return "its process ended before the first record"
    return "not started yet" if run.status in ("unknown", "running") \
        else how_it_ended(run.summary)


def plot_runs(runs: Sequence[Run], out: Path, metrics: Sequence[str] | None = None,
              log: Log = lambda message: None) -> Path:
    """``layers.png``: one panel per metric; per-layer statistics against layer i at
    initialization (dashed) and at the end (solid); curves against epochs."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    runs = drawable(runs, log)
    metrics = check_metrics(metrics) or for_runs(DEFAULT_METRICS, runs)
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
    colors = run_colors(runs)
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


def run_colors(runs: Sequence[Run]) -> list:
    """One colour per run, by the values of what varies between them, so that a value has the
    same colour in layers.png, training.png and compare.png whatever the runs' order: the one
    palette's (``initlab.palette``) where only c or only the normalization varies (c = 1, 2,
    3 blue, orange, green; each normalization its own colour, as in the figures), else in
    increasing order. Runs that differ in nothing get one colour each, in order."""
    import matplotlib.pyplot as plt

    keys = varying(runs)
    # The palette names the values that tell the runs apart: c, or the normalization (one
    # run per value, whatever else differs, as between the notebook's layer and batch norm).
    for key, color in (("init.c", palette.c_color), ("model.norm", palette.norm_color)):
        named = [flat_config(r.config).get(key) for r in runs]
        if key in keys and len(set(map(repr, named))) == len(runs) and all(
                v is not None and color(v) != palette.OTHER for v in named):
            return [color(v) for v in named]
    values = [tuple(_scalar(flat_config(r.config).get(k)) for k in keys) if keys else (i,)
              for i, r in enumerate(runs)]
    order = {v: i for i, v in enumerate(sorted(set(values), key=_value_order))}
    n = len(order)
    if n <= 10:
        cycle = list(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    else:
        cmap = plt.get_cmap("viridis")
        cycle = [cmap(i / max(n - 1, 1)) for i in range(n)]
    return [cycle[order[v] % len(cycle)] for v in values]


def _scalar(value: object) -> object:
    """A config value as a colour key: a list or mapping (a hand-edited config.yaml) by its
    text, so that it can be hashed and ordered like any other value."""
    return value if value is None or isinstance(value, int | float | str) else repr(value)


def _value_order(values: tuple) -> tuple:
    """Numbers before text before null, numbers by size."""
    return tuple((0, float(v), "") if isinstance(v, int | float) and not isinstance(v, bool)
                 else (2, 0.0, "") if v is None else (1, 0.0, str(v)) for v in values)


def is_diverged(run: Run) -> bool:
    return run.status == "diverged"


def before_divergence(run: Run) -> np.ndarray:
    """Per record, whether it was measured before its run diverged: every record of a run
    that did not; a diverged run's up to its ``diverged_step`` (all that ``initlab run``
    keeps; a watched run records on past it). These are drawn like any run's and set the axes
    (c = 3's exploding initialization is the lecture's point); what came after is marked
    where it leaves them, never scaled to."""
    at = run.summary.get("diverged_step") if is_diverged(run) else None
    if at is None:
        return np.ones(len(run.records), dtype=bool)
    return run.step < at


def set_scale(ax: Axes, values: np.ndarray, log: bool) -> None:
    """Fix the y axis to ``values`` (the runs that did not diverge), with a margin, so that
    what is drawn beyond them later does not rescale it."""
    finite = values[np.isfinite(values)]
    if log:
        finite = finite[finite > 0]
    if not len(finite):
        return
    low, high = float(finite.min()), float(finite.max())
    if log:
        ax.set_ylim(low / 1.6, high * 1.6)
    else:
        pad = 0.06 * (high - low) if high > low else max(abs(high) * 0.1, 1e-12)
        ax.set_ylim(low - pad, high + pad)


def mark_beyond(ax: Axes, x: np.ndarray, y: np.ndarray, color: object) -> bool:
    """Values of a diverged run beyond the axis, marked at its edge (▲ above, ▼ below) rather
    than stretching it; True if any was."""
    low, high = ax.get_ylim()
    marked = False
    for beyond, edge, marker in ((y > high, high, "^"), (y < low, low, "v")):
        beyond = beyond & np.isfinite(y)
        if beyond.any():
            ax.plot(x[beyond], np.full(int(beyond.sum()), edge), marker, color=color, ms=6,
                    clip_on=False, zorder=5)
            marked = True
    return marked


def finish(fig, runs: Sequence[Run], colors: list, out: Path, note: str = "") -> None:
    """Title (and a ``note`` below it, e.g. which runs a panel leaves out), one legend for the
    runs below the panels, and the file."""
    from matplotlib.lines import Line2D

    fig.suptitle("\n".join([*title_lines(runs), *([note] if note else [])]), fontsize=11)
    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    ncol = 1 if len(runs) <= 3 else min(3, math.ceil(len(runs) / 3))
    fig.legend(handles, run_labels(runs), loc="lower center", ncol=ncol, fontsize=8,
               frameon=False)
    legend_rows = math.ceil(len(runs) / ncol)
    clip_huge(fig)
    height = fig.get_size_inches()[1]  # room in inches: the legend below, the title above
    fig.tight_layout(rect=(0, min((0.1 + 0.17 * legend_rows) / height, 0.45), 1,
                           1 - 0.5 / height))
    save(fig, out, dpi=110)


PLOTTABLE = 1e300  # beyond this a linear axis's span overflows a float (1e308 - -1e308)


def clip_huge(fig) -> None:
    """Finite values too large for an axis (a record saying 1e308) drawn at ±1e300, so that
    the figure is drawn rather than matplotlib's OverflowError."""
    for ax in fig.axes:
        clipped = False
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            if np.any(np.abs(y[np.isfinite(y)]) > PLOTTABLE):
                line.set_ydata(np.clip(y, -PLOTTABLE, PLOTTABLE))
                clipped = True
        if clipped:
            ax.relim()
            ax.autoscale_view()


def _within_plottable(values: np.ndarray) -> np.ndarray:
    """Finite values clipped to ±PLOTTABLE (a colour scale's ticks overflow beyond it)."""
    return np.where(np.isfinite(values), np.clip(values, -PLOTTABLE, PLOTTABLE), values)


def save(fig, out: Path, **options: Any) -> None:
    """A figure into ``out`` (its format from the suffix) through initlab's one writer: a
    temporary file renamed over it, never written through a link."""
    output_folder(out.parent)
    try:
        with atomic_output(out, sync=False) as f:
            fig.savefig(f, format=out.suffix.lstrip(".").lower() or "png", **options)
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
    off_scale: list[tuple[np.ndarray, np.ndarray, object]] = []  # lines after a divergence
    for run, color in zip(runs, colors, strict=True):
        if metric not in run.layers:
            log(f"{run.display_name}: {metric} not recorded; not drawn in its panel")
            continue
        values = run.plotted(metric)
        if stat is not None and stat.per_fan_in:
            values = np.where(weight_matrices(run)[: values.shape[1]], values, np.nan)
        x = x_of_layers(ax, run, values.shape[1])
        usable = ~np.all(np.isnan(values), axis=1)
        init = initialization_rows(run, usable)
        end = run.last()
        while end >= 0 and not usable[end]:  # e.g. update_ratio: only in 'train' records
            end -= 1
        lines: list[tuple[int, np.ndarray]] = []
        # a watched model's few layers, some without a value (a norm's gain has no n·Var):
        # markers, so that a layer between two gaps still shows
        marker = "o" if run.kind == "watch" else ""
        if len(init):
            ax.plot(x, values[init[-1]], "--", color=color, alpha=0.65, lw=1.2, marker=marker,
                    ms=3)
            lines.append((init[-1], values[init[-1]]))
            dashed = True
        if end >= 0 and (not len(init) or end != init[-1]):
            ax.plot(x, values[end], "-", color=color, lw=1.6, marker=marker, ms=3)
            lines.append((end, values[end]))
            solid = True
        before = before_divergence(run)
        drawn += [y for row, y in lines if before[row]]
        off_scale += [(x, y, color) for row, y in lines if not before[row]]
    if not any(np.isfinite(d).any() for d in [*drawn, *(y for _, y, _ in off_scale)]):
        ax.text(0.5, 0.5, f"no finite {metric} recorded", ha="center", va="center",
                transform=ax.transAxes)  # say so, never an empty panel
    scale_axis(ax, metric, drawn)
    beyond = False
    if off_scale:  # the axis is set by what came before; values beyond it are marked
        if not (stat is not None and (stat.per_fan_in or metric in FRACTIONS)):
            set_scale(ax, np.concatenate(drawn) if drawn else np.array([]),
                      ax.get_yscale() == "log")
        for x, y, color in off_scale:
            beyond = mark_beyond(ax, x, y, color) or beyond
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
        if beyond:
            handles.append(Line2D([], [], color="gray", marker="^", ls=""))
            names.append(BEYOND)
        ax.legend(handles, names, fontsize=7, loc="best")


def initialization_rows(run: Run, usable: np.ndarray) -> np.ndarray:
    """The records that measured the initialization: the 'init' record of an initlab run;
    for a watched run, its step 1 (the first forward pass and gradient, before any update)."""
    init = np.flatnonzero((run.phase == "init") & usable)
    if not len(init) and run.kind == "watch":
        init = np.flatnonzero((run.step == 1) & usable)
    return init


def weight_matrices(run: Run) -> np.ndarray:
    """Per layer, whether its weight is a matrix (n·Var(W) means something): not a norm
    layer's gain, a vector whose n·Var would read 0 at initialization."""
    if run.kind != "watch":
        return np.ones(len(run.fan_ins), dtype=bool)
    layers = (run.config.get("watch") or {}).get("layers") or []
    return np.array([len(layer.get("shape") or []) >= 2 for layer in layers], dtype=bool)


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
        plain_labels_within_a_decade(ax, values)
    elif stat is not None and stat.per_fan_in:
        top = float(values.max()) if len(values) else 1.0
        ax.set_ylim(0, 1.5 * top if top > 0 else 1.0)
    elif metric in FRACTIONS:
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))


def plain_labels_within_a_decade(ax: Axes, values: np.ndarray) -> None:
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
    kept: list[np.ndarray] = []  # what sets the axis: every record before a divergence
    off_scale: list[tuple[np.ndarray, np.ndarray, object]] = []  # and after one: marked
    for run, color in zip(runs, colors, strict=True):
        x, xlabel = epochs_axis(run)
        values = getattr(run, metric)
        if metric == "loss":
            train = (run.phase == "train") & np.isfinite(values)
            ax.plot(x[train], values[train], "-", color=color, lw=0.8, alpha=0.6)
            means = np.isin(run.phase, ("init", "epoch", "final")) & np.isfinite(values)
            ax.plot(x[means], values[means], "o:", color=color, ms=3)
            drawn = [(values, train), (values, means)]
        else:
            keep = np.isfinite(values)
            ax.plot(x[keep], values[keep], "o-", color=color, ms=3)
            drawn = [(values, keep)]
            if metric == "test_error":  # beside it, each epoch's mean training error
                train = run.train_error
                means = np.isin(run.phase, ("epoch", "final")) & np.isfinite(train)
                ax.plot(x[means], train[means], ":", color=color, lw=1.2)
                drawn.append((train, means))
        before = before_divergence(run)
        for series, rows in drawn:
            kept.append(series[rows & before])
            after = rows & ~before
            if after.any():
                off_scale.append((x[after], series[after], color))
    if not any(np.isfinite(getattr(r, metric)).any() for r in runs):
        ax.text(0.5, 0.5, f"no {METRICS[metric]} recorded", ha="center", va="center",
                transform=ax.transAxes)
    if metric == "loss":
        if any((r.loss > 0).any() for r in runs):
            ax.set_yscale("log")
            plain_labels_within_a_decade(ax, np.concatenate(kept))
        ax.set_title("loss: line = captured batches, dots = epoch means", fontsize=8)
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        if metric == "test_error":
            ax.set_title("test error (solid), training error, epoch means (dotted)",
                         fontsize=8)
    if off_scale and kept:  # a loss after a divergence (thousands, or inf) would flatten the rest
        values = np.concatenate(kept)
        if metric == "loss":
            set_scale(ax, values, ax.get_yscale() == "log")
        elif np.isfinite(values).any():
            ax.set_ylim(0, max(float(np.nanmax(values)) * 1.1, 0.01))
        if any([mark_beyond(ax, x, y, color) for x, y, color in off_scale]):
            from matplotlib.lines import Line2D

            ax.legend([Line2D([], [], color="gray", marker="^", ls="")], [BEYOND], fontsize=7,
                      loc="best")
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
    names = {id(r): label.split(": ")[0] for r, label in zip(runs, run_labels(runs),
                                                            strict=True)}
    # A map needs two captures or more (one has no extent in time: e.g. diverged at step 2).
    single = [r for r in runs if len(_map_rows(r)) < 2]
    mappable = [r for r in runs if len(_map_rows(r)) >= 2]
    mapped, omitted = mappable[:MAX_MAP_RUNS], mappable[MAX_MAP_RUNS:]
    notes = []
    if omitted:
        notes.append(f"layer maps for {MAX_MAP_RUNS} of {len(mappable)} runs; not drawn: "
                     f"{bounded(', '.join(names[id(r)] for r in omitted), 120)}")
    if single:
        notes.append("no layer maps for " + bounded(", ".join(
            f"{names[id(r)]} ({outcome_or_status(r)}: one record)" for r in single), 120))
    note = "; ".join(notes)
    if note:
        log(f"{out.name}: {note}" + ("; plot one run's directory to see its maps"
                                     if omitted else ""))
    keys = [m for m in for_runs(metrics, mapped) if any(m in r.layers for r in mapped)]
    columns = max(len(keys), 3)
    fig = plt.figure(figsize=(4.4 * columns, 3.3 * (1 + len(mapped)) + 1.4))
    grid = fig.add_gridspec(1 + len(mapped), columns)
    colors = run_colors(runs)
    # The curves share the top row's width, whatever the number of map columns: no empty slot.
    curves = ["loss"] + (["test_error"] if any(np.isfinite(r.test_error).any() for r in runs)
                         else [])
    ratio = any("update_ratio" in r.layers for r in runs)
    top = grid[0, :].subgridspec(1, len(curves) + ratio)
    for j, metric in enumerate(curves):
        draw_curve(fig.add_subplot(top[0, j]), runs, metric, colors)
    if ratio:
        draw_update_ratio(fig.add_subplot(top[0, len(curves)]), runs, colors)
    color_of = {id(r): c for r, c in zip(runs, colors, strict=True)}
    for i, run in enumerate(mapped):
        source = _map_records(run, log)
        for j, metric in enumerate(keys):
            ax = fig.add_subplot(grid[1 + i, j])
            draw_map(fig, ax, run, metric, source, [r for r in mapped if metric in r.layers])
            if j == 0:
                ax.set_ylabel(f"{names[id(run)]}\n\n"
                              f"{'layer' if run.kind == 'watch' else 'layer i'}",
                              fontsize=8, color=color_of[id(run)])
    finish(fig, runs, colors, out, note)
    plt.close(fig)
    return out


def _map_rows(run: Run) -> np.ndarray:
    """The records a run's maps show: its captured training steps, else its probe records."""
    train = run.phase == "train"
    return np.flatnonzero(train) if train.any() else np.arange(len(run.records))


def _map_records(run: Run, log: Log) -> np.ndarray:
    if not (run.phase == "train").any():
        log(f"{run.display_name}: no captured training steps; its maps show the probe "
            f"records (initialization and epoch ends)")
    return _map_rows(run)


def outcome_or_status(run: Run) -> str:
    return _why_empty(run) if is_diverged(run) else run.status


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
                transform=ax.transAxes, fontsize=8)
        ax.set_axis_off()
        return
    if len(rows) < 2:  # one capture has no extent in time: say so, never a made-up axis
        what = (f"diverged at step {run.summary.get('diverged_step')}: "
                if is_diverged(run) else "")
        ax.text(0.5, 0.5, f"{what}one record, no map over training", ha="center",
                va="center", transform=ax.transAxes, fontsize=8)
        ax.set_axis_off()
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
    # The scale: every record before a divergence; what came after shows red beyond it.
    every = np.concatenate([v[np.isfinite(v)] for v in (
        r.plotted(metric)[before_divergence(r)] for r in column_runs)])
    values, every = _within_plottable(values), _within_plottable(every)
    own = values[np.isfinite(values)]
    if not len(every):
        every = own
    import matplotlib.pyplot as plt

    # exactly 0 on a log scale (e.g. an update that underflowed): black, below the scale
    # beyond the scale (a diverged run's values): red
    cmap = plt.get_cmap("viridis").with_extremes(under="black", over="red")
    extend = "neither"
    if stat.log_scale and (every > 0).any():
        positive = every[every > 0]
        low, high = float(positive.min()), float(max(positive.max(), positive.min() * 1.0001))
        norm = LogNorm(vmin=low, vmax=high)
        if (every[np.isfinite(every)] <= 0).any() or (own <= 0).any():
            extend = "min"
        values = np.where(np.isfinite(values) & (values <= 0), low / 2, values)
    else:
        low, high = (0.0, 1.0) if metric in FRACTIONS else (float(every.min()),
                                                              float(every.max()))
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1)
    if (own > norm.vmax).any():
        extend = "both" if extend == "min" else "max"
    mesh = ax.pcolormesh(edges, layer_edges, np.ma.masked_invalid(values.T), norm=norm,
                         cmap=cmap, shading="flat")
    bar = fig.colorbar(mesh, ax=ax, pad=0.02, extend=extend)
    bar.set_label({"min": "black: 0", "max": "red: beyond the scale",
                   "both": "black: 0, red: beyond"}.get(extend, ""), fontsize=7)
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
