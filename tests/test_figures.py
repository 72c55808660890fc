"""``initlab figures``: the quick suite end to end through the CLI, the claim evaluation on
hand-written run directories, and the run cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from initlab import figures as fg
from initlab.cli import app
from initlab.config import RunConfig, config_hash, dump_yaml, set_dotted
from initlab.report import Claim, report_markdown
from initlab.runs import RunWriter

pytestmark = pytest.mark.usefixtures("mnist_env")

# Rows each figure's claims function writes (the claims, and a few more).
EXPECTED_ROWS = {
    "init-norms": 8,
    "trained-variance": 6,
    "layernorm-norms": 1,
    "batchnorm-norms": 1,
    "zero-init": 4,
    "weights-move-little": 3,
    "trained-norms": 5,
    "regularization": 2,
    "batchnorm-eval": 2,
}
# Issue 6's figures: trained through their own recipes (tests/test_figures_batch.py checks
# their claims, tests/test_distributed.py the 4-worker path); left out of the quick suite
# below to keep `make test` short.
BATCH_FIGURES = ("small-batch", "sync-bn")


def report_rows(text: str) -> list[list[str]]:
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip(" |`*") for cell in row] for row in rows]


def test_registry_lists_nine_figures_with_their_configs() -> None:
    assert list(fg.FIGURES) == [*EXPECTED_ROWS, *BATCH_FIGURES]
    for figure in fg.FIGURES.values():
        for stem in figure.configs:
            assert (fg.CONFIG_DIR / f"{stem}.yaml").is_file()


def test_quick_suite_writes_every_figure_and_claim(tmp_path: Path) -> None:
    out, cache = tmp_path / "figures", tmp_path / "cache"
    args = ["figures", "--quick", "--out", str(out), "--cache", str(cache)]
    only = [arg for name in EXPECTED_ROWS for arg in ("--only", name)]
    result = CliRunner().invoke(app, args + only)
    assert result.exit_code == 0, result.output
    for name in EXPECTED_ROWS:
        for suffix in (".png", ".svg"):
            path = out / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    report = (out / fg.REPORT_FILE).read_text()
    assert fg.Mode(quick=True).banner in report
    rows = report_rows(report)
    for name, count in EXPECTED_ROWS.items():
        assert sum(row[0] == name for row in rows) == count, name
    assert all(row[-1] in ("PASS", "FAIL") for row in rows)
    # Quick runs cannot reach 5%: a FAIL is written as measured, never hidden.
    assert any(row[-1] == "FAIL" for row in rows)
    # Zero init is exact whatever the budget.
    zero = [row for row in rows if row[0] == "zero-init"]
    assert zero[0][-1] == "PASS" and zero[1][-1] == "PASS"
    # A second call trains nothing: every run is in the cache.
    again = CliRunner().invoke(app, args + ["--only", "zero-init"])
    assert again.exit_code == 0, again.output
    assert "training 0" in again.output


def test_unknown_figure_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["figures", "--only", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "init-norms" in result.output and "batchnorm-eval" in result.output
    assert not any(tmp_path.iterdir())


def test_set_and_max_group_reach_every_run(tmp_path: Path) -> None:
    """--set changes every figure's config (and so its cache entry); --max-group 1 trains
    one model at a time."""
    import json

    out, cache = tmp_path / "figures", tmp_path / "cache"
    args = ["figures", "--quick", "--only", "init-norms", "--out", str(out), "--cache",
            str(cache), "--set", "train.backward=autograd", "--max-group", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = (out / fg.REPORT_FILE).read_text()
    assert "`--set train.backward=autograd`" in report and "`--max-group`" in report
    runs = [p for p in cache.iterdir() if p.is_dir()]
    assert len(runs) == 3  # c = 1, 2, 3
    for run in runs:
        assert "backward: autograd" in (run / "config.yaml").read_text()
        assert json.loads((run / "summary.json").read_text())["members_in_group"] == 1


def test_a_bad_set_max_group_or_jobs_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["figures", "--quick", "--only", "init-norms", "--out",
                                      str(tmp_path / "f"), "--cache", str(tmp_path / "c"),
                                      "--set", "train.backward=never"])
    assert result.exit_code == 2
    assert "train.backward" in result.output
    zero = CliRunner().invoke(app, ["figures", "--quick", "--out", str(tmp_path / "f"),
                                    "--max-group", "0"])
    assert zero.exit_code == 2 and "--max-group" in zero.output
    no_jobs = CliRunner().invoke(app, ["figures", "--quick", "--out", str(tmp_path / "f"),
                                       "--jobs", "0"])
    assert no_jobs.exit_code == 2 and "--jobs" in no_jobs.output
    assert not any(tmp_path.iterdir())


# --- Claims on hand-written run directories ------------------------------------------------

L = 50


def write_run(path: Path, c: float, act: list[float], grad: list[float]) -> Path:
    """A run directory holding one init record and a completed summary."""
    cfg = set_dotted(RunConfig(name="init-norms"), "init.c", c)
    writer = RunWriter(path)
    writer.write_config(dump_yaml(cfg))
    record = {"step": 0, "epoch": 0, "phase": "init", "loss": 2.3, "train_error": 0.9,
              "test_error": 0.9, "act_norm": act, "grad_norm": grad,
              "weight_var": [c / 100] * L, "weight_rel_change": [0.0] * L}
    writer.append_stats([record])
    writer.write_summary({"status": "completed", "steps": 0, "epochs": 0,
                          "final_test_error": 0.9})
    return path


def test_init_claims_pass_and_fail_from_run_directories(tmp_path: Path) -> None:
    # c = 1 vanishes and c = 2 stays level as the lecture says; c = 3 grows only 10x (FAIL),
    # and c = 3's gradients span 100x (FAIL).
    runs = [
        write_run(tmp_path / "c1", 1.0, [10 * 0.5**i for i in range(L)], [1e-4] * L),
        write_run(tmp_path / "c2", 2.0, [10.0] * L, [1.0 + i / L for i in range(L)]),
        write_run(tmp_path / "c3", 3.0, [10 * 10 ** (i / (L - 1)) for i in range(L)],
                  [10.0 ** (2 * i / (L - 1)) for i in range(L)]),
    ]
    inp = fg.FigureInput("init-norms", {"init-norms": runs})
    claims = {c.claim: c for c in fg.FIGURES["init-norms"].claims(inp)}
    verdicts = [c.verdict for c in claims.values()]
    assert "PASS" in verdicts and "FAIL" in verdicts
    ratio = [c for t, c in claims.items() if t.startswith("c = 2: ‖Z_50‖")][0]
    assert ratio.passed and ratio.value == pytest.approx(1.0)
    vanish = [c for t, c in claims.items() if t.startswith("c = 1: ‖Z_50‖")][0]
    assert vanish.passed and vanish.value == pytest.approx(0.5**49)
    explode = [c for t, c in claims.items() if t.startswith("c = 3: ‖Z_50‖")][0]
    assert not explode.passed and explode.value == pytest.approx(10.0)
    spread = [c for t, c in claims.items() if t.startswith("c = 3: gradient")][0]
    assert not spread.passed and spread.value == pytest.approx(100.0)
    assert len(claims) == EXPECTED_ROWS["init-norms"]  # every claim text is distinct
    markdown = report_markdown(list(claims.values()), "t", [])
    assert markdown.count("| PASS |") + markdown.count("| **FAIL** |") == len(claims)


def test_claim_thresholds_and_missing_numbers() -> None:
    assert Claim("f", "x", 0.5, "<", 1.0).passed
    assert not Claim("f", "x", 1.0, "<", 1.0).passed
    assert Claim("f", "x", 1.0, "<=", 1.0).passed
    assert Claim("f", "x", 5.0, "in", (0.1, 10.0)).passed
    assert not Claim("f", "x", 50.0, "in", (0.1, 10.0)).passed
    missing = Claim("f", "x", math.nan, ">", 0.0)
    assert not missing.passed and missing.measured == "n/a"
    assert Claim("f", "x", 0.0123, "<", 0.05, unit="%").measured == "1.23%"


# --- The cache ------------------------------------------------------------------------------


def test_unfinished_cached_runs_are_retrained(tmp_path: Path, monkeypatch) -> None:
    done = set_dotted(RunConfig(name="a"), "train.epochs", 0)
    cut = set_dotted(done, "init.c", 3.0)
    for cfg, status in ((done, "completed"), (cut, "interrupted")):
        writer = RunWriter(tmp_path / config_hash(cfg))
        writer.write_config(dump_yaml(cfg))
        writer.append_stats([])
        writer.write_summary({"status": status})
        (writer.path / "stale.txt").write_text("from the interrupted run")
    trained: list[Path] = []

    def fake_run_jobs(jobs, workers, progress):
        for job in jobs:
            configs, paths, data_root = job.args
            trained.extend(paths)
            for path in paths:
                RunWriter(path).write_summary({"status": "completed"})

    monkeypatch.setattr(fg, "run_jobs", fake_run_jobs)
    paths, n_trained, n_cached = fg.ensure_runs({"a": [done, cut, done]}, tmp_path, None,
                                                log=lambda m: None)
    assert paths["a"] == [tmp_path / config_hash(c) for c in (done, cut, done)]
    assert trained == [tmp_path / config_hash(cut)] and (n_trained, n_cached) == (1, 1)
    assert not (tmp_path / config_hash(cut) / "stale.txt").exists()  # started afresh
    assert (tmp_path / config_hash(cut) / "config.yaml").read_text() == dump_yaml(cut)
