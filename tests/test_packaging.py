"""initlab as a built wheel, not the checkout: the YAML it reads ships inside it, and the
installed package trains a starter config and draws a figure from an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("mnist_env")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(out), str(ROOT)], check=True,
                   capture_output=True)
    (found,) = out.glob("initlab-*.whl")
    return found


def test_the_wheel_holds_every_yaml_the_package_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in (ROOT / "initlab").rglob("*.yaml"):
        assert source.relative_to(ROOT).as_posix() in names


@pytest.mark.slow  # four fresh processes: about a minute (the wheel's contents: the test above)
def test_the_installed_wheel_works_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    """Installed into its own folder (its dependencies are this environment's), put first on
    the path so the checkout's editable install is not what runs."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def initlab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "initlab", *args], cwd=empty, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import initlab; print(initlab.__file__)"],
                           cwd=empty, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))
    run = initlab("run", "kaiming", "--out", "runs", "--set", "train.max_steps=3",
                  "--set", "data.train_subset=512", "--set", "data.test_subset=100",
                  "--set", "log.probe_size=64")
    assert run.returncode == 0, run.stderr
    assert (empty / "runs" / "kaiming" / "stats.jsonl").is_file()
    figures = initlab("figures", "--quick", "--only", "init-norms", "--out", "figs",
                      "--cache", "cache", "--jobs", "1")
    assert figures.returncode == 0, figures.stderr
    assert (empty / "figs" / "init-norms.png").is_file()


def test_gitignore_covers_what_initlab_writes_by_default(tmp_path: Path) -> None:
    """`initlab export` wrote exports/ into a checkout, untracked and not ignored (issue 34):
    every command's default output (its --out and --cache), and what lands under them, is
    ignored; the reference figures (`initlab figures`' default) are not."""
    import inspect

    from initlab.cli import DEFAULT_BENCH_OUT, PREVIEW_FIGURES, app
    from initlab.figures.cache import DEFAULT_CACHE

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # bench's --out defaults to None (it must not overwrite a bench.json it was not given)
    defaults = {PREVIEW_FIGURES, DEFAULT_CACHE, DEFAULT_BENCH_OUT,
                Path("runs") / "kaiming" / "layers.png",
                Path("exports") / "kaiming" / "records.csv"}
    for command in app.registered_commands:
        for parameter in inspect.signature(command.callback).parameters.values():
            if parameter.name in ("out", "cache") and isinstance(parameter.default, Path):
                defaults.add(parameter.default)
    assert {Path("runs"), Path("exports"), Path("bench.json")} <= defaults
    # a file in each default folder (git matches `runs/` only to what it knows is a folder)
    paths = sorted(str(p if p.suffix else p / "file") for p in defaults)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == paths
    reference = subprocess.run(["git", "check-ignore", "--no-index", "figures/REPORT.md"],
                               cwd=ROOT, capture_output=True, text=True)
    assert reference.returncode == 1, reference.stdout
