"""One story for a diverged run (issue 23): "diverged at step N" in the progress line, ``ls``,
``compare``, the figures' titles and ``load_run``, never a test error its stopped weights
would get; no time left once a run is done; layouts that fit 80 columns."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import initlab
from initlab.browse import list_table
from initlab.cli import app
from initlab.describe import title_lines
from initlab.progress import LineProgress, RichProgress, measured

runner = CliRunner()
SMALL = ["train.epochs=1", "train.max_steps=3", "data.train_subset=640", "data.test_subset=200",
         "log.probe_size=64", "--threads", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/kaiming (c = 2, three steps) and runs/kaiming-2 (c = 3: diverges at step 2)."""
    out = tmp_path_factory.mktemp("story") / "runs"
    for c in (2, 3):
        result = runner.invoke(app, ["run", "kaiming", f"init.c={c}", *SMALL, "--out", str(out)])
        assert result.exit_code == 0, result.output
    return out


def test_the_run_command_says_where_it_diverged_and_stops_there(tmp_path: Path) -> None:
    """Every member diverged at step 2: the run ends then, not at the end of the epoch's 5
    steps, and says so (issue 34)."""
    once = [a for a in SMALL if not a.startswith("train.max_steps")]
    result = runner.invoke(app, ["run", "kaiming", "init.c=3", *once, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "step 2/5 (40%), stopped: diverged at step 2" in result.output, result.output
    assert f"{tmp_path / 'kaiming'}: diverged at step 2, 0 epochs, 2 steps" in result.output
    assert "test error" not in result.output.split("diverged at step 2")[1].splitlines()[0]
    sweep = runner.invoke(app, ["run", "kaiming", "init.c=3,4", "-m", *once, "--out",
                                str(tmp_path)])
    assert "stopped: all 2 diverged at step 2" in sweep.output, sweep.output


def test_ls_compare_load_run_and_titles_tell_the_same_story(runs: Path) -> None:
    diverged = initlab.load_run(runs / "kaiming-2")
    assert "diverged at step 2" in repr(diverged) and "%" not in repr(diverged)
    assert diverged.final_test_error != diverged.final_test_error  # NaN: no result
    assert "diverged at step 2" in title_lines([diverged])[1]
    listed = runner.invoke(app, ["ls", str(runs)])
    row = next(line for line in listed.output.splitlines() if line.startswith("kaiming-2"))
    assert "diverged at step 2" in row and "—" in row and "%" not in row
    out = runs.parent / "compare.png"
    compared = runner.invoke(app, ["compare", str(runs / "kaiming"), str(runs / "kaiming-2"),
                                   "--out", str(out)])
    assert compared.exit_code == 0, compared.output
    error_row = next(line for line in compared.output.splitlines() if "final test error" in line)
    assert len(re.findall(r"\d+\.\d\d%", error_row)) == 1 and "—" in error_row, error_row
    assert re.search(r"init\.c\s*│\s*2\s*│\s*3", compared.output), compared.output
    exported = runner.invoke(app, ["export", str(runs / "kaiming-2"), "--out",
                                   str(runs.parent / "exports")])
    assert exported.exit_code == 0, exported.output
    assert "kaiming-2: diverged at step 2; its records end there" in exported.output


@pytest.mark.parametrize("width", [80, None])  # None: a pipe, a file or a wide terminal
def test_ls_fits_80_or_100_columns_one_line_per_run_and_its_differences(
        runs: Path, width: int | None) -> None:
    shown = io.StringIO()
    Console(file=shown, width=250).print(list_table(runs, print, width))
    lines = shown.getvalue().splitlines()
    assert all(len(line.rstrip()) <= (width or 100) for line in lines), lines
    first = lines.index(next(line for line in lines if line.startswith("kaiming ")))
    assert "completed" in lines[first] and lines[first + 1].startswith("    ")
    assert "train_subset=640" in lines[first + 1]


def test_the_progress_line_leaves_out_diverged_members_and_time_once_done() -> None:
    event = {"test_error": [0.05, 0.9], "loss": [0.2, 7325.0], "diverged": [None, 2]}
    assert measured(event) == "loss 0.2000, test err 5.00%, 1 of 2 diverged at step 2"
    assert measured({"test_error": [0.9], "diverged": [2]}) == "diverged at step 2"
    shown = io.StringIO()
    on_event = LineProgress(Console(file=shown, width=200)).factory("kaiming", 100)
    on_event({"kind": "start", "test_error": [0.9], "diverged": [None]})
    for _ in range(10):
        on_event({"kind": "step"})
    on_event({"kind": "done", "diverged": [3]})
    last = shown.getvalue().splitlines()[-1]
    assert "step 10/100 (10%), stopped: diverged at step 3" in last and "left" not in last, last
    on_event = LineProgress(Console(file=shown, width=200)).factory("sweep", 100)
    on_event({"kind": "done", "diverged": [None, 3]})  # one member trained on to the end
    assert "done, 1 of 2 diverged at step 3" in shown.getvalue().splitlines()[-1]


def test_the_progress_bar_says_where_a_run_whose_every_member_diverged_stopped() -> None:
    shown = io.StringIO()
    console = Console(file=shown, width=100, force_terminal=True, color_system=None)
    with RichProgress(console) as progress:
        on_event = progress.factory("sweep-c ×3", 2000)
        on_event({"kind": "start", "test_error": [0.9] * 3, "diverged": [None] * 3})
        for _ in range(2):
            on_event({"kind": "step"})
        on_event({"kind": "done", "diverged": [2, 2, 2]})
        progress.progress.refresh()
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.getvalue()).splitlines()[-1]
    assert "stopped: all 3 diverged at step 2" in last and "left" not in last, last
    assert re.search(r" 0% \d:\d\d ", last), last  # 2 of 2000 steps: not a full bar


def test_the_progress_bar_keeps_its_times_at_80_columns() -> None:
    shown = io.StringIO()
    console = Console(file=shown, width=80, force_terminal=True, color_system=None)
    with RichProgress(console) as progress:
        on_event = progress.factory("sweep-c ×3", 2000)
        on_event({"kind": "start", "test_error": [0.9, 0.9, 0.9], "diverged": [None] * 3})
        on_event({"kind": "epoch", "epoch": 1, "test_error": [0.8865, 0.1290, 0.9],
                  "loss": [2.3, 0.4, 0.0], "diverged": [None, None, 2]})
        progress.progress.refresh()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.getvalue())
    lines = text.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("sweep-c ×3"))
    assert re.search(r"sweep-c ×3 .* \d+% \d:\d\d", lines[last]), lines[last]
    assert all(len(line) <= 80 for line in lines), lines
    shown_status = " ".join(line.strip() for line in lines[last:])
    assert "1 of 3 diverged" in shown_status and "12.90%–88.65%" in shown_status, lines
