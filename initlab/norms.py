"""Normalization layers of a StackedMLP: one class each, its line in ``initlab.choices``.

A norm acts on each hidden layer's activation, per member: out = gain * normalize(a) + shift.
Its class owns everything about it: its parameters (per hidden layer and member, [1, width]
each, with their initial values), its buffers (``[hidden layers, K, 1, width]``, member axis 1,
which is how checkpoints slice them), the forward pass autograd differentiates, and the
hand-written forward and backward that the fast path uses (``StackedMLP.manual_loss_and_grad``).
``none`` is the norm that does nothing. The config's ``model.norm`` choices are the names of
``initlab.choices.NORM_CHOICES``, and ``NORMS`` maps them to these classes.

A weight-side normalization (``WeightNorm``, ``WEIGHT_NORMS``: ``model.weight_norm``) acts on
each hidden layer's W before it multiplies: what the layer computes is z f(W) + b.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.choices import NORM_CHOICES, POSITIONS, WEIGHT_NORM_CHOICES, classes

NORM_EPS = 1e-5
BN_MOMENTUM = 0.1
__all__ = ["NORMS", "POSITIONS", "WEIGHT_NORMS", "Norm", "WeightNorm"]  # POSITIONS: as before

# What a hand-written forward hands to its backward (the normalized activations, moments).
Saved = tuple[Tensor, ...]


class Norm(nn.Module):
    """The interface, and the norm that does nothing (``none``)."""

    # Parameters per hidden layer: name -> initial value (each [1, width] per member).
    PARAMETERS: ClassVar[dict[str, float]] = {}
    identity: ClassVar[bool] = True  # no normalization: the model skips it altogether

    def __init__(self, members: int, width: int, hidden: int, groups: int,
                 device: torch.device | str = "cpu", process_group: Any = None):
        super().__init__()
        self.width = width
        self.groups = groups

    def member_axes(self) -> dict[str, int]:
        """Each buffer's member axis (all buffers are [hidden layers, K, 1, width])."""
        return {name: 1 for name, _ in self.named_buffers()}

    @torch.no_grad()
    def reset(self) -> None:
        """Buffers to their initial values."""

    # -- autograd path ----------------------------------------------------------------------
    def forward(self, i: int, z: Tensor, params: dict[str, Tensor],
                running_update: Tensor | None) -> Tensor:
        """Hidden layer i's output from its activation z [K, B, width]. ``running_update``
        [K, 1, 1]: 1 for members whose running statistics move with this batch, 0 for
        stopped ones; None leaves them alone (the probe)."""
        return z

    # -- hand-written path ------------------------------------------------------------------
    def activated_buffers(self, layers: int, members: int, batch: int,
                          device: torch.device) -> Tensor:
        """Where each hidden layer's input to the norm goes (act(z W + b) after the activation,
        z W + b before it), as one block [layers, K, B, width]."""
        return torch.empty(layers, members, batch, self.width, device=device)

    def forward_into(self, i: int, a: Tensor, out: Tensor, params: dict[str, Tensor],
                     running_update: Tensor | None) -> Saved:
        """out = this norm of a; returns what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, i: int, g: Tensor, a: Tensor, saved: Saved, params: dict[str, Tensor],
                 grads: dict[str, Tensor]) -> Tensor:
        """From the gradient g at layer i's output to the one at its activation a (may reuse
        g's memory); the parameters' gradients are written into ``grads``."""
        raise NotImplementedError


class _PerExample(Norm):
    """Layer and group norm: over the features of each example, with PyTorch's own layer-norm
    kernels forward and backward."""

    PARAMETERS = {"gain": 1.0, "shift": 0.0}
    identity = False

    def shape(self) -> tuple[int, ...]:
        """The features normalized together: the last dimension of this view."""
        raise NotImplementedError

    def forward(self, i: int, z: Tensor, params: dict[str, Tensor],
                running_update: Tensor | None) -> Tensor:
        k, b, w = z.shape
        shape = self.shape()
        z = F.layer_norm(z.view(k, b, *shape), shape[-1:], eps=NORM_EPS).view(k, b, w)
        return z * params["gain"] + params["shift"]

    def forward_into(self, i: int, a: Tensor, out: Tensor, params: dict[str, Tensor],
                     running_update: Tensor | None) -> Saved:
        k, b, w = out.shape
        shape = self.shape()
        normalized, mean, rstd = torch.native_layer_norm(
            a.view(k, b, *shape), shape[-1:], None, None, NORM_EPS)
        normalized = normalized.view(k, b, w)
        torch.addcmul(params["shift"], normalized, params["gain"], out=out)
        return normalized, mean, rstd

    def backward(self, i: int, g: Tensor, a: Tensor, saved: Saved, params: dict[str, Tensor],
                 grads: dict[str, Tensor]) -> Tensor:
        normalized, mean, rstd = saved
        k, b, w = g.shape
        torch.sum(g * normalized, dim=1, keepdim=True, out=grads["gain"])
        torch.sum(g, dim=1, keepdim=True, out=grads["shift"])
        shape = self.shape()
        g = g.mul_(params["gain"]).view(k, b, *shape)
        g = torch.ops.aten.native_layer_norm_backward(
            g, a.view(k, b, *shape), shape[-1:], mean, rstd, None, None,
            [True, False, False])[0]
        return g.view(k, b, w)


class LayerNorm(_PerExample):
    """Ba et al. (2016): each example's features to mean 0, variance 1."""

    def shape(self) -> tuple[int, ...]:
        return (self.width,)


class GroupNorm(_PerExample):
    """Wu & He (2018): layer norm within each of ``model.groups`` groups of features."""

    def shape(self) -> tuple[int, ...]:
        return (self.groups, self.width // self.groups)


class BatchNorm(Norm):
    """Ioffe & Szegedy (2015): each feature over the batch, per member; running averages of
    the batch moments stand in for them in evaluation mode."""

    PARAMETERS = {"gain": 1.0, "shift": 0.0}
    identity = False

    def __init__(self, members: int, width: int, hidden: int, groups: int,
                 device: torch.device | str = "cpu", process_group: Any = None):
        super().__init__(members, width, hidden, groups, device)
        self.register_buffer("running_mean", torch.zeros(hidden, members, 1, width,
                                                         device=device))
        self.register_buffer("running_var", torch.ones(hidden, members, 1, width,
                                                       device=device))

    @torch.no_grad()
    def reset(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)

    def moments(self, z: Tensor) -> tuple[Tensor, Tensor, int]:
        """Batch mean and biased variance [K, 1, W], and the batch size they cover."""
        mean, var = batch_mean_var(z)
        return mean, var, z.shape[1]

    @torch.no_grad()
    def update_running(self, i: int, mean: Tensor, var: Tensor, count: int,
                       running_update: Tensor | None) -> None:
        """Layer i's running averages move towards this batch's moments (the variance made
        unbiased), for members still training."""
        if running_update is None:
            return
        unbiased = var * (count / max(count - 1, 1))
        self.running_mean[i].lerp_(mean, BN_MOMENTUM * running_update)
        self.running_var[i].lerp_(unbiased, BN_MOMENTUM * running_update)

    def forward(self, i: int, z: Tensor, params: dict[str, Tensor],
                running_update: Tensor | None) -> Tensor:
        if not self.training:
            z = (z - self.running_mean[i]) / torch.sqrt(self.running_var[i] + NORM_EPS)
        else:
            mean, var, count = self.moments(z)
            self.update_running(i, mean, var, count, running_update)
            z = (z - mean) / torch.sqrt(var + NORM_EPS)
        return z * params["gain"] + params["shift"]

    def activated_buffers(self, layers: int, members: int, batch: int,
                          device: torch.device) -> Tensor:
        """Views with a spare column per row, like the unnormalized layers' outputs: the CPU's
        batched matrix product then gives a member the same bits alone or in a sweep (into a
        contiguous output, one member alone takes another kernel, which rounds differently).
        Layer and group norm stay contiguous: their kernels would copy it, and group norm over
        a few features is ill-conditioned enough that autograd's rounding (contiguous) is the
        safer reference."""
        block = torch.empty(layers, members, batch, self.width + 1, device=device)
        return block[..., : self.width]

    def forward_into(self, i: int, a: Tensor, out: Tensor, params: dict[str, Tensor],
                     running_update: Tensor | None) -> Saved:
        mean, var, count = self.moments(a)
        self.update_running(i, mean, var, count, running_update)
        rstd = var.add_(NORM_EPS).rsqrt_()
        normalized = (a - mean).mul_(rstd)
        torch.addcmul(params["shift"], normalized, params["gain"], out=out)
        return normalized, mean, rstd

    def backward(self, i: int, g: Tensor, a: Tensor, saved: Saved, params: dict[str, Tensor],
                 grads: dict[str, Tensor]) -> Tensor:
        normalized, _, rstd = saved
        gain_grad, shift_grad = grads["gain"], grads["shift"]
        torch.sum(g * normalized, dim=1, keepdim=True, out=gain_grad)
        torch.sum(g, dim=1, keepdim=True, out=shift_grad)
        # Per feature over the batch: dx = gain/std * (g - (sum g + xhat * sum g xhat) / B)
        correction = torch.addcmul(shift_grad, normalized, gain_grad).div_(g.shape[1])
        return g.sub_(correction).mul_(rstd * params["gain"])


class SyncBatchNorm(BatchNorm):
    """Batch norm over the global batch of every process splitting it (``--split batches``):
    one differentiable all-reduce of the batch moments per layer. It receives its process
    group when built; in one process (None) it is plain batch norm."""

    def __init__(self, members: int, width: int, hidden: int, groups: int,
                 device: torch.device | str = "cpu", process_group: Any = None):
        super().__init__(members, width, hidden, groups, device)
        self.process_group = process_group

    def moments(self, z: Tensor) -> tuple[Tensor, Tensor, int]:
        """Each rank's (mean, variance) of its own slice goes into its slot of a [world, 2,
        K, 1, W] tensor, one all-reduce fills every slot, and the moments combine as Chan et
        al.'s parallel variance (the ranks' slices are equal): as exact as a two-pass
        variance, unlike sum / sum of squares."""
        if self.process_group is None:
            return super().moments(z)
        rank = dist.get_rank(self.process_group)
        world = dist.get_world_size(self.process_group)
        mean, var = batch_mean_var(z)
        mine = torch.stack([mean, var]).unsqueeze(0)
        before = mine.new_zeros((rank, *mine.shape[1:]))
        after = mine.new_zeros((world - rank - 1, *mine.shape[1:]))
        slots = AllReduceSum.apply(torch.cat([before, mine, after]), self.process_group)
        means, variances = slots[:, 0], slots[:, 1]
        mean = means.mean(dim=0)
        var = (variances + (means - mean).square()).mean(dim=0)
        return mean, var, z.shape[1] * world


class RMSNorm(Norm):
    """Zhang & Sennrich (2019), the norm of modern transformers: a / sqrt(mean(a^2) + eps)
    per example, times a gain; no centring and no shift."""

    PARAMETERS = {"gain": 1.0}
    identity = False

    def forward(self, i: int, z: Tensor, params: dict[str, Tensor],
                running_update: Tensor | None) -> Tensor:
        return F.rms_norm(z, z.shape[-1:], eps=NORM_EPS) * params["gain"]

    def forward_into(self, i: int, a: Tensor, out: Tensor, params: dict[str, Tensor],
                     running_update: Tensor | None) -> Saved:
        rstd = a.square().mean(dim=-1, keepdim=True).add_(NORM_EPS).rsqrt_()
        normalized = a * rstd
        torch.mul(normalized, params["gain"], out=out)
        return normalized, rstd

    def backward(self, i: int, g: Tensor, a: Tensor, saved: Saved, params: dict[str, Tensor],
                 grads: dict[str, Tensor]) -> Tensor:
        normalized, rstd = saved
        torch.sum(g * normalized, dim=1, keepdim=True, out=grads["gain"])
        g = g.mul_(params["gain"])  # the gradient at the normalized activations
        # y = a r with r = (mean(a^2) + eps)^-1/2: da = r (dy - y mean(dy y)) per example
        dot = (g * normalized).mean(dim=-1, keepdim=True)
        return g.sub_(normalized * dot).mul_(rstd)


class WeightNorm:
    """The weight-side interface, and the one that leaves W as it is (``none``): hidden layer i
    computes z f(W_i) + b_i. f acts per member, so members never mix; it has no parameters and
    no buffers (the statistics and the optimizer see W itself)."""

    identity: ClassVar[bool] = True  # f(W) = W: the model skips it altogether

    def forward(self, w: Tensor) -> Tensor:
        """f(W) from W [K, n_in, n_out], differentiably (the autograd path)."""
        return w

    def forward_into(self, w: Tensor, out: Tensor) -> Saved:
        """out = f(W); returns what ``backward`` needs (the hand-written path)."""
        raise NotImplementedError

    def backward(self, g: Tensor, saved: Saved) -> Tensor:
        """The gradient at W from the gradient g at f(W), written into g's memory."""
        raise NotImplementedError


class WeightStandardization(WeightNorm):
    """Qiao et al. (2019): each output unit's weights standardized over its fan-in, column j
    of W [n_in, n_out] to (W_j - mean) / sqrt(var + eps): a layer's output no longer depends
    on the scale of a unit's weights, nor on a shift of them. Their partner is an activation
    norm (group norm above all): a standardized layer multiplies activations by about
    sqrt(n_in), which only a following norm undoes. The bias is left as it is."""

    identity = False

    def forward(self, w: Tensor) -> Tensor:
        centered = w - w.mean(dim=1, keepdim=True)
        return centered * torch.rsqrt(centered.square().mean(dim=1, keepdim=True) + NORM_EPS)

    def forward_into(self, w: Tensor, out: Tensor) -> Saved:
        torch.sub(w, w.mean(dim=1, keepdim=True), out=out)
        rstd = out.square().mean(dim=1, keepdim=True).add_(NORM_EPS).rsqrt_()
        return out.mul_(rstd), rstd

    def backward(self, g: Tensor, saved: Saved) -> Tensor:
        standardized, rstd = saved
        # Layer norm's backward over each column: dW = r (g - mean(g) - W^ mean(g W^))
        dot = (g * standardized).mean(dim=1, keepdim=True)
        return g.sub_(g.mean(dim=1, keepdim=True)).sub_(standardized * dot).mul_(rstd)


class AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiably: every rank's loss depends on the sum, so the gradient
    of the summed loss with respect to a rank's input is the sum of the incoming gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def batch_mean_var(z: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over the batch, [K, 1, W] from [K, B, W], in two passes (as
    exact as ``torch.var_mean``, which is 3-6x slower over this middle dimension on the CPU)."""
    mean = z.mean(dim=1, keepdim=True)
    centered = z - mean
    return mean, centered.square().mean(dim=1, keepdim=True)


NORMS: dict[str, type[Norm]] = classes(NORM_CHOICES, globals())
WEIGHT_NORMS: dict[str, type[WeightNorm]] = classes(WEIGHT_NORM_CHOICES, globals())
