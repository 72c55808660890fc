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

from initlab.describe import plural
from initlab.errors import UsageError
from initlab.runs import Run, load_run, load_runs

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
# Inputs a decade above unit scale: a first layer initialized for inputs of order 1 (Kaiming,
# PyTorch's default: Var(W) ~ 1/n) then gives outputs 10x too large, and its gradient is 10x
# too large as well (∇W = δ x^T): the first layer's effective step is 10x the rest's. Pixels
# in [0, 1] have RMS ~0.3-0.5, standardized inputs 1, pixels 0-255 ~80-100.
INPUT_RMS_LIMIT = 10.0
# Probabilities: every output in [0, 1] and each row summing to 1 within float32's rounding
# over a few classes (1e-3 is generous). Cross-entropy applies log-softmax itself, so on
# probabilities p in [0, 1] its loss cannot go below log(1 + (C − 1)/e) (the true class at
# p = 1, the others at 0): 1.46 on 10 classes, where real logits reach 0.
PROBABILITY_SUM_TOLERANCE = 1e-3
# Half of a layer's bounded units saturated (|tanh| > 0.99, sigmoid within 0.01 of 0 or 1:
# a slope under 2% of its largest): as with dead ReLUs, the layer computes with half its width,
# and the gradient through the saturated half is ~50x smaller.
SATURATED_LIMIT = 0.5
# float32 keeps 24 bits of a number: an update smaller than 2^-24 of a weight rounds to
# nothing. A layer whose relative gradient ‖∇W‖/‖W‖ is a million times below the largest
# layer's (a learning rate that moves the largest by ~1e-2 moves it by ~1e-8) is below that
# resolution: its weights stay put for lack of gradient, not because the optimizer skips them.
FLOAT32_RESOLUTION = 2.0 ** -24
PRECISION_GAP = 1e-6
# Accumulating gradients: at the first backward pass after an optimizer step, .grad should be
# zero or None (optimizer.zero_grad()); in a run that forgot it, it holds every gradient so far,
# which is then stepped with again. A carried-over gradient of a tenth of a fresh one at most
# captures (watch measures exactly 0 after zero_grad) is no rounding: the step adds old
# gradients.
CARRIED_FRACTION = 0.1
# Learned means at least twice chance's accuracy on the test set (on 10 classes: under 80%
# error), whatever the training loss did.
CHANCE_MULTIPLE = 2.0

NORM_TYPES = ("LayerNorm", "BatchNorm", "GroupNorm", "RMSNorm", "InstanceNorm", "SyncBatchNorm",
              "LocalResponseNorm")
# Layers whose output a normalization takes per batch of examples.
BATCHNORM_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm")

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


def _number(x: Any) -> float:
    """A number from a run's config or summary (data, not code: anything may be there), NaN
    when it is not one."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return math.nan
    return float(x)


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
        watch = run.config.get("watch") if isinstance(run.config.get("watch"), dict) else {}
        self.watch: dict[str, Any] = watch
        self.watch_layers: list[dict[str, Any]] = watch.get("layers", [])
        summary_watch = run.summary.get("watch")
        self.summary_watch: dict[str, Any] = summary_watch if isinstance(summary_watch,
                                                                         dict) else {}

    # Records
    @cached_property
    def first(self) -> int:
        """The record of the network at its initialization (MLP: ``init``; watch: step 1, the
        first record with per-layer statistics: an evaluation at step 0 has none)."""
        if "init" in self.run.phase:
            return self.run.at("init")
        for r in range(len(self.run.records)):
            if any(np.isfinite(v[r]).any() for v in self.run.layers.values()):
                return r
        return 0

    @cached_property
    def partial(self) -> bool:
        """Only the initialization was recorded: nothing about training can be said."""
        later = [r for r in range(self.first + 1, len(self.run.records))
                 if any(np.isfinite(v[r]).any() for v in self.run.layers.values())
                 or np.isfinite(self.run.loss[r])]
        return not later and self.steps <= 1

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

    def scale_invariant(self, i: int) -> bool:
        """A weight layer whose output a normalization takes next (directly, or after a ReLU,
        which scales with its input): the net computes the same for W and 2W, so only W's
        direction matters (the lecture, part "Normalization"; van Laarhoven 2017)."""
        if self.is_norm_layer(i):
            return False
        if self.kind == "mlp":
            return self.normalized and i < self.depth - 1
        return i + 1 < self.depth and self.is_norm_layer(i + 1)

    def moved(self, key: str, r: int, i: int) -> float:
        """How far layer i's weights moved (``weight_rel_change``, from W(0)) at record r, as it
        matters for the layer: for a scale-invariant layer, the change of its direction,
        ‖W/‖W‖ − W(0)/‖W(0)‖‖, from the recorded norms; a norm layer's gain is not counted."""
        value = float(self.run.layers[key][r, i])
        if self.is_norm_layer(i):
            return math.nan
        if not self.scale_invariant(i) or key != "weight_rel_change" or \
                not self.has("weight_norm"):
            return value
        now, start = (float(self.run.layers["weight_norm"][r, i]),
                      float(self.run.layers["weight_norm"][self.first, i]))
        if not (now > 0 and start > 0 and math.isfinite(value)):
            return value
        cos = (now**2 + start**2 - (value * start) ** 2) / (2 * now * start)
        return math.sqrt(max(0.0, 2.0 - 2.0 * min(1.0, cos)))

    @cached_property
    def lr(self) -> float | None:
        """The learning rate: the MLP's config, or the first optimizer a watch saw."""
        if self.kind == "mlp":
            value = _number(self.train.get("lr"))
        else:
            optimizers = self.watch.get("optimizers")
            first = optimizers[0] if isinstance(optimizers, list) and optimizers else {}
            value = _number(first.get("lr")) if isinstance(first, dict) else math.nan
        return value if math.isfinite(value) and value > 0 else None

    def optimized(self, i: int) -> bool | None:
        """Whether an optimizer held layer i's weight at the first step (watch), None: unknown."""
        if self.kind != "watch" or i >= len(self.watch_layers):
            return None
        held = self.watch_layers[i].get("optimized")
        return held if isinstance(held, bool) else None

    def watch_numbers(self, key: str) -> dict[str, float]:
        """A ``{name: number}`` part of summary.json's watch section (inputs, outputs)."""
        section = self.summary_watch.get(key)
        return {k: _number(v) for k, v in section.items()} if isinstance(section, dict) else {}

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
        """Outputs of the last layer: the classes of a classifier (MNIST: 10); None for fewer
        than two (a regression, or a one-logit binary classifier), which have no chance rule
        here."""
        if self.kind == "mlp":
            return 10
        shape = self.shape_of(self.depth - 1)
        outputs = shape[0] if shape and self.layer_type(self.depth - 1) == "Linear" else None
        columns = self.watch_numbers("outputs").get("columns", math.nan)
        if math.isfinite(columns) and outputs != int(columns):
            outputs = None  # the last watched layer is not what the model returns
        return outputs if outputs is not None and outputs >= 2 else None

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
        """A cause's severity: an error when the run failed, else a warning (also when only the
        initialization was recorded: whether it fails is not known yet)."""
        return "error" if self.failed and not self.partial else "warning"

    def outcome_text(self) -> str:
        if self.diverged:
            return f"the run diverged at step {self.run.summary.get('diverged_step')}"
        if self.partial:
            return "only the initialization was recorded"
        if not len(self.losses):
            return f"no loss was recorded ({self.steps} steps)"
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
    changes, while the others do. A layer whose gradient is there but so small that its update
    rounds to nothing in float32 is not one of them (vanishing gradients or a learning rate too
    low: ``gradient_scale``, ``learning_rate_low``)."""
    if not f.has("grad_norm") or len(f.run.records) < 2 or f.partial:
        return None
    grads = f.run.layers["grad_norm"]
    weights = f.run.layers.get("weight_norm")
    alive = [i for i in f.weight_layers
             if weights is None or np.isfinite(weights[:, i]).any()]
    none = [i for i in alive if not (np.nan_to_num(grads[:, i]) > 0).any()]
    moving = [i for i in alive if i not in none]
    if not moving:
        return None  # nothing learns: a cause upstream (symmetric-init) or the whole model
    unmoved: list[int] = []
    if f.has("weight_rel_change"):
        change = f.run.layers["weight_rel_change"][-1]
        stepped = f.run.layers.get("update_ratio")
        start = weights[f.first] if weights is not None else np.ones(f.depth)
        biggest = np.nanmax(np.where(np.isfinite(grads), grads, -np.inf), axis=0)
        relative = np.where(start > 0, biggest / np.where(start > 0, start, 1.0), biggest)
        largest = float(np.nanmax(relative[moving])) if moving else math.nan
        for i in moving:
            if change[i] != 0 or f.steps <= 1:
                continue
            if stepped is not None and (np.nan_to_num(stepped[:, i]) > 0).any():
                continue
            # A gradient a million times below the largest: its update is below float32's
            # resolution of W, not skipped.
            if math.isfinite(largest) and relative[i] < PRECISION_GAP * largest:
                continue
            unmoved.append(i)
    stuck = none + [i for i in unmoved if i not in none]
    if not stuck:
        return None
    i = stuck[0]
    last = len(f.run.records) - 1
    skipped = [j for j in stuck if f.optimized(j) is False]
    missing = [j for j in none if j not in skipped and not np.isfinite(grads[:, j]).any()]
    zero = [j for j in none if j not in skipped and j not in missing]
    parts = []
    if skipped:
        parts.append(f"{f.layer_range(skipped)}: the optimizer does not hold these weights "
                     "(they were not among the parameters given to it)")
    if missing:
        parts.append(f"{f.layer_range(missing)}: no gradient (null) in all "
                     f"{len(f.run.records)} records: cut off from the loss (.detach(), "
                     "requires_grad=False, torch.no_grad()) or left out of the optimizer")
    if zero:
        parts.append(f"{f.layer_range(zero)}: ‖∇W‖ is exactly 0 in all {len(f.run.records)} "
                     "records: no path from the loss (a detached graph), or a gradient "
                     "vanished entirely (every unit dead or saturated before it)")
    rest = [j for j in unmoved if j not in skipped]
    if rest:
        parts.append(f"{f.layer_range(rest)}: a gradient of normal size, but ‖W − W(0)‖/‖W(0)‖ "
                     f"= 0 after {f.steps} steps: the optimizer does not update them (not given "
                     "to it, or a learning rate of 0 in its parameter group)")
    evidence = "; ".join(parts) + (f" (layer {f.names[moving[0]]}: ‖∇W‖ up to "
                                   f"{_fmt(float(np.nanmax(grads[:, moving[0]])))})")
    stat, value = ("grad_norm", grads[last, i]) if i in none else \
        ("weight_rel_change", f.run.layers["weight_rel_change"][last, i])
    advice = ("give the optimizer every parameter: optimizer(model.parameters(), ...)"
              if skipped and not (missing or zero or rest) else
              "look for requires_grad=False, .detach() or torch.no_grad() in the forward pass, "
              "and check that the optimizer was given model.parameters(); freeze layers only on "
              "purpose")
    return Finding(
        "no-gradient", "error" if f.failed else "warning",
        "some layers never learn: no gradient reaches them, or the optimizer skips them",
        evidence + f". {f.outcome_text().capitalize()}.",
        "every trainable layer gets a nonzero gradient at every step and moves",
        advice,
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


def unnormalized_inputs(f: Facts) -> Finding | None:
    """Inputs far from unit scale (0-255 pixels): the first layer's outputs and gradient are
    as much too large (watched runs: the first forward pass's input)."""
    rms = f.watch_numbers("inputs").get("rms", math.nan)
    if not math.isfinite(rms) or rms <= INPUT_RMS_LIMIT or (f.depth and f.is_norm_layer(0)):
        return None
    numbers = f.watch_numbers("inputs")
    return Finding(
        "unnormalized-inputs", f.severity(), "the inputs are not normalized",
        f"the model's input in the first forward pass has RMS {_fmt(rms)} (mean "
        f"{_fmt(numbers.get('mean', math.nan))}, range {_fmt(numbers.get('min', math.nan))} to "
        f"{_fmt(numbers.get('max', math.nan))}); {f.outcome_text()}.",
        f"inputs of order 1 (standardized: RMS 1; pixels in [0, 1]: ~0.3-0.5), for which the "
        f"init's Var(W) ~ 1/n is made; above {INPUT_RMS_LIMIT:g} the first layer's outputs and "
        "its gradient are that many times too large, and a learning rate that suits the other "
        "layers is too large for it",
        "scale the inputs: divide pixels by 255 (torchvision's ToTensor does), then subtract "
        "the mean and divide by the standard deviation (Normalize)",
        "LeCun, Bottou, Orr & Müller, \"Efficient BackProp\" (1998), section 4.3: normalize the "
        "inputs; the lecture, part \"Initialization\" (Var(W) = c/n assumes inputs of unit "
        "scale)")


def probability_outputs(f: Facts) -> Finding | None:
    """A model that returns probabilities (a softmax at its end) trained with a loss that
    applies log-softmax itself: its loss cannot fall below log(1 + (C − 1)/e)."""
    out = f.watch_numbers("outputs")
    columns = out.get("columns", math.nan)
    if not (math.isfinite(columns) and columns >= 2 and out.get("min", -1) >= 0
            and out.get("max", 2) <= 1
            and abs(out.get("row_sum_min", 0) - 1) <= PROBABILITY_SUM_TOLERANCE
            and abs(out.get("row_sum_max", 0) - 1) <= PROBABILITY_SUM_TOLERANCE):
        return None
    classes = int(columns)
    floor = math.log(1 + (classes - 1) / math.e)
    lowest = float(np.min(f.losses)) if len(f.losses) else math.nan
    if math.isfinite(lowest) and lowest < floor * 0.99:
        return None  # the loss went below the floor: it is not cross-entropy over these outputs
    seen = (f"; the lowest loss recorded is {_fmt(lowest)}" if math.isfinite(lowest) else "")
    return Finding(
        "probability-outputs", f.severity(), "the model's outputs are already probabilities",
        f"every output of the first forward pass lies in [{_fmt(out.get('min', math.nan))}, "
        f"{_fmt(out.get('max', math.nan))}] and each row of {classes} sums to 1{seen}; "
        f"{f.outcome_text()}.",
        f"logits (any real numbers) for cross_entropy, which applies log-softmax itself: on "
        f"probabilities its loss cannot go below log(1 + (C − 1)/e) = {_fmt(floor)} for C = "
        f"{classes}, and its gradient is squeezed by the softmax's slope twice",
        "remove the softmax at the model's end (nn.CrossEntropyLoss / F.cross_entropy take "
        "logits), or end with log_softmax and use nll_loss; take softmax only to read "
        "probabilities out",
        "PyTorch's CrossEntropyLoss documentation (\"the input is expected to contain the "
        "unnormalized logits\")",
        statistic="loss", value=lowest if math.isfinite(lowest) else None,
        phase=str(f.run.phase[int(np.nanargmin(f.run.loss))]) if math.isfinite(lowest) else None,
        step=int(f.run.step[int(np.nanargmin(f.run.loss))]) if math.isfinite(lowest) else None)


def saturation(f: Facts) -> Finding | None:
    """Bounded units (tanh, sigmoid) pinned at their limits, where their slope is ~0."""
    if not f.has("saturated_fraction"):
        return None
    sat = f.run.layers["saturated_fraction"]
    last = len(f.run.records) - 1
    rows = [(f.first, "at initialization"), (last, f"at step {f.run.step[last]}")]
    worst = max(rows, key=lambda rw: float(np.nanmean(sat[rw[0]]))
                if np.isfinite(sat[rw[0]]).any() else -1.0)
    r, when = worst
    if not np.isfinite(sat[r]).any() or float(np.nanmean(sat[r])) < SATURATED_LIMIT:
        return None
    mean = float(np.nanmean(sat[r]))
    i = int(np.nanargmax(sat[r]))
    name = f.names[i] if f.kind == "watch" else str(i + 1)
    modules = f.watch.get("modules") if isinstance(f.watch.get("modules"), dict) else {}
    act = f.activation or ", ".join(k for k in ("Tanh", "Sigmoid", "Hardtanh", "Softsign",
                                                "Hardsigmoid") if k in modules)
    return Finding(
        "saturation", f.severity(), "the units saturate: tanh/sigmoid outputs pinned at their "
                                    "limits",
        f"{100 * mean:.0f}% of the bounded ({act or 'tanh/sigmoid'}) units' outputs are within "
        f"1% of their limits {when} (layer {name}: {100 * float(sat[r, i]):.0f}%); "
        f"{f.outcome_text()}.",
        f"under {100 * SATURATED_LIMIT:.0f}%: a saturated unit's slope is under 2% of its "
        "largest, so almost no gradient passes it, and a larger learning rate does not help",
        "a smaller init (Xavier: W ~ N(0, 1/n) for tanh), normalized inputs, or normalization "
        "before the activation (model.norm_position=pre); ReLU-like activations do not "
        "saturate",
        "Glorot & Bengio, \"Understanding the difficulty of training deep feedforward neural "
        "networks\", AISTATS 2010 (saturation of sigmoid and tanh units)",
        statistic="saturated_fraction", phase=str(f.run.phase[r]), step=int(f.run.step[r]),
        layer=name, value=float(sat[r, i]))


def gradient_profile(f: Facts) -> tuple[list[int], np.ndarray] | None:
    """The relative gradient ‖∇W_i‖/‖W_i‖ at initialization of the layers where the depth
    alone should not change it: the chains of one type and shape (several layers), else every
    weight layer but embeddings; (layers, values), only layers with a gradient."""
    if not f.has("grad_norm") or not f.has("weight_norm"):
        return None
    grad = f.row("grad_norm", f.first)
    norm = f.row("weight_norm", f.first)
    chains = [c for c in f.chains() if len(c) >= 3]
    layers = [i for c in chains for i in c] if chains else \
        [i for i in f.weight_layers if "Embedding" not in f.layer_type(i)]
    layers = [i for i in layers if math.isfinite(grad[i]) and grad[i] > 0 and norm[i] > 0]
    if len(layers) < 3:
        return None
    return layers, grad[layers] / norm[layers]


def gradient_scale(f: Facts) -> Finding | None:
    """Gradients that vanish (or explode) towards the input in a net without normalization,
    read from the gradient profile at initialization (not the activations: sigmoid nets keep
    their activations and lose their gradients)."""
    if f.normalized:
        return None  # normalized_gradients judges those against sqrt(π/(π−1))
    profile = gradient_profile(f)
    if profile is None:
        return None
    layers, relative = profile
    third = max(1, len(layers) // 3)
    early, late = float(np.median(relative[:third])), float(np.median(relative[-third:]))
    span = early / late
    if 1 / GRADIENT_SPAN_BAND <= span <= GRADIENT_SPAN_BAND:
        return None
    vanish = span < 1
    i = layers[int(np.argmin(relative) if vanish else np.argmax(relative))]
    grads = f.row("grad_norm", f.first)
    # The updates of these layers: rounded to nothing in float32?
    rounded: list[int] = []
    if vanish and f.has("update_ratio") and len(f.train_rows):
        stepped = f.run.layers["update_ratio"][f.train_rows]
        rounded = [j for j in layers if np.isfinite(stepped[:, j]).any()
                   and not (np.nan_to_num(stepped[:, j]) > 0).any()]
    # Layers before the profile with no gradient at all: vanished entirely, or cut off.
    cut = [j for j in f.weight_layers if j < layers[0] and not (
        np.nan_to_num(f.run.layers["grad_norm"][:, j]) > 0).any()]
    text = (f"at initialization ‖∇W‖/‖W‖ is {_fmt(early)} in the first layers and "
            f"{_fmt(late)} in the last ({f.layer_range(layers)}): {_fmt(span)}x from the "
            f"output to the input; layer {f.names[i]}: ‖∇W‖ = {_fmt(float(grads[i]))}")
    if rounded:
        text += (f"; the updates of {f.layer_range(rounded)} round to nothing in float32 "
                 f"(‖ΔW‖/‖W‖ = 0: below 2^-24 of the weights)")
    if cut:
        text += (f"; {f.layer_range(cut)} get no gradient at all: vanished entirely, or a "
                 f"detached graph (.detach(), requires_grad=False) -- a detached layer's "
                 f"gradient is missing (null), a vanished one's shrinks towards it")
    word = "vanish" if vanish else "explode"
    return Finding(
        "vanishing-gradients" if vanish else "exploding-gradients", f.severity(),
        f"the gradients {word} towards the input",
        f"{text}. {f.outcome_text().capitalize()}.",
        f"‖∇W_i‖/‖W_i‖ within {GRADIENT_SPAN_BAND:.0f}x across the depth: further apart, one "
        "learning rate moves the first layers " + ("not at all" if vanish else "too far") +
        " while it suits the last (sigmoid's slope is at most 1/4, so each sigmoid layer "
        "shrinks the gradient; saturated tanh units do the same)",
        "ReLU (or GELU) instead of sigmoid/tanh in deep stacks, an init that keeps the "
        "gradient's scale (Kaiming for ReLU, Xavier for tanh), residual connections or "
        "normalization; Adam scales each layer's step by its own gradient" +
        ("; gradient clipping for exploding ones" if not vanish else ""),
        "Hochreiter 1991, Bengio, Simard & Frasconi 1994 (vanishing gradients); Glorot & "
        "Bengio 2010; the lecture, part \"Initialization\"",
        statistic="grad_norm", phase=str(f.run.phase[f.first]), step=int(f.run.step[f.first]),
        layer=f.names[i], value=float(grads[i]), layers=[f.names[j] for j in layers])


def accumulating_gradients(f: Facts) -> Finding | None:
    """optimizer.zero_grad() forgotten: each step adds the new gradient to all the old ones
    (watch measures what .grad still holds at the first backward after a step)."""
    entries = f.summary_watch.get("carried_gradients")
    if not isinstance(entries, list):
        return None
    pairs = [(int(e[0]), _number(e[1]), _number(e[2])) for e in entries
             if isinstance(e, list) and len(e) == 3 and isinstance(e[0], int)]
    pairs = [(step, c, n) for step, c, n in pairs if math.isfinite(c) and math.isfinite(n)]
    carried = [(step, c, n) for step, c, n in pairs if c > CARRIED_FRACTION * n and c > 0]
    if len(pairs) < 2 or len(carried) * 2 < len(pairs):
        return None
    step, c, n = carried[-1]
    return Finding(
        "accumulating-gradients", f.severity(),
        "the gradients accumulate: optimizer.zero_grad() is not called",
        f"at {len(carried)} of {len(pairs)} captured steps .grad still held a gradient when "
        f"the next backward pass began: at step {step}, ‖carried‖ = {_fmt(c)} against "
        f"‖new‖ = {_fmt(n)}; {f.outcome_text()}.",
        ".grad zero (or None) at the first backward after each optimizer step: the step "
        "should use this batch's gradient, not the sum of all so far",
        "call optimizer.zero_grad() (or model.zero_grad()) once per step, before "
        "loss.backward(); accumulate over micro-batches on purpose only, zeroing after the "
        "optimizer's step",
        "PyTorch's autograd documentation: backward() accumulates into .grad",
        statistic=None, step=step, value=c)



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


def watched_dropout(f: Facts) -> tuple[list[float], float]:
    """A watched model's dropout rates and their noise/signal: in a stack, each layer's
    multiplies the second moment by 1/(1 − p), so they compound; in a model with attention
    (residual branches, each adding its own noise to one stream) they add: Σ p/(1 − p)."""
    given = f.watch.get("dropout")
    rates = [r for r in (_number(p) for p in given) if 0 < r < 1] \
        if isinstance(given, list) else []
    if not rates:
        return [], 0.0
    if any("MultiheadAttention" in f.layer_type(i) for i in range(f.depth)):
        return rates, sum(r / (1 - r) for r in rates)
    return rates, math.prod(1 / (1 - r) for r in rates) - 1.0


def dropout_noise(f: Facts) -> Finding | None:
    """Dropout after every one of many layers: the noise it adds outgrows the signal."""
    if f.kind == "watch":
        rates, noise_to_signal = watched_dropout(f)
        if noise_to_signal <= 1.0:
            return None
        shown = ", ".join(f"{r:g}" for r in rates[:6]) + (", ..." if len(rates) > 6 else "")
        return Finding(
            "dropout-noise", f.severity(), "dropout noise drowns the signal",
            f"{len(rates)} dropout module{'s' if len(rates) > 1 else ''} (p = {shown}): "
            f"noise/signal ≈ {_fmt(noise_to_signal)} in training; {f.outcome_text()}.",
            "each dropout layer multiplies the second moment by 1/(1−p), the excess being "
            "noise: noise/signal ≈ Π 1/(1−p) − 1 through a stack (Σ p/(1−p) over residual "
            "branches); above 1 the noise is the stronger, and training steps follow it",
            "a smaller p (0.1-0.5), dropout in fewer layers, or none until the net overfits",
            "the lecture, part \"Regularization\" (figures regularization, dropout); "
            "Srivastava et al. 2014")
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
    if f.kind == "watch":
        if not any(f.layer_type(i) in BATCHNORM_TYPES for i in range(f.depth)):
            return None
        batch_size = _number(f.watch.get("batch_size"))
        if not math.isfinite(batch_size):
            return None
        batch = int(batch_size)
    elif f.norm not in ("batch", "syncbatch"):
        return None
    else:
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
        if not finite_rows or not math.isfinite(f.run.loss[f.first]):
            return None  # not finite before any update: diverged_at_start's
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
    # Steps too large: the relative change of the weights reaches 1 before the loss fell (a
    # healthy run gets there, if ever, only after it has learned). Summed over the layers of a
    # plain net (a product of matrices changes by the sum, to first order); in a net with
    # normalization, which resets each layer's scale, per layer (the largest), a layer
    # followed by a normalization by its direction only.
    per_layer = any(f.scale_invariant(i) for i in range(f.depth))
    combine, sigma = (np.nanmax, "max_i") if per_layer else (np.nansum, "Σ_i")
    if change is not None:
        for r in range(f.first + 1, len(f.run.records)):
            moved = np.array([f.moved("weight_rel_change", r, i) for i in range(f.depth)])
            if not np.isfinite(moved).any():
                continue
            total = float(combine(moved))
            if total < FUNCTION_CHANGE_LIMIT:
                continue
            loss_so_far = _finite(f.run.loss[f.first + 1:r + 1])
            if len(loss_so_far) and np.min(loss_so_far) < LEARNED_FRACTION * f.loss_reference:
                break
            i = int(np.nanargmax(moved))
            return Finding(
                "lr-too-high", f.severity(), "the learning rate is too high",
                f"by step {f.run.step[r]}{lr_text} the weights moved {sigma} ‖W_i − W_i(0)‖/"
                f"‖W_i(0)‖"
                f" = {_fmt(total)} of their norms (layer {f.names[i]}: "
                f"{_fmt(float(change[r, i]))}"
                + (", the change of its direction: it is followed by a normalization"
                   if f.scale_invariant(i) else "") +
                f") while the loss had not fallen; {f.outcome_text()}.",
                f"{sigma} below {FUNCTION_CHANGE_LIMIT:g} until the net has learned: the lecture's "
                f"trained nets moved a median {100 * LECTURE_MOVEMENT:.1f}-10% per layer over "
                "10 epochs",
                advice, source, statistic="weight_rel_change", phase=str(f.run.phase[r]),
                step=int(f.run.step[r]), layer=f.names[i], value=float(change[r, i]))
    if updates is not None and len(f.train_rows):
        counted = [i for i in range(f.depth) if not f.is_norm_layer(i)]  # a gain is no matrix
        block = updates[f.train_rows][:, counted]
        sums = np.where(np.isfinite(block).any(axis=1), combine(block, axis=1), 0.0) \
            if per_layer else np.nansum(block, axis=1)
        r = int(f.train_rows[int(np.argmax(sums))])
        if sums.max() >= FUNCTION_CHANGE_LIMIT:
            i = counted[int(np.nanargmax(updates[r, counted]))]
            return Finding(
                "lr-too-high", f.severity(), "the learning rate is too high",
                f"at step {f.run.step[r]}{lr_text} one update changed the weights by "
                f"{sigma} ‖ΔW_i‖/‖W_i‖ = {_fmt(float(sums.max()))} (layer {f.names[i]}: "
                f"{_fmt(float(updates[r, i]))}); {f.outcome_text()}.",
                f"{sigma} ‖ΔW_i‖/‖W_i‖ well below {FUNCTION_CHANGE_LIMIT:g} per step (~1e-3 per "
                "layer is the usual rule)",
                advice, source, statistic="update_ratio", phase="train", step=int(f.run.step[r]),
                layer=f.names[i], value=float(updates[r, i]))
    # Loss spikes: after learning, a training loss back above where it started undoes it all.
    # Learning is judged, as ``loss_end``, on the median of three records (one batch's loss is
    # noisy).
    train_loss = f.run.loss[f.train_rows] if len(f.train_rows) else np.array([])
    if len(train_loss) >= 3 and math.isfinite(f.loss_reference):
        filled = np.nan_to_num(train_loss, nan=np.inf)
        medians = np.array([np.median(filled[max(0, k - 2):k + 1]) if k >= 2 else np.inf
                            for k in range(len(filled))])
        best = np.fmin.accumulate(medians)
        spikes = np.flatnonzero((best < LEARNED_FRACTION * f.loss_reference) &
                                (train_loss > f.loss_reference))
        if len(spikes):
            r = int(f.train_rows[spikes[0]])
            return Finding(
                "lr-too-high", "warning", "the learning rate is too high: the loss spikes",
                f"the training loss reached {_fmt(float(best[spikes[0]]))} and then jumped to "
                f"{_fmt(float(f.run.loss[r]))} at step {f.run.step[r]}{lr_text}, above where "
                f"it started ({_fmt(f.loss_reference)}); {plural(len(spikes), 'such record')}.",
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
    if f.learned or f.diverged or f.partial or not f.has("weight_rel_change"):
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


def diverged_at_start(f: Facts) -> Finding | None:
    """A loss that was not finite before any update: the initialization or the inputs made
    it (no learning rate has acted yet)."""
    if not f.diverged:
        return None
    step = f.run.summary.get("diverged_step")
    at_start = (not len(f.run.records) and isinstance(step, int)
                and step <= (0 if f.kind == "mlp" else 1)) or \
        (len(f.run.records) > 0 and not math.isfinite(f.run.loss[f.first])
         and f.run.step[f.first] <= (0 if f.kind == "mlp" else 1))
    if not at_start:
        return None
    return Finding(
        "diverged-at-start", "error", "the loss is not finite from the start",
        f"the loss was NaN or infinite at step {step}, before any update: the initialization "
        "or the inputs give it, not the learning rate.",
        "a finite loss at initialization (log of the classes for a classifier)",
        "look for NaN/Inf in the data (torch.isfinite(x).all()), inputs far out of scale, an "
        "init that overflows (a huge std), or log/division by zero in the forward pass or loss",
        "initlab's own check: the first forward pass uses the initial weights only",
        step=step if isinstance(step, int) else None)


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
    "diverged-at-start": diverged_at_start,
    "symmetric-init": symmetric_init,
    "unnormalized-inputs": unnormalized_inputs,
    "probability-outputs": probability_outputs,
    "activations": activation_scale,  # -> activations-vanish / activations-explode
    "saturation": saturation,
    "gradients": gradient_scale,  # -> vanishing-gradients / exploding-gradients
    "normalized-gradients": normalized_gradients,
    "no-gradient": no_gradient,
    "accumulating-gradients": accumulating_gradients,
    "dropout-noise": dropout_noise,
    "small-batchnorm": small_batchnorm,
    "lr-too-high": learning_rate_high,
    "dead-relu": dead_units,
    "lr-too-low": learning_rate_low,
    "overfitting": overfitting,
    "stalled": stalled,
}
# What each detector can call its finding (``Finding.problem``).
PROBLEMS = ("diverged-at-start", "symmetric-init", "unnormalized-inputs", "probability-outputs",
            "activations-vanish", "activations-explode", "saturation", "vanishing-gradients",
            "exploding-gradients", "normalized-gradients", "no-gradient",
            "accumulating-gradients", "dropout-noise", "small-batchnorm", "lr-too-high",
            "dead-relu", "lr-too-low", "overfitting", "stalled", "healthy", "not-trained",
            "no-outcome", "unreadable")
# Detectors that name a finding by another key (the first key of a family).
FAMILY = {"activations-vanish": "activations", "activations-explode": "activations",
          "vanishing-gradients": "gradients", "exploding-gradients": "gradients"}


def learned_criterion(f: Facts) -> str:
    """The stated criterion a run met to count as having learned."""
    chance = (f"; test error below 1 − {CHANCE_MULTIPLE:g}/{f.classes} = "
              f"{100 * (1 - CHANCE_MULTIPLE / f.classes):.0f}%" if f.classes else "")
    return (f"it learned: the loss fell below {LEARNED_FRACTION:g}x "
            + (f"min(its start, chance log {f.classes})" if f.classes else "its start")
            + chance)


def healthy(f: Facts) -> Finding:
    """Nothing wrong found -- only for a run that learned by ``learned_criterion``."""
    test = f.run.final_test_error
    return Finding(
        "healthy", "ok", "nothing wrong found",
        f"{f.outcome_text()}" + (f", test error {100 * test:.1f}%" if math.isfinite(test) else "")
        + f" ({learned_criterion(f)}); activations, gradients, updates and dead units within "
        "their expected ranges.",
        "what it got", "train longer if the error is still falling", "every detector above",
        statistic="loss", phase=str(f.run.phase[-1]) if len(f.run.phase) else None,
        step=int(f.run.step[-1]) if len(f.run.step) else None,
        value=float(f.run.loss[-1]) if len(f.run.loss) and math.isfinite(f.run.loss[-1])
        else None)


def no_verdict(f: Facts) -> Finding:
    """Nothing wrong found, but no sign the run learned either: never called healthy."""
    if f.partial:
        return Finding(
            "not-trained", "info", "only the initialization was recorded",
            "the run holds its initialization's record and no training step yet; the checks "
            "of the initialization (activations, gradients, inputs, outputs) found nothing.",
            "records of training steps", "train it (or wait for its next record), then "
            "diagnose it again", "initlab's own check")
    return Finding(
        "no-outcome", "info", "nothing wrong found, and no sign it learned",
        f"{f.outcome_text() if len(f.losses) else 'no loss was recorded'}: without a loss "
        "that falls (or a test error) there is no telling whether the run learned.",
        f"a loss below {LEARNED_FRACTION:g}x its start",
        "pass the loss to watch.step(loss), and an evaluation to watch.evaluate(test_error=...)",
        "initlab's own check")


def diagnose_run(run: Run) -> list[Finding]:
    """Every finding for one run, the top one first (most severe, then causal order);
    "healthy" only when nothing is worse than info and the run learned by its stated
    criterion."""
    facts = Facts(run)
    if not len(run.records) and not facts.diverged:
        return [Finding("not-trained", "info", "no records", "the run has no statistics yet.",
                        "records", "train it (or wait for its first record)", "",
                        run=str(run.path))]
    found: list[Finding] = []
    for detector in DETECTORS.values():
        if not len(run.records) and detector is not diverged_at_start:
            continue
        finding = detector(facts)
        if finding is not None:
            finding.run = str(run.path)
            found.append(finding)
    if not len(run.records) and not found:  # diverged after step 1, before its first record
        found.append(Finding(
            "lr-too-high", "error", "the run diverged before its first record",
            f"the loss became NaN/Inf at step {run.summary.get('diverged_step')}, before any "
            "record was kept: most often a learning rate too high, but NaN/Inf in the data "
            "does the same (no record tells them apart).",
            "a loss that stays finite", "a 10x smaller learning rate; check the data with "
            "torch.isfinite(x).all()", "initlab's own check", run=str(run.path)))
    order = {key: n for n, key in enumerate(DETECTORS)}
    found.sort(key=lambda x: (-x.rank, order.get(FAMILY.get(x.problem, x.problem), 0)))
    if not any(x.rank >= SEVERITIES.index("warning") for x in found):
        finding = healthy(facts) if facts.learned else no_verdict(facts)
        finding.run = str(run.path)
        found.insert(0, finding)
    return found


def unreadable(path: Path, err: Exception) -> Finding:
    return Finding("unreadable", "error", "the run cannot be read", str(err),
                   "a run directory as initlab writes it", "see the message; the other runs "
                   "are diagnosed as usual", "initlab.load_run", run=str(path))


def member_dirs(path: Path) -> list[Path]:
    """The member run directories ``load_runs`` would load, without loading them."""
    from initlab.runs import find_runs, is_run_dir, is_sweep_dir, not_a_run, sweep_members

    if is_run_dir(path):
        return [path]
    if is_sweep_dir(path):
        return sweep_members(path)
    found = find_runs(path) if path.is_dir() else []
    if not found:
        raise UsageError(not_a_run(path))
    return [member for entry in found for member in entry.members]


def diagnose_members(path: str | Path) -> dict[str, list[Finding]]:
    """Each member under ``path`` (a run, a sweep, a directory of runs): its findings; a member
    that cannot be read gets one finding saying why, and the others are diagnosed."""
    found: dict[str, list[Finding]] = {}
    for member in member_dirs(Path(path).expanduser()):
        try:
            run = load_run(member)
        except UsageError as err:
            found[str(member)] = [unreadable(member, err)]
            continue
        found[str(run.path)] = diagnose_run(run)
    return found


def diagnose(run_or_path: Run | str | Path) -> list[Finding] | dict[str, list[Finding]]:
    """Diagnose a run: its findings, the top one first. A sweep's (or a directory of runs')
    path gives a dict: member path -> its findings (a damaged member: why it cannot be read)."""
    if isinstance(run_or_path, Run):
        return diagnose_run(run_or_path)
    members = diagnose_members(run_or_path)
    only = next(iter(members)) if len(members) == 1 else None
    if only is not None and only == str(Path(run_or_path).expanduser()):
        return members[only]
    return members


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
        for findings in diagnose_members(path).values():
            top = findings[0]
            if top.rank >= SEVERITIES.index("warning"):
                lines.append(top.line())
    return lines
