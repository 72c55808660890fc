"""Hostile input, generated (issue 12): whatever a config file, a --set string or a damaged
run directory holds, initlab answers with exit 2 and one line per problem, or succeeds --
never a traceback, never a lost file."""

from __future__ import annotations

import hashlib
import json
import shutil
import string
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from initlab import config
from initlab.cli import app

FUZZ = examples(60)  # the same 60 under `make test`, fresh ones under `make fuzz`
KEYS = sorted(config._FIELDS) + ["sweep", "model", "train", "nope", "init.cc"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=20), st.sampled_from(["on", "off", "010", "1:30", "1e-3",
                                                           "kaiming", "batch", "~x", ".inf"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12)
documents = st.dictionaries(st.sampled_from(KEYS + ["name"]), values, max_size=6)


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def clean_refusal_or_success(result: Result, source: str) -> None:
    """Exit 0, or exit 2 with every line a message about ``source``; never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}"
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert lines and all(source in line for line in lines), result.output


# --------------------------------------------------------------------------- config files


@FUZZ
@given(document=documents)
def test_any_yaml_document_is_valid_or_refused_line_by_line(tmp_path_factory, document) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    clean_refusal_or_success(cli("validate", path), str(path))


@FUZZ
@given(text=st.text(alphabet=string.printable + "äσ\x00\x7f", max_size=300))
def test_any_text_as_a_config_file_is_refused_or_valid(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    clean_refusal_or_success(cli("validate", path), str(path))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_a_config_file_are_refused_or_valid(tmp_path_factory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(raw)
    clean_refusal_or_success(cli("validate", path), str(path))


@FUZZ
@given(override=st.one_of(
    st.text(max_size=60),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=30))))
def test_any_set_string_is_applied_or_refused(tmp_path_factory, override: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text("name: c\n")
    clean_refusal_or_success(cli("validate", path, "--set", override), str(path))


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """C1: nine levels took 64 s and 3.1 GB to print 'expected a string'."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: *a9\n")
    start = time.monotonic()
    result = cli("validate", path)
    assert time.monotonic() - start < 10
    assert result.exit_code == 2 and "aliases expand to more than" in result.output


@pytest.mark.parametrize(("make", "message"), [
    ("fifo", "is not a regular file"), ("dev-zero", "is not a regular file"),
    ("big", "a config is at most"), ("loop", "cannot read: Too many levels of symbolic links"),
    ("dir", "is a directory")])
def test_a_config_that_is_not_a_small_regular_file_is_refused(tmp_path: Path, make: str,
                                                              message: str) -> None:
    """C10: /dev/zero ran out of memory, a FIFO hung; M10: a symlink loop said 'missing'."""
    import os

    path = tmp_path / "c.yaml"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dev-zero":
        path = Path("/dev/zero")
    elif make == "big":
        path.write_text("name: c\n" + "# padding\n" * 120_000)
    elif make == "loop":
        path.symlink_to(tmp_path / "c2.yaml")
        (tmp_path / "c2.yaml").symlink_to(path)
    else:
        path.mkdir()
    result = cli("validate", path)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(("text", "message"), [
    ("train:\n  cuda_graph: off\n", None),  # M1: YAML 1.1 made it false
    ("model:\n  depth: 010\n", "010 has a leading zero"),  # M9: silently 8
    ("train:\n  epochs: 1:30\n", "expected an integer, got '1:30'"),  # M9: silently 90
    ("model:\n  bias: yes\n", "expected true or false, got 'yes'"),
    ("model:\n  norm: batch\ntrain:\n  batch_size: 1\n", "must be at least 2 for norm: batch"),
    ("model:\n  norm: batch\nlog:\n  probe_size: 1\n", "must be at least 2 for norm: batch"),
    ("model:\n  width: 100000000000\n", "must be in 1..1,000,000"),  # C2
    ("name: " + "n" * 1_000_000 + "\n", "must be at most 200 characters"),  # M11
])
def test_yaml_means_what_it_says(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = cli("validate", path)
    if message is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output) < 400  # M11: a 1 MB value is never echoed in full


def test_a_huge_sweep_is_refused_before_it_expands(tmp_path: Path) -> None:
    """C3/C11: 10,000 members made 10,001 directories, then a 15.7 GB allocation."""
    values = ", ".join(str(i) for i in range(1, 1001))
    path = tmp_path / "c.yaml"
    path.write_text(f"sweep:\n  train.seed: [{values}]\n  init.c: [{values}]\n")
    start = time.monotonic()
    result = cli("validate", path)
    assert time.monotonic() - start < 10
    assert result.exit_code == 2 and "expands to 1,000,000 members, more than" in result.output


def test_a_sweep_of_100000_members_validates_in_seconds(tmp_path: Path) -> None:
    """C11: 224 s (a quadratic duplicate-name check, and the file analysed twice)."""
    cs = ", ".join(str(1 + i / 1000) for i in range(1000))
    seeds = ", ".join(str(i) for i in range(100))
    path = tmp_path / "big.yaml"
    path.write_text(f"name: big\nsweep:\n  init.c: [{cs}]\n  train.seed: [{seeds}]\n")
    start = time.monotonic()
    experiment = config.load_experiment(path)
    assert time.monotonic() - start < 20  # about 3 s on this project's 2-core machine
    assert len(experiment.members) == 100_000
    # members built the fast way equal members built one by one
    for member in experiment.members[::9_973]:
        assert member.config == config._build({"name": "big", **member.overrides})


def test_model_memory_is_refused_before_any_directory(tmp_path: Path, mnist_env) -> None:
    """C2: width 20000 gave a RuntimeError traceback, leaving a directory with config.yaml."""
    path = tmp_path / "c.yaml"
    path.write_text("name: wide\nmodel:\n  width: 200000\n")
    result = cli("run", path, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "more than the" in result.output, result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- run directories


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, mnist_env) -> Path:
    """A tiny run stopped by SIGINT after its first checkpoint."""
    from conftest import sigint_after

    from initlab.config import load_experiment
    from initlab.errors import RunInterrupted
    from initlab.experiment import run_experiment

    tmp = tmp_path_factory.mktemp("hostile")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"depth": 2, "width": 8},
        "data": {"train_subset": 200, "test_subset": 50},
        "train": {"batch_size": 20, "epochs": 2, "device": "cpu"},
        "log": {"every": 3, "checkpoint_every": 4, "probe_size": 16}}))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(RunInterrupted) as stop:
            run_experiment(load_experiment(path), tmp / "runs", progress=sigint_after(6))
    finally:
        torch.set_num_threads(before)
    return stop.value.path


def files(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*")) if p.is_file()}


def damage(raw: bytes, data) -> bytes:
    """One of the ways a file gets damaged: truncated, a flipped byte, garbage appended,
    replaced entirely."""
    how = data.draw(st.sampled_from(["truncate", "flip", "append", "replace", "empty"]))
    if how == "truncate":
        return raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))]
    if how == "flip" and raw:
        at = data.draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
    if how == "append":
        return raw + data.draw(st.binary(max_size=50))
    if how == "empty":
        return b""
    return data.draw(st.binary(max_size=200))


@examples(40)
@given(data=st.data())
def test_a_damaged_run_resumes_or_is_refused_and_kept(interrupted: Path, tmp_path_factory,
                                                      data) -> None:
    run = Path(shutil.copytree(interrupted, tmp_path_factory.mktemp("damaged") / "tiny"))
    name = data.draw(st.sampled_from(["stats.jsonl", "summary.json", "config.yaml",
                                      "checkpoint.pt", "checkpoint.prev.pt"]))
    target = run / name
    if target.exists():
        target.write_bytes(damage(target.read_bytes(), data))
    before = files(run)
    result = cli("run", "--resume", run)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{name}: {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert files(run) == before  # refused: nothing changed
    else:  # it resumed: every record the damaged run had is still there
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed"
