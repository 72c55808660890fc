"""Runs outside initlab (issue 14): CSV files read back with the csv module and pandas, and
TensorBoard event files -- written while training (`initlab run --tensorboard`) and by
`initlab export --to tensorboard` -- read back with TensorBoard's own reader."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import initlab
from initlab.cli import app

pytestmark = pytest.mark.usefixtures("mnist_env")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

runner = CliRunner()

SWEEP = {
    "name": "ex",
    "model": {"depth": 5, "width": 16},
    "data": {"train_subset": 640, "test_subset": 200},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
    "log": {"every": 4, "probe_size": 64},
    "sweep": {"init.c": [1.5, 2.0]},
}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "ex.yaml").write_text(yaml.safe_dump(SWEEP))
    result = runner.invoke(app, ["run", str(tmp / "ex.yaml"), "--out", str(tmp / "runs"),
                                 "--tensorboard"])
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "ex"


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def read_events(folder: Path) -> event_accumulator.EventAccumulator:
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0})
    events.Reload()
    return events


def scalars(events: event_accumulator.EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in events.Scalars(tag)}


def check_events_match_records(folder: Path, run_dir: Path) -> None:
    """The event files hold the records' numbers: per-layer scalars of the captured batches
    and of the probe, n·Var, losses, test errors, and histograms over the layers."""
    events = read_events(folder)
    recs = records(run_dir)
    train = [r for r in recs if r["phase"] == "train"]
    probe = [r for r in recs if r["phase"] != "train"]
    assert train and probe
    for layer in (1, 5):
        got = scalars(events, f"act_norm/{layer}")
        assert got == pytest.approx({r["step"]: r["act_norm"][layer - 1] for r in train},
                                    rel=1e-6)
        got = scalars(events, f"probe/grad_norm/{layer}")
        assert got == pytest.approx({r["step"]: r["grad_norm"][layer - 1] for r in probe},
                                    rel=1e-6)
    fan_in_2 = 16  # layer 2 sees the 16 units of layer 1
    assert scalars(events, "n_weight_var/2") == pytest.approx(
        {r["step"]: r["weight_var"][1] * fan_in_2 for r in train}, rel=1e-6)
    assert scalars(events, "update_ratio/3") == pytest.approx(
        {r["step"]: r["update_ratio"][2] for r in train}, rel=1e-6)
    assert scalars(events, "error/test") == pytest.approx(
        {r["step"]: r["test_error"] for r in probe}, rel=1e-6)
    assert scalars(events, "loss/batch") == pytest.approx(
        {r["step"]: r["loss"] for r in train}, rel=1e-6)
    histograms = events.Tags()["histograms"]
    assert {"act_norm", "probe/act_norm", "dead_fraction"} <= set(histograms)
    assert len(events.Histograms("act_norm")) == len(train)


def test_run_tensorboard_writes_events_as_it_trains(sweep_dir: Path) -> None:
    for member in ("c=1.5", "c=2.0"):
        run_dir = sweep_dir / member
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
        check_events_match_records(run_dir, run_dir)


def test_export_tensorboard_replaces_its_own_events(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    for force in ([], ["--force"]):  # a second export (--force) replaces the first one's file
        result = runner.invoke(app, ["export", str(sweep_dir), "--to", "tensorboard", "--out",
                                     str(out), *force])
        assert result.exit_code == 0, result.output
    assert f"open with: tensorboard --logdir {out}" in result.output
    for member in ("c=1.5", "c=2.0"):
        folder = out / "ex" / member
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        check_events_match_records(folder, sweep_dir / member)


def test_export_csv_reads_back_with_csv_and_pandas(sweep_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(sweep_dir / "c=2.0"), "--to", "csv", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "ex" / "c=2.0"
    recs = records(sweep_dir / "c=2.0")
    with open(folder / "records.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [r["step"] for r in recs]
    assert [r["phase"] for r in rows] == [r["phase"] for r in recs]
    assert rows[-1]["test_error"] and rows[1]["test_error"] == ""  # a batch: no test error
    pd = pytest.importorskip("pandas")
    layers = pd.read_csv(folder / "layers.csv")
    assert len(layers) == 5 * len(recs)
    last = layers[layers.step == recs[-1]["step"]]
    final = last[last.phase == "final"].set_index("layer")
    assert final.loc[3, "act_norm"] == pytest.approx(recs[-1]["act_norm"][2], rel=1e-9)
    assert final.loc[3, "n_weight_var"] == pytest.approx(recs[-1]["weight_var"][2] * 16,
                                                         rel=1e-9)
    assert final.loc[1, "fan_in"] == 784
    frame = initlab.load_run(sweep_dir / "c=2.0").frame()
    assert list(frame.columns) == list(layers.columns)
    assert len(frame) == len(layers)


def test_export_refuses_an_unknown_format(sweep_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(sweep_dir), "--to", "xlsx", "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --to must be one of csv, tensorboard, got "
                                     "'xlsx'")
    assert not (tmp_path / "x").exists()
