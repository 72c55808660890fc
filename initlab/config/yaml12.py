"""The YAML dialect of config files: YAML 1.2's core schema on PyYAML, duplicate keys and
leading zeros refused, alias expansion bounded."""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from initlab.errors import bounded

MAX_YAML_VALUES = 100_000  # values a file may hold once its aliases are expanded

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


def dump(data: Any, *, flow: bool | None = False, width: int = 80) -> str:
    """Data as YAML that this dialect reads back as the same values, keys in their order (the
    one YAML writer: every YAML initlab writes is YAML 1.2's core schema). ``flow``: True for
    one line (``[1, 2]``), None for flow style in the innermost collections only."""
    # Not allow_unicode: PyYAML would write a NEL (U+0085) as it is, which YAML reads as a
    # line break (found by make fuzz); escaped, every string reads back as written.
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=flow,
                     width=width)


def yaml_problem(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "YAML error: nested too deeply"
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = bounded(" ".join(str(getattr(err, "problem", None) or err).split()), 120)
    if mark is None:
        return f"YAML error: {problem}"
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


# What parsing a user's text may raise: a YAML error, a bad scalar (a date 2020-13-45, an
# expanded-size bound), or nesting too deep for the parser.
PARSE_ERRORS = (yaml.YAMLError, ValueError, RecursionError)
