"""The package's shape: modules import downwards only, in the order the README lists them;
the config and the command line's cheap commands load no torch; every config field says whether
the members of a group share it; every third-party import is a declared dependency."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from initlab import config

PACKAGE = Path(__file__).resolve().parent.parent / "initlab"
PYPROJECT = PACKAGE.parent / "pyproject.toml"
README = PACKAGE.parent / "README.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path, package: str) -> set[str]:
    """Every module named by any import statement of the file: at the top, inside functions,
    under ``if TYPE_CHECKING`` alike. ``from a import b`` names ``a.b`` when that is a
    module, else ``a``."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in imported_names(path, package) if m in mods and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_lazy_or_type_checking_import() -> None:
    graph = import_graph()
    graph["initlab.norms"] = graph["initlab.norms"] | {"initlab.train"}  # as a lazy import
    assert find_cycle(graph) is not None


def readme_layers() -> dict[str, int]:
    """Each module's row in the README's module table ("How the code is organized"): a
    folder's row holds every module in it; ``__init__.py`` is the package ``initlab``."""
    section = README.read_text().split("### How the code is organized", 1)[1]
    rows = [line for line in section.split("\n### ", 1)[0].splitlines()
            if line.startswith("| `")]
    mods = modules()
    layers: dict[str, int] = {}
    for row, line in enumerate(rows):
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            stem = name.removesuffix(".py").removesuffix("/").replace("/", ".")
            base = "initlab" if stem == "__init__" else f"initlab.{stem}"
            folder = name.endswith("/")
            for module in mods:
                if module == base or (folder and module.startswith(base + ".")):
                    layers[module] = row
    return layers


def test_modules_import_only_their_row_of_the_readme_or_above() -> None:
    layers = readme_layers()
    missing = sorted(set(modules()) - set(layers))
    assert not missing, f"modules the README's module table does not list: {missing}"
    # ``from initlab import x`` also names the package, which Python has imported before any
    # of its modules anyway: only modules count as targets.
    upward = [f"{a} -> {b}" for a, targets in sorted(import_graph().items())
              for b in sorted(targets) if b != "initlab" and layers[b] > layers[a]]
    assert not upward, f"imports of a module listed below the importer: {upward}"


# The commands that read no data: a user waits for none of torch's import (seconds).
WITHOUT_TORCH = (["--help"], ["run", "--help"], ["validate", "configs/kaiming.yaml"])


@pytest.mark.parametrize("args", WITHOUT_TORCH, ids=" ".join)
def test_cheap_commands_never_import_torch(args: list[str]) -> None:
    code = ("import sys\nfrom initlab.cli import main\nsys.argv = ['initlab', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code or 0\n"
            "else:\n    code = 0\n"
            "assert code == 0, code\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=PACKAGE.parent, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_and_its_choices_import_no_torch() -> None:
    code = ("import sys, initlab.config, initlab.choices\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_config_field_declares_whether_members_share_it() -> None:
    undeclared = [f"{section}.{f.name}" for section, cls in config.SECTIONS.items()
                  for f in fields(cls) if f.metadata.get("scope") not in ("group", "member")]
    assert not undeclared, f"declare these with shared(...) or member(...): {undeclared}"
    assert set(config.GROUP_KEYS).isdisjoint(config.MEMBER_KEYS)
    every = {key for key in config.FIELDS if key != "name"}
    assert set(config.GROUP_KEYS) | set(config.MEMBER_KEYS) == every


def test_members_that_differ_only_in_member_fields_share_a_group() -> None:
    base = config.RunConfig()
    member_values = {"model.dropout": 0.1, "init.c": 1.5, "init.scheme": "uniform",
                     "train.lr": 0.1, "train.momentum": 0.9, "train.weight_decay": 1e-4,
                     "train.seed": 3, "train.target_test_error": 0.5}
    assert set(member_values) == set(config.MEMBER_KEYS)
    for key, value in member_values.items():
        assert config.group_key(config.set_dotted(base, key, value)) == config.group_key(base)
    changed = config.set_dotted(base, "model.width", 64)
    assert config.group_key(changed) != config.group_key(base)


def declared_dependencies() -> set[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return {name.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
            for name in names}


# Import names that differ from their distribution's name.
DISTRIBUTIONS = {"yaml": "pyyaml", "tensorboard": "tensorboard"}


def test_every_third_party_import_is_declared() -> None:
    stdlib = set(sys.stdlib_module_names)
    third_party: dict[str, set[str]] = {}
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in imported_names(path, package):
            top = imported.split(".")[0]
            if top and top not in stdlib and top != "initlab":
                third_party.setdefault(DISTRIBUTIONS.get(top, top), set()).add(name)
    missing = {dist: sorted(where) for dist, where in third_party.items()
               if dist not in declared_dependencies()}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_a_choice_whose_class_is_missing_fails_at_import() -> None:
    """A registry module builds its name -> class map from the lines of initlab.choices: a
    line naming a class the module lacks stops the import, naming both."""
    from initlab.choices import Choice, classes

    class Present:
        pass

    namespace = {"__name__": "initlab.norms", "Present": Present}
    assert classes({"p": Choice("p", "Present")}, namespace) == {"p": Present}
    with pytest.raises(ImportError, match="initlab.norms lacks: Missing"):
        classes({"p": Choice("p", "Present"), "m": Choice("m", "Missing")}, namespace)
