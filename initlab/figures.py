"""``initlab figures``: every lecture figure redrawn from real runs, every lecture claim checked.

``FIGURES`` is the one figure list. A figure is a recipe: the config files under
``configs/figures/`` whose runs it reads, an optional measuring step (inference on a run's saved
weights, its result saved as JSON inside that run directory), a plotting function and a claims
function. Plotting and claims read run directories only and never train.

Runs are cached as ``<cache>/<config hash>/`` (a plain run directory). ``ensure_runs`` collects
every member config the requested figures need, dedupes them by hash, and trains only the
missing ones, all in one ``train_members`` call so members of one shape stack into one model.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from initlab.config import RunConfig, config_hash, dump_yaml, load_experiment, set_dotted
from initlab.errors import UsageError
from initlab.experiment import (
    ProgressFactory,
    group_indices,
    quiet_progress,
    train_written_members,
    training_cost,
)
from initlab.jobs import Job, run_jobs
from initlab.plot import layer_values, use_headless_backend
from initlab.report import Claim, write_report
from initlab.runs import (
    CONFIG_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    Run,
    RunWriter,
    atomic_write_text,
    load_run,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "figures"
DEFAULT_CACHE = Path("runs") / "figures-cache"
REPORT_FILE = "REPORT.md"
DONE = ("completed", "diverged")  # a cached run in any other state is retrained from scratch
# Quick mode: a smoke test of the whole pipeline, not the reference numbers.
QUICK_TRAIN, QUICK_TEST, QUICK_EPOCHS = 2048, 1000, 2
TARGET = 0.05  # the lecture's test-error target

Log = Callable[[str], None]


# --- Modes and inputs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    quick: bool = False
    overrides: tuple[str, ...] = ()  # --set, applied to every figure's config
    max_group: int | None = None  # at most this many members per stacked model
    jobs: int = 1  # groups (or sweeps) trained at once, each in its own worker process

    @property
    def banner(self) -> str:
        """Said in every title and in the report when the numbers are not the reference ones."""
        if not self.quick:
            return ""
        return f"QUICK (subset, {QUICK_EPOCHS} epochs) — not the reference numbers"

    def adapt(self, cfg: RunConfig) -> RunConfig:
        if not self.quick:
            return cfg
        cfg = set_dotted(cfg, "data.train_subset", QUICK_TRAIN)
        cfg = set_dotted(cfg, "data.test_subset", QUICK_TEST)
        return set_dotted(cfg, "train.epochs", min(cfg.train.epochs, QUICK_EPOCHS))


@dataclass
class FigureInput:
    """What a figure's functions see: its run directories, grouped by config file."""

    name: str
    paths: dict[str, list[Path]]  # config stem -> member run directories, in sweep order
    banner: str = ""
    _loaded: dict[str, list[Run]] = field(default_factory=dict, repr=False)

    def runs(self, stem: str) -> list[Run]:
        if stem not in self._loaded:
            self._loaded[stem] = [load_run(p) for p in self.paths[stem]]
        return self._loaded[stem]


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str  # what it shows: the lecture's statement it illustrates
    configs: tuple[str, ...]  # stems of configs/figures/*.yaml whose runs it reads
    plot: Callable[[FigureInput], Any]  # -> a matplotlib Figure
    claims: Callable[[FigureInput], list[Claim]]
    measure: Callable[[FigureInput, str | None], None] | None = None  # (input, data_root)
    # Recipes that the shared batched cache cannot express (a learning rate tied to the batch
    # size, a 4-process launch) produce their own run directories: config stem -> members.
    produce: Callable[[Mode, Path, str | None, ProgressFactory], dict[str, list[Path]]] | None \
        = None


# --- Reading runs -----------------------------------------------------------------------------


def cfg_value(run: Run, dotted: str) -> Any:
    section, _, key = dotted.partition(".")
    return run.config.get(section, {}).get(key)


def c_of(run: Run) -> float:
    return float(cfg_value(run, "init.c"))


def by_c(runs: Sequence[Run]) -> dict[float, Run]:
    return {round(c_of(r), 6): r for r in runs}


def depth_of(run: Run) -> int:
    return int(cfg_value(run, "model.depth") or 50)


def stat(run: Run | None, key: str, phase: str) -> np.ndarray:
    """A per-layer statistic at ``init`` or at the end, NaN where the run cannot give it (so a
    claim on it FAILs with n/a rather than crashing the report)."""
    if run is None:
        return np.full(1, np.nan)
    try:
        return layer_values(run, key, phase)
    except (KeyError, IndexError):
        return np.full(depth_of(run), np.nan)


def span(values: np.ndarray) -> float:
    """max / min over layers."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.isnan(values).any() or values.min() <= 0:
        return math.nan
    return float(values.max() / values.min())


def final_test_error(run: Run | None) -> float:
    if run is None:
        return math.nan
    err = run.summary.get("final_test_error")
    if err is None and len(run.records):
        err = run.test_error[run.last()]
    return math.nan if err is None else float(err)


def status_mark(run: Run) -> str:
    status = run.summary.get("status")
    if status == "diverged":
        return f" — diverged at step {run.summary.get('diverged_step')}"
    return "" if status in DONE else f" — {status or 'unfinished'}"


def c_label(run: Run) -> str:
    c = c_of(run)
    return f"c = {c:g} (Var W_i = {c:g}/n){status_mark(run)}"


def epochs_note(run: Run) -> str:
    """How long a run trained and what it reached: for titles and claim texts."""
    s = run.summary
    reached, err = s.get("reached_target_epoch"), final_test_error(run)
    if reached is not None:
        return f"{TARGET:.0%} at epoch {reached}"
    if s.get("status") == "diverged":
        return f"diverged at step {s.get('diverged_step')}"
    return f"not reached in {s.get('epochs')} epochs ({err:.1%})"


def reached_note(runs: Sequence[Run]) -> str:
    """One short line: what each c reached, e.g. "5% at epoch: c=1.7: 14, c=2: 12"."""
    parts = []
    for run in runs:
        s, reached = run.summary, run.summary.get("reached_target_epoch")
        if reached is not None:
            parts.append(f"c={c_of(run):g}: epoch {reached}")
        elif s.get("status") == "diverged":
            parts.append(f"c={c_of(run):g}: diverged")
        else:
            parts.append(f"c={c_of(run):g}: not in {s.get('epochs')} ep")
    return f"{TARGET:.0%} test error reached at: " + ", ".join(parts)


def training_setup(run: Run) -> str:
    opt, lr = cfg_value(run, "train.optimizer"), cfg_value(run, "train.lr")
    epochs = cfg_value(run, "train.epochs")
    return f"{'SGD' if opt == 'sgd' else 'Adam'} lr {lr:g}, ≤ {epochs} epochs"


def measure_path(run_dir: Path, figure: str) -> Path:
    return run_dir / f"measure-{figure}.json"


def read_measure(run: Run, figure: str) -> dict[str, Any] | None:
    path = measure_path(run.path, figure)
    return json.loads(path.read_text()) if path.exists() else None


# --- Drawing helpers --------------------------------------------------------------------------

C_COLORS = {1.0: "tab:blue", 1.7: "tab:orange", 2.0: "tab:green", 2.3: "tab:red",
            3.0: "tab:purple"}
LAYER_LABELS = {"act_norm": "activation norm ‖Z_i‖₂", "grad_norm": "gradient norm ‖∇W_i ℓ‖",
                "weight_var": "n·Var(W_i)", "weight_rel_change": "‖W_i − W_i⁽⁰⁾‖ / ‖W_i⁽⁰⁾‖"}


def c_color(run: Run) -> str:
    return C_COLORS.get(round(c_of(run), 6), "tab:gray")


def new_figure(inp: FigureInput, title: str, ncols: int, nrows: int = 1,
               size: tuple[float, float] = (5.2, 4.0), **kw: Any) -> tuple[Any, np.ndarray]:
    use_headless_backend()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.5),
                             squeeze=False, layout="constrained", **kw)
    fig.suptitle(f"{inp.banner}\n{title}" if inp.banner else title,
                 color="darkred" if inp.banner else "black")
    return fig, axes


def layer_axis(ax: Any, key: str, log: bool = True) -> None:
    ax.set_xlabel("layer i")
    ax.set_ylabel(LAYER_LABELS[key])
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


def show_decades(ax: Any, decades: float = 2.0) -> None:
    """Widen a log axis to at least ``decades`` around its data: a curve that stays within a
    few percent then looks flat, as it is, and not like noise blown up to fill the panel."""
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10**decades:
        centre = math.sqrt(low * high)
        ax.set_ylim(centre / 10 ** (decades / 2), centre * 10 ** (decades / 2))


def plot_layers(ax: Any, run: Run, key: str, phase: str, **kw: Any) -> None:
    values = stat(run, key, phase)
    ax.plot(np.arange(1, len(values) + 1), values, color=c_color(run), **kw)


def save_figure(fig: Any, out: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    for ax in fig.axes:  # only now: every panel of a shared axis has its data
        if ax.get_yscale() == "log" and ax.get_ylabel() in LAYER_LABELS.values():
            show_decades(ax)
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, dpi=110)
    with plt.rc_context({"svg.hashsalt": "initlab"}):  # stable ids: small diffs on re-runs
        fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return [png, svg]


# --- Figures 1, 3, 4: norms at initialization ---------------------------------------------------


def plot_init_norms(stem: str, what: str) -> Callable[[FigureInput], Any]:
    def plot(inp: FigureInput) -> Any:
        fig, axes = new_figure(inp, f"At initialization, {what}: 50 layers of width 100, "
                               "ReLU, W_i ~ N(0, c/n), MNIST", 2)
        for ax, key in zip(axes[0], ("act_norm", "grad_norm"), strict=True):
            for n, run in enumerate(inp.runs(stem)):
                # Each later c drawn thinner: curves that coincide stay visible, nested.
                plot_layers(ax, run, key, "init", label=c_label(run), linewidth=3.2 - n)
            layer_axis(ax, key)
        axes[0][0].legend(fontsize=8)
        return fig

    return plot


def init_norm_claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    runs = by_c(inp.runs("init-norms"))
    act = {c: stat(runs.get(c), "act_norm", "init") for c in (1.0, 2.0, 3.0)}
    grad = {c: stat(runs.get(c), "grad_norm", "init") for c in (1.0, 2.0, 3.0)}

    def end_ratio(c: float) -> float:
        return float(act[c][-1] / act[c][0])

    claims = [
        Claim(f, "c = 2: ‖Z_50‖ / ‖Z_1‖ at init is within 10×", end_ratio(2.0), "in",
              (0.1, 10.0)),
        Claim(f, "c = 1: ‖Z_50‖ / ‖Z_1‖ at init (activations vanish)", end_ratio(1.0), "<",
              1e-4),
        Claim(f, "c = 3: ‖Z_50‖ / ‖Z_1‖ at init (activations explode)", end_ratio(3.0), ">",
              1e3),
    ]
    for c in (1.0, 2.0, 3.0):
        claims.append(Claim(f, f"c = {c:g}: gradient norms at init span (max/min over layers "
                            "1..50): backward and forward factors cancel", span(grad[c]), "<",
                            30.0))
    act_spans = [span(act[c]) for c in (1.0, 2.0, 3.0)]
    widest = math.nan if any(math.isnan(s) for s in act_spans) else max(act_spans)
    claims.append(Claim(f, "activation norms at init span (max/min over layers, largest over "
                        "c = 1, 2, 3): beyond the gradients' 30×, up to 1e8", widest, "in",
                        (30.0, 1e8)))
    ratio = grad[3.0] / grad[1.0]
    claims.append(Claim(f, "gradient norm c = 3 / c = 1 at init (smallest over layers)",
                        float(np.min(ratio)) if not np.isnan(ratio).any() else math.nan, ">",
                        1e6))
    return claims


def normalized_init_claims(stem: str, norm: str) -> Callable[[FigureInput], list[Claim]]:
    def claims(inp: FigureInput) -> list[Claim]:
        acts = [stat(r, "act_norm", "init") for r in inp.runs(stem)]
        return [Claim(inp.name, f"{norm} norm at init: activation norms for c = 1, 2, 3 agree "
                      "within 5% at every layer (largest max/min − 1 over layers)",
                      agreement(acts), "<", 0.05, unit="%")]

    return claims


def agreement(curves: Sequence[np.ndarray]) -> float:
    """Largest relative spread across curves at any layer: max over layers of max/min − 1."""
    if len(curves) < 2 or any(len(c) != len(curves[0]) for c in curves):
        return math.nan
    stacked = np.vstack(curves)
    if np.isnan(stacked).any() or (stacked <= 0).any():
        return math.nan
    return float((stacked.max(axis=0) / stacked.min(axis=0)).max() - 1.0)


# --- Figure 2 and 6: trained to 5% with SGD ---------------------------------------------------


def plot_trained_variance(inp: FigureInput) -> Any:
    runs = inp.runs("trained-variance")
    fig, axes = new_figure(inp, f"Trained with {training_setup(runs[0])} until {TARGET:.0%} "
                           f"test error — dashed: init, solid: trained\n{reached_note(runs)}", 3)
    for ax, key in zip(axes[0], ("act_norm", "grad_norm", "weight_var"), strict=True):
        for run in runs:
            plot_layers(ax, run, key, "init", linestyle="--", alpha=0.8)
            plot_layers(ax, run, key, "final", label=c_label(run))
        layer_axis(ax, key, log=key != "weight_var")
    axes[0][0].legend(fontsize=8)
    return fig


def trained_variance_claims(inp: FigureInput) -> list[Claim]:
    claims = []
    for run in inp.runs("trained-variance"):
        c = c_of(run)
        claims.append(Claim(inp.name, f"c = {c:g} reaches {TARGET:.0%} test error "
                            f"({training_setup(run)}; {epochs_note(run)})",
                            final_test_error(run), "<=", TARGET, unit="%"))
    for run in inp.runs("trained-variance"):
        init, final = stat(run, "weight_var", "init"), stat(run, "weight_var", "final")
        change = np.abs(final / init - 1.0)
        claims.append(Claim(inp.name, f"c = {c_of(run):g}: n·Var(W_i) after training vs at "
                            "init, |ratio − 1| at the median layer", median(change), "<", 0.05,
                            unit="%"))
    return claims


def median(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return math.nan if values.size == 0 or np.isnan(values).any() else float(np.median(values))


def plot_weights_move_little(inp: FigureInput) -> Any:
    import matplotlib as mpl

    runs = inp.runs("trained-variance")
    fig, axes = new_figure(inp, "Relative weight change per layer over training "
                           f"({training_setup(runs[0])}, until {TARGET:.0%} test error)\n"
                           f"{reached_note(runs)}", len(runs), sharey=True)
    cmap = mpl.colormaps["viridis"]
    for ax, run in zip(axes[0], runs, strict=True):
        epochs = [i for i, p in enumerate(run.phase) if p == "epoch"]
        for n, index in enumerate(epochs):
            values = run.layers["weight_rel_change"][index]
            last = n == len(epochs) - 1
            ax.plot(np.arange(1, len(values) + 1), values,
                    color=cmap(n / max(len(epochs) - 1, 1)), linewidth=2.2 if last else 1.0,
                    label=f"epoch {int(run.epoch[index])}" if last or n == 0 else None)
        final = stat(run, "weight_rel_change", "final")
        ax.set_title(f"{c_label(run)}, {final_test_error(run):.1%} test error\n"
                     f"median over layers after training: {median(final):.3g}", fontsize=9)
        ax.axhline(0.2, color="black", linestyle="--", linewidth=1, label="0.2 (claim)")
        layer_axis(ax, "weight_rel_change")
        ax.legend(fontsize=8, title="colour: epoch", title_fontsize=8)
    return fig


def weights_move_claims(inp: FigureInput) -> list[Claim]:
    return [Claim(inp.name, f"c = {c_of(r):g}: relative weight change ‖W_i − W_i⁽⁰⁾‖/‖W_i⁽⁰⁾‖ "
                  "after training, median over layers",
                  median(stat(r, "weight_rel_change", "final")), "<", 0.2)
            for r in inp.runs("trained-variance")]


# --- Figure 5: zero initialization --------------------------------------------------------------


def load_member_model(run: Run) -> tuple[Any, RunConfig, dict[str, Any]]:
    """The trained K=1 model of a run directory, from its checkpoint (inference only)."""
    from initlab.checkpoint import load_member, load_state
    from initlab.config import config_from_dict
    from initlab.model import StackedMLP

    cfg = config_from_dict(run.config, str(run.path / CONFIG_FILE))
    state = load_state(run.path)
    model = StackedMLP(cfg.model, 1)
    load_member(model, 0, state)
    return model, cfg, state


def load_data(cfg: RunConfig, data_root: str | None) -> Any:
    from initlab.data import load_mnist

    root = data_root if data_root is not None else cfg.data.root
    d = cfg.data
    return load_mnist(root, d.scaling, "cpu", d.train_subset, d.test_subset, log=lambda m: None)


def unmeasured(inp: FigureInput, stem: str) -> Iterator[tuple[Run, Path]]:
    """The runs of a config whose measurement for this figure is not saved yet, with the path
    it goes to (measurements are cached beside the run, like the runs themselves)."""
    for path in inp.paths[stem]:
        target = measure_path(path, inp.name)
        if not target.exists():
            yield load_run(path), target


def measure_zero_init(inp: FigureInput, data_root: str | None) -> None:
    """Largest |weight| after training, and what the output bias learned vs class frequencies."""
    import torch

    for run, target in unmeasured(inp, "zero-init"):
        model, cfg, _ = load_member_model(run)
        data = load_data(cfg, data_root)
        with torch.no_grad():
            max_abs = max(float(model.weight(i).abs().max()) for i in range(model.depth))
            bias = model.bias(model.depth - 1)[0, 0].clone()
        freqs = torch.bincount(data.train_y, minlength=bias.numel()).double()
        freqs /= freqs.sum()
        result = {
            "max_abs_weight": max_abs,
            "output_bias_softmax": torch.softmax(bias.double(), dim=0).tolist(),
            "class_frequencies": freqs.tolist(),
            "label_entropy": float(-(freqs * freqs.log()).sum()),
        }
        atomic_write_text(target, json.dumps(result, indent=1) + "\n")


ZERO_LOSS_BAND = 0.05  # "near log 10": within this of it


def train_records(run: Run) -> list[int]:
    return [i for i, p in enumerate(run.phase) if p == "train"]


def plot_zero_init(inp: FigureInput) -> Any:
    run = inp.runs("zero-init")[0]
    measured = read_measure(run, inp.name) or {}
    fig, axes = new_figure(inp, f"W = 0 ({training_setup(run)}): every weight gradient is "
                           "exactly zero, only the output bias learns", 3)
    ax = axes[0][0]
    steps = train_records(run)
    ax.plot(run.step[steps], run.loss[steps], color="tab:blue", linewidth=0.8,
            label=f"training loss (every step){status_mark(run)}")
    ax.axhline(math.log(10), color="black", linestyle="--", linewidth=1, label="log 10")
    if "label_entropy" in measured:
        ax.axhline(measured["label_entropy"], color="tab:orange", linestyle=":",
                   label="entropy of the class frequencies")
    ax.set_ylim(math.log(10) - ZERO_LOSS_BAND, math.log(10) + ZERO_LOSS_BAND)  # the claim's band
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (batch)")
    ax.set_title(f"test error stays at {final_test_error(run):.1%}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax = axes[0][1]
    grads = run.layers["grad_norm"]
    peak = np.nanmax(grads, axis=0) if len(grads) else np.full(1, np.nan)
    ax.plot(np.arange(1, len(peak) + 1), peak, "o-", markersize=3, color="tab:red",
            label=f"max over {len(grads)} records (every step)")
    ax.set_ylim(-1, 1)
    layer_axis(ax, "grad_norm", log=False)
    ax.set_title(f"largest ‖∇W_i ℓ‖ over all steps and layers: {np.nanmax(peak):g}", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[0][2]
    if measured:
        classes = np.arange(len(measured["class_frequencies"]))
        ax.bar(classes - 0.2, measured["class_frequencies"], 0.4, label="class frequency (train)")
        ax.bar(classes + 0.2, measured["output_bias_softmax"], 0.4,
               label="softmax(output bias) after training")
        ax.set_title(f"largest |W_i| entry after training: {measured['max_abs_weight']:g}",
                     fontsize=9)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_xticks(range(10))
    ax.legend(fontsize=8, loc="lower center")
    return fig


def zero_init_claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    run = inp.runs("zero-init")[0]
    steps = run.summary.get("steps")
    recorded = len(train_records(run))
    grads = run.layers["grad_norm"]
    # "at every step" only holds if every step was recorded (log.every: 1).
    peak = float(np.max(grads)) if recorded == steps and not np.isnan(grads).any() else math.nan
    measured = read_measure(run, f) or {}
    tests = run.test_error[~np.isnan(run.test_error)]
    return [
        Claim(f, f"W = 0: largest weight-gradient norm over all {recorded} of {steps} steps and "
              "all 50 layers (exactly zero)", peak, "==", 0.0),
        Claim(f, "W = 0: largest |W_i| entry after training (weights never move)",
              measured.get("max_abs_weight", math.nan), "==", 0.0),
        Claim(f, "W = 0: test error stays ≥ 80% (lowest over all evaluations)",
              float(tests.min()) if tests.size else math.nan, ">=", 0.8, unit="%"),
        Claim(f, "W = 0: |final training loss − log 10| (stays near log 10)",
              abs(float(run.loss[run.last()]) - math.log(10)) if len(run.records) else math.nan,
              "<", ZERO_LOSS_BAND),
    ]


# --- Figure 7: norms after training with and without normalization ------------------------------

NORM_STEMS = (("none", "trained-variance"), ("layer", "trained-layernorm"),
              ("batch", "trained-batchnorm"))


def plot_trained_norms(inp: FigureInput) -> Any:
    fig, axes = new_figure(inp, "After training, per layer (solid; dashed: at init): which "
                           "effects of the initial scale c persist", 3, nrows=2,
                           size=(5.2, 3.6), sharey="row")
    for col, (norm, stem) in enumerate(NORM_STEMS):
        runs = inp.runs(stem)
        for row, key in enumerate(("act_norm", "grad_norm")):
            ax = axes[row][col]
            for run in runs:
                plot_layers(ax, run, key, "init", linestyle="--", alpha=0.5)
                plot_layers(ax, run, key, "final",
                            label=f"{c_label(run)}: {final_test_error(run):.1%} test error")
            layer_axis(ax, key)
            if row == 0:
                ax.set_title(f"norm: {norm} — {training_setup(runs[0])}\n"
                             f"{reached_note(runs)}", fontsize=8)
                ax.legend(fontsize=7)
    return fig


def trained_norm_claims(inp: FigureInput) -> list[Claim]:
    f = inp.name
    claims = []
    plain = inp.runs("trained-variance")
    end = {phase: [stat(r, "act_norm", phase)[-1] for r in plain] for phase in ("init", "final")}
    claims.append(Claim(f, "no normalization: after training, ‖Z_50‖ still differs across "
                        f"c = 1.7, 2.0, 2.3 (max/min; at init {span(np.array(end['init'])):.3g})",
                        span(np.array(end["final"])), ">", 10.0))
    for norm, stem in NORM_STEMS[1:]:
        runs = inp.runs(stem)
        claims.append(Claim(f, f"{norm} norm: after training, activation norms for c = 1.7, "
                            "2.0, 2.3 agree within 10% at every layer (largest max/min − 1)",
                            agreement([stat(r, "act_norm", "final") for r in runs]), "<", 0.10,
                            unit="%"))
        for run in runs:
            if round(c_of(run), 6) == 2.0:
                claims.append(Claim(f, f"{norm} norm, c = 2 reaches {TARGET:.0%} test error "
                                    f"({training_setup(run)}; {epochs_note(run)})",
                                    final_test_error(run), "<=", TARGET, unit="%"))
    return claims


# --- Figure 8: weight decay and dropout -----------------------------------------------------------


def measure_weight_norms(inp: FigureInput, data_root: str | None) -> None:
    """Exact ‖W‖_F over all weight matrices at init and after training, from checkpoints."""
    import torch

    for run, target in unmeasured(inp, "regularization"):
        model, _, state = load_member_model(run)
        result = {}
        for key, vector in (("init", state["params_init"]), ("final", state["params"])):
            model.set_member_vector(model.flat, 0, vector)
            with torch.no_grad():
                sq = sum(float(torch.sum(model.weight(i).double() ** 2))
                         for i in range(model.depth))
            result[f"weight_norm_{key}"] = math.sqrt(sq)
        atomic_write_text(target, json.dumps(result, indent=1) + "\n")


def regularization_label(run: Run) -> str:
    wd, p = cfg_value(run, "train.weight_decay"), cfg_value(run, "model.dropout")
    return f"weight decay {wd:g}, dropout {p:g}{status_mark(run)}"


def plot_regularization(inp: FigureInput) -> Any:
    import matplotlib as mpl

    runs = inp.runs("regularization")
    lr, epochs = cfg_value(runs[0], "train.lr"), cfg_value(runs[0], "train.epochs")
    fig, axes = new_figure(inp, f"Weight decay and dropout (c = 2, SGD lr {lr:g}, every member "
                           f"{epochs} epochs)", 2)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    ax = axes[0][0]
    for n, run in enumerate(runs):
        evals = [i for i, p in enumerate(run.phase) if p in ("init", "epoch")]
        ax.plot(run.epoch[evals], 100 * run.test_error[evals], "o-", markersize=3,
                color=colors[n % len(colors)],
                label=f"{regularization_label(run)}: {final_test_error(run):.2%}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(mpl.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    n_test = cfg_value(runs[0], "data.test_subset") or 10_000
    ax.set_title(f"test error on {n_test:,} test images (final value in the legend)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.86))  # the empty middle
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[0][1]
    for n, run in enumerate(runs):
        m = read_measure(run, inp.name) or {}
        change = 100 * (m.get("weight_norm_final", math.nan) / m.get("weight_norm_init", math.nan)
                        - 1)
        ax.bar(n, change, color=colors[n % len(colors)], label=regularization_label(run))
        ax.annotate(f"{change:+.2g}%", (n, change), ha="center",
                    va="bottom" if change >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([f"wd {cfg_value(r, 'train.weight_decay'):g}\n"
                        f"dropout {cfg_value(r, 'model.dropout'):g}" for r in runs], fontsize=8)
    ax.set_ylabel("change of ‖W‖_F during training (%)")
    initial = (read_measure(runs[0], inp.name) or {}).get("weight_norm_init", math.nan)
    ax.set_title("‖W‖_F over all 50 weight matrices, exact (from the checkpoints):\n"
                 f"change during training, from {initial:.4g} at init", fontsize=9)
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def regularization_claims(inp: FigureInput) -> list[Claim]:
    runs = inp.runs("regularization")

    def pick(wd: float, p: float) -> Run | None:
        return next((r for r in runs if cfg_value(r, "train.weight_decay") == wd
                     and cfg_value(r, "model.dropout") == p), None)

    base, decayed = pick(0.0, 0.0), pick(1e-4, 0.0)
    norms = [(read_measure(r, inp.name) or {}).get("weight_norm_final", math.nan)
             if r is not None else math.nan for r in (decayed, base)]
    epochs = base.summary.get("epochs") if base is not None else "?"
    return [
        Claim(inp.name, f"weight decay 1e-4 vs 0 (dropout 0, {epochs} epochs each): change of "
              "the final test error", abs(final_test_error(decayed) - final_test_error(base)),
              "<", 0.01, unit="pp"),
        Claim(inp.name, "weight decay 1e-4 shrinks the weights: 1 − final ‖W‖_F with / "
              "without (dropout 0)", 1.0 - norms[0] / norms[1], ">", 0.0),
    ]


# --- Figure 9: batch norm in training vs evaluation mode --------------------------------------

BN_BATCHES = 20
BN_IMAGE = 0  # the fixed test image
BN_SEED = 0


def bn_eval_run(inp: FigureInput) -> Run:
    runs = by_c(inp.runs("trained-batchnorm"))
    return runs.get(2.0) or next(iter(runs.values()))


def measure_bn_eval(inp: FigureInput, data_root: str | None) -> None:
    """Logits of one fixed test image inside 20 random batches of other test images, in
    training mode (batch statistics) and in evaluation mode (running averages)."""
    import torch

    run = bn_eval_run(inp)
    target = measure_path(run.path, inp.name)
    if target.exists():
        return
    model, cfg, _ = load_member_model(run)
    data = load_data(cfg, data_root)
    batch = cfg.train.batch_size
    gen = torch.Generator().manual_seed(BN_SEED)
    others = torch.tensor([i for i in range(data.test_x.shape[0]) if i != BN_IMAGE])
    logits: dict[str, list[list[float]]] = {"train": [], "eval": []}
    positions = []
    with torch.no_grad():
        for _ in range(BN_BATCHES):
            chosen = others[torch.randperm(len(others), generator=gen)[: batch - 1]]
            pos = int(torch.randint(batch, (1,), generator=gen))  # anywhere in the batch
            idx = torch.cat([chosen[:pos], torch.tensor([BN_IMAGE]), chosen[pos:]])
            x = data.test_x[idx].unsqueeze(0)
            positions.append(pos)
            for mode in ("train", "eval"):
                model.train(mode == "train")
                out = model(x, update_running=False, use_dropout=False)
                logits[mode].append(out[0, pos].double().tolist())
    result = {"image": BN_IMAGE, "label": int(data.test_y[BN_IMAGE]), "batch_size": batch,
              "positions": positions, "train_logits": logits["train"],
              "eval_logits": logits["eval"]}
    atomic_write_text(target, json.dumps(result, indent=1) + "\n")


def logit_range(rows: Sequence[Sequence[float]]) -> float:
    """Largest range (max − min over the batches) over the classes."""
    a = np.asarray(rows, dtype=float)
    if a.size == 0:
        return math.nan
    return float((a.max(axis=0) - a.min(axis=0)).max())


def plot_bn_eval(inp: FigureInput) -> Any:
    run = bn_eval_run(inp)
    m = read_measure(run, inp.name) or {"train_logits": [], "eval_logits": [], "label": "?"}
    fig, axes = new_figure(inp, f"Batch norm (c = {c_of(run):g}, trained: "
                           f"{final_test_error(run):.1%} test error): logits of test image "
                           f"#{BN_IMAGE} (label {m['label']}) in {BN_BATCHES} random batches",
                           2, sharey=True)
    rng = np.random.default_rng(0)  # jitter only, so overlapping dots stay visible
    for ax, mode, title in ((axes[0][0], "train", "training mode (batch statistics)"),
                            (axes[0][1], "eval", "evaluation mode (running averages)")):
        rows = np.asarray(m[f"{mode}_logits"], dtype=float)
        for row in rows:
            ax.plot(np.arange(rows.shape[1]) + rng.uniform(-0.15, 0.15, rows.shape[1]), row,
                    "o", markersize=3, alpha=0.6)
        ax.set_title(f"{title}\nlargest range over batches: {logit_range(rows):.3g}",
                     fontsize=9)
        ax.set_xlabel("class")
        ax.set_xticks(range(10))
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("logit (one dot per batch)")
    return fig


def bn_eval_claims(inp: FigureInput) -> list[Claim]:
    m = read_measure(bn_eval_run(inp), inp.name) or {"train_logits": [], "eval_logits": []}
    return [
        Claim(inp.name, f"batch norm, training mode: a fixed image's logits move with its "
              f"batch (largest range over {BN_BATCHES} batches)", logit_range(m["train_logits"]),
              ">", 1e-3),
        Claim(inp.name, "batch norm, evaluation mode: the same logits in every batch (largest "
              "range)", logit_range(m["eval_logits"]), "<=", 1e-6),
    ]


# --- The registry --------------------------------------------------------------------------------

FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("init-norms",
           "At initialization without normalization, activation norms vanish (c = 1), stay "
           "level (c = 2) or explode (c = 3) with depth, while gradient norms stay level within "
           "each c and differ by orders of magnitude between c.",
           ("init-norms",), plot_init_norms("init-norms", "no normalization"),
           init_norm_claims),
    Figure("trained-variance",
           "Trained with SGD to 5% test error, c = 1.7, 2.0, 2.3 all train; the norms keep the "
           "shape they had at init, and n·Var(W_i) barely changes.",
           ("trained-variance",), plot_trained_variance, trained_variance_claims),
    Figure("layernorm-norms",
           "With layer normalization after each hidden activation, activation norms at init are "
           "the same for every c.",
           ("layernorm-norms",), plot_init_norms("layernorm-norms", "layer norm"),
           normalized_init_claims("layernorm-norms", "layer")),
    Figure("batchnorm-norms",
           "With batch normalization after each hidden activation, activation norms at init are "
           "the same for every c.",
           ("batchnorm-norms",), plot_init_norms("batchnorm-norms", "batch norm"),
           normalized_init_claims("batchnorm-norms", "batch")),
    Figure("zero-init",
           "With W = 0 every weight gradient is exactly zero: only the output bias learns the "
           "class frequencies and the loss stays near log 10.",
           ("zero-init",), plot_zero_init, zero_init_claims, measure_zero_init),
    Figure("weights-move-little",
           "Over training to 5% test error, each weight matrix moves only a small fraction of "
           "its initial norm.",
           ("trained-variance",), plot_weights_move_little, weights_move_claims),
    Figure("trained-norms",
           "After training, without normalization the per-layer norms still carry the initial "
           "scale; with layer or batch normalization they do not.",
           tuple(stem for _, stem in NORM_STEMS), plot_trained_norms, trained_norm_claims),
    Figure("regularization",
           "Weight decay 1e-4 shrinks the weights but barely changes the test error; dropout "
           "0.1 for comparison.",
           ("regularization",), plot_regularization, regularization_claims,
           measure_weight_norms),
    Figure("batchnorm-eval",
           "In training mode a batch-normalized network's output for one image depends on the "
           "other images in its batch; in evaluation mode (running averages) it does not.",
           ("trained-batchnorm",), plot_bn_eval, bn_eval_claims, measure_bn_eval),
    Figure("small-batch",
           "Batch norm's test error rises when a worker sees few examples; group and layer "
           "norm, which use no batch statistics, stay level.",
           ("small-batch",),
           lambda inp: _batch_figures().plot_small_batch(inp.paths["small-batch"], inp.banner),
           lambda inp: _batch_figures().small_batch_claims(inp.paths["small-batch"]),
           produce=lambda mode, cache, data_root, progress: {
               "small-batch": _batch_figures().produce_small_batch(
                   CONFIG_DIR / "small-batch.yaml", cache, data_root, mode.quick, progress,
                   mode.overrides, mode.max_group, mode.jobs)}),
    Figure("sync-bn",
           "With 4 examples per worker, synchronizing batch statistics across 4 workers fixes "
           "batch norm at a communication cost; group norm needs neither.",
           ("sync-bn",),
           lambda inp: _batch_figures().plot_sync_bn(inp.paths["sync-bn"], inp.banner),
           lambda inp: _batch_figures().sync_bn_claims(inp.paths["sync-bn"]),
           produce=lambda mode, cache, data_root, progress: {
               "sync-bn": _batch_figures().produce_sync_bn(
                   CONFIG_DIR / "sync-bn.yaml", cache, data_root, mode.quick, mode.overrides)}),
)}


def _batch_figures() -> Any:
    """The small-batch and sync-bn recipes (imported late: they import this module's kin)."""
    from initlab import figures_batch

    return figures_batch


# --- The pipeline --------------------------------------------------------------------------------


@dataclass
class Result:
    figures: list[str]
    files: list[Path]
    claims: list[Claim]
    report: Path
    title: str
    trained: int  # runs trained by this invocation
    cached: int  # runs found in the cache


def select(names: Sequence[str] | None) -> list[Figure]:
    """The figures named (all if none), in registry order; UsageError lists the valid names."""
    if not names:
        return list(FIGURES.values())
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise UsageError(f"--only: unknown figure {', '.join(repr(n) for n in unknown)}; "
                         f"choose from {', '.join(FIGURES)}")
    return [f for name, f in FIGURES.items() if name in names]


def resolve_configs(stems: Sequence[str], mode: Mode,
                    config_dir: Path = CONFIG_DIR) -> dict[str, list[RunConfig]]:
    """Each config file's member configs (sweep expanded, quick mode applied)."""
    configs = {}
    for stem in stems:
        experiment = load_experiment(config_dir / f"{stem}.yaml", mode.overrides)
        configs[stem] = [mode.adapt(member.config) for member in experiment.members]
    return configs


def is_cached(path: Path, cfg: RunConfig) -> bool:
    """A finished run of exactly this config (completed, or diverged: that is a result too)."""
    try:
        summary = json.loads((path / SUMMARY_FILE).read_text())
        same = (path / CONFIG_FILE).read_text() == dump_yaml(cfg)
    except (OSError, ValueError):
        return False
    return same and summary.get("status") in DONE and (path / STATS_FILE).exists()


def ensure_runs(configs: dict[str, list[RunConfig]], cache: Path, data_root: str | None,
                progress: ProgressFactory = quiet_progress, log: Log = print,
                max_group: int | None = None,
                jobs: int = 1) -> tuple[dict[str, list[Path]], int, int]:
    """Run directories for every config (train the missing ones, members of one shape as one
    stacked model, ``jobs`` groups at a time): the paths by config stem, how many were trained
    and how many were cached."""
    paths = {stem: [cache / config_hash(cfg) for cfg in cfgs] for stem, cfgs in configs.items()}
    needed: dict[Path, RunConfig] = {}
    for stem, cfgs in configs.items():
        needed.update(zip(paths[stem], cfgs, strict=True))
    missing = {path: cfg for path, cfg in needed.items() if not is_cached(path, cfg)}
    log(f"{len(needed) - len(missing)} of {len(needed)} runs cached in {cache}; "
        f"training {len(missing)}")
    members = []
    for path, cfg in missing.items():
        if path.exists():  # interrupted or stale: start it afresh
            shutil.rmtree(path)
        writer = RunWriter(path)
        writer.write_config(dump_yaml(cfg))
        members.append(_member_state(cfg, writer))
    groups = [[members[i] for i in indices] for indices in group_indices(members, max_group)]
    run_jobs([group_job(group, data_root) for group in groups], jobs, progress)
    return paths, len(missing), len(needed) - len(missing)


def group_job(group: Sequence[Any], data_root: str | None) -> Job:
    """Training one group of members (already written to the cache) as a job."""
    configs = [m.config for m in group]
    label = configs[0].name if len(group) == 1 else f"{configs[0].name} ×{len(group)}"
    return Job(label, training_cost(configs), train_written_members,
               (configs, [m.writer.path for m in group], data_root))


def _member_state(cfg: RunConfig, writer: RunWriter) -> Any:
    from initlab.train import MemberState

    return MemberState(cfg, writer)


def build_figures(only: Sequence[str] | None = None, quick: bool = False,
                  out: Path = Path("figures"), cache: Path | None = None,
                  data_root: str | None = None, progress: ProgressFactory = quiet_progress,
                  log: Log = print, config_dir: Path = CONFIG_DIR,
                  overrides: Sequence[str] = (), max_group: int | None = None,
                  jobs: int = 1) -> Result:
    """Train what is missing, measure, draw every requested figure, check and report claims.
    ``overrides`` (``--set``) apply to every figure's config; ``max_group`` bounds how many
    members train as one stacked model."""
    figures = select(only)
    mode = Mode(quick, tuple(overrides), max_group, jobs)
    cache = cache if cache is not None else DEFAULT_CACHE
    produced: dict[str, list[Path]] = {}
    for figure in figures:
        if figure.produce is not None:
            produced.update(figure.produce(mode, cache, data_root, progress))
    stems = [stem for stem in dict.fromkeys(s for f in figures for s in f.configs)
             if stem not in produced]
    configs = resolve_configs(stems, mode, config_dir)
    paths, trained, cached = ensure_runs(configs, cache, data_root, progress, log, max_group,
                                         jobs)
    paths.update(produced)
    files: list[Path] = []
    claims: list[Claim] = []
    for figure in figures:
        inp = FigureInput(figure.name, {stem: paths[stem] for stem in figure.configs},
                          mode.banner)
        if figure.measure is not None:
            figure.measure(inp, data_root)
        files += save_figure(figure.plot(inp), out, figure.name)
        claims += figure.claims(inp)
    title = "initlab figures: the lectures' claims, measured"
    if mode.quick:
        title += f" — {mode.banner}"
    report = out / REPORT_FILE
    write_report(report, claims, title, report_notes(figures, mode, cache, paths))
    return Result([f.name for f in figures], files, claims, report, title, trained, cached)


def report_notes(figures: Sequence[Figure], mode: Mode, cache: Path,
                 paths: dict[str, list[Path]]) -> list[str]:
    notes = []
    if mode.quick:
        notes.append(f"**{mode.banner}.** Every run used the first {QUICK_TRAIN} training and "
                     f"{QUICK_TEST} test images and at most {QUICK_EPOCHS} epochs.")
    if mode.overrides:
        notes.append("Every figure's config was changed by "
                     + ", ".join(f"`--set {o}`" for o in mode.overrides) + ".")
    if mode.max_group:
        notes.append(f"At most {mode.max_group} member(s) trained as one stacked model "
                     "(`--max-group`).")
    if mode.jobs > 1:
        notes.append(f"Runs trained by this invocation: up to {mode.jobs} groups at once, each "
                     "in its own process (`--jobs`); the runs table says each run's threads.")
    notes.append("Network unless stated: 50 Linear layers of width 100, ReLU, "
                 "W_i ~ N(0, c/n), MNIST pixels in [0, 1], batch 128. Every number is read from "
                 f"the run directories in `{cache}` (named by config hash); a FAIL is reported "
                 "as measured.")
    if len(figures) < len(FIGURES):
        notes.append("Figures in this report: " + ", ".join(f"`{f.name}`" for f in figures)
                     + " (`--only`).")
    notes.append(runs_table(paths))
    return notes


def runs_table(paths: dict[str, list[Path]]) -> str:
    """What each run really did: status, epochs, final test error, wall time of its group and
    the CPU threads it trained on."""
    lines = ["| config | run (config hash) | member | status | epochs | test error "
             "| group wall (s) | threads |", "|---|---|---|---|---|---|---|---|"]
    for stem, dirs in paths.items():
        for path in dirs:
            run = load_run(path)
            s = run.summary
            lines.append(f"| {stem} | `{path.name}` | {member_label(run)} | "
                         f"{s.get('status', '?')} | {s.get('epochs', '?')} | "
                         f"{final_test_error(run):.2%} | {s.get('wall_seconds', '?')} | "
                         f"{s.get('threads') or '?'} |")
    return "\n".join(lines)


def member_label(run: Run) -> str:
    """The init, and the regularization where there is some."""
    parts = ["W = 0" if cfg_value(run, "init.scheme") == "zeros" else f"c = {c_of(run):g}"]
    if cfg_value(run, "train.weight_decay"):
        parts.append(f"weight decay {cfg_value(run, 'train.weight_decay'):g}")
    if cfg_value(run, "model.dropout"):
        parts.append(f"dropout {cfg_value(run, 'model.dropout'):g}")
    return ", ".join(parts)
