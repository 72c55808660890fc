"""The forms of config overrides people already type, turned into initlab's own: Hydra's
``initlab run CONFIG key=value ...`` beside ``--set key=value``, a sweep from the command line
(``init.c=1,2,3`` with ``--sweep``/``-m``), a starter config printed with every key and its doc
(``initlab config NAME``), and one line for an option that is really a config key (``--init.c
3``) or the config itself (``--config FILE``).

It composes config.py's public functions; the file's own ``sweep:`` section, the member names
and every check stay config.py's.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from initlab import config
from initlab.errors import ConfigError, UsageError, bounded

SWEEP_FLAG = "--sweep"  # also -m, as Hydra's multirun


def is_assignment(arg: str) -> bool:
    """``key=value`` (Hydra's override form), not a file name that happens to hold ``=``
    (``k=v.yml``, or any file that exists)."""
    key, equals, value = arg.partition("=")
    if not (equals and key) or "/" in key or key.endswith((".yaml", ".yml")):
        return False
    if key.strip() in config.FIELDS:
        return True
    return not (value.endswith((".yaml", ".yml")) or os.path.lexists(arg))


def split_arguments(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The config (the first argument that is not ``key=value``) and the overrides."""
    config_arg: str | None = None
    overrides: list[str] = []
    for arg in args:
        if is_assignment(arg):
            overrides.append(arg)
        elif config_arg is None:
            config_arg = arg
        else:
            raise UsageError(f"unexpected argument {bounded(arg)!r} after the config "
                             f"{bounded(config_arg)!r}: config values are KEY=VALUE, e.g. "
                             f"init.c=3")
    return config_arg, overrides


def split_values(raw: str) -> list[str]:
    """``1,2,3`` -> ``["1", "2", "3"]``; commas inside brackets or quotes do not split."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(raw):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(raw[start:i])
            start = i + 1
    values.append(raw[start:])
    return [v.strip() for v in values]


def command_line_sweep(overrides: Sequence[str], sweep: bool
                       ) -> tuple[list[str], dict[str, list[str]]]:
    """Plain overrides, and the keys swept from the command line (``key=a,b`` with --sweep)."""
    if not sweep:
        return list(overrides), {}
    plain: list[str] = []
    swept: dict[str, list[str]] = {}
    for text in overrides:
        key, _, raw = text.partition("=")
        values = split_values(raw)
        if len(values) > 1:
            swept[key.strip()] = values
        else:
            plain.append(text)
    return plain, swept


def sweep_hint(problems: list[str], overrides: Sequence[str]) -> list[str]:
    """A value like ``1,2,3`` without --sweep is a list someone meant to sweep: say so."""
    if any("," in text.partition("=")[2] for text in overrides):
        return [*problems, f"(to sweep a key over several values: {SWEEP_FLAG} or -m, "
                           f"e.g. initlab run kaiming init.c=1,2,3 -m)"]
    return problems


def load(path: str | Path, overrides: Sequence[str], swept: dict[str, list[str]]
         ) -> config.Experiment:
    """config.load_experiment with the command line's sweep added to the file's (a key swept
    in both takes the command line's values): the file is read once, by config's bounded
    reader, and a problem in a swept value names the command line."""
    try:
        return config.load_experiment(path, overrides, swept)
    except ConfigError as err:
        raise ConfigError(sweep_hint(err.problems, overrides)) from None


def mistyped_option(args: Sequence[str]) -> str | None:
    """One line for an option that is the right thing in the wrong form, or None.

    ``--config FILE`` (Lightning's form): the config is the first argument.
    ``--init.c 3`` / ``--init.c=3``: a config key is ``init.c=3`` (or ``--set init.c=3``)."""
    specs = config.field_specs()
    for i, arg in enumerate(args):
        if arg == "--":
            return None
        name, equals, value = arg.partition("=")
        if not equals and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
        if name == "--config":
            return (f"--config is not an option: the config is the first argument, e.g. "
                    f"initlab run {bounded(value or 'CONFIG')}")
        key = name[2:]
        if name.startswith("--") and (key in specs or "." in key):
            shown = f"{key}={bounded(value or 'VALUE')}"
            return (f"{name} is not an option: set a config key as KEY=VALUE, e.g. initlab "
                    f"run CONFIG {shown} (or --set {shown})")
    return None


# --- `initlab config NAME`: a starter config with every key and its doc ---------------------------

def _yaml_value(value: object) -> str:
    return config.yaml_text(value, flow=True, width=1000).strip().removesuffix(
        "\n...").removesuffix(" ...").strip()


def starter_text(name: str | None) -> str:
    """A config file to edit: every key with its value (the starter's, else the default) and
    what it does as a comment; the starter's sweep, if any, at the end."""
    if name is None:
        values = dict(zip(config.field_specs(), (spec[0] for spec in
                                                 config.field_specs().values()), strict=True))
        sweep: dict[str, list] = {}
        header = ["# Every key of an initlab config at its default, with what it does."]
    else:
        experiment = config.load_experiment(name)
        values = _flat(config.config_to_dict(experiment.base))
        sweep = experiment.sweep
        header = [f"# The starter config {name!r} (initlab run {name}), with every key and what "
                  f"it does;", "# keys it does not set are at their defaults."]
    header.append("# Save it, edit it and run it: initlab config NAME > my.yaml; initlab run "
                  "my.yaml")
    docs = config.field_docs()
    lines = [*header, ""]
    section = ""
    for key, value in values.items():
        head, dot, tail = key.partition(".")
        if dot and head != section:
            section = head
            lines += ["", f"{section}:"]
        indent = "  " if dot else ""
        if key in sweep:  # a fixed value beside the sweep's would only mislead
            lines.append(f"{indent}# {tail}: swept below")
            continue
        for comment in textwrap.wrap(docs[key], width=96 - len(indent)):
            lines.append(f"{indent}# {comment}")
        if key == "name":  # saved as my.yaml, it trains into runs/my, not the starter's name
            lines.append("# name: not set, so the run is named after this file")
            continue
        lines.append(f"{indent}{tail if dot else key}: {_yaml_value(value)}")
    if sweep:
        lines += ["", "# Every combination of these values is one member "
                      "(runs/NAME/<member>/).", "sweep:"]
        lines += [f"  {key}: {_yaml_value(list(vals))}" for key, vals in sweep.items()]
    return "\n".join(lines) + "\n"


def _flat(nested: dict) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat
