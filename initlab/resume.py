"""What ``initlab run --resume`` may do with a run directory, decided before anything changes.

Resume trusts nothing and never destroys. ``plan_resume`` only reads: the member directories a
sweep lists (plain names of its own subdirectories), every config, summary and checkpoint, and
refuses with one line, touching nothing, when a checkpoint is not plain data or unreadable,
when ``config.yaml`` changed since the checkpoint was taken, when ``stats.jsonl`` is shorter
than the checkpoint recorded or damaged, or when a member that trained has no checkpoint to
continue from. Completed and diverged members are never written again: they keep their files,
and take part read-only where their group needs their weights. ``apply_plan`` then rewinds the
members that train on to their checkpoint (records written after it are dropped).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initlab import checkpoint
from initlab.config import (
    RunConfig,
    config_differences,
    config_from_dict,
    group_key,
)
from initlab.errors import ConfigError, UsageError, bounded
from initlab.model import StackedMLP, parameter_count
from initlab.runs import (
    CONFIG_FILE,
    FINISHED,
    STATS_FILE,
    SWEEP_FILE,
    read_mapping,
    read_stats,
    read_summary,
    read_sweep_listing,
)


@dataclass
class MemberPlan:
    path: Path
    config: RunConfig
    state: dict[str, Any] | None = None  # the checkpoint to continue from; None: from step 0
    chosen: Path | None = None  # its file
    trains: bool = True  # False: finished, its files are never written
    in_group: bool = True  # False: finished and not needed by the members that train on


def plan_resume(run_dir: Path) -> list[MemberPlan]:
    """Every member of the run or sweep and what resuming does with it; UsageError (one line,
    nothing changed) when it cannot be resumed as it is."""
    return plan_members(member_dirs(run_dir))


def plan_members(paths: Sequence[Path]) -> list[MemberPlan]:
    """``plan_resume`` over these member directories (a job's group: initlab.jobs)."""
    plans = [MemberPlan(path, read_config(path)) for path in paths]
    groups: dict[tuple, list[MemberPlan]] = {}
    for plan in plans:
        groups.setdefault(group_key(plan.config), []).append(plan)
    for group in groups.values():
        plan_group(group)
    return plans


def plan_group(group: Sequence[MemberPlan]) -> None:
    found: dict[Path, list[tuple[Path, dict]]] = {}
    for plan in group:
        states, problems = checkpoint.readable_states(plan.path)
        # Only damage inside a regular file falls back on the other checkpoint: a link, FIFO
        # or folder in its place was put there, and is refused as any reader refuses it.
        if problems and (not states or any(checkpoint.RUNS_CODE in p for p in problems)
                         or not checkpoint.regular_files(plan.path)):
            raise UsageError(f"{problems[0]}; resume refused, nothing was changed")
        if problems:  # the newer one is damaged, the one before it whole: continue from that
            path, state = states[0]
            warnings.warn(f"{problems[0]}; {path.name} (step {checkpoint.position(state)[0]}) "
                          f"is whole: the run continues from it", stacklevel=2)
        for path, state in states:
            check_state(plan, path, state)
        found[plan.path] = states
        plan.trains = not finished(plan, states)
        if plan.trains:  # its summary is rewritten at each checkpoint: readable now, or
            read_summary(plan.path)  # the write fails after training (a directory there)
    training = [p for p in group if p.trains]
    if not training:
        for plan in group:
            plan.in_group = False
        return
    with_states = [p for p in training if found[p.path]]
    if not with_states:  # stopped before its first checkpoint: it starts again from step 0
        for plan in training:
            check_never_checkpointed(plan)
        for plan in group:
            plan.in_group = plan.trains
        return
    if len(with_states) < len(training):
        lost = next(p for p in training if not found[p.path])
        raise UsageError(f"{lost.path}: no checkpoint, while the members it trains with have "
                         f"theirs; it cannot continue with them (its records are kept: "
                         f"start it again with `initlab run`)")
    shared = set.intersection(*({checkpoint.position(s) for _, s in found[p.path]}
                                for p in training))
    if not shared:
        raise UsageError(f"{training[0].path.parent}: its members' checkpoints share no step to "
                         f"continue from; resume refused, nothing was changed")
    newest = max(shared)
    shared_keys: set[str] | None = None
    for plan in group:
        pick = next(((path, s) for path, s in found[plan.path]
                     if checkpoint.position(s) == newest), None)
        plan.in_group = plan.trains or pick is not None
        if pick is not None:
            plan.chosen, plan.state = pick
            keys = set(pick[1]["optimizer"])
            if shared_keys is None:
                shared_keys = keys
            elif keys != shared_keys:
                raise UsageError(f"{pick[0]}: its optimizer state differs from its group's "
                                 f"(damaged?); resume refused, nothing was changed")
            if plan.trains:
                problem = checkpoint.records_problem(plan.path, plan.state)
                if problem:
                    raise UsageError(f"{problem}; resume refused, nothing was changed")


def finished(plan: MemberPlan, states: Sequence[tuple[Path, dict]]) -> bool:
    """Completed or diverged, by its newest checkpoint or else its summary."""
    if states:
        return states[0][1]["member"]["status"] in FINISHED
    return read_summary(plan.path).get("status") in FINISHED


def check_state(plan: MemberPlan, path: Path, state: dict) -> None:
    """The checkpoint belongs to this member as its config now says: same resolved config
    (checkpoints since version 2 hold it), same number of weights."""
    if "config" in state:
        try:
            saved = config_from_dict(state["config"], str(path))
        except ConfigError:
            raise UsageError(f"{path}: its config is not one initlab reads; resume refused, "
                             f"nothing was changed") from None
        changed = config_differences(saved, plan.config)
        if changed and saved.name != plan.config.name:
            raise UsageError(f"{path}: is the checkpoint of another run (its config is named "
                             f"{bounded(saved.name, 40)!r}, {plan.path / CONFIG_FILE} "
                             f"{bounded(plan.config.name, 40)!r}); resume refused, nothing "
                             f"was changed")
        if changed:
            more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
            raise UsageError(f"{path} does not match {plan.path / CONFIG_FILE}: "
                             f"{'; '.join(changed[:3])}{more}; either config.yaml was edited "
                             f"since the run started (put it back) or the checkpoint was "
                             f"copied from another run (put this run's back); or start a new "
                             f"run with `initlab run`")
    expected = parameter_count(plan.config.model)
    found = state["model"]["params"].numel()
    if found != expected:
        raise UsageError(f"{path}: holds {found} weights, the network in "
                         f"{plan.path / CONFIG_FILE} has {expected}; resume refused")
    # The buffers the network keeps (batch norm's running averages...), as a model built on
    # the meta device (no memory) has them, and the optimizer's state for its settings.
    model = StackedMLP(plan.config.model, 1, device="meta")
    buffers = {name: tuple(t.shape) for name, t in model.member_buffers(0).items()}
    saved = {str(name): tuple(getattr(t, "shape", ())) for name, t in
             state["model"]["buffers"].items()}
    train = plan.config.train
    needed = ({"exp_avg", "exp_avg_sq", "step"} if train.optimizer == "adam" else
              {"momentum"} if train.momentum > 0 else set())
    if saved != buffers or not needed <= set(state["optimizer"]):
        raise UsageError(f"{path}: its buffers or optimizer state do not match the network "
                         f"in {plan.path / CONFIG_FILE} (damaged?); resume refused, nothing "
                         f"was changed")


def check_never_checkpointed(plan: MemberPlan) -> None:
    """A member without a checkpoint starts from step 0 only if it never had one and nothing
    it recorded would be lost: neither its summary (written at each checkpoint) nor its
    records (a completed run whose checkpoints were deleted to save space) may go past step 0.
    """
    steps = read_summary(plan.path).get("steps") or 0
    if steps:
        raise UsageError(f"{plan.path}: trained {steps} steps but has no checkpoint to "
                         f"continue from (deleted?); it cannot be resumed (its records are "
                         f"kept: start it again with `initlab run`)")
    reached = max((r["step"] for r in recorded(plan.path)), default=0)
    if reached:
        raise UsageError(f"{plan.path}: its records reach step {reached} but it has no "
                         f"checkpoint and no summary saying where it stopped; it cannot be "
                         f"resumed (its records are kept: start it again with `initlab run`)")
    if plan.config.train.checkpoint == "none" and os.path.lexists(plan.path / STATS_FILE):
        raise UsageError(f"{plan.path}: keeps no checkpoints (train.checkpoint: none), so it "
                         f"cannot be resumed; start it again with `initlab run`")


def recorded(path: Path) -> list[dict[str, Any]]:
    """A member's records (none without stats.jsonl); damage is one line, as for any reader."""
    if not os.path.lexists(path / STATS_FILE):
        return []
    return read_stats(path)


def apply_plan(plans: Sequence[MemberPlan]) -> None:
    """Rewind each member that trains on to its checkpoint (or to before its first step)."""
    for plan in plans:
        if plan.trains:
            pick = None if plan.chosen is None else (plan.chosen, plan.state)
            checkpoint.rewind_member(plan.path, pick)  # type: ignore[arg-type]


def member_dirs(run_dir: Path) -> list[Path]:
    """The member directories of a run (itself) or of a sweep (those ``sweep.json`` lists,
    each a plain name of one of its own subdirectories)."""
    if not os.path.lexists(run_dir):
        raise UsageError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: is a file, not a run directory")
    if os.path.lexists(run_dir / CONFIG_FILE) and not os.path.lexists(run_dir / SWEEP_FILE):
        return [run_dir]
    if not os.path.lexists(run_dir / SWEEP_FILE):
        children = sorted(p for p in run_dir.iterdir()
                          if p.is_dir() and not p.is_symlink() and (
                              os.path.lexists(p / CONFIG_FILE)
                              or os.path.lexists(p / SWEEP_FILE)))
        if children and all(sweep_member_of(p, run_dir) for p in children):
            raise UsageError(f"{run_dir}: no {SWEEP_FILE}: this sweep was stopped while its "
                             f"directories were being created, before any training (or the "
                             f"file was deleted); start it again with `initlab run CONFIG`")
        if children:
            names = ", ".join(p.name for p in children[:5]) + (", ..." if len(children) > 5
                                                              else "")
            raise UsageError(f"{run_dir}: a folder of runs, not a run; resume one of them: "
                             f"{names}")
        raise UsageError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    listing = run_dir / SWEEP_FILE
    dirs = [member_dir(run_dir, name, listing) for name in read_sweep_listing(run_dir)]
    missing = [str(d) for d in dirs if not os.path.lexists(d / CONFIG_FILE)]
    if missing:
        raise UsageError(f"{run_dir}: sweep member directories missing: {', '.join(missing)}")
    return dirs


def sweep_member_of(path: Path, top: Path) -> bool:
    """A sweep member's config carries the sweep's name (its directory is named after its
    values); a run's, its own directory's (``name`` or ``name-2``...)."""
    try:
        name = read_mapping(path / CONFIG_FILE).get("name")
    except UsageError:
        return False
    return isinstance(name, str) and name != path.name and \
        (top.name == name or top.name.rpartition("-")[0] == name)


def member_dir(run_dir: Path, name: object, listing: Path) -> Path:
    """``run_dir / name`` when ``name`` is a plain name of a subdirectory that stays inside
    ``run_dir`` (no absolute path, ``..``, separator, or link out)."""
    text = name if isinstance(name, str) else repr(name)
    shown = text if len(text) <= 80 else text[:77] + "..."
    plain = (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
             and "\\" not in name and "\0" not in name)
    if not plain:
        raise UsageError(f"{listing}: member {shown!r} is not a plain directory name; refused")
    path = run_dir / name  # type: ignore[operator]
    if path.is_symlink() or path.resolve().parent != run_dir.resolve():
        raise UsageError(f"{listing}: member {shown!r} leads outside {run_dir}; refused")
    return path


def read_config(path: Path) -> RunConfig:
    """A member's resolved config, read as any run file (a regular file, bounded, the YAML
    dialect of ``initlab run``) and validated as a config."""
    source = path / CONFIG_FILE
    raw = read_mapping(source)
    if "watch" in raw:
        raise UsageError(f"{path}: a watched run (initlab.watch on a model of your own) "
                         f"cannot be resumed by initlab; continue it in your own script")
    try:
        return config_from_dict(raw, str(source))
    except ConfigError as err:  # one line: the first problem, and how many more
        more = f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else ""
        raise UsageError(f"{err.problems[0]}{more}; resume refused, nothing was "
                         f"changed") from None
