"""``--set KEY=VALUE`` overrides: each value read in the config's YAML dialect, onto the flat
values of a file before they are checked."""

from __future__ import annotations

from collections.abc import Sequence

from initlab.config.problems import Problems, unknown_path
from initlab.config.schema import FIELDS
from initlab.config.yaml12 import PARSE_ERRORS, load_yaml, yaml_problem
from initlab.errors import bounded


def apply_overrides(
    overrides: Sequence[str], flat: dict, swept: set[str], problems: Problems
) -> None:
    for text in overrides:
        key, equals, raw = text.partition("=")
        key = key.strip()
        if not equals or not key:
            problems.add("", "expected KEY=VALUE, e.g. init.c=1.5", override=text)
            continue
        if key not in FIELDS:
            problems.add(key, unknown_path(key), override=text)
            continue
        if key in swept:
            problems.add(key, f"is swept (sweep.{key}); cannot also --set it", override=text)
            continue
        try:
            flat[key] = load_yaml(raw)
        except PARSE_ERRORS as err:
            problems.add(key, f"cannot parse the value: {yaml_problem(err)}", override=text)
            continue
        problems.origins[key] = f"--set {bounded(text)}"

