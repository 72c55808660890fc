"""The overrides people already type (issue 23): Hydra's ``key=value`` beside ``--set``, a sweep
from the command line, ``initlab config NAME``, one line for a mistyped option; and the help
text a newcomer reads (no Python types, extras intact, --version)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import examples
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from initlab import __version__, config
from initlab.cli import app
from initlab.overrides import (
    command_line_sweep,
    mistyped_option,
    split_arguments,
    split_values,
    starter_text,
)

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
    # issue 32: the command line's value is named as such, not blamed on the file
    assert "sweep-c.yaml (command line init.c=1,x -m): sweep.init.c[1]: expected a number" \
        in result.output
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


# --- Issue 32: the command-line sweep reads as plain `run` does; YAML 1.2 both ways -------------


@pytest.mark.parametrize("make", ["FIFO", "device", "too big"])
def test_a_command_line_sweep_reads_its_config_through_the_bounded_reader(
        tmp_path: Path, make: str) -> None:
    """Issue 32: `initlab run FIFO key=a,b -m` hung (no regular-file or size check on the
    sweep's path); /dev/zero ate memory; a 1.2 MB file was accepted."""
    import os

    path = tmp_path / "c.yaml"
    if make == "FIFO":
        os.mkfifo(path)
    elif make == "device":
        path = Path("/dev/zero")
    else:
        path.write_text("name: big\n" + "#" * 1_200_000 + "\n")
    for command in ("run", "validate"):
        result = runner.invoke(app, [command, str(path), "init.c=1,2", "-m"])
        assert result.exit_code == 2, result.output
        expected = "is 1,200,0" if make == "too big" else "is not a regular file"
        assert expected in result.output and len(result.output.splitlines()) == 1


@pytest.mark.parametrize("name", ["1e3", "0o17", "0x1F", "true", "null", "1_000", ".inf"])
def test_a_quoted_name_that_looks_like_a_number_survives_a_command_line_sweep(
        tmp_path: Path, name: str) -> None:
    """Issue 32: -m wrote the merged config with YAML 1.1's dumper: name: "1e3" read back as a
    number and a valid config was refused."""
    path = tmp_path / "q.yaml"
    path.write_text(f'name: "{name}"\ntrain: {{epochs: 0}}\n')
    experiment = config.load_experiment(path, [], {"init.c": ["1", "2"]})
    assert experiment.name == name and len(experiment.members) == 2


def test_a_command_line_sweep_never_replaces_an_invalid_sweep_section(tmp_path: Path) -> None:
    """Issue 32: -m quietly replaced a `sweep:` that is not a mapping."""
    path = tmp_path / "s.yaml"
    path.write_text("sweep: 5\n")
    result = runner.invoke(app, ["validate", str(path), "init.c=1,2", "-m"])
    assert result.exit_code == 2 and "s.yaml: sweep: expected a mapping" in result.output


def test_validate_takes_the_forms_run_takes(tmp_path: Path) -> None:
    """Issue 32: `validate` knew only --set, not KEY=VALUE or a command-line sweep."""
    result = runner.invoke(app, ["validate", "kaiming", "init.c=1,2", "-m"])
    assert result.exit_code == 0 and "valid (2 members)" in result.output, result.output
    result = runner.invoke(app, ["validate", "kaiming", "train.lr=-1"])
    assert result.exit_code == 2 and "kaiming.yaml (--set train.lr=-1): train.lr" \
        in result.output, result.output


def test_a_config_named_like_an_assignment_is_the_config(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 32: a config named `k=v.yml` was taken for an override."""
    monkeypatch.chdir(tmp_path)
    Path("k=v.yml").write_text("train: {epochs: 0}\n")
    Path("a=b").write_text("train: {epochs: 0}\n")
    assert split_arguments(["k=v.yml", "init.c=3"]) == ("k=v.yml", ["init.c=3"])
    assert split_arguments(["a=b"]) == ("a=b", [])  # a file that exists
    assert split_arguments(["kaiming", "data.root=x.yml"]) == ("kaiming", ["data.root=x.yml"])
    result = runner.invoke(app, ["validate", "k=v.yml"])
    assert result.exit_code == 2 and "name: must be" in result.output  # read as the config


_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=False) | st.text(max_size=12)
            | st.sampled_from(["1e3", "0o17", "0x1F", "010", "yes", "off", "~", "1:30", ".5",
                               "+.inf", "-", "", " x", "[a]", "#c", "a: b", "2020-13-45"]))
_DATA = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
                     max_leaves=12)


@examples(200)
@given(_DATA, st.sampled_from([False, True, None]))
# Found by `make fuzz`: a NEL (U+0085) written as it is read back as a line break.
@example(data={"\x85": None}, flow=False)
@example(data=["a\u2028b", "\x85"], flow=True)
def test_every_yaml_initlab_writes_reads_back_to_the_same_values(data: object,
                                                                flow: bool | None) -> None:
    """Issue 32: every YAML initlab writes is YAML 1.2 (config.yaml, `-m`, `initlab config`,
    initlab.watch) and reads back, in the dialect it is read in, to the same values."""
    assert config.load_yaml(config.yaml_text(data, flow=flow)) == data


@examples(30)
@given(st.sampled_from(["1e3", "0o17", "0x1F", "true", "null", "1_000", "010", "x.1", "off"]),
       st.sampled_from(["kaiming", "sweep-c", None]))
def test_initlab_config_of_a_file_reads_back(tmp_path_factory: pytest.TempPathFactory,
                                             value: str, starter: str | None) -> None:
    """Issue 32: `initlab config NAME > f.yaml` did not always read back (a quoted string that
    looks like a number, here as data.root; the name is left unset, issue 34)."""
    folder = tmp_path_factory.mktemp("cfg")
    source = folder / "src.yaml"
    data = config.load_yaml((config.EXAMPLES_DIR / f"{starter}.yaml").read_text()) \
        if starter else {}
    data["data"] = {**(data.get("data") or {}), "root": value}
    source.write_text(config.yaml_text(data))
    copy = folder / "copy.yaml"
    copy.write_text(starter_text(str(source)))
    printed, original = config.load_experiment(copy), config.load_experiment(source)

    def values(experiment: config.Experiment) -> list[dict]:
        return [{**config.config_to_dict(m.config), "name": None} for m in experiment.members]

    assert printed.base.data.root == value
    assert values(printed) == values(original)
