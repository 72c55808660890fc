"""The stacked model: initialization statistics, member independence, norm placement."""

from __future__ import annotations

import math

import pytest
import torch

from initlab.choices import NORM_CHOICES
from initlab.config import ModelConfig
from initlab.model import ActivityRecorder, StackedMLP
from initlab.norms import NORMS, WEIGHT_NORMS
from initlab.stats import activation_norms, cross_entropy_per_member, dead_fractions


def weights(model: StackedMLP, member: int) -> list[torch.Tensor]:
    return [model.weight(i)[member].detach() for i in range(model.depth)]


@pytest.mark.parametrize("scheme", ["normal", "uniform"])
@pytest.mark.parametrize("c", [1.0, 2.0, 3.0])
def test_init_variance_is_c_over_n(scheme: str, c: float) -> None:
    model = StackedMLP(ModelConfig(depth=6, width=100), members=1)
    model.initialize([scheme], [c], [0])
    for w in weights(model, 0):
        n_in = w.shape[0]
        var = w.var(correction=0).item()
        # The sample variance of m entries has relative std sqrt(2/m) (normal) or less
        # (uniform); 5 of those is a bound a correct init practically never crosses.
        tolerance = 5 * math.sqrt(2 / w.numel())
        assert abs(var * n_in / c - 1) < tolerance, (scheme, c, n_in, var)
        assert abs(w.mean().item()) < 5 * math.sqrt(c / n_in / w.numel())


def test_uniform_is_bounded_and_normal_is_not() -> None:
    model = StackedMLP(ModelConfig(depth=3, width=100), members=2)
    model.initialize(["uniform", "normal"], [2.0, 2.0], [0, 0])
    bound = math.sqrt(3 * 2.0 / 100)
    w_uniform, w_normal = model.weight(1)[0], model.weight(1)[1]
    assert w_uniform.abs().max().item() <= bound + 1e-6
    assert w_normal.abs().max().item() > bound


def test_zero_init_and_biases() -> None:
    model = StackedMLP(ModelConfig(depth=4, width=8), members=1)
    model.initialize(["zeros"], [2.0], [0])
    assert all(torch.count_nonzero(w) == 0 for w in weights(model, 0))
    assert torch.count_nonzero(model.bias(0)) == 0


def test_member_weights_do_not_depend_on_the_group() -> None:
    """A member initialized inside a sweep gets the same weights as alone."""
    cfg = ModelConfig(depth=5, width=16)
    alone = StackedMLP(cfg, members=1)
    alone.initialize(["normal"], [1.7], [3])
    group = StackedMLP(cfg, members=3)
    group.initialize(["normal"] * 3, [2.0, 1.7, 2.3], [0, 3, 0])
    for a, b in zip(weights(alone, 0), weights(group, 1), strict=True):
        assert torch.equal(a, b)
    # Same seed, different c: the same draw, scaled.
    w2, w23 = weights(group, 0)[2], weights(group, 2)[2]
    assert torch.allclose(w23, w2 * math.sqrt(2.3 / 2.0), rtol=1e-5)


def test_parameters_are_views_of_the_flat_buffer() -> None:
    model = StackedMLP(ModelConfig(depth=3, width=8, norm="layer"), members=2)
    model.initialize(["normal"] * 2, [2.0, 2.0], [0, 1])
    total = sum(p.numel() for p in model.parameters())
    assert total == model.flat.numel()
    x = torch.randn(2, 4, 784)
    model(x).sum().backward()
    assert model.flat_grad.abs().sum() > 0  # autograd wrote into the flat gradient buffer
    for p in model.parameters():
        assert p.grad is not None and p.grad.data_ptr() >= model.flat_grad.data_ptr()


# Every normalization in the registries, alone: a new one is tested without editing this file.
# (syncbatch in one process is batch norm.)
NORMALIZATIONS = ([(norm, "none") for norm in NORMS if not NORMS[norm].identity]
                  + [("none", w) for w in WEIGHT_NORMS if not WEIGHT_NORMS[w].identity])


@pytest.mark.parametrize(("norm", "weight_norm"), NORMALIZATIONS)
def test_normalization_removes_the_scale(norm: str, weight_norm: str) -> None:
    """z_{i+1} = norm(relu(W z + b)), or relu(z f(W) + b): hidden activations have the same
    norm whatever c."""
    cfg = ModelConfig(depth=6, width=20, norm=norm, groups=4, weight_norm=weight_norm)
    model = StackedMLP(cfg, members=2)
    model.initialize(["normal"] * 2, [1.0, 3.0], [0, 0])
    recorder = ActivityRecorder()
    x = torch.rand(1, 32, 784, generator=torch.Generator().manual_seed(0))  # not test order
    model(x.expand(2, -1, -1), recorder)
    # Without normalization these differ by (3/1)^(i/2); with it, only through the eps
    # in sqrt(var + eps), which matters for the few tiny groups of 5 post-ReLU features.
    norms = activation_norms(recorder.activity().inputs)  # [K, L]
    assert torch.allclose(norms[0, 1:], norms[1, 1:], rtol=1e-2), (norm, norms)


def test_batch_norm_eval_uses_running_averages() -> None:
    model = StackedMLP(ModelConfig(depth=3, width=8, norm="batch"), members=1)
    model.initialize(["normal"], [2.0], [0])
    x = torch.rand(1, 16, 784)
    model(x)
    assert not torch.equal(model.norm.running_mean, torch.zeros_like(model.norm.running_mean))
    model.eval()
    single = model(x[:, :1])
    batched = model(x)[:, :1]
    assert torch.allclose(single, batched, atol=1e-6)
    model.train()
    assert not torch.allclose(model(x[:, :2], update_running=False)[:, :1],
                              model(x, update_running=False)[:, :1], atol=1e-4)


# (activation, bias, dropout, position) each norm of the registry is checked with: both
# placements, with and without biases and dropout, an activation whose derivative does not
# survive dropout's rescaling (tanh).
NORM_VARIANTS = [("relu", True, 0.0, "post"), ("relu", True, 0.3, "post"),
                 ("tanh", False, 0.2, "post"), ("relu", False, 0.3, "pre"),
                 ("tanh", True, 0.0, "pre")]
# Without a norm: each activation, with and without biases and dropout.
PLAIN_VARIANTS = [("relu", True, 0.0), ("relu", False, 0.0), ("tanh", True, 0.0),
                  ("identity", True, 0.0), ("relu", True, 0.3), ("identity", False, 0.2)]
# Each weight norm: alone, and under an activation norm after and before the activation.
WEIGHT_VARIANTS = [("relu", True, 0.0, "none", "post"), ("relu", True, 0.3, "group", "post"),
                   ("relu", False, 0.0, "group", "pre"), ("tanh", True, 0.2, "batch", "post"),
                   ("relu", True, 0.3, "layer", "pre")]
BACKWARD_CASES = (
    [(act, bias, p, "none", "post", "none") for act, bias, p in PLAIN_VARIANTS]
    + [(act, bias, p, norm, pos, "none") for norm in NORMS if not NORMS[norm].identity
       for act, bias, p, pos in NORM_VARIANTS]
    + [(act, bias, p, norm, pos, w) for w in WEIGHT_NORMS if not WEIGHT_NORMS[w].identity
       for act, bias, p, norm, pos in WEIGHT_VARIANTS])


@pytest.mark.parametrize(("activation", "bias", "dropout", "norm", "position", "weight_norm"),
                         BACKWARD_CASES)
def test_hand_written_backward_matches_autograd(activation: str, bias: bool, dropout: float,
                                                norm: str, position: str,
                                                weight_norm: str) -> None:
    """Loss, logits, every gradient element, what the statistics read (layer inputs,
    activation outputs, a unit's nonlinearity input) and the norm's buffers (batch norm's
    running averages) agree with autograd for K = 3 members that differ in init, dropout rate
    and weights (norm gains and shifts too), with the norm after the activation (the
    lecture's) or before it, and with each weight norm."""
    # Group norm over a handful of post-ReLU features is ill-conditioned (a group's variance
    # can be near 0, and rounding differences grow by 1/std): 12 features per group here.
    width = 24 if NORM_CHOICES[norm].grouped else 12
    cfg = ModelConfig(depth=5, width=width, activation=activation, bias=bias, norm=norm,
                      groups=2, norm_position=position, weight_norm=weight_norm)

    def build() -> StackedMLP:
        model = StackedMLP(cfg, members=3)
        model.initialize(["normal"] * 3, [1.0, 2.0, 3.0], [0, 1, 2])
        model.set_dropout([dropout, dropout / 2, 0.0], seeds=[7, 7, 7])  # same masks in both
        with torch.no_grad():  # nonzero biases too
            model.flat.add_(0.05 * torch.randn(model.flat.shape,
                                               generator=torch.Generator().manual_seed(3)))
        return model

    auto, manual = build(), build()
    assert manual.supports_manual_backward()
    x = torch.rand(3, 16, 784, generator=torch.Generator().manual_seed(4))
    y = torch.randint(0, 10, (3, 16), generator=torch.Generator().manual_seed(5))
    recorder = ActivityRecorder()
    logits = auto(x, recorder)
    loss = cross_entropy_per_member(logits, y)
    loss.sum().backward()
    manual.flat_grad.fill_(float("nan"))  # every element must be written, none accumulated
    m_logits, m_loss, activity = manual.manual_loss_and_grad(x, y, capture=True)
    # The norm's affine step is one addcmul here, a multiply then an add (two roundings) in
    # autograd; after a few normalized layers that is a few ulps.
    # Standardized weights without a norm grow the logits by ~sqrt(width) per layer: the
    # absolute tolerance follows their scale.
    logit_scale = max(1.0, float(logits.detach().abs().max()))
    torch.testing.assert_close(m_logits, logits.detach(), rtol=1e-5, atol=1e-5 * logit_scale)
    torch.testing.assert_close(m_loss, loss.detach(), rtol=1e-5, atol=1e-6)
    # Absolute tolerance on the gradient's own scale: entries near 0 carry rounding of the
    # large ones they were computed from. A weight norm's backward subtracts two means per
    # column, whose cancellation leaves a few 1e-6 of the largest gradient.
    scale = float(auto.flat_grad.abs().max()) * (1 if weight_norm == "none" else 10)
    torch.testing.assert_close(manual.flat_grad, auto.flat_grad, rtol=1e-4, atol=1e-6 * scale)
    expected = recorder.activity()
    torch.testing.assert_close(activation_norms(activity.inputs),
                               activation_norms(expected.inputs))
    torch.testing.assert_close(dead_fractions(activity.activations),
                               dead_fractions(expected.activations))
    torch.testing.assert_close(activity.unit_inputs, expected.unit_inputs, rtol=1e-5, atol=1e-5)
    manual_buffers = dict(manual.named_buffers())
    for name, buffer in auto.named_buffers():
        torch.testing.assert_close(manual_buffers[name], buffer, msg=name)
    initial = dict(build().norm.named_buffers())
    for name, buffer in manual.norm.named_buffers():  # and they moved
        assert not torch.equal(buffer, initial[name]), name


def test_tanh_with_dropout_and_no_norm_keeps_autograd() -> None:
    model = StackedMLP(ModelConfig(depth=3, width=8, activation="tanh"), members=1)
    model.set_dropout([0.1], seeds=[0])
    assert not model.supports_manual_backward()
    model.set_dropout([0.0], seeds=[0])
    assert model.supports_manual_backward()


def test_pre_norm_with_tanh_and_dropout_keeps_autograd() -> None:
    model = StackedMLP(ModelConfig(depth=3, width=8, activation="tanh", norm="layer",
                                   norm_position="pre"), members=1)
    model.set_dropout([0.1], seeds=[0])
    assert not model.supports_manual_backward()
    post = StackedMLP(ModelConfig(depth=3, width=8, activation="tanh", norm="layer"), members=1)
    post.set_dropout([0.1], seeds=[0])
    assert post.supports_manual_backward()


def test_pre_norm_normalizes_the_nonlinearity_input() -> None:
    """Batch norm before the ReLU: each hidden unit's input has batch mean 0 (gain 1, shift
    0 at init), whatever the scale c."""
    model = StackedMLP(ModelConfig(depth=4, width=16, norm="batch", norm_position="pre"),
                       members=2)
    model.initialize(["normal"] * 2, [0.5, 5.0], [0, 0])
    recorder = ActivityRecorder()
    model(torch.rand(2, 64, 784), recorder)
    units = recorder.activity().unit_inputs  # [L - 1, K, B]
    torch.testing.assert_close(units.mean(dim=-1), torch.zeros(3, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("weight_norm", [w for w in WEIGHT_NORMS if not WEIGHT_NORMS[w].identity])
def test_weight_norm_backward_matches_autograd_in_double(weight_norm: str) -> None:
    """The hand-written forward and backward of a weight norm alone, in float64 (no rounding
    to hide behind): the same f(W) as its autograd forward, and the same gradient at W."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 20, 7, dtype=torch.float64, generator=gen) * 0.3 + 0.1
    g = torch.randn(3, 20, 7, dtype=torch.float64, generator=gen)
    norm = WEIGHT_NORMS[weight_norm]()
    leaf = w.clone().requires_grad_()
    (norm.forward(leaf) * g).sum().backward()
    out = torch.empty_like(w)
    saved = norm.forward_into(w, out)
    torch.testing.assert_close(out, norm.forward(w), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(norm.backward(g.clone(), saved), leaf.grad, rtol=1e-10,
                               atol=1e-12)


def test_weight_standardization_standardizes_each_unit_over_its_fan_in() -> None:
    """Qiao et al.'s definition: each output unit's weights (a column of W [n_in, n_out]) to
    mean 0 and variance 1 over the fan-in, whatever their scale and shift."""
    w = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(1)) * 3.0 + 5.0
    out = WEIGHT_NORMS["standardize"]().forward(w)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=1, correction=0), torch.ones(2, 4), atol=1e-4,
                               rtol=0)
    # Only eps tells them apart: 1e-5 against the variance 0.09 of 0.1 w, 6e-5 relative.
    torch.testing.assert_close(WEIGHT_NORMS["standardize"]().forward(0.1 * w - 2.0), out,
                               atol=1e-6, rtol=2e-4)
