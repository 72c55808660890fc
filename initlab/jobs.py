"""Independent training jobs, and the local pool that runs them in worker processes
(``initlab figures --jobs N``).

A ``Job`` trains one stacked group into its member directories; an ``Executor`` runs a list of
them and relays their progress: ``LocalPool`` here, ``initlab.ray_jobs.RayExecutor`` on a Ray
cluster (``--executor ray``). Both give the same records for the same thread count.

A 50 x 100 network's step is small matrices: on 2 CPU cores, two processes with one thread
each train about 1.3x more than one process with two threads (measured: 15.3 ms per step of a
3-member group each, against 10.5 ms for one at a time). Jobs are whole groups or sweeps that
share nothing but the data files; the longest start first. Workers send their progress events
back (steps in batches, a few per second) to the caller's progress display.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import ctypes
import functools
import itertools
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from initlab.errors import RunInterrupted, UsageError
from initlab.progress import ProgressFactory

STEP_BATCH_SECONDS = 0.25  # how often a worker reports its step count


@dataclass(frozen=True)
class Job:
    """``run(run_dirs, *args, progress=factory)`` in a worker: a module-level function
    (picklable) that writes the member directories ``run_dirs`` (each holds its config.yaml
    before the job starts) and nothing else, so an executor may hand it other directories and
    carry the files back (``initlab.ray_jobs``). Run again over directories an earlier attempt
    wrote, it continues from their last checkpoint (``experiment.train_member_dirs``)."""

    label: str
    cost: float  # relative, for longest-first scheduling
    run: Callable[..., None]
    run_dirs: tuple[Path, ...]
    args: tuple = ()
    threads: int | None = None  # CPU threads it trains on; None: the executor's share
    device: str = "cpu"  # its train.device: cuda (or auto) asks a cluster for a GPU


class Executor(Protocol):
    """Runs jobs and shows their progress through ``progress`` as they train; raises the
    first job's failure (``UsageError``, ``RunInterrupted``: every run folder resumable)."""

    def run(self, jobs: Sequence[Job], progress: ProgressFactory) -> None: ...

    def check(self, jobs: Sequence[Job]) -> None:
        """A UsageError for a job it could never run, before anything is written."""
        ...

    def describe(self) -> str:
        """How this invocation's runs trained, for the figures' report."""
        ...


@dataclass(frozen=True)
class LocalPool:
    """This machine's worker processes, ``workers`` at a time (``run_jobs``)."""

    workers: int = 1

    def run(self, jobs: Sequence[Job], progress: ProgressFactory) -> None:
        run_jobs(jobs, self.workers, progress)

    def check(self, jobs: Sequence[Job]) -> None:
        """Nothing: what this machine can hold, ``experiment.prepare_data`` checks."""

    def describe(self) -> str:
        if self.workers <= 1:
            return ""
        return (f"Runs trained by this invocation: up to {self.workers} groups at once, each "
                "in its own process (`--jobs`); the runs table says each run's threads.")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` for a while (None or 0: left as they are), and
    as they were afterwards."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_jobs() -> int:
    """One job per CPU core, or one with a GPU (whose step is a graph, not CPU work)."""
    import torch

    return 1 if torch.cuda.is_available() else cpu_cores()


def cpu_cores() -> int:
    return os.cpu_count() or 1


def run_jobs(jobs: Sequence[Job], workers: int, progress: ProgressFactory) -> None:
    """Run every job, ``workers`` at a time, each worker on cores / workers threads. One
    worker (or one job) runs here, in this process, with its threads as they are."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            with torch_threads(job.threads):
                job.run(job.run_dirs, *job.args, progress=progress)
            release_freed_memory()
        return
    workers = min(workers, len(jobs))
    threads = max(1, cpu_cores() // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with context.Manager() as manager:
        events, cancel = manager.Queue(), manager.Event()
        pool = futures.ProcessPoolExecutor(workers, mp_context=context,
                                           initializer=_start_worker, initargs=(threads,))
        try:
            pending = {pool.submit(_run_job, job, index, events, cancel)
                       for index, job in sorted(enumerate(jobs), key=lambda j: -j[1].cost)}
            relay = Relay(progress)
            while pending:
                done, pending = futures.wait(pending, timeout=0.1)
                relay.drain(events)
                for future in done:
                    raise_failure(future.result())
            relay.drain(events)
        except BaseException:
            # Jobs already handed to a worker cannot be cancelled: they see the flag, and a
            # running one stops at its next step as if interrupted (checkpoint, stop).
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # Ctrl-C reaches every process of the terminal's group: a training job handles it
    # (checkpoint, stop); between jobs a worker ignores it and the caller stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_job(job: Job, index: int, events: Any, cancel: Any) -> tuple[str, str, int] | None:
    """In a worker: the ``index``-th job, its progress events and failure sent back."""
    if cancel.is_set():  # the run was stopped before this job started
        return None
    return run_here(job, job.run_dirs, forwarding_factory(events.put, cancel.is_set,
                                                          f"{index}-"))


def run_here(job: Job, run_dirs: Sequence[Path],
             progress: ProgressFactory) -> tuple[str, str, int] | None:
    """Run ``job`` in this process over ``run_dirs``, on its threads. A failure comes back as
    (kind, message, exit code) for ``raise_failure``: exceptions with their own constructors
    do not always survive pickling."""
    try:
        with torch_threads(job.threads):
            job.run(tuple(run_dirs), *job.args, progress=progress)
    except RunInterrupted as err:
        return ("interrupted", str(err.path), err.exit_code)
    except UsageError as err:
        return ("usage", str(err), 2)
    except Exception as err:  # anything else: say which job, keep the type
        return ("error", f"{job.label}: {type(err).__name__}: {err}", 1)
    finally:
        release_freed_memory()
    return None


def release_freed_memory() -> None:
    """Give the memory a finished job freed back to the system (glibc's malloc_trim; nothing
    where there is none). glibc keeps freed heap pages for reuse, and a worker training groups
    of different shapes one after another fragments its heap: in quick mode, one worker's RSS
    after each group grew from 1.08 to 1.46 GB over four groups without it, and stayed at 0.76
    GB with it (docs/benchmarks.md)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, musl, Windows)
        return None


def raise_failure(failure: tuple[str, str, int] | None) -> None:
    if failure is None:
        return
    kind, message, code = failure
    if kind == "interrupted":
        raise RunInterrupted(code - 128, Path(message))
    if kind == "usage":
        raise UsageError(message)
    raise RuntimeError(message)


def forwarding_factory(put: Callable[[tuple], Any], cancelled: Callable[[], bool],
                       prefix: str) -> ProgressFactory:
    """A progress factory whose bars live in the caller: each event goes to ``put`` as
    (token, "open" | "event", payload) for a ``Relay``, steps in batches (a few per second).
    Between batches it asks ``cancelled``; once the caller cancels, the job interrupts itself
    (its training loop checkpoints and stops, as on Ctrl-C). ``prefix`` makes the tokens of
    one job's bars: a job run again under the same prefix continues its bars."""
    counter = itertools.count()

    def factory(label: str, total: int) -> Callable[[dict[str, Any]], None]:
        token = prefix + str(next(counter))
        put((token, "open", (label, total)))
        steps, sent = 0, time.monotonic()

        def on_event(event: dict[str, Any]) -> None:
            nonlocal steps, sent
            if event["kind"] == "step":
                steps += 1
                if time.monotonic() - sent < STEP_BATCH_SECONDS:
                    return
            if steps:
                put((token, "event", {"kind": "steps", "n": steps}))
                steps, sent = 0, time.monotonic()
                if cancelled():
                    signal.raise_signal(signal.SIGINT)
            if event["kind"] != "step":
                put((token, "event", event))

        return on_event

    return factory


class Relay:
    """In the caller: opens a bar per worker bar and passes its events on. A bar opened again
    (a job retried after its worker died) starts over at step 0; the job's own ``resume``
    event then moves it to its checkpoint."""

    def __init__(self, progress: ProgressFactory):
        self.progress = progress
        self.bars: dict[str, Callable[[dict[str, Any]], None]] = {}

    def drain(self, events: Any) -> None:
        while True:
            try:
                item = events.get_nowait()
            except queue.Empty:
                return
            self.pass_on(item)

    def pass_on(self, item: tuple) -> None:
        token, what, payload = item
        if what != "open":
            self.bars[token](payload)
        elif token in self.bars:
            self.bars[token]({"kind": "resume", "step": 0})
        else:
            self.bars[token] = self.progress(*payload)
