"""`initlab diagnose` on small real runs: each detector fires on the problem planted for it
and stays silent on a healthy run; its numbers are the ones `initlab export` writes; the
command line (--json, the newest run, a sweep); the top finding after `initlab run` and at
the end of an `initlab.watch` block."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import initlab
from initlab import diagnosis
from initlab.cli import app

pytestmark = pytest.mark.usefixtures("mnist_env")
runner = CliRunner()

# Small budgets: 4096 training images (32 steps an epoch), 1000 test images, a 256-image probe,
# a record every 20 steps, one thread.
BASE = ["--set", "data.train_subset=4096", "--set", "data.test_subset=1000",
        "--set", "log.probe_size=256", "--set", "log.every=20", "--set", "train.epochs=3",
        "--set", "train.target_test_error=null", "--set", "train.checkpoint=none",
        "--threads", "1"]

# One planted problem per detector of the MLP (no-gradient cannot be planted in initlab's MLP:
# watch cases below), and the healthy run.
PLANTED: dict[str, tuple[str, ...]] = {
    "healthy": ("model.depth=10", "train.lr=0.05"),
    "activations-vanish": ("model.depth=20", "init.c=1"),
    "activations-explode": ("model.depth=20", "init.c=3.5"),
    "symmetric-init": ("model.depth=10", "init.scheme=zeros"),
    "normalized-gradients": ("model.depth=40", "model.norm=layer", "train.optimizer=adam",
                             "train.lr=0.001", "train.epochs=1"),
    "dropout-noise": ("model.depth=20", "model.dropout=0.3"),
    "small-batchnorm": ("model.depth=5", "model.norm=batch", "train.batch_size=2",
                        "train.max_steps=200"),
    "lr-too-high": ("model.depth=20", "train.lr=0.5"),
    "lr-too-low": ("model.depth=10", "train.lr=0.00001"),
    "overfitting": ("model.depth=3", "model.width=256", "data.train_subset=128",
                    "train.epochs=40", "train.batch_size=32", "train.lr=0.05", "log.every=0"),
    "stalled": ("model.depth=10", "train.max_steps=3"),
}
# Detectors whose problem a test elsewhere in this file plants (a watched model).
PLANTED_ELSEWHERE = {"no-gradient", "dead-relu", "diverged-at-start", "vanishing-gradients",
                     "accumulating-gradients", "unnormalized-inputs", "probability-outputs",
                     "saturation"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each planted run, trained once: name -> (run directory, `initlab run`'s output)."""
    out = tmp_path_factory.mktemp("diagnose")
    made: dict[str, tuple[Path, str]] = {}
    for name, sets in PLANTED.items():
        args = ["run", "kaiming", "--out", str(out), "--set", f"name={name}", *BASE,
                *(a for s in sets for a in ("--set", s))]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        made[name] = (out / name, result.output)
    return made


def test_every_detector_has_a_planted_run() -> None:
    problems = set(PLANTED) | PLANTED_ELSEWHERE
    for key in diagnosis.DETECTORS:
        named = {problem for problem, family in diagnosis.FAMILY.items() if family == key} \
            or {key}
        assert named & problems, f"plant a run for the detector {key}"
    assert set(PLANTED) | PLANTED_ELSEWHERE <= set(diagnosis.PROBLEMS)


@pytest.mark.parametrize("problem", sorted(PLANTED))
def test_the_planted_problem_is_the_top_finding(
        problem: str, trained: dict[str, tuple[Path, str]]) -> None:
    path, _ = trained[problem]
    findings = initlab.diagnose(path)
    assert isinstance(findings, list)
    top = findings[0]
    assert top.problem == problem, [f"{f.problem}: {f.evidence}" for f in findings]
    if problem == "healthy":
        assert len(findings) == 1 and top.severity == "ok"
    else:
        assert top.severity in ("warning", "error")
        assert top.evidence and top.expected and top.advice and top.source


def test_the_effective_c_is_read_from_the_activations(
        trained: dict[str, tuple[Path, str]]) -> None:
    top = initlab.diagnose(trained["activations-vanish"][0])[0]
    # ReLU: ‖Z‖ changes by sqrt(c/2) a layer; at c = 1 that is x0.71 and c ≈ 1.
    assert "c ≈ 1 " in top.evidence or "c ≈ 1.0" in top.evidence or "c ≈ 0.9" in top.evidence, \
        top.evidence
    per_layer = float(top.evidence.split("x")[1].split(" ")[0])
    assert per_layer == pytest.approx(math.sqrt(0.5), abs=0.05)


def test_a_finding_is_the_number_export_writes(trained: dict[str, tuple[Path, str]],
                                               tmp_path: Path) -> None:
    for problem in ("activations-vanish", "normalized-gradients", "lr-too-low", "overfitting"):
        path = trained[problem][0]
        top = initlab.diagnose(path)[0]
        assert top.statistic is not None and top.value is not None
        result = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / problem)])
        assert result.exit_code == 0, result.output
        per_layer = top.layer is not None
        table = tmp_path / problem / path.name / ("layers.csv" if per_layer else "records.csv")
        with table.open() as f:
            rows = [r for r in csv.DictReader(f)
                    if r["step"] == str(top.step) and r["phase"] == top.phase
                    and (not per_layer or r["layer"] == top.layer)]
        assert len(rows) == 1, (problem, top)
        assert float(rows[0][top.statistic]) == pytest.approx(top.value, rel=1e-6)


def test_initlab_run_prints_the_top_finding(trained: dict[str, tuple[Path, str]]) -> None:
    output = trained["activations-vanish"][1]
    lines = output.strip().splitlines()
    assert any("the activations vanish with depth [error]" in line for line in lines), output
    assert lines[-1].startswith("plot it: initlab plot")  # still the last line
    healthy = trained["healthy"][1]
    assert "Try:" not in healthy  # nothing to say about a healthy run


def test_the_command_line(trained: dict[str, tuple[Path, str]], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = trained["symmetric-init"][0]
    result = runner.invoke(app, ["diagnose", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data[0]["run"] == str(path)
    assert data[0]["findings"][0]["problem"] == "symmetric-init"
    assert {"severity", "evidence", "expected", "advice", "source"} <= set(data[0]["findings"][0])
    # No argument: the newest run under ./runs, said aloud.
    monkeypatch.chdir(path.parent)
    (path.parent / "runs").mkdir(exist_ok=True)
    result = runner.invoke(app, ["run", "kaiming", "--out", "runs", "--set", "name=c1", *BASE,
                                 "--set", "model.depth=20", "--set", "init.c=1",
                                 "--set", "train.max_steps=20"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["diagnose"])
    assert result.exit_code == 0, result.output
    assert "diagnosing runs/c1" in result.output
    assert "runs/c1: the activations vanish with depth [error]" in result.output
    # A run that is not there: one line, exit 2.
    result = runner.invoke(app, ["diagnose", "runs/nothing"])
    assert result.exit_code == 2 and "no such directory" in result.output


def test_a_sweep_groups_its_members_by_their_top_finding(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text("name: sweep\nmodel: {depth: 20}\ntrain: {max_steps: 40}\n"
                      "sweep: {init.c: [1.0, 2.0, 3.5], train.seed: [0, 1]}\n")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), *BASE])
    assert result.exit_code == 0, result.output
    found = initlab.diagnose(tmp_path / "sweep")
    assert isinstance(found, dict) and len(found) == 6
    tops = {Path(p).name: fs[0].problem for p, fs in found.items()}
    assert tops["c=1.0_seed=0"] == tops["c=1.0_seed=1"] == "activations-vanish"
    assert tops["c=3.5_seed=0"] == "activations-explode"
    result = runner.invoke(app, ["diagnose", str(tmp_path / "sweep")])
    assert result.exit_code == 0, result.output
    assert "c=1.0_seed=0, c=1.0_seed=1: the activations vanish with depth" in result.stdout


class Detached(nn.Module):
    """A small MLP whose first two layers are cut off from the loss by a .detach()."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(n, m) for n, m in
                                    ((784, 64), (64, 64), (64, 64), (64, 10)))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers[:-1]):
            x = self.relu(layer(x))
            if i == 1:
                x = x.detach()
        return self.layers[-1](x)


def watched_run(model: nn.Module, out: Path, lr: float, steps: int = 60) -> Path:
    from initlab.data import load_mnist

    data = load_mnist(train_subset=steps * 32, test_subset=500, log=lambda _: None)
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with initlab.watch(model, out, every=5) as watch:
        for s in range(steps):
            x, y = data.train_x[32 * s:32 * (s + 1)], data.train_y[32 * s:32 * (s + 1)]
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            error = None
            if s == steps - 1:
                with torch.no_grad():
                    error = float((model(data.test_x).argmax(1) != data.test_y).float().mean())
            watch.step(loss, test_error=error)
    return watch.path  # type: ignore[return-value]


def test_a_detached_layer_is_named_and_the_watch_block_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    path = watched_run(Detached(), tmp_path / "detached", lr=0.05)
    printed = capsys.readouterr().err
    top = initlab.diagnose(path)[0]
    assert top.problem == "no-gradient" and top.layers == ["layers.0", "layers.1"], top
    assert f"initlab diagnose: {path}: some layers never learn" in printed


def test_dead_units_at_initialization_are_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():  # 48 of each layer's 64 units: a bias far below their input's reach
        for i in (0, 2, 4):
            model[i].bias[:48] = -50.0
    path = watched_run(model, tmp_path / "dead", lr=0.05)
    top = initlab.diagnose(path)[0]
    assert top.problem == "dead-relu" and "at initialization already" in top.title, top


def test_the_theory_constants_are_the_figures_own() -> None:
    from initlab.figures.theory import NORMALIZED_RELU_GRADIENT_RATE, dropout_noise_to_signal

    assert diagnosis.NORMALIZED_GRADIENT_RATE == NORMALIZED_RELU_GRADIENT_RATE
    assert diagnosis.dropout_ratio(0.1, 49) == pytest.approx(dropout_noise_to_signal(0.1, 49))


# --- Issue 31's causes on tiny watched models (synthetic data: a few seconds in all) -----------


def tiny_watched(model: nn.Module, out: Path, *, steps: int = 40, lr: float = 0.05,
                 zero_grad: bool = True, scale: float = 1.0, batch: int = 32,
                 regression: bool = False, params: list[nn.Parameter] | None = None,
                 test_error: bool = True) -> Path:
    """``model`` trained under initlab.watch (every 5) on a fixed synthetic task: 16-d normal
    inputs (times ``scale``), 4 classes by the largest of 4 fixed projections (or, for
    ``regression``, one target), SGD with momentum 0.9."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(batch * steps + 256, 16, generator=gen)
    w = torch.randn(16, 4, generator=gen)
    y = (x @ w)[:, 0] if regression else (x @ w).argmax(dim=1)
    torch.manual_seed(0)
    opt = torch.optim.SGD(params if params is not None else model.parameters(), lr=lr,
                          momentum=0.9)
    with initlab.watch(model, out, every=5) as watch:
        for s in range(steps):
            xb, yb = x[batch * s:batch * (s + 1)] * scale, y[batch * s:batch * (s + 1)]
            output = model(xb)
            loss = nn.functional.mse_loss(output[:, 0], yb) if regression else \
                nn.functional.cross_entropy(output, yb)
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            opt.step()
            watch.step(loss)
        if test_error and not regression:
            with torch.no_grad():
                model.eval()
                error = float((model(x[-256:] * scale).argmax(1) != y[-256:]).float().mean())
            watch.evaluate(test_error=error)
    return watch.path  # type: ignore[return-value]


def stack(widths: list[int], activation: type[nn.Module] = nn.ReLU,
          after: Callable[[int], list[nn.Module]] = lambda _: [],
          end: list[nn.Module] | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n, m) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n, m))
        if i < len(widths) - 2:
            layers += [*after(m), activation()]
    return nn.Sequential(*layers, *(end or []))


def top_of(path: Path) -> diagnosis.Finding:
    findings = initlab.diagnose(path)
    assert isinstance(findings, list)
    return findings[0]


def test_issue_31_causes_are_each_the_top_finding(tmp_path: Path) -> None:
    """Each cause planted in a tiny model is its run's top finding; the healthy ones (a
    classifier, a one-output regression) are "nothing wrong found" with the criterion stated."""
    torch.manual_seed(0)
    cases: dict[str, Callable[[Path], Path]] = {
        "healthy": lambda p: tiny_watched(stack([16, 32, 32, 4]), p),
        "regression": lambda p: tiny_watched(stack([16, 32, 1]), p, regression=True, lr=0.01),
        "vanishing-gradients": lambda p: tiny_watched(
            stack([16] + [16] * 12 + [4], nn.Sigmoid), p),
        "accumulating-gradients": lambda p: tiny_watched(stack([16, 32, 4]), p, lr=0.01,
                                                         zero_grad=False),
        "unnormalized-inputs": lambda p: tiny_watched(stack([16, 32, 4]), p, scale=100.0,
                                                      lr=0.001),
        "probability-outputs": lambda p: tiny_watched(
            stack([16, 32, 4], end=[nn.Softmax(dim=1)]), p),
        "saturation": lambda p: tiny_watched(saturating(), p),
        "dropout-noise": lambda p: tiny_watched(
            stack([16, 64, 64, 4], after=lambda _: [nn.Dropout(0.8)]), p),
        "small-batchnorm": lambda p: tiny_watched(
            stack([16, 32, 32, 4], after=lambda m: [nn.BatchNorm1d(m)]), p, batch=2,
            steps=60),
    }
    for name, make in cases.items():
        torch.manual_seed(0)
        findings = initlab.diagnose(make(tmp_path / name))
        assert isinstance(findings, list)
        top = findings[0]
        want = "healthy" if name == "regression" else name
        assert top.problem == want, (name, [f"{f.problem}: {f.evidence}" for f in findings])
        if want == "healthy":
            assert "it learned: the loss fell below 0.9x" in top.evidence, top.evidence
        else:
            assert top.severity in ("warning", "error") and top.advice and top.source


def saturating() -> nn.Sequential:
    model = stack([16, 32, 32, 32, 4], nn.Tanh)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(8.0)
    return model


def test_a_frozen_layer_is_told_from_an_update_below_float32(tmp_path: Path) -> None:
    """A layer the optimizer does not hold: no-gradient, saying so. Layers whose gradient is
    real but whose updates round to nothing (a deep sigmoid stack) are vanishing gradients,
    never "the optimizer skips them"."""
    torch.manual_seed(0)
    model = stack([16, 32, 32, 4])
    params = [p for n, p in model.named_parameters() if not n.startswith("0.")]
    top = top_of(tiny_watched(model, tmp_path / "frozen", params=params))
    assert top.problem == "no-gradient" and top.layers == ["0"], top
    assert "the optimizer does not hold these weights" in top.evidence
    torch.manual_seed(0)
    deep = stack([16] + [16] * 24 + [4], nn.Sigmoid)
    findings = initlab.diagnose(tiny_watched(deep, tmp_path / "deep", lr=0.01))
    assert isinstance(findings, list)
    assert findings[0].problem == "vanishing-gradients", findings[0]
    assert "no-gradient" not in [f.problem for f in findings]


def test_partial_and_diverged_at_start_runs_get_honest_findings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = stack([16, 32, 4])
    with initlab.watch(model, tmp_path / "init-only") as watch:
        loss = nn.functional.cross_entropy(model(torch.randn(8, 16)), torch.zeros(8).long())
        loss.backward()
        watch.step(loss)
    findings = initlab.diagnose(watch.path)  # type: ignore[arg-type]
    assert isinstance(findings, list)
    assert [f.problem for f in findings] == ["not-trained"], findings
    assert "initialization" in findings[0].title
    with initlab.watch(model, tmp_path / "nan-input") as watch:
        for _ in range(3):
            x = torch.full((8, 16), math.nan)
            loss = nn.functional.cross_entropy(model(x), torch.zeros(8).long())
            loss.backward()
            watch.step(loss)
    top = top_of(watch.path)  # type: ignore[arg-type]
    assert top.problem == "diverged-at-start" and top.severity == "error", top
    assert "not the learning rate" in top.evidence


def test_a_damaged_run_does_not_hide_the_others(tmp_path: Path) -> None:
    torch.manual_seed(0)
    good = tiny_watched(stack([16, 32, 4]), tmp_path / "runs" / "good")
    bad = tiny_watched(stack([16, 32, 4]), tmp_path / "runs" / "bad")
    (bad / "summary.json").write_text('{"status": 3}')
    found = initlab.diagnose(tmp_path / "runs")
    assert isinstance(found, dict)
    assert found[str(good)][0].problem == "healthy"
    assert found[str(bad)][0].problem == "unreadable" and "status" in found[str(bad)][0].evidence
    result = runner.invoke(app, ["diagnose", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "the run cannot be read" in result.output and "nothing wrong found" in result.output


@pytest.mark.parametrize("junk", [3, "x", [1, [2]], {"rms": "big", "columns": None}, None])
def test_what_watch_recorded_of_the_loop_is_data_not_trusted(tmp_path: Path, junk: object) -> None:
    """A run folder is data: the loop facts diagnosis reads from config.yaml and summary.json
    (batch size, modules, dropout, optimizers, inputs, outputs, carried gradients), damaged
    or of any type, give findings, never an exception."""
    import yaml

    torch.manual_seed(0)
    path = tiny_watched(stack([16, 32, 4]), tmp_path / "run", steps=10)
    config = yaml.safe_load((path / "config.yaml").read_text())
    for key in ("batch_size", "modules", "dropout", "optimizers"):
        config["watch"][key] = junk
    for layer in config["watch"]["layers"]:
        layer["optimized"] = junk
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    summary = json.loads((path / "summary.json").read_text())
    summary["watch"] = {"inputs": junk, "outputs": junk, "carried_gradients": junk}
    (path / "summary.json").write_text(json.dumps(summary))
    findings = initlab.diagnose(path)
    assert isinstance(findings, list) and findings
    summary["watch"] = junk
    (path / "summary.json").write_text(json.dumps(summary))
    assert initlab.diagnose(path)
