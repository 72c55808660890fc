"""Errors a user can fix (exit code 2), and the interruption of a run (exit 128 + signal)."""

from __future__ import annotations

from pathlib import Path


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
    ``initlab run --resume`` takes; exit 128 + signal number."""

    def __init__(self, signum: int, path: Path):
        self.signum = signum
        self.path = path
        super().__init__(f"interrupted by signal {signum}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
