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

from initlab.config import RunConfig
from initlab.data import (
    MNIST_MEAN,
    MNIST_STD,
    TRAIN_IMAGES,
    MNISTTensors,
    ensure_mnist,
    load_mnist,
)
from initlab.model import layer_widths
from initlab.runs import RunWriter
from initlab.train import GroupTrainer, MemberState, resolve_device

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


@dataclass
class BenchSettings:
    device: torch.device
    steps: int = 120  # timed steps per contender (fewer for big sweeps on the CPU)
    warmup: int = 10
    blocks: int = 12  # the timed steps are split in blocks; the fastest counts
    sweeps: tuple[int, ...] = (9, 81)
    data_root: str | None = None
    steps_per_epoch: int = TRAIN_IMAGES // BATCH

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
        batches = order.shape[1] // trainer.batch
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
        manual = trainer.manual
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
    cfg = bench_config(settings.device)
    log("timing the plain way (torchvision DataLoader) ...")
    rows = [time_plain(settings, cfg)]
    data = load_mnist(settings.data_root, "standard", settings.device, log=lambda m: None)
    for key, members, capture, graph, backward in contenders(settings):
        name = initlab_name(members, capture, settings.device, graph != "off",
                            backward != "autograd")
        log(f"timing {name} ...")
        rows.append(time_initlab(settings, data, key, members, capture, graph, backward))
    return rows


def finish_rows(rows: list[BenchRow], settings: BenchSettings) -> None:
    """Fill in the per-epoch extrapolation, ratios and GFLOP/s."""
    cfg = bench_config(settings.device)
    for row in rows:
        row.seconds_per_epoch = row.seconds_per_step * settings.steps_per_epoch
        row.seconds_per_epoch_per_model = row.seconds_per_epoch / row.members
        row.gflops = flops_per_step(cfg, row.members) / row.seconds_per_step / 1e9
    by_key = {r.key: r for r in rows}
    plain, one = by_key.get("plain"), by_key.get("one")
    for row in rows:
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
        },
        "rows": [asdict(r) for r in rows],
        "goals": goals(rows, settings.device),
    }
    console.print(bench_table(rows, info, settings))
    for goal in result["goals"]:
        mark = "[green]met[/green]" if goal["met"] else "[red]not met[/red]"
        console.print(f"goal {goal['goal']}: {goal['value']:g} {mark}", highlight=False)
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
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
    """The table as Markdown, for the README."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in result["rows"]]
    return "\n".join(lines)


def settings_for(device: str, steps: int | None = None, warmup: int | None = None,
                 blocks: int | None = None, sweeps: Sequence[int] | None = None,
                 data_root: str | None = None) -> BenchSettings:
    """Settings from CLI values (None keeps the default)."""
    settings = BenchSettings(device=resolve_device(device), data_root=data_root)
    if steps is not None:
        settings.steps = steps
    if warmup is not None:
        settings.warmup = warmup
    if blocks is not None:
        settings.blocks = blocks
    if sweeps is not None:
        settings.sweeps = tuple(sweeps)
    return settings
