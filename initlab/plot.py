"""Draw per-layer statistics from run directories. Reads saved runs only; never trains."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from initlab.config import ModelConfig
from initlab.errors import UsageError
from initlab.model import layer_widths
from initlab.runs import Run
from initlab.stats import LAYER_STATS

METRICS = {**{key: stat.label for key, stat in LAYER_STATS.items()}, "test_error": "test error"}
DEFAULT_METRICS = ("act_norm", "grad_norm", "weight_var")


def use_headless_backend() -> None:
    import matplotlib

    matplotlib.use("Agg")


def layer_values(run: Run, metric: str, phase: str) -> np.ndarray:
    """A per-layer metric at ``init`` or at the end, as plots show it (n·Var(W_i): times each
    layer's fan-in)."""
    values = run.layer_stat(metric, phase)
    stat = LAYER_STATS.get(metric)
    if stat is not None and stat.per_fan_in:
        values = values * fan_in(run)[: len(values)]
    return values


def fan_in(run: Run) -> np.ndarray:
    """Each layer's fan-in n_in, from the run's config."""
    model = run.config.get("model", {})
    shape = ModelConfig(depth=int(model.get("depth", 1)), width=int(model.get("width", 1)))
    return np.array([n_in for n_in, _ in layer_widths(shape)], dtype=float)


def run_label(run: Run) -> str:
    c = run.config.get("init", {}).get("c")
    label = run.name if run.path.parent.name != run.name else run.name
    status = run.summary.get("status")
    if status == "diverged":
        label += f" (diverged at step {run.summary.get('diverged_step')})"
    return f"{label}, c={c}" if c is not None and "c=" not in label else label


def plot_runs(runs: Sequence[Run], out: Path, metrics: Sequence[str] | None = None) -> None:
    """One panel per metric against layer: init dashed, final solid; test error over steps."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    metrics = list(metrics or DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UsageError(f"--metric: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(METRICS)}")
    empty = [str(run.path) for run in runs if not run.records]
    if empty:
        raise UsageError(f"nothing to plot yet: no records in {', '.join(empty)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for n, run in enumerate(runs):
            color = colors[n % len(colors)]
            if metric == "test_error":
                mask = ~np.isnan(run.test_error)
                ax.plot(run.step[mask], 100 * run.test_error[mask], color=color,
                        label=run_label(run))
                ax.set_xlabel("step")
                ax.set_ylabel("test error (%)")
                continue
            layers = np.arange(1, run.layers[metric].shape[1] + 1)
            ax.plot(layers, layer_values(run, metric, "init"), "--", color=color, alpha=0.7)
            ax.plot(layers, layer_values(run, metric, "final"), "-", color=color,
                    label=run_label(run))
            ax.set_yscale("log")
            ax.set_xlabel("layer i")
        ax.set_title(METRICS[metric])
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, title="dashed: init, solid: final")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
