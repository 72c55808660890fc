"""Resume trusts nothing and never destroys (issue 12, D1-D5): every case that cannot be
continued as it is is refused with one line and exit code 2, and no file changes; completed
and diverged members are never written again."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import sigint_after
from typer.testing import CliRunner, Result

from initlab.cli import app
from initlab.config import load_experiment
from initlab.errors import RunInterrupted
from initlab.experiment import run_experiment

pytestmark = pytest.mark.usefixtures("mnist_env")

BASE = {
    "model": {"depth": 4, "width": 16},
    "data": {"train_subset": 600, "test_subset": 200},
    "train": {"batch_size": 50, "epochs": 3, "device": "cpu"},
    "log": {"every": 4, "checkpoint_every": 5, "probe_size": 64},
}
# Two members; one stops early (target reached at the first epoch end), one trains on.
SWEEP = {**BASE, "name": "sweep", "train": {**BASE["train"], "lr": 0.05},
         "sweep": {"train.target_test_error": [0.89, 0.05]}}
SINGLE = {**BASE, "name": "single"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def make_run(tmp_path: Path, config: dict, stop_at: int | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    exp = load_experiment(path)
    if stop_at is None:
        return run_experiment(exp, tmp_path / "runs")[0].path.parent \
            if exp.is_sweep else run_experiment(exp, tmp_path / "runs")[0].path
    with pytest.raises(RunInterrupted) as stop:
        run_experiment(exp, tmp_path / "runs", progress=sigint_after(stop_at))
    return stop.value.path


def snapshot(top: Path) -> dict[str, str]:
    """Every file under ``top`` and a digest of its bytes."""
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*")) if p.is_file()}


def refused(top: Path, *needles: str) -> None:
    before = snapshot(top)
    result = cli("run", "--resume", top)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert snapshot(top) == before  # nothing changed, nothing lost


def test_a_completed_run_without_checkpoints_is_left_as_it_is(tmp_path: Path) -> None:
    """D1: resume deleted a finished run's records and trained it again."""
    run = make_run(tmp_path, SINGLE)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).unlink(missing_ok=True)
    before = snapshot(run)
    result = cli("run", "--resume", run)
    assert result.exit_code == 0, result.output
    assert snapshot(run) == before


def test_a_completed_sweep_with_a_member_lost_checkpoints_is_left_as_it_is(
        tmp_path: Path) -> None:
    top = make_run(tmp_path, SWEEP)
    for path in top.glob("*/checkpoint*.pt"):
        if "0.89" in str(path):
            path.unlink()
    before = snapshot(top)
    assert cli("run", "--resume", top).exit_code == 0
    assert snapshot(top) == before


def test_an_interrupted_run_without_its_checkpoints_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path, SINGLE, stop_at=17)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).unlink(missing_ok=True)
    refused(run, "no checkpoint to continue from", "records are kept")


def test_a_member_without_checkpoints_is_not_restarted_beside_its_group(tmp_path: Path) -> None:
    """D1: the whole group was wiped and retrained when one member lost its checkpoints."""
    top = make_run(tmp_path, SWEEP, stop_at=7)  # both members still training
    for path in top.glob("*0.05/checkpoint*.pt"):
        path.unlink()
    refused(top, "no checkpoint, while the members it trains with have theirs")


def test_a_finished_member_is_never_written_while_its_group_resumes(tmp_path: Path) -> None:
    top = make_run(tmp_path, SWEEP, stop_at=17)  # the 0.89 member completed at step 12
    done = next(top.glob("*0.89"))
    assert json.loads((done / "summary.json").read_text())["status"] == "completed"
    before = snapshot(done)
    result = cli("run", "--resume", top)
    assert result.exit_code == 0, result.output
    assert snapshot(done) == before
    other = next(top.glob("*0.05"))
    assert json.loads((other / "summary.json").read_text())["status"] == "completed"


def test_an_unreadable_checkpoint_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path, SINGLE, stop_at=17)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes(b"\x00garbage")
    refused(run, "checkpoint.pt: not a readable checkpoint")


@pytest.mark.parametrize("damage", ["truncated", "flipped bit"])
def test_a_damaged_checkpoint_resumes_from_the_previous_one(tmp_path: Path,
                                                            damage: str) -> None:
    """Issue 32: a truncated checkpoint.pt was refused although checkpoint.prev.pt was whole;
    a flipped bit in a weight was trained on (checkpoints carry a SHA-256 now)."""
    run = make_run(tmp_path, SINGLE, stop_at=17)
    data = bytearray((run / "checkpoint.pt").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0x10  # inside the weights, past torch's own headers
    (run / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"checkpoint\.pt: .*checkpoint\.prev\.pt \(step 15\) "
                      r"is whole: the run continues from it"):
        result = cli("run", "--resume", run)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("model.width", 8, "model.width 16 → 8"), ("model.depth", 3, "model.depth 4 → 3"),
    ("train.lr", 0.5, "train.lr 0.01 → 0.5"), ("train.optimizer", "adam", "train.optimizer")])
def test_an_edited_config_is_refused_naming_what_changed(tmp_path: Path, key: str,
                                                         value: object, shown: str) -> None:
    """D4: width 100 -> 50 completed with scrambled weights; lr changes applied silently."""
    run = make_run(tmp_path, SINGLE, stop_at=17)
    config = yaml.safe_load((run / "config.yaml").read_text())
    section, name = key.split(".")
    config[section][name] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    refused(run, "does not match", "config.yaml was edited", shown)


def test_a_foreign_checkpoint_is_not_blamed_on_the_config(tmp_path: Path) -> None:
    """Issue 32: another run's checkpoint copied in was reported as an edited config.yaml."""
    run = make_run(tmp_path, SINGLE, stop_at=17)
    other = make_run(tmp_path / "other", {**SINGLE, "name": "other"}, stop_at=17)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).write_bytes((other / name).read_bytes())
    refused(run, "is the checkpoint of another run", "'other'")


def test_records_shorter_than_the_checkpoint_are_refused(tmp_path: Path) -> None:
    """D5: a deleted or truncated stats.jsonl was continued with records missing."""
    run = make_run(tmp_path, SINGLE, stop_at=17)
    stats = run / "stats.jsonl"
    text = stats.read_text()
    stats.write_text(text[: len(text) // 2])
    refused(run, "records were lost")
    stats.unlink()
    refused(run, "missing")


def test_damaged_records_are_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path, SINGLE, stop_at=17)
    stats = run / "stats.jsonl"
    lines = stats.read_text().splitlines(keepends=True)
    lines[1] = "x" * (len(lines[1]) - 1) + "\n"  # same length, not JSON
    stats.write_text("".join(lines))
    refused(run, "line 2 is not a JSON record")


def test_a_folder_of_runs_is_named_as_such(tmp_path: Path) -> None:
    """M2: it was called a sweep stopped while being set up."""
    make_run(tmp_path, SINGLE)
    make_run(tmp_path, {**SINGLE, "name": "other"})
    result = cli("run", "--resume", tmp_path / "runs")
    assert result.exit_code == 2
    assert "a folder of runs, not a run; resume one of them: other, single" in result.output


def test_an_interrupted_run_still_resumes_to_the_same_records(tmp_path: Path) -> None:
    whole = make_run(tmp_path / "a", SINGLE)
    part = make_run(tmp_path / "b", SINGLE, stop_at=17)
    assert cli("run", "--resume", part).exit_code == 0
    assert (part / "stats.jsonl").read_bytes() == (whole / "stats.jsonl").read_bytes()


def test_a_sweep_copied_elsewhere_resumes_there(tmp_path: Path) -> None:
    top = make_run(tmp_path, SWEEP, stop_at=17)
    moved = shutil.copytree(top, tmp_path / "elsewhere" / "sweep")
    assert cli("run", "--resume", moved).exit_code == 0
    assert all(json.loads((p / "summary.json").read_text())["status"] == "completed"
               for p in moved.iterdir() if p.is_dir())


# --------------------------------------------------------------------------- issue 20


@pytest.mark.parametrize("summary", ["missing", "damaged"])
def test_a_completed_run_without_checkpoints_or_summary_is_refused_and_kept(
        tmp_path: Path, summary: str) -> None:
    """--resume deleted stats.jsonl with its final record and trained again from step 0."""
    run = make_run(tmp_path, SINGLE)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run / name).unlink(missing_ok=True)
    if summary == "missing":
        (run / "summary.json").unlink()
        refused(run, "its records reach step", "no checkpoint", "records are kept")
    else:
        (run / "summary.json").write_text('{"status": "comp')
        refused(run, "summary.json: not valid JSON")


def test_a_flipped_byte_in_a_checkpoint_key_is_refused_not_a_key_error(tmp_path: Path) -> None:
    """hypothesis once drew this in make test: KeyError: 'buffers' with a traceback. Its
    checksum finds it now; a checkpoint written before checkpoints had one (no checksum line)
    still has its structure checked. No whole checkpoint.prev.pt to fall back on here."""
    from initlab.checkpoint import CHECKSUM_LENGTH

    run = make_run(tmp_path, SINGLE, stop_at=17)
    (run / "checkpoint.prev.pt").unlink(missing_ok=True)
    raw = (run / "checkpoint.pt").read_bytes()
    at = raw.index(b"buffers")
    flipped = raw[:at] + b"b" + bytes([raw[at + 1] ^ 0x20]) + raw[at + 2:]
    (run / "checkpoint.pt").write_bytes(flipped)
    refused(run, "checkpoint.pt: damaged checkpoint: its bytes do not match their SHA-256")
    (run / "checkpoint.pt").write_bytes(flipped[:-CHECKSUM_LENGTH])
    refused(run, "checkpoint.pt: damaged checkpoint: model.buffers is missing",
            "nothing was changed")


@pytest.mark.parametrize("damage", ["a buffer's name", "an optimizer key", "a shape"])
def test_a_checkpoint_that_does_not_fit_its_network_is_refused(tmp_path: Path,
                                                               damage: str) -> None:
    from initlab import checkpoint

    run = make_run(tmp_path, {**SINGLE, "model": {**BASE["model"], "norm": "batch"},
                              "train": {**BASE["train"], "momentum": 0.9}}, stop_at=17)
    state = checkpoint.read_checkpoint(run / "checkpoint.pt")
    if damage == "a buffer's name":
        buffers = state["model"]["buffers"]
        buffers["norm.running_meen"] = buffers.pop("norm.running_mean")
    elif damage == "an optimizer key":
        state["optimizer"]["momentun"] = state["optimizer"].pop("momentum")
    else:
        state["params_init"] = state["params_init"][:-1]
    torch.save(state, run / "checkpoint.pt")
    (run / "checkpoint.prev.pt").unlink(missing_ok=True)  # nothing whole to fall back on
    refused(run, "checkpoint.pt: ")
