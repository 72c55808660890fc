"""Per-layer statistics as plain functions of tensors. Nothing here syncs with the host.

Shapes: K members, L layers, B examples. The statistics take "layer groups": tensors holding
G consecutive layers of every member at once -- weights as [G, K, n] (entries flattened; the
matrix shape of a group's layers travels beside it, see ``matrix_groups``), layer inputs as
[G, K, B, n] -- so a 50-layer net costs a few kernels, not a few per layer. ``layer_groups``
turns a list of per-layer weights into that form.

``LAYER_STATS`` is the one list of the per-layer statistics a run records: each entry names a
record key, how plots label it, which tensors of a pass it reads and the function that
computes it from them. ``initlab run`` (train.py) and ``initlab.watch`` (watching.py) both
compute every entry whose tensors they have (and whose ``trait``, if any, the net's activation
has), build their records with ``initlab.records`` and judge divergence by its ``diverges``
flags; plots, ``export`` and ``load_run`` read the registry too. Adding a statistic is one
function here and one line there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor


def example_norms(input_groups: Sequence[Tensor]) -> list[Tensor]:
    """Each example's ||Z_i||_2: [G, K, B] per group of layer inputs [G, K, B, n]."""
    return [torch.linalg.vector_norm(g, dim=-1) for g in input_groups]


def activation_norms(input_groups: Sequence[Tensor],
                     norms: Sequence[Tensor] | None = None) -> Tensor:
    """Mean over the batch of the per-example ||Z_i||_2, per member and layer: [K, L] from
    groups of layer inputs [G, K, B, n] (or their ``example_norms``)."""
    norms = example_norms(input_groups) if norms is None else norms
    return torch.cat([n.mean(dim=-1) for n in norms], dim=0).T


def norm_spreads(input_groups: Sequence[Tensor],
                 norms: Sequence[Tensor] | None = None) -> Tensor:
    """How much the examples' norms ||Z_i||_2 differ: their coefficient of variation over the
    batch (standard deviation / mean), per member and layer: [K, L]. Layer norm makes it ~0
    at every hidden layer (every example gets the same norm); batch norm keeps it."""
    norms = example_norms(input_groups) if norms is None else norms
    return torch.cat([torch.std_mean(n, dim=-1, correction=0)[0] / n.mean(dim=-1)
                      for n in norms], dim=0).T


def layer_groups(per_layer: Sequence[Tensor]) -> list[Tensor]:
    """Per-layer weights [K, ...] as layer groups [1, K, n], the form the weight statistics
    take. (The trainer passes ``StackedMLP.weight_groups`` views, which cover many layers.)"""
    return [t.reshape(1, t.shape[0], -1) for t in per_layer]


def matrix_groups(groups: Sequence[Tensor], shapes: Sequence[Sequence[int]]) -> list[Tensor]:
    """Weight groups [G, K, n] as matrices [G, K, rows, columns], given each group's weight
    shape: its first dimension by all the others (a convolution's [out, in, kh, kw] is
    [out, in * kh * kw]); a vector of n entries (a norm layer's gain) is a 1 x n matrix. Views,
    no copy: a group's entries are contiguous within each layer."""
    matrices = []
    for g, shape in zip(groups, shapes, strict=True):
        rows = shape[0] if len(shape) > 1 else 1
        matrices.append(g.unflatten(-1, (rows, math.prod(shape) // rows)))
    return matrices


def effective_ranks(matrices: Sequence[Tensor]) -> Tensor:
    """The effective rank of each weight matrix (Roy & Vetterli 2007): exp of the entropy of
    its singular values normalized to sum 1 -- min(rows, columns) for a matrix whose singular
    values are all equal, 1 for a rank-one matrix: [K, L] from groups [G, K, rows, columns].
    NaN for a zero matrix (no direction at all). One SVD per matrix: far more than a step of the
    lecture's net costs, so its ``LayerStat`` is ``costly``."""
    def per_group(m: Tensor) -> Tensor:
        singular = torch.linalg.svdvals(m)
        p = singular / singular.sum(dim=-1, keepdim=True)
        return torch.exp(-torch.special.xlogy(p, p).sum(dim=-1))  # 0 log 0 = 0

    return _per_layer(matrices, per_group)


def _per_layer(groups: Sequence[Tensor], reduce: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply a reduction [G, K, ...] -> [G, K] to each group; stack to [K, L]."""
    return torch.cat([reduce(g) for g in groups], dim=0).T


def group_norms(groups: Sequence[Tensor]) -> list[Tensor]:
    """||W_i||_F of each layer group: [G, K] per group (``frobenius_norms`` stacks them)."""
    return [torch.linalg.vector_norm(g, dim=-1) for g in groups]


def frobenius_norms(groups: Sequence[Tensor]) -> Tensor:
    """||W_i||_F per member and layer: [K, L]."""
    return torch.cat(group_norms(groups), dim=0).T


def gradient_norms(grad_groups: Sequence[Tensor]) -> Tensor:
    """||grad W_i||_F per member and layer: [K, L]."""
    return frobenius_norms(grad_groups)


def weight_variances(groups: Sequence[Tensor], norms: Sequence[Tensor] | None = None,
                     ) -> Tensor:
    """Var(W_i) over the entries of each weight matrix (population variance): [K, L].
    E[w^2] - E[w]^2 from two fused reductions: several times faster than ``torch.var`` on
    the CPU, and exact enough for weight matrices, whose |E[w]| is tiny next to their spread
    (a norm's gain, whose mean is ~1, keeps float32's ~1e-7 absolute cancellation error);
    E[w^2] from the groups' norms (``group_norms``) when they are at hand. (No tensor is built from
    host values here: that would be a copy a CUDA graph cannot hold.)"""
    norms = group_norms(groups) if norms is None else norms
    mean = _per_layer(groups, lambda g: g.sum(dim=-1).div_(g.shape[-1]))
    mean_sq = torch.cat([norm.square().div_(g.shape[-1])
                         for g, norm in zip(groups, norms, strict=True)], dim=0).T
    return mean_sq.sub_(mean.square_()).clamp_min_(0.0)


def relative_changes(change_groups: Sequence[Tensor], initial_norms: Tensor) -> Tensor:
    """||W_i - W_i(0)||_F / ||W_i(0)||_F per member and layer: [K, L], from layer groups of
    W - W(0) and the norms of W(0) [K, L] (``frobenius_norms``, computed once). NaN where
    W_i(0) = 0: the ratio is undefined for a zero initialization."""
    return _norm_ratio(change_groups, initial_norms)


def dead_fractions(output_groups: Sequence[Tensor]) -> Tensor:
    """Fraction of a layer's units that are dead on this batch -- the activation's output is
    zero for every example, as a ReLU's below zero -- per member and hidden layer: [K, L - 1]
    from groups of activation outputs [G, K, B, n]. A unit counts as dead when its outputs
    sum to exactly 0 over the batch: for a ReLU's (never negative) that is zero everywhere,
    for others a coincidence of measure zero; several times faster than counting nonzeros
    over this middle dimension."""
    return _per_layer(output_groups, lambda g: (g.sum(dim=-2) == 0).float().mean(dim=-1))


SATURATED = 0.99  # |tanh(z)| beyond this: tanh'(z) = 1 - tanh(z)^2 < 2%, the unit barely learns


def saturated_fractions(output_groups: Sequence[Tensor], level: float = SATURATED) -> Tensor:
    """Fraction of a layer's unit outputs on this batch with |σ(z)| > ``level``, per member
    and hidden layer: [K, L - 1] from groups of activation outputs [G, K, B, n]. tanh's
    failure mode, as dead units are ReLU's: a saturated tanh passes almost no gradient
    (meaningful for a bounded activation; plots show it for tanh runs). The comparison writes
    its 0/1 into the float tensor ``abs`` made: a bool mask and its conversion cost five times
    more on the CPU, and made a 50-layer step with statistics 26% slower (``initlab bench
    --against``, docs/benchmarks.md)."""
    return _per_layer(output_groups, lambda g: g.abs().gt_(level).mean(dim=(-2, -1)))


def percentiles(values: Tensor, q: float) -> Tensor:
    """The q-quantile over the last dimension (linear interpolation, as ``torch.quantile``):
    [L, K, B] -> [K, L]."""
    return sorted_quantile(values.sort(dim=-1).values, q)


def sorted_quantile(ordered: Tensor, q: float) -> Tensor:
    """``percentiles`` of values already sorted along the last dimension (several quantiles
    then share one sort; written out, not ``torch.quantile``, so a CUDA graph can hold it)."""
    n = ordered.shape[-1]
    position = q * (n - 1)
    low = int(position)
    high = min(low + 1, n - 1)
    lower, upper = ordered[..., low], ordered[..., high]
    return torch.lerp(lower, upper, position - low).T


def update_ratios(update_groups: Sequence[Tensor], weight_norms: Tensor,
                  scale: Tensor | None = None) -> Tensor:
    """||Delta W_i||_F / ||W_i||_F per member and layer, the effective learning rate of a
    layer: [K, L] from layer groups of one step's update (or of a direction that ``scale``
    [K], e.g. each member's learning rate, turns into it) and the norms of the weights it
    updated (``frobenius_norms``). NaN where W_i = 0."""
    moved = frobenius_norms(update_groups)
    if scale is not None:
        moved = moved * scale.unsqueeze(1)
    return torch.where(weight_norms > 0, moved / weight_norms,
                       torch.full_like(moved, float("nan")))


def _norm_ratio(groups: Sequence[Tensor], reference: Tensor) -> Tensor:
    """||X_i||_F / reference [K, L], NaN where the reference is 0 (a ratio to nothing)."""
    moved = frobenius_norms(groups)
    return torch.where(reference > 0, moved / reference, torch.full_like(moved, float("nan")))


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


# --- The registry ---------------------------------------------------------------------------


@dataclass
class PassTensors:
    """What the per-layer statistics of one training pass read, as layer groups: the layer
    inputs [G, K, B, n] (Z_1 = x), the hidden layers' activation outputs [G, K, B, width], the
    input of one hidden unit's nonlinearity per hidden layer [L - 1, K, B], the weights W_i,
    their gradients and W_i - W_i(0) ([G, K, n] each, ``weight_shapes`` saying each weight
    group's per-layer shape), the norms of W_i(0) [K, L], and, after the optimizer's step, that
    step's update Delta W_i ([G, K, n], times ``update_scale`` per member where given; None
    before). A ``LayerStat``'s ``reads`` names the fields it uses: whoever has only some of
    them (``initlab.watch`` has no unit inputs) leaves the others empty and computes only the
    statistics they allow (``computable``)."""

    inputs: Sequence[Tensor] = ()
    activations: Sequence[Tensor] = ()
    unit_inputs: Tensor | None = None
    weights: Sequence[Tensor] = ()
    grads: Sequence[Tensor] = ()
    changes: Sequence[Tensor] = ()
    initial_norms: Tensor | None = None
    updates: Sequence[Tensor] | None = None
    update_scale: Tensor | None = None  # [K]: the update is this times ``updates``
    weight_shapes: Sequence[Sequence[int]] = ()  # per weight group: one layer's weight shape
    # The inputs' per-example norms [G, K, B] per group, where the caller has only these (what
    # every statistic of ``inputs`` reads: ``initlab.watch`` keeps them, not a layer's output).
    input_norms: Sequence[Tensor] | None = None

    # Shared by several statistics, computed once.
    @cached_property
    def example_norms(self) -> list[Tensor]:
        if self.input_norms is not None:
            return list(self.input_norms)
        return example_norms(self.inputs)

    @cached_property
    def weight_group_norms(self) -> list[Tensor]:
        return group_norms(self.weights)

    @cached_property
    def weight_norms(self) -> Tensor:
        return torch.cat(self.weight_group_norms, dim=0).T

    @cached_property
    def sorted_unit_inputs(self) -> Tensor:
        assert self.unit_inputs is not None
        return self.unit_inputs.sort(dim=-1).values

    @cached_property
    def weight_matrices(self) -> list[Tensor]:
        return matrix_groups(self.weights, self.weight_shapes)


# What each field of PassTensors holds, by the side of a layer it describes: a statistic that
# reads only weight-side fields has one value per weight matrix (``initlab.watch`` maps it onto
# the layers that use the weight), the others one per layer output.
WEIGHT_FIELDS = frozenset({"weights", "grads", "changes", "initial_norms", "updates"})


@dataclass(frozen=True)
class LayerStat:
    key: str  # the record key in stats.jsonl
    label: str  # how a plot's axis names it
    reads: tuple[str, ...]  # the PassTensors fields ``compute`` uses
    compute: Callable[[PassTensors], Tensor]  # -> [K, L] (or [K, L - 1]: hidden layers)
    log_scale: bool = True  # spans decades across layers or runs
    per_fan_in: bool = False  # plots show it times each layer's fan-in n
    diverges: bool = False  # NaN or Inf means the member diverged (else: merely undefined)
    after_update: bool = False  # reads the step's update: only in 'train' records
    hidden_only: bool = False  # one value per hidden layer (L - 1), not per Linear layer
    # Too slow to compute at every captured step (it would slow training down): only in the
    # records of a probe -- init, epoch, final -- and in a watched run's first capture and
    # those that start a new epoch.
    costly: bool = False
    # Processes that split a batch see part of it each: None, the same on every rank (weights,
    # averaged gradients); "mean", a mean over examples, so the mean over ranks is the whole
    # batch's; "approx", averaged over ranks, which only approximates the whole batch's.
    per_rank: str | None = None
    # An activation trait (a flag of ``initlab.activations.Activation``: "can_die",
    # "saturates") without which the statistic means nothing: recorded only for nets whose
    # nonlinearity has it (dead tanh units or saturated ReLUs would be a row of zeros, computed
    # at every captured step).
    trait: str | None = None
    # The values it can take, checked when a run is read (a record from elsewhere saying 5.0
    # dead units once made "500% of the hidden units"); None: any finite number.
    within: tuple[float, float] | None = None

    def recorded_at(self, phase: str) -> bool:
        """Whether a record of ``phase`` holds it: a captured step's (``train``) unless it is
        costly, a probe's (``init``, ``epoch``, ``final``) unless it reads the step's update."""
        return not self.costly if phase == "train" else not self.after_update

    def applies_to(self, activation: object) -> bool:
        """Whether it means something for a net whose nonlinearity is ``activation`` (an
        ``Activation`` class, or anything with its traits)."""
        return self.trait is None or bool(getattr(activation, self.trait))

    @property
    def per_weight(self) -> bool:
        """One value per weight matrix, computed from weight-side tensors only."""
        return set(self.reads) <= WEIGHT_FIELDS


LAYER_STATS: dict[str, LayerStat] = {s.key: s for s in (
    LayerStat("act_norm", "activation norm ‖Z_i‖₂", ("inputs",),
              lambda t: activation_norms(t.inputs, t.example_norms), diverges=True,
              per_rank="mean"),
    LayerStat("act_norm_cv", "spread of the examples' ‖Z_i‖₂ (std / mean over the batch)",
              ("inputs",), lambda t: norm_spreads(t.inputs, t.example_norms), log_scale=False,
              per_rank="approx"),
    LayerStat("grad_norm", "gradient norm ‖∇W_i ℓ‖", ("grads",),
              lambda t: gradient_norms(t.grads), diverges=True),
    LayerStat("weight_var", "n·Var(W_i)", ("weights",),
              lambda t: weight_variances(t.weights, t.weight_group_norms),
              log_scale=False, per_fan_in=True, diverges=True),
    LayerStat("weight_rel_change", "‖W_i − W_i⁽⁰⁾‖ / ‖W_i⁽⁰⁾‖", ("changes", "initial_norms"),
              lambda t: relative_changes(t.changes, t.initial_norms)),
    LayerStat("weight_norm", "‖W_i‖_F", ("weights",), lambda t: t.weight_norms),
    LayerStat("dead_fraction", "dead units (output 0 for the whole batch)", ("activations",),
              lambda t: dead_fractions(t.activations), log_scale=False, hidden_only=True,
              per_rank="approx", trait="can_die", within=(0.0, 1.0)),
    LayerStat("unit_input_p15", "unit 0's nonlinearity input, 15th percentile over the batch",
              ("unit_inputs",), lambda t: sorted_quantile(t.sorted_unit_inputs, 0.15),
              log_scale=False, hidden_only=True, per_rank="approx"),
    LayerStat("unit_input_p50", "unit 0's nonlinearity input, median over the batch",
              ("unit_inputs",), lambda t: sorted_quantile(t.sorted_unit_inputs, 0.50),
              log_scale=False, hidden_only=True, per_rank="approx"),
    LayerStat("unit_input_p85", "unit 0's nonlinearity input, 85th percentile over the batch",
              ("unit_inputs",), lambda t: sorted_quantile(t.sorted_unit_inputs, 0.85),
              log_scale=False, hidden_only=True, per_rank="approx"),
    LayerStat("update_ratio", "update / weight ‖ΔW_i‖ / ‖W_i‖", ("updates", "weights"),
              lambda t: update_ratios(t.updates or [], t.weight_norms, t.update_scale),
              after_update=True),
    LayerStat("effective_rank", "effective rank of W_i (exp of its singular values' entropy)",
              ("weights",), lambda t: effective_ranks(t.weight_matrices), log_scale=False,
              costly=True),
    LayerStat("saturated_fraction", f"saturated outputs |σ(z)| > {SATURATED} (tanh)",
              ("activations",), lambda t: saturated_fractions(t.activations), log_scale=False,
              hidden_only=True, per_rank="mean", trait="saturates", within=(0.0, 1.0)),
)}
LAYER_KEYS = tuple(LAYER_STATS)


def compute(tensors: PassTensors, select: Callable[[LayerStat], bool]) -> dict[str, Tensor]:
    """The statistics of ``LAYER_STATS`` that ``select`` picks, computed from ``tensors``:
    key -> [K, L] (or [K, L - 1]), in registry order."""
    return {key: stat.compute(tensors) for key, stat in LAYER_STATS.items() if select(stat)}
