"""Run configuration: the one place for every default, as data (no torch).

One job per module, each importing only those above it:

| module | job |
| --- | --- |
| ``schema`` | every key, its default, scope and description (dataclasses); sections, fields |
| ``yaml12`` | the YAML dialect (1.2's core schema, bounded aliases) |
| ``problems`` | one line per problem, values quoted briefly, "did you mean" |
| ``checks`` | the validation engine: each value, the file's structure, checks across fields |
| ``sweep`` | a sweep's values checked, expanded and named |
| ``overrides`` | ``--set KEY=VALUE`` |
| ``identity`` | a resolved config's YAML, hash and group key |
| ``docs`` | the schema described (the README's config reference) |
| ``load`` | a file, dict or one changed key to a validated ``Experiment`` |

Every public name is importable from ``initlab.config`` itself.
"""

from __future__ import annotations

from initlab.config.checks import MAX_NAME, build
from initlab.config.docs import field_docs, field_specs
from initlab.config.identity import config_differences, config_hash, dump_yaml, group_key
from initlab.config.load import (
    EXAMPLES_DIR,
    MAX_CONFIG_BYTES,
    Experiment,
    Member,
    analyse,
    config_from_dict,
    example_names,
    find_config,
    load_experiment,
    set_dotted,
    validate_file,
)
from initlab.config.schema import (
    FIELDS,
    GROUP_KEYS,
    MEMBER_KEYS,
    NAME_DOC,
    SECTIONS,
    DataConfig,
    InitConfig,
    LogConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    config_to_dict,
    member,
    shared,
)
from initlab.config.sweep import MAX_MEMBERS, short_keys
from initlab.config.yaml12 import MAX_YAML_VALUES, load_yaml
from initlab.config.yaml12 import dump as yaml_text

__all__ = [
    "EXAMPLES_DIR", "FIELDS", "GROUP_KEYS", "MAX_CONFIG_BYTES", "MAX_MEMBERS", "MAX_NAME",
    "MAX_YAML_VALUES", "MEMBER_KEYS", "NAME_DOC", "SECTIONS", "DataConfig", "Experiment",
    "InitConfig", "LogConfig", "Member", "ModelConfig", "RunConfig", "TrainConfig", "analyse",
    "build", "config_differences", "config_from_dict", "config_hash", "config_to_dict",
    "dump_yaml", "example_names", "field_docs", "field_specs", "find_config", "group_key",
    "load_experiment", "load_yaml", "member", "set_dotted", "shared", "short_keys",
    "validate_file", "yaml_text",
]
