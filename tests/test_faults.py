"""Faults end to end through the CLI on real MNIST (issue 5): bad input is one message and
exit 2 with nothing created; divergence is a result; SIGINT/SIGTERM/kill -9 then --resume
give the numbers of an uninterrupted run; files survive torn writes; bad data is refused.

Every comparison runs with one torch thread (subprocesses via OMP_NUM_THREADS, this process
via torch.set_num_threads): CPU results are bit-identical only for the same thread count.
docs/bad-inputs.md lists each bad input, its message, and the test here that tries it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import sigint_after
from typer.testing import CliRunner, Result

import initlab
from initlab.checkpoint import read_checkpoint
from initlab.cli import app
from initlab.config import load_experiment
from initlab.data import MNIST_FILES, raw_dir
from initlab.errors import RunInterrupted, UsageError
from initlab.experiment import resume_experiment, run_experiment
from initlab.stats import LAYER_KEYS

pytestmark = pytest.mark.usefixtures("mnist_env")

runner = CliRunner()

# A second or two of training each. Batch norm, dropout and momentum put every kind of state
# (running averages, dropout RNG, optimizer buffers) into the checkpoint resume must restore;
# checkpoints every 7 steps fall mid-epoch (20 steps per epoch).
SINGLE = {
    "name": "single",
    "model": {"depth": 12, "width": 32, "norm": "batch", "dropout": 0.1},
    "data": {"train_subset": 2000, "test_subset": 1000},
    "train": {"lr": 0.02, "momentum": 0.9, "batch_size": 100, "epochs": 10, "device": "cpu"},
    "log": {"every": 5, "checkpoint_every": 7, "probe_size": 256},
}
# K = 2 trained as one stacked model, with Adam's state.
SWEEP = {
    **SINGLE,
    "name": "sweep",
    "model": {"depth": 12, "width": 32},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 5, "device": "cpu"},
    "sweep": {"init.c": [1.0, 2.0]},
}
# c = 3 at depth 20: lr 1.0 gives NaN at step 3, lr 0.01 trains (measured on CPU).
DIVERGE = {
    **SINGLE,
    "name": "diverge",
    "model": {"depth": 20, "width": 64},
    "init": {"c": 3.0},
    "train": {"lr": 0.01, "batch_size": 100, "epochs": 3, "device": "cpu"},
    "sweep": {"train.lr": [0.01, 1.0]},
}
TINY = {
    "name": "tiny",
    "model": {"depth": 3, "width": 16, "dropout": 0.1},
    "data": {"train_subset": 500, "test_subset": 100},
    "train": {"batch_size": 50, "epochs": 1, "device": "cpu"},
}
STOPPED = "lr=1.0"  # the member of DIVERGE that diverges


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """In-process runs use one thread, like the subprocesses, so their numbers match."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli(*args: object) -> Result:
    """The CLI in this process (no signals needed)."""
    return runner.invoke(app, [str(a) for a in args])


def start_cli(*args: object) -> subprocess.Popen[str]:
    """The CLI as its own process, to receive real signals. (The environment is read now:
    conftest points $INITLAB_DATA at the session's MNIST.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "initlab", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(proc: subprocess.Popen[str], ready: Callable[[], bool],
               timeout: float = 90.0) -> None:
    """Poll until ``ready()``; fail if the run ended first (nothing left to interrupt)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped:\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run to start training")
        time.sleep(0.02)


def trained_a_little(top: Path) -> Callable[[], bool]:
    """True once a stats.jsonl under ``top`` holds a 'train' record (the first checkpoint
    has been written)."""
    return lambda: any('"phase": "train"' in p.read_text() for p in top.glob("**/stats.jsonl"))


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def summary(run_dir: Path) -> dict[str, Any]:
    """summary.json without the one field that may differ between equal runs."""
    data = json.loads((run_dir / "summary.json").read_text())
    data.pop("wall_seconds")
    data.pop("started_at", None)
    return data


def member_dirs(top: Path) -> list[Path]:
    return sorted(p for p in top.iterdir() if (p / "config.yaml").exists()) \
        if not (top / "config.yaml").exists() else [top]


def assert_same_run(expected: Path, actual: Path) -> None:
    """Same statistics, summaries and final weights, member by member."""
    names = [p.name for p in member_dirs(expected)]
    assert [p.name for p in member_dirs(actual)] == names
    for want, got in zip(member_dirs(expected), member_dirs(actual), strict=True):
        assert records(got) == records(want), got
        assert summary(got) == summary(want), got
        a = read_checkpoint(want / "checkpoint.pt")["model"]
        b = read_checkpoint(got / "checkpoint.pt")["model"]
        # A diverged member's frozen weights may hold NaN; NaN == NaN here, nothing else.
        torch.testing.assert_close(b["params"], a["params"], rtol=0, atol=0, equal_nan=True)
        for name, buf in a["buffers"].items():
            torch.testing.assert_close(b["buffers"][name], buf, rtol=0, atol=0, equal_nan=True)


def reference_run(tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any]) -> Path:
    """An uninterrupted run of ``config`` through the CLI."""
    tmp = tmp_path_factory.mktemp(f"ref-{config['name']}")
    result = cli("run", write_config(tmp / "c.yaml", config), "--out", tmp / "runs")
    assert result.exit_code == 0, result.output
    return tmp / "runs" / config["name"]


@pytest.fixture(scope="module")
def single_ref(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    return reference_run(tmp_path_factory, SINGLE)


@pytest.fixture(scope="module")
def sweep_ref(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    return reference_run(tmp_path_factory, SWEEP)


@pytest.fixture(scope="module")
def diverge_run(tmp_path_factory: pytest.TempPathFactory,
                one_thread: None) -> tuple[Path, Result]:
    tmp = tmp_path_factory.mktemp("diverge")
    result = cli("run", write_config(tmp / "d.yaml", DIVERGE), "--out", tmp / "runs")
    return tmp / "runs" / "diverge", result


def interrupt_and_resume(tmp_path: Path, config: dict[str, Any], sig: signal.Signals) -> Path:
    """Start a run, send ``sig`` once it has trained a little, check the interrupted state,
    then resume it to the end. Returns the run (or sweep) directory."""
    top = tmp_path / "runs" / config["name"]
    proc = start_cli("run", write_config(tmp_path / "c.yaml", config), "--out", tmp_path / "runs")
    wait_until(proc, trained_a_little(top))
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, output
    assert f"initlab run --resume {top}" in output
    for member in member_dirs(top):
        assert summary(member)["status"] == "interrupted"
        assert (member / "checkpoint.pt").exists()
        assert all(r["step"] <= summary(member)["steps"] for r in records(member))
    result = cli("run", "--resume", top)
    assert result.exit_code == 0, result.output
    return top


# --------------------------------------------------------------------------- divergence


def test_divergence_marks_the_member_and_keeps_the_others(
        diverge_run: tuple[Path, Result]) -> None:
    top, result = diverge_run
    assert result.exit_code == 0, result.output
    assert f"diverged: {STOPPED}" in result.output
    bad = summary(top / STOPPED)
    assert bad["status"] == "diverged" and bad["diverged_step"] == 3
    assert bad["steps"] == 3 and bad["final_test_error"] is None
    kept = records(top / STOPPED)
    assert kept and all(r["step"] < bad["diverged_step"] for r in kept)
    for r in kept:  # everything kept is a number: nothing non-finite was written
        assert all(r[k] is not None for k in ("loss", "train_error"))
        assert all(v is not None for key in LAYER_KEYS if key in r for v in r[key])
    good = summary(top / "lr=0.01")
    assert good["status"] == "completed" and good["steps"] == 60
    assert records(top / "lr=0.01")[-1]["phase"] == "final"


def test_statistics_infinite_at_init_is_divergence_at_step_0(tmp_path: Path) -> None:
    """c = 1e6 overflows float32 activations before any step: nothing finite to keep, yet a
    well-formed run directory and exit 0."""
    config = {**TINY, "model": {"depth": 20, "width": 16}, "init": {"c": 1e6}}
    result = cli("run", write_config(tmp_path / "t.yaml", config), "--out", tmp_path, "--plot")
    assert result.exit_code == 0, result.output
    assert "diverged: tiny" in result.output and "no statistics to plot" in result.output
    assert summary(tmp_path / "tiny")["diverged_step"] == 0
    assert initlab.load_run(tmp_path / "tiny").records == []


def test_figures_draw_a_diverged_member_up_to_where_it_ended(
        diverge_run: tuple[Path, Result], tmp_path: Path) -> None:
    from initlab.plot import run_label

    top, _ = diverge_run
    runs = {r.name: r for r in initlab.load_runs(top)}
    assert "diverged at step 3" in run_label(runs[STOPPED])
    assert runs[STOPPED].last() == len(runs[STOPPED].records) - 1  # its last kept record
    result = cli("plot", top, "--out", tmp_path / "layers.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "layers.png").stat().st_size > 10_000


def test_interrupt_just_after_divergence_then_resume_equals_uninterrupted(
        diverge_run: tuple[Path, Result], tmp_path: Path) -> None:
    """SIGINT at step 5, after the NaN of step 3 but before any flush noticed it: the member
    must still end as diverged at step 3 with the same records."""
    top, _ = diverge_run
    exp = load_experiment(write_config(tmp_path / "d.yaml", DIVERGE))
    with pytest.raises(RunInterrupted) as stop:
        run_experiment(exp, tmp_path / "runs", progress=sigint_after(5))
    assert stop.value.exit_code == 130
    interrupted = tmp_path / "runs" / "diverge"
    assert summary(interrupted / STOPPED)["status"] == "diverged"
    assert summary(interrupted / "lr=0.01")["status"] == "interrupted"
    resume_experiment(interrupted)
    assert_same_run(top, interrupted)


# --------------------------------------------------------------------------- interruption


def test_sweep_of_two_groups_interrupted_in_the_first(tmp_path: Path) -> None:
    """Members of a group not reached yet say so, and --resume trains them from scratch."""
    config = {**TINY, "name": "groups", "log": {"every": 4, "checkpoint_every": 7},
              "sweep": {"model.depth": [3, 4]}}  # two shapes: two stacked groups
    exp = load_experiment(write_config(tmp_path / "g.yaml", config))
    reference = run_experiment(exp, tmp_path / "ref")[0].path.parent
    with pytest.raises(RunInterrupted):
        run_experiment(exp, tmp_path / "runs", progress=sigint_after(5))
    top = tmp_path / "runs" / "groups"
    assert summary(top / "depth=3")["status"] == "interrupted"
    assert summary(top / "depth=4") == {
        "status": "interrupted", "steps": 0, "epochs": 0, "final_test_error": None,
        "reached_target_epoch": None, "diverged_step": None, "device": None,
        "members_in_group": 1, "threads": None}
    assert not (top / "depth=4" / "stats.jsonl").exists()
    assert cli("run", "--resume", top).exit_code == 0
    assert_same_run(reference, top)


def test_sigint_then_resume_equals_uninterrupted(single_ref: Path, tmp_path: Path) -> None:
    assert_same_run(single_ref, interrupt_and_resume(tmp_path, SINGLE, signal.SIGINT))


def test_sweep_sigterm_then_resume_equals_uninterrupted(sweep_ref: Path, tmp_path: Path) -> None:
    assert_same_run(sweep_ref, interrupt_and_resume(tmp_path, SWEEP, signal.SIGTERM))


def test_kill_9_then_resume_equals_uninterrupted(single_ref: Path, tmp_path: Path) -> None:
    """SIGKILL a fixed time after the first checkpoint (no random draw in make test: where in
    its steps the run is then depends only on the machine's speed); a torn stats line and a
    half-written temporary checkpoint, as a kill mid-write leaves them, are cleaned up."""
    top = tmp_path / "runs" / "single"
    proc = start_cli("run", write_config(tmp_path / "c.yaml", SINGLE), "--out", tmp_path / "runs")
    wait_until(proc, lambda: (top / "checkpoint.pt").exists())
    delay = 0.07  # ~190 of its 200 steps are left: ~0.6 s here
    time.sleep(delay)
    proc.kill()
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, f"ended before the kill ({delay:.3f} s):\n{output}"
    with (top / "stats.jsonl").open("a") as f:
        f.write('{"step": 99999, "epoch": 0, "phase": "tr')
    (top / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    result = cli("run", "--resume", top)
    assert result.exit_code == 0, f"killed after {delay:.3f} s:\n{result.output}"
    assert not list(top.glob(".*.tmp"))
    assert_same_run(single_ref, top)


def fail_fsync(monkeypatch: pytest.MonkeyPatch, marker: str, at: int) -> None:
    """Make the ``at``-th fsync of a file whose path holds ``marker`` fail as on a full disk."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file is synced")
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        if marker in os.readlink(f"/proc/self/fd/{fd}"):
            calls.append(fd)
            if len(calls) == at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_before_training_creates_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fail_fsync(monkeypatch, ".config.yaml.", at=1)
    result = cli("run", write_config(tmp_path / "t.yaml", TINY), "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert f"cannot write {tmp_path / 'runs' / 'tiny' / 'config.yaml'}: No space left" \
        in result.output
    assert list((tmp_path / "runs").iterdir()) == []


def test_disk_full_mid_sweep_is_clear_and_resumable(
        diverge_run: tuple[Path, Result], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the second checkpoint is written (first member done, second
    not): exit 2 naming the file; after that, --resume picks the step both members have."""
    top, _ = diverge_run
    fail_fsync(monkeypatch, ".checkpoint.pt.", at=3)  # step 14, first member (step 7 made 2)
    result = cli("run", write_config(tmp_path / "d.yaml", DIVERGE), "--out", tmp_path / "runs")
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    full = tmp_path / "runs" / "diverge"
    assert f"cannot write {full / 'lr=0.01' / 'checkpoint.pt'}: No space left on device" \
        in result.output
    # issue 32: it said "No checkpoint was written yet" while a checkpoint could resume; the
    # old checkpoint now stays in place until the new one is whole, and the message says
    # where --resume continues from, as resume itself decides it
    assert f"continue from step 7 with: initlab run --resume {full}" in result.output
    from initlab.checkpoint import read_checkpoint

    assert read_checkpoint(full / "lr=0.01" / "checkpoint.pt")["group"]["step"] == 7
    assert (full / "lr=1.0" / "checkpoint.pt").exists()
    result = cli("run", "--resume", full)
    assert result.exit_code == 0, result.output
    assert_same_run(top, full)


def test_disk_full_at_the_first_flush_says_there_is_no_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """M6: a full disk at the first flush said "the last checkpoint is intact" when there was
    none."""
    fail_fsync(monkeypatch, "stats.jsonl", at=1)  # the init record's append
    result = cli("run", write_config(tmp_path / "t.yaml", TINY), "--out", tmp_path / "runs")
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    assert "No checkpoint was written yet" in result.output
    assert "checkpoint is intact" not in result.output
    assert summary(tmp_path / "runs" / "tiny")["status"] == "interrupted"


# --------------------------------------------------------------------------- files


def test_torn_last_stats_line_is_skipped_with_a_warning(single_ref: Path,
                                                         tmp_path: Path) -> None:
    run_dir = tmp_path / "torn"
    shutil.copytree(single_ref, run_dir)
    whole = records(run_dir)
    with (run_dir / "stats.jsonl").open("a") as f:
        f.write('{"step": 201, "epoch": 10, "phase": "tr')
    with pytest.warns(UserWarning, match="skipped a torn last line"):
        run = initlab.load_run(run_dir)
    assert run.records == whole
    # A bad line anywhere else is damage, not a torn write: one clear error.
    lines = (run_dir / "stats.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "stats.jsonl").write_text("".join([lines[0], "garbage\n", *lines[1:-1]]))
    with pytest.raises(UsageError, match="line 2 is not valid JSON"):
        initlab.load_run(run_dir)


def test_runs_started_at_once_get_distinct_directories_and_equal_numbers(
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "t.yaml", TINY)
    procs = [start_cli("run", cfg, "--out", tmp_path / "runs") for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    dirs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert dirs == ["tiny", "tiny-2"]
    for name in dirs:
        assert summary(tmp_path / "runs" / name)["status"] == "completed"
    # Determinism: same config and seed in two processes, byte-identical statistics.
    a, b = (tmp_path / "runs" / name / "stats.jsonl" for name in dirs)
    assert a.read_bytes() == b.read_bytes()


def test_output_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = cli("run", write_config(tmp_path / "t.yaml", TINY), "--out", a_file / "runs")
    assert result.exit_code == 2
    assert f"error: cannot create output directory {a_file / 'runs'}: {a_file} is a file" \
        in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "t.yaml"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a mode-500 directory anyway")
def test_unwritable_output_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = cli("run", write_config(tmp_path / "t.yaml", TINY), "--out", locked / "runs")
        assert result.exit_code == 2
        assert f"error: output directory {locked} is not writable" in result.output
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_a_run_being_trained_is_not_resumed_twice(single_ref: Path, tmp_path: Path) -> None:
    import fcntl

    run_dir = tmp_path / "single"
    shutil.copytree(single_ref, run_dir)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running initlab holds it
        result = cli("run", "--resume", run_dir)
    finally:
        os.close(fd)
    assert result.exit_code == 2
    assert f"error: {run_dir} is being trained by another initlab process" in result.output
    assert cli("run", "--resume", run_dir).exit_code == 0  # done already: nothing to do


def test_sweep_stopped_while_being_set_up_is_named(sweep_ref: Path, tmp_path: Path) -> None:
    top = tmp_path / "sweep"
    shutil.copytree(sweep_ref, top)
    (top / "sweep.json").unlink()  # as if killed before the last member directory existed
    result = cli("run", "--resume", top)
    assert result.exit_code == 2
    assert "this sweep was stopped while its directories were being created" in result.output


# --------------------------------------------------------------------------- data


def corrupt_copy(tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A data root whose t10k labels are damaged ``how``; the big files are links."""
    root = tmp_path / "data"
    raw = raw_dir(root)
    raw.mkdir(parents=True)
    source = raw_dir(os.environ["INITLAB_DATA"])
    for name in MNIST_FILES:
        (raw / name).symlink_to(source / name)
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.unlink()
    if how != "missing":
        payload = bytearray((source / bad.name).read_bytes())
        if how == "flipped":
            payload[100] ^= 0xFF
        bad.write_bytes(payload[: len(payload) // 2] if how == "truncated" else payload)
    return root, bad


@pytest.mark.parametrize("how", ["flipped", "truncated", "missing"])
def test_bad_idx_file_is_refused_before_any_run_directory(tmp_path: Path, how: str) -> None:
    root, bad = corrupt_copy(tmp_path, how)
    out = tmp_path / "runs"
    result = cli("run", write_config(tmp_path / "t.yaml", TINY), "--out", out,
                 "--data-root", root)
    assert result.exit_code == 2, result.output
    expected = {"flipped": "corrupted", "truncated": "truncated", "missing": "missing"}[how]
    assert f"{expected}: {bad}" in result.output
    if how != "missing":
        assert f"expected SHA-256 {MNIST_FILES[bad.name].sha256}" in result.output
    assert f"initlab data --force --data-root {root}" in result.output
    assert not out.exists()


# --------------------------------------------------------------------------- bad input


def test_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.yaml", {
        "name": "bad", "model": {"nrom": "layer", "depth": 0}, "init": {"c": "big"},
        "sweep": {"init.cc": [1.0]}})
    result = cli("validate", cfg)
    assert result.exit_code == 2
    for line in ["model.nrom: unknown key (did you mean 'norm'?)",
                 "model.depth: must be in 1..10,000", "init.c: expected a number, got 'big' (str)",
                 "sweep.init.cc: unknown key (did you mean 'init.c'?)"]:
        assert f"{cfg}: {line}" in result.output
    assert cli("validate", write_config(tmp_path / "ok.yaml", TINY)).exit_code == 0


# Rows of docs/bad-inputs.md that `initlab run` refuses before creating anything: the config
# file's content (None: no file is written), the arguments after `run`, and the message. In
# both, CFG is the config file, TMP this test's directory, FILE a regular file in it.
RUN_ROWS: dict[str, tuple[str | bytes | None, list[str], str]] = {
    "unknown key": ("model: {nrom: layer}\n", ["CFG"],
                    "CFG: model.nrom: unknown key (did you mean 'norm'?)"),
    "wrong type": ("train: {lr: fast}\n", ["CFG"],
                   "CFG: train.lr: expected a number, got 'fast' (str)"),
    "out of range": ("model: {dropout: 1.5}\n", ["CFG"],
                     "CFG: model.dropout: must be in [0, 1), got 1.5"),
    "empty file": ("", ["CFG"], "CFG: the file is empty; expected a mapping with sections"),
    "not UTF-8": (b"\xff\xfe", ["CFG"], "CFG: is not UTF-8 text"),
    "YAML syntax": ("model:\n  depth: [1, 2\n", ["CFG"],
                    "CFG: YAML syntax error at line 3, column 1: expected ',' or ']'"),
    "sweep over an unknown key": ("sweep: {init.cc: [1.0]}\n", ["CFG"],
                                  "CFG: sweep.init.cc: unknown key (did you mean 'init.c'?)"),
    "sweep over an empty list": ("sweep: {init.c: []}\n", ["CFG"],
                                 "CFG: sweep.init.c: expected a non-empty list of values"),
    "groups do not divide width": ("model: {norm: group, width: 100, groups: 7}\n", ["CFG"],
                                   "CFG: model.groups: must divide model.width=100 for norm: "
                                   "group, got 7"),
    "data.root is a file": ("data: {root: FILE}\n", ["CFG"],
                            "CFG: data.root: 'FILE' is a file, expected a directory"),
    "markup in a value": ('name: "x[/red]"\n', ["CFG"],
                          "CFG: name: must be a non-empty name of letters, digits, '.', '_' "
                          "and '-', got 'x[/red]'"),
    "no such file": (None, ["CFG"], "CFG: no such file"),
    "config is a directory": (None, ["TMP"], "TMP: is a directory, expected a YAML file"),
    "bad --set": ("model: {depth: 3}\n", ["CFG", "--set", "init.c=-1"],
                  "CFG (--set init.c=-1): init.c: must be > 0, got -1.0"),
    "--data-root is a file": ("train: {device: cpu}\n", ["CFG", "--data-root", "FILE"],
                              "data root FILE is a file; give a directory"),
    "batch larger than the data": (
        "data: {train_subset: 50}\ntrain: {batch_size: 128, device: cpu}\n", ["CFG"],
        "train.batch_size: 128 is larger than the 50 training images"),
    "subset larger than MNIST": ("data: {train_subset: 70000}\ntrain: {device: cpu}\n",
                                 ["CFG"], "train_subset must be an integer in 1..60000, got 70000"),
    "cuda without a GPU": ("train: {device: cuda}\n", ["CFG"],
                           "train.device: cuda was asked for, but no CUDA device is available"),
    "neither config nor --resume": (None, [], "give either a CONFIG file or --resume RUN_DIR"),
    "--resume of a non-run": (None, ["--resume", "TMP"],
                              "TMP: not a run directory (no config.yaml)"),
    "--resume with --set": (None, ["--resume", "TMP", "--set", "init.c=1"],
                            "--set cannot change a run being resumed"),
}


@pytest.mark.parametrize("row", list(RUN_ROWS))
def test_bad_input_exits_2_with_one_message_and_creates_nothing(tmp_path: Path,
                                                                row: str) -> None:
    if row == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    text, args, message = RUN_ROWS[row]
    cfg, a_file = tmp_path / "bad.yaml", tmp_path / "notadir"
    a_file.write_text("")
    places = {"CFG": str(cfg), "TMP": str(tmp_path), "FILE": str(a_file)}

    def fill(template: str) -> str:
        for mark, value in places.items():
            template = template.replace(mark, value)
        return template

    if isinstance(text, bytes):
        cfg.write_bytes(text)
    elif text is not None:
        cfg.write_text(fill(text))
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "runs"
    result = cli("run", *map(fill, args), "--out", out)
    assert result.exit_code == 2, result.output
    assert f"error: {fill(message)}" in result.output
    assert len(result.output.strip().splitlines()) == 1  # one message
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert sorted(tmp_path.iterdir()) == before
