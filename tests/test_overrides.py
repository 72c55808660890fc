"""The overrides people already type (issue 23): Hydra's ``key=value`` beside ``--set``, a sweep
from the command line, ``initlab config NAME``, one line for a mistyped option; and the help
text a newcomer reads (no Python types, extras intact, --version)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from initlab import __version__, config
from initlab.cli import app
from initlab.overrides import command_line_sweep, mistyped_option, split_arguments, split_values

runner = CliRunner()
# The initial network only (no training step): a run in about a second.
MEASURE_ONLY = ["train.epochs=0", "data.test_subset=200", "log.probe_size=64", "--threads", "1"]


def test_hydra_assignments_are_overrides_beside_the_config() -> None:
    assert split_arguments(["kaiming", "init.c=3", "train.epochs=1"]) == \
        ("kaiming", ["init.c=3", "train.epochs=1"])
    assert split_arguments(["init.c=3", "my/run=1.yaml"]) == ("my/run=1.yaml", ["init.c=3"])
    assert split_values("1,2,[3, 4],'a,b'") == ["1", "2", "[3, 4]", "'a,b'"]
    plain, swept = command_line_sweep(["init.c=1,2", "train.lr=0.1"], sweep=True)
    assert plain == ["train.lr=0.1"] and swept == {"init.c": ["1", "2"]}
    assert command_line_sweep(["init.c=1,2"], sweep=False) == (["init.c=1,2"], {})


def test_run_with_key_value_trains_that_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "kaiming", "init.c=3", *MEASURE_ONLY,
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((tmp_path / "kaiming" / "config.yaml").read_text())
    assert written["init"]["c"] == 3.0 and written["train"]["epochs"] == 0


def test_a_sweep_from_the_command_line_names_members_as_a_file_would(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "kaiming", "init.c=1,3", "-m", *MEASURE_ONLY,
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    members = sorted(p.name for p in (tmp_path / "kaiming").iterdir() if p.is_dir())
    assert members == ["c=1.0", "c=3.0"]
    for member, c in (("c=1.0", 1.0), ("c=3.0", 3.0)):
        written = yaml.safe_load((tmp_path / "kaiming" / member / "config.yaml").read_text())
        assert written["init"]["c"] == c


def test_sweep_problems_name_the_users_file_and_a_list_without_sweep_says_how() -> None:
    result = runner.invoke(app, ["run", "sweep-c", "init.c=1,x", "-m"])
    assert result.exit_code == 2
    assert "sweep-c.yaml: sweep.init.c[1]: expected a number" in result.output
    assert "initlab-sweep-" not in result.output
    result = runner.invoke(app, ["run", "kaiming", "init.c=1,2"])
    assert result.exit_code == 2 and "--sweep or -m" in result.output


@pytest.mark.parametrize("args, expected", [
    (["kaiming", "--init.c", "3"], "initlab run CONFIG init.c=3 (or --set init.c=3)"),
    (["kaiming", "--train.lr=0.1"], "initlab run CONFIG train.lr=0.1 (or --set train.lr=0.1)"),
    (["--config", "kaiming.yaml"], "the config is the first argument, e.g. initlab run "
                                   "kaiming.yaml"),
])
def test_a_mistyped_option_suggests_the_right_form(args: list[str], expected: str) -> None:
    assert expected in (mistyped_option(args) or "")
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


@pytest.mark.parametrize("name", ["kaiming", "sweep-c", None])
def test_initlab_config_prints_a_config_that_loads_as_the_starter(name: str | None,
                                                                  tmp_path: Path) -> None:
    """Saved as my.yaml, the printed config reads back to the starter's values, and its run
    is named after the file (issue 34: not runs/kaiming-2)."""
    result = runner.invoke(app, ["config", *([name] if name else [])])
    assert result.exit_code == 0, result.output
    for key, doc in config.field_docs().items():
        assert f"{key.rpartition('.')[2]}:" in result.output, key
        assert doc.split()[0] in result.output, key
    assert not [line for line in result.stdout.splitlines() if line.startswith("name:")]
    copy = tmp_path / "my.yaml"
    copy.write_text(result.stdout)
    printed = config.load_experiment(copy)
    assert printed.base.name == "my"
    if name is None:
        assert config.config_differences(config.RunConfig(name="my"), printed.base) == []
        return
    starter = config.load_experiment(name)
    assert printed.sweep == starter.sweep
    assert printed.base == dataclasses.replace(starter.base, name="my")
    assert [m.config for m in printed.members] == [dataclasses.replace(m.config, name="my")
                                                   for m in starter.members]


def test_help_is_plain_text_with_its_extras_and_a_version() -> None:
    result = runner.invoke(app, ["run", "--help"], terminal_width=80)
    assert "initlab[tensorboard]" in result.output
    assert "<" not in result.output and "list[" not in result.output, result.output
    assert "KEY=VALUE" in result.output and "--sweep" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"initlab {__version__}"
    assert "--install-completion" in runner.invoke(app, ["--help"]).output
