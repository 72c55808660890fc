"""TensorBoard export for comparing sweep members (issue 23): an HParams session per member
with its config and outcome, and per-layer scalars for a few layers of a deep net, so the
scalar list stays short (every layer stays in the histograms and the CSV export)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from initlab.cli import app
from initlab.export import scalar_layers

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
runner = CliRunner()


def session_hparams(folder: Path) -> dict:
    events = event_accumulator.EventAccumulator(str(folder))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    values = {}
    for key, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        values[key] = getattr(value, kind)
    return values, events.Tags()["scalars"]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tb") / "runs"
    result = runner.invoke(app, ["run", "sweep-c", "train.epochs=1", "data.train_subset=640",
                                 "data.test_subset=200", "log.probe_size=64", "--threads", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_each_member_has_its_settings_and_outcome_and_few_scalars(out: Path,
                                                                  tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(out / "sweep-c"), "--to", "tensorboard",
                                 "--out", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    for member, c, status in (("c=1.0", 1.0, "completed"), ("c=3.0", 3.0, "diverged at step 2")):
        values, tags = session_hparams(tmp_path / "tb" / "sweep-c" / member)
        assert values["init.c"] == c and values["status"] == status
        assert values["model.depth"] == 50 and values["train.optimizer"] == "sgd"
        assert len(tags) < 150, len(tags)  # 50 layers: five layers' scalars per statistic
        assert "act_norm/50" in tags or "probe/act_norm/50" in tags


def test_a_shallow_net_keeps_every_layers_scalars() -> None:
    assert scalar_layers(5) == {1, 2, 3, 4, 5}
    assert scalar_layers(50) == {1, 12, 25, 38, 50}


def test_all_layers_gives_every_layer_a_scalar_grouped_in_charts(out: Path,
                                                                 tmp_path: Path) -> None:
    """--all-layers (issue 34: the export showed 5 of 50 layers with no way to ask for more):
    a scalar per layer, and Custom Scalars charts of 10 layers each per statistic."""
    layout_pb2 = pytest.importorskip("tensorboard.plugins.custom_scalar.layout_pb2")
    result = runner.invoke(app, ["export", str(out / "sweep-c"), "--to", "tensorboard",
                                 "--all-layers", "--out", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    events = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "sweep-c" / "c=1.0"))
    events.Reload()
    tags = events.Tags()["scalars"]
    # (5 steps, log.every 100: only the probe records at init and the epoch's end)
    assert {f"probe/act_norm/{i}" for i in range(1, 51)} <= set(tags)
    assert {f"probe/n_weight_var/{i}" for i in range(1, 51)} <= set(tags)
    (config,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = {category.title: [chart.title for chart in category.chart]
              for category in layout.category}
    assert charts["probe/act_norm"] == [f"probe/act_norm: layers {i}-{i + 9}"
                                        for i in range(1, 51, 10)]
    chart = layout.category[0].chart[0]
    assert list(chart.multiline.tag) == [f"^{layout.category[0].title}/(1|2|3|4|5|6|7|8|9|10)$"]
