"""Run configuration: the one place for every default.

A YAML file has the sections ``model``, ``init``, ``data``, ``train``, ``log`` and an optional
``sweep`` (dotted key -> list of values) plus a top-level ``name``.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
import reprlib
import stat
from collections.abc import Callable, Container, Iterable, Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from initlab.activations import ACTIVATIONS
from initlab.errors import ConfigError, bounded
from initlab.inits import INITS
from initlab.norms import NORMS, POSITIONS


def shared(default: Any, doc: str) -> Any:
    """A field every member of a group shares (members that differ in it train apart), and
    what it does (the README's config reference shows ``doc``)."""
    return field(default=default, metadata={"scope": "group", "doc": doc})


def member(default: Any, doc: str) -> Any:
    """A field each member of a group may set for itself (the stacked model trains it)."""
    return field(default=default, metadata={"scope": "member", "doc": doc})


@dataclass
class ModelConfig:
    depth: int = shared(50, "number of Linear layers L")
    width: int = shared(100, "units in each hidden layer")
    activation: str = shared("relu", "the nonlinearity after each hidden Linear layer")
    norm: str = shared("none", "normalization of each hidden layer (placed by "
                               "`norm_position`)")
    norm_position: str = shared("post", "post: after the activation, the lecture's placement, "
                                        "norm(act(z W + b)); pre: before it, act(norm(z W + b))")
    groups: int = shared(10, "groups of features for `norm: group`; must divide `width`")
    dropout: float = member(0.0, "dropout rate after each hidden layer, in [0, 1)")
    bias: bool = shared(True, "Linear layers have biases (they start at 0)")


@dataclass
class InitConfig:
    scheme: str = member("normal", "how each W_i is drawn: normal N(0, c/n), uniform with the "
                                   "same variance, zeros, or kaiming (normal with c = 2)")
    c: float = member(2.0, "the scale: Var(W_i) = c / n_in, n_in the layer's fan-in; > 0")


@dataclass
class DataConfig:
    root: str | None = shared(None, "where MNIST is (null: --data-root, else $INITLAB_DATA, "
                                    "else ~/.cache/initlab)")
    scaling: str = shared("unit", "pixels in [0, 1] (unit), or standardized with MNIST's "
                                  "mean 0.1307 and std 0.3081 (standard)")
    train_subset: int | None = shared(None, "train on the first N training images only")
    test_subset: int | None = shared(None, "evaluate on the first N test images only")


@dataclass
class TrainConfig:
    optimizer: str = shared("sgd", "plain SGD (with `momentum`) or Adam")
    lr: float = member(0.01, "learning rate, > 0")
    momentum: float = member(0.0, "SGD momentum, in [0, 1)")
    weight_decay: float = member(0.0, "L2 weight decay, >= 0")
    batch_size: int = shared(128, "examples per update (with several processes: the global "
                                  "batch)")
    epochs: int = shared(12, "passes over the training set (0: measure the initial network "
                             "only)")
    max_steps: int | None = shared(None, "stop after this many updates in all")
    target_test_error: float | None = member(None, "stop a member at the end of the first "
                                                   "epoch whose test error is <= this (e.g. "
                                                   "0.05); null: train all epochs")
    seed: int = member(0, "seeds the weights, the data order and dropout")
    device: str = shared("auto", "where to train: auto takes a GPU when there is one")
    cuda_graph: str = shared("auto", "replay the training step from CUDA graphs (auto: on a "
                                     "GPU, in one process)")
    backward: str = shared("auto", "auto: the hand-written backward where the net has one; "
                                   "autograd: always autograd")
    checkpoint: str = shared("keep", "keep: the newest checkpoint and the one before it (a "
                                     "sweep killed mid-write resumes); last: only the newest "
                                     "once every member has it; none: no checkpoint, no resume")


@dataclass
class LogConfig:
    every: int = shared(100, "updates between 'train' records; 0: only init, epoch ends and "
                             "final")
    probe_size: int = shared(512, "fixed training images the init, epoch and final records "
                                  "measure")
    checkpoint_every: int = shared(1000, "updates between checkpoints; 0: only at epoch ends")


@dataclass
class RunConfig:
    name: str = "run"  # each member's own (a sweep names its members)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


NAME_DOC = ("the run's directory under --out (default: the config file's name); a sweep's "
            "members are named by their values, e.g. `c=1.7_lr=0.01`")


# --- Starter configs -----------------------------------------------------------------------------

EXAMPLES_DIR = Path(__file__).resolve().parent / "configs"  # shipped in the wheel


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


# --- Loading and validation -----------------------------------------------------------------------
#
# A file is read into a flat mapping ``dotted key -> raw value`` (``name``, ``model.depth``, ...),
# overrides are applied to it, then every value is checked on its own, and finally the checks that
# involve several fields run on the merged values. Problems are collected, never raised one by one,
# so a user sees everything wrong with a file at once.


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


@dataclass(frozen=True)
class _Field:
    kind: type  # int, float, bool or str
    optional: bool  # accepts null
    choices: tuple[str, ...] = ()


_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_MEMBER_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._=+-]")
MAX_NAME = 200  # a run's name is a directory name (255 bytes), with room for "-2", "-3", ...
MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; this bounds a hostile one
MAX_YAML_VALUES = 100_000  # values a file may hold once its aliases are expanded
MAX_MEMBERS = 100_000  # members of one sweep

_CHOICES: dict[str, tuple[str, ...]] = {
    "model.activation": tuple(ACTIVATIONS),
    "model.norm": tuple(NORMS),
    "model.norm_position": POSITIONS,
    "init.scheme": tuple(INITS),
    "data.scaling": ("unit", "standard"),
    "train.optimizer": ("sgd", "adam"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.cuda_graph": ("auto", "on", "off"),
    "train.backward": ("auto", "autograd"),
    "train.checkpoint": ("keep", "last", "none"),
}


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


def _valid_name(value: str) -> str | None:
    # The name becomes a directory under runs/, so it must be one path component.
    if _NAME_RE.fullmatch(value) and value not in (".", "..") and len(value) <= MAX_NAME:
        return None
    if len(value) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters (it names a directory), got {len(value)}"
    return f"must be a non-empty name of letters, digits, '.', '_' and '-', got {_brief(value)}"


def _directory(value: str) -> str | None:
    if not value:
        return "must not be empty; use null for the default data directory"
    if "\0" in value:
        return "must not contain a NUL character"
    try:
        is_file = Path(value).expanduser().is_file()
    except RuntimeError:  # ~user of no such user
        return f"{_brief(value, 200)}: no such user's home directory"
    except (OSError, ValueError):  # e.g. a name too long for the file system: not our concern here
        is_file = False
    return f"{_brief(value, 200)} is a file, expected a directory" if is_file else None


# Range rules, applied to values of the right type (never to null).
_RULES: dict[str, Callable[[Any], str | None]] = {
    "name": _valid_name,
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


def _field_table() -> tuple[dict[str, type], dict[str, _Field]]:
    """Sections and fields, read from the dataclasses above so that they stay the one source."""
    hints = get_type_hints(RunConfig)
    sections = {f.name: hints[f.name] for f in fields(RunConfig)}
    table = {"name": _Field(sections.pop("name"), optional=False)}
    for section, cls in sections.items():
        for name, hint in get_type_hints(cls).items():
            args = [a for a in get_args(hint) if a is not type(None)]
            key = f"{section}.{name}"
            kind = args[0] if args else hint
            table[key] = _Field(kind, optional=bool(args), choices=_CHOICES.get(key, ()))
    return sections, table


_SECTIONS, _FIELDS = _field_table()


def _section_keys(section: str) -> list[str]:
    return [key for key in _FIELDS if key.startswith(section + ".")]


def _flat_values(cfg: RunConfig) -> dict[str, object]:
    """``dotted key -> value`` of every field of a config."""
    flat: dict[str, object] = {"name": cfg.name}
    for section in _SECTIONS:
        for name, value in asdict(getattr(cfg, section)).items():
            flat[f"{section}.{name}"] = value
    return flat


_DEFAULTS = _flat_values(RunConfig())


# YAML 1.2's core schema, not PyYAML's YAML 1.1: on/off/yes/no stay strings (so
# `cuda_graph: off` means "off"), 1:30 is a string, 1e-3 is a float. Of 1.1's octal, 010, nothing
# is guessed: a leading zero is refused with a message.
_CORE_RESOLVERS = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with the core schema's scalars; duplicate keys (a silent overwrite) and ints
    with a leading zero (octal or decimal?) are errors with their line."""

    yaml_implicit_resolvers: dict = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {bounded(key_node.value, 40)!r}",
                        key_node.start_mark)
                seen.add(ident)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits.startswith("0") and digits.isdigit():
            raise yaml.constructor.ConstructorError(
                None, None, f"{bounded(text, 20)} has a leading zero (YAML 1.1 reads it as octal, "
                f"1.2 as decimal); write it without", node.start_mark)
        if digits.startswith("0o"):
            return int(text.replace("0o", "", 1), 8)
        return int(text, 0) if digits.startswith("0x") else int(text)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = str(self.construct_scalar(node)).lower()
        if text.lstrip("+-") == ".inf":
            return -math.inf if text.startswith("-") else math.inf
        return math.nan if text == ".nan" else float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string the core schema would read as something else."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in _CORE_RESOLVERS:
    for _cls in (_Loader, _Dumper):
        _cls.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def load_yaml(text: str) -> Any:
    """YAML text as data, with the core schema; ValueError when its aliases would expand to
    more than MAX_YAML_VALUES values (a few lines can name billions)."""
    data = yaml.load(text, Loader=_Loader)
    _check_expanded_size(data)
    return data


def _check_expanded_size(data: Any) -> None:
    """Count the values reachable, each time they are reached (an alias counts again), and
    stop at the bound: bounded time whatever the file."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise ValueError(f"its aliases expand to more than {MAX_YAML_VALUES:,} values")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class _Problems:
    """Problem lines ``<source>: <key>: <message>`` in the order found, without duplicates."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self.origins: dict[str, str] = {}  # dotted key -> the --set text its value came from

    def add(
        self, key: str, message: str, *, related: Iterable[str] = (), override: str | None = None
    ) -> None:
        if override is None:
            override = next((self.origins[k] for k in (key, *related) if k in self.origins), None)
        where = self.source if override is None else f"{self.source} (--set {bounded(override)})"
        key = bounded(key)
        message = " ".join(message.split("\n"))  # one line per problem, whatever the parser said
        line = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        if line not in self.lines:
            self.lines.append(line)


def _show(value: object) -> str:
    """A value as quoted in a problem: its repr (shortened) and its type."""
    if value is None:
        return "null"
    return f"{_brief(value)} ({type(value).__name__})"


_REPR = reprlib.Repr()  # bounded in depth and length: an alias bomb's value prints small
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def _brief(value: object, limit: int = 60) -> str:
    """A value as a message quotes it: its repr, at most ``limit`` characters (and never the
    whole of a huge or deeply nested value)."""
    if isinstance(value, str):
        return repr(bounded(value, limit))
    text = "null" if value is None else _REPR.repr(value)
    return bounded(text, limit)




def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(word: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    hint = _did_you_mean(word, candidates)
    return "unknown key" + (hint or f"; expected one of: {', '.join(candidates)}")


def _unknown_path(key: str) -> str:
    """Problem text for a dotted key (--set or sweep) that names no field."""
    hint = _did_you_mean(key, _FIELDS)
    if hint:
        return "unknown key" + hint
    section = key.partition(".")[0]
    if section in _SECTIONS:
        return _unknown_key(key, _section_keys(section))
    return f"unknown key; expected name or SECTION.FIELD, SECTION one of {', '.join(_SECTIONS)}"


_KIND_NOUNS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(spec: _Field) -> str:
    what = "one of " + ", ".join(spec.choices) if spec.choices else _KIND_NOUNS[spec.kind]
    return what + (" or null" if spec.optional else "")


def _has_kind(value: object, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, but never a number here
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _check_value(key: str, value: object) -> tuple[object, str | None]:
    """The value converted to the field's type, or a problem text."""
    spec = _FIELDS[key]
    if value is None and spec.optional:
        return None, None
    if not _has_kind(value, spec.kind):
        return None, f"expected {_expected(spec)}, got {_show(value)}"
    if spec.kind is float:
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            return None, f"must be a finite number, got {_brief(value)}"
    if spec.choices and value not in spec.choices:
        hint = _did_you_mean(value, spec.choices)
        return None, f"must be one of {', '.join(spec.choices)}; got {_brief(value)}{hint}"
    rule = _RULES.get(key)
    problem = rule(value) if rule else None
    return (None, problem) if problem else (value, None)


def _flatten(data: dict, problems: _Problems, *, allow_sweep: bool) -> tuple[dict, object]:
    """Split a parsed file into flat ``dotted key -> raw value`` and the raw sweep ({} if none)."""
    top_keys = ["name", *_SECTIONS] + (["sweep"] if allow_sweep else [])
    flat: dict[str, object] = {}
    sweep: object = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key == "name":
            flat["name"] = value
        elif key == "sweep" and allow_sweep:
            sweep = value
        elif key in _SECTIONS:
            _flatten_section(key, value, flat, problems)
        else:
            problems.add(key, _unknown_key(key, top_keys))
    return flat, sweep


def _flatten_section(section: str, value: object, flat: dict, problems: _Problems) -> None:
    if not isinstance(value, dict):
        problems.add(section, f"expected a mapping of {section} settings, got {_show(value)}")
        return
    names = [k.partition(".")[2] for k in _section_keys(section)]
    for raw_key, field_value in value.items():
        name = str(raw_key)
        if name in names:
            flat[f"{section}.{name}"] = field_value
        else:
            problems.add(f"{section}.{name}", _unknown_key(name, names))


def _apply_overrides(
    overrides: Sequence[str], flat: dict, swept: set[str], problems: _Problems
) -> None:
    for text in overrides:
        key, equals, raw = text.partition("=")
        key = key.strip()
        if not equals or not key:
            problems.add("", "expected KEY=VALUE, e.g. init.c=1.5", override=text)
            continue
        if key not in _FIELDS:
            problems.add(key, _unknown_path(key), override=text)
            continue
        if key in swept:
            problems.add(key, f"is swept (sweep.{key}); cannot also --set it", override=text)
            continue
        try:
            flat[key] = load_yaml(raw)
        except (yaml.YAMLError, ValueError, RecursionError) as err:
            problems.add(key, f"cannot parse the value: {_yaml_problem(err)}", override=text)
            continue
        problems.origins[key] = text


def _check_fields(flat: dict, problems: _Problems) -> tuple[dict[str, object], set[str]]:
    """Typed values of the fields that passed their checks, and the keys that did not."""
    typed: dict[str, object] = {}
    bad: set[str] = set()
    for key, value in flat.items():
        checked, problem = _check_value(key, value)
        if problem:
            problems.add(key, problem)
            bad.add(key)
        else:
            typed[key] = checked
    return typed, bad


def _check_sweep(raw: object, problems: _Problems) -> dict[str, list] | None:
    """The sweep with typed values, or None when it has a problem."""
    if not isinstance(raw, dict):
        problems.add("sweep", f"expected a mapping of keys to lists of values, got {_show(raw)}")
        return None
    sweep: dict[str, list] = {}
    ok = True
    for raw_key, values in raw.items():
        key, where = str(raw_key), f"sweep.{raw_key}"
        problem = _sweep_key_problem(key)
        if problem is None and (not isinstance(values, list) or not values):
            problem = f"expected a non-empty list of values, got {_show(values)}"
        if problem:
            problems.add(where, problem)
            ok = False
            continue
        sweep[key] = []
        for i, value in enumerate(values):
            checked, problem = _check_value(key, value)
            if problem:
                problems.add(f"{where}[{i}]", problem)
                ok = False
            sweep[key].append(checked)
    return sweep if ok else None


def _sweep_key_problem(key: str) -> str | None:
    if key == "name":
        return "the name cannot be swept; each member gets its own directory under it"
    if key in _SECTIONS:
        return f"is a section; sweep one of its fields, e.g. {_section_keys(key)[0]}"
    return None if key in _FIELDS else _unknown_path(key)


def _norm_fits(values: Mapping[str, Any], explicit: Container[str]) -> str | None:
    return NORMS[values["model.norm"]].config_problem(values["model.width"],
                                                       values["model.groups"])


def _fixed_c_is_kept(values: Mapping[str, Any], explicit: Container[str]) -> str | None:
    # A default c is fine with kaiming; a c the user chose would be silently ignored.
    scheme = INITS[values["init.scheme"]]
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
        norm = NORMS[values["model.norm"]]
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


def _check_cross(
    typed: dict[str, object],
    problems: _Problems,
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
    values = {**_DEFAULTS, **typed}
    for key, reads, check in _CROSS_CHECKS:
        reads_sweep = not swept.isdisjoint(reads)
        if not bad.isdisjoint(reads) or reads_sweep != (member is not None):
            continue
        problem = check(values, typed if explicit is None else explicit)
        if problem:
            suffix = f" (sweep member {member})" if member is not None else ""
            problems.add(key, problem + suffix, related=reads)


def _build(typed: Mapping[str, object]) -> RunConfig:
    """A RunConfig from valid values over the defaults; a scheme that fixes c resolves (kaiming:
    normal with c = 2)."""
    values = {**_DEFAULTS, **typed}
    scheme = INITS[values["init.scheme"]]
    if scheme.resolves_to is not None:
        values.update({"init.scheme": scheme.resolves_to, "init.c": scheme.fixed_c})
    parts: dict[str, dict[str, object]] = {section: {} for section in _SECTIONS}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if name:
            parts[section][name] = value
    sections = {section: cls(**parts[section]) for section, cls in _SECTIONS.items()}
    return RunConfig(name=values["name"], **sections)


def _build_member(base: RunConfig, typed: Mapping[str, object],
                  overrides: Mapping[str, object]) -> RunConfig:
    """``_build({**typed, **overrides})``, made from ``base`` (``_build(typed)``) by replacing
    only the sections the overrides touch: a 100,000-member sweep builds in a second or two."""
    values = {**typed, **overrides}
    changed = set(overrides)
    scheme = INITS[values.get("init.scheme", _DEFAULTS["init.scheme"])]
    if scheme.resolves_to is not None:
        values.update({"init.scheme": scheme.resolves_to, "init.c": scheme.fixed_c})
        changed |= {"init.scheme", "init.c"}
    by_section: dict[str, dict[str, object]] = {}
    for key in changed:
        section, _, name = key.partition(".")
        by_section.setdefault(section, {})[name] = values[key]
    return dataclasses.replace(base, **{section: dataclasses.replace(getattr(base, section),
                                                                     **fields_)
                                        for section, fields_ in by_section.items()})


def _format_value(value: object) -> str:
    if value is None or isinstance(value, bool):
        return str(value).lower()  # none, true, false
    text = repr(value) if isinstance(value, float) else str(value)
    return _MEMBER_UNSAFE_RE.sub("-", text)


def _member_labels(keys: list[str]) -> dict[str, str]:
    """The last component of each key, or the full key where two keys share it."""
    last = [key.rpartition(".")[2] for key in keys]
    return {key: key if last.count(s) > 1 else s for key, s in zip(keys, last, strict=True)}


def _expand(
    sweep: dict[str, list], typed: dict, bad: set[str], problems: _Problems
) -> list[tuple[str, dict[str, object]]]:
    """(name, overrides) of each member: the cartesian product, first key slowest."""
    if not sweep:
        return [("", {})]
    size = math.prod(len(values) for values in sweep.values())
    if size > MAX_MEMBERS:
        problems.add("sweep", f"expands to {size:,} members, more than {MAX_MEMBERS:,}; split it "
                              f"into several files")
        return []
    labels = _member_labels(list(sweep))
    members = []
    swept = set(sweep)
    for combo in itertools.product(*sweep.values()):
        overrides = dict(zip(sweep, combo, strict=True))
        name = "_".join(f"{labels[k]}={_format_value(v)}" for k, v in overrides.items())
        _check_cross({**typed, **overrides}, problems, bad=bad, swept=swept, member=name)
        members.append((name, overrides))
    counts = collections.Counter(name for name, _ in members)
    for name in sorted(n for n, count in counts.items() if count > 1):
        problems.add("sweep", f"two members would be named {_brief(name)}; sweep values must "
                              f"differ")
    too_long = next((name for name in counts if len(name.encode()) > 255), None)
    if too_long is not None:
        problems.add("sweep", f"member name {_brief(too_long)} is longer than a directory name "
                              f"may be (255 bytes); sweep fewer keys or shorter values")
    return members


def _yaml_problem(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "YAML error: nested too deeply"
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = bounded(" ".join(str(getattr(err, "problem", None) or err).split()), 120)
    if mark is None:
        return f"YAML error: {problem}"
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _read_mapping(path: Path, problems: _Problems) -> dict | None:
    """The file's top-level mapping, or None after recording why there is none."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            problems.add("", "is a directory, expected a YAML file")
            return None
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero never end
            problems.add("", "is not a regular file, expected a YAML file")
            return None
        if info.st_size > MAX_CONFIG_BYTES:
            problems.add("", f"is {info.st_size:,} bytes; a config is at most "
                             f"{MAX_CONFIG_BYTES:,}")
            return None
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add("", f"no such file (the starter configs: {', '.join(example_names())})")
        return None
    except UnicodeDecodeError:
        problems.add("", "is not UTF-8 text")
        return None
    except (OSError, ValueError) as err:  # a symlink loop, a NUL in the name, ...
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        problems.add("", f"cannot read: {bounded(reason)}")
        return None
    try:
        data = load_yaml(text)
    except (yaml.YAMLError, ValueError, RecursionError) as err:  # e.g. date 2020-13-45
        problems.add("", _yaml_problem(err))
        return None
    sections = ", ".join(_SECTIONS)
    if data is None:
        problems.add("", f"the file is empty; expected a mapping with sections {sections}")
        return None
    if not isinstance(data, dict):
        problems.add("", f"expected a mapping with sections {sections}, got {_show(data)}")
        return None
    return data


def _analyse(path: str | Path, overrides: Sequence[str], build: bool = True,
             ) -> tuple[Experiment | None, list[str]]:
    """The experiment (None if anything is wrong, or not ``build``) and every problem found."""
    path = find_config(path)
    problems = _Problems(str(path))
    data = _read_mapping(path, problems)
    if data is None:
        return None, problems.lines
    flat, raw_sweep = _flatten(data, problems, allow_sweep=True)
    swept = {str(k) for k in raw_sweep} if isinstance(raw_sweep, dict) else set()
    _apply_overrides(overrides, flat, swept, problems)
    if "name" not in flat:
        problem = _valid_name(path.stem)
        if problem:
            problems.add("name", f"{problem} (taken from the file name; set name: in the file)")
        else:
            flat["name"] = path.stem
    typed, bad = _check_fields(flat, problems)
    sweep = _check_sweep(raw_sweep, problems)
    _check_cross(typed, problems, bad=bad, swept=swept)
    members = _expand(sweep, typed, bad, problems) if sweep is not None else []
    if problems.lines:
        return None, problems.lines
    if not build:
        return None, []
    base = _build(typed)
    experiment = Experiment(
        name=typed["name"],
        base=base,
        sweep=sweep,
        members=[Member(name, ov, _build_member(base, typed, ov)) for name, ov in members],
    )
    return experiment, []


def analyse(path: str | Path, overrides: Sequence[str] = ()
            ) -> tuple[Experiment | None, list[str]]:
    """The experiment and no problem, or None and every problem (one analysis of the file)."""
    return _analyse(path, overrides)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override, validate and expand a config file; ConfigError lists every problem."""
    experiment, problems = _analyse(path, overrides)
    if experiment is None:
        raise ConfigError(problems)
    return experiment


def validate_file(path: str | Path, overrides: Sequence[str] = ()) -> list[str]:
    """Every problem of a config file with these overrides; empty when it is valid."""
    return _analyse(path, overrides, build=False)[1]


def config_to_dict(cfg: RunConfig) -> dict:
    """Nested plain dict: name, model, init, data, train, log."""
    return asdict(cfg)


def config_from_dict(d: dict, source: str = "<dict>") -> RunConfig:
    """A validated RunConfig from a nested dict such as a run's resolved config.yaml."""
    problems = _Problems(source)
    if not isinstance(d, dict):
        raise ConfigError([f"{source}: expected a mapping of config sections, got {_show(d)}"])
    flat, _ = _flatten(d, problems, allow_sweep=False)
    typed, bad = _check_fields(flat, problems)
    _check_cross(typed, problems, bad=bad)
    if problems.lines:
        raise ConfigError(problems.lines)
    return _build(typed)


def config_differences(before: RunConfig, after: RunConfig) -> list[str]:
    """Each dotted key whose value differs, as "key: before → after"."""
    a, b = _flat_values(before), _flat_values(after)
    return [f"{key} {_brief(a[key])} → {_brief(b[key])}" for key in a if a[key] != b[key]]


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits identifying a resolved config, for caching runs."""
    canonical = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML, sections in their usual order."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False)


def set_dotted(cfg: RunConfig, key: str, value: object) -> RunConfig:
    """A copy of cfg with one dotted key (e.g. "init.c") set, validated like a --set override.

    Only ``key`` counts as set by the caller, so setting init.scheme to kaiming sets c to 2.
    """
    problems = _Problems(f"set_dotted({key}={value!r})")
    checked, problem = _check_value(key, value) if key in _FIELDS else (None, _unknown_path(key))
    if problem:
        problems.add(key, problem)
        raise ConfigError(problems.lines)
    typed = {**_flat_values(cfg), key: checked}
    _check_cross(typed, problems, explicit={key})
    if problems.lines:
        raise ConfigError(problems.lines)
    return _build(typed)


def _scoped_keys(scope: str) -> tuple[str, ...]:
    return tuple(f"{section}.{f.name}" for section, cls in _SECTIONS.items()
                 for f in fields(cls) if f.metadata.get("scope") == scope)


GROUP_KEYS = _scoped_keys("group")  # every member of a stacked model shares these
MEMBER_KEYS = _scoped_keys("member")  # each member sets these for itself


def group_key(cfg: RunConfig) -> tuple:
    """Members with equal keys can train as one stacked model: their shared fields agree."""
    flat = _flat_values(cfg)
    return tuple(flat[key] for key in GROUP_KEYS)


def field_docs() -> dict[str, str]:
    """``dotted key -> what it does``, for every key (the README's config reference)."""
    docs = {"name": NAME_DOC}
    for section, cls in _SECTIONS.items():
        docs.update({f"{section}.{f.name}": f.metadata["doc"] for f in fields(cls)})
    return docs


def field_specs() -> dict[str, tuple[object, type, bool, tuple[str, ...]]]:
    """``dotted key -> (default, kind, accepts null, choices)`` for every key."""
    return {key: (_DEFAULTS[key], spec.kind, spec.optional, spec.choices)
            for key, spec in _FIELDS.items()}
