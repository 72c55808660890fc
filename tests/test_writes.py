"""One writer rule (issue 32): every file initlab writes goes through the writer of
``initlab/runs.py`` (a temporary name in the target's folder, flushed, renamed over the target;
a link, FIFO, device or folder at the target refused with one line). This test reads the
package's source and fails when a module writes a file any other way; the few exceptions are
listed with the reason each is one. Behaviour: tests/test_hostile.py (write-side damage) and
the cases below.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from initlab import runs
from initlab.errors import UsageError

PACKAGE = Path(runs.__file__).parent
WRITER = "runs.py"

# Calls that write, move or delete a file, by name (a method of a path, a module function).
WRITERS = {"write_text", "write_bytes", "savefig", "replace", "rename", "truncate",
           "copy", "copyfile", "copy2", "copytree", "move", "symlink_to", "link_to",
           "hardlink_to", "extractall", "extract", "mkstemp", "NamedTemporaryFile", "tofile",
           "dump", "SummaryWriter"}
WRITE_MODES = set("wax+")

# module:function:call -> why it is not the writer's.
ALLOWED = {
    "checkpoint.py:save_group:save": "torch.save into an io.BytesIO; the bytes go through "
                                     "atomic_write_bytes",
    "checkpoint.py:rewind_member:replace": "resume: the chosen checkpoint of a member's own "
                                           "folder becomes checkpoint.pt (a rename in place)",
    "data.py:_install_file:open": "the MNIST cache: a new file (mode x: never an existing "
                                  "one, never through a link), renamed in after its SHA-256",
    "data.py:_install_file:replace": "the MNIST cache: the verified file renamed in",
    "data.py:_install_verified:replace": "the MNIST cache: a verified staging file renamed in",
    "distributed.py:launch:open": "a worker's log in a temporary folder this process made",
    "distributed.py:announce_run_dir:write_text": "the launcher's own temporary file "
                                                  "(--nproc), not a user's",
    "bench_pair.py:time_workers:open": "the workers' log in a temporary folder this process "
                                       "made",
    "bench_worker.py:__init__:fdopen": "a duplicate of the worker's stdout, not a file",
    "export.py:write_tensorboard:SummaryWriter": "TensorBoard names its own new event file, "
                                                 "in a folder output_folder checked",
    "export.py:_writer:SummaryWriter": "initlab run --tensorboard: TensorBoard names its own "
                                       "new event file in the run's folder",
    "figures/cache.py:train_launched:replace": "the figures' cache: a member folder it "
                                               "trained, renamed into the cache it owns",
    "bench_pair.py:revision_checkout:extractall": "a git archive of initlab, into a temporary "
                                                  "folder this process made",
    "plot.py:save:savefig": "into the file object atomic_output gives",
    "config/yaml12.py:dump:dump": "yaml.dump to a string",
}


def _function_of(tree: ast.AST) -> dict[int, str]:
    """id(node) -> the name of the innermost function holding it ("<module>" outside)."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef,
                                                     ast.AsyncFunctionDef)) else name
            owner[id(child)] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return owner


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _mode(call: ast.Call, position: int) -> str:
    args = [*call.args[position:position + 1],
            *(k.value for k in call.keywords if k.arg in ("mode", "flags"))]
    return " ".join(ast.unparse(a) for a in args)


def writes_in(path: Path) -> list[str]:
    """``module:function:call`` for each call in ``path`` that writes a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    owner = _function_of(tree)
    module = path.relative_to(PACKAGE).as_posix()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        receiver = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        writes = name in WRITERS
        if name == "dump" and receiver == "json":
            writes = True
        elif name == "dump" and receiver not in ("yaml",):
            writes = False
        if name in ("open", "fdopen") and receiver in ("", "os", "io", "tarfile", "gzip"):
            mode = _mode(node, 1)
            flags = receiver == "os" and name == "open"
            writes = (any(flag in mode for flag in ("O_WRONLY", "O_RDWR", "O_CREAT")) if flags
                      else bool(WRITE_MODES & set(mode.strip("'\"").partition(":")[0])))
        if name == "open" and receiver not in ("", "os", "io", "tarfile", "gzip"):
            mode = _mode(node, 0)  # Path.open(mode)
            writes = bool(WRITE_MODES & set(mode.strip("'\"")))
        if name == "save" and receiver == "torch":
            writes = True
        if name in ("replace", "rename") and receiver not in ("os", "shutil") \
                and not receiver.endswith(("path", "member", "target", "tmp", "staging")):
            writes = name == "rename" and bool(node.args)  # str.replace is no file
            writes = writes and not isinstance(node.func.value, ast.Constant)
        if name == "replace" and receiver == "os":
            writes = True
        if writes:
            found.append(f"{module}:{owner.get(id(node), '<module>')}:{name}")
    return found


def all_writes() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != WRITER or path.parent != PACKAGE:
            found += writes_in(path)
    return found


def test_every_module_writes_files_through_the_writer() -> None:
    found = all_writes()
    stray = sorted({w for w in found if w not in ALLOWED})
    assert not stray, ("these write a file outside initlab.runs' writer (atomic_output, "
                       "atomic_write_bytes/text, append_bytes); use it, or add the call to "
                       f"ALLOWED with the reason: {stray}")
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"ALLOWED lists writes that are no longer there: {stale}"


def test_the_scan_sees_a_stray_write(tmp_path: Path) -> None:
    """The scan itself can fail: each way of writing a file is found."""
    sample = PACKAGE / "_stray_write_sample.py"
    sample.write_text("import torch\nfrom pathlib import Path\n\n\ndef f(p, fig, x):\n"
                      "    open(p, 'w').write('x')\n    Path(p).write_text('x')\n"
                      "    fig.savefig(p)\n    torch.save(x, p)\n    p.open('ab')\n",
                      encoding="utf-8")
    try:
        found = writes_in(sample)
    finally:
        sample.unlink()
    assert sorted(c.rsplit(":", 1)[1] for c in found) == \
        ["open", "open", "save", "savefig", "write_text"]


# --- The writer itself ---------------------------------------------------------------------------


def _special(kind: str, path: Path, elsewhere: Path) -> None:
    if kind == "link":
        elsewhere.write_text("victim")
        path.symlink_to(elsewhere)
    elif kind == "dangling link":
        path.symlink_to(elsewhere.parent / "nothing-here")
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()


@pytest.mark.parametrize("kind", ["link", "dangling link", "FIFO", "folder"])
def test_the_writer_refuses_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    target, elsewhere = tmp_path / "out.json", tmp_path / "victim"
    _special(kind, target, elsewhere)
    for write in (lambda: runs.atomic_write_text(target, "new"),
                  lambda: runs.append_bytes(target, b"new"),
                  lambda: runs.truncate_to(target, 0)):
        with pytest.raises(UsageError, match="initlab (writes|appends) only"):
            write()
    if kind == "link":
        assert elsewhere.read_text() == "victim"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.json"] + (["victim"] if kind == "link" else []))  # no temporary file left


def test_the_writer_replaces_a_regular_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    runs.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), runs.atomic_output(target) as f:
        f.write(b"half")
        raise RuntimeError("cut short")
    assert target.read_text() == "new"  # the old file, never half of the new one
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_rotation_keeps_the_old_file_until_the_new_one_is_whole(tmp_path: Path) -> None:
    current, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt"
    current.write_bytes(b"step 900")
    with pytest.raises(runs.RunWriteError, match="No space left"), \
            runs.atomic_output(current, previous=previous) as f:
        f.write(b"step 1000, half")
        raise OSError(28, "No space left on device")
    assert current.read_bytes() == b"step 900" and not previous.exists()
    runs.atomic_write_bytes(current, b"step 1000", previous=previous)
    assert (current.read_bytes(), previous.read_bytes()) == (b"step 1000", b"step 900")


def test_an_output_folder_below_the_named_one_is_never_a_link(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "exports", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "sweep").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="never writes through a link"):
        runs.output_folder(out / "sweep" / "member", out)
    assert list(elsewhere.iterdir()) == []
    assert runs.output_folder(out / "a" / "b", out).is_dir()
