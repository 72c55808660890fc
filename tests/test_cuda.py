"""The CUDA path: skipped without a GPU (run ``scripts/gpu_check.sh`` on a machine with one).

The whole step replayed from CUDA graphs must give what the eager step gives, and the
hand-written backward what autograd gives, on the device too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from initlab.bench import bench_config, make_trainer, member_configs
from initlab.data import load_mnist
from initlab.graphs import GraphedStep
from initlab.train import GroupTrainer

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.usefixtures("mnist_env")]
CUDA = torch.device("cuda")


def trainer(tmp: Path, members: int, cuda_graph: str, backward: str = "auto",
            dropouts: Sequence[float] = (), norm: str = "none",
            optimizer: str = "sgd") -> GroupTrainer:
    configs = member_configs(bench_config(CUDA, cuda_graph, backward), members)
    configs = [replace(c, model=replace(c.model, norm=norm,
                                        dropout=dropouts[k] if dropouts else 0.0),
                       train=replace(c.train, optimizer=optimizer))
               for k, c in enumerate(configs)]
    data = load_mnist(None, "standard", CUDA, log=lambda m: None)
    return make_trainer(configs, data, CUDA, tmp)


def run_steps(t: GroupTrainer, steps: int) -> list[dict[str, torch.Tensor]]:
    n = t.data.train_x.shape[0]
    order = torch.stack([torch.randperm(n, generator=g) for g in t.data_generators]).to(CUDA)
    captured = []
    for i in range(steps):
        out = t.step_fn(order[:, i * t.batch : (i + 1) * t.batch], i % 4 == 0)
        if out is not None:
            captured.append(out)
    torch.cuda.synchronize()
    return captured


@pytest.mark.parametrize(("backward", "norm", "optimizer"), [
    ("auto", "none", "sgd"), ("autograd", "none", "sgd"), ("auto", "batch", "adam"),
    ("auto", "layer", "adam")])
def test_graph_replay_equals_the_eager_step(tmp_path: Path, backward: str, norm: str,
                                            optimizer: str) -> None:
    graphed = trainer(tmp_path / "g", 3, "on", backward, norm=norm, optimizer=optimizer)
    eager = trainer(tmp_path / "e", 3, "off", backward, norm=norm, optimizer=optimizer)
    assert isinstance(graphed.step_fn, GraphedStep)
    assert not isinstance(eager.step_fn, GraphedStep)
    a, b = run_steps(graphed, 12), run_steps(eager, 12)
    torch.testing.assert_close(graphed.model.flat, eager.model.flat, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graphed.epoch_loss, eager.epoch_loss, rtol=1e-5, atol=1e-6)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=1e-4, atol=1e-6, msg=key)


def test_hand_written_backward_equals_autograd_on_the_device(tmp_path: Path) -> None:
    manual = trainer(tmp_path / "m", 3, "off", "auto")
    auto = trainer(tmp_path / "a", 3, "off", "autograd")
    assert manual.gauges.manual and not auto.gauges.manual
    x = manual.data.train_x[:128].expand(3, -1, -1)
    y = manual.data.train_y[:128].expand(3, -1)
    _, loss_m, activity_m = manual.gauges.loss_and_grad(x, y, capture=True)
    _, loss_a, activity_a = auto.gauges.loss_and_grad(x, y, capture=True)
    torch.testing.assert_close(loss_m, loss_a)
    torch.testing.assert_close(manual.model.flat_grad, auto.model.flat_grad, rtol=1e-3,
                               atol=1e-5)
    expected = auto.gauges.layer_stats(auto.gauges.pass_tensors(activity_a))
    for key, value in manual.gauges.layer_stats(manual.gauges.pass_tensors(activity_m)).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-3, atol=1e-6, msg=key)


@pytest.mark.parametrize("dropouts", [(0.5, 0.5), (0.5, 0.0, 0.3)])
def test_dropout_under_a_graph_draws_new_masks_every_step(tmp_path: Path,
                                                          dropouts: tuple[float, ...]) -> None:
    """Weights held still and the same batch every step: only the dropout masks change, so
    a member's losses differ unless the graph replays one baked-in mask, and a member
    without dropout (masks drawn for the others only) gets the same loss every time."""
    k = len(dropouts)
    t = trainer(tmp_path / "d", k, "on", dropouts=dropouts)
    assert isinstance(t.step_fn, GraphedStep)
    t.optimizer.lr.zero_()
    idx = torch.arange(t.batch, device=CUDA).expand(k, -1).contiguous()
    losses = torch.stack([t.step_fn(idx, True)["loss"] for _ in range(5)]).T.tolist()
    for p, member in zip(dropouts, losses, strict=True):
        assert len(set(member)) == (len(member) if p > 0 else 1), (p, member)
