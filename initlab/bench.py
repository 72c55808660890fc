"""``initlab bench``: seconds per epoch per model, the plain PyTorch way against initlab.

Every contender trains the same network (50 Linear layers of width 100, ReLU, Kaiming init, SGD
lr 0.01) on the same batches of 128 real MNIST images, in one process:

- ``plain``: how people usually write it -- ``torchvision.datasets.MNIST`` with
  ``ToTensor``/``Normalize``, ``DataLoader(batch_size=128, shuffle=True, num_workers=2)``, an
  ``nn.Sequential`` of Linear+ReLU and forward hooks recording the activation norms;
- ``one``: initlab's training step for one config (``GroupTrainer.step_fn``);
- ``one_stats``: the same with the per-layer statistics captured at every step;
- ``one_autograd``: one config with ``train.backward: autograd`` (what the hand-written
  backward saves);
- ``sweepK``: initlab training K members (init.c varied) as one stacked model;
- on CUDA also ``one_eager`` and ``sweepK_eager`` (largest K): the eager step next to the
  CUDA-graph one.

The ``watch`` section (``sections``; ``settings_for(only=...)`` picks sections) times
``initlab.watch`` on two models that are not initlab's MLP: a small CNN on MNIST (``cnn``) and
a small transformer (embedding, two attention + MLP blocks with layer norm, on random tokens;
``attn``), each as the same training loop without statistics (``cnn``), with
``initlab.watch`` capturing every step (``cnn_watch``) and every ``watch_block``-th step
(``cnn_watch_sparse``; 100 by default), and with the same statistics from plain hooks,
``.item()`` per layer and statistic (``cnn_hooks``, the way people usually write it). Their
``cost_vs_one`` is the cost against the same model without statistics. The four are timed in
turns, one block of ``watch_block`` steps each per round (a sparse capture then falls once in
each block), so other work on the machine slows them alike.

The ``threads`` section (only when asked for: ``--only threads``) times whole ``initlab run``
commands with 1 and 2 threads, idle and beside a busy process (``initlab.bench_threads``).

Each contender is timed over a fixed number of steps after a warm-up, in short blocks; the
fastest block's time per step is extrapolated to an epoch (60000 // 128 = 468 steps). Other work
on a shared machine only ever slows a block down, so the minimum is the robust estimate. The
plain way's per-epoch DataLoader start-up (spawning its workers) is left out, which if anything
flatters it.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich import box
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.nn import functional as F

from initlab.bench_threads import ThreadsRow, threads_result, time_threads
from initlab.config import RunConfig
from initlab.data import (
    MNIST_MEAN,
    MNIST_STD,
    TRAIN_IMAGES,
    MNISTTensors,
    ensure_mnist,
    load_mnist,
)
from initlab.data import steps_per_epoch as updates_per_epoch
from initlab.errors import UsageError
from initlab.model import layer_widths
from initlab.runs import RunWriter, atomic_write_text
from initlab.train import GroupTrainer, MemberState, resolve_device
from initlab.watching import LAYER_TYPES, ZERO_FLOOR_ACTIVATIONS, Watch

BATCH = 128
LR = 0.01
CPU_FULL_STEPS_MEMBERS = 27  # on the CPU, bigger sweeps time steps x 27 / K steps
SWEEP_C = (1.5, 2.0)  # init.c range of a sweep: at or below Kaiming's 2, where none diverges
# Goals of issue 4 (benchmarks, not tests).
CPU_MIN_SPEEDUP = 4.0  # one config vs the plain way, per epoch
CPU_MAX_SWEEP9_COST = 7.0  # a 9-member sweep vs one member
GPU_MAX_ONE_S = 0.8  # one config, seconds per epoch
GPU_MAX_SWEEP81_S = 2.0  # 81 members, seconds per epoch for all
GPU_MIN_SPEEDUP_81 = 200.0  # per model, 81-member sweep vs the plain way
MAX_STATS_OVERHEAD = 1.10
# Goals of issue 15: initlab.watch against the same loop without it.
GPU_MAX_WATCH_COST = 1.10  # statistics every step
CPU_MAX_WATCH_COST = 1.25
MAX_SPARSE_WATCH_COST = 1.02  # statistics every 100th step
SECTIONS = ("mlp", "watch", "threads")
DEFAULT_SECTIONS = ("mlp", "watch")  # threads: whole commands, idle and busy; asked for by name
WATCH_MODELS = ("cnn", "attn")
WATCH_VARIANTS = ("", "_watch", "_watch_sparse", "_hooks")


@dataclass
class BenchSettings:
    device: torch.device
    steps: int = 120  # timed steps per contender (fewer for big sweeps on the CPU)
    warmup: int = 10
    blocks: int = 12  # the timed steps are split in blocks; the fastest counts
    sweeps: tuple[int, ...] = (9, 81)
    data_root: str | None = None
    steps_per_epoch: int = updates_per_epoch(TRAIN_IMAGES, BATCH)
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    threads_steps: int = 1500  # updates per `initlab run` of the threads section
    threads_rounds: int = 2
    watch_block: int = 100  # steps per timed block of the watch section; its sparse `every`
    watch_rounds: int = 5  # blocks per contender, taken in turns

    def steps_for(self, members: int) -> tuple[int, int]:
        """(warm-up, timed) steps for K members: on the CPU a step costs about K times more,
        so sweeps beyond CPU_FULL_STEPS_MEMBERS time fewer steps (the bench stays within a few
        minutes on 2 cores)."""
        scale = 1.0 if self.device.type == "cuda" else min(1.0, CPU_FULL_STEPS_MEMBERS / members)
        timed = max(self.blocks, round(self.steps * scale))
        return max(1, round(self.warmup * scale)), timed


@dataclass
class BenchRow:
    key: str  # plain | one | one_stats | sweepK | one_eager | sweepK_eager
    name: str
    members: int
    steps: int  # steps timed (after warm-up)
    seconds_per_step: float  # whole group, best block
    seconds_per_epoch: float = 0.0  # whole group, extrapolated
    seconds_per_epoch_per_model: float = 0.0
    speedup_vs_plain: float | None = None  # per model: plain s/epoch / this s/epoch
    cost_vs_one: float | None = None  # whole group s/epoch / initlab one config s/epoch
    gflops: float = 0.0  # achieved, forward + backward
    extra: dict[str, Any] = field(default_factory=dict)


# -- timing -------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int,
               blocks: int) -> float:
    """Seconds per step: ``steps`` steps in ``blocks`` blocks after ``warmup`` steps; the
    fastest block's mean."""
    for _ in range(warmup):
        step()
    block = max(1, steps // blocks)
    best = math.inf
    for _ in range(blocks):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(block):
            step()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / block)
    return best


def flops_per_step(cfg: RunConfig, members: int) -> float:
    """Forward + backward of the matrix products: 3 x 2 x sum(n_in n_out) x batch x K."""
    macs = sum(n_in * n_out for n_in, n_out in layer_widths(cfg.model))
    return 3 * 2 * macs * cfg.train.batch_size * members


# -- (a) the plain way --------------------------------------------------------------------------
def plain_mlp(cfg: RunConfig) -> nn.Sequential:
    """nn.Sequential of Linear+ReLU (last layer linear), Kaiming-normal weights, zero biases."""
    layers: list[nn.Module] = []
    widths = layer_widths(cfg.model)
    for i, (n_in, n_out) in enumerate(widths):
        linear = nn.Linear(n_in, n_out)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(widths) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def plain_loader(root: Path) -> torch.utils.data.DataLoader:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2)


def endless(loader: torch.utils.data.DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        yield from loader


def time_plain(settings: BenchSettings, cfg: RunConfig) -> BenchRow:
    device = settings.device
    root = ensure_mnist(settings.data_root, log=lambda m: None)
    model = plain_mlp(cfg).to(device)
    norms: list[Tensor] = []
    history: list[Tensor] = []

    def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        # Kept on the device (no .item() per layer): generous to the plain way on a GPU.
        norms.append(inputs[0].detach().flatten(1).norm(dim=1).mean())

    for module in model:
        if isinstance(module, nn.Linear):
            module.register_forward_hook(record)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    batches = endless(plain_loader(root))

    def step() -> None:
        x, y = next(batches)
        x, y = x.to(device).flatten(1), y.to(device)
        norms.clear()
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        history.append(torch.stack(norms))

    warmup, steps = settings.steps_for(1)
    per_step = time_steps(step, device, warmup, steps, settings.blocks)
    batches.close()  # shuts the DataLoader's workers down before the next contender
    return BenchRow("plain", "plain PyTorch", 1, steps, per_step)


# -- (b), (c), (d) initlab ----------------------------------------------------------------------
def bench_config(device: torch.device, cuda_graph: str = "auto",
                 backward: str = "auto") -> RunConfig:
    """The default 50 x 100 ReLU network, Kaiming (c = 2), SGD lr 0.01, inputs normalized as
    in the plain way."""
    cfg = RunConfig(name="bench")
    cfg.data = replace(cfg.data, scaling="standard")
    cfg.train = replace(cfg.train, lr=LR, batch_size=BATCH, device=device.type,
                        cuda_graph=cuda_graph, backward=backward)
    return cfg


def member_configs(base: RunConfig, members: int) -> list[RunConfig]:
    """K configs that differ in init.c, like a sweep file would give."""
    if members == 1:
        return [base]
    low, high = SWEEP_C
    cs = [low + (high - low) * k / (members - 1) for k in range(members)]
    return [replace(base, name=f"c={c:.3f}", init=replace(base.init, c=c)) for c in cs]


def make_trainer(configs: Sequence[RunConfig], data: MNISTTensors, device: torch.device,
                 tmp: Path) -> GroupTrainer:
    members = [MemberState(c, RunWriter(tmp / f"m{k}")) for k, c in enumerate(configs)]
    return GroupTrainer(members, data, device)


def is_graphed(trainer: GroupTrainer) -> bool:
    from initlab.graphs import GraphedStep

    return isinstance(trainer.step_fn, GraphedStep)


def time_initlab(settings: BenchSettings, data: MNISTTensors, key: str, members: int,
                 capture: bool = False, cuda_graph: str = "auto",
                 backward: str = "auto") -> BenchRow:
    """initlab's own training step on real batches, in the order its training loop uses."""
    device = settings.device
    configs = member_configs(bench_config(device, cuda_graph, backward), members)
    with tempfile.TemporaryDirectory(prefix="initlab-bench-") as tmp:
        trainer = make_trainer(configs, data, device, Path(tmp))
        n = data.train_x.shape[0]
        order = torch.stack([torch.randperm(n, generator=g)
                             for g in trainer.data_generators]).to(device)
        batches = trainer.steps_per_epoch
        position = 0
        kept: list[dict[str, Tensor]] = []

        def step() -> None:
            nonlocal position
            start = (position % batches) * trainer.batch
            captured = trainer.step_fn(order[:, start : start + trainer.batch], capture)
            if captured is not None:
                kept.append(captured)  # as the training loop does until its next flush
            position += 1

        warmup, steps = settings.steps_for(members)
        per_step = time_steps(step, device, warmup, steps, settings.blocks)
        graphed = is_graphed(trainer)
        manual = trainer.gauges.manual
    return BenchRow(key, initlab_name(members, capture, device, graphed, manual), members,
                    steps, per_step, extra={"cuda_graph": graphed, "stats_every_step": capture,
                                            "hand_written_backward": manual})


def initlab_name(members: int, capture: bool, device: torch.device, graphed: bool,
                 manual: bool = True) -> str:
    name = f"initlab ×{members}"
    if capture:
        name += " +stats"  # per-layer statistics captured at every step
    if not manual:
        name += ", autograd"
    if device.type == "cuda":
        name += ", graph" if graphed else ", eager"
    return name


# -- the watch section: initlab.watch on models that are not initlab's MLP ---------------------
class BenchCNN(nn.Module):
    """A small CNN for MNIST: two 3x3 convolutions (16 and 32 channels), each with ReLU and 2x2
    max pooling, a hidden Linear layer of 128 units with ReLU, and the output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
                                        nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class AttentionBlock(nn.Module):
    """A pre-norm transformer block: causal self-attention, then a ReLU MLP of 4x the width,
    each added to its input."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.act = nn.ReLU()
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, t, d))
        return x + self.down(self.act(self.up(self.norm2(x))))


class TinyTransformer(nn.Module):
    """Token and position embeddings, ``depth`` attention blocks, a final layer norm and the
    output layer: next-token logits [B, T, vocab]."""

    def __init__(self, vocab: int = 256, width: int = 64, heads: int = 4, depth: int = 2,
                 context: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(AttentionBlock(width, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        return self.head(self.norm(self.blocks(x)))


ATTN_BATCH, ATTN_CONTEXT, ATTN_VOCAB = 32, 64, 256
WATCH_MODEL_NAMES = {"cnn": "CNN (MNIST)", "attn": "transformer (tokens)"}
WATCH_MODEL_TEXT = {
    "cnn": "conv 16 + ReLU + pool, conv 32 + ReLU + pool, Linear 1568x128 + ReLU, Linear "
           "128x10; MNIST batches of 128, SGD lr 0.01",
    "attn": f"embedding {ATTN_VOCAB}x64 + positions, 2 pre-norm blocks (4-head causal "
            "attention, ReLU MLP 64-256-64), layer norm, Linear 64x256; batches of "
            f"{ATTN_BATCH} random sequences of {ATTN_CONTEXT} tokens, SGD lr 0.01",
}


class ItemHooks:
    """The statistics initlab.watch records, the way they are usually written: a forward hook
    per layer and per ReLU, a loop over the weights after the backward pass and another after
    the optimizer's step, ``.item()`` per layer and statistic, numbers kept in Python lists."""

    def __init__(self, model: nn.Module) -> None:
        kinds = tuple(t.module for t in LAYER_TYPES)
        layers = [m for m in model.modules() if isinstance(m, kinds)]
        self.weights = [m.weight for m in layers if getattr(m, "weight", None) is not None]
        self.initial = [w.detach().clone() for w in self.weights]
        self.before: list[Tensor] = []
        self.record: dict[str, list[float]] = {}
        self.history: list[dict[str, list[float]]] = []
        self.handles = [m.register_forward_hook(self.layer) for m in layers]
        self.handles += [m.register_forward_hook(self.dead) for m in model.modules()
                         if isinstance(m, ZERO_FLOOR_ACTIVATIONS)]

    def layer(self, module: nn.Module, args: Any, output: Tensor) -> None:
        norms = output.detach().flatten(1).norm(dim=1)
        self.record.setdefault("act_norm", []).append(norms.mean().item())
        self.record.setdefault("act_norm_cv", []).append(
            (norms.std(correction=0) / norms.mean()).item())

    def dead(self, module: nn.Module, args: Any, output: Tensor) -> None:
        out = output.detach()
        units = out.transpose(0, 1) if out.dim() == 4 else out.movedim(-1, 0)
        dead = (units.reshape(units.shape[0], -1) == 0).all(dim=1).float().mean()
        self.record.setdefault("dead_fraction", []).append(dead.item())

    def after_backward(self) -> None:
        self.record["grad_norm"] = [w.grad.norm().item() for w in self.weights]
        self.before = [w.detach().clone() for w in self.weights]

    def after_step(self) -> None:
        r = self.record
        r["weight_norm"] = [w.norm().item() for w in self.before]
        r["weight_var"] = [w.var(unbiased=False).item() for w in self.before]
        r["weight_rel_change"] = [((w - w0).norm() / w0.norm()).item()
                                  for w, w0 in zip(self.before, self.initial, strict=True)]
        r["update_ratio"] = [((w.detach() - b).norm() / b.norm()).item()
                             for w, b in zip(self.weights, self.before, strict=True)]
        self.history.append(r)
        self.record = {}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def watch_model(model: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return (BenchCNN() if model == "cnn" else TinyTransformer()).to(device)


def watch_batches(model: str, device: torch.device, data: MNISTTensors | None,
                  ) -> Iterator[tuple[Tensor, Tensor]]:
    """The model's endless stream of (input, target) batches, on the device."""
    gen = torch.Generator().manual_seed(0)
    if model == "cnn":
        assert data is not None
        images = data.train_x.view(-1, 1, 28, 28)
        order = torch.randperm(images.shape[0], generator=gen).to(device)
        batches = [order[i : i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
        while True:
            for idx in batches:
                yield images.index_select(0, idx), data.train_y.index_select(0, idx)
    tokens = torch.randint(0, ATTN_VOCAB, (16, ATTN_BATCH, ATTN_CONTEXT + 1),
                           generator=gen).to(device)
    while True:
        for seq in tokens:
            yield seq[:, :-1], seq[:, 1:]


def watch_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def watch_flops(model: str, device: torch.device, data: MNISTTensors | None) -> float:
    """Forward + backward FLOPs of one training step, counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    net = watch_model(model, device)
    x, y = next(watch_batches(model, device, data))
    with FlopCounterMode(display=False) as counter:
        watch_loss(net, x, y).backward()
    return float(counter.get_total_flops())


class WatchContender:
    """One training loop of the watch section: its own model (the same init for all four),
    optimizer, batches and (variant) instruments."""

    def __init__(self, model: str, variant: str, settings: BenchSettings,
                 data: MNISTTensors | None, tmp: Path) -> None:
        self.net = watch_model(model, settings.device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.batches = watch_batches(model, settings.device, data)
        self.watch: Watch | None = None
        self.hooks: ItemHooks | None = None
        self.every: int | None = None
        if variant in ("_watch", "_watch_sparse"):
            self.every = 1 if variant == "_watch" else settings.watch_block
            self.watch = Watch(self.net, tmp / f"{model}{variant}", every=self.every)
        elif variant == "_hooks":
            self.every = 1
            self.hooks = ItemHooks(self.net)

    def step(self) -> None:
        x, y = next(self.batches)
        loss = watch_loss(self.net, x, y)
        loss.backward()
        if self.hooks is not None:
            self.hooks.after_backward()
        self.optimizer.step()
        if self.hooks is not None:
            self.hooks.after_step()
        self.optimizer.zero_grad()
        if self.watch is not None:
            self.watch.step(loss)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        if self.hooks is not None:
            self.hooks.remove()


def time_in_turns(steps: Sequence[Callable[[], None]], device: torch.device, warmup: int,
                  block: int, rounds: int) -> list[float]:
    """Seconds per step of each contender: after ``warmup`` steps each, ``rounds`` rounds in
    which each contender times one block of ``block`` steps (the order rotating); the
    fastest block of each counts."""
    for step in steps:
        for _ in range(warmup):
            step()
    best = [math.inf] * len(steps)
    for r in range(rounds):
        for k in range(len(steps)):
            i = (k + r) % len(steps)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(block):
                steps[i]()
            synchronize(device)
            best[i] = min(best[i], (time.perf_counter() - start) / block)
    return best


def watch_row_name(model: str, variant: str, every: int | None) -> str:
    name = WATCH_MODEL_NAMES[model]
    if variant == "_hooks":
        return f"{name} + plain hooks, every step"
    if variant:
        return f"{name} + watch, every {'step' if every == 1 else every}"
    return name


def time_watch_model(settings: BenchSettings, data: MNISTTensors | None, model: str,
                     ) -> list[BenchRow]:
    flops = watch_flops(model, settings.device, data)
    with tempfile.TemporaryDirectory(prefix="initlab-bench-watch-") as tmp:
        contenders_ = [WatchContender(model, v, settings, data, Path(tmp))
                       for v in WATCH_VARIANTS]
        try:
            per_step = time_in_turns([c.step for c in contenders_], settings.device,
                                     settings.warmup, settings.watch_block,
                                     settings.watch_rounds)
        finally:
            for c in contenders_:
                c.close()
    return [BenchRow(f"{model}{variant}", watch_row_name(model, variant, c.every), 1,
                     settings.watch_block * settings.watch_rounds, seconds,
                     extra={"model": model, "every": c.every, "flops_per_step": flops})
            for variant, c, seconds in zip(WATCH_VARIANTS, contenders_, per_step, strict=True)]


# -- the whole bench ----------------------------------------------------------------------------
def contenders(settings: BenchSettings) -> list[tuple[str, int, bool, str, str]]:
    """(key, members, capture every step, cuda_graph, backward) of the initlab rows."""
    rows = [("one", 1, False, "auto", "auto"), ("one_stats", 1, True, "auto", "auto"),
            ("one_autograd", 1, False, "auto", "autograd")]
    rows += [(f"sweep{k}", k, False, "auto", "auto") for k in settings.sweeps]
    if settings.device.type == "cuda":
        rows.append(("one_eager", 1, False, "off", "auto"))
        if settings.sweeps:
            big = max(settings.sweeps)
            rows.append((f"sweep{big}_eager", big, False, "off", "auto"))
    return rows


def run_contenders(settings: BenchSettings, log: Callable[[str], None]) -> list[BenchRow]:
    rows: list[BenchRow] = []
    data: MNISTTensors | None = None
    if "mlp" in settings.sections:
        cfg = bench_config(settings.device)
        log("timing the plain way (torchvision DataLoader) ...")
        rows.append(time_plain(settings, cfg))
        data = load_mnist(settings.data_root, "standard", settings.device, log=lambda m: None)
        for key, members, capture, graph, backward in contenders(settings):
            name = initlab_name(members, capture, settings.device, graph != "off",
                                backward != "autograd")
            log(f"timing {name} ...")
            rows.append(time_initlab(settings, data, key, members, capture, graph, backward))
    if "watch" in settings.sections:
        if data is None:
            data = load_mnist(settings.data_root, "standard", settings.device,
                              log=lambda m: None)
        for model in WATCH_MODELS:
            log(f"timing {WATCH_MODEL_NAMES[model]}: without statistics, with initlab.watch "
                f"every step and every {settings.watch_block}, with plain hooks, in turns ...")
            rows += time_watch_model(settings, data, model)
    return rows


def finish_rows(rows: list[BenchRow], settings: BenchSettings) -> None:
    """Fill in the per-epoch extrapolation, ratios and GFLOP/s. A watch-section row's
    ``cost_vs_one`` is against its model's loop without statistics; it has no
    ``speedup_vs_plain`` (another network)."""
    cfg = bench_config(settings.device)
    for row in rows:
        row.seconds_per_epoch = row.seconds_per_step * settings.steps_per_epoch
        row.seconds_per_epoch_per_model = row.seconds_per_epoch / row.members
        flops = row.extra.get("flops_per_step") or flops_per_step(cfg, row.members)
        row.gflops = flops / row.seconds_per_step / 1e9
    by_key = {r.key: r for r in rows}
    plain, one = by_key.get("plain"), by_key.get("one")
    for row in rows:
        model = row.extra.get("model")
        if model is not None:
            row.cost_vs_one = row.seconds_per_step / by_key[model].seconds_per_step
            continue
        if plain is not None:
            row.speedup_vs_plain = plain.seconds_per_epoch_per_model / \
                row.seconds_per_epoch_per_model
        if one is not None and row.key != "plain":
            row.cost_vs_one = row.seconds_per_epoch / one.seconds_per_epoch


def goals(rows: list[BenchRow], device: torch.device) -> list[dict[str, Any]]:
    """The issue's goals for this kind of machine, each with the measured value."""
    r = {row.key: row for row in rows}
    checks: list[tuple[str, str, Callable[[BenchRow], float], str, float]] = [
        ("statistics every step cost", "one_stats", lambda x: x.cost_vs_one, "<=",
         MAX_STATS_OVERHEAD),
    ]
    if device.type == "cuda":
        checks += [
            ("one config s/epoch", "one", lambda x: x.seconds_per_epoch, "<=", GPU_MAX_ONE_S),
            ("81-member sweep s/epoch (all 81)", "sweep81", lambda x: x.seconds_per_epoch, "<=",
             GPU_MAX_SWEEP81_S),
            ("81-member sweep speedup per model vs plain", "sweep81",
             lambda x: x.speedup_vs_plain, ">=", GPU_MIN_SPEEDUP_81),
        ]
    else:
        checks += [
            ("one config speedup vs plain", "one", lambda x: x.speedup_vs_plain, ">=",
             CPU_MIN_SPEEDUP),
            ("9-member sweep cost vs one member", "sweep9", lambda x: x.cost_vs_one, "<=",
             CPU_MAX_SWEEP9_COST),
        ]
    watch_bound = GPU_MAX_WATCH_COST if device.type == "cuda" else CPU_MAX_WATCH_COST
    for model in WATCH_MODELS:
        checks += [
            (f"initlab.watch every step cost ({model})", f"{model}_watch",
             lambda x: x.cost_vs_one, "<=", watch_bound),
            (f"initlab.watch every 100 steps cost ({model})", f"{model}_watch_sparse",
             lambda x: x.cost_vs_one if x.extra.get("every") == 100 else None, "<=",
             MAX_SPARSE_WATCH_COST),
        ]
    out = []
    for name, key, value, op, bound in checks:
        if key not in r or value(r[key]) is None:
            continue
        v = value(r[key])
        met = v <= bound if op == "<=" else v >= bound
        out.append({"goal": f"{name} {op} {bound:g}", "value": round(v, 3), "met": met})
    return out


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else cpu_model()),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine slows every contender
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
        info["nice"] = os.nice(0)
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(settings: BenchSettings, out: Path | None = None,
              console: Console | None = None) -> dict[str, Any]:
    """Time every contender in this process, print the table, write ``out`` (JSON)."""
    console = console or Console()
    info = machine_info(settings.device)
    rows = run_contenders(settings, lambda m: console.print(m, style="dim", highlight=False))
    finish_rows(rows, settings)
    if hasattr(os, "getloadavg"):
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "machine": info,
        "settings": {
            "batch_size": BATCH,
            "network": "50 Linear layers, width 100, ReLU, Kaiming init, SGD lr 0.01",
            "steps_per_epoch": settings.steps_per_epoch,
            "warmup_steps": settings.warmup,
            "timed_steps": settings.steps,
            "blocks": settings.blocks,
            "method": "fastest of `blocks` timed blocks: seconds per step x steps_per_epoch",
            "flops_per_step_per_model": flops_per_step(bench_config(settings.device), 1),
            "sections": list(settings.sections),
            "watch_models": WATCH_MODEL_TEXT,
            "watch_block": settings.watch_block,
            "watch_rounds": settings.watch_rounds,
            "watch_method": "the four loops of a model in turns, one block of watch_block "
                            "steps each per round; the fastest block of each; cost_vs_one: "
                            "against the model's loop without statistics",
        },
        "rows": [asdict(r) for r in rows],
        "goals": goals(rows, settings.device),
    }
    if "threads" in settings.sections:
        threads = time_threads(settings.threads_steps, settings.threads_rounds,
                               settings.data_root,
                               lambda m: console.print(m, style="dim", highlight=False))
        result["threads"] = threads_result(threads, settings.threads_steps,
                                           settings.threads_rounds)
        console.print(threads_table(threads, info))
    mlp_rows = [r for r in rows if "model" not in r.extra]
    watch_rows = [r for r in rows if "model" in r.extra]
    if mlp_rows:
        console.print(bench_table(mlp_rows, info, settings))
    if watch_rows:
        console.print(watch_table(watch_rows, info))
    for goal in result["goals"]:
        mark = "[green]met[/green]" if goal["met"] else "[red]not met[/red]"
        console.print(f"goal {goal['goal']}: {goal['value']:g} {mark}", highlight=False)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {out}", highlight=False)
    return result


COLUMNS = ("contender", "steps", "s/epoch", "s/model", "speedup", "vs ×1", "GFLOP/s")


def bench_table(rows: list[BenchRow], info: dict[str, Any], settings: BenchSettings) -> Table:
    title = f"initlab bench: {info['device_name']}, {info['cores']} cores, torch {info['torch']}"
    caption = ("initlab ×K: K members trained together. s/epoch: all K members, fastest "
               f"block's s/step x {settings.steps_per_epoch} steps of 128. s/model: s/epoch / K. "
               "speedup: plain PyTorch's s/model / this s/model. vs ×1: s/epoch / initlab ×1's. "
               "+stats: per-layer statistics captured every step.")
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    for header in COLUMNS:
        table.add_column(header, justify="left" if header == "contender" else "right",
                         no_wrap=True)
    for r in rows:
        table.add_row(*table_cells(r))
    return table


def threads_table(rows: list[ThreadsRow], info: dict[str, Any]) -> Table:
    table = Table(title=f"initlab run's threads: {info['device_name']}, {info['cores']} cores",
                  caption="s: the whole command, fastest round. vs best: against the fastest "
                          "case in the same situation.", box=box.SIMPLE_HEAD)
    for header in ("threads", "situation", "wait", "s", "vs best"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(str(r.threads), r.situation, r.wait, f"{r.seconds:.1f}", ratio(r.vs_best))
    return table


WATCH_COLUMNS = ("contender", "steps", "ms/step", "vs none", "GFLOP/s")


def watch_table(rows: list[BenchRow], info: dict[str, Any]) -> Table:
    title = (f"initlab.watch: {info['device_name']}, {info['cores']} cores, torch "
             f"{info['torch']}")
    caption = ("watch: initlab.watch. plain hooks: the same statistics, .item() per layer. "
               "ms/step: fastest block. vs none: against the same model's loop without "
               "statistics, timed in turns with it.")
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    for header in WATCH_COLUMNS:
        table.add_column(header, justify="left" if header == "contender" else "right",
                         no_wrap=True)
    for r in rows:
        table.add_row(*watch_cells(r))
    return table


def watch_cells(r: BenchRow | dict[str, Any]) -> list[str]:
    r = asdict(r) if isinstance(r, BenchRow) else r
    return [r["name"], str(r["steps"]), f"{1000 * r['seconds_per_step']:.3g}",
            ratio(r["cost_vs_one"]), f"{r['gflops']:.1f}"]


def table_cells(r: BenchRow | dict[str, Any]) -> list[str]:
    r = asdict(r) if isinstance(r, BenchRow) else r
    return [r["name"], str(r["steps"]), seconds(r["seconds_per_epoch"]),
            seconds(r["seconds_per_epoch_per_model"]), ratio(r["speedup_vs_plain"]),
            ratio(r["cost_vs_one"]), f"{r['gflops']:.1f}"]


def seconds(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}×"


def markdown_table(result: dict[str, Any]) -> str:
    """The tables as Markdown, for the README: the MLP rows, then the watch section's rows in
    their own columns, a blank line between."""
    tables = []
    for columns, cells, watched in ((COLUMNS, table_cells, False),
                                    (WATCH_COLUMNS, watch_cells, True)):
        mine = [r for r in result["rows"] if ("model" in r["extra"]) == watched]
        if mine:
            lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
            tables.append("\n".join(lines + ["| " + " | ".join(cells(r)) + " |"
                                             for r in mine]))
    return "\n\n".join(tables)


def settings_for(device: str, steps: int | None = None, warmup: int | None = None,
                 blocks: int | None = None, sweeps: Sequence[int] | None = None,
                 data_root: str | None = None, only: Sequence[str] | None = None,
                 watch_block: int | None = None, watch_rounds: int | None = None,
                 ) -> BenchSettings:
    """Settings from CLI values (None keeps the default). ``only``: the sections to time
    (mlp, watch, threads)."""
    settings = BenchSettings(device=resolve_device(device), data_root=data_root)
    if only:
        unknown = [s for s in only if s not in SECTIONS]
        if unknown:
            raise UsageError(f"--only: unknown section {', '.join(unknown)}; choose from "
                             f"{', '.join(SECTIONS)}")
        settings.sections = tuple(s for s in SECTIONS if s in only)
    if watch_block is not None:
        settings.watch_block = watch_block
    if watch_rounds is not None:
        settings.watch_rounds = watch_rounds
    if steps is not None:
        settings.steps = steps
    if warmup is not None:
        settings.warmup = warmup
    if blocks is not None:
        settings.blocks = blocks
    if sweeps is not None:
        settings.sweeps = tuple(sweeps)
    return settings
