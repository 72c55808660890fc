"""Claims about a mean over seeds: Student's t interval, the three verdicts it gives, and the
weight-standardization figure's claims and plot on hand-written run directories (no MNIST, no
training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from initlab.figures import FIGURES
from initlab.figures.core import FigureInput, over_seeds
from initlab.figures.weight_standardization import STEM
from initlab.intervals import (
    bootstrap_interval,
    exact_interval,
    interval,
    t_interval,
    t_quantile,
)
from initlab.report import Claim, changed_since, read_report_rows, report_markdown
from initlab.runs import CONFIG_FILE, STATS_FILE, SUMMARY_FILE


@pytest.mark.parametrize(("p", "df", "printed"), [
    (0.975, 1, 12.706), (0.975, 4, 2.776), (0.975, 7, 2.365), (0.975, 30, 2.042),
    (0.995, 1, 63.657), (0.95, 10, 1.812)])
def test_t_quantiles_match_the_printed_tables(p: float, df: int, printed: float) -> None:
    assert t_quantile(p, df) == pytest.approx(printed, abs=1e-3)


def test_t_interval_is_the_t_interval() -> None:
    centre, low, high = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    assert centre == 3.0
    assert (low, high) == pytest.approx((3.0 - half, 3.0 + half), abs=1e-3)
    assert all(math.isnan(v) for v in t_interval([1.0]))
    assert all(math.isnan(v) for v in t_interval([1.0, math.nan]))


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # Clopper-Pearson bounds: beta quantiles, as printed in Clopper & Pearson's tables and
    # reproduced by R's binom.test.
    (5, 5, 0.4782, 1.0), (0, 5, 0.0, 0.5218), (4, 5, 0.2836, 0.9949), (20, 20, 0.8316, 1.0),
    (10, 20, 0.2720, 0.7280)])
def test_exact_interval_is_clopper_pearson(k: int, n: int, low: float, high: float) -> None:
    p, lo, hi = exact_interval(k, n)
    assert p == k / n
    assert (lo, hi) == pytest.approx((low, high), abs=1e-4)
    assert interval([1.0] * k + [0.0] * (n - k), "exact") == (p, lo, hi)
    with pytest.raises(ValueError, match="yes/no"):
        interval([0.5, 1.0], "exact")


def test_bootstrap_interval_stays_in_the_support_and_is_reproducible() -> None:
    """An error rate with one seed far out (the trainability cell of issue 30): the t interval
    leaves [0, 1], the bootstrap one stays within the values' range, the same on every call."""
    errors = [0.90, 0.05, 0.06, 0.05, 0.07]
    assert t_interval(errors)[1] < 0.0
    centre, low, high = bootstrap_interval(errors)
    assert centre == pytest.approx(0.226)
    assert min(errors) <= low < centre < high <= max(errors)
    assert bootstrap_interval(errors) == (centre, low, high)
    # One measurement repeated: no interval, the value itself.
    assert bootstrap_interval([4.37] * 5) == (4.37, 4.37, 4.37)


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


def seeds_of(values: list[float], **kw: object) -> Claim:
    return over_seeds([Claim("f", "x", v, "<", 0.2, **kw) for v in values])  # type: ignore[arg-type]


def test_a_seed_without_a_value_is_left_out_and_counted() -> None:
    """The one rule for a diverged run in an "after training" row: measured on the seeds that
    trained, saying how many did; never a silent drop, never a stand-in value."""
    claim = seeds_of([0.39, math.nan, 0.35, 0.41, 0.38])
    assert claim.seeds == 5 and claim.used == 4
    assert claim.value == pytest.approx((0.39 + 0.35 + 0.41 + 0.38) / 4)
    assert "4 of 5 seeds gave a value, 1 diverged or unrecorded" in claim.measured
    assert "bootstrap" in claim.measured and claim.verdict == "FAIL"
    one = seeds_of([math.nan, 0.1, math.nan])
    assert one.value == 0.1 and one.verdict == "INCONCLUSIVE"
    assert "too few for an interval" in one.measured
    none = seeds_of([math.nan, math.nan])
    assert none.verdict == "FAIL" and none.measured.startswith("n/a")


def test_yes_no_outcomes_are_k_of_n_with_an_exact_interval() -> None:
    claim = over_seeds([Claim("f", "reaches 5%", v, ">", 0.5, method="exact")
                        for v in (1.0, 1.0, 0.0, 1.0, 1.0)])
    assert claim.measured == "4 of 5 seeds (95% Clopper-Pearson CI 28% to 99%)"
    assert claim.verdict == "INCONCLUSIVE"
    twenty = over_seeds([Claim("f", "reaches 5%", 1.0, ">", 0.5, method="exact")] * 20)
    assert twenty.verdict == "PASS"


def test_one_measurement_repeated_has_no_interval() -> None:
    claim = seeds_of([4.37] * 5)
    assert claim.measured == "4.37 (the same on all 5 seeds: no interval)"


def test_a_number_the_seeds_share_is_one_measurement_without_an_interval() -> None:
    """A stacked group's wall clock is one timing: its seeds' ratios differ in the last digits
    only (sync-bn's full run read "3.22 (5 seeds, 95% bootstrap CI 3.22 to 3.22)")."""
    claim = seeds_of([3.2201, 3.2197, 3.2199, 3.2203, 3.22], method="shared")
    assert claim.interval is None and claim.value == 3.2201
    assert claim.measured == "3.22" and claim.verdict == "FAIL"  # 3.22 is not < 0.2


def test_the_next_report_lists_rows_dropped_or_rebudgeted() -> None:
    previous = report_markdown([
        Claim("f", "kept", 0.1, "<", 0.2, interval=(0.0, 0.15), seeds=5),
        Claim("f", "dropped", 0.3, "<", 0.2, interval=(0.25, 0.35), seeds=5),
        Claim("f", "more seeds", 0.1, "<", 0.2, interval=(0.05, 0.25), seeds=5)], "old", [])
    now = [Claim("f", "kept", 0.1, "<", 0.2, interval=(0.0, 0.15), seeds=5),
           Claim("f", "more seeds", 0.1, "<", 0.2, interval=(0.05, 0.15), seeds=20)]
    listed = changed_since(previous, now)
    assert "| `f` | dropped |" in listed and "| FAIL | dropped or reworded |" in listed
    assert "| `f` | more seeds |" in listed and "re-budgeted: 20 seeds now" in listed
    assert "| `f` | kept |" not in listed
    assert changed_since(previous, [*now, Claim("f", "dropped", 0.3, "<", 0.2,
                                                interval=(0.25, 0.35), seeds=5)]).count(
        "| `f` |") == 1
    # A report that lists them is read back with its claims only (the full run's report was
    # unreadable to the figure tests: the listed rows start like claim rows).
    report = previous + "\n" + listed + "\n"
    assert read_report_rows(report) == read_report_rows(previous)


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


def test_normalized_training_says_which_mechanism_the_data_support() -> None:
    from initlab.figures.normalized_training import GROWTH_ROW, SCALE_ROWS, conclude

    def rows(scale: tuple[float, float], growth: float) -> list[Claim]:
        return [Claim("f", f"{SCALE_ROWS[0]} …", scale[0], ">", 1.0),
                Claim("f", f"{SCALE_ROWS[1]} …", scale[1], ">", 1.0),
                Claim("f", f"{GROWTH_ROW}: …", growth, ">=", 0.02)]

    assert "the erased relative scale —" in conclude(rows((1.2, 1.1), 0.0))
    assert "the gradient growth, not the erased" in conclude(rows((0.9, 0.8), 0.3))
    assert "neither mechanism cleanly (the scale rows: PASS, FAIL" in conclude(
        rows((1.2, 0.8), 0.3))
