"""``initlab figures``: every lecture figure redrawn from real runs, every lecture claim checked.

The package, importing downwards only:

- ``core``: what a figure is (``Figure``, ``FigureInput``, ``RunSet``), the one quick mode
  (``Mode``), and the helpers figures read runs and draw with;
- ``cache``: the one run cache (``<cache>/<config hash>/``) and how missing runs train;
- ``inference``: everything measured by loading a model from a run's checkpoint;
- one module per figure, holding its recipe, its plot and its claims; ``configs/`` holds the
  figures' YAML recipes;
- here: ``FIGURES``, the figures found (``discover``), and ``build_figures``, the pipeline
  (train what is missing, measure, draw, check, report).

Adding a figure is a module beside the others (``FIGURES`` finds every module that defines
``FIGURE``, in the figures' ``order``) and its recipe in ``configs/``. The report opens with
each figure's summary, then the claims (each saying whose claim it is), then every run the
figures read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from initlab.errors import UsageError
from initlab.figures.cache import DEFAULT_CACHE, ensure_runs
from initlab.figures.core import (
    QUICK_EPOCHS,
    QUICK_TEST_IMAGES,
    QUICK_TRAIN_IMAGES,
    Figure,
    FigureInput,
    Mode,
    RunSet,
    c_of,
    cfg_value,
    more_seeds,
    save_figure,
    seed_swept,
)
from initlab.jobs import Executor, LocalPool
from initlab.progress import ProgressFactory, quiet_progress
from initlab.report import Claim, changed_since, write_report
from initlab.runs import Run, git_commit, load_run

REPORT_FILE = "REPORT.md"
SHIFTED_TITLE = " — seeds shifted by"  # in the title of a report written with --seed-offset

Log = Callable[[str], None]

def discover() -> dict[str, Figure]:
    """Every module of this package that defines ``FIGURE``, by name, sorted by the figures'
    ``order`` (then name): a new figure module is found without an edit here."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        figure = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FIGURE", None)
        if isinstance(figure, Figure):
            found.append(figure)
    found.sort(key=lambda f: (f.order, f.name))
    names = [f.name for f in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two figure modules share a name: {names}")
    return {f.name: f for f in found}


FIGURES: dict[str, Figure] = discover()


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


def run_sets(figures: Sequence[Figure], mode: Mode) -> list[RunSet]:
    """Every config stem the figures read, expanded by its figure's recipe, once each."""
    found: dict[str, RunSet] = {}
    for figure in figures:
        for stem in figure.configs:
            run_set = figure.recipe(stem, mode)
            if found.setdefault(stem, run_set) != run_set:
                raise ValueError(f"figure {figure.name}: its recipe for {stem} differs from "
                                 "another figure's")
    return list(found.values())


def build_figures(only: Sequence[str] | None = None, quick: bool = False,
                  out: Path = Path("figures"), cache: Path | None = None,
                  data_root: str | None = None, progress: ProgressFactory = quiet_progress,
                  log: Log = print, overrides: Sequence[str] = (),
                  max_group: int | None = None, jobs: int = 1, seed_offset: int = 0,
                  executor: Executor | None = None) -> Result:
    """Train what is missing, measure, draw every requested figure, check and report claims.
    ``overrides`` (``--set``) apply to every figure's config; ``max_group`` bounds how many
    members train as one stacked model; ``jobs`` groups train at once, unless ``executor``
    (a Ray cluster: ``initlab.ray_jobs``) trains them; ``seed_offset`` shifts every seed (a
    rerun on disjoint seeds)."""
    figures = select(only)
    executor = executor or LocalPool(jobs)
    mode = Mode(quick, tuple(overrides), max_group, jobs, seed_offset)
    check_output(out, partial=quick or len(figures) < len(FIGURES), shifted=bool(seed_offset))
    previous = previous_report(out / REPORT_FILE)  # read before anything replaces it
    cache = cache if cache is not None else DEFAULT_CACHE
    paths, trained, cached = ensure_runs(run_sets(figures, mode), cache, data_root, progress,
                                         log, max_group, executor)
    known: dict[Path, Run] = {}  # every run read so far: each is read once
    found = {f.name: evaluated(f, paths, mode, known, data_root) for f in figures}
    # The adaptive-seeds rule, in rounds over every figure at once (their new runs train in one
    # job pool): a figure with a row still INCONCLUSIVE gets more seeds, up to its cap.
    asked: dict[str, int] = {}  # seeds each figure was given: never asked twice (no loop)
    more = mode  # with every seed count given so far
    while wanted := {f.name: n for f in figures if not mode.quick
                     and (n := more_seeds(f, found[f.name][1], found[f.name][0].seeds()))
                     and asked.get(f.name) != n}:
        asked.update(wanted)
        for figure in figures:
            if figure.name in wanted:
                log(f"{figure.name}: a row is INCONCLUSIVE: {wanted[figure.name]} seeds")
                more = more.with_seeds([s for s in figure.configs if seed_swept(s)],
                                       wanted[figure.name])
        grown = [f for f in figures if f.name in wanted]
        extended, newly, _ = ensure_runs(run_sets(grown, more), cache, data_root, progress,
                                         log, max_group, executor)
        trained += newly
        paths.update(extended)
        for figure in figures:  # every figure that reads a grown run set, read again
            if set(figure.configs) & set(extended):
                found[figure.name] = evaluated(figure, paths, mode, known, data_root)
    files: list[Path] = []
    claims: list[Claim] = []
    summaries = []
    for figure in figures:
        inp, rows = found[figure.name]
        files += save_figure(figure.draw(inp), out, figure.name)
        claims += rows
        summaries.append(figure_summary(figure, rows))
    title = "initlab figures: the lectures' claims, measured"
    if mode.quick:
        title += f" — {mode.banner}"
    if mode.seed_offset:
        title += f"{SHIFTED_TITLE} {mode.seed_offset}"
    report = out / REPORT_FILE
    notes = ["## What each figure shows", *summaries, "## Claims",
             *report_notes(figures, mode, cache, executor.describe())]
    changed = changed_since(previous, claims) if previous else ""
    write_report(report, claims, title, notes,
                 [statements_without_rows(), *([changed] if changed else []), "## Runs",
                  runs_table(paths, known)])
    return Result([f.name for f in figures], files, claims, report, title, trained, cached)


def evaluated(figure: Figure, paths: dict[str, list[Path]], mode: Mode, known: dict[Path, Run],
              data_root: str | None) -> tuple[FigureInput, list[Claim]]:
    """A figure's input over the run directories in ``paths`` (measured), and its claims."""
    inp = FigureInput(figure.name, {stem: paths[stem] for stem in figure.configs},
                      mode.banner, known=known)
    if figure.measure is not None:
        figure.measure(inp, data_root)
    return inp, figure.evaluate(inp)


def check_output(out: Path, partial: bool, shifted: bool = False) -> None:
    """Before any training: ``out`` can take the figures; a quick or partial report never
    replaces a full one, and a report on shifted seeds never replaces the reference (the
    committed figures). A full rerun on shifted seeds may redraw its own folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a directory for the figures")
    report = out / REPORT_FILE
    kind = report_kind(report)
    if kind in (None, "partial"):
        return
    if partial:
        raise UsageError(f"{report} is a full report; a --quick or --only run would replace it "
                         f"and its figures with partial ones: give another --out")
    if shifted and kind == "reference":
        raise UsageError(f"{report} is a full report on the reference seeds; a --seed-offset "
                         f"run would replace it with one on other seeds: give another --out")


def previous_report(report: Path) -> str:
    """The text of the full report on the reference seeds at ``report`` (the last full run's,
    which the new report lists its changed rows against), "" when there is none."""
    if report_kind(report) != "reference":
        return ""
    return report.read_text(encoding="utf-8", errors="replace")


def report_kind(report: Path) -> str | None:
    """What a written report is, from its title and notes: "partial" (--quick or --only),
    "shifted" (every figure, --seed-offset), "reference" (every figure, the reference seeds);
    None when there is none to read (not a regular file: never block on a FIFO)."""
    if not report.is_file():
        return None
    try:
        text = report.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    title = text.split("\n", 1)[0]
    if "QUICK" in title or "(`--only`)" in text:
        return "partial"
    return "shifted" if SHIFTED_TITLE in title else "reference"


def figure_summary(figure: Figure, claims: Sequence[Claim]) -> str:
    """One paragraph for a student: the figure (linked), what it shows and why, its tally."""
    passed = sum(c.passed for c in claims)
    conclusion = f" {figure.conclude(claims)}" if figure.conclude is not None else ""
    return (f"**[{figure.name}]({figure.name}.png)** — {figure.summary}{conclusion} *Claims: "
            f"{passed} of {len(claims)} PASS.*")


# --- The report's notes -------------------------------------------------------------------------


def report_notes(figures: Sequence[Figure], mode: Mode, cache: Path,
                 trained_by: str = "") -> list[str]:
    notes = []
    if mode.quick:
        notes.append(f"**{mode.banner}.** Every run used the first {QUICK_TRAIN_IMAGES} "
                     f"training and {QUICK_TEST_IMAGES} test images and at most {QUICK_EPOCHS} "
                     "epochs.")
    if mode.overrides:
        notes.append("Every figure's config was changed by "
                     + ", ".join(f"`--set {o}`" for o in mode.overrides) + ".")
    if mode.seed_offset:
        notes.append(f"Every seed shifted by {mode.seed_offset} (`--seed-offset`): a rerun on "
                     "seeds disjoint from the reference ones.")
    if mode.max_group:
        notes.append(f"At most {mode.max_group} member(s) trained as one stacked model "
                     "(`--max-group`).")
    if trained_by:  # how this invocation's executor trained its runs
        notes.append(trained_by)
    notes.append("Network unless stated: 50 Linear layers of width 100, ReLU, "
                 "W_i ~ N(0, c/n), MNIST pixels in [0, 1], batch 128. Every number is read from "
                 f"the run directories in `{cache}` (named by config hash); a FAIL is reported "
                 "as measured.")
    commit = git_commit()
    notes.append(f"Drawn by initlab at commit `{commit[:12] if commit else 'unknown'}` from "
                 "the recipes in `initlab/figures/configs/` at that commit.")
    notes.append("Seeds: every claim that depends on training is measured on each seed's runs "
                 "(a seed sets the weights' draw and the data order; trained as stacked "
                 "members) and summarized over the seeds with a 95% interval that fits the "
                 "outcome (`initlab/intervals.py`): a yes/no outcome per seed as k of n with its "
                 "exact Clopper-Pearson interval; a difference in percentage points as the mean "
                 "with its Student t interval; every other number (error rates, ratios, spans: "
                 "bounded or heavy-tailed) as the mean with its percentile bootstrap interval. "
                 "Each row's measurement names its interval and its seeds; a number that is the "
                 "same on every seed (one measurement repeated) gets no interval. A row PASSes "
                 "only when the whole interval is on the claim's side of its threshold, FAILs "
                 "when it is wholly on the other side, and is INCONCLUSIVE otherwise; a figure "
                 "with a row still INCONCLUSIVE then gets twice its seeds, up to a cap its "
                 "module fixes before any run (`seed_cap`: 10 seeds, 16 for "
                 "weight-standardization), and is evaluated again on all of them (every row's "
                 "measurement says how many seeds it used). An existential claim (“in some "
                 "cases”) PASSes when any of its named conditions shows it and is INCONCLUSIVE "
                 "(not shown) otherwise: its absence here cannot refute it. A run that "
                 "diverged has no \"after training\" number: such a row is measured on the "
                 "seeds that trained and says how many gave a value; a row about whether "
                 "training succeeds counts a diverged run as a failure. A stacked member's "
                 "numbers are bit for bit those of the same config trained alone, for groups "
                 "of 1 to 8 at the figures' shapes (tests/test_train.py), so a run cached by "
                 "its config is what that config gives. normalized-gradients' claims at "
                 "initialization are measured the same way on each of its 5 draws of the "
                 "weights.")
    notes.append("Whose claim: *lecture* rows check a statement of Kolter & Chen's lectures "
                 "(quoted or paraphrased, with the part of the lecture); *paper* rows a "
                 "published result; *initlab's hypothesis* rows are our own expectations, with "
                 "the reasoning behind them. Every threshold was fixed before the runs it "
                 "checks (from the lecture, the paper or that reasoning), never tuned after. "
                 "The budgets of the runs added with the theory figures (epochs, learning-rate "
                 "grid, data subset) were sized from timings of a few hundred steps, reading no "
                 "error or claim value; where a FAIL has an explanation from the other "
                 "figures, it is listed under the table.")
    if len(figures) < len(FIGURES):
        notes.append("Figures in this report: " + ", ".join(f"`{f.name}`" for f in figures)
                     + " (`--only`).")
    return notes


# Statements of the lectures' notes (issue 30's list) that no row measures, and why.
STATEMENTS_WITHOUT_ROWS = (
    ("Lecture 9: after training, the gradients change across the layers with similar effects of "
     "the init", "no row yet: trained-norms draws the trained gradient norms per c"),
    ("Lecture 9: smaller weights give a smoother function (Lipschitz)",
     "not measurable here: initlab records no Lipschitz estimate (no spectral norms)"),
    ("Lecture 9: “I often don't bother with weight decay” / weight decay can often be skipped",
     "a practice, not a measurable claim; regularization tests the lecture's “1e-4 slightly "
     "better”"),
    ("Lecture 9: deep over-parameterized nets overfit",
     "no row for a deep net: the 50-layer net never fits its training set in the suite's "
     "budgets; dropout's first row shows a shallow wide net that does"),
    ("Lecture 9: in convex optimization the initialization matters little",
     "not measurable here: initlab trains no convex model"),
    ("Lecture 9: a larger batch gives a more accurate estimate of the mean",
     "no row: initlab does not record the batch statistics' error; small-batch shows its "
     "consequence for batch norm"),
    ("Group Norm video: instance norm does poorly",
     "not measurable here: on an MLP's feature vector (no spatial positions) instance norm "
     "normalizes one value per channel and is undefined"),
    ("Group Norm video: group norm's stability is close to batch norm's",
     "no row: small-batch and weight-standardization compare their errors, not their "
     "spread over seeds"),
)


def statements_without_rows() -> str:
    """The report's section on the statements no row measures."""
    lines = ["## Statements without a row", "",
             "Statements of the notes that no row above measures, and why:", ""]
    lines += [f"- {statement}: {why}." for statement, why in STATEMENTS_WITHOUT_ROWS]
    return "\n".join(lines)


def runs_table(paths: dict[str, list[Path]], known: dict[Path, Run] | None = None) -> str:
    """What each run really did: status, epochs, final test error, wall time of its group and
    the CPU threads it trained on. ``known``: runs already read, by directory."""
    known = {} if known is None else known
    lines = ["| config | run (config hash) | member | status | epochs | test error "
             "| group wall (s) | threads |", "|---|---|---|---|---|---|---|---|"]
    for stem, dirs in paths.items():
        runs = [known[path] if path in known else load_run(path) for path in dirs]
        for path, run, label in zip(dirs, runs, member_labels(runs), strict=True):
            s = run.summary
            lines.append(f"| {stem} | `{path.name}` | {label} | "
                         f"{s.get('status', '?')} | {s.get('epochs', '?')} | "
                         f"{run.final_test_error:.2%} | {s.get('wall_seconds', '?')} | "
                         f"{s.get('threads') or '?'} |")
    return "\n".join(lines)


# How the runs table names a config field that varies between a config's runs.
FIELD_NAMES = {"init.c": "c", "init.scheme": "init", "model.norm": "norm",
               "model.norm_position": "norm placement", "model.depth": "depth",
               "model.width": "width", "model.dropout": "dropout", "train.batch_size": "batch",
               "train.lr": "lr", "train.seed": "seed", "train.weight_decay": "weight decay",
               "train.optimizer": "optimizer", "train.momentum": "momentum"}


def member_labels(runs: Sequence[Run]) -> list[str]:
    """Each run labelled by the config fields that vary between these runs (a config's members:
    its sweep, and what its recipe varies), in a stable order; a config with one run, or runs
    that differ in nothing but their name, by ``member_label``."""
    flat = [{f"{section}.{key}": value for section, values in run.config.items()
             if isinstance(values, dict) for key, value in values.items()} for run in runs]
    keys = sorted({key for values in flat for key in values
                   if len({repr(v.get(key)) for v in flat}) > 1},
                  key=lambda k: (list(FIELD_NAMES).index(k) if k in FIELD_NAMES
                                 else len(FIELD_NAMES), k))
    if not keys:
        return [member_label(run) for run in runs]
    return [", ".join(f"{FIELD_NAMES.get(key, key)} = {show_value(values.get(key))}"
                      for key in keys) for values in flat]


def show_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def member_label(run: Run) -> str:
    """What sets a run apart from the lecture's network: the init, and the norm, batch size,
    seed and regularization where they differ from it."""
    parts = ["W = 0" if cfg_value(run, "init.scheme") == "zeros"
             else f"c = {c_of(run):g}"]
    if cfg_value(run, "model.norm") not in (None, "none"):
        parts.append(f"{cfg_value(run, 'model.norm')} norm")
    if cfg_value(run, "train.batch_size") not in (None, 128):
        parts.append(f"batch {cfg_value(run, 'train.batch_size')}")
    if cfg_value(run, "train.seed"):
        parts.append(f"seed {cfg_value(run, 'train.seed')}")
    if cfg_value(run, "train.weight_decay"):
        parts.append(f"weight decay {cfg_value(run, 'train.weight_decay'):g}")
    if cfg_value(run, "model.dropout"):
        parts.append(f"dropout {cfg_value(run, 'model.dropout'):g}")
    return ", ".join(parts)
