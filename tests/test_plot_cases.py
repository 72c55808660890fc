"""Figures for the common cases (issue 23): a diverged member is drawn up to its divergence
and only what came after it is marked (issue 34), no fake or empty panels, every run left
without maps is named, colours follow the varied value in increasing order, and tanh runs show
saturation instead of dead units."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import initlab
from initlab import plot, stats
from initlab.cli import app

matplotlib.use("Agg")
runner = CliRunner()
SMALL = ["train.epochs=1", "data.train_subset=640", "data.test_subset=200", "log.probe_size=64",
         "log.every=1", "--threads", "1"]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sweep-c (c = 3 diverges at step 2), a 6-member sweep that trains, a tanh sweep."""
    out = tmp_path_factory.mktemp("plots") / "runs"
    for args in (["sweep-c"], ["kaiming", "init.c=1,1.2,1.4,1.6,1.8,2", "-m"],
                 ["xavier-tanh", "init.c=1,4", "-m", "name=tanh-c"]):
        result = runner.invoke(app, ["run", *args, *SMALL, "--out", str(out)])
        assert result.exit_code == 0, result.output
    return out


def captured_figure(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures a plot function closes, kept open for the test to inspect."""
    import matplotlib.pyplot as plt

    figures: list = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    return figures


def test_colours_follow_the_varied_value_in_increasing_order(out: Path) -> None:
    """c takes the one palette's colour (initlab.palette): c = 2 is orange in every plot and
    figure, whatever the other runs; values the palette does not name go by their order."""
    runs = initlab.load_runs(out / "sweep-c")
    blue, orange, green = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][:3]

    def same(colors: list, expected: list) -> bool:
        return len(colors) == len(expected) and all(
            matplotlib.colors.same_color(a, b) for a, b in zip(colors, expected, strict=True))

    assert same(plot.run_colors(runs), [blue, orange, green])
    assert same(plot.run_colors(runs[::-1]), [green, orange, blue])  # the value decides
    assert same(plot.run_colors(runs[1:]), [orange, green])  # c = 2, 3: the palette's


def test_a_diverged_member_is_drawn_like_the_others_up_to_its_divergence(
        out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """c = 3's initialization is the lecture's point: its records (all before step 2, where
    it diverged) are drawn and set the axes like any member's (issue 34)."""
    runs = initlab.load_runs(out / "sweep-c")
    diverged = runs[2]
    assert diverged.status == "diverged" and plot.before_divergence(diverged).all()
    figures = captured_figure(monkeypatch)
    plot.plot_runs(runs, tmp_path / "layers.png", ["act_norm", "loss"])
    act, loss = [ax for ax in figures[0].axes if ax.get_visible()][:2]
    exploding = diverged.layer_stat("act_norm", "init")
    assert exploding[-1] > 1e3 * exploding[0]  # the lecture's explosion, drawn in full:
    assert act.get_ylim()[1] >= exploding.max()
    drawn = [line.get_ydata() for line in act.lines if len(line.get_ydata()) == len(exploding)]
    assert any(np.array_equal(y, exploding) for y in drawn)
    assert loss.get_ylim()[1] >= np.nanmax(diverged.loss)
    assert not [ax for ax in (act, loss) if ax.get_legend()
                and plot.BEYOND in [t.get_text() for t in ax.get_legend().get_texts()]]


def test_only_what_came_after_a_divergence_is_marked_not_scaled(
        out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that recorded on past its divergence (initlab.watch does): its records before
    it set the axes; a later one, 10^6 times larger, is marked at the edge."""
    from initlab.runs import RunWriter, config_text

    c1, c2, c3 = initlab.load_runs(out / "sweep-c")
    writer = RunWriter(tmp_path / "after")
    writer.write_config(config_text(c3.path) or "")
    later = dict(c3.records[-1], step=5, phase="train", loss=1e9,
                 act_norm=[1e6 * v for v in c3.records[-1]["act_norm"]])
    writer.append_stats([*c3.records, later])
    writer.write_summary(c3.summary)
    after = initlab.load_run(tmp_path / "after")
    assert plot.before_divergence(after).tolist() == [True] * len(c3.records) + [False]
    figures = captured_figure(monkeypatch)
    plot.plot_runs([c1, c2, after], tmp_path / "layers.png", ["act_norm", "loss"])
    act, loss = [ax for ax in figures[0].axes if ax.get_visible()][:2]
    assert c3.layer_stat("act_norm", "init").max() <= act.get_ylim()[1] < 1e6
    assert loss.get_ylim()[1] < 1e9
    for ax in (act, loss):
        assert plot.BEYOND in [t.get_text() for t in ax.get_legend().get_texts()]


def test_training_png_has_no_empty_or_fake_panel(out: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    figures = captured_figure(monkeypatch)
    said: list[str] = []
    plot.plot_training(initlab.load_runs(out / "sweep-c"), tmp_path / "t.png", said.append)
    assert any("no layer maps for c=3 (diverged at step 2: one record)" in s for s in said)
    axes = [ax for ax in figures[0].axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    for ax in axes:
        assert ax.lines or ax.collections or ax.texts, ax.get_title()
        if ax.collections and ax.get_xlabel() == "epoch":  # a map: a real span of time
            assert ax.get_xlim()[0] >= -0.01, ax.get_title()
    assert "no layer maps for c=3" in figures[0]._suptitle.get_text()


def test_every_run_without_maps_is_named(out: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    figures = captured_figure(monkeypatch)
    said: list[str] = []
    plot.plot_training(initlab.load_runs(out / "kaiming"), tmp_path / "t.png", said.append)
    title = figures[0]._suptitle.get_text()
    assert "layer maps for 4 of 6 runs; not drawn: c=1.8, c=2" in title, title
    assert any("not drawn: c=1.8, c=2" in s for s in said)


def test_tanh_runs_show_saturation_not_dead_units(out: Path) -> None:
    tanh = initlab.load_runs(out / "tanh-c")
    relu = initlab.load_runs(out / "sweep-c")
    assert plot.for_runs(plot.DEFAULT_METRICS, tanh) == ["act_norm", "grad_norm", "weight_var",
                                                        "saturated_fraction"]
    assert plot.for_runs(plot.DEFAULT_METRICS, relu) == list(plot.DEFAULT_METRICS)
    assert "saturated_fraction" in plot.for_runs(plot.DEFAULT_METRICS, [*relu, *tanh])
    saturated = tanh[1].layer_stat("saturated_fraction", "init")  # c = 4
    assert saturated.shape == (tanh[1].layers["act_norm"].shape[1] - 1,)
    assert np.nanmean(saturated) > np.nanmean(tanh[0].layer_stat("saturated_fraction", "init"))


def test_saturated_fractions_counts_outputs_beyond_the_level() -> None:
    outputs = torch.tensor([[0.0, 0.995, -0.999, 0.5], [1.0, -1.0, 0.98, 0.0]])  # [B=2, n=4]
    groups = [outputs[None, None]]  # [G, K, B, n]: one layer, one member
    assert stats.saturated_fractions(groups).tolist() == [[0.5]]


def watched_runs(folder: Path) -> list:
    """Three watched runs of a small CNN with batch norm at c = 1, 2, 3 (random data)."""
    from torch import nn
    from torch.nn import functional as F

    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 8, 8, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    paths = []
    for c in (1.0, 2.0, 3.0):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
        for m in (model[0], model[4]):
            nn.init.normal_(m.weight, 0.0, (c / m.weight[0].numel()) ** 0.5)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        with initlab.watch(model, folder / f"c={c:g}", every=2) as watch:
            for _ in range(6):
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad()
                watch.step(loss)
        paths.append(watch.path)
    return [initlab.load_run(p) for p in paths]


def test_watched_runs_look_like_initlab_runs(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runs = watched_runs(tmp_path / "watch")
    run = runs[0]
    assert list(plot.initialization_rows(run, np.ones(len(run.records), bool))) == [0]
    assert plot.weight_matrices(run).tolist() == [True, False, True]  # not BatchNorm's gain
    figures = captured_figure(monkeypatch)
    plot.plot_all(runs, tmp_path / "layers.png", tmp_path / "training.png")
    layers, training = figures
    title = layers._suptitle.get_text()
    assert "varying nothing" not in title and "3 watched runs" in title, title
    for ax in layers.axes:
        if ax.get_legend():
            assert "initialization" in [t.get_text() for t in ax.get_legend().get_texts()]
        if ax.get_ylabel() == "n·Var(W_i)":
            for line in ax.lines:
                assert np.isnan(line.get_ydata()[1]), "a BatchNorm gain has no n·Var"
    # No test error was given to watch.step: no panel for it, rather than an empty one.
    titles = [ax.get_title() for ax in training.axes]
    assert not any(t.startswith("test error") for t in titles), titles
