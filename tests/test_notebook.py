"""examples/lecture.ipynb runs (issue 23): its code cells, in order, in one namespace, as
Jupyter would run them, with the notebook's own small budgets (INITLAB_NOTEBOOK_QUICK=1) on
real MNIST. Reading the .ipynb as JSON needs no Jupyter in the test environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "lecture.ipynb"

pytestmark = pytest.mark.usefixtures("mnist_env")


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4
    return ["".join(cell["source"]) for cell in notebook["cells"]
            if cell["cell_type"] == "code"]


def test_the_lecture_notebook_runs_cell_by_cell(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("INITLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("INITLAB_NOTEBOOK_OUT", str(tmp_path / "runs"))
    # As if run before (issue 32: run twice, it trained into sweep-c-2 but loaded sweep-c)
    (tmp_path / "runs" / "sweep-c").mkdir(parents=True)
    namespace: dict = {"__name__": "__main__"}
    for i, source in enumerate(code_cells()):
        assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines()), \
            f"cell {i}: plain Python only (no shell or magic lines)"
        exec(compile(source, f"{NOTEBOOK.name}, code cell {i}", "exec"), namespace)
    sweep = namespace["sweep"]
    assert [m.status for m in sweep] == ["completed", "completed", "diverged"]
    assert {r.path.parent.name for r in namespace["again"]} == {"sweep-c-2"}
    assert {p.name for p in (tmp_path / "runs").glob("*.png")} >= {
        "sweep-c-layers.png", "tanh-layers.png", "layernorm-init.png",
        "normalized-training.png"}


    diagnosis = namespace["diagnosis"]
    assert diagnosis[1.0].problem == "activations-vanish"
    assert diagnosis[3.0].problem == "activations-explode"
