"""The run-folder format has one owner (issue 20): ``initlab/runs.py`` names the files, writes
them and reads them; every other module reads a run through it. This test fails when a module
outside it names a run file itself or opens one: a path built from a run file's name (its
constant, or a string literal) reaching ``open``, ``read_text``, ``json.load``, ``torch.load``...
"""

from __future__ import annotations

import ast
from pathlib import Path

from initlab import runs

PACKAGE = Path(runs.__file__).parent
OWNER = PACKAGE / "runs.py"
CONSTANTS = {"CONFIG_FILE", "STATS_FILE", "SUMMARY_FILE", "CHECKPOINT_FILE",
             "PREVIOUS_CHECKPOINT_FILE", "SWEEP_FILE", "RUN_FILES"}
# Calls that read a file: names, and methods of a path or a module.
READERS = {"open", "read_text", "read_bytes", "load", "loads", "safe_load", "full_load",
           "unsafe_load", "load_all", "safe_load_all", "fromfile", "memmap", "fdopen"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (they may name files freely)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def violations(path: Path) -> list[str]:
    """Where a module names a run file in a string, or reads a path made from a run file's
    name (a name is tainted by the constants and by every assignment from a tainted
    expression, flow-insensitively: coarse, never lenient)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    found = []
    names = set(runs.RUN_FILES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs and node.value in names:
            found.append(f"{path.name}:{node.lineno}: names {node.value!r}")
    for node in ast.walk(tree):  # a checkpoint is opened by runs.read_checkpoint_bytes only
        if isinstance(node, ast.Call) and _call_name(node) == "load" \
                and "torch" in _names(node.func) and not (
                    node.args and isinstance(node.args[0], ast.Call)
                    and _call_name(node.args[0]) == "BytesIO"):
            found.append(f"{path.name}:{node.lineno}: torch.load of a file; load the bytes "
                         f"initlab.runs.read_checkpoint_bytes read")
    scopes = [n for n in ast.walk(tree)
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    for scope in [tree, *scopes]:
        found += _reads_in(scope, path)
    return sorted(set(found))


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of one scope, not those of the functions defined inside it."""
    nodes, stack = [], list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        nodes.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return nodes


def _reads_in(scope: ast.AST, path: Path) -> list[str]:
    """Reads of a tainted path within one function (or the module): a name is tainted by the
    constants and by every assignment from a tainted expression in that scope."""
    tainted = set(CONSTANTS)
    changed = True
    while changed:  # propagate through assignments until nothing new is tainted
        changed = False
        for node in _own_nodes(scope):
            targets: list[ast.AST] = []
            value: ast.AST | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                targets, value = [node.target], node.value
            elif isinstance(node, (ast.For, ast.comprehension)):
                targets, value = [node.target], node.iter
            if value is None or not (_names(value) & tainted):
                continue
            for target in targets:
                new = _names(target) - tainted
                if new:
                    tainted |= new
                    changed = True
    found = []
    for node in _own_nodes(scope):
        if isinstance(node, ast.Call) and _call_name(node) in READERS:
            parts: list[ast.AST] = [*node.args, *(k.value for k in node.keywords)]
            if isinstance(node.func, ast.Attribute):
                parts.append(node.func.value)
            if any(_names(part) & tainted for part in parts):
                found.append(f"{path.name}:{node.lineno}: reads a run file itself "
                             f"({_call_name(node)}); read it through initlab.runs")
    return found


def test_only_the_run_format_module_opens_run_files() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != OWNER:
            problems += violations(path)
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_direct_read(tmp_path: Path) -> None:
    """The check itself: each way of reading a run file directly is caught."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "import json\n"
        "from initlab.runs import SUMMARY_FILE\n"
        "def a(run):\n"
        "    path = run / SUMMARY_FILE\n"
        "    return json.loads(path.read_text())\n"
        "def b(run):\n"
        "    return open(run / 'stats.jsonl').read()\n"
        "def c(path):\n"
        "    import torch\n"
        "    return torch.load(path, weights_only=True)\n")
    found = violations(sneaky)
    assert all(any(f":{line}:" in f for f in found) for line in (5, 7, 10)), found
