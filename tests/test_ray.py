"""initlab's jobs on a real Ray cluster: a head started with ``ray start --head`` on 127.0.0.1
and two nodes that join it, all on this machine inside a network namespace of their own
(tests/ray_cluster.py, one cluster for the module). A sweep and a quick figure trained there
give the local pool's records bit for bit, whether the nodes write the run folders in place or
send them back; a node killed mid-job has its job retried, from its checkpoint; Ctrl-C leaves
a run that ``initlab run --resume`` finishes with the same records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from initlab.cli import app
from initlab.figures import FIGURES, Mode, ensure_runs, run_sets
from initlab.jobs import LocalPool, torch_threads
from initlab.runs import CHECKPOINT_FILE, STATS_FILE, SUMMARY_FILE

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'initlab[ray]' "
                    "(make test installs it)")
pytestmark = pytest.mark.usefixtures("mnist_env")

DRIVER = Path(__file__).with_name("ray_cluster.py")
SWEEP = """name: tiny
model: {depth: 4, width: 16}
data: {train_subset: 512, test_subset: 200}
train: {epochs: 2, batch_size: 32, device: cpu}
log: {every: 4, checkpoint_every: 8}
sweep:
  model.width: [16, 24]
  init.c: [1.5, 2.0]
"""
# Two groups, one a node: long enough that a node can be killed between its group's first
# checkpoint and its last step.
LONG = """name: long
model: {depth: 8, width: 64}
data: {train_subset: 4096, test_subset: 200}
train: {epochs: 3, batch_size: 16, device: cpu}
log: {every: 16, checkpoint_every: 32}
sweep:
  model.width: [64, 48]
"""


class Cluster:
    """The driver process in its namespace: one request, one answer."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the cluster's driver stopped"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer


def namespace_command() -> list[str]:
    """``unshare -n`` as root; an unprivileged user maps itself to root in a user namespace
    first (``-r``)."""
    if shutil.which("unshare") is None:
        pytest.fail("the Ray tests need unshare (util-linux) for a network namespace")
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    log = tmp_path_factory.mktemp("ray-driver") / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen([*namespace_command(), sys.executable, str(DRIVER)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=stderr, text=True)
    assert process.stdout is not None
    ready = process.stdout.readline()
    if not ready:
        process.wait()
        pytest.fail(f"the Ray cluster did not start: {log.read_text()[-2000:]}")
    yield Cluster(process)
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=120)


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    (folder / "tiny.yaml").write_text(SWEEP)
    (folder / "long.yaml").write_text(LONG)
    return folder


def local_run(config: Path, out: Path, *args: str) -> Path:
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return out / config.stem


@pytest.fixture(scope="module")
def local_sweep(configs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return local_run(configs / "tiny.yaml", tmp_path_factory.mktemp("local"))


@pytest.fixture(scope="module")
def local_long(configs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return local_run(configs / "long.yaml", tmp_path_factory.mktemp("local"))


def records(top: Path) -> dict[str, bytes]:
    """Each member's stats.jsonl, by its path under ``top``."""
    return {str(p.parent.relative_to(top)): p.read_bytes() for p in sorted(top.rglob(STATS_FILE))}


def summaries(top: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(top)): json.loads(p.read_text())
            for p in sorted(top.rglob(SUMMARY_FILE))}


def test_a_sweep_on_two_nodes_gives_the_local_records(cluster: Cluster, configs: Path,
                                                       local_sweep: Path,
                                                       tmp_path: Path) -> None:
    answer = cluster.ask(do="cli", args=["run", str(configs / "tiny.yaml"), "--out",
                                         str(tmp_path), "--executor", "ray"])
    assert answer["code"] == 0, answer["output"]
    # The progress lines of a local run (no terminal), one per group and event.
    assert answer["output"].count("tiny ×2: step 32/32 (100%), done") == 2, answer["output"]
    top = tmp_path / "tiny"
    assert len(records(top)) == 4  # two groups of two, one task each
    assert records(top) == records(local_sweep)
    assert all(s["status"] == "completed" and s["threads"] == 1
               for s in summaries(top).values())
    assert (top / "sweep.json").read_bytes() == (local_sweep / "sweep.json").read_bytes()
    assert not list(tmp_path.glob(".initlab-ray-*"))  # the shared-file-system token: gone


def test_results_sent_back_are_written_here_with_the_same_records(
        cluster: Cluster, configs: Path, local_sweep: Path, tmp_path: Path) -> None:
    """Nodes that share no file system with the caller send each member's files back as
    bytes; the caller writes them through the run format's writer."""
    scratch = set(Path(tempfile.gettempdir()).glob("initlab-ray-*"))
    answer = cluster.ask(do="sent", config=str(configs / "tiny.yaml"), out=str(tmp_path))
    top = tmp_path / "tiny"
    assert sorted(answer["paths"]) == sorted(str(p.parent) for p in top.rglob(STATS_FILE))
    assert records(top) == records(local_sweep)
    assert all((p.parent / CHECKPOINT_FILE).is_file() for p in top.rglob(STATS_FILE))
    local = summaries(local_sweep)
    for name, summary in summaries(top).items():
        assert summary["status"] == "completed"
        assert summary["steps"] == local[name]["steps"]
    assert set(Path(tempfile.gettempdir()).glob("initlab-ray-*")) == scratch  # none left


def test_a_job_no_node_can_hold_is_refused_before_anything_is_written(
        cluster: Cluster, configs: Path, tmp_path: Path) -> None:
    answer = cluster.ask(do="sent", config=str(configs / "tiny.yaml"), out=str(tmp_path),
                         threads=3)
    assert answer["usage"] == ("tiny ×2: asks for 3 CPUs, and the largest node of the Ray "
                               "cluster has 1; ask for fewer threads")
    assert not any(tmp_path.iterdir())


def test_a_quick_figure_on_the_cluster_gives_the_local_pools_runs(
        cluster: Cluster, tmp_path: Path) -> None:
    """Its runs sent back (the sweep above wrote in place): the figures' cache is the same
    folders either way."""
    cluster.ask(do="figures", only=["init-norms"], out=str(tmp_path / "ray"),
                cache=str(tmp_path / "ray-cache"), results="sent")
    with torch_threads(1):  # as each Ray task trains
        ensure_runs(run_sets([FIGURES["init-norms"]], Mode(quick=True)),
                    tmp_path / "local-cache", None, log=lambda line: None,
                    executor=LocalPool(1))
    ray_runs, pool_runs = records(tmp_path / "ray-cache"), records(tmp_path / "local-cache")
    assert len(ray_runs) > 10 and ray_runs == pool_runs
    assert sorted(p.name for p in (tmp_path / "ray-cache").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local-cache").iterdir())
    report = (tmp_path / "ray" / "REPORT.md").read_text()
    assert "each group a task on a Ray cluster" in report


def test_ctrl_c_stops_the_tasks_and_the_run_resumes_here(cluster: Cluster, configs: Path,
                                                         local_long: Path,
                                                         tmp_path: Path) -> None:
    """Ctrl-C once a group has its first checkpoint, while both groups train (one a node)."""
    top = tmp_path / "long"
    answer = cluster.ask(do="interrupt", config=str(configs / "long.yaml"), out=str(tmp_path),
                         when=str(top / "width=48" / CHECKPOINT_FILE))
    assert answer["interrupted"] == str(top) and answer["code"] == 130
    statuses = [s["status"] for s in summaries(top).values()]
    assert "interrupted" in statuses and set(statuses) <= {"interrupted", "completed"}
    result = CliRunner().invoke(app, ["run", "--resume", str(top)])
    assert result.exit_code == 0, result.output
    assert records(top) == records(local_long)


def test_a_node_killed_mid_job_and_the_job_finishes_from_its_checkpoint(
        cluster: Cluster, configs: Path, local_long: Path, tmp_path: Path) -> None:
    """The head trains one group, the second node the other; once both have a checkpoint the
    second node dies (kill -9 of its raylet and workers), and its group is retried on the
    head, from that checkpoint. (The module's last test: the cluster has one node after it.)"""
    answer = cluster.ask(do="kill", config=str(configs / "long.yaml"), out=str(tmp_path),
                         when=CHECKPOINT_FILE, count=2)
    assert answer.get("killed"), "the second node ran no task once both had checkpoints"
    top = tmp_path / "long"
    assert {s["status"] for s in summaries(top).values()} == {"completed"}
    assert records(top) == records(local_long)
    resumed = [item[1]["step"] for item in answer["events"]
               if len(item) == 2 and item[1]["kind"] == "resume"]
    assert resumed and resumed[-1] > 0, answer["events"]  # from its checkpoint, not step 0
