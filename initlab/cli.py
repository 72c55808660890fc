"""The ``initlab`` command line: it parses arguments and delegates; errors a user can fix are
one message and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from initlab.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Initialization and normalization experiments on deep MLPs, on MNIST.")
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DataRoot = Annotated[
    str | None,
    typer.Option("--data-root", help="MNIST root (else $INITLAB_DATA, else ~/.cache/initlab)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value, e.g. --set init.c=3 (repeatable)."),
]


def friendly_errors(fn: F) -> F:
    """UsageError -> its message on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as err:
            console.print(f"[red]error:[/red] {err}", highlight=False, markup=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@friendly_errors
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML config file.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Parent directory for run directories.")]
    = Path("runs"),
    set_: SetOption = None,
    data_root: DataRoot = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted "
                                                "run or sweep directory.")] = None,
    plot_layers: Annotated[bool, typer.Option("--plot", help="Also draw layers.png into the "
                                              "run directory.")] = False,
) -> None:
    """Train a config (or every member of its sweep) and write its run directory."""
    from initlab.config import load_experiment
    from initlab.experiment import RunInterrupted, resume_experiment, run_experiment
    from initlab.progress import RichProgress, print_outcomes

    if (config is None) == (resume is None):
        raise UsageError("give either a CONFIG file or --resume RUN_DIR")
    with RichProgress(console) as progress:
        try:
            if resume is not None:
                outcomes = resume_experiment(resume, data_root, progress.factory)
            else:
                experiment = load_experiment(config, set_ or [])  # type: ignore[arg-type]
                outcomes = run_experiment(experiment, out, data_root, progress.factory)
        except RunInterrupted as stop:
            progress.stop()
            console.print(f"interrupted: checkpoints written; continue with "
                          f"[bold]initlab run --resume {stop.path}[/bold]")
            raise typer.Exit(stop.exit_code) from None
    print_outcomes(console, outcomes)
    if plot_layers and outcomes:
        from initlab.plot import plot_runs
        from initlab.runs import load_runs

        top = outcomes[0].path if len(outcomes) == 1 else outcomes[0].path.parent
        plot_runs(load_runs(top), top / "layers.png")
        console.print(f"wrote {top / 'layers.png'}", highlight=False)


@app.command()
@friendly_errors
def validate(config: Path, set_: SetOption = None) -> None:
    """Check a config file and report every problem in it at once."""
    from initlab.config import load_experiment, validate_file

    problems = validate_file(config, set_ or [])
    if problems:
        for problem in problems:
            console.print(problem, highlight=False, markup=False)
        raise typer.Exit(2)
    experiment = load_experiment(config, set_ or [])
    n = len(experiment.members)
    console.print(f"{config}: valid ({n} member{'s' if n != 1 else ''})", highlight=False)


@app.command()
@friendly_errors
def data(
    data_root: DataRoot = None,
    force: Annotated[bool, typer.Option("--force", help="Delete and fetch again.")] = False,
) -> None:
    """Fetch MNIST if missing and verify the four files by SHA-256."""
    from initlab.data import fetch_mnist, resolve_data_root, verify_mnist

    root = resolve_data_root(data_root)
    fetch_mnist(root, force=force, log=lambda m: console.print(m, highlight=False))
    verify_mnist(root)
    console.print(f"MNIST verified in {root / 'MNIST' / 'raw'}", highlight=False)


@app.command()
@friendly_errors
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run or sweep directories.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output image (.png/.svg).")]
    = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="act_norm, grad_norm, weight_var, weight_rel_change, test_error "
        "(repeatable; default: the first three).")] = None,
) -> None:
    """Draw per-layer statistics of runs: init dashed, final solid, log y."""
    from initlab.plot import plot_runs
    from initlab.runs import load_runs

    runs = [r for d in run_dirs for r in load_runs(d)]
    target = out or (run_dirs[0] / "layers.png")
    plot_runs(runs, target, metric or None)
    console.print(f"wrote {target}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside training (which checkpoints itself)
        sys.exit(130)


if __name__ == "__main__":
    main()
