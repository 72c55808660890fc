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

Readers skip a torn last line of ``stats.jsonl`` (a run killed mid-write) with a warning; any
other damage is one ``UsageError`` naming the file (and line). A run directory is data: reading
one never executes anything in it.

``initlab.watch`` (a user's own model) writes the same kind of directory, with a ``watch``
section in ``config.yaml`` instead of the MLP's sections, and no checkpoint; ``Run.kind``
tells them apart and ``Run.layer_names`` / ``Run.fan_ins`` read either.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import platform
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from initlab.errors import UsageError, bounded
from initlab.wording import how_it_ended, percent

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
                threads: int | None = None, started_at: float | None = None,
                ) -> dict[str, Any]:
    """The fields of ``summary.json``; defaults describe a member that has not started.
    ``threads``: the CPU threads torch used (the last bits of a CPU run depend on them).
    ``started_at`` (seconds since the epoch, when training began): given once a member has
    started, it adds where and with what the run was made (``run_metadata``)."""
    summary = {"status": status, "steps": steps, "epochs": epochs,
               "final_test_error": final_test_error,
               "reached_target_epoch": reached_target_epoch, "diverged_step": diverged_step,
               "wall_seconds": wall_seconds, "device": device,
               "members_in_group": members_in_group, "threads": threads}
    if started_at is not None:
        summary.update(run_metadata(started_at))
    return summary


def run_metadata(started_at: float) -> dict[str, Any]:
    """Where and with what a run was made: initlab's version, the git commit of the checkout
    it ran from (None when installed from a wheel), torch's and Python's versions, the host,
    and the start time (UTC, ISO 8601)."""
    start = datetime.datetime.fromtimestamp(started_at, datetime.UTC)
    return {"started_at": start.isoformat(timespec="seconds"), **_environment()}


@functools.cache
def _environment() -> dict[str, Any]:
    return {"initlab_version": _version("initlab"), "git_commit": git_commit(),
            "torch_version": _torch_version(), "python_version": platform.python_version(),
            "host": socket.gethostname()}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _torch_version() -> str | None:
    torch = sys.modules.get("torch")  # the one running (a local build's tag included)
    return str(torch.__version__) if torch is not None else _version("torch")


def git_commit(package_dir: Path | None = None) -> str | None:
    """The commit checked out where initlab's source lives, read from ``.git`` (no
    subprocess); None outside a git checkout. A working tree with uncommitted changes still
    gives its HEAD commit."""
    root = (package_dir or Path(__file__).resolve().parent).parent
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git / "commondir"
        base = (git / common.read_text().strip()).resolve() if common.is_file() else git
        for where in (git, base):
            if (where / ref).is_file():
                return (where / ref).read_text().strip() or None
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                commit, _, name = line.partition(" ")
                if name == ref:
                    return commit
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


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

    def start_time(self, now: float) -> float:
        """When this member began training: the ``started_at`` its summary.json already
        records (a resumed run keeps its first start), else ``now``; the same on every call.
        (A subclass that writes nothing, e.g. on a rank that does not write, gets ``now``.)"""
        known = getattr(self, "_started_at", None)
        if known is None:
            known = _recorded_start(self.path / SUMMARY_FILE) or now
            self._started_at = known
        return known


def _recorded_start(path: Path) -> float | None:
    try:
        text = json.loads(path.read_text())["started_at"]
        return datetime.datetime.fromisoformat(text).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- Reading ------------------------------------------------------------------------------------

SCALAR_KEYS = ("loss", "train_error", "test_error")  # numbers or null in every record
def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_text(path: Path, what: str) -> str:
    """A file's text, or one UsageError naming the file and what is wrong with it."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected {what}") from None
    except FileNotFoundError:
        raise UsageError(f"{path}: missing ({what})") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UsageError(f"{path}: line {line}: not UTF-8 text") from None


def _check_record(record: object, where: str) -> dict[str, Any]:
    """One stats.jsonl record, checked for what readers rely on: an object with an integer
    ``step``, a string ``phase``, numbers (or null) for the scalars and lists of numbers (or
    null) for the per-layer statistics. Other keys are left alone."""
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {_kind_of(record)}")
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise UsageError(f"{where}: \"step\" must be a whole number >= 0, got "
                         f"{bounded(step) if 'step' in record else 'nothing'}")
    if not isinstance(record.get("phase"), str):
        raise UsageError(f"{where}: \"phase\" must be a string, got "
                         f"{bounded(record.get('phase')) if 'phase' in record else 'nothing'}")
    for key in ("epoch", *SCALAR_KEYS):
        value = record.get(key)
        if value is not None and not _is_number(value):
            raise UsageError(f"{where}: \"{key}\" must be a number or null, got "
                             f"{bounded(value)}")
    for key, value in record.items():
        if isinstance(value, list):
            for v in value:
                if v is not None and not _is_number(v):
                    raise UsageError(f"{where}: \"{key}\" must hold numbers or null, got "
                                     f"{bounded(v)}")
    return record


def read_stats(path: Path) -> list[dict[str, Any]]:
    """The records of a stats.jsonl, skipping a torn last line with a warning. A damaged line
    anywhere else (not JSON, not a record, per-layer lists whose length changes) is one
    UsageError naming the file and line."""
    records: list[dict[str, Any]] = []
    lines = _read_text(path, "the run's statistics, one JSON object per line").splitlines(
        keepends=True)
    widths: dict[str, tuple[int, int]] = {}  # key -> (entries, first line with it)
    for n, line in enumerate(lines):
        where = f"{path}: line {n + 1}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if n == len(lines) - 1:
                warnings.warn(f"{path}: skipped a torn last line (run interrupted mid-write)",
                              stacklevel=2)
                continue
            raise UsageError(f"{where} is not valid JSON") from None
        _check_record(record, where)
        for key, value in record.items():
            if isinstance(value, list):
                width, first = widths.setdefault(key, (len(value), n + 1))
                if len(value) != width:
                    raise UsageError(f"{where}: \"{key}\" has {len(value)} values; line "
                                     f"{first} has {width}")
        records.append(record)
    return records


def read_mapping(path: Path, what: str, *, required: bool = True) -> dict[str, Any]:
    """A run directory's ``config.yaml`` (YAML, safe) or ``summary.json`` (JSON) as a dict;
    {} for a missing optional file; any damage is one UsageError naming the file."""
    if not required and not path.exists():
        return {}
    text = _read_text(path, what)
    if not text.strip():
        raise UsageError(f"{path}: is empty, expected {what}")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else (
            f" at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else "")
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise UsageError(f"{path}: not valid {kind}{at}") from None
    if data is None:
        raise UsageError(f"{path}: is empty, expected {what}")
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected {what} (a mapping), got {_kind_of(data)}")
    return data


SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,), "steps": (int,), "epochs": (int,), "final_test_error": (int, float),
    "reached_target_epoch": (int,), "diverged_step": (int,), "wall_seconds": (int, float),
}


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json ({} when absent: a member not started yet), its fields readers use
    checked."""
    summary = read_mapping(path, "the run's summary", required=False)
    for key, types in SUMMARY_TYPES.items():
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise UsageError(f"{path}: \"{key}\" must be "
                             f"{'a string' if types == (str,) else 'a number'} or null, got "
                             f"{bounded(value)}")
    return summary


def _positive_int(config: dict[str, Any], section: str, key: str, default: int,
                  source: Path) -> int:
    value = (config.get(section) or {}).get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{source}: {section}.{key}: expected a whole number >= 1, got "
                         f"{bounded(value)}")
    return value


def _check_config(config: dict[str, Any], source: Path) -> None:
    """What readers take from a run's config: sections are mappings; an MLP's depth and width
    are positive integers; a watched run's layers each have a name and a fan-in."""
    for section, value in config.items():
        if section != "name" and value is not None and not isinstance(value, dict):
            raise UsageError(f"{source}: {section}: expected a mapping, got {_kind_of(value)}")
    if "watch" in config:
        layers = (config["watch"] or {}).get("layers")
        if not isinstance(layers, list) or not layers:
            raise UsageError(f"{source}: watch.layers: expected a list of layers, got "
                             f"{bounded(layers)}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
                raise UsageError(f"{source}: watch.layers[{i}]: expected a mapping with a "
                                 f"name, got {bounded(layer)}")
            fan = layer.get("fan_in")
            if fan is not None and (not _is_number(fan) or fan <= 0):
                raise UsageError(f"{source}: watch.layers[{i}].fan_in: expected a number "
                                 f"> 0, got {bounded(fan)}")
        return
    _positive_int(config, "model", "depth", 1, source)
    _positive_int(config, "model", "width", 1, source)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(repr=False)
class Run:
    """One member's run directory, loaded.

    - ``step`` [T] (int), ``epoch`` [T] (NaN where none), ``phase`` [T] (strings: ``init``,
      ``train``, ``epoch``, ``final``; ``run.phase == "train"`` is a mask), ``loss``,
      ``train_error``, ``test_error`` [T] (NaN where not evaluated);
    - ``layers[key]``: per-layer statistics [T, L] under the keys of
      ``initlab.stats.LAYER_STATS`` (NaN where a value was undefined or a record lacks it;
      hidden-layer statistics such as ``dead_fraction`` have L - 1 columns). As recorded:
      ``weight_var`` is Var(W_i); plots show n·Var(W_i), which ``plotted("weight_var")``
      gives (times ``fan_ins``);
    - ``layer_names``, ``fan_ins`` [L], ``kind`` ("mlp" or "watch"), ``config``, ``summary``.
    """

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    step: np.ndarray = field(init=False)
    epoch: np.ndarray = field(init=False)
    phase: np.ndarray = field(init=False)
    loss: np.ndarray = field(init=False)
    train_error: np.ndarray = field(init=False)
    test_error: np.ndarray = field(init=False)
    layers: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        def column(key: str) -> np.ndarray:
            return np.array([_num(r.get(key)) for r in self.records], dtype=float)

        self.step = np.array([r["step"] for r in self.records], dtype=int)
        self.epoch = column("epoch")
        self.phase = np.array([r["phase"] for r in self.records], dtype=str)
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
                           for r in self.records], dtype=float).reshape(-1, width)
            for key, width in widths.items()
        }

    def __repr__(self) -> str:
        parts = [self.status]
        if self.members > 1:
            parts.append(f"{self.members} members trained together")
        if self.kind == "watch":
            parts.append(_plural(int(self.summary.get("steps") or 0), "step"))
        else:
            parts.append(_plural(int(self.summary.get("epochs") or 0), "epoch"))
        err = self.final_test_error
        if self.status == "diverged":
            parts.append(how_it_ended(self.summary))
        elif not math.isnan(err):
            parts.append(f"test error {percent(err)}")
        parts.append(_plural(len(self.records), "record"))
        return f"Run({str(self.path)!r}: {', '.join(parts)})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sweep(self) -> str | None:
        """The sweep this run is a member of (its directory's name), else None."""
        return self.path.parent.name if (self.path.parent / SWEEP_FILE).is_file() else None

    @property
    def display_name(self) -> str:
        """``sweep/member`` for a sweep member, else the run's name."""
        return f"{self.sweep}/{self.name}" if self.sweep else self.name

    @property
    def status(self) -> str:
        """completed, diverged, interrupted or running ("unknown" without a summary)."""
        return str(self.summary.get("status") or "unknown")

    @property
    def members(self) -> int:
        """How many members trained as one stacked model with this one (itself included)."""
        return int(self.summary.get("members_in_group") or 1)

    @property
    def kind(self) -> str:
        """"watch" for a run written by ``initlab.watch`` (any PyTorch model), else "mlp"."""
        return "watch" if "watch" in self.config else "mlp"

    @cached_property
    def layer_names(self) -> list[str]:
        """One name per layer: "1".."L" for an MLP's Linear layers, the module names for a
        watched model."""
        if self.kind == "watch":
            return [str(layer["name"]) for layer in self.config["watch"]["layers"]]
        return [str(i + 1) for i in range(self.depth)]

    @property
    def depth(self) -> int:
        """The number of layers L."""
        if self.kind == "watch":
            return len(self.config["watch"]["layers"])
        return int((self.config.get("model") or {}).get("depth", _widest(self.layers)))

    @cached_property
    def fan_ins(self) -> np.ndarray:
        """Each layer's fan-in n (the inputs each output unit sees), as floats: n·Var(W_i)
        is ``weight_var`` times this. NaN where unknown (a watched layer without one)."""
        if self.kind == "watch":
            return np.array([_num(layer.get("fan_in"))
                             for layer in self.config["watch"]["layers"]], dtype=float)
        from initlab.config import ModelConfig  # the shapes' one definition
        from initlab.model import layer_widths

        model = self.config.get("model") or {}
        shape = ModelConfig(depth=self.depth, width=int(model.get("width", 100)))
        return np.array([n_in for n_in, _ in layer_widths(shape)], dtype=float)

    @property
    def steps_per_epoch(self) -> int | None:
        """Updates per epoch (the last partial batch is dropped); None for a watched run."""
        if self.kind == "watch":
            return None
        from initlab.data import TRAIN_IMAGES, steps_per_epoch

        data, train = self.config.get("data") or {}, self.config.get("train") or {}
        try:
            images = min(int(data.get("train_subset") or TRAIN_IMAGES), TRAIN_IMAGES)
            return max(steps_per_epoch(images, int(train.get("batch_size") or 128)), 1)
        except (TypeError, ValueError):  # a hand-edited config: curves fall back to steps
            return None

    def plotted(self, key: str) -> np.ndarray:
        """``layers[key]`` as plots show it: times each layer's fan-in for statistics that
        are per fan-in (``weight_var`` -> n·Var(W_i)), else as recorded."""
        from initlab.stats import LAYER_STATS

        values = self.layers[key]
        stat = LAYER_STATS.get(key)
        if stat is not None and stat.per_fan_in:
            values = values * self.fan_ins[: values.shape[1]]
        return values

    def at(self, phase: str) -> int:
        """Index of the last record of ``phase`` (``init`` has one, ``final`` at most one)."""
        found = np.flatnonzero(self.phase == phase)
        if not len(found):
            raise KeyError(f"{self.path}: no '{phase}' record")
        return int(found[-1])

    def last(self) -> int:
        """Index of the final record, else the last one written (a diverged or interrupted
        run ends where it ended)."""
        return self.at("final") if "final" in self.phase else len(self.records) - 1

    @property
    def final_test_error(self) -> float:
        """The summary's final test error, else the last one measured; NaN if none. A
        diverged run has none: its outcome is "diverged at step N" (``diverged_step``), told
        the same way by the progress line, ``ls``, ``compare``, the figures and exports."""
        if self.status == "diverged":
            return float("nan")
        err = self.summary.get("final_test_error")
        if err is None and len(self.records):
            measured = self.test_error[~np.isnan(self.test_error)]
            err = measured[-1] if len(measured) else None
        return float("nan") if err is None else float(err)

    def layer_stat(self, key: str, phase: str = "final") -> np.ndarray:
        """A per-layer statistic (as recorded) at the last record of ``phase``; ``final``:
        the final record, else the last one written."""
        index = self.last() if phase == "final" else self.at(phase)
        return self.layers[key][index]

    def table(self, per_layer: bool = True) -> dict[str, np.ndarray]:
        """The records as columns: with ``per_layer``, one row per record and layer (``layer``,
        ``fan_in``, every per-layer statistic, ``n_weight_var`` = n·Var(W_i), and the record's
        step, epoch, phase, loss and errors repeated); else one row per record. What
        ``frame()`` and ``initlab export --to csv`` write."""
        from initlab.stats import LAYER_STATS

        scalars: dict[str, np.ndarray] = {
            "step": self.step, "epoch": self.epoch, "phase": self.phase, "loss": self.loss,
            "train_error": self.train_error, "test_error": self.test_error}
        if not per_layer:
            return scalars
        depth = max(self.depth, _widest(self.layers))
        rows = len(self.records)
        table = {key: np.repeat(values, depth) for key, values in scalars.items()}
        names = self.layer_names + [str(i + 1) for i in range(len(self.layer_names), depth)]
        table["layer"] = np.tile(np.array(names, dtype=str), rows)
        fan_ins = np.full(depth, math.nan)
        fan_ins[: len(self.fan_ins)] = self.fan_ins[:depth]
        table["fan_in"] = np.tile(fan_ins, rows)
        for key, values in self.layers.items():
            padded = np.full((rows, depth), math.nan)
            padded[:, : values.shape[1]] = values[:, :depth]
            table[key] = padded.reshape(-1)
            stat = LAYER_STATS.get(key)
            if stat is not None and stat.per_fan_in:
                table[f"n_{key}"] = (padded * fan_ins).reshape(-1)
        return table

    def frame(self, per_layer: bool = True) -> Any:
        """``table()`` as a pandas DataFrame (``pip install 'initlab[frames]'``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Run.frame() needs pandas: pip install 'initlab[frames]' "
                              "(or pandas)") from None
        return pd.DataFrame(self.table(per_layer))


def _widest(layers: dict[str, np.ndarray]) -> int:
    return max((values.shape[1] for values in layers.values()), default=0)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def load_run(path: str | Path, records: bool = True) -> Run:
    """Load one member's run directory (the one holding stats.jsonl); ``records=False`` reads
    only its config and summary (a listing of many runs)."""
    path = Path(path).expanduser()
    if not (path / STATS_FILE).exists():
        raise UsageError(not_a_run(path))
    config = read_mapping(path / CONFIG_FILE, "the run's resolved config", required=False)
    _check_config(config, path / CONFIG_FILE)
    summary = read_summary(path / SUMMARY_FILE)
    return Run(path, config, summary, read_stats(path / STATS_FILE) if records else [])


def not_a_run(path: Path) -> str:
    """Why ``path`` is not a run directory, saying what it is instead."""
    if not path.exists():
        return f"{path}: no such directory"
    if not path.is_dir():
        return f"{path}: is a file, not a run directory"
    if is_sweep_dir(path):
        names = [p.name for p in sweep_members(path)]
        example = f"{path / names[0]}" if names else f"{path}/MEMBER"
        return (f"{path} is a sweep of {_plural(len(names), 'member')} "
                f"({_listing(names)}): load them all with load_runs({str(path)!r}), or "
                f"one by its directory, e.g. {example}")
    found = find_runs(path)
    if found:
        return (f"{path} is a directory of runs ({_listing([e.path.name for e in found])}): "
                f"load one by its directory, e.g. {found[-1].path}, or every run under it "
                f"with load_runs({str(path)!r}); `initlab ls {path}` lists them")
    if (path / CONFIG_FILE).is_file():
        return (f"{path}: no {STATS_FILE} yet (a run set up but not started, or stopped "
                f"before its first record)")
    return f"{path} is not a run directory (no {STATS_FILE})"


def _listing(names: list[str], shown: int = 4) -> str:
    text = ", ".join(bounded(n, 40) for n in names[:shown])
    return text + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def is_sweep_dir(path: Path) -> bool:
    """A sweep's directory: it has ``sweep.json`` (written once every member directory
    exists)."""
    return (path / SWEEP_FILE).is_file()


def sweep_members(path: Path) -> list[Path]:
    """A sweep's member directories in sweep order (``sweep.json``), else sorted; only those
    holding statistics."""
    order: list[str] = []
    try:
        listed = json.loads((path / SWEEP_FILE).read_text()).get("members", [])
        order = [str(name) for name in listed if isinstance(name, (str, int, float))]
    except (OSError, ValueError, AttributeError):
        pass
    found = {p.name: p for p in _subdirs(path) if (p / STATS_FILE).exists()}
    ordered = [found.pop(name) for name in order if name in found]
    return ordered + sorted(found.values())


def _subdirs(path: Path) -> list[Path]:
    """The directories inside ``path``; never a link, which could lead outside it."""
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


@dataclass(frozen=True)
class RunEntry:
    """A run or a sweep found in a directory of runs (``find_runs``)."""

    path: Path
    members: tuple[Path, ...]  # the member run directories (a run: itself)
    is_sweep: bool

    @property
    def started(self) -> float:
        """When it was set up: the time its config (written once) was written."""
        first = self.path / SWEEP_FILE if self.is_sweep else self.path / CONFIG_FILE
        for candidate in (first, self.path / STATS_FILE, self.path):
            try:
                return candidate.stat().st_mtime
            except OSError:
                continue
        return 0.0


def find_runs(parent: Path) -> list[RunEntry]:
    """The runs and sweeps directly inside ``parent``, oldest first."""
    entries = []
    for path in _subdirs(parent):
        if (path / STATS_FILE).exists():
            entries.append(RunEntry(path, (path,), False))
        elif is_sweep_dir(path):
            entries.append(RunEntry(path, tuple(sweep_members(path)), True))
    return sorted(entries, key=lambda e: (e.started, e.path.name))


def nested_run_dirs(parent: Path) -> Iterator[tuple[Path, int]]:
    """Directories inside ``parent`` that are neither runs nor sweeps but hold runs (such as
    ``runs/figures-cache``), with how many."""
    for path in sorted(_subdirs(parent)):
        if not (path / STATS_FILE).exists() and not is_sweep_dir(path):
            count = sum(len(e.members) for e in find_runs(path))
            if count:
                yield path, count


def load_runs(path: str | Path) -> list[Run]:
    """A run directory as a list of one, a sweep directory as its members (in sweep order),
    or a directory of runs as every run in it (sweeps' members included), oldest first."""
    path = Path(path).expanduser()
    if (path / STATS_FILE).exists():
        return [load_run(path)]
    if is_sweep_dir(path):
        return [load_run(p) for p in sweep_members(path)]
    found = find_runs(path) if path.is_dir() else []
    if found:
        return [load_run(member) for entry in found for member in entry.members]
    raise UsageError(not_a_run(path))
