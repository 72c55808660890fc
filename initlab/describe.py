"""Words for runs: what differs from the defaults, what varies between runs, how a run ended.
Figures' titles and legends, ``initlab ls`` and ``initlab compare`` all say it this way."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from initlab.config import short_keys
from initlab.errors import bounded
from initlab.runs import Run
from initlab.wording import how_it_ended, percent

# Where a run was trained and how it was logged: not what it is, so never "a difference".
NOT_DIFFERENCES = frozenset({
    "name", "data.root", "train.device", "train.cuda_graph", "train.backward",
    "train.checkpoint", "log.checkpoint_every", "log.every"})


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config as ``dotted key -> value`` (``init.c`` -> 2.0)."""
    flat: dict[str, Any] = {}
    for section, values in config.items():
        if isinstance(values, dict):
            for key, value in values.items():
                flat[f"{section}.{key}"] = value
        else:
            flat[section] = values
    return flat


@functools.cache
def default_config() -> dict[str, Any]:
    """Every config field's default, flat."""
    from initlab.config import RunConfig, config_to_dict

    return flat_config(config_to_dict(RunConfig()))


def format_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return bounded(str(value), 40)


def settings_text(items: dict[str, Any]) -> str:
    """``c=3, lr=0.1`` from dotted keys and values."""
    names = short_keys(list(items))
    return ", ".join(f"{names[key]}={format_value(value)}" for key, value in items.items())


def differences_from_defaults(run: Run) -> dict[str, Any]:
    """The config values of a run that are not the defaults (dotted key -> value), in config
    order; nothing for a watched run (its model is not initlab's)."""
    if run.kind != "mlp":
        return {}
    defaults = default_config()
    return {key: value for key, value in flat_config(run.config).items()
            if key not in NOT_DIFFERENCES and key in defaults and defaults[key] != value}


def varying(runs: Sequence[Run]) -> list[str]:
    """The config keys whose values differ between these runs, in config order."""
    flats = [flat_config(r.config) for r in runs]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    return [k for k in keys if k not in NOT_DIFFERENCES
            and len({repr(flat.get(k)) for flat in flats}) > 1]


def outcome(run: Run) -> str:
    """``test error 4.96%``, ``diverged at step 2``, ``interrupted at step 300`` ..."""
    status = run.status
    if status == "diverged":
        return how_it_ended(run.summary)
    err = run.final_test_error
    if not math.isnan(err):
        text = f"test error {percent(err)}"
    else:  # e.g. a watched model evaluated by its user, or not yet
        losses = run.loss[~np.isnan(run.loss)] if len(run.records) else np.array([])
        text = f"loss {losses[-1]:.4g}" if len(losses) else "no test error yet"
    if status == "stopped":  # its writer died without a final summary
        return f"stopped (process ended) at step {run.reached}, {text}"
    if status in ("interrupted", "running"):
        return f"{status} at step {run.summary.get('steps', 0)}, {text}"
    return text


def training_text(run: Run) -> str:
    """Optimizer, learning rate, epochs: ``SGD lr 0.01, 3 of 20 epochs (1404 steps)``."""
    if run.kind != "mlp":
        watch = run.config.get("watch") or {}
        return (f"{bounded(str(watch.get('model', 'model')), 40)}, "
                f"{plural(len(run.layer_names), 'layer')}, "
                f"{plural(int(run.summary.get('steps') or 0), 'step')}")
    train = run.config.get("train") or {}
    optimizer = str(train.get("optimizer", "sgd"))
    parts = [f"{optimizer.upper() if optimizer == 'sgd' else optimizer.capitalize()} "
             f"lr {format_value(train.get('lr'))}"]
    if train.get("momentum"):
        parts[0] += f" momentum {format_value(train['momentum'])}"
    done, cap = int(run.summary.get("epochs") or 0), train.get("epochs")
    epochs = plural(done, "epoch") if cap in (None, done) else f"{done} of {plural(cap, 'epoch')}"
    parts.append(f"{epochs} ({plural(int(run.summary.get('steps') or 0), 'step')})")
    return ", ".join(parts)


def title_lines(runs: Sequence[Run]) -> list[str]:
    """A figure's title: one run's name, what differs from the defaults, its training and
    outcome; several runs' names and what they share."""
    if len(runs) == 1:
        run = runs[0]
        if run.kind != "mlp":
            return [f"{run.display_name}: a watched model",
                    f"{training_text(run)}, {outcome(run)}"]
        diff = settings_text(differences_from_defaults(run))
        return [f"{run.display_name}" + (f": {diff}" if diff else " (the defaults)"),
                f"{training_text(run)}, {outcome(run)}"]
    sweeps = {r.sweep for r in runs}
    names = (next(iter(sweeps)) if len(sweeps) == 1 and None not in sweeps
             else ", ".join(dict.fromkeys(r.display_name for r in runs)))
    first = runs[0]
    vary = set(varying(runs))
    shared = {k: v for k, v in differences_from_defaults(first).items() if k not in vary}
    lines = [bounded(names, 90) + (f": {settings_text(shared)}" if shared else "")]
    trainings = {training_text(r).split(", ")[0] for r in runs}  # optimizer and lr
    if vary:
        what = f"{len(runs)} runs, varying {settings_keys(vary, runs)}"
    elif all(r.kind != "mlp" for r in runs):  # their configs name no difference: their names
        what = f"{len(runs)} watched runs, differing in what their names say"
    else:
        what = f"{len(runs)} runs of the same config"
    lines.append((trainings.pop() + "; " if len(trainings) == 1 else "") + what)
    return lines


def settings_keys(keys: set[str], runs: Sequence[Run]) -> str:
    ordered = [k for k in varying(runs) if k in keys]
    names = short_keys(ordered)
    return ", ".join(names[k] for k in ordered)


def run_labels(runs: Sequence[Run]) -> list[str]:
    """One legend entry per run: what varies between them (else its name), and its outcome."""
    keys = varying(runs)
    one_sweep = len({r.sweep for r in runs}) == 1 and runs[0].sweep is not None
    labels = []
    for run in runs:
        values = {k: flat_config(run.config).get(k) for k in keys}
        what = settings_text(values) if keys else run.display_name
        if keys and not one_sweep and len({r.display_name for r in runs}) == len(runs):
            what = f"{run.display_name} ({what})"
        labels.append(f"{bounded(what, 60)}: {outcome(run)}")
    return labels
