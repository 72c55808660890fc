"""The one run cache of the figures: every run any figure reads is ``<cache>/<config hash>/``, a
plain run directory named by a hash of its resolved config.

``ensure_runs`` takes the run sets the requested figures need, dedupes their members by hash and
trains only the missing ones: members of one shape stack into one model
(``initlab.experiment.group_indices``), and each group is a job of the executor: ``--jobs`` at
a time in local worker processes (``initlab.jobs``), or a task on a Ray cluster
(``initlab.ray_jobs``, ``--executor ray``), whose results land in the same directories. A
run set that declares a ``Launch`` (several local processes splitting every batch, always on
this machine) is trained by that launch into a temporary directory inside the cache, and each
member directory then moves to its hash name (a member directory is self-contained).
A cached run that is not finished is a leftover of an interrupted call, not a user's run: it is
retrained from scratch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from initlab.config import RunConfig, config_hash, dump_yaml, load_experiment
from initlab.describe import plural
from initlab.distributed import check_launch, launch
from initlab.errors import RunInterrupted, UsageError
from initlab.experiment import member_jobs
from initlab.figures.core import Launch, RunSet
from initlab.jobs import Executor, Job, LocalPool
from initlab.progress import ProgressFactory, quiet_progress
from initlab.runs import (
    FINISHED,
    RunWriter,
    config_dirs,
    config_text,
    is_run_dir,
    read_summary,
)

DEFAULT_CACHE = Path("runs") / "figures-cache"
LAUNCH_PREFIX = ".launch-"  # a launch's temporary directory inside the cache

Log = Callable[[str], None]


def run_path(cache: Path, cfg: RunConfig) -> Path:
    return cache / config_hash(cfg)


def is_cached(path: Path, cfg: RunConfig) -> bool:
    """A finished run of exactly this config (completed, or diverged: that is a result too)."""
    if config_text(path) != dump_yaml(cfg) or not is_run_dir(path):
        return False
    try:
        return read_summary(path).get("status") in FINISHED
    except UsageError:  # damaged: trained again
        return False


def ensure_runs(run_sets: Sequence[RunSet], cache: Path, data_root: str | None,
                progress: ProgressFactory = quiet_progress, log: Log = print,
                max_group: int | None = None,
                executor: Executor | None = None) -> tuple[dict[str, list[Path]], int, int]:
    """Run directories for every run set (training the missing runs): the paths by config
    stem, how many runs were trained and how many were cached. ``max_group`` bounds the
    members of one stacked model; ``executor`` trains the groups (default: one at a time
    here)."""
    paths = {s.stem: [run_path(cache, cfg) for cfg in s.configs] for s in run_sets}
    needed: dict[Path, tuple[RunConfig, RunSet]] = {}
    for run_set in run_sets:  # a run two sets need trains the first set's way
        for path, cfg in zip(paths[run_set.stem], run_set.configs, strict=True):
            needed.setdefault(path, (cfg, run_set))
    missing = {path: entry for path, entry in needed.items() if not is_cached(path, entry[0])}
    log(f"{len(needed) - len(missing)} of {plural(len(needed), 'run')} cached in {cache}; "
        f"training {len(missing)}")
    for path in missing:
        if path.exists():  # interrupted or stale: start it afresh
            shutil.rmtree(path)
    launched: dict[Launch, list[RunConfig]] = {}
    pooled: list[tuple[Path, RunConfig, int | None]] = []
    for path, (cfg, run_set) in missing.items():
        if run_set.launch is not None:
            launched.setdefault(run_set.launch, []).append(cfg)
        else:
            pooled.append((path, cfg, run_set.threads))
    # Launches first, one at a time: their workers time their epochs (sync-bn's claims), so
    # nothing else runs beside them.
    for spec, configs in launched.items():
        train_launched(spec, configs, cache, data_root)
    (executor or LocalPool()).run(group_jobs(pooled, data_root, max_group), progress)
    return paths, len(missing), len(needed) - len(missing)


# --- Stacked groups in the job pool -------------------------------------------------------------


def group_jobs(members: Sequence[tuple[Path, RunConfig, int | None]], data_root: str | None,
               max_group: int | None) -> list[Job]:
    """Each member's directory with its config, and one job per stacked group. Members that
    train on different thread counts never share a group."""
    by_threads: dict[int | None, list[tuple[Path, RunConfig]]] = {}
    for path, cfg, threads in members:
        RunWriter(path).write_config(dump_yaml(cfg))
        by_threads.setdefault(threads, []).append((path, cfg))
    jobs = []
    for threads, share in by_threads.items():
        jobs += member_jobs([cfg for _, cfg in share], [path for path, _ in share], data_root,
                            max_group, threads)
    return jobs


# --- Launched runs ------------------------------------------------------------------------------


def train_launched(spec: Launch, configs: Sequence[RunConfig], cache: Path,
                   data_root: str | None) -> None:
    """Train ``spec``'s experiment through ``initlab run --nproc N --split batches`` into a
    temporary directory inside the cache, then move the members in ``configs`` to their hash
    names (the same file system: an atomic rename each). Its other members are cached already
    and are dropped."""
    check_launch(load_experiment(spec.source, spec.overrides), spec.nproc, "batches")
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=LAUNCH_PREFIX, dir=cache))
    try:
        args = ["run", str(spec.source), "--out", str(scratch), "--split", "batches",
                *(f"--set={o}" for o in spec.overrides)]
        args += ["--data-root", data_root] if data_root is not None else []
        code = launch(spec.nproc, args)
        if code in (130, 143):  # SIGINT or SIGTERM: the workers checkpointed and stopped
            raise RunInterrupted(code - 128, scratch)
        if code != 0:
            raise UsageError(f"{spec.source.name}: the {spec.nproc} launched workers failed "
                             f"(exit {code})")
        wanted = {dump_yaml(cfg): run_path(cache, cfg) for cfg in configs}
        for member in config_dirs(scratch):
            target = wanted.pop(config_text(member) or "", None)
            if target is not None:
                os.replace(member, target)
        if wanted:  # the launch's configs are not the ones the figure asked for: a bug
            raise RuntimeError(f"{spec.source.name}: the launch did not train "
                               f"{', '.join(p.name for p in wanted.values())}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
