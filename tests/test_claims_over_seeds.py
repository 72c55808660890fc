"""Claims about a mean over seeds: Student's t interval, the three verdicts it gives, and the
weight-standardization figure's claims and plot on hand-written run directories (no MNIST, no
training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from initlab.figures import FIGURES
from initlab.figures.core import FigureInput
from initlab.figures.weight_standardization import STEM
from initlab.report import Claim, mean_interval, report_markdown, t_quantile
from initlab.runs import CONFIG_FILE, STATS_FILE, SUMMARY_FILE


@pytest.mark.parametrize(("p", "df", "printed"), [
    (0.975, 1, 12.706), (0.975, 4, 2.776), (0.975, 7, 2.365), (0.975, 30, 2.042),
    (0.995, 1, 63.657), (0.95, 10, 1.812)])
def test_t_quantiles_match_the_printed_tables(p: float, df: int, printed: float) -> None:
    assert t_quantile(p, df) == pytest.approx(printed, abs=1e-3)


def test_mean_interval_is_the_t_interval() -> None:
    centre, low, high = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    assert centre == 3.0
    assert (low, high) == pytest.approx((3.0 - half, 3.0 + half), abs=1e-3)
    assert all(math.isnan(v) for v in mean_interval([1.0]))
    assert all(math.isnan(v) for v in mean_interval([1.0, math.nan]))


def test_an_interval_passes_fails_or_is_inconclusive() -> None:
    def verdict(low: float, high: float, op: str = ">") -> str:
        return Claim("f", "x", (low + high) / 2, op, 0.0, interval=(low, high)).verdict

    assert verdict(0.1, 0.3) == "PASS"
    assert verdict(-0.3, -0.1) == "FAIL"
    assert verdict(-0.1, 0.3) == "INCONCLUSIVE"
    assert verdict(-0.3, -0.1, "<") == "PASS"
    assert verdict(0.0, 0.2, ">=") == "PASS" and verdict(0.0, 0.2, ">") == "INCONCLUSIVE"
    assert verdict(-0.2, 0.0, "<") == "INCONCLUSIVE" and verdict(0.0, 0.2, "<") == "FAIL"
    missing = Claim("f", "x", math.nan, ">", 0.0, interval=(math.nan, math.nan))
    assert missing.verdict == "FAIL" and not missing.passed
    inconclusive = Claim("f", "x", 0.1, ">", 0.0, "pp", interval=(-0.001, 0.2))
    assert not inconclusive.passed
    assert inconclusive.measured == "10.00 pp (95% t CI -0.10 pp to 20.00 pp)"
    assert "| **INCONCLUSIVE** |" in report_markdown([inconclusive], "t", [])
    # Any operator takes an interval: "in" PASSes when the whole interval is inside its range.
    assert Claim("f", "x", 0.1, "in", (0.0, 1.0), interval=(0.0, 0.2)).verdict == "PASS"
    assert Claim("f", "x", 0.9, "in", (0.0, 1.0), interval=(0.8, 1.2)).verdict == "INCONCLUSIVE"


def fake_member(path: Path, norm: str, weight_norm: str, seed: int, error: float) -> Path:
    """A finished member directory: the config fields the figure reads, a final record and a
    summary."""
    path.mkdir(parents=True)
    config = {"model": {"norm": norm, "weight_norm": weight_norm, "depth": 10, "width": 100,
                        "activation": "relu", "groups": 5},
              "data": {"train_subset": 16384},
              "train": {"batch_size": 128, "lr": 0.02, "momentum": 0.9, "epochs": 3,
                        "seed": seed}}
    (path / CONFIG_FILE).write_text(json.dumps(config))  # JSON is YAML
    record = {"step": 384, "epoch": 3, "phase": "final", "loss": 0.2, "train_error": error,
              "test_error": error, "act_norm": [1.0] * 10, "grad_norm": [1.0] * 10,
              "weight_var": [1.0] * 10,
              "weight_rel_change": [0.1] * 10}
    (path / STATS_FILE).write_text(json.dumps(record) + "\n")
    (path / SUMMARY_FILE).write_text(json.dumps({"status": "completed", "epochs": 3,
                                                 "final_test_error": error}))
    return path


def test_weight_standardization_claims_compare_nets_seed_by_seed(tmp_path: Path) -> None:
    """GN is 1.0 or 1.1 pp above BN by seed (its claim PASSes); GN + WS is 8% in every seed,
    above GN (WS lowers GN's error: FAIL) and 3 pp above BN (no worse than BN: FAIL). A seed's
    own offset is shared by its nets, as the same draw and batches make it: the paired
    differences cancel it."""
    dirs = []
    for seed in range(6):
        offset = 0.02 * seed  # this seed's draw: worse or better for every net alike
        errors = {("batch", "none"): 0.05, ("batch", "standardize"): 0.05,
                  ("group", "none"): 0.06 + 0.001 * (seed % 2), ("group", "standardize"): 0.08}
        for (norm, weight_norm), error in errors.items():
            dirs.append(fake_member(tmp_path / f"{norm}-{weight_norm}-{seed}", norm,
                                    weight_norm, seed, error + offset))
    inp = FigureInput("weight-standardization", {STEM: dirs})
    gap, ws, gn_ws = FIGURES["weight-standardization"].claims(inp)
    assert gap.value == pytest.approx(0.0105) and gap.verdict == "PASS"
    assert ws.value == pytest.approx(0.08 - 0.0605) and ws.verdict == "FAIL"
    assert gn_ws.value == pytest.approx(0.03) and gn_ws.verdict == "FAIL"
    assert FIGURES["weight-standardization"].plot(inp) is not None


def test_weight_standardization_inconclusive_when_the_seeds_disagree(tmp_path: Path) -> None:
    """Weight standardization helps GN by 0.5 pp in half the seeds and hurts it by as much in
    the others: the interval holds 0, the claim is INCONCLUSIVE."""
    dirs = []
    for seed in range(6):
        for (norm, weight_norm), error in {
                ("batch", "none"): 0.05, ("group", "none"): 0.06,
                ("group", "standardize"): 0.06 + (0.005 if seed % 2 else -0.005)}.items():
            dirs.append(fake_member(tmp_path / f"{norm}-{weight_norm}-{seed}", norm,
                                    weight_norm, seed, error))
    inp = FigureInput("weight-standardization", {STEM: dirs})
    _, ws, _ = FIGURES["weight-standardization"].evaluate(inp)
    assert ws.value == pytest.approx(0.0, abs=1e-12) and ws.verdict == "INCONCLUSIVE"
