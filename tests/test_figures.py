"""``initlab figures`` end to end on real MNIST: the registry, the quick suite through the CLI,
its options, and the batch-size figures' runs in the one hash cache (tests/test_figures_claims.py
checks the claims on hand-written run directories)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from typer.testing import CliRunner

from initlab.cli import app
from initlab.config import config_hash
from initlab.errors import UsageError
from initlab.figures import (
    FIGURES,
    REPORT_FILE,
    SHIFTED_TITLE,
    build_figures,
    check_output,
    run_sets,
)
from initlab.figures.cache import LAUNCH_PREFIX
from initlab.figures.core import (
    CONFIG_DIR,
    QUICK_SEEDS,
    Figure,
    FigureInput,
    Mode,
    new_figure,
    seed_of,
)
from initlab.figures.small_batch import BATCH_SIZES
from initlab.reference import REPORT
from initlab.report import Claim, read_report_rows
from initlab.runs import CONFIG_FILE, SUMMARY_FILE

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

pytestmark = pytest.mark.usefixtures("mnist_env")

# Each figure's rows (claims and checks) as its module declares them (``Figure.rows``): a new
# or changed figure is tested against its own declaration, not against the committed report,
# which is the last full run's and may predate it.
EXPECTED_ROWS = {name: figure.rows for name, figure in FIGURES.items()}
COMMITTED = read_report_rows(REPORT.read_text(encoding="utf-8"), checks=True)
# Trained by their own recipes (lr scaled per batch size; 4 processes): the cache test below
# trains them a few steps each, and the quick suite leaves them out to keep `make test` short.
BATCH_FIGURES = ("small-batch", "sync-bn")
# `make test-all` draws these, `make test` the others: over 30 s each on 2 idle cores (the
# 50-layer normalized nets of norm-spread, normalized-gradients and normalized-training,
# dropout's overfitting runs), those that read their runs (trained-norms, batchnorm-eval,
# feature-drift), and the largest grids (trainability, weight-standardization), whose claims and
# plots `make test` checks on hand-written run directories (tests/test_figures_theory.py,
# tests/test_claims_over_seeds.py).
SLOW_FIGURES = ("norm-spread", "normalized-gradients", "normalized-training", "feature-drift",
                "trained-norms", "dropout", "batchnorm-eval", "trainability",
                "weight-standardization")
QUICK_SUITE = [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_FIGURES else [])
               for name in FIGURES if name not in BATCH_FIGURES]


def report_rows(text: str) -> list[list[str]]:
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip(" |`*") for cell in row] for row in rows]


def test_registry_lists_every_figure_with_its_configs() -> None:
    assert list(FIGURES)[:3] == ["init-norms", "trainability", "zero-init"]  # the order
    assert all(EXPECTED_ROWS[name] > 0 for name in FIGURES), \
        "every figure declares its rows (Figure.rows)"
    # The committed report is a full run's: every figure it has is still registered.
    assert {row.figure for row in COMMITTED} <= set(FIGURES)
    for figure in FIGURES.values():
        for stem in figure.configs:
            assert (CONFIG_DIR / f"{stem}.yaml").is_file()
    # Each config stem expands once, whichever figures read it.
    stems = [s.stem for s in run_sets(list(FIGURES.values()), Mode(quick=True))]
    assert len(stems) == len(set(stems)) == len(list(CONFIG_DIR.glob("*.yaml")))


@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run cache for the quick suite's figures, and the other quick runs of this file:
    runs that several figures (or tests) read train once."""
    return tmp_path_factory.mktemp("quick-cache")


@pytest.mark.parametrize("name", QUICK_SUITE)
def test_quick_figure_writes_its_files_and_claims(name: str, tmp_path: Path,
                                                  quick_cache: Path) -> None:
    out = tmp_path / "figures"
    # One job: an xdist worker has one core, so a pool of job processes would only add their
    # start-up (tests/test_jobs.py tests the pool).
    args = ["figures", "--quick", "--out", str(out), "--cache", str(quick_cache), "--jobs", "1"]
    result = CliRunner().invoke(app, [*args, "--only", name])
    assert result.exit_code == 0, result.output
    for suffix in (".png", ".svg"):
        path = out / f"{name}{suffix}"
        assert path.is_file() and path.stat().st_size > 1000, path
    report = (out / REPORT_FILE).read_text()
    assert Mode(quick=True).banner in report
    rows = report_rows(report)
    assert sum(row[0] == name for row in rows) == EXPECTED_ROWS[name], name
    assert all(row[-1] in ("PASS", "FAIL", "INCONCLUSIVE") for row in rows)
    # Every row says whose claim it is, and the report opens with the figure's summary.
    kinds = ("lecture", "paper", "initlab's hypothesis")
    assert all(row[2].split("*")[0] in kinds for row in rows), [r[2] for r in rows]
    assert f"**[{name}]({name}.png)**" in report[: report.index("## Claims")]
    if name == "zero-init":  # zero init is exact whatever the budget
        assert rows[0][-1] == "PASS" and rows[1][-1] == "PASS"
        # A second call trains nothing: every run is in the cache.
        again = CliRunner().invoke(app, [*args, "--only", name])
        assert again.exit_code == 0, again.output
        assert "training 0" in again.output


def test_a_rerun_on_disjoint_seeds_keeps_every_verdict(tmp_path: Path,
                                                      quick_cache: Path) -> None:
    """--seed-offset shifts every seed: zero-init's runs on seeds 0-2 and on 1000-1002 (quick
    mode keeps three) are different runs, and every row keeps its verdict (issue 19). (The
    quick suite's cache: its zero-init runs are those of offset 0.)"""
    cache = quick_cache
    verdicts = []
    for offset in (0, 1000):
        out = tmp_path / f"offset{offset}"
        args = ["figures", "--quick", "--only", "zero-init", "--out", str(out), "--cache",
                str(cache), "--seed-offset", str(offset), "--jobs", "1"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = report_rows((out / REPORT_FILE).read_text())
        assert rows and all("3 seeds" in row[3] for row in rows), rows
        verdicts.append([(row[1], row[-1]) for row in rows])
    assert verdicts[0] == verdicts[1]
    configs = [yaml.safe_load((path / CONFIG_FILE).read_text()) for path in cache.iterdir()]
    seeds = sorted(int(c["train"]["seed"]) for c in configs if c["name"] == "zero-init")
    assert seeds == [0, 1, 2, 1000, 1001, 1002]


def test_unknown_figure_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["figures", "--only", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "init-norms" in result.output and "sync-bn" in result.output
    assert not any(tmp_path.iterdir())


def test_set_and_max_group_reach_every_run(tmp_path: Path) -> None:
    """--set changes every figure's config (and so its cache entry); --max-group 1 trains
    one model at a time."""
    out, cache = tmp_path / "figures", tmp_path / "cache"
    args = ["figures", "--quick", "--only", "layernorm-norms", "--out", str(out), "--cache",
            str(cache), "--set", "train.backward=autograd", "--max-group", "1", "--jobs", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = (out / REPORT_FILE).read_text()
    assert "`--set train.backward=autograd`" in report and "`--max-group`" in report
    runs = [p for p in cache.iterdir() if p.is_dir()]
    assert len(runs) == 6  # c = 1, 2, 3 with layer norm, and init-norms' (the plain net's)
    for run in runs:
        assert "backward: autograd" in (run / CONFIG_FILE).read_text()
        assert json.loads((run / SUMMARY_FILE).read_text())["members_in_group"] == 1


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


@pytest.mark.slow  # 4 launched processes and 28 groups: over a minute on 2 idle cores
def test_batch_figures_land_in_the_one_hash_cache(tmp_path: Path) -> None:
    """small-batch (one config per batch size) and sync-bn (4 launched processes splitting
    every batch) train a few steps each into ``<cache>/<config hash>/``, like every figure."""
    cache, out = tmp_path / "cache", tmp_path / "figures"
    mode = Mode(quick=True, overrides=("train.max_steps=2",))
    result = build_figures(list(BATCH_FIGURES), quick=True, out=out, cache=cache,
                           overrides=mode.overrides, log=lambda m: None)
    expected = {s.stem: s.configs for s in run_sets([FIGURES[n] for n in BATCH_FIGURES], mode)}
    seeds = {cfg.train.seed for cfg in expected["small-batch"]}
    assert len(seeds) == QUICK_SEEDS  # quick mode keeps the first seeds
    assert len(expected["small-batch"]) == 4 * QUICK_SEEDS * len(BATCH_SIZES)  # 4 norms per b
    assert len(expected["sync-bn"]) == 3 * QUICK_SEEDS  # BN, SyncBN, GN per seed
    hashes = {config_hash(cfg) for configs in expected.values() for cfg in configs}
    assert {p.name for p in cache.iterdir()} == hashes  # no sweep or launch directory left
    assert result.trained == len(hashes) and result.cached == 0
    for stem, configs in expected.items():
        for cfg in configs:
            summary = json.loads((cache / config_hash(cfg) / SUMMARY_FILE).read_text())
            assert summary["status"] == "completed"
            assert summary["threads"] == 1  # one thread per group, and per sync-bn worker
            # The seeds stack per norm (and batch size), as before the one cache.
            assert summary["members_in_group"] == QUICK_SEEDS, stem
    rows = report_rows((out / REPORT_FILE).read_text())
    for name in BATCH_FIGURES:
        assert sum(row[0] == name for row in rows) == EXPECTED_ROWS[name]
    assert not any(p.name.startswith(LAUNCH_PREFIX) for p in cache.iterdir())
    again = build_figures(list(BATCH_FIGURES), quick=True, out=out, cache=cache,
                          overrides=mode.overrides, log=lambda m: None)
    assert (again.trained, again.cached) == (0, len(hashes))


def test_a_full_rerun_on_shifted_seeds_may_redraw_its_own_folder(tmp_path: Path) -> None:
    """A report written with --seed-offset is redrawn by the same full rerun (after a change
    to a figure's claims); a partial run still never replaces it."""
    (tmp_path / REPORT_FILE).write_text("# initlab figures: the lectures' claims, measured"
                                        f"{SHIFTED_TITLE} 1000\n")
    check_output(tmp_path, partial=False, shifted=True)
    with pytest.raises(UsageError, match="--quick or --only"):
        check_output(tmp_path, partial=True, shifted=True)


def test_a_quick_or_partial_run_never_replaces_the_reference(tmp_path: Path, monkeypatch,
                                                             quick_cache: Path) -> None:
    """D2: --quick and --only overwrote figures/REPORT.md (137 lines) with a 22-line QUICK
    report of one figure, without a word."""
    reference = tmp_path / "figures"
    reference.mkdir()
    (reference / REPORT_FILE).write_text("# initlab figures: the lectures' claims, measured\n")
    (reference / "init-norms.png").write_bytes(b"the reference")
    for args in (["--quick"], ["--only", "init-norms"], ["--seed-offset", "1000"]):
        result = CliRunner().invoke(app, ["figures", *args, "--out", str(reference)])
        assert result.exit_code == 2 and "is a full report" in result.output, result.output
    assert (reference / "init-norms.png").read_bytes() == b"the reference"
    monkeypatch.chdir(tmp_path)  # without --out, a quick run draws elsewhere
    result = CliRunner().invoke(app, ["figures", "--quick", "--only", "init-norms",
                                      "--cache", str(quick_cache), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "figures-preview" / "init-norms.png").is_file()
    assert (reference / "init-norms.png").read_bytes() == b"the reference"


def test_an_output_that_is_a_file_is_refused_before_any_training(tmp_path: Path) -> None:
    """C9: `figures --out FILE` trained, then failed with FileExistsError."""
    target = tmp_path / "a-file"
    target.write_text("")
    result = CliRunner().invoke(app, ["figures", "--out", str(target),
                                      "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "is a file, expected a directory" in result.output
    assert not (tmp_path / "cache").exists()


def test_an_inconclusive_figure_gets_more_seeds_up_to_its_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adaptive-seeds rule end to end: a figure whose row stays INCONCLUSIVE after its
    recipe's 5 seeds trains 5 more (the next integers), is evaluated on all 10, and stops at
    its cap (zero-init's recipe, 1 step each)."""
    def claims(inp: FigureInput) -> list[Claim]:  # a row that straddles 0 on any seed count
        seed = seed_of(inp.runs("zero-init")[0])
        return [Claim(inp.name, "open", float(seed % 2) - 0.5, ">", 0.0, method="t")]

    def plot(inp: FigureInput) -> MplFigure:
        return new_figure(inp, "open", 1)[0]

    figure = Figure("open-row", "", ("zero-init",), plot, claims, rows=1, seed_cap=10)
    monkeypatch.setitem(FIGURES, "open-row", figure)
    monkeypatch.setattr("initlab.figures.FIGURES", {"open-row": figure})
    result = build_figures(["open-row"], out=tmp_path / "f", cache=tmp_path / "c",
                           overrides=("train.max_steps=1", "data.test_subset=200",
                                      "model.depth=3", "log.every=0"),
                           log=lambda m: None)
    (row,) = result.claims
    assert row.seeds == 10 and row.verdict == "INCONCLUSIVE"
    assert "10 seeds" in row.measured
    seeds = sorted(int(yaml.safe_load((p / CONFIG_FILE).read_text())["train"]["seed"])
                   for p in (tmp_path / "c").iterdir())
    assert seeds == list(range(10)) and result.trained == 10
