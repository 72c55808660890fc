"""A training step (forward, backward, optimizer, statistics) captured as CUDA graphs.

Tiny 100-wide layers leave a GPU idle between hundreds of kernel launches; replaying a captured
graph launches them all at once. Shapes are static (the last partial batch is dropped), every
buffer the step touches lives at a fixed address (the trainer lists them: ``device_state``),
and the batch indices are copied into a static input before each replay. Two graphs are
captured: with and without the per-layer statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

WARMUP_STEPS = 3
Step = Callable[[Tensor, bool], "dict[str, Tensor] | None"]


class GraphedStep:
    """``step(idx, capture)`` replayed from graphs. ``state``: every tensor the step changes;
    warm-up and capture run real updates, which are undone afterwards."""

    def __init__(self, step: Step, state: Sequence[Tensor], idx_shape: tuple[int, int],
                 device: torch.device):
        self.idx = torch.zeros(idx_shape, dtype=torch.long, device=device)
        self.state = list(state)
        saved = [x.clone() for x in self.state]
        rng = torch.cuda.get_rng_state()
        self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[bool, dict[str, Tensor] | None] = {}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):  # lets autograd and the allocator settle
                step(self.idx, True)
                step(self.idx, False)
        torch.cuda.current_stream().wait_stream(stream)
        for capture in (False, True):  # separate memory pools: replayed in any order
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.outputs[capture] = step(self.idx, capture)
            self.graphs[capture] = graph
        with torch.no_grad():
            for live, copy in zip(self.state, saved, strict=True):
                live.copy_(copy)
        torch.cuda.set_rng_state(rng)

    def __call__(self, idx: Tensor, capture: bool) -> dict[str, Tensor] | None:
        self.idx.copy_(idx)
        self.graphs[capture].replay()
        out = self.outputs[capture]
        return None if out is None else {k: v.clone() for k, v in out.items()}
