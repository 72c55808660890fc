"""Figures ``small-batch`` and ``sync-bn``: normalization when each worker sees few examples.

- ``small-batch``: test error after a fixed data budget against the per-worker batch size b, for
  no normalization, batch, group and layer norm (one process; configs/figures/small-batch.yaml).
- ``sync-bn``: 4 gloo workers on this machine with 4 examples each: batch norm (per worker)
  against synchronized batch norm and group norm, test error and wall time per epoch, trained
  through the real ``initlab run --nproc 4 --split batches`` path (configs/figures/sync-bn.yaml).

For each figure: a recipe that produces run directories and returns its member directories
(reusing finished ones: a sweep directory is named by a hash of its members' configs), a plot
(a matplotlib Figure) and the claim rows, both reading run directories only. The shapes follow
``initlab.figures`` (member directories in, ``Figure``/``Claim`` out); ``make_batch_figures``
draws both on their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from initlab.config import Experiment, config_hash, load_experiment
from initlab.data import TRAIN_IMAGES
from initlab.errors import UsageError
from initlab.experiment import (
    ProgressFactory,
    RunInterrupted,
    quiet_progress,
    run_experiment,
    training_cost,
)
from initlab.jobs import Job, run_jobs
from initlab.report import Claim
from initlab.runs import SUMMARY_FILE, SWEEP_FILE, Run, load_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SMALL_BATCH = "small-batch"
SYNC_BN = "sync-bn"
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128)
REFERENCE_BATCH = 128  # a config's train.lr is the learning rate at this batch size
SYNC_WORKERS = 4
# --quick, as initlab.figures.Mode: 2048 training and 1000 test images, at most 2 epochs (both
# configs have at most 2). A look at the pipeline, not the reference numbers.
QUICK = ("data.train_subset=2048", "data.test_subset=1000")
NORM_LABELS = {"none": "none", "batch": "batch norm", "syncbatch": "synchronized batch norm",
               "group": "group norm", "layer": "layer norm"}
# Thresholds, fixed before any run of these figures: 2 percentage points of test error (about
# four standard errors of one member's test error near 15% on 10,000 images), and 10% of time.
RISE_PP = 0.02
SLOWER = 1.1


def scaled_lr(lr_at_reference: float, batch: int) -> float:
    """The linear scaling rule: the learning rate grows with the batch."""
    return lr_at_reference * batch / REFERENCE_BATCH


# --- Recipes: configs -> run directories ------------------------------------------------------


def base_overrides(quick: bool, extra: Sequence[str] = ()) -> list[str]:
    """Quick mode's, then the user's (``initlab figures --set``)."""
    return [*(QUICK if quick else ()), *extra]


def small_batch_overrides(config: Path, quick: bool = False,
                          extra: Sequence[str] = ()) -> list[list[str]]:
    """The config's overrides for each batch size b: lr = lr(128) * b / 128."""
    base = load_experiment(config, base_overrides(quick, extra))
    lr = base.base.train.lr
    return [[*base_overrides(quick, extra), f"name={base.name}-b{b}", f"train.batch_size={b}",
             f"train.lr={scaled_lr(lr, b)!r}"] for b in BATCH_SIZES]


def cache_name(exp: Experiment) -> str:
    """The experiment's name and a digest of its members' resolved configs."""
    digest = hashlib.sha256(" ".join(config_hash(m.config) for m in exp.members).encode())
    return f"{exp.name}-{digest.hexdigest()[:12]}"


def finished(path: Path) -> bool:
    """A sweep directory whose every member completed (or diverged: a result too)."""
    if not (path / SWEEP_FILE).is_file():
        return False
    for name in json.loads((path / SWEEP_FILE).read_text())["members"]:
        summary = path / name / SUMMARY_FILE
        if not summary.is_file():
            return False
        if json.loads(summary.read_text()).get("status") not in ("completed", "diverged"):
            return False
    return True


def cached_run(config: Path, overrides: list[str], runs_root: Path,
               train: Callable[[list[str]], None]) -> list[Path]:
    """The member directories of the finished sweep of ``config`` with ``overrides``: reused if
    there is one, else trained by ``train(overrides + [name=...])``. A directory left
    unfinished (an interrupted figure run) is removed first: it is a cache entry, not a user's
    run."""
    name = cache_name(load_experiment(config, overrides))
    path = runs_root / name
    if not finished(path):
        shutil.rmtree(path, ignore_errors=True)
        train([*overrides, f"name={name}"])
        if not finished(path):
            raise UsageError(f"{path}: training did not finish")
    return [path / member for member in json.loads((path / SWEEP_FILE).read_text())["members"]]


def produce_small_batch(config: Path, runs_root: Path, data_root: str | None = None,
                        quick: bool = False, progress: ProgressFactory = quiet_progress,
                        extra: Sequence[str] = (), max_group: int | None = None,
                        jobs: int = 1) -> list[Path]:
    """The member directories of one sweep (seeds x norms) per batch size; the missing sweeps
    train ``jobs`` at a time (initlab.jobs), each on one thread."""
    sweeps = small_batch_overrides(config, quick, extra)
    todo = []
    for overrides in sweeps:
        exp = load_experiment(config, overrides)
        if not finished(runs_root / cache_name(exp)):
            cost = sum(training_cost([m.config]) for m in exp.members)
            todo.append(Job(exp.name, cost, train_cached_sweep,
                            (config, overrides, runs_root, data_root, max_group)))
    run_jobs(todo, jobs, progress)
    return [path for overrides in sweeps
            for path in train_cached_sweep(config, overrides, runs_root, data_root, max_group)]


def train_cached_sweep(config: Path, overrides: list[str], runs_root: Path,
                       data_root: str | None, max_group: int | None,
                       progress: ProgressFactory = quiet_progress) -> list[Path]:
    """A job: the sweep of ``config`` with ``overrides`` in the cache (trained here, on one
    thread, unless it is there already); its member directories."""
    def train(names: list[str]) -> None:
        with one_thread():
            run_experiment(load_experiment(config, names), runs_root, data_root, progress,
                           max_group)

    return cached_run(config, overrides, runs_root, train)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train on one CPU thread. A step's tensors are tiny (b <= 128 rows of width 100), so
    intra-op threads only add synchronization; on a busy 2-core machine their spinning made
    this recipe 13x slower (185 s against 14 s for --quick, same numbers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def produce_sync_bn(config: Path, runs_root: Path, data_root: str | None = None,
                    quick: bool = False, extra: Sequence[str] = ()) -> list[Path]:
    """The sweep trained by SYNC_WORKERS local gloo processes splitting every batch: the same
    launcher, workers and code path as ``initlab run CONFIG --nproc 4 --split batches``."""
    from initlab.distributed import check_launch, launch

    def train(overrides: list[str]) -> None:
        check_launch(load_experiment(config, overrides), SYNC_WORKERS, "batches")
        args = ["run", str(config), "--out", str(runs_root), "--split", "batches",
                *(f"--set={o}" for o in overrides)]
        args += ["--data-root", data_root] if data_root is not None else []
        code = launch(SYNC_WORKERS, args)
        if code in (130, 143):  # SIGINT or SIGTERM: the workers checkpointed and stopped
            raise RunInterrupted(code - 128, runs_root)
        if code != 0:
            raise UsageError(f"figure {SYNC_BN}: the {SYNC_WORKERS} workers failed (exit {code})")

    return cached_run(config, base_overrides(quick, extra), runs_root, train)


# --- Reading runs --------------------------------------------------------------------------


def final_error(run: Run) -> float:
    """The member's final test error (NaN when it has none, e.g. diverged)."""
    value = run.summary.get("final_test_error")
    return float("nan") if value is None else float(value)


def load_all(run_dirs: Sequence[Path]) -> list[Run]:
    """The runs of member (or sweep) directories."""
    return [run for path in run_dirs for run in load_runs(path)]


def small_batch_errors(runs: Sequence[Run]) -> dict[str, dict[int, list[float]]]:
    """norm -> batch size -> the final test error of each seed."""
    table: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        norm = run.config["model"]["norm"]
        b = run.config["train"]["batch_size"]
        table.setdefault(norm, {}).setdefault(b, []).append(final_error(run))
    return table


def mean_error(errors: dict[int, list[float]], b: int) -> float:
    values = errors.get(b, [])
    return float(np.mean(values)) if values else float("nan")


def rise_at_smallest(errors: dict[int, list[float]]) -> float:
    """Mean error at the smallest batch minus the lowest mean error over all batches."""
    if not errors:
        return float("nan")
    means = {b: mean_error(errors, b) for b in errors}
    return means[min(means)] - float(np.min(list(means.values())))


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


# --- Plots ---------------------------------------------------------------------------------


def plot_small_batch(run_dirs: Sequence[Path], banner: str = "") -> Figure:
    """Test error against per-worker batch size, one line per normalization (seed means; each
    seed a dot), log-log axes."""
    from initlab.plot import use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    runs = load_all(run_dirs)
    table = small_batch_errors(runs)
    reference = max(runs, key=lambda r: r.config["train"]["batch_size"])
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for norm in ("none", "batch", "group", "layer"):
        errors = table.get(norm, {})
        bs = sorted(errors)
        label = NORM_LABELS[norm]
        if norm == "group":
            label += f" ({reference.config['model']['groups']} groups)"
        line, = ax.plot(bs, [100 * mean_error(errors, b) for b in bs], "o-", label=label)
        for b in bs:
            ax.plot([b] * len(errors[b]), [100 * e for e in errors[b]], ".",
                    color=line.get_color(), alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(BATCH_SIZES), [str(b) for b in BATCH_SIZES])
    ax.set_yticks([5, 10, 20, 50, 100], ["5", "10", "20", "50", "100"])
    ax.set_xlabel("per-worker batch size b (one worker)")
    ax.set_ylabel("test error (%)")
    seeds = max(len(v) for errors in table.values() for v in errors.values())
    ax.set_title(title_lines(banner, f"Test error vs batch size, mean of {seeds} seeds "
                             f"(dots: each seed)", setup_text(reference)), fontsize=8)
    t, d = reference.config["train"], reference.config["data"]
    fig.text(0.01, 0.01, f"Every b sees the same {t['epochs']} × {d['train_subset']} examples, "
             f"in {t['epochs']} × {d['train_subset']}/b steps "
             f"({t['epochs'] * d['train_subset'] // t['batch_size']} at b = {t['batch_size']}).",
             fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class SyncRow:
    """One normalization of the sync-bn sweep: each seed's test error and wall seconds per
    epoch (a group's members share one wall clock)."""

    errors: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def error(self) -> float:
        return float(np.mean(self.errors)) if self.errors else float("nan")

    @property
    def epoch_seconds(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")


def sync_bn_table(runs: Sequence[Run]) -> dict[str, SyncRow]:
    """norm -> its row."""
    table: dict[str, SyncRow] = {}
    for run in runs:
        row = table.setdefault(run.config["model"]["norm"], SyncRow())
        row.errors.append(final_error(run))
        epochs = run.summary.get("epochs") or float("nan")
        row.seconds.append(run.summary.get("wall_seconds", float("nan")) / epochs)
    return table


def plot_sync_bn(run_dirs: Sequence[Path], banner: str = "") -> Figure:
    """Two panels over BN, SyncBN, GN: test error (bars: seed mean; dots: seeds) and wall
    seconds per epoch."""
    from initlab.plot import use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    runs = load_all(run_dirs)
    table = sync_bn_table(runs)
    per_worker = runs[0].config["train"]["batch_size"] // SYNC_WORKERS
    norms = [n for n in ("batch", "syncbatch", "group") if n in table]
    labels = [{"batch": f"BN\n(per worker, {per_worker})",
               "syncbatch": f"SyncBN\n(all {per_worker * SYNC_WORKERS})",
               "group": f"GN\n({runs[0].config['model']['groups']} groups)"}[n] for n in norms]
    fig, (err_ax, time_ax) = plt.subplots(1, 2, figsize=(9, 4.8))
    x = np.arange(len(norms))
    err_ax.bar(x, [100 * table[n].error for n in norms], color="C0", alpha=0.7)
    for i, n in enumerate(norms):
        err_ax.plot([i] * len(table[n].errors), [100 * e for e in table[n].errors], "k.")
    err_ax.set_ylabel("test error (%)")
    err_ax.set_title("test error (bars: seed mean, dots: seeds)", fontsize=9)
    seconds = [table[n].epoch_seconds for n in norms]
    bars = time_ax.bar(x, seconds, color="C1", alpha=0.7)
    time_ax.bar_label(bars, [f"{v:.1f} s" for v in seconds], fontsize=8)
    time_ax.set_ylabel("wall seconds per epoch (incl. test-set evaluations)")
    time_ax.set_title(f"time per epoch: {SYNC_WORKERS} gloo processes on one machine",
                      fontsize=9)
    for ax in (err_ax, time_ax):
        ax.set_xticks(x, labels)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title_lines(banner, setup_text(runs[0], per_worker=per_worker)), fontsize=8)
    fig.tight_layout()
    return fig


def title_lines(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


# --- Claims ---------------------------------------------------------------------------------


def small_batch_claims(run_dirs: Sequence[Path]) -> list[Claim]:
    table = small_batch_errors(load_all(run_dirs))
    bn, gn = table.get("batch", {}), table.get("group", {})
    smallest = min(BATCH_SIZES)
    return [
        Claim(SMALL_BATCH, f"BN's test error rises at small batch: error at b = {smallest} "
              f"minus its lowest over b (seed means)", rise_at_smallest(bn), ">=", RISE_PP,
              "pp"),
        Claim(SMALL_BATCH, f"GN's test error stays level at small batch: error at b = "
              f"{smallest} minus its lowest over b", rise_at_smallest(gn), "<=", RISE_PP, "pp"),
        Claim(SMALL_BATCH, f"at b = {smallest}, GN's test error is below BN's: BN − GN",
              mean_error(bn, smallest) - mean_error(gn, smallest), ">=", RISE_PP, "pp"),
    ]


def sync_bn_claims(run_dirs: Sequence[Path]) -> list[Claim]:
    table = sync_bn_table(load_all(run_dirs))
    bn, sync, gn = (table.get(n, SyncRow()) for n in ("batch", "syncbatch", "group"))
    return [
        Claim(SYNC_BN, "synchronizing the batch statistics fixes BN at 4 per worker: "
              "test error BN − SyncBN", bn.error - sync.error, ">=", RISE_PP, "pp"),
        Claim(SYNC_BN, "at a communication cost: wall time per epoch SyncBN / BN",
              sync.epoch_seconds / bn.epoch_seconds, ">=", SLOWER),
        Claim(SYNC_BN, "GN needs no batch statistics: test error BN − GN at 4 per worker",
              bn.error - gn.error, ">=", RISE_PP, "pp"),
        Claim(SYNC_BN, "nor any communication: wall time per epoch GN / SyncBN",
              gn.epoch_seconds / sync.epoch_seconds, "<", 1.0),
    ]


# --- Both figures on their own (until the figure registry lists them) --------------------------


def make_batch_figures(configs: Path, runs_root: Path, out: Path, data_root: str | None = None,
                       quick: bool = False,
                       progress: ProgressFactory = quiet_progress) -> list[Claim]:
    """Produce (or reuse) the runs, save ``small-batch.png`` and ``sync-bn.png`` into ``out``
    and return the claim rows of both."""
    small = produce_small_batch(configs / f"{SMALL_BATCH}.yaml", runs_root, data_root, quick,
                                progress)
    sync = produce_sync_bn(configs / f"{SYNC_BN}.yaml", runs_root, data_root, quick)
    banner = "QUICK: not the reference numbers" if quick else ""
    save(plot_small_batch(small, banner), out / f"{SMALL_BATCH}.png")
    save(plot_sync_bn(sync, banner), out / f"{SYNC_BN}.png")
    return small_batch_claims(small) + sync_bn_claims(sync)


def save(fig: Figure, target: Path) -> None:
    import matplotlib.pyplot as plt

    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
