"""Figures small-batch and sync-bn read run directories only: their tables, claims and plots on
hand-made run directories with known numbers (no training here; the recipes train through
``initlab run`` and ``--nproc``, covered by test_distributed.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from initlab import figures_batch as fb
from initlab.config import load_experiment
from initlab.runs import CONFIG_FILE, STATS_FILE, SUMMARY_FILE

pytestmark = pytest.mark.usefixtures("mnist_env")

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "figures"


def fake_run(path: Path, norm: str, batch: int, error: float, seconds: float = 1.0,
             seed: int = 0) -> Path:
    """A finished member directory: its config (the fields the figures read), one final
    record and a summary."""
    path.mkdir(parents=True)
    config = {"model": {"norm": norm, "depth": 10, "width": 100, "activation": "relu",
                        "groups": 5},
              "data": {"train_subset": 4096},
              "train": {"batch_size": batch, "lr": 0.02 * batch / 128, "momentum": 0.9,
                        "epochs": 2, "seed": seed}}
    (path / CONFIG_FILE).write_text(json.dumps(config))  # JSON is YAML
    record = {"step": 1, "epoch": 2, "phase": "final", "loss": 0.5, "train_error": error,
              "test_error": error, "act_norm": [1.0], "grad_norm": [1.0], "weight_var": [1.0],
              "weight_rel_change": [0.1]}
    (path / STATS_FILE).write_text(json.dumps(record) + "\n")
    summary = {"status": "completed", "final_test_error": error, "epochs": 2,
               "wall_seconds": seconds}
    (path / SUMMARY_FILE).write_text(json.dumps(summary))
    return path


def small_batch_dirs(tmp_path: Path) -> list[Path]:
    """BN degrades below b = 16; GN sits at 12-13% everywhere."""
    bn = {2: 0.90, 4: 0.60, 8: 0.30, 16: 0.15, 32: 0.12, 64: 0.11, 128: 0.12}
    dirs = []
    for b in fb.BATCH_SIZES:
        for seed in (0, 1):
            gn = 0.12 + 0.01 * seed
            dirs.append(fake_run(tmp_path / f"b{b}-bn-{seed}", "batch", b, bn[b], seed=seed))
            dirs.append(fake_run(tmp_path / f"b{b}-gn-{seed}", "group", b, gn, seed=seed))
    return dirs


def test_small_batch_claims_measure_the_rise_at_b_2(tmp_path: Path) -> None:
    claims = {c.claim.split(":")[0]: c for c in fb.small_batch_claims(small_batch_dirs(tmp_path))}
    bn_rise = claims["BN's test error rises at small batch"]
    assert bn_rise.value == pytest.approx(0.90 - 0.11) and bn_rise.passed
    gn_level = claims["GN's test error stays level at small batch"]
    assert gn_level.value == pytest.approx(0.0) and gn_level.passed
    assert claims["at b = 2, GN's test error is below BN's"].value == pytest.approx(0.90 - 0.125)


def test_missing_runs_fail_their_claims(tmp_path: Path) -> None:
    claims = fb.small_batch_claims([fake_run(tmp_path / "only", "none", 2, 0.1)])
    assert all(math.isnan(c.value) and not c.passed for c in claims)


def test_sync_bn_claims_read_errors_and_time_per_epoch(tmp_path: Path) -> None:
    dirs = [fake_run(tmp_path / f"{norm}-{seed}", norm, 16, error, seconds=2 * per_epoch,
                     seed=seed)
            for norm, error, per_epoch in (("batch", 0.7, 10.0), ("syncbatch", 0.2, 50.0),
                                           ("group", 0.18, 9.0))
            for seed in (0, 1)]
    claims = fb.sync_bn_claims(dirs)
    assert [c.value for c in claims] == pytest.approx([0.5, 5.0, 0.52, 9.0 / 50.0])
    assert all(c.passed for c in claims)


def test_plots_are_drawn_from_run_directories(tmp_path: Path) -> None:
    small = fb.plot_small_batch(small_batch_dirs(tmp_path / "small"))
    sync = fb.plot_sync_bn([fake_run(tmp_path / "sync" / n, n, 16, 0.2)
                            for n in ("batch", "syncbatch", "group")])
    fb.save(small, tmp_path / "small-batch.png")
    fb.save(sync, tmp_path / "sync-bn.png")
    assert (tmp_path / "small-batch.png").stat().st_size > 0
    assert (tmp_path / "sync-bn.png").stat().st_size > 0


def test_the_recipe_scales_the_learning_rate_linearly_with_the_batch() -> None:
    overrides = fb.small_batch_overrides(CONFIGS / "small-batch.yaml")
    lrs = {}
    for ov in overrides:
        cfg = load_experiment(CONFIGS / "small-batch.yaml", ov).members[0].config
        lrs[cfg.train.batch_size] = cfg.train.lr
    assert sorted(lrs) == list(fb.BATCH_SIZES)
    assert all(lr == pytest.approx(0.02 * b / 128) for b, lr in lrs.items())


def test_figure_configs_split_evenly_over_the_workers() -> None:
    from initlab.distributed import check_launch

    exp = load_experiment(CONFIGS / "sync-bn.yaml")
    check_launch(exp, fb.SYNC_WORKERS, "batches")
    assert exp.base.train.batch_size // fb.SYNC_WORKERS == 4
