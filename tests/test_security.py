"""A run directory is data (issue 16): opening one never executes code or reaches outside it,
and the processes initlab starts listen on loopback only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from conftest import sigint_after
from typer.testing import CliRunner, Result

from initlab import checkpoint, distributed
from initlab.cli import app
from initlab.config import load_experiment
from initlab.errors import RunInterrupted, UsageError
from initlab.experiment import run_experiment
from initlab.runs import CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE

pytestmark = pytest.mark.usefixtures("mnist_env")

TINY = {"name": "tiny", "model": {"depth": 3, "width": 8},
        "data": {"train_subset": 300, "test_subset": 100},
        "train": {"batch_size": 50, "epochs": 2, "device": "cpu"},
        "log": {"every": 2, "checkpoint_every": 3, "probe_size": 32}}


class Payload:
    """What a hostile checkpoint holds: unpickling it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def interrupted_run(tmp_path: Path, config: dict | None = None) -> Path:
    config = config or TINY
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(RunInterrupted) as info:
        run_experiment(load_experiment(path), tmp_path / "runs", progress=sigint_after(4))
    return info.value.path


def digest(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", [CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE])
def test_a_pickled_payload_in_a_checkpoint_never_runs(tmp_path: Path, name: str) -> None:
    run = interrupted_run(tmp_path)
    marker = tmp_path / "PWNED"
    state = checkpoint.read_checkpoint(run / CHECKPOINT_FILE)
    state["member"]["status"] = Payload(marker)  # anywhere in the state
    torch.save(state, run / name)  # plain torch.save: a full pickle
    before = digest(run)
    result = cli("run", "--resume", run)
    assert not marker.exists()
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{name}: refused" in lines[0] and "nothing was changed" in lines[0]
    assert digest(run) == before  # the run's records are kept


def test_the_figures_loader_refuses_a_payload_too(tmp_path: Path) -> None:
    from initlab.figures import inference
    from initlab.runs import load_run

    run_dir = interrupted_run(tmp_path)
    marker = tmp_path / "PWNED"
    state = checkpoint.read_checkpoint(run_dir / CHECKPOINT_FILE)
    state["model"]["params"] = Payload(marker)
    torch.save(state, run_dir / CHECKPOINT_FILE)
    with pytest.raises(UsageError, match="refused"):
        inference.load_model(load_run(run_dir))
    assert not marker.exists()


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "separator", "symlink", "not-text"])
def test_sweep_members_that_leave_the_sweep_are_refused(tmp_path: Path, escape: str) -> None:
    sweep = {**TINY, "name": "sweep", "sweep": {"init.c": [1.0, 2.0]}}
    top = interrupted_run(tmp_path / "s", sweep)
    victim = interrupted_run(tmp_path / "v")  # another run on the same disk
    before = digest(victim)
    listing = json.loads((top / "sweep.json").read_text())
    if escape == "absolute":
        listing["members"][0] = str(victim)
    elif escape == "dotdot":
        listing["members"][0] = os.path.relpath(victim, top)
    elif escape == "separator":
        listing["members"][0] = "c=1.0/../c=2.0"
    elif escape == "symlink":
        shutil.rmtree(top / "c=1.0")
        (top / "c=1.0").symlink_to(victim)
    else:
        listing["members"][0] = {"path": str(victim)}
    (top / "sweep.json").write_text(json.dumps(listing))
    result = cli("run", "--resume", top)
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and len(result.output.strip().splitlines()) == 1
    assert digest(victim) == before


def test_the_local_rendezvous_listens_on_loopback_only() -> None:
    tcp = Path("/proc/net/tcp")
    if not tcp.exists():
        pytest.skip("needs Linux's /proc/net/tcp")
    with distributed.local_store() as port:
        listening = [line.split() for line in tcp.read_text().splitlines()[1:]
                     if line.split()[3] == "0A"]  # state LISTEN
        ours = [fields[1] for fields in listening if int(fields[1].split(":")[1], 16) == port]
    assert ours == [f"0100007F:{port:04X}"]  # 127.0.0.1, little-endian hex


def test_local_workers_bind_gloo_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    env = distributed.worker_env(0, 2, 12345)
    assert env["MASTER_ADDR"] == "127.0.0.1"
    monkeypatch.setenv("MASTER_ADDR", env["MASTER_ADDR"])
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    distributed.bind_gloo_to_loopback()
    names = [name for _, name in socket.if_nameindex()]
    assert os.environ.get("GLOO_SOCKET_IFNAME") in names
    assert os.environ["GLOO_SOCKET_IFNAME"].startswith("lo")


def test_readers_never_follow_a_link_out_of_a_sweep(tmp_path: Path) -> None:
    import initlab

    sweep = {**TINY, "name": "sweep", "sweep": {"init.c": [1.0, 2.0]}}
    top = interrupted_run(tmp_path / "s", sweep)
    victim = interrupted_run(tmp_path / "v")
    (top / "elsewhere").symlink_to(victim)
    assert [run.path.name for run in initlab.load_runs(top)] == ["c=1.0", "c=2.0"]


@pytest.mark.parametrize("name", ["config.yaml", "stats.jsonl", "summary.json",
                                  "checkpoint.pt", "checkpoint.prev.pt"])
def test_a_file_link_out_of_a_run_is_never_followed(tmp_path: Path, name: str) -> None:
    """Issue 20: readers followed a file link (summary.json -> ../../elsewhere), while this
    file said links are never followed. Each run file that is a link is refused by name, by
    every reader that opens it, and nothing outside is read into a result."""
    from initlab.runs import load_run

    run = interrupted_run(tmp_path)
    outside = tmp_path / "elsewhere"
    shutil.copyfile(run / name, outside)  # the same bytes: following it would "work"
    (run / name).unlink()
    (run / name).symlink_to(outside)
    kept = outside.read_bytes()
    if not name.startswith("checkpoint"):
        before = digest(run)
        result = cli("plot", run, "--out", tmp_path / "f.png")
        assert result.exit_code == 2, result.output
        assert f"{name}: is a symbolic link" in result.output, result.output
        with pytest.raises(UsageError, match="is a symbolic link"):
            load_run(run)
        assert digest(run) == before
    result = cli("run", "--resume", run)
    if result.exit_code == 2:
        assert f"{name}: is a symbolic link" in result.output, result.output
    else:  # summary.json is only written by resume: the link is replaced, never written through
        assert name == "summary.json" and result.exit_code == 0, result.output
        assert not (run / name).is_symlink()
    assert outside.read_bytes() == kept
