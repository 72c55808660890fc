"""Per-layer statistics against a hand computation on a tiny network, and every registered
statistic through every path that records or reads it."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from initlab import stats
from initlab.activations import ACTIVATIONS
from initlab.cli import app
from initlab.config import ModelConfig
from initlab.model import ActivityRecorder, StackedMLP

runner = CliRunner()


def plain_copy(model: StackedMLP, k: int) -> list[nn.Linear]:
    """Member k as ordinary nn.Linear layers (weight transposed: nn.Linear computes x W^T)."""
    layers = []
    for i in range(model.depth):
        w = model.weight(i)[k].detach()
        layer = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            layer.weight.copy_(w.T)
            layer.bias.copy_(model.bias(i)[k, 0].detach())
        layers.append(layer)
    return layers


def test_statistics_match_a_hand_computation() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(depth=4, width=6)
    model = StackedMLP(cfg, members=2)
    model.initialize(["normal", "normal"], [2.0, 3.0], [1, 2])
    initial = [model.weight(i).detach().clone() for i in range(model.depth)]
    with torch.no_grad():  # move the weights a little, so the relative change is not zero
        model.flat.add_(0.01 * torch.randn_like(model.flat))
    x = torch.rand(2, 5, 784)
    y = torch.randint(0, 10, (2, 5))

    recorder = ActivityRecorder()
    model.flat_grad.zero_()
    logits = model(x, recorder)
    stats.cross_entropy_per_member(logits, y).sum().backward()
    weights = [model.weight(i) for i in range(model.depth)]
    activity = recorder.activity()
    act_norm = stats.activation_norms(activity.inputs)
    dead = stats.dead_fractions(activity.activations)
    median = stats.percentiles(activity.unit_inputs, 0.5)
    p15 = stats.percentiles(activity.unit_inputs, 0.15)
    # both forms of layer groups: one per layer, and the model's multi-layer views
    grads = [w.grad for w in weights]
    grad_norm = stats.gradient_norms(stats.layer_groups(grads))
    assert torch.equal(grad_norm, stats.gradient_norms(model.weight_groups(model.flat_grad)))
    weight_var = stats.weight_variances(model.weight_groups(model.flat))
    w0 = stats.layer_groups(initial)
    rel = stats.relative_changes(
        stats.layer_groups([w - w_init for w, w_init in zip(weights, initial, strict=True)]),
        stats.frobenius_norms(w0))

    for k in range(2):
        layers = plain_copy(model, k)
        z = x[k]
        for i, layer in enumerate(layers):
            # activation norm: mean over the batch of ||Z_i||_2, Z_1 the input
            expected = sum(math.sqrt(sum(v * v for v in row)) for row in z.tolist()) / 5
            assert math.isclose(act_norm[k, i].item(), expected, rel_tol=1e-5)
            z = layer(z)
            if i < len(layers) - 1:
                unit = sorted(z[:, 0].tolist())  # unit 0's input to its ReLU, 5 examples
                assert math.isclose(median[k, i].item(), unit[2], rel_tol=1e-5, abs_tol=1e-5)
                # 15th percentile of 5 values: position 0.6 between the two smallest
                assert math.isclose(p15[k, i].item(), unit[0] + 0.6 * (unit[1] - unit[0]),
                                    rel_tol=1e-4, abs_tol=1e-5)
                z = torch.relu(z)
                dead_units = sum(all(v == 0 for v in col) for col in z.T.tolist())
                assert math.isclose(dead[k, i].item(), dead_units / z.shape[1], rel_tol=1e-6)
        loss = nn.functional.cross_entropy(z, y[k])
        loss.backward()
        for i, layer in enumerate(layers):
            g = layer.weight.grad
            assert math.isclose(grad_norm[k, i].item(), g.norm().item(), rel_tol=1e-4)
            w = layer.weight.detach().flatten().tolist()
            mean = sum(w) / len(w)
            var = sum((v - mean) ** 2 for v in w) / len(w)
            assert math.isclose(weight_var[k, i].item(), var, rel_tol=1e-4)
            w0 = initial[i][k]
            expected_rel = ((layer.weight.detach().T - w0).norm() / w0.norm()).item()
            assert math.isclose(rel[k, i].item(), expected_rel, rel_tol=1e-4)


def test_relative_change_of_a_zero_init_is_undefined_not_infinite() -> None:
    w0 = stats.layer_groups([torch.zeros(1, 3, 3)])
    w = stats.layer_groups([torch.ones(1, 3, 3)])
    rel = stats.relative_changes([a - b for a, b in zip(w, w0, strict=True)],
                               stats.frobenius_norms(w0))
    assert torch.isnan(rel).all()


def test_error_counts_and_loss_are_per_member() -> None:
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0]], [[5.0, 0.0], [5.0, 0.0]]])
    labels = torch.tensor([[0, 1], [0, 1]])
    assert stats.error_counts(logits, labels).tolist() == [0, 1]
    loss = stats.cross_entropy_per_member(logits, labels)
    assert loss[0] < loss[1]


def test_dead_fraction_counts_units_zero_for_every_example() -> None:
    outputs = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]]])  # [K=1, B=2, n=4]
    assert stats.dead_fractions([outputs.unsqueeze(0)]).tolist() == [[0.5]]


def test_update_ratio_is_the_step_over_the_weights() -> None:
    w = torch.full((1, 1, 4), 2.0)  # ||W|| = 4
    step = torch.full((1, 1, 4), 0.01)  # ||dW|| = 0.02
    ratio = stats.update_ratios([step], stats.frobenius_norms([w]))
    assert math.isclose(ratio.item(), 0.005, rel_tol=1e-6)
    assert torch.isnan(stats.update_ratios([step], stats.frobenius_norms([0 * w]))).all()


def test_effective_rank_is_exp_of_the_singular_values_entropy() -> None:
    """Roy & Vetterli 2007, by hand with numpy's SVD; n for an orthogonal matrix, 1 for a
    rank-one one, NaN for zero; a convolution's weight is [out, in * kh * kw]."""
    gen = torch.Generator().manual_seed(0)
    conv = torch.randn(2, 4, 3, 3, 3, generator=gen)  # K = 2 members of a [4, 3, 3, 3] weight
    singular = np.linalg.svd(conv.reshape(2, 4, 27).double().numpy(), compute_uv=False)
    p = singular / singular.sum(axis=-1, keepdims=True)
    want = np.exp(-(p * np.log(p)).sum(axis=-1))
    groups = stats.matrix_groups([conv.reshape(1, 2, -1)], [(4, 3, 3, 3)])
    assert groups[0].shape == (1, 2, 4, 27)
    np.testing.assert_allclose(stats.effective_ranks(groups)[:, 0].numpy(), want, rtol=1e-5)
    special = torch.stack([torch.eye(5), torch.outer(torch.arange(1.0, 6), torch.ones(5)),
                           torch.zeros(5, 5)]).view(1, 3, 25)
    ranks = stats.effective_ranks(stats.matrix_groups([special], [(5, 5)]))[:, 0]
    assert ranks[0].item() == pytest.approx(5.0) and ranks[1].item() == pytest.approx(1.0, rel=1e-5)
    assert math.isnan(ranks[2].item())


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_registered_statistic_is_recorded_by_a_training_step(
        tmp_path, synthetic, activation: str) -> None:
    """Each one not ``costly`` whose trait the activation has (``LayerStat.applies_to``)."""
    from initlab.config import RunConfig, set_dotted
    from initlab.runs import RunWriter
    from initlab.train import GroupTrainer, MemberState

    cfg = RunConfig()
    for key, value in {"model.depth": 3, "model.width": 8, "train.batch_size": 16,
                       "model.activation": activation}.items():
        cfg = set_dotted(cfg, key, value)
    trainer = GroupTrainer([MemberState(cfg, RunWriter(tmp_path))], synthetic,
                           torch.device("cpu"))
    idx = torch.arange(16).view(1, 16)
    before = trainer.model.flat.clone()
    captured = trainer.train_step(idx, capture=True)
    every_step = {key for key, stat in stats.LAYER_STATS.items()
                  if not stat.costly and stat.applies_to(ACTIVATIONS[activation])}
    assert captured is not None and every_step == set(captured) - {"loss", "errors"}
    for key in every_step:
        stat = stats.LAYER_STATS[key]
        assert captured[key].shape == (1, 2 if stat.hidden_only else 3), key
    # ||W_i after - W_i before|| / ||W_i before||, layer by layer (member 0)
    expected = torch.cat([
        (torch.linalg.vector_norm(after - b, dim=-1) / torch.linalg.vector_norm(b, dim=-1))[:, 0]
        for after, b in zip(trainer.model.weight_groups(trainer.model.flat),
                            trainer.model.weight_groups(before), strict=True)])
    assert (expected > 0).all()  # the weights did move
    torch.testing.assert_close(captured["update_ratio"][0], expected)


def test_layer_norm_gives_every_example_the_same_norm() -> None:
    """The lecture's reason layer norm hurts plain MLPs: after it, every example's activation
    vector has the same norm (spread ~0), which batch norm and no norm keep."""
    x = torch.rand(1, 64, 784, generator=torch.Generator().manual_seed(0)) * \
        torch.linspace(0.2, 2.0, 64).view(1, 64, 1)  # examples of very different scales
    spreads = {}
    for norm in ("none", "layer", "batch"):
        model = StackedMLP(ModelConfig(depth=4, width=32, norm=norm), members=1)
        model.initialize(["normal"], [2.0], [0])
        recorder = ActivityRecorder()
        model(x, recorder)
        spreads[norm] = stats.norm_spreads(recorder.activity().inputs)[0]
    assert spreads["layer"][1:].max() < 1e-3
    assert spreads["batch"][1:].min() > 0.05 and spreads["none"][1:].min() > 0.05
    norms = torch.linalg.vector_norm(x[0], dim=-1)
    assert math.isclose(spreads["none"][0].item(), (norms.std(correction=0) / norms.mean()).item(),
                        rel_tol=1e-5)


# --------------------------------------------------------------------------- every reader
# Each registered statistic, end to end: recorded by `initlab run` and by initlab.watch,
# read by load_run, exported, drawn by `initlab plot --metric` -- with no list to edit.

TINY_RUN = {
    "name": "tiny",
    "model": {"depth": 3, "width": 8},
    "data": {"train_subset": 256, "test_subset": 100},
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
    "log": {"every": 2, "probe_size": 32},
}


class WatchedNet(nn.Module):
    """A conv layer, a ReLU and a linear layer: every kind of tensor initlab.watch reads."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


def activation_for(stat: stats.LayerStat) -> str:
    """The first activation of the registry for which ``stat`` is recorded."""
    return next(name for name, act in ACTIVATIONS.items() if stat.applies_to(act))


def record_tiny_run(tmp: Path, activation: str) -> dict[str, Any]:
    """A tiny `initlab run` on MNIST with this activation, its CSV export and TensorBoard tags,
    and `initlab plot` drawing every statistic."""
    from initlab.runs import STATS_FILE, read_stats

    name = f"tiny-{activation}"
    config = {**TINY_RUN, "name": name, "model": {**TINY_RUN["model"], "activation": activation}}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["run", str(tmp / f"{name}.yaml"), "--out", str(tmp / "runs")])
    assert result.exit_code == 0, result.output
    run_dir = tmp / "runs" / name
    result = runner.invoke(app, ["export", str(run_dir), "--to", "csv", "--out",
                                 str(tmp / "csv")])
    assert result.exit_code == 0, result.output
    with open(tmp / "csv" / name / "layers.csv", newline="") as f:
        csv_columns = next(csv.reader(f))
    tags: set[str] | None = None
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing import event_accumulator

        result = runner.invoke(app, ["export", str(run_dir), "--to", "tensorboard", "--out",
                                     str(tmp / "tb")])
        assert result.exit_code == 0, result.output
        events = event_accumulator.EventAccumulator(str(tmp / "tb" / name))
        events.Reload()
        tags = set(events.Tags()["scalars"])
    # `initlab plot --metric` with every statistic: one figure (a plot per statistic would
    # cost seconds each), one panel per metric
    out = tmp / f"{name}-every-metric.png"
    metrics = [arg for key in stats.LAYER_KEYS for arg in ("--metric", key)]
    result = runner.invoke(app, ["plot", str(run_dir), *metrics, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    return {"run": run_dir, "records": read_stats(run_dir / STATS_FILE), "csv": csv_columns,
            "tags": tags, "plot_output": result.output}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, mnist_env: None,
             ) -> dict[str, Any]:
    """Tiny runs, one per activation some statistic needs (``activation_for``), and a watched
    run."""
    import initlab
    from initlab.runs import STATS_FILE, read_stats

    tmp = tmp_path_factory.mktemp("readers")
    needed = sorted({activation_for(stat) for stat in stats.LAYER_STATS.values()})
    runs = {activation: record_tiny_run(tmp, activation) for activation in needed}
    torch.manual_seed(0)
    model = WatchedNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    with initlab.watch(model, tmp / "watched", every=1) as watch:
        for _ in range(3):
            x = torch.randn(8, 1, 6, 6, generator=gen)
            y = torch.randint(0, 3, (8,), generator=gen)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            watch.step(epoch=0)
    assert watch.path is not None
    return {"runs": runs, "watched": read_stats(watch.path / STATS_FILE)}


@pytest.mark.parametrize("key", stats.LAYER_KEYS)
def test_every_statistic_reaches_every_reader(recorded: dict[str, Any], key: str) -> None:
    from initlab.runs import load_run
    from initlab.watching import SIDES, ZERO_FLOOR_TRAITS

    stat = stats.LAYER_STATS[key]
    # initlab run: in the records of the phases it is recorded at, for an activation it means
    # something for, and only for such
    for activation, other in recorded["runs"].items():
        applies = stat.applies_to(ACTIVATIONS[activation])
        assert {"init", "train", "epoch", "final"} == {r["phase"] for r in other["records"]}
        assert all((key in r) == (applies and stat.recorded_at(r["phase"]))
                   for r in other["records"])
    tiny = recorded["runs"][activation_for(stat)]
    records = tiny["records"]
    width = TINY_RUN["model"]["depth"] - int(stat.hidden_only)
    assert all(len(r[key]) == width for r in records if key in r)
    # load_run, and through it the CSV export and the plots
    run = load_run(tiny["run"])
    assert run.layers[key].shape == (len(records), width)
    assert np.isfinite(run.layers[key]).any()
    assert key in tiny["csv"]
    if tiny["tags"] is not None:
        tag = f"probe/n_{key}/1" if stat.per_fan_in else f"probe/{key}/1"
        assert tag in tiny["tags"] or stat.after_update
    assert f"{key}: not recorded" not in tiny["plot_output"]  # drawn, not skipped
    # initlab.watch: every statistic whose tensors it has (a nonlinearity's input it has not)
    # and that means something for the ReLU-like activations it hooks, the costly ones in its
    # first capture only (the epoch never changes here)
    watched = recorded["watched"]
    assert (key in watched[0]) == (key in SIDES and stat.applies_to(ZERO_FLOOR_TRAITS))
    if key in watched[0]:
        assert any(v is not None for v in watched[0][key])
        assert all((key in r) == (not stat.costly) for r in watched[1:])


@pytest.mark.parametrize("key", [k for k, s in stats.LAYER_STATS.items() if s.trait])
def test_a_statistics_trait_is_a_flag_of_every_activation(key: str) -> None:
    """A trait names a flag every activation declares, and some activation has it: a typo
    would otherwise fail only when a run reaches the statistic."""
    stat = stats.LAYER_STATS[key]
    assert all(isinstance(getattr(act, str(stat.trait)), bool) for act in ACTIVATIONS.values())
    assert any(stat.applies_to(act) for act in ACTIVATIONS.values())
