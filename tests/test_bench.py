"""Smoke tests of ``initlab bench``: every contender runs and reports a positive time. No
assertion on speed: speed is shown by the benchmark itself, never by timed tests. The watch
section's statistics are checked against the plain hooks' on the same steps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from initlab.bench import (
    WATCH_MODELS,
    BenchSettings,
    ItemHooks,
    TinyTransformer,
    contenders,
    flops_per_step,
    markdown_table,
    run_bench,
    settings_for,
    watch_batches,
    watch_loss,
)
from initlab.cli import app
from initlab.errors import UsageError
from initlab.runs import STATS_FILE, read_stats
from initlab.watching import Watch

pytestmark = pytest.mark.usefixtures("mnist_env")

ROW_KEYS = {"key", "name", "members", "steps", "seconds_per_step", "seconds_per_epoch",
            "seconds_per_epoch_per_model", "speedup_vs_plain", "cost_vs_one", "gflops", "extra"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    settings = settings_for("cpu", steps=2, warmup=1, blocks=1, sweeps=[3], watch_block=2,
                            watch_rounds=1)
    text = io.StringIO()
    returned = run_bench(settings, out, Console(file=text, width=200))
    assert json.loads(out.read_text()) == returned
    return returned, out, text.getvalue()


def test_every_contender_has_a_positive_time(result: tuple[dict, Path, str]) -> None:
    res, _, _ = result
    rows = {r["key"]: r for r in res["rows"]}
    watch_keys = [f"{m}{v}" for m in WATCH_MODELS
                  for v in ("", "_watch", "_watch_sparse", "_hooks")]
    assert list(rows) == ["plain", "one", "one_stats", "one_autograd", "sweep3", *watch_keys]
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert row["seconds_per_step"] > 0 and row["gflops"] > 0 and row["steps"] >= 1
        assert row["seconds_per_epoch"] == pytest.approx(row["seconds_per_step"] * 468)
        assert row["seconds_per_epoch_per_model"] == pytest.approx(
            row["seconds_per_epoch"] / row["members"])
        if "model" in row["extra"]:  # another network: no speedup against the plain MLP
            assert row["speedup_vs_plain"] is None
            base = rows[row["extra"]["model"]]
            assert row["cost_vs_one"] == pytest.approx(row["seconds_per_step"]
                                                       / base["seconds_per_step"])
        else:
            assert row["speedup_vs_plain"] > 0
    assert rows["plain"]["speedup_vs_plain"] == pytest.approx(1.0)
    assert rows["plain"]["cost_vs_one"] is None
    assert rows["one"]["cost_vs_one"] == pytest.approx(1.0)
    assert rows["sweep3"]["members"] == 3
    assert rows["one_stats"]["extra"]["stats_every_step"] is True
    assert rows["one"]["extra"]["hand_written_backward"] is True
    assert rows["one_autograd"]["extra"]["hand_written_backward"] is False
    assert rows["one_autograd"]["name"] == "initlab ×1, autograd"
    assert rows["cnn_watch"]["extra"]["every"] == 1 and rows["cnn"]["extra"]["every"] is None
    assert rows["attn_watch_sparse"]["extra"]["every"] == 2  # watch_block in this test
    assert rows["cnn_hooks"]["steps"] == 2


def test_json_describes_machine_settings_and_goals(result: tuple[dict, Path, str]) -> None:
    res, _, _ = result
    machine = res["machine"]
    for key in ("cpu", "cores", "torch", "device", "device_name", "date"):
        assert machine[key]
    assert machine["device"] == "cpu"
    assert res["settings"]["steps_per_epoch"] == 468
    assert res["settings"]["batch_size"] == 128
    goals = {g["goal"].split(" <=")[0].split(" >=")[0] for g in res["goals"]}
    # sweep9 was not timed, and watch every 100 steps neither (every 2 here), so their goals
    # are skipped rather than reported wrongly
    assert goals == {"statistics every step cost", "one config speedup vs plain",
                     "initlab.watch every step cost (cnn)",
                     "initlab.watch every step cost (attn)"}
    assert res["settings"]["sections"] == ["mlp", "watch"]
    assert all(isinstance(g["met"], bool) for g in res["goals"])


def test_table_is_printed(result: tuple[dict, Path, str]) -> None:
    res, out, text = result
    assert "plain PyTorch" in text and "initlab ×3" in text and f"wrote {out}" in text
    assert "CNN (MNIST) + watch, every step" in text
    md = markdown_table(res).splitlines()
    assert len(md) == 2 + 1 + 2 + len(res["rows"])  # two tables, a blank line between


def test_flops_count_the_matrix_products() -> None:
    from initlab.bench import bench_config

    cfg = bench_config(torch.device("cpu"))
    macs = 784 * 100 + 48 * 100 * 100 + 100 * 10
    assert flops_per_step(cfg, 1) == 6 * macs * 128
    assert flops_per_step(cfg, 9) == 9 * flops_per_step(cfg, 1)


def test_cuda_adds_eager_rows_and_cpu_times_fewer_steps_for_big_sweeps() -> None:
    cuda = BenchSettings(device=torch.device("cuda"))
    keys = [key for key, *_ in contenders(cuda)]
    assert keys == ["one", "one_stats", "one_autograd", "sweep9", "sweep81", "one_eager",
                    "sweep81_eager"]
    assert cuda.steps_for(81) == (cuda.warmup, cuda.steps)
    cpu = BenchSettings(device=torch.device("cpu"), steps=120, warmup=10, blocks=12)
    assert cpu.steps_for(9) == (10, 120)
    assert cpu.steps_for(81) == (3, 40)


def test_cli_rejects_an_unknown_device(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["bench", "--device", "tpu", "--out", str(tmp_path / "b.json")])
    assert res.exit_code == 2
    assert not (tmp_path / "b.json").exists()


def test_only_a_section_and_unknown_sections() -> None:
    assert settings_for("cpu", only=["watch"]).sections == ("watch",)
    assert settings_for("cpu").sections == ("mlp", "watch")
    with pytest.raises(UsageError, match="--only: unknown section gpu"):
        settings_for("cpu", only=["gpu"])


def test_plain_hooks_measure_what_watch_records(tmp_path: Path) -> None:
    """The bench's plain-hooks contender computes the same statistics as initlab.watch (the
    comparison is like for like), here on the transformer's first two steps."""
    torch.manual_seed(0)
    watched, plain = TinyTransformer(depth=1), TinyTransformer(depth=1)
    plain.load_state_dict(watched.state_dict())
    hooks = ItemHooks(plain)
    batches = watch_batches("attn", torch.device("cpu"), None)
    data = [next(batches) for _ in range(2)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in (watched, plain)]
    with Watch(watched, tmp_path / "w", every=1) as watch:
        for x, y in data:
            for model, opt in zip((watched, plain), optimizers, strict=True):
                loss = watch_loss(model, x, y)
                loss.backward()
                if model is plain:
                    hooks.after_backward()
                opt.step()
                if model is plain:
                    hooks.after_step()
                opt.zero_grad()
            watch.step(loss)
    hooks.remove()
    records = read_stats(watch.path / STATS_FILE)
    for record, plain_record in zip(records, hooks.history, strict=True):
        for key in ("act_norm", "act_norm_cv", "grad_norm", "weight_norm",
                    "weight_rel_change", "update_ratio", "dead_fraction"):
            got = [v for v in record[key] if v is not None]
            assert got == pytest.approx(plain_record[key], rel=1e-4, abs=1e-6), key


def test_the_threads_section_times_whole_runs_idle_and_busy(
        mnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two of its cases, one round of a few updates: each row is a whole command's time, and
    'vs best' compares cases within one situation (idle with idle, busy with busy)."""
    from initlab import bench_threads

    monkeypatch.setattr(bench_threads, "CASES", ((1, "idle", "default"), (2, "idle", "passive"),
                                                 (1, "busy", "default")))
    lines: list[str] = []
    rows = bench_threads.time_threads(3, 1, str(mnist_root), lines.append)
    assert [(r.threads, r.situation, r.wait) for r in rows] == list(bench_threads.CASES)
    assert all(r.seconds > 0 and r.rounds == [round(r.seconds, 2)] for r in rows)
    idle = [r.vs_best for r in rows if r.situation == "idle"]
    assert min(idle) == 1.0 and max(idle) >= 1.0
    assert rows[2].vs_best == 1.0  # alone in its situation
    assert len(lines) == 3 and "busy" in lines[2]
    result = bench_threads.threads_result(rows, 3, 1)
    assert len(result["rows"]) == 3 and "busy loop" in result["method"]
