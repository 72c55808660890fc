"""Errors a user can fix. The CLI prints their message and exits with code 2."""

from __future__ import annotations


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
