"""Run an experiment (one config or a sweep) into a run directory, or resume one.

Members are grouped by shape (``train.group_key``); each group trains as one stacked model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from initlab.checkpoint import load_state, restore_group, truncate_stats
from initlab.config import Experiment, RunConfig, config_from_dict, dump_yaml
from initlab.data import MNISTTensors, load_mnist
from initlab.errors import UsageError
from initlab.runs import CHECKPOINT_FILE, CONFIG_FILE, STATS_FILE, RunWriter, create_unique_dir
from initlab.train import (
    GroupTrainer,
    Interrupted,
    MemberState,
    StopFlag,
    group_key,
    resolve_device,
)

ProgressFactory = Callable[[str, int], Callable[[dict[str, Any]], None]]


@dataclass
class Outcome:
    name: str
    path: Path
    summary: dict[str, Any]


def quiet_progress(label: str, total: int) -> Callable[[dict[str, Any]], None]:
    return lambda event: None


def run_experiment(exp: Experiment, out: Path, data_root: str | None = None,
                   progress: ProgressFactory = quiet_progress) -> list[Outcome]:
    """Create the run directory (never reusing an existing one) and train every member."""
    top = create_unique_dir(out, exp.name)
    members = []
    for member in exp.members:
        path = top / member.name if exp.is_sweep else top
        writer = RunWriter(path)
        writer.write_config(dump_yaml(member.config))
        members.append(MemberState(member.config, writer))
    return train_members(members, data_root, progress, states=None)


def resume_experiment(run_dir: Path, data_root: str | None = None,
                      progress: ProgressFactory = quiet_progress) -> list[Outcome]:
    """Continue an interrupted (or killed) run or sweep from its last checkpoints."""
    dirs = [run_dir] if (run_dir / CONFIG_FILE).exists() else sorted(
        p for p in run_dir.iterdir() if (p / CONFIG_FILE).exists()) if run_dir.is_dir() else []
    if not dirs:
        raise UsageError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    members: list[MemberState] = []
    states: list[dict | None] = []
    for path in dirs:
        cfg = config_from_dict(yaml.safe_load((path / CONFIG_FILE).read_text()),
                               str(path / CONFIG_FILE))
        state = None
        if (path / CHECKPOINT_FILE).exists():
            state = load_state(path)
            truncate_stats(path, state)
        else:  # stopped before its first checkpoint: start this member afresh
            (path / STATS_FILE).unlink(missing_ok=True)
        members.append(MemberState(cfg, RunWriter(path)))
        states.append(state)
    return train_members(members, data_root, progress, states)


def train_members(members: list[MemberState], data_root: str | None,
                  progress: ProgressFactory, states: list[dict | None] | None) -> list[Outcome]:
    groups: dict[tuple, list[int]] = {}
    for i, member in enumerate(members):
        groups.setdefault(group_key(member.config), []).append(i)
    data_cache: dict[tuple, MNISTTensors] = {}
    with StopFlag() as stop:
        for indices in groups.values():
            group = [members[i] for i in indices]
            group_states = [states[i] for i in indices] if states else [None] * len(indices)
            if all(s is not None and s["member"]["status"] in ("completed", "diverged")
                   for s in group_states):
                continue
            cfg = group[0].config
            device = resolve_device(cfg.train.device)
            data = load_group_data(cfg, data_root, device, data_cache)
            trainer = GroupTrainer(group, data, device)
            if all(s is not None for s in group_states):
                restore_group(trainer, group_states)  # type: ignore[arg-type]
            label = cfg.name if len(group) == 1 else f"{cfg.name} ×{len(group)}"
            total = total_steps(cfg, data.train_x.shape[0])
            try:
                trainer.run(stop, progress(label, total))
            except Interrupted as err:
                raise RunInterrupted(err.signum, resume_path(members)) from None
    return [Outcome(m.writer.path.name, m.writer.path, read_summary(m)) for m in members]


def load_group_data(cfg: RunConfig, data_root: str | None, device: Any,
                    cache: dict[tuple, MNISTTensors]) -> MNISTTensors:
    d = cfg.data
    key = (d.root, d.scaling, d.train_subset, d.test_subset, str(device))
    if key not in cache:
        root = data_root if data_root is not None else d.root
        cache[key] = load_mnist(root, d.scaling, device, d.train_subset, d.test_subset)
    return cache[key]


def total_steps(cfg: RunConfig, n_train: int) -> int:
    steps = cfg.train.epochs * (n_train // cfg.train.batch_size)
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps else steps


def read_summary(member: MemberState) -> dict[str, Any]:
    import json

    return json.loads((member.writer.path / "summary.json").read_text())


def resume_path(members: list[MemberState]) -> Path:
    """The directory ``--resume`` takes: the run, or the sweep above its members."""
    path = members[0].writer.path
    return path if len(members) == 1 else path.parent


class RunInterrupted(Exception):
    """SIGINT/SIGTERM: the checkpoints are written; exit 128 + signal number."""

    def __init__(self, signum: int, path: Path):
        self.signum = signum
        self.path = path
        super().__init__(f"interrupted by signal {signum}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
