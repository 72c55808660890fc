"""The benchmark's models that initlab's MLP is not -- a CNN, a residual MLP, a small
transformer -- each trained on real MNIST with a problem planted (or none), under a
diagnostic tool: ``initlab.watch``, a peer (torchmortem, torchdiag, neural-observatory) or
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
    model: str  # cnn | resmlp | transformer
    expects: tuple[str, ...]  # the findings that name the planted problem ("healthy": none)
    plants: str  # in words
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    steps: int = 150
    batch: int = 64
    options: dict[str, Any] = field(default_factory=dict)


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
    else:
        model = RowTransformer(detach_embedding=o.get("detach_embedding", False))
    if "constant" in o:
        constant(model, o["constant"])
    return model


def optimizer_for(case: WatchCase, model: nn.Module) -> torch.optim.Optimizer:
    if case.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=case.lr)
    return torch.optim.SGD(model.parameters(), lr=case.lr, momentum=case.momentum)


def batches(images: Tensor, labels: Tensor, case: WatchCase) -> Iterator[tuple[Tensor, Tensor]]:
    """The same batches for every tool: a fixed shuffle of the training subset."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    for s in range(case.steps):
        idx = order[(s * case.batch) % len(images):][: case.batch]
        if len(idx) < case.batch:
            idx = order[: case.batch]
        yield images[idx], labels[idx]


def test_error(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    with torch.no_grad():
        logits = model(images)
    return float((logits.argmax(dim=1) != labels).float().mean())


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
    images, labels = data.train_x, data.train_y
    model = build(case, images)
    opt = optimizer_for(case, model)
    hooks = TOOLS[tool](model, opt, out / case.name, images[:256])
    error, evaluating = math.nan, 0.0
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches(images, labels, case)):
        hooks.before(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        hooks.after_backward(step, case.steps)
        opt.step()
        if step == case.steps - 1 and hooks.records_test_error:  # given with the last step
            evaluated = time.perf_counter()
            error = test_error(model, data.test_x, data.test_y)
            evaluating = time.perf_counter() - evaluated
        hooks.after_step(loss, error if step == case.steps - 1 else None)
    looped = time.perf_counter() - start - evaluating
    start = time.perf_counter()
    findings, path = hooks.finish(error)
    finished = time.perf_counter() - start
    if not hooks.records_test_error:  # after the tool's hooks are gone (a peer's would
        error = test_error(model, data.test_x, data.test_y)  # measure the test set too)
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
