"""Several processes: torchrun's environment, ``--nproc N`` local workers, and what a trainer asks
of its process group.

Two ways to use N processes (``initlab run CONFIG --nproc N``, or ``torchrun --nproc-per-node N
-m initlab run CONFIG``, which reach the same code below through the same environment variables):

- **split batches** (a single config; ``--split batches`` for a sweep): every rank trains every
  member on its contiguous slice of each global batch (``train.batch_size`` is the global batch:
  ``batch_size / N`` examples per rank), under ``DistributedDataParallel``. Batch norm normalises
  over a rank's own slice (as PyTorch's BatchNorm does under DDP); ``norm: syncbatch`` over the
  global batch. Rank 0 writes the run directory; statistics are reduced across ranks first.
- **split members** (a sweep; ``--split members``): members are dealt to ranks round-robin, each
  rank trains its share batched in one process and writes those members' directories under the
  one sweep directory that rank 0 created. No collectives while training.

Backends: gloo for CPU tensors, nccl for CUDA tensors (one process per GPU). A local launch hosts
the rendezvous store and binds gloo on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from initlab import resources
from initlab.choices import NORM_CHOICES
from initlab.config import group_key
from initlab.errors import UsageError
from initlab.runs import CHECKPOINT_FILE, RunWriter, mark_member_interrupted

if TYPE_CHECKING:
    from initlab.config import Experiment, RunConfig
    from initlab.model import StackedMLP

LOOPBACK = "127.0.0.1"
MAX_PROCESSES_PER_CORE = 4  # beyond, a launch only thrashes (64 on 2 cores: minutes of nothing)
RUN_DIR_FILE_ENV = "INITLAB_LAUNCH_RUN_DIR_FILE"  # where rank 0 writes the run's directory
SPLITS = ("auto", "batches", "members")
# Member-split ranks wait for the slowest rank at the end of a sweep: no collective runs while
# they train, so this wait may be as long as a whole run.
GATHER_TIMEOUT = datetime.timedelta(days=30)
KILL_GRACE_S = 20.0


def print_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- What a trainer asks of its process group ----------------------------------------------------


@dataclass
class Comm:
    """A rank's view of its process group. The default, ``LOCAL``, is one process: every method
    returns at once, so the single-process path is unchanged."""

    rank: int = 0
    world: int = 1
    group: Any = None  # torch ProcessGroup; None with one process
    _stop_flag: Tensor | None = field(default=None, repr=False)
    _stop_work: Any = field(default=None, repr=False)

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes run directories, checkpoints and what a person reads."""
        return self.rank == 0

    # -- setup ----------------------------------------------------------------------------------
    def plan(self, configs: Sequence[RunConfig], is_sweep: bool, split: str = "auto") -> Plan:
        """Which of these members this rank trains, with which comm, and whether it writes them.
        Raises UsageError (nothing written yet) when the batch cannot be split evenly."""
        everything = list(range(len(configs)))
        if self.world == 1:
            return Plan(everything, LOCAL, writes=True, parent=self)
        if resolve_split(split, is_sweep) == "members":
            mine = everything[self.rank :: self.world]
            # Made now, while every rank is here; its long timeout is for the final gather.
            gather = dist.new_group(backend="gloo", timeout=GATHER_TIMEOUT)
            return Plan(mine, LOCAL, writes=True, parent=self, gather_group=gather)
        check_batch_split(configs, self.world)
        return Plan(everything, self, writes=self.is_writer, parent=self)

    def on_writer(self, make_dir: Callable[[], Path]) -> Path:
        """Rank 0 makes a directory; every rank learns its path (or rank 0's UsageError)."""
        if self.world == 1:
            return make_dir()
        message: list[Any] = [None]
        if self.is_writer:
            try:
                message = [str(make_dir())]
            except BaseException as err:  # the others must not wait for a path forever
                text = str(err) if isinstance(err, UsageError) else f"rank 0: {err!r}"
                failed = UsageError(text)
                dist.broadcast_object_list([failed], src=0, group=self.group)
                raise
        dist.broadcast_object_list(message, src=0, group=self.group)
        if isinstance(message[0], UsageError):
            raise message[0]
        return Path(message[0])

    def wrap(self, model: StackedMLP) -> nn.Module:
        """The module a training step calls: the model itself, or the model under
        DistributedDataParallel (one gradient all-reduce per step, averaging over ranks), each
        rank drawing its own dropout masks (rank 0 the single-process ones)."""
        if self.world == 1:
            return model
        model.reseed_dropout(self.rank)
        return ddp(model, self.group)

    # -- during training ------------------------------------------------------------------------
    def shard(self, idx: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch of indices [K, B] -> [K, B / world]."""
        if self.world == 1:
            return idx
        b = idx.shape[1] // self.world
        return idx[:, self.rank * b : (self.rank + 1) * b]

    def agreed_stop(self, signum: int | None) -> int | None:
        """The signal to stop for, the same on every rank. A rank's flag travels in a
        non-blocking all-reduce answered at the next step, so ranks stop one step after the
        signal, together, and no step waits on it."""
        if self.world == 1:
            return signum
        agreed = None
        if self._stop_work is not None:
            self._stop_work.wait()
            agreed = int(self._stop_flag.item()) or None  # type: ignore[union-attr]
        self._stop_flag = torch.tensor([signum or 0], dtype=torch.long)
        self._stop_work = dist.all_reduce(self._stop_flag, op=dist.ReduceOp.MAX,
                                          group=self.group, async_op=True)
        return agreed

    def mean_(self, tensors: Sequence[Tensor]) -> None:
        """Average each tensor over ranks in place, in one collective: statistics of a rank's
        own batch (activation norms, loss, error rate; shards are equal, so the mean of the
        per-rank means is the global mean)."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat, group=self.group)
        flat /= self.world
        self._scatter(flat, tensors)

    def reduce_epoch_(self, loss_sum: Tensor, error_count: Tensor, *,
                      keep_on_writer: bool = False) -> None:
        """The epoch accumulators over all ranks: summed per-step mean losses -> their mean
        over ranks, error counts -> their sum. With ``keep_on_writer`` the other ranks then
        clear their counts, so rank 0 (whose checkpoint is the run's) holds the epoch so far
        and a later reduction still counts every error once."""
        if self.world == 1:
            return
        flat = torch.cat([loss_sum.float(), error_count.float()])
        dist.all_reduce(flat, group=self.group)
        flat[: loss_sum.numel()] /= self.world
        self._scatter(flat, [loss_sum, error_count])
        if keep_on_writer and not self.is_writer:
            error_count.zero_()

    def earliest(self, steps: Tensor) -> Tensor:
        """The earliest step over ranks (-1: none) of each member's first non-finite loss."""
        if self.world == 1:
            return steps
        never = torch.iinfo(torch.long).max
        steps = torch.where(steps < 0, torch.full_like(steps, never), steps)
        dist.all_reduce(steps, op=dist.ReduceOp.MIN, group=self.group)
        return torch.where(steps == never, torch.full_like(steps, -1), steps)

    @torch.no_grad()
    def sync_running_stats(self, model: StackedMLP) -> None:
        """A norm's running statistics are per rank (batch norm over a rank's own slice);
        evaluation uses rank 0's on every rank (what DDP's buffer broadcast does, done only
        where they are read)."""
        if self.world == 1:
            return
        for buffer in model.norm.buffers():
            dist.broadcast(buffer, src=0, group=self.group)

    def close(self) -> None:
        """Wait for the last stop-flag exchange before the process group goes."""
        if self._stop_work is not None:
            self._stop_work.wait()
            self._stop_work = None

    @staticmethod
    def _scatter(flat: Tensor, tensors: Sequence[Tensor]) -> None:
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


LOCAL = Comm()


class NullWriter(RunWriter):
    """A rank that does not write: the run directory belongs to rank 0."""

    def __init__(self, path: Path):  # no mkdir: rank 0 may be on another machine
        self.path = path

    def write_config(self, config_yaml: str) -> None:
        pass

    def append_stats(self, records: list[dict[str, Any]]) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass


@dataclass
class Plan:
    """This rank's part of an experiment (see ``Comm.plan``)."""

    indices: list[int]  # the members (positions in the experiment) this rank trains
    comm: Comm  # the comm their trainer uses: LOCAL unless ranks split batches
    writes: bool  # this rank writes those members' directories
    parent: Comm  # the process group the experiment runs in
    gather_group: Any = None  # ranks split members: rank 0 gathers every outcome through it

    def writer(self, path: Path, make: Callable[[Path], RunWriter] = RunWriter) -> RunWriter:
        return make(path) if self.writes else NullWriter(path)

    def outcomes(self, mine: list[Any], paths: Sequence[Path]) -> list[Any]:
        """Rank 0: every member's outcome, in experiment order; other ranks: []."""
        if self.gather_group is None:
            return mine if self.parent.is_writer else []
        shares: list[list[Any]] = [[] for _ in range(self.parent.world)]
        dist.all_gather_object(shares, mine, group=self.gather_group)
        if not self.parent.is_writer:
            return []
        order = {str(p): i for i, p in enumerate(paths)}
        every = sorted((o for share in shares for o in share), key=lambda o: order[str(o.path)])
        missing = [str(o.path) for o in every if not o.path.is_dir()]
        if missing:
            raise UsageError(f"run directories written by other ranks are not visible here: "
                             f"{', '.join(missing)}; --out must be on a file system every "
                             f"rank shares")
        return every


def resolve_split(split: str, is_sweep: bool) -> str:
    """``auto``: a sweep splits its members, a single config its batches."""
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "auto":
        return "members" if is_sweep else "batches"
    return split


def check_launch(exp: Experiment, nproc: int, split: str) -> None:
    """What ``Comm.plan`` will check on every worker, checked once before they start, and
    whether ``nproc`` processes fit this machine."""
    configs = [m.config for m in exp.members]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cores = os.cpu_count() or 1
    if nproc > max(gpus, MAX_PROCESSES_PER_CORE * cores):
        raise UsageError(f"--nproc {nproc}: this machine has {cores} CPU cores and {gpus} GPUs; "
                         f"at most {max(gpus, MAX_PROCESSES_PER_CORE * cores)} processes")
    by_batches = resolve_split(split, exp.is_sweep) == "batches"
    if by_batches:
        check_batch_split(configs, nproc)
    limit = resources.usable_bytes(torch.device("cpu"), processes=nproc)
    shapes: dict[tuple, list[RunConfig]] = {}
    for cfg in configs:
        shapes.setdefault(group_key(cfg), []).append(cfg)
    for same in shapes.values():  # a process trains one group at a time
        members = len(same) if by_batches else -(-len(same) // nproc)
        need = resources.group_bytes(same[0], members)
        if limit is not None and need > limit:
            raise UsageError(f"--nproc {nproc}: each process would need about "
                             f"{resources.gigabytes(need)}, more than the "
                             f"{resources.gigabytes(limit)} each may use here; use fewer "
                             f"processes")


def check_batch_split(configs: Sequence[RunConfig], world: int) -> None:
    bad = sorted({c.train.batch_size for c in configs if c.train.batch_size % world})
    if bad:
        sizes = ", ".join(map(str, bad))
        raise UsageError(f"train.batch_size is the global batch, split evenly over {world} "
                         f"processes; {sizes} is not a multiple of {world}")
    for cfg in configs:  # batch norm normalizes over each process's own share
        share, need = cfg.train.batch_size // world, NORM_CHOICES[cfg.model.norm].min_batch
        if cfg.model.norm == "batch" and share < need:
            raise UsageError(f"train.batch_size {cfg.train.batch_size} over {world} processes "
                             f"leaves {share} example(s) each, and norm: batch needs at least "
                             f"{need} per process (norm: syncbatch normalizes over all of them)")


# --- Data parallelism -----------------------------------------------------------------------


def ddp(model: StackedMLP, group: Any) -> nn.Module:
    """DistributedDataParallel over the stacked model, with gradients left where the optimizer
    reads them: ``gradient_as_bucket_view=False`` makes DDP copy the averaged bucket back into
    each ``param.grad`` in place, and those are views into ``model.flat_grad``. One bucket holds
    every parameter, so a step costs one all-reduce (DDP's default first bucket is 1 MB, which
    would split a deep model into two). Buffers are not broadcast at each forward: batch-norm
    running averages are synced from rank 0 before evaluation instead."""
    from torch.nn.parallel import DistributedDataParallel

    size_mb = model.flat.numel() * model.flat.element_size() / 2**20
    options: dict[str, Any] = {"bucket_cap_mb": size_mb + 1.0, "gradient_as_bucket_view": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        options["forward_sync_buffers"] = False
    else:  # torch before the rename
        options["broadcast_buffers"] = False
    wrapped = DistributedDataParallel(model, process_group=group, **options)
    if any(p.grad is None or p.grad.data_ptr() != g.data_ptr()
           for p, g in zip(model.parameters(), grad_views(model), strict=True)):
        raise RuntimeError("DistributedDataParallel replaced the gradient views into flat_grad")
    return wrapped


def grad_views(model: StackedMLP) -> list[Tensor]:
    return [view for _, view in model.parameter_views(model.flat_grad)]


# --- Process groups ---------------------------------------------------------------------------


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group() -> Iterator[Comm]:
    """The process group torchrun (or ``launch``) describes in RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR and MASTER_PORT; ``LOCAL`` without them (or with WORLD_SIZE 1)."""
    world = env_world_size()
    if world <= 1:
        yield LOCAL
        return
    rank = int(os.environ["RANK"])
    bind_gloo_to_loopback()
    dist.init_process_group(backend_for_this_machine(), init_method="env://", rank=rank,
                            world_size=world)
    comm = Comm(rank=rank, world=world, group=dist.group.WORLD)
    try:
        yield comm
    finally:
        comm.close()
        dist.destroy_process_group()


def backend_for_this_machine() -> str:
    """gloo for CPU tensors; with a GPU for each local process, nccl for CUDA tensors too (and
    this process's GPU is LOCAL_RANK's, so device "cuda" means it)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and local_world <= torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def bind_gloo_to_loopback() -> None:
    """On one machine (MASTER_ADDR a loopback address) gloo listens on 127.0.0.1 only; across
    machines it keeps its default (or the user's GLOO_SOCKET_IFNAME)."""
    addr = os.environ.get("MASTER_ADDR", "")
    if "GLOO_SOCKET_IFNAME" in os.environ or not (addr.startswith("127.") or addr == "localhost"):
        return
    names = [name for _, name in socket.if_nameindex()]
    loopback = next((n for n in ("lo", "lo0") if n in names), None)
    if loopback is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = loopback


# --- Launching local workers ------------------------------------------------------------------


@contextlib.contextmanager
def local_store() -> Iterator[int]:
    """A rendezvous store on 127.0.0.1 (a free port the kernel picks), hosted by this process
    as torchrun's agent hosts its own; yields the port. TCPStore would listen on every
    interface if left to bind on its own, hence the socket handed to it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        fd = sock.detach()  # the store owns the listening socket from here, and closes it
    try:
        store = dist.TCPStore(LOOPBACK, port, is_master=True, wait_for_workers=False,
                              master_listen_fd=fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield port
    finally:
        del store


def worker_env(rank: int, nproc: int, port: int) -> dict[str, str]:
    """torchrun's variables for one local worker, plus loopback-only gloo and a fair share of
    the CPU threads."""
    env = dict(os.environ)
    env.update({
        "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0",
        "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
        "MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",  # every rank is a client of the store here
    })
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def launch(nproc: int, args: Sequence[str], log: Callable[[str], None] = print_error) -> int:
    """Run ``python -m initlab ARGS`` in ``nproc`` local worker processes and wait for them;
    their exit code (the first failure's, if any; 128 + N for a worker killed by signal N). A
    signal here is passed on to the workers, which checkpoint and stop together. When a worker
    dies, the others are stopped, the run's members still marked running say "interrupted", and
    one line says what happened and how to continue; the other workers' output goes to files
    (rank 0's is the user's)."""
    if nproc < 2:
        raise UsageError(f"--nproc must be at least 2 to launch workers, got {nproc}")
    if env_world_size() > 1:
        raise UsageError("--nproc inside a torchrun (or --nproc) worker: give one or the other")
    cores = os.cpu_count() or 1
    if nproc > cores and not torch.cuda.is_available():
        log(f"initlab: {nproc} processes share {cores} CPU cores: each runs at a fraction of "
            f"its speed")
    with tempfile.TemporaryDirectory(prefix="initlab-launch-") as tmp, local_store() as port:
        info = Path(tmp) / "run-dir"
        procs = []
        for rank in range(nproc):
            env = {**worker_env(rank, nproc, port), RUN_DIR_FILE_ENV: str(info)}
            output = None if rank == 0 else open(Path(tmp) / f"rank-{rank}.log", "w")  # noqa: SIM115
            procs.append(subprocess.Popen([sys.executable, "-m", "initlab", *args], env=env,
                                          stdout=output, stderr=output))
            if output is not None:
                output.close()  # the child has its own handle
        code = wait_all(procs)
        if code not in (0, 130, 143):
            log(failure_line(procs, info, Path(tmp)))
        return code


def first_failure(procs: Sequence[subprocess.Popen]) -> tuple[int, int]:
    """(rank, exit code) of the worker whose end stopped the others: one killed by a signal
    (its peers then fail in their collectives), else the lowest rank that failed."""
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode not in (None, 0)]
    return next(((r, c) for r, c in failed if c < 0), failed[0])


def failure_line(procs: Sequence[subprocess.Popen], info: Path, logs: Path) -> str:
    """What a dead or failed worker means for the run, in one line."""
    rank, code = first_failure(procs)
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0
           else f"failed (exit {code})")
    if code > 0 and rank > 0:  # its last line says why (rank 0's is already on screen)
        lines = (logs / f"rank-{rank}.log").read_text(errors="replace").strip().splitlines()
        if lines:
            how += f": {lines[-1][:160]}"
    try:
        top = Path(info.read_text())
    except OSError:
        return f"initlab: worker {rank} {how}; the other workers were stopped"
    mark_interrupted(top)
    hint = (f"continue with: initlab run --resume {top}"
            if any(top.glob(f"**/{CHECKPOINT_FILE}")) else
            f"no checkpoint was written yet: start it again (the records in {top} are kept)")
    return f"initlab: worker {rank} {how}; the other workers were stopped; {hint}"


def mark_interrupted(top: Path) -> None:
    """Members a dead worker left marked "running" are "interrupted" (through the run format's
    one reader and writer of summary.json); a directory link is never followed."""
    if not top.is_dir() or top.is_symlink():
        return
    for path in [top, *(p for p in top.iterdir() if p.is_dir() and not p.is_symlink())]:
        mark_member_interrupted(path)


def announce_run_dir(top: Path) -> None:
    """Rank 0 of a local launch tells the launcher where the run is (to mark and name it if a
    worker dies)."""
    target = os.environ.get(RUN_DIR_FILE_ENV)
    if target:
        with contextlib.suppress(OSError):
            Path(target).write_text(str(top.resolve()))


def wait_all(procs: list[subprocess.Popen]) -> int:
    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [p.poll() for p in procs]
            if any(c not in (None, 0) for c in codes):
                stop_all(procs)  # the others would wait for the failed one in a collective
                code = first_failure(procs)[1]
                return code if code > 0 else 128 - code
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Give the workers still running a moment to finish (a shared signal: they stop and
    checkpoint together), then terminate and finally kill them."""
    deadline = time.monotonic() + KILL_GRACE_S
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
