"""K independent deep MLPs of one shape, evaluated together with batched matrix products.

Every parameter of every member lives in one flat buffer, laid out as blocks of shape
[K, *shape]: one per Linear layer, [K, n_in + 1, n_out] with the bias as its last row, and one
per norm parameter and hidden layer. Each parameter (W_i, b_i, the norm's gain, ...) is an
``nn.Parameter`` viewing its part of a block, and its gradient the same part of a second flat
buffer. The optimizer and the per-layer statistics then work on whole buffers in a handful of
kernels, whatever the depth, and one member never touches another's numbers. With the bias as a
row, a column of ones after the inputs lets one matrix product compute z W + b, and one more
both gradients (the hand-written backward).

Placement follows the lecture: z_{i+1} = dropout(norm(act(z_i W_i + b_i))) for i < L, the last
layer linear; ``model.norm_position: pre`` puts the norm before the activation instead,
z_{i+1} = dropout(act(norm(z_i W_i + b_i))). ``model.weight_norm`` replaces each hidden
layer's W_i by a function of it (weight standardization). The activation, norms and init scheme
come from their registries (``initlab.activations``, ``initlab.norms``, ``initlab.inits``). A
single model is K = 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from initlab.activations import ACTIVATIONS
from initlab.config import ModelConfig
from initlab.inits import INITS
from initlab.norms import NORMS, WEIGHT_NORMS

# W_i and b_i are views of one block per layer (a member's bias row follows its weight rows),
# so not "dense": autograd warns, once, that accumulating into such a gradient may be slower.
# Measured: no slower than separate dense parameters; the accumulation lands in the views.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")

IN_FEATURES = 784
NUM_CLASSES = 10
LINEAR = "linear"  # the role of a Linear layer's block
UNIT = 0  # the hidden unit whose nonlinearity input a capture records (``Activity``)


@dataclass
class Activity:
    """What a forward pass leaves for the statistics (``initlab.stats``): the layer inputs
    Z_i as layer groups [G, K, B, n] (Z_1 = x), each hidden layer's activation output as groups
    [G, K, B, width] (after dropout where dropout follows it directly: no norm, or the norm
    first), and the input of hidden unit UNIT's nonlinearity in every hidden layer,
    [L - 1, K, B] (after the norm when it comes first)."""

    inputs: list[Tensor]
    activations: list[Tensor]
    unit_inputs: Tensor


class ActivityRecorder:
    """Collects an ``Activity`` during an autograd forward pass, layer by layer."""

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.activations: list[Tensor] = []
        self.units: list[Tensor] = []

    def activity(self) -> Activity:
        first = self.inputs[0]
        if not self.activations:  # one Linear layer: no hidden layer
            k, b = first.shape[:2]
            return Activity([first.detach().unsqueeze(0)], [first.new_zeros(0, k, b, 1)],
                            first.new_zeros(0, k, b))
        return Activity([z.detach().unsqueeze(0) for z in self.inputs],
                        [torch.stack([a.detach() for a in self.activations])],
                        torch.stack([u.detach() for u in self.units]))


@dataclass(frozen=True)
class Block:
    """One parameter block inside the flat buffer: elements [offset, offset + K * numel)."""

    name: str
    shape: tuple[int, ...]  # per member
    offset: int
    layer: int  # 0-based Linear layer it belongs to
    role: str  # LINEAR ([W_i; b_i]; the statistics are about its W_i rows) or a norm parameter

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


def parameter_layout(model: ModelConfig) -> list[tuple[str, tuple[int, ...], int, str]]:
    """(name, per-member shape, layer, role) of every parameter block, in buffer order. A
    member's parameters in this order (W_0, b_0, the norm's parameters of layer 0, W_1, ...)
    are its checkpoint vector."""
    norm_params = NORMS[model.norm].PARAMETERS
    layout: list[tuple[str, tuple[int, ...], int, str]] = []
    for i, (n_in, n_out) in enumerate(layer_widths(model)):
        layout.append((f"linear{i}", (n_in + int(model.bias), n_out), i, LINEAR))
        if i < model.depth - 1:
            layout += [(f"norm_{p}{i}", (1, n_out), i, p) for p in norm_params]
    return layout


def parameter_count(model: ModelConfig) -> int:
    """The number of parameters of one member (its checkpoint vector's length)."""
    total = 0
    for _, shape, _, _ in parameter_layout(model):
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


class StackedMLP(nn.Module):
    """K members of the same architecture; input [K, B, 784], logits [K, B, 10].

    ``process_group``: the processes that split each batch, for a norm that reduces over them
    (synchronized batch norm); None in one process."""

    def __init__(self, model: ModelConfig, members: int, device: torch.device | str = "cpu",
                 process_group: Any = None):
        super().__init__()
        self.config = model
        self.members = members
        self.depth = model.depth
        self.widths = layer_widths(model)
        self.act = ACTIVATIONS[model.activation]
        self.norm = NORMS[model.norm](members, model.width, model.depth - 1, model.groups,
                                      device, process_group)
        self.weight_norm = WEIGHT_NORMS[model.weight_norm]()  # of the hidden layers' W_i
        # The norm before the activation (with no norm, there is nothing to place).
        self.pre_norm = model.norm_position == "pre" and not self.norm.identity
        blocks, offset = [], 0
        for name, shape, layer, role in parameter_layout(model):
            block = Block(name, shape, offset, layer, role)
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
        # Each hidden layer's norm parameters as the norm takes them: name -> [K, 1, width].
        self.norm_params = [{p: getattr(self, f"norm_{p}{i}") for p in self.norm.PARAMETERS}
                            for i in range(self.depth - 1)]
        # Dropout probability per member, broadcast over [K, B, width].
        self.register_buffer("dropout_p", torch.zeros(members, 1, 1, device=device))
        # 1 while a member trains, 0 once stopped: its norm's running statistics freeze too.
        self.register_buffer("active", torch.ones(members, 1, 1, device=device))
        self.uses_dropout = False
        # One generator per member with dropout (CPU): a member's masks never depend on which
        # members share its stack, so a run is what its config gives, alone or in a sweep.
        self.dropout_generators: dict[int, torch.Generator] = {}  # member -> its generator
        self.dropout_seeds: dict[int, int] = {}  # member -> its generator's seed
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

    def member_buffers(self, k: int) -> dict[str, Tensor]:
        """Member k's slice of every buffer: the model's own are [K, ...], the norm's say
        their member axis."""
        axes = {f"norm.{name}": axis for name, axis in self.norm.member_axes().items()}
        return {name: buf.select(axes.get(name, 0), k) for name, buf in self.named_buffers()}

    def member_state(self, k: int) -> dict[str, Any]:
        """Member k's weights (``member_vector`` order) and buffers."""
        return {"params": self.member_vector(self.flat, k), "buffers": self.member_buffers(k)}

    @torch.no_grad()
    def load_member_state(self, k: int, state: dict[str, Any]) -> None:
        """The inverse of ``member_state``: a checkpoint's member into member k."""
        self.set_member_vector(self.flat, k, state["params"].to(self.flat.device))
        slices = self.member_buffers(k)
        for name, value in state["buffers"].items():
            slices[name].copy_(value)

    @torch.no_grad()
    def stop_member(self, k: int, zero: bool = False) -> None:
        """Freeze member k's running statistics; ``zero`` also clears its weights (a diverged
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
        return [flat.as_strided((count, self.members, n_in * n_out),
                                (spacing, first.numel, 1), first.offset)
                for first, count, spacing, (n_in, n_out) in self._weight_runs()]

    def weight_group_shapes(self) -> list[tuple[int, int]]:
        """The shape of one weight matrix of each of ``weight_groups``: (n_in, n_out) (the net
        computes x W)."""
        return [shape for _, _, _, shape in self._weight_runs()]

    def _weight_runs(self) -> list[tuple[Block, int, int, tuple[int, int]]]:
        """Runs of consecutive Linear layers of one shape, evenly spaced in the buffer: the
        first block, how many, the spacing and (n_in, n_out)."""
        blocks = [b for b in self.blocks if b.role == LINEAR]
        runs, i = [], 0
        while i < len(blocks):
            j = i + 1
            spacing = blocks[i + 1].offset - blocks[i].offset if i + 1 < len(blocks) else 0
            while (j < len(blocks) and blocks[j].shape == blocks[i].shape
                   and blocks[j].offset - blocks[j - 1].offset == spacing):
                j += 1
            runs.append((blocks[i], j - i, spacing, self.widths[blocks[i].layer]))
            i = j
        return runs

    def parameter_views(self, flat: Tensor) -> list[tuple[str, Tensor]]:
        """Each parameter's name and view of ``flat`` (or its gradient's of ``flat_grad``).
        W_i and b_i are separate views of their layer's block: autograd through slices of one
        block parameter would build and add a zero-padded block-sized gradient per slice."""
        views = []
        for block in self.blocks:
            view = self.view(flat, block)
            if block.role != LINEAR:
                views.append((block.name, view))
                continue
            n_in, i = self.widths[block.layer][0], block.layer
            views.append((f"w{i}", view[:, :n_in]))
            if self.config.bias:
                views.append((f"b{i}", view[:, n_in:]))
        return views

    def norm_views(self, flat: Tensor) -> list[dict[str, Tensor]]:
        """Each hidden layer's norm parameters (or their gradients) in ``flat``, by name."""
        views: list[dict[str, Tensor]] = [{} for _ in range(self.depth - 1)]
        for block in self.blocks:
            if block.role != LINEAR:
                views[block.layer][block.role] = self.view(flat, block)
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
        """W_i from each member's init scheme and c, drawn from the member's own generator so a
        member gets the same weights alone or in a sweep; biases 0; norm parameters at their
        initial values."""
        self.flat.zero_()
        for k, (scheme, c, seed) in enumerate(zip(schemes, cs, seeds, strict=True)):
            gen = torch.Generator().manual_seed(member_seed(seed, "init"))
            for block in self.blocks:
                member_view = self.view(self.flat, block)[k]
                if block.role == LINEAR:  # biases stay zero
                    shape = self.widths[block.layer]
                    member_view[: shape[0]].copy_(INITS[scheme].draw(c, shape, gen))
                else:
                    member_view.fill_(self.norm.PARAMETERS[block.role])
        self.norm.reset()

    def set_dropout(self, ps: Sequence[float], seeds: Sequence[int]) -> None:
        """Member k drops out with probability ``ps[k]``, its masks drawn from its own stream of
        the user seed ``seeds[k]``."""
        self.dropout_p.copy_(torch.tensor(ps, dtype=torch.float32).view(-1, 1, 1))
        self.uses_dropout = any(p > 0 for p in ps)
        # Masks are drawn for these members only: random numbers are most of dropout's cost
        # on the CPU, and a member without dropout needs none.
        dropping = [k for k, p in enumerate(ps) if p > 0]
        self.dropout_members = (None if len(dropping) == len(ps) else
                                torch.tensor(dropping, dtype=torch.long, device=self.flat.device))
        self.masks.clear()
        self.dropout_seeds = {k: member_seed(seeds[k], "dropout") for k in dropping}
        # On CUDA, the device's default generator (graph-capturable), seeded by the trainer.
        self.dropout_generators = ({k: torch.Generator().manual_seed(seed)
                                    for k, seed in self.dropout_seeds.items()}
                                   if self.flat.device.type == "cpu" else {})

    def reseed_dropout(self, offset: int) -> None:
        """Other dropout streams (each of several processes draws its own masks: rank r adds
        r to every member's seed, so rank 0 draws the single-process masks)."""
        for k, generator in self.dropout_generators.items():
            generator.manual_seed(self.dropout_seeds[k] + offset)
        if self.flat.device.type == "cuda" and self.dropout_seeds:
            torch.manual_seed(next(iter(self.dropout_seeds.values())) + offset)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: Tensor, recorder: ActivityRecorder | None = None,
                update_running: bool = True, use_dropout: bool = True) -> Tensor:
        """Logits [K, B, 10]; with a ``recorder``, what the statistics read of this pass
        (``Activity``)."""
        z = x
        last = self.depth - 1
        dropout = self.uses_dropout and use_dropout and self.training
        masks = self.dropout_masks(x.shape[1]) if dropout else None
        running_update = self.active if update_running else None
        for i in range(self.depth):
            if recorder is not None:
                recorder.inputs.append(z)  # never changed in place after this point
            # bmm then an in-place bias add: on the CPU, baddbmm first copies the broadcast
            # bias into its output, which costs more than the add.
            w = self.weight(i)
            if i < last and not self.weight_norm.identity:
                w = self.weight_norm.forward(w)
            z = torch.bmm(z, w)
            if self.config.bias:
                z = z.add_(self.bias(i))
            if i == last:
                break
            # forward, not __call__: no hook machinery per layer
            if self.pre_norm:
                z = self.norm.forward(i, z, self.norm_params[i], running_update)
            if recorder is not None:  # a copy: the activation below acts in place
                recorder.units.append(z[..., UNIT].clone())
            z = self.act.forward_(z)
            post_norm = not self.norm.identity and not self.pre_norm
            if recorder is not None and post_norm:  # never changed in place after this point
                recorder.activations.append(z)
            if post_norm:
                z = self.norm.forward(i, z, self.norm_params[i], running_update)
            if masks is not None:
                z = z * masks[i]
            if recorder is not None and not post_norm:  # the layer's output: after dropout
                recorder.activations.append(z)
        return z

    # -- hand-written backward ----------------------------------------------------------------
    def supports_manual_backward(self) -> bool:
        """Every net has a hand-written backward but one: when the activation comes last in a
        layer (no norm, or the norm before it), its derivative comes from its output, which
        dropout rescales, and tanh's cannot survive that."""
        if self.norm.identity or self.pre_norm:
            return not (self.uses_dropout and not self.act.survives_rescaling)
        return True

    @torch.no_grad()
    def manual_loss_and_grad(self, x: Tensor, y: Tensor, training: bool = True,
                             capture: bool = False) -> tuple[Tensor, Tensor, Activity]:
        """What autograd would give for the summed cross-entropy, in fewer, larger kernels:
        every layer's output goes straight into one preallocated buffer with a column of ones
        after it, so the bias costs nothing in either direction, the layer inputs are already
        laid out for one-kernel activation statistics, and each gradient is written (not
        accumulated: nothing to zero first) into ``flat_grad``.

        Batch norm normalizes with the batch's own moments, as in training mode; ``training``
        also applies dropout and moves its running averages (False: the probe).
        Returns the logits [K, B, 10], the loss per member [K], and what the statistics read
        (``Activity``; its unit inputs only with ``capture``). All of it lives in buffers the
        next call overwrites."""
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
        normed, pre = not self.norm.identity, self.pre_norm
        running_update = self.active if training else None
        saved = []  # what each hidden layer's norm keeps for its backward
        saved_weights = []  # what each hidden layer's weight norm keeps for its backward
        last = self.depth - 1
        for i in range(self.depth):
            out = s.outputs[i]
            if i == last:
                torch.bmm(inputs[i], s.params[i], out=out)
                break
            if s.normed_weights:  # [f(W_i); b_i] into the layer's own buffer
                n_in = self.widths[i][0]
                saved_weights.append(self.weight_norm.forward_into(
                    s.params[i][:, :n_in], s.normed_weights[i][:, :n_in]))
                s.normed_weights[i][:, n_in:].copy_(s.params[i][:, n_in:])
            # With a norm, its input goes into a buffer of its own (kept for its backward):
            # act(z W + b) normalized into out, or z W + b normalized into out, then act.
            torch.bmm(inputs[i], s.matrices[i], out=s.activated[i] if normed else out)
            if normed and not pre:
                if capture:
                    s.units[i].copy_(s.unit_sources[i])
                self.act.forward_(s.activated[i])
            if normed:
                saved.append(self.norm.forward_into(i, s.activated[i], out, s.norm_params[i],
                                                    running_update))
            if pre or not normed:
                if capture:
                    s.units[i].copy_(s.unit_sources[i])
                self.act.forward_(out)
            if masks is not None:
                out.mul_(masks[i])
        logp = torch.log_softmax(s.outputs[last], dim=-1)
        loss = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(dim=-1).neg_()
        # d(mean cross-entropy)/d logits = (softmax - one_hot) / B
        g = logp.exp_().scatter_add_(-1, y.unsqueeze(-1), s.minus_one).div_(b)
        for i in range(last, -1, -1):
            torch.bmm(inputs[i].transpose(1, 2), g, out=s.grads[i])
            if s.normed_weights and i < last:  # from the gradient at f(W_i) to the one at W_i
                self.weight_norm.backward(s.grads[i][:, : self.widths[i][0]], saved_weights[i])
            if i > 0:
                g = torch.bmm(g, s.weights_t[i])
                if masks is not None:
                    g.mul_(masks[i - 1])
                if pre or not normed:
                    g = self.act.backward(g, s.outputs[i - 1])
                if normed:
                    g = self.norm.backward(i - 1, g, s.activated[i - 1], saved[i - 1],
                                           s.norm_params[i - 1], s.norm_grads[i - 1])
                if normed and not pre:
                    g = self.act.backward(g, s.activated[i - 1])
        activity = Activity(
            inputs=[inputs[0][..., :IN_FEATURES].unsqueeze(0), s.hidden_outputs],
            activations=[s.activated_block if normed and not pre else s.hidden_outputs],
            unit_inputs=s.unit_inputs)
        return s.outputs[last], loss, activity

    def dropout_masks(self, batch: int) -> Tensor:
        """Fresh dropout masks for every hidden layer, [L - 1, K, B, width]: 0 with probability
        p, else 1 / (1 - p), per member (1 for members without dropout). Each member's masks
        for all layers are one draw from its own generator, into buffers laid out member-major
        and kept per batch size (fixed addresses for a CUDA graph); the result is a view."""
        if batch not in self.masks:
            shape = (self.members, self.depth - 1, batch, self.config.width)
            masks = torch.ones(shape, device=self.flat.device)
            drawn = masks  # where the random numbers go: only the members with dropout
            if self.dropout_members is not None:
                drawn = masks.new_empty((len(self.dropout_members), *shape[1:]))
            self.masks[batch] = (masks, drawn)
        masks, drawn = self.masks[batch]
        ps = self.dropout_p if self.dropout_members is None else \
            self.dropout_p.index_select(0, self.dropout_members)
        if self.dropout_generators:
            for j, generator in enumerate(self.dropout_generators.values()):
                torch.rand(drawn.shape[1:], generator=generator, out=drawn[j])
        else:  # CUDA: one draw from the default generator (masks depend on the stack there)
            torch.rand(drawn.shape, out=drawn)
        ps = ps.unsqueeze(1)  # [K, 1, 1, 1] against [K, L - 1, B, width]
        drawn.ge_(ps).div_(1.0 - ps)  # in place: keep with probability 1 - p, rescaled
        if drawn is not masks:
            masks.index_copy_(0, self.dropout_members, drawn)
        return masks.transpose(0, 1)


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
    # With a weight norm: [f(W_i); b_i] of each hidden layer, written each step (else empty)
    normed_weights: list[Tensor]
    matrices: list[Tensor]  # what layer i multiplies by: [f(W_i); b_i] or [W_i; b_i]
    weights_t: list[Tensor]  # that matrix's W part transposed [K, n_out, n_in]
    grads: list[Tensor]  # gradient of [W_i; b_i] in ``flat_grad``
    minus_one: Tensor  # [K, B, 1], subtracts the one-hot label from the softmax
    # With a norm: each hidden layer's input to the norm (one block and its layers), and the
    # norm's parameters [K, 1, width] (and their gradients) by name, per hidden layer.
    activated_block: Tensor
    activated: list[Tensor]
    norm_params: list[dict[str, Tensor]]
    norm_grads: list[dict[str, Tensor]]
    unit_inputs: Tensor  # [L - 1, K, B]: the input of unit UNIT's nonlinearity (see Activity)
    units: list[Tensor]  # its layers
    unit_sources: list[Tensor]  # where each layer's unit input is before the activation

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
        linear = [blk for blk in model.blocks if blk.role == LINEAR]
        layers = model.depth - 1 if not model.norm.identity else 0
        activated = model.norm.activated_buffers(layers, k, batch, dev)
        unit_inputs = torch.zeros(model.depth - 1, k, batch, device=dev)
        # The nonlinearity's input: in the norm's input buffer when the norm comes after it,
        # else in the layer's output (normalized there first when the norm comes before).
        before_act = activated if layers and not model.pre_norm else hidden
        params = [model.view(model.flat, blk) for blk in linear]
        normed_weights = ([] if model.weight_norm.identity else
                        [torch.empty_like(p) for p in params[:-1]])
        matrices = [*normed_weights, *params[len(normed_weights):]]
        return cls(
            inputs=inputs,
            outputs=outputs,
            hidden_outputs=hidden[..., : model.config.width],
            params=params,
            normed_weights=normed_weights,
            matrices=matrices,
            weights_t=[m[:, :n_in].transpose(1, 2)
                       for m, (n_in, _) in zip(matrices, model.widths, strict=True)],
            grads=[model.view(model.flat_grad, blk) for blk in linear],
            minus_one=torch.full((k, batch, 1), -1.0, device=dev),
            activated_block=activated,
            activated=list(activated.unbind(0)),
            norm_params=model.norm_views(model.flat),
            norm_grads=model.norm_views(model.flat_grad),
            unit_inputs=unit_inputs,
            units=list(unit_inputs.unbind(0)),
            unit_sources=list(before_act[..., UNIT].unbind(0)),
        )


def member_seed(seed: int, stream: str) -> int:
    """Independent random streams per member and purpose, from one user seed."""
    salt = {"init": 1, "data": 2, "dropout": 3, "probe": 4}[stream]
    return (seed * 1_000_003 + salt) % (2**63 - 1)
