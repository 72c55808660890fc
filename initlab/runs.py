"""The run directory: the contract between training, figures and users.

    <out>/<name>/                 a single run, or
    <out>/<name>/<member>/        one per sweep member, each holding
        config.yaml    the fully resolved config (written once, atomically)
        stats.jsonl    one JSON object per capture, append-only
        summary.json   status, steps, epochs, final_test_error, ... (rewritten atomically)
        checkpoint.pt  the state to resume from (rewritten atomically; the one before it is
                       kept as checkpoint.prev.pt, so a sweep killed between two members'
                       checkpoints still has a step every member can resume from)
    <out>/<name>/sweep.json       a sweep's member names, written once all member directories
                                  exist (a sweep without it was stopped while being set up)

Readers skip a torn last line of ``stats.jsonl`` (a run killed mid-write) with a warning.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from initlab.errors import UsageError

CONFIG_FILE = "config.yaml"
STATS_FILE = "stats.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
SWEEP_FILE = "sweep.json"
# A member in one of these states is done: resume and the figures' cache leave it as it is.
FINISHED = ("completed", "diverged")


class RunWriteError(UsageError):
    """A run directory could not be written (disk full, permissions): a clear message, not a
    traceback."""


def write_error(path: Path, err: OSError) -> RunWriteError:
    return RunWriteError(f"cannot write {path}: {err.strerror or err}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place, so a crash leaves
    either the old file or the new one, never half of one."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from err
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_output_parent(parent: Path) -> None:
    """Fail early, creating nothing, when runs cannot be written under ``parent``: the nearest
    existing ancestor must be a writable directory. (Root passes ``os.access`` whatever the
    mode bits; ``create_unique_dir`` then reports what the file system refuses.)"""
    existing = Path(os.path.abspath(parent))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot create output directory {parent}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {existing} is not writable")


def create_unique_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if taken. ``mkdir`` is atomic, so two runs
    started at once never share a directory, and an earlier run is never overwritten."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output directory {parent}: {err.strerror}") from err
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent} is not writable")
    for n in range(1, 10_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise UsageError(f"cannot create run directory {path}: {err.strerror}") from err
    raise UsageError(f"too many runs named {name!r} in {parent}")


@dataclass
class Outcome:
    """What training one member gave: its directory and its summary.json."""

    name: str
    path: Path
    summary: dict[str, Any]


def clean_number(x: float) -> float | None:
    """JSON has no NaN or Inf: undefined values are written as null."""
    return x if math.isfinite(x) else None


def run_summary(status: str, *, steps: int = 0, epochs: int = 0,
                final_test_error: float | None = None, reached_target_epoch: int | None = None,
                diverged_step: int | None = None, wall_seconds: float = 0.0,
                device: str | None = None, members_in_group: int = 1,
                threads: int | None = None) -> dict[str, Any]:
    """The fields of ``summary.json``; defaults describe a member that has not started.
    ``threads``: the CPU threads torch used (the last bits of a CPU run depend on them)."""
    return {"status": status, "steps": steps, "epochs": epochs,
            "final_test_error": final_test_error, "reached_target_epoch": reached_target_epoch,
            "diverged_step": diverged_step, "wall_seconds": wall_seconds, "device": device,
            "members_in_group": members_in_group, "threads": threads}


class RunWriter:
    """Writes one member's run directory."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(path, err) from err

    def write_config(self, config_yaml: str) -> None:
        atomic_write_text(self.path / CONFIG_FILE, config_yaml)

    def append_stats(self, records: list[dict[str, Any]]) -> None:
        """Append records; the file exists from the first call on, even with none (a member
        that diverged at its init capture has a run directory with no records)."""
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        path = self.path / STATS_FILE
        try:
            with open(path, "a") as f:
                if lines:
                    f.write(lines)
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as err:  # a partial line is dropped on resume (checkpoint's length)
            raise write_error(path, err) from err

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def read_stats(path: Path) -> list[dict[str, Any]]:
    """The records of a stats.jsonl, skipping a torn last line with a warning."""
    records = []
    lines = path.read_text().splitlines(keepends=True)
    for n, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                warnings.warn(f"{path}: skipped a torn last line (run interrupted mid-write)",
                              stacklevel=2)
            else:
                raise UsageError(f"{path}: line {n + 1} is not valid JSON") from None
    return records


@dataclass
class Run:
    """One member's run directory, loaded. Per-layer statistics are arrays [T, L] (NaN where
    a value was undefined), scalars arrays [T] (NaN where not evaluated)."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    step: np.ndarray = field(init=False)
    epoch: np.ndarray = field(init=False)
    phase: list[str] = field(init=False)
    loss: np.ndarray = field(init=False)
    train_error: np.ndarray = field(init=False)
    test_error: np.ndarray = field(init=False)
    layers: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        def column(key: str) -> np.ndarray:
            return np.array([_num(r.get(key)) for r in self.records], dtype=float)

        self.step = np.array([r["step"] for r in self.records], dtype=int)
        self.epoch = column("epoch")
        self.phase = [r["phase"] for r in self.records]
        self.loss = column("loss")
        self.train_error = column("train_error")
        self.test_error = column("test_error")
        # Every per-layer list any record has; NaN rows where a record lacks it (the probe's
        # records take no step, so they have no update statistics).
        widths: dict[str, int] = {}
        for r in self.records:
            for key, value in r.items():
                if isinstance(value, list):
                    widths.setdefault(key, len(value))
        self.layers = {
            key: np.array([[_num(v) for v in r[key]] if key in r else [math.nan] * width
                           for r in self.records], dtype=float)
            for key, width in widths.items()
        }

    @property
    def name(self) -> str:
        return self.path.name

    def at(self, phase: str) -> int:
        """Index of the last record of ``phase`` (``init`` has one, ``final`` at most one)."""
        for i in range(len(self.phase) - 1, -1, -1):
            if self.phase[i] == phase:
                return i
        raise KeyError(f"{self.path}: no '{phase}' record")

    def last(self) -> int:
        """Index of the final record, else the last one written (a diverged or interrupted
        run ends where it ended)."""
        return self.at("final") if "final" in self.phase else len(self.records) - 1

    @property
    def final_test_error(self) -> float:
        """The summary's final test error, else the last one measured; NaN if none (e.g. a
        member that diverged before its first evaluation)."""
        err = self.summary.get("final_test_error")
        if err is None and len(self.records):
            err = self.test_error[self.last()]
        return float("nan") if err is None else float(err)

    def layer_stat(self, key: str, phase: str = "final") -> np.ndarray:
        index = self.last() if phase == "final" else self.at(phase)
        return self.layers[key][index]


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def load_run(path: str | Path) -> Run:
    """Load one member's run directory (the one holding stats.jsonl)."""
    path = Path(path)
    if not (path / STATS_FILE).exists():
        if is_sweep_dir(path):
            raise UsageError(f"{path} is a sweep directory; use load_runs() or name a member")
        raise UsageError(f"{path} is not a run directory (no {STATS_FILE})")
    config = yaml.safe_load((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).exists() \
        else {}
    summary_path = path / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return Run(path, config, summary, read_stats(path / STATS_FILE))


def is_sweep_dir(path: Path) -> bool:
    return path.is_dir() and any((p / STATS_FILE).exists() for p in path.iterdir() if p.is_dir())


def load_runs(path: str | Path) -> list[Run]:
    """A run directory as a list of one, or a sweep directory as its members (sorted)."""
    path = Path(path)
    if (path / STATS_FILE).exists():
        return [load_run(path)]
    if is_sweep_dir(path):
        return [load_run(p) for p in sorted(path.iterdir()) if (p / STATS_FILE).exists()]
    raise UsageError(f"{path} is not a run or sweep directory (no {STATS_FILE} found)")
