"""Per-layer statistics against a hand computation on a tiny network."""

from __future__ import annotations

import math

import torch
from torch import nn

from initlab import stats
from initlab.config import ModelConfig
from initlab.model import StackedMLP


def plain_copy(model: StackedMLP, k: int) -> list[nn.Linear]:
    """Member k as ordinary nn.Linear layers (weight transposed: nn.Linear computes x W^T)."""
    layers = []
    for i in range(model.depth):
        w = model.weight(i)[k].detach()
        layer = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            layer.weight.copy_(w.T)
            layer.bias.copy_(model.bias(i)[k, 0].detach())
        layers.append(layer)
    return layers


def test_statistics_match_a_hand_computation() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(depth=4, width=6)
    model = StackedMLP(cfg, members=2)
    model.initialize(["normal", "normal"], [2.0, 3.0], [1, 2])
    initial = [model.weight(i).detach().clone() for i in range(model.depth)]
    with torch.no_grad():  # move the weights a little, so the relative change is not zero
        model.flat.add_(0.01 * torch.randn_like(model.flat))
    x = torch.rand(2, 5, 784)
    y = torch.randint(0, 10, (2, 5))

    acts: list[torch.Tensor] = []
    model.flat_grad.zero_()
    logits = model(x, acts)
    stats.cross_entropy_per_member(logits, y).sum().backward()
    weights = [model.weight(i) for i in range(model.depth)]
    act_norm = stats.activation_norms(stats.input_groups(acts))
    # both forms of layer groups: one per layer, and the model's multi-layer views
    grads = [w.grad for w in weights]
    grad_norm = stats.gradient_norms(stats.layer_groups(grads))
    assert torch.equal(grad_norm, stats.gradient_norms(model.weight_groups(model.flat_grad)))
    weight_var = stats.weight_variances(model.weight_groups(model.flat))
    w0 = stats.layer_groups(initial)
    rel = stats.relative_changes(
        stats.layer_groups([w - w_init for w, w_init in zip(weights, initial, strict=True)]),
        stats.frobenius_norms(w0))

    for k in range(2):
        layers = plain_copy(model, k)
        z = x[k]
        for i, layer in enumerate(layers):
            # activation norm: mean over the batch of ||Z_i||_2, Z_1 the input
            expected = sum(math.sqrt(sum(v * v for v in row)) for row in z.tolist()) / 5
            assert math.isclose(act_norm[k, i].item(), expected, rel_tol=1e-5)
            z = layer(z)
            if i < len(layers) - 1:
                z = torch.relu(z)
        loss = nn.functional.cross_entropy(z, y[k])
        loss.backward()
        for i, layer in enumerate(layers):
            g = layer.weight.grad
            assert math.isclose(grad_norm[k, i].item(), g.norm().item(), rel_tol=1e-4)
            w = layer.weight.detach().flatten().tolist()
            mean = sum(w) / len(w)
            var = sum((v - mean) ** 2 for v in w) / len(w)
            assert math.isclose(weight_var[k, i].item(), var, rel_tol=1e-4)
            w0 = initial[i][k]
            expected_rel = ((layer.weight.detach().T - w0).norm() / w0.norm()).item()
            assert math.isclose(rel[k, i].item(), expected_rel, rel_tol=1e-4)


def test_relative_change_of_a_zero_init_is_undefined_not_infinite() -> None:
    w0 = stats.layer_groups([torch.zeros(1, 3, 3)])
    w = stats.layer_groups([torch.ones(1, 3, 3)])
    rel = stats.relative_changes([a - b for a, b in zip(w, w0, strict=True)],
                               stats.frobenius_norms(w0))
    assert torch.isnan(rel).all()


def test_error_counts_and_loss_are_per_member() -> None:
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0]], [[5.0, 0.0], [5.0, 0.0]]])
    labels = torch.tensor([[0, 1], [0, 1]])
    assert stats.error_counts(logits, labels).tolist() == [0, 1]
    loss = stats.cross_entropy_per_member(logits, labels)
    assert loss[0] < loss[1]
