"""SGD and Adam over a model's flat parameter buffer, with hyperparameters per member.

Each hyperparameter is a vector over the flat buffer (its member's value at every element), so
one update costs a few elementwise kernels whatever the depth or the number of members, and a
member is frozen by zeroing its learning rate. Semantics match ``torch.optim.SGD`` (dampening
0, weight decay added to the gradient) and ``torch.optim.Adam`` (L2 weight decay).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from initlab.config import TrainConfig

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class FlatOptimizer:
    def __init__(self, flat: Tensor, flat_grad: Tensor, member_ids: Tensor,
                 configs: Sequence[TrainConfig]):
        self.flat = flat
        self.grad = flat_grad
        self.kind = configs[0].optimizer
        self.member_ids = member_ids

        def per_element(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=flat.dtype, device=flat.device)[member_ids]

        self.lr = per_element([c.lr for c in configs])
        # Each member's learning rate (0 once frozen): SGD's step is member_lr times a direction.
        self.member_lr = torch.tensor([c.lr for c in configs], dtype=flat.dtype,
                                      device=flat.device)
        self.use_decay = any(c.weight_decay > 0 for c in configs)
        self.weight_decay = per_element([c.weight_decay for c in configs])
        self.use_momentum = self.kind == "sgd" and any(c.momentum > 0 for c in configs)
        self.momentum = per_element([c.momentum for c in configs])
        self.buffers: dict[str, Tensor] = {}
        if self.use_momentum:
            self.buffers["momentum"] = torch.zeros_like(flat)
        if self.kind == "adam":
            self.buffers["exp_avg"] = torch.zeros_like(flat)
            self.buffers["exp_avg_sq"] = torch.zeros_like(flat)
            self.buffers["step"] = torch.zeros((), device=flat.device)
            # The update's denominator and step, kept (not state: not checkpointed).
            self.scratch = (torch.empty_like(flat), torch.empty_like(flat))

    @torch.no_grad()
    def step(self) -> None:
        g = self.grad
        if self.use_decay:
            g.addcmul_(self.weight_decay, self.flat)  # L2 decay, folded into the gradient
        if self.kind == "sgd":
            if self.use_momentum:
                buf = self.buffers["momentum"]
                buf.mul_(self.momentum).add_(g)
                g = buf
            self.flat.addcmul_(g, self.lr, value=-1.0)
            return
        b1, b2 = ADAM_BETAS
        m, v, t = self.buffers["exp_avg"], self.buffers["exp_avg_sq"], self.buffers["step"]
        t.add_(1.0)  # a tensor, so the update can be captured in a CUDA graph
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        # lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps), with the bias corrections moved
        # into the denominator: every pass over the buffers is in place into kept scratch
        # (a fresh multi-megabyte temporary costs as much as the arithmetic on the CPU).
        correction1 = 1 - b1**t
        denom, step = self.scratch
        torch.sqrt(v, out=denom)
        denom.mul_(correction1 / (1 - b2**t).sqrt_()).add_(correction1 * ADAM_EPS)
        torch.mul(m, self.lr, out=step)
        self.flat.addcdiv_(step, denom, value=-1.0)

    @torch.no_grad()
    def last_update(self) -> tuple[Tensor, Tensor | None]:
        """The step just taken, as (D, scale) with Delta W = -scale_k * D for member k (scale
        None: 1), for the update statistics without a copy of the weights: SGD's direction
        (the gradient with decay folded in, or the momentum buffer) and each member's lr;
        Adam's lr * m / denominator, computed here into its scratch (call once per step)."""
        if self.kind == "sgd":
            return (self.buffers["momentum"] if self.use_momentum else self.grad), self.member_lr
        denom, step = self.scratch
        return torch.div(step, denom, out=step), None

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Member k's part of the optimizer state: its elements of each per-element buffer
        (in flat-buffer order, which is ``StackedMLP.member_vector``'s) and the shared step
        count."""
        mine = self.member_ids == k
        return {name: buf[mine] if buf.shape == mine.shape else buf.clone()
                for name, buf in self.buffers.items()}

    @torch.no_grad()
    def load_member_state(self, k: int, state: dict[str, Tensor]) -> None:
        mine = self.member_ids == k
        for name, buf in self.buffers.items():
            value = state[name].to(buf.device)
            if buf.shape == mine.shape:
                buf[mine] = value
            else:
                buf.copy_(value)

    def freeze(self, member: int, reset: bool = False) -> None:
        """Stop updating one member (target reached, or diverged). ``reset`` also clears its
        optimizer state: a diverged member's NaN momentum would otherwise make 0 * NaN
        updates turn its zeroed weights back into NaN."""
        mine = self.member_ids == member
        self.lr.masked_fill_(mine, 0.0)
        self.member_lr[member] = 0.0
        if reset:
            for buf in self.buffers.values():
                if buf.shape == mine.shape:
                    buf.masked_fill_(mine, 0.0)
