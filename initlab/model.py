"""K independent deep MLPs of one shape, evaluated together with batched matrix products.

Every parameter of every member lives in one flat buffer, laid out as blocks of shape
[K, *shape]: one per Linear layer, [K, n_in + 1, n_out] with the bias as its last row, and one
per norm gain or shift. Each parameter (W_i, b_i, gain, shift) is an ``nn.Parameter`` viewing its
part of a block, and its gradient the same part of a second flat buffer. The optimizer and the
per-layer statistics then work on whole buffers in a handful of kernels, whatever the depth,
and one member never touches another's numbers. With the bias as a row, a column of ones after
the inputs lets one matrix product compute z W + b, and one more both gradients (the
hand-written backward).

Placement follows the lecture: z_{i+1} = dropout(norm(act(z_i W_i + b_i))) for i < L, the last
layer linear. A single model is the case K = 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.config import ModelConfig

# W_i and b_i are views of one block per layer (a member's bias row follows its weight rows),
# so not "dense": autograd warns, once, that accumulating into such a gradient may be slower.
# Measured: no slower than separate dense parameters; the accumulation lands in the views.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")

IN_FEATURES = 784
NUM_CLASSES = 10
NORM_EPS = 1e-5
BN_MOMENTUM = 0.1

# In place: they act on a fresh matmul output that autograd does not need to keep.
ACTIVATIONS = {"relu": torch.relu_, "tanh": torch.tanh_, "identity": lambda z: z}


@dataclass(frozen=True)
class Block:
    """One parameter inside the flat buffer: elements [offset, offset + K * numel)."""

    name: str
    shape: tuple[int, ...]  # per member
    offset: int
    layer: int  # 0-based Linear layer it belongs to
    is_linear: bool  # a Linear layer's [W_i; b_i] (the statistics are about its W_i rows)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def layer_widths(model: ModelConfig) -> list[tuple[int, int]]:
    """(n_in, n_out) of each of the L Linear layers."""
    dims = [IN_FEATURES] + [model.width] * (model.depth - 1) + [NUM_CLASSES]
    return list(zip(dims[:-1], dims[1:], strict=True))


def parameter_layout(model: ModelConfig) -> list[tuple[str, tuple[int, ...], int, bool]]:
    """(name, per-member shape, layer, is_linear) of every parameter, in buffer order. A
    member's parameters in this order (W_0, b_0, norm gain and shift, W_1, ...) are its
    checkpoint vector."""
    affine = model.norm != "none"
    layout: list[tuple[str, tuple[int, ...], int, bool]] = []
    for i, (n_in, n_out) in enumerate(layer_widths(model)):
        layout.append((f"linear{i}", (n_in + int(model.bias), n_out), i, True))
        if affine and i < model.depth - 1:
            layout.append((f"norm_g{i}", (1, n_out), i, False))
            layout.append((f"norm_b{i}", (1, n_out), i, False))
    return layout


class StackedMLP(nn.Module):
    """K members of the same architecture; input [K, B, 784], logits [K, B, 10]."""

    def __init__(self, model: ModelConfig, members: int, device: torch.device | str = "cpu"):
        super().__init__()
        self.config = model
        self.members = members
        self.depth = model.depth
        self.widths = layer_widths(model)
        self.act = ACTIVATIONS[model.activation]
        blocks, offset = [], 0
        for name, shape, layer, is_linear in parameter_layout(model):
            block = Block(name, shape, offset, layer, is_linear)
            blocks.append(block)
            offset += members * block.numel
        self.blocks: list[Block] = blocks
        # Plain tensors, not parameters: the Parameters below are views into them.
        self.flat = torch.zeros(offset, device=device)
        self.flat_grad = torch.zeros(offset, device=device)
        for (name, value), (_, grad) in zip(self.parameter_views(self.flat),
                                            self.parameter_views(self.flat_grad), strict=True):
            p = nn.Parameter(value)
            p.grad = grad
            self.register_parameter(name, p)
        # Dropout probability per member, broadcast over [K, B, width].
        self.register_buffer("dropout_p", torch.zeros(members, 1, 1, device=device))
        # 1 while a member trains, 0 once stopped: its batch-norm running averages freeze too.
        self.register_buffer("active", torch.ones(members, 1, 1, device=device))
        self.uses_dropout = False
        if model.norm in ("batch", "syncbatch"):
            hidden = model.depth - 1
            self.register_buffer("running_mean", torch.zeros(hidden, members, 1, model.width,
                                                             device=device))
            self.register_buffer("running_var", torch.ones(hidden, members, 1, model.width,
                                                           device=device))
        self.dropout_generator: torch.Generator | None = None
        self.dropout_members: Tensor | None = None  # None: every member drops out
        self.masks: dict[int, tuple[Tensor, Tensor]] = {}  # per batch size, see dropout_masks
        self.scratch: dict[int, Scratch] = {}  # hand-written backward's buffers, per batch size

    # -- layout -------------------------------------------------------------------------------
    def view(self, flat: Tensor, block: Block) -> Tensor:
        n = self.members * block.numel
        return flat[block.offset : block.offset + n].view(self.members, *block.shape)

    def member_ids(self) -> Tensor:
        """For each flat element, the member it belongs to."""
        ids = torch.empty(self.flat.numel(), dtype=torch.long, device=self.flat.device)
        members = torch.arange(self.members, device=self.flat.device)
        for block in self.blocks:
            seg = members.repeat_interleave(block.numel)
            ids[block.offset : block.offset + seg.numel()] = seg
        return ids

    def member_vector(self, flat: Tensor, k: int) -> Tensor:
        """Member k's slice of a flat buffer, as one vector (for checkpoints)."""
        return torch.cat([self.view(flat, b)[k].reshape(-1) for b in self.blocks])

    @torch.no_grad()
    def set_member_vector(self, flat: Tensor, k: int, values: Tensor) -> None:
        start = 0
        for b in self.blocks:
            self.view(flat, b)[k].copy_(values[start : start + b.numel].view(b.shape))
            start += b.numel

    @torch.no_grad()
    def stop_member(self, k: int, zero: bool = False) -> None:
        """Freeze member k's running averages; ``zero`` also clears its weights (a diverged
        member's NaNs stay harmless either way: members never mix)."""
        self.active[k] = 0.0
        if zero:
            for b in self.blocks:
                self.view(self.flat, b)[k].zero_()

    def weight_groups(self, flat: Tensor) -> list[Tensor]:
        """The weight matrices of ``flat`` as a few [G, K, n] views, each covering a run of
        G consecutive layers of one shape (evenly spaced in the buffer), entries flattened
        (bias rows left out): for the default net W_1, W_2..W_49, W_50. Per-layer statistics
        then cost a few kernels instead of a few per layer."""
        blocks = [b for b in self.blocks if b.is_linear]
        groups, i = [], 0
        while i < len(blocks):
            j = i + 1
            spacing = blocks[i + 1].offset - blocks[i].offset if i + 1 < len(blocks) else 0
            while (j < len(blocks) and blocks[j].shape == blocks[i].shape
                   and blocks[j].offset - blocks[j - 1].offset == spacing):
                j += 1
            n_in, n_out = self.widths[blocks[i].layer]
            groups.append(flat.as_strided((j - i, self.members, n_in * n_out),
                                          (spacing, blocks[i].numel, 1), blocks[i].offset))
            i = j
        return groups

    def parameter_views(self, flat: Tensor) -> list[tuple[str, Tensor]]:
        """Each parameter's name and view of ``flat`` (or its gradient's of ``flat_grad``).
        W_i and b_i are separate views of their layer's block: autograd through slices of one
        block parameter would build and add a zero-padded block-sized gradient per slice."""
        views = []
        for block in self.blocks:
            view = self.view(flat, block)
            if not block.is_linear:
                views.append((block.name, view))
                continue
            n_in, i = self.widths[block.layer][0], block.layer
            views.append((f"w{i}", view[:, :n_in]))
            if self.config.bias:
                views.append((f"b{i}", view[:, n_in:]))
        return views

    def weight(self, i: int) -> Tensor:
        """W_i [K, n_in, n_out] (each member's matrix contiguous; the bias row follows it)."""
        return getattr(self, f"w{i}")

    def bias(self, i: int) -> Tensor | None:
        """b_i [K, 1, n_out], or None for a net without biases."""
        return getattr(self, f"b{i}") if self.config.bias else None

    # -- initialization -----------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, schemes: Sequence[str], cs: Sequence[float], seeds: Sequence[int]):
        """W_i ~ N(0, c/n_in) (or uniform with that variance, or zeros) per member, drawn from
        the member's own generator so a member gets the same weights alone or in a sweep."""
        self.flat.zero_()
        for k, (scheme, c, seed) in enumerate(zip(schemes, cs, seeds, strict=True)):
            gen = torch.Generator().manual_seed(member_seed(seed, "init"))
            for block in self.blocks:
                member_view = self.view(self.flat, block)[k]
                if block.is_linear:  # biases stay zero
                    shape = self.widths[block.layer]
                    member_view[: shape[0]].copy_(draw_weight(scheme, c, shape, gen))
                elif block.name.startswith("norm_g"):
                    member_view.fill_(1.0)
        if self.config.norm in ("batch", "syncbatch"):
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    def set_dropout(self, ps: Sequence[float], seed: int):
        self.dropout_p.copy_(torch.tensor(ps, dtype=torch.float32).view(-1, 1, 1))
        self.uses_dropout = any(p > 0 for p in ps)
        # Masks are drawn for these members only: random numbers are most of dropout's cost
        # on the CPU, and a member without dropout needs none.
        dropping = [k for k, p in enumerate(ps) if p > 0]
        self.dropout_members = (None if len(dropping) == len(ps) else
                                torch.tensor(dropping, dtype=torch.long, device=self.flat.device))
        self.masks.clear()
        if self.flat.device.type == "cpu":
            self.dropout_generator = torch.Generator().manual_seed(member_seed(seed, "dropout"))
        else:  # graph-capturable: the device's default generator, seeded by the trainer
            self.dropout_generator = None

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: Tensor, layer_inputs: list[Tensor] | None = None,
                update_running: bool = True, use_dropout: bool = True) -> Tensor:
        """Logits [K, B, 10]. If ``layer_inputs`` is a list, each layer's input Z_i [K, B, n]
        (Z_1 = x) is appended to it, for the activation statistics."""
        z = x
        last = self.depth - 1
        dropout = self.uses_dropout and use_dropout and self.training
        masks = self.dropout_masks(x.shape[1]) if dropout else None
        for i in range(self.depth):
            if layer_inputs is not None:
                layer_inputs.append(z)  # never changed in place after this point
            # bmm then an in-place bias add: on the CPU, baddbmm first copies the broadcast
            # bias into its output, which costs more than the add.
            z = torch.bmm(z, self.weight(i))
            if self.config.bias:
                z = z.add_(self.bias(i))
            if i < last:
                z = self.normalize(i, self.act(z), update_running)
                if masks is not None:
                    z = z * masks[i]
        return z

    # -- hand-written backward ----------------------------------------------------------------
    def supports_manual_backward(self) -> bool:
        """Every net has a hand-written backward but one: without a norm, tanh's derivative
        comes from its output, which dropout rescales; with both, autograd it is."""
        if self.config.norm == "none":
            return not (self.uses_dropout and self.config.activation == "tanh")
        return True

    @torch.no_grad()
    def manual_loss_and_grad(self, x: Tensor, y: Tensor, training: bool = True,
                             ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """What autograd would give for the summed cross-entropy, in fewer, larger kernels:
        every layer's output goes straight into one preallocated buffer with a column of ones
        after it, so the bias costs nothing in either direction, the layer inputs are already
        laid out for one-kernel activation statistics, and each gradient is written (not
        accumulated: nothing to zero first) into ``flat_grad``.

        Batch norm normalizes with the batch's own moments, as in training mode; ``training``
        also applies dropout and moves batch norm's running averages (False: the probe).
        Returns the logits [K, B, 10], the loss per member [K], and the layer inputs as
        groups [G, K, B, n] (``stats.activation_norms``). Logits and inputs live in buffers
        the next call overwrites."""
        b = x.shape[1]
        s = self.scratch.get(b)
        if s is None:
            s = self.scratch[b] = Scratch.allocate(self, b)
        if self.config.bias:
            s.inputs[0][..., :IN_FEATURES].copy_(x)
            inputs = s.inputs
        else:
            inputs = [x, *s.inputs[1:]]
        dropout = self.uses_dropout and training and self.training
        masks = self.dropout_masks(b) if dropout else None
        normed = self.config.norm != "none"
        moments: list[tuple[Tensor, Tensor, Tensor]] = []  # (normalized, mean, 1/std) per layer
        last = self.depth - 1
        for i in range(self.depth):
            out = s.outputs[i]
            if i < last and normed:  # act(z W + b) into its own buffer, normalized into out
                torch.bmm(inputs[i], s.params[i], out=s.activated[i])
                self.act(s.activated[i])
                moments.append(self.normalize_into(i, s, out, update_running=training))
            else:
                torch.bmm(inputs[i], s.params[i], out=out)
                if i < last:
                    self.act(out)
            if i < last and masks is not None:
                out.mul_(masks[i])
        logp = torch.log_softmax(s.outputs[last], dim=-1)
        loss = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(dim=-1).neg_()
        # d(mean cross-entropy)/d logits = (softmax - one_hot) / B
        g = logp.exp_().scatter_add_(-1, y.unsqueeze(-1), s.minus_one).div_(b)
        for i in range(last, -1, -1):
            torch.bmm(inputs[i].transpose(1, 2), g, out=s.grads[i])
            if i > 0:
                g = torch.bmm(g, s.weights_t[i])
                if masks is not None:
                    g.mul_(masks[i - 1])
                if normed:
                    g = self.normalize_backward(i - 1, s, g, moments[i - 1])
                    g = self.activation_backward(g, s.activated[i - 1])
                else:
                    g = self.activation_backward(g, s.outputs[i - 1])
        groups = [inputs[0][..., :IN_FEATURES].unsqueeze(0), s.hidden_outputs]
        return s.outputs[last], loss, groups

    def norm_shape(self) -> tuple[int, ...]:
        """Layer norm normalizes all ``width`` features, group norm each of ``groups``."""
        w, groups = self.config.width, self.config.groups
        return (w,) if self.config.norm == "layer" else (groups, w // groups)

    def normalize_into(self, i: int, s: Scratch, out: Tensor, update_running: bool = True,
                       ) -> tuple[Tensor, Tensor, Tensor]:
        """out = gain * norm(activated) + shift, for layer i; returns what the backward needs:
        the normalized activations, and the mean and 1/std they were normalized with."""
        a = s.activated[i]
        if self.config.norm in ("batch", "syncbatch"):
            mean, var, count = self.batch_moments(a)
            if update_running:
                self.update_running_averages(i, mean, var, count)
            rstd = var.add_(NORM_EPS).rsqrt_()
            normalized = (a - mean).mul_(rstd)
        else:
            k, b, w = out.shape
            shape = self.norm_shape()
            normalized, mean, rstd = torch.native_layer_norm(
                a.view(k, b, *shape), shape[-1:], None, None, NORM_EPS)
            normalized = normalized.view(k, b, w)
        torch.addcmul(s.shifts[i], normalized, s.gains[i], out=out)
        return normalized, mean, rstd

    def normalize_backward(self, i: int, s: Scratch, g: Tensor,
                           moments: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """From the gradient at layer i's normalized output to the one at its activation;
        the gain's and shift's gradients go into ``flat_grad`` on the way."""
        normalized, mean, rstd = moments
        k, b, w = g.shape
        gain_grad, shift_grad = s.gain_grads[i], s.shift_grads[i]
        torch.sum(g * normalized, dim=1, keepdim=True, out=gain_grad)
        torch.sum(g, dim=1, keepdim=True, out=shift_grad)
        if self.config.norm in ("batch", "syncbatch"):
            # Per feature over the batch: dx = gain/std * (g - (sum g + xhat * sum g xhat) / B)
            correction = torch.addcmul(shift_grad, normalized, gain_grad).div_(b)
            return g.sub_(correction).mul_(rstd * s.gains[i])
        shape = self.norm_shape()
        g = g.mul_(s.gains[i]).view(k, b, *shape)
        g = torch.ops.aten.native_layer_norm_backward(
            g, s.activated[i].view(k, b, *shape), shape[-1:], mean, rstd, None, None,
            [True, False, False])[0]
        return g.view(k, b, w)

    def activation_backward(self, g: Tensor, out: Tensor) -> Tensor:
        """The gradient at an activation's input from the one at its output ``out``."""
        name = self.config.activation
        if name == "relu":
            return torch.ops.aten.threshold_backward(g, out, 0.0)
        if name == "tanh":
            return g.mul_(1.0 - out.square())
        return g

    def normalize(self, i: int, z: Tensor, update_running: bool) -> Tensor:
        norm = self.config.norm
        if norm == "none":
            return z
        if norm == "layer":
            z = F.layer_norm(z, z.shape[-1:], eps=NORM_EPS)
        elif norm == "group":
            k, b, w = z.shape
            g = self.config.groups
            z = F.layer_norm(z.view(k, b, g, w // g), (w // g,), eps=NORM_EPS).view(k, b, w)
        else:
            z = self.batch_normalize(i, z, update_running)
        return z * getattr(self, f"norm_g{i}") + getattr(self, f"norm_b{i}")

    def batch_normalize(self, i: int, z: Tensor, update_running: bool) -> Tensor:
        """Per member, per feature over the batch; running averages in eval mode."""
        if not self.training:
            return (z - self.running_mean[i]) / torch.sqrt(self.running_var[i] + NORM_EPS)
        mean, var, count = self.batch_moments(z)
        if update_running:
            self.update_running_averages(i, mean, var, count)
        return (z - mean) / torch.sqrt(var + NORM_EPS)

    @torch.no_grad()
    def update_running_averages(self, i: int, mean: Tensor, var: Tensor, count: int) -> None:
        """Layer i's running averages move towards this batch's moments (the variance made
        unbiased), for members still training."""
        unbiased = var * (count / max(count - 1, 1))
        self.running_mean[i].lerp_(mean, BN_MOMENTUM * self.active)
        self.running_var[i].lerp_(unbiased, BN_MOMENTUM * self.active)

    def batch_moments(self, z: Tensor) -> tuple[Tensor, Tensor, int]:
        """Batch mean and biased variance [K, 1, W] and the batch size they cover. A
        distributed model overrides this to reduce across workers (SyncBatchNorm)."""
        mean, var = batch_mean_var(z)
        return mean, var, z.shape[1]

    def dropout_masks(self, batch: int) -> Tensor:
        """Fresh dropout masks for every hidden layer, [L - 1, K, B, width]: 0 with probability
        p, else 1 / (1 - p), per member (1 for members without dropout). One draw for all
        layers, into buffers kept per batch size (fixed addresses for a CUDA graph)."""
        if batch not in self.masks:
            shape = (self.depth - 1, self.members, batch, self.config.width)
            masks = torch.ones(shape, device=self.flat.device)
            drawn = masks  # where the random numbers go: only the members with dropout
            if self.dropout_members is not None:
                drawn = masks.new_empty((shape[0], len(self.dropout_members), *shape[2:]))
            self.masks[batch] = (masks, drawn)
        masks, drawn = self.masks[batch]
        ps = self.dropout_p if self.dropout_members is None else \
            self.dropout_p.index_select(0, self.dropout_members)
        torch.rand(drawn.shape, generator=self.dropout_generator, out=drawn)
        drawn.ge_(ps).div_(1.0 - ps)  # in place: keep with probability 1 - p, rescaled
        if drawn is not masks:
            masks.index_copy_(1, self.dropout_members, drawn)
        return masks


@dataclass
class Scratch:
    """The hand-written backward's buffers for one batch size, reused every step (so a CUDA
    graph sees fixed addresses), and the views it uses, made once: at 128 x 100, taking
    hundreds of views per step costs as much as the bias adds this layout saves."""

    inputs: list[Tensor]  # layer i's input [K, B, n_in (+ 1: a column of ones with biases)];
    # without biases the first is empty (x is read directly)
    outputs: list[Tensor]  # layer i's output [K, B, n_out]: a view of the next one's input
    hidden_outputs: Tensor  # the hidden outputs as one group [L - 1, K, B, width]
    params: list[Tensor]  # [W_i; b_i] [K, n_in (+ 1), n_out] in ``flat``
    weights_t: list[Tensor]  # W_i transposed [K, n_out, n_in]
    grads: list[Tensor]  # gradient of [W_i; b_i] in ``flat_grad``
    minus_one: Tensor  # [K, B, 1], subtracts the one-hot label from the softmax
    # With layer or group norm: each hidden layer's act(z W + b) before normalization, and the
    # norm's gain and shift [K, 1, width] (and their gradients), per hidden layer.
    activated: list[Tensor]
    gains: list[Tensor]
    shifts: list[Tensor]
    gain_grads: list[Tensor]
    shift_grads: list[Tensor]

    @classmethod
    def allocate(cls, model: StackedMLP, batch: int) -> Scratch:
        k, ones, dev = model.members, int(model.config.bias), model.flat.device
        hidden = torch.ones(model.depth - 1, k, batch, model.config.width + ones, device=dev)
        # Without biases the first layer reads x itself: no copy, no buffer.
        first = (torch.ones(k, batch, IN_FEATURES + 1, device=dev) if ones
                 else torch.empty(0, device=dev))
        inputs = [first, *hidden.unbind(0)]
        outputs = [z[..., : model.config.width] for z in inputs[1:]]
        outputs.append(torch.empty(k, batch, NUM_CLASSES, device=dev))
        linear = [blk for blk in model.blocks if blk.is_linear]
        normed = model.config.norm != "none"

        def norm_views(flat: Tensor, prefix: str) -> list[Tensor]:
            return [model.view(flat, blk) for blk in model.blocks if blk.name.startswith(prefix)]

        return cls(
            inputs=inputs,
            outputs=outputs,
            hidden_outputs=hidden[..., : model.config.width],
            params=[model.view(model.flat, blk) for blk in linear],
            weights_t=[model.view(model.flat, blk)[:, :n_in].transpose(1, 2)
                       for blk, (n_in, _) in zip(linear, model.widths, strict=True)],
            grads=[model.view(model.flat_grad, blk) for blk in linear],
            minus_one=torch.full((k, batch, 1), -1.0, device=dev),
            activated=[activated_buffer(model, batch) for _ in range(model.depth - 1)]
            if normed else [],
            gains=norm_views(model.flat, "norm_g"),
            shifts=norm_views(model.flat, "norm_b"),
            gain_grads=norm_views(model.flat_grad, "norm_g"),
            shift_grads=norm_views(model.flat_grad, "norm_b"),
        )


def activated_buffer(model: StackedMLP, batch: int) -> Tensor:
    """Where a normalized layer's act(z W + b) goes: [K, B, width]. For batch norm, a view
    with a spare column per row, like the unnormalized layers' outputs: the CPU's batched
    matrix product then gives a member the same bits alone or in a sweep (into a contiguous
    output, one member alone takes another kernel, which rounds differently). Layer and group
    norm keep it contiguous: their kernels would copy it, and group norm over a few features
    is ill-conditioned enough that autograd's rounding (contiguous) is the safer reference."""
    k, width, dev = model.members, model.config.width, model.flat.device
    if model.config.norm in ("batch", "syncbatch"):
        return torch.empty(k, batch, width + 1, device=dev)[..., :width]
    return torch.empty(k, batch, width, device=dev)


def batch_mean_var(z: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over the batch, [K, 1, W] from [K, B, W], in two passes (as
    exact as ``torch.var_mean``, which is 3-6x slower over this middle dimension on the CPU)."""
    mean = z.mean(dim=1, keepdim=True)
    centered = z - mean
    return mean, centered.square().mean(dim=1, keepdim=True)


def draw_weight(scheme: str, c: float, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """One member's W_i [n_in, n_out] with Var = c / n_in (zeros for the zero init)."""
    n_in = shape[0]
    std = (c / n_in) ** 0.5
    if scheme in ("normal", "kaiming"):
        return torch.randn(shape, generator=gen) * std
    if scheme == "uniform":
        bound = (3.0 ** 0.5) * std  # U(-a, a) has variance a^2 / 3
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound
    if scheme == "zeros":
        return torch.zeros(shape)
    raise ValueError(f"unknown init scheme {scheme!r}")


def member_seed(seed: int, stream: str) -> int:
    """Independent random streams per member and purpose, from one user seed."""
    salt = {"init": 1, "data": 2, "dropout": 3, "probe": 4}[stream]
    return (seed * 1_000_003 + salt) % (2**63 - 1)
