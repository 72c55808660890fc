"""``initlab bench --against``: two versions at once, a block each in turn, new / old with the
interval of its median; and the order-statistics interval itself."""

from __future__ import annotations

import io
import json
import math
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


def test_twenty_values_give_the_sixth_and_fifteenth() -> None:
    values = [float(v) for v in reversed(range(1, 21))]  # order does not matter
    assert median_interval(values) == (10.5, 6.0, 15.0)


def test_too_few_values_give_the_whole_range_and_none_is_an_error() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    with pytest.raises(ValueError):
        median_interval([])


@pytest.mark.parametrize(("low", "high", "said"), [(0.97, 1.04, "within 5%"),
                                                    (0.90, 1.05, "within 5%"),
                                                    (1.06, 1.20, "slower"),
                                                    (0.98, 1.08, "unclear")])
def test_the_verdict_reads_the_interval_against_five_percent(low: float, high: float,
                                                              said: str) -> None:
    assert verdict(low, high) == said


def test_a_sample_is_two_rounds_one_each_way_so_the_order_cancels() -> None:
    # The second block of a pair 5% slower, whatever the code: new second in even rounds.
    row = bench_pair.PairRow("one", 10, old=[1.0, 1.05] * 4, new=[1.05, 1.0] * 4)
    assert row.samples() == pytest.approx([1.0] * 4)
    summary = row.summary()
    assert summary["ratio"] == pytest.approx(1.0) and summary["verdict"] == "within 5%"
    odd = bench_pair.PairRow("one", 10, old=[1.0] * 3, new=[1.1, 1.0, 2.0])
    assert odd.samples() == pytest.approx([math.sqrt(1.1)])  # the last round has no partner


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
