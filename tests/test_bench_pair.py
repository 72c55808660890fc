"""``initlab bench --against``: two versions at once, a block each in turn, new / old with the
interval of its median; and the order-statistics interval itself."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from initlab import bench_pair
from initlab.bench import settings_for
from initlab.bench_pair import PACKAGE_ROOT, median_interval, revision_checkout, run_pair, verdict
from initlab.cli import app


def coverage(n: int, k: int) -> float:
    """P(x(k) <= median <= x(n+1-k)) for n draws of a continuous distribution."""
    return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n


@pytest.mark.parametrize("n", [6, 9, 20, 31, 150])
def test_the_interval_is_the_narrowest_order_statistics_pair_with_95_percent(n: int) -> None:
    values = [float(v) for v in range(1, n + 1)]  # x(k) = k
    median, low, high = median_interval(values)
    k = int(low)
    assert high == n + 1 - k
    assert median == (n + 1) / 2
    assert coverage(n, k) >= 0.95 > coverage(n, k + 1)


@pytest.mark.parametrize("n", [1, 5, 6, 9, 20, 150])
def test_the_coverage_is_the_binomial_tail_of_the_chosen_rank(n: int) -> None:
    k = bench_pair.interval_rank(n)
    assert bench_pair.coverage(n, k) == pytest.approx(coverage(n, k))
    assert (bench_pair.coverage(n, k) >= 0.95) == (n >= 6)  # fewer: the whole range, < 95%


def test_twenty_values_give_the_sixth_and_fifteenth() -> None:
    values = [float(v) for v in reversed(range(1, 21))]  # order does not matter
    assert median_interval(values) == (10.5, 6.0, 15.0)


def test_too_few_values_give_the_whole_range_and_none_is_an_error() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    with pytest.raises(ValueError):
        median_interval([])


def test_an_interval_of_too_few_values_says_nothing() -> None:
    assert verdict(1.0, 1.01, covered=0.9375) == "too few"  # five values' whole range
    assert bench_pair.interval_summary([1.0] * 5)["verdict"] == "too few"
    assert bench_pair.interval_summary([1.0] * 6)["verdict"] == "within 5%"


@pytest.mark.parametrize(("low", "high", "said"), [(0.97, 1.04, "within 5%"),
                                                    (0.90, 1.05, "within 5%"),
                                                    (1.06, 1.20, "slower"),
                                                    (0.98, 1.08, "unclear")])
def test_the_verdict_reads_the_interval_against_five_percent(low: float, high: float,
                                                              said: str) -> None:
    assert verdict(low, high) == said


def test_a_sample_is_two_rounds_one_each_way_so_the_order_cancels() -> None:
    # The second block of a pair 5% slower, whatever the code: new second in even rounds.
    row = bench_pair.PairRow("one", 10, old=[1.0, 1.05] * 6, new=[1.05, 1.0] * 6)
    assert row.samples() == pytest.approx([1.0] * 6)
    summary = row.summary()
    assert summary["ratio"] == pytest.approx(1.0) and summary["verdict"] == "within 5%"
    odd = bench_pair.PairRow("one", 10, old=[1.0] * 3, new=[1.1, 1.0, 2.0])
    assert odd.samples() == pytest.approx([math.sqrt(1.1)])  # the last round has no partner


def pair_of_rounds(key: str, ratio: float, rounds: int = 12) -> bench_pair.PairRow:
    """A pair's row whose every sample is ``ratio`` (old 10 ms a step)."""
    return bench_pair.PairRow(key, 5, old=[0.01] * rounds, new=[0.01 * ratio] * rounds,
                              work_old={"python_calls": 3.0, "aten_ops": 2.0},
                              work_new={"python_calls": 3.0, "aten_ops": 2.0})


def test_over_pairs_the_interval_is_over_the_pairs_medians() -> None:
    """A process settles at its own speed: pairs whose samples agree within each pair but not
    across pairs give the spread across pairs, not one pair's narrow interval."""
    medians = [1.00, 1.12, 1.01, 0.99, 1.03, 1.02]
    combined = bench_pair.combine_pairs([pair_of_rounds("one", m) for m in medians])
    assert combined["ratio"] == pytest.approx(1.015)
    assert (combined["low"], combined["high"]) == pytest.approx((0.99, 1.12))  # six: the range
    assert combined["coverage"] == pytest.approx(1 - 2 / 64) and combined["verdict"] == "unclear"
    assert combined["rounds"] == 72 and len(combined["pairs"]) == 6
    assert combined["old_ms"] == pytest.approx(10.0)
    assert [p["ratio"] for p in combined["pairs"]] == pytest.approx(medians)
    # One pair alone: its own summary, every sample the same, as narrow as can be.
    alone = bench_pair.combine_pairs([pair_of_rounds("one", 1.12)])
    assert (alone["low"], alone["high"]) == pytest.approx((1.12, 1.12))
    assert alone["verdict"] == "slower" and "pairs" not in alone


def test_pairs_of_fresh_workers_are_timed_one_after_the_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_pair`` over pairs: each pair's workers are fresh, the first side to start
    alternates, the work is counted in the first pair only; the table shows each pair."""
    calls: list[tuple[bool, bool]] = []

    def fake_workers(old_root: Path, start: dict, settings: object, rounds: int,
                     log_path: Path, console: Console, count: bool = True,
                     old_starts: bool = True) -> list[bench_pair.PairRow]:
        calls.append((count, old_starts))
        ratio = 1.0 + 0.01 * len(calls)
        return [pair_of_rounds("plain", 1.0, rounds), pair_of_rounds("one", ratio, rounds)]

    monkeypatch.setattr(bench_pair, "time_workers", fake_workers)
    settings = settings_for("cpu", warmup=1, sweeps=[2], only=["mlp"])
    text = io.StringIO()
    result = run_pair(str(PACKAGE_ROOT), settings, 4, tmp_path / "p.json",
                      Console(file=text, width=250), pairs=6)
    assert calls == [(True, True), (False, False), (False, True), (False, False),
                     (False, True), (False, False)]
    assert result["pairs"] == 6 and [r["key"] for r in result["rows"]] == ["plain", "one"]
    one = result["rows"][1]
    assert (one["low"], one["high"]) == pytest.approx((1.01, 1.06))
    assert re.search(r"one +1\.01 +1\.02 +1\.03 +1\.04 +1\.05 +1\.06", text.getvalue())
    assert json.loads((tmp_path / "p.json").read_text()) == result


@pytest.mark.usefixtures("mnist_env")
def test_a_checkout_against_itself_times_every_contender_in_turns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_pair, "BLOCK_SECONDS", 0.01)  # one or two steps a block
    settings = settings_for("cpu", warmup=1, sweeps=[2], only=["mlp"])
    out, text = tmp_path / "pair.json", io.StringIO()
    result = run_pair(str(PACKAGE_ROOT), settings, 4, out, Console(file=text, width=200))
    assert json.loads(out.read_text()) == result
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ["plain", "one", "one_stats", "one_autograd", "sweep2"]
    for row in rows.values():
        assert row["rounds"] == 4 and len(row["old"]) == len(row["new"]) == 4
        assert min(row["old"] + row["new"]) > 0
        assert row["low"] <= row["ratio"] <= row["high"]
        assert row["work_new"]["aten_ops"] > 0 and row["work_new"]["python_calls"] > 0
        if not row["control"]:  # the plain loop's DataLoader polls as its workers allow
            # The same code on both sides does the same work, call for call.
            assert row["work_old"] == row["work_new"]
    assert rows["plain"]["control"] and not rows["one"]["control"]
    # Statistics at every step dispatch more operators than the plain step.
    assert rows["one_stats"]["work_new"]["aten_ops"] > rows["one"]["work_new"]["aten_ops"]
    assert "one_stats" in text.getvalue() and "95% CI" in text.getvalue()


def test_a_revision_is_exported_without_touching_the_repository(tmp_path: Path) -> None:
    if not (PACKAGE_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    status = ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain"]
    before = subprocess.run(status, capture_output=True, text=True, check=True).stdout
    root = revision_checkout("HEAD", tmp_path / "old")
    assert (root / "initlab" / "__init__.py").is_file() and (root / "initlab" / "cli.py").is_file()
    assert subprocess.run(status, capture_output=True, text=True, check=True).stdout == before


def test_an_unknown_revision_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--against", "no-such-revision-xyz", "--device",
                                      "cpu", "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 2, result.output
    assert "--against 'no-such-revision-xyz'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "b.json").exists()


def test_a_version_the_worker_cannot_drive_is_one_line(tmp_path: Path) -> None:
    """Issue 32: `bench --against` an older revision (one without the settings this worker
    sends) ended in a RuntimeError traceback."""
    old = tmp_path / "old" / "initlab"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("")
    (old / "bench.py").write_text("class BenchSettings:\n    def __init__(self, device):\n"
                                  "        pass\n")
    result = CliRunner().invoke(app, ["bench", "--against", str(tmp_path / "old"), "--device",
                                      "cpu", "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()  # its progress ("pair 1 of 6"), one error
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.output
    assert lines[-1].startswith("error: bench --against: the old side's worker: TypeError"), \
        result.output
    assert "Traceback" not in result.output and not (tmp_path / "b.json").exists()
