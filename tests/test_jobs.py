"""Training jobs in worker processes: results, progress and failures come back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from initlab.config import config_from_dict, dump_yaml
from initlab.errors import UsageError
from initlab.experiment import train_member_dirs, training_cost
from initlab.jobs import Job, run_jobs
from initlab.runs import RunWriter

pytestmark = pytest.mark.usefixtures("mnist_env")

TINY = {"model": {"depth": 3, "width": 16}, "data": {"train_subset": 256, "test_subset": 100},
        "train": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "log": {"every": 2, "checkpoint_every": 4}}


def tiny_job(tmp: Path, name: str, members: int) -> Job:
    configs = [config_from_dict({**TINY, "name": name, "init": {"c": 1.5 + 0.5 * k}}, name)
               for k in range(members)]
    paths = [tmp / f"{name}-{k}" for k in range(members)]
    for cfg, path in zip(configs, paths, strict=True):
        RunWriter(path).write_config(dump_yaml(cfg))
    return Job(name, training_cost(configs), train_member_dirs, tuple(paths), (configs, None))


def failing(run_dirs: tuple[Path, ...], message: str, progress: Any = None) -> None:
    raise UsageError(message)


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_train_every_group_and_report_every_step(tmp_path: Path, workers: int) -> None:
    jobs = [tiny_job(tmp_path, "a", 2), tiny_job(tmp_path, "b", 1)]
    steps: dict[str, int] = {}

    def progress(label: str, total: int):
        steps[label] = 0

        def on_event(event: dict[str, Any]) -> None:
            steps[label] += event.get("n", 1) if event["kind"] in ("step", "steps") else 0

        return on_event

    run_jobs(jobs, workers, progress)
    assert steps == {"a ×2": 256 // 32, "b": 256 // 32}
    for path in sorted(tmp_path.iterdir()):
        summary = json.loads((path / "summary.json").read_text())
        assert summary["status"] == "completed", path
        if workers == 2:  # each worker trains on cores / workers threads
            assert summary["threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_a_failing_job_fails_the_whole_run_with_its_message(tmp_path: Path) -> None:
    jobs = [tiny_job(tmp_path, "a", 1), Job("bad", 0.0, failing, (), ("no such thing",))]
    with pytest.raises(UsageError, match="no such thing"):
        run_jobs(jobs, 2, lambda label, total: lambda event: None)


def test_a_finished_group_leaves_no_trainer_behind(tmp_path: Path) -> None:
    """A worker trains groups one after another: a finished group's trainer (its model, probe
    buffers, batch tensors) is freed before the next starts, not when Python next happens to
    collect its reference cycle (it grew one worker's RSS by hundreds of MB per group)."""
    import gc

    from initlab.train import GroupTrainer

    job = tiny_job(tmp_path, "a", 2)
    gc.collect()
    gc.disable()  # as when no automatic collection happens to run between two groups
    try:
        job.run(job.run_dirs, *job.args)
        alive = sum(type(o) is GroupTrainer for o in gc.get_objects())
    finally:
        gc.enable()
    assert alive == 0


class Killed(Exception):
    """A try that stops as kill -9 stops it: no checkpoint, no summary written on the way."""


def killed_after(steps: int) -> Any:
    def factory(label: str, total: int) -> Any:
        seen = iter(range(1, 10**6))

        def on_event(event: dict[str, Any]) -> None:
            if event["kind"] == "step" and next(seen) == steps:
                raise Killed

        return on_event

    return factory


def test_a_job_run_again_continues_from_its_checkpoint(tmp_path: Path) -> None:
    """What a task retried after its node died does: over the directories its first try
    left, the job continues from their last checkpoint, and the records are those of one
    uninterrupted try; a try killed before its first checkpoint starts again."""
    whole = tiny_job(tmp_path / "whole", "a", 2)
    whole.run(whole.run_dirs, *whole.args)
    for steps in (3, 6):  # before the first checkpoint (at step 4), and after it
        again = tiny_job(tmp_path / f"cut{steps}", "a", 2)
        with pytest.raises(Killed):
            again.run(again.run_dirs, *again.args, progress=killed_after(steps))
        assert (again.run_dirs[0] / "checkpoint.pt").exists() == (steps > 4)
        events: list[dict[str, Any]] = []
        again.run(again.run_dirs, *again.args, progress=lambda label, total, e=events: e.append)
        for done, cut in zip(whole.run_dirs, again.run_dirs, strict=True):
            assert (cut / "stats.jsonl").read_bytes() == (done / "stats.jsonl").read_bytes()
            assert json.loads((cut / "summary.json").read_text())["status"] == "completed"
        resumed = [e["step"] for e in events if e["kind"] == "resume"]
        assert resumed == ([4] if steps > 4 else []), resumed


def test_files_sent_back_are_written_as_they_were_and_nothing_else(tmp_path: Path) -> None:
    from initlab.runs import read_sent_files, write_run_files

    job = tiny_job(tmp_path / "there", "a", 1)
    job.run(job.run_dirs, *job.args)
    sent = read_sent_files(job.run_dirs[0])
    assert set(sent) == {"config.yaml", "stats.jsonl", "summary.json", "checkpoint.pt"}
    here = tmp_path / "here"
    RunWriter(here).write_config(sent["config.yaml"].decode())
    write_run_files(here, sent)
    assert read_sent_files(here) == sent
    for bad in ({"../x": b""}, {"sweep.json": b"{}"}, {"config.yaml": b"name: other\n"},
                {"stats.jsonl": "text, not bytes"}):
        with pytest.raises(UsageError):
            write_run_files(here, bad)  # type: ignore[arg-type]
    assert read_sent_files(here) == sent


def test_without_ray_the_ray_executor_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from typer.testing import CliRunner

    from initlab.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError
    for args in (["run", "kaiming", "--out", str(tmp_path)], ["figures", "--quick"]):
        result = CliRunner().invoke(app, [*args, "--executor", "ray"])
        assert result.exit_code == 2
        assert "pip install 'initlab[ray]'" in result.output
    wrong = CliRunner().invoke(app, ["run", "kaiming", "--executor", "dask"])
    assert wrong.exit_code == 2 and "--executor must be local or ray" in wrong.output
    alone = CliRunner().invoke(app, ["run", "kaiming", "--ray-address", "auto"])
    assert alone.exit_code == 2 and "--ray-address needs --executor ray" in alone.output
    assert not any(tmp_path.iterdir())


def test_jobs_is_the_local_pools_and_refused_with_the_ray_executor() -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from typer.testing import CliRunner

    from initlab.cli import app

    pool = CliRunner().invoke(app, ["figures", "--quick", "--executor", "ray", "--jobs", "2"])
    assert pool.exit_code == 2 and "--jobs sets the local pool's processes" in pool.output
