"""The figures read run directories only: their claims and plots on hand-written run directories
with known numbers, the recipes' configs, and the run cache's bookkeeping. No MNIST, no training
(tests/test_figures.py trains)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import initlab
from initlab.config import RunConfig, config_hash, dump_yaml, load_experiment, set_dotted
from initlab.distributed import check_launch
from initlab.figures import FIGURES, small_batch, sync_bn
from initlab.figures import cache as figure_cache
from initlab.figures.core import (
    CHANCE_ERROR,
    CONFIG_DIR,
    QUICK_EPOCHS,
    QUICK_SEEDS,
    QUICK_TEST_IMAGES,
    QUICK_TRAIN_IMAGES,
    FigureInput,
    Launch,
    Mode,
    RunSet,
    outcome_error,
    save_figure,
)
from initlab.jobs import Job
from initlab.progress import ProgressFactory
from initlab.report import Claim, compare_verdicts, read_report_rows, report_markdown
from initlab.runs import CONFIG_FILE, STATS_FILE, SUMMARY_FILE, RunWriter

L = 50


# --- init-norms -----------------------------------------------------------------------------------


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
    inp = FigureInput("init-norms", {"init-norms": runs, "init-norms-seeds": []})
    claims = {c.claim: c for c in FIGURES["init-norms"].claims(inp)}
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
    assert len(claims) == 11  # every claim text is distinct
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


# --- small-batch and sync-bn ----------------------------------------------------------------------


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
              "test_error": error, "act_norm": [1.0] * 10, "grad_norm": [1.0] * 10,
              "weight_var": [1.0] * 10,
              "weight_rel_change": [0.1] * 10}
    (path / STATS_FILE).write_text(json.dumps(record) + "\n")
    summary = {"status": "completed", "final_test_error": error, "epochs": 2,
               "wall_seconds": seconds}
    (path / SUMMARY_FILE).write_text(json.dumps(summary))
    return path


def small_batch_input(tmp_path: Path) -> FigureInput:
    """BN degrades below b = 16; GN sits at 12-13% everywhere."""
    bn = {2: 0.90, 4: 0.60, 8: 0.30, 16: 0.15, 32: 0.12, 64: 0.11, 128: 0.12}
    dirs = []
    for b in small_batch.BATCH_SIZES:
        for seed in (0, 1):
            gn = 0.12 + 0.01 * seed
            dirs.append(fake_run(tmp_path / f"b{b}-bn-{seed}", "batch", b, bn[b], seed=seed))
            dirs.append(fake_run(tmp_path / f"b{b}-gn-{seed}", "group", b, gn, seed=seed))
    return FigureInput("small-batch", {"small-batch": dirs})


def test_small_batch_claims_measure_the_rise_at_b_2(tmp_path: Path) -> None:
    claims = {c.claim.split(":")[0]: c
              for c in FIGURES["small-batch"].claims(small_batch_input(tmp_path))}
    bn_rise = claims["BN's test error rises at small batch"]
    assert bn_rise.value == pytest.approx(0.90 - 0.11) and bn_rise.passed
    gn_level = claims["GN's test error stays level at small batch"]
    assert gn_level.value == pytest.approx(0.0) and gn_level.passed
    assert claims["at b = 2, GN's test error is below BN's"].value == pytest.approx(0.90 - 0.125)


def test_missing_runs_fail_their_claims(tmp_path: Path) -> None:
    inp = FigureInput("small-batch", {"small-batch": [fake_run(tmp_path / "only", "none", 2,
                                                               0.1)]})
    claims = FIGURES["small-batch"].claims(inp)
    assert all(math.isnan(c.value) and not c.passed for c in claims)


def test_sync_bn_claims_read_errors_and_time_per_epoch(tmp_path: Path) -> None:
    dirs = [fake_run(tmp_path / f"{norm}-{seed}", norm, 16, error, seconds=2 * per_epoch,
                     seed=seed)
            for norm, error, per_epoch in (("batch", 0.7, 10.0), ("syncbatch", 0.2, 50.0),
                                           ("group", 0.18, 9.0))
            for seed in (0, 1)]
    claims = FIGURES["sync-bn"].claims(FigureInput("sync-bn", {"sync-bn": dirs}))
    assert [c.value for c in claims] == pytest.approx([0.5, 5.0, 0.52, 9.0 / 50.0])
    assert all(c.passed for c in claims)


def test_plots_are_drawn_from_run_directories(tmp_path: Path) -> None:
    small = FIGURES["small-batch"].plot(small_batch_input(tmp_path / "small"))
    sync_dirs = [fake_run(tmp_path / "sync" / n, n, 16, 0.2)
                 for n in ("batch", "syncbatch", "group")]
    sync = FIGURES["sync-bn"].plot(FigureInput("sync-bn", {"sync-bn": sync_dirs}, "QUICK"))
    files = save_figure(small, tmp_path / "out", "small-batch")
    files += save_figure(sync, tmp_path / "out", "sync-bn")
    assert all(path.stat().st_size > 1000 for path in files)


# --- Recipes --------------------------------------------------------------------------------------


def test_the_small_batch_recipe_scales_the_learning_rate_linearly_with_the_batch() -> None:
    run_set = FIGURES["small-batch"].recipe("small-batch", Mode())
    lrs: dict[int, list[float]] = {}
    for cfg in run_set.configs:
        lrs.setdefault(cfg.train.batch_size, []).append(cfg.train.lr)
    assert sorted(lrs) == list(small_batch.BATCH_SIZES)
    for b, lr in lrs.items():
        assert lr == pytest.approx([0.02 * b / 128] * 20)  # 5 seeds x 4 norms
    assert run_set.threads == 1 and run_set.launch is None


def test_the_sync_bn_recipe_launches_the_configs_it_expands() -> None:
    mode = Mode(quick=True, overrides=("train.momentum=0.5",))
    run_set = FIGURES["sync-bn"].recipe("sync-bn", mode)
    launch = run_set.launch
    assert isinstance(launch, Launch) and launch.nproc == sync_bn.WORKERS
    launched = load_experiment(launch.source, launch.overrides)  # what its workers will train
    assert tuple(m.config for m in launched.members) == run_set.configs
    assert all(cfg.train.momentum == 0.5 for cfg in run_set.configs)
    check_launch(launched, launch.nproc, "batches")
    assert launched.base.train.batch_size // launch.nproc == 4


def test_a_seed_offset_shifts_every_seed_of_every_recipe() -> None:
    """--seed-offset: every config of every figure, its base seed and its seed sweep, moves by
    the offset and nothing else changes; the two seed sets are disjoint."""
    for figure in FIGURES.values():
        for stem in figure.configs:
            reference = figure.recipe(stem, Mode())
            shifted = figure.recipe(stem, Mode(seed_offset=1000))
            assert len(shifted.configs) == len(reference.configs), stem
            for before, after in zip(reference.configs, shifted.configs, strict=True):
                assert after.train.seed == before.train.seed + 1000, stem
                assert set_dotted(before, "train.seed", after.train.seed).model == after.model
                assert (set_dotted(before, "train.seed", after.train.seed).train
                        == after.train), stem


def test_claims_over_seeds_pass_fail_or_stay_inconclusive() -> None:
    """A claim over seeds: PASS when its whole interval is on its side, FAIL when wholly on the
    other, INCONCLUSIVE otherwise, for every kind of threshold; checks are not counted."""
    def over(op: str, bound: float | tuple[float, float], low: float, high: float) -> str:
        return Claim("f", "c", (low + high) / 2, op, bound, interval=(low, high),
                     seeds=5).verdict

    assert over(">", 0.0, 0.1, 0.2) == "PASS"
    assert over(">", 0.0, -0.2, -0.1) == "FAIL"
    assert over(">", 0.0, -0.1, 0.1) == "INCONCLUSIVE"
    assert over("in", (1.0, 2.0), 1.2, 1.8) == "PASS"
    assert over("in", (1.0, 2.0), 2.1, 2.5) == "FAIL"
    assert over("in", (1.0, 2.0), 0.5, 1.5) == "INCONCLUSIVE"
    assert over("==", 0.0, 0.0, 0.0) == "PASS"
    assert over("==", 0.0, 0.1, 0.2) == "FAIL"
    assert over("==", 0.0, -0.1, 0.1) == "INCONCLUSIVE"
    claims = [Claim("f", "a", 1.0, ">", 0.0), Claim("f", "b", -1.0, ">", 0.0, check=True)]
    text = report_markdown(claims, "t", [])
    assert "1 of 1 claims PASS" in text and "### Checks of the implementation" in text


def test_quick_mode_is_one_subset_and_epoch_cap_for_every_figure() -> None:
    for figure in FIGURES.values():
        for stem in figure.configs:
            full = figure.recipe(stem, Mode())
            quick = figure.recipe(stem, Mode(quick=True))
            # Quick mode keeps a seed sweep's first QUICK_SEEDS seeds.
            kept = sorted({cfg.train.seed for cfg in full.configs})[:QUICK_SEEDS]
            slow_configs = [cfg for cfg in full.configs if cfg.train.seed in kept]
            assert len(quick.configs) == len(slow_configs)
            for slow, fast in zip(slow_configs, quick.configs, strict=True):
                assert fast.data.train_subset == QUICK_TRAIN_IMAGES
                assert fast.data.test_subset == QUICK_TEST_IMAGES
                assert fast.train.epochs == min(slow.train.epochs, QUICK_EPOCHS)
                assert set_dotted(set_dotted(set_dotted(
                    slow, "data.train_subset", QUICK_TRAIN_IMAGES), "data.test_subset",
                    QUICK_TEST_IMAGES), "train.epochs", fast.train.epochs) == fast
    assert (CONFIG_DIR / "small-batch.yaml").is_file()


# --- The cache ----------------------------------------------------------------------------------


def cached(cache: Path, cfg: RunConfig, status: str) -> Path:
    writer = RunWriter(cache / config_hash(cfg))
    writer.write_config(dump_yaml(cfg))
    writer.append_stats([])
    writer.write_summary({"status": status})
    (writer.path / "stale.txt").write_text("from an earlier run")
    return writer.path


def test_unfinished_cached_runs_are_retrained(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    done = set_dotted(RunConfig(name="a"), "train.epochs", 0)
    cut = set_dotted(done, "init.c", 3.0)
    cached(tmp_path, done, "completed")
    cached(tmp_path, cut, "interrupted")
    trained: list[Path] = []

    class Recorder:
        def run(self, jobs: list[Job], progress: ProgressFactory) -> None:
            for job in jobs:
                trained.extend(job.run_dirs)
                for path in job.run_dirs:
                    RunWriter(path).write_summary({"status": "completed"})

    run_set = RunSet("a", (done, cut, done))
    paths, n_trained, n_cached = figure_cache.ensure_runs([run_set], tmp_path, None,
                                                          log=lambda m: None,
                                                          executor=Recorder())  # type: ignore
    assert paths["a"] == [tmp_path / config_hash(c) for c in (done, cut, done)]
    assert trained == [tmp_path / config_hash(cut)] and (n_trained, n_cached) == (1, 1)
    assert not (tmp_path / config_hash(cut) / "stale.txt").exists()  # started afresh
    assert (tmp_path / config_hash(cut) / CONFIG_FILE).read_text() == dump_yaml(cut)
    assert (tmp_path / config_hash(done) / "stale.txt").exists()  # finished: left alone


def test_groups_stack_members_of_one_shape_and_thread_count(tmp_path: Path) -> None:
    """Members stack by shape, as in one sweep; a run set's thread count keeps its members
    apart from the others."""
    base = RunConfig(name="g")
    configs = [set_dotted(base, "train.seed", s) for s in (0, 1)]
    wide = [set_dotted(cfg, "model.width", 50) for cfg in configs]
    members = [(tmp_path / config_hash(c), c, None) for c in (*configs, *wide)]
    members += [(tmp_path / "one-thread", set_dotted(base, "train.seed", 7), 1)]
    jobs = figure_cache.group_jobs(members, None, max_group=None)
    assert [len(job.run_dirs) for job in jobs] == [2, 2, 1]
    assert [job.threads for job in jobs] == [None, None, 1]
    assert jobs[0].label == "g ×2"
    assert all((path / CONFIG_FILE).is_file() for path, _, _ in members)
    assert [len(job.args[0]) for job in figure_cache.group_jobs(members, None, 1)] == [1] * 5


def test_a_launch_moves_each_member_to_its_hash_name(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The launched workers write a sweep directory (as ``initlab run`` does) inside the
    cache; each member directory then takes its config's hash as its name."""
    from initlab.experiment import set_up

    source = CONFIG_DIR / "sync-bn.yaml"
    mode = Mode(quick=True)
    run_set = FIGURES["sync-bn"].recipe("sync-bn", mode)
    cache = tmp_path / "cache"
    cached(cache, run_set.configs[0], "completed")  # one cached already: not launched again
    launches: list[list[str]] = []

    def fake_launch(nproc: int, args: list[str]) -> int:
        launches.append(args)
        out = Path(args[args.index("--out") + 1])
        assert out.parent == cache and out.name.startswith(figure_cache.LAUNCH_PREFIX)
        sets = [a.removeprefix("--set=") for a in args if a.startswith("--set=")]
        top = set_up(load_experiment(args[1], sets), out)
        for member in top.iterdir():
            if member.is_dir():
                RunWriter(member).append_stats([])
                RunWriter(member).write_summary({"status": "completed", "threads": 1})
        return 0

    monkeypatch.setattr(figure_cache, "launch", fake_launch)
    paths, n_trained, n_cached = figure_cache.ensure_runs([run_set], cache, None,
                                                          log=lambda m: None)
    # Quick mode launches its own copy of the recipe (its first seeds), named as the file.
    assert len(launches) == 1 and launches[0][:2] == ["run", str(mode.source(source))]
    assert Path(launches[0][1]).name == source.name
    assert "--split" in launches[0] and "batches" in launches[0]
    assert (n_trained, n_cached) == (len(run_set.configs) - 1, 1)
    assert paths["sync-bn"] == [cache / config_hash(c) for c in run_set.configs]
    assert {p.name for p in cache.iterdir()} == {config_hash(c) for c in run_set.configs}
    for path, cfg in zip(paths["sync-bn"], run_set.configs, strict=True):
        assert (path / CONFIG_FILE).read_text() == dump_yaml(cfg)
    assert (paths["sync-bn"][0] / "stale.txt").exists()  # the cached one was kept


def test_a_failed_launch_leaves_no_directory_behind(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from initlab.errors import RunInterrupted, UsageError

    run_set = FIGURES["sync-bn"].recipe("sync-bn", Mode(quick=True))
    for code, error in ((1, UsageError), (130, RunInterrupted)):
        monkeypatch.setattr(figure_cache, "launch", lambda nproc, args, code=code: code)
        with pytest.raises(error):
            figure_cache.ensure_runs([run_set], tmp_path, None, log=lambda m: None)
        assert not any(tmp_path.iterdir())


def test_two_reports_are_compared_row_by_row() -> None:
    """`python -m initlab.report A B` (docs/rerun.md): every claim and check of the committed
    report matched by figure and claim text; a changed verdict is marked, a missing row too."""
    text = (Path(__file__).resolve().parent.parent / "figures" / "REPORT.md").read_text()
    rows = read_report_rows(text, checks=True)
    assert any(r.check for r in rows) and any(not r.check for r in rows)
    assert not any(r.check for r in read_report_rows(text))
    first = next(r for r in rows if r.verdict == "PASS" and not r.check)
    line = next(line for line in text.splitlines() if line.startswith("| `")
                and f"| {first.measured} |" in line)
    changed = text.replace(line, line.replace("| PASS |", "| **FAIL** |"), 1)
    changed = changed.replace(next(line for line in text.splitlines()
                                   if line.startswith("| `") and "| **FAIL** |" in line), "", 1)
    table = compare_verdicts(text, changed, ("a", "b"))
    assert table.startswith(f"{len(rows) - 2} of {len(rows)} rows keep their verdict.")
    assert table.count("| **no** |") == 2 and "| FAIL | — | — | **no** |" in table
    # A claim that quotes a number of its own runs matches by its place among its figure's.
    # (the last row read, not the last row of the text: the report's list of rows changed
    # since the previous one has rows that start alike)
    last = next(line for line in reversed(text.splitlines())
                if line.startswith(f"| `{rows[-1].figure}`") and f"| {rows[-1].measured} |" in line)
    cells = last.split(" | ")
    quoted = text.replace(last, " | ".join([cells[0], cells[1] + " (first seed: 7)",
                                            *cells[2:]]), 1)
    table = compare_verdicts(text, quoted, ("a", "b"))
    assert table.startswith(f"{len(rows)} of {len(rows)} rows keep their verdict.")
    assert "(first seed: 7)" in table and "*rerun:*" in table


def test_a_diverged_run_counts_as_chance_where_a_claim_asks_how_far_training_got(
        tmp_path: Path) -> None:
    """trained-variance's "reaches 5%": a seed that diverged did not reach it. Its final test
    error is NaN by design (load_run), which would void the claim over all seeds; it counts
    as chance instead, and the claim over the seeds stays a number."""
    cfg = set_dotted(set_dotted(RunConfig(name="trained-variance"), "init.c", 2.3),
                     "train.target_test_error", 0.05)
    writer = RunWriter(tmp_path / "diverged")
    writer.write_config(dump_yaml(cfg))
    writer.append_stats([{"step": 0, "epoch": 0, "phase": "init", "loss": 2.3,
                          "train_error": 0.9, "test_error": 0.9031}])
    writer.write_summary({"status": "diverged", "steps": 4, "epochs": 0, "diverged_step": 4,
                          "final_test_error": None})
    run = initlab.load_run(tmp_path / "diverged")
    assert math.isnan(run.final_test_error)
    assert outcome_error(run) == CHANCE_ERROR
