"""Per-layer statistics as plain functions of tensors. Nothing here syncs with the host.

Shapes: K members, L layers. Flat buffers hold every member's parameters; ``segment_ids`` maps
each element to member * (L + 1) + layer (slot L collects biases and norm parameters, which
the per-layer statistics leave out).
"""

from __future__ import annotations

import torch
from torch import Tensor


def activation_norm(z: Tensor) -> Tensor:
    """Mean over the batch of ||z||_2 for each member: [K, B, n] -> [K]."""
    return torch.linalg.vector_norm(z, dim=-1).mean(dim=-1)


def segment_sums(values: Tensor, segment_ids: Tensor, members: int, layers: int) -> Tensor:
    """Sum of ``values`` over each (member, layer) segment: flat [N] -> [K, L]."""
    out = torch.zeros(members * (layers + 1), dtype=values.dtype, device=values.device)
    out.index_add_(0, segment_ids, values)
    return out.view(members, layers + 1)[:, :layers]


def gradient_norms(flat_grad: Tensor, segment_ids: Tensor, members: int, layers: int) -> Tensor:
    """||grad W_i||_F per member and layer: [K, L]."""
    return segment_sums(flat_grad.square(), segment_ids, members, layers).sqrt()


def weight_variances(flat: Tensor, segment_ids: Tensor, counts: Tensor, members: int,
                     layers: int) -> Tensor:
    """Var(W_i) over the entries of each weight matrix (population variance): [K, L].
    ``counts`` [L] is the number of entries of each W_i."""
    total = segment_sums(flat, segment_ids, members, layers)
    total_sq = segment_sums(flat.square(), segment_ids, members, layers)
    mean = total / counts
    return (total_sq / counts - mean.square()).clamp_min(0.0)


def relative_changes(flat: Tensor, flat_init: Tensor, segment_ids: Tensor, members: int,
                     layers: int) -> Tensor:
    """||W_i - W_i(0)||_F / ||W_i(0)||_F per member and layer: [K, L]; NaN where W_i(0) = 0
    (the ratio is undefined for a zero initialization)."""
    moved = segment_sums((flat - flat_init).square(), segment_ids, members, layers).sqrt()
    start = segment_sums(flat_init.square(), segment_ids, members, layers).sqrt()
    return torch.where(start > 0, moved / start, torch.full_like(moved, float("nan")))


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
