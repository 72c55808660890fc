"""The ``initlab`` command line: it parses arguments and delegates; errors a user can fix are
one message and exit code 2."""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

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
            # The message quotes user input: never markup, and never wrapped mid-path.
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False,
                          markup=True, soft_wrap=True)
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
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Train in N local processes "
                                       "(DistributedDataParallel: gloo on CPU, nccl on GPUs), "
                                       "as torchrun --nproc-per-node N would.")] = 1,
    split: Annotated[str, typer.Option("--split", help="With several processes: auto (a sweep "
                                       "splits its members, a config its batches), batches or "
                                       "members.")] = "auto",
) -> None:
    """Train a config (or every member of its sweep) and write its run directory."""
    from initlab.config import load_experiment
    from initlab.distributed import check_launch, launch, process_group
    from initlab.errors import RunInterrupted
    from initlab.experiment import resume_experiment, run_experiment, run_experiment_across
    from initlab.progress import RichProgress, print_outcomes

    if (config is None) == (resume is None):
        raise UsageError("give either a CONFIG file or --resume RUN_DIR")
    if resume is not None and set_:  # a resumed run keeps the config it started with
        raise UsageError("--set cannot change a run being resumed; it continues with the "
                         "config.yaml in its directory")
    if nproc > 1:  # N workers run this command without --nproc: torchrun's code path
        if resume is not None:
            raise UsageError("--resume continues a run in one process (its checkpoint holds "
                             "the global batch order); drop --nproc")
        check_launch(load_experiment(config, set_ or []), nproc, split)  # type: ignore[arg-type]
        args = ["run", str(config), "--out", str(out), "--split", split]
        args += [f"--set={s}" for s in set_ or []] + (["--plot"] if plot_layers else [])
        args += ["--data-root", data_root] if data_root is not None else []
        raise typer.Exit(launch(nproc, args))
    with process_group() as comm:
        if comm.world > 1 and resume is not None:
            raise UsageError("--resume continues a run in one process (its checkpoint holds "
                             "the global batch order); run it without torchrun")
        # Only rank 0 reports; the others train silently.
        shown = console if comm.is_writer else Console(file=io.StringIO())
        with RichProgress(shown) as progress:
            try:
                if resume is not None:
                    outcomes = resume_experiment(resume, data_root, progress.factory)
                else:
                    experiment = load_experiment(config, set_ or [])  # type: ignore[arg-type]
                    outcomes = (run_experiment(experiment, out, data_root, progress.factory)
                                if comm.world == 1 else
                                run_experiment_across(experiment, out, data_root,
                                                      progress.factory, comm, split))
            except RunInterrupted as stop:
                progress.stop()
                shown.print(f"interrupted: checkpoints written; continue with "
                            f"[bold]initlab run --resume {escape(str(stop.path))}[/bold]",
                            highlight=False, soft_wrap=True)
                raise typer.Exit(stop.exit_code) from None
    print_outcomes(console, outcomes)
    if plot_layers and outcomes:
        from initlab.plot import plot_runs
        from initlab.runs import load_runs

        top = outcomes[0].path if len(outcomes) == 1 else outcomes[0].path.parent
        runs = [r for r in load_runs(top) if r.records]  # diverged at init: nothing to draw
        if runs:
            plot_runs(runs, top / "layers.png")
            console.print(f"wrote {top / 'layers.png'}", highlight=False, markup=False)
        else:
            console.print("no statistics to plot", highlight=False)


@app.command()
@friendly_errors
def validate(config: Path, set_: SetOption = None) -> None:
    """Check a config file and report every problem in it at once."""
    from initlab.config import load_experiment, validate_file

    problems = validate_file(config, set_ or [])
    if problems:
        for problem in problems:
            console.print(problem, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2)
    experiment = load_experiment(config, set_ or [])
    n = len(experiment.members)
    console.print(f"{config}: valid ({n} member{'s' if n != 1 else ''})", highlight=False,
                  markup=False, soft_wrap=True)


@app.command()
@friendly_errors
def data(
    data_root: DataRoot = None,
    force: Annotated[bool, typer.Option("--force", help="Delete and fetch again.")] = False,
) -> None:
    """Fetch MNIST if missing and verify the four files by SHA-256."""
    from initlab.data import fetch_mnist, resolve_data_root, verify_mnist

    root = resolve_data_root(data_root)

    def log(message: str) -> None:  # paths, never markup; one line each
        console.print(message, highlight=False, markup=False, soft_wrap=True)

    fetch_mnist(root, force=force, log=log)
    verify_mnist(root)
    log(f"MNIST verified in {root / 'MNIST' / 'raw'}")


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


@app.command()
@friendly_errors
def figures(
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Draw only this figure (repeatable; default: all nine).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke test: a data subset and at "
                                        "most 2 epochs; not the reference numbers.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNG/SVG files and "
                                      "REPORT.md.")] = Path("figures"),
    cache: Annotated[Path | None, typer.Option("--cache", help="Run cache (default "
                                               "runs/figures-cache).")] = None,
    data_root: DataRoot = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a value in every figure's config, e.g. --set "
        "train.backward=autograd (repeatable).")] = None,
    max_group: Annotated[int | None, typer.Option(
        "--max-group", min=1, help="Train at most this many members as one stacked model "
        "(default: all of one shape; 1 trains one model at a time).")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", min=1, help="Train this many groups at once, each in its own process "
        "(default: one per CPU core without a GPU, else 1).")] = None,
) -> None:
    """Redraw every lecture figure from real runs (training only what is not cached) and
    check every lecture claim in REPORT.md."""
    from initlab.errors import RunInterrupted
    from initlab.figures import build_figures
    from initlab.jobs import default_jobs
    from initlab.progress import RichProgress
    from initlab.report import report_table

    def log(message: str) -> None:
        console.print(message, highlight=False, markup=False, soft_wrap=True)

    with RichProgress(console) as progress:
        try:
            result = build_figures(only, quick, out, cache, data_root, progress.factory, log,
                                   overrides=set_ or (), max_group=max_group,
                                   jobs=jobs or default_jobs())
        except RunInterrupted as stop:
            progress.stop()
            log("interrupted: unfinished runs start afresh on the next `initlab figures`")
            raise typer.Exit(stop.exit_code) from None
    Console().print(report_table(result.claims, result.title))
    log(f"wrote {len(result.files)} files and {result.report}")

@app.command()
@friendly_errors
def bench(
    out: Annotated[Path, typer.Option("--out", help="Write the results as JSON here.")]
    = Path("bench.json"),
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")] = "auto",
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, help="Timed steps per contender (default 120; big sweeps on the CPU "
        "time fewer).")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", min=0, help="Untimed steps first "
                                               "(default 10).")] = None,
    blocks: Annotated[int | None, typer.Option("--blocks", min=1, help="Timed steps are "
                                               "split in blocks; the fastest counts (default "
                                               "12).")] = None,
    sweep: Annotated[list[int] | None, typer.Option(
        "--sweep", min=2, help="Sweep size K to time (repeatable; default 9 and 81).")] = None,
    data_root: DataRoot = None,
) -> None:
    """Seconds per epoch per model: the plain PyTorch way against initlab (one config, sweeps)."""
    from initlab.bench import run_bench, settings_for

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    settings = settings_for(device, steps, warmup, blocks, sweep, data_root)
    run_bench(settings, out, Console())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside training (which checkpoints itself)
        sys.exit(130)


if __name__ == "__main__":
    main()
