"""``initlab.watch(model, "runs/name")``: initlab's per-layer instruments on any PyTorch model.

    with initlab.watch(model, "runs/my-cnn", every=10) as watch:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward(); opt.step(); opt.zero_grad()
            watch.step(loss)

Every weight-bearing layer (``LAYER_TYPES``: Linear, Conv1d/2d/3d, Embedding,
MultiheadAttention and the norm layers) is one entry of ``Watch.layers``, in the order of the
first forward pass. Step 1 and every ``every``-th step are captured: the activation statistics
of that step's first forward pass, the gradient its optimizer stepped with, its weights before
the step and the update between two ``watch.step`` calls (docs/watch.md says exactly what each
number is). The statistics are every entry of ``initlab.stats.LAYER_STATS`` whose tensors
watch has (``SIDES``), called on layer groups
(K = 1): each layer's output as a group of one, weights of one shape stacked as one group
(``WeightBucket``), so a model of repeated blocks costs a few kernels per shape, not per layer.
They stay on the device; the host copies each capture without waiting for it (a CUDA event
tells when it is there), and appends the records to the run directory every few seconds
(``WRITE_INTERVAL_S``) and on exit, as records built and judged by ``initlab.records``, the
trainer's way. Steps between captures run no statistic: the hooks see a flag and return.

The run directory is the one ``initlab run`` writes (runs.py), with a ``watch`` section in
config.yaml in place of the MLP's model and training sections.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

import initlab.stats as stats
from initlab.activations import ReLU, Tanh
from initlab.config import yaml_text
from initlab.errors import UsageError
from initlab.records import RunLog
from initlab.runs import (
    RunWriteError,
    RunWriter,
    check_output_parent,
    clean_number,
    create_unique_dir,
    run_summary,
)

WRITE_INTERVAL_S = 5.0  # records reach stats.jsonl at most this long after their capture
CARRIED_KEPT = 50  # summary.json keeps the carried-gradient norms of the last 50 captures


# -- which layers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerType:
    """A kind of layer watch instruments: its class, its weight (None: a norm layer without
    affine parameters), how many inputs each output unit sees, and the dimension of its output
    that holds the units (1: channels, -1: features) -- a dead unit is zero along all others."""

    module: type[nn.Module]
    weight: Callable[[Any], Tensor | None]
    fan_in: Callable[[Any], int]
    unit_dim: int = -1


def _weight(m: Any) -> Tensor | None:
    return m.weight


def _conv_fan_in(m: Any) -> int:
    return m.in_channels // m.groups * math.prod(m.kernel_size)


def _attention_weight(m: Any) -> Tensor | None:
    return m.in_proj_weight if m.in_proj_weight is not None else m.q_proj_weight


def _one(m: Any) -> int:
    return 1


def _recurrent_weight(m: Any) -> Tensor | None:
    return m.weight_hh_l0


def _hidden_size(m: Any) -> int:
    return m.hidden_size


_NORMS: list[tuple[type[nn.Module], int]] = [
    (nn.LayerNorm, -1), (nn.GroupNorm, 1), (nn.modules.batchnorm._BatchNorm, 1),
    (nn.modules.instancenorm._InstanceNorm, 1)]
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    _NORMS.append((nn.RMSNorm, -1))

LAYER_TYPES: tuple[LayerType, ...] = (
    LayerType(nn.Linear, _weight, lambda m: m.in_features),
    LayerType(nn.Conv1d, _weight, _conv_fan_in, 1),
    LayerType(nn.Conv2d, _weight, _conv_fan_in, 1),
    LayerType(nn.Conv3d, _weight, _conv_fan_in, 1),
    LayerType(nn.Embedding, _weight, _one),
    LayerType(nn.MultiheadAttention, _attention_weight, lambda m: m.embed_dim),
    # A recurrent layer by its first layer's hidden-to-hidden matrix (the recurrence itself);
    # its output is the sequence of hidden states (the first of what it returns).
    LayerType(nn.GRU, _recurrent_weight, _hidden_size),
    LayerType(nn.LSTM, _recurrent_weight, _hidden_size),
    LayerType(nn.RNN, _recurrent_weight, _hidden_size),
    *(LayerType(norm, _weight, _one, unit_dim) for norm, unit_dim in _NORMS),
)
# Activations whose output is never below zero: a unit is dead when it gives 0 throughout.
ZERO_FLOOR_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
# Their traits (``LayerStat.trait``) are ReLU's: units can die, and do not saturate.
ZERO_FLOOR_TRAITS = ReLU
# Bounded activations, whose units saturate (tanh's traits: they do not die), and the affine map
# that takes each one's range onto [-1, 1], where ``stats.saturated_fractions`` counts |y| > 0.99:
# sigmoid's 0.99 or 0.01 is tanh's 0.98 at z/2, a gradient under 1% of its largest either way.
SATURATING_ACTIVATIONS: dict[type[nn.Module], tuple[float, float]] = {
    nn.Tanh: (1.0, 0.0), nn.Hardtanh: (1.0, 0.0), nn.Softsign: (1.0, 0.0),
    nn.Sigmoid: (2.0, -1.0), nn.Hardsigmoid: (2.0, -1.0)}
SATURATING_TRAITS = Tanh
# Modules whose number in a model watch records (config.yaml's watch.modules): what diagnosis
# asks about a model beyond its weighted layers.
NOTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, *SATURATING_ACTIVATIONS,
    nn.Softmax, nn.LogSoftmax, nn.modules.dropout._DropoutNd)


@dataclass
class WatchedLayer:
    name: str  # the module's name in the model ("features.0")
    type: str  # its class name
    fan_in: int
    shape: list[int]  # its weight's shape ([] without a weight)
    module: nn.Module = field(repr=False)
    unit_dim: int = -1
    weight: int | None = None  # index into Watch.weights (layers may share one)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "fan_in": self.fan_in, "shape": self.shape}


def unwrap(model: nn.Module) -> nn.Module:
    """The user's own module inside torch.compile's and (Distributed)DataParallel's wrappers,
    whose names (``module.``, ``_orig_mod.``) would otherwise prefix every layer name."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def find_layers(root: nn.Module) -> list[WatchedLayer]:
    """Every module of a registered type, in the model's module order."""
    layers = []
    for name, module in root.named_modules():
        kind = next((t for t in LAYER_TYPES if isinstance(module, t.module)), None)
        if kind is None:
            continue
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            raise UsageError(f"initlab.watch: layer {name or type(module).__name__!r} "
                             f"({type(module).__name__}) has no weights before the model's "
                             f"first forward pass; run one batch through the model, then "
                             f"call initlab.watch")
        weight = kind.weight(module)
        layers.append(WatchedLayer(name or type(module).__name__, type(module).__name__,
                                   int(kind.fan_in(module)),
                                   [] if weight is None else list(weight.shape), module,
                                   kind.unit_dim))
    return layers


def writing_rank() -> bool:
    """Under torch.distributed only rank 0 records; the other ranks' watch does nothing."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


# -- tensors as layer groups -------------------------------------------------------------------
def _as_float(t: Tensor) -> Tensor:
    """float32 for half and bfloat16 tensors: a half-precision norm of a large tensor overflows."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def weight_group(t: Tensor) -> Tensor:
    """A weight (or its gradient, change, update) as a layer group of one: [1, 1, n]."""
    if t.is_sparse:  # a sparse Embedding's gradient: its stored rows
        t = t.coalesce().values()
    return _as_float(t.detach()).reshape(1, 1, -1)


def output_group(y: Tensor) -> Tensor:
    """A layer's output [B, ...] as a group of B examples: [1, 1, B, n]."""
    return _as_float(y.detach()).reshape(1, 1, y.shape[0] if y.dim() > 1 else 1, -1)


def unit_sums(y: Tensor, unit_dim: int) -> Tensor:
    """A zero-floor activation's output summed over everything but the batch and the units
    ([B, C, H, W] -> [B, C] for channels), as a group [1, 1, B, units]: a unit's sum over the
    batch is then 0 exactly when its output is 0 at every example and position."""
    y = _as_float(y.detach())
    if y.dim() > 2:
        rest = tuple(range(2, y.dim())) if unit_dim == 1 else tuple(range(1, y.dim() - 1))
        y = y.sum(dim=rest)
    return y.reshape(1, 1, y.shape[0] if y.dim() > 1 else 1, -1)


def first_tensor(output: Any) -> Tensor | None:
    """A layer's output tensor (MultiheadAttention returns (output, weights))."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, Tensor)), None)
    return None


# -- which statistics, measured where ----------------------------------------------------------
def watch_side(stat: stats.LayerStat) -> str | None:
    """Where watch measures a statistic of ``stats.LAYER_STATS``, by the tensors it reads:
    ``output``, a layer's output (handed over as ``inputs``, a group of one: the forward hook);
    ``activation``, the output of a zero-floor activation after it (as ``activations``, summed
    over the positions of a channel: all a dead unit needs); ``gradient``, the gradient an
    optimizer steps with; ``weight``, the weights before the step, their change from W(0) and
    the update. None: watch has no such tensor (a nonlinearity's input), or a statistic mixes
    sides."""
    reads = set(stat.reads)
    if reads <= {"inputs"}:
        return "output"
    if reads <= {"activations"}:
        return "activation"
    if reads <= {"grads"}:
        return "gradient"
    if stat.per_weight:
        return "weight"
    return None


SIDES = {key: side for key, stat in stats.LAYER_STATS.items()
         if (side := watch_side(stat)) is not None}


def side_keys(side: str) -> tuple[str, ...]:
    return tuple(key for key, where in SIDES.items() if where == side)


# -- captures on their way to the host, weights kept on the device ----------------------------
@dataclass
class Pending:
    """One record on its way to stats.jsonl: its host values, and (for a capture) the packed
    statistics being copied off the device, ``layout`` telling which value is whose and
    ``keys`` which statistics the capture measured."""

    step: int
    epoch: int | None
    scalars: dict[str, float | None]
    packed: Tensor | None = None
    event: Any = None  # a CUDA event, recorded after the copies were queued
    layout: list[tuple[str, list[int]]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # the scalars the packed tensor starts with
    keys: tuple[str, ...] = ()
    unjudged: tuple[str, ...] = ()  # see records.diverged

    def ready(self) -> bool:
        return self.event is None or self.event.query()


class WeightBucket:
    """The watched weights of one shape, dtype and device, kept as one block [G, 1, n] -- a
    layer group of G layers, the form ``initlab.stats`` takes -- so their statistics cost a few
    kernels per bucket, not per layer (a transformer's blocks repeat their shapes)."""

    def __init__(self, members: list[int], weights: Sequence[Tensor]):
        self.members = members  # indices into WatchedWeights.tensors
        self.shape = tuple(weights[0].shape)  # each member's: its statistics may read it
        self.initial = stack(weights)  # W(0)
        self.previous: Tensor | None = None  # the weights at the last watch.step
        self.scratch: Tensor | None = None  # float32: W - W(0), then the update

    def keep(self, weights: Sequence[Tensor]) -> None:
        if self.previous is None:
            self.previous = torch.empty_like(self.initial)
        stack(weights, out=self.previous)


def stack(weights: Sequence[Tensor], out: Tensor | None = None) -> Tensor:
    """Weights of one shape as a layer group [G, 1, n] (into ``out``: no allocation)."""
    rows = [w.detach().reshape(1, -1) for w in weights]
    if out is None:
        return torch.stack(rows)
    if out.dtype != rows[0].dtype:  # a float32 scratch block for half-precision weights
        return out.copy_(torch.stack(rows))
    return torch.stack(rows, out=out)


class WatchedWeights:
    """Each watched weight once (layers may share one), in buckets of one shape: their
    ``weight``-side statistics, their gradients as layer groups, which of them an optimizer
    holds."""

    def __init__(self, layers: Sequence[WatchedLayer]):
        self.tensors: list[Tensor] = []
        self.layers: list[list[int]] = []  # weight j -> the layers (indices) that use it
        index: dict[int, int] = {}
        for i, layer in enumerate(layers):
            kind = next(t for t in LAYER_TYPES if isinstance(layer.module, t.module))
            weight = kind.weight(layer.module)
            if weight is None:
                continue
            if id(weight) not in index:
                index[id(weight)] = len(self.tensors)
                self.tensors.append(weight)
                self.layers.append([])
            layer.weight = index[id(weight)]
            self.layers[layer.weight].append(i)
        by_kind: dict[tuple[Any, ...], list[int]] = {}
        for j, w in enumerate(self.tensors):
            by_kind.setdefault((tuple(w.shape), w.dtype, w.device), []).append(j)
        with torch.no_grad():
            self.buckets = [WeightBucket(members, [self.tensors[j] for j in members])
                            for members in by_kind.values()]
            # The weight statistics come out bucket by bucket: this order of the weights.
            self.order = [j for b in self.buckets for j in b.members]
            self.initial_norms = (stats.frobenius_norms([_as_float(b.initial)
                                                         for b in self.buckets])
                                  if self.tensors else None)
        self.bucket_of = {j: b for b in self.buckets for j in b.members}
        self.previous_is_initial = True
        self.by_optimizer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def keep(self) -> None:
        """The weights now: the next update is measured from here."""
        for bucket in self.buckets:
            bucket.keep([self.tensors[j] for j in bucket.members])
        self.previous_is_initial = False

    def measure(self, select: Callable[[stats.LayerStat], bool]) -> dict[str, Tensor]:
        """The ``weight``-side statistics ``select`` picks, of the weights before this step
        (those its forward pass used), their change from W(0) and the update since: [1, n]
        each, in ``order``, a few kernels per bucket. W - W(0) and then the update go
        through one float32 scratch block per bucket, made once: no allocation per capture."""
        befores = [b.initial if self.previous_is_initial or b.previous is None else b.previous
                   for b in self.buckets]
        for bucket, before in zip(self.buckets, befores, strict=True):
            if bucket.scratch is None:
                bucket.scratch = torch.empty_like(bucket.initial, dtype=torch.float32)
            torch.sub(before, bucket.initial, out=bucket.scratch)
        moved = [b.scratch for b in self.buckets]  # read as changes, then as updates
        tensors = stats.PassTensors(
            weights=[_as_float(w) for w in befores], changes=moved,
            initial_norms=self.initial_norms, updates=moved,
            weight_shapes=[b.shape for b in self.buckets])
        values = stats.compute(tensors, lambda s: SIDES.get(s.key) == "weight"
                               and not s.after_update and select(s))
        for bucket, before in zip(self.buckets, befores, strict=True):
            stack([self.tensors[j] for j in bucket.members], out=bucket.scratch)
            bucket.scratch.sub_(before)  # the changes were read above; now the update
        values.update(stats.compute(tensors, lambda s: SIDES.get(s.key) == "weight"
                                    and s.after_update and select(s)))
        return values

    def gradient_groups(self, grads: Sequence[tuple[int, Tensor]],
                        ) -> tuple[list[int], list[Tensor]]:
        """Gradients as layer groups, stacked by bucket (a sparse one alone)."""
        by_bucket: dict[int, list[tuple[int, Tensor]]] = {}
        idx: list[int] = []
        groups: list[Tensor] = []
        for j, g in grads:
            if g.is_sparse:
                idx.append(j)
                groups.append(weight_group(g))
            else:
                by_bucket.setdefault(id(self.bucket_of[j]), []).append((j, g))
        for members in by_bucket.values():
            idx += [j for j, _ in members]
            groups.append(_as_float(stack([g for _, g in members])))
        return idx, groups

    def of_optimizer(self, optimizer: torch.optim.Optimizer) -> list[int]:
        """Which watched weights an optimizer holds (looked up once per optimizer, again if
        its parameter groups change)."""
        groups = len(optimizer.param_groups)
        cached = self.by_optimizer.get(optimizer)
        if cached is None or cached[0] != groups:
            ids = {id(w): j for j, w in enumerate(self.tensors)}
            mine = [ids[id(p)] for g in optimizer.param_groups for p in g["params"]
                    if id(p) in ids]
            cached = (groups, sorted(set(mine)))
            self.by_optimizer[optimizer] = cached
        return cached[1]


class CaptureWindow:
    """What the hooks measure between two ``watch.step`` calls, while ``armed``: each layer's
    output-side statistics, the activation-side ones of a zero-floor activation after it, the
    gradient-side ones of the gradient an optimizer steps with (or, without one, as backward
    accumulated it); ``take`` adds the weight-side ones and packs the lot for the host."""

    def __init__(self, found: Sequence[WatchedLayer], weights: WatchedWeights,
                 device: torch.device, keys: tuple[str, ...]):
        self.found = found
        self.weights = weights
        self.device = device
        self.keys = keys  # the statistics this model allows (``SIDES``)
        self.armed = True  # step 1 is captured
        self.costly_due = True  # the next capture measures the costly statistics too
        # What the window measured: each layer output's per-example norms [1, 1, B] (its
        # statistics come from them at ``take``, all layers at once); key -> values [n], per
        # layer (or weight, or group).
        self.output_norms: dict[int, Tensor] = {}
        self.activation_values: dict[int, dict[str, Tensor]] = {}
        self.grads_from_optimizer: list[tuple[list[int], dict[str, Tensor]]] = []
        self.grads_accumulated: dict[int, dict[str, Tensor]] = {}
        self.last_layer: int | None = None  # the layer whose output a ReLU now sees
        self.forward_order: list[int] = []  # the layers as the first forward pass ran them
        self.order_settled = False  # the Watch has read ``forward_order``
        self.optimizer_seen = False
        self.handles: list[RemovableHandle] = []
        self.grad_handles: list[RemovableHandle] = []
        # What the first forward pass and step show about the training loop (config.yaml's
        # watch section): the input's and output's statistics, the optimizers' kind and rate,
        # which watched weights they hold.
        self.io_stats: dict[str, dict[str, Tensor]] = {}
        self.batch_size: int | None = None
        self.optimizers: list[dict[str, Any]] = []
        self.held: set[int] = set()
        # Per weight, in this window: the norm of what .grad held before the window's first
        # backward added to it, and of what that backward added (``carried_norms``).
        self.carried: dict[int, tuple[Tensor, Tensor]] = {}

    def register(self, root: nn.Module) -> None:
        self.handles.append(root.register_forward_pre_hook(self.forward_starts))
        self.handles.append(root.register_forward_hook(self.forward_ends))
        for i, layer in enumerate(self.found):
            self.handles.append(layer.module.register_forward_hook(self.layer_hook(i)))
        for module in root.modules():
            if isinstance(module, ZERO_FLOOR_ACTIVATIONS):
                self.handles.append(module.register_forward_hook(self.activation_hook))
            elif type(module) in SATURATING_ACTIVATIONS:
                self.handles.append(module.register_forward_hook(self.saturation_hook))
        self.handles += [weight.register_hook(self.fresh_grad_hook(j))
                         for j, weight in enumerate(self.weights.tensors)
                         if weight.requires_grad and weight.is_leaf]
        self.grad_handles = [weight.register_post_accumulate_grad_hook(self.grad_hook(j))
                             for j, weight in enumerate(self.weights.tensors)
                             if weight.requires_grad and weight.is_leaf]
        self.handles += self.grad_handles
        self.handles.append(register_optimizer_step_pre_hook(self.optimizer_hook))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def forward_starts(self, module: nn.Module, args: Any) -> None:
        self.last_layer = None
        if self.armed and "inputs" not in self.io_stats:
            x = first_tensor(args)
            if x is not None and x.dim() >= 1:
                self.batch_size = int(x.shape[0])
                if x.is_floating_point() and x.numel():
                    self.io_stats["inputs"] = value_summary(x)

    def forward_ends(self, module: nn.Module, args: Any, output: Any) -> None:
        """The model's output in the first forward pass: its range, and its rows' sums (1 for
        probabilities)."""
        y = first_tensor(output)
        if not self.armed or "outputs" in self.io_stats or y is None \
                or not y.is_floating_point() or y.numel() == 0:
            return
        summary = value_summary(y)
        if y.dim() >= 2:
            sums = _as_float(y.detach()).sum(dim=-1)
            summary.update(columns=torch.tensor(float(y.shape[-1])),
                           row_sum_min=sums.min(), row_sum_max=sums.max())
        self.io_stats["outputs"] = summary

    def measure(self, side: str, tensors: stats.PassTensors,
                traits: object | None = None) -> dict[str, Tensor]:
        """This side's statistics of ``tensors`` (the costly ones only when due; with
        ``traits``, an activation's, only those that mean something for it), each [n] on the
        watch's device."""
        values = stats.compute(tensors, lambda s: s.key in self.keys and SIDES[s.key] == side
                               and (self.costly_due or not s.costly)
                               and (traits is None or s.applies_to(traits)))
        return {key: v.reshape(-1).to(self.device, non_blocking=True)
                for key, v in values.items()}

    def output_measures(self, keys: Sequence[str]) -> list[tuple[str, list[int], Tensor]]:
        """The output side's statistics among ``keys`` of every layer this window saw, from
        their examples' norms, the layers of one batch size stacked: a few kernels per capture,
        not a few per layer. (key, layers, values [n]) each."""
        by_shape: dict[tuple[Any, ...], list[int]] = {}
        for i, norms in self.output_norms.items():
            by_shape.setdefault((tuple(norms.shape), norms.device), []).append(i)
        if not by_shape:
            return []
        layers = [i for group in by_shape.values() for i in group]
        groups = [torch.cat([self.output_norms[i] for i in group]) for group in by_shape.values()]
        values = self.measure("output", stats.PassTensors(input_norms=groups))
        return [(key, layers, v) for key, v in values.items() if key in keys]

    def layer_hook(self, i: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self.armed:
                return
            if not self.order_settled and i not in self.forward_order:
                self.forward_order.append(i)
            self.last_layer = i
            y = first_tensor(output)
            if i in self.output_norms or y is None or not y.is_floating_point() \
                    or y.numel() == 0:
                return  # the window's first forward pass counts
            self.output_norms[i] = stats.example_norms([output_group(y)])[0]

        return hook

    def activation_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        """A ReLU's output: the dead units of the layer before it."""
        i = self.last_layer
        if not self.armed or i is None or i in self.activation_values \
                or not isinstance(output, Tensor) or output.numel() == 0:
            return
        self.activation_values[i] = self.measure("activation", stats.PassTensors(
            activations=[unit_sums(output, self.found[i].unit_dim)]))

    def saturation_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        """A bounded activation's output: the saturated units of the layer before it, its range
        mapped onto [-1, 1]."""
        i = self.last_layer
        if not self.armed or i is None or i in self.activation_values \
                or not isinstance(output, Tensor) or output.numel() == 0:
            return
        scale, shift = SATURATING_ACTIVATIONS[type(module)]
        y = output_group(output)
        if scale != 1.0:
            y = y * scale + shift
        self.activation_values[i] = self.measure(
            "activation", stats.PassTensors(activations=[y]), traits=SATURATING_TRAITS)

    def fresh_grad_hook(self, j: int) -> Callable[[Tensor], None]:
        """The gradient a backward pass is about to add to .grad: at the window's first
        backward, .grad should hold nothing the optimizer has already stepped with (it was
        zeroed after the last step, or is None); what it still holds is carried over."""
        def hook(grad: Tensor) -> None:
            if not self.armed or j in self.carried:
                return
            weight = self.weights.tensors[j]
            old = weight.grad
            fresh = torch.linalg.vector_norm(_as_float(grad.detach())) if not grad.is_sparse \
                else torch.linalg.vector_norm(grad.coalesce().values().float())
            carried = torch.zeros((), device=fresh.device) if old is None or old.is_sparse \
                else torch.linalg.vector_norm(_as_float(old.detach()))
            self.carried[j] = (carried, fresh)

        return hook

    def carried_norms(self) -> Tensor | None:
        """[2]: ‖what .grad carried into this window‖ and ‖what its first backward added‖, over
        the watched weights an optimizer holds (None when no backward ran)."""
        # Only weights an optimizer steps: a gradient piling up where nothing steps is harmless.
        kept = [p for j, p in self.carried.items() if not self.optimizers or j in self.held]
        if not kept:
            return None
        pairs = torch.stack([torch.stack(p).to(self.device) for p in kept])
        return pairs.square().sum(dim=0).sqrt()

    def grad_hook(self, j: int) -> Callable[[Tensor], None]:
        """The gradient as accumulated into .grad: used only where no torch.optim optimizer
        steps these weights (under DDP it is this rank's, under GradScaler a scaled one)."""
        def hook(weight: Tensor) -> None:
            if self.armed and not self.optimizer_seen and weight.grad is not None:
                self.grads_accumulated[j] = self.measure(
                    "gradient", stats.PassTensors(grads=[weight_group(weight.grad)]))

        return hook

    def optimizer_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """The gradient an optimizer steps with: averaged over DDP's ranks, unscaled by
        GradScaler, clipped if the user clips. (A global hook: it sees every optimizer.)"""
        if not self.armed:
            return
        if not self.order_settled:  # the first step: what optimizes what, at which rate
            held = self.weights.of_optimizer(optimizer)
            self.held.update(held)
            rate = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
            self.optimizers.append({"type": type(optimizer).__name__,
                                    "lr": float(rate) if rate is not None else None})
        grads = [(j, self.weights.tensors[j].grad) for j in self.weights.of_optimizer(optimizer)]
        grads = [(j, g) for j, g in grads if g is not None]
        if not grads:
            return
        if not self.optimizer_seen:  # the backward pass's own gradient is not needed now
            self.optimizer_seen = True
            for handle in self.grad_handles:
                handle.remove()
        idx, groups = self.weights.gradient_groups(grads)
        self.grads_from_optimizer.append(
            (idx, self.measure("gradient", stats.PassTensors(grads=groups))))

    def take(self, pending: Pending, loss: Tensor | None, loss_sum: Tensor | None) -> Pending:
        """This window's statistics, packed into one device tensor whose copy to the host is
        queued without waiting; the window's tensors are let go. The ``costly`` statistics
        only in the first capture and the first of each new epoch."""
        full = self.costly_due
        pending.keys = tuple(k for k in self.keys if full or not stats.LAYER_STATS[k].costly)
        parts = self.output_measures(pending.keys)
        self.costly_due = False
        per_one = [self.activation_values]  # one value per layer
        if not self.grads_from_optimizer and not self.optimizer_seen:
            per_one.append(self.grads_accumulated)  # one per weight
            # As backward left it: GradScaler may have scaled it (and then skip the step).
            pending.unjudged = tuple(k for k in pending.keys if SIDES[k] == "gradient")
        for measured in per_one:
            for key in pending.keys:
                have = [i for i, values in measured.items() if key in values]
                if have:
                    parts.append((key, have, torch.cat([measured[i][key] for i in have])))
        parts += [(key, idx, v) for idx, values in self.grads_from_optimizer
                  for key, v in values.items() if key in pending.keys]
        if self.weights.tensors:
            parts += [(key, self.weights.order, v.reshape(-1).to(self.device))
                      for key, v in self.weights.measure(
                          lambda s: s.key in pending.keys).items()]
        pending.layout = [(key, idx) for key, idx, _ in parts]
        values = []
        if loss is not None:
            pending.names.append("loss")
            values.append(loss.detach().float().reshape(-1)[:1].to(self.device))
        if loss_sum is not None:
            pending.names.append("loss_sum")
            values.append(loss_sum.reshape(1).to(self.device))
        carried = self.carried_norms()
        if carried is not None:
            pending.names += ["carried_grad", "fresh_grad"]
            values.append(carried)
        values += [t.reshape(-1) for _, _, t in parts]
        if values:
            pending.packed = torch.cat(values)
        if self.device.type == "cuda":
            pending.packed = to_host(pending.packed)
            pending.event = torch.cuda.Event()
            pending.event.record()
        self.output_norms = {}
        self.activation_values = {}
        self.grads_from_optimizer = []
        self.grads_accumulated = {}
        self.carried = {}
        return pending


class Watch:
    """The instruments on one model and the run directory they write (``initlab.watch``):
    hooks that measure a capture window, the captures' way to the host, the run's records."""

    def __init__(self, model: nn.Module, out: str | Path, every: int = 10):
        if not isinstance(model, nn.Module):
            raise UsageError(f"initlab.watch: model must be a torch.nn.Module, got "
                             f"{type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UsageError(f"initlab.watch: every must be a positive integer, got {every!r}")
        root = unwrap(model)
        self.every = every
        self.model_name = type(root).__name__
        # Module order (hooks and weights index it); ``layers``: forward order once known.
        self.found = find_layers(root)
        self.layers = list(self.found)
        if not self.found:
            raise UsageError(f"initlab.watch: {self.model_name} has no layer to watch (Linear, "
                             "Conv1d/2d/3d, Embedding, MultiheadAttention or a norm layer)")
        self.steps = 0  # watch.step() calls so far
        self.path: Path | None = None
        self.active = writing_rank()
        if not self.active:
            return
        out = Path(out)
        check_output_parent(out.parent)  # before anything is copied or created
        self.weights = WatchedWeights(self.found)
        self.device = (self.weights.tensors[0].device if self.weights.tensors
                       else next((p.device for p in root.parameters()), torch.device("cpu")))
        has_relu = any(isinstance(m, ZERO_FLOOR_ACTIVATIONS) for m in root.modules())
        saturates = any(type(m) in SATURATING_ACTIVATIONS for m in root.modules())
        self.modules, self.dropout = noted_modules(root)
        keys = tuple(k for k, side in SIDES.items() if side != "activation"
                     or (has_relu and stats.LAYER_STATS[k].applies_to(ZERO_FLOOR_TRAITS))
                     or (saturates and stats.LAYER_STATS[k].applies_to(SATURATING_TRAITS)))
        # The current capture window (from the last watch.step to the next).
        self.window = CaptureWindow(self.found, self.weights, self.device, keys)
        # Bookkeeping on the host.
        self.pending: list[Pending] = []
        self.loss_sum: Tensor | None = None  # on the device: not finite once a loss was not
        self.diverged_step: int | None = None
        self.epoch: int | None = None
        self.test_error: float | None = None
        self.carried_grads: list[list[float]] = []  # [step, carried, fresh] per capture
        self.status = "running"
        self.started = time.perf_counter()
        self.started_at = time.time()  # for run_summary's metadata (start time, versions)
        self.last_write = self.started
        self.config_written = False
        self.path = create_unique_dir(out.parent, out.name)
        self.log = RunLog(RunWriter(self.path))  # records read, not yet written
        self.log.flush(self.summary())
        self.window.register(root)

    # -- steps --------------------------------------------------------------------------------
    def captures(self, step: int) -> bool:
        """Step 1 (the initialization) and every ``every``-th step are captured."""
        return step == 1 or step % self.every == 0

    def step(self, loss: Tensor | float | None = None, *, epoch: int | None = None,
             train_error: float | Tensor | None = None,
             test_error: float | Tensor | None = None) -> None:
        """Call once per training step, after the optimizer's step: ``loss`` of this step (a
        tensor stays on the device), and optionally the epoch and error rates to record."""
        self.steps += 1
        if not self.active:
            return
        n = self.steps
        if epoch is not None:
            epoch = int(epoch)  # (a numpy integer is no JSON number)
            self.window.costly_due = self.window.costly_due or epoch != self.epoch
            self.epoch = epoch
        scalars = {"train_error": host_number(train_error), "test_error": host_number(test_error)}
        test = scalars["test_error"]
        if test is not None and math.isfinite(test):
            self.test_error = test
        with torch.no_grad():
            device_loss = self.track_loss(loss, n)
            if not device_loss and loss is not None:
                scalars["loss"] = float(loss)
            if self.window.armed:
                if not self.window.order_settled:
                    self.settle_order()
                self.pending.append(self.window.take(Pending(n, self.epoch, scalars),
                                                     loss if device_loss else None,
                                                     self.loss_sum))
            elif train_error is not None or test_error is not None:
                if device_loss:
                    scalars["loss"] = float(loss)  # a sync the user asked for
                self.pending.append(Pending(n, self.epoch, scalars))
            self.window.armed = self.captures(n + 1)
            if self.window.armed and self.weights.tensors:  # the next update is measured from here
                self.weights.keep()
        self.read_ready()
        if self.log.pending and time.perf_counter() - self.last_write >= WRITE_INTERVAL_S:
            self.write()

    def evaluate(self, test_error: float | Tensor | None = None, *,
                 train_error: float | Tensor | None = None, epoch: int | None = None) -> None:
        """Record an evaluation of the model as it is now, without counting a training step:
        the errors go into the record of the last ``watch.step`` (one of its own when that
        step was not captured; before any step, a record at step 0: the initialization)."""
        if not self.active:
            return
        if epoch is not None:
            self.epoch = int(epoch)
        scalars = {"train_error": host_number(train_error), "test_error": host_number(test_error)}
        test = scalars["test_error"]
        if test is not None and math.isfinite(test):
            self.test_error = test
        given = {k: v for k, v in scalars.items() if v is not None}
        n = self.steps
        if self.pending and self.pending[-1].step == n:  # a capture still on its way
            self.pending[-1].scalars.update(given)
        elif self.log.pending and self.log.pending[-1]["step"] == n:  # read, not yet written
            self.log.pending[-1].update({k: clean_number(v) for k, v in given.items()})
        elif given:
            self.pending.append(Pending(n, self.epoch, scalars))
        self.read_ready()

    def track_loss(self, loss: Tensor | float | None, step: int) -> bool:
        """Notice a loss that is not finite: on the host for a number; for a tensor, by adding
        it to a sum on the device (one kernel, no sync), which stays NaN or infinite from then
        on and is read with the next capture. Returns whether ``loss`` is a tensor."""
        if not isinstance(loss, Tensor):
            if loss is not None and not math.isfinite(float(loss)):
                self.diverged(step)
            return False
        loss = loss.detach()
        if self.loss_sum is None:
            self.loss_sum = torch.zeros((), dtype=torch.float32, device=loss.device)
        self.loss_sum.add_(loss if loss.dim() == 0 else loss.sum())
        return True

    def diverged(self, step: int) -> None:
        if self.diverged_step is None or step < self.diverged_step:
            self.diverged_step = step

    def settle_order(self) -> None:
        """Order the layers as the first forward pass ran them; a layer that did not run
        (MultiheadAttention's out_proj, whose weight its parent uses directly) follows the
        module before it."""
        ran = set(self.window.forward_order)
        order = list(self.window.forward_order)
        for i in range(len(self.found)):
            if i in ran:
                continue
            before = max((j for j in range(i) if j in order), default=None)
            order.insert(0 if before is None else order.index(before) + 1, i)
        self.position = {i: p for p, i in enumerate(order)}
        self.layer_targets = [[i] for i in range(len(self.found))]
        self.layers = [self.found[i] for i in order]
        self.window.order_settled = True
        self.write_config(self.layers)

    def write_config(self, layers: Sequence[WatchedLayer]) -> None:
        window = self.window
        described = [layer.config() for layer in layers]
        if window.optimizers:  # whether an optimizer held each layer's weight at the first step
            for entry, layer in zip(described, layers, strict=True):
                if layer.weight is not None:
                    entry["optimized"] = layer.weight in window.held
        section: dict[str, Any] = {"model": self.model_name, "every": self.every,
                                   "layers": described}
        # What the first forward pass and step showed (docs/watch.md: "The training loop"):
        # the setup here; the input's and output's values, measurements, go to summary.json
        # (one host read, at the first watch.step, of a few numbers).
        if window.batch_size is not None:
            section["batch_size"] = window.batch_size
        self.measured = {key: {k: round_number(float(v)) for k, v in values.items()}
                         for key, values in window.io_stats.items()}
        if self.modules:
            section["modules"] = self.modules
        if self.dropout:
            section["dropout"] = self.dropout
        if window.optimizers:
            section["optimizers"] = window.optimizers
        config = {"name": self.path.name if self.path else "watch", "watch": section}
        try:
            self.log.writer.write_config(yaml_text(config, flow=None))
        except RunWriteError as err:
            self.broken(err)
        self.config_written = True

    # -- host side ----------------------------------------------------------------------------
    def read_ready(self, wait: bool = False) -> None:
        """Turn the captures whose copies have arrived (all of them with ``wait``) into
        records, in step order."""
        while self.pending and (wait or self.pending[0].ready()):
            item = self.pending.pop(0)
            if item.event is not None:
                item.event.synchronize()
            self.add_record(item)

    def add_record(self, item: Pending) -> None:
        """A capture's values, in the layers' forward order, as a record of ``self.log``
        (``initlab.records``: the trainer's records and divergence rule)."""
        values = [] if item.packed is None else item.packed.tolist()
        scalars = dict(item.scalars)
        carried: dict[str, float] = {}
        for name, value in zip(item.names, values, strict=False):
            if name == "loss":
                scalars["loss"] = value
            elif name in ("carried_grad", "fresh_grad"):
                carried[name] = value
            elif not math.isfinite(value):  # the loss sum: a loss since the last capture
                self.diverged(item.step)
        if len(carried) == 2 and item.step > 1:
            self.carried_grads = (self.carried_grads + [[
                item.step, round_number(carried["carried_grad"]),
                round_number(carried["fresh_grad"])]])[-CARRIED_KEPT:]
        offset = len(item.names)
        lists: dict[str, list[float | None]] = {key: [None] * len(self.layers)
                                                for key in item.keys}
        for key, idx in item.layout:
            chunk = values[offset:offset + len(idx)]
            offset += len(idx)
            per_weight = SIDES[key] in ("gradient", "weight")
            for j, value in zip(idx, chunk, strict=True):
                for i in (self.weights.layers[j] if per_weight else self.layer_targets[j]):
                    lists[key][self.position[i]] = value
        self.log.add(item.step, item.epoch, "train", scalars, lists, item.unjudged)
        if self.log.diverged_at is not None:
            self.diverged(self.log.diverged_at)

    def write(self) -> None:
        """Append the records read so far and rewrite summary.json."""
        self.last_write = time.perf_counter()
        if not self.active:
            return
        try:
            self.log.flush(self.summary())
        except RunWriteError as err:
            self.broken(err)

    def remove_hooks(self) -> None:
        if hasattr(self, "window"):  # (a non-writing rank never made one)
            self.window.remove()

    def broken(self, err: RunWriteError) -> None:
        """The run directory cannot be written (disk full...): say so once and stop watching;
        the training goes on."""
        warnings.warn(f"initlab.watch stops recording: {err}", stacklevel=3)
        self.active = False
        self.remove_hooks()

    def summary(self) -> dict[str, Any]:
        status = "diverged" if self.diverged_step is not None and self.status != "running" \
            else self.status
        summary = run_summary(status, steps=self.steps, epochs=self.epoch or 0,
                              final_test_error=self.test_error, diverged_step=self.diverged_step,
                              wall_seconds=round(time.perf_counter() - self.started, 3),
                              device=str(self.device), threads=torch.get_num_threads(),
                              started_at=self.started_at)
        measured = dict(getattr(self, "measured", {}))  # the first forward's input and output
        if getattr(self, "carried_grads", None):
            # Per capture after the first: [step, ‖.grad before the window's first backward‖,
            # ‖what that backward added‖] over the optimized weights (the last CARRIED_KEPT).
            measured["carried_gradients"] = self.carried_grads
        if measured:
            summary["watch"] = measured
        return summary

    def close(self, status: str = "completed") -> None:
        """Remove every hook, write what is pending and the final summary (also after an
        exception, with ``status="interrupted"``). Closing twice does nothing."""
        self.remove_hooks()
        if not self.active or self.status != "running":
            return
        if not self.config_written:
            self.write_config(self.layers)
        self.read_ready(wait=True)
        if self.loss_sum is not None and not math.isfinite(self.loss_sum.item()):
            self.diverged(self.steps)  # after the last capture (an earlier one comes first)
        self.status = status
        self.write()
        self.log.writer.close()  # its summary is final: readers no longer see it running
        if self.active and status == "completed":  # diverged, stalled or trained badly: say so
            from initlab.diagnosis import print_top_finding

            print_top_finding(self.path)  # type: ignore[arg-type]

    def __enter__(self) -> Watch:
        if getattr(self, "status", "running") != "running":  # closed: it would record nothing
            raise UsageError(f"initlab.watch: this watch of {self.path} is closed; start a "
                             f"new one with initlab.watch(model, ...)")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: Any) -> None:
        self.close("completed" if kind is None else "interrupted")


def to_host(t: Tensor | None) -> Tensor | None:
    """A copy in pinned host memory that the device fills when it gets there: queued, not
    waited for."""
    if t is None:
        return None
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)


def host_number(x: float | Tensor | None) -> float | None:
    return None if x is None else float(x)


def round_number(x: float) -> float | None:
    """A number for config.yaml or summary.json: 6 significant digits, None when not finite."""
    return float(f"{x:.6g}") if math.isfinite(x) else None


def value_summary(t: Tensor) -> dict[str, Tensor]:
    """A tensor's range and size on the device: mean, standard deviation, min, max, and the
    root mean square of its entries."""
    t = _as_float(t.detach())
    std, mean = torch.std_mean(t, correction=0)
    return {"mean": mean, "std": std, "min": t.min(), "max": t.max(),
            "rms": t.square().mean().sqrt()}


def noted_modules(root: nn.Module) -> tuple[dict[str, int], list[float]]:
    """How many modules of each ``NOTED_MODULES`` type the model has, and each dropout's rate
    in module order."""
    counts: dict[str, int] = {}
    rates: list[float] = []
    for module in root.modules():
        if isinstance(module, NOTED_MODULES):
            name = type(module).__name__
            counts[name] = counts.get(name, 0) + 1
            if isinstance(module, nn.modules.dropout._DropoutNd):
                rates.append(float(module.p))
    return counts, rates


def watch(model: nn.Module, out: str | Path, every: int = 10) -> Watch:
    """Instrument ``model`` and record into the run directory ``out`` (``runs/my-cnn``; taken
    already: ``runs/my-cnn-2``): per layer in forward order, the activation norm and dead
    units of step 1 and every ``every``-th step, the gradient norm, n·Var(W), the relative
    change from W(0) and the update ratio. Use it as a context manager and call
    ``watch.step(loss)`` once per step after the optimizer's; see docs/watch.md."""
    return Watch(model, out, every)
