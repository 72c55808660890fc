"""A config file (or a dict, or one changed key) to a validated ``Experiment``: read it,
apply the overrides, check everything, expand the sweep; every problem reported at once."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from initlab.config.checks import build, check_cross, check_fields, check_value, flatten, valid_name
from initlab.config.overrides import apply_overrides
from initlab.config.problems import Problems, show, unknown_path
from initlab.config.schema import FIELDS, SECTIONS, RunConfig, flat_values
from initlab.config.sweep import build_member, check_sweep, expand
from initlab.config.yaml12 import PARSE_ERRORS, load_yaml, yaml_problem
from initlab.errors import ConfigError, bounded

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; this bounds a hostile one

# --- Starter configs -----------------------------------------------------------------------------

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "configs"  # shipped in the wheel


def example_names() -> list[str]:
    """The starter configs that ship with initlab, by name."""
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))


def find_config(text: str | Path) -> Path:
    """The config file a user named: that path, or a starter config by its bare name
    (``initlab run kaiming`` from any folder). A name that is neither stays as given, so that
    loading it reports the missing file."""
    path = Path(text)
    if path.exists() or len(path.parts) != 1:
        return path
    packaged = EXAMPLES_DIR / f"{path.stem}.yaml"
    return packaged if packaged.is_file() and path.suffix in ("", ".yaml") else path


@dataclass
class Member:
    """One run of an experiment: a point of the sweep grid (or the only run of a plain file)."""

    name: str  # directory-safe, e.g. "c=1.7_norm=layer"; "" for a file without a sweep
    overrides: dict[str, object]  # dotted key -> value of this member
    config: RunConfig


@dataclass
class Experiment:
    """A validated config file: its base config and the runs its sweep expands to."""

    name: str
    base: RunConfig  # the file plus --set overrides, before the sweep
    sweep: dict[str, list]  # dotted key -> values, in file order
    members: list[Member]

    @property
    def is_sweep(self) -> bool:
        return bool(self.sweep)


def read_config_text(path: Path) -> str:
    """A config file's text, read as a bounded reader reads: a regular file only (a FIFO would
    block, /dev/zero never end: opened without blocking, then checked), at most
    MAX_CONFIG_BYTES; else ValueError saying what is wrong (OSError as the system says)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("is a directory, expected a YAML file" if stat.S_ISDIR(info.st_mode)
                         else "is not a regular file, expected a YAML file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"is {info.st_size:,} bytes; a config is at most "
                             f"{MAX_CONFIG_BYTES:,}")
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"is more than {MAX_CONFIG_BYTES:,} bytes; a config is at most "
                         f"{MAX_CONFIG_BYTES:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None


def _read_mapping(path: Path, problems: Problems) -> dict | None:
    """The file's top-level mapping, or None after recording why there is none."""
    try:
        text = read_config_text(path)
    except FileNotFoundError:
        problems.add("", f"no such file (the starter configs: {', '.join(example_names())})")
        return None
    except ValueError as err:
        problems.add("", str(err))
        return None
    except OSError as err:  # a symlink loop, a NUL in the name, ...
        problems.add("", f"cannot read: {bounded(err.strerror or str(err))}")
        return None
    try:
        data = load_yaml(text)
    except PARSE_ERRORS as err:  # e.g. date 2020-13-45
        problems.add("", yaml_problem(err))
        return None
    sections = ", ".join(SECTIONS)
    if data is None:
        problems.add("", f"the file is empty; expected a mapping with sections {sections}")
        return None
    if not isinstance(data, dict):
        problems.add("", f"expected a mapping with sections {sections}, got {show(data)}")
        return None
    return data


def _analyse(path: str | Path, overrides: Sequence[str], construct: bool = True,
             swept: Mapping[str, Sequence[str]] | None = None,
             ) -> tuple[Experiment | None, list[str]]:
    """The experiment (None if anything is wrong, or not ``construct``) and every problem
    found. ``swept``: keys swept on the command line (``key=a,b -m``), their values as typed,
    added to the file's sweep (a key in both takes the command line's)."""
    path = find_config(path)
    problems = Problems(str(path))
    data = _read_mapping(path, problems)
    if data is None:
        return None, problems.lines
    flat, raw_sweep = flatten(data, problems, allow_sweep=True)
    if swept:
        raw_sweep = _add_command_line_sweep(raw_sweep, swept, problems)
    swept = {str(k) for k in raw_sweep} if isinstance(raw_sweep, dict) else set()
    apply_overrides(overrides, flat, swept, problems)
    if "name" not in flat:
        problem = valid_name(path.stem)
        if problem:
            problems.add("name", f"{problem} (taken from the file name; set name: in the file)")
        else:
            flat["name"] = path.stem
    typed, bad = check_fields(flat, problems)
    sweep = check_sweep(raw_sweep, problems)
    check_cross(typed, problems, bad=bad, swept=swept)
    members = expand(sweep, typed, bad, problems) if sweep is not None else []
    if problems.lines:
        return None, problems.lines
    if not construct:
        return None, []
    base = build(typed)
    experiment = Experiment(
        name=typed["name"],
        base=base,
        sweep=sweep,
        members=[Member(name, ov, build_member(base, typed, ov)) for name, ov in members],
    )
    return experiment, []


def _add_command_line_sweep(raw_sweep: object, swept: Mapping[str, Sequence[str]],
                            problems: Problems) -> object:
    """The file's sweep with the command line's keys added, each value read in the config's
    YAML dialect; problems in them name the command line, not the file. A file's sweep that is
    not a mapping stays as it is (its problem is reported, never replaced)."""
    if not isinstance(raw_sweep, dict):
        return raw_sweep
    merged = dict(raw_sweep)
    for key, raws in swept.items():
        text = f"{key}={','.join(raws)}"
        problems.origins[f"sweep.{key}"] = f"command line {bounded(text)} -m"
        values = []
        for raw in raws:
            try:
                values.append(load_yaml(raw))
            except PARSE_ERRORS as err:
                problems.add(f"sweep.{key}", f"cannot parse the value {bounded(raw)!r}: "
                             f"{yaml_problem(err)}")
                values = []
                break
        if values:
            merged[key] = values
    return merged


def analyse(path: str | Path, overrides: Sequence[str] = (),
            swept: Mapping[str, Sequence[str]] | None = None,
            ) -> tuple[Experiment | None, list[str]]:
    """The experiment and no problem, or None and every problem (one analysis of the file)."""
    return _analyse(path, overrides, swept=swept)


def load_experiment(path: str | Path, overrides: Sequence[str] = (),
                    swept: Mapping[str, Sequence[str]] | None = None) -> Experiment:
    """Read, override, validate and expand a config file (with keys swept on the command
    line, ``swept``); ConfigError lists every problem."""
    experiment, problems = _analyse(path, overrides, swept=swept)
    if experiment is None:
        raise ConfigError(problems)
    return experiment


def validate_file(path: str | Path, overrides: Sequence[str] = ()) -> list[str]:
    """Every problem of a config file with these overrides; empty when it is valid."""
    return _analyse(path, overrides, construct=False)[1]


def config_from_dict(d: dict, source: str = "<dict>") -> RunConfig:
    """A validated RunConfig from a nested dict such as a run's resolved config.yaml."""
    problems = Problems(source)
    if not isinstance(d, dict):
        raise ConfigError([f"{source}: expected a mapping of config sections, got {show(d)}"])
    flat, _ = flatten(d, problems, allow_sweep=False)
    typed, bad = check_fields(flat, problems)
    check_cross(typed, problems, bad=bad)
    if problems.lines:
        raise ConfigError(problems.lines)
    return build(typed)


def set_dotted(cfg: RunConfig, key: str, value: object) -> RunConfig:
    """A copy of cfg with one dotted key (e.g. "init.c") set, validated like a --set override.

    Only ``key`` counts as set by the caller, so setting init.scheme to kaiming sets c to 2.
    """
    problems = Problems(f"set_dotted({key}={value!r})")
    checked, problem = check_value(key, value) if key in FIELDS else (None, unknown_path(key))
    if problem:
        problems.add(key, problem)
        raise ConfigError(problems.lines)
    typed = {**flat_values(cfg), key: checked}
    check_cross(typed, problems, explicit={key})
    if problems.lines:
        raise ConfigError(problems.lines)
    return build(typed)

