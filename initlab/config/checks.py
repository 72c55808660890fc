"""The validation engine: each value against its field (type, choices, range), the file's
structure (unknown sections and keys), the checks that read several fields, and the
``RunConfig`` built from values that passed.

A file is read into a flat mapping ``dotted key -> raw value`` (``name``, ``model.depth``, ...),
overrides are applied to it, then every value is checked on its own, and finally the checks that
involve several fields run on the merged values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Container, Mapping, Set
from pathlib import Path
from typing import Any

from initlab.choices import INIT_CHOICES, NORM_CHOICES
from initlab.config.problems import Problems, brief, did_you_mean, show, unknown_key
from initlab.config.schema import DEFAULTS, FIELDS, SECTIONS, Field, RunConfig, section_keys

_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME = 200  # a run's name is a directory name (255 bytes), with room for "-2", "-3", ...


def _at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}, got {v!r}"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    """An integer in [low, high]: beyond, a run would not fit any machine initlab runs on
    (its memory is estimated before training, within these)."""
    return lambda v: None if low <= v <= high else f"must be in {low}..{high:,}, got {v!r}"


def _above(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v > low else f"must be > {low}, got {v!r}"


def _below_one(*, low_open: bool = False) -> Callable[[Any], str | None]:
    """A fraction: [0, 1), or (0, 1) with low_open."""
    if low_open:
        return lambda v: None if 0 < v < 1 else f"must be in (0, 1), got {v!r}"
    return lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {v!r}"


def valid_name(value: str) -> str | None:
    # The name becomes a directory under runs/, so it must be one path component.
    if _NAME_RE.fullmatch(value) and value not in (".", "..") and len(value) <= MAX_NAME:
        return None
    if len(value) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters (it names a directory), got {len(value)}"
    return f"must be a non-empty name of letters, digits, '.', '_' and '-', got {brief(value)}"


def _directory(value: str) -> str | None:
    if not value:
        return "must not be empty; use null for the default data directory"
    if "\0" in value:
        return "must not contain a NUL character"
    try:
        is_file = Path(value).expanduser().is_file()
    except RuntimeError:  # ~user of no such user
        return f"{brief(value, 200)}: no such user's home directory"
    except (OSError, ValueError):  # e.g. a name too long for the file system: not our concern here
        is_file = False
    return f"{brief(value, 200)} is a file, expected a directory" if is_file else None


# Range rules, applied to values of the right type (never to null).
_RULES: dict[str, Callable[[Any], str | None]] = {
    "name": valid_name,
    "model.depth": _between(1, 10_000),
    "model.width": _between(1, 1_000_000),
    "model.groups": _at_least(1),
    "model.dropout": _below_one(),
    "init.c": _above(0),
    "data.root": _directory,
    "data.train_subset": _at_least(1),
    "data.test_subset": _at_least(1),
    "train.lr": _above(0),
    "train.momentum": _below_one(),
    "train.weight_decay": _at_least(0),
    "train.batch_size": _at_least(1),
    "train.epochs": _at_least(0),
    "train.max_steps": _at_least(1),
    "train.target_test_error": _below_one(low_open=True),
    "train.seed": _at_least(0),
    "log.every": _at_least(0),
    "log.probe_size": _at_least(1),
    "log.checkpoint_every": _at_least(0),
}


_KIND_NOUNS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(spec: Field) -> str:
    what = "one of " + ", ".join(spec.choices) if spec.choices else _KIND_NOUNS[spec.kind]
    return what + (" or null" if spec.optional else "")


def _has_kind(value: object, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, but never a number here
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def check_value(key: str, value: object) -> tuple[object, str | None]:
    """The value converted to the field's type, or a problem text."""
    spec = FIELDS[key]
    if value is None and spec.optional:
        return None, None
    if not _has_kind(value, spec.kind):
        return None, f"expected {_expected(spec)}, got {show(value)}"
    if spec.kind is float:
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            return None, f"must be a finite number, got {brief(value)}"
    if spec.choices and value not in spec.choices:
        hint = did_you_mean(value, spec.choices)
        return None, f"must be one of {', '.join(spec.choices)}; got {brief(value)}{hint}"
    rule = _RULES.get(key)
    problem = rule(value) if rule else None
    return (None, problem) if problem else (value, None)


def flatten(data: dict, problems: Problems, *, allow_sweep: bool) -> tuple[dict, object]:
    """Split a parsed file into flat ``dotted key -> raw value`` and the raw sweep ({} if none)."""
    top_keys = ["name", *SECTIONS] + (["sweep"] if allow_sweep else [])
    flat: dict[str, object] = {}
    sweep: object = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key == "name":
            flat["name"] = value
        elif key == "sweep" and allow_sweep:
            sweep = value
        elif key in SECTIONS:
            _flatten_section(key, value, flat, problems)
        else:
            problems.add(key, unknown_key(key, top_keys))
    return flat, sweep


def _flatten_section(section: str, value: object, flat: dict, problems: Problems) -> None:
    if not isinstance(value, dict):
        problems.add(section, f"expected a mapping of {section} settings, got {show(value)}")
        return
    names = [k.partition(".")[2] for k in section_keys(section)]
    for raw_key, field_value in value.items():
        name = str(raw_key)
        if name in names:
            flat[f"{section}.{name}"] = field_value
        else:
            problems.add(f"{section}.{name}", unknown_key(name, names))


def check_fields(flat: dict, problems: Problems) -> tuple[dict[str, object], set[str]]:
    """Typed values of the fields that passed their checks, and the keys that did not."""
    typed: dict[str, object] = {}
    bad: set[str] = set()
    for key, value in flat.items():
        checked, problem = check_value(key, value)
        if problem:
            problems.add(key, problem)
            bad.add(key)
        else:
            typed[key] = checked
    return typed, bad


def _norm_fits(values: Mapping[str, Any], explicit: Container[str]) -> str | None:
    return NORM_CHOICES[values["model.norm"]].config_problem(values["model.width"],
                                                       values["model.groups"])


def _fixed_c_is_kept(values: Mapping[str, Any], explicit: Container[str]) -> str | None:
    # A default c is fine with kaiming; a c the user chose would be silently ignored.
    scheme = INIT_CHOICES[values["init.scheme"]]
    c = values["init.c"]
    if scheme.fixed_c is not None and "init.c" in explicit and c != scheme.fixed_c:
        return (f"{scheme.name} means c = {scheme.fixed_c:g}; use scheme: "
                f"{scheme.resolves_to} to choose c, got {c!r}")
    return None


def _batch_size_fits_norm(key: str) -> Callable[[Mapping[str, Any], Container[str]],
                                                  str | None]:
    """A norm that takes statistics over the batch needs enough examples in it (the training
    batch and the probe batch alike): over one example, every activation normalizes to 0."""
    def check(values: Mapping[str, Any], explicit: Container[str]) -> str | None:
        norm = NORM_CHOICES[values["model.norm"]]
        if values[key] < norm.min_batch:
            return (f"must be at least {norm.min_batch} for norm: {norm.name} (its statistics "
                    f"over a batch of {values[key]} are degenerate), got {values[key]}")
        return None

    return check


# (key the problem is reported at, keys the check reads, check)
_CROSS_CHECKS = (
    ("model.groups", ("model.norm", "model.width", "model.groups"), _norm_fits),
    ("init.c", ("init.scheme", "init.c"), _fixed_c_is_kept),
    ("train.batch_size", ("model.norm", "train.batch_size"),
     _batch_size_fits_norm("train.batch_size")),
    ("log.probe_size", ("model.norm", "log.probe_size"), _batch_size_fits_norm("log.probe_size")),
)


def check_cross(
    typed: dict[str, object],
    problems: Problems,
    *,
    bad: Set[str] = frozenset(),
    swept: Set[str] = frozenset(),
    member: str | None = None,
    explicit: Container[str] | None = None,
) -> None:
    """Checks across fields, skipping those that read a bad key.

    The base runs the checks that read no swept key, each sweep member the others. ``explicit``
    holds the keys the user set (default: those in ``typed``).
    """
    values = {**DEFAULTS, **typed}
    for key, reads, check in _CROSS_CHECKS:
        reads_sweep = not swept.isdisjoint(reads)
        if not bad.isdisjoint(reads) or reads_sweep != (member is not None):
            continue
        problem = check(values, typed if explicit is None else explicit)
        if problem:
            suffix = f" (sweep member {member})" if member is not None else ""
            problems.add(key, problem + suffix, related=reads)


def build(typed: Mapping[str, object]) -> RunConfig:
    """A RunConfig from valid values over the defaults; a scheme that fixes c resolves (kaiming:
    normal with c = 2)."""
    values = {**DEFAULTS, **typed}
    scheme = INIT_CHOICES[values["init.scheme"]]
    if scheme.resolves_to is not None:
        values.update({"init.scheme": scheme.resolves_to, "init.c": scheme.fixed_c})
    parts: dict[str, dict[str, object]] = {section: {} for section in SECTIONS}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if name:
            parts[section][name] = value
    sections = {section: cls(**parts[section]) for section, cls in SECTIONS.items()}
    return RunConfig(name=values["name"], **sections)


