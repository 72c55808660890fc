"""Run an experiment (one config or a sweep) into a run directory, or resume one: the module
that composes trainers, checkpoint files and processes.

Members are grouped by their shared fields (``config.group_key``); each group trains as one
stacked model. Everything a user can get wrong (output directory, device, data) is checked
before the run directory is created, so a refused run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from initlab import checkpoint, resources
from initlab.config import Experiment, RunConfig, dump_yaml, group_key
from initlab.data import TEST_IMAGES, TRAIN_IMAGES, MNISTTensors, load_mnist, steps_per_epoch
from initlab.distributed import LOCAL, Comm, NullWriter, announce_run_dir
from initlab.errors import RunInterrupted, UsageError
from initlab.jobs import Executor, Job
from initlab.model import layer_widths
from initlab.progress import ProgressFactory, quiet_progress
from initlab.resume import MemberPlan, apply_plan, plan_members, plan_resume
from initlab.runs import (
    CHECKPOINT_FILE,
    FINISHED,
    PREVIOUS_CHECKPOINT_FILE,
    SUMMARY_FILE,
    SWEEP_FILE,
    Outcome,
    RunWriteError,
    RunWriter,
    check_output_parent,
    create_unique_dir,
    read_summary,
    run_lock,
    run_summary,
    write_summary,
    write_sweep_listing,
)
from initlab.train import (
    GroupTrainer,
    MemberState,
    SaveCheckpoint,
    StopFlag,
    resolve_device,
)

DataCache = dict[tuple, MNISTTensors]


# How a member's directory is written: a RunWriter, or one that also writes elsewhere (e.g.
# TensorBoard event files beside the records).
WriterFactory = Callable[[Path], RunWriter]


def run_experiment(exp: Experiment, out: Path, data_root: str | None = None,
                   progress: ProgressFactory = quiet_progress,
                   max_group: int | None = None,
                   writer: WriterFactory = RunWriter) -> list[Outcome]:
    """Create the run directory (never reusing an existing one) and train every member
    (``max_group``: at most this many as one stacked model)."""
    check_output_parent(out)
    data = prepare_data([m.config for m in exp.members], data_root)  # no run on bad data
    top = set_up(exp, out)
    members = [MemberState(m.config, writer(path))
               for m, path in zip(exp.members, member_paths(exp, top), strict=True)]
    with run_lock(top):
        return train_members(members, data_root, progress, None, data, max_group=max_group)


def run_experiment_across(exp: Experiment, out: Path, data_root: str | None,
                          progress: ProgressFactory, comm: Comm, split: str = "auto",
                          writer: WriterFactory = RunWriter) -> list[Outcome]:
    """``run_experiment`` on every rank of ``comm``: rank 0 sets up the run directory exactly
    as one process does (and alone holds its lock); each rank then trains the members its
    plan gives it. Rank 0 returns every outcome, the others []."""
    plan = comm.plan([m.config for m in exp.members], exp.is_sweep, split)
    data = prepare_data([exp.members[i].config for i in plan.indices], data_root)
    top = comm.on_writer(lambda: set_up(exp, out))
    if comm.is_writer:
        announce_run_dir(top)
    paths = member_paths(exp, top)
    members = [MemberState(exp.members[i].config, plan.writer(paths[i], writer))
               for i in plan.indices]
    with run_lock(top) if comm.is_writer else contextlib.nullcontext():
        mine = train_members(members, data_root, progress, None, data, comm=plan.comm)
        return plan.outcomes(mine, paths)


def set_up(exp: Experiment, out: Path) -> Path:
    """A new directory for the experiment under ``out`` with each member's directory and
    resolved config; for a sweep, ``sweep.json`` last, so a sweep directory without it is known
    to be incomplete. Nothing is left behind when this fails."""
    check_output_parent(out)
    top = create_unique_dir(out, exp.name)
    try:
        for member, path in zip(exp.members, member_paths(exp, top), strict=True):
            RunWriter(path).write_config(dump_yaml(member.config))
        if exp.is_sweep:
            write_sweep_listing(top, exp.name, [m.name for m in exp.members])
    except BaseException:  # nothing trained yet: leave nothing half set up behind
        shutil.rmtree(top, ignore_errors=True)
        raise
    return top


def member_paths(exp: Experiment, top: Path) -> list[Path]:
    return [top / m.name if exp.is_sweep else top for m in exp.members]


def resume_experiment(run_dir: Path, data_root: str | None = None,
                      progress: ProgressFactory = quiet_progress,
                      writer: WriterFactory = RunWriter) -> list[Outcome]:
    """Continue an interrupted (or killed) run or sweep from its last checkpoints. Every check
    comes first (``initlab.resume``); completed and diverged members are never written."""
    with run_lock(run_dir):
        plans = plan_resume(run_dir)
        continue_members(plans, data_root, progress, writer)
    return [Outcome(p.path.name, p.path, read_summary(p.path)) for p in plans]


def continue_members(plans: Sequence[MemberPlan], data_root: str | None,
                     progress: ProgressFactory, writer: WriterFactory = RunWriter) -> None:
    """Train the planned members that are not finished on from their checkpoints (or from
    step 0), with the finished ones their groups need taking part read-only."""
    if not any(p.trains for p in plans):
        return
    taking_part = [p for p in plans if p.in_group]
    data = prepare_data([p.config for p in taking_part], data_root)
    apply_plan(plans)
    members = [MemberState(p.config, writer(p.path) if p.trains else NullWriter(p.path))
               for p in taking_part]
    train_members(members, data_root, progress, [p.state for p in taking_part], data)


# --- Groups as jobs (initlab.jobs): a pool of local processes, or a Ray cluster ----------------


def run_experiment_with(exp: Experiment, out: Path, executor: Executor,
                        data_root: str | None = None,
                        progress: ProgressFactory = quiet_progress,
                        max_group: int | None = None,
                        threads: int | None = None) -> list[Outcome]:
    """``run_experiment`` with each stacked group a job of ``executor`` (``initlab run
    --executor ray``: a task on a Ray cluster), on ``threads`` CPU threads each: the same
    directories, and the same records for the same thread count. Interrupted, every member
    says where it stands and ``initlab run --resume`` continues the run."""
    check_output_parent(out)
    configs = [m.config for m in exp.members]
    prepare_data(configs, data_root)  # no run on bad data
    executor.check(member_jobs(configs, [out] * len(configs), data_root, max_group, threads))
    top = set_up(exp, out)
    paths = member_paths(exp, top)
    jobs = member_jobs(configs, paths, data_root, max_group, threads)
    # A sweep's directory is this process's to hold; a single run's is its job's (on a node).
    with run_lock(top) if exp.is_sweep else contextlib.nullcontext():
        try:
            executor.run(jobs, progress)
        except RunInterrupted as err:
            for job in jobs:  # groups never started: "interrupted" at step 0
                for path in job.run_dirs:
                    if not (path / SUMMARY_FILE).exists():
                        write_summary(path, run_summary(
                            "interrupted", members_in_group=len(job.run_dirs)))
            raise RunInterrupted(err.signum, top) from None
    return [Outcome(path.name, path, read_summary(path)) for path in paths]


def member_jobs(configs: Sequence[RunConfig], paths: Sequence[Path], data_root: str | None,
                max_group: int | None = None, threads: int | None = None) -> list[Job]:
    """One job per stacked group (``group_indices``) of members whose directories hold their
    config.yaml, each training on ``threads`` CPU threads (None: its executor's share)."""
    jobs = []
    for indices in group_indices(configs, max_group):
        group = [configs[i] for i in indices]
        name = group[0].name
        jobs.append(Job(name if len(group) == 1 else f"{name} ×{len(group)}",
                        training_cost(group), train_member_dirs,
                        tuple(paths[i] for i in indices), (group, data_root), threads,
                        group[0].train.device))
    return jobs


def train_member_dirs(run_dirs: Sequence[Path], configs: Sequence[RunConfig],
                      data_root: str | None, progress: ProgressFactory = quiet_progress) -> None:
    """A job: train, as one group, the members whose directories hold their config.yaml.
    Where an earlier attempt of this job left checkpoints (a task retried after its node
    died), the group continues from the last one, as ``initlab run --resume`` would; an
    attempt stopped before its first checkpoint left only records of step 0 on, which go:
    the group starts again."""
    if any(os.path.lexists(path / name) for path in run_dirs
           for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE)):
        continue_members(plan_members(run_dirs), data_root, progress)
        return
    for path in run_dirs:
        checkpoint.rewind_member(path, None)
    members = [MemberState(c, RunWriter(p)) for c, p in zip(configs, run_dirs, strict=True)]
    train_members(members, data_root, progress, None)


def group_indices(configs: Sequence[RunConfig],
                  max_group: int | None = None) -> list[list[int]]:
    """The members that train together as one stacked model: equal ``group_key``, split into
    groups of at most ``max_group`` (or one model at a time for comparison) and of what fits
    in the memory free now."""
    by_key: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        by_key.setdefault(group_key(cfg), []).append(i)
    groups = []
    for indices in by_key.values():
        cfg = configs[indices[0]]
        fit = resources.members_that_fit(cfg, resources.usable_bytes(
            resolve_device(cfg.train.device)))
        size = min(max_group or len(indices), max(fit, 1) if fit is not None else len(indices))
        groups += [indices[j : j + size] for j in range(0, len(indices), size)]
    return groups


def prepare_data(configs: Sequence[RunConfig], data_root: str | None) -> DataCache:
    """Check that one member of each shape fits in memory, then resolve every device and load
    (so verify) every data set the members need."""
    for cfg in configs:
        problem = resources.too_big([cfg], resources.usable_bytes(
            resolve_device(cfg.train.device)))
        if problem:
            raise UsageError(problem)
    cache: DataCache = {}
    for cfg in configs:
        data = load_group_data(cfg, data_root, resolve_device(cfg.train.device), cache)
        n = data.train_x.shape[0]
        if cfg.train.epochs and cfg.train.batch_size > n:  # else zero steps: a silent nothing
            raise UsageError(f"train.batch_size: {cfg.train.batch_size} is larger than the "
                             f"{n} training images, so an epoch would have no step; lower it "
                             f"or raise data.train_subset")
    return cache


def train_members(members: list[MemberState], data_root: str | None,
                  progress: ProgressFactory, states: list[dict | None] | None,
                  data_cache: DataCache | None = None, comm: Comm = LOCAL,
                  max_group: int | None = None) -> list[Outcome]:
    """``comm``: the process group whose ranks split each batch (initlab.distributed); only
    its rank 0 writes, and returns the outcomes. ``max_group``: see ``group_indices``."""
    data_cache = {} if data_cache is None else data_cache
    groups = group_indices([m.config for m in members], max_group)
    with StopFlag() as stop:
        for indices in groups:
            group = [members[i] for i in indices]
            group_states = [states[i] for i in indices] if states else [None] * len(indices)
            if all(s is not None and s["member"]["status"] in FINISHED for s in group_states):
                continue
            cfg = group[0].config
            device = resolve_device(cfg.train.device)
            data = load_group_data(cfg, data_root, device, data_cache)
            trainer = GroupTrainer(group, data, device, comm, saver(group))
            label = cfg.name if len(group) == 1 else f"{cfg.name} ×{len(group)}"
            on_event = progress(label, total_steps(cfg, data.train_x.shape[0]))
            if all(s is not None for s in group_states):
                trainer.load_member_states(group_states)  # type: ignore[arg-type]
                on_event({"kind": "resume", "step": trainer.step})
            try:
                while not trainer.run(stop, on_event, pause_when_members_stop=comm.world == 1):
                    trainer = smaller_stack(trainer, data, device)
            except RunInterrupted as err:
                mark_not_started(members, groups)
                raise RunInterrupted(err.signum, resume_path(members)) from None
            except RunWriteError as err:
                mark_stopped(group)
                raise RunWriteError(f"{err}\n{resume_hint(group, resume_path(members))}") \
                    from None
            else:  # every member finished: what it needs is its last checkpoint, no more
                checkpoint.drop_previous([m.writer.path for m in group
                                          if not isinstance(m.writer, NullWriter)])
            # A GroupTrainer holds itself in a reference cycle (its step_fn is its own bound
            # method), so its model, gauges' buffers and batch tensors outlive the group until
            # Python's next full collection -- in a worker training groups one after another,
            # hundreds of MB per group (measured). Collect now: the next group gets that memory.
            del trainer
            gc.collect()
    if not comm.is_writer:
        return []
    return [Outcome(m.writer.path.name, m.writer.path, read_summary(m.writer.path))
            for m in members]


def smaller_stack(trainer: GroupTrainer, data: MNISTTensors, device: Any) -> GroupTrainer:
    """The members of ``trainer`` still running, as a stack of their own, each where it left
    off (its checkpoint state, in memory): the stopped ones no longer cost arithmetic. A
    member's numbers do not depend on its company (tests/test_train.py), so none changes."""
    keep = trainer.active()
    running = [trainer.members[k] for k in keep]
    states = [trainer.member_state(k) for k in keep]
    smaller = GroupTrainer(running, data, device, LOCAL, saver(running),
                           group_size=trainer.group_size)
    smaller.load_member_states(states)
    return smaller


def resume_hint(group: Sequence[MemberState], top: Path) -> str:
    """What to do after a failed write, from what is on disk: ``--resume`` where it would
    continue (from which step), else why not, with what is kept."""
    if not any(os.path.lexists(m.writer.path / name) for m in group
               for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE)):
        return f"No checkpoint was written yet; once this is fixed, start the run again " \
               f"(the records in {top} are kept)."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged newer checkpoint: said below
            plans = plan_resume(top)
    except UsageError as err:
        return f"It cannot be resumed as it is ({err}); its records in {top} are kept."
    steps = [checkpoint.position(p.state)[0] for p in plans if p.trains and p.state]
    where = f" from step {min(steps)}" if steps else ""
    return f"Once this is fixed, continue{where} with: initlab run --resume {top}"


def mark_stopped(group: Sequence[MemberState]) -> None:
    """After a failed write, members still marked running say they were interrupted (best
    effort: the disk may still be full)."""
    for member in group:
        if member.status == "running":
            member.status = "interrupted"
            with contextlib.suppress(RunWriteError, OSError):
                member.writer.write_summary(run_summary("interrupted",
                                                        members_in_group=len(group)))


def mark_not_started(members: Sequence[MemberState], groups: Sequence[Sequence[int]]) -> None:
    """On interruption, members of groups not reached yet get a summary too, so every member
    of the sweep says where it stands (``--resume`` starts them from the beginning)."""
    sizes = {i: len(indices) for indices in groups for i in indices}
    for i, member in enumerate(members):
        if not (member.writer.path / SUMMARY_FILE).exists():
            member.writer.write_summary(run_summary("interrupted", members_in_group=sizes[i]))


def load_group_data(cfg: RunConfig, data_root: str | None, device: Any,
                    cache: DataCache) -> MNISTTensors:
    d = cfg.data
    key = (d.root, d.scaling, d.train_subset, d.test_subset, str(device))
    if key not in cache:
        root = data_root if data_root is not None else d.root
        cache[key] = load_mnist(root, d.scaling, device, d.train_subset, d.test_subset)
    return cache[key]


def training_cost(configs: Sequence[RunConfig]) -> float:
    """A rough relative cost of training these members as one group, to start the longest
    jobs first: per member, the multiply-adds of its steps (forward and backward over the
    batch, plus a per-layer overhead worth 64 examples of a 100 x 100 layer) and of its test
    passes (at init and after each epoch: as dear as the training itself for a wide net on a
    few thousand images), the steps weighted by what makes them dearer. The weights are rough,
    from step times on 2 CPU cores: a normalized net with Adam took 1.6-1.9x a plain SGD one, a
    group with dropout in half its members 1.5x one without."""
    total = 0.0
    for cfg in configs:
        n = min(cfg.data.train_subset or TRAIN_IMAGES, TRAIN_IMAGES)
        n_test = min(cfg.data.test_subset or TEST_IMAGES, TEST_IMAGES)
        widths = layer_widths(cfg.model)
        macs = sum(n_in * n_out for n_in, n_out in widths)  # one example's forward pass
        weight = (1.0 + 0.9 * (cfg.model.norm != "none") + 0.5 * (cfg.model.dropout > 0)
                  + 0.3 * (cfg.train.optimizer == "adam"))
        step = 3 * (cfg.train.batch_size * macs + 64 * 100 * 100 * len(widths))
        total += (weight * total_steps(cfg, n) * step
                  + (cfg.train.epochs + 1) * n_test * macs)
    return total


def total_steps(cfg: RunConfig, n_train: int) -> int:
    steps = cfg.train.epochs * steps_per_epoch(n_train, cfg.train.batch_size)
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps else steps


def saver(group: Sequence[MemberState]) -> SaveCheckpoint | None:
    """How a group's checkpoints are written (``train.checkpoint``), skipping members whose
    files are not to be written (finished members of a resumed run, other ranks' members)."""
    mode = group[0].config.train.checkpoint
    if mode == "none":
        return None
    paths = [None if isinstance(m.writer, NullWriter) else m.writer.path for m in group]
    return functools.partial(checkpoint.save_group, paths, keep_previous=mode == "keep")


def resume_path(members: list[MemberState]) -> Path:
    """The directory ``--resume`` takes: the run, or the sweep above its members."""
    path = members[0].writer.path
    return path.parent if (path.parent / SWEEP_FILE).is_file() else path
