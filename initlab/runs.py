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

This module owns that format: the file names, what each file holds, the one writer of each
(``RunWriter``, ``write_sweep_listing``, ``atomic_write_*``) and the one reader of each
(``read_run_config``, ``read_stats``, ``read_summary``, ``read_sweep_listing``,
``read_checkpoint_bytes``); every other module reads a run through them (``load_run``,
``load_runs``, ``find_runs``...), and ``tests/test_run_format.py`` fails when one opens a run
file itself.

A reader trusts nothing in a run directory (it is data a classmate sent): it opens regular files
only (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``: never a link, a FIFO or a device), reads at
most ``max_bytes(name)`` of each and ``MAX_RECORD_BYTES`` per record, refuses documents
nested deeper than ``MAX_NESTING``, reads ``config.yaml`` in the YAML 1.2 dialect and with the
alias bound of a config given to ``initlab run`` (``initlab.config.load_yaml``), and checks the
numbers it uses against what was recorded. Readers skip a torn last line of ``stats.jsonl`` (a
run killed mid-write) with a warning; any other damage is one ``UsageError`` naming the file
(and line). A run directory is data: reading one never executes anything in it.

The process writing a member's directory holds a lock on it (``RunWriter``, ``run_lock``), which
goes with the process even after ``kill -9``: a summary that says "running" while no process
holds the lock is a run whose writer died, and ``Run.status`` says "stopped".

``initlab.watch`` (a user's own model) writes the same kind of directory, with a ``watch``
section in ``config.yaml`` instead of the MLP's sections, and no checkpoint; ``Run.kind``
tells them apart and ``Run.layer_names`` / ``Run.fan_ins`` read either.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import json
import math
import os
import platform
import re
import socket
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from initlab.errors import UsageError, bounded
from initlab.wording import how_it_ended, percent

CONFIG_FILE = "config.yaml"
STATS_FILE = "stats.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
SWEEP_FILE = "sweep.json"
RUN_FILES = (CONFIG_FILE, STATS_FILE, SUMMARY_FILE, CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE,
             SWEEP_FILE)
# A member in one of these states is done: resume and the figures' cache leave it as it is.
FINISHED = ("completed", "diverged")

# What a reader takes from a run directory at most (a hostile one may hold anything). A
# summary is one kilobyte, a sweep's listing 100,000 names; a record is ~16 statistics x L
# layers (L <= 10,000 keeps one under 4 MiB); a checkpoint holds a few copies of the weights
# (the widest nets initlab trains need a few GB). config.yaml has the bound of any config,
# initlab.config.MAX_CONFIG_BYTES (``max_bytes``).
MAX_FILE_BYTES = {SUMMARY_FILE: 1 << 20, SWEEP_FILE: 32 << 20, STATS_FILE: 1 << 30,
                  CHECKPOINT_FILE: 16 << 30, PREVIOUS_CHECKPOINT_FILE: 16 << 30}
MAX_RECORD_BYTES = 4 << 20  # one line of stats.jsonl
MAX_NESTING = 32  # levels of lists and mappings in one document (initlab writes at most 4)
MAX_STEP = 2**53  # a step count beyond this is no count (it would not survive a float)
MAX_DEPTH = 10_000  # model.depth's range in initlab.config: layers of one run


class RunWriteError(UsageError):
    """A run directory could not be written (disk full, permissions): a clear message, not a
    traceback."""


def write_error(path: Path, err: OSError) -> RunWriteError:
    return RunWriteError(f"cannot write {path}: {err.strerror or err}")


# --- The writer: every file initlab writes ------------------------------------------------------
#
# One rule for every file initlab writes (run files, figures, exports, benchmarks): the bytes go
# to a temporary name in the target's own folder, are flushed to disk, and are renamed over the
# target, so a crash leaves the old file or the new one, never half of one. An existing target
# that is not a regular file (a link, FIFO, device, socket or folder, e.g. planted in a run
# folder someone sent) is refused with one line: nothing is written through a link, and nothing
# outside the folder named for the output is touched. tests/test_writes.py fails when a module
# of initlab writes a file any other way. (Self-contained: it needs only UsageError.)


class UnsafeTarget(RunWriteError):
    """An output's name is taken by something that is not a regular file."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _not_regular(mode: int) -> str | None:
    """What a file of this mode is, when it is not a regular file."""
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def refuse_unsafe_target(path: Path) -> None:
    """Nothing, when ``path`` is free or a regular file initlab may replace; else one
    ``UnsafeTarget`` naming what is there. Commands call it up front, before any work."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise write_error(path, err) from err
    what = _not_regular(info.st_mode)
    if what is not None:
        raise UnsafeTarget(f"{bounded(str(path), 200)}: is {what}; initlab writes only regular "
                           f"files, never through a link: move it away or choose another "
                           f"output")


def _below(folder: Path, inside: Path | None) -> list[Path]:
    """The folders from just below ``inside`` down to ``folder`` (none without ``inside``)."""
    if inside is None or inside not in folder.parents:
        return []
    return [p for p in (*reversed(folder.parents), folder) if inside in p.parents]


def refuse_unsafe_folder(folder: Path, inside: Path | None = None) -> None:
    """Checks up front, creating nothing: each existing folder from below ``inside`` (the
    folder the user named, which may be a link they made) down to ``folder`` is a real folder,
    never a link, so that a link planted there never leads a write outside ``inside``."""
    for part in _below(folder, inside):
        try:
            mode = os.lstat(part).st_mode
        except FileNotFoundError:
            return
        except OSError as err:
            raise write_error(part, err) from err
        if not stat.S_ISDIR(mode):
            link = "; initlab never writes through a link" if stat.S_ISLNK(mode) else ""
            raise UnsafeTarget(f"{bounded(str(part), 200)}: is {_not_regular(mode) or 'a file'}, "
                               f"expected a folder to write into{link}")


def output_folder(folder: Path, inside: Path | None = None) -> Path:
    """``folder``, created if missing, checked as ``refuse_unsafe_folder`` says."""
    below = _below(folder, inside)
    top = inside if below else folder
    try:
        top.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    except OSError as err:
        raise write_error(top, err) from err  # type: ignore[arg-type]
    if not os.path.isdir(top):  # type: ignore[arg-type]
        raise UnsafeTarget(f"{bounded(str(top), 200)}: is a file, expected a folder to write "
                           f"into")
    for part in below:
        refuse_unsafe_folder(part, inside)
        try:
            part.mkdir(exist_ok=True)
        except OSError as err:
            raise write_error(part, err) from err
    refuse_unsafe_folder(folder, inside)
    return folder


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, *, previous: Path | None = None,
                  sync: bool = True) -> Iterator[Any]:
    """A binary file to write ``path`` through: a temporary file beside it, renamed over it
    when the block ends without an error (and removed when it raises). With ``previous``, the
    file ``path`` held is renamed to ``previous`` just before the new one takes its place
    (a checkpoint's rotation: the old one is kept until the new one is whole on disk).
    ``sync``: flush to disk before the rename (off for files that are cheap to redo)."""
    refuse_unsafe_target(path)
    if previous is not None:
        refuse_unsafe_target(previous)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from err
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        refuse_unsafe_target(path)  # placed while we wrote: still never replaced silently
        if previous is not None and os.path.lexists(path):
            os.replace(path, previous)
        os.replace(tmp, path)
        if sync:
            _fsync_folder(path.parent)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise


def atomic_write_bytes(path: Path, data: bytes, *, previous: Path | None = None) -> None:
    """``data`` as the whole of ``path``, by the rule above (``atomic_output``)."""
    with atomic_output(path, previous=previous) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def append_bytes(path: Path, data: bytes) -> None:
    """Append to ``path`` (created if missing): a regular file only, never through a link
    (``O_NOFOLLOW``, then ``fstat``); flushed to disk. The one writer that appends
    (``stats.jsonl``: a torn last line is skipped by readers and dropped on resume)."""
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | os.O_CLOEXEC)
    refuse_unsafe_target(path)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            refuse_unsafe_target(path)
        raise write_error(path, err) from err
    try:
        what = _not_regular(os.fstat(fd).st_mode)
        if what is not None:
            raise UnsafeTarget(f"{bounded(str(path), 200)}: is {what}; initlab appends only to "
                               f"regular files")
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if data:
            os.fsync(fd)
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        os.close(fd)


def truncate_to(path: Path, size: int) -> None:
    """Cut ``path`` to at most ``size`` bytes (a resume drops records written after its
    checkpoint): a regular file only, never through a link; a missing file is left missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as err:
        refuse_unsafe_target(path)
        raise write_error(path, err) from err
    try:
        info = os.fstat(fd)
        what = _not_regular(info.st_mode)
        if what is not None:
            raise UnsafeTarget(f"{bounded(str(path), 200)}: is {what}; initlab writes only "
                               f"regular files")
        if info.st_size > size:
            os.ftruncate(fd, size)
            os.fsync(fd)
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        os.close(fd)


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


# --- The writer's lock ----------------------------------------------------------------------------

# Locks this process holds: (device, inode) of the directory -> [descriptor, holders]. flock
# locks belong to an open file, so two opens in one process would refuse each other; the
# process takes each directory's lock once and counts who holds it.
_HELD: dict[tuple[int, int], list[int]] = {}


LOCK_ATTEMPTS = 10  # 20 ms apart: a reader's look at the lock never makes a writer fail


class RunLocked(UsageError):
    """Another process is writing this run directory."""


def _dir_key(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def acquire_lock(run_dir: Path) -> tuple[int, int] | None:
    """Take the writer's lock of ``run_dir`` (RunLocked if another process holds it); None
    where there are no locks (not POSIX). Release it with ``release_lock``."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: no such run directory") from None
    except NotADirectoryError:
        raise UsageError(f"{run_dir}: is a file, not a run directory") from None
    except OSError as err:
        raise UsageError(f"{run_dir}: cannot open: {err.strerror or err}") from None
    key = _dir_key(fd)
    if key in _HELD:
        os.close(fd)
        _HELD[key][1] += 1
        return key
    for attempt in range(LOCK_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            # A reader (`ls`, `writer_alive`) holds it for a moment to look: try again shortly.
            if attempt + 1 < LOCK_ATTEMPTS:
                time.sleep(0.02)
    else:
        os.close(fd)
        raise RunLocked(f"{run_dir} is being trained by another initlab process; wait for it "
                        f"or stop it first") from None
    _HELD[key] = [fd, 1]
    return key


def release_lock(key: tuple[int, int] | None) -> None:
    held = _HELD.get(key) if key is not None else None  # type: ignore[arg-type]
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]  # type: ignore[arg-type]
        os.close(held[0])


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One process at a time per run directory (``--resume``, a run being set up): a second
    one is refused. The lock goes with the process, even after kill -9."""
    key = acquire_lock(run_dir)
    try:
        yield
    finally:
        release_lock(key)


def writer_alive(run_dir: Path) -> bool | None:
    """Whether a process (this one included) holds the writer's lock of ``run_dir``: True
    while it is being written, False once its writer is gone; None where it cannot be told
    (not POSIX, or not a directory)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _dir_key(fd) in _HELD:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        return False
    finally:
        os.close(fd)  # closing drops the shared lock taken to look


class RunWriter:
    """Writes one member's run directory, holding its lock until ``close`` (or until the
    process ends): readers tell a run being written from one whose writer died."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(path, err) from err
        self._lock = acquire_lock(path)

    def close(self) -> None:
        """Let go of the directory's lock (its summary is final)."""
        release_lock(getattr(self, "_lock", None))
        self._lock = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def write_config(self, config_yaml: str) -> None:
        atomic_write_text(self.path / CONFIG_FILE, config_yaml)

    def append_stats(self, records: list[dict[str, Any]]) -> None:
        """Append records; the file exists from the first call on, even with none (a member
        that diverged at its init capture has a run directory with no records)."""
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        # a partial line is dropped on resume (the checkpoint records the file's length)
        append_bytes(self.path / STATS_FILE, lines.encode())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_summary(self.path, summary)
        if summary.get("status") != "running":  # final (or interrupted): nothing more to hold
            self.close()

    def start_time(self, now: float) -> float:
        """When this member began training: the ``started_at`` its summary.json already
        records (a resumed run keeps its first start), else ``now``; the same on every call.
        (A subclass that writes nothing, e.g. on a rank that does not write, gets ``now``.)"""
        known = getattr(self, "_started_at", None)
        if known is None:
            known = _recorded_start(self.path) or now
            self._started_at = known
        return known


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json``: written whole, atomically."""
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def write_sweep_listing(top: Path, name: str, members: list[str]) -> None:
    """``sweep.json``: the sweep's name and its members' directory names, written last."""
    listing = {"name": name, "members": members}
    atomic_write_text(top / SWEEP_FILE, json.dumps(listing, indent=2) + "\n")


# A member's files another machine wrote and sent here (initlab.ray_jobs), in the order they
# are written: summary.json, which says where the member stands, last.
SENT_FILES = (CONFIG_FILE, STATS_FILE, PREVIOUS_CHECKPOINT_FILE, CHECKPOINT_FILE, SUMMARY_FILE)


def read_sent_files(run_dir: Path) -> dict[str, bytes]:
    """The files of a member's directory to send to another machine, by name: each read as
    any run file is (``read_run_bytes``: regular, bounded, never a link)."""
    files = {}
    for name in SENT_FILES:
        try:
            files[name] = read_run_bytes(run_dir / name)
        except FileNotFoundError:
            continue
    return files


def write_run_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """A member's files as another machine wrote them (``read_sent_files`` there), written
    into ``run_dir`` here: plain names of run files only, each within its reader's bound,
    atomically, summary.json last. Its config.yaml must be the one already here."""
    unknown = [name for name in files if name not in SENT_FILES]
    if unknown:
        raise UsageError(f"{run_dir}: refused files sent back under other names than a "
                         f"run's: {bounded(str(unknown[:3]))}")
    for name in SENT_FILES:
        data = files.get(name)
        if data is None:
            continue
        if not isinstance(data, bytes) or len(data) > max_bytes(name):
            raise UsageError(f"{run_dir / name}: what was sent back is not a run file's bytes "
                             f"within {max_bytes(name):,}")
        if name == CONFIG_FILE:
            if config_text(run_dir) != data.decode("utf-8", errors="replace"):
                raise UsageError(f"{run_dir / name}: the config sent back is not the one "
                                 f"this run was given")
            continue
        atomic_write_bytes(run_dir / name, data)


def mark_member_interrupted(run_dir: Path) -> bool:
    """A member whose summary says "running" (its writer died) says "interrupted"; whether it
    was changed. A summary that cannot be read is left as it is."""
    try:
        summary = read_summary(run_dir)
    except UsageError:
        return False
    if summary.get("status") != "running":
        return False
    with contextlib.suppress(RunWriteError):
        write_summary(run_dir, {**summary, "status": "interrupted"})
        return True
    return False


def _recorded_start(run_dir: Path) -> float | None:
    try:
        text = read_summary(run_dir).get("started_at")
        return datetime.datetime.fromisoformat(str(text)).timestamp() if text else None
    except (UsageError, ValueError, OverflowError):
        return None


# --- Reading ------------------------------------------------------------------------------------

SCALAR_KEYS = ("loss", "train_error", "test_error")  # numbers or null in every record
WHAT = {CONFIG_FILE: "the run's resolved config", SUMMARY_FILE: "the run's summary",
        STATS_FILE: "the run's statistics, one JSON object per line",
        SWEEP_FILE: "the sweep's list of members", CHECKPOINT_FILE: "a checkpoint",
        PREVIOUS_CHECKPOINT_FILE: "a checkpoint"}


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A number a float can hold and that is not NaN or infinite (10**400 is not)."""
    try:
        return _is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    except OverflowError:
        return False


def _all_plain_finite(values: list) -> bool:
    """The common case of a per-layer list, decided fast: floats and nulls only, all finite.
    False means "look closer" (``_is_finite`` on each), not "damaged"."""
    present = [v for v in values if v is not None]
    return all(type(v) is float for v in present) and all(map(math.isfinite, present))


def max_bytes(name: str) -> int:
    """The most a reader takes of the run file ``name``."""
    if name == CONFIG_FILE:
        from initlab.config import MAX_CONFIG_BYTES  # the bound of a config given to `run`

        return MAX_CONFIG_BYTES
    return MAX_FILE_BYTES.get(name, 1 << 20)


def read_run_bytes(path: Path, limit: int | None = None) -> bytes:
    """The bytes of one file of a run directory, trusting nothing: a regular file only (never
    a link, FIFO, device or socket: opened with O_NOFOLLOW and O_NONBLOCK, then checked with
    fstat), at most ``limit`` bytes (``max_bytes`` of its name); else one UsageError
    naming the file and the problem. FileNotFoundError when it does not exist."""
    limit = max_bytes(path.name) if limit is None else limit
    what = WHAT.get(path.name, "a run file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UsageError(f"{path}: is a symbolic link; files in a run directory are read "
                             f"only as regular files, never followed") from None
        if err.errno in (errno.ENXIO, errno.ENODEV):
            raise UsageError(f"{path}: is not a regular file (a socket or device), expected "
                             f"{what}") from None
        raise UsageError(f"{path}: cannot read: {err.strerror or err}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{path}: is a directory, expected {what}")
        raise UsageError(f"{path}: is not a regular file (a FIFO, device or socket), "
                         f"expected {what}")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise UsageError(f"{path}: is {info.st_size:,} bytes; {path.name} is at most "
                             f"{limit:,}")
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise UsageError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(data) > limit:  # it grew while being read
        raise UsageError(f"{path}: is more than {limit:,} bytes; {path.name} is at most "
                         f"{limit:,}")
    return data


def _read_text(path: Path, what: str) -> str:
    """A file's text, or one UsageError naming the file and what is wrong with it."""
    try:
        data = read_run_bytes(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: missing ({what})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UsageError(f"{path}: line {line}: not UTF-8 text") from None


def _nesting(value: object) -> int:
    """How deeply lists and mappings nest in ``value`` (iteratively: any depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level > MAX_NESTING:
                return level
            stack.extend((v, level + 1) for v in item if isinstance(v, (list, dict)))
    return deepest


_QUOTED_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|#[^\n]*')


def _flow_nesting(text: str) -> int:
    """How deep ``[`` and ``{`` nest in YAML text outside quotes and comments (a cheap upper
    view of its flow nesting; the parsed document is checked exactly afterwards)."""
    codes = np.frombuffer(_QUOTED_OR_COMMENT.sub("", text).encode("utf-8"), dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (initlab writes null for an undefined number)")


def parse_json(text: str, where: str, record: bool = False) -> Any:
    """One JSON document of a run file (``record``: one line of stats.jsonl): standard JSON
    only (no NaN or Infinity), nested at most ``MAX_NESTING`` deep; else one UsageError
    starting with ``where``."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise UsageError(f"{where}: nested more than {MAX_NESTING} levels deep") from None
    except json.JSONDecodeError as err:
        if record:  # one line of stats.jsonl: ``where`` names the line already
            raise UsageError(f"{where} is not valid JSON") from None
        raise UsageError(f"{where}: not valid JSON at line {err.lineno}") from None
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
    if _nesting(data) > MAX_NESTING:
        raise UsageError(f"{where}: nested more than {MAX_NESTING} levels deep")
    return data


def _check_record(record: object, where: str) -> dict[str, Any]:
    """One stats.jsonl record, checked for what readers rely on: an object with an integer
    ``step`` (at most ``MAX_STEP``), a string ``phase``, finite numbers (or null) for the
    scalars and lists of finite numbers (or null) for the per-layer statistics. Other keys are
    left alone."""
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {_kind_of(record)}")
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise UsageError(f"{where}: \"step\" must be a whole number >= 0, got "
                         f"{bounded(step) if 'step' in record else 'nothing'}")
    if step > MAX_STEP:
        raise UsageError(f"{where}: \"step\" is {bounded(step, 40)}, more than 2**53: no run "
                         f"takes that many steps")
    if not isinstance(record.get("phase"), str):
        raise UsageError(f"{where}: \"phase\" must be a string, got "
                         f"{bounded(record.get('phase')) if 'phase' in record else 'nothing'}")
    for key in ("epoch", *SCALAR_KEYS):
        value = record.get(key)
        if value is not None and not _is_finite(value):
            raise UsageError(f"{where}: \"{key}\" must be a finite number or null, got "
                             f"{bounded(value)}")
    for key, value in record.items():
        if isinstance(value, list):
            if _all_plain_finite(value):
                continue
            for v in value:
                if v is not None and not _is_finite(v):
                    raise UsageError(f"{where}: \"{key}\" must hold finite numbers or null, "
                                     f"got {bounded(v)}")
    return record


def read_stats(path: Path) -> list[dict[str, Any]]:
    """The records of a stats.jsonl, skipping a torn last line with a warning. A damaged line
    anywhere else (not JSON, not a record, longer than ``MAX_RECORD_BYTES``, per-layer lists
    whose length changes) is one UsageError naming the file and line. ``path``: the file, or
    the run directory holding it."""
    path = path / STATS_FILE if path.name != STATS_FILE else path
    records: list[dict[str, Any]] = []
    lines = _read_text(path, WHAT[STATS_FILE]).splitlines(keepends=True)
    widths: dict[str, tuple[int, int]] = {}  # key -> (entries, first line with it)
    for n, line in enumerate(lines):
        where = f"{path}: line {n + 1}"
        if len(line) > MAX_RECORD_BYTES:
            raise UsageError(f"{where}: is {len(line):,} characters; a record is at most "
                             f"{MAX_RECORD_BYTES:,}")
        try:
            record = parse_json(line, where, record=True)
        except UsageError:
            if n == len(lines) - 1:
                warnings.warn(f"{path}: skipped a torn last line (run interrupted mid-write)",
                              stacklevel=2)
                continue
            raise
        _check_record(record, where)
        for key, value in record.items():
            if isinstance(value, list):
                width, first = widths.setdefault(key, (len(value), n + 1))
                if len(value) != width:
                    raise UsageError(f"{where}: \"{key}\" has {len(value)} values; line "
                                     f"{first} has {width}")
        records.append(record)
    _check_ranges(records, widths, path)
    # A per-layer key is a list wherever it is given: a string or a number under a key another
    # record lists would be read as one (the readers build [T, L] arrays). Records are lines
    # 1..len(records): only a torn last line is ever skipped.
    for n, record in enumerate(records, start=1):
        for key, (_, first) in widths.items():
            value = record.get(key)
            if value is not None and not isinstance(value, list):
                raise UsageError(f"{path}: line {n}: \"{key}\" must be a list of numbers, as "
                                 f"on line {first}; got {bounded(value)}")
    return records


def _check_ranges(records: list[dict[str, Any]], widths: dict[str, tuple[int, int]],
                  path: Path) -> None:
    """Per-layer statistics with a range (a fraction in [0, 1]: ``LayerStat.within``) hold
    values in it."""
    from initlab.stats import LAYER_STATS  # the statistics' one definition

    for key in widths:
        stat = LAYER_STATS.get(key)
        if stat is None or stat.within is None:
            continue
        low, high = stat.within
        for n, record in enumerate(records, start=1):
            values = record.get(key)
            for v in values if isinstance(values, list) else ():
                if v is not None and not low <= v <= high:
                    raise UsageError(f"{path}: line {n}: \"{key}\" must hold values in "
                                     f"[{low:g}, {high:g}], got {bounded(v)}")


def records_written(run_dir: Path) -> int:
    """How many bytes of ``stats.jsonl`` there are (0 when there is none): what a checkpoint
    records, so a resume can drop what was written after it."""
    try:
        info = os.lstat(run_dir / STATS_FILE)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def records_prefix_problem(run_dir: Path, size: int) -> str | None:
    """Why the first ``size`` bytes of ``stats.jsonl`` (what a checkpoint recorded) cannot be
    continued from: missing, shorter (records lost), or damaged within them. None when they
    can."""
    path = run_dir / STATS_FILE
    if size == 0:
        return None
    try:
        kept = read_run_bytes(path)[:size]
    except FileNotFoundError:
        return f"{path}: missing, but the checkpoint was taken after {size} bytes of records"
    except UsageError as err:
        return str(err)
    if len(kept) < size:
        return (f"{path}: {len(kept)} bytes, but the checkpoint was taken when it had {size}: "
                f"records were lost")
    if not kept.endswith(b"\n"):
        return f"{path}: damaged (the checkpoint's last record does not end its line)"
    for n, line in enumerate(kept.splitlines(), start=1):
        where = f"{path}: line {n}"
        try:
            record = parse_json(line.decode("utf-8"), where)
        except (UnicodeDecodeError, UsageError):
            return f"{where} is not a JSON record"
        try:
            _check_record(record, where)
        except UsageError as err:
            return str(err)
    return None


def read_mapping(path: Path, what: str | None = None, *, required: bool = True
                 ) -> dict[str, Any]:
    """A run directory's ``config.yaml`` (YAML 1.2, the dialect and bounds of a config given
    to ``initlab run``) or ``summary.json`` / ``sweep.json`` (JSON) as a dict; {} for a
    missing optional file; any damage is one UsageError naming the file."""
    from initlab.config import load_yaml  # the one YAML dialect (only a config needs it)

    what = what or WHAT.get(path.name, "a run file")
    if not required and not os.path.lexists(path):
        return {}
    text = _read_text(path, what)
    if not text.strip():
        raise UsageError(f"{path}: is empty, expected {what}")
    if path.suffix == ".json":
        data = parse_json(text, str(path))
    else:
        if _flow_nesting(text) > MAX_NESTING:  # before the parser spends seconds on it
            raise UsageError(f"{path}: nested more than {MAX_NESTING} levels deep")
        try:
            data = load_yaml(text)
        except RecursionError:
            raise UsageError(f"{path}: nested more than {MAX_NESTING} levels deep") from None
        except ValueError as err:  # an alias bomb
            raise UsageError(f"{path}: {err}") from None
        except Exception as err:  # noqa: BLE001 -- any YAML error, from any of its stages
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise UsageError(f"{path}: not valid YAML{at}") from None
        if _nesting(data) > MAX_NESTING:
            raise UsageError(f"{path}: nested more than {MAX_NESTING} levels deep")
    if data is None:
        raise UsageError(f"{path}: is empty, expected {what}")
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected {what} (a mapping), got {_kind_of(data)}")
    return data


def read_run_config(run_dir: Path, *, required: bool = True) -> dict[str, Any]:
    """A member's ``config.yaml`` as a mapping, its sections and the numbers readers use
    checked ({} when absent and not ``required``)."""
    path = run_dir / CONFIG_FILE
    config = read_mapping(path, WHAT[CONFIG_FILE], required=required)
    _check_config(config, path)
    return config


# summary.json's fields readers use: their types and ranges.
SUMMARY_FIELDS: dict[str, tuple[str, Any]] = {
    "status": ("a string", lambda v: isinstance(v, str)),
    "steps": ("a whole number in 0..2**53", lambda v: _whole(v, 0)),
    "epochs": ("a whole number in 0..2**53", lambda v: _whole(v, 0)),
    "final_test_error": ("a number in [0, 1]", lambda v: _is_finite(v) and 0 <= v <= 1),
    "reached_target_epoch": ("a whole number in 0..2**53", lambda v: _whole(v, 0)),
    "diverged_step": ("a whole number in 0..2**53", lambda v: _whole(v, 0)),
    "wall_seconds": ("a finite number >= 0", lambda v: _is_finite(v) and v >= 0),
    "members_in_group": ("a whole number in 1..2**53", lambda v: _whole(v, 1)),
    "threads": ("a whole number in 1..2**53", lambda v: _whole(v, 1)),
}


def _whole(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_STEP


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json ({} when absent: a member not started yet), its fields readers use
    checked. ``path``: the file, or the run directory holding it."""
    path = path / SUMMARY_FILE if path.name != SUMMARY_FILE else path
    summary = read_mapping(path, WHAT[SUMMARY_FILE], required=False)
    for key, (expected, ok) in SUMMARY_FIELDS.items():
        value = summary.get(key)
        if value is not None and not ok(value):
            raise UsageError(f"{path}: \"{key}\" must be {expected} or null, got "
                             f"{bounded(value)}")
    return summary


def read_sweep_listing(top: Path) -> list[object]:
    """The member names ``sweep.json`` lists, as written (each still to be checked as a plain
    name of a subdirectory); one UsageError naming the file when it is damaged."""
    path = top / SWEEP_FILE
    listing = read_mapping(path, WHAT[SWEEP_FILE])
    members = listing.get("members")
    if not isinstance(members, list):
        raise UsageError(f"{path}: \"members\" must be a list of names, got "
                         f"{bounded(members) if 'members' in listing else 'nothing'}")
    return members


def config_text(run_dir: Path) -> str | None:
    """A member's ``config.yaml`` exactly as written (the figures' cache compares it with the
    config it wants); None when it is missing, not a regular file or not text."""
    try:
        return read_run_bytes(run_dir / CONFIG_FILE).decode("utf-8")
    except (FileNotFoundError, UsageError, UnicodeDecodeError):
        return None


def config_dirs(top: Path) -> list[Path]:
    """Every directory under ``top`` (itself included) holding a ``config.yaml``, links never
    followed: the members a launch wrote."""
    found = []
    for folder, subdirs, files in os.walk(top):  # os.walk does not follow directory links
        if CONFIG_FILE in files:
            found.append(Path(folder))
        subdirs.sort()
    return sorted(found)


def read_checkpoint_bytes(path: Path) -> bytes:
    """A checkpoint file's bytes, read as any run file (regular, bounded, never a link)."""
    return read_run_bytes(path)


def _positive_int(config: dict[str, Any], section: str, key: str, default: int,
                  source: Path, high: int = MAX_STEP) -> int:
    value = (config.get(section) or {}).get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise UsageError(f"{source}: {section}.{key}: expected a whole number in 1..{high:,}, "
                         f"got {bounded(value)}")
    return value


def _check_config(config: dict[str, Any], source: Path) -> None:
    """What readers take from a run's config: sections are mappings; an MLP's depth and width
    are positive integers in their ranges; a watched run's layers each have a name and a
    fan-in."""
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
            if fan is not None and (not _is_finite(fan) or fan <= 0):
                raise UsageError(f"{source}: watch.layers[{i}].fan_in: expected a number "
                                 f"> 0, got {bounded(fan)}")
        return
    # An MLP's config, as initlab writes it, holds single values only: readers group, label and
    # compare runs by them (a list there once made `plot` a TypeError, twice; found by fuzz).
    for section, value in config.items():
        for key, leaf in value.items() if isinstance(value, dict) else ():
            if isinstance(leaf, (list, dict)):
                raise UsageError(f"{source}: {section}.{key}: expected a single value, got "
                                 f"{_kind_of(leaf)}")
    _positive_int(config, "model", "depth", 1, source, MAX_DEPTH)
    _positive_int(config, "model", "width", 1, source, 1_000_000)


def _check_layers_match(run: Run, source: Path) -> None:
    """The number of layers the config says against the per-layer lists recorded: an MLP of
    L layers records L values of each statistic (L - 1 of a hidden-layer one), a watched model
    at most one per watched layer; no list is empty where the run has layers to fill it."""
    if not run.layers:
        return
    from initlab.stats import LAYER_STATS  # which statistics are per hidden layer

    depth = run.depth
    where = "watch.layers" if run.kind == "watch" else "model.depth"
    widest = _widest(run.layers)
    for key, values in run.layers.items():
        width = values.shape[1]
        stat = LAYER_STATS.get(key)
        if run.kind == "mlp" and stat is not None:
            fits = width == depth - int(stat.hidden_only)
        else:
            fits = (1 <= width or depth <= 1) and widest <= depth <= widest + 1
        if not fits:
            raise UsageError(f"{source}: {where} says {depth:,} layers, but the records in "
                             f"{STATS_FILE} have {width} values of \"{bounded(key, 40)}\" "
                             f"each: the config and the records do not match")


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
            key: np.array([[_num(v) for v in r[key]] if r.get(key) is not None
                           else [math.nan] * width  # absent, or null: a record without it
                           for r in self.records], dtype=float).reshape(len(self.records),
                                                                        width)
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
        if self.status not in FINISHED:
            parts.append(f"records reach step {self.reached}")
            last = self.last_test_error
            if last is not None:
                parts.append(f"last test error {percent(last[0])} at step {last[1]}")
        parts.append(_plural(len(self.records), "record"))
        return f"Run({str(self.path)!r}: {', '.join(parts)})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sweep(self) -> str | None:
        """The sweep this run is a member of (its directory's name), else None."""
        return self.path.parent.name if is_sweep_dir(self.path.parent) else None

    @property
    def display_name(self) -> str:
        """``sweep/member`` for a sweep member, else the run's name."""
        return f"{self.sweep}/{self.name}" if self.sweep else self.name

    @cached_property
    def status(self) -> str:
        """completed, diverged, interrupted, running (a process is writing it) or stopped
        (its summary says running, but no process holds its writer's lock: it was killed);
        "unknown" without a summary."""
        status = str(self.summary.get("status") or "unknown")
        if status == "running" and writer_alive(self.path) is False:
            return "stopped"
        return status

    @property
    def reached(self) -> int:
        """The step the records reach (the summary's count when none were read)."""
        if len(self.records):
            return int(self.step.max())
        return int(self.summary.get("steps") or 0)

    @property
    def last_test_error(self) -> tuple[float, int] | None:
        """The last test error measured and its step, whether or not the run finished."""
        measured = np.flatnonzero(~np.isnan(self.test_error)) if len(self.records) else []
        if not len(measured):
            return None
        return float(self.test_error[measured[-1]]), int(self.step[measured[-1]])

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
        except (TypeError, ValueError, OverflowError):  # hand-edited: curves use steps
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
        """The summary's final test error; for a completed run without one, the last one
        measured. NaN if none: a run that did not finish (running, stopped, interrupted) has
        no final error (``last_test_error`` is the last measured, e.g. at initialization), nor
        has a diverged run, whose outcome is "diverged at step N" (``diverged_step``), told the
        same way by the progress line, ``ls``, ``compare``, the figures and exports."""
        if self.status == "diverged":
            return float("nan")
        err = self.summary.get("final_test_error")
        if err is None and self.status == "completed":
            last = self.last_test_error
            err = None if last is None else last[0]
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
    if not is_run_dir(path):
        raise UsageError(not_a_run(path))
    config = read_run_config(path, required=False)
    summary = read_summary(path)
    run = Run(path, config, summary, read_stats(path) if records else [])
    _check_layers_match(run, path / CONFIG_FILE)
    return run


def is_run_dir(path: Path) -> bool:
    """A member's run directory: ``stats.jsonl`` beside its ``config.yaml`` or
    ``summary.json`` (a stray ``stats.jsonl`` in a folder of runs does not make the folder a
    run; a link named so counts, to be refused when read, never followed)."""
    return os.path.lexists(path / STATS_FILE) and not is_sweep_dir(path) and (
        os.path.lexists(path / CONFIG_FILE) or os.path.lexists(path / SUMMARY_FILE))


def command_path(path: Path) -> str:
    """``path`` as a shell command line names it: quoted, and never read as an option (a run
    named ``-rf`` is ``./-rf``)."""
    import shlex

    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


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
                f"with load_runs({str(path)!r}); `initlab ls {command_path(path)}` lists them")
    if os.path.lexists(path / CONFIG_FILE):
        return (f"{path}: no {STATS_FILE} yet (a run set up but not started, or stopped "
                f"before its first record)")
    if os.path.lexists(path / STATS_FILE):
        return (f"{path} is not a run directory: its {STATS_FILE} has no {CONFIG_FILE} or "
                f"{SUMMARY_FILE} beside it (a stray file?)")
    return f"{path} is not a run directory (no {STATS_FILE})"


def _listing(names: list[str], shown: int = 4) -> str:
    text = ", ".join(bounded(n, 40) for n in names[:shown])
    return text + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def is_sweep_dir(path: Path) -> bool:
    """A sweep's directory: it has ``sweep.json`` (written once every member directory
    exists; a link named so counts too, to be refused when read)."""
    return os.path.lexists(path / SWEEP_FILE)


def sweep_members(path: Path) -> list[Path]:
    """A sweep's member directories in sweep order (``sweep.json``), else sorted; only those
    holding statistics. A damaged ``sweep.json`` is one UsageError naming it."""
    order = [name for name in read_sweep_listing(path) if isinstance(name, str)]
    found = {p.name: p for p in _subdirs(path) if os.path.lexists(p / STATS_FILE)}
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
                return os.lstat(candidate).st_mtime  # the link itself, never what it names
            except OSError:
                continue
        return 0.0


def find_runs(parent: Path) -> list[RunEntry]:
    """The runs and sweeps directly inside ``parent``, oldest first."""
    entries = []
    for path in _subdirs(parent):
        if is_run_dir(path):
            entries.append(RunEntry(path, (path,), False))
        elif is_sweep_dir(path):
            try:
                members = tuple(sweep_members(path))
            except UsageError:  # listed as one unreadable entry: `ls` names the problem
                members = (path,)
            entries.append(RunEntry(path, members, True))
    return sorted(entries, key=lambda e: (e.started, e.path.name))


def nested_run_dirs(parent: Path) -> Iterator[tuple[Path, int]]:
    """Directories inside ``parent`` that are neither runs nor sweeps but hold runs (such as
    ``runs/figures-cache``), with how many."""
    for path in sorted(_subdirs(parent)):
        if not is_run_dir(path) and not is_sweep_dir(path):
            count = sum(len(e.members) for e in find_runs(path))
            if count:
                yield path, count


def load_runs(path: str | Path) -> list[Run]:
    """A run directory as a list of one, a sweep directory as its members (in sweep order),
    or a directory of runs as every run in it (sweeps' members included), oldest first."""
    path = Path(path).expanduser()
    if is_run_dir(path):
        return [load_run(path)]
    if is_sweep_dir(path):
        return [load_run(p) for p in sweep_members(path)]
    found = find_runs(path) if path.is_dir() else []
    if found:
        return [load_run(member) for entry in found for member in entry.members]
    raise UsageError(not_a_run(path))
