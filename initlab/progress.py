"""What a person sees while training: a progress bar per group with its time left (on a
terminal) or a plain line now and then (piped into a file, nohup, CI logs), and a summary line
per member.

Training reports through a ``ProgressFactory``: called once per group with a label and the
group's total steps, it returns the function that receives that group's events (``start``,
``step``, ``steps``, ``resume``, ``epoch``, ``done``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column
from rich.text import Text

from initlab.describe import plural
from initlab.errors import printable
from initlab.runs import Outcome
from initlab.wording import how_it_ended, percent

ProgressFactory = Callable[[str, int], Callable[[dict[str, Any]], None]]
LINE_EVERY_S = 30.0  # without a terminal: a line at least this often while steps advance


def quiet_progress(label: str, total: int) -> Callable[[dict[str, Any]], None]:
    """A factory whose bars show nothing."""
    return lambda event: None


class TextConsole(Console):
    """A console on which text stays text: no ``:emoji:`` codes, no highlighting, no markup
    unless asked for (``markup=True``: only initlab's own words carry any), and control
    characters, line breaks included, escaped in every string it renders, table cells too
    (``printable``): text of several lines is printed a line at a time."""

    def __init__(self, **options: Any) -> None:
        options = {"markup": False, "emoji": False, "highlight": False, **options}
        super().__init__(**options)

    def render_str(self, text: str, **options: Any) -> Any:
        return super().render_str(printable(text, newlines=False), **options)


class RichProgress:
    """Bars on a terminal; plain lines (``LineProgress``) when the console is not one, since a
    live display shows nothing until it ends there."""

    def __init__(self, console: Console):
        self.console = console
        self.lines = None if console.is_terminal else LineProgress(console)
        # The times before what was measured: at 80 columns only the last column folds.
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=16, table_column=Column(no_wrap=True)),
            TextColumn("{task.percentage:>3.0f}%", table_column=Column(no_wrap=True)),
            TimesColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[status]}", table_column=Column(overflow="fold")),
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
        if self.lines is not None:
            return self.lines.factory(label, total)
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
                self.progress.reset(task, total=max(total, 1), completed=event["step"],
                                    status="resumed")
            elif kind == "start":
                self.progress.update(task, status=f"init, {measured(event)}")
            elif kind == "epoch":
                self.progress.update(task, status=f"epoch {event['epoch']}, "
                                                  f"{measured(event)}")
            elif kind == "done":
                ended = diverged_text(event)
                if all_diverged(event):  # it stopped there: the bar says where
                    self.progress.update(task, status=f"stopped: {ended}")
                    self.progress.stop_task(task)
                else:
                    self.progress.update(task, completed=self.progress.tasks[task].total,
                                         **({"status": ended} if ended else {}))

        return on_event


class LineProgress:
    """Progress as plain lines: at the start, at every epoch's end and, between them, at
    least every ``LINE_EVERY_S`` seconds: steps done, what was last measured, the time so far
    and an estimate of the time left."""

    def __init__(self, console: Console, every_s: float = LINE_EVERY_S):
        self.console = console
        self.every_s = every_s

    def factory(self, label: str, total: int) -> Callable[[dict[str, Any]], None]:
        total = max(total, 1)
        state = {"done": 0, "first": 0, "began": time.monotonic(), "last_line": 0.0,
                 "measured": ""}

        def line(note: str = "") -> None:
            now = time.monotonic()
            state["last_line"] = now
            done = state["done"]
            parts = [f"{label}: step {done}/{total} ({100 * done // total}%)"]
            if note or state["measured"]:
                parts.append(note or state["measured"])
            elapsed = now - state["began"]
            parts.append(f"{_clock(elapsed)} so far")
            rate = (done - state["first"]) / elapsed if elapsed > 0 else 0.0
            if 0 < done < total and rate > 0 and not note.startswith(("done", "stopped")):
                parts.append(f"about {_clock((total - done) / rate)} left")
            self.console.print(", ".join(parts), highlight=False, markup=False,
                               soft_wrap=True)

        def on_event(event: dict[str, Any]) -> None:
            kind = event["kind"]
            if kind in ("step", "steps"):
                state["done"] += event.get("n", 1)
                if time.monotonic() - state["last_line"] >= self.every_s:
                    line()
            elif kind == "resume":
                state["done"] = state["first"] = event["step"]
                state["began"] = time.monotonic()
                line("resumed")
            elif kind == "start":
                state["began"] = time.monotonic()  # the rate counts training steps only
                state["measured"] = f"at init: {measured(event)}"
                line()
            elif kind == "epoch":
                state["measured"] = f"epoch {event['epoch']}, {measured(event)}"
                line()
            elif kind == "done":  # a target or a divergence can end it before its last step
                ended = diverged_text(event)
                line(f"stopped: {ended}" if all_diverged(event) else
                     "done" + (f", {ended}" if ended else ""))

        return on_event


class TimesColumn(ProgressColumn):
    """``0:40, 1:20 left`` while running; ``0:40`` once finished or stopped early."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        text = _clock(elapsed or 0)
        running = not task.finished and task.stop_time is None
        if running and task.time_remaining is not None:
            text += f", {_clock(task.time_remaining)} left"
        return Text(text, style="progress.elapsed")


def measured(event: dict[str, Any]) -> str:
    """``loss 0.1234, test err 4.99%`` over the members still training, and how many
    diverged where: a diverged member's test error is not a result (its weights stopped)."""
    errors = event["test_error"]
    diverged = event.get("diverged") or [None] * len(errors)
    live = [i for i, step in enumerate(diverged) if step is None]
    parts = []
    if live and "loss" in event:
        parts.append(f"loss {_span([event['loss'][i] for i in live], pct=False)}")
    if live:
        parts.append(f"test err {_span([errors[i] for i in live])}")
    ended = diverged_text(event)
    return ", ".join([*parts, *([ended] if ended else [])])


def all_diverged(event: dict[str, Any]) -> bool:
    diverged = event.get("diverged") or []
    return bool(diverged) and all(step is not None for step in diverged)


def diverged_text(event: dict[str, Any]) -> str:
    """``diverged at step 2`` (one member), ``1 of 3 diverged at step 2``, ``all 3 diverged at
    step 2``, or ""."""
    diverged = event.get("diverged") or []
    steps = sorted({step for step in diverged if step is not None})
    if not steps:
        return ""
    count = sum(step is not None for step in diverged)
    who = "" if len(diverged) == 1 else (f"all {count} " if count == len(diverged)
                                         else f"{count} of {len(diverged)} ")
    return f"{who}diverged at step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _span(values: Sequence[float], pct: bool = True) -> str:
    """One number, or the range over a group's members."""
    fmt = percent if pct else (lambda v: f"{v:.4f}")
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def outcome_line(outcome: Outcome) -> str:
    s = outcome.summary
    err = s.get("final_test_error")
    parts = [how_it_ended(s)]
    if err is not None and s["status"] != "diverged":
        parts.append(f"test error {percent(err)}")
    if s.get("reached_target_epoch") is not None:
        parts.append(f"target reached at epoch {s['reached_target_epoch']}")
    parts.append(f"{plural(s['epochs'], 'epoch')}, {plural(s['steps'], 'step')}, "
                 f"{s['wall_seconds']:.1f} s")
    return f"{outcome.path}: " + ", ".join(parts)


def print_outcomes(console: Console, outcomes: Sequence[Outcome]) -> None:
    for outcome in outcomes:
        console.print(outcome_line(outcome), highlight=False, markup=False, soft_wrap=True)
    diverged = [o.path.name for o in outcomes if o.summary["status"] == "diverged"]
    if diverged:
        console.print(f"diverged: {', '.join(diverged)}", highlight=False, markup=False,
                      soft_wrap=True)
