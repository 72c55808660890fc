"""Per-layer statistics as plain functions of tensors. Nothing here syncs with the host.

Shapes: K members, L layers. Weight statistics take "layer groups": tensors [G, K, n] holding
G consecutive layers' matrices of every member, entries flattened (``layer_groups`` turns a
list of per-layer tensors [K, ...] into that form).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def activation_norms(row_norms: Sequence[Tensor]) -> Tensor:
    """Mean over the batch of ||Z_i||_2 per member and layer: L tensors [K, B] -> [K, L]."""
    return torch.stack(list(row_norms), dim=1).mean(dim=-1)


def layer_groups(per_layer: Sequence[Tensor]) -> list[Tensor]:
    """Per-layer tensors [K, ...] as layer groups [1, K, n], the form the functions below take.
    (The trainer passes ``StackedMLP.weight_groups`` views, which cover many layers each.)"""
    return [t.reshape(1, t.shape[0], -1) for t in per_layer]


def _per_layer(groups: Sequence[Tensor], reduce: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply a reduction [G, K, n] -> [G, K] to each group; stack to [K, L]."""
    return torch.cat([reduce(g) for g in groups], dim=0).T


def frobenius_norms(groups: Sequence[Tensor]) -> Tensor:
    """||W_i||_F per member and layer: [K, L]."""
    return _per_layer(groups, lambda g: torch.linalg.vector_norm(g, dim=-1))


def gradient_norms(grad_groups: Sequence[Tensor]) -> Tensor:
    """||grad W_i||_F per member and layer: [K, L]."""
    return frobenius_norms(grad_groups)


def weight_variances(groups: Sequence[Tensor]) -> Tensor:
    """Var(W_i) over the entries of each weight matrix (population variance): [K, L].
    E[w^2] - E[w]^2 from two fused reductions: several times faster than ``torch.var`` on
    the CPU, and exact enough since |E[w]| is tiny next to the spread of the weights."""

    def variance(g: Tensor) -> Tensor:
        n = g.shape[-1]
        mean = g.sum(dim=-1) / n
        mean_sq = torch.linalg.vector_norm(g, dim=-1).square() / n
        return (mean_sq - mean.square()).clamp_min(0.0)

    return _per_layer(groups, variance)


def relative_changes(groups: Sequence[Tensor], initial_groups: Sequence[Tensor],
                     initial_norms: Tensor) -> Tensor:
    """||W_i - W_i(0)||_F / ||W_i(0)||_F per member and layer: [K, L]. NaN where W_i(0) = 0:
    the ratio is undefined for a zero initialization. ``initial_norms`` [K, L] is the
    denominator, computed once with ``frobenius_norms``."""
    moved = frobenius_norms([w - w0 for w, w0 in zip(groups, initial_groups, strict=True)])
    return torch.where(initial_norms > 0, moved / initial_norms,
                       torch.full_like(moved, float("nan")))


def cross_entropy_per_member(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy per member: logits [K, B, C], labels [K, B] -> [K]."""
    k, b, c = logits.shape
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(k * b, c), labels.reshape(k * b), reduction="none"
    )
    return losses.view(k, b).mean(dim=1)


def error_counts(logits: Tensor, labels: Tensor) -> Tensor:
    """Number of misclassified examples per member: [K, B, C], [K, B] -> [K]."""
    return (logits.argmax(dim=-1) != labels).sum(dim=-1)
