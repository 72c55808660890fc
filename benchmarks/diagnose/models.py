"""The benchmark's models that initlab's MLP is not -- a CNN, a residual MLP, a small
transformer, plain MLPs of other widths and activations, LeNet, a batch-norm ResNet, a GRU, an
LSTM, a patch transformer -- each trained on real MNIST (or a synthetic task) with a problem
planted (or none), under a diagnostic tool: ``initlab.watch``, a peer (torchmortem, torchdiag, neural-observatory) or
nothing (the baseline for each tool's cost per step).

A ``WatchCase`` says which model, which plant and which optimizer; ``train`` runs it with one
tool and returns the seconds per step and, for a peer, its own top finding as text.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class PlainCNN(nn.Module):
    """Convolutions 3x3 with ReLU, the first of stride 2 so every hidden layer has 16x14x14
    units (as examples/watch_cnn.py), then a Linear layer to the 10 logits."""

    def __init__(self, depth: int = 8, channels: int = 16, detach_after: int | None = None):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.output = nn.Linear(channels * 14 * 14, 10)
        self.detach_after = detach_after  # a planted bug: .detach() inside the forward pass

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(-1, 1, 28, 28)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if self.detach_after is not None and i == 2 * self.detach_after - 1:
                x = x.detach()
        return self.output(x.flatten(1))


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(self.relu(self.fc1(h)))


class ResidualMLP(nn.Module):
    """784 -> 128, six residual blocks h + W2 relu(W1 h), -> 10 (PyTorch's default init)."""

    def __init__(self, width: int = 128, blocks: int = 6):
        super().__init__()
        self.input = nn.Linear(784, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.head = nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.input(x)))


class RowTransformer(nn.Module):
    """A small transformer over an image's 28 rows as tokens: Linear 28 -> 64 plus a learned
    position embedding, two pre-norm encoder layers (4 heads, MLP 128), mean pool, Linear to
    10."""

    def __init__(self, width: int = 64, layers: int = 2, detach_embedding: bool = False):
        super().__init__()
        self.embed = nn.Linear(28, width)
        self.position = nn.Embedding(28, width)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True,
                                       norm_first=True),
            layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)
        self.detach_embedding = detach_embedding

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x.view(-1, 28, 28))
        if self.detach_embedding:  # a planted bug: the embedding gets no gradient
            tokens = tokens.detach()
        tokens = tokens + self.position.weight
        return self.head(self.norm(self.encoder(tokens)).mean(dim=1))


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class PlainMLP(nn.Sequential):
    """Linear layers of the widths given, an activation module after each hidden one, then
    (optionally) batch norm before it, dropout after it, and a softmax at the end."""

    def __init__(self, widths: list[int], activation: str = "relu", dropout: float = 0.0,
                 batchnorm: bool = False, softmax: bool = False):
        layers: list[nn.Module] = []
        for i, (n, m) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(n, m))
            if i < len(widths) - 2:
                if batchnorm:
                    layers.append(nn.BatchNorm1d(m))
                layers.append(ACTIVATIONS[activation]())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        if softmax:  # a planted bug: probabilities handed to cross_entropy
            layers.append(nn.Softmax(dim=1))
        super().__init__(*layers)


class LeNet(nn.Module):
    """LeNet-5 on 28x28 MNIST: conv 6@5x5 (padding 2), pool, conv 16@5x5, pool, 120, 84, 10."""

    def __init__(self, activation: str = "relu", dropout: float = 0.0, softmax: bool = False):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), act(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 16, 5), act(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(400, 120), act(), nn.Dropout(dropout),
            nn.Linear(120, 84), act(), nn.Dropout(dropout), nn.Linear(84, 10),
            *([nn.Softmax(dim=1)] if softmax else []))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.view(-1, 1, 28, 28)).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class SmallResNet(nn.Module):
    """A batch-norm ResNet: a stride-2 stem (conv, BN), four basic blocks of 16 channels
    (two in each of two stages, the second at stride 2 through a 1x1 conv and BN), global
    average pooling, Linear to 10: 10 convolutions and 10 batch norms."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        self.stage1 = nn.Sequential(BasicBlock(channels), BasicBlock(channels))
        self.down = nn.Sequential(nn.Conv2d(channels, channels, 1, stride=2, bias=False),
                                  nn.BatchNorm2d(channels))
        self.stage2 = nn.Sequential(BasicBlock(channels), BasicBlock(channels))
        self.head = nn.Linear(channels, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stage2(self.down(self.stage1(self.stem(x.view(-1, 1, 28, 28)))))
        return self.head(h.mean(dim=(2, 3)))


class RowRNN(nn.Module):
    """A GRU or LSTM over the image's 28 rows (28 pixels each), hidden 64, the last hidden
    state to 10 logits."""

    def __init__(self, cell: str = "gru", hidden: int = 64):
        super().__init__()
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(28, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x.view(-1, 28, 28))
        return self.head(out[:, -1])


class PatchTransformer(nn.Module):
    """A small vision transformer: 16 patches of 7x7 pixels, Linear 49 -> 64 plus a learned
    position embedding, two pre-norm encoder layers (4 heads, MLP 128), mean pool, Linear."""

    def __init__(self, width: int = 64, layers: int = 2):
        super().__init__()
        self.embed = nn.Linear(49, width)
        self.position = nn.Embedding(16, width)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True,
                                       norm_first=True),
            layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        patches = x.view(-1, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(-1, 16, 49)
        tokens = self.embed(patches) + self.position.weight
        return self.head(self.norm(self.encoder(tokens)).mean(dim=1))


def normal_std(model: nn.Module, std: float) -> None:
    """Every Linear/conv weight N(0, std^2) (``normal_(std=...)``, a newcomer's init), biases 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()


def scaled_normal(model: nn.Module, c: float) -> None:
    """W ~ N(0, c / fan_in) for every convolution and Linear layer, biases zero."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, math.sqrt(c / m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.zero_()


def constant(model: nn.Module, value: float) -> None:
    """Every weight of a convolution or Linear layer the same number (zero: zero init)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.fill_(value)
                if m.bias is not None:
                    m.bias.zero_()


def kill_units(model: ResidualMLP, images: Tensor, fraction: float = 0.9) -> None:
    """Dead ReLU units planted: in every block, a bias that puts ``fraction`` of the units
    below zero for every image of a batch (and so, nearly, for all)."""
    with torch.no_grad():
        h = model.input(images)
        for block in model.blocks:
            pre = block.fc1(h)
            units = pre.shape[1]
            dead = torch.arange(units) < int(fraction * units)
            block.fc1.bias[dead] -= pre.max(dim=0).values[dead] + 1.0
            h = block(h)


@dataclass(frozen=True)
class WatchCase:
    name: str
    model: str  # cnn | resmlp | transformer | mlp | lenet | resnet | gru | lstm | vit
    expects: tuple[str, ...]  # the findings that name the planted problem ("healthy": none)
    plants: str  # in words
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    steps: int = 150
    batch: int = 64
    options: dict[str, Any] = field(default_factory=dict)
    # mnist, or synthetic: "classes" (10 classes of 20-d Gaussian inputs), "binary" (two, one
    # logit, BCEWithLogitsLoss), "regression" (one output, MSELoss)
    data: str = "mnist"


def build(case: WatchCase, images: Tensor) -> nn.Module:
    torch.manual_seed(0)
    o = case.options
    if case.model == "cnn":
        model: nn.Module = PlainCNN(detach_after=o.get("detach_after"))
        scaled_normal(model, o.get("c", 2.0))
    elif case.model == "resmlp":
        model = ResidualMLP()
        if "dead" in o:
            kill_units(model, images[:256], o["dead"])
    elif case.model == "transformer":
        model = RowTransformer(detach_embedding=o.get("detach_embedding", False))
    elif case.model == "mlp":
        model = PlainMLP(o["widths"], o.get("activation", "relu"), o.get("dropout", 0.0),
                         o.get("batchnorm", False), o.get("softmax", False))
        if "c" in o:
            scaled_normal(model, o["c"])
    elif case.model == "lenet":
        model = LeNet(o.get("activation", "relu"), o.get("dropout", 0.0), o.get("softmax", False))
    elif case.model == "resnet":
        model = SmallResNet()
    elif case.model in ("gru", "lstm"):
        model = RowRNN(case.model)
    elif case.model == "vit":
        model = PatchTransformer()
    else:
        raise ValueError(case.model)
    if "std" in o:
        normal_std(model, o["std"])
    if "constant" in o:
        constant(model, o["constant"])
    return model


def optimizer_for(case: WatchCase, model: nn.Module) -> torch.optim.Optimizer:
    frozen = case.options.get("frozen")  # a planted bug: these modules not given to it
    params = [p for name, p in model.named_parameters()
              if not (frozen and name.startswith(frozen))]
    if case.optimizer == "adam":
        return torch.optim.Adam(params, lr=case.lr)
    return torch.optim.SGD(params, lr=case.lr, momentum=case.momentum)


def synthetic(kind: str, train: int = 9600, test: int = 2000) -> SimpleNamespace:
    """Synthetic data of 20-d standard normal inputs (a fixed draw): "classes", 10 classes
    by the largest of 10 fixed random projections; "binary", the sign of one; "regression",
    y = sin(w.x) + x_1 with noise 0.1."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(train + test, 20, generator=g)
    w = torch.randn(20, 10, generator=g) / math.sqrt(20)
    if kind == "classes":
        y = (x @ w).argmax(dim=1)
    elif kind == "binary":
        y = (x @ w[:, 0] > 0).long()
    else:
        y = torch.sin(2 * x @ w[:, 0]) + x[:, 1] + 0.1 * torch.randn(train + test, generator=g)
    return SimpleNamespace(train_x=x[:train], train_y=y[:train], test_x=x[train:],
                           test_y=y[train:])


def loss_of(case: WatchCase, out: Tensor, y: Tensor) -> Tensor:
    if case.data == "binary":
        return F.binary_cross_entropy_with_logits(out[:, 0], y.float())
    if case.data == "regression":
        return F.mse_loss(out[:, 0], y)
    return F.cross_entropy(out, y)


def batches(images: Tensor, labels: Tensor, case: WatchCase) -> Iterator[tuple[Tensor, Tensor]]:
    """The same batches for every tool: a fixed shuffle of the training subset."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    raw = 255.0 if case.options.get("raw_pixels") else 1.0  # a planted bug: 0-255 pixels
    for s in range(case.steps):
        idx = order[(s * case.batch) % len(images):][: case.batch]
        if len(idx) < case.batch:
            idx = order[: case.batch]
        yield images[idx] * raw, labels[idx]


def test_error(model: nn.Module, images: Tensor, labels: Tensor,
               case: WatchCase | None = None) -> float:
    """The test error rate (None for a regression: it has no error rate)."""
    data = case.data if case is not None else "mnist"
    if data == "regression":
        return math.nan
    raw = 255.0 if case is not None and case.options.get("raw_pixels") else 1.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(images * raw)
    model.train(was_training)
    if data == "binary":
        return float(((out[:, 0] > 0).long() != labels).float().mean())
    return float((out.argmax(dim=1) != labels).float().mean())


@dataclass
class Trained:
    seconds_per_step: float  # the training loop's wall time per step, the tool included
    analysis_seconds: float  # after training: the tool's own analysis and report
    top: str  # the tool's top finding, as it words it ("" for none)
    findings: list[str]  # every finding it reported, top first
    test_error: float
    path: Path | None = None  # initlab: the run directory


def train(case: WatchCase, data: Any, tool: str, out: Path) -> Trained:
    """Train ``case`` with ``tool`` (none | initlab | torchmortem | torchdiag |
    neural-observatory)."""
    if case.data != "mnist":
        data = synthetic(case.data)
    images, labels = data.train_x, data.train_y
    model = build(case, images)
    opt = optimizer_for(case, model)
    hooks = TOOLS[tool](model, opt, out / case.name, images[:256])
    error, evaluating = math.nan, 0.0
    forget = case.options.get("no_zero_grad")  # a planted bug: gradients accumulate
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches(images, labels, case)):
        hooks.before(step)
        loss = loss_of(case, model(x), y)
        if not forget:
            opt.zero_grad()
        loss.backward()
        hooks.after_backward(step, case.steps)
        opt.step()
        if step == case.steps - 1 and hooks.records_test_error:  # given with the last step
            evaluated = time.perf_counter()
            error = test_error(model, data.test_x, data.test_y, case)
            evaluating = time.perf_counter() - evaluated
        hooks.after_step(loss, error if step == case.steps - 1 and math.isfinite(error)
                         else None)
    looped = time.perf_counter() - start - evaluating
    start = time.perf_counter()
    findings, path = hooks.finish(error)
    finished = time.perf_counter() - start
    if not hooks.records_test_error:  # after the tool's hooks are gone (a peer's would
        error = test_error(model, data.test_x, data.test_y, case)  # measure the test set too)
    return Trained(looped / case.steps, finished, findings[0] if findings else "", findings,
                   error, path)


class NoTool:
    records_test_error = False  # True: the test error is given to the tool with the last step

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, out: Path,
                 sample: Tensor):
        self.model, self.opt, self.out, self.sample = model, opt, out, sample

    def before(self, step: int) -> None:
        pass

    def after_backward(self, step: int, steps: int) -> None:
        pass

    def after_step(self, loss: Tensor, test_error: float | None) -> None:
        pass

    def finish(self, test_error: float) -> tuple[list[str], Path | None]:
        return [], None


class InitlabTool(NoTool):
    """``initlab.watch`` every 10 steps, then ``initlab.diagnose`` on its run directory."""

    records_test_error = True

    def __init__(self, *args: Any):
        super().__init__(*args)
        import initlab

        self.watch = initlab.watch(self.model, self.out, every=10)

    def after_step(self, loss: Tensor, test_error: float | None) -> None:
        self.watch.step(loss, test_error=test_error)

    def finish(self, test_error: float) -> tuple[list[str], Path | None]:
        import initlab

        with contextlib.redirect_stderr(io.StringIO()):  # its one line: printed by the runner
            self.watch.close()
        findings = initlab.diagnose(self.watch.path)
        return [f.problem for f in findings], self.watch.path


class Torchmortem(NoTool):
    """As its README: ``Autopsy(model, optimizer=optimizer, sampling="fast")``,
    ``autopsy.step(loss=...)`` after each step, ``autopsy.report(path)``; its top finding is
    the report's first (the findings are sorted by severity)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        from torchmortem import Autopsy

        # The README's "fast" preset (its default, "balanced", took minutes per case here).
        self.autopsy = Autopsy(self.model, optimizer=self.opt, sampling="fast")
        self.autopsy.attach()

    def after_step(self, loss: Tensor, test_error: float | None) -> None:
        self.autopsy.step(loss=loss.item())

    def finish(self, test_error: float) -> tuple[list[str], Path | None]:
        self.autopsy.detach()
        self.out.mkdir(parents=True, exist_ok=True)
        report = self.autopsy.report(str(self.out / "autopsy.json"))
        found = [f for f in report.findings if f.severity.name in ("WARNING", "CRITICAL")]
        return [f"{f.severity.name.lower()}: {f.title}" for f in found], None


class Torchdiag(NoTool):
    """As its README: ``check_gradients(model)`` after ``loss.backward()`` (here at the first
    and the last step) and ``check_dead_neurons(model, x)`` at the end; its findings are the
    issues it prints."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.printed = io.StringIO()

    def after_backward(self, step: int, steps: int) -> None:
        if step in (0, steps - 1):
            import torchdiag

            with contextlib.redirect_stdout(self.printed):
                torchdiag.check_gradients(self.model)

    def finish(self, test_error: float) -> tuple[list[str], Path | None]:
        import torchdiag

        with contextlib.redirect_stdout(self.printed):
            torchdiag.check_dead_neurons(self.model, self.sample)
        issues = [line.strip()[2:] for line in self.printed.getvalue().splitlines()
                  if line.strip().startswith("• ")]
        return issues, None


class NeuralObservatory(NoTool):
    """As its README: ``Observatory(model)``, ``obs.watch()``, ``obs.step(step=...)`` before
    each forward pass, ``obs.stop()``, ``obs.report()``; its findings are the results that are
    not healthy, most severe first."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        from neural_observatory import Observatory, ObservatoryConfig

        # The README's configuration, sampling every 10 steps as initlab.watch does here and
        # keeping statistics only (with raw tensors, its report took 95 s after 20 steps).
        config = ObservatoryConfig(activation_sample_rate=10, gradient_sample_rate=10,
                                   parameter_sample_rate=10, stats_only_mode=True)
        self.obs = Observatory(self.model, config=config)
        self.obs.watch()

    def before(self, step: int) -> None:
        self.obs.step(step=step, epoch=0)

    def finish(self, test_error: float) -> tuple[list[str], Path | None]:
        self.obs.stop()
        report = self.obs.report()
        bad = sorted((r for r in report.results if r.status.value not in ("healthy", "info")),
                     key=lambda r: -r.severity)
        return [f"{r.status.value}: {r.analyzer_name} {r.layer_name}: "
                f"{'; '.join(r.warnings)[:160]}" for r in bad], None


TOOLS: dict[str, Callable[..., NoTool]] = {
    "none": NoTool, "initlab": InitlabTool, "torchmortem": Torchmortem,
    "torchdiag": Torchdiag, "neural-observatory": NeuralObservatory,
}
