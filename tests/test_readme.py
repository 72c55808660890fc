"""The README works as written (issue 14): every shell command in its ```sh blocks runs, in
order, in a fresh directory, and does what the text around it says; its Python block runs; its
config reference is exactly what initlab.config defines; every starter config is listed and runs.

To keep this cheap, training commands get small overrides added *before* the README's own
(`--set data.train_subset=640 --set data.test_subset=500 --set log.probe_size=64 --set
train.epochs=2 --threads 1`, so a README `--set` still wins), `initlab figures` gets `--quick`,
`make` targets are checked with `make -n` (`make test` is what CI runs); the walkthrough runs
after the run `make run` leaves (its Makefile command, run first), as a newcomer's does; and
`tensorboard --logdir DIR` (a server) is checked by reading DIR's event files with
TensorBoard's own reader.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import initlab
from initlab import config
from initlab.cli import app
from initlab.reference import FIGURES_BEGIN, figure_table, readme_block, reference_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
runner = CliRunner()

CHEAP = ["--set", "data.train_subset=640", "--set", "data.test_subset=500",
         "--set", "log.probe_size=64", "--set", "train.epochs=2", "--threads", "1"]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def shell_commands() -> list[list[str]]:
    """Every command of the README's ```sh blocks, as arguments, comments dropped."""
    commands = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args:
                commands.append(args)
    return commands


def test_the_figure_table_is_generated_from_the_figures_and_their_report() -> None:
    assert readme_block(README, FIGURES_BEGIN) == figure_table(), \
        "README's figure table is stale: run python -m initlab.reference --write"


def test_the_config_reference_is_generated_from_config_py() -> None:
    assert readme_block(README) == reference_table(), \
        "README's config reference is stale: run python -m initlab.reference --write"
    for key in config.FIELDS:
        assert f"| `{key}` |" in README, key
    rows = [line for line in reference_table().splitlines()[2:]]
    assert all(line.rstrip(" |").split("|")[-1].strip() for line in rows), \
        "every key says what it does"


def test_every_starter_config_is_in_the_readme() -> None:
    listed = set(re.findall(r"\| `initlab run ([a-z-]+)` \|", README))
    assert listed == set(config.example_names())


def test_the_linked_documents_exist() -> None:
    for link in re.findall(r"\]\(((?:docs|figures)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), link


def run_initlab(args: list[str]) -> str:
    """One initlab command as the README gives it (``> FILE`` writes its output there)."""
    target = None
    if ">" in args:
        target, args = args[args.index(">") + 1], args[: args.index(">")]
    if args[0] == "run" and not any(a.startswith("--resume") for a in args):
        args = [args[0], args[1], *CHEAP, *args[2:]]
    elif args[0] == "figures":
        args = [*args, "--quick", "--out", "figures-out", "--cache", "figures-cache"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"initlab {shlex.join(args)}:\n{result.output}"
    if target is not None:
        Path(target).write_text(result.stdout)
    return result.output


def make_run_command() -> list[str]:
    """The initlab command of the Makefile's ``run`` target, as a newcomer's ``make run``
    runs it (``$(BIN)/initlab ... --out $(RUNS)``)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has a run target"
    line = next(x for x in recipe.group(1).splitlines() if "initlab run" in x)
    args = shlex.split(line.replace("$(BIN)/", "").replace("$(RUNS)", "runs"))
    assert args[0] == "initlab"
    return args[1:]


def walkthrough() -> str:
    start = README.index("## Your first experiment")
    return README[start: README.index("### Starter configs", start)]


def test_training_numbers_in_the_walkthrough_are_examples() -> None:
    """Digits one machine gave are not promised to the next: each is an "e.g."."""
    text = walkthrough()
    for match in re.finditer(r"\d+(?:\.\d+)?% test error|\d+\.\d+%", text):
        before = text[max(0, match.start() - 160): match.start()]
        assert "e.g." in before, f"{match.group(0)} is not given as an example: ...{before}"


def test_every_readme_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's commands in order, as a newcomer runs them: after ``make run``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    first = run_initlab(make_run_command())  # what `make run` left behind
    assert first.strip().splitlines()[-1] == "plot it: initlab plot runs/kaiming"
    commands = shell_commands()
    assert ["initlab", "plot"] in commands and ["make", "run"] in commands
    outputs: dict[str, str] = {}
    for args in commands:
        line = shlex.join(args)
        if args[0] == "make":
            done = subprocess.run(["make", "-n", "-C", str(ROOT), *args[1:]],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            continue
        if args[0] == "tensorboard":
            check_tensorboard_logdir(tmp_path / args[args.index("--logdir") + 1])
            continue
        assert args[0] == "initlab", f"a README command this test cannot run: {line}"
        outputs[line] = run_initlab(args[1:])
    # What the text around the commands says.
    assert outputs["initlab plot"].startswith("plotting runs/kaiming")
    assert (tmp_path / "runs" / "kaiming" / "layers.png").exists()
    assert (tmp_path / "runs" / "kaiming" / "training.png").exists()
    c3_command = next(c for c in outputs if "init.c=3" in c and c.startswith("initlab run"))
    c3 = outputs[c3_command]
    c3_dir = c3.strip().splitlines()[-1].removeprefix("plot it: initlab plot ")
    assert f"This run, `{c3_dir}`, **diverges at step 2" in README, c3_dir
    assert f"{c3_dir}: diverged at step 2" in c3, c3
    listed = outputs["initlab ls"]
    row = next(x for x in listed.splitlines() if x.startswith(Path(c3_dir).name + " "))
    assert "diverged at step 2" in row, listed
    compared = outputs[f"initlab compare runs/kaiming {c3_dir}"]
    assert re.search(r"init\.c\s*│\s*2\s*│\s*3", compared), compared  # the c difference
    assert (tmp_path / "runs" / "compare.png").exists()
    assert (tmp_path / "runs" / "both.png").exists()
    assert not list(tmp_path.glob("*.png")), "nothing written into the current folder"
    assert "diverged: c=3.0" in outputs["initlab run sweep-c"]
    assert yaml.safe_load((tmp_path / "my.yaml").read_text())["init"]["c"] == 2.0
    assert (tmp_path / "exports" / "kaiming" / "layers.csv").exists()
    python = blocks("python")
    assert len(python) == 2
    exec(compile(python[0], "README.md", "exec"), {})
    exec(compile(python[1], "README.md", "exec"), watch_namespace())
    assert initlab.load_run(tmp_path / "runs" / "my-cnn").kind == "watch"


def watch_namespace() -> dict:
    """What the README's watch example takes as given: a model, its data, an optimizer."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 26 * 26, 10))
    gen = torch.Generator().manual_seed(0)
    loader = [(torch.rand(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen))
              for _ in range(12)]
    def test_error(model: torch.nn.Module) -> float:  # the reader's own evaluation
        with torch.no_grad():
            return sum(float((model(x).argmax(1) != y).float().mean()) for x, y in loader) / 12

    return {"model": model, "loader": loader, "F": torch.nn.functional,
            "opt": torch.optim.SGD(model.parameters(), lr=0.01), "test_error": test_error}


def check_tensorboard_logdir(logdir: Path) -> None:
    """What `tensorboard --logdir` would find: event files it can read, with scalars."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    runs = sorted({p.parent for p in logdir.rglob("events.out.tfevents.*")})
    assert runs, f"no event files under {logdir}"
    for folder in runs:
        events = accumulator.EventAccumulator(str(folder))
        events.Reload()
        assert "act_norm/1" in events.Tags()["scalars"] or \
            "probe/act_norm/1" in events.Tags()["scalars"], folder
