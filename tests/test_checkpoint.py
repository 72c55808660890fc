"""Checkpoints on synthetic data (no MNIST): a trainer's state dicts written, read back and
loaded into a fresh trainer continue the run exactly; buffers are sliced by the member axis
their norm declares; checkpoints of the previous format still load."""

from __future__ import annotations

import functools
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from initlab import checkpoint
from initlab.config import ModelConfig, RunConfig, set_dotted
from initlab.data import MNISTTensors
from initlab.errors import RunInterrupted
from initlab.model import StackedMLP
from initlab.norms import NORMS, WEIGHT_NORMS
from initlab.runs import CHECKPOINT_FILE, STATS_FILE, RunWriter
from initlab.train import GroupTrainer, MemberState, StopFlag

SETTINGS = {"model.depth": 4, "model.width": 16, "model.groups": 4, "train.batch_size": 32,
            "train.epochs": 2,
            "log.every": 3, "log.probe_size": 64, "log.checkpoint_every": 5,
            "train.optimizer": "adam", "train.lr": 1e-3}


def configs(norm: str, weight_norm: str = "none") -> list[RunConfig]:
    cfg = RunConfig(name="m")
    for key, value in {**SETTINGS, "model.norm": norm, "model.weight_norm": weight_norm}.items():
        cfg = set_dotted(cfg, key, value)
    return [set_dotted(set_dotted(cfg, "init.c", c), "model.dropout", p)
            for c, p in ((1.5, 0.0), (2.5, 0.2))]


def trainer(cfgs: list[RunConfig], data: MNISTTensors, root: Path) -> GroupTrainer:
    members = [MemberState(c, RunWriter(root / f"m{k}")) for k, c in enumerate(cfgs)]
    save = functools.partial(checkpoint.save_group, [m.writer.path for m in members])
    return GroupTrainer(members, data, torch.device("cpu"), save_checkpoint=save)


def stop_at(step: int, stop: StopFlag, t: GroupTrainer) -> Any:
    def on_event(event: dict[str, Any]) -> None:
        if event["kind"] == "step" and t.step == step:
            stop.signum = signal.SIGINT

    return on_event


# Every normalization of the registries (a weight norm with group norm, its partner).
@pytest.mark.parametrize(("norm", "weight_norm"),
                         [(norm, "none") for norm in NORMS]
                         + [("group", w) for w in WEIGHT_NORMS if w != "none"])
def test_state_dicts_continue_a_run_exactly(tmp_path: Path, synthetic: MNISTTensors,
                                            norm: str, weight_norm: str) -> None:
    whole = trainer(configs(norm, weight_norm), synthetic, tmp_path / "whole")
    with StopFlag() as stop:
        whole.run(stop, lambda event: None)
    first = trainer(configs(norm, weight_norm), synthetic, tmp_path / "parts")
    with StopFlag() as stop, pytest.raises(RunInterrupted):
        first.run(stop, stop_at(7, stop, first))
    states = [checkpoint.read_checkpoint(tmp_path / "parts" / f"m{k}" / CHECKPOINT_FILE)
              for k in range(2)]
    assert [s["group"]["step"] for s in states] == [7, 7]
    second = trainer(configs(norm, weight_norm), synthetic, tmp_path / "parts")
    second.load_member_states(states)
    with StopFlag() as stop:
        second.run(stop, lambda event: None)
    assert torch.equal(second.model.flat, whole.model.flat)
    assert torch.equal(dict(second.model.named_buffers())["active"],
                       dict(whole.model.named_buffers())["active"])
    for k in range(2):
        assert (tmp_path / "parts" / f"m{k}" / STATS_FILE).read_bytes() == \
            (tmp_path / "whole" / f"m{k}" / STATS_FILE).read_bytes()


def test_buffers_are_sliced_on_the_member_axis_their_norm_declares() -> None:
    model = StackedMLP(ModelConfig(depth=3, width=8, norm="batch"), members=3)
    running = model.norm.running_mean
    running.copy_(torch.arange(running.numel(), dtype=torch.float32).view_as(running))
    assert model.norm.member_axes() == {"running_mean": 1, "running_var": 1}
    state = model.member_state(1)
    assert torch.equal(state["buffers"]["norm.running_mean"], running[:, 1])
    assert torch.equal(state["buffers"]["active"], model.active[1])
    other = StackedMLP(ModelConfig(depth=3, width=8, norm="batch"), members=2)
    other.load_member_state(0, state)
    assert torch.equal(other.norm.running_mean[:, 0], running[:, 1])
    assert torch.equal(other.member_vector(other.flat, 0), model.member_vector(model.flat, 1))


def test_a_checkpoint_of_the_first_format_is_upgraded(tmp_path: Path,
                                                      synthetic: MNISTTensors) -> None:
    t = trainer(configs("batch"), synthetic, tmp_path)
    now = t.member_state(1)
    v1 = {  # the layout initlab wrote before state dicts (checkpoint VERSION 1)
        "version": 1, "stats_bytes": 0, "member": now["member"],
        "params": now["model"]["params"], "params_init": now["params_init"],
        "optimizer": {k: v for k, v in now["optimizer"].items() if k != "step"},
        "adam_step": now["optimizer"]["step"],
        "buffers": {name.removeprefix("norm."): v for name, v in now["model"]["buffers"].items()},
        **now["accumulators"],
        "last_epoch_loss": None, "last_epoch_error": None,
        "order": now["order"], "data_rng": now["data_rng"],
        "group": {**now["group"], "dropout_rng": now["dropout_rng"]},  # one per group then
    }
    path = tmp_path / "old.pt"
    torch.save(v1, path)
    upgraded = checkpoint.read_checkpoint(path)
    assert upgraded["version"] == checkpoint.VERSION
    assert set(upgraded["model"]["buffers"]) == set(now["model"]["buffers"])
    fresh = trainer(configs("batch"), synthetic, tmp_path / "fresh")
    fresh.load_member_states([upgraded, upgraded])
    assert torch.equal(fresh.model.member_vector(fresh.model.flat, 0), now["model"]["params"])


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.read_checkpoint(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(checkpoint.CheckpointError, match="not an initlab checkpoint"):
        checkpoint.read_checkpoint(path)
