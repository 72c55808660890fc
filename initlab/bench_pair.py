"""``initlab bench --against REV``: is this code slower than another version of it, on this
machine, now?

Two bench runs one after the other cannot say so within 5% on a shared machine: its speed drifts
by 10-15% between runs (docs/benchmarks.md). Here both versions run at once, each in its own
worker process (``initlab.bench_worker``) holding every contender of ``initlab bench`` built and
warm, and they take turns a block at a time: for each contender, one block on one side, then
the same number of steps on the other. Two blocks a second apart see nearly the same machine, so
their ratio is the paired measurement. The second block of a pair runs about 5% slower here,
whatever the code, so the side that goes first alternates from round to round and a sample is
the geometric mean of two rounds, one each way. Over the samples, the median and its 95%
interval (order statistics, no resampling: the same numbers give the same interval) say "within
5%", "slower", or that this machine cannot tell ("unclear").

A pair of long-lived processes can settle at speeds up to 15% apart on identical work, steadily
(docs/benchmarks.md), which one pair's interval cannot see: ``--pairs`` fresh pairs of workers
run one after the other, and the verdict reads the median of the pairs' medians with its
interval over the pairs.

The rows that run no code of either version (the plain PyTorch loop, the watch section's loops
without statistics) are the control: their interval shows how finely the machine can resolve.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table

from initlab.bench import WATCH_MODELS, BenchSettings, machine_info
from initlab.errors import UsageError
from initlab.runs import atomic_write_text

MAX_SLOWDOWN = 1.05  # issue 21: no contender more than 5% slower than before
LEVEL = 0.95
BLOCK_SECONDS = 0.25  # a block's length: short enough that both sides of a pair see one machine
PROBE_STEPS = 3  # steps timed once on the new side to size a contender's blocks
CONTROL_KEYS = ("plain", *WATCH_MODELS)  # their steps run no initlab code
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # holds this checkout's initlab/
WORKER = Path(__file__).resolve().parent / "bench_worker.py"


def interval_rank(n: int, level: float = LEVEL) -> int:
    """k of the narrowest order-statistics pair x(k), x(n+1-k) that covers the median of n
    values with probability at least ``level`` (under Binomial(n, 1/2)); 1, the whole range,
    when n values are too few for that (``coverage`` says how much it covers then)."""
    tail = (1 - level) / 2
    k, below = 0, 0.0  # below: P(Binomial(n, 1/2) < k), the chance that x(k) > median
    while k + 1 <= n // 2 and below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    return max(k, 1)


def coverage(n: int, k: int) -> float:
    """P(x(k) <= median <= x(n+1-k)) for n values of a continuous distribution."""
    return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n


def median_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(median, low, high): the distribution-free interval of the median from order statistics
    (``interval_rank``). With too few values for ``level`` it is the whole range."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("no values")
    median = (xs[(n - 1) // 2] + xs[n // 2]) / 2
    k = interval_rank(n, level)
    return median, xs[k - 1], xs[n - k]


def verdict(low: float, high: float, covered: float = 1.0, bound: float = MAX_SLOWDOWN) -> str:
    """What an interval of coverage ``covered`` says against ``bound``; nothing when it covers
    less than ``LEVEL`` (too few values)."""
    if covered < LEVEL:
        return "too few"
    if high <= bound:
        return f"within {round((bound - 1) * 100)}%"
    if low > bound:
        return "slower"
    return "unclear"


def interval_summary(values: Sequence[float]) -> dict[str, Any]:
    """The median of ``values`` with its interval, the interval's coverage and the verdict."""
    ratio, low, high = median_interval(values)
    covered = coverage(len(values), interval_rank(len(values)))
    return {"ratio": ratio, "low": low, "high": high, "coverage": covered,
            "verdict": verdict(low, high, covered)}


@dataclass
class PairRow:
    key: str
    steps: int  # per block, the same on both sides
    old: list[float] = field(default_factory=list)  # seconds per step, one per round
    new: list[float] = field(default_factory=list)
    work_old: dict[str, float] = field(default_factory=dict)  # bench_worker.work_per_step
    work_new: dict[str, float] = field(default_factory=dict)

    def samples(self) -> list[float]:
        """new / old, one per two rounds: the geometric mean of a round in which the old side
        went first and the next, in which the new one did. The second block of a pair ran
        about 5% slower here (whatever the code), so a round alone is biased by its order."""
        ratios = [n / o for n, o in zip(self.new, self.old, strict=True)]
        if len(ratios) < 2:
            return ratios
        return [math.sqrt(a * b) for a, b in zip(ratios[::2], ratios[1::2], strict=False)]

    def summary(self) -> dict[str, Any]:
        return {"key": self.key, "control": self.key in CONTROL_KEYS, "steps": self.steps,
                "rounds": len(self.old), "old_ms": 1e3 * median_interval(self.old)[0],
                "new_ms": 1e3 * median_interval(self.new)[0]} | interval_summary(self.samples())


def combine_pairs(rows: Sequence[PairRow]) -> dict[str, Any]:
    """One contender over fresh pairs of workers (``rows``, one per pair): the median of the
    pairs' medians with the order-statistics interval over them. A process settles at its own
    speed when it starts -- two long-lived workers here ran up to 15% apart on identical work,
    steadily -- which the interval of one pair's samples cannot see; across pairs it is part of
    the spread. With one pair, that pair's own summary."""
    if len(rows) == 1:
        return asdict(rows[0]) | rows[0].summary()
    pairs = [asdict(r) | r.summary() for r in rows]
    return {"key": rows[0].key, "control": rows[0].key in CONTROL_KEYS,
            "steps": rows[0].steps, "rounds": sum(p["rounds"] for p in pairs),
            "old_ms": median_interval([p["old_ms"] for p in pairs])[0],
            "new_ms": median_interval([p["new_ms"] for p in pairs])[0],
            "work_old": rows[0].work_old, "work_new": rows[0].work_new,
            "pairs": pairs} | interval_summary([p["ratio"] for p in pairs])


def revision_checkout(against: str, into: Path) -> Path:
    """A folder whose ``initlab/`` is the code to compare against: ``against`` itself when it
    is such a folder, else that git revision of this checkout's repository, exported (``git
    archive``, no change to the repository) under ``into``."""
    folder = Path(against)
    if (folder / "initlab" / "__init__.py").is_file():
        return folder.resolve()
    git = ["git", "-C", str(PACKAGE_ROOT)]
    try:
        found = subprocess.run([*git, "rev-parse", "--verify", "--quiet", "--end-of-options",
                                f"{against}^{{commit}}"], capture_output=True, text=True)
    except OSError:  # no git here
        found = None
    if found is None or found.returncode != 0:
        raise UsageError(f"--against {against!r}: neither a folder holding initlab/ nor a git "
                         f"revision of {PACKAGE_ROOT}")
    archive = subprocess.run([*git, "archive", "--format=tar", found.stdout.strip(), "initlab"],
                             capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


class Side:
    """One worker process: a checkout's contenders, timed on request (bench_worker's
    protocol)."""

    def __init__(self, name: str, root: Path, log_file: IO[str]) -> None:
        self.name, self.root = name, root
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen([sys.executable, "-P", str(WORKER)], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log_file, text=True, bufsize=1)

    def send(self, **request: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} side's worker ended (its messages: above)")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the {self.name} side's worker: {answer['error']}")
        return answer

    def ask(self, **request: Any) -> dict[str, Any]:
        self.send(**request)
        return self.read()

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()  # the worker reads the end of its input and leaves
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def time_group(old: Side, new: Side, keys: Sequence[str], rounds: int,
               settings: BenchSettings, count: bool = True) -> list[PairRow]:
    """One group's contenders (built and warm on both sides) in turns: per round and key one
    block on each side, the old side first in even rounds and the new one in odd rounds; then
    (``count``) the work of a block on each side."""
    rows = [PairRow(key, block_steps(new, key, settings)) for key in keys]
    for r in range(rounds):
        for i in range(len(rows)):
            row = rows[(i + r) % len(rows)]
            for side in ((old, new) if r % 2 == 0 else (new, old)):
                seconds = side.ask(op="time", key=row.key, steps=row.steps)["seconds"]
                (row.old if side is old else row.new).append(seconds)
    if count:  # after the timing, which the counting's instruments would slow
        for row in rows:
            row.work_old = old.ask(op="count", key=row.key, steps=row.steps)
            row.work_new = new.ask(op="count", key=row.key, steps=row.steps)
    return rows


def block_steps(new: Side, key: str, settings: BenchSettings) -> int:
    """Steps per block: for a sparse watch, the watch section's block (its capture falls once in
    each); the others about BLOCK_SECONDS, from a probe of PROBE_STEPS steps on the new side."""
    if key.endswith("_watch_sparse"):
        return settings.watch_block
    per_step = new.ask(op="time", key=key, steps=PROBE_STEPS)["seconds"]
    return max(1, round(BLOCK_SECONDS / per_step))


def time_workers(old_root: Path, start: dict[str, Any], settings: BenchSettings, rounds: int,
                 log_path: Path, console: Console, count: bool = True,
                 old_starts: bool = True) -> list[PairRow]:
    """One pair of fresh workers, the old checkout's and this one's (``old_starts``: the old
    one started first), every contender of theirs timed in turns (``time_group``)."""
    rows: list[PairRow] = []
    with open(log_path, "w+") as worker_log:
        order = [("old", old_root), ("new", PACKAGE_ROOT)]
        started = {name: Side(name, root, worker_log)
                   for name, root in (order if old_starts else order[::-1])}
        old, new = started["old"], started["new"]
        try:
            for side in (old, new):
                where = Path(side.ask(**start)["initlab"])
                if where != (side.root / "initlab").resolve():
                    raise RuntimeError(f"the {side.name} side imported initlab from {where}, "
                                       f"not {side.root}")
            groups = [old.read()["groups"], new.read()["groups"]]
            if groups[0] != groups[1]:
                raise RuntimeError(f"the versions time different contenders: {groups[0]} "
                                   f"(old) and {groups[1]} (new)")
            for keys in groups[1]:
                console.print(f"timing {', '.join(keys)}: {rounds} rounds ...", style="dim",
                              highlight=False)
                for side in (old, new):
                    side.read()  # ready: built and warm
                rows += time_group(old, new, keys, rounds, settings, count)
                for side in (old, new):
                    side.send(op="next")
            for side in (old, new):
                side.read()  # done
        except RuntimeError as err:
            if "worker ended" in str(err):  # it died: what it said is all there is to go on
                worker_log.seek(0)
                console.print(worker_log.read()[-4000:], highlight=False, markup=False)
            # One line, not a traceback: a version this bench's worker cannot drive (one older
            # than the worker protocol, 2026-12-02) answers with what failed.
            raise UsageError(f"bench --against: {err}; the other version cannot be timed "
                             f"by this one (older than its worker protocol?)") from None
        finally:
            old.close()
            new.close()
    return rows


def run_pair(against: str, settings: BenchSettings, rounds: int, out: Path | None,
             console: Console, pairs: int = 1) -> dict[str, Any]:
    """Times this checkout against ``against`` (a revision or a folder), block by block in
    turns, in ``pairs`` fresh pairs of workers one after the other (the work counted in the
    first); prints the table and writes ``out`` (JSON)."""
    per_pair: list[list[PairRow]] = []
    with tempfile.TemporaryDirectory(prefix="initlab-bench-against-") as tmp:
        old_root = revision_checkout(against, Path(tmp) / "old")
        info = machine_info(settings.device)
        start = {"op": "start", "device": settings.device.type,
                 "data_root": settings.data_root, "sweeps": list(settings.sweeps),
                 "sections": [s for s in settings.sections if s in ("mlp", "watch")],
                 "warmup": settings.warmup}
        for p in range(pairs):
            if pairs > 1:
                console.print(f"pair {p + 1} of {pairs}: fresh workers", style="dim",
                              highlight=False)
            per_pair.append(time_workers(old_root, start, settings, rounds,
                                         Path(tmp) / "workers.log", console, count=p == 0,
                                         old_starts=p % 2 == 0))
    if hasattr(os, "getloadavg"):
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    across = " per pair; over pairs of fresh workers, the median of the pairs' medians " \
             "with its interval over them" if pairs > 1 else ""
    result = {
        "machine": info,
        "against": against,
        "method": f"both versions at once, one worker process each; per contender and round "
                  f"one block on each side (the same steps; the old side first in even "
                  f"rounds, the new side in odd ones); a sample: the geometric mean of two "
                  f"rounds' new / old seconds per step; median over samples with its "
                  f"{LEVEL:.0%} order-statistics interval{across}; verdict against "
                  f"{MAX_SLOWDOWN}",
        "rounds": rounds,
        "pairs": pairs,
        "rows": [combine_pairs(rows) for rows in zip(*per_pair, strict=True)],
    }
    console.print(pair_table(result))
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        console.print(f"wrote {out}", style="dim", highlight=False)
    return result


def pair_table(result: dict[str, Any]) -> RenderableType:
    """The result as tables: per contender its verdict; over several pairs, each pair's ratio
    beside (a table of its own, so both keep 80 columns legible)."""
    info = result["machine"]
    pairs = result.get("pairs", 1)
    where = f"{pairs} pairs of workers × {result['rounds']} rounds" if pairs > 1 else \
        f"{result['rounds']} rounds"
    over = ("new/old: per pair, the median of its samples (two rounds' paired ratios, one each "
            "side first); over the pairs, the median of those with its interval (CI), "
            f"covering {min(r['coverage'] for r in result['rows']):.1%}." if pairs > 1 else
            "new/old: median of the samples (two rounds' paired ratios, one each side first), "
            "with its 95% interval (CI).")
    table = Table(title=f"this checkout against {result['against']}: {info['device_name']}, "
                        f"{info['cores']} cores, {where}",
                  caption=f"ms: new, per step, median over rounds. {over} calls, ops: Python "
                          "function calls and PyTorch operators per step, old→new. *: control, "
                          "no initlab code in its step; its interval is the machine's "
                          "resolution.",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("contender", "ms", "new/old", "95% CI", "verdict", "calls", "ops"):
        table.add_column(header, justify="left" if header == "contender" else "right",
                         no_wrap=True)
    for r in result["rows"]:
        calls, ops = (f"{r['work_old'][k]:.0f}→{r['work_new'][k]:.0f}"
                      for k in ("python_calls", "aten_ops"))
        table.add_row(r["key"] + ("*" if r["control"] else ""), f"{r['new_ms']:.1f}",
                      f"{r['ratio']:.2f}", f"{r['low']:.2f}-{r['high']:.2f}", r["verdict"],
                      calls, ops)
    if pairs == 1:
        return table
    each = Table(title="new/old in each pair of fresh workers, in order",
                 box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    each.add_column("contender", no_wrap=True)
    for p in range(pairs):
        each.add_column(str(p + 1), justify="right", no_wrap=True)
    for r in result["rows"]:
        each.add_row(r["key"] + ("*" if r["control"] else ""),
                     *(f"{pair['ratio']:.2f}" for pair in r["pairs"]))
    return Group(table, each)
