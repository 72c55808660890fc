"""Training jobs in worker processes: results, progress and failures come back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from initlab.config import config_from_dict, dump_yaml
from initlab.errors import UsageError
from initlab.experiment import train_written_members, training_cost
from initlab.jobs import Job, run_jobs
from initlab.runs import RunWriter

pytestmark = pytest.mark.usefixtures("mnist_env")

TINY = {"model": {"depth": 3, "width": 16}, "data": {"train_subset": 256, "test_subset": 100},
        "train": {"epochs": 1, "batch_size": 32, "device": "cpu"}, "log": {"every": 2}}


def tiny_job(tmp: Path, name: str, members: int) -> Job:
    configs = [config_from_dict({**TINY, "name": name, "init": {"c": 1.5 + 0.5 * k}}, name)
               for k in range(members)]
    paths = [tmp / f"{name}-{k}" for k in range(members)]
    for cfg, path in zip(configs, paths, strict=True):
        RunWriter(path).write_config(dump_yaml(cfg))
    return Job(name, training_cost(configs), train_written_members, (configs, paths, None))


def failing(message: str, progress: Any = None) -> None:
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
    jobs = [tiny_job(tmp_path, "a", 1), Job("bad", 0.0, failing, ("no such thing",))]
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
        job.run(*job.args)
        alive = sum(type(o) is GroupTrainer for o in gc.get_objects())
    finally:
        gc.enable()
    assert alive == 0
