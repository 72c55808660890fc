"""What a person sees while training: a progress bar per group, a summary line per member.

Training reports through a ``ProgressFactory``: called once per group with a label and the
group's total steps, it returns the function that receives that group's events (``start``,
``step``, ``steps``, ``resume``, ``epoch``, ``done``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from initlab.runs import Outcome

ProgressFactory = Callable[[str, int], Callable[[dict[str, Any]], None]]


def quiet_progress(label: str, total: int) -> Callable[[dict[str, Any]], None]:
    """A factory whose bars show nothing."""
    return lambda event: None


class RichProgress:
    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.started = False

    def __enter__(self) -> RichProgress:
        return self  # the display starts with the first bar: an early error prints alone

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def factory(self, label: str, total: int) -> Callable[[dict[str, Any]], None]:
        if not self.started:
            self.progress.start()
            self.started = True
        task = self.progress.add_task(label, total=max(total, 1), status="init")

        def on_event(event: dict[str, Any]) -> None:
            kind = event["kind"]
            if kind == "step":
                self.progress.advance(task)
            elif kind == "steps":  # a worker process's steps, in batches (initlab.jobs)
                self.progress.advance(task, event["n"])
            elif kind == "resume":  # continue the bar where the checkpoint left off
                self.progress.update(task, completed=event["step"], status="resumed")
            elif kind == "start":
                status = f"init  test err {_span(event['test_error'])}"
                self.progress.update(task, status=status)
            elif kind == "epoch":
                status = (f"epoch {event['epoch']}  loss {_span(event['loss'], pct=False)}  "
                          f"test err {_span(event['test_error'])}")
                self.progress.update(task, status=status)
            elif kind == "done":
                self.progress.update(task, completed=self.progress.tasks[task].total)

        return on_event


def _span(values: Sequence[float], pct: bool = True) -> str:
    """One number, or the range over a group's members."""
    fmt = (lambda v: f"{100 * v:.2f}%") if pct else (lambda v: f"{v:.4f}")
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def outcome_line(outcome: Outcome) -> str:
    s = outcome.summary
    err = s.get("final_test_error")
    parts = [s["status"]]
    if err is not None:
        parts.append(f"test error {100 * err:.2f}%")
    if s.get("reached_target_epoch") is not None:
        parts.append(f"target reached at epoch {s['reached_target_epoch']}")
    if s.get("diverged_step") is not None:
        parts.append(f"diverged at step {s['diverged_step']}")
    parts.append(f"{s['epochs']} epochs, {s['steps']} steps, {s['wall_seconds']:.1f} s")
    return f"{outcome.path}: " + ", ".join(parts)


def print_outcomes(console: Console, outcomes: Sequence[Outcome]) -> None:
    for outcome in outcomes:
        console.print(outcome_line(outcome), highlight=False, markup=False, soft_wrap=True)
    diverged = [o.path.name for o in outcomes if o.summary["status"] == "diverged"]
    if diverged:
        console.print(f"diverged: {', '.join(diverged)}", highlight=False, markup=False,
                      soft_wrap=True)
