"""Training end to end on real MNIST: batched sweeps equal separate runs; the CLI writes the
run directory contract; the lecture's init claims hold at c = 1, 2, 3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import initlab
from initlab import experiment
from initlab import train as train_module
from initlab.activations import ReLU
from initlab.choices import NORM_CHOICES, WEIGHT_NORM_CHOICES
from initlab.cli import app
from initlab.config import load_experiment
from initlab.experiment import run_experiment, train_members
from initlab.progress import quiet_progress
from initlab.runs import RunWriter
from initlab.stats import LAYER_STATS
from initlab.train import MemberState

pytestmark = pytest.mark.usefixtures("mnist_env")

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Runs compared with float tolerances: their last bits depend on the thread count, so it
    is fixed (whatever earlier tests or the machine's cores left it at)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

SMALL = {
    "model": {"depth": 12, "width": 32},
    "data": {"train_subset": 1280, "test_subset": 500},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.02},
    "log": {"every": 4, "probe_size": 64},
}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def assert_layers_close(actual: np.ndarray, desired: np.ndarray, what: str) -> None:
    """Per-layer statistics to float tolerance: relative, and absolute on the statistic's own
    scale (a unit's input crosses zero, where a relative tolerance means nothing)."""
    scale = float(np.nanmax(np.abs(desired))) if np.isfinite(desired).any() else 0.0
    np.testing.assert_allclose(actual, desired, rtol=1e-3, atol=1e-7 + 1e-5 * scale,
                               equal_nan=True, err_msg=what)


def with_sweep(base: dict, name: str, sweep: dict) -> dict:
    return {**base, "name": name, "sweep": sweep}


def learning_rule(norm: str) -> tuple[str, float]:
    """(optimizer, lr) a test trains a norm with: steps small enough that the trajectory is not
    chaotic, so last-bit differences between batched and single matmuls (measured: ~1e-6
    relative after one forward pass) stay last-bit. A normalized net takes a small Adam step:
    a norm over the batch has a layer-1 gradient of ~1e4 that makes larger steps chaotic
    within 20 steps; with a norm per example, SGD 0.02 (and 0.005) kept the records of an AMD
    EPYC equal to 1e-6 for 16 steps, then apart by up to 20% of the loss at step 40 (they had
    agreed on an Intel Xeon)."""
    return ("sgd", 0.02) if norm == "none" else ("adam", 1e-4)


# Every normalization of the registries (a weight norm with group norm, its partner): a new
# one is tested without editing this file.
NORMALIZATIONS = ([(norm, "none") for norm in NORM_CHOICES]
                  + [("group", w) for w in WEIGHT_NORM_CHOICES if w != "none"])


@pytest.mark.parametrize(("norm", "weight_norm"), NORMALIZATIONS)
def test_batched_sweep_equals_separate_runs(tmp_path: Path, norm: str,
                                            weight_norm: str) -> None:
    """K = 3 members trained as one stacked model match the same three trained alone."""
    optimizer, lr = learning_rule(norm)
    # groups: 2, 16 features each, as in the backward test below: over 8, group norm's
    # conditioning turned the matmuls' last bits into another trajectory on an AMD EPYC.
    base = {**SMALL, "model": {**SMALL["model"], "norm": norm, "groups": 2,
                               "weight_norm": weight_norm},
            "train": {**SMALL["train"], "optimizer": optimizer}}
    # Three members that differ in init scale, learning rate, weight decay and seed.
    variants = [(1.7, lr, 0.0, 0), (2.0, lr / 2, 1e-3, 1), (2.3, lr, 0.0, 2)]
    experiments = []
    for i, (c, member_lr, decay, seed) in enumerate(variants):
        cfg = {**base, "name": f"m{i}", "init": {"c": c},
               "train": {**base["train"], "lr": member_lr, "weight_decay": decay,
                         "seed": seed}}
        experiments.append(load_experiment(write_config(tmp_path / f"m{i}.yaml", cfg)))
    members = [MemberState(exp.members[0].config, RunWriter(tmp_path / "batched" / exp.name))
               for exp in experiments]
    outcomes = train_members(members, None, quiet_progress, None)
    assert all(o.summary["members_in_group"] == 3 for o in outcomes)
    separate = [initlab.load_run(run_experiment(exp, tmp_path / "separate")[0].path)
                for exp in experiments]
    for i in range(3):
        b = initlab.load_run(tmp_path / "batched" / f"m{i}")
        s = separate[i]
        assert list(b.phase) == list(s.phase) and list(b.step) == list(s.step)
        np.testing.assert_allclose(b.loss, s.loss, rtol=1e-4, atol=1e-6)
        # float tolerance may flip one near-tied test example of 500
        np.testing.assert_allclose(b.test_error, s.test_error, atol=1 / 500 + 1e-9,
                                   equal_nan=True)
        assert set(b.layers) == set(s.layers)
        for key in s.layers:
            assert_layers_close(b.layers[key], s.layers[key], f"member {i} {key}")


@pytest.mark.parametrize(("norm", "weight_norm"), NORMALIZATIONS)
def test_hand_written_backward_trains_like_autograd(tmp_path: Path, norm: str,
                                                   weight_norm: str) -> None:
    """The same run with ``train.backward: autograd``: the same records to float tolerance
    (dropout on where the optimizer is SGD, so the masks must line up too). A normalized net
    is shallower: deep ones amplify last-bit differences into different trajectories within a
    few dozen steps (as batch norm does in the batched test above). Batch norm's running
    averages enter every test error."""
    depth = 12 if norm == "none" and weight_norm == "none" else 4
    # groups: 2, 16 features each: group norm over 8 is ill-conditioned enough that SGD
    # turns autograd's rounding into another trajectory.
    optimizer, lr = learning_rule(norm)
    # Dropout only under SGD: Adam scales each coordinate's step by its own gradient history,
    # so the last-bit differences in the gradients that dropped units leave behind grow into
    # lr-sized steps (rms, Adam 1e-4, Intel Xeon: records 5e-3 apart after 4 epochs with
    # dropout 0.1, 2e-7 without; SGD 0.005 with dropout: 4e-7). The masks' alignment is
    # checked by the SGD case.
    dropout = 0.1 if optimizer == "sgd" else 0.0
    runs = []
    for backward in ("auto", "autograd"):
        cfg = {**SMALL, "name": backward,
               "model": {**SMALL["model"], "dropout": dropout, "norm": norm, "depth": depth,
                         "groups": 2, "weight_norm": weight_norm},
               "train": {**SMALL["train"], "backward": backward, "optimizer": optimizer,
                         "lr": lr}}
        exp = load_experiment(write_config(tmp_path / f"{backward}.yaml", cfg))
        runs.append(initlab.load_run(run_experiment(exp, tmp_path / "runs")[0].path))
    manual, auto = runs
    assert list(manual.step) == list(auto.step) and list(manual.phase) == list(auto.phase)
    np.testing.assert_allclose(manual.loss, auto.loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(manual.test_error, auto.test_error, atol=1 / 500 + 1e-9)
    assert set(manual.layers) == set(auto.layers)
    for key in auto.layers:
        assert_layers_close(manual.layers[key], auto.layers[key], key)


def test_cli_run_writes_the_run_directory_contract(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "kaiming-small.yaml", {**SMALL, "name": "small"})
    result = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "runs"), "--plot"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "small"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["depth"] == 12
    records = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    phases = [r["phase"] for r in records]
    assert phases[0] == "init" and phases[-1] == "final"
    assert phases.count("epoch") == 2 and "train" in phases
    steps_per_epoch = 1280 // 64
    assert [r["step"] for r in records if r["phase"] == "epoch"] == [steps_per_epoch,
                                                                    2 * steps_per_epoch]
    for r in records:
        for key, stat in LAYER_STATS.items():
            # e.g. the probe takes no step; a ReLU net has no saturated units
            if not stat.recorded_at(r["phase"]) or not stat.applies_to(ReLU):
                assert key not in r
            else:
                assert len(r[key]) == (11 if stat.hidden_only else 12), key
        assert set(r) >= {"step", "epoch", "phase", "loss", "train_error", "test_error"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["steps"] == 2 * steps_per_epoch and summary["epochs"] == 2
    assert summary["final_test_error"] < records[0]["test_error"]  # it learned something
    assert {"reached_target_epoch", "wall_seconds", "device"} <= set(summary)
    assert (run_dir / "layers.png").stat().st_size > 10_000
    # A re-run never overwrites: it gets a new directory.
    again = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "runs")])
    assert again.exit_code == 0 and (tmp_path / "runs" / "small-2" / "stats.jsonl").exists()


@pytest.mark.parametrize(("norm", "dropout"), [("none", 0.0), ("batch", 0.0), ("none", 0.1)])
def test_a_member_does_not_depend_on_its_company(tmp_path: Path, norm: str,
                                                 dropout: float) -> None:
    """A member trained beside others (other seeds, another c, members with and without
    dropout) ends with the very bits it ends with alone: a run cached by its config is what
    that config gives (issue 19). Dropout masks come from each member's own generator."""
    base = {**SMALL, "name": "alone",
            "model": {**SMALL["model"], "norm": norm, "dropout": dropout},
            "init": {"c": 2.2}, "train": {**SMALL["train"], "optimizer": "adam", "lr": 1e-3}}
    alone = load_experiment(write_config(tmp_path / "alone.yaml", base))
    sweep: dict[str, list] = {"init.c": [2.2, 2.0], "train.seed": [0, 1, 2]}
    if dropout:
        sweep = {"init.c": [2.2, 2.0], "model.dropout": [dropout, 0.0], "train.seed": [0, 1]}
    crowd = load_experiment(write_config(tmp_path / "crowd.yaml", with_sweep(base, "crowd",
                                                                             sweep)))
    assert len(crowd.members) > 1
    single = run_experiment(alone, tmp_path / "a")[0].path
    grouped = [r.path for r in run_experiment(crowd, tmp_path / "b")]
    assert initlab.load_run(grouped[0]).summary["members_in_group"] == len(crowd.members)
    assert initlab.load_run(grouped[0]).config["model"]["dropout"] == dropout
    assert (single / "stats.jsonl").read_bytes() == (grouped[0] / "stats.jsonl").read_bytes()


# The figures' stacked shapes: width 100, batch 128, the depths and learning rules they train
# (issue 30: a member in a group of 3 or 6 was reported to differ from itself alone at width
# 100, depth 20, SGD). Every group size 1-8 at the reported shape; 3 and 6 at the others.
# Measured beyond the test (2026-12-08, not tested: too slow): identical at depth 20 and 50,
# SGD and Adam, K = 1-8, on 1 and 2 threads; and at depth 50, SGD, K = 16, 25 and 50 (the
# trainability figure stacks up to 25 per depth, 50 with its seeds doubled).
COMPANY_SHAPES = ([(20, "sgd", k) for k in range(1, 9)]
                  + [(depth, opt, k) for depth, opt in ((50, "sgd"), (20, "adam"), (10, "adam"))
                     for k in (3, 6)])
# Other initial scales a member's company has (the figures stack c sweeps and seed sweeps).
COMPANY_CS = [1.7, 2.3, 1.5, 2.5, 1.0, 3.0, 1.2]


def figure_shape(depth: int, optimizer: str, name: str) -> dict:
    """A figure's network and batch, trained 4 steps (the records of steps 0, 2, 4 and the
    epoch's end, probe included)."""
    return {"name": name, "model": {"depth": depth, "width": 100}, "init": {"c": 2.0},
            "data": {"train_subset": 4 * 128, "test_subset": 500},
            "train": {"epochs": 1, "batch_size": 128, "optimizer": optimizer,
                      "lr": 0.01 if optimizer == "sgd" else 1e-3},
            "log": {"every": 2, "probe_size": 64}}


@pytest.fixture(scope="module")
def alone_records(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, str], bytes]:
    """stats.jsonl of c = 2 trained alone, per (depth, optimizer): trained once each."""
    out = tmp_path_factory.mktemp("alone")
    records = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for depth, optimizer in {(d, o) for d, o, _ in COMPANY_SHAPES}:
        cfg = write_config(out / f"a{depth}{optimizer}.yaml",
                           figure_shape(depth, optimizer, f"a{depth}{optimizer}"))
        run = run_experiment(load_experiment(cfg), out / "runs")[0]
        records[(depth, optimizer)] = (run.path / "stats.jsonl").read_bytes()
    torch.set_num_threads(before)
    return records


@pytest.mark.parametrize(("depth", "optimizer", "k"), COMPANY_SHAPES)
def test_a_member_is_itself_in_every_group_size_at_the_figures_shapes(
        tmp_path: Path, alone_records: dict[tuple[int, str], bytes], depth: int,
        optimizer: str, k: int) -> None:
    """c = 2 in the middle of a group of k members of other c's ends with the very bits it
    ends with alone (measured for k = 1-8 at depth 20 and 50, SGD and Adam: identical)."""
    cs = COMPANY_CS[: k - 1]
    cs.insert((k - 1) // 2, 2.0)
    cfg = write_config(tmp_path / "g.yaml", with_sweep(figure_shape(depth, optimizer, "g"), "g",
                                                      {"init.c": cs}))
    runs = run_experiment(load_experiment(cfg), tmp_path / "runs")
    member = runs[(k - 1) // 2]
    assert initlab.load_run(member.path).config["init"]["c"] == 2.0
    assert (member.path / "stats.jsonl").read_bytes() == alone_records[(depth, optimizer)]


def test_same_seed_same_numbers_on_cpu(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "d.yaml", {**SMALL, "name": "d", "model": {"depth": 6,
                                                                             "width": 16,
                                                                             "dropout": 0.1}})
    exp = load_experiment(cfg)
    a = run_experiment(exp, tmp_path / "a")[0].path
    b = run_experiment(exp, tmp_path / "b")[0].path
    assert (a / "stats.jsonl").read_bytes() == (b / "stats.jsonl").read_bytes()


def test_target_test_error_stops_a_member(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "t.yaml", with_sweep(
        {**SMALL, "train": {**SMALL["train"], "epochs": 3}}, "t",
        {"train.target_test_error": [0.99, None]}))
    outcomes = run_experiment(load_experiment(cfg), tmp_path / "runs")
    by_name = {o.name: o.summary for o in outcomes}
    stopped, full = by_name["target_test_error=0.99"], by_name["target_test_error=none"]
    assert stopped["reached_target_epoch"] == 1 and stopped["epochs"] == 1
    assert full["reached_target_epoch"] is None and full["epochs"] == 3
    run = initlab.load_run(tmp_path / "runs" / "t" / "target_test_error=0.99")
    assert run.phase[-1] == "final" and run.step[-1] == 1280 // 64


@pytest.mark.parametrize(("max_steps", "probes", "final_step"), [(None, 3, 40), (30, 3, 30)])
def test_the_last_epochs_capture_is_the_final_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_steps: int | None, probes: int,
        final_step: int) -> None:
    """After the last epoch the weights are those its capture measured: the final record is
    that capture, with no second probe and test pass of the same weights. A run that max_steps
    stops mid-epoch measures its final weights itself. Either way one probe per record."""
    counted: list[int] = []
    real = train_module.Gauges.measure_probe

    def measure_probe(self):  # noqa: ANN001, ANN202 -- the method, counted
        counted.append(1)
        return real(self)

    monkeypatch.setattr(train_module.Gauges, "measure_probe", measure_probe)
    cfg = write_config(tmp_path / "f.yaml", {**SMALL, "name": "f",
                                             "train": {**SMALL["train"], "max_steps": max_steps}})
    path = run_experiment(load_experiment(cfg), tmp_path / "runs")[0].path
    records = [json.loads(line) for line in (path / "stats.jsonl").read_text().splitlines()]
    probed = [r for r in records if r["phase"] != "train"]
    assert [r["phase"] for r in probed][-1] == "final" and probed[-1]["step"] == final_step
    assert len(counted) == probes == len(probed) - (max_steps is None)
    if max_steps is None:  # the last epoch's record, relabelled
        assert {**probed[-2], "phase": "final"} == probed[-1]
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == final_step
    assert summary["final_test_error"] == probed[-1]["test_error"]


def test_members_that_stop_leave_the_stack_and_change_no_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When members reach their target, the others go on as a smaller stack (their states
    carried over: weights, Adam's moments, data order, dropout generator), and end with the
    very bits they end with alone."""
    base = {**SMALL, "name": "alone", "model": {**SMALL["model"], "dropout": 0.1},
            "train": {**SMALL["train"], "epochs": 3, "optimizer": "adam", "lr": 1e-3}}
    shrunk: list[int] = []
    real = experiment.smaller_stack

    def counted(trainer, *args):
        smaller = real(trainer, *args)
        shrunk.append(smaller.K)
        return smaller

    monkeypatch.setattr(experiment, "smaller_stack", counted)
    alone = run_experiment(load_experiment(write_config(tmp_path / "a.yaml", base)),
                           tmp_path / "a")[0].path
    crowd = write_config(tmp_path / "c.yaml", with_sweep(
        base, "crowd", {"train.target_test_error": [None, 0.99], "train.seed": [0, 1]}))
    outcomes = {o.name: o for o in run_experiment(load_experiment(crowd), tmp_path / "c")}
    assert shrunk == [2]  # after epoch 1 the two members with a target of 99% stopped
    went_on = outcomes["seed=0_target_test_error=none"]
    assert went_on.summary["epochs"] == 3 and went_on.summary["members_in_group"] == 4
    assert outcomes["seed=0_target_test_error=0.99"].summary["epochs"] == 1
    assert (alone / "stats.jsonl").read_bytes() == (went_on.path / "stats.jsonl").read_bytes()


def test_zero_init_gradients_are_exactly_zero_but_the_last_bias(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "z.yaml", {**SMALL, "name": "z", "init": {"scheme": "zeros"}})
    run = initlab.load_run(run_experiment(load_experiment(cfg), tmp_path / "r")[0].path)
    assert np.all(run.layers["grad_norm"] == 0.0)
    assert run.test_error[run.last()] >= 0.8


@pytest.mark.parametrize(("c", "check"), [(1.0, lambda r: r < 1e-4), (2.0, lambda r: 0.1 < r < 10),
                                          (3.0, lambda r: r > 1e3)])
def test_init_activation_norms_follow_c(tmp_path: Path, c: float, check) -> None:
    """The issue's acceptance check, on the real 50 x 100 network through the CLI."""
    result = runner.invoke(app, ["run", "configs/kaiming.yaml", "--set", f"init.c={c}",
                                 "--set", "train.epochs=0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = initlab.load_run(tmp_path / "kaiming")
    act = run.layer_stat("act_norm", "init")
    assert len(act) == 50
    assert check(act[-1] / act[0]), act[-1] / act[0]


def test_bad_config_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.yaml", {"name": "bad", "init": {"c": -1}})
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(cfg), "--out", str(out)])
    assert result.exit_code == 2
    assert "init.c" in result.output and str(cfg) in result.output
    assert not out.exists()
