"""Training: members that share the network's shapes train together as one stacked model.

Each member keeps its own init scale, learning rate, weight decay, dropout rate, seed (weights
and data order) and statistics. Statistics accumulate on the device and the host reads them
only at epoch ends and checkpoints, so there is no host sync per step.

What a record measures:
- ``init``, ``epoch``, ``final``: activation and gradient norms of a forward/backward pass on a
  fixed probe batch of training images (no update, no dropout, batch norm in training mode
  without touching its running averages); ``test_error`` on the whole test set in evaluation
  mode. At ``epoch``/``final``, ``loss`` and ``train_error`` average the epoch's training
  batches; at ``init`` they are the probe batch's.
- ``train`` (every ``log.every`` updates): the statistics of that update's own training batch,
  weights as they were just before it.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from initlab import stats
from initlab.config import RunConfig, config_to_dict
from initlab.data import EVAL_CHUNK, MNISTTensors, steps_per_epoch
from initlab.distributed import LOCAL, Comm
from initlab.errors import RunInterrupted, UsageError
from initlab.graphs import GraphedStep
from initlab.model import Activity, ActivityRecorder, StackedMLP, member_seed
from initlab.optim import FlatOptimizer
from initlab.records import SCALAR_KEYS, RunLog
from initlab.runs import FINISHED, RunWriter, run_summary

# On a GPU or across processes, reading whether every member has diverged waits for the device
# or a collective: it is read every this many steps there (on one CPU process, every step).
DIVERGENCE_CHECK_EVERY = 50
PROBE_SEED = 0  # the probe images are the same for every run, so runs compare
# Statistics of a rank's own batch, averaged over ranks (the others are the same on every rank).
PER_WORKER_KEYS = ("loss", "errors", *(key for key, stat in stats.LAYER_STATS.items()
                                       if stat.per_rank is not None))
# What a checkpoint saves: member states (``GroupTrainer.member_state``), one per member.
SaveCheckpoint = Callable[[list[dict[str, Any]]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device: cuda was asked for, but no CUDA device is available")
    return torch.device(name)


@dataclass
class MemberState:
    """Host-side bookkeeping for one member."""

    config: RunConfig
    writer: RunWriter
    status: str = "running"  # running | completed | diverged | interrupted
    reached_target_epoch: int | None = None
    diverged_step: int | None = None
    final_test_error: float | None = None
    summary_written: bool = False  # a stopped member's summary is final
    log: RunLog = field(init=False)  # its records not yet on disk

    def __post_init__(self) -> None:
        self.log = RunLog(self.writer)


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and stops."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, nothing to restore
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Gauges:
    """What a group's statistics read, and the passes that give it: the weight statistics'
    views of the flat buffers (made once), W(0) and its norms, one forward/backward pass with
    its activity, the probe batch's statistics, the test error. Changes nothing a training
    step depends on, but ``flat_grad``."""

    def __init__(self, model: StackedMLP, net: torch.nn.Module, comm: Comm, data: MNISTTensors,
                 manual: bool, probe_size: int):
        self.model, self.net, self.comm, self.data = model, net, comm, data
        self.manual = manual  # the hand-written backward (else autograd)
        self.K, self.device = model.members, model.flat.device
        self.flat_init = model.flat.clone()
        self.make_stat_views()
        self.set_initial_weights()
        n = data.train_x.shape[0]
        probe = torch.randperm(n, generator=torch.Generator().manual_seed(PROBE_SEED))
        probe = probe[: min(probe_size, n)].to(self.device)
        self.probe_x = data.train_x[probe].expand(self.K, -1, -1)
        self.probe_y = data.train_y[probe].expand(self.K, -1)

    def make_stat_views(self) -> None:
        """The weight statistics' views, made once (the buffers never move). W - W(0) is
        taken over the whole contiguous buffer into one kept for the purpose: faster than
        over the strided weight views, and no multi-megabyte temporary per step."""
        self.weight_views = self.model.weight_groups(self.model.flat)
        self.weight_shapes = self.model.weight_group_shapes()
        self.grad_views = self.model.weight_groups(self.model.flat_grad)
        self.change = torch.empty_like(self.model.flat)
        self.change_views = self.model.weight_groups(self.change)
        self.direction_views: dict[int, list[Tensor]] = {}  # see update_views

    def set_initial_weights(self) -> None:
        """The norms of W_i(0), the reference for the relative change (again when a checkpoint
        replaces ``flat_init``)."""
        norms = stats.frobenius_norms(self.model.weight_groups(self.flat_init))
        if hasattr(self, "initial_norms"):  # in place: a captured CUDA graph reads it
            self.initial_norms.copy_(norms)
        else:
            self.initial_norms = norms

    def pass_tensors(self, activity: Activity) -> stats.PassTensors:
        """What the statistics read of the pass that just filled ``flat_grad``."""
        torch.sub(self.model.flat, self.flat_init, out=self.change)
        return stats.PassTensors(activity.inputs, activity.activations, activity.unit_inputs,
                                 self.weight_views, self.grad_views, self.change_views,
                                 self.initial_norms, weight_shapes=self.weight_shapes)

    def update_views(self, optimizer: FlatOptimizer) -> tuple[list[Tensor], Tensor | None]:
        """The step just taken as weight groups (``FlatOptimizer.last_update``): views of the
        optimizer's own buffer, made once per buffer."""
        direction, scale = optimizer.last_update()
        key = direction.data_ptr()
        if key not in self.direction_views:
            self.direction_views[key] = self.model.weight_groups(direction)
        return self.direction_views[key], scale

    def layer_stats(self, tensors: stats.PassTensors, after_update: bool = False,
                    probe: bool = False) -> dict[str, Tensor]:
        """The statistics of ``stats.LAYER_STATS`` that read a pass (or, ``after_update``,
        the step that followed it) and mean something for this net's activation, [K, L] each;
        the ``costly`` ones only for a ``probe``."""
        return stats.compute(tensors, lambda stat: stat.after_update == after_update
                             and (probe or not stat.costly) and stat.applies_to(self.model.act))

    def loss_and_grad(self, x: Tensor, y: Tensor, capture: bool, training: bool = True,
                      ) -> tuple[Tensor, Tensor, Activity | None]:
        """Logits [K, B, 10] and loss per member [K] of one forward pass, the gradient of the
        summed loss in ``flat_grad``, and (``capture``) what ``layer_stats`` reads of the pass.
        ``training=False`` is the probe: no dropout, batch-norm averages left alone. The
        hand-written backward where the net has one, else autograd."""
        if self.manual:
            logits, loss, activity = self.model.manual_loss_and_grad(x, y, training, capture)
            return logits, loss, activity if capture else None
        self.model.flat_grad.zero_()
        recorder = ActivityRecorder() if capture else None
        if training:
            logits = self.net(x, recorder)
        else:
            logits = self.model(x, recorder, update_running=False, use_dropout=False)
        loss = stats.cross_entropy_per_member(logits, y)
        loss.sum().backward()  # under DDP, flat_grad then holds the mean over ranks
        return logits.detach(), loss.detach(), None if recorder is None else recorder.activity()

    def measure_probe(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Loss [K], error rate [K] and per-layer statistics on the probe batch."""
        self.model.train()
        logits, loss, activity = self.loss_and_grad(self.probe_x, self.probe_y, capture=True,
                                                    training=False)
        with torch.no_grad():
            errors = stats.error_counts(logits, self.probe_y) / self.probe_y.shape[1]
            layer = self.layer_stats(self.pass_tensors(activity), probe=True)
        self.model.flat_grad.zero_()
        return loss, errors.float(), layer

    @torch.no_grad()
    def test_error(self) -> Tensor:
        """Error rate on the whole test set per member, in evaluation mode: [K]."""
        self.comm.sync_running_stats(self.model)
        self.model.eval()
        errors = torch.zeros(self.K, device=self.device)
        x, y = self.data.test_x, self.data.test_y
        for start in range(0, x.shape[0], EVAL_CHUNK):
            xb = x[start : start + EVAL_CHUNK].expand(self.K, -1, -1)
            yb = y[start : start + EVAL_CHUNK].expand(self.K, -1)
            errors += stats.error_counts(self.model(xb), yb)
        self.model.train()
        return errors / x.shape[0]


class GroupTrainer:
    """Trains K members of one shape together.

    Why one class of ~400 lines: it is one loop's state -- its position, the on-device
    accumulators, the members' bookkeeping and the checkpoint form of all three -- and each
    part reads the others (a record needs the position and who still trains; a checkpoint is
    position, accumulators and members). What it measures and how is ``Gauges``; what a
    record holds and when it says diverged is ``initlab.records``.

    Its state is what ``member_state`` gives per member (and ``load_member_states`` takes
    back): a checkpoint is those dicts, written by whoever ``save_checkpoint`` is (the trainer
    never touches a file but through its members' ``RunWriter``). ``device_state`` lists the
    device tensors a training step changes."""

    # On-device per-member accumulators [K]: named here, they are checkpointed and kept by a
    # CUDA graph's warm-up like the weights.
    ACCUMULATORS = ("epoch_loss", "epoch_errors", "first_bad_step")

    def __init__(self, members: Sequence[MemberState], data: MNISTTensors,
                 device: torch.device, comm: Comm = LOCAL,
                 save_checkpoint: SaveCheckpoint | None = None, group_size: int | None = None):
        """``group_size``: how many members the group started with (``members_in_group``),
        when these are what is left of it (``smaller_stack``)."""
        self.members = list(members)
        self.comm = comm  # several processes: see initlab.distributed
        self.save_checkpoint = save_checkpoint
        self.cfg = members[0].config
        self.K = len(members)
        self.group_size = group_size or self.K
        self.device = device
        self.data = data
        cfgs = [m.config for m in members]
        self.model = StackedMLP(self.cfg.model, self.K, device, comm.group)
        self.model.initialize([c.init.scheme for c in cfgs], [c.init.c for c in cfgs],
                              [c.train.seed for c in cfgs])
        self.model.set_dropout([c.model.dropout for c in cfgs], [c.train.seed for c in cfgs])
        if device.type == "cuda":
            torch.manual_seed(member_seed(self.cfg.train.seed, "dropout"))
        self.net = comm.wrap(self.model)
        # DDP all-reduces from autograd's hooks, so several processes keep autograd.
        manual = (self.cfg.train.backward == "auto" and comm.world == 1
                  and self.model.supports_manual_backward())
        self.gauges = Gauges(self.model, self.net, comm, data, manual, self.cfg.log.probe_size)
        self.optimizer = FlatOptimizer(self.model.flat, self.model.flat_grad,
                                       self.model.member_ids(), [c.train for c in cfgs])
        self.batch = self.cfg.train.batch_size
        n = data.train_x.shape[0]
        self.steps_per_epoch = steps_per_epoch(n, self.batch)
        self.data_generators = [torch.Generator().manual_seed(member_seed(c.train.seed, "data"))
                                for c in cfgs]
        # Position and on-device accumulators (all part of a checkpoint).
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.order: Tensor | None = None  # [K, N] this epoch's data order
        self.epoch_loss = torch.zeros(self.K, device=device)  # summed per-step mean losses
        self.epoch_errors = torch.zeros(self.K, device=device)  # misclassified examples
        self.first_bad_step = torch.full((self.K,), -1, dtype=torch.long, device=device)
        self.step_count = torch.zeros((), dtype=torch.long, device=device)
        self.last_epoch_loss: Tensor | None = None
        self.last_epoch_error: Tensor | None = None
        self.checkpointed_step: int | None = None  # the step of the last checkpoint written
        self.captures: list[tuple[int, int, dict[str, Tensor]]] = []  # step, epoch, stats
        self.started = time.perf_counter()
        self.wall_offset = 0.0  # seconds spent before a resume
        self.step_fn = self.make_step_fn()

    # -- one update ---------------------------------------------------------------------------
    def train_step(self, idx: Tensor, capture: bool) -> dict[str, Tensor] | None:
        """One update of every member on its own batch ``idx`` [K, B]. Only device work: no
        host sync, so it can also be captured as a CUDA graph."""
        # index_select: several times faster than x[idx] on the CPU
        x = self.data.train_x.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
        y = self.data.train_y.index_select(0, idx.reshape(-1)).view(idx.shape)
        gauges = self.gauges
        logits, loss, activity = gauges.loss_and_grad(x, y, capture=capture)
        with torch.no_grad():
            errors = stats.error_counts(logits, y)
            captured = None
            if activity is not None:
                tensors = gauges.pass_tensors(activity)
                captured = gauges.layer_stats(tensors)
                captured["loss"] = loss  # fresh each step; a graph's outputs are cloned
                captured["errors"] = errors.float() / y.shape[1]
            self.optimizer.step()
            if captured is not None:
                # The same tensors: their weight norms, computed before the step, are the
                # update ratio's denominator (the weights the step updated).
                tensors.updates, tensors.update_scale = gauges.update_views(self.optimizer)
                captured.update(gauges.layer_stats(tensors, after_update=True))
            self.step_count += 1
            self.epoch_loss += loss
            self.epoch_errors += errors
            newly_bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
            self.first_bad_step.copy_(torch.where(newly_bad, self.step_count,
                                                  self.first_bad_step))
        return captured

    def make_step_fn(self) -> Callable[[Tensor, bool], dict[str, Tensor] | None]:
        """The eager step, or on CUDA the same step replayed from captured graphs."""
        mode = self.cfg.train.cuda_graph
        if self.device.type != "cuda" or mode == "off" or self.comm.world > 1:
            return self.train_step
        try:
            return GraphedStep(self.train_step, self.device_state(), (self.K, self.batch),
                               self.device)
        except Exception as err:  # any capture failure falls back to eager unless forced
            if mode == "on":
                raise
            print(f"initlab: CUDA graph capture failed ({err}); training eagerly")
            return self.train_step

    # -- records ------------------------------------------------------------------------------
    def diverged_steps(self) -> list[int | None]:
        """Each member's step of divergence, None while it has not (the progress line tells
        a diverged member by it, not by the test error its stopped weights would get)."""
        return [m.diverged_step for m in self.members]

    def active(self) -> list[int]:
        return [k for k, m in enumerate(self.members) if m.status == "running"]

    def add_records(self, phase: str, step: int, epoch: int, values: dict[str, Tensor]) -> None:
        """Append one record per running member from on-device values: ``loss``,
        ``train_error``, optional ``test_error`` [K] and the per-layer statistics [K, L]."""
        host = {key: v.tolist() for key, v in values.items()}
        for k in self.active():
            # (A probe takes no step: its values hold no update statistics.)
            self.members[k].log.add(
                step, epoch, phase, {key: host[key][k] for key in SCALAR_KEYS if key in host},
                {key: host[key][k] for key in stats.LAYER_KEYS if key in host})

    def capture_full(self, phase: str) -> list[float]:
        """Probe + test-set capture for every running member; returns the test errors."""
        probe_loss, probe_err, layer = self.gauges.measure_probe()
        test = self.gauges.test_error()
        values = dict(layer, test_error=test)
        if self.last_epoch_loss is None:  # nothing trained yet: the probe's own numbers
            values.update(loss=probe_loss, train_error=probe_err)
        else:
            values.update(loss=self.last_epoch_loss, train_error=self.last_epoch_error)
        self.add_records(phase, self.step, self.epoch, values)
        self.mark_nonfinite()
        return test.tolist()

    def flush_train_captures(self) -> None:
        """Move the on-device 'train' captures into the members' pending records."""
        self.comm.mean_([c[key] for _, _, c in self.captures for key in PER_WORKER_KEYS
                         if key in c])
        for step, epoch, captured in self.captures:
            captured["train_error"] = captured.pop("errors")
            self.add_records("train", step, epoch, captured)
        self.captures.clear()
        self.mark_nonfinite()

    def mark_nonfinite(self) -> None:
        """A member whose loss became NaN or Inf at any step, or whose record diverged
        (``records.diverged``), stops at the first step where it did, keeping what it captured
        before."""
        bad_steps = self.comm.earliest(self.first_bad_step).tolist()
        for k in self.active():
            at = bad_steps[k] if bad_steps[k] >= 0 else None
            recorded = self.members[k].log.diverged_at
            if recorded is not None:
                at = recorded if at is None else min(at, recorded)
            if at is not None:
                self.stop_diverged(k, at)

    def stop_diverged(self, k: int, at_step: int) -> None:
        member = self.members[k]
        member.status = "diverged"
        member.diverged_step = at_step
        member.log.keep_before(at_step)
        self.optimizer.freeze(k, reset=True)
        self.model.stop_member(k, zero=True)

    def stop_completed(self, k: int, test_error: float) -> None:
        member = self.members[k]
        member.log.pending.append(dict(member.log.pending[-1], phase="final"))
        member.status = "completed"
        member.final_test_error = test_error
        self.optimizer.freeze(k)
        self.model.stop_member(k)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: StopFlag, progress: Callable[[dict[str, Any]], None],
            pause_when_members_stop: bool = False) -> bool:
        """Train to the end; True when every member has finished. With
        ``pause_when_members_stop``, returns False at the end of an epoch where some members
        stopped while others run on: the caller continues those as a smaller stack
        (``smaller_stack``), so stopped members cost no more arithmetic."""
        self.started = time.perf_counter()
        cfg, log = self.cfg.train, self.cfg.log
        if self.step == 0 and self.epoch == 0 and self.step_in_epoch == 0:
            test = self.capture_full("init")
            self.flush(checkpoint=False)
            progress({"kind": "start", "test_error": test, "diverged": self.diverged_steps()})
        max_steps = cfg.max_steps or math.inf
        n = self.data.train_x.shape[0]
        while self.epoch < cfg.epochs and self.active() and self.step < max_steps:
            if self.order is None:
                self.order = torch.stack([torch.randperm(n, generator=g)
                                          for g in self.data_generators]).to(self.device)
            while self.step_in_epoch < self.steps_per_epoch and self.step < max_steps:
                start = self.step_in_epoch * self.batch
                capture = log.every > 0 and (self.step + 1) % log.every == 0
                batch = self.comm.shard(self.order[:, start : start + self.batch])
                captured = self.step_fn(batch, capture)
                self.step += 1
                self.step_in_epoch += 1
                if captured is not None:
                    self.captures.append((self.step, self.epoch, captured))
                progress({"kind": "step"})
                if self.all_diverged():
                    break  # nothing left to train: the run ends now, not at the epoch's end
                signum = self.comm.agreed_stop(stop.signum)  # ranks stop together
                if signum is not None:
                    self.interrupt()
                    raise RunInterrupted(signum)
                if log.checkpoint_every and self.step % log.checkpoint_every == 0:
                    self.flush(checkpoint=True)
            if self.step_in_epoch < self.steps_per_epoch:
                break  # max_steps reached, or every member diverged, mid-epoch
            self.end_epoch(progress)
            if pause_when_members_stop and 0 < len(self.active()) < self.K \
                    and self.epoch < cfg.epochs and self.step < max_steps:
                return False
        self.finish()
        progress({"kind": "done", "diverged": self.diverged_steps()})
        return True

    def all_diverged(self) -> bool:
        """Whether every member still training has had a loss that is not finite (read after
        each step in one CPU process; every ``DIVERGENCE_CHECK_EVERY`` steps, on every rank at
        once, elsewhere). ``finish`` then marks them diverged where they did."""
        if not (self.device.type == "cpu" and self.comm.world == 1) \
                and self.step % DIVERGENCE_CHECK_EVERY:
            return False
        bad = self.comm.earliest(self.first_bad_step)
        return bool((bad[self.active()] >= 0).all())

    def close_epoch_means(self) -> None:
        self.comm.reduce_epoch_(self.epoch_loss, self.epoch_errors)  # over ranks
        n = max(self.step_in_epoch, 1)
        self.last_epoch_loss = self.epoch_loss / n
        self.last_epoch_error = self.epoch_errors / (n * self.batch)
        self.epoch_loss.zero_()
        self.epoch_errors.zero_()

    def end_epoch(self, progress: Callable[[dict[str, Any]], None]) -> None:
        self.close_epoch_means()
        self.epoch += 1
        self.step_in_epoch = 0
        self.order = None
        self.flush_train_captures()
        test = self.capture_full("epoch")
        last = self.epoch >= self.cfg.train.epochs or self.step >= (self.cfg.train.max_steps
                                                                   or math.inf)
        for k in self.active():
            target = self.members[k].config.train.target_test_error
            if target is not None and test[k] <= target:
                self.members[k].reached_target_epoch = self.epoch
                self.stop_completed(k, test[k])
            elif last:  # the final record is this one: no second probe of the same weights
                self.stop_completed(k, test[k])
        self.flush(checkpoint=True)
        progress({"kind": "epoch", "epoch": self.epoch, "test_error": test,
                  "loss": self.last_epoch_loss.tolist(), "diverged": self.diverged_steps()})

    def finish(self) -> None:
        """Final capture for members still running (max_steps reached mid-epoch; at an
        epoch's end ``end_epoch`` has completed them from its own capture; when every member
        diverged, none is, and the captures mark where each did), then the last
        checkpoint unless ``end_epoch`` has just written this very state."""
        self.flush_train_captures()
        if not self.active() and self.step_in_epoch == 0 and self.checkpointed_step == self.step:
            return
        if self.active():
            if self.step_in_epoch:  # stopped mid-epoch: average what this epoch saw
                self.close_epoch_means()
            test = self.capture_full("final")
            for k in self.active():
                self.members[k].status = "completed"
                self.members[k].final_test_error = test[k]
        self.flush(checkpoint=True)

    def interrupt(self) -> None:
        # Captures first, while members still count as running: else they would be dropped,
        # and a member that diverged since the last flush would be saved as interrupted.
        self.flush_train_captures()
        for k in self.active():
            self.members[k].status = "interrupted"
        self.flush(checkpoint=True)

    # -- persistence --------------------------------------------------------------------------
    def flush(self, checkpoint: bool) -> None:
        """Append pending records, then (optionally) checkpoint. The checkpoint remembers how
        long each stats.jsonl was, so a resume after kill -9 drops records written later."""
        self.flush_train_captures()
        for member in self.members:
            member.log.flush()
        if checkpoint:
            # Rank 0's checkpoint is the run's: it gets the epoch's counts so far.
            self.comm.reduce_epoch_(self.epoch_loss, self.epoch_errors, keep_on_writer=True)
            if self.comm.is_writer and self.save_checkpoint is not None:
                self.save_checkpoint([self.member_state(k) for k in range(self.K)])
            self.checkpointed_step = self.step
        for member in self.members:
            if not member.summary_written:
                member.writer.write_summary(self.summary(member))
                member.summary_written = member.status in FINISHED

    def wall_seconds(self) -> float:
        """Training time so far, including the time before a resume."""
        return self.wall_offset + time.perf_counter() - self.started

    def summary(self, member: MemberState) -> dict[str, Any]:
        # A diverged member's counts stop where it diverged, not where that was noticed
        # (which depends on flush timing, e.g. an interruption).
        at = member.diverged_step
        return run_summary(
            member.status,
            steps=self.step if at is None else at,
            epochs=self.epoch if at is None else max(at - 1, 0) // max(self.steps_per_epoch, 1),
            final_test_error=member.final_test_error,
            reached_target_epoch=member.reached_target_epoch,
            diverged_step=at,
            wall_seconds=round(self.wall_seconds(), 3),
            device=str(self.device),
            members_in_group=self.group_size,
            threads=torch.get_num_threads(),
            # versions, commit, host; the start is kept across resumes
            started_at=member.writer.start_time(time.time() - self.wall_seconds()),
        )

    # -- state --------------------------------------------------------------------------------
    def device_state(self) -> list[Tensor]:
        """Every device tensor a training step changes."""
        return [self.model.flat, self.model.flat_grad, self.step_count,
                *(getattr(self, name) for name in self.ACCUMULATORS),
                *self.optimizer.buffers.values(), *(b for _, b in self.model.named_buffers())]

    def member_state(self, k: int) -> dict[str, Any]:
        """Everything needed to continue member k exactly: its weights and buffers, its initial
        weights, optimizer state, accumulators, data order and generator, its bookkeeping, and
        its dropout generator, and the group's position. Tensors are copies on the CPU."""
        member = self.members[k]
        last = None if self.last_epoch_loss is None else {
            "loss": self.last_epoch_loss[k], "error": self.last_epoch_error[k]}
        model = self.model
        state = {
            "config": config_to_dict(member.config),  # resume refuses an edited config.yaml
            "member": {"status": member.status,
                       "reached_target_epoch": member.reached_target_epoch,
                       "diverged_step": member.diverged_step,
                       "final_test_error": member.final_test_error},
            "model": model.member_state(k),
            "params_init": model.member_vector(self.gauges.flat_init, k),
            "optimizer": self.optimizer.member_state(k),
            "accumulators": {name: getattr(self, name)[k] for name in self.ACCUMULATORS},
            "last_epoch": last,
            "order": None if self.order is None else self.order[k],
            "data_rng": self.data_generators[k].get_state(),
            "dropout_rng": (model.dropout_generators[k].get_state()
                            if k in model.dropout_generators else None),
            "group": {
                "step": self.step,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "step_count": self.step_count,
                "wall_seconds": self.wall_seconds(),
                "cuda_rng": (torch.cuda.get_rng_state() if self.device.type == "cuda"
                             else None),
            },
        }
        return _to_cpu(state)

    @torch.no_grad()
    def load_member_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Put a freshly built trainer back where ``member_state`` left each member (the
        members of one checkpoint position)."""
        model, dev = self.model, self.device
        group = states[0]["group"]
        self.step, self.epoch = group["step"], group["epoch"]
        self.step_in_epoch = group["step_in_epoch"]
        self.step_count.copy_(group["step_count"])
        self.wall_offset = group["wall_seconds"]
        if group["cuda_rng"] is not None and dev.type == "cuda":
            torch.cuda.set_rng_state(group["cuda_rng"])
        have_last = all(s["last_epoch"] is not None for s in states)
        if have_last:
            self.last_epoch_loss = torch.zeros(self.K, device=dev)
            self.last_epoch_error = torch.zeros(self.K, device=dev)
        orders = []
        for k, state in enumerate(states):
            member = self.members[k]
            for key, value in state["member"].items():
                setattr(member, key, value)
            model.load_member_state(k, state["model"])
            model.set_member_vector(self.gauges.flat_init, k, state["params_init"].to(dev))
            self.optimizer.load_member_state(k, state["optimizer"])
            for name, value in state["accumulators"].items():
                getattr(self, name)[k] = value
            if have_last:
                self.last_epoch_loss[k] = state["last_epoch"]["loss"]
                self.last_epoch_error[k] = state["last_epoch"]["error"]
            self.data_generators[k].set_state(state["data_rng"])
            if state["dropout_rng"] is not None and k in model.dropout_generators:
                model.dropout_generators[k].set_state(state["dropout_rng"])
            if state["order"] is not None:
                orders.append(state["order"])
            if member.status == "interrupted":  # it stopped for a signal: it trains on
                member.status = "running"
            elif member.status != "running":  # completed or diverged: it stays stopped
                self.optimizer.freeze(k)
                model.stop_member(k)
                member.summary_written = True  # its summary.json is final
        self.order = torch.stack(orders).to(dev) if len(orders) == self.K else None
        self.gauges.set_initial_weights()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
