"""Hostile input, generated (issues 12 and 20): whatever a config file, a --set string or a
damaged run directory holds, initlab answers with exit 2 and one line per problem, or succeeds
-- never a traceback, never a lost file. The examples are the same on every `make test` (the
``ci`` profile in conftest.py); `make fuzz` draws fresh ones, many more."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import string
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import examples
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from initlab import checkpoint, config
from initlab.cli import app
from initlab.runs import max_bytes

FUZZ = examples(60)  # the same 60 under `make test`, fresh ones under `make fuzz`
KEYS = sorted(config.FIELDS) + ["sweep", "model", "train", "nope", "init.cc"]
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
        assert member.config == config.build({"name": "big", **member.overrides})


def test_model_memory_is_refused_before_any_directory(tmp_path: Path, mnist_env) -> None:
    """C2: width 20000 gave a RuntimeError traceback, leaving a directory with config.yaml."""
    path = tmp_path / "c.yaml"
    path.write_text("name: wide\nmodel:\n  width: 200000\n")
    result = cli("run", path, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "more than the" in result.output, result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- run directories


def interrupted_run(tmp: Path, name: str, sweep: dict | None = None) -> Path:
    """A tiny run (or sweep) stopped by SIGINT after its first checkpoint, on one thread."""
    from conftest import sigint_after

    from initlab.config import load_experiment
    from initlab.errors import RunInterrupted
    from initlab.experiment import run_experiment

    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "model": {"depth": 2, "width": 8},
        "data": {"train_subset": 200, "test_subset": 50},
        "train": {"batch_size": 20, "epochs": 2, "device": "cpu"},
        "log": {"every": 3, "checkpoint_every": 4, "probe_size": 16},
        **({"sweep": sweep} if sweep else {})}))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(RunInterrupted) as stop:
            run_experiment(load_experiment(path), tmp / "runs", progress=sigint_after(6))
    finally:
        torch.set_num_threads(before)
    return stop.value.path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, mnist_env) -> Path:
    """A tiny run stopped by SIGINT after its first checkpoint."""
    return interrupted_run(tmp_path_factory.mktemp("hostile"), "tiny")


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
    records = (run / "stats.jsonl").read_bytes()
    kept = min(checkpoint.read_checkpoint(run / n)["stats_bytes"]  # what any resume keeps
               for n in ("checkpoint.pt", "checkpoint.prev.pt") if (run / n).exists())
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
    else:  # it resumed: every record the run had before its checkpoint is still there
        summary = json.loads((run / "summary.json").read_text())
        # A flipped bit inside a weight: its checksum finds it (issue 32), and resume continues
        # from checkpoint.prev.pt when that is whole (or refuses).
        assert summary["status"] in ("completed", "diverged"), summary
        if name != "stats.jsonl":
            assert (run / "stats.jsonl").read_bytes()[:kept] == records[:kept]


# --------------------------------------------------------------------------- issue 20
# Generated damage for every file of a run directory (links, FIFOs, directories, huge, deep,
# truncated, flipped, wrong types...) against every command and module that reads one. Each
# answers with success, or exit 2 (a UsageError) and one line; none writes outside the run,
# and a reader never changes it.

MEMBER = "c=1.0"
TARGETS = ("sweep.json", "config.yaml", "stats.jsonl", "summary.json", "checkpoint.pt",
           "checkpoint.prev.pt")
DAMAGES = ("link-out", "link-dev-zero", "dangling-link", "link-loop", "fifo", "directory",
           "huge", "deep", "truncate", "flip", "append", "empty", "binary", "wrong-type")
WRONG_VALUES: tuple[object, ...] = ("x", -1, 10**30, 1.5, None, True, [], {}, [[1]], "Infinity",
                                    1e308, "running", "../../elsewhere", 0)


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory: pytest.TempPathFactory, mnist_env) -> Path:
    """A two-member sweep stopped by SIGINT after its first checkpoints."""
    return interrupted_run(tmp_path_factory.mktemp("hostile-sweep"), "sweep",
                           {"init.c": [1.0, 2.0]})


def _replace_somewhere(value: object, rng: random.Random) -> object:
    """``value`` with one thing deep inside it (a value, or a key's value) replaced by a value
    of another type."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value, key=str))
        return {**value, key: _replace_somewhere(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        at = rng.randrange(len(value))
        return [*value[:at], _replace_somewhere(value[at], rng), *value[at + 1:]]
    return rng.choice(WRONG_VALUES)


def _wrong_type(target: str, raw: bytes, rng: random.Random, path: Path) -> bytes:
    if target.startswith("checkpoint"):
        state = torch.load(path.with_name(".orig-" + target), weights_only=True)
        buffer = __import__("io").BytesIO()
        torch.save(_replace_somewhere(state, rng), buffer)
        return buffer.getvalue()
    if target == "config.yaml":
        return yaml.safe_dump(_replace_somewhere(yaml.safe_load(raw), rng)).encode()
    if target == "stats.jsonl":
        lines = raw.decode().splitlines()
        at = rng.randrange(len(lines))
        lines[at] = json.dumps(_replace_somewhere(json.loads(lines[at]), rng))
        return ("\n".join(lines) + "\n").encode()
    return json.dumps(_replace_somewhere(json.loads(raw), rng)).encode()


def apply_damage(top: Path, target: str, how: str, rng: random.Random, outside: Path) -> None:
    """Damage one file of the sweep ``top`` (``sweep.json``, or a file of member MEMBER)."""
    path = top / target if target == "sweep.json" else top / MEMBER / target
    raw = path.read_bytes()
    if how == "wrong-type" and target.startswith("checkpoint"):
        path.rename(path.with_name(".orig-" + target))  # read back by torch.load below
        data = _wrong_type(target, raw, rng, path)
        path.with_name(".orig-" + target).unlink()
        path.write_bytes(data)
        return
    path.unlink()
    if how == "link-out":  # the same bytes, outside: a reader that follows it reads them
        outside.write_bytes(raw)
        path.symlink_to(outside)
    elif how == "link-dev-zero":
        path.symlink_to("/dev/zero")
    elif how == "dangling-link":
        path.symlink_to(top / "nowhere")
    elif how == "link-loop":
        path.symlink_to(path)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "directory":
        path.mkdir()
    elif how == "huge":  # sparse: past the bound without writing it
        path.write_bytes(raw)
        os.truncate(path, max_bytes(target) + 1)
    elif how == "deep":
        n = rng.choice([40, 2_000, 100_000])
        nest = ("[" * n + "]" * n).encode()
        path.write_bytes({"config.yaml": raw + b"\nextra: " + nest + b"\n",
                          "stats.jsonl": raw + nest + b"\n"}.get(target, nest))
    elif how == "truncate":
        path.write_bytes(raw[: rng.randrange(max(len(raw), 1))])
    elif how == "flip":
        at = rng.randrange(len(raw))
        path.write_bytes(raw[:at] + bytes([raw[at] ^ rng.randrange(1, 256)]) + raw[at + 1:])
    elif how == "append":
        path.write_bytes(raw + rng.randbytes(rng.randrange(1, 60)))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "binary":
        path.write_bytes(rng.randbytes(rng.randrange(1, 300)))
    else:
        path.write_bytes(_wrong_type(target, raw, rng, path))


def state_of(top: Path) -> dict[str, str]:
    """What is in ``top``, never reading through a link, a FIFO or a device."""
    seen = {}
    for folder, dirs, names in os.walk(top):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            info = path.lstat()
            if path.is_symlink():
                seen[str(path.relative_to(top))] = "link to " + os.readlink(path)
            elif path.is_file() and info.st_size > 64 << 20:  # a sparse "huge" file
                seen[str(path.relative_to(top))] = f"{info.st_size} bytes, {info.st_mtime_ns}"
            elif path.is_file():
                seen[str(path.relative_to(top))] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path.relative_to(top))] = f"mode {info.st_mode:o}"
    return seen


def damaged_copy(base: Path, root: Path, target: str, how: str, seed: int
                 ) -> tuple[Path, Path]:
    """A damaged copy of the sweep ``base`` under ``root`` and the file outside it."""
    top = Path(shutil.copytree(base, root / "runs" / "sweep"))
    outside = root / "outside.bin"
    outside.write_bytes(b"not the run's")
    apply_damage(top, target, how, random.Random(seed), outside)
    return top, outside


def one_line_or_success(result: Result, what: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{what}: {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code in (0, 2), f"{what}: {result.output}"
    assert "Traceback" not in result.output, what
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {result.output}"


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("target", TARGETS)
def test_every_reader_refuses_or_reads_a_damaged_file(interrupted_sweep: Path, tmp_path: Path,
                                                      target: str, how: str) -> None:
    """The readers without a figure or training (fast enough for every pair): load_runs, the
    table of `ls`, the CSV export, the resume plan, the figures' cache check and the
    distributed repair."""
    from initlab.browse import list_table
    from initlab.config import config_from_dict
    from initlab.distributed import mark_interrupted
    from initlab.errors import UsageError
    from initlab.export import export_runs
    from initlab.figures.cache import is_cached
    from initlab.resume import plan_resume
    from initlab.runs import load_runs

    top, outside = damaged_copy(interrupted_sweep, tmp_path, target, how, seed=len(how))
    before, outside_before = state_of(top), outside.read_bytes()
    what = f"{target} {how}"
    for name, read in (
            ("load_runs", lambda: load_runs(top)),
            ("ls", lambda: list_table(top.parent, lambda m: None)),
            ("export", lambda: export_runs(load_runs(top), "csv", tmp_path / "csv")),
            ("resume plan", lambda: plan_resume(top))):
        try:
            read()
        except UsageError as err:
            assert "\n" not in str(err) and str(top) in str(err), f"{what}, {name}: {err}"
        assert state_of(top) == before, f"{what}: {name} changed the run"
    cfg = config_from_dict(yaml.safe_load((interrupted_sweep / MEMBER / "config.yaml")
                                          .read_text()))
    assert is_cached(top / MEMBER, cfg) is False  # interrupted, or damaged: trained again
    mark_interrupted(top)
    after = state_of(top)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed <= {f"{MEMBER}/summary.json", "c=2.0/summary.json"}, (what, changed)
    assert outside.read_bytes() == outside_before


@examples(30)
@given(target=st.sampled_from(TARGETS), how=st.sampled_from(DAMAGES),
       command=st.sampled_from(["ls", "plot", "compare", "export", "resume"]),
       seed=st.integers(0, 2**32 - 1))
# Found by `make fuzz`: a list in config.yaml's varied key made plot's colours a TypeError;
# a list as model.activation made plot's choice of panels one too (seed 6317).
# Found by `make fuzz`: a string where stats.jsonl holds a per-layer list of numbers made plot
# a ValueError.
@example(target="config.yaml", how="wrong-type", command="plot", seed=109254510)
@example(target="stats.jsonl", how="wrong-type", command="plot", seed=109254510)
@example(target="config.yaml", how="wrong-type", command="plot", seed=6317)
# Found by `make fuzz`: summary.json as a directory let resume train, then fail to write it.
@example(target="summary.json", how="directory", command="resume", seed=0)
# Found by `make fuzz` (issue 32): null where other records hold a per-layer list made plot a
# TypeError ('NoneType' object is not iterable); a null list is a record without it.
@example(target="stats.jsonl", how="wrong-type", command="plot", seed=20028)
def test_every_command_refuses_or_reads_a_damaged_file(interrupted_sweep: Path,
                                                       tmp_path_factory, target: str, how: str,
                                                       command: str, seed: int) -> None:
    """Each command through the CLI; resume changes nothing when it refuses and loses no
    record when it continues."""
    root = tmp_path_factory.mktemp("damage")
    top, outside = damaged_copy(interrupted_sweep, root, target, how, seed)
    before, outside_before = state_of(top), outside.read_bytes()
    args = {"ls": ["ls", top.parent],
            "plot": ["plot", top, "--out", root / "figure.png"],
            "compare": ["compare", top, "--out", root / "compare.png"],
            "export": ["export", top, "--out", root / "exported"],
            "resume": ["run", "--resume", top]}[command]
    result = cli(*args)
    one_line_or_success(result, f"{command} on {target} {how}")
    if command != "resume" or result.exit_code == 2:
        assert state_of(top) == before, f"{command} on {target} {how} changed the run"
    assert outside.read_bytes() == outside_before


def test_a_flipped_bit_in_a_weight_is_found_not_trained_on(interrupted: Path,
                                                           tmp_path: Path) -> None:
    """What `make fuzz` found (byte 2515 of checkpoint.pt xor 64): a weight of -0.005 became
    -1.7e36 and the resumed run trained on it. Checkpoints carry a SHA-256 now (issue 32): the
    flipped bit is found; resume continues from checkpoint.prev.pt when it is whole, or
    refuses and changes nothing; every record before the checkpoint it continues from is
    kept."""
    run = Path(shutil.copytree(interrupted, tmp_path / "tiny"))
    raw = bytearray((run / "checkpoint.pt").read_bytes())
    raw[2515] ^= 64
    (run / "checkpoint.pt").write_bytes(bytes(raw))
    previous = run / "checkpoint.prev.pt"
    had_previous = previous.exists()
    kept = checkpoint.read_checkpoint(previous)["stats_bytes"] if had_previous else 0
    records = (run / "stats.jsonl").read_bytes()[:kept]
    before = files(run)
    with __import__("warnings").catch_warnings(record=True) as said:
        __import__("warnings").simplefilter("always")
        result = cli("run", "--resume", run)
    if had_previous and result.exit_code == 0:
        assert any("SHA-256" in str(w.message) and "checkpoint.prev.pt" in str(w.message)
                   for w in said), [str(w.message) for w in said]
        assert (run / "stats.jsonl").read_bytes().startswith(records)
    else:
        assert result.exit_code == 2 and "SHA-256" in result.output, result.output
        assert files(run) == before


# --------------------------------------------------------------------------- issue 32
# Write-side damage: a link (out of the folder, dangling, to a folder), a FIFO or a folder at
# every name a command writes. Each is refused with one line, exit 2; nothing outside is
# touched, nothing in the run changes.

OUTPUTS = {  # command -> the names it writes, relative to the sweep's folder TOP
    "plot": ("layers.png", "training.png"),
    "compare": ("../compare.png",),
    "export": ("../../exported/sweep", "../../exported/sweep/c=1.0",
               "../../exported/sweep/c=1.0/records.csv", "../../exported/sweep/c=2.0/layers.csv"),
    "bench": ("../../bench.json",),
}
FOLDERS = OUTPUTS["export"][:2]
PLANTS = ("link-out", "dangling-link", "link-to-folder", "fifo", "folder")


def plant(path: Path, how: str, outside: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "link-out":
        path.symlink_to(outside)
    elif how == "dangling-link":
        path.symlink_to(outside.parent / "nothing-here")
    elif how == "link-to-folder":
        path.symlink_to(outside.parent / "elsewhere", target_is_directory=True)
    elif how == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


@examples(20)
@given(command=st.sampled_from(sorted(OUTPUTS)), how=st.sampled_from(PLANTS),
       which=st.integers(0, 3), force=st.booleans())
@example(command="plot", how="link-out", which=0, force=False)  # issue 32's security hole
@example(command="export", how="link-to-folder", which=0, force=True)
@example(command="bench", how="folder", which=0, force=True)
def test_every_output_name_refuses_what_is_not_a_regular_file(
        interrupted_sweep: Path, tmp_path_factory, monkeypatch: pytest.MonkeyPatch,
        command: str, how: str, which: int, force: bool) -> None:
    root = tmp_path_factory.mktemp("writes")
    top = Path(shutil.copytree(interrupted_sweep, root / "runs" / "sweep"))
    outside = root / "victim"
    outside.write_bytes(b"the victim's file")
    (root / "elsewhere").mkdir()
    names = OUTPUTS[command]
    name = names[which % len(names)]
    target = Path(os.path.normpath(top / name))
    plant(target, how, outside)
    before = state_of(top)
    monkeypatch.chdir(root)
    args = {"plot": ["plot", top],
            "compare": ["compare", top],
            "export": ["export", top, "--out", root / "exported"],
            "bench": ["bench", "--only", "mlp", "--steps", "1"]}[command]
    result = cli(*args, *(["--force"] if force and command != "plot" else []))
    what = f"{command} with {how} at {name}"
    if how == "folder" and name in FOLDERS:  # a folder where one is written: no damage
        assert result.exit_code == 0, f"{what}: {result.output}"
        return
    assert result.exit_code == 2, f"{what}: {result.output}"
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {result.output}"
    assert outside.read_bytes() == b"the victim's file", what
    assert list((root / "elsewhere").iterdir()) == [], what
    assert state_of(top) == before, what
