"""The figures' small core: what a figure is, the one quick mode, and the helpers every figure
reads runs and draws with.

A ``Figure`` is a summary for the report's reader, a recipe (the config files under
``configs/`` whose runs it reads, each turned into member configs by its ``recipe`` function: a
``RunSet``), an optional measuring step (inference on a run's checkpoint, saved as JSON beside
the run), a plot and its claims, each claim saying whose it is (``initlab.report.Source``).
Plots and claims read run directories only (``FigureInput``) and never train;
``initlab.figures.cache`` trains what they read.
"""

from __future__ import annotations

import atexit
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from initlab import palette
from initlab.config import Experiment, ModelConfig, RunConfig, load_experiment
from initlab.data import TRAIN_IMAGES
from initlab.intervals import interval
from initlab.model import layer_widths
from initlab.plot import layer_values, save, use_headless_backend
from initlab.report import SHARED, Claim, Source
from initlab.runs import FINISHED, Run, atomic_write_text, load_run
from initlab.stats import LAYER_STATS
from initlab.wording import how_it_ended

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: the figures' recipes
TARGET = 0.05  # the lecture's test-error target
CHANCE_ERROR = 0.9  # MNIST's ten classes: where a diverged run's test error counts
# Quick mode, for every figure: a smoke test of the whole pipeline, not the reference numbers.
QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES, QUICK_EPOCHS = 2048, 1000, 2
# Quick mode keeps the first seeds of a recipe's seed sweep: enough for a t interval.
QUICK_SEEDS = 3


# --- How this invocation trains -----------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    quick: bool = False
    overrides: tuple[str, ...] = ()  # --set, applied to every figure's config
    max_group: int | None = None  # at most this many members per stacked model
    jobs: int = 1  # groups trained at once, each in its own worker process
    # Added to every seed of every recipe (its base ``train.seed`` and its seed sweep): a rerun
    # with disjoint seeds (``--seed-offset``).
    seed_offset: int = 0
    # (config stem, seeds): a recipe whose seed sweep takes that many seeds, its own extended
    # by the next integers (a figure's rows given more seeds: ``more_seeds``).
    seed_counts: tuple[tuple[str, int], ...] = ()

    @property
    def banner(self) -> str:
        """Said in every title and in the report when the numbers are not the reference ones."""
        if not self.quick:
            return ""
        return f"QUICK (subset, {QUICK_EPOCHS} epochs) — not the reference numbers"

    def settings(self, source: Path, extra: Sequence[str] = ()) -> tuple[str, ...]:
        """The overrides that give a config file's runs in this mode: the user's ``--set``, a
        recipe's own (``extra``), then quick mode's. As overrides, not edits of the resolved
        configs, so that a launch of ``initlab run SOURCE --set ...`` gets the same configs."""
        settings = (*self.overrides, *extra)
        if not self.quick:
            return settings
        epochs = load_experiment(self.source(source), settings).base.train.epochs  # capped
        return (*settings, f"data.train_subset={QUICK_TRAIN_IMAGES}",
                f"data.test_subset={QUICK_TEST_IMAGES}",
                f"train.epochs={min(epochs, QUICK_EPOCHS)}")

    def load(self, source: Path, extra: Sequence[str] = ()) -> Experiment:
        return load_experiment(self.source(source), self.settings(source, extra))

    def source(self, path: Path) -> Path:
        """The recipe file this mode reads: ``path`` itself, or a copy whose seeds are shifted
        by ``seed_offset`` and, in quick mode, whose seed sweep keeps its first QUICK_SEEDS."""
        limit = QUICK_SEEDS if self.quick else None
        count = dict(self.seed_counts).get(path.stem)
        if not self.seed_offset and limit is None and count is None:
            return path
        return seeded_source(path, self.seed_offset, count or limit)

    def with_seeds(self, stems: Sequence[str], count: int) -> Mode:
        """This mode with the seed sweeps of ``stems`` taking ``count`` seeds."""
        counts = dict(self.seed_counts)
        counts |= {stem: max(count, counts.get(stem, 0)) for stem in stems}
        return replace(self, seed_counts=tuple(sorted(counts.items())))


# A recipe's base seed (``seed: N`` under ``train:``) and its seed sweep (``train.seed: [...]``).
_BASE_SEED = re.compile(r"^(train:\n(?:[ \t]+.*\n|[ \t]*#.*\n|\n)*?[ \t]+seed:[ \t]*)(\d+)",
                        re.MULTILINE)
_SEED_SWEEP = re.compile(r"^([ \t]+train\.seed:[ \t]*)\[([^\]]*)\]", re.MULTILINE)
_seeded_dir: list[Path] = []  # this process's directory of rewritten recipes


def seeded_source(path: Path, offset: int, limit: int | None) -> Path:
    """A copy of the recipe ``path`` (same file name, so the same experiment name) with every
    seed shifted by ``offset`` and ``limit`` seeds in its seed sweep: its first ones, or all of
    them and the next integers after its last. The copy lives in a directory of this process,
    removed at exit; a launched run reads it by its path."""
    text = path.read_text(encoding="utf-8")
    text = _BASE_SEED.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + offset}", text, count=1)

    def sweep(m: re.Match[str]) -> str:
        seeds = [int(v) for v in m.group(2).split(",") if v.strip()][:limit]
        while limit is not None and seeds and len(seeds) < limit:
            seeds.append(seeds[-1] + 1)
        return f"{m.group(1)}[{', '.join(str(v + offset) for v in seeds)}]"

    text = _SEED_SWEEP.sub(sweep, text)
    if not _seeded_dir:
        _seeded_dir.append(Path(tempfile.mkdtemp(prefix="initlab-seeds-")))
        atexit.register(shutil.rmtree, _seeded_dir[0], True)
    folder = _seeded_dir[0] / f"offset{offset}-limit{limit}"
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        atomic_write_text(target, text)
    return target


# --- What a figure reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """Train by ``initlab run SOURCE --nproc N --split batches --set ...``: N local processes,
    each taking its slice of every batch (``initlab.distributed``), the path a user takes."""

    nproc: int
    source: Path
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class RunSet:
    """The runs a figure reads under one config stem: their configs in sweep order, and how the
    cache trains the ones it lacks."""

    stem: str
    configs: tuple[RunConfig, ...]
    threads: int | None = None  # CPU threads each group trains on; None: its job's share
    launch: Launch | None = None  # None: stacked groups in the cache's job pool


def config_runs(stem: str, mode: Mode) -> RunSet:
    """The members of ``configs/<stem>.yaml`` in this mode: most figures' recipe."""
    experiment = mode.load(CONFIG_DIR / f"{stem}.yaml")
    return RunSet(stem, tuple(member.config for member in experiment.members))


@dataclass
class FigureInput:
    """What a figure's functions see: its run directories, grouped by config stem."""

    name: str
    paths: dict[str, list[Path]]  # config stem -> member run directories, in sweep order
    banner: str = ""
    _loaded: dict[str, list[Run]] = field(default_factory=dict, repr=False)
    # Runs already read, by directory: shared by the figures of one report, so a run that
    # several figures (and the runs table) read is read once.
    known: dict[Path, Run] = field(default_factory=dict, repr=False)

    def runs(self, stem: str) -> list[Run]:
        if stem not in self._loaded:
            self._loaded[stem] = [self.run_at(p) for p in self.paths[stem]]
        return self._loaded[stem]

    def run_at(self, path: Path) -> Run:
        if path not in self.known:
            self.known[path] = load_run(path)
        return self.known[path]

    def seeds(self) -> list[list[int]]:
        """Per replica, each trained stem's seed: the stems whose runs trained (seeds there
        are an axis of the claims; an untrained stem's seeds are draws its figure reads itself)
        and span several seeds, aligned by rank (the i-th smallest seed of each), as many
        replicas as the fewest seeds; [] when no trained stem spans several seeds."""
        spans = [self._seed_span(stem) for stem in self.paths]
        spans = [s for s in spans if len(s) > 1]
        if not spans:
            return []
        return [[s[i] for s in spans] for i in range(min(len(s) for s in spans))]

    def _seed_span(self, stem: str) -> list[int]:
        runs = self.runs(stem)
        if not any(int(cfg_value(r, "train.epochs") or 0) > 0 for r in runs):
            return []
        return sorted({seed_of(r) for r in runs})

    def replica(self, index: int) -> FigureInput:
        """The runs of the index-th seed of every stem that spans several seeds (the other
        stems whole): what one seed of the figure's experiment gives."""
        paths, loaded = {}, {}
        for stem in self.paths:
            runs = self.runs(stem)
            seeds = self._seed_span(stem)
            keep = [i for i, r in enumerate(runs)
                    if len(seeds) <= 1 or seed_of(r) == seeds[index]]
            paths[stem] = [self.paths[stem][i] for i in keep]
            loaded[stem] = [runs[i] for i in keep]
        return FigureInput(self.name, paths, self.banner, loaded, self.known)


@dataclass(frozen=True)
class Figure:
    name: str
    # For a student, opening the report: what the figure shows, whose statement it tests and
    # why it should hold (one paragraph; the numbers are in the claims).
    summary: str
    configs: tuple[str, ...]  # stems of configs/*.yaml whose runs it reads
    plot: Callable[[FigureInput], MplFigure]
    claims: Callable[[FigureInput], list[Claim]]
    measure: Callable[[FigureInput, str | None], None] | None = None  # (input, data root)
    recipe: Callable[[str, Mode], RunSet] = config_runs  # a stem's runs in a mode
    # The README's figure table: whose statement the figure tests, in a sentence or two (the
    # table's numbers come from the report's claims, never from here).
    headline: str = ""
    # Where it comes in ``FIGURES``, the report and the README: in the order a student reads
    # them -- initialization (10-50), normalization (60-120), regularization (130-150),
    # batch norm's dependence on the batch (160-); ties by name.
    order: int = 1000
    # Whether ``plot`` draws every seed itself; otherwise it is given the first seed's runs.
    plots_seeds: bool = False
    # How many rows (claims and checks) ``claims`` gives: declared with the figure, so that
    # the tests check a quick run's rows against it, not against the committed report (a
    # figure whose rows change stays testable before the next full run redraws the report).
    rows: int = 0
    # The most seeds its rows may get, fixed here before any run (0: its recipe's seeds only):
    # while a row is INCONCLUSIVE, the figure's seed sweeps double up to it (``more_seeds``).
    seed_cap: int = 0
    # What the figure's rows, together, say (a sentence after its summary), from their
    # verdicts: e.g. which of two mechanisms the data support, or that they support neither.
    conclude: Callable[[Sequence[Claim]], str] | None = None

    def evaluate(self, inp: FigureInput) -> list[Claim]:
        """The figure's claims over its seeds: ``claims`` evaluated on each seed's runs alone,
        each claim then the mean over the seeds with its 95% t interval (which decides its
        verdict, ``Claim.verdict``); plain ``claims`` when no run set spans several seeds."""
        count = len(inp.seeds())
        if count < 2:
            return self.claims(inp)
        per_seed = [self.claims(inp.replica(i)) for i in range(count)]
        return [over_seeds(list(rows)) for rows in zip(*per_seed, strict=True)]

    def draw(self, inp: FigureInput) -> MplFigure:
        return self.plot(inp if self.plots_seeds or not inp.seeds() else inp.replica(0))


def over_seeds(rows: Sequence[Claim]) -> Claim:
    """One claim measured on each seed: the first seed's claim with the summary over the seeds
    and its 95% interval by the claim's method (``initlab.intervals``). The rule for a seed
    without a value (NaN: an "after training" number of a run that diverged, ``stat``): the
    claim is measured on the seeds that gave one and says how many did; a claim that counts
    divergence against itself gives a value for a diverged run instead (``outcome_error``,
    ``reached``)."""
    first = rows[0]
    if first.method == SHARED:  # one measurement the seeds share: itself, no interval
        return first
    values = [c.value for c in rows]
    kept = [v for v in values if not math.isnan(v)]
    if first.existential:  # shown if any seed's conditions show it: the largest, no interval
        return replace(first, value=max(kept) if kept else math.nan, seeds=len(rows),
                       used=len(kept))
    centre, low, high = interval(kept, first.interval_method) if kept else (math.nan,) * 3
    if len(kept) == 1:  # one value: itself, with no interval
        centre = kept[0]
    return replace(first, value=centre, interval=(low, high), seeds=len(rows),
                   used=len(kept))


def more_seeds(figure: Figure, claims: Sequence[Claim],
               seeds: Sequence[Sequence[int]]) -> int | None:
    """The adaptive-seeds rule: a figure with a row still INCONCLUSIVE (checks aside) after
    its seeds (``FigureInput.seeds``) gets twice as many, at most its ``seed_cap``; None when
    it gets no more."""
    open_ = any(c.verdict == "INCONCLUSIVE" and not c.check and not c.existential
                for c in claims)
    if not open_ or len(seeds) < 2 or len(seeds) >= figure.seed_cap:
        return None
    return min(2 * len(seeds), figure.seed_cap)


def seed_swept(stem: str) -> bool:
    """Whether the recipe ``configs/<stem>.yaml`` sweeps its seed."""
    return bool(_SEED_SWEEP.search((CONFIG_DIR / f"{stem}.yaml").read_text(encoding="utf-8")))


def seed_of(run: Run) -> int:
    return int(cfg_value(run, "train.seed") or 0)


# --- Reading runs -------------------------------------------------------------------------------


def cfg_value(run: Run, dotted: str) -> Any:
    section, _, key = dotted.partition(".")
    return run.config.get(section, {}).get(key)


def c_of(run: Run) -> float:
    return float(cfg_value(run, "init.c"))


def by_c(runs: Sequence[Run]) -> dict[float, Run]:
    return {round(c_of(r), 6): r for r in runs}


def depth_of(run: Run) -> int:
    return int(cfg_value(run, "model.depth") or 50)


def layer_shapes(run: Run) -> list[tuple[int, int]]:
    """(n_in, n_out) of each Linear layer of a run's network."""
    model = run.config.get("model", {})
    return layer_widths(ModelConfig(depth=depth_of(run), width=int(model.get("width", 100))))


def stat(run: Run | None, key: str, phase: str) -> np.ndarray:
    """A per-layer statistic at ``init`` or at the end, NaN where the run cannot give it (so a
    claim on it FAILs with n/a rather than crashing the report). A diverged run has no value
    after training: its last finite record is from before it diverged (often its init), not
    a trained net's, so every phase but ``init`` is NaN for it (``over_seeds``' rule)."""
    if run is None:
        return np.full(1, np.nan)
    if phase != "init" and not trained(run):
        return np.full(depth_of(run), np.nan)
    try:
        return layer_values(run, key, phase)
    except (KeyError, IndexError):
        return np.full(depth_of(run), np.nan)


def trained(run: Run) -> bool:
    """Whether a run's numbers after training are a trained net's: it did not diverge."""
    return run.status != "diverged"


def span(values: np.ndarray) -> float:
    """max / min over layers."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.isnan(values).any() or values.min() <= 0:
        return math.nan
    return float(values.max() / values.min())


def agreement(curves: Sequence[np.ndarray]) -> float:
    """Largest relative spread across curves at any layer: max over layers of max/min − 1."""
    if len(curves) < 2 or any(len(c) != len(curves[0]) for c in curves):
        return math.nan
    stacked = np.vstack(curves)
    if np.isnan(stacked).any() or (stacked <= 0).any():
        return math.nan
    return float((stacked.max(axis=0) / stacked.min(axis=0)).max() - 1.0)


def median(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return math.nan if values.size == 0 or np.isnan(values).any() else float(np.median(values))


def worst(values: np.ndarray) -> float:
    """The largest value over layers (a claim about every layer is as good as its worst)."""
    values = np.asarray(values, dtype=float)
    return math.nan if values.size == 0 or np.isnan(values).any() else float(values.max())


def mean(values: Sequence[float]) -> float:
    """NaN for none (a claim on it then FAILs with n/a)."""
    return float(np.mean(values)) if len(values) else math.nan


def outcome_error(run: Run) -> float:
    """The final test error, a diverged run's counting as chance: it did not train, and a
    claim about how far training got must count it (as NaN it would void the claim)."""
    return CHANCE_ERROR if not trained(run) else run.final_test_error


def reached(run: Run, target: float = TARGET) -> float:
    """A yes/no outcome (1 or 0) for an "exact" claim: whether the run reached ``target``
    test error; a diverged run did not."""
    error = outcome_error(run)
    return float(not math.isnan(error) and error <= target)


def status_mark(run: Run) -> str:
    status = run.summary.get("status")
    if status == "diverged":
        return f" — {how_it_ended(run.summary)}"
    return "" if status in FINISHED else f" — {status or 'unfinished'}"


def c_label(run: Run) -> str:
    c = c_of(run)
    return f"c = {c:g} (Var W_i = {c:g}/n){status_mark(run)}"


def epochs_note(run: Run) -> str:
    """How long a run trained and what it reached: for titles and claim texts."""
    s = run.summary
    if s.get("reached_target_epoch") is not None:
        return f"{TARGET:.0%} at epoch {s['reached_target_epoch']}"
    if s.get("status") == "diverged":
        return how_it_ended(s)
    return f"not reached in {s.get('epochs')} epochs ({run.final_test_error:.1%})"


def reached_note(runs: Sequence[Run]) -> str:
    """One short line: what each c reached, e.g. "5% test error reached at: c=1.7: epoch 14"."""
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


# --- Measurements: inference results saved beside their run -------------------------------------


def measure_path(run_dir: Path, figure: str) -> Path:
    return run_dir / f"measure-{figure}.json"


def read_measure(run: Run, figure: str) -> dict[str, Any] | None:
    path = measure_path(run.path, figure)
    return json.loads(path.read_text()) if path.exists() else None


def save_measure(target: Path, result: dict[str, Any]) -> None:
    atomic_write_text(target, json.dumps(result, indent=1) + "\n")


def unmeasured(inp: FigureInput, stem: str) -> Iterator[tuple[Run, Path]]:
    """The runs of a config whose measurement for this figure is not saved yet, with the path
    it goes to (measurements are cached beside the run, like the runs themselves)."""
    for path in inp.paths[stem]:
        target = measure_path(path, inp.name)
        if not target.exists():
            yield load_run(path), target


# --- Drawing ------------------------------------------------------------------------------------

def c_color(run: Run) -> str:
    """A run's colour by its c: the one palette's (``initlab.palette``)."""
    return palette.c_color(c_of(run))


def new_figure(inp: FigureInput, title: str, ncols: int, nrows: int = 1,
               size: tuple[float, float] = (5.2, 4.0),
               **kw: Any) -> tuple[MplFigure, np.ndarray]:
    """A figure of nrows × ncols panels (an array of Axes) under the title and quick banner."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.5),
                             squeeze=False, layout="constrained", **kw)
    fig.suptitle(nonempty_lines(inp.banner, title), color="darkred" if inp.banner else "black")
    return fig, axes


def legend_below(ax: Axes, columns: int = 1, **kw: Any) -> None:
    """The panel's legend under it, outside the data (constrained layout makes room)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=columns, **kw)


def nonempty_lines(*lines: str) -> str:
    """The given lines joined, empty ones (no banner) left out: a figure's title."""
    return "\n".join(line for line in lines if line)


def layer_axis(ax: Axes, key: str, log: bool | None = None) -> None:
    """Label a panel of a per-layer statistic against layer i; log y where it spans decades."""
    ax.set_xlabel("layer i")
    ax.set_ylabel(LAYER_STATS[key].label)
    if LAYER_STATS[key].log_scale if log is None else log:
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


def show_decades(ax: Axes, decades: float = 2.0) -> None:
    """Widen a log axis to at least ``decades`` around its data: a curve that stays within a
    few percent then looks flat, as it is, and not like noise blown up to fill the panel."""
    low, high = ax.get_ylim()
    if low > 0 and high / low < 10**decades:
        centre = math.sqrt(low * high)
        ax.set_ylim(centre / 10 ** (decades / 2), centre * 10 ** (decades / 2))


def log_axis_plain_labels(ax: Axes) -> None:
    """Log-scaled y with plain tick labels (5, 10, 20, not 5×10^0): for error rates in %. Data
    drawn already that span less than a decade keep a linear axis: a log axis would label two
    ticks."""
    import matplotlib as mpl

    low, high = ax.dataLim.intervaly
    if np.isfinite([low, high]).all() and 0 < low and high < 10 * low:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    # Minor ticks (2, 3, 5, ...) labelled on axes up to about two decades (a subset) and on
    # short ones (all): over more decades they crowd; with fewer, two labels are unreadable.
    ax.yaxis.set_minor_formatter(mpl.ticker.LogFormatter(labelOnlyBase=False,
                                                         minor_thresholds=(2.2, 1.0)))


def plot_layers(ax: Axes, run: Run, key: str, phase: str, **kw: Any) -> None:
    values = stat(run, key, phase)
    ax.plot(np.arange(1, len(values) + 1), values, color=c_color(run), **kw)


def save_figure(fig: MplFigure, out: Path, name: str) -> list[Path]:
    """``name``.png and ``name``.svg in ``out``; closes the figure."""
    import matplotlib.pyplot as plt

    layer_labels = {s.label for s in LAYER_STATS.values()}
    for ax in fig.axes:  # only now: every panel of a shared axis has its data
        if ax.get_yscale() == "log" and ax.get_ylabel() in layer_labels:
            show_decades(ax)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    save(fig, png, dpi=110)
    with plt.rc_context({"svg.hashsalt": "initlab"}):  # stable ids: small diffs on re-runs
        save(fig, svg, metadata={"Date": None})
    plt.close(fig)
    return [png, svg]


# --- Norms at initialization: init-norms, layernorm-norms, batchnorm-norms ----------------------


def plot_norms_at_init(inp: FigureInput, stem: str, what: str) -> MplFigure:
    """Activation and gradient norms per layer at init, one curve per c."""
    fig, axes = new_figure(inp, f"At initialization, {what}: 50 layers of width 100, "
                           "ReLU, W_i ~ N(0, c/n), MNIST", 2)
    for ax, key in zip(axes[0], ("act_norm", "grad_norm"), strict=True):
        for n, run in enumerate(inp.runs(stem)):
            # Each later c drawn thinner: curves that coincide stay visible, nested.
            plot_layers(ax, run, key, "init", label=c_label(run), linewidth=3.2 - n)
        layer_axis(ax, key)
    axes[0][0].legend(fontsize=8)
    return fig


def agree_at_init_claim(inp: FigureInput, stem: str, norm: str, source: Source) -> Claim:
    """A normalized net's activation norms at init do not depend on c."""
    acts = [stat(r, "act_norm", "init") for r in inp.runs(stem)]
    return Claim(inp.name, f"{norm} norm at init: activation norms for c = 1, 2, 3 agree "
                 "within 5% at every layer (largest max/min − 1 over layers)", agreement(acts),
                 "<", 0.05, unit="%", source=source, check=True)


# --- Few examples per worker: small-batch, sync-bn ----------------------------------------------

REFERENCE_BATCH = 128  # a config's train.lr is the learning rate at this batch size
# Fixed before any run of these figures: 2 percentage points of test error (about four standard
# errors of one member's test error near 15% on 10,000 images).
RISE_PP = 0.02


def setup_text(run: Run, *, per_worker: int | None = None) -> str:
    """The network, data budget and learning rule of a run, from its config (two lines)."""
    m, d, t = run.config["model"], run.config["data"], run.config["train"]
    images = d.get("train_subset") or TRAIN_IMAGES
    b, epochs = t["batch_size"], t["epochs"]
    text = (f"depth {m['depth']}, width {m['width']}, {m['activation']}; {epochs} "
            f"epoch{'s' if epochs != 1 else ''} over the first {images} training images "
            f"({images * epochs // b} steps at batch {b})\nSGD momentum {t['momentum']:g}, "
            f"lr = {t['lr'] * REFERENCE_BATCH / b:.3g}·B/{REFERENCE_BATCH}")
    if per_worker is not None:
        text += f", B = global batch {b} = {b // per_worker} workers × {per_worker}"
    else:
        text += " (B: the batch)"
    return text
