"""The theory the figures draw beside their measurements (checked against Monte Carlo), and the
new figures' claims on hand-written run directories with known numbers: no MNIST, no training
(tests/test_figures.py trains every figure in quick mode)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from initlab.figures import FIGURES, member_labels
from initlab.figures.core import FigureInput, Mode, config_runs
from initlab.figures.feature_drift import drift
from initlab.figures.normalized_gradients import growth_rate
from initlab.figures.normalized_training import recipe
from initlab.figures.theory import (
    NORMALIZED_RELU_GRADIENT_RATE,
    dropout_noise_to_signal,
    mean_field_decades,
    relu_layer_log_moments,
    relu_norm_prediction,
)
from initlab.figures.weight_decay_bn import effective_steps
from initlab.report import Claim, hypothesis, lecture, paper, report_markdown
from initlab.runs import CONFIG_FILE, STATS_FILE, SUMMARY_FILE, load_run

# --- Theory -------------------------------------------------------------------------------------


def test_relu_layer_log_moments_match_monte_carlo() -> None:
    """log ‖relu(zW)‖²/‖z‖² over many draws of W ~ N(0, c/n_in), for one fixed z."""
    gen = torch.Generator().manual_seed(0)
    c, n_in, n_out, draws = 2.0, 60, 30, 40_000
    z = torch.rand(n_in, generator=gen, dtype=torch.float64)
    w = torch.randn(draws, n_in, n_out, generator=gen, dtype=torch.float64) * math.sqrt(c / n_in)
    log_r = torch.log(torch.relu(z @ w).square().sum(dim=-1) / z.square().sum())
    mean, variance = relu_layer_log_moments(c, n_in, n_out)
    assert float(log_r.mean()) == pytest.approx(mean, abs=0.005)
    assert float(log_r.var()) == pytest.approx(variance, rel=0.03)


def test_the_normalized_gradient_rate_is_rms_over_std_of_a_relu_output() -> None:
    g = torch.relu(torch.randn(2_000_000, generator=torch.Generator().manual_seed(1),
                               dtype=torch.float64))
    rms_over_std = float(g.square().mean().sqrt() / g.std())
    assert rms_over_std == pytest.approx(NORMALIZED_RELU_GRADIENT_RATE, rel=2e-3)
    assert NORMALIZED_RELU_GRADIENT_RATE == pytest.approx(1.2112, abs=1e-4)


def test_the_mean_field_line_and_band_of_the_lecture_network() -> None:
    widths = [(784, 100)] + [(100, 100)] * 48 + [(100, 10)]
    mean_field, means, sds = relu_norm_prediction(2.0, widths)
    assert len(mean_field) == len(means) == len(sds) == 50
    # c = 2: only the first layer's 784 -> 100 changes E‖Z‖² (by 100/784); level after it.
    assert mean_field[1] == pytest.approx(math.sqrt(100 / 784))
    assert mean_field[-1] == pytest.approx(mean_field[1])
    # At width 100 the typical norm lies below the mean field, and spreads with depth.
    assert np.all(means[1:] < np.log(mean_field[1:]))
    assert np.all(np.diff(sds) > 0)
    one, _, _ = relu_norm_prediction(1.0, widths)
    assert one[-1] == pytest.approx(math.sqrt(100 / 784) * 0.5**24.5)
    assert mean_field_decades(2.0, 50) == 0.0
    assert mean_field_decades(1.0, 11) == pytest.approx(-5 * math.log10(2))


def test_dropout_noise_compounds_layer_by_layer() -> None:
    assert dropout_noise_to_signal(0.5, 1) == pytest.approx(1.0)
    assert dropout_noise_to_signal(0.1, 49) == pytest.approx(0.9**-49 - 1)
    assert dropout_noise_to_signal(0.0, 10) == 0.0


# --- Hand-written run directories ---------------------------------------------------------------


def member(path: Path, config: dict[str, Any], records: list[dict[str, Any]],
           summary: dict[str, Any] | None = None) -> Path:
    """A finished member directory with these config sections, records and summary."""
    path.mkdir(parents=True)
    (path / CONFIG_FILE).write_text(json.dumps(config))  # JSON is YAML
    (path / STATS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    done = {"status": "completed", "epochs": 2, "final_test_error": records[-1].get(
        "test_error") if records else None}
    (path / SUMMARY_FILE).write_text(json.dumps({**done, **(summary or {})}))
    return path


def record(phase: str, step: int = 0, epoch: int = 0, **values: Any) -> dict[str, Any]:
    return {"step": step, "epoch": epoch, "phase": phase, "loss": values.pop("loss", 1.0),
            "train_error": 0.5, "test_error": values.pop("test_error", None), **values}


def test_growth_rate_is_the_geometric_mean_over_the_hidden_layers(tmp_path: Path) -> None:
    depth, rate = 12, 1.3
    grads = [rate ** (depth - 1 - i) for i in range(depth)]  # grows towards the input
    grads[0] *= 50.0  # the first and last layers are left out
    grads[-1] *= 0.01
    run = load_run(member(tmp_path / "r", {"model": {"depth": depth, "norm": "batch"}},
                          [record("init", grad_norm=grads)]))
    assert growth_rate(run) == pytest.approx(rate)


def gradient_runs(tmp_path: Path, rates: dict[tuple[str, str], float],
                  per_seed: dict[int, float] | None = None) -> FigureInput:
    """Gradient norms growing at ``rates`` per layer, times ``per_seed[seed]`` for each seed
    (1 for all of seeds 0, 1, 2 when not given)."""
    dirs = []
    for (norm, placement), base in rates.items():
        for depth in (10, 20, 50):
            for seed, factor in (per_seed or dict.fromkeys((0, 1, 2), 1.0)).items():
                rate = base * factor
                grads = [rate ** (depth - 1 - i) for i in range(depth)]
                config = {"model": {"depth": depth, "norm": norm, "norm_position": placement},
                          "train": {"seed": seed}}
                dirs.append(member(tmp_path / f"{norm}-{placement}-{depth}-{seed}", config,
                                   [record("init", grad_norm=grads)]))
    return FigureInput("normalized-gradients", {"normalized-gradients": dirs})


def test_gradient_claims_compare_each_placement_with_its_prediction(tmp_path: Path) -> None:
    rates = {("batch", "post"): NORMALIZED_RELU_GRADIENT_RATE,
             ("layer", "post"): 1.5,  # 24% above: FAIL
             ("batch", "pre"): NORMALIZED_RELU_GRADIENT_RATE * 1.05,
             ("layer", "pre"): 1.0}
    claims = FIGURES["normalized-gradients"].claims(gradient_runs(tmp_path, rates))
    assert [c.verdict for c in claims] == ["PASS", "FAIL", "PASS", "PASS"]
    assert claims[0].value == pytest.approx(0.0, abs=1e-9)
    assert claims[1].value == pytest.approx(1.5 / NORMALIZED_RELU_GRADIENT_RATE - 1)
    assert claims[2].value == pytest.approx(0.05)
    assert all(c.source is not None for c in claims)
    # Yang et al. analyse normalization before the nonlinearity: that placement is their claim;
    # after the ReLU (the lecture's placement) the same argument is initlab's hypothesis.
    assert [c.source.kind for c in claims] == ["hypothesis", "hypothesis", "paper", "hypothesis"]


def test_gradient_claims_are_a_mean_over_draws_with_an_interval(tmp_path: Path) -> None:
    """At init, each draw of the weights (seed) is one measurement: a claim is the mean over the
    draws with its 95% bootstrap interval (a bounded deviation), which decides the verdict as
    for a trained claim."""
    rates = {("batch", "post"): NORMALIZED_RELU_GRADIENT_RATE,
             ("layer", "post"): NORMALIZED_RELU_GRADIENT_RATE * 1.5,
             ("batch", "pre"): NORMALIZED_RELU_GRADIENT_RATE,
             ("layer", "pre"): 1.0}
    # Draws 5%, 15%, 10% and 10% above the prediction: mean 10%, the interval straddles 10%.
    per_seed = {0: 1.05, 1: 1.15, 2: 1.10, 3: 1.10}
    claims = FIGURES["normalized-gradients"].claims(gradient_runs(tmp_path, rates, per_seed))
    assert [c.seeds for c in claims] == [4, 4, 4, 4]
    assert [c.verdict for c in claims] == ["INCONCLUSIVE", "FAIL", "INCONCLUSIVE",
                                           "INCONCLUSIVE"]
    low, high = claims[3].interval
    assert claims[3].value == pytest.approx(0.10)
    assert low < 0.10 < high
    assert "4 seeds, 95% bootstrap CI" in claims[3].measured
    # One draw: a plain number, no interval.
    one = FIGURES["normalized-gradients"].claims(
        gradient_runs(tmp_path / "one", rates, {7: 1.0}))
    assert [c.interval for c in one] == [None] * 4
    assert [c.verdict for c in one] == ["PASS", "FAIL", "PASS", "PASS"]


@pytest.mark.parametrize(("mode", "seeds"), [(Mode(), [0, 1, 2, 3, 4]),
                                             (Mode(seed_offset=1000), [1000, 1001, 1002, 1003,
                                                                       1004]),
                                             (Mode(quick=True, seed_offset=1000),
                                              [1000, 1001, 1002])])
def test_the_gradient_draws_are_five_seeds_shifted_by_the_offset(mode: Mode,
                                                                 seeds: list[int]) -> None:
    """normalized-gradients' claims rest on 5 draws of the weights (quick mode: the first 3),
    and a rerun with --seed-offset draws other weights."""
    configs = config_runs("normalized-gradients", mode).configs
    assert sorted({c.train.seed for c in configs}) == seeds
    assert len(configs) == 3 * 2 * 2 * len(seeds)  # depths x norms x placements x draws


def percentile_records(medians: list[float], spread: float) -> list[dict[str, Any]]:
    """Probe records (init, epochs) of unit 0's input at 3 hidden layers: the last layer's
    median takes ``medians``, its 15-85 spread ``spread``; a train record in between that
    drifts far (it is a different batch: the drift reads the probe records only)."""
    phases = ["init"] + ["epoch"] * (len(medians) - 1)
    found = []
    for n, (phase, m) in enumerate(zip(phases, medians, strict=True)):
        found.append(record(phase, step=10 * n, epoch=n, unit_input_p15=[0, 0, m - spread / 2],
                            unit_input_p50=[0, 0, m], unit_input_p85=[0, 0, m + spread / 2]))
        if n == 0:
            found.append(record("train", step=5, unit_input_p15=[0, 0, 99],
                                unit_input_p50=[0, 0, 100], unit_input_p85=[0, 0, 101]))
    return found


def test_drift_is_the_largest_move_of_the_probe_median_in_initial_spreads(
        tmp_path: Path) -> None:
    run = load_run(member(tmp_path / "r", {"model": {"depth": 4}},
                          percentile_records([1.0, 1.5, 0.0], spread=2.0)))
    assert drift(run) == pytest.approx(0.5)  # |0 − 1| / 2


def test_trainability_claims_read_the_grid(tmp_path: Path) -> None:
    errors = {5: {0.5: 0.1, 1.0: 0.1, 2.0: 0.1, 4.0: 0.15},
              50: {0.5: 0.9, 1.0: 0.85, 2.0: 0.12, 4.0: math.nan}}
    dirs = []
    for depth, row in errors.items():
        for c, error in row.items():
            summary = {"status": "diverged", "final_test_error": None} if math.isnan(error) \
                else {"final_test_error": error}
            dirs.append(member(tmp_path / f"d{depth}-c{c}", {"model": {"depth": depth},
                                                              "init": {"c": c}},
                               [record("final", test_error=None if math.isnan(error)
                                       else error)], summary))
    grid = FigureInput("trainability", {"trainability": dirs})
    claims = FIGURES["trainability"].claims(grid)
    assert [c.verdict for c in claims] == ["PASS", "PASS", "PASS", "PASS"]
    assert FIGURES["trainability"].plot(grid) is not None  # its quick case is in the slow group
    assert claims[0].value == 1.0  # yes/no per seed: 12% is at most 20%, it trains
    assert claims[1].value == 0.0  # no far c trains: 85%, and the diverged c = 4 does not
    assert claims[0].method == claims[1].method == "exact"
    assert claims[2].value == 3.0  # 4 values of c train at depth 5, one at 50


def test_the_grid_recipe_drops_the_duplicate_plain_net() -> None:
    run_set = recipe("normalized-training", Mode())
    variants = {(c.model.norm, c.model.norm_position) for c in run_set.configs}
    assert ("none", "pre") not in variants and len(variants) == 5
    assert len(run_set.configs) == 5 * len({c.train.lr for c in run_set.configs}) * \
        len({c.train.seed for c in run_set.configs})


def test_effective_step_removes_the_decay_part_of_the_update(tmp_path: Path) -> None:
    lr, decay = 0.1, 5e-3
    turning = 0.003
    total = math.sqrt(turning**2 + (lr * decay) ** 2)
    run = load_run(member(tmp_path / "r", {"model": {"depth": 3},
                                           "train": {"lr": lr, "weight_decay": decay}},
                          [record("init"), record("train", step=20, update_ratio=[total] * 3)]))
    assert effective_steps(run) == pytest.approx(np.full((1, 2), turning))


def test_runs_are_labelled_by_what_varies_between_them(tmp_path: Path) -> None:
    def run(name: str, **sections: Any) -> Any:
        return load_run(member(tmp_path / name, {"name": name, **sections}, [record("init")]))

    small = [run("a", model={"norm": "batch"}, train={"batch_size": 2, "seed": 0, "lr": 0.1}),
             run("b", model={"norm": "batch"}, train={"batch_size": 2, "seed": 1, "lr": 0.1}),
             run("c", model={"norm": "group"}, train={"batch_size": 64, "seed": 0, "lr": 0.1})]
    assert member_labels(small) == ["norm = batch, batch = 2, seed = 0",
                                    "norm = batch, batch = 2, seed = 1",
                                    "norm = group, batch = 64, seed = 0"]
    alone = run("z", init={"scheme": "zeros", "c": 2.0}, model={"norm": "none"})
    assert member_labels([alone]) == ["W = 0"]


def test_the_report_says_whose_claim_each_row_is() -> None:
    said = lecture("Dropout", "it regularizes")
    claims = [Claim("f", "one", 1.0, "<", 2.0, source=said),
              Claim("f", "two", 3.0, "<", 2.0, source=paper("A & B 2020", "it holds"),
                    if_fails="the budget was short"),
              Claim("g", "three", 1.0, "<", 2.0, source=said, if_fails="never shown"),
              Claim("g", "four", 1.0, ">", 2.0, source=hypothesis("we guess so"))]
    text = report_markdown(claims, "t", ["summary"], ["## Runs"])
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[2] for row in rows] == [
        "*lecture* [1]", "*paper* [2]", "*lecture* [1]", "*initlab's hypothesis* [3]"]
    assert "1. *lecture* — Lecture 9 (Normalization and regularization), “Dropout”: it " \
           "regularizes" in text
    assert "3. *initlab's hypothesis* — we guess so" in text
    assert "2 of 4 claims PASS, 0 INCONCLUSIVE, 2 FAIL (2 of the 2 that are the lecture's " \
           "own PASS)." in text
    assert text.index("summary") < text.index("| `f`") < text.index("## Runs")
    # A failed claim's note says what the FAIL suggests; a passed one's is not shown.
    assert "- `f`, two (3): the budget was short" in text and "never shown" not in text
    with pytest.raises(ValueError, match="source kind"):
        Claim("f", "x", 1.0, "<", 2.0, source=type(said)("rumour", "x"))
