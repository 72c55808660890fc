"""The ``initlab`` command line: it parses arguments and delegates; errors a user can fix are
one message and exit code 2."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from initlab.errors import UsageError, bounded
from initlab.progress import TextConsole

PREVIEW_FIGURES = Path("runs") / "figures-preview"  # where --quick and --only draw by default
DEFAULT_BENCH_OUT = Path("bench.json")  # bench's results when --out is not given
# What an option's value is, in the help: words, not Python types ("<list[str]>").
METAVARS = {"--set": "KEY=VALUE", "--resume": "RUN_DIR", "--data-root": "DIR", "--cache": "DIR",
            "--out": "PATH", "--metric": "NAME", "--only": "NAME", "--to": "FORMAT",
            "--executor": "NAME", "--ray-address": "ADDRESS",
            "--sweep": "K", "--split": "MODE", **dict.fromkeys(
                ("--nproc", "--threads", "--jobs", "--max-group", "--steps", "--warmup",
                 "--blocks"), "N")}


class PlainHelpGroup(TyperGroup):
    """The commands with help for people: each option's value named (``--out PATH``,
    ``--threads THREADS``), never its Python type."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", []):
            if getattr(param, "param_type_name", "") == "argument":
                param.display_type_rich = lambda ctx: None  # the metavar says it
            elif not getattr(param, "is_flag", False) and param.metavar is None:
                name = max(param.opts, key=len)
                param.metavar = METAVARS.get(name, name.lstrip("-").replace("-", "_").upper())
            if hasattr(param, "_get_number_range_help_str"):  # "x>=1": the help says it
                param._get_number_range_help_str = lambda: None
        return command


# The help is plain text: Rich markup would eat "[tensorboard]" in "pip install 'initlab[...]'".
app = typer.Typer(cls=PlainHelpGroup, add_completion=True, no_args_is_help=True,
                  rich_markup_mode=None,
                  help="Initialization and normalization experiments on deep MLPs, on MNIST.")
console = TextConsole(stderr=True)  # user text is text (issue 32): no markup or emoji codes
F = TypeVar("F", bound=Callable[..., Any])

DataRoot = Annotated[
    str | None,
    typer.Option("--data-root", help="MNIST root (else $INITLAB_DATA, else ~/.cache/initlab)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value, e.g. --set init.c=3 (repeatable)."),
]
ExecutorOption = Annotated[str, typer.Option(
    "--executor", help="Where the groups train: local (this machine) or ray (each group a "
    "task on a Ray cluster; pip install 'initlab[ray]'; docs/distributed.md).")]
RayAddress = Annotated[str | None, typer.Option(
    "--ray-address", help="With --executor ray: the cluster's address, or auto (default: "
    "$RAY_ADDRESS, else the cluster ray start runs here, else one started for the call).")]


def user_path(value: Path | None, option: str) -> Path | None:
    """A path option as the shell would have it: ``~`` and ``~user`` expanded (a quoted
    ``'~/x'`` is not expanded by the shell); an unknown user is one line."""
    if value is None or not str(value).startswith("~"):
        return value
    try:
        return value.expanduser()
    except RuntimeError:
        user = str(value).split("/", 1)[0]
        raise UsageError(f"{option} {bounded(str(value))}: no user {bounded(user[1:], 40)!r} "
                         f"to expand {bounded(user, 40)} for") from None


def say(message: str) -> None:
    """One line on stderr: paths and values, never markup."""
    console.print(message, highlight=False, markup=False, soft_wrap=True)


def default_threads() -> int | None:
    """`initlab run`'s CPU threads without --threads: the one place to change it. One thread,
    unless $OMP_NUM_THREADS says otherwise (None: torch's choice, which reads it). Measured
    (`initlab bench --only threads`, docs/benchmarks.md): on an idle 2-core machine a second
    thread saves a little; beside one other busy process it costs many times that."""
    return None if os.environ.get("OMP_NUM_THREADS") else 1


def ray_executor(name: str, address: str | None, threads: int | None) -> Any:
    """The executor ``--executor`` names: None for the local one, else an unconnected
    ``RayExecutor`` (its jobs on ``threads`` CPU threads each, default one)."""
    if name not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray, got {bounded(name)!r}")
    if name == "local":
        if address is not None:
            raise UsageError("--ray-address needs --executor ray")
        return None
    from initlab.ray_jobs import RayExecutor, require_ray

    require_ray()
    return RayExecutor(address, threads=threads or 1)


class RunCommand(TyperCommand):
    """`initlab run`, which answers an option that is really a config key (``--init.c 3``) or
    the config itself (``--config FILE``) with the right form, in one line, exit 2."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from initlab.overrides import mistyped_option

        hint = mistyped_option(args)
        if hint is not None:
            say(f"error: {hint}")
            raise typer.Exit(2)
        return super().parse_args(ctx, args)


def show_version(value: bool) -> None:
    if value:
        from initlab import __version__

        print(f"initlab {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                          help="Print initlab's version and exit.")] = False,
) -> None:
    """Initialization and normalization experiments on deep MLPs, on MNIST."""


def friendly_errors(fn: F) -> F:
    """UsageError -> its message on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as err:
            # The message quotes user input: never markup, and never wrapped mid-path.
            first, *more = str(err).split("\n")  # a problem a line (a ConfigError's)
            console.print(f"[red]error:[/red] {escape(first)}", markup=True, soft_wrap=True)
            for line in more:
                console.print(line, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command(cls=RunCommand)
@friendly_errors
def run(
    arguments: Annotated[list[str] | None, typer.Argument(
        metavar="CONFIG [KEY=VALUE]", show_default=False,
        help="A YAML config file or a starter config's name (kaiming, sweep-c, ...; initlab "
        "config NAME prints one), then config values as KEY=VALUE, e.g. init.c=3 "
        "train.epochs=1.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Parent directory for run directories.")]
    = Path("runs"),
    set_: SetOption = None,
    data_root: DataRoot = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted "
                                                "run or sweep directory.")] = None,
    plot_layers: Annotated[bool, typer.Option("--plot", help="Also draw layers.png and "
                                              "training.png into the run directory.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Train in N local processes "
                                       "(DistributedDataParallel: gloo on CPU, nccl on GPUs), "
                                       "as torchrun --nproc-per-node N would.")] = 1,
    split: Annotated[str, typer.Option("--split", help="With several processes: auto (a sweep "
                                       "splits its members, a config its batches), batches or "
                                       "members.")] = "auto",
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: 1, or $OMP_NUM_THREADS; "
        "1 is never much slower on an idle machine and far faster on a busy one). The last "
        "digits of a CPU run depend on it.")] = None,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Also write TensorBoard event files into each run directory as "
        "it trains (tensorboard --logdir runs); needs pip install 'initlab[tensorboard]'.")]
    = False,
    sweep: Annotated[bool, typer.Option(
        "--sweep", "-m", help="Sweep the values given as KEY=A,B,C: one member per "
        "combination, e.g. initlab run kaiming init.c=1,2,3 --sweep.")] = False,
    executor: ExecutorOption = "local",
    ray_address: RayAddress = None,
) -> None:
    """Train a config (or every member of its sweep) and write its run directory.

    initlab run kaiming init.c=3 train.epochs=1 (or --set init.c=3) changes values;
    initlab run kaiming init.c=1,2,3 -m trains one member per value."""
    from initlab.distributed import SPLITS
    from initlab.overrides import command_line_sweep, split_arguments

    config_arg, assignments = split_arguments(arguments or [])
    set_, swept = command_line_sweep([*(set_ or []), *assignments], sweep)
    config = Path(config_arg) if config_arg is not None else None
    threads = threads if threads is not None else default_threads()
    out = user_path(out, "--out")  # type: ignore[assignment]
    config, resume = user_path(config, "CONFIG"), user_path(resume, "--resume")
    data_root = str(user_path(Path(data_root), "--data-root")) if data_root else data_root
    if split not in SPLITS:  # checked with or without --nproc: a typo never passes silently
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {bounded(split)!r}")
    if (config is None) == (resume is None):
        raise UsageError("give either a CONFIG file or --resume RUN_DIR")
    if resume is not None and (set_ or swept):  # a resumed run keeps its config
        raise UsageError("--set cannot change a run being resumed; it continues with the "
                         "config.yaml in its directory")
    cluster = ray_executor(executor, ray_address, threads)
    if cluster is not None and (resume is not None or nproc > 1 or tensorboard):
        raise UsageError("--executor ray trains a new run's groups as cluster tasks; "
                         "--resume, --nproc and --tensorboard run here: drop --executor")
    writer = None
    if tensorboard:
        from initlab.export import require_tensorboard, tensorboard_writer

        require_tensorboard("--tensorboard")
        writer = tensorboard_writer
    if nproc > 1:  # N workers run this command without --nproc: torchrun's code path
        from initlab.distributed import check_launch, launch
        from initlab.overrides import load

        if resume is not None:
            raise UsageError("--resume continues a run in one process (its checkpoint holds "
                             "the global batch order); drop --nproc")
        check_launch(load(config, set_, swept), nproc, split)  # type: ignore[arg-type]
        args = ["run", str(config), "--out", str(out), "--split", split]
        args += [f"--set={s}" for s in set_ or []] + (["--plot"] if plot_layers else [])
        args += [f"{k}={','.join(v)}" for k, v in swept.items()] + (["-m"] if swept else [])
        args += ["--data-root", data_root] if data_root is not None else []
        args += ["--threads", str(threads)] if threads else []
        args += ["--tensorboard"] if tensorboard else []
        raise typer.Exit(launch(nproc, args))
    outcomes = train(config, out, set_, data_root, resume, split, threads, writer, swept,
                     cluster)
    if not outcomes:  # a worker rank other than 0: rank 0 reports
        return
    say_top_findings(outcomes)
    top = outcomes[0].path if len(outcomes) == 1 else outcomes[0].path.parent
    if plot_layers:
        from initlab.plot import plot_all
        from initlab.runs import load_runs

        runs = [r for r in load_runs(top) if r.records]  # diverged at init: nothing to draw
        if runs:
            written = plot_all(runs, top / "layers.png", top / "training.png", log=say)
            say(f"wrote {' and '.join(str(p) for p in written)}")
        else:
            say("no statistics to plot")
    from initlab.runs import command_path

    say(f"plot it: initlab plot {command_path(top)}")


def train(config: Path | None, out: Path, set_: list[str] | None, data_root: str | None,
          resume: Path | None, split: str, threads: int | None,
          writer: Callable[[Path], Any] | None,
          swept: dict[str, list[str]] | None = None, cluster: Any = None) -> list[Any]:
    """``initlab run`` in this process (one of torchrun's ranks, or the only one): the
    outcomes on rank 0, [] elsewhere. ``cluster``: a Ray executor its groups train on."""
    from initlab.distributed import process_group
    from initlab.errors import RunInterrupted
    from initlab.experiment import (
        resume_experiment,
        run_experiment,
        run_experiment_across,
        run_experiment_with,
    )
    from initlab.jobs import torch_threads
    from initlab.overrides import load
    from initlab.progress import RichProgress, print_outcomes
    from initlab.runs import RunWriter

    writer = writer or RunWriter
    with torch_threads(threads), process_group() as comm:
        if comm.world > 1 and resume is not None:
            raise UsageError("--resume continues a run in one process (its checkpoint holds "
                             "the global batch order); run it without torchrun")
        # Only rank 0 reports; the others train silently.
        shown = console if comm.is_writer else TextConsole(file=io.StringIO())
        with RichProgress(shown) as progress:
            try:
                if resume is not None:
                    outcomes = resume_experiment(resume, data_root, progress.factory,
                                                 writer=writer)
                else:
                    experiment = load(config, set_ or [], swept or {})  # type: ignore[arg-type]
                    if cluster is not None:
                        with cluster:
                            outcomes = run_experiment_with(experiment, out, cluster, data_root,
                                                           progress.factory, threads=threads)
                    else:
                        outcomes = (run_experiment(experiment, out, data_root, progress.factory,
                                                   writer=writer)
                                    if comm.world == 1 else
                                    run_experiment_across(experiment, out, data_root,
                                                          progress.factory, comm, split,
                                                          writer=writer))
            except RunInterrupted as stop:
                progress.stop()
                shown.print(f"interrupted: checkpoints written; continue with "
                            f"[bold]initlab run --resume {escape(str(stop.path))}[/bold]",
                            highlight=False, soft_wrap=True)
                raise typer.Exit(stop.exit_code) from None
    print_outcomes(console, outcomes)
    return outcomes


@app.command()
@friendly_errors
def validate(
    arguments: Annotated[list[str], typer.Argument(
        metavar="CONFIG [KEY=VALUE]", show_default=False,
        help="A config file or a starter config's name, then config values as KEY=VALUE, as "
        "initlab run takes them.")],
    set_: SetOption = None,
    sweep: Annotated[bool, typer.Option(
        "--sweep", "-m", help="Sweep the values given as KEY=A,B,C, as initlab run -m "
        "would.")] = False,
) -> None:
    """Check a config file (with the values initlab run would take) and report every problem
    in it at once."""
    from initlab.config import analyse
    from initlab.overrides import command_line_sweep, split_arguments

    config, assignments = split_arguments(arguments)
    if config is None:
        raise UsageError("give a CONFIG file (or a starter config's name) to validate")
    set_, swept = command_line_sweep([*(set_ or []), *assignments], sweep)
    experiment, problems = analyse(config, set_, swept)
    if experiment is None:
        for problem in problems:
            console.print(problem, highlight=False, markup=False, emoji=False,
                          soft_wrap=True)
        raise typer.Exit(2)
    n = len(experiment.members)
    console.print(f"{config}: valid ({n} member{'s' if n != 1 else ''})", highlight=False,
                  markup=False, emoji=False, soft_wrap=True)


@app.command("config")
@friendly_errors
def starter_config(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", show_default=False,
        help="A starter config (kaiming, sweep-c, ...) or a config file; none: every key at "
        "its default.")] = None,
) -> None:
    """Print a config to start from, with every key and what it does: initlab config kaiming >
    my.yaml, edit, initlab run my.yaml."""
    from initlab.overrides import starter_text

    print(starter_text(name), end="")


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
    run_dirs: Annotated[list[Path] | None, typer.Argument(
        metavar="RUN_DIR", help="Run or sweep directories (default: the newest run under ./runs).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output: an image name (.png/.svg/.pdf; the training figure goes beside "
        "it as NAME-training.png) or a directory (default: the first run's directory).")]
    = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="Panels of layers.png (repeatable): a per-layer statistic "
        "(act_norm, grad_norm, weight_var, dead_fraction, update_ratio, weight_rel_change, "
        "...) or a curve (loss, test_error, train_error). Default: act_norm, grad_norm, "
        "weight_var, dead_fraction.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite existing files --out did not name (NAME-training.png, or "
        "layers.png and training.png in a folder that is not a run's).")] = False,
) -> None:
    """Draw runs: layers.png (per-layer statistics at initialization, dashed, and at the end,
    solid) and training.png (loss, errors, and per-layer statistics over training)."""
    from initlab.plot import check_metrics, output_paths, plot_all
    from initlab.runs import load_runs

    out = user_path(out, "--out")
    metrics = check_metrics(metric)
    dirs = [user_path(d, "RUN_DIR") for d in run_dirs or []] or [newest_run(Path("runs"))]
    layers_out, training_out = output_paths(out, dirs[0], force)  # type: ignore[arg-type]
    runs = [r for d in dirs for r in load_runs(d)]  # type: ignore[arg-type]
    written = plot_all(runs, layers_out, training_out, metrics, log=say)
    say(f"wrote {' and '.join(str(p) for p in written)}")


def newest_run(parent: Path, doing: str = "plotting") -> Path:
    """The run or sweep under ``parent`` set up last, said aloud."""
    from initlab.runs import find_runs

    found = find_runs(parent) if parent.is_dir() else []
    if not found:
        raise UsageError(f"no runs in ./{parent}: train one first (initlab run "
                         f"configs/kaiming.yaml), or name a run directory: initlab "
                         f"{'diagnose' if doing == 'diagnosing' else 'plot'} DIR")
    newest = found[-1].path
    others = f" (the newest of {len(found)} in {parent}/; `initlab ls` lists them)" \
        if len(found) > 1 else ""
    say(f"{doing} {newest}{others}")
    return newest


@app.command("ls")
@friendly_errors
def ls(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A directory of runs.")]
    = Path("runs"),
) -> None:
    """List the runs in a directory: name, status, epochs, test error, what differs from the
    defaults."""
    from initlab.browse import list_table

    directory = user_path(directory, "DIR")  # type: ignore[assignment]
    stdout = wide_console()
    stdout.print(list_table(directory, say, stdout.width if sys.stdout.isatty() else None))


app.command("list", hidden=True, help="The same as ls.")(ls)


def wide_console() -> Console:
    """stdout for tables: the terminal's width, or a wide one in a pipe or file (rows are
    greppable lines there, not folded)."""
    return TextConsole(width=None if sys.stdout.isatty() else 220)


@app.command()
@friendly_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR", help="Run or sweep directories (two or more runs in all).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="The overlaid figure (.png/.svg/.pdf; default: compare.png beside the "
        "first run's directory, never the current folder, never over an existing one without "
        "--force).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing compare.png when --out is not given.")] = False,
) -> None:
    """Compare runs: their config differences and summaries side by side, and one overlaid
    figure."""
    from initlab.browse import compare_tables
    from initlab.plot import COMPARE_METRICS, IMAGE_SUFFIXES, for_runs, plot_runs
    from initlab.runs import check_output_parent, load_runs, refuse_unsafe_target

    out = user_path(out, "--out")  # type: ignore[assignment]
    if out is None:  # beside the runs, as `initlab plot` draws into a run's directory
        out = user_path(run_dirs[0], "RUN_DIR").parent / "compare.png"  # type: ignore
        if os.path.lexists(out) and not force:  # a file the user did not name
            raise UsageError(f"{bounded(str(out))} exists and --out was not given; name the "
                             "figure with --out FILE, or add --force to overwrite it")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"--out {bounded(str(out))}: expected a file name ending in "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    check_output_parent(out.parent)
    refuse_unsafe_target(out)
    runs = [r for d in run_dirs for r in load_runs(user_path(d, "RUN_DIR"))]  # type: ignore
    if len(runs) < 2:
        raise UsageError("compare needs two runs or more (a sweep directory counts as its "
                         "members)")
    stdout = wide_console()
    for table in compare_tables(runs):
        stdout.print(table)
    plot_runs(runs, out, for_runs(COMPARE_METRICS, runs), log=say)
    say(f"wrote {out}")


@app.command()
@friendly_errors
def diagnose(
    run_dirs: Annotated[list[Path] | None, typer.Argument(
        help="Run or sweep directories (default: the newest run under ./runs).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON (one "
                                          "object per run, its findings top first).")] = False,
) -> None:
    """Why doesn't it train? Each run's findings -- the problem, the evidence from its records
    beside what theory expects, what to try and the source -- top finding first."""
    import json

    from initlab.describe import plural
    from initlab.diagnosis import describe, diagnose_members, grouped
    from initlab.runs import is_sweep_dir

    dirs = [user_path(d, "RUN_DIR") for d in run_dirs or []] or [newest_run(Path("runs"),
                                                                          "diagnosing")]
    results = []
    for d in dirs:
        members = diagnose_members(d)  # type: ignore[arg-type]  # a damaged one: one finding
        results.append((d, is_sweep_dir(d) or len(members) > 1,  # type: ignore[arg-type]
                        members))
    if as_json:
        print(json.dumps([{"run": path, "findings": [f.as_dict() for f in findings]}
                          for _, _, members in results for path, findings in members.items()],
                         indent=1, allow_nan=False, default=str))
        return
    out = wide_console()
    for d, several, members in results:
        if several:  # a sweep: members grouped by their top finding
            out.print(f"{d}: {plural(len(members), 'run')}", highlight=False, markup=False)
            for _, tops in grouped(members):
                names = ", ".join(Path(t.run).name for t in tops)
                lines = describe(tops[0], indent="    ")
                out.print(f"  {names}: {lines[0]}", highlight=False, markup=False,
                          soft_wrap=True)
                for top in tops:
                    out.print(f"    {Path(top.run).name}: {top.evidence}", highlight=False,
                              markup=False, soft_wrap=True)
                for line in lines[2:]:
                    out.print(line, highlight=False, markup=False, soft_wrap=True)
            continue
        for path, findings in members.items():
            out.print(f"{path}: {describe(findings[0])[0]}", highlight=False, markup=False,
                      soft_wrap=True)
            for line in describe(findings[0])[1:]:
                out.print(line, highlight=False, markup=False, soft_wrap=True)
            for other in findings[1:]:
                out.print(f"  also: {other.title} [{other.severity}]: {other.evidence}",
                          highlight=False, markup=False, soft_wrap=True)


def say_top_findings(outcomes: list[Any]) -> None:
    """After `initlab run`: one line per member that diverged, stalled or trained badly."""
    from initlab.diagnosis import top_lines

    for line in top_lines([o.path for o in outcomes]):
        say(line)


@app.command()
@friendly_errors
def export(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR",
                                                   help="Run or sweep directories.")],
    to: Annotated[str, typer.Option("--to", help="csv (records.csv and layers.csv per run) "
                                    "or tensorboard (event files: tensorboard --logdir OUT).")]
    = "csv",
    out: Annotated[Path, typer.Option("--out", help="Directory to write into; each run gets "
                                      "OUT/NAME (a sweep member OUT/SWEEP/MEMBER).")]
    = Path("exports"),
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite the files an earlier export left in OUT/NAME.")] = False,
    all_layers: Annotated[bool, typer.Option(
        "--all-layers", help="TensorBoard: a scalar for every layer (without it, five layers "
        "of a net deeper than 8), grouped in the Custom Scalars tab: a chart per statistic "
        "and 10 layers. The CSV files always hold every layer.")] = False,
) -> None:
    """Export runs as CSV files or TensorBoard event files."""
    from initlab.export import FORMATS, export_runs
    from initlab.runs import check_output_parent, load_runs
    from initlab.wording import how_it_ended

    out = user_path(out, "--out")  # type: ignore[assignment]
    if to not in FORMATS:
        raise UsageError(f"--to must be one of {', '.join(FORMATS)}, got {bounded(to)!r}")
    check_output_parent(out)
    runs = [r for d in run_dirs for r in load_runs(user_path(d, "RUN_DIR"))]  # type: ignore
    written = export_runs(runs, to, out, force, all_layers)
    for path in written:
        say(f"wrote {path}")
    for run in runs:  # the same words as ls, compare and the figures
        if run.status == "diverged":
            say(f"{run.display_name}: {how_it_ended(run.summary)}; its records end there")
    if to == "tensorboard":
        say(f"open with: tensorboard --logdir {shlex.quote(str(out))}")


@app.command()
@friendly_errors
def figures(
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Draw only this figure (repeatable; default: all of them).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke test: a data subset and at "
                                        "most 2 epochs; not the reference numbers.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory for the PNG/SVG files and REPORT.md (default: figures, the "
        "reference; with --quick or --only: runs/figures-preview).")] = None,
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
    seed_offset: Annotated[int, typer.Option(
        "--seed-offset", min=0, help="Add this to every seed of every figure's runs: a rerun "
        "on disjoint seeds (e.g. 1000) must keep every verdict (default 0: the reference "
        "seeds; another offset draws into runs/figures-preview unless --out is given).")] = 0,
    executor: ExecutorOption = "local",
    ray_address: RayAddress = None,
) -> None:
    """Redraw every lecture figure from real runs (training only what is not cached) and
    check every lecture claim in REPORT.md."""
    from initlab.describe import plural
    from initlab.errors import RunInterrupted
    from initlab.figures import build_figures
    from initlab.jobs import default_jobs
    from initlab.progress import RichProgress
    from initlab.report import report_table

    if out is None:  # a quick or partial run never lands in the committed reference figures
        out = Path("figures") if not (quick or only or seed_offset) else PREVIEW_FIGURES
    out = user_path(out, "--out")  # type: ignore[assignment]
    cache = user_path(cache, "--cache")
    data_root = str(user_path(Path(data_root), "--data-root")) if data_root else data_root
    log = say
    cluster = ray_executor(executor, ray_address, None)
    if cluster is not None and jobs is not None:
        raise UsageError("--jobs sets the local pool's processes; with --executor ray every "
                         "group is a task and the cluster's CPUs decide how many run at once")
    with RichProgress(console) as progress, cluster or contextlib.nullcontext():
        try:
            result = build_figures(only, quick, out, cache, data_root, progress.factory, log,
                                   overrides=set_ or (), max_group=max_group,
                                   jobs=jobs or default_jobs(), seed_offset=seed_offset,
                                   executor=cluster)
        except RunInterrupted as stop:
            progress.stop()
            log("interrupted: unfinished runs start afresh on the next `initlab figures`")
            raise typer.Exit(stop.exit_code) from None
    TextConsole(markup=True).print(report_table(result.claims, result.title))
    log(f"wrote {plural(len(result.files), 'file')} and {result.report}")

@app.command()
@friendly_errors
def bench(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the results as JSON here (default: bench.json, never over an "
        "existing one without --force).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing bench.json when --out is not given.")] = False,
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
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Time only this section (repeatable): mlp (initlab's trainer against "
        "plain PyTorch), watch (initlab.watch on a CNN and a transformer) or threads (whole "
        "runs with 1 or 2 threads, idle and beside a busy process; only when asked for).")] = None,
    against: Annotated[str | None, typer.Option(
        "--against", help="Compare with another version of initlab instead: a git revision of "
        "this checkout or a folder holding initlab/. Both run at once and take turns a block "
        "at a time; new / old per contender with its 95% interval (docs/benchmarks.md).")]
    = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="With --against: blocks per "
                                        "contender and side; two rounds, one with each side "
                                        "first, make one sample.")] = 20,
    pairs: Annotated[int, typer.Option("--pairs", min=1, help="With --against: fresh pairs "
                                       "of worker processes, one after the other, each timing "
                                       "--rounds rounds; the verdict reads the spread across "
                                       "them (6 or more for a 95% interval).")] = 6,
    data_root: DataRoot = None,
) -> None:
    """Seconds per epoch per model: the plain PyTorch way against initlab (one config, sweeps),
    and the cost of initlab.watch on models that are not initlab's; with --against, this code
    against another version of it."""
    from initlab.bench import run_bench, settings_for
    from initlab.runs import check_output_parent, output_folder, refuse_unsafe_target

    if out is None:
        out = DEFAULT_BENCH_OUT
        if os.path.lexists(out) and not force:  # a file the user did not name
            raise UsageError(f"{out} exists and --out was not given; name the results with "
                             f"--out FILE, or add --force to overwrite it")
    out = user_path(out, "--out")  # type: ignore[assignment]
    # Checked before the benchmark, which takes minutes: its result is never lost at the end.
    check_output_parent(out.parent)
    refuse_unsafe_target(out)
    data_root = str(user_path(Path(data_root), "--data-root")) if data_root else data_root
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {bounded(device)!r}")
    settings = settings_for(device, steps, warmup, blocks, sweep, data_root, only)
    output_folder(out.parent)
    if against is not None:
        from initlab.bench_pair import run_pair

        run_pair(against, settings, rounds, out, TextConsole(markup=True), pairs)
        return
    run_bench(settings, out, TextConsole(markup=True))


def show_warnings_plainly() -> None:
    """Warnings that libraries raise for their own users (PyTorch's DDP notes, deprecations)
    are not ours to show; initlab's own are one line each."""
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"initlab(\.|$)")

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        say(f"warning: {message}")

    warnings.showwarning = show


def main() -> None:
    show_warnings_plainly()
    try:
        app()
    except KeyboardInterrupt:  # outside training (which checkpoints itself)
        sys.exit(130)
    except Exception as err:
        # A worker of `--nproc` whose peer died sees its collectives fail: one line (the
        # launcher says what happened and how to continue), not a page of gloo's traceback.
        from initlab.distributed import RUN_DIR_FILE_ENV

        if os.environ.get(RUN_DIR_FILE_ENV) is None:
            raise
        rank = os.environ.get("RANK", "?")
        # gloo's messages start with the C++ source location: "[.../pair.cc:545] Read error"
        text = re.sub(r"^\[[^\]]*\]\s*", "", str(err).strip().split("\n")[0])[:160]
        print(f"initlab worker {rank}: {type(err).__name__}{': ' + text if text else ''}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
