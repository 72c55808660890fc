"""A resolved config as data: its YAML, its hash (the figures' cache key), its group key
(which members train as one stacked model) and its differences from another."""

from __future__ import annotations

import hashlib
import json

from initlab.config.problems import brief
from initlab.config.schema import GROUP_KEYS, RunConfig, config_to_dict, flat_values
from initlab.config.yaml12 import dump


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML, sections in their usual order."""
    return dump(config_to_dict(cfg))


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits identifying a resolved config, for caching runs."""
    canonical = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def group_key(cfg: RunConfig) -> tuple:
    """Members with equal keys can train as one stacked model: their shared fields agree."""
    flat = flat_values(cfg)
    return tuple(flat[key] for key in GROUP_KEYS)


def config_differences(before: RunConfig, after: RunConfig) -> list[str]:
    """Each dotted key whose value differs, as "key: before → after"."""
    a, b = flat_values(before), flat_values(after)
    return [f"{key} {brief(a[key])} → {brief(b[key])}" for key in a if a[key] != b[key]]
