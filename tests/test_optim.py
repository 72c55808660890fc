"""The flat-buffer optimizers against torch.optim, member by member."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from initlab.config import TrainConfig
from initlab.optim import FlatOptimizer

# Three members with their own learning rate, weight decay and momentum.
MEMBERS = [(0.01, 0.0, 0.0), (0.003, 1e-2, 0.9), (0.03, 1e-4, 0.5)]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_flat_optimizer_equals_torch_optim_per_member(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    member_ids = torch.randint(0, len(MEMBERS), (300,), generator=gen)  # interleaved members
    flat = torch.randn(300, generator=gen)
    grad = torch.zeros_like(flat)
    configs = [replace(TrainConfig(), optimizer=kind, lr=lr, weight_decay=wd, momentum=mom)
               for lr, wd, mom in MEMBERS]
    flat_opt = FlatOptimizer(flat, grad, member_ids, configs)
    start = flat.clone()
    params, references = [], []
    for k, (lr, wd, mom) in enumerate(MEMBERS):
        p = torch.nn.Parameter(flat[member_ids == k].clone())
        params.append(p)
        references.append(torch.optim.SGD([p], lr=lr, weight_decay=wd, momentum=mom)
                          if kind == "sgd" else torch.optim.Adam([p], lr=lr, weight_decay=wd))
    for _ in range(6):
        grad.copy_(torch.randn(300, generator=gen))
        for k, (p, opt) in enumerate(zip(params, references, strict=True)):
            p.grad = grad[member_ids == k].clone()
            opt.step()
        flat_opt.step()
    for k, p in enumerate(params):
        # Values of order 1 after six steps, each a few float32 roundings (eps 1.2e-7) in
        # another order than torch.optim's: agreement to a few 1e-7.
        torch.testing.assert_close(flat[member_ids == k], p.detach(), rtol=1e-5, atol=2e-6)
        assert (flat[member_ids == k] - start[member_ids == k]).abs().min() > 0  # all moved


def test_a_frozen_member_stops_moving() -> None:
    member_ids = torch.tensor([0, 1, 0, 1])
    flat = torch.ones(4)
    grad = torch.ones(4)
    opt = FlatOptimizer(flat, grad, member_ids,
                        [replace(TrainConfig(), optimizer="adam", lr=0.1)] * 2)
    opt.step()
    opt.freeze(1)
    before = flat.clone()
    opt.step()
    assert torch.equal(flat[1::2], before[1::2]) and not torch.equal(flat[::2], before[::2])
