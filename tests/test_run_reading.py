"""Reading run directories without MNIST: the ``Run`` API (repr, phases as an array, fan-ins,
n·Var, tables and frames), what ``load_run`` says a directory is, and damaged files (issue 12's
C8): each is one line naming the file (and line) and exit 2 from ``initlab plot``, never a
traceback. Run directories here are written by hand, as a watched run or an old version would
leave them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import initlab
from initlab.cli import app
from initlab.config import RunConfig, dump_yaml, set_dotted
from initlab.describe import run_labels, title_lines
from initlab.errors import UsageError, bounded
from initlab.runs import RunWriter, run_summary
from initlab.stats import LAYER_STATS

runner = CliRunner()
DEPTH, WIDTH = 4, 8


def record(step: int, phase: str, scale: float = 1.0) -> dict:
    """A record with every registered statistic (update statistics only in 'train' ones)."""
    rec: dict = {"step": step, "epoch": step // 10, "phase": phase, "loss": 2.3 / (1 + step),
                 "train_error": 0.9 - 0.01 * step,
                 "test_error": None if phase == "train" else 0.9 - 0.02 * step}
    for key, stat in LAYER_STATS.items():
        if stat.after_update and phase != "train":
            continue
        width = DEPTH - 1 if stat.hidden_only else DEPTH
        rec[key] = [scale * (i + 1) / 100 for i in range(width)]
    return rec


def make_run(path: Path, config: RunConfig | None = None, status: str = "completed",
             records: list[dict] | None = None, **summary: object) -> Path:
    config = config or set_dotted(set_dotted(RunConfig(name=path.name), "model.depth", DEPTH),
                                  "model.width", WIDTH)
    writer = RunWriter(path)
    writer.write_config(dump_yaml(config))
    if records is None:
        records = [record(0, "init"), record(5, "train"), record(10, "epoch"),
                   record(15, "train"), record(20, "epoch"), record(20, "final")]
    writer.append_stats(records)
    fields = {"steps": 20, "epochs": 2, "final_test_error": 0.5, **summary}
    writer.write_summary(run_summary(status, **fields))  # type: ignore[arg-type]
    return path


# --------------------------------------------------------------------------- the API


def test_run_repr_is_short_and_says_how_it_ended(tmp_path: Path) -> None:
    run = initlab.load_run(make_run(tmp_path / "r"))
    text = repr(run)
    assert len(text) < 200, text
    assert "completed" in text and "2 epochs" in text and "test error 50.00%" in text
    diverged = initlab.load_run(make_run(tmp_path / "d", status="diverged", diverged_step=7,
                                         final_test_error=None))
    assert "diverged at step 7" in repr(diverged)


def test_phase_is_an_array_to_mask_with(tmp_path: Path) -> None:
    run = initlab.load_run(make_run(tmp_path / "r"))
    mask = run.phase == "train"
    assert isinstance(mask, np.ndarray) and mask.tolist() == [False, True, False, True, False,
                                                              False]
    assert list(run.step[run.phase == "epoch"]) == [10, 20]


def test_fan_ins_and_n_var(tmp_path: Path) -> None:
    run = initlab.load_run(make_run(tmp_path / "r"))
    assert run.fan_ins.tolist() == [784.0, 8.0, 8.0, 8.0]
    assert run.layer_names == ["1", "2", "3", "4"]
    np.testing.assert_allclose(run.plotted("weight_var"), run.layers["weight_var"] * run.fan_ins)
    np.testing.assert_array_equal(run.plotted("act_norm"), run.layers["act_norm"])


def test_table_and_frame_have_one_row_per_record_and_layer(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    run = initlab.load_run(make_run(tmp_path / "r"))
    frame = run.frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6 * DEPTH
    row = frame[(frame.step == 10) & (frame.layer == "2")].iloc[0]
    assert row.act_norm == pytest.approx(0.02) and row.fan_in == 8
    assert row.n_weight_var == pytest.approx(0.02 * 8)
    assert math.isnan(frame[frame.layer == "4"].dead_fraction.iloc[0])  # hidden layers only
    assert len(run.frame(per_layer=False)) == 6


def test_watched_run_names_its_layers_and_fan_ins(tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.mkdir()
    layers = [{"name": "features.0", "type": "Conv2d", "fan_in": 9, "shape": [16, 1, 3, 3]},
              {"name": "classifier", "type": "Linear", "fan_in": 128, "shape": [10, 128]}]
    (path / "config.yaml").write_text(json.dumps({"name": "w", "watch": {
        "model": "Net", "every": 10, "layers": layers}}))
    recs = [{"step": s, "epoch": None, "phase": "train", "loss": 1.0 / s, "train_error": None,
             "test_error": None, "act_norm": [1.0, 2.0], "weight_var": [0.1, None]}
            for s in (10, 20)]
    (path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (path / "summary.json").write_text(json.dumps(run_summary("running", steps=20)))
    run = initlab.load_run(path)
    assert run.kind == "watch" and run.layer_names == ["features.0", "classifier"]
    assert run.fan_ins.tolist() == [9.0, 128.0]
    assert run.plotted("weight_var")[0, 0] == pytest.approx(0.9)
    result = runner.invoke(app, ["plot", str(path), "--out", str(tmp_path / "w.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w.png").stat().st_size > 10_000


def test_load_run_says_what_a_directory_is(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs / "a")
    make_run(runs / "b")
    with pytest.raises(UsageError, match=r"is a directory of runs \(a, b\).*initlab ls"):
        initlab.load_run(runs)
    assert [r.name for r in initlab.load_runs(runs)] == ["a", "b"]
    sweep = runs / "s"
    make_run(sweep / "c=1")
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "members": ["c=1"]}))
    with pytest.raises(UsageError, match=r"is a sweep of 1 member \(c=1\)"):
        initlab.load_run(sweep)
    with pytest.raises(UsageError, match="no such directory"):
        initlab.load_run(tmp_path / "nothing")


def test_labels_tell_an_sgd_run_from_an_adam_run(tmp_path: Path) -> None:
    base = set_dotted(set_dotted(RunConfig(), "model.depth", DEPTH), "model.width", WIDTH)
    adam = set_dotted(set_dotted(base, "train.optimizer", "adam"), "train.lr", 1e-3)
    runs = [initlab.load_run(make_run(tmp_path / "a", base)),
            initlab.load_run(make_run(tmp_path / "b", adam, status="diverged",
                                      diverged_step=3, final_test_error=None))]
    labels = run_labels(runs)
    assert labels[0] == "a (optimizer=sgd, lr=0.01): test error 50.00%"
    assert labels[1] == "b (optimizer=adam, lr=0.001): diverged at step 3"
    title = title_lines(runs[:1])
    assert title[0] == "a: depth=4, width=8"
    assert title[1] == "SGD lr 0.01, 2 of 12 epochs (20 steps), test error 50.00%"


def test_bounded_keeps_both_ends_of_a_long_value() -> None:
    text = bounded("x" * 5000 + "END")
    assert len(text) <= 80 and text.endswith("END") and " ... " in text


# --------------------------------------------------------------------------- damage (C8)

RECORD = json.dumps(record(0, "init"))
GOOD = json.dumps(record(10, "epoch"))


def stats_lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


# name -> (file, content, expected message after "RUN/", exit code)
DAMAGE: dict[str, tuple[str, bytes | None, str]] = {
    "a JSON list as a record": ("stats.jsonl", stats_lines(RECORD, "[1, 2]", GOOD),
                                "stats.jsonl: line 2: expected a JSON object, got a list"),
    "a bare number as a record": ("stats.jsonl", stats_lines(RECORD, "3", GOOD),
                                  "stats.jsonl: line 2: expected a JSON object, got a number"),
    "a record without step": ("stats.jsonl", stats_lines(
        RECORD, json.dumps({k: v for k, v in record(5, "train").items() if k != "step"}), GOOD),
        'stats.jsonl: line 2: "step" must be a whole number >= 0, got nothing'),
    "ragged per-layer lists": ("stats.jsonl", stats_lines(
        RECORD, json.dumps({**record(5, "train"), "act_norm": [1.0, 2.0]}), GOOD),
        'stats.jsonl: line 2: "act_norm" has 2 values; line 1 has 4'),
    "a string loss": ("stats.jsonl", stats_lines(
        RECORD, json.dumps({**record(5, "train"), "loss": "low"}), GOOD),
        'stats.jsonl: line 2: "loss" must be a finite number or null, got low'),
    "a string in a per-layer list": ("stats.jsonl", stats_lines(
        RECORD, json.dumps({**record(5, "train"), "grad_norm": [1, "x", 2, 3]}), GOOD),
        'stats.jsonl: line 2: "grad_norm" must hold finite numbers or null, got x'),
    "not UTF-8": ("stats.jsonl", stats_lines(RECORD) + b'{"step": 1, "phase": "\xff"}\n'
                  + stats_lines(GOOD), "stats.jsonl: line 2: not UTF-8 text"),
    "stats.jsonl a directory": ("stats.jsonl", None,
                                "stats.jsonl: is a directory, expected the run's statistics"),
    "garbage summary.json": ("summary.json", b"{not json", "summary.json: not valid JSON"),
    "empty summary.json": ("summary.json", b"", "summary.json: is empty, expected the run's "
                                                "summary"),
    "a list as summary.json": ("summary.json", b"[1, 2]",
                               "summary.json: expected the run's summary (a mapping), got a list"),
    "a string status": ("summary.json", b'{"status": 3}',
                        'summary.json: "status" must be a string or null, got 3'),
    "garbage config.yaml": ("config.yaml", b"model: [1, 2\n",
                            "config.yaml: not valid YAML at line 2"),
    "a list as config.yaml": ("config.yaml", b"- 1\n- 2\n",
                              "config.yaml: expected the run's resolved config (a mapping), "
                              "got a list"),
    "width: abc": ("config.yaml", b"model: {depth: 4, width: abc}\n",
                   "config.yaml: model.width: expected a whole number in 1..1,000,000, got abc"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_is_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    name, content, message = DAMAGE[case]
    run_dir = make_run(tmp_path / "run")
    target = run_dir / name
    target.unlink()
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    out = tmp_path / "figure.png"
    result = runner.invoke(app, ["plot", str(run_dir), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert result.output.startswith(f"error: {run_dir}/{message}"), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


def test_a_run_without_an_init_record_draws_its_end(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", records=[record(10, "epoch"), record(20, "final")])
    result = runner.invoke(app, ["plot", str(run_dir), "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_a_record_missing_a_statistic_is_drawn_without_it(tmp_path: Path) -> None:
    partial = {k: v for k, v in record(10, "epoch").items() if k != "act_norm"}
    run_dir = make_run(tmp_path / "run", records=[record(0, "init"), partial])
    result = runner.invoke(app, ["plot", str(run_dir), "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    run = initlab.load_run(run_dir)
    assert np.isnan(run.layers["act_norm"][1]).all()
    assert not np.isnan(run.layers["act_norm"][0]).any()


def test_plot_output_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    a_file = tmp_path / "notes"
    a_file.write_text("")
    for out, message in ((a_file, f"--out {a_file}: is a file without an image suffix"),
                         (a_file / "x.png", f"cannot create output directory {a_file}: "
                                            f"{a_file} is a file")):
        result = runner.invoke(app, ["plot", str(run_dir), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: {message}"), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "run"]


# --------------------------------------------------------------------------- issue 20
# Every defect of issue 20 that needs no training: one line naming the file and the problem,
# exit 2, nothing changed; or the right answer. Rows of docs/bad-inputs.md name these tests.


def one_line_refusal(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], result.output
    return lines[0]


def digest(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def replace(path: Path, content: bytes | str) -> None:
    path.unlink()
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def test_a_linked_summary_is_never_followed(tmp_path: Path) -> None:
    """Readers followed summary.json -> ../../elsewhere and `ls` printed what it held."""
    run_dir = make_run(tmp_path / "runs" / "r")
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"status": "SECRET-VALUE"}))
    (run_dir / "summary.json").unlink()
    (run_dir / "summary.json").symlink_to(secret)
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "f.png")],
                     "summary.json: is a symbolic link")
    result = runner.invoke(app, ["ls", str(tmp_path / "runs")])
    assert result.exit_code == 0 and "unreadable" in result.output, result.output
    assert "SECRET-VALUE" not in result.output
    with pytest.raises(UsageError, match="is a symbolic link"):
        initlab.load_run(run_dir)


@pytest.mark.parametrize("special", ["dev-zero", "fifo"])
def test_a_device_or_fifo_in_a_run_is_refused_at_once(tmp_path: Path, special: str) -> None:
    """config.yaml -> /dev/zero made `ls` read until memory ran out; a FIFO named stats.jsonl
    hung `plot` forever."""
    import os

    run_dir = make_run(tmp_path / "runs" / "r")
    name = "config.yaml" if special == "dev-zero" else "stats.jsonl"
    (run_dir / name).unlink()
    if special == "dev-zero":
        (run_dir / name).symlink_to("/dev/zero")
        needle = "config.yaml: is a symbolic link"
    else:
        os.mkfifo(run_dir / name)
        needle = "stats.jsonl: is not a regular file (a FIFO, device or socket)"
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "f.png")], needle)
    result = runner.invoke(app, ["ls", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    if special == "dev-zero":
        assert "unreadable" in result.output


def test_a_record_too_long_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """A 50 MB one-line stats.jsonl cost `plot` 4.8 GB and 31 s."""
    from initlab.runs import MAX_RECORD_BYTES

    run_dir = make_run(tmp_path / "r")
    huge = json.dumps({**record(5, "train"), "act_norm": [0.5] * (MAX_RECORD_BYTES // 4)})
    replace(run_dir / "stats.jsonl", stats_lines(RECORD, huge, GOOD))
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "f.png")],
                     "stats.jsonl: line 2: is ", f"a record is at most {MAX_RECORD_BYTES:,}")


def test_a_file_over_its_bound_is_refused_by_size(tmp_path: Path) -> None:
    from initlab.runs import MAX_FILE_BYTES

    run_dir = make_run(tmp_path / "r")
    replace(run_dir / "summary.json", '{"status": "completed", "pad": "' +
            "x" * MAX_FILE_BYTES["summary.json"] + '"}')
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "f.png")],
                     "summary.json: is ", f"summary.json is at most "
                     f"{MAX_FILE_BYTES['summary.json']:,}")


def test_an_alias_bomb_in_a_runs_config_is_refused_at_once(tmp_path: Path) -> None:
    """The 100,000-value bound covered only configs given to `run`; compare and plot hung."""
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    replace(a / "config.yaml", "\n".join(lines) + "\nmodel: {depth: 4, width: 8}\n")
    for args in (["compare", str(a), str(b), "--out", str(tmp_path / "c.png")],
                 ["plot", str(a), "--out", str(tmp_path / "p.png")]):
        one_line_refusal(args, "config.yaml: its aliases expand to more than 100,000 values")


def test_a_depth_the_records_do_not_have_is_an_error_not_an_allocation(tmp_path: Path) -> None:
    """model.depth: 1000000000 with 4 layers recorded hung `plot`; `export` asked for 52 GiB."""
    run_dir = make_run(tmp_path / "r")
    text = (run_dir / "config.yaml").read_text().replace("depth: 4", "depth: 10000")
    replace(run_dir / "config.yaml", text)
    needle = "config.yaml: model.depth says 10,000 layers, but the records"
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "f.png")], needle)
    one_line_refusal(["export", str(run_dir), "--out", str(tmp_path / "x")], needle)
    replace(run_dir / "config.yaml", text.replace("depth: 10000", "depth: 1000000000"))
    one_line_refusal(["export", str(run_dir), "--out", str(tmp_path / "x")],
                     "config.yaml: model.depth: expected a whole number in 1..10,000")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["summary.json", "sweep.json", "stats.jsonl", "config.yaml"])
def test_a_deeply_nested_document_is_refused_by_its_nesting(tmp_path: Path, name: str) -> None:
    """A 200,000-deep JSON array ended `ls`, `plot` and `--resume` in a RecursionError."""
    from initlab.runs import MAX_NESTING

    deep = "[" * 200_000 + "]" * 200_000
    runs_dir = tmp_path / "runs"
    if name == "sweep.json":
        top = runs_dir / "s"
        make_run(top / "m")
        (top / "sweep.json").write_text(deep)
        target = top
    else:
        target = make_run(runs_dir / "r")
        content = {"summary.json": deep, "stats.jsonl": stats_lines(RECORD, deep, GOOD),
                   "config.yaml": "model: " + deep + "\n"}[name]
        replace(target / name, content)
    needle = f"{name}: " + ("line 2: " if name == "stats.jsonl" else "")
    needle += f"nested more than {MAX_NESTING} levels deep"
    one_line_refusal(["plot", str(target), "--out", str(tmp_path / "f.png")], needle)
    result = runner.invoke(app, ["ls", str(runs_dir)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    if name != "stats.jsonl":  # ls reads no records
        assert "unreadable" in result.output
    if name != "stats.jsonl":
        one_line_refusal(["run", "--resume", str(target)], needle)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("members_in_group", "x", '"members_in_group" must be a whole number in 1..2**53 or null'),
    ("steps", 10**30, '"steps" must be a whole number in 0..2**53 or null'),
    ("final_test_error", 7, '"final_test_error" must be a number in [0, 1] or null'),
])
def test_summary_fields_of_the_wrong_type_are_one_line(tmp_path: Path, field: str,
                                                       value: object, needle: str) -> None:
    """members_in_group: "x" was a ValueError traceback in `compare` and `load_run`."""
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    summary = json.loads((a / "summary.json").read_text())
    replace(a / "summary.json", json.dumps({**summary, field: value}))
    one_line_refusal(["compare", str(a), str(b), "--out", str(tmp_path / "c.png")],
                     f"summary.json: {needle}")
    with pytest.raises(UsageError, match="members_in_group|steps|final_test_error"):
        initlab.load_run(a)


@pytest.mark.parametrize(("line", "needle"), [
    ('{"step": 1000000000000000000000000000000, "phase": "train"}',
     '"step" is 1000000000000000000000000000000, more than 2**53'),
    ('{"step": 3, "phase": "train", "loss": Infinity}',
     "Infinity is not JSON (initlab writes null for an undefined number)"),
    ('{"step": 3, "phase": "train", "act_norm": [1e999, 1, 2, 3]}',
     '"act_norm" must hold finite numbers or null, got inf'),
])
def test_numbers_a_writer_never_writes_are_one_line(tmp_path: Path, line: str,
                                                    needle: str) -> None:
    """A step of 10**30 was an OverflowError in `plot`; Infinity left an empty panel."""
    run_dir = make_run(tmp_path / "r")
    replace(run_dir / "stats.jsonl", stats_lines(RECORD, line, GOOD))
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "f.png")],
                     f"stats.jsonl: line 2: {needle}")


def test_a_stray_stats_file_does_not_make_a_folder_of_runs_a_run(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    make_run(runs_dir / "a")
    make_run(runs_dir / "b")
    (runs_dir / "stats.jsonl").write_text(RECORD + "\n")
    assert [r.name for r in initlab.load_runs(runs_dir)] == ["a", "b"]
    result = runner.invoke(app, ["plot", str(runs_dir), "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    with pytest.raises(UsageError, match=r"directory of runs \(a, b\)"):
        initlab.load_run(runs_dir)


def test_names_stay_one_line_and_one_argument(tmp_path: Path) -> None:
    """A run named `-rf` was printed as `initlab plot -rf`; a newline in a name looked like
    two runs in `ls`."""
    from initlab.runs import command_path

    assert command_path(Path("-rf")) == "./-rf"
    assert command_path(Path("runs/my run")) == "'runs/my run'"
    runs_dir = tmp_path / "runs"
    make_run(runs_dir / "two\nlines")
    result = runner.invoke(app, ["ls", str(runs_dir)])
    assert result.exit_code == 0, result.output
    assert "two\\nlines" in result.output and "two\nlines" not in result.output


def test_plot_never_overwrites_a_file_it_was_not_named(tmp_path: Path) -> None:
    """`plot --out mine.png` overwrote an existing mine-training.png."""
    run_dir = make_run(tmp_path / "r")
    mine = tmp_path / "mine-training.png"
    mine.write_bytes(b"the user's own picture")
    one_line_refusal(["plot", str(run_dir), "--out", str(tmp_path / "mine.png")],
                     "mine-training.png exists and was not named by --out; add --force")
    assert mine.read_bytes() == b"the user's own picture"
    assert not (tmp_path / "mine.png").exists()
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "layers.png").write_bytes(b"theirs")
    one_line_refusal(["plot", str(run_dir), "--out", str(folder)], "layers.png exists")
    result = runner.invoke(app, ["plot", str(run_dir), "--out", str(tmp_path / "mine.png"),
                                 "--force"])
    assert result.exit_code == 0, result.output
    assert mine.read_bytes() != b"the user's own picture"
    assert "--force" in runner.invoke(app, ["plot", "--help"]).output


def test_compare_never_overwrites_a_compare_png_it_was_not_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --out, compare draws compare.png beside the first run (never into the current
    folder), and never over an existing one without --force."""
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    beside = tmp_path / "compare.png"
    beside.write_bytes(b"an earlier comparison")
    one_line_refusal(["compare", str(a), str(b)], "compare.png exists", "--force")
    assert beside.read_bytes() == b"an earlier comparison"
    result = runner.invoke(app, ["compare", str(a), str(b), "--force"])
    assert result.exit_code == 0, result.output
    assert beside.read_bytes() != b"an earlier comparison"
    assert not list(here.iterdir())
    assert "--force" in runner.invoke(app, ["compare", "--help"]).output


def test_export_never_overwrites_without_force(tmp_path: Path) -> None:
    """`export --out DIR` overwrote DIR/NAME/records.csv; OUT/NAME a file was a
    FileExistsError traceback."""
    run_dir = make_run(tmp_path / "r")
    out = tmp_path / "out"
    (out / "r").mkdir(parents=True)
    (out / "r" / "records.csv").write_text("the user's notes\n")
    one_line_refusal(["export", str(run_dir), "--out", str(out)], "records.csv exists",
                     "--force")
    assert (out / "r" / "records.csv").read_text() == "the user's notes\n"
    result = runner.invoke(app, ["export", str(run_dir), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert (out / "r" / "records.csv").read_text().startswith("step,")
    assert "--force" in runner.invoke(app, ["export", "--help"]).output
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "r").write_text("a file where the run's folder would go")
    one_line_refusal(["export", str(run_dir), "--out", str(blocked)],
                     f"cannot export into {blocked / 'r'}: {blocked / 'r'} is a file")


def watched_run(path: Path, steps: int = 3) -> Path:
    """A real run of ``initlab.watch`` on a tiny model of one's own."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    with initlab.watch(model, path, every=1) as watch:
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            watch.step(loss)
    assert watch.path is not None
    return watch.path


def test_resume_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    """It was a FileNotFoundError traceback from the lock, exit 1."""
    one_line_refusal(["run", "--resume", str(tmp_path / "no" / "such" / "run")],
                     "no such run directory")


def test_resume_of_a_watched_run_says_so(tmp_path: Path) -> None:
    """It said "watch: unknown key"."""
    run_dir = watched_run(tmp_path / "w")
    before = digest(run_dir)
    one_line_refusal(["run", "--resume", str(run_dir)], "a watched run", "cannot be resumed")
    assert digest(run_dir) == before


def test_a_watched_runs_loss_is_not_labelled_cross_entropy(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from initlab.plot import draw_curve

    run = initlab.load_run(watched_run(tmp_path / "w"))
    fig, ax = plt.subplots()
    draw_curve(ax, [run], "loss", ["C0"])
    assert ax.get_ylabel() == "loss"
    plt.close(fig)


def test_a_runs_config_is_read_in_the_yaml_it_was_written_in(tmp_path: Path) -> None:
    """train.cuda_graph: off came back False (YAML 1.1) and `--resume` refused it."""
    from initlab.resume import read_config

    config = set_dotted(set_dotted(set_dotted(RunConfig(name="r"), "model.depth", DEPTH),
                                   "model.width", WIDTH), "train.cuda_graph", "off")
    run_dir = make_run(tmp_path / "r", config)
    assert initlab.load_run(run_dir).config["train"]["cuda_graph"] == "off"
    assert read_config(run_dir).train.cuda_graph == "off"


WRITER_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_run_reading import make_run, record
from initlab.runs import RunWriter
make_run(Path(sys.argv[1]), status="running", records=[record(0, "init"), record(5, "train")],
         steps=5, epochs=0, final_test_error=None)
writer = RunWriter(Path(sys.argv[1]))  # as a trainer's: it holds the lock while it writes
print("ready", flush=True)
time.sleep(60)
"""


def test_a_run_whose_writer_was_killed_is_stopped_not_running(tmp_path: Path) -> None:
    """After kill -9, `ls` said running forever and load_run showed the untrained 88% (the
    init record's) as the test error."""
    import os
    import signal
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "killed"
    writer = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(run_dir),
                               str(Path(__file__).parent)],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        assert initlab.load_run(run_dir).status == "running"  # its writer holds the lock
        listed = runner.invoke(app, ["ls", str(tmp_path / "runs")]).output
        assert "running (step 5 so far)" in listed, listed
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    run = initlab.load_run(run_dir)
    assert run.status == "stopped"
    assert math.isnan(run.final_test_error)  # the init record's error is no final one
    assert run.last_test_error == (pytest.approx(0.9), 0)
    assert "stopped" in repr(run) and "records reach step 5" in repr(run)
    assert ", test error" not in repr(run)  # only "last test error 90.00% at step 0"
    assert "last test error 90.00% at step 0" in repr(run)
    result = runner.invoke(app, ["ls", str(tmp_path / "runs")])
    assert "stopped at step 5 (its process ended)" in result.output, result.output
    assert "running" not in result.output
    assert "stopped (process ended) at step 5" in "\n".join(title_lines([run]))


def test_a_lazy_layer_before_its_first_forward_is_one_clear_error(tmp_path: Path) -> None:
    """initlab.watch on nn.LazyLinear before its first forward was a torch RuntimeError."""
    from torch import nn

    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(UsageError, match=r"'0' \(LazyLinear\) has no weights before the "
                                         r"model's first forward pass"):
        initlab.watch(model, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_re_entering_a_closed_watch_is_an_error(tmp_path: Path) -> None:
    """It recorded nothing, silently."""
    from torch import nn

    with initlab.watch(nn.Linear(3, 2), tmp_path / "w") as watch:
        watch.step(1.0)
    with pytest.raises(UsageError, match="is closed; start a new one"), watch:
        watch.step(1.0)
    assert initlab.load_run(watch.path).status == "completed"
