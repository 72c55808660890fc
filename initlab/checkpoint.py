"""Checkpoints: each member's run directory holds everything needed to continue it exactly.

A member's ``checkpoint.pt`` has its slice of every stacked buffer (weights, initial weights,
optimizer state, batch-norm averages, on-device accumulators), its data-order generator and
this epoch's order, the group's position and dropout generator, and the length its
``stats.jsonl`` had, so records written after the checkpoint (kill -9) are dropped on resume.
The checkpoint before it stays as ``checkpoint.prev.pt`` (see ``save_group``).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from initlab.runs import (
    CHECKPOINT_FILE,
    PREVIOUS_CHECKPOINT_FILE,
    STATS_FILE,
    atomic_write_bytes,
    write_error,
)

if TYPE_CHECKING:
    from initlab.model import StackedMLP
    from initlab.train import GroupTrainer

VERSION = 1


def member_state(trainer: GroupTrainer, k: int) -> dict[str, Any]:
    model, opt, member = trainer.model, trainer.optimizer, trainer.members[k]
    stats_path = member.writer.path / STATS_FILE
    state: dict[str, Any] = {
        "version": VERSION,
        "stats_bytes": stats_path.stat().st_size if stats_path.exists() else 0,
        "member": {
            "status": member.status,
            "reached_target_epoch": member.reached_target_epoch,
            "diverged_step": member.diverged_step,
            "final_test_error": member.final_test_error,
        },
        "params": model.member_vector(model.flat, k),
        "params_init": model.member_vector(trainer.flat_init, k),
        "optimizer": {name: model.member_vector(buf, k) for name, buf in opt.buffers.items()
                      if buf.dim() == 1 and buf.numel() == model.flat.numel()},
        "adam_step": opt.buffers["step"].clone() if "step" in opt.buffers else None,
        "buffers": {name: _member_slice(name, buf, k) for name, buf in model.named_buffers()},
        "first_bad_step": trainer.first_bad_step[k].clone(),
        "epoch_loss": trainer.epoch_loss[k].clone(),
        "epoch_errors": trainer.epoch_errors[k].clone(),
        "last_epoch_loss": _maybe(trainer.last_epoch_loss, k),
        "last_epoch_error": _maybe(trainer.last_epoch_error, k),
        "order": None if trainer.order is None else trainer.order[k].cpu(),
        "data_rng": trainer.data_generators[k].get_state(),
        "group": {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "step_in_epoch": trainer.step_in_epoch,
            "step_count": trainer.step_count.clone(),
            "wall_seconds": trainer.wall_seconds(),
            "dropout_rng": (model.dropout_generator.get_state()
                            if model.dropout_generator is not None else None),
            "cuda_rng": (torch.cuda.get_rng_state() if trainer.device.type == "cuda"
                         else None),
        },
    }
    return {key: _to_cpu(v) for key, v in state.items()}


def save_group(trainer: GroupTrainer) -> None:
    """Each member's checkpoint, one after the other. The one it replaces is kept as
    ``checkpoint.prev.pt``: a kill between two members' writes leaves every member with a
    checkpoint of the earlier step, which ``choose_group_states`` then picks."""
    for k, member in enumerate(trainer.members):
        buffer = io.BytesIO()
        torch.save(member_state(trainer, k), buffer)
        path = member.writer.path / CHECKPOINT_FILE
        if path.exists():
            try:
                os.replace(path, path.with_name(PREVIOUS_CHECKPOINT_FILE))
            except OSError as err:
                raise write_error(path, err) from err
        atomic_write_bytes(path, buffer.getvalue())


def load_state(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def load_states(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """A member's readable checkpoints, newest first, with their files. One that cannot be
    read (damaged outside initlab: writes are atomic) is skipped with a warning."""
    found = []
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            position(state)
        except Exception as err:  # any unreadable file: fall back to the other one
            warnings.warn(f"{path}: unreadable checkpoint skipped ({err})", stacklevel=2)
            continue
        found.append((path, state))
    return found


def position(state: dict[str, Any]) -> tuple[int, int, int]:
    group = state["group"]
    return group["step"], group["epoch"], group["step_in_epoch"]


def choose_group_states(
    candidates: Sequence[Sequence[tuple[Path, dict[str, Any]]]],
) -> list[tuple[Path, dict[str, Any]]] | None:
    """For the members of one group, the newest checkpoint position that every member has
    (each member's file and state), or None when they share none: start the group afresh."""
    if not candidates or any(not c for c in candidates):
        return None
    shared = set.intersection(*({position(s) for _, s in c} for c in candidates))
    if not shared:
        return None
    newest = max(shared)
    return [next((p, s) for p, s in c if position(s) == newest) for c in candidates]


@torch.no_grad()
def restore_group(trainer: GroupTrainer, states: list[dict[str, Any]]) -> None:
    """Put a freshly built trainer back where its checkpoints left it."""
    model, opt, dev = trainer.model, trainer.optimizer, trainer.device
    group = states[0]["group"]
    trainer.step, trainer.epoch = group["step"], group["epoch"]
    trainer.step_in_epoch = group["step_in_epoch"]
    trainer.step_count.copy_(group["step_count"])
    trainer.wall_offset = group["wall_seconds"]
    if group["dropout_rng"] is not None and model.dropout_generator is not None:
        model.dropout_generator.set_state(group["dropout_rng"])
    if group["cuda_rng"] is not None and dev.type == "cuda":
        torch.cuda.set_rng_state(group["cuda_rng"])
    orders = []
    have_last = all(s["last_epoch_loss"] is not None for s in states)
    if have_last:
        trainer.last_epoch_loss = torch.zeros(trainer.K, device=dev)
        trainer.last_epoch_error = torch.zeros(trainer.K, device=dev)
    for k, state in enumerate(states):
        member = trainer.members[k]
        for key, value in state["member"].items():
            setattr(member, key, value)
        load_member(model, k, state)
        model.set_member_vector(trainer.flat_init, k, state["params_init"].to(dev))
        for name, vec in state["optimizer"].items():
            model.set_member_vector(opt.buffers[name], k, vec.to(dev))
        if state["adam_step"] is not None:
            opt.buffers["step"].copy_(state["adam_step"])
        trainer.first_bad_step[k] = state["first_bad_step"]
        trainer.epoch_loss[k] = state["epoch_loss"]
        trainer.epoch_errors[k] = state["epoch_errors"]
        if have_last:
            trainer.last_epoch_loss[k] = state["last_epoch_loss"]
            trainer.last_epoch_error[k] = state["last_epoch_error"]
        trainer.data_generators[k].set_state(state["data_rng"])
        if state["order"] is not None:
            orders.append(state["order"])
        if member.status == "interrupted":  # it stopped for a signal: it trains on
            member.status = "running"
        elif member.status != "running":  # completed or diverged: it stays stopped
            opt.freeze(k)
            model.stop_member(k)
            member.summary_written = True  # its summary.json is final
    trainer.order = torch.stack(orders).to(dev) if len(orders) == trainer.K else None
    trainer.set_initial_weights()


@torch.no_grad()
def load_member(model: StackedMLP, k: int, state: dict[str, Any]) -> None:
    """A checkpoint's weights and model buffers (batch-norm averages, ...) into member k."""
    model.set_member_vector(model.flat, k, state["params"].to(model.flat.device))
    buffers = dict(model.named_buffers())
    for name, value in state["buffers"].items():
        _member_slice(name, buffers[name], k).copy_(value)


def rewind_member(run_dir: Path, chosen: tuple[Path, dict[str, Any]] | None) -> None:
    """Put a member's directory back at its chosen checkpoint (None: before its first step):
    that checkpoint becomes checkpoint.pt, and records written after it are dropped."""
    for stale in run_dir.glob(".*.tmp"):  # a write cut short by kill -9
        stale.unlink(missing_ok=True)
    current, previous = run_dir / CHECKPOINT_FILE, run_dir / PREVIOUS_CHECKPOINT_FILE
    try:
        if chosen is None:
            for path in (run_dir / STATS_FILE, current, previous):
                path.unlink(missing_ok=True)
            return
        path, state = chosen
        if path != current:
            os.replace(path, current)
        previous.unlink(missing_ok=True)  # older, or from a later step this resume redoes
        truncate_stats(run_dir, state)
    except OSError as err:
        raise write_error(run_dir, err) from err


def truncate_stats(run_dir: Path, state: dict[str, Any]) -> None:
    """Drop records appended after the checkpoint was taken."""
    path = run_dir / STATS_FILE
    if path.exists() and path.stat().st_size > state["stats_bytes"]:
        os.truncate(path, state["stats_bytes"])


def _member_slice(name: str, buf: torch.Tensor, k: int) -> torch.Tensor:
    # Buffers are [K, ...] except batch-norm averages, which are [L - 1, K, ...].
    return buf[:, k] if name.startswith("running_") else buf[k]


def _maybe(t: torch.Tensor | None, k: int) -> torch.Tensor | None:
    return None if t is None else t[k].clone()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
