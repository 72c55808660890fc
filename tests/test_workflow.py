"""A student's loop end to end on real MNIST (issue 14): run, `initlab plot` with no argument,
run again, list, compare; what summary.json records; progress when output is not a terminal;
the plot command's output paths and the options' checks (issue 12's C9, M3, M5, M7, M8)."""

from __future__ import annotations

import datetime
import json
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from initlab import cli
from initlab.cli import app

pytestmark = pytest.mark.usefixtures("mnist_env")

runner = CliRunner()

# About a second of training each.
TINY = {
    "name": "tiny",
    "model": {"depth": 6, "width": 32},
    "data": {"train_subset": 1280, "test_subset": 500},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.02, "device": "cpu"},
    "log": {"every": 5, "probe_size": 64},
}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_run_then_plot_without_arguments_draws_the_newest(in_tmp: Path) -> None:
    cfg = write_config(in_tmp / "tiny.yaml", TINY)
    first = runner.invoke(app, ["run", str(cfg), "--threads", "1"])
    assert first.exit_code == 0, first.output
    assert lines(first.output)[-1] == "plot it: initlab plot runs/tiny"
    # Piped output (CliRunner is not a terminal): plain progress lines with the time left.
    assert re.search(r"tiny: step 20/40 \(50%\), epoch 1, loss [0-9.]+, test err [0-9.]+%, "
                     r"[0-9:]+ so far, about [0-9:]+ left", first.output), first.output
    assert "2 epochs, 40 steps" in first.output
    second = runner.invoke(app, ["run", str(cfg), "--set", "train.epochs=1"])
    assert second.exit_code == 0, second.output
    assert "1 epoch, 20 steps" in second.output  # not "1 epochs"
    assert lines(second.output)[-1] == "plot it: initlab plot runs/tiny-2"
    plotted = runner.invoke(app, ["plot"])
    assert plotted.exit_code == 0, plotted.output
    assert lines(plotted.output)[0] == ("plotting runs/tiny-2 (the newest of 2 in runs/; "
                                        "`initlab ls` lists them)")
    assert lines(plotted.output)[-1] == ("wrote runs/tiny-2/layers.png and "
                                         "runs/tiny-2/training.png")
    for name in ("layers.png", "training.png"):
        assert (in_tmp / "runs" / "tiny-2" / name).stat().st_size > 20_000
    # What summary.json records beyond the numbers.
    summary = json.loads((in_tmp / "runs" / "tiny" / "summary.json").read_text())
    assert summary["threads"] == 1
    assert summary["torch_version"] == torch.__version__
    assert summary["initlab_version"] and summary["python_version"] and summary["host"]
    started = datetime.datetime.fromisoformat(summary["started_at"])
    assert abs((datetime.datetime.now(datetime.UTC) - started).total_seconds()) < 600
    if (Path(cli.__file__).resolve().parent.parent / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", summary["git_commit"])
    # ls: each run with its status, epochs, test error and what differs from the defaults.
    listed = runner.invoke(app, ["ls"])
    assert listed.exit_code == 0, listed.output
    # At most 100 columns: a run's line, then an indented line of its differences.
    shown = listed.output.splitlines()
    assert all(len(line.rstrip()) <= 100 for line in shown), shown
    rows = [i for i, line in enumerate(shown) if line.startswith("tiny")]
    assert len(rows) == 2
    assert "completed" in shown[rows[0]] and re.search(r"\d+\.\d\d%", shown[rows[0]])
    assert "depth=6" in shown[rows[0] + 1] and "epochs=1" in shown[rows[1] + 1]
    # compare: the config difference, both summaries, one figure.
    compared = runner.invoke(app, ["compare", "runs/tiny", "runs/tiny-2"])
    assert compared.exit_code == 0, compared.output
    assert re.search(r"train\.epochs\s*│\s*2\s*│\s*1", compared.output), compared.output
    assert "final test error" in compared.output
    assert (in_tmp / "runs" / "compare.png").stat().st_size > 20_000  # beside the runs
    assert not (in_tmp / "compare.png").exists()


def test_plot_with_no_runs_says_how_to_get_one(in_tmp: Path) -> None:
    result = runner.invoke(app, ["plot"])
    assert result.exit_code == 2
    assert lines(result.output) == ["error: no runs in ./runs: train one first (initlab run "
                                    "configs/kaiming.yaml), or name a run directory: initlab "
                                    "plot DIR"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep one of whose members diverges before its first step (c = 1e6 overflows)."""
    tmp = tmp_path_factory.mktemp("sweep")
    config = {**TINY, "name": "sweep", "model": {"depth": 20, "width": 16},
              "train": {**TINY["train"], "epochs": 1}, "sweep": {"init.c": [2.0, 1e6]}}
    result = runner.invoke(app, ["run", str(write_config(tmp / "s.yaml", config)), "--out",
                                 str(tmp / "runs")])
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "sweep"


def test_plot_draws_a_sweep_whose_member_diverged_at_step_0(sweep_dir: Path,
                                                              tmp_path: Path) -> None:
    """M3: the member without records is named and skipped; the others are drawn."""
    out = tmp_path / "s.png"
    result = runner.invoke(app, ["plot", str(sweep_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"skipped {sweep_dir / 'c=1000000.0'}: no records (diverged at step 0)" \
        in result.output
    assert out.stat().st_size > 20_000 and (tmp_path / "s-training.png").exists()


def test_plot_output_paths(sweep_dir: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    # C9: a name matplotlib cannot write is refused before any work, creating nothing.
    bad = runner.invoke(app, ["plot", str(sweep_dir), "--out", str(tmp_path / "new" / "x.txt")])
    assert bad.exit_code == 2
    assert lines(bad.output) == [f"error: --out {tmp_path / 'new' / 'x.txt'}: expected a file "
                                 f"name ending in .png, .svg, .pdf, or a directory"]
    assert not (tmp_path / "new").exists()
    # M5: a directory gets the two figures inside it, and the message names them.
    folder = tmp_path / "figs"
    folder.mkdir()
    result = runner.invoke(app, ["plot", str(sweep_dir), "--out", str(folder)])
    assert result.exit_code == 0, result.output
    assert lines(result.output)[-1] == (f"wrote {folder / 'layers.png'} and "
                                        f"{folder / 'training.png'}")
    assert not (tmp_path / "figs.png").exists()
    # M7: '~' as the shell would expand it (quoted, it reaches initlab as is).
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["plot", str(sweep_dir), "--out", "~/x.png"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "x.png").exists() and not Path("~").exists()
    result = runner.invoke(app, ["plot", str(sweep_dir), "--out", "~no-such-user-0/x.png"])
    assert result.exit_code == 2
    assert lines(result.output) == ["error: --out ~no-such-user-0/x.png: no user "
                                    "'no-such-user-0' to expand ~no-such-user-0 for"]


def test_metric_loss_is_drawn(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "loss.png"
    result = runner.invoke(app, ["plot", str(sweep_dir), "--metric", "loss", "--metric",
                                 "update_ratio", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000
    unknown = runner.invoke(app, ["plot", str(sweep_dir), "--metric", "speed"])
    assert unknown.exit_code == 2 and "--metric: unknown speed; choose from" in unknown.output


def test_split_is_checked_without_nproc_and_long_values_are_cut(tmp_path: Path) -> None:
    """M8, and the bounded echo: a 5,000-character value is not printed in full."""
    cfg = write_config(tmp_path / "t.yaml", TINY)
    result = runner.invoke(app, ["run", str(cfg), "--split", "bogus", "--out",
                                 str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert lines(result.output) == ["error: --split must be one of auto, batches, members, "
                                    "got 'bogus'"]
    result = runner.invoke(app, ["run", str(cfg), "--split", "y" * 5000])
    assert result.exit_code == 2 and len(result.output) < 200, len(result.output)
    assert not (tmp_path / "runs").exists()
    # M7 for run: '~user' of no user is one line before anything is created.
    result = runner.invoke(app, ["run", str(cfg), "--out", "~no-such-user-0/runs"])
    assert result.exit_code == 2
    assert lines(result.output) == ["error: --out ~no-such-user-0/runs: no user "
                                    "'no-such-user-0' to expand ~no-such-user-0 for"]


def test_library_warnings_are_not_shown_but_initlab_warnings_are(
        capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        cli.show_warnings_plainly()
        warnings.warn_explicit("DDP noise", UserWarning, "distributed.py", 1,
                               module="torch.nn.parallel.distributed")
        warnings.warn_explicit("skipped a torn last line", UserWarning, "runs.py", 1,
                               module="initlab.runs")
    err = capsys.readouterr().err
    assert "DDP noise" not in err
    assert err.strip().splitlines() == ["warning: skipped a torn last line"]


def test_tensorboard_option_needs_the_package(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = runner.invoke(app, ["run", str(write_config(tmp_path / "t.yaml", TINY)),
                                 "--tensorboard", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert lines(result.output) == ["error: --tensorboard needs the tensorboard package: pip "
                                    "install 'initlab[tensorboard]' (or pip install "
                                    "tensorboard)"]
    assert not (tmp_path / "runs").exists()
    assert os.environ.get("INITLAB_DATA")  # the session's MNIST, untouched
