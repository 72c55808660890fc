"""Tests of config loading: defaults, sweeps, overrides and every kind of problem report."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from initlab.choices import NORM_CHOICES
from initlab.config import (
    EXAMPLES_DIR,
    Experiment,
    RunConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    dump_yaml,
    find_config,
    load_experiment,
    set_dotted,
    validate_file,
)
from initlab.errors import ConfigError

VALID = {
    "name": "demo",
    "model": {"depth": 3, "width": 8, "norm": "group", "groups": 4},
    "init": {"scheme": "normal", "c": 1.5},
    "data": {"scaling": "standard", "train_subset": 256},
    "train": {"lr": 0.1, "epochs": 1, "batch_size": 32},
    "log": {"every": 10},
}


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_dict(tmp_path: Path, data: object, name: str = "exp.yaml") -> Path:
    return write(tmp_path, yaml.safe_dump(data, sort_keys=False), name)


def with_changes(**sections: dict) -> dict:
    """VALID with some fields of some sections replaced."""
    data = copy.deepcopy(VALID)
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def problems_for(tmp_path: Path, data: object, overrides: tuple[str, ...] = ()) -> list[str]:
    return validate_file(write_dict(tmp_path, data), overrides)


def only_problem(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


# --- Valid files --------------------------------------------------------------------------------


def test_defaults_round_trip():
    cfg = RunConfig()
    d = config_to_dict(cfg)
    assert list(d) == ["name", "model", "init", "data", "train", "log"]
    assert config_from_dict(d) == cfg
    assert config_from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg
    assert re.fullmatch(r"[0-9a-f]{12}", config_hash(cfg))
    assert config_hash(cfg) == config_hash(RunConfig())
    assert config_hash(set_dotted(cfg, "init.c", 1.0)) != config_hash(cfg)


def test_minimal_file_uses_defaults_and_file_stem(tmp_path):
    exp = load_experiment(write(tmp_path, "model:\n  depth: 5\n", name="deep5.yaml"))
    assert exp.name == "deep5"
    assert not exp.is_sweep
    assert exp.sweep == {}
    assert [(m.name, m.overrides) for m in exp.members] == [("", {})]
    expected = RunConfig(name="deep5")
    expected.model.depth = 5
    assert exp.base == expected
    assert exp.members[0].config == expected


def test_sweep_expands_to_grid_in_file_order(tmp_path):
    data = with_changes(
        model={"norm": "layer"}, sweep={"init.c": [1.7, 2], "model.norm": ["layer", "group"]}
    )
    exp = load_experiment(write_dict(tmp_path, data))
    assert isinstance(exp, Experiment)
    assert exp.is_sweep
    assert exp.sweep == {"init.c": [1.7, 2.0], "model.norm": ["layer", "group"]}
    assert [m.name for m in exp.members] == [
        "c=1.7_norm=layer",
        "c=1.7_norm=group",
        "c=2.0_norm=layer",
        "c=2.0_norm=group",
    ]
    third = exp.members[2]
    assert third.overrides == {"init.c": 2.0, "model.norm": "layer"}
    assert type(third.config.init.c) is float
    assert (third.config.init.c, third.config.model.norm) == (2.0, "layer")
    assert all(m.config.name == "demo" for m in exp.members)
    assert exp.base.model.norm == "layer"
    assert exp.base.model.depth == 3


def test_member_names_format_values(tmp_path):
    data = with_changes(
        sweep={"data.train_subset": [None, 10], "model.bias": [True, False], "init.c": [0.5]}
    )
    names = [m.name for m in load_experiment(write_dict(tmp_path, data)).members]
    assert names == [
        "train_subset=none_bias=true_c=0.5",
        "train_subset=none_bias=false_c=0.5",
        "train_subset=10_bias=true_c=0.5",
        "train_subset=10_bias=false_c=0.5",
    ]


def test_overrides_apply_with_yaml_types(tmp_path):
    path = write_dict(tmp_path, VALID)
    overrides = ["init.c=3", "model.norm=layer", "model.bias=false", "data.root=null"]
    exp = load_experiment(path, [*overrides, "train.max_steps=50", "name=other", "train.lr=1e-3"])
    cfg = exp.members[0].config
    assert cfg.init.c == 3.0 and type(cfg.init.c) is float
    assert cfg.model.norm == "layer"
    assert cfg.model.bias is False
    assert cfg.data.root is None
    assert cfg.train.max_steps == 50 and type(cfg.train.max_steps) is int
    assert cfg.train.lr == 0.001  # 1e-3 without a dot is still a float
    assert exp.name == cfg.name == "other"


def test_kaiming_resolves_to_normal_with_c_2(tmp_path):
    exp = load_experiment(write(tmp_path, "init:\n  scheme: kaiming\n"))
    assert (exp.base.init.scheme, exp.base.init.c) == ("normal", 2.0)
    explicit_two = load_experiment(write(tmp_path, "init: {scheme: kaiming, c: 2}\n"))
    assert explicit_two.base.init == exp.base.init
    assert set_dotted(RunConfig(), "init.scheme", "kaiming").init.scheme == "normal"


def test_kaiming_in_sweep_keeps_member_name(tmp_path):
    data = {"sweep": {"init.scheme": ["normal", "kaiming"]}, "init": {"c": 2.0}}
    members = load_experiment(write_dict(tmp_path, data)).members
    assert [m.name for m in members] == ["scheme=normal", "scheme=kaiming"]
    assert members[1].overrides == {"init.scheme": "kaiming"}
    assert members[1].config.init.scheme == "normal"


def test_group_check_runs_per_member_when_width_is_swept(tmp_path):
    # Default width 100 is not a multiple of 8, but every swept width is.
    data = {"model": {"norm": "group", "groups": 8}, "sweep": {"model.width": [64, 128]}}
    exp = load_experiment(write_dict(tmp_path, data))
    assert [m.config.model.width for m in exp.members] == [64, 128]
    data["sweep"]["model.width"] = [64, 100]
    problem = only_problem(problems_for(tmp_path, data))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}: model.groups: must divide model.width=100")
    assert "width=100" in problem


def test_load_creates_no_file(tmp_path):
    path = write_dict(tmp_path, with_changes(sweep={"init.c": [1.0, 2.0]}))
    load_experiment(path)
    validate_file(tmp_path / "missing.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_set_dotted_validates(tmp_path):
    cfg = set_dotted(RunConfig(), "train.lr", 1)
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert RunConfig().train.lr == 0.01
    with pytest.raises(ConfigError, match=r"train\.lr: must be > 0"):
        set_dotted(cfg, "train.lr", -1)
    with pytest.raises(ConfigError, match=r"did you mean 'init\.c'"):
        set_dotted(cfg, "init.cc", 1.0)


# --- Problems -----------------------------------------------------------------------------------


def test_unknown_keys_suggest_close_names(tmp_path):
    data = with_changes(model={"nrom": "layer"})
    data["trian"] = {}
    problems = problems_for(tmp_path, data)
    path = tmp_path / "exp.yaml"
    assert f"{path}: model.nrom: unknown key (did you mean 'norm'?)" in problems
    assert f"{path}: trian: unknown key (did you mean 'train'?)" in problems
    assert len(problems) == 2


def test_unknown_key_without_close_match_lists_choices(tmp_path):
    problem = only_problem(problems_for(tmp_path, with_changes(log={"zzzz": 1})))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}: log.zzzz: unknown key; expected one of")
    assert "probe_size" in problem


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "lr", "abc", "train.lr: expected a number, got 'abc' (str)"),
        ("train", "lr", True, "train.lr: expected a number, got True (bool)"),
        ("model", "depth", 3.5, "model.depth: expected an integer, got 3.5 (float)"),
        ("model", "depth", 3.0, "model.depth: expected an integer, got 3.0 (float)"),
        ("model", "depth", True, "model.depth: expected an integer, got True (bool)"),
        ("model", "depth", None, "model.depth: expected an integer, got null"),
        ("model", "bias", 1, "model.bias: expected true or false, got 1 (int)"),
        ("model", "norm", 3, f"model.norm: expected one of {', '.join(NORM_CHOICES)}"),
        ("data", "root", 5, "data.root: expected a string or null, got 5 (int)"),
        ("train", "max_steps", [1], "train.max_steps: expected an integer or null, got [1] (list)"),
        ("init", "c", float("inf"), "init.c: must be a finite number, got inf"),
    ],
)
def test_wrong_types(tmp_path, section, key, value, message):
    problem = only_problem(problems_for(tmp_path, with_changes(**{section: {key: value}})))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}: {message}")


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "depth", 0, "must be in 1..10,000, got 0"),
        ("model", "width", 0, "must be in 1..1,000,000, got 0"),
        ("model", "activation", "relux", "must be one of relu, tanh, identity; got 'relux'"),
        ("model", "norm", "lyer", "must be one of none, layer"),
        ("model", "groups", 0, "must be >= 1, got 0"),
        ("model", "dropout", 1.0, "must be in [0, 1), got 1.0"),
        ("model", "dropout", -0.1, "must be in [0, 1), got -0.1"),
        ("init", "scheme", "xavier", "must be one of normal, uniform, zeros, kaiming"),
        ("init", "c", -1, "must be > 0, got -1.0"),
        ("init", "c", 0, "must be > 0, got 0.0"),
        ("data", "scaling", "minmax", "must be one of unit, standard"),
        ("data", "train_subset", 0, "must be >= 1, got 0"),
        ("data", "test_subset", -3, "must be >= 1, got -3"),
        ("data", "root", "", "must not be empty"),
        ("train", "optimizer", "rmsprop", "must be one of sgd, adam"),
        ("train", "lr", 0, "must be > 0, got 0.0"),
        ("train", "momentum", 1, "must be in [0, 1), got 1.0"),
        ("train", "weight_decay", -1e-4, "must be >= 0, got -0.0001"),
        ("train", "batch_size", 0, "must be >= 1, got 0"),
        ("train", "epochs", -1, "must be >= 0, got -1"),
        ("train", "max_steps", 0, "must be >= 1, got 0"),
        ("train", "target_test_error", 0, "must be in (0, 1), got 0.0"),
        ("train", "target_test_error", 1, "must be in (0, 1), got 1.0"),
        ("train", "seed", -1, "must be >= 0, got -1"),
        ("train", "device", "gpu", "must be one of auto, cpu, cuda"),
        ("train", "cuda_graph", "yes", "must be one of auto, on, off"),
        ("log", "every", -1, "must be >= 0, got -1"),
        ("log", "probe_size", 0, "must be >= 1, got 0"),
        ("log", "checkpoint_every", -5, "must be >= 0, got -5"),
    ],
)
def test_out_of_range(tmp_path, section, key, value, message):
    problem = only_problem(problems_for(tmp_path, with_changes(**{section: {key: value}})))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}: {section}.{key}: {message}")


def test_enum_typo_suggests_choice(tmp_path):
    problem = only_problem(problems_for(tmp_path, with_changes(model={"norm": "lyer"})))
    assert problem.endswith("got 'lyer' (did you mean 'layer'?)")


@pytest.mark.parametrize("name", ["", "a b", "..", "runs/x", 3])
def test_bad_names(tmp_path, name):
    problem = only_problem(problems_for(tmp_path, {**VALID, "name": name}))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}: name: ")


def test_bad_file_stem_as_name(tmp_path):
    path = write(tmp_path, "model: {depth: 2}\n", name="my exp.yaml")
    problem = only_problem(validate_file(path))
    assert problem.startswith(f"{path}: name: must be a non-empty name")
    assert "taken from the file name" in problem
    assert load_experiment(path, ["name=mine"]).name == "mine"


def test_kaiming_with_other_c(tmp_path):
    problem = only_problem(problems_for(tmp_path, with_changes(init={"scheme": "kaiming"})))
    assert problem == (
        f"{tmp_path / 'exp.yaml'}: init.c: kaiming means c = 2; "
        "use scheme: normal to choose c, got 1.5"
    )


def test_groups_must_divide_width(tmp_path):
    problem = only_problem(problems_for(tmp_path, with_changes(model={"groups": 3})))
    assert problem == (
        f"{tmp_path / 'exp.yaml'}: model.groups: must divide model.width=8 for norm: group, got 3"
    )
    assert problems_for(tmp_path, with_changes(model={"groups": 3, "norm": "layer"})) == []


def test_data_root_that_is_a_file(tmp_path):
    a_file = write(tmp_path, "not a directory", name="mnist.bin")
    problem = only_problem(problems_for(tmp_path, with_changes(data={"root": str(a_file)})))
    assert problem == (
        f"{tmp_path / 'exp.yaml'}: data.root: '{a_file}' is a file, expected a directory"
    )
    assert problems_for(tmp_path, with_changes(data={"root": str(tmp_path)})) == []
    assert problems_for(tmp_path, with_changes(data={"root": str(tmp_path / "new")})) == []


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    message = f"{path}: no such file (the starter configs: batchnorm, kaiming"
    assert validate_file(path)[0].startswith(message)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value).startswith(message)


def test_a_starter_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = find_config("kaiming")
    assert found == EXAMPLES_DIR / "kaiming.yaml" and load_experiment(found).name == "kaiming"
    (tmp_path / "kaiming").write_text("name: mine\n")  # a file of the user's comes first
    assert find_config("kaiming") == Path("kaiming")
    assert find_config("no-such-config") == Path("no-such-config")


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "---\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    assert validate_file(path) == [
        f"{path}: the file is empty; expected a mapping with sections model, init, data, train, log"
    ]


def test_top_level_not_a_mapping(tmp_path):
    path = write(tmp_path, "- model\n- init\n")
    problem = only_problem(validate_file(path))
    assert problem.startswith(f"{path}: expected a mapping with sections model")
    assert problem.endswith("(list)")


def test_section_not_a_mapping(tmp_path):
    problem = only_problem(problems_for(tmp_path, {**VALID, "model": [1, 2]}))
    expected = "model: expected a mapping of model settings, got [1, 2] (list)"
    assert problem == f"{tmp_path / 'exp.yaml'}: {expected}"


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "model:\n  depth: 3\n  width: [1, 2\ninit:\n  c: 1\n")
    problem = only_problem(validate_file(path))
    match = re.fullmatch(
        rf"{re.escape(str(path))}: YAML syntax error at line (\d+), column (\d+): .+", problem
    )
    assert match, problem
    assert (int(match[1]), int(match[2])) == (4, 5)  # the ':' after init


def test_yaml_error_at_exact_position(tmp_path):
    path = write(tmp_path, "model:\n  depth: 3\n  width: a: b\n")
    assert only_problem(validate_file(path)) == (
        f"{path}: YAML syntax error at line 3, column 11: mapping values are not allowed here"
    )


def test_duplicate_yaml_key(tmp_path):
    path = write(tmp_path, "init:\n  c: 1\ninit:\n  c: 3\n")
    assert only_problem(validate_file(path)) == (
        f"{path}: YAML syntax error at line 3, column 1: duplicate key 'init'"
    )


def test_bad_value_from_yaml_constructor(tmp_path):
    path = write(tmp_path, "model:\n  depth: 010\n")
    assert only_problem(validate_file(path)) == (
        f"{path}: YAML syntax error at line 2, column 10: 010 has a leading zero (YAML 1.1 "
        "reads it as octal, 1.2 as decimal); write it without")


def test_sweep_over_unknown_key(tmp_path):
    problem = only_problem(problems_for(tmp_path, with_changes(sweep={"init.cc": [1.0]})))
    assert (
        problem == f"{tmp_path / 'exp.yaml'}: sweep.init.cc: unknown key (did you mean 'init.c'?)"
    )


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"init.c": []}, "sweep.init.c: expected a non-empty list of values, got [] (list)"),
        ({"init.c": 1.5}, "sweep.init.c: expected a non-empty list of values, got 1.5 (float)"),
        ({"init.c": [1.0, 2.0, -1]}, "sweep.init.c[2]: must be > 0, got -1.0"),
        ({"model.norm": ["layer", "lyr"]}, "sweep.model.norm[1]: must be one of"),
        ({"name": ["a", "b"]}, "sweep.name: the name cannot be swept"),
        ({"init": [1]}, "sweep.init: is a section; sweep one of its fields, e.g. init.scheme"),
        ({"init.c": [1, 1.0]}, "sweep: two members would be named 'c=1.0'"),
        ([1, 2], "sweep: expected a mapping of keys to lists of values, got [1, 2] (list)"),
    ],
)
def test_bad_sweeps(tmp_path, sweep, message):
    problem = only_problem(problems_for(tmp_path, {**VALID, "sweep": sweep}))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'}: {message}")


def test_sweep_member_cross_check_names_member(tmp_path):
    data = with_changes(sweep={"model.groups": [4, 3]})
    assert only_problem(problems_for(tmp_path, data)) == (
        f"{tmp_path / 'exp.yaml'}: model.groups: must divide model.width=8 for norm: group, "
        "got 3 (sweep member groups=3)"
    )


def test_empty_sweep_is_not_a_sweep(tmp_path):
    exp = load_experiment(write_dict(tmp_path, {**VALID, "sweep": {}}))
    assert not exp.is_sweep
    assert [m.name for m in exp.members] == [""]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("init.c", "(--set init.c): expected KEY=VALUE, e.g. init.c=1.5"),
        ("=3", "(--set =3): expected KEY=VALUE"),
        ("init.cc=3", "(--set init.cc=3): init.cc: unknown key (did you mean 'init.c'?)"),
        ("modle.depth=3", "(--set modle.depth=3): modle.depth: unknown key (did you mean"),
        ("init.c=abc", "(--set init.c=abc): init.c: expected a number, got 'abc' (str)"),
        ("init.c=-2", "(--set init.c=-2): init.c: must be > 0, got -2.0"),
        ("model.depth=[1", "(--set model.depth=[1): model.depth: cannot parse the value: YAML"),
        ("model.groups=3", "(--set model.groups=3): model.groups: must divide model.width=8"),
    ],
)
def test_bad_overrides(tmp_path, override, message):
    problem = only_problem(problems_for(tmp_path, VALID, (override,)))
    assert problem.startswith(f"{tmp_path / 'exp.yaml'} {message}")


def test_override_of_swept_key(tmp_path):
    data = with_changes(sweep={"init.c": [1.0, 2.0]})
    problem = only_problem(problems_for(tmp_path, data, ("init.c=3",)))
    assert (
        problem
        == f"{tmp_path / 'exp.yaml'} (--set init.c=3): init.c: is swept (sweep.init.c); "
        + ("cannot also --set it")
    )


def test_override_fixes_a_bad_value(tmp_path):
    path = write_dict(tmp_path, with_changes(train={"lr": "abc"}))
    assert load_experiment(path, ["train.lr=0.5"]).base.train.lr == 0.5


def test_all_problems_reported_at_once(tmp_path):
    data = with_changes(
        model={"nrom": "x", "depth": 0, "groups": 3},
        init={"c": "big"},
        train={"lr": -1, "seed": 1.5},
        sweep={"init.c": [], "modle.width": [1]},
    )
    data["extra"] = 1
    path = write_dict(tmp_path, data)
    problems = validate_file(path, ["train.epochs=x", "oops"])
    keys = [
        "model.nrom",
        "model.depth",
        "model.groups",
        "init.c",
        "train.lr",
        "train.seed",
        "train.epochs",
        "sweep.init.c",
        "sweep.modle.width",
        "extra",
        "--set oops",
    ]
    for key in keys:
        assert any(key in p for p in problems), (key, problems)
    assert all(p.startswith(str(path)) for p in problems)
    assert len(problems) == len(set(problems)) == len(keys)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, ["train.epochs=x", "oops"])
    assert info.value.problems == problems
    assert str(info.value) == "\n".join(problems)


def test_config_from_dict_reports_problems():
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            {"name": "x", "model": {"depth": 0}, "sweep": {}}, source="runs/x/config.yaml"
        )
    assert info.value.problems == [
        "runs/x/config.yaml: sweep: unknown key; expected one of: name, model, init, data, train, "
        "log",
        "runs/x/config.yaml: model.depth: must be in 1..10,000, got 0",
    ]
    with pytest.raises(ConfigError, match="^<dict>: expected a mapping"):
        config_from_dict([1])


# --- Property: any mutation of a valid file either loads cleanly or fails with ConfigError -----

FIELD_PATHS = [
    f"{s}.{k}"
    for s, values in config_to_dict(RunConfig()).items()
    if isinstance(values, dict)
    for k in values
]
CHOICE_WORDS = ["relu", "tanh", "layer", "group", "batch", "kaiming", "uniform", "adam", "cpu"]
SCALARS = st.one_of(
    st.integers(-3, 300),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(CHOICE_WORDS),
    st.booleans(),
    st.none(),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=5), SCALARS, max_size=2),
)
KEYS = st.one_of(
    st.text(max_size=8), st.sampled_from(["name", "sweep", *config_to_dict(RunConfig())])
)

GOOD_SWEEPS = st.one_of(
    st.tuples(st.just("init.c"), st.lists(st.floats(0.1, 5), min_size=1, max_size=3, unique=True)),
    st.tuples(
        st.just("model.depth"), st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True)
    ),
    st.tuples(
        st.just("model.norm"), st.lists(st.sampled_from(["none", "layer"]), min_size=1, unique=True)
    ),
    st.tuples(st.just("model.bias"), st.lists(st.booleans(), min_size=1, unique=True)),
)
ANY_SWEEP = st.tuples(
    st.one_of(st.sampled_from([*FIELD_PATHS, "name"]), st.text(max_size=8)),
    st.one_of(st.lists(SCALARS, max_size=3), VALUES),
)
OVERRIDES = st.one_of(
    st.just([]),
    st.lists(
        st.one_of(
            st.builds("{}={}".format, st.sampled_from(FIELD_PATHS), st.text(max_size=6)),
            st.builds("{}={}".format, st.sampled_from(FIELD_PATHS), st.integers(-2, 50)),
            st.text(max_size=8),
        ),
        max_size=2,
    ),
)


def key_paths(data: dict) -> list[tuple[str, ...]]:
    """Paths of the top-level keys and of the keys one level down."""
    paths = [(k,) for k in data]
    paths += [(k, sub) for k, v in data.items() if isinstance(v, dict) for sub in v]
    return paths


def container(data: dict, path: tuple[str, ...]) -> dict:
    return data if len(path) == 1 else data[path[0]]


def mutate(draw, data: dict) -> None:
    op = draw(st.sampled_from(["drop", "rename", "replace", "set", "unknown", "sweep"]))
    paths = key_paths(data)
    if op in ("drop", "rename", "replace") and paths:
        path = draw(st.sampled_from(paths))
        parent = container(data, path)
        value = parent.pop(path[-1])
        if op == "rename":
            parent[path[-1] + draw(st.text(min_size=1, max_size=2))] = value
        elif op == "replace":
            parent[path[-1]] = draw(VALUES)
    elif op == "set":
        section, _, name = draw(st.sampled_from(FIELD_PATHS)).partition(".")
        if isinstance(data.get(section), dict):
            data[section][name] = draw(VALUES)
    elif op == "unknown":
        target = draw(st.sampled_from([data, *[v for v in data.values() if isinstance(v, dict)]]))
        target[draw(KEYS)] = draw(VALUES)
    elif op == "sweep":
        sweep = data.setdefault("sweep", {})
        if isinstance(sweep, dict):
            key, values = draw(st.one_of(GOOD_SWEEPS, ANY_SWEEP))
            sweep[key] = values


@pytest.fixture(scope="module")
def prop_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_configs_load_or_raise_config_error(prop_dir, data):
    config = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(0, 4))):
        mutate(data.draw, config)
    overrides = data.draw(OVERRIDES)
    path = prop_dir / "mutated.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    try:
        exp = load_experiment(path, overrides)
    except ConfigError as err:
        assert err.problems
        assert all(p.startswith(str(path)) for p in err.problems), err.problems
        assert validate_file(path, overrides) == err.problems
        return
    assert validate_file(path, overrides) == []
    assert exp.members
    assert len({m.name for m in exp.members}) == len(exp.members)
    for member in exp.members:
        cfg = member.config
        assert config_from_dict(config_to_dict(cfg)) == cfg
        assert config_from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg
        assert cfg.name == exp.name


def test_a_run_directory_config_reads_back_as_written(tmp_path):
    """A resumed run reads its config.yaml in the dialect it was written in: `off` stays the
    string (YAML 1.1 read it as false, and the resume was refused)."""
    from initlab.resume import read_config
    from initlab.runs import CONFIG_FILE

    cfg = set_dotted(set_dotted(RunConfig(name="r"), "train.cuda_graph", "off"),
                     "model.weight_norm", "standardize")
    (tmp_path / CONFIG_FILE).write_text(dump_yaml(cfg))
    assert read_config(tmp_path) == cfg
