"""The lecture's init-norms figure, for a CNN: does the lesson of the 50-layer MLP hold on a
different architecture?

A plain CNN for MNIST -- ten weight layers: nine 3x3 convolutions with ReLU, the first of
stride 2, so that every one of them outputs 16 x 14 x 14 units, then a Linear output layer;
no normalization -- with every weight W ~ N(0, c / fan_in) (fan_in = in_channels x 3 x 3 for
a convolution) and zero biases, is trained briefly at c = 1, 2 and 3 under ``initlab.watch``.
The figure is drawn from the three run directories alone: per layer, the activation norm
(mean over the batch of each example's ||output_i||) and the gradient norm ||grad W_i|| at
initialization (step 1, dashed) and at the last capture (solid), as ``initlab plot`` draws
them.

    python examples/watch_cnn.py                      # under a minute on 2 CPU cores
    python examples/watch_cnn.py --steps 2000 --every 100
    initlab plot runs/watch-cnn/c=2                   # any of the runs, as initlab draws it

Expected, as for the MLP: at init the activation norms shrink with depth for c = 1 (each ReLU
layer halves the second moment, c/2 = 0.5), stay nearly level for c = 2 and grow for c = 3,
while within each c the gradient norms stay far more level. (Nearly: the zero padding gives the
units at the border fewer inputs than fan_in, so even c = 2 loses a little at every layer.
Layer 10's output is the 10 logits, smaller than the 3136 units before it.)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import initlab
from initlab.data import load_mnist


class PlainCNN(nn.Module):
    """Nine 3x3 convolutions with ReLU, 16 channels, the first of stride 2 (28x28 -> 14x14):
    every hidden layer has the same 3136 units, as the lecture's MLP has width 100 throughout.
    Then a Linear layer from them to 10 logits."""

    def __init__(self, depth: int = 9, channels: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.output = nn.Linear(channels * 14 * 14, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.features(x).flatten(1))


def init_weights(model: nn.Module, c: float) -> None:
    """W ~ N(0, c / fan_in) for every convolution and Linear layer, biases zero."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()  # in_channels x kernel area, or in_features
            nn.init.normal_(module.weight, 0.0, math.sqrt(c / fan_in))
            nn.init.zeros_(module.bias)


@torch.no_grad()
def test_error(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    wrong = sum(int((model(images[i:i + 500]).argmax(1) != labels[i:i + 500]).sum())
                for i in range(0, len(labels), 500))
    return wrong / len(labels)


def train(c: float, out: Path, steps: int, every: int, lr: float, seed: int) -> Path:
    data = load_mnist(scaling="unit", test_subset=2000, log=print)  # cached after the first
    train_x, test_x = data.train_x.view(-1, 1, 28, 28), data.test_x.view(-1, 1, 28, 28)
    torch.manual_seed(seed)
    model = PlainCNN()
    init_weights(model, c)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    order = torch.randperm(len(train_x))
    batches = len(order) // 128
    started = time.perf_counter()
    with initlab.watch(model, out / f"c={c:g}", every=every) as watch:
        for step in range(1, steps + 1):
            idx = order[(step - 1) % batches * 128:][:128]
            loss = F.cross_entropy(model(train_x[idx]), data.train_y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
            error = test_error(model, test_x, data.test_y) if step == steps else None
            watch.step(loss, test_error=error)
    print(f"c = {c:g}: {steps} steps in {time.perf_counter() - started:.1f} s, test error "
          f"{100 * error:.1f}% on 2000 test images -> {watch.path}")
    assert watch.path is not None
    return watch.path


def last_measured(values: np.ndarray) -> np.ndarray:
    """The last record that measured the statistic (a record of errors only has none)."""
    rows = [row for row in values if np.isfinite(row).any()]
    return rows[-1]


def draw(paths: list[Path], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [initlab.load_run(p) for p in paths]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, title in zip(axes, ("act_norm", "grad_norm"),
                              ("activation norm (mean over the batch of ‖output_i‖₂)",
                               "gradient norm ‖∇W_i ℓ‖"), strict=True):
        for n, run in enumerate(runs):
            values = run.layers[key]
            layers = np.arange(1, values.shape[1] + 1)
            # As initlab plot draws it: initialization dashed, the end solid.
            ax.plot(layers, values[0], "--o", color=colors[n], markersize=3, alpha=0.65,
                    label=f"{run.name}, init")
            ax.plot(layers, last_measured(values), "-", color=colors[n],
                    label=f"{run.name}, step {int(run.step[-1])}")
        ax.set_yscale("log")
        ax.set_xlabel("layer i (1-9: 3x3 convolution + ReLU, 16x14x14 units; 10: logits)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("A 10-layer CNN on MNIST, no normalization, W_i ~ N(0, c / fan_in), "
                 "recorded by initlab.watch", fontsize=11)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    print(f"wrote {target}")
    for run in runs:
        act, grad = run.layers["act_norm"][0], run.layers["grad_norm"][0]
        print(f"{run.name}: at init ‖output_9‖ / ‖output_1‖ = {act[-2] / act[0]:.3g} (the "
              f"last convolution's over the first's); gradient norms span "
              f"{grad.max() / grad.min():.3g}x over the ten layers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/watch-cnn"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    args = parser.parse_args()
    paths = [train(c, args.out, args.steps, args.every, args.lr, args.seed) for c in args.c]
    draw(paths, args.out / "init-norms-cnn.png")


if __name__ == "__main__":
    main()
