"""``initlab diagnose``: from a run's curves to an answer -- why a network does not train.

Each *detector* is one function of a run's records (``Facts``, read through
``initlab.load_run`` only: diagnosis adds nothing to training) that returns a ``Finding`` or
None, and one line in ``DETECTORS``. A finding names the problem in a student's words, gives
the evidence from this run (statistic, layers, steps, the number) beside what theory or a
healthy run expects, says what to try and what it rests on, and carries a severity. Every
threshold below has its reason beside it; none is tuned to the benchmark cases
(``benchmarks/diagnose/``), which measure how often the top finding is the planted problem.

The order of ``DETECTORS`` is causal: a cause comes before what it causes (a zero init before
the frozen layers it makes; vanishing activations before the unmoving weights they make), so
among findings of one severity the first is the top one.

The module is named ``diagnosis`` (not ``diagnose``) so that importing it never rebinds the
function ``initlab.diagnose``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from initlab.runs import Run, load_runs

SEVERITIES = ("ok", "info", "warning", "error")  # ascending

# --- Theory: the numbers the detectors compare a run with ----------------------------------

# A ReLU keeps half of a symmetric input's second moment, so a layer W ~ N(0, c/n) multiplies
# E‖Z‖² by c/2 (the lecture's "Initialization"; He et al. 2015): the norm by sqrt(c/2).
# identity keeps all of it; tanh, near 0, all of it (it is linear there).
SECOND_MOMENT_KEPT = {"relu": 0.5, "identity": 1.0, "tanh": 1.0}
KAIMING_C = 2.0
# Two decades. The logits scale with the last layer's activations: 100x below the Kaiming
# network's they are ~0 (the loss sits at chance and every gradient is 100x smaller), 100x
# above they saturate the softmax. The lecture's own trained nets sit inside: c = 1.7 and 2.3
# at depth 50 change the activations 0.02x and 30x over the depth and both train to 5%
# (figure trained-variance), c = 1 (1e-8x) and c = 3 (4e3x) do not.
DEPTH_FACTOR_BAND = 100.0
# Normalization after the ReLU (or batch norm before it) grows the gradient by
# sqrt(pi/(pi-1)) per layer towards the input (Yang et al. 2019). The same number as
# initlab.figures.theory.NORMALIZED_RELU_GRADIENT_RATE (a test checks it), not imported:
# importing initlab.figures loads every figure and matplotlib, which the end of an
# initlab.watch block must not wait for.
NORMALIZED_GRADIENT_RATE = math.sqrt(math.pi / (math.pi - 1.0))
# The two-decade band for gradients across the depth: with the first layers' gradients 100x
# the last ones', one learning rate moves the first layers 100x faster (relative to weights of
# equal norm) than the last: either the first overshoot or the last do not move.
GRADIENT_SPAN_BAND = 100.0
# A product of L matrices changes, to first order, by the sum over layers of each one's
# relative change: when sum_i ‖ΔW_i‖/‖W_i‖ reaches 1 the network's function has changed by as
# much as itself, and the linear picture that justified the gradient step no longer holds.
FUNCTION_CHANGE_LIMIT = 1.0
# The lecture's trained nets moved their weights by a median 2.6-10% of their norm in 10
# epochs, 4680 steps (figure weights-move-little). A run whose weights move slower than that
# average pace would need more than those 10 epochs to get as far: its steps are too small.
LECTURE_MOVEMENT = 0.026
LECTURE_STEPS = 4680
LECTURE_PACE = LECTURE_MOVEMENT / LECTURE_STEPS
# Cross-entropy that fell by less than 10% (on 10 classes: from 2.30 to above 2.07, i.e. the
# true class still gets under 13% probability, against 10% by chance) has not learned.
LEARNED_FRACTION = 0.9
# Half of a layer's units dead: it computes with half its width. At initialization a unit is
# dead on the whole batch only when every example's pre-activation has one sign, which deep
# ReLU nets' aligned examples make common (up to ~30% in single layers at depth 20 in the
# lecture's net, ~15% on average), so the finding asks for half of all hidden units; a growth
# of a quarter of them since initialization says training killed them (e.g. a large step),
# half at initialization already says the init or the biases did.
DEAD_LIMIT = 0.5
DEAD_GROWTH = 0.25
# Batch norm's variance estimate from B examples has a relative standard error of
# sqrt(2/(B-1)); Wu & He (2018, figure 1) measure BN's error rising below 16 per worker, and
# initlab's small-batch figure measured 75 pp above its best at B = 2.
BATCHNORM_MIN_BATCH = 16
# Overfitting: the test error is measured on N images, with standard error sqrt(e(1-e)/N); a
# gap above three of those is not sampling noise, and a test error over twice the training
# error means the net fits its training set much better than new data.
GAP_STANDARD_ERRORS = 3.0
OVERFIT_RATIO = 2.0
# Weights whose spread is under 3% of their size (Var/E[w²] < 1e-3) are equal entries for any
# purpose: a random init has Var/E[w²] ≈ 1 (mean ~0), and float32's E[w²] − E[w]² leaves a
# constant layer of 16k entries at ~1e-5 of E[w²] (measured), far below the threshold.
EQUAL_ENTRIES = 1e-3
MNIST_TEST_IMAGES = 10_000
# Learned means at least twice chance's accuracy on the test set (on 10 classes: under 80%
# error), whatever the training loss did.
CHANCE_MULTIPLE = 2.0

NORM_TYPES = ("LayerNorm", "BatchNorm", "GroupNorm", "RMSNorm", "InstanceNorm", "SyncBatchNorm",
              "LocalResponseNorm")

LECTURE_INIT = ("the lecture, part \"Initialization\" (figures init-norms, trainability); "
                "He et al. 2015")
LECTURE_NORM = ("the lecture, part \"Normalization\"; Yang, Pennington, Rao, Sohl-Dickstein & "
                "Schoenholz, \"A Mean Field Theory of Batch Normalization\", ICLR 2019 "
                "(figure normalized-gradients)")


@dataclass
class Finding:
    """One problem of one run: what it is, the evidence, what theory or a healthy run expects,
    what to try, what it rests on, how bad. ``statistic``/``phase``/``step``/``layer``/``value``
    locate the finding's main number in the run's records (as ``initlab export`` writes them:
    ``layers.csv`` for a per-layer statistic, ``records.csv`` for loss and errors)."""

    problem: str  # its key in DETECTORS
    severity: str  # one of SEVERITIES
    title: str  # the problem in a student's words
    evidence: str  # from this run
    expected: str  # what theory or a healthy run expects
    advice: str  # what to try
    source: str  # the lecture part or paper it rests on
    statistic: str | None = None
    phase: str | None = None
    step: int | None = None
    layer: str | None = None
    value: float | None = None
    run: str = ""  # the run's directory
    layers: list[str] = field(default_factory=list)  # every layer it concerns

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def line(self) -> str:
        """The finding in one line (what `initlab run` and a watch block print)."""
        return f"{self.run}: {self.title} [{self.severity}]: {self.evidence} Try: {self.advice}"

    def as_dict(self) -> dict[str, Any]:
        """For JSON: a number that is not finite becomes None."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in asdict(self).items()}


# --- What every detector reads ---------------------------------------------------------------


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _fmt(x: float) -> str:
    """A number as a student reads it: 3 significant digits, scientific when tiny or huge."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e5 else f"{x:.2e}"


class Facts:
    """A run, and what several detectors derive from it, computed once."""

    def __init__(self, run: Run):
        self.run = run
        self.kind = run.kind
        self.names = run.layer_names
        self.depth = len(self.names)
        model = run.config.get("model") or {}
        self.activation = str(model.get("activation", "relu")) if self.kind == "mlp" else None
        self.norm = str(model.get("norm", "none")) if self.kind == "mlp" else None
        self.norm_position = str(model.get("norm_position", "post"))
        self.dropout = float(model.get("dropout") or 0.0) if self.kind == "mlp" else 0.0
        self.train = run.config.get("train") or {}
        self.data = run.config.get("data") or {}
        self.watch_layers: list[dict[str, Any]] = (run.config.get("watch") or {}).get("layers",
                                                                                      [])

    # Records
    @cached_property
    def first(self) -> int:
        """The record of the network at its initialization (MLP: ``init``; watch: step 1)."""
        return self.run.at("init") if "init" in self.run.phase else 0

    @cached_property
    def train_rows(self) -> np.ndarray:
        return np.flatnonzero(self.run.phase == "train")

    def row(self, key: str, index: int) -> np.ndarray:
        return self.run.layers[key][index] if key in self.run.layers else np.array([])

    def has(self, key: str) -> bool:
        return key in self.run.layers and bool(np.isfinite(self.run.layers[key]).any())

    # Layers
    def layer_type(self, i: int) -> str:
        if self.kind == "mlp":
            return "Linear"
        return str(self.watch_layers[i].get("type", "")) if i < len(self.watch_layers) else ""

    def is_norm_layer(self, i: int) -> bool:
        return any(t in self.layer_type(i) for t in NORM_TYPES)

    @cached_property
    def weight_layers(self) -> list[int]:
        """Layers with a weight matrix that init and the optimizer shape (not a norm's gain)."""
        return [i for i in range(self.depth) if not self.is_norm_layer(i)]

    @cached_property
    def normalized(self) -> bool:
        if self.kind == "mlp":
            return self.norm not in (None, "none")
        return any(self.is_norm_layer(i) for i in range(self.depth))

    def shape_of(self, i: int) -> tuple[int, ...]:
        if self.kind == "mlp":
            fan = self.run.fan_ins
            out = int(fan[i + 1]) if i + 1 < len(fan) else 10
            return (out, int(fan[i]))
        return tuple(int(s) for s in self.watch_layers[i].get("shape") or ())

    def entries(self, i: int) -> int:
        return int(np.prod(self.shape_of(i))) if self.shape_of(i) else 0

    def chains(self) -> list[list[int]]:
        """Runs of consecutive layers of one type and weight shape, where a statistic's change
        from layer to layer is the layers' doing, not a change of width (MLP: the hidden layers
        2..L, all of the width; the first layer's input is the image)."""
        if self.kind == "mlp":
            return [list(range(1, self.depth))] if self.depth >= 3 else []
        chains: list[list[int]] = []
        for i in self.weight_layers:
            key = (self.layer_type(i), self.shape_of(i))
            if chains and chains[-1][-1] == i - 1 and \
                    (self.layer_type(i - 1), self.shape_of(i - 1)) == key:
                chains[-1].append(i)
            else:
                chains.append([i])
        return [c for c in chains if len(c) >= 2]

    # Outcome
    @cached_property
    def losses(self) -> np.ndarray:
        return _finite(self.run.loss)

    @cached_property
    def classes(self) -> int | None:
        """Outputs of the last layer: the classes of a classifier (MNIST: 10)."""
        if self.kind == "mlp":
            return 10
        shape = self.shape_of(self.depth - 1)
        return shape[0] if shape and self.layer_type(self.depth - 1) == "Linear" else None

    @cached_property
    def loss_start(self) -> float:
        return float(self.losses[0]) if len(self.losses) else math.nan

    @cached_property
    def loss_reference(self) -> float:
        """What the loss must fall below to count as learning: the start, or chance (log of the
        classes) when the start is above chance (a badly scaled init starts above it)."""
        chance = math.log(self.classes) if self.classes and self.classes > 1 else math.inf
        # Only a loss of the size of a cross-entropy is compared with chance.
        return min(self.loss_start, chance) if self.loss_start >= 0.5 * chance \
            else self.loss_start

    @cached_property
    def loss_end(self) -> float:
        """The median of the last three losses recorded (one batch's loss is noisy)."""
        return float(np.median(self.losses[-3:])) if len(self.losses) else math.nan

    @property
    def diverged(self) -> bool:
        return self.run.status == "diverged"

    @cached_property
    def learned(self) -> bool:
        if self.diverged or len(self.losses) < 2:
            return False
        test = self.run.final_test_error
        if self.classes and math.isfinite(test) and test > 1 - CHANCE_MULTIPLE / self.classes:
            return False  # a falling training loss that new data does not see
        return self.loss_end < LEARNED_FRACTION * self.loss_reference

    @property
    def failed(self) -> bool:
        return self.diverged or not self.learned

    @property
    def steps(self) -> int:
        return int(self.run.summary.get("steps") or (self.run.step.max()
                                                     if len(self.run.step) else 0))

    def severity(self) -> str:
        """A cause's severity: an error when the run failed, else a warning."""
        return "error" if self.failed else "warning"

    def outcome_text(self) -> str:
        if self.diverged:
            return f"the run diverged at step {self.run.summary.get('diverged_step')}"
        return (f"the loss went from {self.loss_start:.3f} to {self.loss_end:.3f} in "
                f"{self.steps} steps")

    def layer_range(self, layers: Sequence[int]) -> str:
        names = [self.names[i] for i in layers]
        if not names:
            return ""
        if len(names) == 1:
            return f"layer {names[0]}"
        if self.kind == "mlp" and len(names) == layers[-1] - layers[0] + 1:
            return f"layers {names[0]}-{names[-1]}"
        shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
        return f"layers {shown}"


# --- Detectors, in causal order ---------------------------------------------------------------


def symmetric_init(f: Facts) -> Finding | None:
    """Weights that start all equal (zero, or one constant) and stay so: symmetry is never
    broken, every unit of a layer computes the same thing (the lecture: zero init)."""
    if not f.has("weight_norm"):
        return None
    start, end = f.first, len(f.run.records) - 1
    stuck = []
    for i in f.weight_layers:
        if f.entries(i) == 0:
            continue
        norms = f.run.layers["weight_norm"][[start, end], i]
        variances = f.run.layers["weight_var"][[start, end], i]
        if not np.isfinite(norms).all() or not np.isfinite(variances).all():
            continue
        mean_square = norms**2 / f.entries(i)
        equal = [(v <= EQUAL_ENTRIES * m) if m > 0 else True
                 for v, m in zip(variances, mean_square, strict=True)]
        if all(equal):
            stuck.append(i)
    if not stuck:
        return None
    i = stuck[0]
    zero = f.run.layers["weight_norm"][start, i] == 0
    what = "zero" if zero else "all equal"
    nvar = f.run.layers["weight_var"][end, i] * f.run.fan_ins[i]
    return Finding(
        "symmetric-init", "error" if f.failed or len(stuck) > 1 else "warning",
        "the weights start " + ("at zero" if zero else "all equal") +
        " and never break their symmetry",
        f"{f.layer_range(stuck)}: the weights are {what} at initialization and still at "
        f"step {f.run.step[end]}: n·Var(W_{f.names[i]}) = {_fmt(nvar)}; {f.outcome_text()}.",
        "random weights, n·Var(W_i) = c (Kaiming: 2); with equal weights every unit of a "
        "layer gets the same gradient, so they stay equal (with zero weights and ReLU the "
        "gradient is 0 and nothing moves)",
        "draw the weights at random: init.scheme=normal with init.c=2 (Kaiming), or "
        "torch.nn.init.kaiming_normal_; keep a constant only for biases",
        "the lecture, part \"Initialization\": zero init never breaks symmetry (figure zero-init)",
        statistic="weight_var", phase=str(f.run.phase[end]), step=int(f.run.step[end]),
        layer=f.names[i], value=float(f.run.layers["weight_var"][end, i]),
        layers=[f.names[j] for j in stuck])


def no_gradient(f: Facts) -> Finding | None:
    """Layers that get no gradient (frozen, detached) or whose weights the optimizer never
    changes, while the others do."""
    if not f.has("grad_norm") or len(f.run.records) < 2:
        return None
    grads = f.run.layers["grad_norm"]
    after = np.arange(len(f.run.records))
    weights = f.run.layers.get("weight_norm")
    alive = [i for i in f.weight_layers
             if weights is None or np.isfinite(weights[:, i]).any()]
    none = [i for i in alive if not (np.nan_to_num(grads[after, i]) > 0).any()]
    moving = [i for i in alive if i not in none]
    if not moving:
        return None  # nothing learns: a cause upstream (symmetric-init) or the whole model
    unmoved: list[int] = []
    if f.has("weight_rel_change"):
        change = f.run.layers["weight_rel_change"][-1]
        # A step the optimizer did take (update_ratio > 0) that left W unchanged was below
        # float32's resolution of W (a relative 2^-24): too small, not skipped. At c = 1 the
        # deep layers' activations, and so their updates, vanish like that; the activations
        # detector names that cause.
        stepped = f.run.layers.get("update_ratio")
        unmoved = [i for i in moving if change[i] == 0 and f.steps > 1
                   and (stepped is None or not (np.nan_to_num(stepped[:, i]) > 0).any())]
    stuck = none + [i for i in unmoved if i not in none]
    if not stuck:
        return None
    i = stuck[0]
    last = len(f.run.records) - 1
    if none:
        evidence = (f"{f.layer_range(none)}: ‖∇W‖ is 0 or missing in all "
                    f"{len(f.run.records)} records (layer {f.names[moving[0]]}: "
                    f"{_fmt(float(np.nanmax(grads[:, moving[0]])))} at most).")
        stat, value = "grad_norm", grads[last, i]
    else:
        evidence = (f"{f.layer_range(unmoved)}: a gradient, but ‖W − W(0)‖/‖W(0)‖ = 0 after "
                    f"{f.steps} steps: the optimizer does not update them.")
        stat, value = "weight_rel_change", f.run.layers["weight_rel_change"][last, i]
    return Finding(
        "no-gradient", "error" if f.failed else "warning",
        "some layers never learn: no gradient reaches them, or the optimizer skips them",
        evidence + f" {f.outcome_text().capitalize()}.",
        "every trainable layer gets a nonzero gradient at every step and moves",
        "look for requires_grad=False, .detach() or torch.no_grad() in the forward pass, and "
        "check that optimizer(...) was given model.parameters(); freeze layers only on purpose",
        "the backward pass: a layer learns only through ∂ℓ/∂W_i (the lecture, part "
        "\"Automatic differentiation\")",
        statistic=stat, phase=str(f.run.phase[last]), step=int(f.run.step[last]),
        layer=f.names[i], value=None if not math.isfinite(value) else float(value),
        layers=[f.names[j] for j in stuck])


def activation_scale(f: Facts) -> Finding | None:
    """Activations that vanish or explode with depth at initialization, with the c they
    imply."""
    if f.normalized or not f.has("act_norm"):
        return None
    act = f.row("act_norm", f.first)
    ratios: list[float] = []
    used: list[int] = []
    for chain in f.chains():
        values = act[chain]
        if not (np.isfinite(values).all() and (values > 0).all()):
            continue  # zero activations are symmetric-init's; NaN has no ratio
        ratios += list(np.diff(np.log(values)))
        used += chain
    if len(ratios) < 2:
        return None
    per_layer = float(np.exp(np.mean(ratios)))
    total = per_layer ** len(ratios)
    if 1 / DEPTH_FACTOR_BAND <= total <= DEPTH_FACTOR_BAND:
        return None
    kept = SECOND_MOMENT_KEPT.get(f.activation or "") if f.kind == "mlp" else \
        (0.5 if f.has("dead_fraction") else None)
    vanish = total < 1
    last = used[-1]
    c_text, band = "", ""
    if kept is not None:
        c_eff = per_layer**2 / kept
        c_text = (f"; for {'ReLU' if kept == 0.5 else 'this activation'} with "
                  f"W ~ N(0, c/n) that is c ≈ {c_eff:.2f}")
        if f.kind == "mlp":
            c_text += f" (the config says c = {(f.run.config.get('init') or {}).get('c')})"
        else:
            nvar = f.run.plotted("weight_var")[f.first, used] if f.has("weight_var") else []
            if len(_finite(np.asarray(nvar))):
                c_text += f" (n·Var(W) at init: median {_fmt(float(np.median(_finite(nvar))))})"
        low = KAIMING_C * DEPTH_FACTOR_BAND ** (-2 / len(ratios))
        high = KAIMING_C * DEPTH_FACTOR_BAND ** (2 / len(ratios))
        band = (f"; over these {len(ratios)} layers only c in {low:.2f}-{high:.2f} keeps them "
                f"within {DEPTH_FACTOR_BAND:.0f}x (Kaiming is c = 2)")
    word = "shrink" if vanish else "grow"
    return Finding(
        "activations-vanish" if vanish else "activations-explode", f.severity(),
        f"the activations {'vanish' if vanish else 'explode'} with depth",
        f"at initialization ‖Z‖ {word}s x{per_layer:.3g} per layer over "
        f"{f.layer_range(used)}: x{_fmt(total)} in all{c_text}. {f.outcome_text().capitalize()}.",
        f"a layer multiplies ‖Z‖ by sqrt(c/2) for ReLU, so Kaiming (c = 2) keeps it level; "
        f"within {DEPTH_FACTOR_BAND:.0f}x over the depth the net trains{band}",
        "init.c=2 (Kaiming: W ~ N(0, 2/n)), torch.nn.init.kaiming_normal_ for a ReLU net, or "
        "normalization (model.norm=layer or batch) which fixes the scale at every layer",
        LECTURE_INIT,
        statistic="act_norm", phase=str(f.run.phase[f.first]), step=int(f.run.step[f.first]),
        layer=f.names[last], value=float(act[last]), layers=[f.names[i] for i in used])


def normalized_gradients(f: Facts) -> Finding | None:
    """Gradients that grow towards the input under normalization, against sqrt(pi/(pi-1))."""
    if not f.normalized or not f.has("grad_norm"):
        return None
    grad = f.row("grad_norm", f.first)
    ratios: list[float] = []
    used: list[int] = []
    for chain in f.chains():
        inner = chain[:-1] if f.kind == "mlp" else chain  # the MLP's last layer has 10 outputs
        values = grad[inner]
        if len(inner) < 2 or not (np.isfinite(values).all() and (values > 0).all()):
            continue
        ratios += list(-np.diff(np.log(values)))  # towards the input: layer i over layer i+1
        used += inner
    if len(ratios) < 2:
        return None
    per_layer = float(np.exp(np.mean(ratios)))
    total = per_layer ** len(ratios)
    if total <= GRADIENT_SPAN_BAND:
        return None
    expected = 1.0 if (f.norm == "layer" and f.norm_position == "pre") else NORMALIZED_GRADIENT_RATE
    first = used[0]
    return Finding(
        "normalized-gradients", f.severity(),
        "the gradients grow towards the input under normalization",
        f"at initialization ‖∇W‖ grows x{per_layer:.3g} per layer towards the input over "
        f"{f.layer_range(used)}: layer {f.names[first]}'s is {_fmt(total)}x layer "
        f"{f.names[used[-1]]}'s. {f.outcome_text().capitalize()}.",
        f"x{expected:.3g} per layer" + (" = sqrt(π/(π−1)) for normalization after the ReLU or "
                                        "batch norm before it" if expected > 1 else
                                        " for layer norm before the ReLU") +
        f"; over the depth more than {GRADIENT_SPAN_BAND:.0f}x apart, one learning rate cannot "
        "suit the first layers and the last",
        "fewer layers (20 train where 50 do not), residual connections, the norm before the "
        "ReLU (model.norm_position=pre: layer norm there does not grow the gradient), or "
        "Adam, which scales each layer's step by its own gradient",
        LECTURE_NORM,
        statistic="grad_norm", phase=str(f.run.phase[f.first]), step=int(f.run.step[f.first]),
        layer=f.names[first], value=float(grad[first]), layers=[f.names[i] for i in used])


def dropout_ratio(p: float, layers: int) -> float:
    """First-order noise-to-signal power after ``layers`` dropout layers of rate p: each
    multiplies the second moment by 1/(1 − p), the excess being noise."""
    return (1.0 - p) ** (-layers) - 1.0


def dropout_noise(f: Facts) -> Finding | None:
    """Dropout after every one of many layers: the noise it adds outgrows the signal."""
    if f.dropout <= 0 or f.depth < 3:
        return None
    layers = f.depth - 1  # one dropout after each hidden layer
    noise_to_signal = dropout_ratio(f.dropout, layers)
    if noise_to_signal <= 1.0:  # the noise's power stays below the signal's
        return None
    evidence = (f"dropout p = {f.dropout} after each of {layers} hidden layers; "
                f"{f.outcome_text()}.")
    value, step, phase, layer = None, None, None, None
    if f.has("act_norm_cv") and len(f.train_rows):
        row = f.train_rows[0]
        last = f.depth - 1
        spread_train = float(f.run.layers["act_norm_cv"][row, last])
        spread_probe = float(f.run.layers["act_norm_cv"][f.first, last])
        evidence = (f"dropout p = {f.dropout} after each of {layers} hidden layers: the "
                    f"examples' ‖Z_{f.names[last]}‖ spread {_fmt(spread_train)} (std/mean) in "
                    f"the training batch at step {f.run.step[row]} (dropout on), "
                    f"{_fmt(spread_probe)} on the probe at init (dropout off); "
                    f"{f.outcome_text()}.")
        value, step, phase, layer = spread_train, int(f.run.step[row]), "train", f.names[last]
    return Finding(
        "dropout-noise", f.severity(), "dropout noise drowns the signal",
        evidence,
        f"each dropout layer multiplies the second moment by 1/(1−p), the excess being noise: "
        f"after {layers} layers noise/signal ≈ (1−p)^-{layers} − 1 = {_fmt(noise_to_signal)} "
        f"(signal/noise {_fmt(1 / noise_to_signal)}); above 1 the noise is the stronger",
        "dropout in a few wide layers (or none: the lecture's deep net does not need it), a "
        "smaller p, or fewer layers; it regularizes an over-parameterized net that overfits",
        "the lecture, part \"Regularization\" (figures regularization, dropout); Srivastava "
        "et al. 2014",
        statistic="act_norm_cv" if value is not None else None, phase=phase, step=step,
        layer=layer, value=value)


def small_batchnorm(f: Facts) -> Finding | None:
    """Batch norm whose statistics come from too few examples."""
    if f.norm not in ("batch", "syncbatch"):
        return None
    batch = int(f.train.get("batch_size") or 128)
    if batch >= BATCHNORM_MIN_BATCH:
        return None
    rel = math.sqrt(2.0 / max(batch - 1, 1))
    last = len(f.run.records) - 1
    test = f.run.final_test_error
    train = _finite(f.run.train_error[f.train_rows]) if len(f.train_rows) else np.array([])
    evidence = (f"batch norm over batches of {batch}: its variance estimate has a relative "
                f"standard error of sqrt(2/(B−1)) = {rel:.2f}; {f.outcome_text()}")
    if math.isfinite(test):
        evidence += f", test error {100 * test:.1f}% (evaluation mode, running averages)"
        if len(train):
            evidence += f" against {100 * float(np.mean(train[-5:])):.1f}% on training batches"
    return Finding(
        "small-batchnorm", f.severity(), "batch norm on batches too small for its statistics",
        evidence + ".",
        f"at least {BATCHNORM_MIN_BATCH} examples per batch (per worker): below that BN's "
        "error rises (Wu & He 2018; initlab's small-batch figure: 75 pp worse at B = 2)",
        "a larger batch, or group norm / layer norm (model.norm=group or layer), which take "
        "their statistics per example; across workers, SyncBatchNorm",
        "the lecture, part \"Normalization\"; Wu & He, \"Group Normalization\", ECCV 2018 "
        "(figure small-batch)",
        statistic="test_error" if math.isfinite(test) else None,
        phase=str(f.run.phase[last]) if math.isfinite(test) else None,
        step=int(f.run.step[last]) if math.isfinite(test) else None,
        value=test if math.isfinite(test) else None)


def learning_rate_high(f: Facts) -> Finding | None:
    """Divergence, steps that change the network by more than itself, loss spikes."""
    change = f.run.layers.get("weight_rel_change")
    updates = f.run.layers.get("update_ratio")
    lr = f.train.get("lr")
    lr_text = f" (lr {lr})" if lr is not None else ""
    advice = ("a smaller learning rate (10x smaller first), warm-up, or gradient clipping "
              "(torch.nn.utils.clip_grad_norm_)")
    source = ("the update/weight ratio ‖ΔW‖/‖W‖: to first order a step changes the network by "
              "Σ_i ‖ΔW_i‖/‖W_i‖ (the lecture, part \"Optimization\": weights move little)")
    if f.diverged:
        finite_rows = [r for r in range(len(f.run.records))
                       if np.isfinite(f.run.loss[r]) and
                       all(np.isfinite(_finite_or_empty(f.run.layers[k][r])).all()
                           for k in f.run.layers)]
        before = [r for r in finite_rows if f.run.phase[r] != "init"]
        if not before:
            return first_steps_diverged(f, lr_text, advice, source)
        r = before[-1]
        growth = f.run.layers["grad_norm"][r] / f.run.layers["grad_norm"][f.first]
        growth = np.where(np.isfinite(growth), growth, -np.inf)
        i = int(np.argmax(growth))
        return Finding(
            "lr-too-high", "error", "the learning rate is too high: the run diverged",
            f"the loss became NaN/Inf at step {f.run.summary.get('diverged_step')}{lr_text}; "
            f"at step {f.run.step[r]}, the last record before, layer {f.names[i]}'s gradient "
            f"had grown most: ‖∇W‖ x{_fmt(float(growth[i]))} its value at init.",
            "the loss falls and stays finite; gradients of the size they had at init",
            advice, source, statistic="grad_norm", phase=str(f.run.phase[r]),
            step=int(f.run.step[r]), layer=f.names[i],
            value=float(f.run.layers["grad_norm"][r, i]))
    # Steps too large: the summed relative change of the weights reaches 1 before the loss
    # fell (a healthy run gets there, if ever, only after it has learned).
    if change is not None:
        for r in range(f.first + 1, len(f.run.records)):
            total = float(np.nansum(change[r]))
            if total < FUNCTION_CHANGE_LIMIT:
                continue
            loss_so_far = _finite(f.run.loss[f.first + 1:r + 1])
            if len(loss_so_far) and np.min(loss_so_far) < LEARNED_FRACTION * f.loss_reference:
                break
            i = int(np.nanargmax(change[r]))
            return Finding(
                "lr-too-high", f.severity(), "the learning rate is too high",
                f"by step {f.run.step[r]}{lr_text} the weights moved Σ_i ‖W_i − W_i(0)‖/‖W_i(0)‖"
                f" = {_fmt(total)} of their norms (layer {f.names[i]}: "
                f"{_fmt(float(change[r, i]))}) while the loss had not fallen; "
                f"{f.outcome_text()}.",
                f"Σ_i below {FUNCTION_CHANGE_LIMIT:g} until the net has learned: the lecture's "
                f"trained nets moved a median {100 * LECTURE_MOVEMENT:.1f}-10% per layer over "
                "10 epochs",
                advice, source, statistic="weight_rel_change", phase=str(f.run.phase[r]),
                step=int(f.run.step[r]), layer=f.names[i], value=float(change[r, i]))
    if updates is not None and len(f.train_rows):
        sums = np.nansum(updates[f.train_rows], axis=1)
        r = int(f.train_rows[int(np.argmax(sums))])
        if sums.max() >= FUNCTION_CHANGE_LIMIT:
            i = int(np.nanargmax(updates[r]))
            return Finding(
                "lr-too-high", f.severity(), "the learning rate is too high",
                f"at step {f.run.step[r]}{lr_text} one update changed the weights by "
                f"Σ_i ‖ΔW_i‖/‖W_i‖ = {_fmt(float(sums.max()))} (layer {f.names[i]}: "
                f"{_fmt(float(updates[r, i]))}); {f.outcome_text()}.",
                f"Σ_i ‖ΔW_i‖/‖W_i‖ well below {FUNCTION_CHANGE_LIMIT:g} per step (~1e-3 per "
                "layer is the usual rule)",
                advice, source, statistic="update_ratio", phase="train", step=int(f.run.step[r]),
                layer=f.names[i], value=float(updates[r, i]))
    # Loss spikes: after learning, a training loss back above where it started undoes it all.
    train_loss = f.run.loss[f.train_rows] if len(f.train_rows) else np.array([])
    if len(train_loss) >= 3 and math.isfinite(f.loss_reference):
        best = np.fmin.accumulate(np.nan_to_num(train_loss, nan=np.inf))
        spikes = np.flatnonzero((best < LEARNED_FRACTION * f.loss_reference) &
                                (train_loss > f.loss_reference))
        if len(spikes):
            r = int(f.train_rows[spikes[0]])
            return Finding(
                "lr-too-high", "warning", "the learning rate is too high: the loss spikes",
                f"the training loss reached {_fmt(float(best[spikes[0]]))} and then jumped to "
                f"{_fmt(float(f.run.loss[r]))} at step {f.run.step[r]}{lr_text}, above where "
                f"it started ({_fmt(f.loss_reference)}); {len(spikes)} such records.",
                "a loss that falls, with noise much smaller than what was learned",
                advice, source, statistic="loss", phase="train", step=int(f.run.step[r]),
                value=float(f.run.loss[r]))
    return None


def first_steps_diverged(f: Facts, lr_text: str, advice: str, source: str) -> Finding:
    """Diverged before any record after init: the first step's size, from the gradient at
    initialization (plain SGD's first update is exactly lr·∇W)."""
    grads, norms = f.row("grad_norm", f.first), f.row("weight_norm", f.first)
    lr = f.train.get("lr")
    sgd = f.kind == "mlp" and f.train.get("optimizer", "sgd") == "sgd" and lr is not None
    evidence = f"the loss became NaN/Inf at step {f.run.summary.get('diverged_step')}{lr_text}"
    statistic, layer, value = None, None, None
    if sgd and len(grads) and np.isfinite(grads).all() and (norms > 0).all():
        ratios = float(lr) * grads / norms
        i = int(np.argmax(ratios))
        evidence += (f"; the first step alone changes the weights by Σ_i lr·‖∇W_i‖/‖W_i‖ = "
                     f"{_fmt(float(ratios.sum()))} (layer {f.names[i]}: {_fmt(float(ratios[i]))}, "
                     f"from ‖∇W_{f.names[i]}‖ = {_fmt(float(grads[i]))} at init)")
        statistic, layer, value = "grad_norm", f.names[i], float(grads[i])
    return Finding(
        "lr-too-high", "error", "the learning rate is too high: the run diverged",
        evidence + ".",
        f"Σ_i ‖ΔW_i‖/‖W_i‖ well below {FUNCTION_CHANGE_LIMIT:g} per step",
        advice, source, statistic=statistic, phase=str(f.run.phase[f.first]),
        step=int(f.run.step[f.first]), layer=layer, value=value)


def _finite_or_empty(values: np.ndarray) -> np.ndarray:
    """Values, with NaN (a statistic undefined for a layer, e.g. update_ratio at init) dropped
    but Inf kept."""
    return values[~np.isnan(values)]


def dead_units(f: Facts) -> Finding | None:
    """ReLU units dead on the whole batch: how many, and whether training made them."""
    if not f.has("dead_fraction"):
        return None
    dead = f.run.layers["dead_fraction"]
    last = len(f.run.records) - 1
    end = dead[last]
    start = dead[f.first]
    if not np.isfinite(end).any():
        return None
    mean_end = float(np.nanmean(end))
    mean_start = float(np.nanmean(start)) if np.isfinite(start).any() else 0.0
    if mean_end < DEAD_LIMIT:
        return None
    when = ("during training" if mean_end - mean_start >= DEAD_GROWTH else
            "at initialization already" if mean_start >= DEAD_LIMIT else "")
    i = int(np.nanargmax(end))
    # dead_fraction has one column per hidden layer; for an MLP column j is layer j+1's output
    name = f.names[i] if f.kind == "watch" else str(i + 1)
    return Finding(
        "dead-relu", f.severity(), f"most ReLU units are dead{' ' + when if when else ''}",
        f"{100 * mean_end:.0f}% of the hidden units output 0 for every example at step "
        f"{f.run.step[last]}, against {100 * mean_start:.0f}% at initialization (layer {name}: "
        f"{100 * float(end[i]):.0f}%); {f.outcome_text()}.",
        f"below {100 * DEAD_LIMIT:.0f}% and not growing: a dead unit gets no gradient and never "
        "comes back",
        "a smaller learning rate (large steps push units below zero for good), Kaiming init, "
        "or an activation without a flat side (LeakyReLU, GELU)",
        "the lecture, part \"Initialization\" (dead units panel); Lu et al., \"Dying ReLU and "
        "initialization\", 2019",
        statistic="dead_fraction", phase=str(f.run.phase[last]), step=int(f.run.step[last]),
        layer=name, value=float(end[i]))


def learning_rate_low(f: Facts) -> Finding | None:
    """Weights that cannot move far enough in the run's budget, and a loss that does not fall."""
    if f.learned or f.diverged or not f.has("weight_rel_change"):
        return None
    last = len(f.run.records) - 1
    moved = f.run.layers["weight_rel_change"][last, f.weight_layers]
    moved = _finite(moved)
    if not len(moved):
        return None
    median = float(np.median(moved))
    if median / max(f.steps, 1) >= LECTURE_PACE:
        return None  # the steps are of a trainable size: too few of them is stalled's
    i = f.weight_layers[int(np.nanargmin(np.abs(f.run.layers["weight_rel_change"][last,
                                                                                  f.weight_layers]
                                                   - median)))]
    lr = f.train.get("lr")
    return Finding(
        "lr-too-low", "error", "the weights barely move: the learning rate is too low (or the "
                               "gradients too small)",
        f"after {f.steps} steps{f' at lr {lr}' if lr is not None else ''} the weights moved a "
        f"median ‖W − W(0)‖/‖W(0)‖ = {_fmt(median)} of their norm; {f.outcome_text()}.",
        f"the lecture's trained nets moved {100 * LECTURE_MOVEMENT:.1f}-10% of their norm in "
        f"{LECTURE_STEPS} steps, {_fmt(LECTURE_PACE)} a step on average; this run moved "
        f"{_fmt(median / max(f.steps, 1))} a step, so it would need "
        f"{_fmt(LECTURE_MOVEMENT * max(f.steps, 1) / max(median, 1e-30))} steps to get as far",
        "a larger learning rate (10x steps), or more steps; if the gradients themselves are "
        "tiny, see the activations (init.c) first",
        "the lecture, part \"Optimization\" (figure weights-move-little)",
        statistic="weight_rel_change", phase=str(f.run.phase[last]), step=int(f.run.step[last]),
        layer=f.names[i], value=float(f.run.layers["weight_rel_change"][last, i]))


def overfitting(f: Facts) -> Finding | None:
    """Training and test error far apart."""
    test = f.run.final_test_error
    errors = f.run.train_error
    last = len(f.run.records) - 1
    rows = [r for r in range(len(f.run.records)) if np.isfinite(errors[r])]
    if not rows or not math.isfinite(test):
        return None
    r = rows[-1]
    train = float(errors[r])
    images = int(f.data.get("test_subset") or MNIST_TEST_IMAGES) if f.kind == "mlp" else None
    noise = GAP_STANDARD_ERRORS * math.sqrt(test * (1 - test) / images) if images else 0.0
    if test - train <= noise or test <= OVERFIT_RATIO * train or test - train < 0.02:
        return None
    subset = f.data.get("train_subset")
    return Finding(
        "overfitting", "warning", "the network overfits: it fits the training set, not new data",
        f"training error {100 * train:.1f}% at step {f.run.step[r]}, test error "
        f"{100 * test:.1f}%" + (f" (trained on {subset} images)" if subset else "") + ".",
        f"a test error within {GAP_STANDARD_ERRORS:g} standard errors "
        f"(±{100 * noise / GAP_STANDARD_ERRORS:.1f} pp) of the training error"
        if images else "a test error close to the training error",
        "more data, dropout in the wide layers (the lecture's remedy), batch norm, weight decay, "
        "or stop earlier",
        "the lecture, part \"Regularization\" (figure dropout)",
        statistic="train_error", phase=str(f.run.phase[r]), step=int(f.run.step[r]),
        value=train) if last >= 0 else None


def stalled(f: Facts) -> Finding | None:
    """The loss did not fall, and no detector above found why."""
    if f.learned or f.diverged or len(f.losses) < 2:
        return None
    last = len(f.run.records) - 1
    return Finding(
        "stalled", "warning", "the loss does not fall",
        f"the loss went from {f.loss_start:.3f} to {f.loss_end:.3f} in {f.steps} steps"
        + (f" (chance on {f.classes} classes is log {f.classes} = "
           f"{math.log(f.classes):.3f})" if f.classes else "") + ".",
        f"a loss below {LEARNED_FRACTION:g}x its start (or chance) once the net learns",
        "more steps first; then a larger learning rate; look at `initlab plot` for which layer "
        "is off",
        "initlab's own check (no other detector explains it)",
        statistic="loss", phase=str(f.run.phase[last]), step=int(f.run.step[last]),
        value=float(f.run.loss[last]) if math.isfinite(f.run.loss[last]) else None)


# The registry: one line per detector, in causal order (see the module's docstring).
Detector = Callable[[Facts], "Finding | None"]
DETECTORS: dict[str, Detector] = {
    "symmetric-init": symmetric_init,
    "no-gradient": no_gradient,
    "activations": activation_scale,  # -> activations-vanish / activations-explode
    "normalized-gradients": normalized_gradients,
    "dropout-noise": dropout_noise,
    "small-batchnorm": small_batchnorm,
    "lr-too-high": learning_rate_high,
    "dead-relu": dead_units,
    "lr-too-low": learning_rate_low,
    "overfitting": overfitting,
    "stalled": stalled,
}
# What each detector can call its finding (``Finding.problem``).
PROBLEMS = ("symmetric-init", "no-gradient", "activations-vanish", "activations-explode",
            "normalized-gradients", "dropout-noise", "small-batchnorm", "lr-too-high",
            "dead-relu", "lr-too-low", "overfitting", "stalled", "healthy")


def healthy(f: Facts) -> Finding:
    test = f.run.final_test_error
    return Finding(
        "healthy", "ok", "nothing wrong found",
        f"{f.outcome_text()}" + (f", test error {100 * test:.1f}%" if math.isfinite(test) else "")
        + "; activations, gradients, updates and dead units within their expected ranges.",
        "what it got", "train longer if the error is still falling", "every detector above",
        statistic="loss", phase=str(f.run.phase[-1]) if len(f.run.phase) else None,
        step=int(f.run.step[-1]) if len(f.run.step) else None,
        value=float(f.run.loss[-1]) if len(f.run.loss) and math.isfinite(f.run.loss[-1])
        else None)


def diagnose_run(run: Run) -> list[Finding]:
    """Every finding for one run, the top one first (most severe, then causal order); a
    "healthy" finding when nothing is worse than info."""
    if not len(run.records):
        return [Finding("stalled", "error", "no records", "the run has no statistics yet.",
                        "records", "train it (or wait for its first record)", "",
                        run=str(run.path))]
    facts = Facts(run)
    found: list[Finding] = []
    for detector in DETECTORS.values():
        finding = detector(facts)
        if finding is not None:
            finding.run = str(run.path)
            found.append(finding)
    order = {key: n for n, key in enumerate(DETECTORS)}
    found.sort(key=lambda x: (-x.rank, order.get(x.problem, order["activations"])))
    if not any(x.rank >= SEVERITIES.index("warning") for x in found):
        finding = healthy(facts)
        finding.run = str(run.path)
        found.insert(0, finding)
    return found


def diagnose(run_or_path: Run | str | Path) -> list[Finding] | dict[str, list[Finding]]:
    """Diagnose a run: its findings, the top one first. A sweep's (or a directory of runs')
    path gives a dict: member path -> its findings."""
    if isinstance(run_or_path, Run):
        return diagnose_run(run_or_path)
    runs = load_runs(run_or_path)
    if len(runs) == 1 and str(runs[0].path) == str(Path(run_or_path).expanduser()):
        return diagnose_run(runs[0])
    return {str(r.path): diagnose_run(r) for r in runs}


def grouped(findings: dict[str, list[Finding]]) -> list[tuple[str, list[Finding]]]:
    """Members grouped by their top finding's problem, worst first: (problem, the members'
    top findings)."""
    groups: dict[str, list[Finding]] = {}
    for top in (fs[0] for fs in findings.values() if fs):
        groups.setdefault(top.problem, []).append(top)
    return sorted(groups.items(), key=lambda kv: -kv[1][0].rank)


def describe(finding: Finding, indent: str = "  ") -> list[str]:
    """A finding as the lines `initlab diagnose` prints."""
    lines = [f"{finding.title} [{finding.severity}]",
             f"{indent}evidence: {finding.evidence}",
             f"{indent}expected: {finding.expected}",
             f"{indent}try:      {finding.advice}",
             f"{indent}source:   {finding.source}"]
    return lines


def top_problem(run: Run) -> Finding | None:
    """The run's top finding when it is a warning or worse (what `initlab run` and the end of
    a watch block print), else None."""
    top = diagnose_run(run)[0]
    return top if top.rank >= SEVERITIES.index("warning") else None


def print_top_finding(path: str | Path) -> None:
    """The end of an ``initlab.watch`` block: the top finding in one line on stderr when the
    run diverged, stalled or trained badly. Diagnosis never breaks the user's program: a
    failure to read the run is one warning."""
    import sys
    import warnings

    try:
        top = top_problem(load_runs(path)[0])
    except Exception as err:  # noqa: BLE001 -- the training is done; say why, never raise
        warnings.warn(f"initlab diagnose {path}: {err}", stacklevel=3)
        return
    if top is not None:
        print(f"initlab diagnose: {top.line()}", file=sys.stderr)


def top_lines(paths: Iterable[str | Path]) -> list[str]:
    """One line per run (member) whose top finding is a warning or worse."""
    lines = []
    for path in paths:
        for run in load_runs(path):
            top = top_problem(run)
            if top is not None:
                lines.append(top.line())
    return lines
