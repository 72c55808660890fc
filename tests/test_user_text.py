"""Issue 32: user text is text, and a record is checked before it is drawn. Names, config values
and summary fields are never read as console markup or emoji codes, control characters are
escaped in every command's output; the gaps of the depth check, a fraction over 100% and
finite values too large for an axis are one line or a figure, never a traceback. Run
directories are written by hand (tests/test_run_reading.py's ``make_run``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_run_reading import DEPTH, make_run, one_line_refusal, record, replace
from typer.testing import CliRunner

from initlab.cli import app

runner = CliRunner()
HOSTILE = "x[/red] :x: [bold]b[/bold] \x1b[31mred\x1b[0m\rback"


def summary_with(run_dir: Path, **fields: object) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    replace(run_dir / "summary.json", json.dumps({**summary, **fields}))


@pytest.mark.parametrize("command", ["ls", "compare"])
def test_markup_and_emoji_codes_in_summary_fields_are_text(tmp_path: Path,
                                                           command: str) -> None:
    """`ls`/`compare` on console markup in summary.json fields ("x[/red]") was a traceback."""
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        summary_with(make_run(runs / name), torch_version=HOSTILE, device=HOSTILE,
                     status="x[/red]")
    args = ["ls", str(runs)] if command == "ls" else \
        ["compare", str(runs / "a"), str(runs / "b"), "--out", str(tmp_path / "c.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "x[/red]" in result.output and "❌" not in result.output
    assert "\x1b" not in result.output and "\r" not in result.output


def test_run_names_are_never_markup_in_ls(tmp_path: Path) -> None:
    """`ls` read run names as markup ([bold] vanished, [/x] was a traceback)."""
    runs = tmp_path / "runs"
    for name in ("[bold]loud", "a[red]b", ":x:"):
        make_run(runs / name)
    result = runner.invoke(app, ["ls", str(runs)])
    assert result.exit_code == 0, result.output
    for name in ("[bold]loud", "a[red]b", ":x:"):
        assert name in result.output
    assert "❌" not in result.output


def test_emoji_codes_in_an_error_stay_as_typed(tmp_path: Path) -> None:
    """An error quoting user text turned `:x:` into ❌."""
    result = runner.invoke(app, ["run", str(tmp_path / ":x: nope.yaml")])
    assert result.exit_code == 2
    assert ":x: nope.yaml" in result.output and "❌" not in result.output


@pytest.mark.parametrize("command", ["diagnose", "plot", "export"])
def test_control_characters_in_names_are_escaped(tmp_path: Path, command: str) -> None:
    """`diagnose`/`plot`/`export` printed names with newlines and escape sequences raw."""
    run_dir = make_run(tmp_path / "runs" / "a\nb\x1b[2Jc")
    args = {"diagnose": ["diagnose", str(run_dir)],
            "plot": ["plot", str(run_dir)],
            "export": ["export", str(run_dir), "--out", str(tmp_path / "x")]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "a\nb" not in result.output and "a\\nb\\x1b[2Jc" in result.output


@pytest.mark.parametrize("case", ["config one deeper", "one statistic shorter", "empty lists"])
@pytest.mark.parametrize("command", ["diagnose", "plot", "export"])
def test_the_depth_checks_gaps_are_one_line(tmp_path: Path, case: str, command: str) -> None:
    """The depth check's gaps were tracebacks in `diagnose`/`plot`/`export`: a config one layer
    deeper than the records, one statistic with fewer layers, empty per-layer lists."""
    records = [record(0, "init"), record(5, "train"), record(10, "final")]
    for rec in records:
        for key, value in rec.items():
            if isinstance(value, list) and (case == "empty lists" or key == "act_norm"):
                rec[key] = [] if case == "empty lists" else \
                    value[:-1] if case == "one statistic shorter" else value
    run_dir = make_run(tmp_path / "r", records=records)
    if case == "config one deeper":
        text = (run_dir / "config.yaml").read_text()
        replace(run_dir / "config.yaml", text.replace(f"depth: {DEPTH}", f"depth: {DEPTH + 1}"))
    args = {"diagnose": ["diagnose", str(run_dir)],
            "plot": ["plot", str(run_dir), "--out", str(tmp_path / "f.png")],
            "export": ["export", str(run_dir), "--out", str(tmp_path / "x")]}[command]
    needles = ("config.yaml: model.depth says", "the config and the records do not match")
    if command == "diagnose":  # a run it cannot read is a finding of its own (issue 31)
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "the run cannot be read" in result.output
        assert all(needle in result.output for needle in needles), result.output
        return
    one_line_refusal(args, *needles)


def test_finite_values_too_large_for_an_axis_are_drawn(tmp_path: Path) -> None:
    """`plot` of finite huge values (1e308) was matplotlib's OverflowError."""
    records = [record(0, "init"), record(5, "train"), record(10, "final")]
    for rec in records:
        rec["act_norm"] = [1e308, -1e308, 1e300, 1.0]
        rec["loss"] = 1e308
    run_dir = make_run(tmp_path / "r", records=records)
    result = runner.invoke(app, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "layers.png").stat().st_size and (run_dir / "training.png").stat().st_size


def test_a_fraction_over_one_is_refused_not_500_percent(tmp_path: Path) -> None:
    """diagnose said "500% of the hidden units" of a record holding dead_fraction 5.0."""
    records = [record(0, "init"), record(10, "final")]
    records[1]["dead_fraction"] = [5.0] * (DEPTH - 1)
    run_dir = make_run(tmp_path / "r", records=records)
    result = runner.invoke(app, ["diagnose", str(run_dir)])
    assert "the run cannot be read" in result.output and "500%" not in result.output
    assert 'stats.jsonl: line 2: "dead_fraction" must hold values in [0, 1], got 5.0' \
        in result.output, result.output
    one_line_refusal(["plot", str(run_dir)], '"dead_fraction" must hold values in [0, 1]')


def test_a_diverged_run_without_its_step_says_so(tmp_path: Path) -> None:
    """"diverged at step None" in `ls`, `compare`, `export`."""
    from initlab.wording import how_it_ended

    assert how_it_ended({"status": "diverged", "diverged_step": None}) == \
        "diverged (its summary does not say at which step)"
    run_dir = make_run(tmp_path / "runs" / "d", status="diverged", diverged_step=None)
    for args in (["ls", str(tmp_path / "runs")],
                 ["export", str(run_dir), "--out", str(tmp_path / "x")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "None" not in result.output, result.output


def test_names_are_never_mathtext_in_figures(tmp_path: Path) -> None:
    """A run named `a$\\foo{$` made `plot` and `compare` a ParseFatalException (matplotlib read
    the name as mathtext)."""
    runs = tmp_path / "runs"
    hostile, plain = make_run(runs / "a$\\foo{$"), make_run(runs / "b")
    result = runner.invoke(app, ["plot", str(hostile)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", str(hostile), str(plain), "--out",
                                 str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
