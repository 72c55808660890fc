"""Jobs as tasks on a Ray cluster: ``initlab run CONFIG --executor ray`` (a sweep's groups)
and ``initlab figures --executor ray`` (docs/distributed.md).

Each job (one stacked group, ``initlab.jobs.Job``) is one Ray task that asks for its CPUs (its
threads, one unless a figure says otherwise) and a GPU where its config trains on CUDA (or on
``auto`` in a cluster that has GPUs). The address is ``--ray-address`` or Ray's own
``RAY_ADDRESS`` (``auto``: the cluster ``ray start`` runs on this machine); with neither, Ray
joins the cluster ``ray start`` last started here, or starts one of this machine alone for the
call. A job no node could ever hold (more CPUs than the largest has, a GPU in a cluster
without one) is refused before anything is submitted.

Where results land. The caller writes a token into a file beside the run folders before it
submits; a task that reads the same token at the same path shares the caller's file system and
writes the run folders in place. A task on a node that shares none trains into a scratch
folder of its node and sends each member's files back as bytes, read there by the run format's
bounded reader (``runs.read_sent_files``); the caller writes them through the run format's
writer (``runs.write_run_files``) and reads them back (``runs.load_run``) before it trusts
them. Plain bytes and names only: nothing read from a run folder is unpickled, and reading one
never runs code. The figures' cache is the same directories either way.

Faults. Ray runs a task again (``RETRIES`` times) when its worker or node dies; the job then
continues from its last checkpoint where it can see one (``experiment.train_member_dirs``: on
the shared file system, or in its scratch folder when it lands on the same node) and starts
afresh otherwise. Ctrl-C (or a job's failure) sets a flag the tasks read with their progress:
a running one checkpoints and stops as on Ctrl-C, a queued one returns at once, and every run
folder is left resumable (``initlab run --resume``). Progress events reach the caller through
a small actor on the caller's node, and show as the local pool's do (``jobs.Relay``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from initlab.errors import RunInterrupted, UsageError, bounded
from initlab.jobs import Job, Relay, forwarding_factory, raise_failure, run_here
from initlab.progress import ProgressFactory
from initlab.runs import (
    CONFIG_FILE,
    RunWriter,
    atomic_write_text,
    config_text,
    load_run,
    read_sent_files,
    run_lock,
    write_run_files,
)

RETRIES = 3  # runs of a task after its worker or node died (Ray's max_retries)
RESULTS = ("auto", "shared", "sent")  # where results land: see the module's docstring
POLL_SECONDS = 0.1  # how often the caller passes progress on and looks for finished tasks
INSTALL = "pip install 'initlab[ray]'"

Files = list[dict[str, bytes]]  # per member of a job: its run files by name


def require_ray() -> Any:
    """The ``ray`` module, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, an optional extra: {INSTALL}") from None
    return ray


@dataclasses.dataclass
class RayExecutor:
    """Runs jobs as Ray tasks (``initlab.jobs.Executor``). ``address``: a cluster's address,
    ``auto``, or None (``RAY_ADDRESS``, else a cluster of this machine started for the call);
    ``threads``: CPU threads of a job that names none; ``results``: ``auto`` (in place where
    the nodes share this file system, else sent back), or ``shared``/``sent`` to insist."""

    address: str | None = None
    threads: int = 1
    results: str = "auto"
    retries: int = RETRIES
    connected_here: bool = dataclasses.field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.results not in RESULTS:
            raise ValueError(f"results must be one of {RESULTS}, got {self.results!r}")

    def __enter__(self) -> RayExecutor:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def connect(self) -> None:
        """Join the cluster (or start one here); a UsageError, before anything is written,
        when Ray is missing or the address answers nothing."""
        ray = require_ray()
        if ray.is_initialized():
            return
        where = self.address or os.environ.get("RAY_ADDRESS")
        if where:
            check_reachable(where)  # Ray itself would try for minutes
        try:
            ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False,
                     include_dashboard=False if not where else None)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"--ray-address {bounded(where or '(none)')}: cannot join the "
                             f"Ray cluster: {bounded(first, 200)}") from None
        self.connected_here = True

    def close(self) -> None:
        if self.connected_here:
            require_ray().shutdown()
            self.connected_here = False

    def check(self, jobs: Sequence[Job]) -> None:
        self.connect()
        check_resources(require_ray(), [self.with_threads(job) for job in jobs])

    def with_threads(self, job: Job) -> Job:
        return job if job.threads else dataclasses.replace(job, threads=self.threads)

    def describe(self) -> str:
        return ("Runs trained by this invocation: each group a task on a Ray cluster "
                "(`--executor ray`); the runs table says each run's threads.")

    def run(self, jobs: Sequence[Job], progress: ProgressFactory) -> None:
        if not jobs:
            return
        self.connect()
        ray = require_ray()
        jobs = [self.with_threads(job) for job in jobs]
        token = secrets.token_hex(8)
        marker = None if self.results == "sent" else marker_path(jobs, token)
        if marker is not None:
            atomic_write_text(marker, token)
        try:
            _Tasks(ray, jobs, token, marker, self.results, self.retries, progress).run()
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A UsageError when nothing answers at ``address`` (``host:port``; ``auto`` and other
    forms are Ray's to resolve)."""
    host, _, port = address.rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise UsageError(f"--ray-address {bounded(address)}: nothing answers there "
                         f"({err.strerror or type(err).__name__}); is the cluster's head "
                         f"started (ray start --head) and the address its host:port?") from None


def marker_path(jobs: Sequence[Job], token: str) -> Path:
    """The token file beside the jobs' run folders, by which a task tells whether it sees
    the caller's file system."""
    common = Path(os.path.commonpath([os.path.abspath(p) for job in jobs
                                      for p in job.run_dirs]))
    return common.parent / f".initlab-ray-{token}"


class _Tasks:
    """One call's tasks, from submission to the last result."""

    def __init__(self, ray: Any, jobs: Sequence[Job], token: str, marker: Path | None,
                 results: str, retries: int, progress: ProgressFactory):
        self.ray, self.jobs, self.progress, self.retries = ray, jobs, progress, retries
        gpus = check_resources(ray, jobs)
        here = ray.get_runtime_context().get_node_id()
        # On this node: a node that dies takes no one's progress or cancel flag with it.
        self.box = ray.remote(num_cpus=0)(EventBox).options(
            scheduling_strategy=node_affinity(here)).remote()
        task = remote_task(ray)
        self.refs: dict[Any, tuple[int, Job]] = {}
        for index, job in sorted(enumerate(jobs), key=lambda item: -item[1].cost):
            sent = None if results == "shared" else [config_text(p) for p in job.run_dirs]
            ref = task.options(num_cpus=job.threads, num_gpus=gpus[index],
                               max_retries=retries, retry_exceptions=False,
                               name=job.label).remote(job, index, self.box, token,
                                                      None if marker is None else str(marker),
                                                      sent)
            self.refs[ref] = (index, job)

    def run(self) -> None:
        relay = Relay(self.progress)
        failures: list[BaseException] = []
        pending = list(self.refs)
        with Interrupts() as interrupts:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=len(pending),
                                              timeout=POLL_SECONDS, fetch_local=False)
                self.pass_on(relay)
                for ref in done:
                    try:
                        self.finish(ref)
                    except (RunInterrupted, UsageError, RuntimeError) as err:
                        failures.append(err)
                if (failures or interrupts.signum) and not interrupts.cancelled:
                    # Every running task checkpoints and stops; a queued one returns at once.
                    interrupts.cancelled = True
                    self.ray.get(self.box.cancel.remote())
            self.pass_on(relay)
        if interrupts.signum and not any(isinstance(f, RunInterrupted) for f in failures):
            raise RunInterrupted(interrupts.signum, self.jobs[0].run_dirs[0])
        errors = [f for f in failures if not isinstance(f, RunInterrupted)]
        if errors:
            raise errors[0]
        if failures:
            raise failures[0]

    def pass_on(self, relay: Relay) -> None:
        for item in self.ray.get(self.box.take.remote()):
            relay.pass_on(item)

    def finish(self, ref: Any) -> None:
        """A task's result: its files written here when it sent them, then its failure."""
        index, job = self.refs[ref]
        try:
            failure, files = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            raise RuntimeError(f"{job.label}: its Ray task failed (a task whose node died "
                               f"is retried up to {self.retries} times): {type(err).__name__}: "
                               f"{str(err).splitlines()[0][:200]}") from None
        if files is not None:
            write_sent_files(job, files)
        if failure is not None and failure[0] == "interrupted":  # where the caller resumes
            failure = (failure[0], str(job.run_dirs[0]), failure[2])
        raise_failure(failure)


def check_resources(ray: Any, jobs: Sequence[Job]) -> list[int]:
    """The GPUs each job asks for (one for CUDA, and for ``auto`` in a cluster with GPUs);
    a UsageError when some node could never run a job (a task would wait forever)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    has_gpus = any(n.get("GPU", 0) >= 1 for n in nodes)
    gpus = [int(job.device == "cuda" or (job.device == "auto" and has_gpus)) for job in jobs]
    for job, gpu in zip(jobs, gpus, strict=True):
        if (job.threads or 1) > cpus:
            raise UsageError(f"{job.label}: asks for {job.threads} CPUs, and the largest node "
                             f"of the Ray cluster has {cpus:g}; ask for fewer threads")
        if gpu and not has_gpus:
            raise UsageError(f"{job.label}: train.device is cuda, and no node of the Ray "
                             f"cluster has a GPU; set train.device=cpu (or auto)")
    return gpus


def write_sent_files(job: Job, files: Files) -> None:
    """Each member's files from a node without this file system, written into its folder
    here and read back as any run folder is; a folder that does not read is one line."""
    for path, member_files in zip(job.run_dirs, files, strict=True):
        with run_lock(path):
            write_run_files(path, member_files)
        try:
            load_run(path)
        except UsageError as err:
            raise UsageError(f"{job.label}: the files its task sent back do not make a run "
                             f"folder: {err}") from None


class Interrupts:
    """SIGINT/SIGTERM in the caller: the first asks every task to stop (``signum``); a
    second one stops waiting for them."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.cancelled = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self.handle)
            except ValueError:  # not the main thread
                pass
        return self

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class EventBox:
    """An actor: the tasks' progress events on their way to the caller, and the caller's
    cancel flag."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.cancelled = False

    def put(self, item: tuple) -> None:
        self.items.append(item)

    def take(self) -> list[tuple]:
        items, self.items = self.items, []
        return items

    def cancel(self) -> None:
        self.cancelled = True

    def is_cancelled(self) -> bool:
        return self.cancelled


def node_affinity(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


@functools.cache
def remote_task(ray: Any) -> Any:
    return ray.remote(run_task)


def run_task(job: Job, index: int, box: Any, token: str, marker: str | None,
             sent: list[str | None] | None) -> tuple[tuple[str, str, int] | None, Files | None]:
    """On a node: the job, in place where this node sees the caller's files (``marker``
    holds ``token``), else in a scratch folder whose files go back to the caller. Returns
    (failure, files): files None when written in place."""
    import ray

    def cancelled() -> bool:
        try:
            return bool(ray.get(box.is_cancelled.remote(), timeout=30))
        except Exception:  # the caller's node is gone: nothing to report to
            return False

    def put(item: tuple) -> None:
        box.put.remote(item)  # in order: Ray runs one caller's actor calls as sent

    if cancelled():  # stopped before this task started
        return None, None
    progress = forwarding_factory(put, cancelled, f"{index}-")
    if sent is None or (marker is not None and sees(Path(marker), token)):
        with sigint_unblocked():
            return run_here(job, job.run_dirs, progress), None
    scratch = Path(tempfile.gettempdir()) / f"initlab-ray-{token}" / str(index)
    dirs = [scratch / str(k) for k in range(len(job.run_dirs))]
    for path, text in zip(dirs, sent, strict=True):
        if text is None:
            raise ValueError(f"{job.label}: a member's config.yaml could not be read")
        if not os.path.lexists(path / CONFIG_FILE):  # else: this job's earlier try, resumed
            writer = RunWriter(path)
            writer.write_config(text)
            writer.close()
    with sigint_unblocked():
        failure = run_here(job, dirs, progress)
    files = [read_sent_files(path) for path in dirs]
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):  # the call's folder, once its last task here is done
        scratch.parent.rmdir()
    return failure, files


@contextlib.contextmanager
def sigint_unblocked() -> Iterator[None]:
    """SIGINT delivered while a job trains: a Ray worker blocks it, and a cancelled job
    stops itself with one (``jobs.forwarding_factory``), which its training loop turns into a
    checkpoint and a stop."""
    before = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def sees(marker: Path, token: str) -> bool:
    """Whether this node reads ``token`` in ``marker``: the caller's file system."""
    for _ in range(3):  # a network file system may show a new file a moment late
        try:
            return marker.read_text() == token
        except OSError:
            time.sleep(0.5)
    return False
