"""Errors a user can fix (exit code 2), and the interruption of a run (exit 128 + signal)."""

from __future__ import annotations

from pathlib import Path

ECHO_LIMIT = 80  # a user's value longer than this is shortened in messages


def bounded(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user's value as a message quotes it: on one line (control characters escaped) and at
    most ``limit`` characters, its middle cut out (a megabyte-long value must not flood a
    terminal, nor a newline split a one-line message)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 4 * limit:  # only what can be shown is escaped
        text = text[: 2 * limit] + text[-2 * limit:]
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= limit:
        return text
    keep = limit - 5
    return f"{text[: keep // 2]} ... {text[len(text) - (keep - keep // 2):]}"


def printable(text: str, newlines: bool = True) -> str:
    """Text as a terminal shows it safely: control characters (an escape sequence, a carriage
    return, a bell) written as escapes (``\\x1b``), so that a user's text can never move the
    cursor or recolour what follows; line breaks kept with ``newlines``, else escaped too (a
    name holding one must not look like two lines)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (newlines and c == "\n") else repr(c)[1:-1]
                   for c in text)


class UsageError(Exception):
    """Bad input from the user: one clear message, exit code 2, nothing written."""

    exit_code = 2


class ConfigError(UsageError):
    """One or more problems in a config file; each names the file and the key path."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DataError(UsageError):
    """MNIST files missing, corrupted or not fetchable."""


class RunInterrupted(Exception):
    """SIGINT/SIGTERM stopped training: the checkpoints are written; ``path`` is what
    ``initlab run --resume`` takes (None where the trainer raises it: whoever knows the run's
    directory raises it again with it); exit 128 + signal number."""

    def __init__(self, signum: int, path: Path | None = None):
        self.signum = signum
        self.path = path
        super().__init__(f"interrupted by signal {signum}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
