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
