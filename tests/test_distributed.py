"""Several processes: 2 gloo workers on 127.0.0.1, launched by ``initlab run --nproc 2`` exactly as
a user would, against the same experiment in one process.

One sweep (seed x norm in {none, syncbatch}, global batch 128, 20 steps, mid-epoch checkpoints)
serves all three checks: split over batches (2 x 64), each member matches its one-process run
(syncbatch: batch norm over the 128); split over members, the sweep directory matches the
one-process one. Both launches run at once to keep the wall time down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from initlab.checkpoint import read_checkpoint
from initlab.cli import app
from initlab.config import load_experiment
from initlab.distributed import LOCAL, Comm, check_batch_split, resolve_split
from initlab.errors import UsageError
from initlab.experiment import run_experiment
from initlab.runs import CHECKPOINT_FILE, CONFIG_FILE, STATS_FILE, SUMMARY_FILE, SWEEP_FILE
from initlab.stats import LAYER_STATS

pytestmark = pytest.mark.usefixtures("mnist_env")

runner = CliRunner()

BASE = {
    "model": {"depth": 4, "width": 32},
    "data": {"train_subset": 1280, "test_subset": 500},  # 10 steps per epoch: 2 epochs
    "train": {"batch_size": 128, "lr": 0.05, "epochs": 2, "max_steps": 20},
    "log": {"every": 5, "probe_size": 64, "checkpoint_every": 7},  # 7: folds mid-epoch
}
# The seed key first: split over members, rank 0 trains both norm=none members as one stacked
# model, rank 1 both syncbatch ones.
SWEEP = {"train.seed": [0, 1], "model.norm": ["none", "syncbatch"]}
MEMBERS = [f"seed={s}_norm={n}" for s in (0, 1) for n in ("none", "syncbatch")]
WEIGHTS_TOL = {"rtol": 1e-4, "atol": 1e-5}  # float32 sums in a different order, 20 steps
STATS_RTOL, STATS_ATOL = 1e-3, 1e-6
LAUNCH_TIMEOUT_S = 240


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # the sweep keeps its key order
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sweep directories: one process (``one``), batch norm in one process (``bn``, the
    reference for syncbatch), 2 ranks splitting batches and 2 ranks splitting members."""
    tmp = tmp_path_factory.mktemp("distributed")
    sweep = write_config(tmp / "sweep.yaml", {**BASE, "name": "sweep", "sweep": SWEEP})
    launches = {
        split: subprocess.Popen(
            [sys.executable, "-m", "initlab", "run", str(sweep), "--out", str(tmp / split),
             "--nproc", "2", "--split", split],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for split in ("batches", "members")
    }
    try:
        run_experiment(load_experiment(sweep), tmp / "one")
        bn = {**BASE, "name": "sweep", "sweep": {**SWEEP, "model.norm": ["batch"]}}
        run_experiment(load_experiment(write_config(tmp / "bn.yaml", bn)), tmp / "bn")
        for split, proc in launches.items():
            output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
            assert proc.returncode == 0, f"--split {split}:\n{output}"
    finally:
        for proc in launches.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {name: tmp / name / "sweep" for name in ("one", "bn", "batches", "members")}


def params(member_dir: Path) -> torch.Tensor:
    return read_checkpoint(member_dir / CHECKPOINT_FILE)["model"]["params"]


def records(member_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (member_dir / STATS_FILE).read_text().splitlines()]


def assert_same_numbers(a: object, b: object, where: str) -> None:
    """Equal structure, equal strings and ints, floats to STATS_RTOL."""
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, where
        assert abs(a - b) <= STATS_ATOL + STATS_RTOL * abs(b), f"{where}: {a} != {b}"
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_numbers(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_stats(a: Path, b: Path) -> None:
    """Every statistic but those that ranks can only approximate (a quantile over a batch, a
    count of units dead on all of it: averaged over the ranks' halves)."""
    ra, rb = records(a), records(b)
    assert len(ra) == len(rb) > 0
    approximate = {key for key, stat in LAYER_STATS.items() if stat.per_rank == "approx"}
    for n, (x, y) in enumerate(zip(ra, rb, strict=True)):
        assert x.keys() == y.keys()
        for key in x.keys() - approximate:
            assert_same_numbers(x[key], y[key], f"{a.name} record {n} {key}")


@pytest.mark.parametrize("seed", [0, 1])
def test_two_workers_of_64_equal_one_process_of_128(runs: dict[str, Path], seed: int) -> None:
    name = f"seed={seed}_norm=none"
    torch.testing.assert_close(params(runs["batches"] / name), params(runs["one"] / name),
                               **WEIGHTS_TOL)
    assert_same_stats(runs["batches"] / name, runs["one"] / name)  # reduced over ranks


@pytest.mark.parametrize("seed", [0, 1])
def test_syncbatch_on_two_workers_equals_batch_norm_in_one(runs: dict[str, Path],
                                                           seed: int) -> None:
    synced = runs["batches"] / f"seed={seed}_norm=syncbatch"
    plain = runs["bn"] / f"seed={seed}_norm=batch"
    torch.testing.assert_close(params(synced), params(plain), **WEIGHTS_TOL)
    assert_same_stats(synced, plain)
    # In one process syncbatch is batch norm, to the bit.
    assert torch.equal(params(runs["one"] / f"seed={seed}_norm=syncbatch"), params(plain))


def test_rank_zero_alone_writes_a_batch_split_run(runs: dict[str, Path]) -> None:
    top = runs["batches"]
    assert sorted(p.name for p in top.iterdir() if p.is_dir()) == sorted(MEMBERS)
    for name in MEMBERS:
        summary = json.loads((top / name / SUMMARY_FILE).read_text())
        assert summary["status"] == "completed" and summary["steps"] == 20


def test_two_rank_sweep_writes_the_same_member_directories(runs: dict[str, Path]) -> None:
    one, two = runs["one"], runs["members"]
    assert (two / SWEEP_FILE).read_text() == (one / SWEEP_FILE).read_text()
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    for name in MEMBERS:
        assert (two / name / CONFIG_FILE).read_text() == (one / name / CONFIG_FILE).read_text()
        torch.testing.assert_close(params(two / name), params(one / name), **WEIGHTS_TOL)
        assert_same_stats(two / name, one / name)
        s1, s2 = (json.loads((d / name / SUMMARY_FILE).read_text()) for d in (one, two))
        for key in ("status", "steps", "epochs", "diverged_step", "reached_target_epoch"):
            assert s2[key] == s1[key]
        assert_same_numbers(s2["final_test_error"], s1["final_test_error"], name)
        assert s2["members_in_group"] == 2  # each rank trained its share as one stacked model


# --- No processes ----------------------------------------------------------------------------


def test_one_process_comm_changes_nothing() -> None:
    idx = torch.arange(12).view(2, 6)
    assert LOCAL.shard(idx) is idx
    steps = torch.tensor([-1, 3])
    assert LOCAL.earliest(steps) is steps
    assert LOCAL.agreed_stop(None) is None and LOCAL.agreed_stop(15) == 15
    loss, errors = torch.tensor([1.0]), torch.tensor([2.0])
    LOCAL.reduce_epoch_(loss, errors, keep_on_writer=True)
    LOCAL.mean_([loss])
    assert loss.item() == 1.0 and errors.item() == 2.0


def test_each_rank_takes_its_contiguous_slice_of_the_global_batch() -> None:
    idx = torch.arange(16).view(2, 8)
    slices = [Comm(rank=r, world=4).shard(idx) for r in range(4)]
    assert torch.equal(torch.cat(slices, dim=1), idx)
    assert slices[1].tolist() == [[2, 3], [10, 11]]


def test_split_rules() -> None:
    assert resolve_split("auto", is_sweep=True) == "members"
    assert resolve_split("auto", is_sweep=False) == "batches"
    assert resolve_split("batches", is_sweep=True) == "batches"
    with pytest.raises(UsageError, match="--split"):
        resolve_split("rows", is_sweep=False)


def test_a_batch_that_does_not_split_evenly_is_refused_before_launch(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {**BASE, "name": "c"})
    with pytest.raises(UsageError, match="100 is not a multiple of 3"):
        cfg = load_experiment(config, ["train.batch_size=100"]).members[0].config
        check_batch_split([cfg], 3)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "runs"),
                                 "--nproc", "3", "--set", "train.batch_size=100"])
    assert result.exit_code == 2
    assert "not a multiple of 3" in result.output
    assert not (tmp_path / "runs").exists()


def test_resume_with_nproc_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--resume", str(tmp_path), "--nproc", "2"])
    assert result.exit_code == 2
    assert "one process" in result.output


def worker_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of the launcher's workers (from their environment)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int((proc / "stat").read_text().split()[3]) != launcher:
                continue
            env = dict(item.split("=", 1) for item in
                       (proc / "environ").read_bytes().decode().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(proc.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_a_worker_killed_mid_run_ends_the_launch_with_one_line(tmp_path: Path) -> None:
    """C5: a --nproc 2 worker killed with -9 gave exit 247, ~100 lines of gloo's traceback, a
    summary still 'running' and no resume hint."""
    config = {**BASE, "name": "killed",
              "train": {**BASE["train"], "epochs": 50, "max_steps": None},
              "log": {**BASE["log"], "checkpoint_every": 3}}
    cfg = write_config(tmp_path / "killed.yaml", config)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "initlab", "run", str(cfg), "--out", str(tmp_path / "runs"),
         "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = tmp_path / "runs" / "killed"
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while not (run_dir / CHECKPOINT_FILE).exists():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.1)
    os.kill(worker_pids(launcher.pid)[1], signal.SIGKILL)
    output, _ = launcher.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert launcher.returncode == 128 + signal.SIGKILL, output
    assert "Traceback" not in output
    assert (f"initlab: worker 1 was killed by SIGKILL; the other workers were stopped; "
            f"continue with: initlab run --resume {run_dir}") in output
    assert json.loads((run_dir / SUMMARY_FILE).read_text())["status"] == "interrupted"
    resumed = runner.invoke(app, ["run", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / SUMMARY_FILE).read_text())["status"] == "completed"


def test_more_processes_than_the_machine_can_hold_are_refused(tmp_path: Path) -> None:
    """C4: --nproc 64 on 2 cores ran silently for minutes while memory ran out."""
    cfg = write_config(tmp_path / "c.yaml", {**BASE, "name": "many"})
    nproc = 4 * (os.cpu_count() or 1) + 1
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "runs"),
                                 "--nproc", str(nproc)])
    assert result.exit_code == 2
    assert f"--nproc {nproc}: this machine has" in result.output
    assert not (tmp_path / "runs").exists()
