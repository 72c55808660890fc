"""One side of ``initlab bench --against``: the bench's own contenders, timed a block at a time
on request, with whichever initlab checkout is first on ``PYTHONPATH``.

``initlab.bench_pair`` starts two of these, one per checkout, as ``python -P bench_worker.py``
(``-P``: this file's folder is not put on ``sys.path``, so ``import initlab`` finds the checkout
under test). Requests come one JSON object per line on stdin, each answered by one JSON line on
stdout; whatever the libraries print goes to stderr.

The contenders are not rebuilt here: the checkout's own ``time_plain``, ``time_initlab`` and
``time_watch_model`` build them, one group after another, and this file stands in for the two
functions they hand their steps to (``time_steps``, ``time_in_turns``). The stand-in warms the
steps up as they would, says ``ready``, then times blocks on request until ``next``, when the
bench function goes on to clean up. So each side times exactly what its ``initlab bench`` would,
in the main thread as it would (a step in another thread ran up to 2x slower here), and any
checkout that has those five functions (every one since the watch section, 6f8abaa included)
can be compared.

Protocol: ``start`` (settings) -> ``{"initlab": folder, ...}``, then unasked ``{"groups": [[key,
...], ...]}``; per group, unasked, ``{"ready": [key, ...]}``, then ``time`` (key, steps) ->
``{"seconds": s}`` and ``count`` (key, steps) -> ``{"python_calls": n, "aten_ops": n}`` until
``next``; after the last group ``{"done": true}``. Any failure: ``{"error": "..."}`` and the
worker ends.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

Step = Callable[[], None]


class Channel:
    """JSON lines in on stdin, out on a copy of stdout taken before stdout goes to stderr."""

    def __init__(self) -> None:
        self.out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        sys.stdout = sys.stderr  # the protocol owns the real stdout

    def read(self) -> dict[str, Any]:
        line = sys.stdin.readline()
        if not line:
            raise SystemExit(0)  # the coordinator is gone
        return json.loads(line)

    def send(self, **fields: Any) -> None:
        self.out.write(json.dumps(fields) + "\n")


def work_per_step(step: Step, steps: int) -> dict[str, float]:
    """What a step does, in counts the machine's speed cannot blur: Python function calls
    (cProfile) and PyTorch operators dispatched (ATen ops; a CUDA graph's replay is one
    call and dispatches none), each per step over ``steps`` steps."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            self.ops += 1
            return func(*args, **(kwargs or {}))

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(steps):
        step()
    profile.disable()
    with CountOps() as counted:
        for _ in range(steps):
            step()
    return {"python_calls": pstats.Stats(profile).total_calls / steps,
            "aten_ops": counted.ops / steps}


class Worker:
    def __init__(self, bench: Any, settings: Any, channel: Channel) -> None:
        self.bench, self.settings, self.channel = bench, settings, channel
        self.data: Any = None
        self.keys: list[str] = []  # the group being built and served
        bench.time_steps = self.stand_in_for_time_steps
        bench.time_in_turns = self.stand_in_for_time_in_turns

    def serve(self, steps: Sequence[Step], warmup: int) -> None:
        by_key = dict(zip(self.keys, steps, strict=True))
        for step in steps:
            for _ in range(warmup):
                step()
        self.channel.send(ready=self.keys)
        while (request := self.channel.read())["op"] in ("time", "count"):
            step, count = by_key[request["key"]], request["steps"]
            if request["op"] == "count":
                self.channel.send(**work_per_step(step, count))
                continue
            self.bench.synchronize(self.settings.device)
            start = time.perf_counter()
            for _ in range(count):
                step()
            self.bench.synchronize(self.settings.device)
            self.channel.send(seconds=(time.perf_counter() - start) / count)
        if request["op"] != "next":
            raise ValueError(f"expected time, count or next, got {request['op']!r}")

    def stand_in_for_time_steps(self, step: Step, device: Any, warmup: int, steps: int,
                                blocks: int) -> float:
        self.serve([step], warmup)
        return 1.0

    def stand_in_for_time_in_turns(self, steps: Sequence[Step], device: Any, warmup: int,
                                   block: int, rounds: int) -> list[float]:
        self.serve(steps, warmup)
        return [1.0] * len(steps)

    def mnist(self) -> Any:
        if self.data is None:
            self.data = self.bench.load_mnist(self.settings.data_root, "standard",
                                              self.settings.device, log=lambda m: None)
        return self.data

    def groups(self) -> list[tuple[list[str], Callable[[], Any]]]:
        """(keys, the bench function that builds and then times them), in the bench's order."""
        bench, settings = self.bench, self.settings
        found: list[tuple[list[str], Callable[[], Any]]] = []
        if "mlp" in settings.sections:
            cfg = bench.bench_config(settings.device)
            found.append((["plain"], lambda: bench.time_plain(settings, cfg)))
            for key, members, capture, graph, backward in bench.contenders(settings):
                def build(k: str = key, m: int = members, c: bool = capture, g: str = graph,
                          b: str = backward) -> Any:
                    return bench.time_initlab(settings, self.mnist(), k, m, c, g, b)
                found.append(([key], build))
        if "watch" in settings.sections:
            for model in bench.WATCH_MODELS:
                keys = [f"{model}{variant}" for variant in bench.WATCH_VARIANTS]
                found.append((keys, lambda m=model: bench.time_watch_model(settings,
                                                                           self.mnist(), m)))
        return found

    def run(self) -> None:
        groups = self.groups()
        self.channel.send(groups=[keys for keys, _ in groups])
        for keys, build in groups:
            self.keys = keys
            build()
        self.channel.send(done=True)


def main() -> None:
    channel = Channel()
    try:
        import torch

        import initlab
        from initlab import bench

        request = channel.read()
        settings = bench.BenchSettings(
            device=torch.device(request["device"]), data_root=request["data_root"],
            sweeps=tuple(request["sweeps"]), sections=tuple(request["sections"]),
            warmup=request["warmup"])
        channel.send(initlab=str(Path(initlab.__file__).resolve().parent),
                     torch=torch.__version__, threads=torch.get_num_threads())
        Worker(bench, settings, channel).run()
    except Exception as error:  # noqa: BLE001 -- one line back to the coordinator
        channel.send(error=f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
