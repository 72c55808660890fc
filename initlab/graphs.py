"""The whole training step (forward, backward, optimizer, statistics) as CUDA graphs.

Tiny 100-wide layers leave a GPU idle between hundreds of kernel launches; replaying a captured
graph launches them all at once. Shapes are static (the last partial batch is dropped), every
buffer the step touches lives at a fixed address (flat parameter and gradient buffers, on-device
accumulators), and the batch indices are copied into a static input before each replay.
Two graphs are captured: with and without the per-layer statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from initlab.train import GroupTrainer

WARMUP_STEPS = 3


class GraphedStep:
    def __init__(self, trainer: GroupTrainer):
        self.trainer = trainer
        self.idx = torch.zeros(trainer.K, trainer.batch, dtype=torch.long,
                               device=trainer.device)
        saved = self._snapshot()
        rng = torch.cuda.get_rng_state()
        self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[bool, dict[str, Tensor] | None] = {}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):  # lets autograd and the allocator settle
                trainer.train_step(self.idx, capture=True)
                trainer.train_step(self.idx, capture=False)
        torch.cuda.current_stream().wait_stream(stream)
        for capture in (False, True):  # separate memory pools: replayed in any order
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.outputs[capture] = trainer.train_step(self.idx, capture)
            self.graphs[capture] = graph
        self._restore(saved)  # warm-up and capture ran real updates: undo them
        torch.cuda.set_rng_state(rng)

    def __call__(self, idx: Tensor, capture: bool) -> dict[str, Tensor] | None:
        self.idx.copy_(idx)
        self.graphs[capture].replay()
        out = self.outputs[capture]
        return None if out is None else {k: v.clone() for k, v in out.items()}

    def _state_tensors(self) -> list[Tensor]:
        t = self.trainer
        tensors = [t.model.flat, t.model.flat_grad, t.epoch_loss, t.epoch_errors,
                   t.first_bad_step, t.step_count, *t.optimizer.buffers.values()]
        tensors += [b for _, b in t.model.named_buffers()]
        return tensors

    def _snapshot(self) -> list[Tensor]:
        return [x.clone() for x in self._state_tensors()]

    @torch.no_grad()
    def _restore(self, saved: list[Tensor]) -> None:
        for live, copy in zip(self._state_tensors(), saved, strict=True):
            live.copy_(copy)
