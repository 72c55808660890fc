"""Checkpoint files: each member's run directory holds the state to continue it exactly.

A member's ``checkpoint.pt`` is the state dict its trainer gives (``GroupTrainer.member_state``:
weights, initial weights, optimizer state, buffers, accumulators, data order and generators,
the group's position) plus the length its ``stats.jsonl`` had, so records written after the
checkpoint (kill -9) are dropped on resume. The checkpoint before it stays as
``checkpoint.prev.pt`` (see ``save_group``).

A checkpoint holds only tensors, numbers, strings, lists and dicts, and is read with
``torch.load(weights_only=True)``: a file that holds anything else (a pickled object, which
could run code) is refused, never executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from initlab.errors import UsageError
from initlab.runs import (
    CHECKPOINT_FILE,
    PREVIOUS_CHECKPOINT_FILE,
    STATS_FILE,
    atomic_write_bytes,
    read_checkpoint_bytes,
    records_prefix_problem,
    records_written,
    truncate_to,
    write_error,
)

VERSION = 3
RUNS_CODE = "loading it could run code"  # a refusal that no older checkpoint overrides
State = dict[str, Any]


class CheckpointError(UsageError):
    """A checkpoint that cannot be used: unreadable, from an unknown version, or holding
    something other than plain data."""


def save_group(run_dirs: Sequence[Path | None], states: Sequence[State],
               keep_previous: bool = True) -> None:
    """Each member's checkpoint (None: a member whose files are not written), one after the
    other. The one it replaces is kept as ``checkpoint.prev.pt``: a kill between two members'
    writes leaves every member with a checkpoint of the earlier step, which
    ``resume.plan_resume`` then picks. Without ``keep_previous`` those are deleted once
    every member has its new one."""
    for run_dir, state in zip(run_dirs, states, strict=True):
        if run_dir is None:
            continue
        state = {"version": VERSION, "stats_bytes": records_written(run_dir), **state}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        # The new checkpoint is whole on disk before the old one becomes checkpoint.prev.pt:
        # a full disk leaves checkpoint.pt as it was.
        atomic_write_bytes(run_dir / CHECKPOINT_FILE, with_checksum(buffer.getvalue()),
                           previous=run_dir / PREVIOUS_CHECKPOINT_FILE)
    if not keep_previous:
        for run_dir in run_dirs:
            if run_dir is not None:
                (run_dir / PREVIOUS_CHECKPOINT_FILE).unlink(missing_ok=True)


def drop_previous(run_dirs: Sequence[Path]) -> None:
    """Delete ``checkpoint.prev.pt`` of a group whose members all finished: it was kept for a
    kill between two members' writes, and nothing resumes a finished group. The last
    checkpoint stays: the figures load a trained model from it (figures/inference.py)."""
    for run_dir in run_dirs:
        with contextlib.suppress(OSError):  # a read-only or vanished directory: left as is
            (run_dir / PREVIOUS_CHECKPOINT_FILE).unlink(missing_ok=True)


def records_problem(run_dir: Path, state: State) -> str | None:
    """Why ``stats.jsonl`` cannot be continued from this checkpoint: shorter than when it was
    taken (records lost), or damaged within that length. None when it can."""
    return records_prefix_problem(run_dir, state["stats_bytes"])


# A checkpoint file is torch.save's bytes and a last line with their SHA-256, so that a flipped
# bit anywhere (in a weight too, which no structure check sees) is found, not trained on.
CHECKSUM_MARK = b"\ninitlab-sha256:"
CHECKSUM_LENGTH = len(CHECKSUM_MARK) + 64 + 1


def with_checksum(payload: bytes) -> bytes:
    return payload + CHECKSUM_MARK + hashlib.sha256(payload).hexdigest().encode() + b"\n"


def checked_payload(raw: bytes, path: Path) -> bytes:
    """torch.save's bytes of a checkpoint file, their checksum verified; a file written before
    checkpoints carried one is taken as it is (its structure is still checked)."""
    tail = raw[-CHECKSUM_LENGTH:]
    if not tail.startswith(CHECKSUM_MARK):
        if CHECKSUM_MARK in raw[-4 * CHECKSUM_LENGTH:]:
            raise CheckpointError(f"{path}: damaged checkpoint: its checksum line is cut short "
                                  f"(truncated?)")
        return raw
    payload, expected = raw[:-CHECKSUM_LENGTH], tail[len(CHECKSUM_MARK):-1]
    if hashlib.sha256(payload).hexdigest().encode() != expected:
        raise CheckpointError(f"{path}: damaged checkpoint: its bytes do not match their "
                              f"SHA-256 (a flipped bit or a cut-short file); not trained on")
    return payload


def read_checkpoint(path: Path) -> State:
    """The state in one checkpoint file, as plain data; CheckpointError if it is not one."""
    try:
        raw = checked_payload(read_checkpoint_bytes(path), path)
    except UsageError as err:
        raise CheckpointError(str(err)) from None
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:
        # weights_only names the global it refused (e.g. "GLOBAL posix.system"); anything else
        # is a damaged or foreign file.
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        if isinstance(err, pickle.UnpicklingError) and lines:
            raise CheckpointError(f"{path}: refused: it holds more than plain data (tensors, "
                                  f"numbers, strings, lists, dicts), and {RUNS_CODE} "
                                  f"({lines[0][:100]})") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") \
            from None
    try:
        state = upgrade(state, path)
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{path}: not an initlab checkpoint (damaged)") from None
    problem = structure_problem(state)
    if problem:
        raise CheckpointError(f"{path}: damaged checkpoint: {problem}")
    return state


Tensor = torch.Tensor
# What a checkpoint of this version holds (``GroupTrainer.member_state``), checked before any
# of it is used: a flipped byte in a key or a type is one line, not a KeyError mid-resume.
_MAYBE_INT, _MAYBE_NUMBER = (int, type(None)), (int, float, type(None))
SCHEMA: dict[str, Any] = {
    "version": int, "stats_bytes": int,
    "member": {"status": str, "reached_target_epoch": _MAYBE_INT,
               "diverged_step": _MAYBE_INT, "final_test_error": _MAYBE_NUMBER},
    "model": {"params": Tensor, "buffers": dict},
    "params_init": Tensor, "optimizer": dict,
    "accumulators": {"epoch_loss": (Tensor, int, float), "epoch_errors": (Tensor, int, float),
                     "first_bad_step": (Tensor, int, float)},
    "last_epoch": (dict, type(None)), "order": (Tensor, type(None)), "data_rng": Tensor,
    "dropout_rng": (Tensor, type(None)),
    "group": {"step": int, "epoch": int, "step_in_epoch": int, "step_count": Tensor,
              "wall_seconds": (int, float), "cuda_rng": (Tensor, type(None))},
}
STATUSES = ("running", "interrupted", "completed", "diverged")


def structure_problem(state: State) -> str | None:
    """What in a state does not have the keys, types and shapes a checkpoint has; None when
    it is whole. (Values are not checked: a flipped bit in a weight is a different weight.)"""
    def walk(value: Any, schema: Any, where: str) -> str | None:
        if isinstance(schema, dict):
            if not isinstance(value, dict):
                return f"{where or 'the state'} is not a mapping"
            for key, inner in schema.items():
                if key not in value:
                    return f"{where + '.' if where else ''}{key} is missing"
                problem = walk(value[key], inner, f"{where + '.' if where else ''}{key}")
                if problem:
                    return problem
            return None
        if isinstance(value, bool) or not isinstance(value, schema):
            return f"{where} has the wrong type ({type(value).__name__})"
        return None

    problem = walk(state, SCHEMA, "")
    if problem:
        return problem
    if state["member"]["status"] not in STATUSES:
        return f"member.status is {str(state['member']['status'])[:40]!r}"
    params = state["model"]["params"]
    if params.dim() != 1 or state["params_init"].shape != params.shape:
        return "params_init does not match the weights"
    for name, value in [*state["optimizer"].items(), *state["model"]["buffers"].items(),
                        *state["accumulators"].items()]:
        if not isinstance(value, (Tensor, int, float)) or isinstance(value, bool):
            return f"{str(name)[:40]} has the wrong type ({type(value).__name__})"
    for name, value in state["optimizer"].items():
        if isinstance(value, Tensor) and value.numel() > 1 and value.shape != params.shape:
            return f"optimizer.{str(name)[:40]} does not match the weights"
    rng_size = torch.Generator().get_state().shape
    for name, rng in (("data_rng", state["data_rng"]),
                      ("dropout_rng", state["dropout_rng"])):
        if rng is not None and (rng.dtype != torch.uint8 or rng.shape != rng_size):
            return f"{name} is not a generator's state"
    if state["group"]["step_count"].numel() != 1:
        return "group.step_count is not a count"
    order = state["order"]
    if order is not None and (order.dim() != 1 or order.is_floating_point()):
        return "order is not an order of images"
    last = state["last_epoch"]
    if last is not None and set(last) != {"loss", "error"}:
        return "last_epoch is damaged"
    if min(state["stats_bytes"], *(state["group"][k] for k in
                                   ("step", "epoch", "step_in_epoch"))) < 0:
        return "a negative count"
    return None


def upgrade(state: Any, path: Path) -> State:
    """A state of this version from one of any version initlab wrote."""
    if not isinstance(state, dict) or "version" not in state:
        raise CheckpointError(f"{path}: not an initlab checkpoint")
    if state["version"] == 1:  # buffers and accumulators at the top; norm buffers unprefixed
        state = {
            "version": 2, "stats_bytes": state["stats_bytes"], "member": state["member"],
            "model": {"params": state["params"],
                      "buffers": {("norm." + name if name.startswith("running_") else name):
                                  value for name, value in state["buffers"].items()}},
            "params_init": state["params_init"],
            "optimizer": {**state["optimizer"], **({"step": state["adam_step"]}
                                                   if state["adam_step"] is not None else {})},
            "accumulators": {name: state[name]
                             for name in ("epoch_loss", "epoch_errors", "first_bad_step")},
            "last_epoch": (None if state["last_epoch_loss"] is None else
                           {"loss": state["last_epoch_loss"], "error": state["last_epoch_error"]}),
            "order": state["order"], "data_rng": state["data_rng"], "group": state["group"],
        }
    if state["version"] == 2 and isinstance(state.get("group"), dict):
        # One dropout generator per group then, one per member now: the member continues from
        # the group's generator state (its own stream from there on; the same run resumed by
        # the version that wrote it would have drawn other masks).
        group = dict(state["group"])
        state = {**state, "version": 3, "group": group,
                 "dropout_rng": group.pop("dropout_rng", None)}
    if state["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state['version']!r} is not one "
                              f"this initlab reads (it writes {VERSION})")
    return state


def readable_states(run_dir: Path) -> tuple[list[tuple[Path, State]], list[str]]:
    """A member's readable checkpoints, newest first, with their files, and why each other one
    could not be used."""
    found, problems = [], []
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
        path = run_dir / name
        if not os.path.lexists(path):
            continue
        try:
            state = read_checkpoint(path)
            position(state)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        except (KeyError, TypeError):
            problems.append(f"{path}: not an initlab checkpoint")
            continue
        found.append((path, state))
    return found, problems


def regular_files(run_dir: Path) -> bool:
    """Whether each checkpoint file of ``run_dir`` that exists is a regular file."""
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
        try:
            if not stat.S_ISREG(os.lstat(run_dir / name).st_mode):
                return False
        except FileNotFoundError:
            continue
    return True


def position(state: State) -> tuple[int, int, int]:
    group = state["group"]
    return group["step"], group["epoch"], group["step_in_epoch"]


def rewind_member(run_dir: Path, chosen: tuple[Path, State] | None) -> None:
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


def truncate_stats(run_dir: Path, state: State) -> None:
    """Drop records appended after the checkpoint was taken."""
    truncate_to(run_dir / STATS_FILE, state["stats_bytes"])
