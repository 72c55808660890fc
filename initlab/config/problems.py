"""Problem reports: each problem one line ``<source>: <key>: <message>``, collected rather than
raised one by one (a user sees everything wrong with a file at once), with values quoted
briefly and unknown keys answered with the nearest known one."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable

from initlab.config.schema import FIELDS, SECTIONS, section_keys
from initlab.errors import bounded


class Problems:
    """Problem lines ``<source>: <key>: <message>`` in the order found, without duplicates."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        # dotted key -> where on the command line its value came from ("--set init.c=3");
        # a problem under ``sweep.KEY`` (``sweep.KEY[1]``) looks up ``sweep.KEY``
        self.origins: dict[str, str] = {}

    def add(
        self, key: str, message: str, *, related: Iterable[str] = (), override: str | None = None
    ) -> None:
        origin = None if override is None else f"--set {bounded(override)}"
        if origin is None:
            origin = next((self.origins[k] for k in (key, key.partition("[")[0], *related)
                           if k in self.origins), None)
        where = self.source if origin is None else f"{self.source} ({origin})"
        key = bounded(key)
        message = " ".join(message.split("\n"))  # one line per problem, whatever the parser said
        line = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if line not in self.lines:
            self.lines.append(line)


def show(value: object) -> str:
    """A value as quoted in a problem: its repr (shortened) and its type."""
    if value is None:
        return "null"
    return f"{brief(value)} ({type(value).__name__})"


_REPR = reprlib.Repr()  # bounded in depth and length: an alias bomb's value prints small
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def brief(value: object, limit: int = 60) -> str:
    """A value as a message quotes it: its repr, at most ``limit`` characters (and never the
    whole of a huge or deeply nested value)."""
    if isinstance(value, str):
        return repr(bounded(value, limit))
    text = "null" if value is None else _REPR.repr(value)
    return bounded(text, limit)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(word: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    hint = did_you_mean(word, candidates)
    return "unknown key" + (hint or f"; expected one of: {', '.join(candidates)}")


def unknown_path(key: str) -> str:
    """Problem text for a dotted key (--set or sweep) that names no field."""
    hint = did_you_mean(key, FIELDS)
    if hint:
        return "unknown key" + hint
    section = key.partition(".")[0]
    if section in SECTIONS:
        return unknown_key(key, section_keys(section))
    return f"unknown key; expected name or SECTION.FIELD, SECTION one of {', '.join(SECTIONS)}"
