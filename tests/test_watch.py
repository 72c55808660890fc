"""``initlab.watch`` on models that are not initlab's MLP: its statistics against a hand
computation, the capture schedule, hooks removed on exit, NaN, the run directory the other
commands read, mixed precision, no optimizer, DDP and torch.compile."""

from __future__ import annotations

import copy
import importlib
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.optim.optimizer as optimizer_module
import yaml
from torch import Tensor, nn
from torch.nn import functional as F

import initlab
from initlab.errors import UsageError
from initlab.runs import CONFIG_FILE, STATS_FILE, SUMMARY_FILE, load_run, read_stats
from initlab.watching import Watch

watch_module = importlib.import_module("initlab.watching")

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
LAYER_KEYS = ("act_norm", "act_norm_cv", "dead_fraction", "grad_norm", "weight_norm",
              "weight_var", "weight_rel_change", "update_ratio")


class Tiny(nn.Module):
    """Conv2d, BatchNorm2d, ReLU, Linear, LayerNorm, ReLU, Linear; one channel after the batch
    norm and one unit after the layer norm are dead by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.ln = nn.LayerNorm(5)
        self.out = nn.Linear(5, 4)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias[1] = -100.0  # channel 1: below zero for every example
            self.ln.weight[0] = 0.0
            self.ln.bias[0] = -1.0  # unit 0: -1 for every example

    def outputs(self, x: Tensor) -> list[Tensor]:
        """Every watched layer's output, and the two ReLUs', written out by hand."""
        z1 = self.conv(x)
        z2 = self.bn(z1)
        a1 = self.relu1(z2)
        z3 = self.fc(a1.flatten(1))
        z4 = self.ln(z3)
        a2 = self.relu2(z4)
        return [z1, z2, z3, z4, self.out(a2), a1, a2]

    def forward(self, x: Tensor) -> Tensor:
        return self.outputs(x)[4]


TINY_LAYERS = ["conv", "bn", "fc", "ln", "out"]


def batches(n: int, seed: int = 0, device: str = "cpu") -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 2, 6, 6, generator=gen).to(device),
             torch.randint(0, 4, (8,), generator=gen).to(device)) for _ in range(n)]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


def hand_statistics(model: Tiny, opt: torch.optim.Optimizer, x: Tensor, y: Tensor,
                    initial: list[Tensor]) -> dict[str, list[float | None]]:
    """One training step of ``model`` and its statistics, computed directly."""
    layers = [model.conv, model.bn, model.fc, model.ln, model.out]
    z1, z2, z3, z4, logits, a1, a2 = model.outputs(x)
    F.cross_entropy(logits, y).backward()
    norms = [z.detach().flatten(1).norm(dim=1) for z in (z1, z2, z3, z4, logits)]
    before = [m.weight.detach().clone() for m in layers]
    grads = [m.weight.grad.norm().item() for m in layers]
    opt.step()
    opt.zero_grad()
    dead_bn = (a1.detach().sum(dim=(0, 2, 3)) == 0).float().mean().item()
    dead_ln = (a2.detach().sum(dim=0) == 0).float().mean().item()
    return {
        "act_norm": [n.mean().item() for n in norms],
        "act_norm_cv": [(n.std(correction=0) / n.mean()).item() for n in norms],
        "dead_fraction": [None, dead_bn, None, dead_ln, None],
        "grad_norm": grads,
        "weight_norm": [w.norm().item() for w in before],
        "weight_var": [w.var(correction=0).item() for w in before],
        "weight_numel": [w.numel() for w in before],
        "weight_rel_change": [((w - w0).norm() / w0.norm()).item()
                              for w, w0 in zip(before, initial, strict=True)],
        "update_ratio": [((m.weight.detach() - w).norm() / w.norm()).item()
                         for m, w in zip(layers, before, strict=True)],
    }


def train_watched(model: nn.Module, out: Path, data: list[tuple[Tensor, Tensor]], every: int,
                  lr: float = 0.1, momentum: float = 0.9) -> Watch:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    with initlab.watch(model, out, every=every) as watch:
        for x, y in data:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            watch.step(loss)
    return watch


def records(watch: Watch) -> list[dict]:
    assert watch.path is not None
    return read_stats(watch.path / STATS_FILE)


def assert_lists_close(got: list, want: list, what: str, rel: float = 1e-5) -> None:
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None, f"{what}[{i}]: {g} where nothing applies"
        else:
            assert g == pytest.approx(w, rel=rel, abs=1e-7), f"{what}[{i}]"


@pytest.mark.parametrize("device", DEVICES)
def test_statistics_equal_a_hand_computation(tmp_path: Path, device: str) -> None:
    """On CUDA this also runs the copy to pinned memory and the event that says it is done."""
    torch.manual_seed(0)
    model = Tiny().to(device)
    twin = copy.deepcopy(model)
    data = batches(4, device=device)
    watch = train_watched(model, tmp_path / "tiny", data, every=1)
    initial = [m.weight.detach().clone() for m in (twin.conv, twin.bn, twin.fc, twin.ln,
                                                   twin.out)]
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    got = records(watch)
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for record, (x, y) in zip(got, data, strict=True):
        want = hand_statistics(twin, opt, x, y, initial)
        for key in LAYER_KEYS:
            if key != "weight_var":
                assert_lists_close(record[key], want[key], f"step {record['step']} {key}")
        # stats.weight_variances is E[w^2] - E[w]^2 in float32: for a norm layer's weights,
        # near 1, it is exact to a few float32 roundings of E[w^2], not of Var(w) itself.
        for i, (got_var, want_var) in enumerate(zip(record["weight_var"], want["weight_var"],
                                                    strict=True)):
            mean_square = want["weight_norm"][i] ** 2 / want["weight_numel"][i]
            assert abs(got_var - want_var) <= 4 * FLOAT32_EPS * mean_square + 1e-6 * want_var
    assert got[0]["weight_rel_change"] == [0.0] * 5  # step 1: the weights at W(0)
    for record in got:  # the dead channel and unit (others may die on 8 examples too)
        assert record["dead_fraction"][1] >= 1 / 3 and record["dead_fraction"][3] >= 1 / 5
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)  # watching changed nothing in the training


def test_run_directory_follows_the_contract(tmp_path: Path) -> None:
    torch.manual_seed(0)
    watch = train_watched(Tiny(), tmp_path / "tiny", batches(3), every=2)
    path = tmp_path / "tiny"
    assert watch.path == path
    config = yaml.safe_load((path / CONFIG_FILE).read_text())
    held = {"optimized": True}
    loop = {key: config["watch"].pop(key) for key in ("batch_size", "modules", "optimizers")}
    assert config == {"name": "tiny", "watch": {"model": "Tiny", "every": 2, "layers": [
        {"name": "conv", "type": "Conv2d", "fan_in": 18, "shape": [3, 2, 3, 3], **held},
        {"name": "bn", "type": "BatchNorm2d", "fan_in": 1, "shape": [3], **held},
        {"name": "fc", "type": "Linear", "fan_in": 48, "shape": [5, 48], **held},
        {"name": "ln", "type": "LayerNorm", "fan_in": 1, "shape": [5], **held},
        {"name": "out", "type": "Linear", "fan_in": 5, "shape": [4, 5], **held}]}}
    # The training loop as the first forward pass and step showed it (docs/watch.md).
    x = batches(1)[0][0]
    assert loop["batch_size"] == 8 and loop["modules"] == {"ReLU": 2}
    assert loop["optimizers"] == [{"type": "SGD", "lr": 0.1}]
    measured = json.loads((path / SUMMARY_FILE).read_text())["watch"]
    assert measured["inputs"]["max"] == pytest.approx(float(x.max()), rel=1e-5)
    assert measured["inputs"]["rms"] == pytest.approx(float(x.square().mean().sqrt()), rel=1e-5)
    assert measured["outputs"]["columns"] == 4
    assert [layer.name for layer in watch.layers] == TINY_LAYERS
    got = records(watch)
    assert [r["step"] for r in got] == [1, 2]  # step 1, then every 2nd
    for r in got:
        assert r["phase"] == "train" and r["epoch"] is None and r["test_error"] is None
        assert set(LAYER_KEYS) <= set(r) and all(len(r[k]) == 5 for k in LAYER_KEYS)
        assert math.isfinite(r["loss"])
    summary = json.loads((path / SUMMARY_FILE).read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert summary["device"] == "cpu" and summary["diverged_step"] is None
    run = load_run(path)
    assert run.layers["act_norm"].shape == (2, 5)
    assert list(run.step) == [1, 2]
    # A second run of the same name gets its own directory, as `initlab run` does.
    again = train_watched(Tiny(), tmp_path / "tiny", batches(1), every=2)
    assert again.path == tmp_path / "tiny-2"


def test_captures_step_one_and_every_nth_and_records_errors_given(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with initlab.watch(model, tmp_path / "mlp", every=3) as watch:
        for step in range(1, 8):
            model(x)  # an evaluation pass first: the window's first forward pass counts
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step in (2, 4):  # between captures nothing is measured or kept
                assert watch.window.output_norms == {} and watch.window.activation_values == {}
            watch.step(loss.item(), epoch=step // 4,
                       test_error=0.5 if step == 7 else None)
    got = records(watch)
    assert [r["step"] for r in got] == [1, 3, 6, 7]
    assert [r["epoch"] for r in got] == [0, 0, 1, 1]
    assert "act_norm" not in got[-1] and got[-1]["test_error"] == 0.5  # errors only
    assert all(isinstance(r["loss"], float) for r in got)
    summary = json.loads((watch.path / SUMMARY_FILE).read_text())
    assert summary["final_test_error"] == 0.5 and summary["epochs"] == 1
    run = load_run(watch.path)
    assert np.isnan(run.layers["act_norm"][-1]).all() and run.test_error[-1] == 0.5


def hooks_left(model: nn.Module) -> int:
    modules = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    grads = sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())
    return modules + grads + len(optimizer_module._global_optimizer_pre_hooks)


def test_hooks_are_removed_on_exit_and_on_an_exception(tmp_path: Path) -> None:
    model = Tiny()
    assert hooks_left(model) == 0
    with initlab.watch(model, tmp_path / "ok") as watch:
        assert hooks_left(model) > 0
        model(batches(1)[0][0]).sum().backward()
        watch.step()
    assert hooks_left(model) == 0
    with pytest.raises(RuntimeError, match="user's bug"):
        with initlab.watch(model, tmp_path / "failed") as watch:
            model(batches(1)[0][0])
            raise RuntimeError("the user's bug")
    assert hooks_left(model) == 0
    summary = json.loads((tmp_path / "failed" / SUMMARY_FILE).read_text())
    assert summary["status"] == "interrupted"
    assert (tmp_path / "failed" / CONFIG_FILE).exists()  # module order: no step was taken
    watch.close()  # closing again does nothing
    assert summary == json.loads((tmp_path / "failed" / SUMMARY_FILE).read_text())


def test_nan_mid_training_keeps_the_records_before_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    with initlab.watch(model, tmp_path / "nan", every=1) as watch:
        for step in range(1, 7):
            if step == 4:
                with torch.no_grad():
                    model[0].weight[0, 0] = float("nan")
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            watch.step(loss)
    text = (tmp_path / "nan" / STATS_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: null instead
    got = records(watch)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for r in got[:3]:
        assert math.isfinite(r["loss"]) and None not in r["act_norm"] + r["weight_var"]
    assert got[3]["loss"] is None and got[3]["act_norm"][0] is None
    assert got[4]["weight_var"][0] is None  # the NaN has reached the weights
    summary = json.loads((tmp_path / "nan" / SUMMARY_FILE).read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] == 4
    assert load_run(tmp_path / "nan").layers["act_norm"].shape == (6, 2)


def test_weights_turning_nan_without_a_loss_mark_the_run_diverged(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    with initlab.watch(model, tmp_path / "w", every=2) as watch:
        for step in range(1, 5):
            if step == 3:
                with torch.no_grad():
                    model.weight.fill_(float("inf"))
            model(torch.randn(4, 3)).sum().backward()
            watch.step()
    summary = json.loads((tmp_path / "w" / SUMMARY_FILE).read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] == 4


@pytest.mark.usefixtures("mnist_env")
def test_a_cnn_on_mnist_loads_plots_and_lists(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from initlab.bench import BenchCNN
    from initlab.cli import app
    from initlab.data import load_mnist
    from initlab.plot import plot_runs

    data = load_mnist(scaling="standard", train_subset=512, test_subset=10, log=lambda m: None)
    images = data.train_x.view(-1, 1, 28, 28)
    torch.manual_seed(0)
    model = BenchCNN()
    loader = [(images[i:i + 128], data.train_y[i:i + 128]) for i in range(0, 512, 128)]
    watch = train_watched(model, tmp_path / "runs" / "my-cnn", loader * 2, every=2, lr=0.01)
    run = load_run(watch.path)
    assert [layer.name for layer in watch.layers] == ["features.0", "features.3",
                                                      "classifier.1", "classifier.3"]
    assert list(run.step) == [1, 2, 4, 6, 8]
    assert np.isfinite(run.layers["act_norm"]).all()
    assert run.layers["dead_fraction"].shape == (5, 4)
    assert np.isnan(run.layers["dead_fraction"][:, -1]).all()  # no ReLU after the output
    plot_runs([run], tmp_path / "layers.png")
    assert (tmp_path / "layers.png").stat().st_size > 10_000
    res = CliRunner().invoke(app, ["plot", str(watch.path), "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.png").exists()


def test_finds_transformer_layers_in_forward_order(tmp_path: Path) -> None:
    from initlab.bench import TinyTransformer

    class WithAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(8, 3)  # registered first, runs last
            self.embed = nn.Embedding(10, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.RMSNorm(8)

        def forward(self, tokens: Tensor) -> Tensor:
            x = self.embed(tokens)
            x = self.norm(x + self.attn(x, x, x, need_weights=False)[0])
            return self.head(x)

    model = WithAttention()
    with initlab.watch(model, tmp_path / "attn", every=1) as watch:
        model(torch.randint(0, 10, (2, 5))).sum().backward()
        watch.step()
    assert [(layer.name, layer.type, layer.fan_in) for layer in watch.layers] == [
        ("embed", "Embedding", 1), ("attn", "MultiheadAttention", 8),
        ("attn.out_proj", "NonDynamicallyQuantizableLinear", 8), ("norm", "RMSNorm", 1),
        ("head", "Linear", 8)]
    (record,) = records(watch)
    assert record["act_norm"][2] is None  # out_proj's weight is used, its forward never runs
    assert record["grad_norm"][2] is not None and None not in record["weight_var"]
    assert "dead_fraction" not in record  # no ReLU in this model

    transformer = TinyTransformer(depth=1)
    with initlab.watch(transformer, tmp_path / "transformer") as watch:
        transformer(torch.randint(0, 256, (2, 16)))
        watch.step()
    assert [layer.name for layer in watch.layers] == [
        "embed", "position", "blocks.0.norm1", "blocks.0.qkv", "blocks.0.proj",
        "blocks.0.norm2", "blocks.0.up", "blocks.0.down", "norm", "head"]


def test_the_optimizer_gradient_under_a_grad_scaler(tmp_path: Path) -> None:
    """Mixed precision: bfloat16 autocast and a GradScaler. The gradient recorded is the one
    the optimizer steps with -- unscaled -- and the activations are the bfloat16 outputs'."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    twin, reference = copy.deepcopy(model), copy.deepcopy(model)
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(2)]

    def train(net: nn.Module, after_backward: Callable[[torch.amp.GradScaler,
                                                        torch.optim.Optimizer], None],
              after_step: Callable[[Tensor], None]) -> None:
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for x, y in data:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(net(x), y)
            scaler.scale(loss).backward()
            after_backward(scaler, opt)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            after_step(loss)

    with initlab.watch(model, tmp_path / "amp", every=1) as watch:
        train(model, lambda scaler, opt: None, watch.step)
    want: list[list[float]] = []

    def unscaled(scaler: torch.amp.GradScaler, opt: torch.optim.Optimizer) -> None:
        scaler.unscale_(opt)
        want.append([twin[0].weight.grad.norm().item(), twin[2].weight.grad.norm().item()])

    train(twin, unscaled, lambda loss: None)
    got = records(watch)
    for record, grads in zip(got, want, strict=True):
        assert_lists_close(record["grad_norm"], grads, "grad_norm")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = reference[0](data[0][0])
        logits = reference[2](reference[1](hidden))
    assert hidden.dtype == torch.bfloat16
    assert_lists_close(got[0]["act_norm"], [z.float().norm(dim=1).mean().item()
                                            for z in (hidden, logits)], "act_norm")


def test_without_an_optimizer_the_accumulated_gradient(tmp_path: Path) -> None:
    """A hand-written SGD update (no torch.optim): the gradient as backward left it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    x, y = torch.randn(6, 5), torch.randint(0, 2, (6,))
    want = []
    with initlab.watch(model, tmp_path / "sgd", every=1) as watch:
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            want.append([model[0].weight.grad.norm().item(), model[2].weight.grad.norm().item()])
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
                    p.grad = None
            watch.step(loss)
    for record, grads in zip(records(watch), want, strict=True):
        assert_lists_close(record["grad_norm"], grads, "grad_norm")
        assert record["update_ratio"][0] > 0


def test_under_torch_compile_the_same_statistics(tmp_path: Path) -> None:
    """torch.compile traces the hooks into its graphs (aot_eager here: the inductor backend
    gives the same numbers but compiles for half a minute on the CPU)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    data = [(torch.randn(5, 6), torch.randint(0, 3, (5,)))] * 4
    eager = records(train_watched(twin, tmp_path / "eager", data, every=2))
    compiled = torch.compile(model, backend="aot_eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with initlab.watch(compiled, tmp_path / "compiled", every=2) as watch:
        for x, y in data:
            loss = F.cross_entropy(compiled(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            watch.step(loss)
    assert [layer.name for layer in watch.layers] == ["0", "1", "3"]  # no _orig_mod prefix
    got = records(watch)
    assert len(got) == len(eager) == 3
    for a, b in zip(got, eager, strict=True):
        for key in LAYER_KEYS:
            assert_lists_close(a[key], b[key], key)
    assert hooks_left(model) == 0


DDP_WORKER = """
import os, sys, torch, torch.distributed as dist
from torch import nn
from torch.nn import functional as F
import initlab

def worker(rank, out, store):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 2, (8,), generator=gen)
    with initlab.watch(model, out, every=1) as watch:
        for _ in range(2):
            part = slice(4 * rank, 4 * rank + 4)
            loss = F.cross_entropy(model(x[part]), y[part])
            loss.backward()
            opt.step()
            opt.zero_grad()
            watch.step(loss)
    print(f"rank {rank} path {watch.path}", flush=True)
    dist.destroy_process_group()

if __name__ == "__main__":
    # fork: the workers start with torch imported (no CUDA here to forbid it)
    torch.multiprocessing.start_processes(worker, args=(sys.argv[1], sys.argv[2]), nprocs=2,
                                          start_method="fork")
"""


def test_ddp_rank_zero_writes_the_averaged_gradient(tmp_path: Path) -> None:
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    out = tmp_path / "runs" / "ddp"
    proc = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rank 1 path None" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]  # rank 0 only
    # The same two steps in one process on the whole batch of 8.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 2, (8,), generator=gen)
    got = read_stats(out / STATS_FILE)
    config = yaml.safe_load((out / CONFIG_FILE).read_text())
    assert [layer["name"] for layer in config["watch"]["layers"]] == ["0", "2"]
    for record in got:
        F.cross_entropy(model(x), y).backward()
        want = [model[0].weight.grad.norm().item(), model[2].weight.grad.norm().item()]
        assert_lists_close(record["grad_norm"], want, "grad_norm", rel=1e-5)
        opt.step()
        opt.zero_grad()


def test_bad_arguments_are_one_clear_error_and_create_nothing(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    for every in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="every must be a positive integer"):
            initlab.watch(model, tmp_path / "a", every=every)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="must be a torch.nn.Module"):
        initlab.watch("model", tmp_path / "a")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="Sequential has no layer to watch"):
        initlab.watch(nn.Sequential(nn.ReLU(), nn.Flatten()), tmp_path / "a")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        initlab.watch(model, tmp_path / "file" / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert hooks_left(model) == 0


def test_records_reach_the_disk_while_training(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "WRITE_INTERVAL_S", 0.0)
    model = nn.Linear(3, 2)
    with initlab.watch(model, tmp_path / "live", every=1) as watch:
        for step in range(1, 4):
            model(torch.randn(4, 3)).sum().backward()
            watch.step()
            assert len(read_stats(watch.path / STATS_FILE)) == step
            summary = json.loads((watch.path / SUMMARY_FILE).read_text())
            assert summary["status"] == "running" and summary["steps"] == step


def test_between_captures_a_nan_loss_is_noticed_at_the_next_capture(tmp_path: Path) -> None:
    """The loss is summed on the device (no sync per step); the sum stays NaN, so the first
    capture after a NaN loss (or the exit) marks the run diverged."""
    model = nn.Linear(3, 2)
    for steps, diverged in ((7, 6), (5, 5)):
        with initlab.watch(model, tmp_path / f"nan{steps}", every=3) as watch:
            for step in range(1, steps + 1):
                loss = model(torch.randn(4, 3)).sum()
                loss.backward()
                watch.step(loss * float("nan") if step == 4 else loss)
        summary = json.loads((watch.path / SUMMARY_FILE).read_text())
        assert summary["status"] == "diverged" and summary["diverged_step"] == diverged
        assert all(r["loss"] is not None for r in records(watch))  # steps 1, 3, 6: finite


def test_a_scaled_gradient_that_overflows_before_any_step_is_no_divergence(tmp_path: Path) -> None:
    """What GradScaler does on its first steps: the scaled gradient overflows, the optimizer
    step is skipped. The gradient as backward left it is recorded (null: not finite) but,
    unlike a weight or a loss that is not finite, does not mark the run diverged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with initlab.watch(model, tmp_path / "scaled", every=1) as watch:
        for step in range(1, 4):
            loss = F.cross_entropy(model(x), y)
            (loss * (float("inf") if step == 1 else 1.0)).backward()
            if step > 1:  # step 1's gradient is not finite: skipped, as GradScaler would
                opt.step()
            opt.zero_grad()
            watch.step(loss.item())
    got = records(watch)
    assert got[0]["grad_norm"][0] is None and got[1]["grad_norm"][0] is not None
    summary = json.loads((tmp_path / "scaled" / SUMMARY_FILE).read_text())
    assert summary["status"] == "completed" and summary["diverged_step"] is None


def test_evaluate_records_errors_without_counting_a_step(tmp_path: Path) -> None:
    """watch.evaluate(test_error=...): into the last step's record (captured or not, read or
    still on its way), or a record of its own; never a training step; before any step, step 0."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with initlab.watch(model, tmp_path / "eval", every=3) as watch:
        watch.evaluate(test_error=0.5)  # the initialization
        for step in range(1, 7):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            watch.step(loss)
            if step in (3, 4):  # captured, then not
                watch.evaluate(test_error=0.1 * step, train_error=0.05)
    assert watch.steps == 6
    got = records(watch)
    assert [r["step"] for r in got] == [0, 1, 3, 4, 6]
    assert got[0]["test_error"] == 0.5 and "act_norm" not in got[0]
    assert got[2]["test_error"] == pytest.approx(0.3) and "act_norm" in got[2]
    assert got[3]["test_error"] == pytest.approx(0.4) and got[3]["train_error"] == 0.05
    summary = json.loads((watch.path / SUMMARY_FILE).read_text())
    assert summary["steps"] == 6 and summary["final_test_error"] == pytest.approx(0.4)


def test_records_what_diagnosis_needs_of_a_loop(tmp_path: Path) -> None:
    """Saturation after tanh and sigmoid modules (sigmoid's range mapped onto [-1, 1]), a GRU
    as a layer, dropout rates, which weights the optimizer holds, and what .grad carried into
    a step when zero_grad is forgotten (exactly 0 when it is not)."""
    torch.manual_seed(0)

    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)
            self.fc = nn.Linear(4, 4)
            self.act, self.gate, self.drop = nn.Tanh(), nn.Sigmoid(), nn.Dropout(0.25)
            self.out = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            h = self.rnn(x)[0][:, -1]
            return self.out(self.drop(self.gate(self.act(self.fc(h)) * 30)))

    def train(zero_grad: bool) -> Path:
        model = Loop()
        with torch.no_grad():
            model.fc.weight.mul_(50)  # tanh saturated
        opt = torch.optim.SGD([p for n, p in model.named_parameters()
                               if not n.startswith("rnn")], lr=0.01)
        x, y = torch.randn(6, 5, 3), torch.randint(0, 2, (6,))
        with initlab.watch(model, tmp_path / f"loop-{zero_grad}", every=2) as watch:
            for _ in range(6):
                F.cross_entropy(model(x), y).backward()
                opt.step()
                if zero_grad:
                    opt.zero_grad()
                watch.step()
        return watch.path  # type: ignore[return-value]

    path = train(zero_grad=False)
    config = yaml.safe_load((path / CONFIG_FILE).read_text())["watch"]
    assert [(la["name"], la["type"], la["optimized"]) for la in config["layers"]] == [
        ("rnn", "GRU", False), ("fc", "Linear", True), ("out", "Linear", True)]
    assert config["dropout"] == [0.25]
    assert config["modules"] == {"Tanh": 1, "Sigmoid": 1, "Dropout": 1}
    run = load_run(path)
    saturated = run.layers["saturated_fraction"][0]
    assert np.isnan(saturated[0]) and saturated[1] > 0.5 and np.isnan(saturated[2])
    carried = json.loads((path / SUMMARY_FILE).read_text())["watch"]["carried_gradients"]
    assert [c[0] for c in carried] == [2, 4, 6] and all(c[1] > 0 for c in carried)
    summary = json.loads((train(zero_grad=True) / SUMMARY_FILE).read_text())
    assert all(c[1] == 0 for c in summary["watch"]["carried_gradients"])
